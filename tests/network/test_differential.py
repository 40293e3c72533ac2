"""Differential tests over real processes: a network on loopback against DuckDB / numpy /
statsmodels on the pooled table.

One network for the module (the chain, 3 computing nodes with threshold 2 after a live
DKG, a verifier, 4 providers, each its own process). The providers hold scikit-learn's
diabetes table (442 rows, 10 standardised features, an integer target) split unevenly,
as CSV files; ``sex`` is published as the categorical keys "F" / "M" (the negative
standardised value is called "F": the mapping is arbitrary, only the grouping matters).

Every numeric column is sent as fixed point: a provider rounds ``x · 2^b`` to the nearest
integer (``ROUND`` in its DuckDB), so a row's value is off by at most ``δ = 2^-(b+1)``.
Each comparison against the raw pooled table allows exactly the error that rounding can
cause (derived below, per statistic), and a second comparison against the same table
rounded to the same grid allows only float64 arithmetic: the engine's totals are exact
integers, so what remains is the decoding's floating point.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.datasets import load_diabetes

from tessera.analytics.release import QueryResult
from tessera.node.analyst import NetworkAnalyst
from tessera.node.launcher import Network, NetworkSpec, ProviderSpec, open_session

TABLE = "diabetes"
BITS = 20  # fraction bits of the standardised features (|x| < 0.2)
TARGET_BITS = 8  # the target holds integers 25..346: exact on any grid
DELTA = 2.0 ** -(BITS + 1)  # the most a feature's row moves when rounded to 2^-BITS
SIZES = (40, 210, 120, 72)  # uneven split of the 442 rows over 4 providers
FLOAT = 1e-9  # relative slack for float64 decoding (the totals themselves are exact)
POLICY = {"allow_exact": True, "min_cohort": 1, "budget_rho": 10.0, "max_rows": 1024}
FEATURES = ["bmi", "bp", "s5", "s1"]


def load() -> pd.DataFrame:
    df = load_diabetes(as_frame=True).frame
    df["sex"] = np.where(df.sex < 0, "F", "M")
    assert (df.target == df.target.round()).all()  # TARGET_BITS loses nothing
    return df.sample(frac=1.0, random_state=7).reset_index(drop=True)


def column_bounds(df: pd.DataFrame) -> dict[str, list[float | int | str]]:
    """Each column's min / max rounded outwards (no row is clipped), with its bits."""
    out: dict[str, list[float | int | str]] = {}
    for c in df.columns:
        if c == "sex":
            out[c] = ["F", "M"]
        elif c == "target":
            lo, hi = math.floor(df[c].min() / 10) * 10, math.ceil(df[c].max() / 10) * 10
            out[c] = [lo, hi, TARGET_BITS]
        else:
            lo, hi = math.floor(df[c].min() * 100) / 100, math.ceil(df[c].max() * 100) / 100
            out[c] = [lo, hi, BITS]
    return out


def quantised(df: pd.DataFrame) -> pd.DataFrame:
    """The table on the providers' fixed-point grid (no clipping: bounds hold every row)."""
    q = df.copy()
    for c in df.columns:
        if c not in ("sex", "target"):
            q[c] = np.round(df[c] * 2.0**BITS) / 2.0**BITS  # ties never occur in this data
    return q


@pytest.fixture(scope="module")
def pooled() -> pd.DataFrame:
    return load()


@pytest.fixture(scope="module")
def diabetes_network(
    tmp_path_factory: pytest.TempPathFactory, pooled: pd.DataFrame
) -> Iterator[Network]:
    base = tmp_path_factory.mktemp("differential")
    bounds = column_bounds(pooled)
    providers, start = [], 0
    assert sum(SIZES) == len(pooled)
    for i, n in enumerate(SIZES):
        path = base / f"clinic-{i}.csv"
        pooled.iloc[start : start + n].to_csv(path, index=False, float_format="%.17g")
        start += n
        table = {"source": str(path), "bounds": bounds, "policy": POLICY}
        providers.append(ProviderSpec(f"clinic-{i}", {TABLE: table}))
    spec = NetworkSpec(nodes=3, threshold=2, verifiers=1, providers=providers, kdf_iterations=2**10)
    net = Network(base / "network")
    try:
        net.up(spec)
        yield net
    finally:
        net.down()


@pytest.fixture(scope="module")
def analyst(diabetes_network: Network) -> Iterator[NetworkAnalyst]:
    client, transport = open_session(diabetes_network.dir)
    try:
        yield client
    finally:
        client.close()
        transport.close()


def duck(df: pd.DataFrame, sql: str) -> pd.DataFrame:
    con = duckdb.connect(":memory:")
    try:
        con.register(TABLE, df)
        return con.execute(sql).df()
    finally:
        con.close()


