"""SQL to a Tessera query, and its result shaped like SQL's (sqlglot, DuckDB).

``SELECT <group columns and aggregates> FROM <table> [WHERE] [GROUP BY] [HAVING]
[ORDER BY] [LIMIT [OFFSET]]``. The aggregates become statistics of one encrypted query
over every provider's rows; ``WHERE`` filters rows at each provider. ``HAVING``,
``ORDER BY``, ``LIMIT`` and ``OFFSET`` act on the *released* values, after the query:
post-processing of the release (no privacy cost, and under noise they see the noisy
values, as anyone holding the release could). Aliases name the result's columns
(:func:`to_frame`: one row per group, one column per select item, each value's 95%
interval in the two columns after it).

Only aggregates over one table make sense when no row may leave its provider: a
``JOIN``, ``SELECT *``, ``COUNT(DISTINCT …)`` and the like are refused with a
:class:`~tessera.errors.QueryError` that says why and what to ask instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from tessera.analytics.distribution import Max, Min, Quantile
from tessera.analytics.moments import (
    Correlation,
    CosineSimilarity,
    Count,
    Covariance,
    Mean,
    Std,
    Sum,
    Variance,
)
from tessera.analytics.statistic import Statistic
from tessera.errors import QueryError

if TYPE_CHECKING:
    from tessera.analytics.release import QueryResult


@dataclass(frozen=True, slots=True)
class SelectItem:
    """One output column: a group column, or an aggregate (``hidden``: asked for by
    ``HAVING`` or ``ORDER BY`` only, not shown)."""

    name: str
    statistic: Statistic | None = None
    column: str | None = None
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    table: str
    statistics: tuple[Statistic, ...]
    where: str | None
    group_by: tuple[str, ...] = ()
    items: tuple[SelectItem, ...] = ()
    having: str | None = None  # over the output columns, in DuckDB's SQL
    order: str | None = None
    limit: int | None = None
    offset: int | None = None

    def label(self, stat: Statistic) -> str:
        """The statistic's label in the result (``… BY b BY a`` for ``GROUP BY a, b``)."""
        return stat.label + "".join(f" BY {c}" for c in reversed(self.group_by))

    def alias(self, name: str) -> str | None:
        """The result label of an output column's name, if it is an aggregate's."""
        for item in self.items:
            if item.name == name and item.statistic is not None:
                return self.label(item.statistic)
        return None


DISTINCT_REFUSED = (
    "{name}(DISTINCT ...) is not supported: distinct values across providers would need "
    "every provider's set of values, which is row data; for the distinct values of a public "
    "domain use set_union(table, column, domain), for counts per public key GROUP BY"
)


def _column_arg(fn: exp.Expr, name: str) -> str:
    arg = fn.this if hasattr(fn, "this") else None
    if isinstance(arg, exp.Distinct):
        raise QueryError(DISTINCT_REFUSED.format(name=name))
    if not isinstance(arg, exp.Column) or arg.table:
        shown = arg.sql() if isinstance(arg, exp.Expr) else "nothing"
        raise QueryError(f"{name} takes one plain column, got {shown}")
    return str(arg.name)


def _count(fn: exp.Expr) -> Statistic:
    arg = fn.this if hasattr(fn, "this") else None
    if arg is None or isinstance(arg, exp.Star):
        return Count()
    return Count(_column_arg(fn, "COUNT"))


def _one(cls: Callable[[str], Statistic], sql_name: str) -> Callable[[exp.Expr], Statistic]:
    def build(fn: exp.Expr) -> Statistic:
        return cls(_column_arg(fn, sql_name))

    return build


def _two(
    cls: Callable[[tuple[str, ...]], Statistic], sql_name: str
) -> Callable[[exp.Expr], Statistic]:
    def build(fn: exp.Expr) -> Statistic:
        a = _column_arg(fn, sql_name)
        other = fn.args.get("expression")
        if not isinstance(other, exp.Column) or other.table:
            raise QueryError(f"{sql_name} takes two plain columns")
        return cls((a, str(other.name)))

    return build


