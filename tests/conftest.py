import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def book_root(tmp_path):
    """A copy of the book sources (no executed notebooks) in a temporary folder."""
    root = tmp_path / "bookroot"
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("executed", "reproduction_report.md"))
    # decoys that a real checkout has next to the book: they must not be read
    decoy = root / ".venv" / "lib" / "site-packages" / "pkg"
    decoy.mkdir(parents=True)
    (decoy / "template.md").write_text("---\n{{ not: [valid yaml\n---\n# decoy\n")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "stray.md").write_text("# not in the toc\n")
    return root
