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
        ("SELECT age FROM p", "Column"),
        ("SELECT COUNT(*) FROM a JOIN b ON a.x = b.x", "JOIN"),
        ("SELECT COUNT(*) FROM p ORDER BY 1", "ORDER BY"),
        ("SELECT COUNT(*) FROM p LIMIT 3", "LIMIT"),
        ("SELECT AVG(age + 1) FROM p", "age + 1"),
        ("SELECT COUNT(DISTINCT age) FROM p", "DISTINCT"),
        ("SELECT COUNT(*) FROM (SELECT 1)", "FROM must name one table"),
        ("DELETE FROM p", "Delete"),
        ("SELECT COUNT(*) FROM p; SELECT 1", "one SQL statement"),
        ("SELECT COUNT(*) FROM p HAVING COUNT(*) > 1", "HAVING"),
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
