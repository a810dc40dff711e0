"""Differentiable rollouts (book/theory.md §1–§2): the systems, the LQR closed form, BPTT costates
and the actor-update estimators of notebooks 01–02.

May import: ``common``, ``paths``, ``errors``.
"""
