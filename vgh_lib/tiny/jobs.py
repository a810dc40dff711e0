"""The jobs of the tiny-model studies (notebooks 05, 07, 09 and 11), frozen dataclasses that a
process pool or a Dask cluster runs unchanged (:func:`vgh_lib.common.parallel.run_jobs`;
``paths()`` names what a worker must see): one GRPO run from one checkpoint of a pretraining
trajectory (:class:`GainJob`, the gain of RL), and the pre-RL factors of one checkpoint
(:class:`FactorJob`: the signal's batch Gram matrix and an evaluation on training prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgh_lib.common.impact import PairedGain
from vgh_lib.tiny import grpo, sampling
from vgh_lib.tiny.models import load_local
from vgh_lib.tiny.pretrain import PretrainConfig


@dataclass(frozen=True)
class GainJob:
    """One GRPO run (:func:`run_gain`) from one checkpoint of a trajectory."""

    path: str                    # the checkpoint directory
    step: int                    # its pretraining step
    pretrain: PretrainConfig     # the trajectory (its seed names it)
    grpo: grpo.GRPOConfig        # the run, with its seed
    device: str = "cpu"

    @classmethod
    def at(cls, checkpoint, pretrain: PretrainConfig, cfg: grpo.GRPOConfig, device: str) -> "GainJob":
        return cls(str(checkpoint.path), checkpoint.step, pretrain, cfg, device)

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


@dataclass
class GainRun(PairedGain):
    """One GRPO run: exact per-prompt held-out values before and after, and its probe curve."""

    trajectory: int
    step: int
    optimizer: str
    lr: float
    seed: int
    before: np.ndarray          # (P,) exact value of each held-out prompt
    after: np.ndarray
    probe_steps: list[int]
    probe_value: list[float]
    seconds: float


def run_gain(job: GainJob) -> GainRun:
    """One GRPO run from one checkpoint with one seed, on one thread."""
    import time

    torch.set_num_threads(1)
    train, held_out = job.pretrain.task_obj().split()
    t0 = time.perf_counter()
    run = grpo.rl_from_checkpoint(job.path, train, held_out, job.grpo, job.device)
    return GainRun(job.pretrain.seed, job.step, job.grpo.optimizer, job.grpo.lr, job.grpo.seed,
                   run.before, run.after, run.history.probe_steps, run.history.probe_value,
                   time.perf_counter() - t0)


@dataclass(frozen=True)
class FactorJob:
    """The pre-RL factors (:func:`run_factors`) of one checkpoint of a trajectory."""

    path: str
    step: int
    pretrain: PretrainConfig
    signal_batches: int          # independent batches of the signal S
    signal_prompts: int          # distinct prompts per batch
    group_size: int
    temperature: float
    seed: int                    # draws the batches and the evaluation's samples
    factor_prompts: int          # the last training prompts, evaluated for pass@1 and pass@k
    eval_samples: int            # samples per prompt of that evaluation
    k: int
    device: str = "cpu"

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


@dataclass
class Factors:
    """What :func:`run_factors` measured at one checkpoint."""

    trajectory: int
    step: int
    gram: np.ndarray            # (M, M) the signal's batch estimates
    successes: np.ndarray       # (factor_prompts,) out of n_samples
    n_samples: int
    k: int


def run_factors(job: FactorJob) -> Factors:
    """Pre-RL factors of one checkpoint, on one thread: the Gram matrix of the signal's batch
    estimates, and per-prompt success counts of an evaluation on training prompts
    (independent of the held-out prompts that the gain uses)."""
    torch.set_num_threads(1)
    train, _ = job.pretrain.task_obj().split()
    model, tok = load_local(job.path, job.device)
    gram = grpo.signal_gram(model, tok, train, job.signal_batches, job.signal_prompts,
                            job.group_size, job.temperature, job.seed)
    # the last training prompts: disjoint from the GRPO probe prompts (the first 64); the
    # signal's batches are drawn from all training prompts, so they may share some of these
    probe = train[-job.factor_prompts:]
    ev = sampling.evaluate(model, tok, probe, job.eval_samples, job.k, job.temperature,
                           torch.Generator().manual_seed(job.seed + 424_242))
    return Factors(job.pretrain.seed, job.step, gram, ev.successes, job.eval_samples, job.k)
