"""Exact discrete Gaussian and Laplace samplers (Canonne–Kamath–Steinke 2020, Algs. 1–3)."""

from __future__ import annotations

import math
from fractions import Fraction
from math import isqrt
from typing import Any, Protocol

from tessera.errors import TesseraError

# Parameters are exact rationals: an int, a Fraction, or a float (converted exactly).
Rational = Fraction | int | float


class RandomSource(Protocol):
    """Uniform integers: every :class:`tessera.crypto.rng.Rng` (``SeededRng``, ``SystemRng``).

    The samplers below are exact given exact uniforms; ``Rng.below`` reduces 128 extra random
    bits modulo the bound, so each draw is within 2^-128 of uniform in total variation.
    """

    def below(self, bound: int) -> int:
        """Uniform integer in ``[0, bound)``."""
        ...


class NoiseSampler(Protocol):
    """What a computing node needs to draw its share of the noise."""

    def discrete_gaussian(self, sigma2: Fraction, count: int) -> list[int]:
        """``count`` independent draws of N_Z(0, sigma2): P(x) ∝ exp(−x²/(2·sigma2))."""
        ...

    def discrete_laplace(self, scale: Fraction, count: int) -> list[int]:
        """``count`` independent draws of Lap_Z(scale): P(x) ∝ exp(−|x|/scale)."""
        ...


def _positive_rational(name: str, value: Rational) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction | int | float):
        raise TypeError(f"{name} must be an int, Fraction or float, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    v = Fraction(value)
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return v


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")


# -- CKS20 Algorithm 1: Bernoulli(exp(−γ)) ------------------------------------------------------


def _bernoulli_exp_le1(rng: RandomSource, num: int, den: int) -> bool:
    """Bernoulli(exp(−num/den)) for 0 ≤ num ≤ den: the first K with A_K = 0 is odd w.p. e^−γ."""
    k = 1
    while rng.below(den * k) < num:  # A_k ~ Bernoulli(γ/k)
        k += 1
    return k % 2 == 1


def _bernoulli_exp(rng: RandomSource, num: int, den: int) -> bool:
    """Bernoulli(exp(−num/den)) for any num/den ≥ 0: ⌊γ⌋ trials of e^−1, then e^−(γ−⌊γ⌋)."""
    while num > den:
        if not _bernoulli_exp_le1(rng, 1, 1):
            return False
        num -= den
    return _bernoulli_exp_le1(rng, num, den)


def sample_bernoulli_exp(gamma: Rational, rng: RandomSource) -> bool:
    """One draw of Bernoulli(exp(−gamma)) for rational ``gamma ≥ 0`` (CKS20 Alg. 1)."""
    if isinstance(gamma, bool) or not isinstance(gamma, Fraction | int | float):
        raise TypeError("gamma must be an int, Fraction or float")
    g = Fraction(gamma)
    if g < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma!r}")
    return _bernoulli_exp(rng, g.numerator, g.denominator)


# -- CKS20 Algorithm 2: discrete Laplace ---------------------------------------------------------


def _discrete_laplace(rng: RandomSource, s: int, t: int) -> int:
    """Lap_Z(t/s): P(x) ∝ exp(−|x|·s/t), for positive integers s, t."""
    while True:
        u = rng.below(t)
        if not _bernoulli_exp_le1(rng, u, t):
            continue
        v = 0
        while _bernoulli_exp_le1(rng, 1, 1):
            v += 1
        y = (u + t * v) // s  # X = U + t·V is geometric with parameter 1 − e^{−1/t}
        negative = rng.below(2) == 1
        if negative and y == 0:
            continue  # otherwise 0 would be counted twice
        return -y if negative else y


def sample_discrete_laplace(scale: Rational, rng: RandomSource) -> int:
    """One draw of Lap_Z(scale), P(x) ∝ exp(−|x|/scale), for rational scale > 0 (CKS20 Alg. 2)."""
    sc = _positive_rational("scale", scale)
    return _discrete_laplace(rng, sc.denominator, sc.numerator)


# -- CKS20 Algorithm 3: discrete Gaussian --------------------------------------------------------


