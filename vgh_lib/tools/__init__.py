"""Tools for users' own checkpoints: ``vgh probe`` (:mod:`.probe`) and the TRL callback
(:mod:`.trl`, re-exported as ``vgh_lib.integrations.trl``).

May import: ``common``, ``tiny``, ``lm``, ``paths``, ``errors``; never ``experiments``, ``harness`` or ``driver``.
"""
