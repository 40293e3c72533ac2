"""GROUP BY over a public key set: any statistic, evaluated per group in the same encrypted vector.

Every term of the inner statistic is repeated once per key with the row
expression multiplied by ``1[key column = key]``. The key set is public (part
of the dataset's published schema), so the vector's shape reveals nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.analytics.statistic import Bounds, Statistic, Totals, q
from tessera.analytics.terms import Term
from tessera.errors import QueryError

GroupKey = str | int | float | bool


def _sql_literal(key: GroupKey) -> str:
    if isinstance(key, bool):
        return "TRUE" if key else "FALSE"
    if isinstance(key, int | float):
        return repr(key)
    return "'" + str(key).replace("'", "''") + "'"


def group_term(term: Term, column: str, key: GroupKey) -> Term:
    return Term(
        f"{term.name}@{column}={key!r}",
        f"CASE WHEN {q(column)} = {_sql_literal(key)} THEN ({term.sql}) ELSE 0 END",
        min(0, term.row_lo),
        max(0, term.row_hi),
        term.scale,
        term.combine,
    )


def group_count_term(column: str, key: GroupKey) -> Term:
    return Term(
        f"n@{column}={key!r}",
        f"CASE WHEN {q(column)} = {_sql_literal(key)} THEN 1 ELSE 0 END",
        0,
        1,
    )


@dataclass(frozen=True)
class GroupBy(Statistic):
    """``inner`` per value of ``column`` over the public ``keys``."""

    inner: Statistic
    column: str
    keys: tuple[GroupKey, ...]

    def __post_init__(self) -> None:
        if not self.keys or len(set(self.keys)) != len(self.keys):
            raise QueryError(f"GROUP BY {self.column} needs a public set of distinct keys")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    @property
    def quantitative(self) -> bool:  # type: ignore[override]
        return self.inner.quantitative

    @property
    def label(self) -> str:
        return f"{self.inner.label} BY {self.column}"

    def columns(self) -> tuple[str, ...]:
        return self.inner.columns()

    def terms(self, bounds: Bounds) -> list[Term]:
        base = self.inner.terms(bounds)
        out = []
        for key in self.keys:
            out.append(group_count_term(self.column, key))
            out += [group_term(t, self.column, key) for t in base]
        return out

    def decode(self, totals: Totals, bounds: Bounds) -> dict[GroupKey, Any]:
        names = [t.name for t in self.inner.terms(bounds)]
        out: dict[GroupKey, Any] = {}
        for key in self.keys:
            sub = {n: totals[f"{n}@{self.column}={key!r}"] for n in names}
            out[key] = self.inner.decode(sub, bounds)
        return out

    def group_counts(self) -> list[str]:
        return [f"n@{self.column}={key!r}" for key in self.keys]
