"""Set union and intersection over a bounded public domain, and boolean OR / AND of a condition.

Each provider contributes one bit per domain element (present in its rows or
not), Drynx's encoding: the released sum counts providers, never rows. The
union is the set of elements with a positive count, the intersection those
held by every contributing provider (a ``providers`` term counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.analytics.filters import check_condition, parse_condition
from tessera.analytics.statistic import Bounds, Statistic, Totals, literal, q
from tessera.analytics.terms import Combine, Term
from tessera.errors import QueryError


def providers_term() -> Term:
    return Term("providers", "1", 0, 1, 1, Combine.ANY)


def _any(name: str, condition: str) -> Term:
    return Term(name, f"CASE WHEN {condition} THEN 1 ELSE 0 END", 0, 1, 1, Combine.ANY)


@dataclass(frozen=True)
class _SetOp(Statistic):
    column: str
    domain: tuple[float, ...]
    quantitative = False

    def __post_init__(self) -> None:
        if not self.domain or len(set(self.domain)) != len(self.domain):
            raise QueryError("a set operation needs a non-empty domain of distinct values")

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def terms(self, bounds: Bounds) -> list[Term]:
        s = bounds[self.column].scale
        out = [providers_term()]
        for v in self.domain:
            out.append(
                _any(f"has[{self.column};{v!r}]", f"{q(self.column)} = {literal(round(v * s))}")
            )
        return out

    def counts(self, totals: Totals) -> list[tuple[float, float]]:
        return [(v, totals[f"has[{self.column};{v!r}]"]) for v in self.domain]


@dataclass(frozen=True)
class SetUnion(_SetOp):
    kind = "set_union"

    @property
    def label(self) -> str:
        return f"union({self.column})"

    def decode(self, totals: Totals, bounds: Bounds) -> list[float]:
        return [v for v, c in self.counts(totals) if c > 0.5]


@dataclass(frozen=True)
class SetIntersection(_SetOp):
    kind = "set_intersection"

    @property
    def label(self) -> str:
        return f"intersection({self.column})"

    def decode(self, totals: Totals, bounds: Bounds) -> list[float]:
        p = totals["providers"]
        return [v for v, c in self.counts(totals) if p > 0 and c > p - 0.5]


@dataclass(frozen=True)
class _Boolean(Statistic):
    condition: str
    cols: tuple[str, ...]
    quantitative = False

    def columns(self) -> tuple[str, ...]:
        return self.cols

    def integer_columns(self) -> tuple[str, ...]:
        return self.cols

    def _sql(self, bounds: Bounds) -> str:
        tree = parse_condition(self.condition)
        check_condition(tree, self.cols)
        if any(b.scale != 1 for c, b in bounds.items() if c in self.cols):
            raise QueryError("boolean conditions work on integer-bounded columns only")
        return str(tree.sql(dialect="duckdb"))


@dataclass(frozen=True)
class BooleanOr(_Boolean):
    """Does any row, at any provider, satisfy the condition?"""

    kind = "boolean_or"

    @property
    def label(self) -> str:
        return f"any({self.condition})"

    def terms(self, bounds: Bounds) -> list[Term]:
        return [_any(f"or[{self.condition}]", self._sql(bounds))]

    def decode(self, totals: Totals, bounds: Bounds) -> Any:
        return totals[f"or[{self.condition}]"] > 0.5


@dataclass(frozen=True)
class BooleanAnd(_Boolean):
    """Do all rows, at every provider, satisfy the condition?"""

    kind = "boolean_and"

    @property
    def label(self) -> str:
        return f"all({self.condition})"

    def terms(self, bounds: Bounds) -> list[Term]:
        return [_any(f"notall[{self.condition}]", f"NOT ({self._sql(bounds)})")]

    def decode(self, totals: Totals, bounds: Bounds) -> Any:
        return totals[f"notall[{self.condition}]"] < 0.5