def settled(res: QueryResult) -> None:
    assert res.verified, res.verdict.failures
    assert res.ledger is not None and res.ledger.status == "passed"
    assert sorted(res.providers) == [f"clinic-{i}" for i in range(len(SIZES))]
    assert not res.excluded_providers


# --- fixed-point error bounds for a column of n rows each moved by at most δ -----------
def sum_tol(n: int, delta: float) -> float:
    return n * delta


def mean_tol(delta: float) -> float:
    return delta


def var_tol(n: int, sd: float, delta: float) -> float:
    """|s²(x+e) − s²(x)| ≤ (2‖x−x̄‖‖e−ē‖ + ‖e−ē‖²)/(n−1), with ‖e−ē‖ ≤ ‖e‖ ≤ √n·δ."""
    return (2 * sd * math.sqrt((n - 1) * n) * delta + n * delta**2) / (n - 1)


def std_tol(n: int, delta: float) -> float:
    """|s(x+e) − s(x)| ≤ ‖e−ē‖/√(n−1) ≤ √(n/(n−1))·δ (triangle inequality)."""
    return math.sqrt(n / (n - 1)) * delta


def test_moments_match_duckdb(analyst: NetworkAnalyst, pooled: pd.DataFrame) -> None:
    sql = (
        "SELECT COUNT(*), SUM(bmi), AVG(bmi), AVG(s5), VARIANCE(s5), STDDEV(bp), "
        "SUM(target), AVG(target), VARIANCE(target), STDDEV(target) FROM diabetes"
    )
    res = analyst.sql(sql)
    settled(res)
    ref = {
        "count(*)": "COUNT(*)",
        "sum(bmi)": "SUM(bmi)",
        "mean(bmi)": "AVG(bmi)",
        "mean(s5)": "AVG(s5)",
        "variance(s5)": "VAR_SAMP(s5)",
        "std(bp)": "STDDEV_SAMP(bp)",
        "sum(target)": "SUM(target)",
        "mean(target)": "AVG(target)",
        "variance(target)": "VAR_SAMP(target)",
        "std(target)": "STDDEV_SAMP(target)",
    }
    select = ", ".join(f'{e} AS "{k}"' for k, e in ref.items())
    raw = duck(pooled, f"SELECT {select} FROM diabetes").iloc[0]
    grid = duck(quantised(pooled), f"SELECT {select} FROM diabetes").iloc[0]
    n = len(pooled)
    assert res["count(*)"] == n
    tol = {
        "sum(bmi)": sum_tol(n, DELTA),
        "mean(bmi)": mean_tol(DELTA),
        "mean(s5)": mean_tol(DELTA),
        "variance(s5)": var_tol(n, float(pooled.s5.std()), DELTA),
        "std(bp)": std_tol(n, DELTA),
        # integers are exact in fixed point: only float64 rounding remains
        "sum(target)": 0.0,
        "mean(target)": 0.0,
        "variance(target)": 0.0,
        "std(target)": 0.0,
    }
    for label, bound in tol.items():
        got, want = res[label], float(raw[label])
        assert abs(got - want) <= bound + FLOAT * abs(want), (label, got, want, bound)
        # the same table on the providers' grid: only float64 arithmetic differs
        assert got == pytest.approx(float(grid[label]), rel=FLOAT, abs=1e-15), label


def test_where_filter_matches_duckdb(analyst: NetworkAnalyst, pooled: pd.DataFrame) -> None:
    where = "age >= 0.02 AND sex = 'M'"
    res = analyst.sql(f"SELECT COUNT(*), AVG(s5), STDDEV(target) FROM diabetes WHERE {where}")
    settled(res)
    want = duck(
        pooled,
        f"SELECT COUNT(*) AS n, AVG(s5) AS m, STDDEV_SAMP(target) AS s FROM diabetes WHERE {where}",
    ).iloc[0]
    n = int(want.n)
    assert 0 < n < len(pooled)
    assert res["count(*)"] == n  # the filter sees the raw values, as DuckDB does
    assert abs(res["mean(s5)"] - want.m) <= mean_tol(DELTA) + FLOAT * abs(want.m)
    assert res["std(target)"] == pytest.approx(want.s, rel=FLOAT)


def test_group_by_categorical_matches_duckdb(analyst: NetworkAnalyst, pooled: pd.DataFrame) -> None:
    res = analyst.sql(
        "SELECT sex, COUNT(*), AVG(target), AVG(bmi), VARIANCE(bp) "
        "FROM diabetes WHERE bmi > 0 GROUP BY sex"
    )
    settled(res)
    want = duck(
        pooled,
        "SELECT sex, COUNT(*) AS n, AVG(target) AS t, AVG(bmi) AS b, VAR_SAMP(bp) AS v, "
        "STDDEV_SAMP(bp) AS sd FROM diabetes WHERE bmi > 0 GROUP BY sex",
    ).set_index("sex")
    assert sorted(res["count(*) BY sex"]) == ["F", "M"] == sorted(want.index)
    for sex, row in want.iterrows():
        n = int(row.n)
        assert res["count(*) BY sex"][sex] == n
        assert res["mean(target) BY sex"][sex] == pytest.approx(row.t, rel=FLOAT)
        got_b = res["mean(bmi) BY sex"][sex]
        assert abs(got_b - row.b) <= mean_tol(DELTA) + FLOAT * abs(row.b), (sex, got_b, row.b)
        got_v = res["variance(bp) BY sex"][sex]
        bound = var_tol(n, float(row.sd), DELTA)
        assert abs(got_v - row.v) <= bound + FLOAT * row.v, (sex, got_v, row.v, bound)


