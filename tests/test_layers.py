"""The package's layers: which subpackage may import which, and what the notebooks reach.

Imports are read statically (every ``import``/``from`` statement, including those inside
functions), so a lazy import that breaks a rule fails here as much as a top-level one.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from vgh_lib.driver import registry, runner
from vgh_lib.paths import PACKAGE_DIR, REPO_ROOT

# What each layer may import besides itself (the subpackage docstrings say the same).
BASE = {"paths", "errors", "__init__"}
ALLOWED = {
    "common": BASE,
    "rollout": BASE | {"common"},
    "tiny": BASE | {"common"},
    "lm": BASE | {"common", "tiny"},
    "tools": BASE | {"common", "tiny", "lm"},
    "harness": BASE | {"common"},
    "experiments": BASE | {"common", "rollout", "tiny", "lm", "tools", "harness"},
    "integrations": BASE | {"tools"},
    "driver": BASE | {"common", "rollout", "tiny", "lm", "tools", "harness", "experiments"},
    "paths": set(),
    "errors": set(),
}
NOTEBOOK_LAYERS = {"experiments", "harness", "common.plots", "__init__"}

# Inside ``experiments`` (one module per notebook's study) a module imports another only where
# that one is the single home of something several studies share; each allowance says why.
SHARED_EXPERIMENTS = {
    "designs": "the committed designs of every pre-registered study",
    "grpo_budget": "the GRPO budget mixins of the studies' parameters, with the one grpo_config()",
    "pretraining_trajectory": "notebook 03's pretraining trajectories and notebook 05's confirmation "
                              "trajectories: the checkpoints that notebooks 04, 05, 07 and 09 study",
}
PARENT_DESIGN = {  # a follow-up study that reruns its parent's design unchanged
    "actor_update": ("theorem1", "02 differentiates 01's rollout systems (RolloutParams)"),
    "gradient_factor": ("what_predicts_rl_gain", "11 reruns 09's recipes, pilot checkpoints and GRPO runs"),
    "lm_gradient_factor": ("real_lm_task_suite", "12 reruns 10's task suite, prompts and GRPO arm"),
}


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["vgh_lib", *parts])


def _imports_in(source: str, module: str = "vgh_lib") -> set[str]:
    """Every vgh_lib module that ``source`` imports (``from vgh_lib.x import y`` counts as
    ``vgh_lib.x.y`` when that is a module, else ``vgh_lib.x``)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vgh_lib")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vgh_lib"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if _path_of(sub) is not None else node.module)
    return out


def _path_of(module: str) -> Path | None:
    if module == "vgh_lib":
        return PACKAGE_DIR / "__init__.py"
    rel = Path(*module.split(".")[1:])
    for cand in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _package_imports() -> dict[str, set[str]]:
    return {_module_of(p): _imports_in(p.read_text()) for p in PACKAGE_DIR.rglob("*.py")}


