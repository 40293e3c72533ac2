"""Distribution statistics: histogram over public bins, quantiles by CDF inversion, min and max.

Bins are public (part of the query), so the encrypted vector reveals nothing
beyond the released counts. Quantiles come from a fine histogram: on an
integer domain of at most :data:`EXACT_DOMAIN` values there is one bin per
value and the result equals SQL's ``PERCENTILE_CONT`` exactly; otherwise bins
are equal-width and the value is interpolated within its bin. Minimum and
maximum use one OR-bit per provider and domain cell (Drynx's encoding), so a
provider reveals only which cells are occupied, never how often.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tessera.analytics.local import ColumnBounds
from tessera.analytics.statistic import Bounds, Statistic, Totals, indicator_term, q
from tessera.analytics.terms import Combine, Term
from tessera.errors import QueryError

EXACT_DOMAIN = 1024
DEFAULT_QUANTILE_BINS = 512
DEFAULT_EXTREMA_CELLS = 128


def _int_edges(b: ColumnBounds, edges: Sequence[float]) -> list[int]:
    """Bin edges in the column's fixed-point units (values are compared after scaling)."""
    return [math.ceil(e * b.scale) for e in edges]


def _bin_conditions(column: str, int_edges: Sequence[int]) -> list[str]:
    c = q(column)
    conds = []
    for i in range(len(int_edges) - 1):
        lo, hi = int_edges[i], int_edges[i + 1]
        last = i == len(int_edges) - 2
        conds.append(f"{c} >= {lo} AND {c} {'<=' if last else '<'} {hi}")
    return conds


@dataclass(frozen=True)
class Histogram(Statistic):
    """Counts per public bin ``[e_i, e_{i+1})``, the last bin closed."""

    column: str
    edges: tuple[float, ...]
    kind = "histogram"

    def __post_init__(self) -> None:
        pairs = zip(self.edges, self.edges[1:], strict=False)
        if len(self.edges) < 2 or any(b <= a for a, b in pairs):
            raise QueryError("histogram edges must be at least two strictly increasing values")

    @property
    def label(self) -> str:
        return f"histogram({self.column})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _names(self) -> list[str]:
        e = self.edges
        return [f"bin[{self.column};{e[i]!r};{e[i + 1]!r}]" for i in range(len(e) - 1)]

    def terms(self, bounds: Bounds) -> list[Term]:
        conds = _bin_conditions(self.column, _int_edges(bounds[self.column], self.edges))
        return [indicator_term(n, c) for n, c in zip(self._names(), conds, strict=True)]

    def decode(self, totals: Totals, bounds: Bounds) -> list[float]:
        return [totals[n] for n in self._names()]


def equal_edges(lo: float, hi: float, bins: int) -> tuple[float, ...]:
    if bins < 1:
        raise QueryError("a histogram needs at least one bin")
    return (*tuple(lo + (hi - lo) * i / bins for i in range(bins)), hi)


def _fine_edges(b: ColumnBounds, bins: int | None) -> tuple[tuple[float, ...], bool]:
    """Edges of the fine histogram and whether it has one bin per integer value."""
    span = b.int_hi - b.int_lo
    if bins is None and b.scale == 1 and span + 1 <= EXACT_DOMAIN:
        return tuple(float(v) for v in range(b.int_lo, b.int_hi + 2)), True
    return equal_edges(b.lo, b.hi, bins or DEFAULT_QUANTILE_BINS), False


