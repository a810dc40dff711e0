"""Shared utilities: statistics (U-statistics, jackknife, rank tests, pass@k), the value-impact
factors and their inference, the exact signal of an exact-match reward (``exact_signal``),
parallel job runners, plots.

May import: nothing else in vgh_lib but ``paths`` and ``errors`` (the lowest layer).
"""
