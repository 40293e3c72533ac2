"""Query plans as sums of bounded per-row terms (the Drynx encoding, FTPH+20 §V).

Every statistic Tessera computes reduces to a vector of *terms*: per-row
expressions over clipped, fixed-point columns, summed (or OR-ed) over a
provider's rows. A count is ``Σ 1``, a mean needs ``Σ x`` and ``Σ 1``, a
regression ``Σ xᵢxⱼ`` and ``Σ xᵢy``, a histogram ``Σ 1[x ∈ bin]``, a minimum
a bit ``max 1[x = v]`` per domain value. Each term declares the public bounds
of its per-row value, from which follow the provider-level bounds that the
range proofs enforce and the sensitivity that calibrates the noise.

A :class:`Plan` is the ordered list of terms of one query; its
:meth:`Plan.vector_spec` is what :mod:`tessera.protocol.aggregation` needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from tessera.protocol.aggregation import SlotSpec, VectorSpec

if TYPE_CHECKING:
    from tessera.analytics.local import ColumnBounds


class Combine(Enum):
    """How a provider folds a term over its rows."""

    SUM = "sum"  # Σ value: the slot holds the sum, bounded by max_rows · row bounds
    ANY = "any"  # max value over rows of a 0/1 indicator: the slot holds one bit


@dataclass(frozen=True, slots=True)
class Centering:
    """A term summed over values shifted by public centres, and how to shift it back.

    A sum term holds ``Σ (x − c)``; a product term ``Σ (a − c_a)(b − c_b)``. With the
    count ``n`` and the raw sums over the same rows, :meth:`Plan.uncenter` restores
    ``Σ x = Σ (x − c) + c·n`` and ``Σ ab = Σ (a − c_a)(b − c_b) + c_b Σ a + c_a Σ b
    − n c_a c_b``. The shift is exact and public; what it buys is sensitivity: a
    row's centred value is about half as large, a centred product about a quarter,
    so the same privacy budget adds 2 to 8 times less noise where it matters
    (means, variances, covariances, regressions), and statistics that do not
    depend on the origin come out the same."""

    count: str  # the count term over the same rows
    sums: tuple[str, ...]  # a product's two raw sums over the same rows; () for a sum
    centers: tuple[float, ...]  # c, or (c_a, c_b), in the columns' units


@dataclass(frozen=True, slots=True)
class Term:
    """One per-row expression with public integer bounds on each row's value.

    ``sql`` is a DuckDB expression over the provider's (already clipped and
    scaled) columns that yields an integer per row; ``row_lo``/``row_hi``
    bound it; ``scale`` is the fixed-point scale ``2^f`` of the value.
    """

    name: str
    sql: str
    row_lo: int
    row_hi: int
    scale: int = 1
    combine: Combine = Combine.SUM
    #: what the term sums, for centring: ("sum", x, *rows) or ("prod", a, b, *rows)
    source: tuple[str, ...] = ()
    centering: Centering | None = None
    #: the most rounding to fixed point moves one row's value, in the columns' units
    row_rounding: float = 0.0
    #: the count term over the same rows (what multiplies ``row_rounding``)
    count_ref: str = ""
    #: the cells of disjoint partitions a row must fall in for this term to be non-zero,
    #: outermost first: ``(("group[sex]", "'F'"), ("bins[age;…]", "3"))``. Terms of one
    #: partition's different cells never both count one row (see :func:`row_reach`).
    cell: tuple[tuple[str, str], ...] = ()
    #: per-row values ``sql`` refers to by name, each computed once per row before the
    #: terms: ``(("_p", "<expression over the columns>"),)`` (see :meth:`Plan.derived`)
    derived: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.row_hi < self.row_lo:
            raise ValueError(f"term {self.name}: empty row bounds [{self.row_lo}, {self.row_hi}]")
        if self.combine is Combine.ANY and (self.row_lo, self.row_hi) != (0, 1):
            raise ValueError(f"term {self.name}: an ANY term must be a 0/1 indicator")

    def slot(self, max_rows: int) -> SlotSpec:
        """Provider-level bounds of this term's aggregate over at most ``max_rows`` rows.

        The upper end is rounded up so that the span is ``2^k − 1``: the limb range
        proofs then bound the aggregate on their own, with no extra exact-bound proof
        (it would double the proving cost). The aggregate of ``max_rows`` clipped rows
        is what the proof must bound; a slack below 2× that bound changes no guarantee.
        """
        if self.combine is Combine.ANY:
            return SlotSpec(0, 1)
        lo = min(0, self.row_lo * max_rows)
        hi = max(0, self.row_hi * max_rows)
        return SlotSpec(lo, lo + (1 << max(1, (hi - lo).bit_length())) - 1)

    @property
    def sensitivity(self) -> int:
        """Change of the term's total when one row is added or removed."""
        return max(abs(self.row_lo), abs(self.row_hi))


