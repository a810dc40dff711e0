"""What caching the frozen bottom blocks saves in top-layer GRPO on SmolLM2-135M, in the same run.

A GRPO step's work per prompt (sample a group of 8 and score it in one forward pass, then the
backward pass) and the teacher-forced exact value, each with the plain forward pass
(``vgh_lib.lm.grpo``) and with :class:`vgh_lib.lm.prefix.FrozenPrefix` (the bottom blocks'
states of each prompt computed once), on one thread. Reports the ratios plain / cached.

    .venv/bin/python benchmarks/bench_lm_prefix.py [--task sums] [--layers 2] [--model smollm2]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of

from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import loading as real_lm
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.prefix import FrozenPrefix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="sums", choices=lm_tasks.LM_TASKS)
    ap.add_argument("--layers", type=int, default=2, help="trained top blocks")
    ap.add_argument("--model", default="smollm2", help="'smollm2', 'tiny', a .gguf or a directory")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = real_lm.load_model(args.model)
    pairs = lm_grpo.encode(tok, lm_tasks.suite("train", 8, (args.task,)))
    lm_grpo.train_top_layers(model, args.layers)
    prefix = FrozenPrefix(model, args.layers)
    lm_grpo.exact_values(model, pairs, prefix=prefix)   # the one-off bottom states, not timed

    def step(pre):
        gen = torch.Generator().manual_seed(0)
        lm_grpo.accumulate_update(model, pairs, 8, 1.0, gen, 1.0, pre)

    rows = [("GRPO step (8 prompts × 8 samples)", lambda: step(None), lambda: step(prefix)),
            ("exact values (8 prompts)", lambda: lm_grpo.exact_values(model, pairs),
             lambda: lm_grpo.exact_values(model, pairs, prefix=prefix))]
    print(f"{args.model}, task {args.task}, top {args.layers} blocks trained, 1 thread")
    for name, plain, cached in rows:
        a, b = best_of(plain, args.repeats), best_of(cached, args.repeats)
        print(f"  {name:<36} plain {a:7.3f}s  cached {b:7.3f}s  ratio {a / b:5.1f}×")


if __name__ == "__main__":
    main()