def _median(fn: exp.Expr) -> Statistic:
    return Quantile(_column_arg(fn, "MEDIAN"), 0.5)


def _within_group(fn: exp.Expr) -> Statistic:
    inner = fn.this
    order = fn.args.get("expression")
    if not isinstance(inner, exp.PercentileCont | exp.PercentileDisc):
        raise QueryError(f"unsupported WITHIN GROUP aggregate: {inner.sql()}")
    if isinstance(inner, exp.PercentileDisc):
        raise QueryError("PERCENTILE_DISC is not supported; use PERCENTILE_CONT")
    frac = inner.this
    if not isinstance(frac, exp.Literal) or frac.is_string:
        raise QueryError("PERCENTILE_CONT takes a numeric literal fraction")
    if not isinstance(order, exp.Order) or len(order.expressions) != 1:
        raise QueryError("WITHIN GROUP needs ORDER BY one column")
    col = order.expressions[0].this
    if not isinstance(col, exp.Column) or col.table:
        raise QueryError("WITHIN GROUP (ORDER BY ...) takes one plain column")
    return Quantile(str(col.name), float(frac.this))


def _quantile_fn(fn: exp.Expr) -> Statistic:
    col = _column_arg(fn, "QUANTILE_CONT")
    frac = fn.args.get("expression")
    if not isinstance(frac, exp.Literal) or frac.is_string:
        raise QueryError("QUANTILE_CONT takes a numeric literal fraction")
    return Quantile(col, float(frac.this))


_FUNCTIONS: dict[type[exp.Expr], Callable[[exp.Expr], Statistic]] = {
    exp.Count: _count,
    exp.Sum: _one(Sum, "SUM"),
    exp.Avg: _one(Mean, "AVG"),
    exp.Variance: _one(Variance, "VARIANCE"),
    exp.Stddev: _one(Std, "STDDEV"),
    exp.StddevSamp: _one(Std, "STDDEV_SAMP"),
    exp.Min: _one(Min, "MIN"),
    exp.Max: _one(Max, "MAX"),
    exp.Median: _median,
    exp.WithinGroup: _within_group,
    exp.PercentileCont: _quantile_fn,
    exp.Corr: _two(Correlation, "CORR"),
    exp.CovarSamp: _two(Covariance, "COVAR_SAMP"),
}


def _anonymous(fn: exp.Expr) -> Statistic:
    name = str(fn.this).upper()
    args = fn.expressions
    if name in ("COSINE_SIMILARITY", "COS_SIM") and len(args) == 2:
        cols = [a for a in args if isinstance(a, exp.Column) and not a.table]
        if len(cols) == 2:
            return CosineSimilarity(str(cols[0].name), str(cols[1].name))
        raise QueryError(f"{name} takes two plain columns")
    raise QueryError(f"unsupported function in SELECT: {fn.sql()}")


_FUNCTIONS[exp.Anonymous] = _anonymous


def register(node: type[exp.Expr], build: Callable[[exp.Expr], Statistic]) -> None:
    """Teach the parser a new aggregate (used by the statistics modules)."""
    _FUNCTIONS[node] = build


def _statistic(e: exp.Expr) -> Statistic:
    if isinstance(e, exp.Alias):
        e = e.this
    builder = _FUNCTIONS.get(type(e))
    if builder is None:
        raise QueryError(f"unsupported expression in SELECT: {e.sql()} ({type(e).__name__})")
    return builder(e)


_REFUSED = {
    "joins": (
        "JOIN is not supported: each provider holds its own rows and no row leaves it, so "
        "tables cannot be joined across providers; join inside each provider (one table "
        "with the columns you need, with public bounds) and query that table"
    ),
    "with": "WITH is not supported: ask for aggregates of one table directly",
    "distinct": (
        "SELECT DISTINCT is not supported: distinct rows are row data; for the distinct "
        "values of a public domain use set_union(table, column, domain)"
    ),
    "windows": "WINDOW is not supported: window functions return rows, which never leave providers",
    "qualify": "QUALIFY is not supported: it filters rows, which never leave providers",
}


