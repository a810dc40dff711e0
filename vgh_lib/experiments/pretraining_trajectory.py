"""Notebook ``03_pretraining_trajectory``: a tiny GPT-2 pretraining trajectory on a verifiable
task, and GRPO from its mid checkpoint (book/theory.md §3–§4 groundwork). Its trajectory
parameters (:class:`TrajectoryParams`) are shared by notebooks 03–05 and 07, so that they
reuse one cached trajectory; so are notebook 05's confirmation trajectories
(:class:`ConfirmationParams`), which notebook 07 probes. This module is one of the few that
other experiment modules may import (tests/test_layers.py): it is the home of those shared inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vgh_lib.common import impact
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import PILOT_CHOSEN
from vgh_lib.experiments.grpo_budget import GRPOBudget, Sampling
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.glue import format_value
from vgh_lib.harness.params import NotebookParams, OnDevice, spec
from vgh_lib.tiny import grpo
from vgh_lib.tiny.jobs import FactorJob
from vgh_lib.tiny.models import load_local
from vgh_lib.tiny.pretrain import PretrainConfig, pretrain


# The trajectory parameters of the smoke and paper profiles, shared by notebooks 03, 04, 05 and 07
# so that they reuse one cached trajectory per profile.
SMOKE_TRAJECTORY = {"pretrain_steps": 150, "n_checkpoints": 4, "n_eval": 40, "eval_samples": 8,
                    "k": 4}
PAPER_TRAJECTORY = {"n_digits": 3, "n_layer": 4, "n_embd": 128, "pretrain_steps": 20_000,
                    "n_checkpoints": 16, "n_eval": 500, "eval_samples": 32, "device": "auto"}


@dataclass(frozen=True)
class TrajectoryParams(OnDevice, NotebookParams):
    """Parameters of the pretraining trajectory, shared by notebooks 03–05 so that they
    reuse the same cached checkpoints (see :class:`vgh_lib.tiny.pretrain.PretrainConfig`)."""

    task: str = spec("addition", choices=("addition", "reverse"), help="the verifiable task")
    n_digits: int = spec(2, lo=1, hi=4, help="operand width")
    corpus_clean_fraction: float = spec(0.95, lo=0.0, hi=1.0, help="share of correct answers in the corpus")
    n_layer: int = spec(2, lo=1, hi=24, help="transformer layers")
    n_embd: int = spec(64, lo=8, hi=2048, help="embedding width (divisible by n_head)")
    n_head: int = spec(4, lo=1, hi=32, help="attention heads")
    pretrain_steps: int = spec(3000, lo=10, hi=1_000_000, help="pretraining steps")
    n_checkpoints: int = spec(12, lo=3, hi=40, help="checkpoints: step 0, then log-spaced")
    batch_size: int = spec(64, lo=1, hi=4096, help="pretraining batch size")
    pretrain_lr: float = spec(3e-3, lo=1e-6, hi=1.0, help="peak pretraining learning rate")
    n_eval: int = spec(200, lo=10, hi=100_000, help="held-out evaluation prompts")
    eval_samples: int = spec(16, lo=2, hi=1024, help="samples per prompt for pass@k")
    k: int = spec(8, lo=1, hi=1024, help="k of pass@k (≤ eval_samples)")

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ParameterError(f"parameter 'n_embd' = {self.n_embd} must be divisible by "
                                 f"'n_head' = {self.n_head}")
        if self.k > self.eval_samples:
            raise ParameterError(f"parameter 'k' = {self.k} must be at most "
                                 f"'eval_samples' = {self.eval_samples}")

    def trajectory(self, progress: bool = True) -> list:
        """The checkpoints of this trajectory (:func:`vgh_lib.tiny.pretrain.pretrain`: trained
        once, then read from the cache)."""
        return pretrain(self.pretrain_config(), device=self.device, progress=progress)

    def pretrain_config(self) -> PretrainConfig:
        """The trajectory's :class:`~vgh_lib.tiny.pretrain.PretrainConfig` (``pretrain_lr`` is its ``lr``)."""
        return PretrainConfig(
            task=self.task, n_digits=self.n_digits, corpus_clean_fraction=self.corpus_clean_fraction,
            n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head,
            pretrain_steps=self.pretrain_steps, n_checkpoints=self.n_checkpoints,
            batch_size=self.batch_size, lr=self.pretrain_lr, seed=self.seed, n_eval=self.n_eval,
            eval_samples=self.eval_samples, k=self.k)


