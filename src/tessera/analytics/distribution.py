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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tessera.analytics.local import ColumnBounds
from tessera.analytics.statistic import (
    Bounds,
    Statistic,
    Totals,
    count_term,
    indicator_term,
    q,
)
from tessera.analytics.terms import Combine, Term
from tessera.errors import QueryError

EXACT_DOMAIN = 1024
COARSE_BINS = 64  # a quantile's first pass over the bounds
FINE_BINS = 128  # its second pass, over the window around the first estimate
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
        part = f"bins[{self.column};{';'.join(repr(e) for e in self.edges)}]"
        return [
            indicator_term(n, c, ((part, str(i)),))
            for i, (n, c) in enumerate(zip(self._names(), conds, strict=True))
        ]

    def decode(self, totals: Totals, bounds: Bounds) -> list[float]:
        return [totals[n] for n in self._names()]


def equal_edges(lo: float, hi: float, bins: int) -> tuple[float, ...]:
    if bins < 1:
        raise QueryError("a histogram needs at least one bin")
    return (*tuple(lo + (hi - lo) * i / bins for i in range(bins)), hi)


def _exact_domain(b: ColumnBounds, bins: int | None) -> bool:
    """One bin per value: an integer column (precision 0) of at most EXACT_DOMAIN values."""
    return bins is None and b.scale_bits == 0 and b.int_hi - b.int_lo + 1 <= EXACT_DOMAIN


