"""A data provider's local evaluation of a plan with DuckDB: filter, clip, scale, sum.

The provider's table never leaves it: only the integer term totals do (and
those only encrypted). Columns are clipped to their public bounds and scaled
to fixed point in one SQL view; what was clipped is counted and reported to
the provider. The analyst's WHERE clause is parsed and re-rendered from a
whitelisted syntax tree (:func:`tessera.analytics.filters.compile_filter`), so
no analyst text reaches DuckDB verbatim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from tessera.analytics.filters import compile_filter, quote_ident
from tessera.analytics.terms import Plan

if TYPE_CHECKING:
    from tessera.analytics.grouping import GroupKey
from tessera.errors import ConfigError, PolicyViolation, QueryError

MAX_SCALE_BITS = 52  # a scaled value must stay exact in DuckDB's double before it is rounded


@dataclass(frozen=True, slots=True)
class ColumnBounds:
    """Public bounds of a column and its fixed-point scale ``2^scale_bits``.

    ``scale_bits=None`` (the default) leaves the precision to each query: it is chosen
    from the bounds and the plaintext capacity (:mod:`tessera.analytics.precision`)
    and written into the query's ticket, so every provider scales alike. A number
    names the precision explicitly (``0``: an integer column, exact)."""

    lo: float
    hi: float
    scale_bits: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.hi < self.lo:
            raise ValueError(f"column bounds [{self.lo}, {self.hi}] must be finite and ordered")
        if self.scale_bits is not None and not 0 <= self.scale_bits <= MAX_SCALE_BITS:
            raise ValueError(
                f"scale_bits must be in [0, {MAX_SCALE_BITS}] or None (chosen per query)"
            )

    @property
    def chosen(self) -> bool:
        """Whether the precision is fixed (explicitly, or by a query's ticket)."""
        return self.scale_bits is not None

    def with_bits(self, scale_bits: int) -> ColumnBounds:
        return ColumnBounds(self.lo, self.hi, scale_bits)

    @property
    def bits(self) -> int:
        if self.scale_bits is None:
            raise QueryError(
                f"column bounds [{self.lo}, {self.hi}]: the precision is chosen per query "
                "(QueryTicket.precision); use the ticket's bounds"
            )
        return self.scale_bits

    @property
    def scale(self) -> int:
        return 1 << self.bits

    @property
    def resolution(self) -> float:
        """The fixed-point step: each value is rounded to a multiple of it."""
        return 1.0 / self.scale

    @property
    def int_lo(self) -> int:
        return math.ceil(self.lo * self.scale)

    @property
    def int_hi(self) -> int:
        return math.floor(self.hi * self.scale)


@dataclass(frozen=True, slots=True)
class LocalResult:
    """A provider's term totals (secret: only ever sent encrypted) and its own report."""

    values: tuple[int, ...]
    rows: int
    clipped: Mapping[str, int] = field(default_factory=dict)


TableSource = Any  # a pandas / polars DataFrame, a pyarrow Table, or a CSV / Parquet path


class LocalDatabase:
    """A provider's tables, opened in its own in-memory DuckDB."""

    def __init__(self, tables: Mapping[str, TableSource]) -> None:
        self._con = duckdb.connect(":memory:")
        self._tables: set[str] = set()
        for name, source in tables.items():
            self.add(name, source)

    def add(self, name: str, source: TableSource) -> None:
        if not name.isidentifier():
            raise ConfigError(f"table name {name!r} is not a plain identifier")
        ident = quote_ident(name)
        try:
            if isinstance(source, str | Path):
                path = Path(source)
                if not path.exists():
                    raise ConfigError(f"table {name}: no such file {path}")
                reader = {
                    ".csv": "read_csv_auto",
                    ".parquet": "read_parquet",
                    ".pq": "read_parquet",
                }.get(path.suffix.lower())
                if reader is None:
                    raise ConfigError(f"table {name}: unsupported file type {path.suffix!r}")
                self._con.execute(
                    f"CREATE OR REPLACE TABLE {ident} AS SELECT * FROM {reader}(?)", [str(path)]
                )
            else:
                self._con.register("_tessera_src", source)
                self._con.execute(f"CREATE OR REPLACE TABLE {ident} AS SELECT * FROM _tessera_src")
                self._con.unregister("_tessera_src")
        except duckdb.Error as exc:
            raise ConfigError(f"table {name}: cannot be loaded: {exc}") from exc
        self._tables.add(name)

    def columns(self, table: str) -> list[str]:
        self._check_table(table)
        rows = self._con.execute(f"DESCRIBE {quote_ident(table)}").fetchall()
        return [str(r[0]) for r in rows]

    def row_count(self, table: str) -> int:
        """All the rows of ``table`` (no filter)."""
        self._check_table(table)
        row = self._con.execute(f"SELECT COUNT(*) FROM {quote_ident(table)}").fetchone()
        assert row is not None
        return int(row[0])

    def matrix(self, table: str, columns: Sequence[str], where: str | None = None) -> np.ndarray:
        """The filtered rows of ``columns`` as one float64 array (rows × columns), for a
        provider's local training. A missing value is refused, naming its column: a
        training has no rule to fill it and must not drop rows unseen."""
        self._check_table(table)
        present = set(self.columns(table))
        missing = [c for c in columns if c not in present]
        if missing:
            raise PolicyViolation(f"table {table} has no column(s) {', '.join(missing)}")
        cond = compile_filter(where, present) if where else "TRUE"
        cols = ", ".join(f"CAST({quote_ident(c)} AS DOUBLE) AS {quote_ident(c)}" for c in columns)
        try:
            data = self._con.execute(
                f"SELECT {cols} FROM {quote_ident(table)} WHERE {cond}"
            ).fetchnumpy()
        except duckdb.Error as exc:
            raise PolicyViolation(f"table {table}: the columns cannot be read: {exc}") from exc
        out = []
        for c in columns:
            col = data[c]
            if np.ma.isMaskedArray(col) and bool(np.ma.getmaskarray(col).any()):
                raise PolicyViolation(f"table {table}: column {c} has missing values")
            values = np.asarray(np.ma.getdata(col), dtype=np.float64)
            if not np.isfinite(values).all():
                raise PolicyViolation(f"table {table}: column {c} has non-finite values")
            out.append(values)
        return np.stack(out, axis=1) if out else np.zeros((0, 0))

    def _check_table(self, table: str) -> None:
        if table not in self._tables:
            raise PolicyViolation(f"no table named {table!r} at this provider")

    def evaluate(
        self,
        plan: Plan,
        table: str,
        bounds: Mapping[str, ColumnBounds],
        where: str | None = None,
        extra_columns: Sequence[str] = (),
    ) -> LocalResult:
        """Term totals over the filtered rows, with columns clipped and scaled."""
        self._check_table(table)
        present = set(self.columns(table))
        missing = [c for c in [*bounds, *extra_columns] if c not in present]
        if missing:
            raise PolicyViolation(f"table {table} has no column(s) {', '.join(missing)}")
        cond = compile_filter(where, present) if where else "TRUE"
        scaled = []
        clip_counts = []
        for col, published in bounds.items():
            b = plan.bounds.get(col, published)
            if (b.lo, b.hi) != (published.lo, published.hi):
                raise PolicyViolation(f"the query's bounds of {col} are not the table's")
            if published.chosen and b.scale_bits != published.scale_bits:
                raise PolicyViolation(
                    f"the query scales {col} by 2^{b.scale_bits}, "
                    f"the table fixes 2^{published.scale_bits}"
                )
            if not b.chosen:  # a column the plan does not use: scaled as an integer
                b = b.with_bits(0)
            q = quote_ident(col)
            scaled.append(
                f"CAST(ROUND(LEAST(GREATEST({q}::DOUBLE, {b.lo!r}), {b.hi!r}) * {b.scale}) "
                f"AS BIGINT) AS {q}"
            )
            clip_counts.append(f"SUM(CASE WHEN {q} < {b.lo!r} OR {q} > {b.hi!r} THEN 1 ELSE 0 END)")
        passthrough = [quote_ident(c) for c in extra_columns if c not in bounds]
        view_cols = ", ".join([*scaled, *passthrough]) or "1 AS _one"
        src = quote_ident(table)
        derived = "".join(f", {sql} AS {quote_ident(name)}" for name, sql in plan.derived())
        sql = (
            f"WITH base AS (SELECT * FROM {src} WHERE {cond}), "
            f"clipped AS (SELECT {view_cols} FROM base), "
            f"derived AS (SELECT *{derived} FROM clipped) "
            f"SELECT COUNT(*), {plan.select_sql()} FROM derived"
        )
        try:
            row = self._con.execute(sql).fetchone()
            clip_row = (
                self._con.execute(
                    f"SELECT {', '.join(clip_counts)} FROM {src} WHERE {cond}"
                ).fetchone()
                if clip_counts
                else ()
            )
        except duckdb.Error as exc:
            raise PolicyViolation(f"query cannot be evaluated on table {table}: {exc}") from exc
        assert row is not None
        clipped = {col: int(v or 0) for col, v in zip(bounds, clip_row or (), strict=False)}
        return LocalResult(tuple(int(v) for v in row[1:]), int(row[0]), clipped)


BoundsSpec = Any  # ColumnBounds | (lo, hi) | a list of categorical keys


def column_spec(spec: BoundsSpec) -> ColumnBounds | tuple[GroupKey, ...]:
    """A column's public bounds from ``(lo, hi)`` (precision chosen per query), a
    :class:`ColumnBounds` (which may fix the precision), or a categorical column's list
    of public keys."""
    if isinstance(spec, ColumnBounds):
        return spec
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
    ):
        lo, hi = spec
        return ColumnBounds(float(lo), float(hi))
    if isinstance(spec, list | tuple | set | frozenset):
        return tuple(sorted(spec, key=repr))  # a categorical column's public key set
    raise ValueError(f"bounds must be (lo, hi), a ColumnBounds or a list of keys, got {spec!r}")
