"""Calibration of distributed discrete Gaussian noise (Kairouz–Liu–Steinke 2021, ICML)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

from tessera.dp.accountant import eps_to_rho, rho_to_eps_delta
from tessera.dp.samplers import NoiseSampler

# The mechanism. Each of the n computing nodes adds, to every coordinate of a released integer
# vector, an independent draw of N_Z(0, σ_node²), with σ_node² = σ²/m. What a node requires
# before it key-switches an aggregate (protocol.aggregation.check_noise_set) is noise from at
# least n − t + 1 distinct committee members, its own included, each with a proof that its
# author knows the plaintext (so no noise term is a function of another's). At most t − 1 of
# those members are dishonest and their noise is known to the adversary, so privacy rests on
# the sum of the m = n − 2t + 2 honest draws that every such aggregate holds (more honest noise
# is post-processing and can only help). The committee needs n ≥ 2t − 1, so m ≥ 1.
#
# Privacy of that sum (KLS21, §3: privacy of the sum of m i.i.d. discrete Gaussians, for
# σ_node ≥ 1/2): for every integer shift Δ ∈ Z^d, the sum satisfies ε²/2-zCDP with
#     ε = min{ sqrt(‖Δ‖₂²/(mσ_node²) + τ·d/2),  ‖Δ‖₂/(sqrt(m)·σ_node) + τ·‖Δ‖₁ },
#     τ = 10 · Σ_{k=1}^{m−1} exp(−2π²σ_node²·k/(k+1)),
# i.e. slightly worse than one discrete Gaussian of variance mσ_node² (ρ = Δ₂²/(2mσ_node²),
# CKS20). We use ‖Δ‖₁ ≤ sqrt(d)·‖Δ‖₂, and choose σ_node² (by bisection, then rounded up to a
# 30-bit rational) so that this bound is at most the requested ρ. For m = 1, τ = 0 and the bound
# is CKS20's for a single discrete Gaussian.
#
# A release that needs every node's share holds more. A training round (Prio3 over the
# committee, tessera.learning.secure) is unsharded from all n nodes' aggregate shares, each
# with its node's noise, so with t − 1 dishonest nodes it holds the n − t + 1 honest draws:
# `plan_noise(..., honest=n - t + 1)` calibrates on those (`learning.privacy.round_noise`),
# and the KLS21 bound above is applied with m = n − t + 1.
#
# Truncation. The range proofs need |noise| ≤ bound, so an honest node redraws on the rare
# event |X| > bound. N_Z(0, s²) is s-subgaussian (CKS20 §4: E[e^{λX}] ≤ e^{λ²s²/2}), hence
# P(|X| > B) = P(|X| ≥ B+1) ≤ 2·exp(−(B+1)²/(2s²)); the bound is the least B making this at
# most 2^−tail_bits, computed in exact rational arithmetic. The truncated mechanism is within
# total variation η = n·d·2^−tail_bits of the ideal one on every input, so an (ε, δ)-DP ideal
# mechanism makes it (ε, δ + (1 + e^ε)·η)-DP: that is `delta_total`.

_LN2_UP = Fraction(6931471805599454, 10**16)  # > ln 2 = 0.69314718055994530941...
_Z95 = 1.96  # two-sided 95% normal quantile (1.95996...), rounded up
_MARGIN = 1e-12  # relative slack for floating-point error in the ρ bound
_MAX_TAIL_BITS = 1024


def _kls_rho(sensitivity: float, m: int, d: int, s2: float) -> tuple[float, float]:
    """The KLS21 zCDP bound ρ = ε²/2 for the sum of m draws of N_Z(0, s2)^d, and its τ."""
    c = -2.0 * math.pi**2 * s2
    tau = 10.0 * math.fsum(math.exp(c * k / (k + 1)) for k in range(1, m))
    r1 = sensitivity**2 / (2.0 * m * s2) + tau * d / 4.0
    r2 = (sensitivity / math.sqrt(m * s2) + tau * math.sqrt(d) * sensitivity) ** 2 / 2.0
    return min(r1, r2), tau


def _round_up(x: float, bits: int = 30) -> Fraction:
    """The least multiple of 2^(e−bits) that is ≥ x, where 2^e ≤ x < 2^(e+1)."""
    e = math.frexp(x)[1] - 1 - bits
    unit = Fraction(2) ** e
    return math.ceil(Fraction(x) / unit) * unit


def _calibrate(sensitivity: float, m: int, d: int, rho: float) -> Fraction:
    """The least (to 2^-30 relative) per-node σ² whose KLS21 bound is ≤ ρ."""
    target = rho * (1.0 - _MARGIN)
    lo = sensitivity**2 / (2.0 * m * rho)  # every bound is at least the single-Gaussian ρ
    if m > 1:
        lo = max(lo, 0.25)  # KLS21 needs σ_node ≥ 1/2
    if _kls_rho(sensitivity, m, d, lo)[0] <= target:
        hi = lo
    else:
        hi = lo * 2.0
        while _kls_rho(sensitivity, m, d, hi)[0] > target:
            lo, hi = hi, hi * 2.0
        for _ in range(200):  # the bound decreases in σ_node², so bisection applies
            mid = (lo + hi) / 2.0
            if not lo < mid < hi or (hi - lo) <= 1e-13 * hi:
                break
            if _kls_rho(sensitivity, m, d, mid)[0] <= target:
                hi = mid
            else:
                lo = mid
    s2 = _round_up(hi)
    if _kls_rho(sensitivity, m, d, float(s2))[0] > target:  # pragma: no cover - defensive
        raise AssertionError("noise calibration failed to meet the requested rho")
    return s2


def truncation_bound(sigma2: Fraction, tail_bits: int) -> int:
    """Least B ≥ 0 with 2·exp(−(B+1)²/(2·sigma2)) ≤ 2^−tail_bits, so P(|N_Z(0, sigma2)| > B) is too.

    The condition is (B+1)² ≥ 2·sigma2·(tail_bits+1)·ln 2, checked with a rational ln 2 upper bound.
    """
    x = 2 * Fraction(sigma2) * (tail_bits + 1) * _LN2_UP
    c = isqrt(x.numerator // x.denominator)
    while c * c * x.denominator < x.numerator:
        c += 1
    return max(c - 1, 0)


@dataclass(frozen=True, slots=True)
class NoisePlan:
    """Per-node noise for one released integer vector, and what it buys (see module comments).

    ``rho`` is what the budget is charged; ``rho_bound`` ≤ ``rho`` is the KLS21 bound that the
    honest quorum's noise provably achieves. Standard deviations use the σ parameters, which
    bound the true ones from above (Var N_Z(0, s²) < s², CKS20), so intervals are conservative.
    A dishonest node's noise is only known to lie in [−bound, bound]: it can shift a coordinate
    by at most ``max_dishonest_bias`` in total.
    """

    sensitivity_l2: float
    n: int
    t: int
    dimension: int
    rho: float
    rho_bound: float
    tau: float
    delta: float
    epsilon: float
    delta_total: float
    sigma_node_sq: Fraction
    bound: int
    tail_bits: int
    honest: int  # the honest draws every release holds (m), that ρ is calibrated on

    def __post_init__(self) -> None:
        _check_honest(self.n, self.t, self.honest)
        if self.dimension < 1:
            raise ValueError(f"dimension must be at least 1, got {self.dimension}")
        if not self.sigma_node_sq > 0:
            raise ValueError("sigma_node_sq must be positive")
        if self.bound < 0:
            raise ValueError("bound must be non-negative")
        if not self.rho_bound <= self.rho:
            raise ValueError("rho_bound exceeds rho: the plan does not meet its target")

    def draw(self, sampler: NoiseSampler) -> int:
        """One node's noise for one coordinate: N_Z(0, σ_node²) redrawn while |η| > bound
        (a draw beyond the bound has probability below 2^−tail_bits)."""
        while True:
            v = int(sampler.discrete_gaussian(self.sigma_node_sq, 1)[0])
            if abs(v) <= self.bound:
                return v

    @property
    def honest_quorum(self) -> int:
        """m: the fewest honest draws in any release (n − 2t + 2 for a query's aggregate,
        n − t + 1 for a release that needs every node)."""
        return self.honest

    @property
    def sigma_sq(self) -> Fraction:
        """σ² = m·σ_node² of the honest quorum's sum (≥ Δ₂²/(2ρ))."""
        return self.honest_quorum * self.sigma_node_sq

    @property
    def sigma_node(self) -> float:
        return math.sqrt(self.sigma_node_sq)

    @property
    def sd_all_honest(self) -> float:
        """Noise standard deviation of each released coordinate when all n nodes are honest."""
        return math.sqrt(self.n * self.sigma_node_sq)

    @property
    def sd_honest_quorum(self) -> float:
        """Standard deviation of the honest part of the noise when only m nodes are honest."""
        return math.sqrt(self.sigma_sq)

    @property
    def max_dishonest_bias(self) -> int:
        """The most that t − 1 dishonest nodes can shift a coordinate if each is held to
        ``|η| ≤ bound``. The aggregation's limb proofs admit a little more for noise of
        several limbs (within 1/16): ``protocol.aggregation.max_noise_bias`` is exact, and
        what a query result reports."""
        return (self.t - 1) * self.bound

    @property
    def tail_probability(self) -> float:
        """Upper bound on P(|one node's draw| > bound)."""
        return 2.0**-self.tail_bits

    def half_width95(self, scale: float = 1.0) -> float:
        """1.96·sd_all_honest/scale: the 95% half-width of a value decoded by dividing by scale."""
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        return _Z95 * self.sd_all_honest / scale

    def interval95(self, value: float, scale: float = 1.0) -> tuple[float, float]:
        """95% interval around a released ``value`` (already divided by the fixed-point scale)."""
        h = self.half_width95(scale)
        return (value - h, value + h)


