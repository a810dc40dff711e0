"""A build-time check that a chapter's prose never interprets a number it does not glue.

Every measured value in the book is glued from its executed notebook. The sentences around a
value must not then state a direction, a count or a comparison of their own ("the ratio is below
1", "7 of 8 cells", "usually"), because such a sentence was written for one run and the next run,
on another machine, may contradict it. Chapters interpret a value only through phrases their
notebook glues (a direction word chosen by the value, a count, a verdict).

Two checks, both on the chapter's prose (code, math, directives other than captions and
admonitions, and link targets are left out):

* :func:`lint` reads the Markdown source alone. In a clause that does not state a rule (a rule
  clause has a cue such as "must", "required", "would", "when" or "whose": the pre-registered
  rules are typed, and are fixed before any run), it flags a typed decimal number, a typed count
  ("7 of 8"), a comparison against a typed number ("below 1") and a typed quantifier of results
  ("usually", "most of").
* :func:`contradictions` reads the prose with each glued value in its place (the values come from
  the executed notebooks) and evaluates every comparison that follows a glued number in the same
  clause ("{glued 1.617}, below 1" is false and fails), so that a glued value and the prose
  around it can never disagree.

``vgh book`` runs both before it builds, and the smoke-book test runs them on every chapter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from vgh_lib.harness.glue import shown_text

#: Words that mark a clause as stating a rule (a threshold, a definition, a counterfactual), not a
#: measured outcome. Rules are typed in the chapters and fixed before any run.
RULE_CUES = ("must", "required", "requires", "require", "would", "should", "when", "whenever",
             "whose", "if", "unless", "threshold", "pre-registered", "by construction",
             "defined", "counts as", "level of", "critical", "version", "arxiv")

#: Typed quantifiers of a measured outcome: the chapter must glue them instead.
QUANTIFIERS = ("usually", "mostly", "most of", "almost all", "nearly all", "none of them",
               "all of them", "every one of", "without exception", "in every case",
               "the majority")

_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve")
_NUM = r"[−-]?\d+(?:,\d{3})*(?:\.\d+)?"
_CMP = {  # comparison phrase -> relation "value REL number" it asserts
    "more than": ">", "greater than": ">", "higher than": ">", "larger than": ">",
    "above": ">", "over": ">", "exceeds": ">", "exceeded": ">", "beyond": ">",
    "less than": "<", "fewer than": "<", "lower than": "<", "smaller than": "<",
    "below": "<", "under": "<",
    "at least": ">=", "at most": "<=", "no more than": "<=", "no less than": ">=",
}
_CMP_RE = "|".join(sorted((re.escape(k) for k in _CMP), key=len, reverse=True))

_GLUE_REF = re.compile(r"\{glue(?::text|:)?\}`([^`]*)`")
_FENCE = re.compile(r"^(```+|:::+)\s*(\{[^}]*\})?(.*)$")


@dataclass(frozen=True)
class Problem:
    """One interpretive phrase the chapter types instead of gluing."""

    path: str
    line: int
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.text!r}"


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines of a MyST chapter that are prose: outside code and math blocks and outside
    directives other than captions (``{div}``) and admonitions. Returns (line number, text)."""
    out: list[tuple[int, str]] = []
    stack: list[tuple[str, bool]] = []  # (fence, is prose inside)
    in_math = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("$$"):
            if not (stripped.endswith("$$") and len(stripped) > 2):
                in_math = not in_math
            continue
        if in_math:
            continue
        m = _FENCE.match(stripped)
        if m:
            fence, directive = m.group(1), (m.group(2) or "")
            if stack and fence == stack[-1][0] and not directive and not m.group(3).strip():
                stack.pop()
                continue
            prose = directive.startswith(("{div}", "{admonition}", "{note}", "{important}",
                                          "{vgh-figure}"))
            if not directive and fence.startswith("`"):
                prose = False  # a plain code block
            stack.append((fence, prose))
            continue
        if stack and not all(p for _, p in stack):
            continue
        if stripped.startswith((":", "(")) and stripped.endswith((")=", "")) and stripped.startswith(":"):
            continue  # a directive option such as :doc: or :class:
        if re.match(r"^\(.*\)=$", stripped) or stripped.startswith("#"):
            continue  # a label or a heading
        out.append((number, line))
    return out


