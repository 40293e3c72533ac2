"""Fuzzing budgets: derandomised hypothesis (fixed seed), no deadline, a few examples each."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# The decoder table and the atheris runner are plain modules next to the tests.
sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile(
    "fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
