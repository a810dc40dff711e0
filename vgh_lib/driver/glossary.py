"""The glossary page and the one-screen reproducibility summary, generated at build time.

``write_pages`` writes ``book/executed/glossary.md`` and ``book/executed/reproducibility.md``
(both in ``_toc.yml`` under Reports). The glossary's definitions live here, once; which
chapters use each symbol or term is found by reading the chapters, so it never goes stale. The
reproducibility summary is built from the executed notebooks' claims files and the registry's
profiles: nothing on it is typed by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vgh_lib.driver import registry

GLOSSARY_NAME = "glossary.md"
SUMMARY_NAME = "reproducibility.md"


@dataclass(frozen=True)
class Entry:
    name: str          # as the glossary shows it (MyST, math allowed)
    meaning: str
    patterns: tuple[str, ...]   # regular expressions that find it in a chapter's source


SYMBOLS = (
    Entry("$I = S\\cdot H$", "value impact: our reconstruction of the paper's criterion for where "
          "RL pays off; the signal times the headroom", (r"I\s*=\s*S\s*\\cdot\s*H", r"value impact")),
    Entry("$S$", "signal: the norm of the expected GRPO update, estimated without bias from "
          "independent batches (a U-statistic)", (r"\$S\$",)),
    Entry("$H$", "headroom: $E_x[\\text{pass@}k - \\text{pass@}1]$, how much sampling $k$ times "
          "beats sampling once", (r"\$H\$", r"headroom")),
    Entry("$\\lambda$, $\\lambda^D$, $\\lambda^C$", "costate: the gradient of the return with "
          "respect to a state, propagated backwards (BPTT); $D$ for the discrete rollout, $C$ for "
          "its continuous relaxation", (r"\\lambda",)),
    Entry("$\\rho$", "a cosine between two gradients (cross-fitted, so noise does not shrink "
          "it and it can exceed 1 by noise), or a Spearman rank correlation, as the chapter says",
          (r"\\rho",)),
    Entry("$\\tau$, $\\tau_r$", "sampling temperature; the relaxation temperature of the "
          "Gumbel-softmax rollout", (r"\\tau",)),
    Entry("$\\delta$", "a perturbation size (finite differences) or a gap between the discrete "
          "and relaxed rollouts, as the chapter says", (r"\\delta",)),
    Entry("$G$", "GRPO group size: samples per prompt whose rewards are standardised together",
          (r"\$G\$", r"group size")),
    Entry("$J$", "the objective: expected reward, here the mean exact success probability of "
          "a set of prompts (the probe value)", (r"\$J\b", r"probe value")),
    Entry("pass@$k$", "the probability that at least one of $k$ samples is correct; with "
          "exact values $1 - (1 - p)^k$", (r"pass@",)),
)

TERMS = (
    Entry("identity claim", "a claim that must hold within numerical or Monte Carlo error, "
          "judged by a z-score or a reliability-corrected statistic", (r"identity claim", r"\bidentity\b")),
    Entry("empirical claim", "what the paper predicts and we test; a failure is reported as a "
          "result, with its measured value", (r"empirical claim", r"\bempirical\b")),
    Entry("resolved cell", "a cell of a grid whose measured error exceeds its own noise (so "
          "coverage is not counted on noise)", (r"resolved",)),
    Entry("collapse line", "the probe value's largest allowed fall during a GRPO run (0.05); "
          "a run that falls further has collapsed", (r"collapse",)),
    Entry("profile", "a named set of parameters: `smoke` (the tests), `default` (the book), "
          "`paper` (larger, for a GPU)", (r"profile",)),
    Entry("glue", "a value computed by an executed notebook and pasted into a chapter, so no "
          "number in the book is typed by hand", (r"\{glue",)),
    Entry("pre-registration", "the rules, thresholds and design of a study, committed before "
          "the data they judge", (r"pre-regist",)),
    Entry("learnability", "the mean over prompts of $p(1-p)$, the variance of a prompt's "
          "binary reward ($p$ its success probability)", (r"learnability",)),
    Entry("reward-std", "the mean over prompts of $\\sqrt{p(1-p)}$, the standard deviation of a "
          "prompt's binary reward", (r"reward-std", r"reward std")),
    Entry("non-degenerate fraction", "the expected share of GRPO groups whose rewards are not all "
          "equal, $1 - p^G - (1-p)^G$ averaged over prompts", (r"non-degenerate",)),
    Entry("short RL", "a cheap predictor: how much a few GRPO steps raise the exact value of the "
          "training prompts", (r"short RL", r"short-RL")),
    Entry("stage", "how far along pretraining a checkpoint is (its pass@1 or log step): the "
          "trivial predictor every other one must beat", (r"\bstage\b",)),
    Entry("learning region", "the checkpoints of a pretraining recipe whose pass@1 lies inside the "
          "registered range, where RL can still change something", (r"learning region", r"learning-region")),
    Entry("answer-prior control", "a control arm with the GRPO budget that trains only an output "
          "bias: it can shift which answers the model prefers, nothing else", (r"answer-prior", r"control arm")),
    Entry("seen / unseen held-out prompts", "held-out prompts whose answer some training prompt "
          "has (seen) or none has (unseen); a gain on unseen ones cannot come from memorised "
          "answers", (r"unseen",)),
    Entry("out-of-recipe score", "a predictor's score on one pretraining recipe when it was "
          "calibrated on the others (delete-one-recipe)", (r"out-of-recipe", r"out of recipe")),
    Entry("jackknife", "an interval from the spread of a statistic over delete-one (recipe, batch "
          "or group) recomputations", (r"jackknife",)),
    Entry("exact $S$", "the signal from the expected GRPO update itself, "
          "$\\lVert\\frac1N\\sum_x a_G(p_x)\\nabla p_x\\rVert$, by one teacher-forced backward "
          "pass a prompt, without sampling", (r"exact \$S\$", r"exact S\b")),
    Entry("alignment term", "the part of $S^2$ made of cross products of different prompts' "
          "gradients: whether improving one prompt improves the others", (r"alignment",)),
    Entry("AdamW signal", "$\\sum_j (\\mathbb E g_j)^2/\\sqrt{\\mathbb E g_j^2}$: the size of the "
          "expected update weighed coordinate by coordinate by its signal-to-noise ratio, as AdamW's "
          "first steps see it", (r"AdamW signal",)),
    Entry("split-half reliability", "the correlation across design points of the mean outcome "
          "over two halves of the seeds, stepped up to all seeds (Spearman–Brown); its square root "
          "is the highest correlation any predictor can reach", (r"reliabilit",)),
    Entry("disattenuated", "a correlation divided by the square root of the outcome's "
          "reliability: what it would be without the outcome's seed noise", (r"disattenuat",)),
    Entry("Freedman–Lane test", "a permutation test of one predictor beyond others: the "
          "residuals of the reduced model are permuted and added back", (r"Freedman",)),
    Entry("Holm correction", "a step-down adjustment of a family of p-values that keeps the "
          "chance of any false rejection at α", (r"Holm",)),
)


def _chapters(root: Path) -> dict[str, str]:
    """Docname → source text of every chapter and pre-registration in ``book/``."""
    return {f"book/{p.stem}": p.read_text(encoding="utf-8")
            for p in sorted((Path(root) / "book").glob("[0-9]*.md"))}


def uses(entry: Entry, chapters: dict[str, str]) -> list[str]:
    """The docnames whose source matches one of the entry's patterns."""
    return [doc for doc, text in chapters.items()
            if any(re.search(p, text, flags=re.IGNORECASE) for p in entry.patterns)]


