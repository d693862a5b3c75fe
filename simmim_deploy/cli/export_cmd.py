"""`simmim-deploy export` (placeholder: being written)."""

from __future__ import annotations

import typer


def export() -> None:
    """Not implemented yet."""
    typer.echo("not implemented yet")
    raise typer.Exit(1)
