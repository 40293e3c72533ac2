"""Exact CKS20 samplers against the exact pmf; the OpenDP sampler against the same pmf."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from scipy.stats import chi2

from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import (
    ExactSampler,
    NoiseSampler,
    OpenDPSampler,
    sample_bernoulli_exp,
    sample_discrete_gaussian,
    sample_discrete_laplace,
    sample_vector,
)
from tessera.errors import TesseraError

# -- reference distributions, computed independently of the code under test ----------------------


def gaussian_pmf(sigma2: float, support: int) -> dict[int, float]:
    w = {k: math.exp(-k * k / (2.0 * sigma2)) for k in range(-support, support + 1)}
    z = math.fsum(w.values())
    return {k: v / z for k, v in w.items()}


def laplace_pmf(scale: float, support: int) -> dict[int, float]:
    w = {k: math.exp(-abs(k) / scale) for k in range(-support, support + 1)}
    z = math.fsum(w.values())
    return {k: v / z for k, v in w.items()}


def moments(pmf: dict[int, float]) -> tuple[float, float]:
    """Variance and fourth central moment (the mean is 0 by symmetry)."""
    var = math.fsum(p * k * k for k, p in pmf.items())
    m4 = math.fsum(p * k**4 for k, p in pmf.items())
    return var, m4


def chi_square_pvalue(samples: list[int], pmf: dict[int, float]) -> float:
    """Pearson's test: cells with expected count ≥ 5, the rest merged into the two tails."""
    n = len(samples)
    inner = sorted(k for k, p in pmf.items() if n * p >= 5)
    lo, hi = inner[0], inner[-1]
    observed = {k: 0 for k in inner} | {"low": 0, "high": 0}
    for x in samples:
        observed["low" if x < lo else "high" if x > hi else x] += 1
    expected: dict[int | str, float] = {k: n * pmf[k] for k in inner}
    expected["low"] = n * math.fsum(p for k, p in pmf.items() if k < lo)
    expected["high"] = n * math.fsum(p for k, p in pmf.items() if k > hi)
    stat = math.fsum((observed[k] - e) ** 2 / e for k, e in expected.items() if e > 0)
    dof = sum(1 for e in expected.values() if e > 0) - 1
    return float(chi2.sf(stat, dof))


# -- exact samplers ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma2", [Fraction(1, 2), Fraction(4), Fraction(100, 3), Fraction(10**6)])
def test_discrete_gaussian_mean_and_variance(sigma2: Fraction) -> None:
    n = 10_000
    xs = sample_vector(n, SeededRng(f"moments/{sigma2}"), sigma2=sigma2)
    if sigma2 <= 100:
        var, m4 = moments(gaussian_pmf(float(sigma2), 40 + int(12 * math.sqrt(sigma2))))
    else:  # Var differs from σ² by a factor below e^{-2π²σ²}: zero in floating point
        var, m4 = float(sigma2), 3.0 * float(sigma2) ** 2
    mean = sum(xs) / n
    s2 = sum(x * x for x in xs) / n
    # five standard errors: a correct sampler passes, σ² off by ~3-5% (or a bias) does not
    assert abs(mean) <= 5 * math.sqrt(var / n)
    assert abs(s2 - var) <= 5 * math.sqrt((m4 - var * var) / n)
    assert abs(s2 - float(sigma2)) / float(sigma2) < 0.07


def test_discrete_gaussian_chi_square() -> None:
    xs = sample_vector(20_000, SeededRng("chi2/gauss"), sigma2=4)
    assert chi_square_pvalue(xs, gaussian_pmf(4.0, 60)) > 1e-3
    # the same test has the power to tell σ² = 4 from σ² = 5
    assert chi_square_pvalue(xs, gaussian_pmf(5.0, 60)) < 1e-6


def test_discrete_laplace_chi_square_and_moments() -> None:
    xs = sample_vector(20_000, SeededRng("chi2/laplace"), scale=2)
    assert chi_square_pvalue(xs, laplace_pmf(2.0, 200)) > 1e-3
    assert chi_square_pvalue(xs, laplace_pmf(2.5, 200)) < 1e-6
    var, m4 = moments(laplace_pmf(2.0, 200))
    assert var == pytest.approx(2 * math.exp(-0.5) / (1 - math.exp(-0.5)) ** 2)
    s2 = sum(x * x for x in xs) / len(xs)
    assert abs(s2 - var) <= 5 * math.sqrt((m4 - var * var) / len(xs))


