"""Run independent jobs in worker processes (one torch thread each), in order.

The experiment grids (notebooks 04, 05, 07 and 08) map a module-level job function over picklable
jobs. By default the jobs run in a local pool of spawned processes. Any
:class:`concurrent.futures.Executor` can run them instead, in particular a Dask cluster's::

    from distributed import Client
    with Client("tcp://scheduler:8786") as client:
        run_jobs(fn, jobs, workers, executor=client.get_executor())

When the environment variable ``VGH_DASK_SCHEDULER`` holds a scheduler address (``vgh run``
and ``vgh reproduce`` set it from ``--dask ADDRESS``; papermill kernels inherit it), every
``run_jobs`` call without an explicit executor sends its jobs to that cluster. The address is
not a notebook parameter and not part of the cache key: the jobs are deterministic, so the
results are the same on the cluster as on the local pool (tests/test_parallel.py checks this).

Workers need ``vgh_lib`` importable and must see the paths the jobs name (checkpoints on a
shared filesystem): a job naming a path that its worker cannot see fails with an error that
names the path and the worker's host. A job that raises fails the whole call with
:class:`JobFailed`, which carries the worker's traceback; the remaining jobs are cancelled.
"""

from __future__ import annotations

import os
import traceback

SCHEDULER_ENV = "VGH_DASK_SCHEDULER"


class JobFailed(RuntimeError):
    """A job raised on a worker; the message holds the worker's traceback."""


def run_jobs(fn, jobs: list, workers: int, progress: bool = True, desc: str = "",
             executor=None) -> list:
    """Map ``fn`` over ``jobs``; results keep job order.

    ``executor`` (any :class:`concurrent.futures.Executor`) runs the jobs if given; otherwise a
    Dask cluster does when ``$VGH_DASK_SCHEDULER`` is set; otherwise ``workers`` spawned local
    processes do (serially in this process when ``workers`` is 1). ``fn`` must be a
    module-level function and every job picklable.
    """
    if executor is not None:
        return _run_on(executor, fn, jobs, progress, desc)
    address = scheduler_address()
    if address:
        with dask_client(address) as client:
            return _run_on(client.get_executor(pure=False), fn, jobs, progress,
                           desc + f" (dask {address})" if desc else f"dask {address}")
    from tqdm.auto import tqdm

    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        return list(tqdm(pool.map(fn, jobs), total=len(jobs), desc=desc, disable=not progress))


# --------------------------------------------------------------------------------- Dask
def scheduler_address() -> str | None:
    """The Dask scheduler address from ``$VGH_DASK_SCHEDULER``, or None."""
    return os.environ.get(SCHEDULER_ENV, "").strip() or None


def dask_client(address: str, timeout: float = 30):
    """A ``distributed.Client`` connected to ``address``, with clear errors when the ``cluster``
    extra is missing or the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            f"running on the Dask cluster {address!r} needs the cluster extra: "
            "pip install -e '.[cluster]' (dask[distributed])") from exc
    try:
        return Client(address, timeout=timeout)
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address!r} "
                              f"(from --dask or ${SCHEDULER_ENV}): {exc}") from exc


def check_scheduler(address: str) -> str:
    """Connect once to ``address`` and return a one-line description of the cluster."""
    with dask_client(address, timeout=10) as client:
        n = len(client.nthreads())
    if n == 0:
        raise ConnectionError(f"the Dask scheduler at {address!r} has no workers")
    return f"Dask scheduler {address} with {n} worker{'s' if n != 1 else ''}"


# ------------------------------------------------------------------------ any executor
def _paths_in(job) -> list[str]:
    """The paths a job names (its ``paths()`` method; a job without one names none) that
    exist here: each worker must see them too."""
    named = job.paths() if hasattr(job, "paths") else ()
    return [str(p) for p in named if os.path.isabs(str(p)) and os.path.exists(str(p))]


def _call(fn, job, paths: list[str]):
    """Run one job on a worker, after checking that the worker sees the job's paths."""
    for p in paths:
        if not os.path.exists(p):
            import socket

            raise FileNotFoundError(
                f"worker on host {socket.gethostname()!r} cannot see {p!r}, which the job names: "
                "checkpoints and other paths must be on a filesystem shared by the client and "
                "every Dask worker, at the same path")
    return fn(job)


def _run_on(executor, fn, jobs: list, progress: bool, desc: str) -> list:
    from tqdm.auto import tqdm

    futures = [executor.submit(_call, fn, job, _paths_in(job)) for job in jobs]
    results = []
    try:
        for i, fut in enumerate(tqdm(futures, desc=desc, disable=not progress)):
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - re-raised with the worker's traceback
                tb = "".join(traceback.format_exception(exc))
                name = getattr(fn, "__qualname__", repr(fn))
                raise JobFailed(f"job {i} of {len(jobs)} ({name}) raised on its worker "
                                f"{type(exc).__name__}: {exc}\nworker traceback:\n{tb}") from exc
    finally:
        for fut in futures:
            fut.cancel()
    return results
