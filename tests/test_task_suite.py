"""Notebook 10's design (vgh_lib.experiments.task_suite): the registered text, the rules that
choose the design, and the statistics, each against what a wrong implementation would give."""

import numpy as np
import pytest

from vgh_lib.experiments import designs
from vgh_lib.experiments import task_suite as T


def test_the_registered_text_is_unchanged():
    assert T.registration_sha256() == designs.TASK_SUITE_REGISTRATION_SHA256
