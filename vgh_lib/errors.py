"""Errors that users see: each names what was wrong and what is allowed.

They live here, below every layer, so that a tool (``vgh probe``, the TRL callback) can refuse
bad input without importing the notebook machinery of :mod:`vgh_lib.harness`.
"""

from __future__ import annotations


class ParameterError(ValueError):
    """A parameter (of a notebook, ``vgh probe`` or the TRL callback) has an unknown name, a
    wrong type or a bad value; raised before anything runs."""
