"""Execute notebooks with papermill: validate first, cache, and never lose a good output.

``run_notebook`` writes ``OUT/NAME.ipynb`` and ``OUT/NAME.claims.json`` only after a
successful run; a failed run goes to ``OUT/failed/NAME.ipynb`` and leaves the last
good outputs in place. A run is skipped when the notebook source, its parameters
and the vgh_lib code are all unchanged since the last successful run (the cache
key is stored in the claims file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from vgh_lib.driver import registry
from vgh_lib.harness import claims as claims_mod
from vgh_lib.paths import PACKAGE_DIR, REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "book" / "executed"


def notebooks_dir() -> Path:
    """The source notebooks: ``<repo>/notebooks`` (or ``./notebooks`` for a non-editable install)."""
    for cand in (REPO_ROOT / "notebooks", Path.cwd() / "notebooks"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("cannot find the notebooks/ folder; run from the repository root")


@dataclass
class RunResult:
    """What happened to one notebook: ``status`` is ``ran``, ``cached`` or ``failed``."""

    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    claims: dict[str, Any] | None = None
    failed_claims: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ran", "cached") and not self.failed_claims


# The package that runs notebooks and builds the book (this module, the registry, the report,
# the CLI, the Sphinx extension). No notebook imports it, and nothing below it imports it
# (tests/test_layers.py checks both), so it cannot change a notebook's results and is left
# out of the cache key; every other vgh_lib module is in it.
NOT_IN_NOTEBOOKS = ("driver", "__main__.py")


def fingerprinted_files(package_dir: Path | None = None) -> list[Path]:
    """The vgh_lib source files of the cache key: all of them but ``NOT_IN_NOTEBOOKS``."""
    package_dir = package_dir or PACKAGE_DIR
    return [p for p in sorted(package_dir.rglob("*.py"))
            if p.relative_to(package_dir).parts[0] not in NOT_IN_NOTEBOOKS]


def code_fingerprint() -> str:
    """Hash of every vgh_lib source file that a notebook can reach (:func:`fingerprinted_files`)."""
    h = hashlib.sha256()
    for path in fingerprinted_files():
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def notebook_fingerprint(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata ignored)."""
    nb = nbformat.read(path, as_version=4)
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(cell.cell_type.encode() + b"\0" + cell.source.encode() + b"\0")
    return h.hexdigest()