def _clean(text: str, glued: str = "⟨G⟩") -> str:
    text = _GLUE_REF.sub(glued, text)
    text = re.sub(r"\$[^$]*\$", "⟨M⟩", text)       # inline math
    text = re.sub(r"`[^`]*`", "⟨C⟩", text)          # inline code and roles' targets
    text = re.sub(r"\{[a-z:]+\}", "", text)          # role names
    text = re.sub(r"\]\([^)]*\)", "]", text)         # link targets
    return text


def _clauses(paragraph: str) -> list[str]:
    return [c for c in re.split(r"(?<=[.;:!?])\s+|[()—]|\s–\s", paragraph) if c.strip()]


def _is_rule(clause: str) -> bool:
    low = clause.lower()
    return any(re.search(rf"\b{re.escape(cue)}\b", low) for cue in RULE_CUES)


def _paragraphs(text: str) -> list[tuple[int, str]]:
    paragraphs, current, start, last = [], [], 0, -1
    for number, line in prose_lines(text):
        if not line.strip() or number != last + 1:
            if current:
                paragraphs.append((start, " ".join(current)))
            current = []
        if line.strip():
            if not current:
                start = number
            current.append(line.strip())
        last = number
    if current:
        paragraphs.append((start, " ".join(current)))
    return paragraphs


def _result_clauses(text: str):
    """(line, clause) for every clause of the prose that does not state a rule."""
    for line, paragraph in _paragraphs(text):
        for clause in _clauses(_clean(paragraph)):
            if not _is_rule(clause):
                yield line, clause


def lint(text: str, path: str = "<chapter>") -> list[Problem]:
    """Typed interpretations in a chapter's Markdown source (see the module docstring)."""
    problems = []
    for line, clause in _result_clauses(text):
        low = clause.lower()
        # a decimal after ≤, ≥, <, > or = is a threshold or a setting, not a measured value
        if re.search(r"(?<![≤≥<>=] )(?<![\w.⟩≤≥<>=])\d+\.\d+(?![\w.])", clause):
            problems.append(Problem(path, line, "typed decimal number", clause.strip()))
        if re.search(rf"\b(?:\d+|{_NUMBER_WORDS})\s+of\s+(?:the\s+|those\s+|its\s+|their\s+)?"
                     rf"(?:\d+|{_NUMBER_WORDS})\b", low):
            problems.append(Problem(path, line, "typed count", clause.strip()))
        # a comparison in standard errors is a resolution criterion, never a measured value
        if re.search(rf"\b(?:{_CMP_RE})\s+(?:about\s+)?{_NUM}(?!\s*(?:se\b|standard err))",
                     low):
            problems.append(Problem(path, line, "comparison with a typed number",
                                    clause.strip()))
        for q in QUANTIFIERS:
            if re.search(rf"\b{re.escape(q)}\b", low):
                problems.append(Problem(path, line, f"typed quantifier {q!r}", clause.strip()))
    return problems


# --- the glued values in place ---------------------------------------------------------------

_NUMBER_IN = re.compile(r"^\s*([−-]?\d[\d,]*(?:\.\d+)?(?:e[−-]?\d+)?)\s*(%?)")


def glued_texts(notebook: Path) -> dict[str, str]:
    """The plain-text value of every key an executed notebook glues."""
    values = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if not scrap:
                continue
            text = output.get("data", {}).get(scrap.get("mime_prefix", "") + "text/plain")
            if text is not None:   # what the chapter shows (see vgh_lib.harness.glue.Shown)
                values[scrap["name"]] = shown_text("".join(text) if isinstance(text, list) else text)
    return values


