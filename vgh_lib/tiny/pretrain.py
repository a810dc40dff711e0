"""A pretraining trajectory of tiny GPT-2 checkpoints, cached on disk by configuration.

Serves book/theory.md §3–§4: the transformer-costate and value-impact notebooks need checkpoints
along a pretraining trajectory, from an untrained model (pass@K ≈ 0) to one with little
headroom left. Training is from scratch with AdamW, linear warm-up then cosine decay (no
late loss spikes), and checkpoints at log-spaced steps. Each checkpoint directory holds
``save_pretrained`` weights (safetensors), the tokenizer, ``metrics.json`` and the optimizer
state, so an interrupted run resumes where it stopped and gives the same weights as an
uninterrupted one: the batch at step ``s`` depends only on ``(seed, s)``.

The trajectory lives in ``<cache>/trajectories/<key>/``, ``key`` a hash of the
configuration; the cache root is ``$VGH_CACHE`` or ``<repo>/.cache``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vgh_lib.paths import cache_root
from vgh_lib.tiny import models, sampling
from vgh_lib.tiny.tasks import Task, build_tokenizer

FORMAT_VERSION = 1  # bump when training changes what a configuration produces
CODE_FILES = ("pretrain.py", "tasks.py", "models.py", "sampling.py")  # what a trajectory depends on


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a trajectory (and its cache key)."""

    task: str = "addition"
    n_digits: int = 2
    corpus_clean_fraction: float = 0.95
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    pretrain_steps: int = 3000
    n_checkpoints: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    warmup_fraction: float = 0.05
    seed: int = 0
    n_eval: int = 200
    eval_samples: int = 16
    k: int = 8
    checkpoint_at: tuple[int, ...] = ()  # explicit checkpoint steps; empty: log-spaced

    def __post_init__(self):
        bad = [s for s in self.checkpoint_at if not 0 < s <= self.pretrain_steps]
        if bad:
            raise ValueError(f"checkpoint_at steps must be in [1, pretrain_steps = "
                             f"{self.pretrain_steps}], got {bad}")

    def steps(self) -> list[int]:
        """The checkpoint steps: 0, then ``checkpoint_at`` (with the last step), or log-spaced."""
        if self.checkpoint_at:
            return sorted({0, *self.checkpoint_at, self.pretrain_steps})
        return checkpoint_steps(self.pretrain_steps, self.n_checkpoints)

    def key(self) -> str:
        """Hash of the configuration and of the code that trains and evaluates it."""
        here = Path(__file__).resolve().parent
        code = hashlib.sha256(b"".join((here / f).read_bytes() for f in CODE_FILES)).hexdigest()
        blob = json.dumps({"format": FORMAT_VERSION, "code": code, **dataclasses.asdict(self)},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def task_obj(self) -> Task:
        return Task(self.task, self.n_digits, n_eval=self.n_eval, seed=self.seed)


def checkpoint_steps(total: int, n: int) -> list[int]:
    """Up to ``n`` checkpoint steps (fewer if rounding merges some): 0 (untrained), then
    log-spaced from ``total/100`` to ``total``.

    Starting the log grid at 1 % of training (not at step 1) spends the checkpoints on the
    steep middle of the trajectory instead of on the first few steps, where nothing changes.
    """
    if n < 2:
        raise ValueError("need at least 2 checkpoints (the untrained model and the last)")
    steps = np.unique(np.round(np.geomspace(max(1, total // 100), total, n - 1)).astype(int))
    return [0] + [int(s) for s in steps]


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr/10`` at the last step."""
    warm = max(1, int(cfg.warmup_fraction * cfg.pretrain_steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.pretrain_steps - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


@dataclass
class Checkpoint:
    step: int
    path: Path
    metrics: dict


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # two notebooks never train the same trajectory at once
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _answer_loss(model, docs: torch.Tensor, answer_len: int) -> torch.Tensor:
    """Cross-entropy on the answer tokens only (the prompt digits are unpredictable)."""
    logits = model(input_ids=docs).logits[:, -answer_len - 1:-1]  # predicts the answer
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             docs[:, -answer_len:].reshape(-1))


def _evaluate(model, tokenizer, held_out, cfg: PretrainConfig, step: int) -> dict:
    ev = sampling.evaluate(model, tokenizer, held_out, cfg.eval_samples, cfg.k, 1.0,
                       torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
    return {"step": step, "greedy_accuracy": ev.greedy_accuracy, "pass1": ev.pass1,
            "passk": ev.passk, "k": cfg.k, "headroom": ev.passk - ev.pass1}


def pretrain(cfg: PretrainConfig, root: Path | None = None, device: str = "cpu",
             progress: bool = True, stop_after: int | None = None) -> list[Checkpoint]:
    """Train (or resume, or just load) the trajectory; return its checkpoints in step order.

    ``stop_after`` stops early after that step's checkpoint (to test resumption).
    """
    from tqdm.auto import tqdm

    root = Path(root) if root is not None else cache_root()
    traj = root / "trajectories" / cfg.key()
    steps = cfg.steps()
    dev = models.resolve_device(device)
    with _locked(root / "trajectories" / f"{cfg.key()}.lock"):
        traj.mkdir(parents=True, exist_ok=True)
        (traj / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        done = [s for s in steps if (traj / f"step_{s:06d}" / "metrics.json").exists()]
        if len(done) < len(steps):
            _train(cfg, traj, steps, done, dev, progress, stop_after, tqdm)
    out = []
    for s in steps:
        path = traj / f"step_{s:06d}"
        if (path / "metrics.json").exists():
            out.append(Checkpoint(s, path, json.loads((path / "metrics.json").read_text())))
    return out


def _train(cfg, traj, steps, done, dev, progress, stop_after, tqdm):
    tokenizer = build_tokenizer()
    task = cfg.task_obj()
    train_data = task.tokenized(tokenizer, "train")
    _, held_out = task.split()
    seq_len = train_data.prompts.shape[1] + train_data.answers.shape[1]
    if done:  # resume from the last complete checkpoint
        start = done[-1]
        model, _ = models.load_local(traj / f"step_{start:06d}", device=str(dev.type))
        state = torch.load(traj / f"step_{start:06d}" / "train_state.pt", weights_only=True)
    else:
        start = 0
        model = models.tiny_gpt2(tokenizer, cfg.n_layer, cfg.n_embd, cfg.n_head, seq_len + 1,
                                 cfg.seed).to(dev)
        state = None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    losses = []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        losses = list(state.get("recent_losses", []))
    answer_len = train_data.answers.shape[1]
    if start == 0 and 0 not in done:
        _save(model, tokenizer, traj, 0, opt, _evaluate(model, tokenizer, held_out, cfg, 0)
              | {"loss": float("nan")})
    bar = tqdm(range(start, cfg.pretrain_steps), desc="pretrain", disable=not progress,
               mininterval=5)
    for step in bar:
        if stop_after is not None and step >= stop_after:
            break
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # batch = f(seed, step)
        docs, _ = train_data.corpus_batch(cfg.batch_size, cfg.corpus_clean_fraction, gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = _answer_loss(model, docs.to(dev), answer_len)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step + 1 in steps:
            model.eval()
            metrics = _evaluate(model, tokenizer, held_out, cfg, step + 1)
            metrics["loss"] = float(np.mean(losses[-50:]))
            _save(model, tokenizer, traj, step + 1, opt, metrics, losses[-50:])


def _save(model, tokenizer, traj, step, opt, metrics, recent_losses=()):
    path = models.save_checkpoint(model, tokenizer, traj / f"step_{step:06d}.tmp", None)
    torch.save({"optimizer": opt.state_dict(), "recent_losses": list(recent_losses)},
               path / "train_state.pt")
    (path / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # marks completion
    final = traj / f"step_{step:06d}"
    if final.exists():
        import shutil

        shutil.rmtree(final)
    path.rename(final)
