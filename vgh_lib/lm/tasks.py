"""A few-shot task suite for a real pretrained language model (book/theory.md §3).

Plain-text prompts, three solved examples then the question, no chat template; the answer is
a short string (one to three tokens for SmolLM2's tokenizer) with an exact-match reward on
its tokens. Tasks of graded difficulty for a 135 M model, easiest first:

=================  ===============================  ===========
task               a question                       its answer
=================  ===============================  ===========
``capitals``       ``The capital of Japan is``      `` Tokyo``
``products``       ``3*2=``                         ``6``
``max``            ``max(7,3)=``                    ``7``
``sums``           ``3+4=``                         ``7``
``successor``      ``next(5)=``                     ``6``
``differences``    ``9-3=``                         ``6``
``two_digit_sums`` ``12+35=``                       ``47``
=================  ===============================  ===========

The split is deterministic: an item is held out when a hash of its text falls in the
held-out quarter; the three shots of a prompt are drawn (seeded by the item) from the
*training* items of the same task, never the question itself.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so that the registry stays light
    import torch

LM_TASKS = ("capitals", "products", "max", "sums", "successor", "differences", "two_digit_sums")
N_SHOTS = 3
HELD_OUT_SHARE = 0.25

# Single-word capitals that SmolLM2's tokenizer spells in at most three tokens.
CAPITALS = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"),
    ("Spain", "Madrid"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("England", "London"),
    ("Greece", "Athens"), ("Austria", "Vienna"), ("Ireland", "Dublin"), ("Norway", "Oslo"),
    ("Sweden", "Stockholm"), ("Portugal", "Lisbon"), ("Poland", "Warsaw"), ("China", "Beijing"),
    ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"), ("Thailand", "Bangkok"),
    ("Hungary", "Budapest"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"), ("Canada", "Ottawa"), ("Turkey", "Ankara"), ("Iran", "Tehran"),
    ("Chile", "Santiago"), ("Argentina", "Buenos"), ("Ukraine", "Kyiv"),
)


@dataclass(frozen=True)
class LMExample:
    task: str
    question: str   # the query line without its answer, e.g. "3+4="
    answer: str     # e.g. "7" or " Tokyo"
    prompt: str     # three solved shots, newline-separated, then the question


def _items(task: str) -> list[tuple[str, str]]:
    """Every (question, answer) of ``task``."""
    if task == "capitals":
        return [(f"The capital of {c} is", f" {k}") for c, k in CAPITALS if k != "Buenos"]
    digits = range(10)
    if task == "products":
        return [(f"{a}*{b}=", str(a * b)) for a in range(2, 10) for b in range(2, 10)]
    if task == "max":
        return [(f"max({a},{b})=", str(max(a, b))) for a in digits for b in digits if a != b]
    if task == "sums":
        return [(f"{a}+{b}=", str(a + b)) for a in digits for b in digits]
    if task == "successor":
        return [(f"next({a})=", str(a + 1)) for a in range(0, 99)]
    if task == "differences":
        return [(f"{a}-{b}=", str(a - b)) for a in digits for b in digits if a >= b]
    if task == "two_digit_sums":
        return [(f"{a}+{b}=", str(a + b)) for a in range(10, 50) for b in range(10, 50)]
    raise ValueError(f"unknown task {task!r}; allowed: {', '.join(LM_TASKS)}")


def _held_out(task: str, question: str) -> bool:
    h = int(hashlib.sha256(f"{task}|{question}".encode()).hexdigest()[:8], 16)
    return h / 16**8 < HELD_OUT_SHARE


def _line(question: str, answer: str, task: str) -> str:
    return f"{question}{answer}." if task == "capitals" else f"{question}{answer}"


def split(task: str) -> tuple[list[LMExample], list[LMExample]]:
    """``(train, held_out)`` prompts of ``task``, deterministic, disjoint questions."""
    items = _items(task)
    train_items = [it for it in items if not _held_out(task, it[0])]
    out: tuple[list[LMExample], list[LMExample]] = ([], [])
    for q, a in items:
        rng = random.Random(f"{task}|{q}")
        pool = [it for it in train_items if it[0] != q]
        shots = rng.sample(pool, N_SHOTS)
        prompt = "\n".join(_line(sq, sa, task) for sq, sa in shots) + "\n" + q
        out[_held_out(task, q)].append(LMExample(task, q, a, prompt))
    return out


def suite(split_name: str = "held_out", per_task: int | None = None,
          tasks: tuple[str, ...] = LM_TASKS) -> list[LMExample]:
    """The first ``per_task`` prompts of each task in ``split_name`` (``train``/``held_out``),
    in a fixed, seeded order that mixes the items."""
    if split_name not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split_name!r}")
    out = []
    for task in tasks:
        examples = split(task)[split_name == "held_out"]
        random.Random(task).shuffle(examples)
        out.extend(examples[:per_task] if per_task else examples)
    return out


def encode(tokenizer, example: LMExample) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_ids (Lp,), answer_ids (La,))``. The answer tokens are those of the joint
    text ``prompt + answer`` after the prompt's tokens (how the model would write it); when
    the tokenizer merges across the boundary, the answer is tokenized on its own."""
    import torch

    p = tokenizer(example.prompt, add_special_tokens=True).input_ids
    full = tokenizer(example.prompt + example.answer, add_special_tokens=True).input_ids
    if full[:len(p)] == p and len(full) > len(p):
        a = full[len(p):]
    else:
        a = tokenizer(example.answer, add_special_tokens=False).input_ids
    eos = tokenizer.eos_token_id
    if eos is not None and a and a[-1] == eos:  # some tokenizers append EOS
        a = a[:-1]
    return torch.tensor(p, dtype=torch.long), torch.tensor(a, dtype=torch.long)


def reward(answer_ids: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    """Exact match of each completion (B, La) with the answer tokens (La,): (B,) in {0, 1}."""
    return (completions == answer_ids[None]).all(1).float()
