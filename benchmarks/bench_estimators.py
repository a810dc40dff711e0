"""Batched estimators against a per-rollout loop, in the same run.

Times the per-rollout pathwise (BPTT) and score-function gradients computed with
``torch.func.vmap`` (vgh_lib.rollout.estimators) against one ``autograd.grad`` per rollout,
checks that they agree, and prints the speed-up ratio.

    .venv/bin/python benchmarks/bench_estimators.py [--rollouts 256] [--horizon 20]
"""

from __future__ import annotations

import argparse

import torch
from _timing import best_of

from vgh_lib.rollout import dynamics as ro
from vgh_lib.rollout import estimators as es


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rollouts", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    sys_, pol, x0 = ro.make_problem("tanh", 4, 2, 0)
    pol = ro.MLPPolicy(4, 2, 8, generator=torch.Generator().manual_seed(0))
    s = es.sample(sys_, pol, x0, 0.5, args.horizon, args.rollouts, torch.Generator().manual_seed(1))
    G = s.returns[:-1]
    adv = G - es.baseline_values(G, "loo")

    def pd_loop():
        return es.naive_per_rollout(
            lambda b: ro.rollout(sys_, pol, x0, s.noise[:, b:b + 1], s.sigma).returns[0].sum(),
            pol, args.rollouts)

    def sf_loop():
        def loss(b):
            mean = pol(s.states[:, b])  # (T, m)
            logp = -((s.actions[:, b] - mean) ** 2).sum(-1) / (2 * s.sigma ** 2)
            return (logp * adv[:, b]).sum()
        return es.naive_per_rollout(loss, pol, args.rollouts)

    rows = [("pathwise (BPTT)", lambda: es.pathwise(sys_, pol, s), pd_loop),
            ("score function (LOO)", lambda: es.score_function(pol, s, adv), sf_loop)]
    print(f"{args.rollouts} rollouts, horizon {args.horizon}, MLP policy, 1 thread, best of {args.repeats}")
    print(f"{'estimator':<22} {'batched s':>10} {'loop s':>10} {'speed-up':>9}")
    for name, batched, loop in rows:
        torch.testing.assert_close(batched(), loop())  # same numbers before timing
        tb, tl = best_of(batched, args.repeats), best_of(loop, args.repeats)
        print(f"{name:<22} {tb:10.4f} {tl:10.4f} {tl / tb:8.1f}x")


if __name__ == "__main__":
    main()