@dataclass(frozen=True)
class Quantile(Statistic):
    """The ``q``-quantile (``PERCENTILE_CONT``) of a column, from histograms.

    On an integer column (precision 0) of at most :data:`EXACT_DOMAIN` values there is
    one indicator per value and the result is SQL's exactly. Otherwise it takes two
    queries (:mod:`tessera.analytics.passes`): :data:`COARSE_BINS` equal bins over the
    bounds, then :data:`FINE_BINS` over the ``window`` of coarse bins that holds the
    order statistics (one more coarse bin each side under noise), with the rows below
    the window counted. The value is placed within its fine bin, so it is off by at
    most one fine bin, at most ``4/(64·128)`` of the range: the ``rounding`` the result
    reports. ``bins`` asks for one pass over that many bins instead.
    """

    column: str
    quantile: float
    bins: int | None = None
    window: tuple[float, float] | None = None
    kind = "quantile"

    def __post_init__(self) -> None:
        if not 0.0 <= self.quantile <= 1.0:
            raise QueryError(f"quantile {self.quantile} is outside [0, 1]")
        if self.bins is not None and self.bins < 1:
            raise QueryError("a quantile needs at least one bin")
        w = self.window
        if w is not None and not (len(w) == 2 and w[0] < w[1]):
            raise QueryError("a quantile's window must be (lo, hi) with lo < hi")

    @property
    def label(self) -> str:
        if self.quantile == 0.5:
            return f"median({self.column})"
        return f"quantile({self.column}, {self.quantile:g})"

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _one_per_value(self, b: ColumnBounds) -> bool:
        return self.window is None and _exact_domain(b, self.bins)

    def _edges(self, b: ColumnBounds) -> tuple[float, ...]:
        if self.window is not None:
            return equal_edges(self.window[0], self.window[1], FINE_BINS)
        return equal_edges(b.lo, b.hi, self.bins or COARSE_BINS)

    def _prefix(self) -> str:
        w = "" if self.window is None else f";{self.window[0]!r};{self.window[1]!r}"
        return f"{self.column}{w}"

    def _names(self, b: ColumnBounds) -> list[str]:
        bins = len(self._edges(b)) - 1  # in the name: quantiles over other bins differ
        return [f"qbin[{self._prefix()};{bins};{i}]" for i in range(bins)]

    def terms(self, bounds: Bounds) -> list[Term]:
        b = bounds[self.column]
        c = q(self.column)
        if self._one_per_value(b):
            values = range(b.int_lo, b.int_hi + 1)
            part = f"eq[{self.column}]"
            return [
                indicator_term(f"eq[{self.column};{v}]", f"{c} = {v}", ((part, str(v)),))
                for v in values
            ]
        ints = _int_edges(b, self._edges(b))
        part = f"qbins[{self._prefix()};{len(ints) - 1}]"  # the bins and the rows below
        out = [count_term(self.column)]
        if self.window is not None:
            below = f"{c} < {ints[0]}"
            out.append(indicator_term(f"below[{self._prefix()}]", below, ((part, "below"),)))
        conds = _bin_conditions(self.column, ints)
        if self.window is not None:  # inside a window the last bin is half-open too
            conds[-1] = f"{c} >= {ints[-2]} AND {c} < {ints[-1]}"
        return out + [
            indicator_term(n, k, ((part, str(i)),))
            for i, (n, k) in enumerate(zip(self._names(b), conds, strict=True))
        ]

    def _counts(self, totals: Totals, b: ColumnBounds) -> tuple[float, float, np.ndarray]:
        counts = np.array([totals[n] for n in self._names(b)])
        below = totals[f"below[{self._prefix()}]"] if self.window is not None else 0.0
        return totals[count_term(self.column).name], below, counts

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        b = bounds[self.column]
        if self._one_per_value(b):
            values = np.arange(b.int_lo, b.int_hi + 1, dtype=float)
            counts = np.array([totals[f"eq[{self.column};{int(v)}]"] for v in values])
            return percentile_cont(values, counts, self.quantile)
        n, below, counts = self._counts(totals, b)
        return located_quantile(np.array(self._edges(b)), counts, below, n, self.quantile)

    def interval(
        self, totals: Totals, sd: Mapping[str, float], bounds: Bounds
    ) -> tuple[float, float] | None:
        """By inverting the CDF's pointwise 95% band (binned quantiles only).

        The running total of the raw noisy counts up to each edge is unbiased, with the
        sum of their noise variances; the rank ``q(n − 1)`` adds the count's. The
        interval runs from where the band's upper edge first reaches the rank to where
        its lower edge last leaves it below (the noisy band may cross the rank more
        than once: the outermost crossings are taken), widened by half a bin each side
        (the value is placed within its bin) and always holding the released value.
        Simulating the noise around the released counts instead covers far less than
        95% in a sparse window, where the CDF's noise and the monotone fit interact."""
        b = bounds[self.column]
        if self._one_per_value(b):
            return None
        edges = np.array(self._edges(b))
        n, below, counts = self._counts(totals, b)
        names = self._names(b)
        var_bins = np.array([sd.get(name, 0.0) ** 2 for name in names])
        var_below = sd.get(f"below[{self._prefix()}]", 0.0) ** 2 if self.window else 0.0
        var_n = sd.get(count_term(self.column).name, 0.0) ** 2
        cdf = np.concatenate([[below], below + np.cumsum(counts)])
        band = 1.96 * np.sqrt(
            np.concatenate([[var_below], var_below + np.cumsum(var_bins)])
            + (self.quantile**2) * var_n
        )
        rank = self.quantile * (n - 1)
        point = self.decode(totals, bounds)
        width = float(edges[1] - edges[0])
        lo = _first_reach(edges, cdf + band, rank) - width / 2
        hi = _last_below(edges, cdf - band, rank) + width / 2
        lo, hi = max(float(edges[0]), lo), min(float(edges[-1]), hi)
        if math.isfinite(point):
            lo, hi = min(lo, point), max(hi, point)
        return (lo, hi)

    def discretisation(self, bounds: Bounds) -> float:
        b = bounds[self.column]
        if self._one_per_value(b):
            return 0.0
        e = self._edges(b)
        return (e[-1] - e[0]) / (len(e) - 1)

    def passes(self, bounds: Bounds, noised: bool) -> int:
        one = self._one_per_value(bounds[self.column]) or self.bins is not None
        return 1 if one or self.window is not None else 2

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        """The second pass: fine bins over the coarse bins that hold the order statistics
        (``totals`` None: the shape of that pass only, for the budget split)."""
        b = bounds[self.column]
        edges = self._edges(b)
        if totals is None:
            return Quantile(self.column, self.quantile, None, (edges[0], edges[1]))
        n, _, counts = self._counts(totals, b)
        n = max(n, 1.0)
        cum = monotone_cumsum(counts)
        cum = cum * (n / max(float(cum[-1]), 1.0))  # bins rescaled to the count
        w = np.diff(cum, prepend=0.0)
        pos = self.quantile * (n - 1)
        first = int(np.searchsorted(cum, math.floor(pos), side="right"))
        last = int(np.searchsorted(cum, math.ceil(pos), side="right"))
        margin = 1 if noised else 0
        first = max(0, min(first, len(w) - 1) - margin)
        last = min(len(w) - 1, max(last, first) + margin)
        return Quantile(self.column, self.quantile, None, (edges[first], edges[last + 1]))


