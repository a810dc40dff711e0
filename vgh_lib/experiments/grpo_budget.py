"""The GRPO budget that every study running GRPO shares: mixins of the studies' parameter
classes (:class:`~vgh_lib.harness.params.NotebookParams`), each with the one ``grpo_config()``
that builds its runs. They live in ``experiments`` and not in ``harness`` because they build the
configurations of :mod:`vgh_lib.tiny.grpo` and :mod:`vgh_lib.lm.grpo`, which ``harness`` may not
import. A study overrides a default by declaring the field again.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgh_lib.harness.params import spec
from vgh_lib.lm.grpo import LMGRPOConfig
from vgh_lib.tiny.grpo import GRPOConfig


@dataclass(frozen=True)
class Sampling:
    """Mixin of a study that samples groups from a tiny transformer: ``group_size`` answers per
    prompt at temperature ``temperature``, in GRPO and in the pre-RL signal alike."""

    group_size: int = spec(8, lo=2, hi=256, help="GRPO group size G")
    temperature: float = spec(1.0, lo=0.05, hi=5.0, help="sampling temperature τ")


@dataclass(frozen=True)
class GRPOBudget(Sampling):
    """Mixin of a study that runs GRPO on tiny transformers: the budget of one run, and the one
    place its :class:`~vgh_lib.tiny.grpo.GRPOConfig` is built."""

    grpo_steps: int = spec(60, lo=1, hi=100_000, help="GRPO budget: optimizer steps")
    grpo_prompts: int = spec(16, lo=1, hi=4096, help="prompts per GRPO step")

    def grpo_config(self, *, lr: float, seed: int, optimizer: str = "adamw",
                    steps: int | None = None) -> GRPOConfig:
        """One GRPO run of this budget (``steps`` defaults to ``grpo_steps``)."""
        return GRPOConfig(steps=steps or self.grpo_steps, prompts_per_step=self.grpo_prompts,
                          group_size=self.group_size, temperature=self.temperature,
                          optimizer=optimizer, lr=lr, seed=seed)


@dataclass(frozen=True)
class LMGRPOBudget:
    """Mixin of a study that runs GRPO on a real LM (AdamW on the top ``train_layers`` blocks,
    sampling at τ = 1): the budget of one run, and the one place its
    :class:`~vgh_lib.lm.grpo.LMGRPOConfig` is built. The jobs' designs (notebooks 08 and 10)
    carry the same mixin, so a worker builds the same configuration."""

    grpo_steps: int = spec(20, lo=1, hi=100_000, help="GRPO budget: optimizer steps")
    grpo_prompts: int = spec(8, lo=1, hi=4096, help="prompts per GRPO step")
    group_size: int = spec(8, lo=2, hi=256, help="GRPO group size G")
    train_layers: int = spec(2, lo=1, hi=1000, help="top transformer blocks that GRPO trains")
    probe_every: int = spec(5, lo=1, hi=100_000, help="GRPO steps between probe values")

    def grpo_config(self, *, lr: float, seed: int, steps: int | None = None) -> LMGRPOConfig:
        """One GRPO run of this budget (``steps`` defaults to ``grpo_steps``)."""
        return LMGRPOConfig(steps=steps or self.grpo_steps, prompts_per_step=self.grpo_prompts,
                            group_size=self.group_size, lr=lr, train_layers=self.train_layers,
                            probe_every=self.probe_every, seed=seed)
