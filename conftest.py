"""Shared test settings: Hypothesis profiles and NumPy floating-point errors as failures.

One conftest at the top, for tests/, the spec pages' and the docs' doctests alike.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# Sphinx's configuration and output are not tests.
collect_ignore = ["docs/_build", "docs/conf.py"]

# CI=true selects a derandomized profile, so a red run on CI is reproducible. Registered here
# rather than relying on Hypothesis' built-in "ci" profile, which older versions lack.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")


@pytest.fixture(autouse=True)
def _floating_point_errors_raise():
    """Overflow, division by zero and invalid operations fail the test where they happen."""
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        yield
