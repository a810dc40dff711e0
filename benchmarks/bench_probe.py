"""The cost of ``vgh probe`` against one default GRPO run on the same checkpoint, in one run.

The GRPO run is the book's default (``vgh_lib.driver.registry.PretrainGRPOParams``: 60 steps × 16
prompts × group 8, AdamW at the chosen rate), loading included; the probe is ``vgh probe``
with its default options (``vgh_lib.tools.probe.ProbeConfig``), loading included. Both run on the
same checkpoint, one thread, and the ratio is printed (the issue asks for at most 5 %).

    .venv/bin/python benchmarks/bench_probe.py [--checkpoint DIR] [--repeats 2]

Without ``--checkpoint``, a fresh model of the book's default architecture (2 layers, d = 64,
2-digit addition) is saved and used: both costs are fixed-length generation and backward
passes, so they do not depend on what the weights have learned.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _timing import best_of

from vgh_lib.driver import registry
from vgh_lib.tiny import grpo
from vgh_lib.tiny.models import load_local, tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer
from vgh_lib.tools import probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, help="a local model directory (default: a fresh one)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = registry.PretrainGRPOParams()
    task = Task(p.task, p.n_digits)
    train, _ = task.split()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if path is None:
            tok = build_tokenizer()
            path = Path(tmp) / "model"
            tiny_gpt2(tok, p.n_layer, p.n_embd, p.n_head, 32, seed=0).save_pretrained(path)
            tok.save_pretrained(path)
        gcfg = grpo.GRPOConfig(steps=p.grpo_steps, prompts_per_step=p.grpo_prompts,
                               group_size=p.group_size, temperature=p.temperature, lr=p.grpo_lr,
                               optimizer=p.grpo_optimizer, seed=0)
        pcfg = probe.ProbeConfig()

        def grpo_run():
            model, tok = load_local(path)
            grpo.train(model, tok, train, gcfg)

        def probe_run():
            probe.probe([path], p.task, pcfg, digits=p.n_digits, progress=False)

        tp = best_of(probe_run, args.repeats)
        tg = best_of(grpo_run, args.repeats)
    print(f"checkpoint {args.checkpoint or 'fresh default architecture'}; 1 thread, best of {args.repeats}")
    print(f"GRPO run     {tg:8.3f} s  ({gcfg.steps} steps × {gcfg.prompts_per_step} prompts × "
          f"group {gcfg.group_size}, {gcfg.optimizer} lr {gcfg.lr:g})")
    print(f"vgh probe    {tp:8.3f} s  ({pcfg.prompts} prompts × {pcfg.samples} samples, "
          f"{pcfg.batches} batches, k {pcfg.k})")
    print(f"probe / GRPO {tp / tg:8.2%}  (budget: 5 %)")


if __name__ == "__main__":
    main()
