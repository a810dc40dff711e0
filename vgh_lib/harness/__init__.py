"""What notebooks call besides their experiment: validated parameters (:mod:`.params`), claims
(:mod:`.claims`), gluing into the chapters (:mod:`.glue`) and the plumbing of a pre-registered
study (:mod:`.preregistration`: the registered text's hash, the pilot file, the design check).

May import: ``common``, ``paths``, ``errors``.
"""
