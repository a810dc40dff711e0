"""Tiny GPT-2 policies, and loading of local Hugging Face causal-LM directories.

Serves book/theory.md §3–§4 (transformer policies). Models are ``GPT2LMHeadModel`` built from a
``GPT2Config``, saved with ``save_pretrained`` (safetensors) beside their tokenizer, so a
checkpoint loads with plain ``AutoModelForCausalLM.from_pretrained``. Loading is local only:
``local_files_only=True``, safetensors only, never ``trust_remote_code``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available). A missing GPU is a clear error."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is available; use 'cpu'")
    return torch.device(device)


def tiny_gpt2(tokenizer, n_layer: int, n_embd: int, n_head: int, n_positions: int,
              seed: int):
    """A freshly initialised ``GPT2LMHeadModel`` (no dropout) for ``tokenizer``'s vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if n_embd % n_head:
        raise ValueError(f"n_embd = {n_embd} must be divisible by n_head = {n_head}")
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def save_checkpoint(model, tokenizer, path: Path | str, metrics: dict | None = None) -> Path:
    """``save_pretrained`` (safetensors) + the tokenizer + ``metrics.json``, written atomically."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if metrics is not None:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path


def load_local(path: Path | str, device: str = "cpu"):
    """Load a local causal-LM directory and its tokenizer: no network, no remote code.

    Works for the tiny GPT-2 checkpoints and for any local Hugging Face causal-LM directory
    with safetensors weights. Returns ``(model, tokenizer)``, the model in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a local model directory (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path} has no .safetensors weights; only safetensors are loaded")
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                 trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    return model.to(resolve_device(device)).eval(), tokenizer
