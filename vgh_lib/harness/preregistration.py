"""The plumbing of a pre-registered study, in one place: its registered text, its pilot file and
the committed design that names that file.

The order of events is the project's rule (README, "Claims"): the registration page is committed
first; the pilot's raw outputs are committed next, naming the SHA-256 of the registered text
(everything above :data:`REGISTERED_END`; dated amendments go below it); then the design chosen
by the registered rules, naming the pilot file's SHA-256; only then the confirmation runs. A
:class:`Registration` checks each link before a confirmation uses it, and refuses with a
``ValueError`` that names the file whose hash differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vgh_lib.harness.params import canonical_names

REGISTERED_END = "<!-- end of the registered text -->"


def registered_text_sha256(path: Path | str) -> str:
    """SHA-256 of a pre-registration page up to :data:`REGISTERED_END` (the text that was
    committed before the pilot; amendments go below the marker)."""
    text = Path(path).read_text(encoding="utf-8")
    if REGISTERED_END not in text:
        raise ValueError(f"{path} has no line {REGISTERED_END!r}")
    return hashlib.sha256(text.split(REGISTERED_END)[0].encode("utf-8")).hexdigest()


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_record(path: Path | str) -> dict | None:
    """A committed record or claims file, or None where there is none; the parameters it ran
    with (``params`` or ``parameters``) under today's names (:data:`~vgh_lib.harness.params.ALIASES`:
    files committed before the rename use the old ones)."""
    path = Path(path)
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    for key in ("params", "parameters"):
        if isinstance(record.get(key), dict):
            record[key] = canonical_names(record[key])
    return record


def write_json(path: Path | str, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a failed run leaves the old file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Registration:
    """One study's registration page and pilot file; for the studies that commit them, the
    size-and-power simulation committed with the registration and the raw record of each
    registered stage (``pilot``, ``confirmation``, ``replication``)."""

    page: Path
    pilot_file: Path
    simulation_file: Path | None = None
    records: dict[str, Path] = field(default_factory=dict)

    def text_sha256(self) -> str:
        """SHA-256 of the registered text of :attr:`page`."""
        return registered_text_sha256(self.page)

    def pilot_record(self, outputs: dict) -> dict:
        """A pilot's raw outputs as they are committed: first the registered text's SHA-256."""
        return {"preregistration_sha256": self.text_sha256(), **outputs}

    def load_pilot(self, path: Path | str | None = None) -> dict:
        """The committed pilot outputs (:attr:`pilot_file`, or ``path``), checked against the
        registered text they name."""
        path = Path(path or self.pilot_file)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("preregistration_sha256") != self.text_sha256():
            raise ValueError(f"{path} followed a pre-registration whose hash differs from the "
                             f"registered text of {self.page.name}")
        return data

    def check_design(self, chosen: dict, pilot_file: Path | str | None = None) -> None:
        """Refuse a committed design that does not name the SHA-256 of the pilot file it was
        read from (``chosen["pilot_sha256"]``). The study checks its own choices after this."""
        path = Path(pilot_file or self.pilot_file)
        if chosen.get("pilot_sha256") != file_sha256(path):
            raise ValueError(f"the committed design does not name {path.name}'s SHA-256")

    def load_simulation(self, path: Path | str | None = None) -> dict:
        """The simulation committed with the registration, checked against the registered
        text it names."""
        path = Path(path or self.simulation_file)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("preregistration_sha256") != self.text_sha256():
            raise ValueError(f"{path.name} names a registered text whose hash differs from "
                             f"{self.page.name}'s")
        return data

    def check_stage(self, stage: str) -> Path:
        """The record file of ``stage``; a ``ValueError`` naming the stages for any other."""
        if stage not in self.records:
            raise ValueError(f"stage must be one of {tuple(self.records)}, got {stage!r}")
        return self.records[stage]

    def load_record(self, stage: str) -> dict | None:
        """A committed registered run, or None when it has not been run yet."""
        return read_record(self.check_stage(stage))

    def main(self, argv: list[str], module: str, record_stage: Callable[[str], Path],
             simulation: Callable[..., dict]) -> None:
        """``python -m MODULE STAGE``: run one registered stage (``record_stage``) and print
        the file it wrote, or, for ``simulation``, write the size and power simulation
        (``simulation(progress=True)``) named by the registered text's hash."""
        stages = (*self.records, "simulation")
        if len(argv) != 1 or argv[0] not in stages:
            raise SystemExit(f"usage: python -m {module} {{{'|'.join(stages)}}}")
        if argv[0] == "simulation":
            write_json(self.simulation_file, {"preregistration_sha256": self.text_sha256(),
                                              **simulation(progress=True)})
            print(self.simulation_file)
        else:
            print(record_stage(argv[0]))