def _notebook_imports(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    return _imports_in(code)


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    """Every module reachable from ``start``; importing ``a.b.c`` also runs ``a`` and ``a.b``."""
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        parts = m.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in seen and _path_of(name) is not None:
                seen.add(name)
                todo.extend(graph.get(name, ()))
    return seen


NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_every_layer_imports_only_the_layers_below_it():
    bad = []
    for module, imports in _package_imports().items():
        mine = _layer(module)
        if mine == "__main__":
            continue
        for imp in imports:
            theirs = _layer(imp)
            if theirs != mine and theirs not in ALLOWED.get(mine, set()):
                bad.append(f"{module} imports {imp} ({mine} may import {sorted(ALLOWED[mine])})")
    assert not bad, "\n".join(bad)


def sideways_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports between experiment modules that :data:`SHARED_EXPERIMENTS` and
    :data:`PARENT_DESIGN` do not allow."""
    bad = []
    for module, imports in graph.items():
        if _layer(module) != "experiments" or module == "vgh_lib.experiments":
            continue
        mine = module.split(".")[2]
        for imp in imports:
            if _layer(imp) != "experiments" or imp == "vgh_lib.experiments":
                continue
            theirs = imp.split(".")[2]
            if theirs != mine and theirs not in SHARED_EXPERIMENTS and \
                    PARENT_DESIGN.get(mine, (None,))[0] != theirs:
                bad.append(f"{module} imports {imp}")
    return bad


def test_experiment_modules_import_only_the_shared_ones_and_their_parent_design():
    """One study's module does not lean on another's (issue 33): what several studies share
    lives in a lower layer (tiny.jobs, lm.cache, common.impact, harness.verdicts) or in one of
    the named shared modules."""
    bad = sideways_imports(_package_imports())
    assert not bad, "\n".join(bad)


def test_the_sideways_rule_can_fail():
    graph = {"vgh_lib.experiments.real_lm_task_suite": {"vgh_lib.experiments.real_lm_impact",
                                                 "vgh_lib.experiments.designs"},
             "vgh_lib.experiments.gradient_factor": {"vgh_lib.experiments.what_predicts_rl_gain"},
             "vgh_lib.experiments.what_predicts_rl_gain": {"vgh_lib.experiments.gradient_factor"}}
    assert sideways_imports(graph) == [
        "vgh_lib.experiments.real_lm_task_suite imports vgh_lib.experiments.real_lm_impact",
        "vgh_lib.experiments.what_predicts_rl_gain imports vgh_lib.experiments.gradient_factor"]


def test_the_layer_rules_can_fail():
    """The checker sees a lazy import inside a function, and the rules refuse it."""
    imports = _imports_in("def f():\n    from vgh_lib.experiments import value_impact\n")
    assert imports == {"vgh_lib.experiments.value_impact"}
    assert "experiments" not in ALLOWED["tools"] and "harness" not in ALLOWED["tiny"]
    assert "driver" not in ALLOWED["experiments"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_only_experiments_harness_and_plots(path):
    """A notebook's interface to the library is its experiment module, the harness (claims,
    glue) and the plots; everything a test could cover lives behind them."""
    for imp in _notebook_imports(path):
        layer = ".".join(imp.split(".")[1:3]) if _layer(imp) == "common" else _layer(imp)
        assert layer in NOTEBOOK_LAYERS, f"{path.name} imports {imp}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cache_key_covers_every_module_a_notebook_reaches(path):
    reached = _closure(_notebook_imports(path), _package_imports())
    hashed = {_module_of(p) for p in runner.fingerprinted_files()}
    assert reached, f"{path.name} imports nothing from vgh_lib"
    missing = sorted(reached - hashed)
    assert not missing, f"{path.name} reaches {missing}, which the cache key leaves out"


def test_fingerprint_changes_with_a_module_notebooks_use_and_not_with_the_driver(tmp_path, monkeypatch):
    pkg = tmp_path / "vgh_lib"
    import shutil

    shutil.copytree(PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runner, "PACKAGE_DIR", pkg)
    base = runner.code_fingerprint()
    (pkg / "driver" / "cli.py").write_text((pkg / "driver" / "cli.py").read_text() + "\n# edited\n")
    assert runner.code_fingerprint() == base  # the driver cannot change a notebook's results
    glue = pkg / "harness" / "glue.py"          # report helpers that notebooks glue with
    glue.write_text(glue.read_text() + "\n# edited\n")
    assert runner.code_fingerprint() != base


def _chapter_stems(number: str) -> set[str]:
    """The chapter pages of notebook ``number`` in the table of contents, without the number."""
    toc = (REPO_ROOT / "_toc.yml").read_text()
    files = re.findall(r"file: book/([\w/]+)", toc)
    stems = set()
    for i, f in enumerate(files):
        if f.startswith("executed/") and f.split("/", 1)[1].startswith(number + "_"):
            chapter = files[i - 1] if not files[i - 1].endswith("_preregistration") else files[i - 2]
            stems.add(chapter.split("_", 1)[1] if chapter[:2].isdigit() else chapter)
    return stems


@pytest.mark.parametrize("name", sorted(registry.NOTEBOOKS))
def test_each_study_module_is_named_after_its_notebook_or_chapter(name):
    """A newcomer finds the code of a chapter from its name, and the other way round: the module
    that holds notebook NN_subject's parameters is ``experiments/subject.py``, or named after the
    chapter page that includes the notebook."""
    module = registry.NOTEBOOKS[name].params.__module__.rsplit(".", 1)[1]
    names = {name.split("_", 1)[1]} | _chapter_stems(registry.number(name))
    assert module in names, f"{name}'s study lives in experiments/{module}.py; name it one of {sorted(names)}"
