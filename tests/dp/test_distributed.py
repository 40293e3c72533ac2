"""Distributed noise plans: honest-quorum privacy (checked by exact Rényi divergences), tails."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tessera.crypto.rng import SeededRng
from tessera.dp.distributed import NoisePlan, plan_noise, truncation_bound
from tessera.dp.samplers import sample_vector

PLANS = [  # (sensitivity_l2, n, t, rho)
    (1, 1, 1, 0.5),
    (1, 3, 2, 0.5),
    (1, 5, 1, 0.9),  # small per-node σ: the KLS21 correction matters here
    (1, 10, 4, 0.5),
    (2**10, 5, 3, 0.1),
    (3, 13, 7, 2.0),  # n = 2t - 1: a single honest draw
]


def dg_log_pmf(sigma2: float, support: int) -> np.ndarray:
    k = np.arange(-support, support + 1, dtype=float)
    w = -k * k / (2 * sigma2)
    return w - np.logaddexp.reduce(w)


def log_pmf_of_sum(sigma2: float, m: int, support: int) -> np.ndarray:
    base = np.exp(dg_log_pmf(sigma2, support))
    total = base
    for _ in range(m - 1):
        total = np.convolve(total, base)
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(total, 0.0))


def renyi(logp: np.ndarray, logq: np.ndarray, alpha: float) -> float:
    ok = np.isfinite(logp) & np.isfinite(logq) & (logp > -600)
    return float(np.logaddexp.reduce(alpha * logp[ok] + (1 - alpha) * logq[ok]) / (alpha - 1))


@pytest.mark.parametrize(("sens", "n", "t", "rho"), PLANS)
def test_honest_quorum_meets_the_target(sens: int, n: int, t: int, rho: float) -> None:
    plan = plan_noise(sens, n, t, rho=rho)
    m = n - 2 * t + 2
    assert plan.honest_quorum == m
    assert plan.sigma_sq == m * plan.sigma_node_sq
    assert plan.sigma_sq >= Fraction(sens) ** 2 / (2 * Fraction(rho))  # variance ≥ Δ²/(2ρ)
    assert plan.rho_bound <= plan.rho == rho
    if m == 1:
        assert plan.tau == 0.0
        assert plan.rho_bound == pytest.approx(sens**2 / (2 * float(plan.sigma_node_sq)))
    # not wastefully large: within 1e-6 of the least σ² the KLS21 bound allows
    looser = plan_noise(sens, n, t, rho=rho * (1 + 1e-6))
    assert looser.sigma_node_sq <= plan.sigma_node_sq


@pytest.mark.parametrize(("sens", "n", "t", "rho"), PLANS)
def test_a_release_of_every_nodes_share_is_calibrated_on_its_n_minus_t_plus_1(
    sens: int, n: int, t: int, rho: float
) -> None:
    """A release unsharded from all n shares (a training round) holds n − t + 1 honest draws:
    calibrated on them, each node adds less noise for the same ρ; no plan may count more."""
    plan = plan_noise(sens, n, t, rho=rho, honest=n - t + 1)
    query = plan_noise(sens, n, t, rho=rho)
    assert plan.honest_quorum == n - t + 1 and plan.sigma_sq == plan.honest * plan.sigma_node_sq
    assert plan.rho_bound <= plan.rho == rho
    assert plan.sigma_sq >= Fraction(sens) ** 2 / (2 * Fraction(rho))
    assert plan.sigma_node_sq <= query.sigma_node_sq
    if t > 1:
        assert plan.sigma_node_sq < query.sigma_node_sq
    for wrong in (n - t + 2, n - 2 * t + 1):
        with pytest.raises(ValueError, match=f"honest = {wrong} draws"):
            plan_noise(sens, n, t, rho=rho, honest=wrong)


@pytest.mark.parametrize("honest", [False, True], ids=["aggregate", "every-share"])
@pytest.mark.parametrize(("sens", "n", "t", "rho"), [p for p in PLANS if p[0] <= 3])
def test_exact_renyi_divergence_of_the_honest_sum(
    sens: int, n: int, t: int, rho: float, honest: bool
) -> None:
    """D_α(S ‖ S + Δ) ≤ α·ρ for the sum S of the m honest nodes' noise, computed exactly."""
    plan = plan_noise(sens, n, t, rho=rho, honest=n - t + 1 if honest else None)
    m = plan.honest_quorum
    logp = log_pmf_of_sum(float(plan.sigma_node_sq), m, 60)
    logq = np.concatenate([np.full(sens, -np.inf), logp[:-sens]])
    for alpha in (1.01, 1.5, 2.0, 4.0, 10.0, 30.0):
        assert renyi(logp, logq, alpha) <= alpha * plan.rho * (1 + 1e-9)


def test_naive_calibration_would_fail_where_kls21_is_needed() -> None:
    """Five honest nodes at σ_node² = 1/4: the naive ρ = Δ²/(2·5·σ_node²) understates the loss."""
    m, s2 = 5, 0.25
    logp = log_pmf_of_sum(s2, m, 60)
    logq = np.concatenate([[-np.inf], logp[:-1]])
    naive = 1 / (2 * m * s2)
    assert max(renyi(logp, logq, a) / a for a in (1.5, 2.0, 5.0, 20.0)) > naive * 1.05
    plan = plan_noise(1, 5, 1, rho=naive)
    assert plan.sigma_node_sq > Fraction(1, 4)  # so the plan adds more noise than naive


