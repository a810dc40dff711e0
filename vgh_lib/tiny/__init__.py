"""Tiny GPT-2 policies on verifiable tasks (book/theory.md §3–§4, notebooks 03–05 and 07): tasks and
their tokenizer, models, sampling, the cached pretraining trajectory, GRPO, transformer costates,
and the jobs that several studies run (:mod:`.jobs`: a GRPO run and the pre-RL factors of one checkpoint).

May import: ``common``, ``paths``, ``errors``.
"""
