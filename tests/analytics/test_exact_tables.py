"""Exact mode on real tables (scikit-learn's bundled ones) against numpy, DuckDB, statsmodels and
scikit-learn, split unevenly over providers.

Each pass runs the providers' own evaluation (``LocalDatabase.evaluate``, DuckDB) on its
part of the table with the precision the ticket would fix (``QueryTicket.prepare`` does
exactly this: ``choose_precision`` then ``plan_of``), adds the providers' totals as the
decryption of the aggregate would, and decodes with the release
(:func:`~tessera.analytics.release.released`); the pass driver
(:func:`~tessera.analytics.passes.run_in_passes`) chains the passes. The same queries
through the whole engine (encryption, proofs, ledger) are in ``tests/engine/test_exact.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.linear_model import LinearRegression as SkLinear

from tessera.analytics.distribution import Max, Min, Quantile
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.analytics.models import LinearModel
from tessera.analytics.moments import (
    Correlation,
    CosineSimilarity,
    Covariance,
    Mean,
    Std,
    Sum,
    Variance,
)
from tessera.analytics.passes import run_in_passes
from tessera.analytics.precision import choose_precision, resolve
from tessera.analytics.regression import LinearRegression
from tessera.analytics.release import QueryResult, released
from tessera.analytics.statistic import Statistic
from tessera.protocol.aggregation import AggregationRecord, Verdict
from tessera.protocol.query import plan_of

MAX_ROWS = 100_000


def table(name: str) -> pd.DataFrame:
    if name == "diabetes":
        return load_diabetes(as_frame=True, scaled=False).frame
    loader = {"breast_cancer": load_breast_cancer, "wine": load_wine, "iris": load_iris}[name]
    frame = loader(as_frame=True).frame
    frame.columns = [c.replace(" ", "_").replace("(", "").replace(")", "") for c in frame.columns]
    return frame


def outward_bounds(frame: pd.DataFrame) -> dict[str, ColumnBounds]:
    """Each column's min and max rounded outwards, as a new user sets them."""
    return {
        c: ColumnBounds(float(math.floor(frame[c].min())), float(math.ceil(frame[c].max())))
        for c in frame.columns
    }


def split(frame: pd.DataFrame, weights: Sequence[float], seed: int) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    cuts = (np.cumsum(weights)[:-1] / sum(weights) * len(frame)).astype(int)
    return [frame.iloc[part].reset_index(drop=True) for part in np.split(order, cuts)]


def exact_runner(parts: list[pd.DataFrame], bounds: dict[str, ColumnBounds]):  # type: ignore[no-untyped-def]
    dbs = [LocalDatabase({"t": p}) for p in parts]

    def run_once(stats: Sequence[Statistic], rho: float | None) -> QueryResult:
        assert rho is None
        plan = plan_of(stats, resolve(bounds, choose_precision(stats, bounds, MAX_ROWS, False)))
        totals = [0] * len(plan.terms)
        for db in dbs:
            local = db.evaluate(plan, "t", bounds)
            totals = [a + b for a, b in zip(totals, local.values, strict=True)]
        rec = AggregationRecord(None, None, {}, 0)  # type: ignore[arg-type]
        return released(
            b"\x00",
            stats,
            plan,
            totals,
            bounds,
            [0.0] * len(plan.terms),
            None,
            1e-6,
            Verdict(True, 0, ()),
            rec,
            {},
            providers=[],
            excluded={},
            seconds={},
            receipt=None,
        )

    def run(stats: Sequence[Statistic]) -> QueryResult:
        return run_in_passes(run_once, stats, bounds, None)

    return run


def rel(got: float, want: float) -> float:
    return abs(got - want) / max(abs(want), 1e-300)


