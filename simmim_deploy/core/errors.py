"""User-facing errors.

Anything a user can cause (bad path, bad option, bad file) raises :class:`UserError` with a
one-line message that says what to do. The CLI prints it as ``error: <message>`` and exits 2,
never with a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; its message is shown as one line, without a traceback."""


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the pyproject extra."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"the optional package '{module}' is not installed{what}: "
            f"pip install 'simmim-deploy[{extra}]'"
        )


def require(module: str, extra: str, purpose: str = ""):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise :class:`MissingExtraError` naming its extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra, purpose) from exc
