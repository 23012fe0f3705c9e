import io

from rich.console import Console
from rich.progress import Progress

import pytest

from emsearch.progress import RateColumn, bar, stage


def test_rate_shows_the_average_when_a_job_ends_in_one_update():
    clock = [0.0]
    progress = Progress(RateColumn(), get_time=lambda: clock[0], disable=True)
    task = progress.add_task("encoding", total=100)
    clock[0] = 2.0
    progress.advance(task, 100)  # a single update: rich has no speed window (it showed "0 rows/s")
    assert RateColumn().render(progress.tasks[0]).plain == "50 rows/s"


def test_rate_uses_the_recent_window_while_running():
    clock = [0.0]
    progress = Progress(RateColumn(), get_time=lambda: clock[0], disable=True, speed_estimate_period=2)
    task = progress.add_task("encoding", total=1000)
    for t in (10.0, 11.0, 12.0):  # a slow start, then 100 rows/s: the job's average would be 25 rows/s
        clock[0] = t
        progress.advance(task, 100)
    assert RateColumn().render(progress.tasks[0]).plain == "100 rows/s"


def test_rows_of_an_earlier_run_leave_the_count_and_are_labelled_reused():
    with bar(Console(file=io.StringIO()), "encoding", 1000) as b:
        b.skip(600)
        b.advance(100)
        task = b.progress.tasks[0]
        assert (task.completed, task.total) == (100, 400)  # rate and ETA measure this run's 400 rows
        assert task.description == "encoding (600 reused)"


def test_a_failed_job_leaves_no_bar_or_spinner_and_a_reused_one_says_so():
    log = io.StringIO()  # not a terminal: rich prints a display's last state when it ends
    console = Console(file=log)
    with stage(console, "training"):
        pass
    with pytest.raises(OSError), stage(console, "merging"):
        raise OSError("disk full")
    with pytest.raises(OSError), bar(console, "adding", 10) as b:
        b.advance(3)
        raise OSError("disk full")
    with bar(console, "encoding", 420) as b:
        b.skip(420)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("✓ training")
    assert lines[1] == "encoding: all 420 rows done by an earlier run"
