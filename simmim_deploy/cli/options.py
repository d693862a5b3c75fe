"""Typer commands generated from config dataclasses: each option is declared once, in its field.

A field declared with :func:`simmim_deploy.core.config.option` becomes ``--name-with-dashes``
(or its ``flag``), with the field's help text and its real default shown in ``--help``. Every
generated option defaults to "not given", so the value comes from the command line, else the
``--config`` recipe, else the dataclass default, in that order (``core.config.load_config``).

Types: ``bool`` -> ``--x/--no-x``; ``Literal`` -> a choice; ``tuple``/``list`` -> a comma list
(``--strides 4,8,16``); ``dict`` fields must be ``cli=False`` (YAML only).

Written by hand instead of adopting tyro/jsonargparse: the project already has Typer and a
YAML loader with close-match suggestions, and this is the one ~100-line piece that joins them.
"""

from __future__ import annotations

import dataclasses
import inspect
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
) -> Callable[..., None]:
    """A Typer command function whose options are the CLI fields of dataclass ``cls``.

    Args:
        cls: the command's config dataclass (fields declared with ``option``).
        run: called with the built config.
        doc: the command's help (first line: summary; keep an ``Example:`` line).
        shared: a base dataclass of ``cls`` whose fields are listed in their own help panel.
    """
    hints = typing.get_type_hints(cls)
    shared_names = {f.name for f in dataclasses.fields(shared)} if shared else set()
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]
    fields.sort(key=lambda f: f.name in shared_names)  # the command's own options first
    params = [
        _parameter(f, hints[f.name], SHARED_PANEL if f.name in shared_names else None)
        for f in fields
    ]
    params.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[Path],  # noqa: UP045 - typer reads it at run time
            default=typer.Option(
                None, "--config", help="Recipe YAML (e.g. train/*.yaml); options given here win."
            ),
        )
    )

    def command(**given: Any) -> None:
        recipe = given.pop("config")
        values = {k: _from_cli(v, hints[k], k) for k, v in given.items() if v is not None}
        run(load_config(cls, recipe, values))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc
    return command


def _parameter(f: dataclasses.Field, annotation: Any, panel: str | None) -> inspect.Parameter:
    kind, choices = _cli_kind(annotation)
    flag = flag_of(f)
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    help_text = f.metadata.get("help", "")
    if is_required(f):
        help_text += " Required (here or in the --config recipe)."
    cli_type: Any = {bool: bool, int: int, float: float, str: str, tuple: str}[kind]
    if choices:
        cli_type = typing.Literal[choices]  # type: ignore[valid-type]
    return inspect.Parameter(
        f.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Optional[cli_type],  # noqa: UP045 - typer reads it at run time
        default=typer.Option(
            None,
            *decls,
            help=help_text,
            show_default=_shown_default(f, kind),
            rich_help_panel=panel,
        ),
    )


def _cli_kind(annotation: Any) -> tuple[type, tuple[Any, ...]]:
    """``(kind, choices)``: kind one of bool/int/float/str/tuple; choices for a Literal."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"cannot make a CLI option of {annotation}")
        return _cli_kind(inner[0])
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
        return f.name.replace("_", "-") if value else "no-" + f.name.replace("_", "-")
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _from_cli(value: Any, annotation: Any, key: str) -> Any:
    """A comma list becomes a list of the item type; other values are already typed."""
    kind, _ = _cli_kind(annotation)
    if kind is not tuple:
        return value
    inner = _item_type(annotation)
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    try:
        return [inner(v) for v in items]
    except ValueError:
        raise UserError(
            f"--{key.replace('_', '-')}: expected a comma list, got {value!r}"
        ) from None


def _item_type(annotation: Any) -> Callable[[str], Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _item_type(next(a for a in args if a is not type(None)))
    item = args[0] if args else str
    return item if item in (int, float, str) else str
