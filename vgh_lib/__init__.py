"""vgh_lib: the tested library behind the value-gradient companion book.

Reproduces, empirically, the results of *Value-Gradient Hypothesis of RL for LLMs*
(Asadulaev, Ognev, Salta, Takáč; arXiv:2605.21654) as reconstructed in the book.
Modules, one concept each: ``rollout`` (differentiable rollouts, costates, LQR closed
form), ``estimators`` (score-function, PPO, GRPO and pathwise gradients), ``tasks``
(verifiable tasks and their tokenizer), ``models`` (tiny GPT-2, local loading), ``pretrain``
(the cached checkpoint trajectory), ``sampling`` (generation, exact values, evaluation),
``grpo`` (advantages, loss, training),
``costates`` (empirical and relaxed costates in a transformer), ``impact`` (signal,
headroom, value impact; the pre-registered design and its inference), the experiments ``theorem1``, ``actor_update`` and ``theorem2``,
the real LM: ``real_lm`` (local GGUF/safetensors loading), ``lm_tasks``, ``lm_costates``,
``lm_grpo``, ``lm_prefix`` (frozen bottom blocks computed once) and the experiment
``lm_impact``; ``probe`` (``vgh probe``) and ``integrations.trl``; ``plots``, ``parallel``,
``stats``, ``params`` (validated
notebook parameters), ``registry`` (notebooks and profiles), ``claims``
(pre-registered claims), ``report`` (the reproduction report page), ``runner`` (papermill execution with
caching) and ``cli``.
"""

from __future__ import annotations

import random

__version__ = "0.1.0"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
