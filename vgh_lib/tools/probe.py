"""``vgh probe``: the value-impact factors of any local checkpoint (book/theory.md §4, §4b).

For each checkpoint (a local Hugging Face causal-LM directory, or a ``.gguf`` file) and a task
(a built-in task or a JSONL file of ``{"prompt": ..., "answer": ...}`` lines, exact-match
reward), the probe measures, with standard errors where they are estimated:

* every predictor of the panel (:mod:`vgh_lib.common.panel`): pass@1, the headroom
  ``H = E_x[pass@k − pass@1]``, learnability ``p(1 − p)``, reward-std, the non-degenerate
  group fraction, coverage pass@64 and the NLL of the answers, all exact functions of each
  prompt's teacher-forced answer probability ``p`` (one forward pass per prompt);
* the signal ``S``, the norm of the expected GRPO update, by ``--signal``:

  - ``exact`` (the default): for the exact-match reward the expected update over the prompts
    is ``g = (1/N) Σ_x a_G(p_x) ∇p_x`` (:mod:`vgh_lib.common.exact_signal`), so ``S = ‖g‖`` and
    its two parts, ``S² = self + alignment`` (the alignment: the cross products
    ``⟨∇p_x, ∇p_x'⟩`` between prompts), come from one teacher-forced backward pass a prompt,
    with no sampling noise, over the same trainable parameters as the noisy S;
  - ``noisy``: the square root of the U-statistic of ``‖∇J‖²`` over ``batches`` independent
    sampled GRPO-update estimates (:func:`vgh_lib.common.impact.signal`);
  - ``both``: the two, for comparison;

* the value impact ``I = S·H``; with the noisy S its SE is a delete-one-batch jackknife of both
  factors;
* each predictor's cost: the seconds of the measurements it needs.

The panel's ``S`` and ``I`` are the exact ones wherever they were measured (the noisy ones
under ``--signal noisy``); the keys of :data:`SIGNAL_KEYS` name each kind where it was
measured: ``S exact``, ``self``, ``alignment`` and ``I exact = S exact · H``, and ``S noisy``
and ``I noisy``. The exact ones are exact given the prompts: their spread over prompt draws is
not estimated (no SE).

The noisy S's design is that of :func:`vgh_lib.tiny.grpo.signal_gram`: ``prompts`` distinct
prompts, drawn by a seeded permutation, are cut into ``batches`` disjoint batches; every prompt
gets ``samples`` completions (the GRPO group), and the same completions give the success counts. On
a task whose prompts share one length the Gram matrix is exactly ``grpo.signal_gram``'s with
the same seed; otherwise each batch is processed in sub-batches of prompts of equal length
(each prompt's group is one sub-batch when no two lengths agree), and its update is the mean
over all of the batch's samples, as before.

Everything that can be refused is refused before any model loads (:func:`check_paths`,
:func:`load_jsonl`, :class:`ProbeConfig`), with a one-line :class:`ParameterError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from vgh_lib.common import panel, stats
from vgh_lib.common.exact_signal import ExactSignal, exact_signal
from vgh_lib.errors import ParameterError
from vgh_lib.paths import PACKAGE_DIR

BUILTIN_TASKS = ("addition", "reverse")
FACTORS = panel.PANEL
SIGNALS = ("exact", "noisy", "both")
"""The values of ``--signal``: which measurement of S the probe makes."""
EXACT_KEYS = ("S exact", "self", "alignment", "I exact")
"""The exact signal's keys: ``S exact`` = ‖g‖, its two parts ``self`` and ``alignment``
(``S exact² = self + alignment``) and ``I exact = S exact · H``."""
NOISY_KEYS = ("S noisy", "I noisy")
"""The noisy signal's keys: the U-statistic's S and ``I noisy = S noisy · H``."""
SIGNAL_KEYS = EXACT_KEYS + NOISY_KEYS
REPORTED = FACTORS + SIGNAL_KEYS
"""Every key that a result's ``values``, ``ses`` and ``cost`` may hold (those of
:data:`SIGNAL_KEYS` where measured) and its JSON lists (``null`` where not measured)."""


@dataclass(frozen=True)
class ProbeItem:
    prompt: str
    answer: str


# ------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class ProbeConfig:
    """The probe's design. The defaults cost at most 5 % of one default GRPO run
    (60 steps × 16 prompts × group 8, measured by ``benchmarks/bench_probe.py``)."""

    samples: int = 8          # the GRPO group G (of a_G(p) and the noisy S) and pass@k's sample
    k: int = 4
    batches: int = 4          # independent batches of the noisy S's U-statistic
    prompts: int = 24         # distinct prompts in all, split evenly over the batches
    temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    signal: str = "exact"     # exact, noisy or both (SIGNALS): which measurement of S

    @property
    def exact(self) -> bool:
        """Whether the exact S is measured."""
        return self.signal in ("exact", "both")

    @property
    def noisy(self) -> bool:
        """Whether the noisy S (sampled GRPO updates) is measured."""
        return self.signal in ("noisy", "both")

    def __post_init__(self):
        if self.signal not in SIGNALS:
            raise ParameterError(f"--signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}")
        if self.samples < 2:
            raise ParameterError(f"--samples must be at least 2 (a GRPO group), got {self.samples}")
        if not 1 <= self.k <= self.samples:
            raise ParameterError(f"--k must be in [1, --samples = {self.samples}], got {self.k}")
        if self.batches < 3:
            raise ParameterError(f"--batches must be at least 3 (the SE of S is a jackknife), "
                                 f"got {self.batches}")
        if self.prompts < self.batches or self.prompts % self.batches:
            raise ParameterError(f"--prompts must be a positive multiple of --batches = "
                                 f"{self.batches}, got {self.prompts}")
        if not self.temperature > 0:
            raise ParameterError(f"--temperature must be > 0, got {self.temperature}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ParameterError(f"--device must be cpu, cuda or auto, got {self.device!r}")


# --------------------------------------------------------------------------- validation
def load_jsonl(path: Path | str) -> list[ProbeItem]:
    """The items of a JSONL task file, refusing (one line, naming the line) a line that is not
    a JSON object, a missing or non-string ``prompt``/``answer``, an empty answer and a
    duplicate prompt. Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"task file {path} does not exist")
    items, first_line = [], {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ParameterError(f"{path}:{n}: expected a JSON object with 'prompt' and 'answer'")
        for key in ("prompt", "answer"):
            if key not in obj:
                raise ParameterError(f"{path}:{n}: missing key '{key}'")
            if not isinstance(obj[key], str):
                raise ParameterError(f"{path}:{n}: '{key}' must be a string, got "
                                     f"{type(obj[key]).__name__}")
        if not obj["prompt"]:
            raise ParameterError(f"{path}:{n}: empty prompt")
        if not obj["answer"]:
            raise ParameterError(f"{path}:{n}: empty answer")
        if obj["prompt"] in first_line:
            raise ParameterError(f"{path}:{n}: duplicate prompt (first on line "
                                 f"{first_line[obj['prompt']]})")
        first_line[obj["prompt"]] = n
        items.append(ProbeItem(obj["prompt"], obj["answer"]))
    return items


def task_items(task: str, digits: int = 2) -> tuple[list[ProbeItem], str]:
    """``(items, description)`` of a built-in task name or a JSONL file (validated).

    A built-in addition or reversal task is split with the task's default seed (0): for a
    trajectory pretrained with another seed (notebook 05's confirmation trajectories) these
    prompts are not that trajectory's training split, and may include its held-out prompts.
    The probe trains nothing, so this affects only which prompts the factors are measured on.
    """
    from vgh_lib.lm import tasks as lm_tasks

    if task in BUILTIN_TASKS:
        from vgh_lib.tiny.tasks import Task

        if not 1 <= digits <= 6:
            raise ParameterError(f"--digits must be in [1, 6], got {digits}")
        train, _ = Task(task, digits).split()
        return [ProbeItem(e.prompt, e.answer) for e in train], f"{task} ({digits} digits, training split of task seed 0)"
    if task in lm_tasks.LM_TASKS:
        train, _ = lm_tasks.split(task)
        return [ProbeItem(e.prompt, e.answer) for e in train], f"{task} (few-shot, training split)"
    if task.endswith(".jsonl") or Path(task).is_file():
        return load_jsonl(task), Path(task).name
    raise ParameterError(f"--task {task!r} is neither a built-in task "
                         f"({', '.join(BUILTIN_TASKS + lm_tasks.LM_TASKS)}) nor a .jsonl file")


MODEL_NAMES = ("smollm2", "tiny")
"""Model names that the probe takes as the notebooks do (``vgh_lib.lm.loading.resolve_model_dir``):
the shipped SmolLM2-135M-Instruct and the smoke profile's tiny random llama. A local path of the
same name wins."""


def check_paths(paths) -> list[Path]:
    """Refuse, before anything loads, a path that is neither a local model directory (with a
    config.json), a ``.gguf`` file nor a model name of :data:`MODEL_NAMES` (``smollm2`` only
    where its package is installed); and a path given twice."""
    from vgh_lib.lm import loading

    out, seen = [], set()
    for p in map(Path, paths):
        if str(p) in MODEL_NAMES and not p.exists():
            if str(p) == "smollm2":
                try:
                    loading.shipped_gguf()
                except loading.ModelLoadError as exc:
                    raise ParameterError(f"smollm2: {exc}") from None
            if p in seen:
                raise ParameterError(f"{p}: given twice")
            seen.add(p)
            out.append(p)
            continue
        if p.suffix == ".gguf":
            if not p.is_file():
                raise ParameterError(f"{p}: GGUF file does not exist")
        elif not p.is_dir():
            raise ParameterError(f"{p}: no such model directory (nor a model name: "
                                 f"{', '.join(MODEL_NAMES)})")
        elif not (p / "config.json").is_file():
            raise ParameterError(f"{p}: not a model directory (no config.json)")
        key = p.resolve()
        if key in seen:
            raise ParameterError(f"{p}: given twice")
        seen.add(key)
        out.append(p)
    if not out:
        raise ParameterError("no checkpoint given")
    return out


def select(items: list[ProbeItem], cfg: ProbeConfig, source: str) -> list[ProbeItem]:
    """The probe's prompts: the first ``cfg.prompts`` of a seeded permutation (the draw of
    :func:`vgh_lib.tiny.grpo.signal_gram` with the same seed)."""
    if len(items) < cfg.prompts:
        raise ParameterError(f"{source} has {len(items)} prompts, fewer than --prompts = {cfg.prompts}")
    gen = torch.Generator().manual_seed(cfg.seed)
    return [items[i] for i in torch.randperm(len(items), generator=gen)[: cfg.prompts].tolist()]


# --------------------------------------------------------------------------- measuring
def is_task_tokenizer(tokenizer) -> bool:
    """The character tokenizer of the book's tasks (its models were trained on ``<bos> prompt``)."""
    from vgh_lib.tiny.tasks import SPECIAL_TOKENS, SYMBOLS

    return tokenizer.get_vocab() == {t: i for i, t in enumerate(SPECIAL_TOKENS + SYMBOLS)}


def encode(tokenizer, item, task_tokenizer: bool | None = None) -> tuple[list[int], list[int]]:
    """``(prompt ids, answer ids)`` as :func:`vgh_lib.lm.tasks.encode` tokenizes them (the
    tokenizer's own special tokens; the answer as the model would write it after the prompt),
    with ``<bos>`` first for the book's task tokenizer, as its checkpoints were trained."""
    from vgh_lib.lm.tasks import encode as lm_encode

    p, a = lm_encode(tokenizer, item)
    p = p.tolist()
    if task_tokenizer is None:
        task_tokenizer = is_task_tokenizer(tokenizer)
    if task_tokenizer and (not p or p[0] != tokenizer.bos_token_id):
        p = [tokenizer.bos_token_id] + p
    if not len(a):
        raise ValueError(f"the answer {item.answer!r} of prompt {item.prompt!r} has no tokens")
    return p, a.tolist()


def _groups(encoded: list[tuple[list[int], list[int]]]) -> list[list[int]]:
    """Indices of the batch's prompts, grouped by (prompt length, answer length), in order of
    first appearance (one group when every prompt has the same shape)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, a) in enumerate(encoded):
        groups.setdefault((len(p), len(a)), []).append(i)
    return list(groups.values())


def batch_update(model, encoded, group_size: int, temperature: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """One batch's GRPO expected-update estimate ``mean_i A_i Σ_s ∇ log π(a_s^i)`` (flattened,
    as :func:`vgh_lib.tiny.grpo.grpo_update`) and each prompt's successes out of ``group_size``."""
    from vgh_lib.tiny.grpo import group_update

    device = next(model.parameters()).device
    total = torch.zeros(sum(p.numel() for p in model.parameters() if p.requires_grad),
                        dtype=torch.float64, device=device)
    successes = np.zeros(len(encoded), dtype=int)
    n = len(encoded) * group_size
    for idx in _groups(encoded):
        prompts = torch.tensor([encoded[i][0] for i in idx], device=device)
        answers = torch.tensor([encoded[i][1] for i in idx], device=device)
        flat, rewards = group_update(model, prompts, answers, group_size, temperature, generator,
                                     weight=len(idx) * group_size / n)
        total += flat
        successes[idx] = rewards.view(len(idx), group_size).sum(1).long().cpu().numpy()
    return total, successes


