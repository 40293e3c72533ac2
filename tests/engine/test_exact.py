"""Exact mode through the whole engine on real tables, against DuckDB, numpy, statsmodels and
scikit-learn on the pooled table.

The in-process network runs the deployed roles (providers' DuckDB evaluation and range
proofs, the committee's threshold ElGamal aggregation and key switch, the verifier's
checks, the ledger's trail and settlement) without sockets. Tables are scikit-learn's
bundled ones, split unevenly over providers, with bounds as a new user sets them: each
column's min and max rounded outwards, no precision named. The same statistics at the
release layer alone, on more tables, are in ``tests/analytics/test_exact_tables.py``.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression as SkLogistic

from tessera.analytics.models import LinearModel, LogisticModel
from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.node.local_network import DatasetPolicy, LocalNetwork

EXACT = DatasetPolicy(allow_exact=True, min_cohort=1)


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 16), max_abs=1 << 40)


def outward(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    return {c: (float(math.floor(frame[c].min())), float(math.ceil(frame[c].max()))) for c in frame}


def network(
    dlog: DiscreteLog,
    name: str,
    frame: pd.DataFrame,
    bounds: dict[str, object],
    weights: list[float],
) -> LocalNetwork:
    net = LocalNetwork(3, 2, seed=11, dlog=dlog)
    order = np.random.default_rng(5).permutation(len(frame))
    cuts = (np.cumsum(weights)[:-1] / sum(weights) * len(frame)).astype(int)
    for i, part in enumerate(np.split(order, cuts)):
        net.add_provider(
            f"p{i}",
            tables={name: frame.iloc[part].reset_index(drop=True)},
            bounds={name: bounds},
            policies={name: EXACT},
        )
    return net


@pytest.fixture(scope="module")
def diabetes(dlog: DiscreteLog) -> tuple[LocalNetwork, pd.DataFrame]:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    bounds: dict[str, object] = dict(outward(frame.drop(columns="sex")))
    bounds["sex"] = [1.0, 2.0]  # a categorical column: its public keys
    return network(dlog, "diabetes", frame, bounds, [0.5, 0.2, 0.25, 0.05]), frame


def rel(got: float, want: float) -> float:
    return abs(got - want) / max(abs(want), 1e-300)


def test_sql_moments_come_back_as_duckdb_gives_them(
    diabetes: tuple[LocalNetwork, pd.DataFrame],
) -> None:
    net, frame = diabetes
    query = (
        "SELECT COUNT(*) AS n, AVG(bmi) AS mean_bmi, VARIANCE(bmi) AS var_bmi, SUM(s5) AS s5, "
        "STDDEV(bp) AS sd_bp, AVG(target) AS mean_target FROM diabetes"
    )
    res = net.sql(query)
    assert res.verified
    con = duckdb.connect()
    con.register("pooled", frame)
    want = con.execute(query.replace("FROM diabetes", "FROM pooled")).df()
    got = res.to_pandas()
    # one column per select item, each with its interval in the two columns after it
    assert [c for c in got.columns if "_ci95_" not in c] == list(want.columns)
    for col in want.columns:
        assert rel(float(got[col].iloc[0]), float(want[col].iloc[0])) <= 1e-6, col
    assert all(bits > 0 for bits in res.precision.values())  # chosen, not integers


def test_sql_group_by_comes_back_one_row_per_group(
    diabetes: tuple[LocalNetwork, pd.DataFrame],
) -> None:
    net, frame = diabetes
    query = (
        "SELECT sex, COUNT(*) AS n, AVG(bmi) AS mean_bmi, VARIANCE(s1) AS var_s1 "
        "FROM diabetes GROUP BY sex ORDER BY sex"
    )
    res = net.sql(query)
    con = duckdb.connect()
    con.register("pooled", frame)
    want = con.execute(query.replace("FROM diabetes", "FROM pooled")).df()
    got = res.to_pandas()
    assert len(got) == len(want) == 2
    assert got["sex"].tolist() == want["sex"].tolist()
    assert got["n"].tolist() == want["n"].tolist()
    for col in ("mean_bmi", "var_s1"):
        for g, w in zip(got[col], want[col], strict=True):
            assert rel(float(g), float(w)) <= 1e-6, col


def test_linear_regression_and_median_match_statsmodels_and_numpy(
    diabetes: tuple[LocalNetwork, pd.DataFrame],
) -> None:
    net, frame = diabetes
    feats = ["age", "bmi", "bp", "s1", "s2", "s5"]  # ten features: tests/analytics
    res = net.linear_regression("diabetes", "target", feats)
    assert res.verified
    model = res.value
    assert isinstance(model, LinearModel)
    ols = sm.OLS(frame["target"], sm.add_constant(frame[feats])).fit()
    got = np.array([model.intercept_, *model.coef_])
    assert np.max(np.abs(got - ols.params.to_numpy()) / np.abs(ols.params.to_numpy())) <= 1e-4
    assert model.r2 == pytest.approx(ols.rsquared, rel=1e-6)
    se = np.array(list(model.std_errors.values()))
    assert np.max(np.abs(se - ols.bse.to_numpy()) / ols.bse.to_numpy()) <= 1e-4

    med = net.sql(
        "SELECT MEDIAN(bmi) AS m, PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY s5) FROM diabetes"
    )
    span = {c: frame[c].max() - frame[c].min() for c in ("bmi", "s5")}
    assert abs(med["m"] - float(np.median(frame["bmi"]))) <= 1e-3 * math.ceil(span["bmi"])
    q90 = med.values[next(k for k in med.values if "s5" in k)]
    assert abs(q90 - float(np.quantile(frame["s5"], 0.9))) <= 1e-3 * math.ceil(span["s5"] + 1)


def test_logistic_regression_reaches_scikit_learns_fit(dlog: DiscreteLog) -> None:
    data = load_breast_cancer(as_frame=True)
    feats = ["mean radius", "mean texture", "mean smoothness", "mean concavity"]
    frame = data.frame[[*feats, "target"]].rename(columns=lambda c: c.replace(" ", "_"))
    cols = [c.replace(" ", "_") for c in feats]
    net = network(dlog, "cancer", frame, dict(outward(frame)), [0.1, 0.6, 0.3])
    res = net.logistic_regression("cancer", "target", cols, ridge=1.0)
    assert res.verified
    assert len(res.passes) == 9  # the one-shot estimate, then eight Newton steps
    model = res.value
    assert isinstance(model, LogisticModel)
    sk = SkLogistic(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000)
    sk.fit(frame[cols], frame["target"])
    got = np.concatenate([model.intercept_, model.coef_[0]])
    want = np.concatenate([sk.intercept_, sk.coef_[0]])
    assert np.max(np.abs(got - want) / np.abs(want)) <= 1e-4
    assert model.score(frame[cols], frame["target"]) == sk.score(frame[cols], frame["target"])
