"""Pre-registered claims: recorded, glued into the book, and gated.

Each notebook declares its claims with thresholds fixed before its default run (for
notebooks 05 and 08, in book/05_preregistration.md and book/08_preregistration.md) and
records the measured value. ``identity`` claims are what
must hold within numerical or statistical tolerance; ``empirical`` claims are what
the paper predicts and we test. A failed empirical claim is recorded and shown,
never hidden. A failed identity claim fails the run (the notebook raises
:class:`ClaimFailure` after displaying and recording everything), except in the
``smoke`` profile, where only claims marked ``exact`` gate: smoke runs are too small
for statistical tolerances.

The record is glued (hidden) under the key ``vgh.claims``; ``vgh run`` reads it from
the executed notebook and writes ``NAME.claims.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from vgh_lib.common import plots
from vgh_lib.harness.glue import Raw, Shown, format_threshold, format_value
from vgh_lib.paths import REPO_ROOT

CLAIMS_GLUE_KEY = "vgh.claims"
OPS = ("<=", ">=", ">", "in")
KINDS = ("identity", "empirical")


class ClaimFailure(AssertionError):
    """An identity claim that gates this profile did not hold."""


@dataclass
class Claim:
    """One pre-registered claim and its measured value."""

    id: str
    statement: str
    kind: str
    value: float | None
    op: str
    threshold: float | list[float]
    passed: bool
    ci: list[float] | None = None
    exact: bool = False
    fails_if: str = ""
    # the registration declared a failure of this claim uninformative (the design lacked the
    # registered power): a failure reads "not shown (the design could not show it)"
    not_shown: bool = False

    def gates(self, profile: str) -> bool:
        """Does a failure of this claim fail the run in ``profile``?"""
        if self.kind != "identity":
            return False
        return self.exact or profile != "smoke"

    def verdict(self) -> str:
        if self.passed:
            return "pass"
        return "not shown" if self.not_shown else "FAIL"


def evaluate(value: float | None, op: str, threshold) -> bool:
    """Apply a comparison; a missing or NaN value never passes."""
    if value is None or math.isnan(value):
        return False
    if op == "<=":
        return value <= threshold
    if op == ">=":
        return value >= threshold
    if op == ">":
        return value > threshold
    if op == "in":
        lo, hi = threshold
        return lo <= value <= hi
    raise ValueError(f"op must be one of {OPS}, got {op!r}")


def git_commit(path: Path | None = None) -> str:
    """The current commit of the repository holding vgh_lib, or ``"unknown"``."""
    where = path or REPO_ROOT
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


@dataclass(frozen=True)
class ClaimSpec:
    """A claim as its study declares it in its experiment module, before any run: what is
    compared with which threshold, of which kind, and what result would fail it. ``statement``
    may name this run's parameters as ``{name}`` fields (:class:`Measured` fills them)."""

    id: str
    statement: str
    op: str
    threshold: float | tuple[float, float]
    kind: str = "identity"
    fails_if: str = ""
    exact: bool = False
    require_ci: bool = False

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"claim {self.id!r}: op must be one of {OPS}, got {self.op!r}")
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.id!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.fails_if:
            raise ValueError(f"claim {self.id!r}: say what result would fail it (fails_if)")


@dataclass(frozen=True)
class Measured:
    """What one run measured for a declared claim: the value, its interval, the parameters its
    statement names, and whether the registration declared a failure uninformative."""

    value: float | None
    ci: tuple[float, float] | None = None
    fields: dict[str, Any] | None = None
    not_shown: bool = False


