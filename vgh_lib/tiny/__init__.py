"""Tiny GPT-2 policies on verifiable tasks (book/theory.md §3–§4, notebooks 03–05 and 07): tasks and
their tokenizer, models, sampling, the cached pretraining trajectory, GRPO, transformer costates.

May import: ``common``, ``paths``, ``errors``.
"""
