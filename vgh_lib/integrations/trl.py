"""``from vgh_lib.integrations.trl import ValueImpactCallback``, the documented import path of
the TRL callback, which lives in :mod:`vgh_lib.tools.trl`."""

from vgh_lib.tools.trl import ValueImpactCallback  # noqa: F401 - the documented path

__all__ = ["ValueImpactCallback"]
