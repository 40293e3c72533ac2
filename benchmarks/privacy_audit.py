"""Empirical privacy audit (issue 17): the released noise against its claim, and ε measured.

Per released mechanism (count, sum, histogram, and the sufficient statistics of a linear
regression), from a real :class:`~tessera.protocol.query.QueryTicket`'s ``prepare()``:

* **Scale test.** Each of the ``m = n − 2t + 2`` honest nodes draws its noise vector as a
  computing node does (``[p.draw(sampler) for p in prepared.noise]``, the CKS20 sampler on a
  seeded source); their sum is the aggregate noise. Every coordinate is mapped through the
  claimed distribution N_Z(0, m·σ_node²) by a randomized probability integral transform,
  exactly U(0, 1) when the claim holds, and the pooled values are tested for uniformity
  (Kolmogorov–Smirnov). The same test is run with the σ fed to the sampler scaled by 0.7 and
  by 1.3: it must pass at 1.0 and reject both (as Tumult Core's sampler tests do).
* **ε on neighbours** (DP-Sniper, Bichsel et al. 2021). The release ``(v + noise)/scale`` of
  every term, on D and on D′ = D plus one row at the corner of the bounds (every term moves by
  its sensitivity; for the histogram the row lands in the first bin). A logistic regression
  trained on samples of both gives a score; the threshold set {score ≥ c} maximising the
  selection samples' lower bound is chosen; fresh samples give the point estimate
  ln((P̂_D′(S) − δ)/P̂_D(S)) and its 95% Clopper–Pearson lower bound, both directions.

``--json`` prints ``{mechanism: {claimed_eps, measured_eps, lower_bound, p_true, p_low,
p_high}}`` (committee n = 3, t = 2; the scale p-values are the smaller of the two committees'
for ``p_true`` and the larger for ``p_low``/``p_high``); ``--quick`` uses fewer samples and
leaves out the table's OpenDP rows (the same scale test on ``OpenDPSampler``, unseeded).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import optimize, stats
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tessera.analytics.distribution import Histogram, equal_edges
from tessera.analytics.local import ColumnBounds
from tessera.analytics.moments import Count, Sum
from tessera.analytics.regression import LinearRegression
from tessera.analytics.statistic import Statistic
from tessera.crypto.group import G
from tessera.crypto.rng import SeededRng
from tessera.dp import ExactSampler, NoiseSampler, OpenDPSampler, eps_to_rho, rho_to_eps_delta
from tessera.protocol.query import Prepared, QueryTicket

DELTA = 1e-6
EPSILON = 1.0
RHO = float(eps_to_rho(EPSILON, DELTA))
COMMITTEES = ((3, 2), (6, 3))
SCALES = (Fraction(7, 10), Fraction(1), Fraction(13, 10))
BOUNDS = {"age": ColumnBounds(18, 90), "bmi": ColumnBounds(15, 45), "sbp": ColumnBounds(90, 200)}
MECHANISMS: dict[str, tuple[Statistic, ...]] = {
    "count": (Count(),),
    "sum": (Sum("age"),),
    "histogram": (Histogram("age", equal_edges(18, 90, 6)),),
    "regression": (LinearRegression("sbp", ("age", "bmi")),),
}
ROWS = 120  # D: 120 rows at the columns' centres (the noise does not depend on D)
ALPHA = 0.05  # the ε lower bound is a 95% bound: α/4 per binomial, 2 per direction


def ticket(mechanism: str, n: int, t: int) -> QueryTicket:
    """The ticket an analyst would submit for ``mechanism`` at ε = 1, δ = 1e−6."""
    return QueryTicket(
        table="patients",
        statistics=MECHANISMS[mechanism],
        where=None,
        rho=RHO,
        delta=DELTA,
        analyst_key=G * 7,
        bounds=BOUNDS,
        max_rows=1000,
        n=n,
        t=t,
        committee=1,
        providers=(("p1", "0x" + "22" * 20), ("p2", "0x" + "33" * 20)),
        nonce=bytes(range(32)),
        analyst="0x" + "11" * 20,
    )


def claimed_epsilon(tk: QueryTicket) -> float:
    """ε at the ticket's δ of the ρ the query is charged (what ``PrivacyCost`` reports)."""
    assert tk.rho is not None
    return rho_to_eps_delta(tk.rho, tk.delta)[0]


