"""Value impact: predicting where along a pretraining trajectory RL pays off
(book/theory.md §4, the paper's Section 5, reconstructed).

For a checkpoint and a prompt distribution:

* **headroom** ``H = E_x[pass@K(x) − pass@1(x)]``: reward that re-weighting the policy's own
  samples can reach;
* **value-gradient signal** ``S = ‖∇_θ J‖``, the norm of the expected GRPO update, estimated
  without noise bias by the U-statistic over M independent batches (the mean of their
  pairwise inner products, :func:`signal`);
* **reward-std signal** ``E_x sqrt(p(1 − p))``;
* **value impact** ``I = S·H`` and the predicted gain ``α·I`` (α fitted across checkpoints).

The criterion: RL is most effective at the checkpoints that maximise ``I``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vgh_lib.common import stats
from vgh_lib.common.stats import pass_at_k


# ------------------------------------------------------------------------- factors
def headroom(successes, n_samples: int, k: int) -> float:
    """``E_x[pass@k − pass@1]`` from per-prompt success counts out of ``n_samples``."""
    c = np.asarray(successes, dtype=int)
    return mean_passk(c, n_samples, k) - float(np.mean(c / n_samples))


def mean_passk(successes, n_samples: int, k: int) -> float:
    """``E_x pass@k`` from per-prompt success counts out of ``n_samples``."""
    return float(np.mean([pass_at_k(n_samples, int(c), k) for c in np.asarray(successes, int)]))


def reward_std_signal(successes, n_samples: int) -> float:
    """``E_x sqrt(p(1 − p))`` with ``p`` the per-prompt success rate."""
    p = np.asarray(successes, dtype=float) / n_samples
    return float(np.mean(np.sqrt(p * (1 - p))))


def signal(gram) -> tuple[float, float]:
    """``S`` and its standard error from the Gram matrix of independent update estimates: the
    square root of the U-statistic of ``‖∇J‖²`` (:func:`vgh_lib.common.stats.u_statistic_sq_norm`)."""
    return stats.norm_from_sq(stats.u_statistic_sq_norm(gram), stats.u_statistic_se(gram))


# ------------------------------------------------------------------------- inference
def largest_drop(values) -> float:
    """How far a probe curve ever fell below its first value (≥ 0; 0 for an empty curve)."""
    return float(max(0.0, values[0] - min(values))) if len(values) else 0.0


class PairedGain:
    """The paired gain and the largest probe drop of a run with exact per-prompt held-out
    values ``before`` and ``after`` and an exact probe curve ``probe_value``."""

    @property
    def gain(self) -> float:
        return float(np.mean(self.after - self.before))

    @property
    def largest_drop(self) -> float:
        return largest_drop(self.probe_value)



@dataclass
class CheckpointData:
    """Everything measured at one checkpoint, in the form the nested bootstrap resamples."""

    step: int
    gram: np.ndarray            # (M, M) signal batch estimates
    successes: np.ndarray       # (P_f,) factor evaluation, out of n_samples
    n_samples: int
    k: int
    gains: np.ndarray           # (seeds, P_h) per-seed, per-held-out-prompt paired gains
    exact_values: np.ndarray | None = None   # (P_f,) exact success probabilities, if known

    def __post_init__(self):
        if self.exact_values is not None:  # pass@k of independent samples, exactly
            self._pass1 = np.asarray(self.exact_values, float)
            self._passk = 1 - (1 - self._pass1) ** self.k
        else:
            c = np.asarray(self.successes, int)
            self._pass1 = c / self.n_samples
            self._passk = np.array([pass_at_k(self.n_samples, int(ci), self.k) for ci in c])
        self._std = np.sqrt(self._pass1 * (1 - self._pass1))

    @classmethod
    def from_values(cls, label: int, gram, values, k: int, gains) -> "CheckpointData":
        """A design point whose factor prompts have *exact* success probabilities ``values``
        (for an exact-match reward, the teacher-forced probability of the correct answer), so
        that pass@1 = v and pass@k = 1 − (1 − v)^k with no sampling noise. ``label`` stands
        for the step (e.g. a task's index)."""
        v = np.asarray(values, float)
        if v.ndim != 1 or np.any((v < 0) | (v > 1)):
            raise ValueError("values must be a 1-D array of probabilities")
        return cls(label, gram, np.ones(v.size, int), 1, k, gains, exact_values=v)

    def predictors(self, batches=None, prompts=None) -> dict[str, float]:
        """S, H, I = S·H, reward-std, pass@1 and 1 − pass@1, optionally on resampled batches
        and factor prompts."""
        sel = slice(None) if prompts is None else prompts
        s = float(np.sqrt(max(0.0, stats.u_statistic_sq_norm(self.gram, batches))))
        p1 = float(self._pass1[sel].mean())
        h = float(self._passk[sel].mean()) - p1
        return {"I": s * h, "S": s, "H": h, "reward std": float(self._std[sel].mean()),
                "1 − pass@1": 1 - p1, "pass@1": p1}

    def gain(self, seeds=None, prompts=None) -> float:
        g = self.gains if seeds is None else self.gains[seeds]
        return float((g if prompts is None else g[:, prompts]).mean())


PREDICTORS = ("I", "S", "H", "reward std", "1 − pass@1")


def small_sample_scale(n: int, level: float = 0.95) -> float:
    """``t_{n−1}/z · sqrt(n/(n−1))``: widens bootstrap deviations over ``n`` units to what a
    t-interval gives. With few GRPO seeds (n = 4) a plain percentile bootstrap under-covers:
    it uses the variance with divisor n and normal-like tails (the coverage test in
    ``tests/test_impact.py`` measures both)."""
    from scipy.stats import norm, t

    if n < 2:
        return 1.0
    q = 1 - (1 - level) / 2
    return float(t.ppf(q, n - 1) / norm.ppf(q) * np.sqrt(n / (n - 1)))


def bootstrap_gain(gains, n_boot: int, rng: np.random.Generator, scale: bool = True,
                   seeds: bool = True, prompts: bool = True) -> np.ndarray:
    """Resampled mean gains of one checkpoint, (n_boot,): GRPO seeds and held-out prompts are
    resampled with replacement (the same prompts for every seed, since every seed is evaluated
    on the same prompts); with ``scale``, deviations from the estimate are widened by
    :func:`small_sample_scale` of the number of seeds. ``seeds=False`` or ``prompts=False``
    holds that source fixed, to show how much of the spread each one makes."""
    g = np.asarray(gains, float)
    n_seeds, n_prompts = g.shape
    si = rng.integers(0, n_seeds, (n_boot, n_seeds)) if seeds else \
        np.broadcast_to(np.arange(n_seeds), (n_boot, n_seeds))
    pi = rng.integers(0, n_prompts, (n_boot, n_prompts)) if prompts else \
        np.broadcast_to(np.arange(n_prompts), (n_boot, n_prompts))
    boot = g[si[:, :, None], pi[:, None, :]].mean(axis=(1, 2))
    est = g.mean()
    return est + (small_sample_scale(n_seeds) if scale else 1.0) * (boot - est)


def bootstrap_predictors(cp: "CheckpointData", n_boot: int,
                         rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Resampled predictors of one checkpoint, each (n_boot,): the signal's batches and the
    factor evaluation's prompts are resampled with replacement (a batch never pairs with a
    copy of itself in the U-statistic)."""
    M, P = cp.gram.shape[0], cp.successes.size
    bi = rng.integers(0, M, (n_boot, M))
    sub = cp.gram[bi[:, :, None], bi[:, None, :]]
    distinct = bi[:, :, None] != bi[:, None, :]
    with np.errstate(invalid="ignore"):
        sq = (sub * distinct).sum((1, 2)) / distinct.sum((1, 2))
    s = np.sqrt(np.clip(np.nan_to_num(sq), 0, None))
    pi = rng.integers(0, P, (n_boot, P))
    p1 = cp._pass1[pi].mean(1)
    h = cp._passk[pi].mean(1) - p1
    return {"I": s * h, "S": s, "H": h, "reward std": cp._std[pi].mean(1), "1 − pass@1": 1 - p1}


def nested_bootstrap(trajectories: list[list[CheckpointData]], n_boot: int = 2000,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Resample, within every checkpoint, the GRPO seeds and held-out prompts of the gain
    (:func:`bootstrap_gain`), and the signal's batches and the factor prompts
    (:func:`bootstrap_predictors`); never the checkpoints, which are fixed design points.
    Returns, per predictor, the (n_boot, n_trajectories) Spearman correlations with the gain,
    and ``"gain"``: the (n_boot, total checkpoints) resampled mean gains."""
    rng = np.random.default_rng(seed)
    out = {name: np.empty((n_boot, len(trajectories))) for name in PREDICTORS}
    gains_all = []
    for t, cps in enumerate(trajectories):
        gain = np.stack([bootstrap_gain(cp.gains, n_boot, rng) for cp in cps], axis=1)
        pred = [bootstrap_predictors(cp, n_boot, rng) for cp in cps]
        for name in PREDICTORS:
            out[name][:, t] = stats.spearman_rows(np.stack([p[name] for p in pred], axis=1), gain)
        gains_all.append(gain)
    out["gain"] = np.concatenate(gains_all, axis=1)
    return out


def percentile_ci(samples, level: float = 0.95) -> tuple[float, float]:
    v = np.asarray(samples, float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(v, a)), float(np.quantile(v, 1 - a))


@dataclass
class Analysis:
    """Point estimates and nested-bootstrap inference for one optimizer."""

    optimizer: str
    steps: list[np.ndarray]                # per trajectory
    gain: list[np.ndarray]                 # mean gain per checkpoint
    gain_ci: list[np.ndarray]              # (K, 2) per trajectory
    predictors: list[dict[str, np.ndarray]]
    spearman: dict[str, np.ndarray]        # predictor -> per-trajectory point estimates
    spearman_ci: dict[str, list[tuple[float, float]]]   # per trajectory
    pooled: dict[str, float]               # predictor -> mean over trajectories
    pooled_ci: dict[str, tuple[float, float]]
    versus_i: dict[str, tuple[float, float, float]]     # predictor -> (I − P, lo, hi), pooled
    p_value: float                         # one-sided permutation p of the pooled Spearman(I, gain)


def analyse(trajectories: list[list[CheckpointData]], optimizer: str, n_boot: int, n_perm: int,
            seed: int = 0) -> Analysis:
    """Spearman of every predictor with the gain, per trajectory and pooled (the mean over
    trajectories), with nested-bootstrap intervals, paired differences from I, and the
    permutation p-value of Spearman(I, gain)."""
    steps = [np.array([c.step for c in cps]) for cps in trajectories]
    gain = [np.array([c.gain() for c in cps]) for cps in trajectories]
    preds = [{name: np.array([c.predictors()[name] for c in cps]) for name in (*PREDICTORS, "pass@1")}
             for cps in trajectories]
    boot = nested_bootstrap(trajectories, n_boot, seed)
    spear = {n: np.array([stats.spearman(p[n], g) for p, g in zip(preds, gain)]) for n in PREDICTORS}
    spear_ci = {n: [percentile_ci(boot[n][:, t]) for t in range(len(trajectories))] for n in PREDICTORS}
    pooled = {n: float(np.mean(spear[n])) for n in PREDICTORS}
    pooled_boot = {n: np.mean(boot[n], axis=1) for n in PREDICTORS}  # NaN where undefined
    pooled_ci = {n: percentile_ci(pooled_boot[n]) for n in PREDICTORS}
    versus = {}
    for n in PREDICTORS[1:]:
        lo, hi = percentile_ci(pooled_boot["I"] - pooled_boot[n])
        versus[n] = (pooled["I"] - pooled[n], lo, hi)
    offsets = np.cumsum([0] + [len(s) for s in steps])
    gain_ci = [np.array([percentile_ci(boot["gain"][:, offsets[t] + j]) for j in range(len(steps[t]))])
               for t in range(len(steps))]
    _, p = stats.permutation_pvalue([p["I"] for p in preds], gain, n_perm, seed)
    return Analysis(optimizer, steps, gain, gain_ci, preds, spear, spear_ci, pooled, pooled_ci,
                    versus, p)


def predictor_table(res: Analysis, per_trajectory: bool = True) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the predictor table of notebooks 05 and 08: each predictor's pooled
    Spearman with the gain and its interval (with the per-trajectory values where there are
    several trajectories), and Spearman(I) minus it with the paired interval; I first."""
    header = ["predictor", *(["pooled Spearman [95% CI]", "per trajectory"] if per_trajectory
                             else ["Spearman with the gain [95% CI]"]), "Spearman(I) − this [95% CI]"]
    rows = [[n, f"{res.pooled[n]:.2f} [{res.pooled_ci[n][0]:.2f}, {res.pooled_ci[n][1]:.2f}]",
             *([", ".join(f"{v:.2f}" for v in res.spearman[n])] if per_trajectory else []),
             "" if n == "I" else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*res.versus_i[n])]
            for n in res.pooled]
    return header, rows


def mid_checkpoint(before_values: list[float], target: float = 0.5) -> int:
    """The index of the checkpoint whose pre-RL held-out pass@1 is closest to ``target``."""
    return int(np.argmin(np.abs(np.asarray(before_values, float) - target)))


# ------------------------------------------------ the pilots' design rules (05, 08, 09, 10)
# Written down before each pilot ran (each study's pre-registration quotes them); neither looks
# at a predictor or a gain.
def pilot_checkpoints(pass1, targets) -> list[int]:
    """Indices of the checkpoints whose pass@1 is closest to each target (distinct, in order;
    a target finds none when every checkpoint is taken already)."""
    pass1 = np.asarray(pass1, float)
    chosen: list[int] = []
    for t in targets:
        order = np.argsort(np.abs(pass1 - t), kind="stable")
        free = [int(j) for j in order if j not in chosen]
        if free:
            chosen.append(free[0])
    return sorted(chosen)


def choose_lr(largest_drops: dict[float, list[float]], tolerance: float) -> float:
    """The largest learning rate whose probe value never fell more than ``tolerance`` below its
    start at any pilot checkpoint; the smallest rate if none qualifies.

    ``largest_drops[lr]`` holds, per pilot checkpoint, ``GRPOHistory.largest_drop()``.
    """
    if not largest_drops:
        raise ValueError("no pilot runs to choose a learning rate from")
    safe = [lr for lr, drops in largest_drops.items() if max(drops) <= tolerance]
    return max(safe) if safe else min(largest_drops)


# ------------------------------------------- ranking units by a predictor (notebooks 10, 12)
@dataclass
class RankCorrelation:
    """Spearman(predictor, outcome) over tasks: value, bootstrap-over-tasks interval, and the
    one-sided permutation p of a positive correlation."""

    value: float
    lo: float
    hi: float
    p: float
    n: int


def rank_correlation(x, y, n_boot: int, n_perm: int, seed: int) -> RankCorrelation:
    """Spearman(x, y) over units with its bootstrap-over-units 95 % interval and the one-sided
    permutation p of a positive correlation (notebooks 10 and 12 rank tasks with it)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho, p = stats.permutation_pvalue([x], [y], n_perm, seed)
    rng = np.random.default_rng(seed + 1)
    idx = rng.integers(0, x.size, (n_boot, x.size))
    boot = stats.spearman_rows(x[idx], y[idx])
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return RankCorrelation(float(rho), float(lo), float(hi), float(p), int(x.size))


def rank_lead(x_i, x_p, y, n_boot: int, seed: int) -> tuple[float, float, float]:
    """ρ(I, y) − |ρ(P, y)| and its 95 % bootstrap-over-tasks interval (the same resampled tasks
    for both, so the interval is paired). A predictor may rank the gains with either sign
    (pass@1 and NLL would predict with a negative one), so P's correlation counts by its size;
    I's by its sign, because the hypothesis says larger I, larger gain."""
    x_i, x_p, y = (np.asarray(a, float) for a in (x_i, x_p, y))
    d = stats.spearman(x_i, y) - abs(stats.spearman(x_p, y))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, (n_boot, y.size))
    boot = stats.spearman_rows(x_i[idx], y[idx]) - np.abs(stats.spearman_rows(x_p[idx], y[idx]))
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return float(d), float(lo), float(hi)


