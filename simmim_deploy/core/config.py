"""Frozen config dataclasses filled from YAML recipes and command-line overrides.

One dataclass per command. YAML only fills the dataclass: unknown keys are an error with a
close-match suggestion, values are type-checked, and every run writes its resolved config.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from simmim_deploy.core.atomic import atomic_write_text
from simmim_deploy.core.errors import UserError

C = TypeVar("C")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    short: str | None = None,
    cli: bool = True,
    positional: bool = False,
    old_flags: tuple[str, ...] = (),
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """Declare a config field once: its default and help text.

    The command-line option (``--name-with-dashes`` unless ``flag`` names it), the YAML recipe
    key (the field name) and the ``--help`` default are all generated from this declaration.
    ``short``: a one-letter spelling too (``-b``).
    ``cli=False`` keeps a field YAML-only (nested mappings, rarely changed internals);
    ``positional`` makes it a command-line argument (``NAME``) instead of an option.
    ``old_flags``: earlier spellings, still accepted with a deprecation line.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "short": short,
        "cli": cli,
        "positional": positional,
        "old_flags": tuple(old_flags),
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def redefault(cls: type, name: str, default: Any) -> Any:
    """The field ``name`` of dataclass ``cls`` (its help and flag) with another default.

    A command whose config inherits a shared field but needs its own default redeclares it
    with this, so the help text stays declared once.
    """
    base = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=default, metadata=base.metadata, kw_only=True)


def part_of(config: Any, cls: type[C], **changes: Any) -> C:
    """The ``cls`` part of a config dataclass that extends ``cls`` (its fields' values), with
    ``changes`` applied; validated as ``cls`` validates."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}  # type: ignore
    return cls(**{**values, **changes})


def is_required(f: dataclasses.Field) -> bool:
    """True when a dataclass field has neither a default nor a default factory."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def flag_of(f: dataclasses.Field) -> str:
    """How the command line spells a field: ``NAME`` for an argument, else its ``flag``
    metadata or ``--name-with-dashes``."""
    if f.metadata.get("positional"):
        return f.name.upper()
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def flag_for(config: Any, name: str) -> str:
    """How the command line spells field ``name`` of a config dataclass (for error messages)."""
    return flag_of(next(f for f in dataclasses.fields(config) if f.name == name))


# Recipe keys of earlier versions -> what to write instead (refused with this message).
RENAMED_KEYS = {
    "base_lr": "'lr' (the peak learning rate per 512 images, as base_lr was)",
    "absolute_lr": "'lr' with 'lr_scaling: none' (the learning rate used as given)",
    "num_workers": "'workers'",
}


def suggest(name: str, choices: typing.Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check/convert one YAML value to the field's annotated type (int->float, list->tuple)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, Path)):
            raise UserError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    return value


def build_config(cls: type[C], values: dict[str, Any]) -> C:
    """Build the frozen dataclass ``cls`` from a flat mapping, refusing unknown keys.

    Raises:
        UserError: unknown key (with a close-match suggestion) or a value of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    kwargs = {}
    for key, value in values.items():
        if key not in names and key in RENAMED_KEYS:
            raise UserError(f"config key '{key}' was renamed: use {RENAMED_KEYS[key]}")
        if key not in names:
            raise UserError(f"unknown config key '{key}'{suggest(key, names)}")
        kwargs[key] = _coerce(value, hints[key], key)
    for f in fields:
        if is_required(f) and f.name not in kwargs:
            raise UserError(f"{flag_of(f)} is required (or '{f.name}:' in the --config recipe)")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"bad config: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"config file {p} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a mapping of keys to values")
    return data


def load_config(
    cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """Recipe (YAML) first, then explicit overrides (``None`` values mean "not given")."""
    values: dict[str, Any] = read_yaml(path) if path else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(cls, values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-Python view of a config dataclass (tuples become lists, paths strings)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