def cache_key(name: str, parameters: dict[str, Any]) -> str:
    src = notebooks_dir() / f"{name}.ipynb"
    blob = json.dumps({"notebook": notebook_fingerprint(src), "parameters": parameters,
                       "code": code_fingerprint()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _is_cached(out: Path, name: str, key: str) -> dict[str, Any] | None:
    nb_path, claims_path = out / f"{name}.ipynb", out / f"{name}.claims.json"
    if not (nb_path.exists() and claims_path.exists()):
        return None
    try:
        record = json.loads(claims_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("cache_key") == key else None


def _gating_failures(record: dict[str, Any]) -> list[str]:
    out = []
    for c in record.get("claims", []):
        claim = claims_mod.Claim(**c)
        if not claim.passed and claim.gates(record.get("profile", "default")):
            out.append(claim.id)
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_notebook(name: str, profile: str = "default", overrides: dict[str, Any] | None = None,
                 out: Path | str = DEFAULT_OUT, force: bool = False,
                 log=print) -> RunResult:
    """Validate, then execute ``notebooks/NAME.ipynb`` into ``out`` unless cached.

    Raises :class:`vgh_lib.harness.params.ParameterError` for bad parameters, before anything
    is executed or written.
    """
    params = registry.resolve(name, profile, overrides)  # raises before any side effect
    name = registry.get(name).name
    parameters = params.as_dict()
    out = Path(out)
    key = cache_key(name, parameters)
    if not force:
        record = _is_cached(out, name, key)
        if record is not None:
            log(f"[{name}] unchanged since its last successful run: skipped (cached)")
            return RunResult(name, "cached", claims=record, failed_claims=_gating_failures(record))

    out.mkdir(parents=True, exist_ok=True)
    src = notebooks_dir() / f"{name}.ipynb"
    start = time.time()
    log(f"[{name}] running with profile {profile!r}: "
        + ", ".join(f"{k}={v}" for k, v in parameters.items()))
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out) as tmp:
        tmp_nb = Path(tmp) / f"{name}.ipynb"
        error = _execute(src, tmp_nb, parameters)
        seconds = time.time() - start
        record = None
        if error is None:
            nb = nbformat.read(tmp_nb, as_version=4)
            record = claims_mod.read_claims_from_notebook(nb)
            if record is None:
                error = "the notebook recorded no claims (ClaimSet.finish() was not called)"
        if error is not None:
            failed_dir = out / "failed"
            failed_dir.mkdir(exist_ok=True)
            if tmp_nb.exists():
                shutil.copyfile(tmp_nb, failed_dir / f"{name}.ipynb")
                _keep_failed_claims(tmp_nb, failed_dir / f"{name}.claims.json")
            msg = (f"[{name}] FAILED after {seconds:.1f}s: {error}\n"
                   f"  the failed run is in {failed_dir / (name + '.ipynb')}; "
                   f"the last good output (if any) is untouched")
            log(msg)
            return RunResult(name, "failed", seconds, message=msg)
        record["cache_key"] = key
        record["seconds"] = round(seconds, 1)   # this run's wall time (the build-status page)
        if hide_injected_parameters(nb):
            nbformat.write(nb, tmp_nb)
        os.replace(tmp_nb, out / f"{name}.ipynb")
        _write_atomic(out / f"{name}.claims.json", json.dumps(record, indent=2) + "\n")
    for stale in (out / "failed" / f"{name}.ipynb", out / "failed" / f"{name}.claims.json"):
        if stale.exists():
            stale.unlink()
    failed = _gating_failures(record)
    n_fail = sum(not c["passed"] for c in record["claims"])
    log(f"[{name}] done in {seconds:.1f}s: {len(record['claims'])} claims, {n_fail} failed"
        + (f" (gating: {', '.join(failed)})" if failed else ""))
    return RunResult(name, "ran", seconds, claims=record, failed_claims=failed)


def _keep_failed_claims(nb_path: Path, dest: Path) -> None:
    """Save the claims a failed run recorded (an identity claim that failed raises after the
    record is glued), so that the reproduction report can show them."""
    try:
        record = claims_mod.read_claims_from_notebook(nbformat.read(nb_path, as_version=4))
    except Exception:  # noqa: BLE001 - a notebook cut short anywhere
        record = None
    if record is not None:
        _write_atomic(dest, json.dumps(record, indent=2) + "\n")
    elif dest.exists():
        dest.unlink()


def _kernel_manager_class():
    """The kernel manager of every run: ipykernel ≥ 7.3 warns on each start when its local TCP
    sockets are unencrypted, once per notebook, which buries the warnings that matter. Where
    pyzmq has CurveZMQ, the manager asks for encrypted transport, which silences it."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class KernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _default_transport_encryption(self):
            return "auto" if zmq.has("curve") else "disabled"

    return KernelManager


def hide_injected_parameters(nb) -> int:
    """Tag papermill's injected-parameters cell ``remove-cell``, so the book's page shows one
    parameters cell, not two; the values that ran are in the glued parameter table and the
    setup cell's printout. Returns the number of cells tagged."""
    n = 0
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            n += 1
    return n


def _execute(src: Path, dest: Path, parameters: dict[str, Any]) -> str | None:
    """Run papermill; return None on success or a one-line error location."""
    import papermill as pm

    try:
        pm.execute_notebook(str(src), str(dest), parameters=parameters, kernel_name="python3",
                            cwd=str(src.parent), progress_bar=False,
                            kernel_manager_class=_kernel_manager_class())
    except pm.PapermillExecutionError as exc:
        first = exc.source.strip().splitlines()[0] if exc.source.strip() else ""
        return f"cell {exc.cell_index} ({first[:60]!r}) raised {exc.ename}: {exc.evalue}"
    except Exception as exc:  # noqa: BLE001 - kernel start-up and I/O errors
        return f"{type(exc).__name__}: {exc}"
    return None


def reproduce(profile: str = "default", jobs: int = 1, only: list[str] | None = None,
              out: Path | str = DEFAULT_OUT, force: bool = False, log=print) -> list[RunResult]:
    """Run every notebook (or ``only`` these), ``jobs`` at a time."""
    names = [registry.get(n).name for n in only] if only else list(registry.NOTEBOOKS)
    for n in names:  # validate everything before running anything
        registry.resolve(n, profile)
    if jobs <= 1:
        return [run_notebook(n, profile, out=out, force=force, log=log) for n in names]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda n: run_notebook(n, profile, out=out, force=force, log=log),
                             names))


NOTEBOOK_ZIP = "executed-notebooks.zip"


def write_notebook_zip(executed: Path) -> Path:
    """Every executed notebook and its claims file in one zip beside them (the build-status page
    offers it for download); written to a temporary name first, so a failure keeps the old one."""
    import zipfile

    executed = Path(executed)
    dest = executed / NOTEBOOK_ZIP
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(executed.glob("*.ipynb")) + sorted(executed.glob("*.claims.json")):
            zf.write(path, path.name)
    os.replace(tmp, dest)
    return dest


def build_book(root: Path | str = REPO_ROOT, strict: bool = True) -> int:
    """Write the reproduction report and the pre-registrations' timelines, check the chapters'
    prose against their glued values (:mod:`vgh_lib.driver.prose`), then build the HTML book
    with jupyter-book. Strict: a warning or a prose problem makes the return code non-zero."""
    from vgh_lib.driver.glossary import write_pages
    from vgh_lib.driver.prose import check_book
    from vgh_lib.driver.report import write_report
    from vgh_lib.driver.timeline import write_timelines

    root = Path(root)
    executed = root / "book" / "executed"
    write_report(executed, root / "book" / "reproduction_report.md")
    write_timelines(root, executed)
    write_pages(executed, root)
    write_notebook_zip(executed)
    problems = check_book(root)
    for problem in problems:
        print(f"prose: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} phrase(s) interpret a value the chapter does not glue, or are "
              "contradicted by a glued value (vgh_lib.driver.prose)", file=sys.stderr)
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--path-output",
           str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    code = subprocess.run(cmd).returncode
    return code or (1 if problems and strict else 0)
