"""Notebook ``06_real_lm``: Theorem 2 in a real pretrained language model, SmolLM2-135M-Instruct
(THEORY.md §3 and §4b): its parameters, and the pre-registered thresholds of its claims.
The measurements are :mod:`vgh_lib.lm.costates`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgh_lib.errors import ParameterError
from vgh_lib.harness.params import PROFILE_NAMES, NotebookParams, spec


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