def test_histogram_matches_numpy(analyst: NetworkAnalyst, pooled: pd.DataFrame) -> None:
    edges = [20, 60, 100, 140, 180, 220, 260, 300, 350]
    res = analyst.histogram(TABLE, "target", bins=edges)
    settled(res)
    want, _ = np.histogram(pooled.target, bins=edges)  # both bin [lo, hi); max < 350
    assert res.value == want.tolist()


def ols_perturbation_bound(x: np.ndarray, y: np.ndarray, delta: float) -> np.ndarray:
    """First-order bound on |β̂(X+E) − β̂(X)| for |E_ij| ≤ δ off the intercept column.

    β̂ = (XᵀX)⁻¹Xᵀy gives dβ = (XᵀX)⁻¹(Eᵀr − XᵀEβ) with r the residuals, so component
    by component |dβ| ≤ |(XᵀX)⁻¹|·δ·(Σ|r| on each feature + |X|ᵀ1·‖β_features‖₁).
    """
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = y - x @ beta
    feat = np.ones(x.shape[1])
    feat[0] = 0.0  # the intercept column is exact
    v = delta * (feat * np.abs(r).sum() + np.abs(x).sum(axis=0) * np.abs(beta[1:]).sum())
    return np.abs(np.linalg.inv(x.T @ x)) @ v


def test_linear_regression_matches_statsmodels(
    analyst: NetworkAnalyst, pooled: pd.DataFrame
) -> None:
    res = analyst.linear_regression(TABLE, y="target", x=FEATURES)
    settled(res)
    got = res.value
    names = ["intercept", *FEATURES]
    y = pooled.target.to_numpy(float)
    raw = sm.OLS(y, sm.add_constant(pooled[FEATURES].to_numpy(float))).fit()
    grid_x = sm.add_constant(quantised(pooled)[FEATURES].to_numpy(float))
    grid = sm.OLS(y, grid_x).fit()
    assert got["n"] == len(pooled)
    # against the raw table: the first-order effect of rounding, doubled for the O(δ²) rest
    bound = 2 * ols_perturbation_bound(grid_x, y, DELTA)
    for name, want, b in zip(names, raw.params, bound, strict=True):
        c = got["coefficients"][name]
        assert abs(c - want) <= b + FLOAT * abs(want), (name, c, want, b)
    # against the table on the providers' grid: the normal equations in float64
    for name, want in zip(names, grid.params, strict=True):
        assert got["coefficients"][name] == pytest.approx(want, rel=1e-6, abs=1e-6), name
    for name, want in zip(names, grid.bse, strict=True):
        assert got["std_errors"][name] == pytest.approx(want, rel=1e-5), name
    assert got["r2"] == pytest.approx(grid.rsquared, rel=1e-6)
    assert got["r2"] == pytest.approx(raw.rsquared, abs=1e-6)


def test_dp_query_lies_within_its_reported_noise(
    analyst: NetworkAnalyst, pooled: pd.DataFrame
) -> None:
    """ε = 1: the noisy count is within 6 reported noise sd of the truth (two-sided
    probability of failing ≈ 2·10⁻⁹ for Gaussian noise); the noisy mean within 3 times its
    reported 95% interval's half-width (≈ 5.9 sd) plus the fixed-point error."""
    res = analyst.sql("SELECT COUNT(*), AVG(bmi) FROM diabetes", epsilon=1.0)
    settled(res)
    assert res.privacy_cost is not None
    assert res.privacy_cost.epsilon == pytest.approx(1.0, rel=1e-3)
    n = len(pooled)
    sd_count = res.noise_sd["n"]
    assert sd_count > 0
    assert abs(res["count(*)"] - n) <= 6 * sd_count, (res["count(*)"], n, sd_count)
    lo, hi = res.intervals["count(*)"]
    assert lo < res["count(*)"] < hi
    mean = res["mean(bmi)"]
    lo, hi = res.intervals["mean(bmi)"]
    assert lo < mean < hi
    half = max(hi - mean, mean - lo)
    truth = float(pooled.bmi.mean())
    assert abs(mean - truth) <= 3 * half + mean_tol(DELTA), (mean, truth, (lo, hi))
    assert mean != pytest.approx(float(quantised(pooled).bmi.mean()), abs=1e-12)  # noised