class _GaussianParams:
    """σ² = p/q, the Laplace scale t = ⌊σ⌋ + 1, and the denominator 2·p·q·t² of the rejection."""

    __slots__ = ("den", "p", "q", "t")

    def __init__(self, sigma2: Fraction) -> None:
        self.p, self.q = sigma2.numerator, sigma2.denominator
        self.t = isqrt(self.p // self.q) + 1  # ⌊sqrt(p/q)⌋ = ⌊sqrt(⌊p/q⌋)⌋
        self.den = 2 * self.p * self.q * self.t * self.t


def _discrete_gaussian(rng: RandomSource, g: _GaussianParams) -> int:
    while True:
        y = _discrete_laplace(rng, 1, g.t)
        # accept w.p. exp(−(|y| − σ²/t)²/(2σ²)) = exp(−(|y|·q·t − p)² / (2·p·q·t²))
        a = abs(y) * g.q * g.t - g.p
        if _bernoulli_exp(rng, a * a, g.den):
            return y


def sample_discrete_gaussian(sigma2: Rational, rng: RandomSource) -> int:
    """One draw of N_Z(0, sigma2), P(x) ∝ exp(−x²/(2·sigma2)), sigma2 rational (CKS20 Alg. 3)."""
    return _discrete_gaussian(rng, _GaussianParams(_positive_rational("sigma2", sigma2)))


def sample_vector(
    count: int,
    rng: RandomSource,
    *,
    sigma2: Rational | None = None,
    scale: Rational | None = None,
) -> list[int]:
    """``count`` independent draws: N_Z(0, sigma2) given ``sigma2``, Lap_Z(scale) given ``scale``.

    Exactly one of ``sigma2`` and ``scale`` must be given; parameters are prepared once.
    """
    _check_count(count)
    if (sigma2 is None) == (scale is None):
        raise ValueError(
            "give exactly one of sigma2 (discrete Gaussian) and scale (discrete Laplace)"
        )
    if sigma2 is not None:
        g = _GaussianParams(_positive_rational("sigma2", sigma2))
        return [_discrete_gaussian(rng, g) for _ in range(count)]
    assert scale is not None
    sc = _positive_rational("scale", scale)
    s, t = sc.denominator, sc.numerator
    return [_discrete_laplace(rng, s, t) for _ in range(count)]


class ExactSampler:
    """:class:`NoiseSampler` running CKS20 in exact rational arithmetic on a passed-in source."""

    def __init__(self, rng: RandomSource) -> None:
        if not callable(getattr(rng, "below", None)):
            raise TypeError("rng must provide below(bound) -> int")
        self._rng = rng

    def discrete_gaussian(self, sigma2: Fraction, count: int) -> list[int]:
        return sample_vector(count, self._rng, sigma2=sigma2)

    def discrete_laplace(self, scale: Fraction, count: int) -> list[int]:
        return sample_vector(count, self._rng, scale=scale)


# -- OpenDP ---------------------------------------------------------------------------------------


# OpenDP saturates at the i64 bounds instead of failing, so scales stay far below them: with
# scale ≤ 2^52 a draw reaches 2^63 with probability below exp(−2^11).
_OPENDP_MAX_SCALE = 2**52


def _float_at_least(x: Fraction) -> float:
    if x > _OPENDP_MAX_SCALE:
        raise ValueError("scale is too large for OpenDP's 64-bit integers (max 2^52)")
    f = float(x)
    while Fraction(f) < x:
        f = math.nextafter(f, math.inf)
    return f


def _sqrt_at_least(x: Fraction) -> float:
    """A float s with s² ≥ x exactly, so OpenDP never adds less noise than planned."""
    if x > _OPENDP_MAX_SCALE**2:
        raise ValueError("sigma2 is too large for OpenDP's 64-bit integers (max 2^104)")
    s = math.sqrt(float(x))
    while Fraction(s) ** 2 < x:
        s = math.nextafter(s, math.inf)
    return s


class OpenDPSampler:
    """:class:`NoiseSampler` backed by OpenDP's samplers (the OS CSPRNG); for production.

    OpenDP takes its scale as a float: it is rounded up, so the noise is never smaller than
    planned. OpenDP errors are converted to :class:`TesseraError` at this boundary.
    """

    def __init__(self) -> None:
        try:
            import opendp.prelude as dp
        except ImportError as exc:  # pragma: no cover - opendp is a declared dependency
            raise TesseraError("OpenDPSampler needs the opendp package") from exc
        dp.enable_features("contrib")  # integer-domain noise is still marked contrib
        self._dp: Any = dp
        self._domain = dp.vector_domain(dp.atom_domain(T="i64"))

    def _run(self, make: str, metric: Any, scale: float, count: int) -> list[int]:
        if count == 0:
            return []
        from opendp.mod import OpenDPException

        try:
            meas = getattr(self._dp.m, make)(self._domain, metric, scale=scale)
            out = meas([0] * count)
        except OpenDPException as exc:
            raise TesseraError(f"OpenDP {make}(scale={scale!r}) failed: {exc}") from exc
        return [int(v) for v in out]

    def discrete_gaussian(self, sigma2: Fraction, count: int) -> list[int]:
        _check_count(count)
        scale = _sqrt_at_least(_positive_rational("sigma2", sigma2))
        return self._run("make_gaussian", self._dp.l2_distance(T="i64"), scale, count)

    def discrete_laplace(self, scale: Fraction, count: int) -> list[int]:
        _check_count(count)
        s = _float_at_least(_positive_rational("scale", scale))
        return self._run("make_laplace", self._dp.l1_distance(T="i64"), s, count)