@dataclass(frozen=True)
class PretrainGRPOParams(GRPOBudget, TrajectoryParams):
    """Parameters of ``03_pretraining_trajectory`` (book/theory.md §3–§4 groundwork)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {**SMOKE_TRAJECTORY, "grpo_steps": 5, "grpo_prompts": 8,
                                          "grpo_seeds": (0, 1)},
                                "default": {},
                                "paper": {**PAPER_TRAJECTORY, "grpo_steps": 200, "grpo_prompts": 32}}

    grpo_optimizer: str = spec("adamw", choices=("adamw", "sgd"), help="GRPO optimizer")
    grpo_lr: float = spec(PILOT_CHOSEN["adamw_lr"], lo=1e-7, hi=100.0,
                          help="GRPO learning rate (chosen on the pilot for AdamW)")
    grpo_seeds: tuple[int, ...] = spec((0, 1, 2, 3), lo=0, hi=2**31 - 1,
                                       help="GRPO seeds from the mid checkpoint")

    def mid_grpo_config(self, seed: int) -> grpo.GRPOConfig:
        """The GRPO run of this notebook from the mid checkpoint, with GRPO seed ``seed``."""
        return self.grpo_config(lr=self.grpo_lr, optimizer=self.grpo_optimizer, seed=seed)


@dataclass
class MidGain:
    """GRPO from the mid checkpoint, one run per seed: the paired gains and their interval."""

    step: int
    runs: list                         # grpo.RLRun per GRPO seed
    gains: np.ndarray                  # (seeds, held-out prompts) paired gains
    gain: float
    gain_ci: tuple[float, float]       # percentile interval over resampled seeds and prompts

    @property
    def pass1_before(self) -> float:
        return float(self.runs[0].before.mean())

    @property
    def pass1_after(self) -> float:
        """Mean over seeds of the held-out pass@1 after GRPO."""
        return float(np.mean([r.after.mean() for r in self.runs]))

    @property
    def largest_drop(self) -> float:
        return max(r.history.largest_drop() for r in self.runs)


def mid_checkpoint_gain(params: PretrainGRPOParams, checkpoints, n_boot: int = 2000) -> MidGain:
    """GRPO, once per seed of ``params.grpo_seeds``, from the checkpoint whose held-out pass@1 is
    closest to 0.5 (:func:`vgh_lib.common.impact.mid_checkpoint`); the gain's interval resamples
    seeds and held-out prompts (:func:`vgh_lib.common.impact.bootstrap_gain`, seeded by
    ``params.seed``)."""
    mid = checkpoints[impact.mid_checkpoint([c.metrics["pass1"] for c in checkpoints])]
    train, held_out = params.pretrain_config().task_obj().split()
    runs = [grpo.rl_from_checkpoint(mid.path, train, held_out, params.mid_grpo_config(s), params.device)
            for s in params.grpo_seeds]
    gains = np.stack([r.after - r.before for r in runs])  # (seeds, prompts)
    ci = impact.percentile_ci(impact.bootstrap_gain(gains, n_boot, np.random.default_rng(params.seed)))
    return MidGain(mid.step, runs, gains, float(gains.mean()), ci)


def reload_difference(checkpoint, prompt: str) -> float:
    """Max |logit difference| on ``prompt`` between the checkpoint loaded by plain
    ``AutoModelForCausalLM.from_pretrained`` and by :func:`vgh_lib.tiny.models.load_local`: 0
    when the saved checkpoint is an ordinary Hugging Face model."""
    import torch
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(checkpoint, local_files_only=True).eval()
    ours, tokenizer = load_local(checkpoint, "cpu")
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer(prompt)["input_ids"]])
    with torch.no_grad():
        return float((plain(input_ids=ids).logits - ours(input_ids=ids).logits).abs().max())


def probe_drop_phrase(largest_drop: float) -> str:
    """How far the probe value fell below its start during GRPO, in words: "never fell below
    its start" when it never did (a drop of 0 or less), else "fell at most X below its start"."""
    if largest_drop <= 0:
        return "never fell below its start"
    return f"fell at most {format_value(largest_drop)} below its start"


# ----------------------------------------------------------------- notebook 03's claims
COLLAPSE_TOLERANCE = 0.05   # the figure's collapse line: the probe value's start minus this

CLAIMS = (
    ClaimSpec("traj.reload_logits",
              "the last checkpoint loads with plain AutoModelForCausalLM.from_pretrained and gives the "
              "same logits as vgh_lib.tiny.models.load_local (max absolute difference)", "<=", 0.0,
              exact=True,
              fails_if="the saved checkpoint is not a plain Hugging Face model (any logit differs)"),
    ClaimSpec("grpo.mid_checkpoint_gain",
              "GRPO raises exact held-out pass@1 at the mid checkpoint (mean over {n_seeds} seeds; "
              "95 % nested-bootstrap interval over seeds and prompts excludes 0)", ">", 0.0,
              kind="empirical", require_ci=True,
              fails_if="the mean gain is not positive, or its interval reaches 0"),
)


def claim_values(reload_diff: float, mid: MidGain) -> dict[str, Measured]:
    """What notebook 03 measured for each of :data:`CLAIMS`."""
    return {"traj.reload_logits": Measured(reload_diff),
            "grpo.mid_checkpoint_gain": Measured(mid.gain, ci=tuple(mid.gain_ci),
                                                 fields={"n_seeds": len(mid.runs)})}


