"""The statistic interface and the shared term builders (see :mod:`tessera.analytics.terms`).

A statistic names the terms it needs (terms with the same name are computed
once per query, so a mean and a variance of the same column share ``Σx``) and
decodes the released totals, each already divided by its fixed-point scale.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from tessera.analytics.filters import quote_ident
from tessera.analytics.local import ColumnBounds
from tessera.analytics.terms import Centering, Term
from tessera.errors import QueryError

Totals = Mapping[str, float]  # term name -> released total divided by its scale
Bounds = Mapping[str, ColumnBounds]


class Statistic(ABC):
    """One requested statistic."""

    #: name used in policies' allowed-operation lists
    kind: str = ""
    #: whether the result is a quantity (with a 95% interval), not a set or a truth value
    quantitative: bool = True

    @property
    @abstractmethod
    def label(self) -> str: ...

    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """Columns that need public bounds."""

    @abstractmethod
    def terms(self, bounds: Bounds) -> list[Term]: ...

    @abstractmethod
    def decode(self, totals: Totals, bounds: Bounds) -> Any:
        """The statistic from released totals (the same bounds as :meth:`terms` got)."""

    def integer_columns(self) -> tuple[str, ...]:
        """Columns this statistic compares as integers (their precision must be 0 bits)."""
        return ()

    def discretisation(self, bounds: Bounds) -> float:
        """The most this statistic's own discretisation (bins, cells) can move it."""
        return 0.0

    def interval(self, totals: Totals, sd: Mapping[str, float], bounds: Bounds) -> Any | None:
        """Its own 95% interval from the released totals and each term's noise sd (in
        the columns' units), shaped like its value; None: simulate the noise
        (:func:`~tessera.analytics.release.released` does)."""
        return None

    def passes(self, bounds: Bounds, noised: bool) -> int:
        """How many queries this statistic takes (public: fixed before the first runs)."""
        return 1

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        """The statistic of the next pass, from this pass's released totals (with the same
        label); ``totals`` None asks for its shape only (how many terms it will need)."""
        raise QueryError(f"{self.label} takes one pass")

    def check(self, bounds: Bounds) -> None:
        missing = [c for c in self.columns() if c not in bounds]
        if missing:
            raise QueryError(f"{self.label}: column(s) {', '.join(missing)} have no public bounds")


# -- shared terms -----------------------------------------------------------------------
def q(column: str) -> str:
    return quote_ident(column)


def count_term(column: str | None = None) -> Term:
    if column is None:
        return Term("n", "1", 1, 1)
    return Term(f"n[{column}]", f"CASE WHEN {q(column)} IS NULL THEN 0 ELSE 1 END", 0, 1)


def complete_count_term(columns: Sequence[str]) -> Term:
    """Rows where every column is present."""
    cond = " AND ".join(f"{q(c)} IS NOT NULL" for c in sorted(set(columns)))
    return Term(count_name(columns), f"CASE WHEN {cond} THEN 1 ELSE 0 END", 0, 1)


def _present(columns: Sequence[str], expr: str) -> str:
    """``expr`` on rows where every column is present, else 0 (complete-case analysis)."""
    cond = " AND ".join(f"{q(c)} IS NOT NULL" for c in sorted(set(columns)))
    return f"CASE WHEN {cond} THEN {expr} ELSE 0 END"


