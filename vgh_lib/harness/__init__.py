"""What notebooks call besides their experiment: validated parameters (:mod:`.params`), claims
(:mod:`.claims`), gluing into the chapters (:mod:`.glue`) and the plumbing of a pre-registered
study (:mod:`.preregistration`: the registered text's hash, the pilot file, the design check),
and the words of a registered test's verdict (:mod:`.verdicts`).

May import: ``common``, ``paths``, ``errors``.
"""
