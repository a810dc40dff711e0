"""One module per notebook: its parameter class, its jobs (frozen dataclasses) and its analysis;
``designs`` holds the designs that pre-registered pilots chose.

May import: every layer below (``common``, ``rollout``, ``tiny``, ``lm``, ``tools``, ``harness``); never ``driver``.
Between experiment modules: only ``designs``, ``trajectory`` (the pretraining trajectories that
several studies share) and a follow-up study's parent design (02 → 01, 11 → 09, 12 → 10);
tests/test_layers.py names each allowance with its reason.
"""
