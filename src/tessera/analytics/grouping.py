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
        row_rounding=term.row_rounding,
        count_ref=f"{term.count_ref}@{column}={key!r}" if term.count_ref else "",
        cell=((f"group[{column}]", repr(key)), *term.cell),
    )


def group_count_term(column: str, key: GroupKey) -> Term:
    return Term(
        f"n@{column}={key!r}",
        f"CASE WHEN {q(column)} = {_sql_literal(key)} THEN 1 ELSE 0 END",
        0,
        1,
        cell=((f"group[{column}]", repr(key)),),
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

    def integer_columns(self) -> tuple[str, ...]:
        return self.inner.integer_columns()

    def passes(self, bounds: Bounds, noised: bool) -> int:
        return self.inner.passes(bounds, noised)

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        """Each group's next pass, from its own totals (:class:`ByKey`)."""
        inners = []
        for key in self.keys:
            sub = None
            if totals is not None:
                names = [t.name for t in self.inner.terms(bounds)]
                sub = {n: totals[f"{n}@{self.column}={key!r}"] for n in names}
            inners.append(self.inner.refine(sub, bounds, noised))
        return ByKey(tuple(inners), self.column, self.keys, self.inner.label)

    def discretisation(self, bounds: Bounds) -> float:
        return self.inner.discretisation(bounds)

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


@dataclass(frozen=True)
class ByKey(Statistic):
    """A statistic per public key, each its own (a grouped statistic's next pass, where
    every group's window or step depends on that group's first release)."""

    inners: tuple[Statistic, ...]
    column: str
    keys: tuple[GroupKey, ...]
    inner_label: str

    def __post_init__(self) -> None:
        if len(self.inners) != len(self.keys) or not self.keys:
            raise QueryError("ByKey needs one statistic per key")
        if len(set(self.keys)) != len(self.keys):
            raise QueryError(f"ByKey over {self.column} needs distinct keys")
        if len({s.kind for s in self.inners}) != 1:
            raise QueryError("ByKey's statistics must be of one kind")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inners[0].kind

    @property
    def quantitative(self) -> bool:  # type: ignore[override]
        return self.inners[0].quantitative

    @property
    def label(self) -> str:
        return f"{self.inner_label} BY {self.column}"

    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for s in self.inners for c in s.columns()))

    def integer_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for s in self.inners for c in s.integer_columns()))

    def discretisation(self, bounds: Bounds) -> float:
        return max(s.discretisation(bounds) for s in self.inners)

    def passes(self, bounds: Bounds, noised: bool) -> int:
        return max(s.passes(bounds, noised) for s in self.inners)

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        inners = []
        for key, inner in zip(self.keys, self.inners, strict=True):
            sub = None
            if totals is not None:
                names = [t.name for t in inner.terms(bounds)]
                sub = {n: totals[f"{n}@{self.column}={key!r}"] for n in names}
            inners.append(inner.refine(sub, bounds, noised))
        return ByKey(tuple(inners), self.column, self.keys, self.inner_label)

    def terms(self, bounds: Bounds) -> list[Term]:
        out = []
        for key, inner in zip(self.keys, self.inners, strict=True):
            out.append(group_count_term(self.column, key))
            out += [group_term(t, self.column, key) for t in inner.terms(bounds)]
        return out

    def decode(self, totals: Totals, bounds: Bounds) -> dict[GroupKey, Any]:
        out: dict[GroupKey, Any] = {}
        for key, inner in zip(self.keys, self.inners, strict=True):
            names = [t.name for t in inner.terms(bounds)]
            out[key] = inner.decode(
                {n: totals[f"{n}@{self.column}={key!r}"] for n in names}, bounds
            )
        return out