def _refuse_star(tree: exp.Select) -> None:
    for e in tree.expressions:
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            raise QueryError(
                "SELECT * is not supported: it returns rows, and no row leaves its provider; "
                "select aggregates instead, e.g. SELECT COUNT(*), AVG(age) FROM patients"
            )


def _int_literal(node: Any, what: str) -> int:
    value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
    if not isinstance(value, exp.Literal) or value.is_string:
        raise QueryError(f"{what} takes a non-negative integer")
    try:
        n = int(value.this)
    except ValueError as exc:
        raise QueryError(f"{what} takes a non-negative integer") from exc
    if n < 0:
        raise QueryError(f"{what} takes a non-negative integer")
    return n


def _post(node: exp.Expr, items: list[SelectItem], group_by: tuple[str, ...], what: str) -> str:
    """``node`` (of HAVING or ORDER BY) over the output columns: an aggregate becomes its
    item's column (a hidden item if SELECT does not name it), a name an output column."""
    names = {i.name for i in items}

    def swap(n: exp.Expr) -> exp.Expr:
        if (type(n) in _FUNCTIONS and not isinstance(n, exp.Anonymous)) or (
            isinstance(n, exp.Anonymous) and str(n.this).upper() in ("COSINE_SIMILARITY", "COS_SIM")
        ):
            stat = _statistic(n)
            for item in items:
                if item.statistic == stat:
                    return exp.column(item.name, quoted=True)
            name = f"_{what.lower().replace(' ', '_')}_{len(items)}"
            items.append(SelectItem(name, stat, hidden=True))
            return exp.column(name, quoted=True)
        if isinstance(n, exp.Column):
            if n.table or n.name not in names | set(group_by):
                raise QueryError(f"{what} names {n.sql()}, which is not a selected column or alias")
            return exp.column(n.name, quoted=True)
        return n

    return str(node.transform(swap).sql(dialect="duckdb"))