def test_discrete_laplace_fractional_scale() -> None:
    scale = Fraction(3, 2)
    xs = sample_vector(20_000, SeededRng("laplace/3/2"), scale=scale)
    assert chi_square_pvalue(xs, laplace_pmf(1.5, 200)) > 1e-3


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp(gamma: Fraction) -> None:
    rng = SeededRng(f"bern/{gamma}")
    n = 20_000
    hits = sum(sample_bernoulli_exp(gamma, rng) for _ in range(n))
    p = math.exp(-gamma)
    assert abs(hits / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_determinism_per_seed() -> None:
    a = sample_vector(200, SeededRng(7), sigma2=Fraction(9, 2))
    b = sample_vector(200, SeededRng(7), sigma2=Fraction(9, 2))
    c = sample_vector(200, SeededRng(8), sigma2=Fraction(9, 2))
    assert a == b
    assert a != c
    one = SeededRng(7)
    assert [sample_discrete_gaussian(Fraction(9, 2), one) for _ in range(200)] == a
    assert ExactSampler(SeededRng(3)).discrete_laplace(Fraction(2), 50) == sample_vector(
        50, SeededRng(3), scale=2
    )
    assert sample_discrete_laplace(2, SeededRng(3)) == sample_vector(1, SeededRng(3), scale=2)[0]


def test_returns_python_ints_and_empty_vectors() -> None:
    s: NoiseSampler = ExactSampler(SeededRng(1))
    out = s.discrete_gaussian(Fraction(10**12), 5)
    assert all(type(x) is int for x in out)
    assert s.discrete_gaussian(Fraction(2), 0) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma2": 0}, "sigma2"),
        ({"sigma2": Fraction(-1, 2)}, "sigma2"),
        ({"sigma2": float("nan")}, "sigma2"),
        ({"scale": 0}, "scale"),
        ({}, "exactly one"),
        ({"sigma2": 1, "scale": 1}, "exactly one"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sample_vector(3, SeededRng(0), **kwargs)  # type: ignore[arg-type]


def test_invalid_count_and_types() -> None:
    with pytest.raises(ValueError, match="count"):
        sample_vector(-1, SeededRng(0), sigma2=1)
    with pytest.raises(TypeError):
        sample_discrete_gaussian(True, SeededRng(0))
    with pytest.raises(ValueError, match="gamma"):
        sample_bernoulli_exp(Fraction(-1), SeededRng(0))


# -- OpenDP --------------------------------------------------------------------------------------

# No seed exists for OpenDP's sampler, so these checks are statistical with a proven failure
# probability: each is a mean of N bounded i.i.d. terms with range 1, so by Hoeffding
# P(|mean − E| ≥ h) ≤ 2·exp(−2Nh²). Four checks at 2.5e-10 each fail together w.p. < 1e-9.
N_OPENDP = 40_000
HOEFFDING = math.sqrt(math.log(2 / 2.5e-10) / (2 * N_OPENDP))  # ≈ 0.0169


def _hoeffding_checks(xs: list[int], pmf: dict[int, float], cut: int) -> None:
    assert len(xs) == N_OPENDP
    # 1. mass near zero: P(|X| ≤ 1)
    p_center = pmf[-1] + pmf[0] + pmf[1]
    f_center = sum(1 for x in xs if abs(x) <= 1) / len(xs)
    assert abs(f_center - p_center) < HOEFFDING
    # 2. clipped variance E[min(X², c)]/c, within 1 of which the variance lies
    c = cut * cut
    e_clip = math.fsum(p * min(k * k, c) for k, p in pmf.items()) / c
    f_clip = sum(min(x * x, c) for x in xs) / (c * len(xs))
    assert abs(f_clip - e_clip) < HOEFFDING


def test_opendp_discrete_gaussian_matches_exact_pmf() -> None:
    xs = OpenDPSampler().discrete_gaussian(Fraction(4), N_OPENDP)
    _hoeffding_checks(xs, gaussian_pmf(4.0, 80), cut=6)
    # the checks can fail: a σ² of 5 would be caught by the first one
    p5 = gaussian_pmf(5.0, 80)
    p4 = gaussian_pmf(4.0, 80)
    assert abs(sum(p5[k] - p4[k] for k in (-1, 0, 1))) > 2 * HOEFFDING


def test_opendp_discrete_laplace_matches_exact_pmf() -> None:
    xs = OpenDPSampler().discrete_laplace(Fraction(2), N_OPENDP)
    _hoeffding_checks(xs, laplace_pmf(2.0, 300), cut=8)


def test_opendp_sampler_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    s = OpenDPSampler()
    assert s.discrete_gaussian(Fraction(1, 3), 0) == []
    assert all(type(x) is int for x in s.discrete_laplace(Fraction(7, 3), 10))
    with pytest.raises(ValueError, match="sigma2"):
        s.discrete_gaussian(Fraction(0), 3)
    with pytest.raises(ValueError, match="count"):
        s.discrete_laplace(Fraction(1), -2)
    # OpenDP saturates at ±2^63 rather than failing, so huge scales are refused up front
    with pytest.raises(ValueError, match="too large"):
        s.discrete_laplace(Fraction(10) ** 400, 1)
    with pytest.raises(ValueError, match="too large"):
        s.discrete_gaussian(Fraction(2) ** 110, 1)
    # an error raised inside OpenDP surfaces as a TesseraError (provoked: a scalar domain)
    dp = pytest.importorskip("opendp.prelude")
    monkeypatch.setattr(s, "_domain", dp.atom_domain(T="i64"))
    with pytest.raises(TesseraError, match="OpenDP") as info:
        s.discrete_gaussian(Fraction(4), 2)
    assert info.value.__cause__ is not None