class ScaledSampler:
    """A :class:`NoiseSampler` whose σ is ``factor`` times what it is asked for."""

    def __init__(self, inner: NoiseSampler, factor: Fraction) -> None:
        self._inner, self._f2 = inner, factor * factor

    def discrete_gaussian(self, sigma2: Fraction, count: int) -> list[int]:
        return self._inner.discrete_gaussian(sigma2 * self._f2, count)

    def discrete_laplace(self, scale: Fraction, count: int) -> list[int]:  # pragma: no cover
        raise NotImplementedError


def honest_samplers(
    prepared: Prepared, seed: str, factor: Fraction = Fraction(1), *, opendp: bool = False
) -> list[Any]:
    """One sampler per honest node (m of them), σ scaled by ``factor``: CKS20 on a seeded
    source (as a seeded network draws), or OpenDP on the OS CSPRNG (a node's default)."""
    m = prepared.noise[0].honest_quorum
    if opendp:
        return [ScaledSampler(OpenDPSampler(), factor) for _ in range(m)]
    return [
        ScaledSampler(ExactSampler(SeededRng(f"audit/{seed}/node{i}")), factor) for i in range(m)
    ]


def aggregate_noise(prepared: Prepared, samplers: Sequence[Any], count: int) -> np.ndarray:
    """``count`` aggregate noise vectors: per node, its draw per term as a computing node
    makes it (``NoisePlan.draw``, redrawn beyond the range-proof bound), summed over nodes."""
    out = np.zeros((count, len(prepared.noise)), dtype=np.int64)
    for sampler in samplers:
        for row in range(count):
            out[row] += [p.draw(sampler) for p in prepared.noise]
    return out


# -- the scale test -------------------------------------------------------------------------


class DiscreteGaussian:
    """The CDF of N_Z(0, σ²): exact (a normalised table) for σ ≤ 10⁴; beyond, the midpoint
    rule Φ((x + ½)/σ), whose Euler–Maclaurin error is below 0.01/σ² ≤ 10⁻¹⁰."""

    EXACT_SIGMA = 1e4

    def __init__(self, sigma2: Fraction) -> None:
        self.sigma = math.sqrt(sigma2)
        self._table: np.ndarray | None = None
        if self.sigma <= self.EXACT_SIGMA:
            half = math.ceil(14 * self.sigma) + 1  # the mass beyond 14σ is below 10⁻⁴²
            xs = np.arange(-half, half + 1, dtype=np.float64)
            w = np.exp(-(xs * xs) / (2.0 * float(sigma2)))
            self._lo, self._table = -half, np.cumsum(w) / w.sum()

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """P(X ≤ x), elementwise for integer ``x``."""
        if self._table is None:
            return np.asarray(stats.norm.cdf((x + 0.5) / self.sigma))
        idx = np.asarray(x, dtype=np.int64) - self._lo
        inside = np.clip(idx, 0, len(self._table) - 1)
        return np.where(idx < 0, 0.0, np.where(idx >= len(self._table), 1.0, self._table[inside]))


def randomized_pit(x: np.ndarray, dist: DiscreteGaussian, rng: np.random.Generator) -> np.ndarray:
    """F(x − 1) + V·P(X = x), V ~ U(0, 1): exactly U(0, 1) if x ~ ``dist``."""
    lo, hi = dist.cdf(x - 1), dist.cdf(x)
    return np.asarray(lo + rng.random(len(x)) * (hi - lo))