def _check_committee(n: int, t: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (committee size) must be a positive integer, got {n!r}")
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"t (threshold) must be a positive integer, got {t!r}")
    if t > n:
        raise ValueError(f"t (threshold) = {t} exceeds n (committee size) = {n}")
    if n < 2 * t - 1:
        raise ValueError(
            f"a committee of n = {n} with threshold t = {t}: need n >= 2t - 1, so that the "
            "honest nodes alone can finish a query and every release holds honest noise"
        )


def honest_draws(n: int, t: int) -> int:
    """m = n − 2t + 2: honest draws in any aggregate of n − t + 1 distinct nodes' noise."""
    _check_committee(n, t)
    return n - 2 * t + 2


def _check_honest(n: int, t: int, honest: int) -> None:
    """``honest`` draws are guaranteed in a release: at least those of any aggregate a node
    agrees to switch (n − 2t + 2), at most the n − t + 1 honest nodes."""
    least = honest_draws(n, t)
    if isinstance(honest, bool) or not isinstance(honest, int):
        raise ValueError(f"honest must be an integer, got {honest!r}")
    if not least <= honest <= n - t + 1:
        raise ValueError(
            f"honest = {honest} draws: a committee of n = {n}, t = {t} guarantees between "
            f"{least} (any aggregate a node switches) and {n - t + 1} (every node's share)"
        )


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return v


