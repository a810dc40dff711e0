"""What notebooks call besides their experiment: validated parameters (:mod:`.params`), claims
(:mod:`.claims`) and gluing into the chapters (:mod:`.glue`).

May import: ``common``, ``paths``, ``errors``.
"""