def scale_test(
    prepared: Prepared, factor: Fraction, samples: int, seed: str, *, opendp: bool = False
) -> float:
    """KS p-value of ``samples`` aggregate noise values (all terms, drawn as whole vectors)
    against the claimed N_Z(0, m·σ_node²) per term, the sampler's σ scaled by ``factor``."""
    d = len(prepared.noise)
    samplers = honest_samplers(prepared, seed, factor, opendp=opendp)
    noise = aggregate_noise(prepared, samplers, -(-samples // d))
    rng = np.random.default_rng(list(f"pit/{seed}".encode()))
    claims = [DiscreteGaussian(p.sigma_sq) for p in prepared.noise]
    u = np.concatenate([randomized_pit(noise[:, j], c, rng) for j, c in enumerate(claims)])
    return float(stats.kstest(u, "uniform").pvalue)


# -- ε on neighbouring datasets -------------------------------------------------------------


def neighbours(mechanism: str, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Exact totals of D (``ROWS`` rows at the centres) and of D′ = D plus one row at the
    corner of the bounds, which moves every term by its sensitivity (the histogram's row
    lands in its first bin and moves that bin only)."""
    terms = prepared.plan.terms
    counts = [t.name.startswith("n") for t in terms]
    if mechanism == "histogram":
        v_d = np.array([ROWS if i == len(terms) // 2 else 0 for i in range(len(terms))])
        return v_d, v_d + np.array([1] + [0] * (len(terms) - 1))
    for t in terms:
        assert t.row_hi == t.sensitivity, f"{t.name}: the corner row does not reach it"
    v_d = np.array([ROWS if c else 0 for c in counts], dtype=np.int64)
    return v_d, v_d + np.array([t.row_hi for t in terms], dtype=np.int64)


def releases(
    prepared: Prepared, value: np.ndarray, count: int, seed: str, factor: Fraction
) -> np.ndarray:
    """``count`` releases of exact totals ``value``: value + aggregate noise, decoded."""
    scale = np.array([t.scale for t in prepared.plan.terms], dtype=np.float64)
    noise = aggregate_noise(prepared, honest_samplers(prepared, seed, factor), count)
    return np.asarray((value + noise) / scale)


def _cp_low(k: int, n: int, a: float) -> float:
    return 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))


def _cp_high(k: int, n: int, a: float) -> float:
    return 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))


def _eps(p_a: float, p_b: float, delta: float) -> float:
    if p_a - delta <= 0:
        return -math.inf
    return math.inf if p_b <= 0 else math.log((p_a - delta) / p_b)


def _lower(k_a: int, k_b: int, n: int, delta: float) -> float:
    return _eps(_cp_low(k_a, n, ALPHA / 4), _cp_high(k_b, n, ALPHA / 4), delta)


@dataclass(frozen=True, slots=True)
class EpsilonEstimate:
    point: float  # ln((P̂_A(S) − δ)/P̂_B(S)) on the estimation samples
    lower: float  # its 95% Clopper–Pearson lower bound
    direction: str  # "D'|D" (A = D′) or "D|D'"
    hits: tuple[int, int]  # samples of A and of B in S


def estimate_epsilon(
    mechanism: str,
    prepared: Prepared,
    *,
    delta: float,
    train: int,
    select: int,
    estimate: int,
    seed: str,
    factor: Fraction = Fraction(1),
) -> EpsilonEstimate:
    """DP-Sniper on ``prepared``'s release on neighbours: the best threshold attack."""
    v_d, v_d2 = neighbours(mechanism, prepared)

    def draw(phase: str, value: np.ndarray, count: int) -> np.ndarray:
        return releases(prepared, value, count, f"{seed}/{phase}", factor)

    x0, x1 = draw("train/D", v_d, train), draw("train/D'", v_d2, train)
    clf = make_pipeline(StandardScaler(), LogisticRegression())
    clf.fit(np.vstack([x0, x1]), np.r_[np.zeros(train), np.ones(train)])
    datasets = (("D", v_d), ("D'", v_d2))
    sel = [clf.decision_function(draw(f"select/{w}", v, select)) for w, v in datasets]
    est = [clf.decision_function(draw(f"estimate/{w}", v, estimate)) for w, v in datasets]
    best: EpsilonEstimate | None = None
    for direction, sign, a, b in (("D'|D", 1.0, 1, 0), ("D|D'", -1.0, 0, 1)):
        s_a, s_b = sign * sel[a], sign * sel[b]
        ranked = np.sort(s_a)[::-1]
        ks = np.unique(np.geomspace(10, select // 2, 60).astype(int))
        c = max(
            (ranked[k - 1] for k in ks),
            key=lambda c: _lower(int((s_a >= c).sum()), int((s_b >= c).sum()), select, delta),
        )
        e_a, e_b = int((sign * est[a] >= c).sum()), int((sign * est[b] >= c).sum())
        found = EpsilonEstimate(
            _eps(e_a / estimate, e_b / estimate, delta),
            _lower(e_a, e_b, estimate, delta),
            direction,
            (e_a, e_b),
        )
        if best is None or found.lower > best.lower:
            best = found
    assert best is not None
    return best


def analytic_epsilon(mechanism: str, prepared: Prepared, delta: float) -> float:
    """The exact ε at ``delta`` of the idealised release (a continuous Gaussian per term,
    of the claimed variance): the Gaussian privacy profile at μ = ‖Δ/σ‖₂ (Balle–Wang 2018,
    Thm. 8), what an optimal attack with unlimited samples would find."""
    v_d, v_d2 = neighbours(mechanism, prepared)
    mu = math.sqrt(
        sum(
            float(x) ** 2 / float(p.sigma_sq)
            for x, p in zip(v_d2 - v_d, prepared.noise, strict=True)
        )
    )

    def gap(e: float) -> float:
        return (
            float(stats.norm.cdf(-e / mu + mu / 2) - math.exp(e) * stats.norm.cdf(-e / mu - mu / 2))
            - delta
        )

    return float(optimize.brentq(gap, 0.0, 100.0))


# -- the report -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    scale: int
    train: int
    select: int
    estimate: int
    opendp: bool  # the scale test on OpenDP's sampler too (unseeded)


QUICK = Sizes(scale=800, train=200, select=1_500, estimate=3_000, opendp=False)
FULL = Sizes(scale=3_000, train=2_000, select=15_000, estimate=60_000, opendp=True)


def audit(mechanism: str, sizes: Sizes) -> dict[str, Any]:
    """Scale p-values for both committees and ε measured for n = 3, t = 2."""
    pvals: dict[str, dict[str, float]] = {}
    seeded = [f"{n},{t}" for n, t in COMMITTEES]
    for n, t in COMMITTEES:
        prepared = ticket(mechanism, n, t).prepare()
        pvals[f"{n},{t}"] = {
            key: scale_test(prepared, f, sizes.scale, f"{mechanism}/{n},{t}/{key}")
            for key, f in zip(("p_low", "p_true", "p_high"), SCALES, strict=True)
        }
    tk = ticket(mechanism, *COMMITTEES[0])
    if sizes.opendp:
        pvals["3,2 OpenDP"] = {  # unseeded: OpenDP draws from the OS
            key: scale_test(tk.prepare(), f, sizes.scale, "", opendp=True)
            for key, f in zip(("p_low", "p_true", "p_high"), SCALES, strict=True)
        }
    e = estimate_epsilon(
        mechanism,
        tk.prepare(),
        delta=tk.delta,
        train=sizes.train,
        select=sizes.select,
        estimate=sizes.estimate,
        seed=f"eps/{mechanism}",
    )
    return {
        "claimed_eps": claimed_epsilon(tk),
        "analytic_eps": analytic_epsilon(mechanism, tk.prepare(), tk.delta),
        "measured_eps": e.point,
        "lower_bound": e.lower,
        "p_true": min(p["p_true"] for c, p in pvals.items() if c in seeded),
        "p_low": max(p["p_low"] for c, p in pvals.items() if c in seeded),
        "p_high": max(p["p_high"] for c, p in pvals.items() if c in seeded),
        "by_committee": pvals,
        "direction": e.direction,
        "hits": list(e.hits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    report: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for mechanism in MECHANISMS:
        start = time.perf_counter()
        report[mechanism] = audit(mechanism, sizes)
        seconds[mechanism] = time.perf_counter() - start
    if args.json:
        keys = ("claimed_eps", "measured_eps", "lower_bound", "p_true", "p_low", "p_high")
        print(json.dumps({m: {k: r[k] for k in keys} for m, r in report.items()}))
        return
    print(
        f"samples: scale {sizes.scale}, ε: train {sizes.train}, select {sizes.select}, "
        f"estimate {sizes.estimate} per dataset; ε at δ = {DELTA:g}, n = 3, t = 2"
    )
    print(
        f"{'mechanism':<11} {'claimed ε':>9} {'exact ε':>8} {'measured ε':>10} {'95% lower':>9}"
        "   committee         p(σ×0.7)  p(σ×1.0)  p(σ×1.3)   seconds"
    )
    for m, r in report.items():
        eps = (r["claimed_eps"], r["analytic_eps"], r["measured_eps"], r["lower_bound"])
        left = f"{m:<11} {eps[0]:>9.3f} {eps[1]:>8.3f} {eps[2]:>10.3f} {eps[3]:>9.3f}"
        for i, (c, p) in enumerate(r["by_committee"].items()):
            secs = f"{seconds[m]:>9.1f}" if i == 0 else ""
            print(
                f"{left if i == 0 else '':<51}   n,t = {c:<11} {p['p_low']:>9.2e} "
                f"{p['p_true']:>9.3f} {p['p_high']:>9.2e} {secs}"
            )


if __name__ == "__main__":
    main()
