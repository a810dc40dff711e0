"""Optional integrations with other training libraries.

Nothing here is imported by ``import vgh_lib``: each submodule imports its library only when it
is imported itself (``from vgh_lib.tools.trl import ValueImpactCallback`` needs
``transformers``; TRL is never imported by vgh_lib at all).
"""
