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
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Registration:
    """One study's registration page and pilot file."""

    page: Path
    pilot_file: Path

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
