"""Verifiable tasks with an exact-match reward, and their tokenizer.

Serves book/theory.md §3 and §4 (issue: tiny transformer policies): a small transformer is
pretrained on a corpus of solved prompts and then trained with GRPO against an exact-match
reward. Two tasks of different shape:

* ``addition``: ``"a+b="`` → the sum, zero-padded to ``n_digits + 1`` digits. A share
  ``1 − corpus_clean_fraction`` of the pretraining corpus carries a random answer instead,
  so that pretraining leaves headroom for RL.
* ``reverse``: ``"d₁…dₙ>"`` → the digits reversed.

Evaluation prompts are disjoint from training prompts. The tokenizer is a real
``transformers`` fast tokenizer over a character-level word vocabulary; it is saved beside
every checkpoint so that checkpoints work with the rest of the Hugging Face ecosystem.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
SYMBOLS = tuple("0123456789") + ("+", "=", ">")
TASKS = ("addition", "reverse")


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` with one token per character of the task alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + SYMBOLS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # every character is a word
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>")


@dataclass(frozen=True)
class Example:
    prompt: str   # what the policy sees, e.g. "12+34="
    answer: str   # the unique correct completion, e.g. "046"


@dataclass(frozen=True)
class Task:
    """A task instance: ``name`` in :data:`TASKS`, operand width ``n_digits``."""

    name: str
    n_digits: int
    n_eval: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.name not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.name!r}")
        if not 1 <= self.n_digits <= 6:
            raise ValueError(f"n_digits must be in [1, 6], got {self.n_digits}")

    @property
    def answer_length(self) -> int:
        return self.n_digits + 1 if self.name == "addition" else self.n_digits

    def _operands(self) -> list[tuple[int, ...]]:
        """Every operand tuple when there are at most 2·10⁶, else up to 2·10⁵ distinct random ones."""
        top = 10 ** self.n_digits
        arity = 2 if self.name == "addition" else 1
        if top ** arity <= 2_000_000:
            if arity == 2:
                return [(a, b) for a in range(top) for b in range(top)]
            return [(x,) for x in range(top)]
        rng = random.Random(self.seed)
        return sorted({tuple(rng.randrange(top) for _ in range(arity)) for _ in range(200_000)})

    def example(self, operands: tuple[int, ...]) -> Example:
        w = self.n_digits
        if self.name == "addition":
            a, b = operands
            return Example(f"{a:0{w}d}+{b:0{w}d}=", f"{a + b:0{w + 1}d}")
        (x,) = operands
        digits = f"{x:0{w}d}"
        return Example(f"{digits}>", digits[::-1])

    def split(self) -> tuple[list[Example], list[Example]]:
        """(train, eval): a seeded shuffle of all prompts; the first ``n_eval`` are held out."""
        ops = self._operands()
        random.Random(self.seed).shuffle(ops)
        n_eval = min(self.n_eval, len(ops) // 2)
        examples = [self.example(o) for o in ops]
        return examples[n_eval:], examples[:n_eval]

    def reward(self, example: Example, completion: str) -> float:
        """Exact match: 1.0 when the completion (up to an end-of-sequence) equals the answer."""
        return 1.0 if completion.split("<eos>")[0] == example.answer else 0.0

    def tokenized(self, tokenizer, split: str = "train") -> "TokenizedExamples":
        """The ``train`` or ``eval`` examples as id tensors: ``<bos> prompt`` and ``answer``."""
        train, held_out = self.split()
        examples = train if split == "train" else held_out
        bos = tokenizer.bos_token_id
        prompts = torch.tensor([[bos] + tokenizer(e.prompt)["input_ids"] for e in examples])
        answers = torch.tensor([tokenizer(e.answer)["input_ids"] for e in examples])
        digits = torch.tensor(tokenizer.convert_tokens_to_ids(list("0123456789")))
        return TokenizedExamples(examples, prompts, answers, digits)


@dataclass(frozen=True)
class TokenizedExamples:
    """Examples with their ids: prompts (N, Lp) start with ``<bos>``, answers (N, La)."""

    examples: list[Example]
    prompts: torch.Tensor
    answers: torch.Tensor
    digit_ids: torch.Tensor  # (10,) token ids of the digits 0-9

    def corpus_batch(self, batch_size: int, clean_fraction: float,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A pretraining batch: ``prompt + answer`` documents, (B, Lp + La), and the clean mask.

        With probability ``1 − clean_fraction`` a document's answer is replaced by random
        digits of the same length (a corrupted label), so pretraining leaves headroom for RL.
        """
        if not 0.0 <= clean_fraction <= 1.0:
            raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
        idx = torch.randint(len(self.examples), (batch_size,), generator=generator)
        answers = self.answers[idx].clone()
        clean = torch.rand(batch_size, generator=generator) < clean_fraction
        noise = self.digit_ids[torch.randint(10, answers.shape, generator=generator)]
        answers[~clean] = noise[~clean]
        return torch.cat([self.prompts[idx], answers], dim=1), clean
