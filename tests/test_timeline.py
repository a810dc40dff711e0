"""The pre-registrations' timelines come from git, in the order the commits were made."""

import json
import subprocess

from vgh_lib.driver import timeline
from vgh_lib.paths import REPO_ROOT


def _git(path, *args):
    subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin",
                        "GIT_COMMITTER_DATE": args[-1] if args[0] == "commit" else "",
                        "GIT_AUTHOR_DATE": args[-1] if args[0] == "commit" else ""})


def test_events_follow_the_history_of_a_toy_repository(tmp_path):
    study = timeline.Study("99", "book/99_pre.md", "CHOSEN = {", "99_nb", "book/data/99.json")
    (tmp_path / "book" / "data").mkdir(parents=True)
    _git(tmp_path, "init", "-q")
    steps = [("book/99_pre.md", "rules", "2026-01-01T10:00:00+00:00"),
             ("book/data/99.json", "{}", "2026-01-02T10:00:00+00:00"),
             ("designs.py", "CHOSEN = {'lr': 1}", "2026-01-03T10:00:00+00:00")]
    for path, text, date in steps:
        (tmp_path / path).write_text(text)
        _git(tmp_path, "add", path)
        _git(tmp_path, "commit", "-qm", path, "--date", date)
    executed = tmp_path / "book" / "executed"
    executed.mkdir()
    (executed / "99_nb.claims.json").write_text(json.dumps({"git_commit": "abcdef123456",
                                                            "created": "2026-01-04T00:00:00"}))
    rows = timeline.events(study, tmp_path, executed)
    assert [r[2][:10] for r in rows] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert rows[-1][1] == "abcdef1"
    text = timeline.render(study, tmp_path, executed)
    assert text.count("| `") == 4 and "```{admonition}" in text


def test_without_a_repository_the_page_says_so(tmp_path):
    study = timeline.STUDIES[-1]
    assert timeline.events(study, tmp_path, tmp_path) is None
    assert "No full git history" in timeline.render(study, tmp_path, tmp_path)


def test_every_preregistration_page_includes_its_timeline():
    for study in timeline.STUDIES:
        page = (REPO_ROOT / study.page).read_text(encoding="utf-8")
        assert f"executed/timeline_{study.key}.md" in page
