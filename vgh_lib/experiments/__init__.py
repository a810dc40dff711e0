"""One module per notebook: its parameter class, its jobs (frozen dataclasses) and its analysis;
``designs`` holds the designs that pre-registered pilots chose.

May import: every layer below (``common``, ``rollout``, ``tiny``, ``lm``, ``tools``, ``harness``); never ``driver``.
"""