def render(text: str, chapter_dir: Path, page_values: dict[str, str] | None = None) -> str:
    """The chapter with each ``{glue:text}`` reference replaced by ``⟦value⟧``.

    A reference ``executed/NB.ipynb::key:fmt`` reads that executed notebook (relative to the
    chapter); a bare ``key`` reads ``page_values`` (a notebook page's own glue). A reference that
    cannot be resolved becomes ``⟦?⟧``; the strict book build reports it.
    """
    cache: dict[Path, dict[str, str]] = {}

    def value(match: re.Match) -> str:
        ref = match.group(1)
        if "::" in ref:
            doc, key = ref.split("::", 1)
            path = (chapter_dir / doc).resolve()
            if path not in cache:
                cache[path] = glued_texts(path) if path.exists() else {}
            values = cache[path]
        else:
            key, values = ref, page_values or {}
        key = key.rsplit(":", 1)[0] if re.search(r":[a-z0-9.]*$", key) else key
        return "⟦" + values.get(key, "?") + "⟧"

    return _GLUE_REF.sub(value, text)


def _as_number(text: str) -> float | None:
    m = _NUMBER_IN.match(text)
    if not m:
        return None
    number = float(m.group(1).replace(",", "").replace("−", "-"))
    return number / 100 if m.group(2) else number


_RELATIONS = {">": lambda a, b: a > b, "<": lambda a, b: a < b,
              ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


def contradictions(rendered: str, path: str = "<chapter>") -> list[Problem]:
    """Comparisons in the prose that a glued value in the same clause contradicts.

    ``rendered`` is a chapter from :func:`render`. In every clause that does not state a rule,
    a glued number followed by a comparison ("⟦1.617⟧ … below 1", "⟦0.2⟧, above ⟦0.1⟧") must be
    true of the glued number, and a glued count "⟦a⟧ of ⟦b⟧" must have a ≤ b.
    """
    problems = []
    for line, clause in _result_clauses(rendered):
        low = clause.lower()
        # the comparison must follow the glued number within three words ("⟦1.6⟧, well
        # below 1", "⟦0.4⟧ lies above ⟦0.3⟧"), so that it is about that number
        pattern = (rf"⟦([^⟧]*)⟧[,\s]*(?:[^\s⟦⟧]+[,\s]+){{0,3}}?({_CMP_RE})\s+(?:about\s+)?"
                   rf"(⟦[^⟧]*⟧|{_NUM}\s*%?)")
        for m in re.finditer(pattern, low):
            left, right = _as_number(m.group(1)), _as_number(m.group(3).strip("⟦⟧"))
            if left is None or right is None:
                continue
            if not _RELATIONS[_CMP[m.group(2)]](left, right):
                problems.append(Problem(path, line, "contradicted by its glued value",
                                        m.group(0)))
        for m in re.finditer(r"⟦([^⟧]*)⟧\s+of\s+(?:the\s+|those\s+|its\s+|their\s+)?⟦([^⟧]*)⟧",
                             low):
            a, b = _as_number(m.group(1)), _as_number(m.group(2))
            if a is not None and b is not None and a > b:
                problems.append(Problem(path, line, "a count larger than its total", m.group(0)))
    return problems


def chapters(root: Path) -> list[Path]:
    """The chapters the check reads: every Markdown page of ``book/`` that is written by hand,
    except the pre-registrations, which state rules only (and are append-only)."""
    generated = {"reproduction_report.md", "bibliography.md"}
    return [p for p in sorted((Path(root) / "book").glob("*.md"))
            if p.name not in generated and "preregistration" not in p.name]


def check_book(root: Path) -> list[Problem]:
    """Both checks on every chapter of the book at ``root``: typed interpretations in the
    sources (:func:`lint`) and comparisons that the glued values contradict
    (:func:`contradictions`, which needs the executed notebooks)."""
    root = Path(root)
    problems = []
    for path in chapters(root):
        text = path.read_text()
        name = str(path.relative_to(root))
        problems += lint(text, name)
        problems += contradictions(render(text, path.parent), name)
    return problems