def measure_exact(model, encoded, group_size: int, temperature: float) -> ExactSignal:
    """The exact signal of the prompts ``encoded``
    (:func:`vgh_lib.common.exact_signal.exact_signal`): ``S = ‖(1/N) Σ_x a_G(p_x) ∇p_x‖`` over
    the model's trainable parameters (those of the noisy S, :func:`batch_update`), with its self
    and alignment terms and its seconds. One teacher-forced forward and backward pass a prompt,
    ``log p_x`` as :func:`answer_logprobs` computes it; no sampling."""
    from vgh_lib.tiny.sampling import completion_logprobs

    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]

    def logp(i):  # log p_x = Σ_s log π_τ(a_s | x, a_<s), with its graph
        prompt, answer = encoded[i]
        lp = completion_logprobs(model, torch.tensor([prompt], device=device),
                                 torch.tensor([answer], device=device), temperature)   # (1, La)
        return lp.double().sum()

    signal, _ = exact_signal(logp, params, len(encoded), group_size)
    return signal


@dataclass
class ProbeResult:
    """One checkpoint's panel (``values``, ``ses``, ``cost`` in seconds: every key of
    :data:`FACTORS`, and those of :data:`SIGNAL_KEYS` that were measured), and the raw
    measurements behind it."""

    path: str
    logp: np.ndarray            # (prompts,) log success probability of each selected prompt
    successes: np.ndarray       # (prompts,) sampled successes out of ``samples`` (the noisy S's
                                #   GRPO groups); empty without the noisy S
    gram: np.ndarray            # (batches, batches); (0, 0) without the noisy S
    samples: int
    k: int
    values: dict[str, float] = field(default_factory=dict)
    ses: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    exact: ExactSignal | None = None   # the exact signal, where measured

    @classmethod
    def from_measurements(cls, path: str, logp, successes, gram, samples: int, k: int,
                          step: int | None = None, eval_seconds: float = float("nan"),
                          signal_seconds: float = float("nan"),
                          exact: ExactSignal | None = None) -> "ProbeResult":
        """The panel from the measurements: ``gram`` (the noisy S's batches; ``None`` or an
        empty array where it was not measured) and ``exact`` (the exact signal, or ``None``).
        ``S`` and ``I`` are the exact ones where ``exact`` is given, else the noisy ones."""
        gram = np.zeros((0, 0)) if gram is None else np.asarray(gram, float)
        if exact is None and not gram.size:
            raise ValueError("a probe result needs the exact signal, the noisy one's Gram "
                             "matrix, or both")
        if gram.size:
            pan = panel.panel(logp, gram, samples, k, eval_seconds=eval_seconds,
                              signal_seconds=signal_seconds)
            values, ses, cost = dict(pan.values), dict(pan.ses), dict(pan.cost)
            for key, name in (("S noisy", "S"), ("I noisy", "I")):
                values[key], ses[key], cost[key] = values[name], ses[name], cost[name]
        else:  # the exact predictors alone (panel.panel's, without a Gram matrix)
            values, ses, cost = {}, {}, {}
            for name, term in panel.per_prompt(logp, samples, k).items():
                values[name], ses[name] = panel.mean_se(term)
                cost[name] = eval_seconds
        if exact is not None:
            # S² = self + alignment (vgh_lib.common.exact_signal); I = S·H. Exact given the
            # prompts: no SE (the spread over prompt draws is not estimated).
            values.update({"S exact": exact.S, "self": exact.self_term,
                           "alignment": exact.alignment, "I exact": exact.S * values["H"]})
            ses.update(dict.fromkeys(EXACT_KEYS, float("nan")))
            cost.update({"S exact": exact.seconds, "self": exact.seconds,
                         "alignment": exact.seconds, "I exact": eval_seconds + exact.seconds})
            for key, name in (("S", "S exact"), ("I", "I exact")):
                values[key], ses[key], cost[key] = values[name], ses[name], cost[name]
        successes = np.zeros(0, int) if successes is None else np.asarray(successes, int)
        return cls(path, np.asarray(logp, float), successes, gram, samples, k, values, ses,
                   cost, step, exact)

    def as_dict(self) -> dict:
        def clean(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {"path": self.path, "step": self.step,
                "factors": {f: {"value": clean(self.values.get(f)), "se": clean(self.ses.get(f)),
                                "seconds": clean(self.cost.get(f))} for f in REPORTED},
                "logp": self.logp.tolist(), "successes": self.successes.tolist(),
                "samples": self.samples, "k": self.k, "gram": self.gram.tolist()}


def _step_of(path: Path) -> int | None:
    try:
        m = json.loads((path / "metrics.json").read_text())
        return int(m["step"]) if "step" in m else None
    except (OSError, ValueError, KeyError, TypeError):
        name = path.name
        return int(name[5:]) if name.startswith("step_") and name[5:].isdigit() else None


def load_checkpoint(path: Path, device: str):
    """``(model, tokenizer)`` of a model directory, a ``.gguf`` file (converted once) or a
    model name of :data:`MODEL_NAMES`."""
    from vgh_lib.tiny.models import load_local

    if path.suffix == ".gguf" or (str(path) in MODEL_NAMES and not path.exists()):
        from vgh_lib.lm.loading import resolve_model_dir

        path = resolve_model_dir(path)
    return load_local(path, device)


def answer_logprobs(model, encoded, temperature: float) -> np.ndarray:
    """Each prompt's teacher-forced ``log π_τ(answer | prompt)``: with an exact-match reward, the
    log of its success probability under sampling at temperature ``temperature``."""
    from vgh_lib.tiny.sampling import completion_logprobs

    device = next(model.parameters()).device
    out = np.zeros(len(encoded))
    with torch.no_grad():
        for idx in _groups(encoded):
            prompts = torch.tensor([encoded[i][0] for i in idx], device=device)
            answers = torch.tensor([encoded[i][1] for i in idx], device=device)
            lp = completion_logprobs(model, prompts, answers, temperature).double().sum(1)
            out[idx] = lp.cpu().numpy()
    return out


def measure(model, tokenizer, items: list[ProbeItem], cfg: ProbeConfig, pool_size: int,
            path: str = "", step: int | None = None, progress=None) -> ProbeResult:
    """The probe on one loaded model: ``items`` are the prompts :func:`select` chose from a
    pool of ``pool_size``; the sampling noise continues the generator of that draw, as in
    :func:`vgh_lib.tiny.grpo.signal_gram`."""
    import time

    bos = is_task_tokenizer(tokenizer)
    encoded = [encode(tokenizer, it, bos) for it in items]
    t0 = time.perf_counter()
    logp = answer_logprobs(model, encoded, cfg.temperature)
    eval_seconds = time.perf_counter() - t0
    exact = None
    if cfg.exact:  # no random numbers: the noisy S's draws below are those of --signal noisy
        exact = measure_exact(model, encoded, cfg.samples, cfg.temperature)
        if progress is not None:
            progress.update(1)
    gram, successes, signal_seconds = None, None, float("nan")
    if cfg.noisy:
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.randperm(pool_size, generator=gen)
        per = cfg.prompts // cfg.batches
        updates, counts = [], []
        t0 = time.perf_counter()
        for b in range(cfg.batches):
            g, c = batch_update(model, encoded[b * per:(b + 1) * per], cfg.samples, cfg.temperature, gen)
            updates.append(g)
            counts.append(c)
            if progress is not None:
                progress.update(1)
        signal_seconds = time.perf_counter() - t0
        gram, successes = stats.gram_matrix(updates), np.concatenate(counts)
    return ProbeResult.from_measurements(path, logp, successes, gram, cfg.samples, cfg.k, step,
                                         eval_seconds, signal_seconds, exact)


def progress_units(cfg: ProbeConfig) -> int:
    """The progress bar's units per checkpoint: one for the exact S, one per noisy batch."""
    return int(cfg.exact) + (cfg.batches if cfg.noisy else 0)


@dataclass
class ProbeRun:
    task: str
    config: ProbeConfig
    results: list[ProbeResult]
    failed: dict[str, str]                 # path -> why it could not be loaded

    def ranked(self) -> list[ProbeResult]:
        """By I, largest first (a NaN I last); ties keep the given order."""
        return sorted(self.results, key=lambda r: -r.values["I"] if np.isfinite(r.values["I"])
                      else math.inf)

    def as_dict(self) -> dict:
        return {"task": self.task, "config": asdict(self.config), "provenance": provenance(),
                "ranking": [r.as_dict() for r in self.ranked()], "failed": self.failed}


def probe(paths, task: str, cfg: ProbeConfig, digits: int = 2, progress: bool = True,
          log=print) -> ProbeRun:
    """Validate everything, then probe every checkpoint; one that fails to load is reported
    through ``log`` and skipped."""
    from tqdm.auto import tqdm

    paths = check_paths(paths)
    items, description = task_items(task, digits)
    chosen = select(items, cfg, description)
    device = str(_device(cfg.device))
    results, failed = [], {}
    units = progress_units(cfg)
    bar = tqdm(total=len(paths) * units, desc="vgh probe", unit="step", disable=not progress)
    for p in paths:
        try:
            model, tok = load_checkpoint(p, device)
        except Exception as exc:  # noqa: BLE001 - any load failure skips the checkpoint
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            failed[str(p)] = msg
            log(f"vgh probe: skipped {p}: could not load ({msg})")
            bar.update(units)
            continue
        results.append(measure(model, tok, chosen, cfg, len(items), str(p),
                               _step_of(p) if p.is_dir() else None, bar))
        del model
    bar.close()
    return ProbeRun(description, cfg, results, failed)


@dataclass(frozen=True)
class ProbeJob:
    """One checkpoint's probe (:func:`run_probe`), a frozen job for a process pool or a cluster."""

    path: str
    task: str
    config: ProbeConfig
    digits: int = 2

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


def run_probe(job: ProbeJob) -> ProbeResult:
    """One checkpoint's probe on one thread. A load failure raises."""
    torch.set_num_threads(1)
    run = probe([job.path], job.task, job.config, job.digits, progress=False, log=lambda m: None)
    if run.failed:
        raise RuntimeError(f"{job.path}: {run.failed[str(job.path)]}")
    return run.results[0]


def _device(device: str):
    from vgh_lib.tiny.models import resolve_device

    try:
        return resolve_device(device)
    except (RuntimeError, ValueError) as exc:
        raise ParameterError(f"--device {device}: {exc}") from None


def provenance() -> dict:
    import datetime
    import importlib.metadata
    import subprocess

    try:
        version = importlib.metadata.version("vgh-companion")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=PACKAGE_DIR, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        commit = ""
    return {"vgh_companion": version, "git": commit or "unknown", "torch": torch.__version__,
            "date": datetime.date.today().isoformat()}


# ---------------------------------------------------------------------------- reporting
def _fmt(v: float, se: float) -> str:
    if not np.isfinite(v):
        return "nan"
    return f"{v:.4g} ± {se:.2g}" if np.isfinite(se) else f"{v:.4g} ± –"


def columns(cfg: ProbeConfig) -> tuple[str, ...]:
    """The table's columns: the panel, then the exact S's two parts (``S² = self +
    alignment``), then, under ``--signal both``, the noisy S and I (``S`` and ``I`` are the
    exact ones there)."""
    return (FACTORS + (("self", "alignment") if cfg.exact else ())
            + (NOISY_KEYS if cfg.signal == "both" else ()))


def table(run: ProbeRun) -> str:
    """The ranking as a plain-text table (value ± SE; ``± –`` where there is none, as for the
    exact S, which is exact given the prompts), and each predictor's mean cost in seconds per
    checkpoint (the measurements it needs)."""
    c = run.config
    cols = columns(c)
    rows = [["rank", "checkpoint", *cols]]
    for i, r in enumerate(run.ranked(), start=1):
        rows.append([str(i), r.path, *(_fmt(r.values[f], r.ses[f]) for f in cols)])
    costs = {f: np.mean([r.cost[f] for r in run.results]) for f in cols} if run.results else {}
    rows.append(["", "cost (s)", *(f"{costs[f]:.3g}" if run.results else "" for f in cols)])
    widths = [max(len(row[j]) for row in rows) for j in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if c.exact:
        signal = (f"S exact: ‖expected GRPO update‖ with group {c.samples}, one backward pass a "
                  f"prompt, S² = self + alignment")
        if c.noisy:
            signal += f"; S noisy over {c.batches} batches of {c.samples} samples"
    else:
        signal = f"{c.samples} samples a prompt, S over {c.batches} batches"
    head = (f"task: {run.task}; {c.prompts} prompts, {signal}, temperature {c.temperature}, "
            f"seed {c.seed}; H with k = {c.k}, non-degenerate with G = {c.samples}, coverage = "
            f"pass@64 (exact from each prompt's answer probability); ranked by I = S·H (± SE)")
    return head + "\n" + "\n".join(lines)


def plot(run: ProbeRun, out: Path | str) -> Path:
    """The factors (± SE) against the checkpoints in the order given, provenance in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = run.results
    x = np.arange(len(res))
    labels = [str(r.step) if r.step is not None else Path(r.path).name for r in res]
    fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    for ax, f in zip(axes.flat, FACTORS):
        v = np.array([r.values[f] for r in res])
        e = np.array([r.ses[f] for r in res])
        ax.errorbar(x, v, yerr=np.where(np.isfinite(e), e, 0), marker="o", capsize=3)
        ax.set_title(f)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("checkpoint (step)" if all(r.step is not None for r in res) else "checkpoint")
    c, pv = run.config, provenance()
    design = (f"{c.prompts} prompts, exact S (group {c.samples})" if c.signal == "exact" else
              f"{c.prompts} prompts × {c.samples} samples, {c.batches} batches"
              + (", S exact" if c.exact else ", S noisy"))
    fig.suptitle(f"vgh probe · {run.task} · {design}, k={c.k}, τ={c.temperature}, seed {c.seed}\n"
                 f"vgh-companion {pv['vgh_companion']} (git {pv['git']}), torch {pv['torch']}, "
                 f"{pv['date']}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# -------------------------------------------------------------------------------- the CLI
def add_arguments(parser) -> None:
    """The options of ``vgh probe`` (:mod:`vgh_lib.driver.cli` keeps only the dispatch)."""
    d = ProbeConfig()
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="local Hugging Face causal-LM directories, .gguf files, or the "
                             "model names smollm2 (the shipped SmolLM2-135M-Instruct) and tiny")
    parser.add_argument("--task", required=True, metavar="NAME|FILE.jsonl",
                        help="addition, reverse, a real-LM task (capitals, products, max, sums, "
                             "successor, differences, two_digit_sums) or a JSONL file of "
                             '{"prompt": ..., "answer": ...} lines (exact-match reward)')
    parser.add_argument("--digits", type=int, default=2, help="operand digits of addition/reverse")
    parser.add_argument("--signal", default=d.signal, metavar="|".join(SIGNALS),
                        help="which S: exact (the norm of the expected GRPO update of the "
                             "exact-match reward, one backward pass a prompt, with its self and "
                             "alignment terms), noisy (a U-statistic over sampled GRPO updates, "
                             f"as before) or both (default {d.signal})")
    parser.add_argument("--samples", type=int, default=d.samples,
                        help=f"the GRPO group size (and the noisy S's completions per prompt) "
                             f"and pass@k's sample (default {d.samples})")
    parser.add_argument("--k", type=int, default=d.k, help=f"k of pass@k (default {d.k})")
    parser.add_argument("--batches", type=int, default=d.batches,
                        help=f"independent batches of the noisy S's U-statistic (default {d.batches})")
    parser.add_argument("--prompts", type=int, default=d.prompts,
                        help=f"distinct prompts in all, split over the batches (default {d.prompts})")
    parser.add_argument("--temperature", type=float, default=d.temperature)
    parser.add_argument("--device", default=d.device, choices=("cpu", "cuda", "auto"))
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw the factors against the checkpoints")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_cli(args) -> int:
    """``vgh probe``: 0 when every checkpoint was probed, 1 when one could not be loaded, 2
    (a :class:`ParameterError`, raised before any model loads) for a refused input."""
    import sys

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the table, not transformers' advice, on the terminal
    cfg = ProbeConfig(samples=args.samples, k=args.k, batches=args.batches, prompts=args.prompts,
                      temperature=args.temperature, seed=args.seed, device=args.device,
                      signal=args.signal)
    for out in (args.json, args.plot):
        if out is not None and not out.resolve().parent.is_dir():
            raise ParameterError(f"{out}: its folder does not exist")
    run = probe(args.paths, args.task, cfg, args.digits, progress=not args.quiet,
                log=lambda m: print(m, file=sys.stderr))
    if run.results:
        print(table(run))
    if args.json is not None:
        args.json.write_text(json.dumps(run.as_dict(), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None and run.results:
        print(f"wrote {plot(run, args.plot)}")
    if run.failed:
        print(f"vgh probe: {len(run.failed)} of {len(run.failed) + len(run.results)} checkpoints "
              "could not be loaded", file=sys.stderr)
        return 1
    return 0
