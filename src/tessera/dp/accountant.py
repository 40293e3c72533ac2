"""zCDP accounting and per-dataset budgets (Bun–Steinke 2016; Canonne–Kamath–Steinke 2020, §2)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping
from fractions import Fraction

from tessera.errors import BudgetExceeded, PolicyViolation

# Conventions. ρ-zCDP (BS16, Def. 1.1): D_α(M(x) ‖ M(x')) ≤ ρ·α for all α > 1 and neighbours.
# Composition adds ρ (BS16, Lemma 1.7), which is why budgets are kept in ρ.
#
# Conversion to (ε, δ)-DP. Three valid bounds; every one gives a correct ε, so their minimum is
# correct too and `rho_to_eps_delta` reports it:
#   * BS16, Prop. 1.3:          ε = ρ + 2·sqrt(ρ·ln(1/δ));
#   * CKS20, Cor. 13:           ε = ρ + sqrt(4ρ·ln(sqrt(πρ)/δ))      (when sqrt(πρ)/δ > 1);
#   * CKS20, Prop. 12 (tight):  δ = exp((α−1)(αρ−ε))/(α−1) · (1−1/α)^α for any α > 1, i.e.
#       ε = inf_{α>1}  αρ + (ln(1/δ) + α·ln(1−1/α) − ln(α−1)) / (α−1),
#     the same bound as Asoodeh et al. 2021 and OpenDP's `make_zCDP_to_approxDP`. Each α gives
#     a valid ε, so an inexact numerical minimisation errs on the safe (larger ε) side.
# In practice the tight bound is always the smallest; the other two are kept as documented,
# independently checkable ceilings.

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
# Search interval for u = ln(α−1): α−1 from e^-25 ≈ 1.4e-11 to e^35 ≈ 1.6e15 covers the optimum
# (≈ sqrt(ln(1/δ)/ρ)) for every ρ ≥ 1e-28; outside, the minimum still yields a valid (larger) ε.
_U_LO, _U_HI = -25.0, 35.0


def _check_real(name: str, value: float | Fraction, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    if not positive and v < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return v


def _check_delta(delta: float) -> float:
    d = _check_real("delta", delta, positive=True)
    if not d < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return d


# -- Gaussian and Laplace mechanisms ----------------------------------------------------------


def rho_gaussian(sensitivity_l2: float, sigma: float) -> float:
    """ρ of the (discrete) Gaussian mechanism: Δ₂²/(2σ²) (BS16 Prop. 1.6; CKS20 §2)."""
    d = _check_real("sensitivity_l2", sensitivity_l2, positive=False)
    s = _check_real("sigma", sigma, positive=True)
    return d * d / (2.0 * s * s)


def sigma_for_rho(sensitivity_l2: float, rho: float) -> float:
    """The σ for which the Gaussian mechanism is ρ-zCDP: Δ₂/sqrt(2ρ)."""
    d = _check_real("sensitivity_l2", sensitivity_l2, positive=False)
    r = _check_real("rho", rho, positive=True)
    return d / math.sqrt(2.0 * r)


def epsilon_discrete_laplace(sensitivity_l1: float, scale: float) -> float:
    """Pure ε of the discrete Laplace mechanism, P(x) ∝ exp(−|x|/scale): Δ₁/scale (CKS20 §2.2)."""
    d = _check_real("sensitivity_l1", sensitivity_l1, positive=False)
    s = _check_real("scale", scale, positive=True)
    return d / s


def rho_discrete_laplace(sensitivity_l1: float, scale: float) -> float:
    """ρ of the discrete Laplace mechanism: ε²/2, since ε-DP implies ε²/2-zCDP (BS16 Prop. 1.4)."""
    eps = epsilon_discrete_laplace(sensitivity_l1, scale)
    return eps * eps / 2.0


# -- zCDP → (ε, δ) ----------------------------------------------------------------------------


def epsilon_bs16(rho: float, delta: float) -> float:
    """ε = ρ + 2·sqrt(ρ·ln(1/δ)) (BS16 Prop. 1.3)."""
    r = _check_real("rho", rho, positive=False)
    d = _check_delta(delta)
    return r + 2.0 * math.sqrt(r * math.log(1.0 / d))


def epsilon_cks20_cor13(rho: float, delta: float) -> float:
    """ε = ρ + sqrt(4ρ·ln(sqrt(πρ)/δ)) (CKS20 Cor. 13); ``inf`` where sqrt(πρ) ≤ δ."""
    r = _check_real("rho", rho, positive=False)
    d = _check_delta(delta)
    if r == 0:
        return 0.0
    arg = math.sqrt(math.pi * r) / d
    if arg <= 1.0:
        return math.inf
    return r + math.sqrt(4.0 * r * math.log(arg))


def _eps_at(u: float, rho: float, log_inv_delta: float) -> float:
    am1 = math.exp(u)  # α − 1
    alpha = 1.0 + am1
    return alpha * rho + (log_inv_delta + alpha * math.log1p(-1.0 / alpha) - u) / am1


def epsilon_cks20_tight(rho: float, delta: float) -> float:
    """The tight ε of CKS20 Prop. 12, minimised over α numerically (golden section on ln(α−1))."""
    r = _check_real("rho", rho, positive=False)
    d = _check_delta(delta)
    if r == 0:
        return 0.0
    log_inv_delta = math.log(1.0 / d)
    lo, hi = _U_LO, _U_HI
    x1, x2 = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    f1, f2 = _eps_at(x1, r, log_inv_delta), _eps_at(x2, r, log_inv_delta)
    best = min(f1, f2)
    while hi - lo > 1e-10:  # the objective is unimodal in ln(α−1)
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - _GOLDEN * (hi - lo)
            f1 = _eps_at(x1, r, log_inv_delta)
            best = min(best, f1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + _GOLDEN * (hi - lo)
            f2 = _eps_at(x2, r, log_inv_delta)
            best = min(best, f2)
    return max(best, 0.0)


def rho_to_eps_delta(rho: float, delta: float) -> tuple[float, float]:
    """``(ε, δ)`` such that ρ-zCDP implies (ε, δ)-DP: the least of the three bounds above."""
    eps = min(
        epsilon_bs16(rho, delta), epsilon_cks20_cor13(rho, delta), epsilon_cks20_tight(rho, delta)
    )
    return eps, float(delta)


def eps_to_rho(epsilon: float, delta: float) -> float:
    """The largest ρ (to ~1e-14 relative) whose conversion at ``delta`` gives at most ``epsilon``.

    Bisection on the monotone map ρ ↦ ε(ρ, δ) of :func:`rho_to_eps_delta`; the returned value
    always satisfies ``rho_to_eps_delta(rho, delta)[0] <= epsilon``.
    """
    eps = _check_real("epsilon", epsilon, positive=True)
    d = _check_delta(delta)
    lo, hi = 0.0, eps  # ε(ρ) ≥ ρ, so ρ ≤ ε
    while hi - lo > 1e-14 * hi:
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if rho_to_eps_delta(mid, d)[0] <= eps:
            lo = mid
        else:
            hi = mid
    return lo


# -- budgets ----------------------------------------------------------------------------------


def _exact(name: str, value: float | Fraction) -> Fraction:
    """The value as a rational; a float is read at its shortest decimal form (0.1 → 1/10).

    So ten charges of 0.1 exhaust a cap of 1.0 exactly, instead of failing by 1 ulp.
    """
    _check_real(name, value, positive=False)
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


class PrivacyBudget:
    """One dataset's zCDP budget: a cap on ρ and the ρ spent so far (exact rational sums).

    Refusals raise :class:`BudgetExceeded` and leave the budget unchanged. Not thread-safe on
    its own; :class:`PrivacyAccountant` serialises access.
    """

    __slots__ = ("_cap", "_spent", "dataset")

    def __init__(self, dataset: str, cap: float | Fraction, spent: float | Fraction = 0.0) -> None:
        if not isinstance(dataset, str) or not dataset:
            raise ValueError("dataset must be a non-empty string")
        self.dataset = dataset
        self._cap = _exact("cap", cap)
        self._spent = _exact("spent", spent)
        if self._spent > self._cap:
            raise ValueError(f"spent ({float(spent):.6g}) exceeds cap ({float(cap):.6g})")

    @property
    def cap(self) -> float:
        return float(self._cap)

    @property
    def spent(self) -> float:
        return float(self._spent)

    @property
    def remaining(self) -> float:
        return float(self._cap - self._spent)

    def can_spend(self, rho: float | Fraction) -> bool:
        return self._spent + _exact("rho", rho) <= self._cap

    def spend(self, rho: float | Fraction) -> None:
        """Record ``rho`` as spent, or raise :class:`BudgetExceeded` and change nothing."""
        r = _exact("rho", rho)
        if self._spent + r > self._cap:
            raise BudgetExceeded(
                f"dataset {self.dataset!r}: requested rho={float(r):.6g} but only "
                f"{self.remaining:.6g} of {self.cap:.6g} remains"
            )
        self._spent += r

    def __repr__(self) -> str:
        return f"PrivacyBudget({self.dataset!r}, cap={self.cap!r}, spent={self.spent!r})"


class PrivacyAccountant:
    """Budgets per dataset id, with an all-or-nothing charge over several datasets."""

    def __init__(self, caps: Mapping[str, float | Fraction] | None = None) -> None:
        self._budgets: dict[str, PrivacyBudget] = {}
        self._lock = threading.Lock()
        for dataset, cap in (caps or {}).items():
            self.add_dataset(dataset, cap)

    def add_dataset(
        self, dataset: str, cap: float | Fraction, spent: float | Fraction = 0.0
    ) -> PrivacyBudget:
        with self._lock:
            if dataset in self._budgets:
                raise ValueError(f"dataset {dataset!r} already has a budget")
            budget = PrivacyBudget(dataset, cap, spent)
            self._budgets[dataset] = budget
            return budget

    def budget(self, dataset: str) -> PrivacyBudget:
        try:
            return self._budgets[dataset]
        except KeyError:
            raise PolicyViolation(f"no privacy budget is registered for {dataset!r}") from None

    def remaining(self, dataset: str) -> float:
        return self.budget(dataset).remaining

    def __contains__(self, dataset: object) -> bool:
        return dataset in self._budgets

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._budgets))

    def _refusals(self, costs: Mapping[str, float | Fraction]) -> list[str]:
        out = []
        for dataset, rho in costs.items():
            budget = self.budget(dataset)
            if not budget.can_spend(rho):
                out.append(
                    f"dataset {dataset!r}: requested rho={float(rho):.6g} but only "
                    f"{budget.remaining:.6g} of {budget.cap:.6g} remains"
                )
        return out

    def can_charge(self, costs: Mapping[str, float | Fraction]) -> bool:
        with self._lock:
            return not self._refusals(costs)

    def charge(self, costs: Mapping[str, float | Fraction]) -> None:
        """Spend ``costs[d]`` on every dataset ``d``, or raise and spend nothing at all."""
        with self._lock:
            refusals = self._refusals(costs)  # validates every dataset and every ρ first
            if refusals:
                raise BudgetExceeded("; ".join(refusals))
            for dataset, rho in costs.items():
                self._budgets[dataset].spend(rho)
