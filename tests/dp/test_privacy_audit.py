"""Empirical privacy audit (issue 17): the noise a query releases against its claim.

The audit itself is ``benchmarks/privacy_audit.py`` (see its docstring); these tests run it
at sizes that keep the suite fast, on fixed seeds. Each claim is checked with a test that
has shown it can fail: the scale test must reject the sampler's σ scaled by 0.7 and by 1.3,
and the ε audit must catch a mechanism with a quarter of the noise.
"""

from __future__ import annotations

import importlib.util
import sys
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


def _load_audit() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "privacy_audit.py"
    spec = importlib.util.spec_from_file_location("privacy_audit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["privacy_audit"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


audit = _load_audit()

SAMPLES = 2_000  # aggregate noise values per scale; σ off by ±30% gives p < 1e-7 here


@pytest.mark.parametrize("n,t", audit.COMMITTEES)
@pytest.mark.parametrize("mechanism", list(audit.MECHANISMS))
def test_released_noise_has_the_claimed_scale(mechanism: str, n: int, t: int) -> None:
    prepared = audit.ticket(mechanism, n, t).prepare()
    assert prepared.noise[0].honest_quorum == n - 2 * t + 2
    p_low, p_true, p_high = (
        audit.scale_test(prepared, f, SAMPLES, f"test/{mechanism}/{n},{t}/{f}")
        for f in audit.SCALES
    )
    assert p_true > 0.01, f"true scale rejected: p = {p_true:.3g}"
    assert p_low < 1e-6, f"σ×0.7 not rejected: p = {p_low:.3g}"
    assert p_high < 1e-6, f"σ×1.3 not rejected: p = {p_high:.3g}"


def test_discrete_gaussian_cdf_matches_its_midpoint_rule() -> None:
    """The exact table and the midpoint rule used beyond σ = 10⁴ agree where both apply."""
    sigma2 = Fraction(5_000**2)
    exact = audit.DiscreteGaussian(sigma2)
    assert exact._table is not None
    assert audit.DiscreteGaussian(Fraction(10**10 + 1))._table is None
    xs = np.arange(-40_000, 40_001, 997)
    midpoint = audit.stats.norm.cdf((xs + 0.5) / exact.sigma)
    assert np.max(np.abs(exact.cdf(xs) - midpoint)) < 1e-9


@pytest.mark.parametrize("mechanism", ["count", "sum"])
def test_measured_epsilon_never_exceeds_the_claim(mechanism: str) -> None:
    tk = audit.ticket(mechanism, 3, 2)
    claimed = audit.claimed_epsilon(tk)
    assert claimed == pytest.approx(1.0)
    e = audit.estimate_epsilon(
        mechanism,
        tk.prepare(),
        delta=tk.delta,
        train=1_000,
        select=8_000,
        estimate=30_000,
        seed=f"test/eps/{mechanism}",
    )
    assert e.lower <= claimed, f"ε lower bound {e.lower:.3f} above the claimed {claimed}"
    assert e.lower > 0.1, f"the attack found nothing (ε ≥ {e.lower:.3f}): it has no power"


def test_epsilon_audit_catches_a_quarter_of_the_noise() -> None:
    """The same audit on a count whose sampler gets σ/4 proves it leaks more than claimed."""
    tk = audit.ticket("count", 3, 2)
    e = audit.estimate_epsilon(
        "count",
        tk.prepare(),
        delta=tk.delta,
        train=500,
        select=4_000,
        estimate=10_000,
        seed="test/eps/quarter",
        factor=Fraction(1, 4),
    )
    assert e.lower > audit.claimed_epsilon(tk)
