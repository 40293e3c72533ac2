"""A query as every role receives it: what to compute, over what, at what privacy cost.

The analyst builds a :class:`QueryTicket`; the providers and computing nodes each
derive from it, on their own, the same plan of per-row terms, the same vector
specification and the same noise calibration (:meth:`QueryTicket.prepare`), so
no party has to trust another's arithmetic. The in-process network derives them
through the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tessera.analytics.grouping import GroupBy, GroupKey
from tessera.analytics.local import ColumnBounds
from tessera.analytics.statistic import Statistic, centre
from tessera.analytics.terms import Plan, Term
from tessera.analytics.wire import statistic_from_json, statistic_to_json
from tessera.crypto.group import Point
from tessera.dp import plan_noise
from tessera.dp.distributed import NoisePlan
from tessera.errors import DecodeError, QueryError
from tessera.protocol.aggregation import AggregationQuery
from tessera.protocol.wire import field, from_hex, point_from_hex

MAX_STATISTICS = 64


def plan_of(stats: Sequence[Statistic], bounds: Mapping[str, ColumnBounds]) -> Plan:
    """The per-row terms of ``stats`` (each checked against ``bounds``), shared terms once."""
    if not stats:
        raise QueryError("a query needs at least one statistic")
    terms: dict[str, Term] = {}
    for s in stats:
        s.check(bounds)
        for term in s.terms(bounds):
            terms.setdefault(term.name, term)
    return Plan(tuple(centre(list(terms.values()), bounds)))


def noise_plans(plan: Plan, n: int, t: int, rho: float, delta: float) -> list[NoisePlan]:
    """Per term, each node's noise: the budget ``rho`` splits evenly over the terms."""
    per_term = rho / len(plan.terms)
    return [plan_noise(term.sensitivity, n, t, rho=per_term, delta=delta) for term in plan.terms]


def group_columns(stat: Statistic) -> list[str]:
    if isinstance(stat, GroupBy):
        return [stat.column, *group_columns(stat.inner)]
    return []


def bounds_to_json(bounds: Mapping[str, ColumnBounds]) -> dict[str, list[float | int]]:
    return {c: [b.lo, b.hi, b.scale_bits] for c, b in sorted(bounds.items())}


def bounds_from_json(data: Any, where: str) -> dict[str, ColumnBounds]:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    out: dict[str, ColumnBounds] = {}
    for col, spec in data.items():
        ok = isinstance(spec, list) and len(spec) == 3
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
        if not ok or not isinstance(spec[2], int):
            raise DecodeError(f"{where}.{col}: expected [lo, hi, scale_bits]")
        try:
            out[col] = ColumnBounds(spec[0], spec[1], spec[2])
        except ValueError as exc:
            raise DecodeError(f"{where}.{col}: {exc}") from exc
    return out


@dataclass(frozen=True)
class Prepared:
    """What a party derives from a ticket."""

    plan: Plan
    query: AggregationQuery
    noise: tuple[NoisePlan, ...]  # per term; () without differential privacy


@dataclass(frozen=True)
class QueryTicket:
    query_id: bytes
    table: str
    statistics: tuple[Statistic, ...]
    where: str | None
    rho: float | None
    delta: float
    analyst_key: Point
    bounds: Mapping[str, ColumnBounds]  # the table's public bounds, as its providers publish
    max_rows: int  # the public maximum of rows per provider
    n: int  # committee size and threshold
    t: int
    providers: tuple[str, ...]  # who is asked to contribute

    def prepare(self) -> Prepared:
        plan = plan_of(self.statistics, self.bounds)
        spec = plan.vector_spec(self.max_rows)
        noise: tuple[NoisePlan, ...] = ()
        if self.rho is not None:
            noise = tuple(noise_plans(plan, self.n, self.t, self.rho, self.delta))
        query = AggregationQuery(
            self.query_id, spec, self.analyst_key, tuple(int(p.bound) for p in noise)
        )
        return Prepared(plan, query, noise)

    @property
    def operations(self) -> set[str]:
        return {s.kind for s in self.statistics}

    def group_columns(self) -> list[str]:
        return sorted({c for s in self.statistics for c in group_columns(s)})

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id.hex(),
            "table": self.table,
            "statistics": [statistic_to_json(s) for s in self.statistics],
            "where": self.where,
            "rho": self.rho,
            "delta": self.delta,
            "analyst_key": self.analyst_key.encode().hex(),
            "bounds": bounds_to_json(self.bounds),
            "max_rows": self.max_rows,
            "n": self.n,
            "t": self.t,
            "providers": list(self.providers),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "ticket") -> QueryTicket:
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object")
        known = {
            "query_id", "table", "statistics", "where", "rho", "delta", "analyst_key",
            "bounds", "max_rows", "n", "t", "providers",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise DecodeError(f"{where}: unknown field(s) {unknown}")
        stats = field(data, "statistics", list, where)
        if not 1 <= len(stats) <= MAX_STATISTICS:
            raise DecodeError(f"{where}.statistics: 1 to {MAX_STATISTICS} statistics")
        where_clause = data.get("where")
        if where_clause is not None and not isinstance(where_clause, str):
            raise DecodeError(f"{where}.where: expected a string or null")
        rho = data.get("rho")
        if rho is not None:
            rho = field(data, "rho", float, where)
            if not rho > 0:
                raise DecodeError(f"{where}.rho: must be positive")
        delta = field(data, "delta", float, where)
        if not 0 < delta < 1:
            raise DecodeError(f"{where}.delta: must be in (0, 1)")
        query_id = from_hex(field(data, "query_id", str, where), f"{where}.query_id")
        if len(query_id) != 32:
            raise DecodeError(f"{where}.query_id: must be 32 bytes")
        providers = field(data, "providers", list, where)
        if not all(isinstance(p, str) for p in providers):
            raise DecodeError(f"{where}.providers: expected a list of names")
        n, t = field(data, "n", int, where), field(data, "t", int, where)
        if not 1 <= t <= n:
            raise DecodeError(f"{where}: threshold {t} not in [1, {n}]")
        max_rows = field(data, "max_rows", int, where)
        if max_rows < 1:
            raise DecodeError(f"{where}.max_rows: must be positive")
        return cls(
            query_id=query_id,
            table=field(data, "table", str, where),
            statistics=tuple(statistic_from_json(s) for s in stats),
            where=where_clause,
            rho=rho,
            delta=delta,
            analyst_key=point_from_hex(data.get("analyst_key"), f"{where}.analyst_key"),
            bounds=bounds_from_json(data.get("bounds"), f"{where}.bounds"),
            max_rows=max_rows,
            n=n,
            t=t,
            providers=tuple(providers),
        )


def categories_to_json(cats: Mapping[str, Sequence[GroupKey]]) -> dict[str, list[GroupKey]]:
    return {c: list(keys) for c, keys in sorted(cats.items())}