def _short(doc: str) -> str:
    """A chapter's number for the "used in" column ("09", "09 registration")."""
    stem = doc.rsplit("/", 1)[-1]
    return stem.split("_")[0] + (" registration" if "preregistration" in stem else "")


def render_glossary(root: Path) -> str:
    chapters = _chapters(root)

    def table(entries):
        rows = ["| | meaning | used in |", "|---|---|---|"]
        for e in entries:
            where = ", ".join(f"{{doc}}`{_short(d)} </{d}>`" for d in uses(e, chapters)) or "—"
            rows.append(f"| {e.name} | {e.meaning} | {where} |")
        return rows

    return "\n".join(["# Glossary", "",
                      "Generated by `vgh book`: the definitions are kept in "
                      "`vgh_lib/driver/glossary.py`, and which chapters use each entry is found by "
                      "reading the chapters when the book is built. The theorems, propositions "
                      "and proofs are listed in the {ref}`index of theorems and proofs <prf-prf>`. "
                      "The \"used in\" column gives each chapter by its notebook's number.",
                      "", "## Symbols", "", *table(SYMBOLS), "", "## Terms", "", *table(TERMS), ""])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def paper_profile_changes(name: str) -> str:
    """What the ``paper`` profile of a notebook changes from ``default``, in a few words."""
    spec = registry.NOTEBOOKS[name]
    paper = spec.profiles.get("paper", {})
    default = spec.profiles.get("default", {})
    changed = {k: v for k, v in paper.items() if default.get(k, "__") != v}
    return ", ".join(f"`{k}`" for k in changed) or "nothing"


