"""A query as every role receives it: what to compute, over what, at what privacy cost.

The analyst builds a :class:`QueryTicket` and submits the hash of its canonical
JSON (:attr:`QueryTicket.ticket_hash`) on the ledger, which names the query
keccak256(analyst ‖ ticket hash) (:attr:`QueryTicket.query_id`): an id bound to
its submitter, so nobody can take another's first. Every role recomputes the id
from the ticket it receives and acts only if the ledger has that query open,
submitted by the ticket's analyst, so all parties work from the same ticket
and nobody can hand one party bounds, a committee or a privacy cost that differ
from another's. Each party then derives, on its own, the same plan of per-row
terms, the same vector specification and the same noise calibration
(:meth:`QueryTicket.prepare`), so no party has to trust another's arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from Crypto.Hash import keccak

from tessera.analytics.grouping import ByKey, GroupBy, GroupKey
from tessera.analytics.local import ColumnBounds
from tessera.analytics.precision import (
    DEFAULT_MAX_ROWS,
    check_precision,
    choose_precision,
    resolve,
)
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
MAX_PROVIDERS = 1024
_QUERY_DOMAIN = b"tessera/query/v1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def plan_of(stats: Sequence[Statistic], bounds: Mapping[str, ColumnBounds]) -> Plan:
    """The per-row terms of ``stats`` (each checked against ``bounds``), shared terms once.

    Columns whose precision is not fixed yet get the exact-mode choice for the default
    maximum of rows (what a query's ticket fixes for real, :attr:`QueryTicket.precision`)."""
    if not stats:
        raise QueryError("a query needs at least one statistic")
    if not all(b.chosen for b in bounds.values()):
        bounds = resolve(bounds, choose_precision(stats, bounds, DEFAULT_MAX_ROWS, False))
    terms: dict[str, Term] = {}
    for s in stats:
        s.check(bounds)
        for term in s.terms(bounds):
            terms.setdefault(term.name, term)
    return Plan(tuple(centre(list(terms.values()), bounds)), dict(bounds))


def noise_plans(plan: Plan, n: int, t: int, rho: float, delta: float) -> list[NoisePlan]:
    """Per term, each node's noise: the budget ``rho`` splits evenly over the most terms
    one row can touch (:meth:`~tessera.analytics.terms.Plan.row_reach`: one bin of a
    histogram, one group of a GROUP BY), so that no row costs more than ``rho``."""
    per_term = rho / plan.row_reach()
    return [_plan_noise(term.sensitivity, n, t, per_term, delta) for term in plan.terms]


@lru_cache(maxsize=4096)
def _plan_noise(sensitivity: float, n: int, t: int, rho: float, delta: float) -> NoisePlan:
    """:func:`~tessera.dp.plan_noise` (a pure function: its calibration is remembered)."""
    return plan_noise(sensitivity, n, t, rho=rho, delta=delta)


def canonical_hash(domain: bytes, body: Mapping[str, Any]) -> bytes:
    """SHA-256 of ``domain`` and ``body`` as canonical JSON: a ticket's hash."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(domain + text.encode()).digest()


def ledger_query_id(analyst: str, ticket_hash: bytes) -> bytes:
    """keccak256(the analyst's 20 bytes ‖ ticket hash), as the market names a query."""
    digest = keccak.new(digest_bits=256)
    digest.update(bytes.fromhex(analyst[2:]) + ticket_hash)
    return digest.digest()


def only_fields(data: Any, known: set[str], where: str) -> dict[str, Any]:
    """``data`` if it is an object with no field outside ``known``, else DecodeError."""
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise DecodeError(f"{where}: unknown field(s) {unknown}")
    return data


def providers_from_json(data: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    """A ticket's ``providers``: ``[name, account]`` pairs."""
    providers = field(data, "providers", list, where)
    if len(providers) > MAX_PROVIDERS or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
        for p in providers
    ):
        raise DecodeError(f"{where}.providers: expected a list of [name, account] pairs")
    return tuple((str(a), str(b)) for a, b in providers)


def check_query_id(data: Mapping[str, Any], query_id: bytes, where: str) -> None:
    """A ``query_id`` given with a ticket must be the ticket's own."""
    given = data.get("query_id")
    if given is not None and from_hex(given, f"{where}.query_id") != query_id:
        raise DecodeError(f"{where}.query_id: not the hash of this ticket")


def group_columns(stat: Statistic) -> list[str]:
    if isinstance(stat, GroupBy):
        return [stat.column, *group_columns(stat.inner)]
    if isinstance(stat, ByKey):
        return [stat.column, *(c for s in stat.inners for c in group_columns(s))]
    return []


def bounds_to_json(bounds: Mapping[str, ColumnBounds]) -> dict[str, list[float | int | None]]:
    """``{column: [lo, hi, scale_bits]}``; ``scale_bits`` is null where each query chooses."""
    return {c: [b.lo, b.hi, b.scale_bits] for c, b in sorted(bounds.items())}


def bounds_from_json(data: Any, where: str) -> dict[str, ColumnBounds]:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    out: dict[str, ColumnBounds] = {}
    for col, spec in data.items():
        ok = isinstance(spec, list) and len(spec) == 3
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec[:2])
        if not ok or not (spec[2] is None or type(spec[2]) is int):
            raise DecodeError(f"{where}.{col}: expected [lo, hi, scale_bits or null]")
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

    @property
    def bounds(self) -> Mapping[str, ColumnBounds]:
        """The ticket's bounds with its precision: what providers scale by."""
        return self.plan.bounds


@dataclass(frozen=True)
class QueryTicket:
    """What to compute; its hash is the query's id on the ledger."""

    table: str
    statistics: tuple[Statistic, ...]
    where: str | None
    rho: float | None
    delta: float
    analyst_key: Point
    bounds: Mapping[str, ColumnBounds]  # the table's public bounds, as its providers publish
    max_rows: int  # the public maximum of rows per provider (no provider's policy exceeds it)
    n: int  # committee size and threshold
    t: int
    committee: int  # the committee's id on the ledger
    providers: tuple[tuple[str, str], ...]  # who is asked: (name, ledger account), by name
    nonce: bytes  # the analyst's fresh randomness: two equal queries get two ids
    analyst: str  # the analyst's ledger account: it submits the query, the id is bound to it
    #: per bounded column, the fixed-point bits providers scale it by (None: the public
    #: choice of :func:`~tessera.analytics.precision.choose_precision`)
    precision: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if self.analyst_key.is_identity:
            raise QueryError("the analyst key must not be the identity point")
        if not 1 <= self.t <= self.n or self.n < 2 * self.t - 1:
            raise QueryError(f"a committee of {self.n} with threshold {self.t}: need n >= 2t - 1")
        if self.max_rows < 1:
            raise QueryError("max_rows must be positive")
        names = [name for name, _ in self.providers]
        if names != sorted(set(names)):
            raise QueryError("providers must be distinct and sorted by name")
        for name, address in self.providers:
            if not _ADDRESS.fullmatch(address):
                raise QueryError(f"provider {name!r}: {address!r} is not an account address")
        if not _ADDRESS.fullmatch(self.analyst):
            raise QueryError(f"analyst: {self.analyst!r} is not an account address")
        if not 16 <= len(self.nonce) <= 64:
            raise QueryError("the query nonce must be 16 to 64 bytes")
        if self.precision is None:
            chosen = choose_precision(
                self.statistics, self.bounds, self.max_rows, self.rho is not None
            )
            object.__setattr__(self, "precision", chosen)
        check_precision(self.statistics, self.bounds, self.bits)

    @property
    def bits(self) -> Mapping[str, int]:
        """:attr:`precision`, fixed."""
        assert self.precision is not None  # set in __post_init__
        return self.precision

    @cached_property
    def ticket_hash(self) -> bytes:
        """SHA-256 of the domain tag and the ticket's canonical JSON: what the analyst
        submits on the ledger."""
        return canonical_hash(_QUERY_DOMAIN, self._body())

    @cached_property
    def query_id(self) -> bytes:
        """The query's id on the ledger: keccak256(the analyst's 20 bytes ‖ ticket hash),
        as the market computes it from the submitter's address."""
        return ledger_query_id(self.analyst, self.ticket_hash)

    def account_of(self, provider: str) -> str | None:
        return dict(self.providers).get(provider)

    def prepare(self) -> Prepared:
        """The plan, the vector spec and the noise calibration (computed once per ticket)."""
        return self._prepared

    @cached_property
    def _prepared(self) -> Prepared:
        plan = plan_of(self.statistics, resolve(self.bounds, self.bits))
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

    def _body(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "statistics": [statistic_to_json(s) for s in self.statistics],
            "where": self.where,
            "rho": self.rho,
            "delta": self.delta,
            "analyst_key": self.analyst_key.encode().hex(),
            "bounds": bounds_to_json(self.bounds),
            "precision": dict(sorted(self.bits.items())),
            "max_rows": self.max_rows,
            "n": self.n,
            "t": self.t,
            "committee": self.committee,
            "providers": [list(p) for p in self.providers],
            "nonce": self.nonce.hex(),
            "analyst": self.analyst.lower(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self._body(), "query_id": self.query_id.hex()}

    @classmethod
    def from_json(cls, data: Any, where: str = "ticket") -> QueryTicket:
        """Strictly decode a ticket; a ``query_id`` given must be the ticket's own hash."""
        known = {
            "query_id", "table", "statistics", "where", "rho", "delta", "analyst_key",
            "bounds", "precision", "max_rows", "n", "t", "committee", "providers", "nonce",
            "analyst",
        }  # fmt: skip
        data = only_fields(data, known, where)
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
        providers = providers_from_json(data, where)
        try:
            ticket = cls(
                table=field(data, "table", str, where),
                statistics=tuple(statistic_from_json(s) for s in stats),
                where=where_clause,
                rho=rho,
                delta=delta,
                analyst_key=point_from_hex(data.get("analyst_key"), f"{where}.analyst_key"),
                bounds=bounds_from_json(data.get("bounds"), f"{where}.bounds"),
                max_rows=field(data, "max_rows", int, where),
                n=field(data, "n", int, where),
                t=field(data, "t", int, where),
                committee=field(data, "committee", int, where),
                providers=providers,
                nonce=from_hex(field(data, "nonce", str, where), f"{where}.nonce"),
                analyst=field(data, "analyst", str, where),
                precision=_precision_from_json(data.get("precision"), f"{where}.precision"),
            )
        except QueryError as exc:
            raise DecodeError(f"{where}: {exc}") from exc
        check_query_id(data, ticket.query_id, where)
        return ticket


def _precision_from_json(data: Any, where: str) -> dict[str, int] | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in data.items()
    ):
        raise DecodeError(f"{where}: expected an object of column: bits")
    return dict(data)


def categories_to_json(cats: Mapping[str, Sequence[GroupKey]]) -> dict[str, list[GroupKey]]:
    return {c: list(keys) for c, keys in sorted(cats.items())}
