"""Run independent jobs in worker processes (one torch thread each), in order."""

from __future__ import annotations


def run_jobs(fn, jobs: list, workers: int, progress: bool = True, desc: str = "") -> list:
    """Map ``fn`` over ``jobs`` in ``workers`` spawned processes; serially when ``workers`` is 1.

    ``fn`` must be a module-level function and every job picklable. Results keep job order.
    """
    from tqdm.auto import tqdm

    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(tqdm(pool.map(fn, jobs), total=len(jobs), desc=desc, disable=not progress))
