import dataclasses
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest

from vgh_lib.common import parallel
from vgh_lib.common.parallel import JobFailed, run_jobs
from vgh_lib.tiny.jobs import GainJob, run_gain


@pytest.fixture(autouse=True)
def _no_scheduler_from_the_shell(monkeypatch):
    monkeypatch.delenv(parallel.SCHEDULER_ENV, raising=False)


def test_run_jobs_keeps_order_in_processes_and_serially():
    jobs = [4.0, 9.0, 16.0, 25.0]
    assert run_jobs(math.sqrt, jobs, workers=2, progress=False) == [2.0, 3.0, 4.0, 5.0]
    assert run_jobs(math.sqrt, jobs, workers=1, progress=False) == [2.0, 3.0, 4.0, 5.0]


def test_run_jobs_takes_any_executor_and_reports_a_failed_job():
    jobs = [4.0, 9.0, 16.0, 25.0]
    with ThreadPoolExecutor(2) as ex:
        assert run_jobs(math.sqrt, jobs, 99, progress=False, executor=ex) == [2.0, 3.0, 4.0, 5.0]
        with pytest.raises(JobFailed, match=r"job 1 of 3 \(sqrt\).*ValueError: math domain error"):
            run_jobs(math.sqrt, [1.0, -1.0, 4.0], 2, progress=False, executor=ex)


@dataclasses.dataclass(frozen=True)
class _Job:
    path: str
    other: tuple
    n: int = 3

    def paths(self):
        return (self.path, *self.other)


def _n(job: _Job) -> int:
    return job.n


def test_a_worker_that_cannot_see_a_path_names_it(tmp_path):
    seen = tmp_path / "ckpt"
    seen.mkdir()
    job = _Job(str(seen), (Path("/no/such/dir"), "relative/x"))
    assert parallel._paths_in(job) == [str(seen)]  # only absolute paths that exist here
    assert parallel._paths_in(3.0) == []           # a job without paths() names none
    missing = str(tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match=f"cannot see '{missing}'.*shared by the client"):
        parallel._call(_n, job, [str(seen), missing])
    assert parallel._call(_n, job, [str(seen)]) == 3


def test_a_missing_cluster_extra_or_scheduler_is_a_clear_error(monkeypatch):
    pytest.importorskip("distributed", reason="the Dask tests need the cluster extra")
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        parallel.dask_client("tcp://127.0.0.1:9", timeout=1)


# ------------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed", reason="the Dask tests need the cluster extra: "
                                              "pip install -e '.[cluster]'")
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as lc:
        yield lc


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    """GRPO runs (tiny.jobs.run_gain, as notebook 05 runs them) from two tiny checkpoints."""
    from vgh_lib.tiny import grpo
    from vgh_lib.tiny.models import save_checkpoint, tiny_gpt2
    from vgh_lib.tiny.pretrain import PretrainConfig
    from vgh_lib.tiny.tasks import build_tokenizer

    root = tmp_path_factory.mktemp("checkpoints")
    tok = build_tokenizer()
    pre = PretrainConfig(n_digits=1, n_eval=24, pretrain_steps=10)
    grid = []
    for step in (0, 10):
        path = save_checkpoint(tiny_gpt2(tok, 1, 16, 2, 16, seed=step), tok, root / f"step{step}")
        for seed in (0, 1):
            cfg = grpo.GRPOConfig(steps=2, prompts_per_step=4, group_size=4, probe_every=1,
                                  lr=1e-2, seed=seed)
            grid.append(GainJob(str(path), step, pre, cfg, "cpu"))
    return grid


