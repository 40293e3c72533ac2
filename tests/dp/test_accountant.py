"""zCDP conversions against known values and OpenDP; budgets and the atomic multi-dataset charge."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.dp.accountant import (
    PrivacyAccountant,
    PrivacyBudget,
    eps_to_rho,
    epsilon_bs16,
    epsilon_cks20_cor13,
    epsilon_cks20_tight,
    epsilon_discrete_laplace,
    rho_discrete_laplace,
    rho_gaussian,
    rho_to_eps_delta,
    sigma_for_rho,
)
from tessera.errors import BudgetExceeded, PolicyViolation

rhos = st.floats(min_value=1e-6, max_value=50.0)
deltas = st.floats(min_value=1e-12, max_value=1e-2)


def test_gaussian_known_values() -> None:
    assert rho_gaussian(1, 1) == 0.5
    assert rho_gaussian(3, 2) == pytest.approx(9 / 8)
    assert sigma_for_rho(1, 0.5) == pytest.approx(1.0)
    assert sigma_for_rho(10, 2) == pytest.approx(5.0)
    assert rho_gaussian(0, 1) == 0.0


def test_laplace_known_values() -> None:
    assert epsilon_discrete_laplace(2, 4) == 0.5
    assert rho_discrete_laplace(2, 4) == 0.125


@given(st.floats(min_value=1e-3, max_value=1e4), st.floats(min_value=1e-6, max_value=1e3))
def test_sigma_for_rho_inverts_rho_gaussian(sens: float, rho: float) -> None:
    assert rho_gaussian(sens, sigma_for_rho(sens, rho)) == pytest.approx(rho, rel=1e-12)


def test_conversion_known_values() -> None:
    # BS16: ρ + 2·sqrt(ρ·ln(1/δ)) at ρ = 1/2, δ = 1e-6
    assert epsilon_bs16(0.5, 1e-6) == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e6)))
    assert epsilon_bs16(0.5, 1e-6) == pytest.approx(5.756521769756932)
    # CKS20 Cor. 13
    assert epsilon_cks20_cor13(0.5, 1e-6) == pytest.approx(
        0.5 + math.sqrt(2 * math.log(math.sqrt(math.pi / 2) / 1e-6))
    )
    assert epsilon_cks20_cor13(1e-12, 1e-3) == math.inf  # sqrt(πρ) < δ: no bound
    # the tight conversion, as also computed by OpenDP (below)
    assert epsilon_cks20_tight(0.5, 1e-6) == pytest.approx(5.221534, abs=1e-5)
    eps, delta = rho_to_eps_delta(0.5, 1e-6)
    assert eps == pytest.approx(5.221534, abs=1e-5)
    assert delta == 1e-6
    assert rho_to_eps_delta(0.0, 1e-6) == (0.0, 1e-6)


@pytest.mark.parametrize(("rho", "delta"), [(0.5, 1e-6), (0.01, 1e-9), (2.0, 1e-5), (10.0, 1e-7)])
def test_tight_conversion_matches_opendp(rho: float, delta: float) -> None:
    dp = pytest.importorskip("opendp.prelude")
    dp.enable_features("contrib")
    scale = 1.0 / math.sqrt(2 * rho)  # Gaussian mechanism with Δ = 1 is then ρ-zCDP
    gauss = dp.m.make_gaussian(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale
    )
    expected = dp.c.make_zCDP_to_approxDP(gauss).map(1.0).epsilon(delta)
    assert rho_to_eps_delta(rho, delta)[0] == pytest.approx(expected, rel=1e-6)


@given(rhos, deltas)
def test_tight_is_the_smallest_bound(rho: float, delta: float) -> None:
    eps = rho_to_eps_delta(rho, delta)[0]
    assert eps == epsilon_cks20_tight(rho, delta)
    assert eps <= epsilon_cks20_cor13(rho, delta)
    assert eps <= epsilon_bs16(rho, delta)
    assert eps >= rho - 1e-12  # ε < ρ is impossible for δ small (the privacy loss has mean ρ)


@given(rhos, rhos, deltas)
def test_conversion_is_monotone_in_rho(r1: float, r2: float, delta: float) -> None:
    lo, hi = sorted((r1, r2))
    assert rho_to_eps_delta(lo, delta)[0] <= rho_to_eps_delta(hi, delta)[0] * (1 + 1e-12)


@given(rhos, deltas, deltas)
def test_conversion_is_antitone_in_delta(rho: float, d1: float, d2: float) -> None:
    small, large = sorted((d1, d2))
    assert rho_to_eps_delta(rho, large)[0] <= rho_to_eps_delta(rho, small)[0] * (1 + 1e-12)


@given(st.floats(min_value=0.01, max_value=50.0), deltas)
def test_eps_to_rho_round_trip(eps: float, delta: float) -> None:
    rho = eps_to_rho(eps, delta)
    back = rho_to_eps_delta(rho, delta)[0]
    assert back <= eps  # never overspends
    assert back == pytest.approx(eps, rel=1e-9)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rho_gaussian(1, 0), "sigma"),
        (lambda: rho_gaussian(-1, 1), "sensitivity_l2"),
        (lambda: sigma_for_rho(1, 0), "rho"),
        (lambda: rho_to_eps_delta(-0.1, 1e-6), "rho"),
        (lambda: rho_to_eps_delta(1, 0), "delta"),
        (lambda: rho_to_eps_delta(1, 1), "delta"),
        (lambda: rho_to_eps_delta(float("nan"), 1e-6), "rho"),
        (lambda: eps_to_rho(0, 1e-6), "epsilon"),
        (lambda: eps_to_rho(1, 1.5), "delta"),
        (lambda: epsilon_discrete_laplace(1, 0), "scale"),
    ],
)
def test_invalid_arguments(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


# -- budgets -------------------------------------------------------------------------------------


def test_budget_spend_and_refusal_leaves_state_unchanged() -> None:
    b = PrivacyBudget("hospital/patients", 1.0)
    assert b.can_spend(1.0)
    b.spend(0.25)
    assert (b.spent, b.remaining, b.cap) == (0.25, 0.75, 1.0)
    assert not b.can_spend(0.8)
    with pytest.raises(BudgetExceeded) as info:
        b.spend(0.8)
    msg = str(info.value)
    assert "hospital/patients" in msg and "0.8" in msg and "0.75" in msg
    assert isinstance(info.value, PolicyViolation)
    assert (b.spent, b.remaining) == (0.25, 0.75)
    b.spend(0.75)
    assert b.remaining == 0.0
    with pytest.raises(BudgetExceeded):
        b.spend(1e-12)
    assert b.spent == 1.0


def test_budget_accounting_is_exact() -> None:
    b = PrivacyBudget("d", 1.0)
    for _ in range(10):
        b.spend(0.1)  # ten tenths exhaust the cap exactly, without a 1-ulp refusal
    assert b.remaining == 0.0
    thirds = PrivacyBudget("d", 1)
    for _ in range(3):
        thirds.spend(Fraction(1, 3))
    assert not thirds.can_spend(Fraction(1, 10**30))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("", 1.0), "dataset"),
        (("d", -1.0), "cap"),
        (("d", float("inf")), "cap"),
        (("d", 1.0, 2.0), "exceeds cap"),
        (("d", 1.0, -0.5), "spent"),
    ],
)
def test_budget_validation(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PrivacyBudget(*args)  # type: ignore[arg-type]


def test_budget_rejects_negative_or_nan_spend() -> None:
    b = PrivacyBudget("d", 1.0)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="rho"):
            b.spend(bad)
        with pytest.raises(ValueError, match="rho"):
            b.can_spend(bad)
    assert b.spent == 0.0


def test_accountant_atomic_multi_dataset_charge() -> None:
    acc = PrivacyAccountant({"a": 1.0, "b": 0.5})
    acc.add_dataset("c", 2.0, spent=1.0)
    acc.charge({"a": 0.5, "b": 0.25})
    assert (acc.remaining("a"), acc.remaining("b")) == (0.5, 0.25)
    # "b" cannot pay: nothing is charged anywhere, and the message names b
    assert not acc.can_charge({"a": 0.1, "b": 0.3, "c": 0.1})
    with pytest.raises(BudgetExceeded, match="'b'") as info:
        acc.charge({"a": 0.1, "b": 0.3, "c": 0.1})
    assert "'a'" not in str(info.value)
    assert (acc.remaining("a"), acc.remaining("b"), acc.remaining("c")) == (0.5, 0.25, 1.0)
    # an unknown dataset or a bad value anywhere also charges nothing
    with pytest.raises(PolicyViolation, match="nowhere"):
        acc.charge({"a": 0.1, "nowhere": 0.1})
    with pytest.raises(ValueError, match="rho"):
        acc.charge({"a": 0.1, "c": -1.0})
    assert (acc.remaining("a"), acc.remaining("c")) == (0.5, 1.0)
    acc.charge({"a": 0.5, "b": 0.25, "c": 1.0})
    assert all(acc.remaining(d) == 0.0 for d in acc)
    assert "a" in acc and "z" not in acc


def test_accountant_rejects_duplicate_dataset() -> None:
    acc = PrivacyAccountant({"a": 1.0})
    with pytest.raises(ValueError, match="already"):
        acc.add_dataset("a", 2.0)
    assert acc.budget("a").cap == 1.0