# ----------------------------------- per-task gains, seed variance pooled across tasks (10, 12)
@dataclass
class TaskGain:
    """A task's gain on one outcome over seeds: mean, standard error and interval, with the
    seed variance pooled across tasks (:func:`pooled_gains`)."""

    task: str
    mean: float
    se: float
    lo: float
    hi: float


def pooled_gains(matrices: dict[str, np.ndarray], level: float = 0.95) -> tuple[list[TaskGain], int]:
    """Each task's mean gain and interval from its (seeds, prompts) gain matrix.

    The variance of a task's mean has two sources: the GRPO seed (which run) and the held-out
    prompts (which sample of the task). The seed part is the variance of the per-seed means
    around the task's mean, *pooled across tasks* (degrees of freedom Σ(seeds − 1), far more than
    one task's seeds − 1); the prompt part is the variance of the per-prompt means over the
    task's prompts, divided by their number. The interval is mean ± t · SE, with each task's
    degrees of freedom from the Welch–Satterthwaite formula for the two parts. Returns the
    gains and the pooled seed part's degrees of freedom."""
    from scipy.stats import t as student_t

    ss, df = 0.0, 0
    for g in matrices.values():
        m = g.mean(axis=1)
        ss += float(((m - m.mean()) ** 2).sum())
        df += g.shape[0] - 1
    if df < 1:
        raise ValueError("pooling the seed variance needs at least one task with 2 seeds")
    seed_var = ss / df
    out = []
    for task, g in matrices.items():
        per_prompt = g.mean(axis=0)
        n = per_prompt.size
        v_seed = seed_var / g.shape[0]
        v_prompt = float(per_prompt.var(ddof=1)) / n if n > 1 else 0.0
        den = v_seed ** 2 / df + (v_prompt ** 2 / (n - 1) if n > 1 else 0.0)
        dof = (v_seed + v_prompt) ** 2 / den if den > 0 else float(df)
        se = float(np.sqrt(v_seed + v_prompt))
        q = float(student_t.ppf(0.5 + level / 2, dof))
        mean = float(g.mean())
        out.append(TaskGain(task, mean, se, mean - q * se, mean + q * se))
    return out, df


