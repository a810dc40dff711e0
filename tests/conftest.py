import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def book_root(tmp_path):
    """A copy of the book sources (no executed notebooks) in a temporary folder."""
    return _copy_book(tmp_path / "bookroot")


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """`vgh book --profile smoke` on a copy of the book, built once for the whole session.

    Returns ``(root, exit_code, printed_output)``; tests/test_notebooks.py checks the build
    itself, tests/test_browser.py and the launch-button test read the HTML it produced.
    """
    import contextlib
    import io

    from vgh_lib.driver import cli

    base = tmp_path_factory.mktemp("smoke_book")
    root = _copy_book(base / "bookroot")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("VGH_CACHE", str(base / "cache"))  # kernels inherit it
        code = cli.main(["book", "--profile", "smoke", "--jobs", "2", "--root", str(root)])
    return root, code, out.getvalue()


def _copy_book(root):
    root.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("executed", "reproduction_report.md"))
    # decoys that a real checkout has next to the book: they must not be read
    decoy = root / ".venv" / "lib" / "site-packages" / "pkg"
    decoy.mkdir(parents=True)
    (decoy / "template.md").write_text("---\n{{ not: [valid yaml\n---\n# decoy\n")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "stray.md").write_text("# not in the toc\n")
    return root


def tiny_gpt2_and_tokenizer(seed: int = 0):
    """A 1-layer, 16-wide GPT-2 over the task tokenizer."""
    from vgh_lib.tiny.models import tiny_gpt2
    from vgh_lib.tiny.tasks import build_tokenizer

    tok = build_tokenizer()
    return tiny_gpt2(tok, 1, 16, 2, 32, seed=seed), tok


def perfect_tiny_gpt2(token: str = "7"):
    """A tiny GPT-2 that writes ``token`` after any prefix: ln_f outputs a constant vector along
    that token's (tied) embedding, so its logit leads every other by far more than Gumbel noise
    at temperature 1 can overturn."""
    model, tok = tiny_gpt2_and_tokenizer()
    t = tok.convert_tokens_to_ids(token)
    with torch.no_grad():
        wte = model.transformer.wte.weight
        wte.mul_(0.01)
        wte[t] = 0
        wte[t, 0] = 1.0
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1000.0
    return model, tok


@pytest.fixture(scope="session")
def tiny_models():
    """The two model factories above, for tests that need a random or a perfect tiny model."""
    return tiny_gpt2_and_tokenizer, perfect_tiny_gpt2


def tiny_llama_float64(tmp_path_factory, n_layer: int = 3):
    """``(model, tokenizer)``: a tiny random llama (GGUF, seed 8) in float64, so that two paths
    that should agree differ by rounding only."""
    from vgh_lib.lm import loading as real_lm

    gguf = real_lm.write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=8,
                                         n_layer=n_layer)
    model, tok, _ = real_lm.load_model(gguf, root=tmp_path_factory.mktemp("cache"))
    return model.double(), tok