def row_reach(terms: Sequence[Term]) -> int:
    """The most terms one row can make non-zero: what a query's privacy budget is split
    over (:func:`~tessera.protocol.query.noise_plans`).

    A row falls in one cell of each partition, so of a histogram's bins, a quantile's
    window or a GROUP BY's groups it touches one. Terms outside any partition all count;
    for each partition, its fullest cell counts (recursively, for a partition nested in
    another's cell). Partitions side by side are counted as if a row could be in the
    fullest cell of each: an upper bound, so the split never charges less than a row
    can cost."""
    free = 0
    nested: dict[str, dict[str, list[Term]]] = {}
    for t in terms:
        if not t.cell:
            free += 1
            continue
        (partition, cell), rest = t.cell[0], t.cell[1:]
        inner = nested.setdefault(partition, {}).setdefault(cell, [])
        inner.append(_strip(t, rest))
    return free + sum(
        max(row_reach(inside) for inside in cells.values()) for cells in nested.values()
    )


def _strip(term: Term, cell: tuple[tuple[str, str], ...]) -> Term:
    return Term(term.name, term.sql, term.row_lo, term.row_hi, cell=cell)


@dataclass(frozen=True, slots=True)
class Plan:
    """The terms of one query, in slot order, and the bounds they were built from
    (with each column's precision chosen: what a provider scales its columns by)."""

    terms: tuple[Term, ...]
    bounds: Mapping[str, ColumnBounds] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [t.name for t in self.terms]
        if not names:
            raise ValueError("a plan needs at least one term")
        if len(set(names)) != len(names):
            raise ValueError("term names in a plan must be unique")

    def vector_spec(self, max_rows: int) -> VectorSpec:
        if max_rows < 1:
            raise ValueError("max_rows must be positive")
        return VectorSpec(tuple(t.slot(max_rows) for t in self.terms))

    def row_reach(self) -> int:
        """:func:`row_reach` of this plan's terms."""
        return row_reach(self.terms)

    def derived(self) -> list[tuple[str, str]]:
        """The per-row values the terms name, once each, in order of first use."""
        out: dict[str, str] = {}
        for t in self.terms:
            for name, sql in t.derived:
                if out.setdefault(name, sql) != sql:
                    raise ValueError(f"derived value {name} is defined twice, differently")
        return list(out.items())

    def index(self, name: str) -> int:
        for i, t in enumerate(self.terms):
            if t.name == name:
                return i
        raise KeyError(name)

    def uncenter(self, totals: Mapping[str, float]) -> dict[str, float]:
        """The totals of the raw terms from those of the centred ones (see :class:`Centering`)."""
        out = dict(totals)
        for t in self.terms:  # sums first: products need the raw sums
            c = t.centering
            if c is not None and not c.sums:
                out[t.name] = totals[t.name] + c.centers[0] * totals[c.count]
        for t in self.terms:
            c = t.centering
            if c is not None and c.sums:
                (ca, cb), (sa, sb) = c.centers, c.sums
                n = totals[c.count]
                out[t.name] = totals[t.name] + cb * out[sa] + ca * out[sb] - n * ca * cb
        return out

    def select_sql(self) -> str:
        """The aggregate list a provider evaluates in one DuckDB pass."""
        parts = []
        for t in self.terms:
            fold = "MAX" if t.combine is Combine.ANY else "SUM"
            parts.append(f"COALESCE({fold}(({t.sql})::HUGEINT), 0)")
        return ", ".join(parts)