def render_reproducibility(executed: Path, root: Path) -> str:
    """One screen in the style of the ML Reproducibility Challenge: scope, what held, what did
    not, what the ``paper`` profile adds, and the run time, from the claims files."""
    from vgh_lib.driver import report

    records = report._records(Path(executed))
    ran = {n: r for n, r in records.items() if r is not None}
    n_claims = sum(len(r["claims"]) for r in ran.values())
    n_held = sum(c["passed"] for r in ran.values() for c in r["claims"])
    total = sum(r.get("seconds") or 0.0 for r in ran.values())
    profiles = sorted({r["profile"] for r in ran.values()})
    held, failed = [], []
    for name, r in ran.items():
        status = report.chapter_status(r["claims"])
        paper = registry.NOTEBOOKS[name].paper_claim
        line = f"- **{registry.NOTEBOOKS[name].title}** ({report.WORDING[paper][status]})"
        if report.one_line(r):
            line += f": {report._escape(report.one_line(r))}"
        (held if status == report.REPRODUCED else failed).append(line)
    paper_rows = ["| notebook | what `paper` changes |", "|---|---|",
                  *(f"| {n} | {paper_profile_changes(n)} |" for n in registry.NOTEBOOKS)]
    return "\n".join([
        "# Reproducibility summary", "",
        "Generated by `vgh book` from the executed notebooks' claims files and the registry's "
        "profiles; nothing on this page is typed by hand.", "",
        "## Scope", "",
        f"{len(ran)} of {len(registry.NOTEBOOKS)} notebooks ran in this build (profile "
        f"{', '.join(profiles) or 'none'}); {n_held} of {n_claims} claims hold. The paper's "
        "theorems and Section 5 formula are our reconstructions from its abstract "
        "{cite:p}`asadulaev2026value`.", "",
        "## What held", "", *(held or ["- nothing"]), "",
        "## What did not hold, or is inconclusive", "", *(failed or ["- nothing"]), "",
        "## What the `paper` profile adds", "",
        "Not run for this book; each notebook's `paper` profile changes:", "", *paper_rows, "",
        "## Run time", "",
        f"The notebooks behind this build ran for {_minutes(total)} in all; the "
        "{doc}`build_status` page gives each one's time and commit.", ""])


def write_pages(executed: Path, root: Path) -> list[Path]:
    executed = Path(executed)
    executed.mkdir(parents=True, exist_ok=True)
    out = [executed / GLOSSARY_NAME, executed / SUMMARY_NAME]
    out[0].write_text(render_glossary(root), encoding="utf-8")
    out[1].write_text(render_reproducibility(executed, root), encoding="utf-8")
    return out
