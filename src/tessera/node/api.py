"""The statistics API shared by the in-process network and the networked analyst.

Every method builds statistics and hands them to ``run`` (one encrypted query);
a subclass says how a query runs and where a table's public bounds and category
keys come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tessera.analytics.distribution import Histogram, equal_edges
from tessera.analytics.grouping import GroupBy, GroupKey
from tessera.analytics.local import ColumnBounds
from tessera.analytics.moments import Count
from tessera.analytics.regression import LinearRegression, LogisticRegression, ModelEvaluation
from tessera.analytics.sets import BooleanAnd, BooleanOr, SetIntersection, SetUnion
from tessera.analytics.sql import ParsedQuery, parse_sql
from tessera.analytics.statistic import Statistic
from tessera.analytics.survival import KaplanMeier
from tessera.errors import QueryError

if TYPE_CHECKING:
    from tessera.node.local_network import QueryResult

DEFAULT_DELTA = 1e-6


class StatisticsApi:
    def run(
        self,
        table: str,
        stats: Sequence[Statistic],
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        raise NotImplementedError

    def bounds(self, table: str) -> dict[str, ColumnBounds]:
        """The public bounds of ``table``'s columns, as every provider of it publishes them."""
        raise NotImplementedError

    def categories(self, table: str, column: str) -> tuple[GroupKey, ...]:
        """The public key set of a categorical column, as every provider publishes it."""
        raise NotImplementedError

    def sql_statistics(self, query: str) -> tuple[ParsedQuery, list[Statistic]]:
        """An SQL query parsed, and the statistics it runs (``GROUP BY a, b``: per a, then
        per b, over the columns' public key sets)."""
        parsed = parse_sql(query)
        stats: list[Statistic] = list(parsed.statistics)
        for col in reversed(parsed.group_by):
            keys = self.categories(parsed.table, col)
            stats = [GroupBy(s, col, keys) for s in stats]
        return parsed, stats

    def histogram_edges(self, table: str, column: str, bins: int) -> tuple[float, ...]:
        """``bins`` equal bins over the column's public bounds."""
        b = self.bounds(table).get(column)
        if b is None:
            raise QueryError(f"column {column!r} has no public bounds")
        return tuple(equal_edges(b.lo, b.hi, bins))

    # -- the Python API ------------------------------------------------------------------
    def sql(
        self, query: str, epsilon: float | None = None, delta: float = DEFAULT_DELTA
    ) -> QueryResult:
        parsed, stats = self.sql_statistics(query)
        result = self.run(parsed.table, stats, parsed.where, epsilon, delta)
        result.sql = parsed  # aliases, the wide frame, HAVING / ORDER BY / LIMIT over it
        return result

    def contingency(
        self,
        table: str,
        rows: str,
        columns: str,
        *,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Counts per pair of public keys of two categorical columns (nested dict)."""
        inner = GroupBy(Count(), columns, self.categories(table, columns))
        stat = GroupBy(inner, rows, self.categories(table, rows))
        return self.run(table, [stat], where, epsilon, delta)

    def set_union(
        self,
        table: str,
        column: str,
        domain: Sequence[float],
        *,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Values of ``domain`` present at any provider."""
        stat = SetUnion(column, tuple(float(v) for v in domain))
        return self.run(table, [stat], where, epsilon, delta)

    def set_intersection(
        self,
        table: str,
        column: str,
        domain: Sequence[float],
        *,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Values of ``domain`` present at every contributing provider."""
        stat = SetIntersection(column, tuple(float(v) for v in domain))
        return self.run(table, [stat], where, epsilon, delta)

    def any(
        self,
        table: str,
        condition: str,
        columns: Sequence[str],
        *,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Boolean OR: does any row anywhere satisfy ``condition``?"""
        return self.run(table, [BooleanOr(condition, tuple(columns))], None, epsilon, delta)

    def all(
        self,
        table: str,
        condition: str,
        columns: Sequence[str],
        *,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Boolean AND: does every row everywhere satisfy ``condition``?"""
        return self.run(table, [BooleanAnd(condition, tuple(columns))], None, epsilon, delta)

    def linear_regression(
        self,
        table: str,
        y: str,
        x: Sequence[str],
        *,
        ridge: float = 0.0,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        return self.run(table, [LinearRegression(y, tuple(x), ridge)], where, epsilon, delta)

    def logistic_regression(
        self,
        table: str,
        y: str,
        x: Sequence[str],
        *,
        ridge: float = 0.0,
        newton_steps: int | None = None,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Logistic regression: a first estimate, then ``newton_steps`` Newton steps, each a
        query of its own (None: 8 exact, 2 under noise; 0: the one-shot estimate)."""
        stat = LogisticRegression(y, tuple(x), ridge, newton_steps=newton_steps)
        return self.run(table, [stat], where, epsilon, delta)

    def evaluate_model(
        self,
        table: str,
        y: str,
        coefficients: Mapping[str, float],
        *,
        model: str = "logistic",
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        stat = ModelEvaluation(y, tuple(coefficients.items()), model)
        return self.run(table, [stat], where, epsilon, delta)

    def histogram(
        self,
        table: str,
        column: str,
        *,
        bins: int | Sequence[float] = 10,
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        if isinstance(bins, int):
            edges = self.histogram_edges(table, column, bins)
        else:
            edges = tuple(float(e) for e in bins)
        return self.run(table, [Histogram(column, edges)], where, epsilon, delta)

    def kaplan_meier(
        self,
        table: str,
        time_column: str,
        event_column: str,
        *,
        edges: Sequence[float],
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        stat = KaplanMeier(time_column, event_column, tuple(float(e) for e in edges))
        return self.run(table, [stat], where, epsilon, delta)

    # -- the engine ------------------------------------------------------------------------
