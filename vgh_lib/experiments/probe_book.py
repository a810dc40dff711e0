"""Notebook ``07_probe``: ``vgh probe`` (:mod:`vgh_lib.tools.probe`) on the confirmation
trajectories of notebook 05, against that notebook's full-budget factors.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgh_lib.errors import ParameterError
from vgh_lib.experiments.value_impact import ConfirmationParams
from vgh_lib.harness.params import spec
from vgh_lib.tools.probe import ProbeConfig, ProbeJob


@dataclass(frozen=True)
class ProbeBookParams(ConfirmationParams):
    """Parameters of ``07_probe``: ``vgh probe`` (vgh_lib.tools.probe) on the confirmation
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

    def probe_config(self, seed: int) -> ProbeConfig:
        """``vgh probe``'s configuration with probe seed ``seed``."""
        return ProbeConfig(samples=self.probe_samples, k=self.probe_k, batches=self.probe_batches,
                           prompts=self.probe_prompts, temperature=self.temperature, seed=seed,
                           device=self.device)

    def probe_jobs(self, trajectories: dict[int, list]) -> list[tuple[tuple[int, int], ProbeJob]]:
        """``((trajectory seed, probe seed), job)`` for every probe seed and checkpoint, in that
        order (the checkpoints of a trajectory and seed stay in step order)."""
        return [((s, ps), ProbeJob(str(c.path), self.task, self.probe_config(ps), self.n_digits))
                for s, cps in trajectories.items() for ps in self.probe_seeds for c in cps]

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
