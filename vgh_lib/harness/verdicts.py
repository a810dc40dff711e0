"""The verdict of a registered test, in the book's words: one home for the wording that
notebooks 11 and 12 share (and the "not shown" reading of an uninformative failure that the
landing page uses too).
"""

from __future__ import annotations

from dataclasses import dataclass

from vgh_lib.harness import glue


@dataclass
class Test:
    """A one-sided test: its statistic, its bounded 95 % interval and p-value (``p_holm``:
    Holm-adjusted within its family; the raw p for the primary test)."""

    name: str
    stat: float
    lo: float
    hi: float
    p: float
    holds: bool = False
    p_holm: float = float("nan")


NOT_SHOWN = "not shown (the design could not show it)"


def verdict(test: Test, informative: bool) -> str:
    """``holds``; else ``does not hold`` when the design had the registered power, and
    :data:`NOT_SHOWN` when the registration declared a failure uninformative."""
    if test.holds:
        return "holds"
    return "does not hold" if informative else NOT_SHOWN


def interval_text(test: Test) -> str:
    """``+0.12 [-0.30, +0.50]`` (:func:`vgh_lib.harness.glue.interval_text`)."""
    return glue.interval_text(test.stat, test.lo, test.hi)


def agreement_text(analyses: dict, is_informative: bool, seeds: str = "GRPO seeds") -> str:
    """Whether the run on ``seeds`` nobody tuned on reached the confirmation's verdicts (a
    sentence naming the tests whose verdicts differ). ``analyses`` maps run names to analyses
    with a ``primary`` test and a ``secondary`` family (this study's or notebook 12's)."""
    if "confirmation" not in analyses or "replication" not in analyses:
        return f"The run on {seeds} nobody tuned on is not committed yet, so no verdict can be compared."
    a, b = analyses["confirmation"], analyses["replication"]
    first = [verdict(a.primary, is_informative), *(verdict(t, True) for t in a.secondary)]
    second = [verdict(b.primary, is_informative), *(verdict(t, True) for t in b.secondary)]
    names = [a.primary.name, *(t.name for t in a.secondary)]
    differ = [n for n, x, y in zip(names, first, second) if x != y]
    if not differ:
        return f"On {seeds} nobody tuned on, every verdict was the same as the confirmation's."
    return (f"On {seeds} nobody tuned on, these verdicts differed from the confirmation's: "
            + "; ".join(differ) + ".")
