"""The designs that the pre-registered rules chose on their pilots, each committed before its
confirmation ran (book/05_preregistration.md, book/08_preregistration.md). Changing one is a
new design: it needs a new pre-registration, not an edit here.
"""

from __future__ import annotations

# The GRPO design chosen on the pilot trajectory (seed 0) by the pre-registered rules of
# book/05_preregistration.md; committed before any confirmation run.
PILOT_CHOSEN = {"adamw_lr": 3e-4, "sgd_lr": 0.01, "grpo_steps": 60,
                "checkpoint_grid": (86, 113, 150, 198, 262, 346, 458, 605, 800, 3000)}


# The design that the pre-registered rules of book/08_preregistration.md chose on the pilot
# (GRPO seed 0); committed before the confirmation ran.
REAL_LM_CHOSEN = {"lr": 3e-4}
