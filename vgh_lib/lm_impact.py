"""Value impact across *tasks* in a real pretrained language model (THEORY.md §4 on SmolLM2-135M;
notebook ``08_real_lm_impact``).

A real LM has no pretraining trajectory, so the design points are the tasks of
:mod:`vgh_lib.lm_tasks`. For each task, before any RL:

* pass@1 = the mean exact value ``V^D`` (teacher-forced probability of the correct answer) of
  the task's training prompts, and, because samples are independent,
  pass@k = ``1 − (1 − V^D)^k`` exactly; so ``H = E_x[pass@k − pass@1]`` and the reward-std
  signal ``E_x sqrt(V(1 − V))`` carry no sampling noise;
* ``S``: the U-statistic of the GRPO update of the trained parameters over independent
  batches (:func:`vgh_lib.lm_grpo.signal_gram`), and ``I = S·H``.

Then GRPO on the top layers (:func:`vgh_lib.lm_grpo.train`) per task and seed, and the gain:
the paired difference of the mean exact value of the task's held-out prompts after and before.
:func:`vgh_lib.impact.analyse` does the inference with the tasks as fixed design points.

The rules that choose the design (``PILOT``, :func:`pilot_tasks`, :func:`choose_lr`) were
committed before the pilot ran (``book/08_preregistration.md``); none of them looks at ``I``,
``S``, ``H`` or any gain.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from vgh_lib import impact, lm_costates, lm_grpo, lm_tasks

# Written down before the pilot ran (book/08_preregistration.md).
PILOT = {
    "seed": 0,                          # the pilot's GRPO seed; never a confirmation seed
    "pass1_targets": (0.25, 0.5, 0.9),  # pilot tasks: training pass@1 closest to these
    "lrs": (3e-4, 1e-4, 3e-5, 1e-5),    # AdamW, top layers
    "steps": 20,
    "collapse_tolerance": 0.05,
}

_MODELS: dict = {}
_PREFIXES: dict = {}


def model_for(model_path: str, device: str = "cpu"):
    """``(model, tokenizer)``, loaded once per process (each worker keeps its own copy; every
    GRPO run puts the weights it trains back, :func:`vgh_lib.lm_grpo.restored`)."""
    from vgh_lib import real_lm

    key = (str(model_path), device)
    if key not in _MODELS:
        model, tok, _ = real_lm.load_model(model_path, device)
        _MODELS[key] = (model.eval(), tok)
    return _MODELS[key]


def prefix_for(model_path: str, device: str, k: int):
    """The process's :class:`vgh_lib.lm_prefix.FrozenPrefix` of :func:`model_for`'s model with
    its top ``k`` blocks trainable (the bottom states of every prompt computed once per
    process), or None where the model does not support it (the plain path is then used)."""
    from vgh_lib.lm_prefix import FrozenPrefix

    key = (str(model_path), device, k)
    if key not in _PREFIXES:
        model, _ = model_for(model_path, device)
        _PREFIXES[key] = FrozenPrefix(model, k) if FrozenPrefix.supported(model) else None
    return _PREFIXES[key]


def task_pairs(model, tokenizer, task: str, split: str, limit: int | None,
               target: str = "task") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(prompt ids, answer ids) of the first ``limit`` prompts of ``task`` in ``split`` (suite
    order). ``target="greedy"`` replaces each answer by the model's own greedy answer of the
    same length: a reward that a model which solves no task (the smoke profile's tiny random
    llama) can still earn."""
    if target not in ("task", "greedy"):
        raise ValueError(f"target must be 'task' or 'greedy', got {target!r}")
    device = next(model.parameters()).device
    pairs = lm_grpo.encode(tokenizer, lm_tasks.suite(split, limit, (task,)), device)
    if target == "greedy":
        pairs = [(p, lm_costates.greedy_answer(model, p, a.shape[0])) for p, a in pairs]
    return pairs


@dataclass(frozen=True)
class Design:
    """Everything a job needs besides the task, the learning rate and the seed (built from
    notebook 08's parameters by ``RealLMImpactParams.design``, which holds the defaults)."""

    model_path: str
    target: str                  # "task" or "greedy" (task_pairs)
    train_limit: int             # training prompts of a task (suite order): GRPO, S and the factors
    held_out_limit: int          # held-out prompts of a task (suite order): the gain
    probe_prompts: int           # the first training prompts: the exact probe value
    steps: int
    prompts_per_step: int
    group_size: int
    train_layers: int
    probe_every: int
    signal_batches: int
    signal_prompts: int
    k: int
    device: str = "cpu"

    def grpo(self, lr: float, seed: int, steps: int | None = None) -> lm_grpo.LMGRPOConfig:
        return lm_grpo.LMGRPOConfig(steps=steps or self.steps, prompts_per_step=self.prompts_per_step,
                                    group_size=self.group_size, lr=lr, train_layers=self.train_layers,
                                    probe_every=self.probe_every, seed=seed)


@dataclass
class TaskRun(impact.PairedGain):
    """One GRPO run on one task: exact held-out values before and after, the probe curve."""

    task: str
    lr: float
    seed: int
    before: np.ndarray
    after: np.ndarray
    probe_steps: list[int]
    probe_value: list[float]
    mean_reward: list[float]
    seconds: float