def parse_sql(sql: str) -> ParsedQuery:
    try:
        statements = sqlglot.parse(sql, dialect="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"cannot parse SQL: {exc}") from exc
    if len(statements) != 1 or statements[0] is None:
        raise QueryError("exactly one SQL statement is expected")
    tree = statements[0]
    if not isinstance(tree, exp.Select):
        raise QueryError(f"only SELECT queries are supported, got {type(tree).__name__}")
    for key, message in _REFUSED.items():
        if tree.args.get(key):
            raise QueryError(message)
    _refuse_star(tree)
    source = tree.args.get("from") or tree.args.get("from_")
    if source is None:
        raise QueryError("a FROM clause naming one table is required")
    table = source.this
    if not isinstance(table, exp.Table) or table.args.get("db") or not table.name:
        raise QueryError(f"FROM must name one table, got {table.sql()}")
    where = tree.args.get("where")
    group = tree.args.get("group")
    group_by: tuple[str, ...] = ()
    if group is not None:
        cols = []
        for g in group.expressions:
            if not isinstance(g, exp.Column) or g.table:
                raise QueryError(f"GROUP BY takes plain columns, got {g.sql()}")
            cols.append(str(g.name))
        group_by = tuple(cols)
    items: list[SelectItem] = []
    for e in tree.expressions:
        alias = e.alias if isinstance(e, exp.Alias) else None
        inner = e.this if isinstance(e, exp.Alias) else e
        if isinstance(inner, exp.Column) and not inner.table:
            if inner.name not in group_by:
                raise QueryError(
                    f"column {inner.name} in SELECT must be in GROUP BY: only aggregates "
                    "leave the providers"
                )
            items.append(SelectItem(alias or str(inner.name), column=str(inner.name)))
            continue
        items.append(SelectItem(alias or inner.sql(dialect="duckdb"), _statistic(inner)))
    if not any(i.statistic is not None for i in items):
        raise QueryError("SELECT names no aggregate")
    names = [i.name for i in items]
    if len(set(names)) != len(names):
        raise QueryError(
            f"SELECT names a column twice: {sorted({n for n in names if names.count(n) > 1})}"
        )
    having = tree.args.get("having")
    order = tree.args.get("order")
    having_sql = _post(having.this, items, group_by, "HAVING") if having is not None else None
    order_sql = None
    if order is not None:
        order_sql = ", ".join(_post(o, items, group_by, "ORDER BY") for o in order.expressions)
    limit = tree.args.get("limit")
    offset = tree.args.get("offset")
    stats: list[Statistic] = []
    for item in items:
        if item.statistic is not None and item.statistic not in stats:
            stats.append(item.statistic)
    return ParsedQuery(
        table=str(table.name),
        statistics=tuple(stats),
        where=where.this.sql(dialect="duckdb") if where is not None else None,
        group_by=group_by,
        items=tuple(items),
        having=having_sql,
        order=order_sql,
        limit=_int_literal(limit, "LIMIT") if limit is not None else None,
        offset=_int_literal(offset, "OFFSET") if offset is not None else None,
    )


def _rows(value: Any, depth: int) -> list[tuple[tuple[Any, ...], Any]]:
    """``(keys, leaf)`` of a result nested ``depth`` dicts deep (one per GROUP BY column)."""
    if depth == 0:
        return [((), value)]
    if not isinstance(value, dict):
        return []
    return [((k, *keys), leaf) for k, v in value.items() for keys, leaf in _rows(v, depth - 1)]


def to_frame(result: QueryResult, parsed: ParsedQuery) -> Any:
    """The result as SQL gives it: one row per group, one column per select item (its name
    or alias), each aggregate's 95% interval in ``<name>_ci95_low`` / ``_high`` after it;
    then HAVING, ORDER BY, LIMIT and OFFSET over those released values."""
    import duckdb
    import pandas as pd

    depth = len(parsed.group_by)
    table: dict[tuple[Any, ...], dict[str, Any]] = {}
    columns: list[str] = []
    for item in parsed.items:
        if item.statistic is None:
            columns.append(item.name)
            continue
        label = parsed.label(item.statistic)
        value, ci = result.values.get(label), result.intervals.get(label)
        cis = dict(_rows(ci, depth)) if ci is not None else {}
        columns += [item.name, f"{item.name}_ci95_low", f"{item.name}_ci95_high"]
        for keys, leaf in _rows(value, depth):
            row = table.setdefault(keys, dict(zip(parsed.group_by, keys, strict=True)))
            row[item.name] = leaf
            pair = cis.get(keys)
            low = high = None
            if isinstance(pair, tuple | list) and len(pair) == 2:
                low, high = pair
            row[f"{item.name}_ci95_low"], row[f"{item.name}_ci95_high"] = low, high
    frame = pd.DataFrame(list(table.values()))
    for item in parsed.items:
        if item.statistic is None and item.column is not None and item.name != item.column:
            frame[item.name] = frame[item.column]
    post = parsed.having is not None or parsed.order is not None
    post = post or parsed.limit is not None or parsed.offset is not None
    if post and len(frame):
        sql = "SELECT * FROM frame"
        if parsed.having is not None:
            sql += f" WHERE {parsed.having}"
        if parsed.order is not None:
            sql += f" ORDER BY {parsed.order}"
        if parsed.limit is not None:
            sql += f" LIMIT {parsed.limit}"
        if parsed.offset is not None:
            sql += f" OFFSET {parsed.offset}"
        con = duckdb.connect(":memory:")
        con.register("frame", frame)
        frame = con.execute(sql).df()
        con.close()
    shown = [c for c in columns if not any(c.startswith(i.name) and i.hidden for i in parsed.items)]
    return frame.reindex(columns=shown).reset_index(drop=True)
