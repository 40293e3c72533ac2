"""The in-process network end to end: differential tests against pandas / numpy / statsmodels /
scikit-learn on the pooled data, policies, budgets and adversaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression as SkLogistic

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.errors import BudgetExceeded, PolicyViolation, QueryError
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.testing.adversary import corrupt_key_switch, corrupt_noise

EXACT = DatasetPolicy(allow_exact=True, min_cohort=1)
BOUNDS = {
    "patients": {
        "age": (0, 100),
        "bmi": (10.0, 60.0),
        "smoker": (0, 1),
        "diabetic": (0, 1),
        "sbp": (80.0, 200.0),
        "sex": ["F", "M"],
    }
}


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 14), max_abs=1 << 32)


def patients(seed: int, n: int) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    age = g.integers(18, 95, n)
    smoker = g.integers(0, 2, n)
    bmi = np.clip(g.normal(27 + 0.05 * (age - 50), 4.5, n), 12, 58)
    sbp = np.clip(100 + 0.5 * age + 1.2 * (bmi - 25) + 6 * smoker + g.normal(0, 8, n), 81, 199)
    logit = -9 + 0.06 * age + 0.15 * bmi + 0.8 * smoker
    diabetic = (g.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    sex = np.where(g.random(n) < 0.5, "F", "M")
    return pd.DataFrame(
        {"age": age, "bmi": bmi, "smoker": smoker, "sbp": sbp, "diabetic": diabetic, "sex": sex}
    )


def network(dlog: DiscreteLog, sizes: list[int], seed: int = 1, policy: DatasetPolicy = EXACT):
    net = LocalNetwork(3, 2, seed=seed, dlog=dlog)
    frames = []
    for i, n in enumerate(sizes):
        df = patients(seed * 100 + i, n)
        frames.append(df)
        net.add_provider(
            f"p{i}", tables={"patients": df}, bounds=BOUNDS, policies={"patients": policy}
        )
    return net, pd.concat(frames, ignore_index=True)


SPLITS = [[400], [150, 150, 150], [30, 500, 70, 200]]  # uneven ones included


@pytest.mark.parametrize("sizes", SPLITS)
def test_moments_match_pandas(dlog: DiscreteLog, sizes: list[int]) -> None:
    net, pooled = network(dlog, sizes)
    res = net.sql(
        "SELECT COUNT(*), SUM(age), AVG(age), VARIANCE(age), STDDEV(bmi), AVG(bmi) FROM patients"
    )
    assert res.verified
    assert res["count(*)"] == len(pooled)
    assert res["sum(age)"] == pooled.age.sum()  # exact for integer sums
    assert res["mean(age)"] == pytest.approx(pooled.age.mean(), rel=1e-12)
    assert res["variance(age)"] == pytest.approx(pooled.age.var(), rel=1e-9)
    # floats go through 10-bit fixed point: error ≤ 2^-11 per row
    assert res["mean(bmi)"] == pytest.approx(pooled.bmi.mean(), abs=2**-10)
    assert res["std(bmi)"] == pytest.approx(pooled.bmi.std(), abs=1e-3)


def test_filters_groups_and_distribution(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, [120, 300, 80])
    res = net.sql(
        "SELECT sex, COUNT(*), AVG(age), MEDIAN(age), MIN(age), MAX(age), "
        "PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY age), CORR(age, bmi) "
        "FROM patients WHERE smoker = 1 GROUP BY sex"
    )
    assert res.verified
    sub = pooled[pooled.smoker == 1]
    for sex, grp in sub.groupby("sex"):
        assert res["count(*) BY sex"][sex] == len(grp)
        assert res["mean(age) BY sex"][sex] == pytest.approx(grp.age.mean())
        # two passes (coarse, then fine bins around the first estimate): 1e-3 of the range
        assert res["median(age) BY sex"][sex] == pytest.approx(grp.age.quantile(0.5), abs=0.1)
        assert res["quantile(age, 0.9) BY sex"][sex] == pytest.approx(
            grp.age.quantile(0.9), abs=0.1
        )
        assert res.rounding["median(age) BY sex"][sex] <= 0.1
        assert res["min(age) BY sex"][sex] == pytest.approx(grp.age.min(), abs=0.1)
        assert res["max(age) BY sex"][sex] == pytest.approx(grp.age.max(), abs=0.1)
        want = np.corrcoef(grp.age, grp.bmi)[0, 1]  # precision chosen per query: exact to 1e-9
        assert res["correlation(age, bmi) BY sex"][sex] == pytest.approx(want, abs=1e-9)


def test_histogram(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, [200, 100])
    res = net.histogram("patients", "age", bins=[0, 20, 40, 60, 80, 100])
    want, _ = np.histogram(pooled.age, bins=[0, 20, 40, 60, 80, 100])
    assert res.value == want.tolist()


@pytest.mark.parametrize("sizes", SPLITS)
def test_linear_regression_matches_statsmodels(dlog: DiscreteLog, sizes: list[int]) -> None:
    net, pooled = network(dlog, sizes)
    res = net.linear_regression("patients", y="sbp", x=["age", "bmi", "smoker"])
    assert res.verified
    fx = pooled[["age", "bmi", "smoker"]].astype(float)
    fy = pooled.sbp  # the precision chosen per query leaves no rounding to mimic
    ols = sm.OLS(fy, sm.add_constant(fx)).fit()
    got = res.value
    for name, want in zip(["intercept", "age", "bmi", "smoker"], ols.params, strict=True):
        assert got["coefficients"][name] == pytest.approx(want, rel=1e-6, abs=1e-6)
    for name, want in zip(["intercept", "age", "bmi", "smoker"], ols.bse, strict=True):
        assert got["std_errors"][name] == pytest.approx(want, rel=1e-5)
    assert got["r2"] == pytest.approx(ols.rsquared, rel=1e-6)


def test_ridge_matches_closed_form(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, [200, 200])
    res = net.linear_regression("patients", y="sbp", x=["age", "smoker"], ridge=50.0)
    x = np.column_stack([np.ones(len(pooled)), pooled.age, pooled.smoker])
    y = pooled.sbp
    pen = np.diag([0.0, 50.0, 50.0])
    want = np.linalg.solve(x.T @ x + pen, x.T @ y)
    got = list(res.value["coefficients"].values())
    assert got == pytest.approx(want.tolist(), rel=1e-6)


@pytest.mark.parametrize(("seed", "steps"), [(3, 0), (4, 1)])
def test_logistic_regression_accuracy_close_to_sklearn(
    dlog: DiscreteLog, seed: int, steps: int
) -> None:
    """The one-shot estimate, and one Newton step after it (the fit to scikit-learn's
    coefficients after the default eight is in tests/engine/test_exact.py)."""
    net, pooled = network(dlog, [600, 900, 500], seed=seed)
    test = patients(seed * 1000 + 7, 3000)
    feats = ["age", "bmi", "smoker"]
    res = net.logistic_regression("patients", y="diabetic", x=feats, newton_steps=steps)
    assert len(res.passes) == (steps + 1 if steps else 0)
    w = res.value["coefficients"]
    score = w["intercept"] + sum(w[f] * test[f] for f in feats)
    ours = float(((score > 0).astype(int) == test.diabetic).mean())
    sk = SkLogistic(max_iter=2000).fit(pooled[feats], pooled.diabetic)
    theirs = float(sk.score(test[feats], test.diabetic))
    assert ours >= theirs - 0.01
    # the evaluation query on the providers' data agrees with a direct computation
    ev = net.evaluate_model("patients", "diabetic", w).value
    pooled_score = w["intercept"] + sum(w[f] * pooled[f] for f in feats)
    acc = float(((pooled_score > 0).astype(int) == pooled.diabetic).mean())
    assert ev["accuracy"] == pytest.approx(acc, abs=1e-9)
    assert 0.5 < ev["auc"] <= 1.0


def test_kaplan_meier_matches_direct_estimator(dlog: DiscreteLog) -> None:
    g = np.random.default_rng(5)
    net = LocalNetwork(3, 2, seed=5, dlog=dlog)
    frames = []
    for i, n in enumerate([60, 140]):
        df = pd.DataFrame({"months": g.integers(1, 25, n), "died": g.integers(0, 2, n)})
        frames.append(df)
        net.add_provider(
            f"h{i}",
            tables={"surv": df},
            bounds={"surv": {"months": (0, 30), "died": (0, 1)}},
            policies={"surv": EXACT},
        )
    pooled = pd.concat(frames)
    edges = list(range(1, 26))  # one bin per month: [m, m+1)
    res = net.kaplan_meier("surv", "months", "died", edges=edges)
    s = 1.0
    for row in res.value["curve"]:
        t = row["time"] - 1
        at_risk = int((pooled.months >= t).sum())
        d = int(((pooled.months == t) & (pooled.died == 1)).sum())
        assert row["at_risk"] == at_risk
        if at_risk:
            s *= 1 - d / at_risk
        assert row["survival"] == pytest.approx(s)
        assert row["ci95_low"] <= row["survival"] <= row["ci95_high"]


def test_noise_privacy_cost_and_budget(dlog: DiscreteLog) -> None:
    policy = DatasetPolicy(min_cohort=5, budget_rho=0.5)
    net, pooled = network(dlog, [300, 300], seed=9, policy=policy)
    res = net.sql("SELECT COUNT(*), AVG(age) FROM patients", epsilon=1.0)
    assert res.verified
    assert res.privacy_cost is not None
    assert res.privacy_cost.epsilon == pytest.approx(1.0, rel=1e-3)
    lo, hi = res.intervals["count(*)"] or (math.nan, math.nan)
    assert lo < res["count(*)"] < hi
    assert abs(res["count(*)"] - len(pooled)) < 60  # noise, not nonsense
    assert res["count(*)"] != len(pooled) or res["mean(age)"] != pooled.age.mean()
    with pytest.raises(PolicyViolation, match="epsilon"):
        net.sql("SELECT COUNT(*) FROM patients")  # exact answers not allowed
    with pytest.raises(BudgetExceeded):
        for _ in range(100):
            net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)


def test_policy_and_cohort(dlog: DiscreteLog) -> None:
    only_counts = DatasetPolicy(allowed=frozenset({"count"}), allow_exact=True, min_cohort=50)
    net, _ = network(dlog, [100, 20], policy=only_counts)
    with pytest.raises(PolicyViolation, match="operation not allowed"):
        net.sql("SELECT AVG(age) FROM patients")
    res = net.sql("SELECT COUNT(*) FROM patients")
    assert res.excluded_providers == {"p1": "cohort or group below the provider's minimum"}
    assert res.value == 100
    with pytest.raises(QueryError, match="no provider holds"):
        net.sql("SELECT COUNT(*) FROM visits")


def test_cheating_node_is_excluded_and_result_correct(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, [100, 100])
    corrupt_key_switch(net.nodes[2])
    res = net.sql("SELECT SUM(age) FROM patients")
    assert res.value == pooled.age.sum()
    assert res.verified
    assert res.verdict.cheaters == (2,)


def test_contingency_and_two_column_group_by(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, [150, 250])
    with pytest.raises(QueryError, match="key set"):
        net.contingency("patients", "sex", "smoker")  # smoker is numeric, not categorical
    res = net.sql("SELECT sex, COUNT(*), AVG(age) FROM patients GROUP BY sex")
    want = pooled.groupby("sex").size()
    assert res["count(*) BY sex"] == {k: float(v) for k, v in want.items()}
    both = pooled.assign(band=np.where(pooled.age < 50, "young", "old"))
    net2 = LocalNetwork(3, 2, seed=2, dlog=dlog)
    half = len(both) // 2
    for i, part in enumerate([both.iloc[:half], both.iloc[half:]]):
        net2.add_provider(
            f"q{i}",
            tables={"patients": part},
            bounds={"patients": {"age": (0, 100), "sex": ["F", "M"], "band": ["old", "young"]}},
            policies={"patients": EXACT},
        )
    table = net2.contingency("patients", "sex", "band").value
    for (sex, band), n in both.groupby(["sex", "band"]).size().items():
        assert table[sex][band] == n
    nested = net2.sql("SELECT sex, band, COUNT(*) FROM patients GROUP BY sex, band")
    assert nested["count(*) BY band BY sex"] == table


def test_sets_and_booleans(dlog: DiscreteLog) -> None:
    net = LocalNetwork(3, 2, seed=8, dlog=dlog)
    held = [[1, 2, 3, 5], [2, 3, 7], [3, 2, 9, 9]]
    for i, vals in enumerate(held):
        net.add_provider(
            f"s{i}",
            tables={"t": pd.DataFrame({"code": vals, "flag": [1] * len(vals)})},
            bounds={"t": {"code": (0, 10), "flag": (0, 1)}},
            policies={"t": EXACT},
        )
    domain = list(range(11))
    union = net.set_union("t", "code", domain).value
    inter = net.set_intersection("t", "code", domain).value
    assert union == sorted({v for h in held for v in h})
    assert inter == sorted(set(held[0]) & set(held[1]) & set(held[2]))
    assert net.any("t", "code > 8", ["code"]).value is True
    assert net.any("t", "code > 9", ["code"]).value is False
    assert net.all("t", "flag = 1", ["flag"]).value is True
    assert net.all("t", "code < 9", ["code"]).value is False


def test_linear_model_evaluation_r2(dlog: DiscreteLog) -> None:
    net, _pooled = network(dlog, [200, 300])
    fit = net.linear_regression("patients", y="sbp", x=["age", "smoker"]).value
    ev = net.evaluate_model("patients", "sbp", fit["coefficients"], model="linear").value
    assert ev["r2"] == pytest.approx(fit["r2"], abs=1e-3)  # same data: in-sample R²


def test_structured_results_carry_intervals(dlog: DiscreteLog) -> None:
    policy = DatasetPolicy(min_cohort=5, budget_rho=50.0)
    net, _pooled = network(dlog, [400, 400], seed=21, policy=policy)
    res = net.linear_regression("patients", y="sbp", x=["age"], epsilon=4.0)
    ci = res.intervals[next(iter(res.values))]
    coef = res.value["coefficients"]["age"]
    lo, hi = ci["coefficients"]["age"]
    assert lo < coef < hi
    hist = net.histogram("patients", "age", bins=4, epsilon=4.0)
    cis = hist.intervals[next(iter(hist.values))]
    assert len(cis) == 4 and all(a < v < b for (a, b), v in zip(cis, hist.value, strict=True))
    assert net.set_union("patients", "smoker", [0, 1], epsilon=4.0).intervals == {
        "union(smoker)": None
    }


def test_node_with_bad_noise_is_set_aside_and_result_stands(dlog: DiscreteLog) -> None:
    policy = DatasetPolicy(min_cohort=5, budget_rho=50.0)
    net, pooled = network(dlog, [200, 200], seed=13, policy=policy)
    corrupt_noise(net.nodes[3])
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=4.0)
    assert res.verified, res.verdict.failures
    assert 3 in res.verdict.cheaters and 3 in res.record.excluded_nodes
    assert [nc.node for nc in res.record.rejected_noise] == [3]
    assert abs(res.value - len(pooled)) < 50  # the corrupted noise (2^20) is gone
