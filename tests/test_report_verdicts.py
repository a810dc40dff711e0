"""The landing page's reading of a chapter: a failure the registration declared uninformative,
and the registered replications next to the original verdict."""

from __future__ import annotations

import pytest

from vgh_lib.driver import report
from vgh_lib.harness.claims import ClaimSet


def _claims(not_shown: bool) -> list[dict]:
    c = ClaimSet("12_lm_gradient_factor", "smoke", {})
    c.add("p.primary", "primary", 0.4, "<=", 0.05, kind="empirical",
          fails_if="the data do not show it", not_shown=not_shown)
    c.add("p.secondary", "secondary", 0.9, "<=", 0.05, kind="empirical", fails_if="no")
    return c.record()["claims"]


def test_an_uninformative_failure_reads_not_shown_never_does_not_hold():
    assert report.chapter_status(_claims(False)) == report.NOT_REPRODUCED
    claims = _claims(True)
    assert report.chapter_status(claims) == report.NOT_SHOWN
    assert report.WORDING[True][report.NOT_SHOWN] == "not shown (the design could not show it)"
    failed = report.what_failed(claims)
    # the uninformative claim prints the registered reading, not its fails_if text
    assert "`p.primary` = 0.4 (required <= 0.05): not shown" in failed
    assert "the data do not show it" not in failed and "`p.secondary` = 0.9 (required <= 0.05): no" in failed
    # an identity failure still wins
    ident = {**claims[0], "kind": "identity", "not_shown": False}
    assert report.chapter_status([ident, *claims]) == report.NOT_REPRODUCED


def test_only_empirical_claims_can_be_declared_uninformative():
    with pytest.raises(ValueError, match="empirical"):
        ClaimSet("x", "smoke", {}).add("a", "a", 1.0, "<=", 0.0, not_shown=True)


def test_replications_follow_the_finding_with_their_own_verdicts():
    c = ClaimSet("12_lm_gradient_factor", "smoke", {})
    c.finding = "exact S beyond reward-std: not shown"
    c.add_replication("GRPO seeds 21–26", "holds")
    c.add_replication("recipe seeds 51–56", "not shown (the design could not show it)")
    line = report.one_line(c.record())
    assert line == ("exact S beyond reward-std: not shown Registered replications: GRPO seeds 21–26: "
                    "holds; recipe seeds 51–56: not shown (the design could not show it).")
    assert report.one_line({"finding": "f"}) == "f"


def test_a_build_that_is_not_default_says_so():
    assert report.profile_banner({"a": {"profile": "default"}, "b": None}) == []
    banner = "\n".join(report.profile_banner({"a": {"profile": "smoke"}, "b": {"profile": "default"}}))
    assert "`default`, `smoke`" in banner and "not its results" in banner