def _product_bounds(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    prods = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return min(prods), max(prods)


def count_name(columns: Sequence[str]) -> str:
    return f"n[{','.join(sorted(set(columns)))}]"


def sum_name(column: str, within: Sequence[str] = ()) -> str:
    cols = sorted({column, *within})
    return f"sum[{column}]" if len(cols) == 1 else f"sum[{column}|{','.join(cols)}]"


def product_name(a: str, b: str, within: Sequence[str] = ()) -> str:
    a, b = sorted((a, b))
    cols = sorted({a, b, *within})
    base = f"prod[{a},{b}]"
    return base if cols == sorted({a, b}) else f"{base}|{','.join(cols)}"


def sum_term(column: str, bounds: Bounds, within: Sequence[str] = ()) -> Term:
    """``Σ x`` over rows where ``column`` (and every column of ``within``) is present."""
    b = bounds[column]
    cols = sorted({column, *within})
    return Term(
        sum_name(column, within),
        _present(cols, q(column)),
        min(0, b.int_lo),
        max(0, b.int_hi),
        b.scale,
        source=("sum", column, *cols),
        row_rounding=b.resolution / 2,
        count_ref=count_name(cols),
    )


def product_term(a: str, b: str, bounds: Bounds, within: Sequence[str] = ()) -> Term:
    """``Σ a·b`` (``a == b`` gives ``Σ a²``), complete cases over ``{a, b} ∪ within``."""
    a, b = sorted((a, b))
    ba, bb = bounds[a], bounds[b]
    ra, rb = (ba.int_lo, ba.int_hi), (bb.int_lo, bb.int_hi)
    lo, hi = _product_bounds(ra, rb)
    if a == b and ra[0] <= 0 <= ra[1]:
        lo = 0
    cols = sorted({a, b, *within})
    ma, mb = max(abs(ba.lo), abs(ba.hi)), max(abs(bb.lo), abs(bb.hi))
    sa, sb = ba.resolution, bb.resolution
    return Term(
        product_name(a, b, within),
        _present(cols, f"{q(a)}::HUGEINT * {q(b)}"),
        min(0, lo),
        max(0, hi),
        ba.scale * bb.scale,
        source=("prod", a, b, *cols),
        row_rounding=ma * sb / 2 + mb * sa / 2 + sa * sb / 4,
        count_ref=count_name(cols),
    )


def _center(b: ColumnBounds) -> int:
    """The public centre of a column, in its fixed-point units."""
    return (b.int_lo + b.int_hi) // 2


def centre(terms: Sequence[Term], bounds: Bounds) -> list[Term]:
    """The plan's sum and product terms over centred values where it can shift them back.

    A sum is centred when the plan counts the same rows; a product when it also
    sums both columns over them (see :class:`~tessera.analytics.terms.Centering`).
    Everything else is left as it is."""
    names = {t.name for t in terms}
    out = []
    for t in terms:
        kind = t.source[:1]
        if kind == ("sum",):
            col, rows = t.source[1], t.source[2:]
            count = count_name(rows)
            if count in names:
                b, c = bounds[col], _center(bounds[col])
                t = dataclasses.replace(
                    t,
                    sql=_present(rows, f"({q(col)} - {c})"),
                    row_lo=min(0, b.int_lo - c),
                    row_hi=max(0, b.int_hi - c),
                    centering=Centering(count, (), (c / b.scale,)),
                )
        elif kind == ("prod",):
            a, b_, rows = t.source[1], t.source[2], t.source[3:]
            count, sums = count_name(rows), (sum_name(a, rows), sum_name(b_, rows))
            if count in names and all(s_ in names for s_ in sums):
                ba, bb = bounds[a], bounds[b_]
                ca, cb = _center(ba), _center(bb)
                ra, rb = (ba.int_lo - ca, ba.int_hi - ca), (bb.int_lo - cb, bb.int_hi - cb)
                lo, hi = _product_bounds(ra, rb)
                if a == b_:
                    lo = 0
                t = dataclasses.replace(
                    t,
                    sql=_present(rows, f"({q(a)} - {ca})::HUGEINT * ({q(b_)} - {cb})"),
                    row_lo=min(0, lo),
                    row_hi=max(0, hi),
                    centering=Centering(count, sums, (ca / ba.scale, cb / bb.scale)),
                )
        out.append(t)
    return out


def indicator_term(name: str, condition: str, cell: tuple[tuple[str, str], ...] = ()) -> Term:
    """``1[condition]``; ``cell``: the partition cell it counts (see :class:`Term`)."""
    return Term(name, f"CASE WHEN {condition} THEN 1 ELSE 0 END", 0, 1, cell=cell)


def literal(value: float) -> str:
    """A numeric SQL literal (``repr`` keeps full float precision)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise QueryError(f"non-finite literal {value!r}")
    return repr(float(value)) if not float(value).is_integer() else str(int(value))
