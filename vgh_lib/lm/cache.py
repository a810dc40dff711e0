"""The real LM and its frozen prefix, loaded once per process (notebooks 08, 10 and 12).

A worker process keeps its own copy of each: loading SmolLM2 takes seconds, and every GRPO run
puts the weights it trains back (:func:`vgh_lib.lm.grpo.restored`), so one copy serves all of a
worker's jobs.
"""

from __future__ import annotations

_MODELS: dict = {}
_PREFIXES: dict = {}


def model_for(model_path: str, device: str = "cpu"):
    """``(model, tokenizer)``, loaded once per process (each worker keeps its own copy; every
    GRPO run puts the weights it trains back, :func:`vgh_lib.lm.grpo.restored`)."""
    from vgh_lib.lm import loading  # imports transformers: only when a model is loaded

    key = (str(model_path), device)
    if key not in _MODELS:
        model, tok, _ = loading.load_model(model_path, device)
        _MODELS[key] = (model.eval(), tok)
    return _MODELS[key]


def prefix_for(model_path: str, device: str, k: int):
    """The process's :class:`vgh_lib.lm.prefix.FrozenPrefix` of :func:`model_for`'s model with
    its top ``k`` blocks trainable (the bottom states of every prompt computed once per
    process), or None where the model does not support it (the plain path is then used)."""
    from vgh_lib.lm.prefix import FrozenPrefix

    key = (str(model_path), device, k)
    if key not in _PREFIXES:
        model, _ = model_for(model_path, device)
        _PREFIXES[key] = FrozenPrefix(model, k) if FrozenPrefix.supported(model) else None
    return _PREFIXES[key]
