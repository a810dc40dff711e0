"""KV-cache generation against full recomputation, in the same run.

Generates the same tokens both ways (same Gumbel noise; checked equal) with a tiny GPT-2 and
prints the speed-up ratio of the cached loop.

    .venv/bin/python benchmarks/bench_generation.py [--batch 256] [--new 16] [--layers 2]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of

from vgh_lib.tiny import sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import build_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=8)
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = tiny_gpt2(tok, args.layers, args.embd, 4, args.prompt + args.new + 1, seed=0).eval()
    prompts = torch.randint(4, len(tok), (args.batch, args.prompt), generator=torch.Generator().manual_seed(0))
    noise = sampling.gumbel_noise((args.batch, args.new, len(tok)), torch.Generator().manual_seed(1))

    def cached():
        return sampling.generate(model, prompts, args.new, 1.0, noise, use_cache=True)

    def recompute():
        return sampling.generate(model, prompts, args.new, 1.0, noise, use_cache=False)

    assert torch.equal(cached(), recompute())  # same tokens before timing
    tc, tr = best_of(cached, args.repeats), best_of(recompute, args.repeats)
    print(f"batch {args.batch}, prompt {args.prompt}, {args.new} new tokens, {args.layers} layers, "
          f"d={args.embd}, 1 thread, best of {args.repeats}")
    print(f"KV cache     {tc:8.4f} s")
    print(f"recompute    {tr:8.4f} s")
    print(f"speed-up     {tr / tc:8.2f}x")


if __name__ == "__main__":
    main()
