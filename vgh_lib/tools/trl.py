"""The value-impact factors inside a TRL ``GRPOTrainer`` run (book/theory.md §4).

:class:`ValueImpactCallback` is a ``transformers.TrainerCallback``. Every ``every`` optimizer
steps (and before the first one) it measures, on a fixed held-out prompt set and from the
current policy, what ``vgh probe`` measures (:func:`vgh_lib.tools.probe.measure`): every
predictor of the panel (:mod:`vgh_lib.common.panel`: ``I = S·H``, the signal ``S``, the headroom
``H``, learnability, reward-std, the non-degenerate group fraction, coverage, pass@1 and the
answers' NLL), each with its standard error (``…_se``) and cost in seconds (``…_seconds``).
With the default ``ProbeConfig(signal="exact")``, ``S`` is the exact signal of the exact-match
reward, one teacher-forced backward pass a held-out prompt and no sampling
(:func:`vgh_lib.common.exact_signal.exact_signal`, through
:func:`vgh_lib.tools.probe.measure_exact`), also logged as ``S_exact`` and ``I_exact`` with its
two parts ``self`` and ``alignment`` (``S_exact² = self + alignment``; the alignment is the part
carried by the cross products of different prompts' gradients). ``signal="noisy"`` or
``"both"`` adds the sampled U-statistic's ``S_noisy`` and ``I_noisy`` (``S`` and ``I`` under
``"noisy"``). The values go through the trainer's own logging: the
callback asks for a log on that step and adds them to the ``logs`` of ``on_log`` (and to
``state.log_history``), so they reach every ``report_to`` integration (TensorBoard, W&B, …)
under ``value_impact/…``::

    from trl import GRPOConfig, GRPOTrainer
    from vgh_lib.tools.trl import ValueImpactCallback

    trainer = GRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...)
    ValueImpactCallback(held_out, every=50).attach(trainer)   # held_out: [{"prompt", "answer"}]
    trainer.train()

``attach`` puts the callback first in the trainer's callback list, so that the reporting
callbacks, which transformers places before user callbacks, see its values in the same
``on_log`` call. Passed as ``GRPOTrainer(callbacks=[cb])`` instead, it still writes them into
``state.log_history`` and into the ``logs`` seen by the callbacks after it.

The measurement runs in eval mode (restored afterwards), takes gradients with
``torch.autograd.grad`` (the parameters' ``.grad`` are untouched) and uses its own seeded
generator (the training run's random state is untouched). It needs the whole model on the
process (single-process training; under FSDP or DeepSpeed ZeRO-3 a forward pass on one rank
would wait for the others), and it keeps two flattened vectors of the trainable parameters'
size in float64 while it measures the exact S (``config.batches`` of them for the noisy S).
This module imports ``transformers`` only; it never imports ``trl``.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from vgh_lib.errors import ParameterError
from vgh_lib.tools import probe

PREFIX = "value_impact/"


def _items(prompts) -> list[probe.ProbeItem]:
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, dict):
            if "prompt" not in p or "answer" not in p:
                raise ParameterError(f"held-out prompt {i}: needs 'prompt' and 'answer' keys")
            p = probe.ProbeItem(p["prompt"], p["answer"])
        elif not isinstance(p, probe.ProbeItem):
            p = probe.ProbeItem(p.prompt, p.answer)
        if not p.answer:
            raise ParameterError(f"held-out prompt {i}: empty answer")
        out.append(p)
    if len({p.prompt for p in out}) != len(out):
        raise ParameterError("the held-out prompts contain a duplicate prompt")
    return out


class ValueImpactCallback(TrainerCallback):
    """Log the panel (``S``, ``H``, ``I = S·H``, reward-std, pass@1, …, ± SE) and the exact
    signal's ``S_exact``, ``self``, ``alignment`` and ``I_exact`` every ``every`` steps.

    ``prompts``: held-out ``{"prompt", "answer"}`` dicts (or objects with those attributes),
    exact-match reward on the answer's tokens, at least ``config.prompts`` of them (the first
    ``config.prompts`` of a seeded permutation are used, the same at every step).
    ``config``: a :class:`vgh_lib.tools.probe.ProbeConfig` (its ``device`` is ignored: the model's).
    ``tokenizer``: defaults to the trainer's ``processing_class``.
    ``history``: ``(step, metrics)`` of every measurement.
    """

    def __init__(self, prompts, every: int = 50, config: probe.ProbeConfig | None = None,
                 tokenizer=None, prefix: str = PREFIX, at_start: bool = True):
        if every < 1:
            raise ParameterError(f"every must be ≥ 1, got {every}")
        self.config = config or probe.ProbeConfig()
        items = _items(prompts)
        self.pool_size = len(items)
        self.items = probe.select(items, self.config, "the held-out prompt set")
        self.every, self.tokenizer, self.prefix, self.at_start = every, tokenizer, prefix, at_start
        self.history: list[tuple[int, dict[str, float]]] = []
        self._pending: dict[str, float] | None = None

    def attach(self, trainer) -> "ValueImpactCallback":
        """Add to ``trainer`` as its first callback (see the module docstring)."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    # ------------------------------------------------------------------ measurement
    def measure(self, model, tokenizer, step: int) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            r = probe.measure(model, tokenizer, self.items, self.config, self.pool_size)
        finally:
            model.train(was_training)
        metrics = {}
        for name in (f for f in probe.REPORTED if f in r.values):  # the signal keys measured
            key = name.replace(" ", "_")
            metrics[self.prefix + key] = float(r.values[name])
            if math.isfinite(r.ses[name]):
                metrics[self.prefix + key + "_se"] = float(r.ses[name])
            metrics[self.prefix + key + "_seconds"] = float(r.cost[name])
        self.history.append((step, metrics))
        return metrics

    def _maybe_measure(self, state, control, model, processing_class):
        tok = self.tokenizer or processing_class
        if tok is None:
            raise ParameterError("ValueImpactCallback needs a tokenizer: pass tokenizer= or "
                                 "give the trainer a processing_class")
        self._pending = self.measure(model, tok, state.global_step)
        control.should_log = True

    # ------------------------------------------------------------------------ hooks
    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        """The start checkpoint: logged with the first log of the run (unless a step's own
        measurement replaces it there first; it stays in :attr:`history`)."""
        if self.at_start:
            self._maybe_measure(state, control, model, processing_class)
        return control

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every == 0:
            self._maybe_measure(state, control, model, processing_class)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending is not None and logs is not None:
            logs.update(self._pending)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending)
            self._pending = None
        return control
