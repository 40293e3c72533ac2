"""Statistics round-trip through their JSON wire form; malformed ones are refused by name."""

from __future__ import annotations

import pytest

from tessera.analytics.distribution import Histogram, Max, Min, Quantile
from tessera.analytics.grouping import ByKey, GroupBy
from tessera.analytics.moments import (
    Correlation,
    CosineSimilarity,
    Count,
    Covariance,
    Mean,
    Std,
    Sum,
    Variance,
)
from tessera.analytics.regression import LinearRegression, LogisticRegression, ModelEvaluation
from tessera.analytics.sets import BooleanAnd, BooleanOr, SetIntersection, SetUnion
from tessera.analytics.statistic import Statistic
from tessera.analytics.survival import KaplanMeier
from tessera.analytics.wire import (
    STATISTICS,
    statistic_from_json,
    statistic_to_json,
    statistics_from_json,
    statistics_to_json,
)
from tessera.errors import DecodeError

EXAMPLES: list[Statistic] = [
    Count(),
    Count("age"),
    Sum("age"),
    Mean("bmi"),
    Variance("age"),
    Std("bmi"),
    Covariance(("age", "bmi")),
    Correlation(("age", "bmi", "sbp")),
    Histogram("age", (0.0, 10.0, 20.5)),
    Quantile("age", 0.5),
    Quantile("age", 0.9, 64),
    Min("age"),
    Max("age", 100),
    LinearRegression("sbp", ("age", "bmi"), 0.5),
    LogisticRegression("diabetic", ("age",)),
    ModelEvaluation("diabetic", (("intercept", -3.0), ("age", 0.04))),
    SetUnion("code", (1.0, 2.0)),
    SetIntersection("code", (1.0, 2.0)),
    BooleanOr("age > 90", ("age",)),
    BooleanAnd("age >= 0", ("age",)),
    KaplanMeier("months", "died", (1.0, 2.0, 3.0)),
    GroupBy(GroupBy(Mean("age"), "band", ("old", "young")), "sex", ("F", "M")),
    ByKey(
        (Quantile("age", 0.5, None, (40.0, 50.0)), Quantile("age", 0.5, None, (45.0, 55.0))),
        "sex",
        ("F", "M"),
        "median(age)",
    ),
    CosineSimilarity("age", "bmi"),
    Min("age", None, (18.0, 20.0)),
]


def test_every_type_has_an_example() -> None:
    assert {type(s).__name__ for s in EXAMPLES} == set(STATISTICS)


@pytest.mark.parametrize("stat", EXAMPLES, ids=lambda s: s.label)
def test_round_trip(stat: Statistic) -> None:
    back = statistic_from_json(statistic_to_json(stat))
    assert back == stat and type(back) is type(stat)
    assert back.label == stat.label


def test_list_round_trip_is_canonical() -> None:
    text = statistics_to_json(EXAMPLES)
    assert statistics_from_json(text) == EXAMPLES
    assert statistics_to_json(statistics_from_json(text)) == text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "Exec", "column": "x"}, "unknown statistic type"),
        ({"column": "x"}, "unknown statistic type"),
        ({"type": "Sum", "column": "x", "shell": "rm"}, "unknown field"),
        ({"type": "Sum"}, "Sum:"),
        ({"type": "Histogram", "column": "x", "edges": [1.0, {"a": 1}]}, "unknown statistic"),
        ({"type": "GroupBy", "inner": {"type": "Count"}, "column": "s", "keys": []}, "keys"),
        ("Sum", "JSON object"),
    ],
)
def test_malformed_statistics_are_refused(data: object, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        statistic_from_json(data)


def test_empty_or_non_list_refused() -> None:
    with pytest.raises(DecodeError, match="non-empty"):
        statistics_from_json("[]")
    with pytest.raises(DecodeError, match="non-empty"):
        statistics_from_json('{"type": "Count"}')
