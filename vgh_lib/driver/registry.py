"""The notebooks and their run profiles, in one place.

Each notebook ``notebooks/NAME.ipynb`` has a frozen parameter dataclass in its experiment
module (:mod:`vgh_lib.experiments`) whose defaults are the ``default`` profile (the published
book) and equal the literals in the notebook's ``parameters`` cell; its ``PROFILES`` hold the
overrides for ``smoke`` (seconds, for the tests) and ``paper`` (larger, meant for a GPU). The
registry itself is a list of (name, title, parameter class) and which result each reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vgh_lib.errors import ParameterError
from vgh_lib.experiments.actor_update import ActorUpdateParams
from vgh_lib.experiments.gradient_factor import GradientParams
from vgh_lib.experiments.lm_gradient_factor import LMGradientParams
from vgh_lib.experiments.what_predicts_rl_gain import PredictorParams
from vgh_lib.experiments.probe import ProbeBookParams
from vgh_lib.experiments.real_lm import RealLMParams
from vgh_lib.experiments.real_lm_impact import RealLMImpactParams
from vgh_lib.experiments.real_lm_task_suite import TaskSuiteParams
from vgh_lib.experiments.theorem1 import Theorem1Params
from vgh_lib.experiments.transformer_costates import TransformerCostateParams
from vgh_lib.experiments.pretraining_trajectory import PretrainGRPOParams
from vgh_lib.experiments.value_impact import ValueImpactParams
from vgh_lib.harness.params import PROFILE_NAMES, NotebookParams, canonical_names


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
    params: type[NotebookParams]   # in the notebook's experiment module, with its PROFILES
    paper_claim: bool = True   # one of the paper's results; False: a check of the book's own
    result: str = ""           # which result of the paper it reproduces (the landing page's box)

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        """The run profiles' overrides, declared next to the parameters they override."""
        return self.params.PROFILES


NOTEBOOKS: dict[str, NotebookSpec] = {
    spec_.name: spec_ for spec_ in [
        NotebookSpec(
            name="01_costates_are_value_gradients",
            result=THEOREM_1,
            title="Theorem 1: BPTT costates are value gradients",
            params=Theorem1Params,
        ),
        NotebookSpec(
            name="02_actor_update_estimators",
            result=PROPOSITION,
            title="The actor update is value-gradient-like: SF, pathwise, PPO and GRPO",
            params=ActorUpdateParams,
        ),
        NotebookSpec(
            name="03_pretraining_trajectory",
            title="Tiny transformer policies: a pretraining trajectory and GRPO",
            params=PretrainGRPOParams,
            paper_claim=False,   # the set-up the later chapters build on
        ),
        NotebookSpec(
            name="04_transformer_costates",
            result=THEOREM_2,
            title="Theorem 2: costates inside a transformer",
            params=TransformerCostateParams,
        ),
        NotebookSpec(
            name="05_value_impact",
            result=IMPACT_TOYS,
            title="Value impact: where along the trajectory RL pays off",
            params=ValueImpactParams,
        ),
        NotebookSpec(
            name="06_real_lm",
            result=THEOREM_2,
            title="A real pretrained language model: Theorem 2 in SmolLM2-135M",
            params=RealLMParams,
        ),
        NotebookSpec(
            name="07_probe",
            title="Use it on your model: vgh probe on the book's trajectory",
            params=ProbeBookParams,
            paper_claim=False,   # a check of the book's own tool, vgh probe
        ),
        NotebookSpec(
            name="08_real_lm_impact",
            result=IMPACT_LM,
            title="Value impact in a real language model: tasks in SmolLM2-135M",
            params=RealLMImpactParams,
        ),
        NotebookSpec(
            name="09_what_predicts_rl_gain",
            result=AGAINST_CHEAP,
            title="What predicts the gain of RL? Value impact against the cheap predictors",
            params=PredictorParams,
        ),
        NotebookSpec(
            name="10_real_lm_task_suite",
            result=IMPACT_LM,
            title="Value impact over a task suite in SmolLM2-135M, against an answer-prior control",
            params=TaskSuiteParams,
        ),
        NotebookSpec(
            name="11_gradient_factor",
            result=AGAINST_CHEAP,
            title="Does the gradient factor add to success rates? Exact S on the toys",
            params=GradientParams,
        ),
        NotebookSpec(
            name="12_lm_gradient_factor",
            result=AGAINST_CHEAP,
            title="Does the gradient factor add to reward-std in SmolLM2?",
            params=LMGradientParams,
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
    parsed = canonical_names({k: nb.params.parse_value(k, v) if isinstance(v, str) else v
                              for k, v in overrides.items()}, nb.params.names())   # old names read as today's
    unknown = sorted(set(parsed) - set(nb.params.names()))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for "
                             f"{name}; allowed: {', '.join(nb.params.names())}")
    return nb.params.from_mapping({**nb.profiles.get(profile, {}), "profile": profile, **parsed})