def test_empirical_variance_of_the_honest_sum() -> None:
    plan = plan_noise(1, 4, 2, rho=0.25)
    m, s2 = plan.honest_quorum, plan.sigma_node_sq
    rng = SeededRng("honest-sum")
    draws = 6000
    sums = [sum(sample_vector(m, rng, sigma2=s2)) for _ in range(draws)]
    var = sum(x * x for x in sums) / draws
    target = float(plan.sigma_sq)
    assert abs(var - target) <= 5 * target * math.sqrt(2 / draws)
    assert plan.sd_honest_quorum == pytest.approx(math.sqrt(target))


@pytest.mark.parametrize("sigma2", [Fraction(1, 4), Fraction(1), Fraction(9, 2), Fraction(40)])
@pytest.mark.parametrize("tail_bits", [8, 20, 40])
def test_truncation_bound_tail(sigma2: Fraction, tail_bits: int) -> None:
    b = truncation_bound(sigma2, tail_bits)
    logp = dg_log_pmf(float(sigma2), 400)
    k = np.arange(-400, 401)
    tail = float(np.exp(np.logaddexp.reduce(logp[np.abs(k) > b])))
    assert tail <= 2.0**-tail_bits
    # and it is the least bound that the sub-Gaussian inequality certifies
    assert 2 * math.exp(-(b**2) / (2 * float(sigma2))) > 2.0**-tail_bits


def test_plan_bound_matches_truncation_bound() -> None:
    plan = plan_noise(5, 6, 3, rho=0.3, tail_bits=30)
    assert plan.bound == truncation_bound(plan.sigma_node_sq, 30)
    assert plan.max_dishonest_bias == 2 * plan.bound
    assert plan.tail_probability == 2.0**-30


def test_delta_total_accounts_for_truncation() -> None:
    plan = plan_noise(1, 4, 2, rho=0.5, delta=1e-6, tail_bits=40, dimension=10)
    eta = 4 * 10 * 2.0**-40
    assert plan.delta_total == pytest.approx(1e-6 + (1 + math.exp(plan.epsilon)) * eta)
    assert plan.delta_total > plan.delta


def test_epsilon_target() -> None:
    plan = plan_noise(1, 3, 2, epsilon=1.0, delta=1e-6)
    assert plan.epsilon <= 1.0
    assert plan.epsilon == pytest.approx(1.0, rel=1e-9)
    assert plan.rho == pytest.approx(0.0243559703, rel=1e-6)


def test_vector_form_same_sigma_per_coordinate() -> None:
    scalar = plan_noise(2, 5, 2, rho=0.5)
    vector = plan_noise(2, 5, 2, rho=0.5, dimension=1000)
    assert vector.dimension == 1000
    assert vector.rho_bound <= 0.5
    # the τ·d term can only ask for more noise per coordinate
    assert vector.sigma_node_sq >= scalar.sigma_node_sq


def test_intervals() -> None:
    plan = plan_noise(1, 4, 2, rho=0.5)
    sd = math.sqrt(4 * plan.sigma_node_sq)
    assert plan.sd_all_honest == pytest.approx(sd)
    assert plan.half_width95() == pytest.approx(1.96 * sd)
    lo, hi = plan.interval95(10.0, scale=2**8)
    assert (lo + hi) / 2 == pytest.approx(10.0)
    assert hi - lo == pytest.approx(2 * 1.96 * sd / 2**8)
    with pytest.raises(ValueError, match="scale"):
        plan.interval95(1.0, scale=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 3, 2), {"rho": 1.0}, "sensitivity_l2"),
        ((-1, 3, 2), {"rho": 1.0}, "sensitivity_l2"),
        ((float("nan"), 3, 2), {"rho": 1.0}, "sensitivity_l2"),
        ((1, 0, 1), {"rho": 1.0}, r"n \(committee size\)"),
        ((1, 3, 0), {"rho": 1.0}, r"t \(threshold\)"),
        ((1, 3, 4), {"rho": 1.0}, r"t \(threshold\) = 4 exceeds n"),
        ((1, 6, 4), {"rho": 1.0}, r"need n >= 2t - 1"),
        ((1, 3, 2), {}, "exactly one of rho and epsilon"),
        ((1, 3, 2), {"rho": 1.0, "epsilon": 1.0}, "exactly one of rho and epsilon"),
        ((1, 3, 2), {"rho": 0.0}, "rho"),
        ((1, 3, 2), {"rho": -1.0}, "rho"),
        ((1, 3, 2), {"rho": float("inf")}, "rho"),
        ((1, 3, 2), {"epsilon": 0.0}, "epsilon"),
        ((1, 3, 2), {"rho": 1.0, "delta": 0.0}, "delta"),
        ((1, 3, 2), {"rho": 1.0, "delta": 1.0}, "delta"),
        ((1, 3, 2), {"rho": 1.0, "tail_bits": 0}, "tail_bits"),
        ((1, 3, 2), {"rho": 1.0, "dimension": 0}, "dimension"),
        ((1, 3, 2), {"rho": 100.0}, "tail_bits"),  # ε ≈ 172: e^ε·2^-40 makes δ vacuous
    ],
)
def test_parameter_validation(
    args: tuple[float, int, int], kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        plan_noise(*args, **kwargs)  # type: ignore[arg-type]


def test_noise_plan_constructor_validates() -> None:
    good = plan_noise(1, 3, 2, rho=0.5)
    fields = {f: getattr(good, f) for f in NoisePlan.__dataclass_fields__}
    for change, match in [
        ({"t": 4}, "exceeds n"),
        ({"sigma_node_sq": Fraction(0)}, "sigma_node_sq"),
        ({"bound": -1}, "bound"),
        ({"rho_bound": 0.6}, "rho_bound"),
        ({"dimension": 0}, "dimension"),
        ({"honest": 3}, "honest = 3 draws"),
    ]:
        with pytest.raises(ValueError, match=match):
            NoisePlan(**(fields | change))
