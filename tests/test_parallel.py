import math

from vgh_lib.parallel import run_jobs


def test_run_jobs_keeps_order_in_processes_and_serially():
    jobs = [4.0, 9.0, 16.0, 25.0]
    assert run_jobs(math.sqrt, jobs, workers=2, progress=False) == [2.0, 3.0, 4.0, 5.0]
    assert run_jobs(math.sqrt, jobs, workers=1, progress=False) == [2.0, 3.0, 4.0, 5.0]
