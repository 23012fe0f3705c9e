"""Progress display for long jobs: a rich bar with rows/s and ETA, or a spinner; silent without a console.

A job that fails leaves no bar or spinner behind (on a terminal, or as a last line in a log): the error that
follows says what happened. A bar whose rows were all done by an earlier run ends as one line saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows/s: rich's recent-window speed while it has one, else (a single update, or done) the job's average."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or (task.completed / task.elapsed if task.elapsed else 0)
        return Text(f"{speed:,.0f} rows/s", style="progress.data.speed")


class _Silent:
    def advance(self, rows: int) -> None:
        pass

    def skip(self, rows: int) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task, label: str):
        self.progress, self.task, self.label = progress, task, label
        self.skipped = 0

    def advance(self, rows: int) -> None:
        self.progress.advance(self.task, rows)

    def skip(self, rows: int) -> None:
        """Rows done by an earlier run (a resumed build's finished shards): out of the count, the rate and the
        ETA, which measure this run's work; the label says how many."""
        self.skipped += rows
        total = next(t.total for t in self.progress.tasks if t.id == self.task) or 0
        self.progress.update(self.task, total=total - rows, description=f"{self.label} ({self.skipped:,} reused)")


@contextmanager
def bar(console: Console | None, label: str, total: int) -> Iterator[_Bar | _Silent]:
    """`with bar(console, "encoding", n) as b: b.advance(rows)`."""
    if console is None or total == 0:
        yield _Silent()
        return
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
    shown = _Bar(progress, progress.add_task(label, total=total), label)
    with _shown(progress, last=lambda: None if shown.skipped < total else  # not "0/0 0 rows/s ETA -:--:--"
                f"{label}: all {total:,} rows done by an earlier run"):
        yield shown


def step_bar(label: str, total: int, done: int) -> Progress:
    """A started bar of steps with a free text field (`update(task_ids[0], completed=n, info=...)`) for a loop that
    reports as it goes, such as training's losses; the caller stops it."""
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"))
    progress.add_task(label, total=total, completed=done, info="")
    progress.start()
    return progress


@contextmanager
def stage(console: Console | None, label: str) -> Iterator[None]:
    """A spinner with the elapsed time while a stage without a row count runs (index training, calibration,
    merging), left on screen when it ends, so a long stage shows it is alive and what it cost."""
    if console is None:
        yield
        return
    progress = Progress(SpinnerColumn(finished_text="✓"), TextColumn(label), TimeElapsedColumn(), console=console)
    task = progress.add_task("", total=1)
    with _shown(progress, last=lambda: None):
        yield
        progress.update(task, completed=1)


@contextmanager
def _shown(progress: Progress, last: Callable[[], str | None]) -> Iterator[None]:
    """Show `progress` while the block runs: live on a terminal, and in a log (not a terminal) its last state
    once. When the block succeeds, `last()` may give a line to show instead of that state; when it raises, the
    display goes with it."""
    console = progress.console
    if not console.is_interactive:
        yield
        line = last()
        console.print(progress.get_renderable() if line is None else line, highlight=False)
        return
    with progress:
        try:
            yield
        except BaseException:
            progress.live.transient = True
            raise
        line = last()
        progress.live.transient = line is not None
    if line is not None:
        console.print(line, highlight=False)
