"""Summaries of the Theorem 2 grid, on hand-made cells, and the vectorised bootstrap."""

import math

import numpy as np
import pytest
import torch

from vgh_lib import stats, theorem2
from vgh_lib.theorem2 import Cell


def _cell(step, tau, tau_r, cos, gap, ent, res=0.95):
    return Cell(step=step, pass1=0.5, tau=tau, tau_r=tau_r, cosine=cos, cosine_ci=(cos, cos),
                rel_error=math.sqrt(2 * (1 - cos)), resolution_d=res, resolution_c=res,
                gap=gap, mean_gap=gap, entropy=ent, reward=0.5)


def test_summaries_on_hand_made_cells():
    cells = [
        # checkpoint 10: error rises with gap and with entropy
        _cell(10, 0.5, 0.1, 0.99, 0.1, 1.0), _cell(10, 1.0, 0.1, 0.95, 0.2, 2.0),
        _cell(10, 2.0, 0.1, 0.80, 0.4, 3.0), _cell(10, 4.0, 0.1, 0.70, 0.8, 4.0),
        # checkpoint 20: error falls with gap (a different model), one cell unresolved
        _cell(20, 0.5, 0.1, 0.60, 0.1, 1.0), _cell(20, 1.0, 0.1, 0.90, 0.3, 2.0),
        _cell(20, 2.0, 0.1, 0.97, 0.5, 3.0), _cell(20, 4.0, 0.1, 0.10, 0.9, 4.0, res=0.5),
    ]
    counted = [c for c in cells if c.counted(0.9)]
    assert len(counted) == 7
    # lowest gap quartile of the counted cells: gaps 0.1, 0.1 (quantile 0.15)
    assert theorem2.low_gap_cosine(cells, 0.9) == pytest.approx((0.99 + 0.60) / 2)
    rho, per = theorem2.within_checkpoint_spearman(cells, 0.9, "gap")
    assert per[10] == pytest.approx(1.0) and per[20] == pytest.approx(-1.0)
    assert rho == pytest.approx(0.0)
    ent, groups = theorem2.entropy_spearman_across_tau(cells, 0.9)
    assert set(groups) == {(10, 0.1), (20, 0.1)} and ent == pytest.approx(0.0)
    assert math.isnan(theorem2.low_gap_cosine([c for c in cells if not c.counted(0.9)], 0.9))


def test_vectorised_bootstrap_equals_a_naive_loop():
    """Same resample indices (same generator seed): the same interval as a loop of gathers."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(800, 3, 8, dtype=torch.float64, generator=g)
    b = a + 1.5 * torch.randn(800, 3, 8, dtype=torch.float64, generator=g)
    lo, hi = theorem2._bootstrap_cosine(a, b, 200, 300, torch.Generator().manual_seed(1))
    idx = torch.randint(200, (300, 4, 200), generator=torch.Generator().manual_seed(1))
    A, B = a.view(4, 200, -1), b.view(4, 200, -1)
    cos = []
    for r in range(300):
        ma = torch.stack([A[p, idx[r, p]].mean(0) for p in range(4)]).reshape(-1)
        mb = torch.stack([B[p, idx[r, p]].mean(0) for p in range(4)]).reshape(-1)
        cos.append(stats.cosine(ma, mb))
    nlo, nhi = np.quantile(cos, [0.025, 0.975])
    assert lo == pytest.approx(nlo, abs=1e-12) and hi == pytest.approx(nhi, abs=1e-12)
    full = stats.cosine(A.mean(1), B.mean(1))
    assert lo <= full <= hi