def gain_interval_coverage(seed_sd: np.ndarray, prompt_sd: np.ndarray, n_seeds: int,
                           n_prompts: np.ndarray, n_sims: int, seed: int, level: float = 0.95) -> float:
    """The share of simulated designs in which :func:`pooled_gains`' interval covers each
    task's true mean gain: tasks with their own seed and prompt standard deviations (so the
    pooling is tested where the seed variance differs between tasks), ``n_seeds`` seeds and
    ``n_prompts[t]`` prompts each; gains ``g_sj = μ + b_s + a_j + e_sj``."""
    rng = np.random.default_rng(seed)
    seed_sd, prompt_sd, n_prompts = (np.asarray(a, float) for a in (seed_sd, prompt_sd, n_prompts))
    hits = total = 0
    for _ in range(n_sims):
        mats = {}
        for t in range(seed_sd.size):
            n = int(n_prompts[t])
            b = rng.normal(0, seed_sd[t], (n_seeds, 1))
            a = rng.normal(0, prompt_sd[t], (1, n))
            e = rng.normal(0, 0.25 * prompt_sd[t], (n_seeds, n))
            mats[str(t)] = b + a + e
        gains, _ = pooled_gains(mats, level)
        hits += sum(g.lo <= 0.0 <= g.hi for g in gains)
        total += len(gains)
    return hits / total
