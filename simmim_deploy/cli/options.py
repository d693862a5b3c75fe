"""Typer commands generated from config dataclasses: each option is declared once, in its field.

A field declared with :func:`simmim_deploy.core.config.option` becomes ``--name-with-dashes``
(or its ``flag``), with the field's help text and its real default shown in ``--help``. Every
generated option defaults to "not given", so the value comes from the command line, else the
``--config`` recipe, else the dataclass default, in that order (``core.config.load_config``).

Types: ``bool`` -> ``--x/--no-x``; ``Literal`` -> a choice; ``tuple``/``list`` -> a comma list
that may also be repeated (``--strides 4,8,16`` = ``--strides 4 --strides 8,16``); a union takes
its first type (``str | tuple[int, ...]`` is a string); ``dict`` fields must be ``cli=False``
(YAML only). A ``positional`` field is an argument (``NAME``; a list field takes the remaining
arguments, commas included); ``short`` adds ``-x``; ``old_flags`` still work and print a
deprecation line.

Written by hand instead of adopting tyro/jsonargparse: the project already has Typer and a
YAML loader with close-match suggestions, and this is the one ~100-line piece that joins them.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from simmim_deploy.core.config import flag_of, is_required, load_config
from simmim_deploy.core.errors import UserError

SHARED_PANEL = "Run options (shared by the train commands)"


def config_command(
    cls: type,
    run: Callable[[Any], None],
    doc: str,
    shared: type | None = None,
    panel: str = SHARED_PANEL,
) -> Callable[..., None]:
    """A Typer command function whose options are the CLI fields of dataclass ``cls``.

    Args:
        cls: the command's config dataclass (fields declared with ``option``).
        run: called with the built config.
        doc: the command's help (first line: summary; keep an ``Example:`` line).
        shared: a base dataclass of ``cls`` whose fields are listed in their own help panel.
        panel: the title of that panel.
    """
    hints = typing.get_type_hints(cls)
    shared_names = {f.name for f in dataclasses.fields(shared)} if shared else set()
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    fields.sort(key=lambda f: f.name in shared_names)  # the command's own options first
    fields.sort(key=lambda f: not f.metadata.get("positional"))  # arguments first, in order
    params = [
        _parameter(f, hints[f.name], panel if f.name in shared_names else None) for f in fields
    ]
    old = {  # hidden parameter name -> (old flag, field)
        f"{f.name}__old{i}": (flag, f)
        for f in fields
        for i, flag in enumerate(f.metadata.get("old_flags", ()))
    }
    params += [_old_parameter(name, flag, hints[f.name]) for name, (flag, f) in old.items()]
    arguments = {f.name for f in fields if f.metadata.get("positional")}
    params.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[Path],  # noqa: UP045 - typer reads it at run time
            default=typer.Option(
                None,
                "--config",
                help="Recipe YAML (train/*.yaml, export/*.yaml); options given here win.",
            ),
        )
    )

    def command(**given: Any) -> None:
        recipe = given.pop("config")
        for name, (flag, f) in old.items():
            _take_old(given, given.pop(name), flag, f)
        values = {k: _from_cli(v, hints[k], k, k in arguments) for k, v in given.items()
                  if v is not None}  # fmt: skip
        run(load_config(cls, recipe, values))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def _parameter(f: dataclasses.Field, annotation: Any, panel: str | None) -> inspect.Parameter:
    kind, choices = _cli_kind(annotation)
    flag = flag_of(f)
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    if f.metadata.get("short"):
        decls.append(f.metadata["short"])
    help_text = f.metadata.get("help", "")
    if is_required(f):
        help_text += " Required (here or in the --config recipe)."
    cli_type = _cli_type(kind, choices)
    if f.metadata.get("positional"):
        default = typer.Argument(
            None, help=help_text, metavar=flag, show_default=_shown_default(f, kind)
        )
    else:
        default = typer.Option(
            None,
            *decls,
            help=help_text,
            show_default=_shown_default(f, kind),
            rich_help_panel=panel,
            metavar="A,B,..." if kind is tuple else None,
        )
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Optional[cli_type],  # noqa: UP045 - typer reads it at run time
        default=default,
    )


def _cli_type(kind: type, choices: tuple[Any, ...]) -> Any:
    if choices:
        return typing.Literal[choices]  # type: ignore[valid-type]
    return {bool: bool, int: int, float: float, str: str, tuple: list[str]}[kind]


def _old_parameter(name: str, flag: str, annotation: Any) -> inspect.Parameter:
    """A hidden option for an earlier spelling of a field."""
    kind, choices = _cli_kind(annotation)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Optional[_cli_type(kind, choices)],  # noqa: UP045 - typer reads it at run time
        default=typer.Option(None, flag, hidden=True),
    )


def _take_old(given: dict[str, Any], value: Any, flag: str, f: dataclasses.Field) -> None:
    """Use a value given under an old flag for its field."""
    given[f.name] = renamed(flag, flag_of(f), value, given.get(f.name))


def renamed(old: str, new: str, old_value: Any, new_value: Any) -> Any:
    """An option's value when it may come under its earlier spelling ``old``.

    ``old_value`` (None: not given) wins with a deprecation line on stderr; both given and
    different is a :class:`UserError`.
    """
    if old_value is None:
        return new_value
    print(f"warning: {old} is deprecated; use {new} instead", file=sys.stderr)
    if new_value is not None and new_value != old_value:
        raise UserError(f"{old} and {new} name the same option; give it once")
    return old_value


def _cli_kind(annotation: Any) -> tuple[type, tuple[Any, ...]]:
    """``(kind, choices)``: kind one of bool/int/float/str/tuple; choices for a Literal."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # the first type decides
        return _cli_kind(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return str, tuple(args)
    if origin in (tuple, list):
        return tuple, ()
    if annotation in (bool, int, float, str):
        return annotation, ()
    raise TypeError(f"cannot make a CLI option of {annotation}: declare it with cli=False")


def _shown_default(f: dataclasses.Field, kind: type) -> str | bool:
    if f.default is dataclasses.MISSING or f.default is None:
        return False
    value = f.default
    if kind is bool:
        name = flag_of(f)[2:]  # the flag's spelling (``--json`` for field ``as_json``)
        return name if value else f"no-{name}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _from_cli(value: Any, annotation: Any, key: str, argument: bool = False) -> Any:
    """Comma lists (the option may be repeated) become one list of the item type; other values
    are already typed. A list argument (``SOURCES...``) is taken as given: paths may hold
    commas."""
    kind, _ = _cli_kind(annotation)
    if kind is not tuple:
        return value
    inner = _item_type(annotation)
    given = value if isinstance(value, (list, tuple)) else [value]
    if argument:
        return [inner(v) for v in given] or None
    items = [v.strip() for text in given for v in str(text).split(",") if v.strip()]
    try:
        return [inner(v) for v in items]
    except ValueError:
        raise UserError(
            f"--{key.replace('_', '-')}: expected a comma list, got {','.join(given)!r}"
        ) from None


def _item_type(annotation: Any) -> Callable[[str], Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _item_type(next(a for a in args if a is not type(None)))
    item = args[0] if args else str
    return item if item in (int, float, str) else str
