"""`simmim-deploy predict` (placeholder: being written)."""

from __future__ import annotations

import typer


def predict() -> None:
    """Not implemented yet."""
    typer.echo("not implemented yet")
    raise typer.Exit(1)