@dataclass(frozen=True)
class Quantile(Statistic):
    """The ``q``-quantile (``PERCENTILE_CONT``) of a column."""

    column: str
    quantile: float
    bins: int | None = None
    kind = "quantile"

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile <= 1.0:
            raise QueryError(f"quantile {self.quantile} is outside [0, 1]")

    @property
    def label(self) -> str:
        if self.quantile == 0.5:
            return f"median({self.column})"
        return f"quantile({self.column}, {self.quantile:g})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def terms(self, bounds: Bounds) -> list[Term]:
        b = bounds[self.column]
        edges, exact = _fine_edges(b, self.bins)
        if exact:  # one indicator per integer value
            values = range(b.int_lo, b.int_hi + 1)
            return [
                indicator_term(f"eq[{self.column};{v}]", f"{q(self.column)} = {v}") for v in values
            ]
        return Histogram(self.column, edges).terms(bounds)

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        b = bounds[self.column]
        edges, exact = _fine_edges(b, self.bins)
        if exact:
            values = np.arange(b.int_lo, b.int_hi + 1, dtype=float)
            counts = np.array([totals[f"eq[{self.column};{int(v)}]"] for v in values])
            return percentile_cont(values, counts, self.quantile)
        counts = np.array(Histogram(self.column, edges).decode(totals, bounds))
        return binned_quantile(np.array(edges), counts, self.quantile)


def percentile_cont(values: np.ndarray, counts: np.ndarray, quantile: float) -> float:
    """SQL ``PERCENTILE_CONT`` from a frequency table (negative noisy counts taken as 0)."""
    w = np.clip(np.round(counts), 0, None)
    total = float(w.sum())
    if total <= 0:
        return math.nan
    pos = quantile * (total - 1)
    cum = np.cumsum(w)
    lo_idx = int(np.searchsorted(cum, math.floor(pos) + 1))
    hi_idx = int(np.searchsorted(cum, math.ceil(pos) + 1))
    frac = pos - math.floor(pos)
    return float(values[lo_idx] + frac * (values[hi_idx] - values[lo_idx]))


def binned_quantile(edges: np.ndarray, counts: np.ndarray, quantile: float) -> float:
    """Quantile from equal-width bins, assuming values spread uniformly in their bin."""
    w = np.clip(counts, 0, None)
    total = float(w.sum())
    if total <= 0:
        return math.nan
    target = quantile * total
    cum = np.cumsum(w)
    i = min(int(np.searchsorted(cum, target)), len(w) - 1)
    before = cum[i - 1] if i > 0 else 0.0
    frac = 0.0 if w[i] <= 0 else (target - before) / w[i]
    return float(edges[i] + min(max(frac, 0.0), 1.0) * (edges[i + 1] - edges[i]))


def _cells(b: ColumnBounds, cells: int | None) -> list[tuple[int, int]]:
    """Domain cells ``[lo, hi]`` in fixed-point units covering the column's bounds."""
    span = b.int_hi - b.int_lo + 1
    count = min(span, cells or DEFAULT_EXTREMA_CELLS)
    width = -(-span // count)
    out = []
    start = b.int_lo
    while start <= b.int_hi:
        out.append((start, min(start + width - 1, b.int_hi)))
        start += width
    return out


@dataclass(frozen=True)
class _Extremum(Statistic):
    column: str
    cells: int | None = None

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _names(self, b: ColumnBounds) -> list[tuple[str, tuple[int, int]]]:
        return [(f"any[{self.column};{lo};{hi}]", (lo, hi)) for lo, hi in _cells(b, self.cells)]

    def terms(self, bounds: Bounds) -> list[Term]:
        b = bounds[self.column]
        c = q(self.column)
        return [
            Term(n, f"CASE WHEN {c} BETWEEN {lo} AND {hi} THEN 1 ELSE 0 END", 0, 1, 1, Combine.ANY)
            for n, (lo, hi) in self._names(b)
        ]

    def _occupied(self, totals: Totals, b: ColumnBounds) -> list[tuple[int, int]]:
        return [cell for n, cell in self._names(b) if totals[n] > 0.5]


@dataclass(frozen=True)
class Min(_Extremum):
    kind = "min"

    @property
    def label(self) -> str:
        return f"min({self.column})"

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        b = bounds[self.column]
        occ = self._occupied(totals, b)
        return occ[0][0] / b.scale if occ else math.nan


@dataclass(frozen=True)
class Max(_Extremum):
    kind = "max"

    @property
    def label(self) -> str:
        return f"max({self.column})"

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        b = bounds[self.column]
        occ = self._occupied(totals, b)
        return occ[-1][1] / b.scale if occ else math.nan
