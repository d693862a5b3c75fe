"""A one-line progress display for multi-step commands (export, verify): step and elapsed time."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def step_progress(title: str) -> Iterator[Callable[[str], None]]:
    """Show ``title: <current step>`` with a spinner and elapsed time on stderr.

    Yields the ``on_step(label)`` callback the library functions take. The display is
    transient: the command's own summary lines are what stays on screen.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=None)
        yield lambda label: bar.update(task, description=f"{title}: {label}")
