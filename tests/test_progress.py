import io

from rich.console import Console
from rich.progress import Progress

from emsearch.progress import RateColumn, bar


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