def _crossing(edges: np.ndarray, cdf: np.ndarray, k: int, rank: float) -> float:
    """Where ``cdf`` (linear between edges ``k`` and ``k + 1``) meets ``rank``."""
    step = cdf[k + 1] - cdf[k]
    frac = min(max((rank - cdf[k]) / step, 0.0), 1.0) if step != 0 else 0.0
    return float(edges[k] + frac * (edges[k + 1] - edges[k]))


def _first_reach(edges: np.ndarray, cdf: np.ndarray, rank: float) -> float:
    """Where ``cdf`` (at ``edges``, linear between) first reaches ``rank``: the first
    edge if it starts there, the last if it never does."""
    hits = np.flatnonzero(cdf >= rank)
    if len(hits) == 0:
        return float(edges[-1])
    k = int(hits[0])
    return float(edges[0]) if k == 0 else _crossing(edges, cdf, k - 1, rank)


def _last_below(edges: np.ndarray, cdf: np.ndarray, rank: float) -> float:
    """Where ``cdf`` last leaves ``rank`` from below: the last edge if it ends below,
    the first if it never is."""
    below = np.flatnonzero(cdf < rank)
    if len(below) == 0:
        return float(edges[0])
    k = int(below[-1])
    return float(edges[-1]) if k == len(cdf) - 1 else _crossing(edges, cdf, k, rank)


def monotone_cumsum(counts: np.ndarray, start: float = 0.0) -> np.ndarray:
    """The running totals ``start + Σ_{i≤k} counts_i`` made non-decreasing by isotonic
    regression (pool adjacent violators), and at least ``start``.

    Noisy counts cannot be taken one by one: clipping each negative one at 0 inflates
    every sparse region and shifts a quantile by many bins (a 95% interval then covers
    2% of the time). The running total of the raw counts is unbiased; its closest
    non-decreasing sequence in least squares keeps it so where it is already monotone
    (always, without noise) and is a CDF to invert."""
    raw = np.cumsum(np.asarray(counts, dtype=np.float64)) + start
    means: list[float] = []
    sizes: list[int] = []
    for v in raw:
        means.append(float(v))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size
            sizes[-2] = size
            means.pop()
            sizes.pop()
    out: np.ndarray = np.maximum(np.repeat(means, sizes), start)
    return out


def percentile_cont(values: np.ndarray, counts: np.ndarray, quantile: float) -> float:
    """SQL ``PERCENTILE_CONT`` from a frequency table (noisy counts through
    :func:`monotone_cumsum`)."""
    cum = monotone_cumsum(counts)
    total = float(cum[-1]) if len(cum) else 0.0
    if total <= 0:
        return math.nan
    pos = quantile * (total - 1)
    lo_idx = int(np.searchsorted(cum, math.floor(pos) + 1))
    hi_idx = int(np.searchsorted(cum, math.ceil(pos) + 1))
    frac = pos - math.floor(pos)
    return float(values[lo_idx] + frac * (values[hi_idx] - values[lo_idx]))


