from rich.progress import Progress

from emsearch.progress import RateColumn


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
