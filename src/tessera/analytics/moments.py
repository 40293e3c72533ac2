"""Moment statistics: count, sum, mean, variance, standard deviation, covariance, correlation.

Names and conventions follow SQL and Python's :mod:`statistics`: variance and
covariance are the sample versions (``n − 1``), like ``VAR_SAMP``, ``STDDEV``,
``COVAR_SAMP`` and ``statistics.covariance``. Rows with a missing value in a
statistic's columns are left out (complete-case analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.analytics.statistic import (
    Bounds,
    Statistic,
    Totals,
    complete_count_term,
    count_name,
    count_term,
    product_name,
    product_term,
    sum_name,
    sum_term,
)
from tessera.analytics.terms import Term


@dataclass(frozen=True)
class Count(Statistic):
    column: str | None = None
    kind = "count"

    @property
    def label(self) -> str:
        return f"count({self.column or '*'})"

    def columns(self) -> tuple[str, ...]:
        return ()

    def terms(self, bounds: Bounds) -> list[Term]:
        return [count_term(self.column)]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        return totals[count_term(self.column).name]


@dataclass(frozen=True)
class Sum(Statistic):
    column: str
    kind = "sum"

    @property
    def label(self) -> str:
        return f"sum({self.column})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def terms(self, bounds: Bounds) -> list[Term]:
        # the count lets the sum be centred (less noise) and bounds its rounding
        return [count_term(self.column), sum_term(self.column, bounds)]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        return totals[f"sum[{self.column}]"]


@dataclass(frozen=True)
class Mean(Statistic):
    column: str
    kind = "mean"

    @property
    def label(self) -> str:
        return f"mean({self.column})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def terms(self, bounds: Bounds) -> list[Term]:
        return [count_term(self.column), sum_term(self.column, bounds)]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        n = totals[f"n[{self.column}]"]
        return totals[f"sum[{self.column}]"] / n if n > 0 else math.nan


@dataclass(frozen=True)
class Variance(Statistic):
    column: str
    kind = "variance"

    @property
    def label(self) -> str:
        return f"variance({self.column})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def terms(self, bounds: Bounds) -> list[Term]:
        c = self.column
        return [count_term(c), sum_term(c, bounds), product_term(c, c, bounds)]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        c = self.column
        n, s, ss = totals[f"n[{c}]"], totals[f"sum[{c}]"], totals[f"prod[{c},{c}]"]
        if n <= 1:
            return math.nan
        return max(0.0, (ss - s * s / n) / (n - 1))


@dataclass(frozen=True)
class Std(Variance):
    kind = "std"

    @property
    def label(self) -> str:
        return f"std({self.column})"

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        return math.sqrt(super().decode(totals, bounds))


@dataclass(frozen=True)
class _Matrix(Statistic):
    """Shared moments of several columns over their complete cases."""

    cols: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.cols) < 2 or len(set(self.cols)) != len(self.cols):
            raise ValueError("covariance/correlation need two or more distinct columns")

    def columns(self) -> tuple[str, ...]:
        return self.cols

    def terms(self, bounds: Bounds) -> list[Term]:
        out = [complete_count_term(self.cols)]
        out += [sum_term(c, bounds, self.cols) for c in self.cols]
        out += [
            product_term(a, b, bounds, self.cols)
            for i, a in enumerate(self.cols)
            for b in self.cols[i:]
        ]
        return out

    def covariance(self, totals: Totals) -> np.ndarray[Any, np.dtype[np.float64]]:
        k, cols = len(self.cols), self.cols
        n = totals[count_name(cols)]
        s = np.array([totals[sum_name(c, cols)] for c in cols])
        m = np.array([[totals[product_name(a, b, cols)] for b in cols] for a in cols])
        if n <= 1:
            return np.full((k, k), math.nan)
        return np.asarray((m - np.outer(s, s) / n) / (n - 1), dtype=np.float64)


@dataclass(frozen=True)
class Covariance(_Matrix):
    kind = "covariance"

    @property
    def label(self) -> str:
        return f"covariance({', '.join(self.cols)})"

    def decode(self, totals: Totals, bounds: Bounds) -> Any:
        cov = self.covariance(totals)
        return float(cov[0, 1]) if len(self.cols) == 2 else cov.tolist()


@dataclass(frozen=True)
class Correlation(_Matrix):
    kind = "correlation"

    @property
    def label(self) -> str:
        return f"correlation({', '.join(self.cols)})"

    def decode(self, totals: Totals, bounds: Bounds) -> Any:
        cov = self.covariance(totals)
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        np.fill_diagonal(corr, 1.0)
        return float(corr[0, 1]) if len(self.cols) == 2 else corr.tolist()


@dataclass(frozen=True)
class CosineSimilarity(Statistic):
    """``Σab / √(Σa²·Σb²)`` over the rows where both are present (Drynx's cosine similarity).

    Not invariant to the origin, so the raw sums of products are what it needs; they are
    summed centred (with the count and both sums, restored exactly) for less noise."""

    a: str
    b: str
    kind = "cosine_similarity"

    def __post_init__(self) -> None:
        if self.a == self.b:
            raise ValueError("cosine similarity needs two distinct columns")

    @property
    def label(self) -> str:
        return f"cosine_similarity({self.a}, {self.b})"

    def columns(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def terms(self, bounds: Bounds) -> list[Term]:
        cols = self.columns()
        return [
            complete_count_term(cols),
            *(sum_term(c, bounds, cols) for c in cols),
            *(
                product_term(x, y, bounds, cols)
                for x, y in ((self.a, self.a), (self.a, self.b), (self.b, self.b))
            ),
        ]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        cols = self.columns()
        aa = totals[product_name(self.a, self.a, cols)]
        bb = totals[product_name(self.b, self.b, cols)]
        ab = totals[product_name(self.a, self.b, cols)]
        if aa <= 0 or bb <= 0:
            return math.nan
        return float(min(1.0, max(-1.0, ab / math.sqrt(aa * bb))))
