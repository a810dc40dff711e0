"""The shared pre-registration plumbing (vgh_lib.harness.preregistration)."""

import hashlib
import json

import pytest

from vgh_lib.harness.preregistration import REGISTERED_END, Registration, file_sha256, registered_text_sha256


@pytest.fixture
def study(tmp_path):
    page = tmp_path / "prereg.md"
    page.write_text(f"# Rules\n\nThe threshold is 0.05.\n\n{REGISTERED_END}\n", encoding="utf-8")
    return Registration(page, tmp_path / "pilot.json")


def test_the_hash_covers_the_registered_text_only(study):
    before = study.text_sha256()
    assert before == hashlib.sha256("# Rules\n\nThe threshold is 0.05.\n\n".encode()).hexdigest()
    study.page.write_text(study.page.read_text() + "\n## Amendment (2026-12-06)\nA reason.\n")
    assert study.text_sha256() == before                      # amendments go below the marker
    study.page.write_text(study.page.read_text().replace("0.05", "0.10"))
    assert study.text_sha256() != before                      # the registered text is frozen
    study.page.write_text("no marker")
    with pytest.raises(ValueError, match="no line"):
        registered_text_sha256(study.page)


def test_pilot_and_design_must_name_what_they_follow(study):
    record = study.pilot_record({"chosen": 1})
    assert list(record) == ["preregistration_sha256", "chosen"]
    study.pilot_file.write_text(json.dumps(record))
    assert study.load_pilot() == record
    study.check_design({"pilot_sha256": file_sha256(study.pilot_file)})
    with pytest.raises(ValueError, match="pilot.json's SHA-256"):
        study.check_design({"pilot_sha256": "0" * 64})
    study.page.write_text(study.page.read_text().replace("0.05", "0.01"))
    with pytest.raises(ValueError, match="registered text of prereg.md"):
        study.load_pilot()


def test_stage_records_and_the_simulation_are_checked(tmp_path):
    from vgh_lib.harness.preregistration import REGISTERED_END, Registration, write_json

    page = tmp_path / "prereg.md"
    page.write_text(f"rules\n{REGISTERED_END}\n")
    reg = Registration(page, tmp_path / "pilot.json", tmp_path / "sim.json",
                       {"pilot": tmp_path / "pilot.json", "confirmation": tmp_path / "conf.json"})
    with pytest.raises(ValueError, match="confirmation"):
        reg.load_record("final")
    assert reg.load_record("confirmation") is None
    write_json(tmp_path / "conf.json", {"rows": [1]})
    assert reg.load_record("confirmation") == {"rows": [1]}
    write_json(tmp_path / "sim.json", {"preregistration_sha256": reg.text_sha256(), "size": 0.05})
    assert reg.load_simulation()["size"] == 0.05
    page.write_text(f"other rules\n{REGISTERED_END}\n")
    with pytest.raises(ValueError, match="hash differs"):
        reg.load_simulation()
    with pytest.raises(SystemExit, match="usage"):
        reg.main(["final"], "m", lambda s: tmp_path, lambda progress: {})