def _comparable(run) -> dict:
    d = dataclasses.asdict(run)
    d.pop("seconds", None)  # wall time, the only field allowed to differ
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def test_a_grid_on_dask_equals_the_local_run(cluster, tiny_grid, monkeypatch):
    """The grid on 2 Dask worker processes gives exactly what run_jobs' local path gives.
    (Locally it runs serially in this process: the spawn pool runs the same function in
    fresh processes, as the Dask workers do, and would only add their start-up time.)"""
    import torch


    threads = torch.get_num_threads()
    try:
        local = run_jobs(run_gain, tiny_grid, 1, progress=False)
    finally:
        torch.set_num_threads(threads)  # run_gain sets 1 thread in its process
    from distributed import Client, get_task_stream

    monkeypatch.setenv(parallel.SCHEDULER_ENV, cluster.scheduler_address)  # as `vgh --dask` does
    with Client(cluster.scheduler_address) as client, get_task_stream(client) as stream:
        on_dask = run_jobs(run_gain, tiny_grid, 2, progress=False)
    assert len(stream.data) == len(tiny_grid)  # the jobs ran on the cluster
    assert [_comparable(r) for r in on_dask] == [_comparable(r) for r in local]
    assert len({json.dumps(_comparable(r)["after"]) for r in local}) > 1  # the runs differ


def test_a_job_that_raises_on_a_worker_fails_with_its_traceback(cluster, tiny_grid):
    from distributed import Client


    bad = [tiny_grid[0], dataclasses.replace(tiny_grid[1], path="/no/such/checkpoint")]
    with Client(cluster.scheduler_address) as client:
        ex = client.get_executor(pure=False)
        with pytest.raises(JobFailed) as info:
            run_jobs(run_gain, bad, 2, progress=False, executor=ex)
        msg = str(info.value)
        assert "job 1 of 2 (run_gain)" in msg and "/no/such/checkpoint" in msg
        assert "in run_gain" in msg and "rl_from_checkpoint" in msg  # the worker's frames
        missing = "/no/such/checkpoint"
        with pytest.raises(FileNotFoundError, match=f"cannot see '{missing}'"):
            ex.submit(parallel._call, _n, _Job(missing, ()), [missing]).result()


def test_a_failed_dask_job_in_a_notebook_keeps_the_run_out_of_the_good_outputs(
        cluster, tmp_path, monkeypatch):
    """The address reaches the papermill kernel through the environment, a job that raises
    fails the notebook, and the runner files it under failed/ (nothing written as good)."""
    from vgh_lib.driver import runner

    name = "01_costates_are_value_gradients"  # any registered name; the source is replaced
    src = tmp_path / "notebooks"
    src.mkdir()
    nb = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import math\nfrom vgh_lib.common.parallel import run_jobs\n"
                                          "run_jobs(math.sqrt, [4.0, -1.0], 1, progress=False)")]
    nbformat.write(nb, src / f"{name}.ipynb")
    monkeypatch.setattr(runner, "notebooks_dir", lambda: src)
    monkeypatch.setenv(parallel.SCHEDULER_ENV, cluster.scheduler_address)
    out = tmp_path / "out"
    result = runner.run_notebook(name, "smoke", out=out, log=lambda *_: None)
    assert result.status == "failed"
    assert "JobFailed" in result.message  # serially in the kernel it would be a plain ValueError
    assert (out / "failed" / f"{name}.ipynb").exists()
    assert not (out / f"{name}.ipynb").exists() and not (out / f"{name}.claims.json").exists()
    assert os.environ[parallel.SCHEDULER_ENV] == cluster.scheduler_address


def test_vgh_run_and_reproduce_pass_the_address_to_the_kernels(cluster, monkeypatch, capsys):
    from vgh_lib.driver import cli, runner

    addr, seen = cluster.scheduler_address, []

    def fake_run(name, *args, **kwargs):
        seen.append(os.environ.get(parallel.SCHEDULER_ENV))  # what papermill's kernel inherits
        return runner.RunResult(name, "ran")

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    monkeypatch.setattr(runner, "reproduce", lambda *a, **k: [fake_run("all")])
    monkeypatch.setenv(parallel.SCHEDULER_ENV, "tcp://127.0.0.1:9")  # --dask wins over it
    assert cli.main(["run", "01_costates_are_value_gradients", "--dask", addr]) == 0
    assert "with 2 workers" in capsys.readouterr().out
    assert os.environ[parallel.SCHEDULER_ENV] == "tcp://127.0.0.1:9"  # restored on return
    monkeypatch.setenv(parallel.SCHEDULER_ENV, addr)  # honoured without --dask
    assert cli.main(["reproduce", "--profile", "smoke"]) == 0
    assert seen == [addr, addr]