# ---------------------------------------------------------------- notebook 03's figures
def figure_trajectory(checkpoints, params: PretrainGRPOParams):
    """Left: the answer-token loss along pretraining; right: the held-out scores."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    steps = np.array([c.step for c in checkpoints])
    metric = {name: np.array([c.metrics[name] for c in checkpoints])
              for name in ("loss", "greedy_accuracy", "pass1", "passk", "headroom")}
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.2))
    x = steps + 1  # step 0 (the untrained model) sits at x = 1 on the log axis
    axes[0].semilogx(x[1:], metric["loss"][1:], "o-")
    axes[0].set_xlabel("pretraining step + 1")
    axes[0].set_ylabel("cross-entropy on answer tokens")
    axes[0].grid(alpha=0.3)
    for name, label in (("greedy_accuracy", "greedy accuracy"), ("pass1", "pass@1"),
                        ("passk", f"pass@{params.k}"), ("headroom", f"headroom pass@{params.k} − pass@1")):
        axes[1].semilogx(x, metric[name], "o-", label=label)
    axes[1].set_xlabel("pretraining step + 1")
    axes[1].set_ylabel("held-out score")
    axes[1].legend(fontsize=9)
    axes[1].grid(alpha=0.3)
    fig.suptitle(f"{params.task}, {params.n_digits} digits, {params.corpus_clean_fraction:.0%} clean corpus")
    return fig


def figure_grpo(mid: MidGain, params: PretrainGRPOParams):
    """Left: each GRPO seed's probe value and the collapse line; right: held-out pass@1
    before GRPO and after it, one row per policy."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    runs = mid.runs
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.2))
    plots.probe_curves(axes[0], [(r.history.probe_steps, r.history.probe_value,
                                  {"label": f"seed {params.grpo_seeds[i]}"}) for i, r in enumerate(runs)],
                       COLLAPSE_TOLERANCE, relative=False)
    axes[0].set_ylabel("exact value J of the 64 probe prompts")
    axes[0].legend(fontsize=9)
    axes[0].grid(alpha=0.3)
    after = [float(r.after.mean()) for r in runs]
    # a dot plot, one row per policy: no bars on a truncated axis, and labels that never collide
    labels = ["before GRPO"] + [f"after, seed {s}" for s in params.grpo_seeds]
    axes[1].scatter([mid.pass1_before] + after, range(len(labels)), color=["C7"] + ["C2"] * len(runs), zorder=3)
    axes[1].set_yticks(range(len(labels)), labels)
    axes[1].invert_yaxis()
    axes[1].set_xlabel("exact held-out pass@1")
    axes[1].set_title(f"checkpoint at step {mid.step}; gain {mid.gain:+.3f} "
                      f"[{mid.gain_ci[0]:+.3f}, {mid.gain_ci[1]:+.3f}]", fontsize=9)
    fig.suptitle(f"03_pretraining_trajectory, profile {params.profile}: {params.grpo_optimizer} lr "
                 f"{params.grpo_lr:g}, {params.grpo_steps} steps; dashed: the collapse line "
                 f"(start − {COLLAPSE_TOLERANCE:g})", fontsize=9)
    return fig


@dataclass(frozen=True)
class ConfirmationParams(Sampling, TrajectoryParams):
    """The confirmation trajectories of the value-impact design and how their pre-RL factors
    are measured; shared by ``05_value_impact`` and ``07_probe`` so that both use the same
    cached trajectories and the same full-budget factors."""

    confirmation_seeds: tuple[int, ...] = spec((1, 2), lo=0, hi=2**31 - 1,
                                               help="trajectory seeds of the confirmation")
    checkpoint_grid: tuple[int, ...] = spec(PILOT_CHOSEN["checkpoint_grid"], lo=1, hi=1_000_000,
                                            help="confirmation checkpoint steps")
    signal_batches: int = spec(8, lo=2, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(32, lo=1, hi=100_000, help="prompts per batch of the signal S")
    factor_prompts: int = spec(200, lo=4, hi=100_000, help="training prompts of the pre-RL evaluation")

    def check(self) -> None:
        super().check()
        if max(self.checkpoint_grid) > self.pretrain_steps:
            raise ParameterError(f"parameter 'checkpoint_grid' has steps beyond 'pretrain_steps' "
                                 f"= {self.pretrain_steps}")

    def confirmation_config(self, seed: int) -> PretrainConfig:
        """The pretraining configuration of one confirmation trajectory."""
        return dataclasses.replace(self.pretrain_config(), seed=seed,
                                   checkpoint_at=tuple(self.checkpoint_grid))

    def confirmation_trajectories(self, progress: bool = True) -> dict[int, list]:
        """Each confirmation trajectory's checkpoints after step 0, by trajectory seed
        (pretrained once, then read from the cache)."""
        return {s: [c for c in pretrain(self.confirmation_config(s), device=self.device,
                                        progress=progress) if c.step > 0]
                for s in self.confirmation_seeds}

    def factor_jobs(self, trajectories: dict[int, list]) -> list[FactorJob]:
        """One :class:`FactorJob` per checkpoint of :meth:`confirmation_trajectories`; each
        trajectory's seed draws its signal batches."""
        return [FactorJob(str(c.path), c.step, self.confirmation_config(s), self.signal_batches,
                          self.signal_prompts, self.group_size, self.temperature, s,
                          self.factor_prompts, self.eval_samples, self.k, self.device)
                for s, cps in trajectories.items() for c in cps]
