"""One-line progress displays on stderr: steps (export, verify) or counted work (benchmark)."""

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


@contextlib.contextmanager
def count_progress(title: str) -> Iterator[Callable[[int, int], None]]:
    """A bar ``title ━━━ done/total remaining-time`` on stderr, transient.

    Yields the ``on_progress(done, total)`` callback the library functions take.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