def gain_job(job: dict) -> TaskRun:
    """GRPO on one task with one learning rate and seed (a picklable job: ``design`` as a
    dict, ``task``, ``lr``, ``seed``, optional ``steps``); the model is left as it was."""
    torch.set_num_threads(1)
    d = Design(**job["design"])
    model, tok = model_for(d.model_path, d.device)
    train = task_pairs(model, tok, job["task"], "train", d.train_limit, d.target)
    held = task_pairs(model, tok, job["task"], "held_out", d.held_out_limit, d.target)
    cfg = d.grpo(job["lr"], job["seed"], job.get("steps"))
    t0 = time.perf_counter()
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    with lm_grpo.restored(lm_grpo.top_parameters(model, d.train_layers)):
        before = lm_grpo.values(model, held, prefix=prefix)
        history = lm_grpo.train(model, train, train[:d.probe_prompts], cfg, prefix=prefix)
        after = lm_grpo.values(model, held, prefix=prefix)
    return TaskRun(job["task"], job["lr"], job["seed"], before, after, history.probe_steps,
                   history.probe_value, history.mean_reward, time.perf_counter() - t0)


def factor_job(job: dict) -> dict:
    """The pre-RL factors of one task (a picklable job: ``design``, ``task``, ``seed``): the
    exact value of each training prompt, and the Gram matrix of the signal's batches."""
    torch.set_num_threads(1)
    d = Design(**job["design"])
    model, tok = model_for(d.model_path, d.device)
    train = task_pairs(model, tok, job["task"], "train", d.train_limit, d.target)
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    t0 = time.perf_counter()
    values = lm_grpo.values(model, train, prefix=prefix)
    gram = lm_grpo.signal_gram(model, train, d.signal_batches, min(d.signal_prompts, len(train)),
                               d.group_size, 1.0, d.train_layers, job["seed"], prefix)
    return {"task": job["task"], "values": values, "gram": gram, "k": d.k,
            "seconds": time.perf_counter() - t0}


def jobs(design: Design, tasks, lrs, seeds, steps: int | None = None) -> list[dict]:
    """One :func:`gain_job` per task, learning rate and seed."""
    return [{"design": asdict(design), "task": t, "lr": lr, "seed": s, "steps": steps}
            for t in tasks for lr in lrs for s in seeds]


def factor_jobs(design: Design, tasks, seed: int) -> list[dict]:
    """One :func:`factor_job` per task; ``seed`` draws the signal's batches."""
    return [{"design": asdict(design), "task": t, "seed": seed} for t in tasks]


# ------------------------------------------------------------ the pre-registered rules
def pilot_tasks(pass1: dict[str, float], targets=PILOT["pass1_targets"]) -> list[str]:
    """The tasks whose training pass@1 is closest to each target (distinct, in task order)."""
    names = list(pass1)
    return [names[i] for i in impact.pilot_checkpoints([pass1[n] for n in names], targets)]


def choose_lr(pilot_runs: list[TaskRun], tolerance: float = PILOT["collapse_tolerance"]) -> float:
    """The largest learning rate whose probe value never fell more than ``tolerance`` below
    its start on any pilot task (:func:`vgh_lib.impact.choose_lr`)."""
    drops: dict[float, list[float]] = {}
    for r in pilot_runs:
        drops.setdefault(r.lr, []).append(r.largest_drop)
    return impact.choose_lr(drops, tolerance)


# ------------------------------------------------------------------------- inference
def task_data(factors: list[dict], runs: list[TaskRun]) -> list[impact.CheckpointData]:
    """The tasks as design points of :func:`vgh_lib.impact.analyse` (label = task index, in
    the order of ``factors``): exact factor values, the signal's Gram matrix, and the
    (seeds, held-out prompts) paired gains."""
    out = []
    for i, f in enumerate(factors):
        mine = sorted((r for r in runs if r.task == f["task"]), key=lambda r: r.seed)
        if not mine:
            raise ValueError(f"no GRPO runs on task {f['task']!r}")
        out.append(impact.CheckpointData.from_values(i, f["gram"], f["values"], f["k"],
                                                     np.stack([r.after - r.before for r in mine])))
    return out


def mean_gain_ci(data: list[impact.CheckpointData], n_boot: int, seed: int = 0,
                 level: float = 0.95, seeds: bool = True, prompts: bool = True,
                 scale: bool = True) -> tuple[float, float, float]:
    """The mean gain over tasks and its interval: GRPO seeds and held-out prompts resampled
    within each task (:func:`vgh_lib.impact.bootstrap_gain`, deviations widened by the
    small-sample factor of the seeds when ``scale``), never the tasks. ``seeds=False`` or
    ``prompts=False`` holds that source fixed (an exploratory split of the interval's width)."""
    rng = np.random.default_rng(seed)
    boot = np.mean([impact.bootstrap_gain(cp.gains, n_boot, rng, scale, seeds, prompts)
                    for cp in data], axis=0)
    lo, hi = impact.percentile_ci(boot, level)
    return float(np.mean([cp.gain() for cp in data])), lo, hi
