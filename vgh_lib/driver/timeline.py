"""The order of events of each pre-registered study, from the repository's history at build time.

For every study, :func:`events` asks ``git`` when the registered text was first committed, when
the pilot's raw outputs were (where the study commits them), when the chosen design first
appeared in :mod:`vgh_lib.experiments.designs`, and reads from the claims file when this
build's confirmation ran. :func:`write_timelines` writes one small page per study into
``book/executed/`` for its pre-registration page to include; without a repository (a source
archive, say) or with a shallow clone, the page says so instead. Nothing here is typed by hand.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Study:
    key: str                 # e.g. "09": the timeline page is executed/timeline_09.md
    page: str                # the pre-registration page, relative to the repository
    design: str              # the text that first appears with the committed design
    notebook: str            # the confirmation's notebook
    pilot_file: str | None = None   # the pilot's committed raw outputs, if the study has them


STUDIES = (
    Study("05", "book/05_preregistration.md", "PILOT_CHOSEN = {", "05_value_impact"),
    Study("08", "book/08_preregistration.md", "REAL_LM_CHOSEN = {", "08_real_lm_impact"),
    Study("09", "book/09_preregistration.md", "PREDICTOR_CHOSEN = {", "09_what_predicts_rl_gain",
          "book/data/09_pilot.json"),
    Study("10", "book/10_preregistration.md", "TASK_SUITE_CHOSEN = {", "10_real_lm_task_suite",
          "book/data/10_pilot.json"),
    Study("11", "book/11_preregistration.md", "GRADIENT_CHOSEN = {", "11_gradient_factor",
          "book/data/11_pilot.json"),
    Study("12", "book/12_preregistration.md", "LM_GRADIENT_CHOSEN = {", "12_lm_gradient_factor",
          "book/data/12_pilot.json"),
)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _first(root: Path, *args: str) -> tuple[str, str] | None:
    """(short hash, ISO time) of the oldest commit that ``git log args`` lists."""
    out = _git(root, "log", "--reverse", "--format=%h %cI", *args)
    if not out:
        return None
    commit, time = out.splitlines()[0].split(" ", 1)
    return commit, time


def events(study: Study, root: Path, executed: Path) -> list[tuple[str, str, str]] | None:
    """``(event, commit, time)`` in the order they happened; None without a git repository or
    with a shallow one (whose oldest commit would seem to add every file)."""
    if _git(root, "rev-parse", "--git-dir") is None or \
            _git(root, "rev-parse", "--is-shallow-repository") == "true":
        return None
    rows = []
    found = _first(root, "--diff-filter=A", "--", study.page)
    rows.append(("the rules and thresholds (this page) committed", *(found or ("–", "not in the history"))))
    if study.pilot_file:
        found = _first(root, "--diff-filter=A", "--", study.pilot_file)
        rows.append((f"the pilot's raw outputs (`{study.pilot_file}`) committed",
                     *(found or ("–", "not in the history"))))
    else:
        rows.append(("the pilot's raw outputs", "–", "not committed (the notebook reruns the pilot)"))
    found = _first(root, f"-S{study.design}")
    rows.append(("the chosen design committed", *(found or ("–", "not in the history"))))
    claims = executed / f"{study.notebook}.claims.json"
    if claims.exists():
        record = json.loads(claims.read_text())
        rows.append(("this build's confirmation run", record.get("git_commit", "")[:7] or "–",
                     record.get("created", "")))
    else:
        rows.append(("this build's confirmation run", "–", "not run in this build"))
    return rows


def render(study: Study, root: Path, executed: Path) -> str:
    rows = events(study, root, executed)
    head = "```{admonition} Timeline, generated from the repository's history\n:class: note\n"
    if rows is None:
        return (head + "No full git history was present when this book was built (no repository, "
                "or a shallow clone), so the order of events is not shown; the repository's "
                "history has it.\n```\n")
    table = ["| event | commit | time (UTC) |", "|---|---|---|",
             *(f"| {e} | `{c}` | {t} |" for e, c, t in rows)]
    return head + "\n".join(table) + "\n```\n"


def write_timelines(root: Path, executed: Path) -> list[Path]:
    """Write ``executed/timeline_<key>.md`` for every study; returns the paths."""
    executed.mkdir(parents=True, exist_ok=True)
    out = []
    for study in STUDIES:
        path = executed / f"timeline_{study.key}.md"
        path.write_text(render(study, Path(root), Path(executed)), encoding="utf-8")
        out.append(path)
    return out
