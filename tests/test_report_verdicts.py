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


def test_the_findings_box_has_one_line_per_paper_result(tmp_path):
    import json

    from vgh_lib.driver import registry

    executed = tmp_path / "executed"
    executed.mkdir()
    names = [n for r in registry.RESULTS for n, nb in registry.NOTEBOOKS.items() if nb.result == r]
    assert set(names) == {n for n, nb in registry.NOTEBOOKS.items() if nb.paper_claim}
    c = ClaimSet(names[0], "smoke", {})
    c.add("a.z", "mean costate against the closed form (z)", 1.25, "<=", 3.0)
    (executed / f"{names[0]}.claims.json").write_text(json.dumps(c.record()))
    c = ClaimSet(names[1], "default", {})
    c.add("b.p", "primary", 0.4, "<=", 0.05, kind="empirical", not_shown=True)
    c.finding = "S beyond reward-std: +0.10"
    c.add_replication("seeds 21–26", "holds")
    (executed / f"{names[1]}.claims.json").write_text(json.dumps(c.record()))
    box = report.render_findings(executed, tmp_path)
    assert [l for l in box.splitlines() if l.startswith("- ")] == [f"- **{r}**" for r in registry.RESULTS]
    lines = [l for l in box.splitlines() if l.startswith("  - ")]
    assert len(lines) == len(names)
    assert "**holds for our reconstruction**. mean costate against the closed form (z): 1.25 (required <= 3)" in lines[0]
    assert "**not shown (the design could not show it)**. S beyond reward-std: +0.10 Registered " \
           "replications: seeds 21–26: holds." in lines[1]
    assert all("not run in this build" in l for l in lines[2:])
    assert "Not the default profile" in box      # one of them ran smoke
