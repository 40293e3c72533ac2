"""Fixed-point precision chosen per query from public bounds and the plaintext capacity.

Providers encrypt integers, so a real column ``x`` travels as ``round(x · 2^f)``. The
precision ``f`` of every column is fixed in the query's ticket
(:attr:`tessera.protocol.query.QueryTicket.precision`) before anyone encodes, and it is
a function of public things only: the column's bounds, the statistics asked, the
public maximum of rows, whether the query is noised. Never of the data.

* **Exact mode** (no noise): the finest ``f`` whose centred square ``Σ (x − c)²`` over
  ``max_rows`` rows still fits in :data:`EXACT_PRODUCT_LIMBS` limbs of the aggregation's
  ``limb_bits`` (one bit to spare, for cross products of two such columns), with ``|x|·2^f``
  exact in a double. With the default 21-bit limbs and a million rows a column's span
  is resolved into ``2^32`` steps: rounding moves a mean by at most ``2^-33`` of the span.
* **Under differential privacy** the noise dwarfs such a resolution; the span is
  resolved into ``2^DP_SPAN_BITS`` steps, so one row's rounding is ``2^-17`` of its
  contribution, far below the noise calibrated to that contribution, and the noise
  needs fewer limbs.
* A column a statistic compares as an integer (a boolean condition) gets ``f = 0``.
* A precision named in the bounds (``ColumnBounds(lo, hi, scale_bits)``) is kept.

What rounding can do to each released value is bounded by :func:`term_rounding` and
reported by the release (``QueryResult.rounding``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tessera.analytics.local import MAX_SCALE_BITS, ColumnBounds
from tessera.analytics.statistic import Statistic
from tessera.analytics.terms import Plan
from tessera.errors import QueryError
from tessera.protocol.aggregation import DEFAULT_LIMB_BITS

#: limbs a centred product term may take in exact mode (the plaintext capacity spent)
EXACT_PRODUCT_LIMBS = 4
#: under differential privacy, a column's span is resolved into 2^DP_SPAN_BITS steps
DP_SPAN_BITS = 16
#: magnitudes of scaled values stay below 2^DOUBLE_BITS (exact in DuckDB's double)
DOUBLE_BITS = 52
#: the public maximum of rows assumed when a query has not been addressed yet
DEFAULT_MAX_ROWS = 1_000_000


def _log2_ceil(x: float) -> int:
    return math.ceil(math.log2(x)) if x > 1 else 0 if x == 1 else -math.floor(-math.log2(x))


def _centred_square_bits(b: ColumnBounds, f: int, max_rows: int) -> int:
    """Bits of the slot of ``Σ (x − c)²`` over ``max_rows`` rows at precision ``f``."""
    scale = 1 << f
    lo, hi = math.ceil(b.lo * scale), math.floor(b.hi * scale)
    c = (lo + hi) // 2
    top = max((hi - c) ** 2, (lo - c) ** 2, 1)
    return (top * max_rows).bit_length()


def _magnitude_cap(b: ColumnBounds) -> int:
    m = max(abs(b.lo), abs(b.hi))
    if m == 0:
        return MAX_SCALE_BITS
    return max(0, min(MAX_SCALE_BITS, DOUBLE_BITS - _log2_ceil(m) - 1))


def exact_bits(b: ColumnBounds, max_rows: int, limb_bits: int = DEFAULT_LIMB_BITS) -> int:
    """The finest precision whose centred squares fit the exact-mode capacity."""
    budget = EXACT_PRODUCT_LIMBS * limb_bits - 1
    f = _magnitude_cap(b)
    while f > 0 and _centred_square_bits(b, f, max_rows) > budget:
        f -= 1
    return f


def dp_bits(b: ColumnBounds, max_rows: int, limb_bits: int = DEFAULT_LIMB_BITS) -> int:
    span = b.hi - b.lo
    want = DP_SPAN_BITS - (_log2_ceil(span) if span > 0 else 0)
    return max(0, min(want, exact_bits(b, max_rows, limb_bits)))


def integer_columns(stats: Sequence[Statistic]) -> set[str]:
    return {c for s in stats for c in s.integer_columns()}


def choose_precision(
    stats: Sequence[Statistic],
    bounds: Mapping[str, ColumnBounds],
    max_rows: int,
    noised: bool,
) -> dict[str, int]:
    """Per numeric column, the fixed-point bits of this query (see the module docstring)."""
    ints = integer_columns(stats)
    out = {}
    for col, b in sorted(bounds.items()):
        if b.scale_bits is not None:
            out[col] = b.scale_bits
        elif col in ints:
            out[col] = 0
        else:
            out[col] = dp_bits(b, max_rows) if noised else exact_bits(b, max_rows)
    return out


def check_precision(
    stats: Sequence[Statistic],
    bounds: Mapping[str, ColumnBounds],
    precision: Mapping[str, int],
) -> None:
    """Refuse a ticket's precision that the bounds or the statistics do not allow."""
    if set(precision) != set(bounds):
        raise QueryError("the ticket's precision must name every bounded column, and only those")
    ints = integer_columns(stats)
    for col, bits in precision.items():
        b = bounds[col]
        if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= MAX_SCALE_BITS:
            raise QueryError(f"precision of {col}: {bits!r} bits is outside [0, {MAX_SCALE_BITS}]")
        if b.scale_bits is not None and bits != b.scale_bits:
            raise QueryError(f"{col} has a published precision of {b.scale_bits} bits, not {bits}")
        if bits > _magnitude_cap(b) and b.scale_bits is None:
            raise QueryError(f"precision of {col}: 2^{bits} overflows the bounds' magnitude")
        if col in ints and bits != 0:
            raise QueryError(f"{col} is compared as an integer: its precision must be 0 bits")


def resolve(
    bounds: Mapping[str, ColumnBounds], precision: Mapping[str, int]
) -> dict[str, ColumnBounds]:
    """The bounds with each column's precision fixed."""
    return {c: b.with_bits(precision[c]) if c in precision else b for c, b in bounds.items()}


def term_rounding(plan: Plan, counts: Mapping[str, float]) -> dict[str, float]:
    """Per term, the most that rounding each value to its column's resolution can move
    the raw (uncentred) total, in the column's units: ``N`` times the term's
    ``row_rounding`` (half a step for a sum, ``M_a·r_b/2 + M_b·r_a/2 + r_a·r_b/4`` for a
    product, ``M`` a column's largest magnitude). ``N`` is ``counts`` of the count term
    over the same rows (the released count, plus a margin for its noise); unbounded if
    the plan has no such count. Counts and indicators are not rounded."""
    out: dict[str, float] = {}
    for t in plan.terms:
        if t.row_rounding <= 0:
            continue
        n = counts.get(t.count_ref, math.inf)
        out[t.name] = n * t.row_rounding
    return out
