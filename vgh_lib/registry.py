"""The notebooks, their parameter classes and their run profiles, in one place.

Each notebook ``notebooks/NAME.ipynb`` has a frozen parameter dataclass whose
defaults are the ``default`` profile (the published book) and equal the literals
in the notebook's ``parameters`` cell. ``PROFILES[NAME]`` holds the overrides for
``smoke`` (seconds, for the tests) and ``paper`` (larger, meant for a GPU).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vgh_lib.lm_tasks import LM_TASKS
from vgh_lib.params import PROFILE_NAMES, NotebookParams, ParameterError, spec


@dataclass(frozen=True)
class RolloutParams(NotebookParams):
    """Parameters shared by the differentiable-rollout notebooks (01 and 02)."""

    seed: int = spec(0, lo=0, hi=2**31 - 1, help="seeds the systems, the policies and all noise")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")
    n_state: int = spec(4, lo=1, hi=8, help="state dimension n (LQR and tanh plant)")
    n_action: int = spec(2, lo=1, hi=4, help="action dimension m (LQR and tanh plant)")
    horizon: int = spec(20, lo=1, hi=50, help="number of steps T")
    sigma: float = spec(0.5, lo=0.01, hi=1.0, help="action noise scale σ")
    system: str = spec("tanh", choices=("tanh", "pendulum"), help="the nonlinear system")


@dataclass(frozen=True)
class Theorem1Params(RolloutParams):
    """Parameters of ``01_costates_are_value_gradients`` (THEORY.md §1)."""

    n_rollouts: int = spec(500_000, lo=1_000, hi=5_000_000, help="largest number of rollouts N")


@dataclass(frozen=True)
class ActorUpdateParams(RolloutParams):
    """Parameters of ``02_actor_update_estimators`` (THEORY.md §2)."""

    n_rollouts: int = spec(100_000, lo=1_024, hi=2_000_000, help="largest number of rollouts N")
    group_size: int = spec(16, lo=2, hi=256, help="GRPO group size G")
    hidden: int = spec(8, lo=1, hi=64, help="width of the MLP policy on the nonlinear system")
    ppo_epochs: int = spec(10, lo=1, hi=100, help="PPO inner epochs K on one batch")
    ppo_clip: float = spec(0.2, lo=0.01, hi=1.0, help="PPO clip range ε")
    ppo_step: float = spec(0.05, lo=1e-4, hi=1.0, help="PPO step per epoch, relative to ‖K‖")
    n_fd_rollouts: int = spec(20_000, lo=1_000, hi=1_000_000, help="rollouts of the finite-difference reference")

    def check(self) -> None:
        if self.n_rollouts < 4 * self.group_size:
            raise ParameterError(f"parameter 'n_rollouts' = {self.n_rollouts} must be at least "
                                 f"4 × group_size = {4 * self.group_size}")


@dataclass(frozen=True)
class TrajectoryParams(NotebookParams):
    """Parameters of the pretraining trajectory, shared by notebooks 03–05 so that they
    reuse the same cached checkpoints (see :class:`vgh_lib.pretrain.PretrainConfig`)."""

    seed: int = spec(0, lo=0, hi=2**31 - 1, help="seeds pretraining, sampling and GRPO")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")
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
    device: str = spec("cpu", choices=("cpu", "cuda", "auto"), help="torch device")

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ParameterError(f"parameter 'n_embd' = {self.n_embd} must be divisible by "
                                 f"'n_head' = {self.n_head}")
        if self.k > self.eval_samples:
            raise ParameterError(f"parameter 'k' = {self.k} must be at most "
                                 f"'eval_samples' = {self.eval_samples}")

    def pretrain_config(self):
        from vgh_lib.pretrain import PretrainConfig

        return PretrainConfig(
            task=self.task, n_digits=self.n_digits, corpus_clean_fraction=self.corpus_clean_fraction,
            n_layer=self.n_layer, n_embd=self.n_embd, n_head=self.n_head,
            pretrain_steps=self.pretrain_steps, n_checkpoints=self.n_checkpoints,
            batch_size=self.batch_size, lr=self.pretrain_lr, seed=self.seed, n_eval=self.n_eval,
            eval_samples=self.eval_samples, k=self.k)


# The GRPO design chosen on the pilot trajectory (seed 0) by the pre-registered rules of
# book/05_preregistration.md; committed before any confirmation run.
PILOT_CHOSEN = {"adamw_lr": 3e-4, "sgd_lr": 0.01, "grpo_steps": 60,
                "checkpoint_grid": (86, 113, 150, 198, 262, 346, 458, 605, 800, 3000)}


@dataclass(frozen=True)
class PretrainGRPOParams(TrajectoryParams):
    """Parameters of ``03_pretraining_trajectory`` (THEORY.md §3–§4 groundwork)."""

    grpo_steps: int = spec(PILOT_CHOSEN["grpo_steps"], lo=1, hi=100_000, help="GRPO budget: optimizer steps")
    grpo_prompts: int = spec(16, lo=1, hi=4096, help="prompts per GRPO step")
    group_size: int = spec(8, lo=2, hi=256, help="GRPO group size G")
    grpo_optimizer: str = spec("adamw", choices=("adamw", "sgd"), help="GRPO optimizer")
    grpo_lr: float = spec(PILOT_CHOSEN["adamw_lr"], lo=1e-7, hi=100.0,
                          help="GRPO learning rate (chosen on the pilot for AdamW)")
    temperature: float = spec(1.0, lo=0.05, hi=5.0, help="sampling temperature τ")
    grpo_seeds: tuple[int, ...] = spec((0, 1, 2, 3), lo=0, hi=2**31 - 1,
                                       help="GRPO seeds from the mid checkpoint")

@dataclass(frozen=True)
class TransformerCostateParams(TrajectoryParams):
    """Parameters of ``04_transformer_costates`` (THEORY.md §3, Theorem 2)."""

    n_prompts: int = spec(4, lo=1, hi=64, help="held-out prompts per cell")
    n_rollouts: int = spec(2000, lo=4, hi=100_000, help="rollouts per prompt and cell")
    temperatures: tuple[float, ...] = spec((0.25, 0.5, 1.0, 2.0), lo=0.05, hi=10.0,
                                           help="policy temperatures τ")
    relax_temperatures: tuple[float, ...] = spec((0.1, 0.3, 1.0), lo=0.01, hi=10.0,
                                                 help="relaxation temperatures τ_r")
    identity_rollouts: int = spec(4000, lo=4, hi=1_000_000,
                                  help="rollouts per prompt for the exact-gradient identity")
    fidelity_rollouts: int = spec(2048, lo=128, hi=1_000_000,
                                  help="rollouts per prompt for the one-batch fidelity curve")
    share_prompts: int = spec(64, lo=2, hi=200, help="prompts for the attention-only share")
    jobs: int = spec(2, lo=1, hi=64, help="worker processes (checkpoints in parallel)")

    def check(self) -> None:
        super().check()
        if self.share_prompts > self.n_eval:
            raise ParameterError(f"parameter 'share_prompts' = {self.share_prompts} must be at "
                                 f"most 'n_eval' = {self.n_eval}")


@dataclass(frozen=True)
class ConfirmationParams(TrajectoryParams):
    """The confirmation trajectories of the value-impact design and how their pre-RL factors
    are measured; shared by ``05_value_impact`` and ``07_probe`` so that both use the same
    cached trajectories and the same full-budget factors."""

    confirmation_seeds: tuple[int, ...] = spec((1, 2), lo=0, hi=2**31 - 1,
                                               help="trajectory seeds of the confirmation")
    checkpoint_grid: tuple[int, ...] = spec(PILOT_CHOSEN["checkpoint_grid"], lo=1, hi=1_000_000,
                                            help="confirmation checkpoint steps")
    group_size: int = spec(8, lo=2, hi=256, help="GRPO group size G")
    temperature: float = spec(1.0, lo=0.05, hi=5.0, help="sampling temperature τ")
    signal_batches: int = spec(8, lo=2, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(32, lo=1, hi=100_000, help="prompts per batch of the signal S")
    factor_prompts: int = spec(200, lo=4, hi=100_000, help="training prompts of the pre-RL evaluation")

    def check(self) -> None:
        super().check()
        if max(self.checkpoint_grid) > self.pretrain_steps:
            raise ParameterError(f"parameter 'checkpoint_grid' has steps beyond 'pretrain_steps' "
                                 f"= {self.pretrain_steps}")

    def confirmation_config(self, seed: int):
        """The pretraining configuration of one confirmation trajectory."""
        return dataclasses.replace(self.pretrain_config(), seed=seed,
                                   checkpoint_at=tuple(self.checkpoint_grid))


@dataclass(frozen=True)
class ValueImpactParams(ConfirmationParams):
    """Parameters of ``05_value_impact`` (THEORY.md §4, the paper's Figure 1).

    ``seed`` is the *pilot* trajectory (the design was chosen on it); the confirmation runs on
    the trajectories ``confirmation_seeds`` with checkpoints at ``checkpoint_grid``.
    """

    grpo_steps: int = spec(PILOT_CHOSEN["grpo_steps"], lo=1, hi=100_000, help="GRPO budget: optimizer steps")
    grpo_prompts: int = spec(16, lo=1, hi=4096, help="prompts per GRPO step")
    adamw_lr: float = spec(PILOT_CHOSEN["adamw_lr"], lo=1e-7, hi=1.0, help="AdamW learning rate")
    sgd_lr: float = spec(PILOT_CHOSEN["sgd_lr"], lo=1e-7, hi=100.0, help="SGD learning rate")
    seeds: tuple[int, ...] = spec((0, 1, 2, 3), lo=0, hi=2**31 - 1, help="GRPO seeds per checkpoint")
    n_boot: int = spec(2000, lo=10, hi=100_000, help="nested-bootstrap resamples")
    n_perm: int = spec(10_000, lo=10, hi=1_000_000, help="permutations of the p-value")
    pilot: bool = spec(True, help="rerun the pilot and show what the pre-registered rules choose")
    jobs: int = spec(2, lo=1, hi=64, help="worker processes for the GRPO runs")

    def check(self) -> None:
        super().check()
        if self.seed in self.confirmation_seeds:
            raise ParameterError(f"parameter 'confirmation_seeds' = {self.confirmation_seeds} must "
                                 f"not contain the pilot trajectory 'seed' = {self.seed}")
        if len(self.seeds) < 2:
            raise ParameterError("parameter 'seeds' needs at least 2 GRPO seeds for intervals")


@dataclass(frozen=True)
class RealLMParams(NotebookParams):
    """Parameters of ``06_real_lm`` (THEORY.md §3 and §4b on SmolLM2-135M)."""

    seed: int = spec(0, lo=0, hi=2**31 - 1, help="seeds every rollout")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")
    model_path: str = spec("smollm2", help="'smollm2' (the shipped SmolLM2-135M-Instruct), 'tiny' "
                                           "(a tiny random llama), a .gguf file or a local causal-LM directory")
    target: str = spec("task", choices=("task", "greedy"),
                       help="reward target: the task's answer, or the model's own greedy answer")
    per_task: int = spec(8, lo=1, hi=400, help="held-out prompts per task in the capability screen")
    n_prompts: int = spec(4, lo=1, hi=64, help="prompts for the Theorem 2 measurements")
    value_lo: float = spec(0.1, lo=0.0, hi=1.0, help="a Theorem 2 prompt has V^D ≥ value_lo")
    value_hi: float = spec(0.9, lo=0.0, hi=1.0, help="a Theorem 2 prompt has V^D ≤ value_hi")
    n_rollouts: int = spec(512, lo=16, hi=1_000_000, help="rollouts per prompt for λ^D (τ = 1)")
    group_size: int = spec(16, lo=2, hi=4096, help="GRPO group size G of the identity test")
    group_sizes: tuple[int, ...] = spec((2, 4, 8, 16, 32, 64), lo=2, hi=65536,
                                        help="group sizes G of the one-batch fidelity curve")
    temperatures: tuple[float, ...] = spec((0.5, 1.0, 2.0), lo=0.05, hi=10.0, help="policy temperatures τ")
    relax_temperatures: tuple[float, ...] = spec((0.1, 0.3, 1.0), lo=0.01, hi=10.0,
                                                 help="relaxation temperatures τ_r")
    relax_rollouts: int = spec(128, lo=8, hi=1_000_000, help="relaxed rollouts per prompt and cell")
    relax_blocks: int = spec(4, lo=3, hi=64, help="independent blocks of the relaxed rollouts (folds)")
    device: str = spec("cpu", choices=("cpu", "cuda", "auto"), help="torch device")

    def check(self) -> None:
        if self.value_lo > self.value_hi:
            raise ParameterError(f"parameter 'value_lo' = {self.value_lo} must be at most "
                                 f"'value_hi' = {self.value_hi}")
        if self.n_rollouts < 3 * self.group_size:
            raise ParameterError(f"parameter 'n_rollouts' = {self.n_rollouts} must be at least "
                                 f"3 × group_size = {3 * self.group_size}")
        if self.relax_rollouts % self.relax_blocks:
            raise ParameterError(f"parameter 'relax_rollouts' = {self.relax_rollouts} must be a "
                                 f"multiple of 'relax_blocks' = {self.relax_blocks}")


# The design that the pre-registered rules of book/08_preregistration.md chose on the pilot
# (GRPO seed 0); committed before the confirmation ran.
REAL_LM_CHOSEN = {"lr": 3e-4}


@dataclass(frozen=True)
class RealLMImpactParams(NotebookParams):
    """Parameters of ``08_real_lm_impact`` (THEORY.md §4 across tasks in SmolLM2-135M; the
    design is pre-registered in book/08_preregistration.md)."""

    seed: int = spec(0, lo=0, hi=2**31 - 1, help="seeds the signal's batches and the bootstrap")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")
    model_path: str = spec("smollm2", help="'smollm2' (the shipped SmolLM2-135M-Instruct), 'tiny' "
                                           "(a tiny random llama), a .gguf file or a local causal-LM directory")
    target: str = spec("task", choices=("task", "greedy"),
                       help="reward target: the task's answer, or the model's own greedy answer")
    tasks: tuple[str, ...] = spec(LM_TASKS, choices=LM_TASKS, help="the tasks (design points)")
    train_limit: int = spec(64, lo=2, hi=100_000, help="training prompts per task (GRPO, S, factors)")
    held_out_limit: int = spec(32, lo=1, hi=100_000, help="held-out prompts per task (the gain)")
    probe_prompts: int = spec(12, lo=1, hi=100_000, help="training prompts of the exact probe value")
    grpo_steps: int = spec(20, lo=1, hi=100_000, help="GRPO budget: optimizer steps")
    grpo_prompts: int = spec(8, lo=1, hi=4096, help="prompts per GRPO step")
    group_size: int = spec(8, lo=2, hi=256, help="GRPO group size G")
    train_layers: int = spec(2, lo=1, hi=1000, help="top transformer blocks that GRPO trains")
    probe_every: int = spec(5, lo=1, hi=100_000, help="GRPO steps between probe values")
    lr: float = spec(REAL_LM_CHOSEN["lr"], lo=1e-8, hi=1.0, help="AdamW learning rate (committed)")
    seeds: tuple[int, ...] = spec((1, 2, 3), lo=1, hi=2**31 - 1,
                                  help="GRPO seeds of the confirmation (seed 0 is the pilot's)")
    signal_batches: int = spec(8, lo=2, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(8, lo=1, hi=100_000, help="distinct prompts per batch of the signal S")
    k: int = spec(8, lo=1, hi=1024, help="the k of pass@k in the headroom H")
    n_boot: int = spec(2000, lo=100, hi=1_000_000, help="bootstrap resamples")
    n_perm: int = spec(10_000, lo=100, hi=10_000_000, help="permutations of the Spearman test")
    pilot: bool = spec(True, help="rerun the pilot and show what the pre-registered rules choose")
    pilot_steps: int = spec(20, lo=1, hi=100_000, help="GRPO steps of each pilot run")
    jobs: int = spec(2, lo=1, hi=256, help="worker processes")
    device: str = spec("cpu", choices=("cpu", "cuda", "auto"), help="torch device")

    def check(self) -> None:
        if len(self.tasks) < 3:
            raise ParameterError(f"parameter 'tasks' needs at least 3 tasks for a rank correlation, "
                                 f"got {len(self.tasks)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ParameterError(f"parameter 'tasks' repeats a task: {self.tasks}")
        if self.signal_prompts > self.train_limit:
            raise ParameterError(f"parameter 'signal_prompts' = {self.signal_prompts} must be at most "
                                 f"'train_limit' = {self.train_limit}")

    def design(self):
        """The :class:`vgh_lib.lm_impact.Design` of these parameters."""
        from vgh_lib.lm_impact import Design

        return Design(model_path=self.model_path, target=self.target, device=self.device,
                      train_limit=self.train_limit, held_out_limit=self.held_out_limit,
                      probe_prompts=self.probe_prompts, steps=self.grpo_steps,
                      prompts_per_step=self.grpo_prompts, group_size=self.group_size,
                      train_layers=self.train_layers, probe_every=self.probe_every,
                      signal_batches=self.signal_batches, signal_prompts=self.signal_prompts, k=self.k)


@dataclass(frozen=True)
class ProbeBookParams(ConfirmationParams):
    """Parameters of ``07_probe``: ``vgh probe`` (vgh_lib.probe) on the confirmation
    trajectories of ``05_value_impact``, against that notebook's full-budget factors.

    The trajectory and reference parameters default to notebook 05's, so both notebooks use
    the same cached trajectories and the reference factors are notebook 05's own; the
    ``probe_*`` parameters default to ``vgh probe``'s defaults (``ProbeConfig``).
    """

    probe_samples: int = spec(8, lo=2, hi=1024, help="probe: completions per prompt (--samples)")
    probe_k: int = spec(4, lo=1, hi=1024, help="probe: k of pass@k (--k)")
    probe_batches: int = spec(4, lo=3, hi=1000, help="probe: batches of S (--batches)")
    probe_prompts: int = spec(24, lo=3, hi=100_000, help="probe: prompts in all (--prompts)")
    probe_seeds: tuple[int, ...] = spec((0, 1, 2, 3, 4), lo=0, hi=2**31 - 1,
                                        help="probe seeds (--seed), to show its own scatter")
    jobs: int = spec(2, lo=1, hi=64, help="worker processes for the reference factors")

    def check(self) -> None:
        super().check()
        if self.probe_k > self.probe_samples:
            raise ParameterError(f"parameter 'probe_k' = {self.probe_k} must be at most "
                                 f"'probe_samples' = {self.probe_samples}")
        if self.probe_prompts % self.probe_batches:
            raise ParameterError(f"parameter 'probe_prompts' = {self.probe_prompts} must be a "
                                 f"multiple of 'probe_batches' = {self.probe_batches}")
        if len(self.checkpoint_grid) < 3:
            raise ParameterError("parameter 'checkpoint_grid' needs at least 3 steps to rank")


@dataclass(frozen=True)
class NotebookSpec:
    name: str
    title: str
    params: type[NotebookParams]
    profiles: dict[str, dict[str, Any]]


# The trajectory parameters of each profile, shared by notebooks 03-05 so that they reuse
# one cached trajectory per profile.
SMOKE_TRAJECTORY = {"pretrain_steps": 150, "n_checkpoints": 4, "n_eval": 40, "eval_samples": 8,
                    "k": 4}
PAPER_TRAJECTORY = {"n_digits": 3, "n_layer": 4, "n_embd": 128, "pretrain_steps": 20_000,
                    "n_checkpoints": 16, "n_eval": 500, "eval_samples": 32, "device": "auto"}

NOTEBOOKS: dict[str, NotebookSpec] = {
    spec_.name: spec_ for spec_ in [
        NotebookSpec(
            name="01_costates_are_value_gradients",
            title="Theorem 1: BPTT costates are value gradients",
            params=Theorem1Params,
            profiles={"smoke": {"n_rollouts": 4_000, "horizon": 10},
                      "default": {},
                      "paper": {"n_rollouts": 2_000_000, "n_state": 8, "n_action": 4,
                                "horizon": 50}},
        ),
        NotebookSpec(
            name="02_actor_update_estimators",
            title="The actor update is value-gradient-like: SF, pathwise, PPO and GRPO",
            params=ActorUpdateParams,
            profiles={"smoke": {"n_rollouts": 4_096, "horizon": 8, "n_fd_rollouts": 2_000},
                      "default": {},
                      "paper": {"n_rollouts": 1_000_000, "n_state": 8, "n_action": 4,
                                "horizon": 50, "hidden": 32, "n_fd_rollouts": 200_000}},
        ),
        NotebookSpec(
            name="03_pretraining_trajectory",
            title="Tiny transformer policies: a pretraining trajectory and GRPO",
            params=PretrainGRPOParams,
            profiles={"smoke": {**SMOKE_TRAJECTORY, "grpo_steps": 5, "grpo_prompts": 8,
                                "grpo_seeds": (0, 1)},
                      "default": {},
                      "paper": {**PAPER_TRAJECTORY, "grpo_steps": 200, "grpo_prompts": 32}},
        ),
        NotebookSpec(
            name="04_transformer_costates",
            title="Theorem 2: costates inside a transformer",
            params=TransformerCostateParams,
            profiles={"smoke": {**SMOKE_TRAJECTORY, "n_prompts": 2, "n_rollouts": 16,
                                "temperatures": (0.5, 1.0), "relax_temperatures": (0.3,),
                                "identity_rollouts": 64, "fidelity_rollouts": 128,
                                "share_prompts": 8, "jobs": 1},
                      "default": {},
                      "paper": {**PAPER_TRAJECTORY, "n_prompts": 8, "n_rollouts": 4000,
                                "temperatures": (0.25, 0.5, 1.0, 2.0, 3.0),
                                "relax_temperatures": (0.1, 0.3, 1.0), "identity_rollouts": 20_000}},
        ),
        NotebookSpec(
            name="05_value_impact",
            title="Value impact: where along the trajectory RL pays off",
            params=ValueImpactParams,
            profiles={"smoke": {**SMOKE_TRAJECTORY, "grpo_steps": 3, "grpo_prompts": 4,
                                "checkpoint_grid": (20, 40, 80, 150),
                                "seeds": (0, 1), "signal_batches": 3, "signal_prompts": 4,
                                "factor_prompts": 8, "n_boot": 50, "n_perm": 100,
                                "pilot": False, "jobs": 1},
                      "default": {},
                      # the default design, its grid scaled to the longer trajectory
                      "paper": {**PAPER_TRAJECTORY, "grpo_steps": 200, "grpo_prompts": 32,
                                "seeds": (0, 1, 2, 3, 4, 5, 6, 7), "signal_prompts": 128,
                                "checkpoint_grid": tuple(round(s * 20_000 / 3000) for s in
                                                         PILOT_CHOSEN["checkpoint_grid"])}},
        ),
        NotebookSpec(
            name="06_real_lm",
            title="A real pretrained language model: Theorem 2 in SmolLM2-135M",
            params=RealLMParams,
            profiles={"smoke": {"model_path": "tiny", "target": "greedy", "per_task": 2,
                                "n_prompts": 2, "value_lo": 0.0, "value_hi": 1.0,
                                "n_rollouts": 64, "group_size": 8, "group_sizes": (2, 4, 8),
                                "temperatures": (1.0,), "relax_temperatures": (0.3, 1.0),
                                "relax_rollouts": 32},
                      "default": {},
                      "paper": {"per_task": 40, "n_prompts": 12, "n_rollouts": 8192,
                                "group_sizes": (2, 4, 8, 16, 32, 64, 128, 256),
                                "temperatures": (0.25, 0.5, 1.0, 2.0),
                                "relax_rollouts": 4096, "relax_blocks": 8, "device": "auto"}},
        ),
        NotebookSpec(
            name="07_probe",
            title="vgh probe on the book's trajectory: the cheap factors against notebook 05's",
            params=ProbeBookParams,
            profiles={"smoke": {**SMOKE_TRAJECTORY, "confirmation_seeds": (1,),
                                "checkpoint_grid": (20, 40, 80, 150), "signal_batches": 3,
                                "signal_prompts": 4, "factor_prompts": 8, "probe_batches": 3,
                                "probe_prompts": 12, "probe_seeds": (0, 1), "jobs": 1},
                      "default": {},
                      "paper": {**PAPER_TRAJECTORY, "signal_prompts": 128,
                                "checkpoint_grid": tuple(round(s * 20_000 / 3000) for s in
                                                         PILOT_CHOSEN["checkpoint_grid"])}},
        ),
        NotebookSpec(
            name="08_real_lm_impact",
            title="Value impact across tasks in SmolLM2-135M",
            params=RealLMImpactParams,
            profiles={"smoke": {"model_path": "tiny", "target": "greedy",
                                "tasks": ("products", "sums", "differences"), "train_limit": 6,
                                "held_out_limit": 4, "probe_prompts": 3, "grpo_steps": 2,
                                "grpo_prompts": 2, "group_size": 4, "train_layers": 1,
                                "probe_every": 1, "seeds": (1, 2), "signal_batches": 3,
                                "signal_prompts": 2, "n_boot": 200, "n_perm": 200,
                                "pilot_steps": 2, "jobs": 1},
                      "default": {},
                      "paper": {"train_limit": 400, "held_out_limit": 200, "probe_prompts": 64,
                                "grpo_steps": 60, "train_layers": 30, "seeds": tuple(range(1, 9)),
                                "signal_prompts": 32, "device": "auto"}},
        ),
    ]
}


def get(name: str) -> NotebookSpec:
    """The notebook called ``name`` (a ``.ipynb`` suffix is ignored)."""
    name = name.removesuffix(".ipynb")
    if name not in NOTEBOOKS:
        raise ParameterError(f"unknown notebook {name!r}; available: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[name]


def resolve(name: str, profile: str = "default",
            overrides: dict[str, Any] | None = None) -> NotebookParams:
    """Defaults ⊕ profile ⊕ overrides, validated. String overrides are parsed by type.

    Raises :class:`ParameterError` (naming the parameter and what is allowed) before
    anything runs.
    """
    nb = get(name)
    if profile not in PROFILE_NAMES:
        raise ParameterError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILE_NAMES)}")
    overrides = dict(overrides or {})
    if "profile" in overrides:
        raise ParameterError("set the profile with --profile, not as parameter 'profile'")
    parsed = {k: nb.params.parse_value(k, v) if isinstance(v, str) else v
              for k, v in overrides.items()}
    unknown = sorted(set(parsed) - set(nb.params.names()))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for "
                             f"{name}; allowed: {', '.join(nb.params.names())}")
    return nb.params.from_mapping({**nb.profiles.get(profile, {}), "profile": profile, **parsed})
