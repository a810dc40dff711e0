"""What costates cost, in the same run.

1. A GRPO step (forward, clipped loss, backward, AdamW step) with costate capture on the
   input embeddings and every layer's residual stream, against the same step without it.
   Autodiff computes these gradients anyway, so the goal is a ratio ≤ 1.10.
2. The relaxed rollout's costates (process C: La forward passes with soft tokens and one
   backward) against a discrete rollout plus its backward (process D); and process C with
   the key/value cache (embedding costates only, as the Theorem 2 grid runs it).

    .venv/bin/python benchmarks/bench_costates.py [--batch 512] [--layers 2] [--embd 64]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of

from vgh_lib.tiny import costates as cs
from vgh_lib.tiny import grpo, sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = build_tokenizer()
    task = Task("addition", 2)
    _, held = task.split()
    model = tiny_gpt2(tok, args.layers, args.embd, 4, 16, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    prompts, answers = sampling.encode_prompts(tok, held[:8], "cpu")
    n = args.batch // 8
    ids = prompts.repeat_interleave(n, 0)
    ans = answers.repeat_interleave(n, 0)
    noise = sampling.gumbel_noise((ids.shape[0], ans.shape[1], len(tok)), torch.Generator().manual_seed(0))
    comp = sampling.generate(model.eval(), ids, ans.shape[1], 1.0, noise)
    adv = grpo.group_advantages((comp == ans).all(1).float() + 0.1 * torch.rand(ids.shape[0]), n)
    with torch.no_grad():
        logp_old = sampling.completion_logprobs(model, ids, comp, 1.0)
    mask = torch.ones_like(comp, dtype=torch.float32)

    def step(capture: bool):
        ctx = cs.CostateCapture(model, ids.shape[1]) if capture else None
        if ctx:
            ctx.__enter__()
        logp = sampling.completion_logprobs(model, ids, comp, 1.0)
        loss, _ = grpo.grpo_loss(logp, logp_old, adv, mask, 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ctx:
            ctx.__exit__(None, None, None)
            assert set(ctx.grads) >= {"embed", "layer1"}

    step(True), step(False)  # warm-up
    t_cap = best_of(lambda: step(True), args.repeats)
    t_plain = best_of(lambda: step(False), args.repeats)
    model.eval()

    def discrete():
        return cs.discrete_rollouts(model, prompts, answers, n, 1.0, torch.Generator().manual_seed(1))

    d = discrete()

    def relaxed():
        return cs.relaxed_rollouts(model, d, answers, 1.0, 0.3)

    def relaxed_cached():  # embedding costates only: the key/value cache keeps its graph
        return cs.relaxed_rollouts(model, d, answers, 1.0, 0.3, layers=False)

    t_d = best_of(discrete, args.repeats)
    t_c = best_of(relaxed, args.repeats)
    t_cc = best_of(relaxed_cached, args.repeats)
    print(f"batch {ids.shape[0]}, {args.layers} layers, d={args.embd}, 1 thread, best of {args.repeats}")
    print(f"GRPO step with capture    {t_cap:8.4f} s")
    print(f"GRPO step without         {t_plain:8.4f} s")
    print(f"capture overhead ratio    {t_cap / t_plain:8.3f}  (goal ≤ 1.10)")
    print(f"discrete rollout + costates (D)  {t_d:8.4f} s")
    print(f"relaxed rollout + costates  (C)  {t_c:8.4f} s")
    print(f"relaxed / discrete ratio         {t_c / t_d:8.3f}")
    print(f"relaxed, cached, embeddings only {t_cc:8.4f} s  (ratio to full recomputation "
          f"{t_cc / t_c:.3f})")


if __name__ == "__main__":
    main()
