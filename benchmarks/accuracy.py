"""Accuracy: exact mode against DuckDB / numpy / statsmodels, and the noise against a central one.

* ``exact``: per statistic, the largest relative error over scikit-learn's bundled tables
  (diabetes, breast cancer, wine, iris; each split unevenly over three providers, bounds
  the columns' min and max rounded outwards, precision chosen per query), the providers'
  DuckDB evaluation with the ticket's precision and the release's decoding (the path an
  exact query takes, without the encryption, which is exact); the reference is DuckDB
  (moments), numpy (correlation, cosine, quantiles) and statsmodels (regression).
* ``dp_ratio``: per statistic, Tessera's mean absolute error under ε = 1 (every node's
  calibrated CKS20 noise, as a seeded network draws it, summed over a committee of 3 with
  threshold 2) divided by that of a *central* discrete Gaussian at the same ρ drawn with
  OpenDP (``make_gaussian`` on each term, the same sensitivity and per-term budget),
  measured in the same run. Above 1 is the price of distributing the noise (the honest
  draws alone must meet ρ).

``--json`` prints ``{"exact": {stat: max_rel_err}, "dp_ratio": {stat: ratio}}``;
``--quick`` runs one table and fewer noise draws.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import statsmodels.api as sm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from tessera.analytics.distribution import Histogram, Quantile, equal_edges
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.analytics.moments import Correlation, CosineSimilarity, Mean, Sum, Variance
from tessera.analytics.passes import run_in_passes
from tessera.analytics.precision import choose_precision, resolve
from tessera.analytics.regression import LinearRegression, LogisticRegression
from tessera.analytics.release import QueryResult, released
from tessera.analytics.statistic import Statistic
from tessera.crypto.rng import SeededRng
from tessera.dp import ExactSampler, eps_to_rho
from tessera.protocol.aggregation import AggregationRecord, Verdict
from tessera.protocol.query import noise_plans, plan_of

MAX_ROWS = 100_000
N, T, DELTA, EPS = 3, 2, 1e-6, 1.0


def tables(quick: bool) -> dict[str, pd.DataFrame]:
    out = {"diabetes": load_diabetes(as_frame=True, scaled=False).frame}
    if not quick:
        for name, load in (
            ("breast_cancer", load_breast_cancer),
            ("wine", load_wine),
            ("iris", load_iris),
        ):
            f = load(as_frame=True).frame
            f.columns = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in f.columns]
            out[name] = f
    return out


#: each table's binary outcome for the logistic regression
BINARY = {
    "diabetes": lambda f: (f["target"] > f["target"].median()).astype(int),
    "breast_cancer": lambda f: f["target"],
    "wine": lambda f: (f["target"] == 0).astype(int),
    "iris": lambda f: (f["target"] == 1).astype(int),
}


def bounds_of(frame: pd.DataFrame) -> dict[str, ColumnBounds]:
    return {
        c: ColumnBounds(float(math.floor(frame[c].min())), float(math.ceil(frame[c].max())))
        for c in frame
    }


def _release(
    stats: Sequence[Statistic],
    plan: Any,
    totals: list[int],
    bounds: Any,
    sd: list[float],
    rho: float | None,
) -> QueryResult:
    return released(
        b"\x00", stats, plan, totals, bounds, sd, rho, DELTA, Verdict(True, 0, ()),
        AggregationRecord(None, None, {}, 0),  # type: ignore[arg-type]
        {}, providers=[], excluded={}, seconds={}, receipt=None,
    )  # fmt: skip


def providers_totals(parts: list[pd.DataFrame], plan: Any, bounds: Any) -> list[int]:
    totals = [0] * len(plan.terms)
    for p in parts:
        local = LocalDatabase({"t": p}).evaluate(plan, "t", bounds)
        totals = [a + b for a, b in zip(totals, local.values, strict=True)]
    return totals


def exact_errors(name: str, frame: pd.DataFrame) -> dict[str, float]:
    label = BINARY[name](frame) if name in BINARY else None
    cols = [c for c in frame.columns if frame[c].nunique() > 2 and c != "target"][:6]
    y, xs = cols[0], cols[1:]
    frame = frame[cols]
    bounds = bounds_of(frame)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    cuts = [0, len(frame) // 7, len(frame) // 2, len(frame)]
    parts = [shuffled.iloc[a:b] for a, b in itertools.pairwise(cuts)]

    def run_once(stats: Sequence[Statistic], rho: float | None) -> QueryResult:
        plan = plan_of(stats, resolve(bounds, choose_precision(stats, bounds, MAX_ROWS, False)))
        return _release(
            stats,
            plan,
            providers_totals(list(parts), plan, bounds),
            bounds,
            [0.0] * len(plan.terms),
            None,
        )

    stats: list[Statistic] = [
        *(s(c) for c in cols for s in (Mean, Variance, Sum)),
        Quantile(cols[1], 0.5),
        Correlation((xs[0], xs[1])),
        CosineSimilarity(xs[0], xs[1]),
        LinearRegression(y, tuple(xs)),
    ]
    res = run_in_passes(run_once, stats, bounds, None)
    con = duckdb.connect()
    con.register("pooled", frame)
    err: dict[str, float] = {}

    def note(stat: str, got: float, want: float) -> None:
        err[stat] = max(err.get(stat, 0.0), abs(got - want) / abs(want))

    for c in cols:
        avg, var, total = con.execute(
            f'SELECT AVG("{c}"), VAR_SAMP("{c}"), SUM("{c}") FROM pooled'
        ).fetchone()  # type: ignore[misc]
        note("mean", res[f"mean({c})"], avg)
        note("variance", res[f"variance({c})"], var)
        note("sum", res[f"sum({c})"], total)
    span = bounds[cols[1]].hi - bounds[cols[1]].lo
    err["median_of_range"] = (
        abs(res[f"median({cols[1]})"] - float(np.median(frame[cols[1]]))) / span
    )
    note(
        "correlation",
        res[f"correlation({xs[0]}, {xs[1]})"],
        float(np.corrcoef(frame[xs[0]], frame[xs[1]])[0, 1]),
    )
    a, b = frame[xs[0]].to_numpy(), frame[xs[1]].to_numpy()
    note(
        "cosine_similarity",
        res[f"cosine_similarity({xs[0]}, {xs[1]})"],
        float(a @ b / math.sqrt((a @ a) * (b @ b))),
    )
    model = res[f"linear_regression({y} ~ {' + '.join(xs)})"]
    ols = sm.OLS(frame[y], sm.add_constant(frame[xs])).fit().params.to_numpy()
    for got, want in zip([model.intercept_, *model.coef_], ols, strict=True):
        note("regression", got, want)
    if label is not None:  # logistic regression (Newton passes) against scikit-learn's fit
        from sklearn.linear_model import LogisticRegression as SkLogistic

        frame = frame.assign(label=label)
        bounds["label"] = ColumnBounds(0.0, 1.0)
        shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
        parts = [shuffled.iloc[a:b] for a, b in itertools.pairwise(cuts)]
        fit = run_in_passes(run_once, [LogisticRegression("label", tuple(xs), 1.0)], bounds, None)
        logit = fit.value
        sk = SkLogistic(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000)
        sk.fit(frame[xs], frame["label"])
        want_w = [*sk.intercept_, *sk.coef_[0]]
        for got, want in zip([*logit.intercept_, *logit.coef_[0]], want_w, strict=True):
            note("logistic", got, want)
    return err


def dp_ratio(frame: pd.DataFrame, draws: int) -> dict[str, float]:
    """Tessera's distributed noise against OpenDP's central discrete Gaussian at the same ρ."""
    from opendp.domains import atom_domain, vector_domain
    from opendp.measurements import make_gaussian
    from opendp.metrics import l2_distance
    from opendp.mod import enable_features

    enable_features("contrib")
    cols = ["bmi", "bp", "s5"]
    bounds = bounds_of(frame[cols])
    rho = float(eps_to_rho(EPS, DELTA))
    out = {}
    dp_stats: list[tuple[str, Statistic]] = [
        ("mean", Mean("bmi")),
        ("variance", Variance("bp")),
        ("correlation", Correlation(("bmi", "bp"))),
        ("sum", Sum("s5")),
        ("histogram", Histogram("bmi", equal_edges(18.0, 43.0, 10))),
        ("median", Quantile("bmi", 0.5, bins=64)),
    ]
    for key, stat in dp_stats:
        b = resolve(bounds, choose_precision([stat], bounds, MAX_ROWS, True))
        plan = plan_of([stat], b)
        exact = providers_totals([frame], plan, bounds)
        noise = noise_plans(plan, N, T, rho, DELTA)
        zero = [0.0] * len(plan.terms)
        truth = _release([stat], plan, exact, bounds, zero, None).values[stat.label]
        per_term = rho / plan.row_reach()  # the split the engine makes (noise_plans)
        central = []
        for t in plan.terms:  # OpenDP's discrete Gaussian, one term, sensitivity t.sensitivity
            scale = t.sensitivity / math.sqrt(2 * per_term)
            central.append(
                make_gaussian(vector_domain(atom_domain(T="i64")), l2_distance(T="i64"), scale)
            )
        ours, theirs = [], []
        for run in range(draws):
            noisy = list(exact)
            for node in range(N):
                sampler = ExactSampler(SeededRng(f"accuracy/{stat.label}/{run}/{node}"))
                noisy = [v + p.draw(sampler) for v, p in zip(noisy, noise, strict=True)]
            got = _release([stat], plan, noisy, bounds, zero, None).values[stat.label]
            ours.append(float(np.mean(np.abs(np.asarray(got) - np.asarray(truth)))))
            cen = [int(m([v])[0]) for m, v in zip(central, exact, strict=True)]
            got = _release([stat], plan, cen, bounds, zero, None).values[stat.label]
            theirs.append(float(np.mean(np.abs(np.asarray(got) - np.asarray(truth)))))
        out[key] = float(np.mean(ours) / np.mean(theirs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    frames = tables(args.quick)
    per_table = {name: exact_errors(name, f) for name, f in frames.items()}
    exact: dict[str, float] = {}
    for errs in per_table.values():
        for k, v in errs.items():
            exact[k] = max(exact.get(k, 0.0), v)
    ratio = dp_ratio(frames["diabetes"], 20 if args.quick else 200)
    if args.json:
        print(json.dumps({"exact": exact, "dp_ratio": ratio}, sort_keys=True))
        return
    print(f"{'statistic':<20}" + "".join(f"{n:>16}" for n in per_table))
    for stat in exact:
        print(
            f"{stat:<20}" + "".join(f"{per_table[n].get(stat, math.nan):>16.2e}" for n in per_table)
        )
    print("\nunder DP (eps=1): mean |error| Tessera / central OpenDP discrete Gaussian, same rho")
    for k, v in ratio.items():
        print(f"{k:<20}{v:>10.3f}")


if __name__ == "__main__":
    main()