TABLES = {
    "diabetes": ("target", [0.5, 0.2, 0.25, 0.05]),
    "breast_cancer": ("mean_radius", [0.1, 0.6, 0.3]),
    "wine": ("proline", [0.15, 0.35, 0.5]),
    "iris": ("petal_width_cm", [0.6, 0.1, 0.3]),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_moments_and_regression_match_duckdb_numpy_and_statsmodels(name: str) -> None:
    frame = table(name)
    y, weights = TABLES[name]
    cols = [c for c in frame.columns if c != y and frame[c].nunique() > 2][:10]
    bounds = outward_bounds(frame[[y, *cols]])
    run = exact_runner(split(frame[[y, *cols]], weights, seed=len(name)), bounds)
    pair = cols[:2]
    stats: list[Statistic] = [
        *(s(c) for c in cols for s in (Mean, Variance, Sum, Std)),
        Correlation(tuple(cols[:4])),
        Covariance(tuple(pair)),
        CosineSimilarity(*pair),
        LinearRegression(y, tuple(cols)),
    ]
    res = run(stats)
    con = duckdb.connect()
    con.register("pooled", frame)
    for c in cols:
        avg, var, total, sd = con.execute(
            f'SELECT AVG("{c}"), VAR_SAMP("{c}"), SUM("{c}"), STDDEV_SAMP("{c}") FROM pooled'
        ).fetchone()
        assert rel(res[f"mean({c})"], avg) <= 1e-6
        assert rel(res[f"variance({c})"], var) <= 1e-6
        assert rel(res[f"sum({c})"], total) <= 1e-6
        assert rel(res[f"std({c})"], sd) <= 1e-6
        # what is reported as the rounding's reach covers the error actually made
        assert abs(res[f"mean({c})"] - avg) <= res.rounding[f"mean({c})"] + 1e-9 * abs(avg)
        assert res.precision[c] > 0
    want_corr = np.corrcoef(frame[cols[:4]].to_numpy().T)
    got_corr = np.array(res[f"correlation({', '.join(cols[:4])})"])
    assert np.max(np.abs(got_corr - want_corr) / np.abs(want_corr)) <= 1e-6
    assert (
        rel(res[f"covariance({', '.join(pair)})"], np.cov(frame[pair].to_numpy().T)[0, 1]) <= 1e-6
    )
    a, b = frame[pair[0]].to_numpy(), frame[pair[1]].to_numpy()
    cosine = a @ b / np.sqrt((a @ a) * (b @ b))
    assert rel(res[f"cosine_similarity({', '.join(pair)})"], cosine) <= 1e-6

    model = res[f"linear_regression({y} ~ {' + '.join(cols)})"]
    assert isinstance(model, LinearModel)
    ols = sm.OLS(frame[y], sm.add_constant(frame[cols])).fit()
    got = np.array([model.intercept_, *model.coef_])
    assert np.max(np.abs(got - ols.params.to_numpy()) / np.abs(ols.params.to_numpy())) <= 1e-4
    sk = SkLinear().fit(frame[cols], frame[y])
    assert np.max(np.abs(model.coef_ - sk.coef_) / np.abs(sk.coef_)) <= 1e-4
    assert model.score(frame[cols], frame[y]) == pytest.approx(
        sk.score(frame[cols], frame[y]), rel=1e-6
    )
    np.testing.assert_allclose(model.predict(frame[cols]), sk.predict(frame[cols]), rtol=1e-5)
    assert model.r2 == pytest.approx(ols.rsquared, rel=1e-6)


@pytest.mark.parametrize("name", list(TABLES))
def test_quantiles_min_max_within_a_thousandth_of_the_range(name: str) -> None:
    frame = table(name)
    weights = TABLES[name][1]
    cols = [c for c in frame.columns if frame[c].nunique() > 2][:4]
    bounds = outward_bounds(frame[cols])
    run = exact_runner(split(frame[cols], weights, seed=7), bounds)
    stats: list[Statistic] = []
    for c in cols:
        stats += [Quantile(c, 0.5), Quantile(c, 0.1), Quantile(c, 0.9), Min(c), Max(c)]
    res = run(stats)
    assert len(res.passes) == 2  # a coarse pass, then a fine one around each estimate
    for c in cols:
        span = bounds[c].hi - bounds[c].lo
        for qq, label in (
            (0.5, f"median({c})"),
            (0.1, f"quantile({c}, 0.1)"),
            (0.9, f"quantile({c}, 0.9)"),
        ):
            want = float(np.quantile(frame[c], qq))  # PERCENTILE_CONT
            assert abs(res[label] - want) <= 1e-3 * span
            assert abs(res[label] - want) <= res.rounding[label]
        assert abs(res[f"min({c})"] - frame[c].min()) <= 1e-3 * span
        assert abs(res[f"max({c})"] - frame[c].max()) <= 1e-3 * span


BINARY = {
    "breast_cancer": lambda f: f["target"],
    "wine": lambda f: (f["target"] == 0).astype(int),
    "iris": lambda f: (f["target"] == 1).astype(int),
    "diabetes": lambda f: (f["target"] > f["target"].median()).astype(int),
}


@pytest.mark.parametrize("name", list(BINARY))
def test_logistic_regression_matches_scikit_learn(name: str) -> None:
    """Newton's method through the passes reaches scikit-learn's penalised fit (its exact
    Newton solver, ``C = 1/ridge``): coefficients within 1e-4, the same predictions, and
    accuracy, precision, recall, F1 and AUC as scikit-learn's metrics give."""
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    from tessera.analytics.models import LogisticModel
    from tessera.analytics.regression import LogisticRegression

    frame = table(name)
    frame["label"] = BINARY[name](frame)
    cols = [c for c in frame.columns if c not in ("target", "label") and frame[c].nunique() > 2]
    cols = cols[:10]
    bounds = outward_bounds(frame[["label", *cols]])
    run = exact_runner(split(frame[["label", *cols]], TABLES[name][1], seed=3), bounds)
    res = run([LogisticRegression("label", tuple(cols), ridge=1.0)])
    assert len(res.passes) == 9  # the first estimate, then eight Newton steps
    model = res[f"logistic_regression(label ~ {' + '.join(cols)})"]
    assert isinstance(model, LogisticModel)
    sk = SkLogistic(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    sk.fit(frame[cols], frame["label"])
    got = np.concatenate([model.intercept_, model.coef_[0]])
    want = np.concatenate([sk.intercept_, sk.coef_[0]])
    assert np.max(np.abs(got - want) / np.abs(want)) <= 1e-4
    x, y = frame[cols], frame["label"]
    assert np.array_equal(model.predict(x), sk.predict(x))
    assert model.score(x, y) == sk.score(x, y)
    np.testing.assert_allclose(model.predict_proba(x), sk.predict_proba(x), atol=1e-6)
    metrics = model.evaluate(x, y)
    pred, proba = sk.predict(x), sk.predict_proba(x)[:, 1]
    assert metrics["precision"] == pytest.approx(precision_score(y, pred))
    assert metrics["recall"] == pytest.approx(recall_score(y, pred))
    assert metrics["f1"] == pytest.approx(f1_score(y, pred))
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, proba), abs=1e-9)
