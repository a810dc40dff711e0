"""Runs the notebooks and builds the book: the notebook registry and profiles, the papermill
runner with its cache, the report page, the ``vgh`` CLI and the Sphinx extension.

May import: anything in vgh_lib. Nothing imports it but itself and ``__main__``, and no notebook
does, so it is outside the notebooks' cache key (``driver.runner.code_fingerprint``).
"""
