"""The notebooks and their run profiles, in one place.

Each notebook ``notebooks/NAME.ipynb`` has a frozen parameter dataclass in its experiment
module (:mod:`vgh_lib.experiments`) whose defaults are the ``default`` profile (the published
book) and equal the literals in the notebook's ``parameters`` cell. ``NOTEBOOKS[NAME].profiles``
holds the overrides for ``smoke`` (seconds, for the tests) and ``paper`` (larger, meant for a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vgh_lib.errors import ParameterError
from vgh_lib.experiments.actor_update import ActorUpdateParams
from vgh_lib.experiments.designs import PILOT_CHOSEN
from vgh_lib.experiments.gradient_factor import GradientParams
from vgh_lib.experiments.lm_gradient_factor import LMGradientParams
from vgh_lib.experiments.predictors import PredictorParams
from vgh_lib.experiments.probe_book import ProbeBookParams
from vgh_lib.experiments.real_lm import RealLMParams
from vgh_lib.experiments.real_lm_impact import RealLMImpactParams
from vgh_lib.experiments.task_suite import TaskSuiteParams
from vgh_lib.experiments.theorem1 import Theorem1Params
from vgh_lib.experiments.theorem2 import TransformerCostateParams
from vgh_lib.experiments.trajectory import PretrainGRPOParams
from vgh_lib.experiments.value_impact import ValueImpactParams
from vgh_lib.harness.params import PROFILE_NAMES, NotebookParams


# Notebook 10's smoke profile: the tiny model on three tasks, a few prompts and steps. Notebook 12
# runs the same design with two more tasks (its analysis needs four) and its own seeds.
SUITE_SMOKE = {"model_path": "tiny", "target": "greedy",
               "tasks": ("add two-digit", "first letter", "capitals"),
               "screen_prompts": 3, "screen_lo": 0.0, "screen_hi": 1.0,
               "min_tasks": 3, "train_limit": 4, "unseen_limit": 3,
               "seen_limit": 1, "min_unseen": 2, "probe_prompts": 2,
               "grpo_steps": 2, "grpo_prompts": 2, "group_size": 4,
               "train_layers": 1, "probe_every": 1, "short_steps": 1,
               "signal_batches": 3, "signal_prompts": 2, "coverage_k": 16,
               "n_boot": 200, "n_perm": 200, "coverage_sims": 10, "jobs": 1}


# The results of the paper, in the order the landing page's box reads them (our wording)
THEOREM_1 = "Theorem 1: BPTT costates are value gradients"
PROPOSITION = "The Proposition: PPO/GRPO actor updates are value-gradient-like in expectation"
THEOREM_2 = "Theorem 2: costates through attention approximate the value signal"
IMPACT_TOYS = "Value impact I = S·H ranks the gains of RL (tiny transformers)"
IMPACT_LM = "Value impact in a real pretrained LM (SmolLM2-135M)"
AGAINST_CHEAP = "Against the cheap predictors: does I, or its gradient factor, add to success rates?"
RESULTS = (THEOREM_1, PROPOSITION, THEOREM_2, IMPACT_TOYS, IMPACT_LM, AGAINST_CHEAP)


@dataclass(frozen=True)
class NotebookSpec:
    name: str
    title: str
    params: type[NotebookParams]
    profiles: dict[str, dict[str, Any]]
    paper_claim: bool = True   # one of the paper's results; False: a check of the book's own
    result: str = ""           # which result of the paper it reproduces (the landing page's box)


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
            result=THEOREM_1,
            title="Theorem 1: BPTT costates are value gradients",
            params=Theorem1Params,
            profiles={"smoke": {"n_rollouts": 4_000, "horizon": 10},
                      "default": {},
                      "paper": {"n_rollouts": 2_000_000, "n_state": 8, "n_action": 4,
                                "horizon": 50}},
        ),
        NotebookSpec(
            name="02_actor_update_estimators",
            result=PROPOSITION,
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
            paper_claim=False,   # the set-up the later chapters build on
            profiles={"smoke": {**SMOKE_TRAJECTORY, "grpo_steps": 5, "grpo_prompts": 8,
                                "grpo_seeds": (0, 1)},
                      "default": {},
                      "paper": {**PAPER_TRAJECTORY, "grpo_steps": 200, "grpo_prompts": 32}},
        ),
        NotebookSpec(
            name="04_transformer_costates",
            result=THEOREM_2,
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
            result=IMPACT_TOYS,
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
            result=THEOREM_2,
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
            title="Use it on your model: vgh probe on the book's trajectory",
            params=ProbeBookParams,
            paper_claim=False,   # a check of the book's own tool, vgh probe
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
            result=IMPACT_LM,
            title="Value impact in a real language model: tasks in SmolLM2-135M",
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
        NotebookSpec(
            name="09_what_predicts_rl_gain",
            result=AGAINST_CHEAP,
            title="What predicts the gain of RL? Value impact against the cheap predictors",
            params=PredictorParams,
            profiles={"smoke": {"recipes": ("base", "noisy corpus", "one layer"),
                                "recipe_seeds": (11, 12, 13), "pretrain_steps": 150,
                                "n_checkpoints": 6, "n_eval": 40, "eval_samples": 8, "k": 4,
                                "pass1_lo": 0.0, "pass1_hi": 1.0, "max_checkpoints": 3,
                                "grpo_steps": 3, "grpo_prompts": 4, "grpo_seeds": (0, 1),
                                "short_steps": 1, "signal_batches": 3, "signal_prompts": 4,
                                "factor_prompts": 16, "coverage_k": 16, "n_perm": 19,
                                "coverage_sims": 10, "jobs": 1},
                      "default": {},
                      # the default design with more seeds and checkpoints per recipe
                      "paper": {"grpo_seeds": (0, 1, 2, 3, 4, 5, 6, 7), "max_checkpoints": 10,
                                "device": "auto"}},
        ),
        NotebookSpec(
            name="10_real_lm_task_suite",
            result=IMPACT_LM,
            title="Value impact over a task suite in SmolLM2-135M, against an answer-prior control",
            params=TaskSuiteParams,
            profiles={"smoke": SUITE_SMOKE,
                      "default": {},
                      # more seeds and prompts; LoRA or all blocks would need a GPU
                      "paper": {"seeds": (1, 2, 3, 4, 5, 6, 7, 8), "train_limit": 256,
                                "unseen_limit": 200, "seen_limit": 200, "grpo_steps": 60,
                                "signal_prompts": 32, "device": "auto"}},
        ),
        NotebookSpec(
            name="11_gradient_factor",
            result=AGAINST_CHEAP,
            title="Does the gradient factor add to success rates? Exact S on the toys",
            params=GradientParams,
            profiles={"smoke": {"recipes": ("base", "noisy corpus", "one layer"),
                                "recipe_seeds": (21, 22, 23), "pretrain_steps": 150,
                                "n_checkpoints": 6, "n_eval": 40, "eval_samples": 8, "k": 4,
                                "pass1_lo": 0.0, "pass1_hi": 1.0, "max_checkpoints": 4,
                                "grpo_steps": 3, "grpo_prompts": 4, "grpo_seeds": (0, 1),
                                "signal_batches": 3, "signal_prompts": 4, "adamw_batches": 3,
                                "factor_prompts": 16, "coverage_k": 16, "n_perm": 19, "jobs": 1},
                      "default": {},
                      # the default design with more GRPO seeds and checkpoints per recipe
                      "paper": {"grpo_seeds": tuple(range(12)), "max_checkpoints": 10,
                                "device": "auto"}},
        ),
        NotebookSpec(
            name="12_lm_gradient_factor",
            result=AGAINST_CHEAP,
            title="Does the gradient factor add to reward-std in SmolLM2?",
            params=LMGradientParams,
            # the smoke profile: notebook 10's tiny model, five tasks (the analysis needs four)
            profiles={"smoke": {**SUITE_SMOKE, "tasks": SUITE_SMOKE["tasks"] + ("successor", "predecessor"),
                                "min_unseen": 1, "seeds": (5, 6), "control": True,
                                "adamw_batches": 3, "n_perm": 99},
                      "default": {},
                      # more GRPO seeds per task
                      "paper": {"seeds": tuple(range(5, 21)), "device": "auto"}},
        ),
    ]
}


def number(name: str) -> str:
    """A notebook's number ("09"), which its chapter's title, the sidebar and the text use."""
    return name.split("_", 1)[0]


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
