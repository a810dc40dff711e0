import json
import math

import nbformat
import pytest

from vgh_lib.harness import claims as cm


@pytest.mark.parametrize("value,op,thr,ok", [
    (0.01, "<=", 0.02, True), (0.03, "<=", 0.02, False), (0.02, "<=", 0.02, True),
    (0.995, ">=", 0.99, True), (0.98, ">=", 0.99, False),
    (-0.5, "in", [-0.65, -0.35], True), (-0.3, "in", [-0.65, -0.35], False),
    (float("nan"), ">=", 0.0, False), (None, "<=", 1.0, False),
    (0.1, ">", 0.0, True), (0.0, ">", 0.0, False),
])
def test_evaluate(value, op, thr, ok):
    assert cm.evaluate(value, op, thr) is ok


def test_gating_rules():
    s = cm.ClaimSet("nb", "smoke", {})
    stat = s.add("a", "statistical identity", 1.0, "<=", 0.5)
    exact = s.add("b", "exact identity", 1.0, "<=", 0.5, exact=True)
    emp = s.add("c", "empirical", 1.0, "<=", 0.5, kind="empirical")
    assert not stat.gates("smoke") and stat.gates("default") and stat.gates("paper")
    assert exact.gates("smoke")
    assert not emp.gates("default")
    assert [c.id for c in s.failures()] == ["b"]


def test_add_refuses_bad_input():
    s = cm.ClaimSet("nb", "default", {})
    with pytest.raises(ValueError, match="op must be"):
        s.add("x", "", 1.0, "<", 2)
    with pytest.raises(ValueError, match="kind must be"):
        s.add("x", "", 1.0, "<=", 2, kind="guess")
    s.add("x", "", 1.0, "<=", 2)
    with pytest.raises(ValueError, match="twice"):
        s.add("x", "", 1.0, "<=", 2)


def test_record_schema():
    s = cm.ClaimSet("nb", "default", {"seed": 1})
    s.add("x.y", "stmt", 0.5, "in", [0, 1], ci=[0.4, 0.6])
    rec = s.record()
    assert set(rec) == {"notebook", "profile", "parameters", "git_commit", "created", "claims",
                        "finding", "replications", "figures"}
    assert rec["finding"] == ""  # a notebook that chooses no one-line finding
    c = rec["claims"][0]
    assert {"id", "statement", "kind", "value", "op", "threshold", "passed", "ci"} <= set(c)
    assert c["passed"] is True and c["threshold"] == [0.0, 1.0] and c["ci"] == [0.4, 0.6]
    json.dumps(rec)  # serialisable


def test_format_value():
    assert cm.format_value(0.012345) == "0.01235"
    assert cm.format_value(5.9e-16) == "5.900e-16"
    assert cm.format_value(500000) == cm.format_value(500000.0) == "500,000"  # not "5.000e+05"
    assert cm.format_value(500000.5) == "5.000e+05"
    assert cm.format_value(-3.0) == "-3"
    assert cm.format_value(1234) == "1,234"
    assert cm.format_value(float("nan")) == "n/a"
    assert cm.format_value(0) == "0"
    assert cm.format_value(0.9999998) == "0.9999998"  # not "1"
    assert cm.format_value(1.0) == "1"


def test_finish_glues_records_and_raises_on_gating_failure():
    """Run finish() in a real kernel-free setting and read the record back."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    outputs = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: outputs.append(
        {"output_type": "display_data", "data": data, "metadata": metadata or {}})
    s = cm.ClaimSet("nb", "default", {"seed": 0})
    s.add("ok", "holds", 0.1, "<=", 1.0)
    s.add("bad", "fails", 2.0, "<=", 1.0)
    with pytest.raises(cm.ClaimFailure, match="bad: value 2, required <= 1"):
        s.finish()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", outputs=outputs)])
    rec = cm.read_claims_from_notebook(nb)
    assert rec["notebook"] == "nb"
    assert [c["passed"] for c in rec["claims"]] == [True, False]
    names = {o["metadata"].get("scrapbook", {}).get("name") for o in outputs}
    assert {"ok", "ok.verdict", "bad.threshold", cm.CLAIMS_GLUE_KEY} <= names
    assert not math.isnan(rec["claims"][0]["value"])


def test_require_ci():
    s = cm.ClaimSet("nb", "default", {})
    assert s.add("a", "", 0.1, ">", 0.0, kind="empirical", ci=[0.02, 0.2], require_ci=True).passed
    assert not s.add("b", "", 0.1, ">", 0.0, kind="empirical", ci=[-0.01, 0.2], require_ci=True).passed
    with pytest.raises(ValueError, match="require_ci"):
        s.add("c", "", 0.1, ">", 0.0, require_ci=True)
