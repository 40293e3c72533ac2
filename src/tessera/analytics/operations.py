"""Statistics as term plans and decoders: count, sum, mean, variance, standard deviation.

Each :class:`Statistic` names the terms it needs (shared terms are computed
once per query) and decodes the released term totals into its value. Names
and semantics follow SQL and Python's :mod:`statistics` (variance is the
sample variance, ``n − 1`` in the denominator, like ``VAR_SAMP``/``STDDEV``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tessera.analytics.filters import quote_ident
from tessera.analytics.local import ColumnBounds
from tessera.analytics.terms import Term
from tessera.errors import QueryError

Totals = Mapping[str, float]  # term name -> released total, already divided by its scale


def count_term(column: str | None) -> Term:
    if column is None:
        return Term("n", "1", 1, 1)
    return Term(f"n[{column}]", f"CASE WHEN {quote_ident(column)} IS NULL THEN 0 ELSE 1 END", 0, 1)


def sum_term(column: str, b: ColumnBounds) -> Term:
    return Term(f"sum[{column}]", quote_ident(column), b.int_lo, b.int_hi, b.scale)


def sumsq_term(column: str, b: ColumnBounds) -> Term:
    q = quote_ident(column)
    lo, hi = b.int_lo, b.int_hi
    sq_hi = max(lo * lo, hi * hi)
    sq_lo = 0 if lo <= 0 <= hi else min(lo * lo, hi * hi)
    return Term(f"sumsq[{column}]", f"{q} * {q}", sq_lo, sq_hi, b.scale * b.scale)


@dataclass(frozen=True, slots=True)
class Statistic:
    """One requested statistic: ``func(column)``."""

    func: str
    column: str | None = None

    @property
    def label(self) -> str:
        return f"{self.func}({self.column or '*'})"

    def terms(self, bounds: Mapping[str, ColumnBounds]) -> list[Term]:
        spec = _REGISTRY.get(self.func)
        if spec is None:
            raise QueryError(f"unsupported statistic {self.func!r}")
        if self.column is not None and self.column not in bounds:
            raise QueryError(f"column {self.column!r} has no public bounds in this dataset")
        if spec.needs_column and self.column is None:
            raise QueryError(f"{self.func} needs a column")
        return spec.terms(self.column, bounds)

    def decode(self, totals: Totals) -> float:
        return _REGISTRY[self.func].decode(self.column, totals)


@dataclass(frozen=True, slots=True)
class _Spec:
    terms: Callable[[str | None, Mapping[str, ColumnBounds]], list[Term]]
    decode: Callable[[str | None, Totals], float]
    needs_column: bool = True


def _n(col: str | None, t: Totals) -> float:
    return t["n"] if col is None else t[f"n[{col}]"]


def _mean(col: str | None, t: Totals) -> float:
    n = _n(col, t)
    return t[f"sum[{col}]"] / n if n > 0 else math.nan


def _var(col: str | None, t: Totals) -> float:
    n = _n(col, t)
    if n <= 1:
        return math.nan
    s, ss = t[f"sum[{col}]"], t[f"sumsq[{col}]"]
    return max(0.0, (ss - s * s / n) / (n - 1))


def _moments(col: str | None, b: Mapping[str, ColumnBounds]) -> list[Term]:
    assert col is not None
    return [count_term(col), sum_term(col, b[col]), sumsq_term(col, b[col])]


_REGISTRY: dict[str, _Spec] = {
    "count": _Spec(lambda c, b: [count_term(c)], _n, needs_column=False),
    "sum": _Spec(lambda c, b: [sum_term(c, b[c])] if c else [], lambda c, t: t[f"sum[{c}]"]),
    "mean": _Spec(lambda c, b: [count_term(c), sum_term(c, b[c])] if c else [], _mean),
    "var": _Spec(_moments, _var),
    "std": _Spec(_moments, lambda c, t: math.sqrt(_var(c, t))),
}


def supported() -> list[str]:
    return sorted(_REGISTRY)
