"""vgh_lib: the tested library behind the value-gradient companion book.

Reproduces, empirically, the results of *Value-Gradient Hypothesis of RL for LLMs*
(Asadulaev, Ognev, Salta, Takáč; arXiv:2605.21654) as reconstructed in the book.
Layers, each importing only those before it (``tests/test_layers.py``): ``paths`` and
``errors``; ``common`` (stats, value-impact inference, parallel jobs, plots); ``rollout``
(differentiable rollouts, notebooks 01–02), ``tiny`` (tiny GPT-2 policies, 03–05) and ``lm``
(real LMs, 06 and 08); ``tools`` (``vgh probe``, the TRL callback); ``harness`` (parameters,
claims, glue); ``experiments`` (one module per notebook); ``driver`` (registry, runner,
report, CLI, Sphinx extension).
"""

from __future__ import annotations

import logging
import random

__version__ = "0.1.0"


class _SampledPadFilter(logging.Filter):
    """Drops transformers' "passing in an `attention_mask`" warning. It fires when a sampled
    completion of an untrained model contains the pad token; the book's batches are never
    padded (equal-length prompts, or one prompt at a time), so the warning is noise that would
    hide real ones (issue 23, a quiet build)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "We strongly recommend passing in an `attention_mask`" not in record.getMessage()


logging.getLogger("transformers.modeling_utils").addFilter(_SampledPadFilter())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
