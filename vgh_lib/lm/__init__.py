"""Real pretrained language models (book/theory.md §3–§4 on SmolLM2-135M, notebooks 06 and 08): local
GGUF/safetensors loading, few-shot tasks, costates, GRPO on the top blocks, the frozen prefix, and
the model and prefix that a worker process loads once (:mod:`.cache`).

May import: ``common``, ``tiny`` (the GRPO advantages and costate helpers it shares), ``paths``, ``errors``.
"""
