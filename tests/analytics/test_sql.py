"""SQL parsing: supported aggregates map to statistics; everything else is refused by name."""

from __future__ import annotations

import pytest

from tessera.analytics.distribution import Max, Min, Quantile
from tessera.analytics.filters import compile_filter
from tessera.analytics.moments import Correlation, Count, Covariance, Mean, Std, Sum, Variance
from tessera.analytics.sql import parse_sql
from tessera.errors import QueryError


def test_supported_select() -> None:
    q = parse_sql(
        "SELECT sex, COUNT(*), AVG(age) AS a, STDDEV(age), VARIANCE(bmi), SUM(bmi), COUNT(bmi), "
        "MEDIAN(age), PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY age), QUANTILE_CONT(bmi, 0.9), "
        "MIN(age), MAX(bmi), CORR(age, bmi), COVAR_SAMP(age, bmi) "
        "FROM patients WHERE smoker = 1 AND age BETWEEN 20 AND 60 GROUP BY sex"
    )
    assert q.table == "patients"
    assert q.statistics == (
        Count(),
        Mean("age"),
        Std("age"),
        Variance("bmi"),
        Sum("bmi"),
        Count("bmi"),
        Quantile("age", 0.5),
        Quantile("age", 0.25),
        Quantile("bmi", 0.9),
        Min("age"),
        Max("bmi"),
        Correlation(("age", "bmi")),
        Covariance(("age", "bmi")),
    )
    assert q.group_by == ("sex",)
    assert q.where is not None and "smoker = 1" in q.where


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT age FROM p", "must be in GROUP BY"),
        ("SELECT COUNT(*) FROM a JOIN b ON a.x = b.x", "JOIN is not supported: each provider"),
        ("SELECT * FROM p", "SELECT \\* is not supported: it returns rows"),
        ("SELECT COUNT(*) FROM p LIMIT -3", "LIMIT"),
        ("SELECT COUNT(*) FROM p ORDER BY bmi", "not a selected column"),
        ("SELECT AVG(age + 1) FROM p", "age + 1"),
        ("SELECT COUNT(DISTINCT age) FROM p", "DISTINCT ...\\) is not supported: distinct"),
        ("SELECT DISTINCT age FROM p", "set_union"),
        ("SELECT COUNT(*) FROM (SELECT 1)", "FROM must name one table"),
        ("DELETE FROM p", "Delete"),
        ("SELECT COUNT(*) FROM p; SELECT 1", "one SQL statement"),
        ("SELECT COUNT(*)", "FROM"),
    ],
)
def test_unsupported_sql_is_named(sql: str, named: str) -> None:
    with pytest.raises(QueryError, match=named.replace("(", r"\(").replace("+", r"\+")):
        parse_sql(sql)


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("age > 1; DROP TABLE p", "Block"),
        ("age IN (SELECT 1)", "Subquery"),
        ("foo > 1", "unknown column"),
        ("read_csv('/etc/passwd') IS NOT NULL", "ReadCSV"),
        ("p.age > 1", "qualified column"),
        ("age > (", "cannot parse"),
    ],
)
def test_filter_whitelist(where: str, named: str) -> None:
    with pytest.raises(QueryError, match=named):
        compile_filter(where, {"age"})


def test_filter_rerendered() -> None:
    assert compile_filter("age >= 18 AND NOT (age IN (1, 2))", {"age"}) == (
        "age >= 18 AND NOT (age IN (1, 2))"
    )


def _released(parsed, values, intervals=None):  # type: ignore[no-untyped-def]
    """A result as the release would hold it (values by label), for the SQL shaping."""
    from tessera.analytics.release import QueryResult
    from tessera.protocol.aggregation import Verdict

    res = QueryResult("00", values, intervals or {}, None, {}, Verdict(True, 0, ()), None)  # type: ignore[arg-type]
    res.sql = parsed
    return res


def test_aliases_name_the_wide_frame_with_intervals_beside() -> None:
    parsed = parse_sql("SELECT COUNT(*) AS n, AVG(age) AS mean_age, MEDIAN(age) FROM p")
    res = _released(
        parsed,
        {"count(*)": 10.0, "mean(age)": 40.0, "median(age)": 41.0},
        {"count(*)": (9.0, 11.0), "mean(age)": (39.0, 41.0), "median(age)": (40.0, 42.0)},
    )
    frame = res.to_pandas()
    assert list(frame.columns) == [
        "n", "n_ci95_low", "n_ci95_high",
        "mean_age", "mean_age_ci95_low", "mean_age_ci95_high",
        "MEDIAN(age)", "MEDIAN(age)_ci95_low", "MEDIAN(age)_ci95_high",
    ]  # fmt: skip
    assert frame.iloc[0].tolist() == [10.0, 9.0, 11.0, 40.0, 39.0, 41.0, 41.0, 40.0, 42.0]
    assert res["n"] == 10.0 and res["mean_age"] == 40.0


def test_group_by_gives_one_row_per_group_and_having_order_limit_post_process() -> None:
    parsed = parse_sql(
        "SELECT sex AS s, band, COUNT(*) AS n, AVG(age) FROM p GROUP BY sex, band "
        "HAVING COUNT(*) > 2 AND MAX(age) < 90 ORDER BY n DESC, s LIMIT 2"
    )
    counts = {"F": {"old": 5.0, "young": 1.0}, "M": {"old": 3.0, "young": 7.0}}
    means = {"F": {"old": 70.0, "young": 20.0}, "M": {"old": 71.0, "young": 22.0}}
    maxes = {"F": {"old": 95.0, "young": 30.0}, "M": {"old": 80.0, "young": 35.0}}
    res = _released(
        parsed,
        {
            "count(*) BY band BY sex": counts,
            "mean(age) BY band BY sex": means,
            "max(age) BY band BY sex": maxes,
        },
    )
    frame = res.to_pandas()
    assert list(frame.columns)[:3] == ["s", "band", "n"]
    assert "_having_4" not in frame.columns  # MAX(age) was asked for HAVING only
    # HAVING drops (F, old) (max 95) and (F, young) (count 1); ORDER BY n DESC; LIMIT 2
    assert frame[["s", "band", "n"]].values.tolist() == [["M", "young", 7.0], ["M", "old", 3.0]]
    assert frame["AVG(age)"].tolist() == [22.0, 71.0]


def test_cosine_similarity_parses() -> None:
    parsed = parse_sql("SELECT COSINE_SIMILARITY(a, b) AS cs FROM p")
    assert parsed.statistics[0].label == "cosine_similarity(a, b)"
