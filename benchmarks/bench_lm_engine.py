"""One GRPO run of notebook 10's default design, by the per-prompt path and by the batched engine.

The run is what ``vgh_lib.experiments.real_lm_task_suite.run_arm`` does for the GRPO arm: exact values of
the held-out prompts before and after, and 20 AdamW steps of the top 2 blocks of SmolLM2-135M
(8 prompts × 8 samples a step, FrozenPrefix, an exact probe value every 5 steps), on one thread.
Three engines run it in the same process, on the same task, learning rate and seed:

* ``before``: the per-prompt path with PyTorch's ``exponential_`` kernel for the Gumbel noise:
  the code as it was before the batched engine (issue 29);
* ``per prompt``: the per-prompt path as it is now (the reference of the tests);
* ``batched``: :mod:`vgh_lib.lm.batched`, the default.

Each engine's run is timed twice: *cold* (its bottom-block cache of answer prefixes empty, as
in a worker's first run of a task) and *warm* (a rerun, as in the worker's later runs of that
task); the prompts' bottom states are cached before anything is timed. Then one warm run of
each engine under ``torch.profiler`` says where its time goes, from the ranges that the library
marks with ``record_function`` (``noise``, ``sampling``, ``bottom blocks``, ``top blocks``,
``output layer``, ``backward``, ``optimizer``, ``probe``); ``other`` is the rest: Python,
bookkeeping and the profiler's own overhead. Prints the ratios of the timed runs.

    .venv/bin/python benchmarks/bench_lm_engine.py [--task capitals] [--model smollm2]
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from vgh_lib.experiments import real_lm_task_suite as ts
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import loading as real_lm
from vgh_lib.lm.prefix import FrozenPrefix

RANGES = ("noise", "sampling", "bottom blocks", "top blocks", "output layer", "backward",
          "optimizer", "probe")


@contextmanager
def kernel_noise():
    """The Gumbel noise from PyTorch's ``exponential_`` kernel, as before issue 29 (the same
    values as :func:`vgh_lib.lm.costates.exponential`, slower)."""
    fast = lm_costates.exponential
    lm_costates.exponential = lambda shape, gen: torch.empty(shape).exponential_(generator=gen)
    try:
        yield
    finally:
        lm_costates.exponential = fast


def breakdown(fn) -> dict[str, float]:
    """Seconds of one call of ``fn`` in each marked range (exclusive of nested ranges; all of a
    ``probe`` counts as probe), and ``other``."""
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    total = time.perf_counter() - start
    out = dict.fromkeys(RANGES, 0.0)
    marked = [e for e in prof.events() if e.name in RANGES]

    def owner(e):
        p = e.cpu_parent
        while p is not None and p.name not in RANGES:
            p = p.cpu_parent
        return p

    for e in marked:
        parent = owner(e)
        chain, inside_probe = parent, False
        while chain is not None:
            inside_probe |= chain.name == "probe"
            chain = owner(chain)
        if inside_probe:
            continue
        seconds = (e.time_range.end - e.time_range.start) / 1e6
        out[e.name] += seconds
        if parent is not None and parent.name != "probe":
            out[parent.name] -= seconds
    out["other"] = total - sum(out.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="capitals", help="a task of vgh_lib.lm.suite")
    ap.add_argument("--model", default="smollm2", help="'smollm2', 'tiny', a .gguf or a directory")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW rate (notebook 10's GRPO arm)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = ts.TaskSuiteParams(model_path=args.model)
    d = params.design()
    model, tok, _ = real_lm.load_model(args.model)
    model.eval()
    p = ts.prompts(model, tok, args.task, d)
    cfg = d.grpo_config(lr=args.lr, seed=min(params.grpo_seeds))
    trained = lm_grpo.top_parameters(model, d.train_layers)
    engines = {"before": dict(batched=False, noise=kernel_noise),
               "per prompt": dict(batched=False, noise=nullcontext),
               "batched": dict(batched=True, noise=nullcontext)}
    prefixes = {}

    def run(name):
        spec = engines[name]
        with spec["noise"]():
            with lm_grpo.restored(trained):
                pre = prefixes[name]
                b = spec["batched"]
                before = lm_grpo.exact_values(model, p.held_out, prefix=pre, batched=b)
                h = lm_grpo.train(model, p.train, p.train[:d.probe_prompts], cfg, prefix=pre, batched=b)
                after = lm_grpo.exact_values(model, p.held_out, prefix=pre, batched=b)
        return h.probe_value, float(np.mean(after - before))

    print(f"{args.model}, task {args.task}: {len(p.train)} training and {len(p.held_out)} held-out "
          f"prompts; {cfg.steps} steps of {cfg.prompts_per_step} prompts × {cfg.group_size} samples, "
          f"top {cfg.train_layers} blocks, 1 thread")
    times, results = {}, {}
    for name in engines:
        prefixes[name] = pre = FrozenPrefix(model, d.train_layers)
        lm_grpo.exact_values(model, p.train + p.held_out, prefix=pre, batched=False)  # prompt states
        for state in ("cold", "warm"):
            start = time.perf_counter()
            results[name] = run(name)
            times[name, state] = time.perf_counter() - start
        print(f"  {name:<11} cold {times[name, 'cold']:6.2f}s  warm {times[name, 'warm']:6.2f}s  "
              f"probe values {np.round(results[name][0], 4).tolist()}")
    gap = max(abs(a - b) for a, b in zip(results["before"][0], results["batched"][0]))
    print(f"  largest difference of a probe value, batched against before: {gap:.1e}")

    rows = {name: breakdown(lambda: run(name)) for name in engines}
    print("\n  where a warm run's time goes (seconds under the profiler)")
    print("  " + f"{'':<14}" + "".join(f"{n:>12}" for n in engines))
    for key in (*RANGES, "other"):
        print("  " + f"{key:<14}" + "".join(f"{rows[n][key]:12.2f}" for n in engines))
    print("  " + f"{'total':<14}" + "".join(f"{sum(rows[n].values()):12.2f}" for n in engines))
    print()
    for state in ("cold", "warm"):
        for base in ("before", "per prompt"):
            print(f"  {state}: batched is {times[base, state] / times['batched', state]:4.1f}× "
                  f"faster than {base}")


if __name__ == "__main__":
    main()
