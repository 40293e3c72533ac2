"""Row filters: an analyst's WHERE clause parsed with sqlglot and re-rendered from a whitelist."""

from __future__ import annotations

from collections.abc import Collection

import sqlglot
from sqlglot import exp

from tessera.errors import QueryError

_ALLOWED: tuple[type[exp.Expr], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.And,
    exp.Or,
    exp.Not,
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.Between,
    exp.In,
    exp.Is,
    exp.Like,
    exp.ILike,
    exp.Neg,
    exp.Add,
    exp.Sub,
    exp.Mul,
    exp.Div,
    exp.Mod,
)


def quote_ident(name: str) -> str:
    """A DuckDB identifier, double-quoted with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def parse_condition(where: str) -> exp.Expr:
    try:
        tree = sqlglot.parse_one(where, dialect="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise QueryError(f"cannot parse filter {where!r}: {exc}") from exc
    return tree


def check_condition(tree: exp.Expr, columns: Collection[str]) -> None:
    """Raise :class:`QueryError` naming the first construct outside the whitelist."""
    for node in tree.walk():
        if not isinstance(node, _ALLOWED):
            raise QueryError(
                f"unsupported construct in filter: {type(node).__name__} ({node.sql()})"
            )
        if isinstance(node, exp.Column):
            if node.table:
                raise QueryError(f"qualified column {node.sql()} is not supported in filters")
            if node.name not in columns:
                raise QueryError(f"unknown column {node.name!r} in filter")


def compile_filter(where: str, columns: Collection[str]) -> str:
    """Validate ``where`` against ``columns`` and return DuckDB SQL for it."""
    tree = parse_condition(where)
    check_condition(tree, columns)
    return tree.sql(dialect="duckdb")