def plan_noise(
    sensitivity_l2: float,
    n: int,
    t: int,
    *,
    rho: float | None = None,
    epsilon: float | None = None,
    delta: float = 1e-6,
    tail_bits: int = 40,
    dimension: int = 1,
    honest: int | None = None,
) -> NoisePlan:
    """Per-node discrete Gaussian noise so that the ``honest`` draws every release holds
    give ρ-zCDP (see the module comments): by default the n − 2t + 2 of any aggregate a
    node agrees to switch; n − t + 1 for a release unsharded from every node's share.

    Give exactly one target: ``rho`` (zCDP) or ``epsilon`` (converted at ``delta`` with
    :func:`eps_to_rho`). ``sensitivity_l2`` is the L2 sensitivity of the released integer
    vector of ``dimension`` coordinates (fixed-point units); every coordinate gets the same σ.
    """
    sens = _check_positive("sensitivity_l2", sensitivity_l2)
    _check_committee(n, t)
    if (rho is None) == (epsilon is None):
        raise ValueError("give exactly one of rho and epsilon")
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ValueError(f"dimension must be a positive integer, got {dimension!r}")
    if isinstance(tail_bits, bool) or not isinstance(tail_bits, int):
        raise ValueError(f"tail_bits must be an integer, got {tail_bits!r}")
    if not 1 <= tail_bits <= _MAX_TAIL_BITS:
        raise ValueError(f"tail_bits must be in [1, {_MAX_TAIL_BITS}], got {tail_bits}")
    d = _check_positive("delta", delta)
    if not d < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if rho is not None:
        target = _check_positive("rho", rho)
    else:
        assert epsilon is not None
        target = eps_to_rho(_check_positive("epsilon", epsilon), d)
        if not target > 0:
            raise ValueError(f"epsilon={epsilon!r} is too small for delta={delta!r}")

    m = honest_draws(n, t) if honest is None else honest
    _check_honest(n, t, m)
    s2 = _calibrate(sens, m, dimension, target)
    rho_bound, tau = _kls_rho(sens, m, dimension, float(s2))
    eps = rho_to_eps_delta(target, d)[0]
    eta = n * dimension * 2.0**-tail_bits
    delta_total = d + (1.0 + math.exp(min(eps, 700.0))) * eta
    if not delta_total < 1:
        need = math.ceil(math.log2(1.0 + math.exp(min(eps, 700.0))) + math.log2(n * dimension))
        raise ValueError(
            f"tail_bits={tail_bits} is too small for epsilon={eps:.4g}: the truncation term "
            f"makes delta_total ≥ 1; use tail_bits > {need}"
        )
    return NoisePlan(
        sensitivity_l2=sens,
        n=n,
        t=t,
        dimension=dimension,
        rho=target,
        rho_bound=rho_bound,
        tau=tau,
        delta=d,
        epsilon=eps,
        delta_total=delta_total,
        sigma_node_sq=s2,
        bound=truncation_bound(s2, tail_bits),
        tail_bits=tail_bits,
        honest=m,
    )
