"""SQL to a Tessera query: ``SELECT <aggregates> FROM <table> [WHERE] [GROUP BY]`` (sqlglot).

Only aggregate queries over one table make sense when no row may leave its
provider; anything else is refused with a :class:`~tessera.errors.QueryError`
that names the construct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from tessera.analytics.distribution import Max, Min, Quantile
from tessera.analytics.moments import Correlation, Count, Covariance, Mean, Std, Sum, Variance
from tessera.analytics.statistic import Statistic
from tessera.errors import QueryError


@dataclass(frozen=True, slots=True)
class ParsedQuery:
    table: str
    statistics: tuple[Statistic, ...]
    where: str | None
    group_by: tuple[str, ...] = ()


def _column_arg(fn: exp.Expr, name: str) -> str:
    arg = fn.this if hasattr(fn, "this") else None
    if isinstance(arg, exp.Distinct):
        raise QueryError(f"{name}(DISTINCT ...) is not supported")
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
    for key, name in (
        ("joins", "JOIN"),
        ("having", "HAVING"),
        ("order", "ORDER BY"),
        ("limit", "LIMIT"),
        ("offset", "OFFSET"),
        ("with", "WITH"),
        ("distinct", "SELECT DISTINCT"),
        ("windows", "WINDOW"),
        ("qualify", "QUALIFY"),
    ):
        if tree.args.get(key):
            raise QueryError(f"unsupported SQL construct: {name}")
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
    stats = tuple(
        _statistic(e)
        for e in tree.expressions
        if not (isinstance(e, exp.Column) and not e.table and e.name in group_by)
    )
    if not stats:
        raise QueryError("SELECT names no aggregate")
    return ParsedQuery(
        table=str(table.name),
        statistics=stats,
        where=where.this.sql(dialect="duckdb") if where is not None else None,
        group_by=group_by,
    )