class ClaimSet:
    """The claims of one notebook run.

    >>> claims = ClaimSet("01_costates_are_value_gradients", "default", {"seed": 0})
    >>> _ = claims.add("thm1.lqr.rel_error", "mean costate matches ∇V", 0.01, "<=", 0.02)
    """

    def __init__(self, notebook: str, profile: str, parameters: dict[str, Any]):
        self.notebook = notebook
        self.profile = profile
        self.parameters = parameters
        self.claims: list[Claim] = []
        self.finding = ""  # one line for the landing page's table, chosen by the measured values
        self.replications: list[dict[str, str]] = []   # registered replication runs, each with its verdict

    def add_replication(self, run: str, verdict: str) -> None:
        """A registered replication run (from its committed record) and its own verdict, shown
        on the landing page next to this run's."""
        self.replications.append({"run": run, "verdict": verdict})

    def add(self, id: str, statement: str, value: float | None, op: str, threshold,
            kind: str = "identity", ci: Sequence[float] | None = None,
            exact: bool = False, require_ci: bool = False, fails_if: str = "",
            not_shown: bool = False) -> Claim:
        """Record a claim. ``threshold`` is a number, or ``[lo, hi]`` for ``op="in"``.

        ``fails_if`` says in a few words what result would have failed the claim (shown in
        the Reproduction report); a claim that no plausible result could fail belongs in
        ``tests/``, not here.

        With ``require_ci`` the claim passes only when the whole interval ``ci`` satisfies
        the comparison (e.g. ``> 0`` with a 95 % interval that excludes 0). ``not_shown``
        marks an empirical claim whose failure the registration declared uninformative.
        """
        if not_shown and kind != "empirical":
            raise ValueError("only an empirical claim can be declared uninformative (not_shown)")
        if require_ci and (ci is None or op == "in"):
            raise ValueError("require_ci needs an interval and a one-sided comparison")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        if any(c.id == id for c in self.claims):
            raise ValueError(f"claim {id!r} recorded twice")
        value = None if value is None else float(value)
        threshold = [float(t) for t in threshold] if op == "in" else float(threshold)
        passed = evaluate(value, op, threshold)
        if require_ci:
            passed = passed and all(evaluate(float(end), op, threshold) for end in ci)
        claim = Claim(id=id, statement=statement, kind=kind, value=value, op=op,
                      threshold=threshold, passed=passed,
                      ci=None if ci is None else [float(c) for c in ci], exact=exact,
                      fails_if=fails_if, not_shown=not_shown)
        self.claims.append(claim)
        return claim

    def add_declared(self, specs: Sequence[ClaimSpec], measured: dict[str, Measured]) -> None:
        """Record a study's declared claims (its module's ``CLAIMS``) with what this run measured
        (its ``claim_values``), in the declared order. Every declared claim needs a value and
        every value a declared claim: a claim cannot be left out, nor one be added on the side."""
        ids = [c.id for c in specs]
        missing, extra = set(ids) - set(measured), set(measured) - set(ids)
        if missing or extra:
            raise ValueError(f"declared claims and measured values differ: missing "
                             f"{sorted(missing)}, not declared {sorted(extra)}")
        for spec in specs:
            m = measured[spec.id]
            threshold = list(spec.threshold) if spec.op == "in" else spec.threshold
            self.add(spec.id, spec.statement.format(**(m.fields or {})), m.value, spec.op, threshold,
                     kind=spec.kind, ci=m.ci, exact=spec.exact, require_ci=spec.require_ci,
                     fails_if=spec.fails_if, not_shown=m.not_shown)

    def record(self) -> dict[str, Any]:
        """The ``NAME.claims.json`` document."""
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "parameters": self.parameters,
            "git_commit": git_commit(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "claims": [asdict(c) for c in self.claims],
            "finding": self.finding,
            "replications": list(self.replications),
            # the readability check of every figure the notebook drew (common.plots.finish)
            "figures": {key: list(problems) for key, problems in plots.CHECKED.items()},
        }

    def failures(self) -> list[Claim]:
        """Claims that failed and gate this profile."""
        return [c for c in self.claims if not c.passed and c.gates(self.profile)]

    def table_markdown(self) -> str:
        rows = ["| claim | kind | value | threshold | verdict |", "|---|---|---|---|---|"]
        for c in self.claims:
            ci = f" [{format_value(c.ci[0])}, {format_value(c.ci[1])}]" if c.ci else ""
            rows.append(f"| `{c.id}` | {c.kind} | {format_value(c.value)}{ci} | "
                        f"{format_threshold(c.op, c.threshold)} | {c.verdict()} |")
        return "\n".join(rows)

    def finish(self) -> None:
        """Glue every value and verdict, show the table, record the claims, then gate.

        Glue keys: ``<id>`` (the formatted value) and ``<id>.verdict``.
        """
        from IPython.display import Markdown, display
        from myst_nb import glue

        for c in self.claims:
            glue(c.id, Shown(format_value(c.value)), display=False)
            glue(c.id + ".verdict", Shown(c.verdict()), display=False)
            glue(c.id + ".threshold", Shown(format_threshold(c.op, c.threshold)), display=False)
        display(Markdown(self.table_markdown()))
        glue(CLAIMS_GLUE_KEY, Raw(json.dumps(self.record())), display=False)
        failed = self.failures()
        if failed:
            lines = [f"{c.id}: value {format_value(c.value)}, required "
                     f"{format_threshold(c.op, c.threshold)}" for c in failed]
            raise ClaimFailure("identity claim(s) failed in profile "
                               f"{self.profile!r}:\n" + "\n".join(lines))


def read_claims_from_notebook(nb) -> dict[str, Any] | None:
    """Find the glued claims record in an executed notebook (an nbformat node or dict)."""
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name") == CLAIMS_GLUE_KEY:
                data = out.get("data", {})
                for mime, text in data.items():
                    if mime.endswith("text/plain"):
                        return json.loads(text if isinstance(text, str) else "".join(text))
    return None