def located_quantile(
    edges: np.ndarray, counts: np.ndarray, below: float, n: float, quantile: float
) -> float:
    """``PERCENTILE_CONT`` from bin counts: the order statistics at ranks ``⌊q(n−1)⌋`` and
    ``⌈q(n−1)⌉`` (``below`` rows under the first edge, ``n`` rows in all), each placed
    within its bin as if the bin's values were spread evenly, then interpolated. Noisy
    counts are cumulated by :func:`monotone_cumsum`."""
    below = min(max(below, 0.0), n)
    cum = monotone_cumsum(counts, below)
    if n < 1 or float(cum[-1]) <= below:
        return math.nan
    width = (edges[-1] - edges[0]) / len(cum)

    def at(k: int) -> float:
        if k < below:
            return float(edges[0])
        if k >= cum[-1]:  # above the window
            return float(edges[-1])
        i = min(int(np.searchsorted(cum, k, side="right")), len(cum) - 1)
        before = cum[i - 1] if i > 0 else below
        inside = (cum[i] - before) or 1.0
        frac = min(max((k - before + 0.5) / inside, 0.0), 1.0)
        return float(edges[i] + frac * width)

    pos = quantile * (n - 1)
    lo, hi = at(math.floor(pos)), at(math.ceil(pos))
    return lo + (pos - math.floor(pos)) * (hi - lo)


def _cells(
    b: ColumnBounds, cells: int | None, window: tuple[float, float] | None = None
) -> list[tuple[int, int]]:
    """Domain cells ``[lo, hi]`` in fixed-point units covering the bounds (or ``window``)."""
    first, last = b.int_lo, b.int_hi
    if window is not None:
        first = max(first, math.ceil(window[0] * b.scale))
        last = min(last, math.floor(window[1] * b.scale))
    span = max(last - first + 1, 1)
    count = min(span, cells or DEFAULT_EXTREMA_CELLS)
    width = -(-span // count)
    out = []
    start = first
    while start <= last:
        out.append((start, min(start + width - 1, last)))
        start += width
    return out or [(first, first)]


@dataclass(frozen=True)
class _Extremum(Statistic):
    """One OR-bit per cell; without explicit ``cells``, a second pass over the cell found
    first (with :data:`DEFAULT_EXTREMA_CELLS` cells each time: ``1/128²`` of the range)."""

    column: str
    cells: int | None = None
    window: tuple[float, float] | None = None

    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _names(self, b: ColumnBounds) -> list[tuple[str, tuple[int, int]]]:
        return [
            (f"any[{self.column};{lo};{hi}]", (lo, hi))
            for lo, hi in _cells(b, self.cells, self.window)
        ]

    def terms(self, bounds: Bounds) -> list[Term]:
        b = bounds[self.column]
        c = q(self.column)
        names = self._names(b)
        part = f"cells[{self.column};{names[0][1][0]};{names[-1][1][1]};{len(names)}]"
        return [
            Term(
                n,
                f"CASE WHEN {c} BETWEEN {lo} AND {hi} THEN 1 ELSE 0 END",
                0,
                1,
                1,
                Combine.ANY,
                cell=((part, str(lo)),),
            )
            for n, (lo, hi) in names
        ]

    def discretisation(self, bounds: Bounds) -> float:
        """A cell's width: the value is a cell's end (and a step of the precision)."""
        b = bounds[self.column]
        lo, hi = _cells(b, self.cells, self.window)[0]
        return (hi - lo) / b.scale

    def passes(self, bounds: Bounds, noised: bool) -> int:
        if self.cells is not None or self.window is not None:
            return 1
        lo, hi = _cells(bounds[self.column], None)[0]
        return 1 if hi == lo else 2

    def _pick(self, occupied: list[tuple[int, int]]) -> tuple[int, int]:
        raise NotImplementedError

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        b = bounds[self.column]
        cells = _cells(b, self.cells, self.window)
        occ = cells if totals is None else self._occupied(totals, b) or cells
        lo, hi = self._pick(occ)
        return type(self)(self.column, None, (lo / b.scale, hi / b.scale))

    def _occupied(self, totals: Totals, b: ColumnBounds) -> list[tuple[int, int]]:
        return [cell for n, cell in self._names(b) if totals[n] > 0.5]


@dataclass(frozen=True)
class Min(_Extremum):
    kind = "min"

    @property
    def label(self) -> str:
        return f"min({self.column})"

    def _pick(self, occupied: list[tuple[int, int]]) -> tuple[int, int]:
        return occupied[0]

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

    def _pick(self, occupied: list[tuple[int, int]]) -> tuple[int, int]:
        return occupied[-1]

    def decode(self, totals: Totals, bounds: Bounds) -> float:
        b = bounds[self.column]
        occ = self._occupied(totals, b)
        return occ[-1][1] / b.scale if occ else math.nan
