"""Where things are: the package, the repository that holds it, and the cache (one place).

``.cache/`` sits at the repository root unless ``$VGH_CACHE`` names another folder; the
trajectories of :mod:`vgh_lib.tiny.pretrain` and the converted models of
:mod:`vgh_lib.lm.loading` live under it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""The ``vgh_lib`` package folder."""

REPO_ROOT = PACKAGE_DIR.parent
"""The repository root (the folder that holds ``vgh_lib/``, ``notebooks/`` and ``book/``)."""


def cache_root() -> Path:
    """``$VGH_CACHE`` if set, else ``<repository>/.cache``."""
    env = os.environ.get("VGH_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache"
