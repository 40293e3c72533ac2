"""An in-process Tessera network: committee, providers, analyst and verifier, minus the sockets.

``LocalNetwork`` runs the same role code as the networked nodes
(:mod:`tessera.protocol.aggregation`, :mod:`tessera.analytics`) in one
process, for notebooks, tests and benchmarks::

    net = LocalNetwork(computing_nodes=3, threshold=2)
    net.add_provider("hospital-a", tables={"patients": df}, bounds={"patients": {"age": (0, 120)}})
    res = net.sql("SELECT AVG(age) FROM patients", epsilon=1.0)
    res.to_pandas(); res.verified; res.privacy_cost
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import ColumnBounds, LocalDatabase, LocalResult, TableSource
from tessera.analytics.statistic import Statistic
from tessera.analytics.terms import Plan
from tessera.crypto.dkg import DkgResult, run_dkg
from tessera.crypto.dlog import DiscreteLog
from tessera.crypto.elgamal import keygen
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SeededRng, SystemRng
from tessera.dp import (
    ExactSampler,
    NoiseSampler,
    OpenDPSampler,
    PrivacyBudget,
    eps_to_rho,
    rho_to_eps_delta,
)
from tessera.errors import BudgetExceeded, PolicyViolation, QueryError
from tessera.ledger.client import MAX_BOUNDS_BYTES, encode_bounds
from tessera.node.api import DEFAULT_DELTA, StatisticsApi
from tessera.node.ledger_session import LedgerReceipt, LedgerSession, make_listing, schema_hash
from tessera.node.ticket import group_columns, noise_plans, plan_of
from tessera.protocol.aggregation import (
    AggregationRecord,
    NodeKey,
    StepRunner,
    Verdict,
    run_aggregation,
    set_aside_noise,
    verify_record,
)

FLOAT_SCALE_BITS = 10
BoundsSpec = ColumnBounds | tuple[float, float] | Sequence[GroupKey]


@dataclass(frozen=True, slots=True)
class DatasetPolicy:
    """A provider's rules for one table (DESIGN §2)."""

    allowed: frozenset[str] | None = None  # statistic kinds; None: all
    min_cohort: int = 10
    budget_rho: float = 5.0
    max_rows: int = 1_000_000
    allow_exact: bool = False  # may a query run without noise?
    price_per_query: int = 0  # credits escrowed per query / per training run
    price_per_training: int = 0
    node_share_bps: int = 2_000  # the computing nodes' share of the price (basis points)
    tags: tuple[str, ...] = ()  # catalog tags

    def __post_init__(self) -> None:
        if self.min_cohort < 1 or self.max_rows < 1 or self.budget_rho <= 0:
            raise ValueError("min_cohort, max_rows and budget_rho must be positive")
        if self.price_per_query < 0 or self.price_per_training < 0:
            raise ValueError("prices must be non-negative")
        if not 0 <= self.node_share_bps <= 10_000:
            raise ValueError("node_share_bps must be in [0, 10000]")


@dataclass
class Provider:
    name: str
    db: LocalDatabase
    bounds: dict[str, dict[str, ColumnBounds]]
    categories: dict[str, dict[str, tuple[GroupKey, ...]]]
    policies: dict[str, DatasetPolicy]
    budgets: dict[str, PrivacyBudget]
    reports: list[dict[str, Any]] = field(default_factory=list)  # the provider's own log
    datasets: dict[str, int] = field(default_factory=dict)  # table -> catalog id on the ledger


@dataclass(frozen=True, slots=True)
class PrivacyCost:
    rho: float
    epsilon: float
    delta: float


@dataclass
class QueryResult:
    """Released statistics with their uncertainty, cost and verification verdict."""

    query_id: str
    values: dict[str, Any]
    intervals: dict[str, Any]  # per statistic: (lo, hi), or that shape per numeric leaf
    privacy_cost: PrivacyCost | None
    noise_sd: dict[str, float]
    verdict: Verdict
    record: AggregationRecord = field(repr=False)
    providers: list[str] = field(default_factory=list)
    excluded_providers: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    role_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    ledger: LedgerReceipt | None = None  # transactions, gas and settlement on the ledger

    @property
    def verified(self) -> bool:
        return self.verdict.ok

    def __getitem__(self, label: str) -> Any:
        return self.values[label]

    @property
    def value(self) -> Any:
        """The value of a single-statistic query."""
        if len(self.values) != 1:
            raise QueryError("this result holds several statistics; index it by label")
        return next(iter(self.values.values()))

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = []
        for k, v in self.values.items():
            ci = self.intervals.get(k)
            if not (isinstance(ci, tuple) and len(ci) == 2):
                ci = None
            rows.append(
                {
                    "statistic": k,
                    "value": v,
                    "ci95_low": ci[0] if ci else None,
                    "ci95_high": ci[1] if ci else None,
                }
            )
        return pd.DataFrame(rows)


def _column_spec(spec: BoundsSpec) -> ColumnBounds | tuple[GroupKey, ...]:
    if isinstance(spec, ColumnBounds):
        return spec
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
    ):
        lo, hi = spec
        ints = isinstance(lo, int) and isinstance(hi, int)
        return ColumnBounds(float(lo), float(hi), 0 if ints else FLOAT_SCALE_BITS)
    if isinstance(spec, list | tuple | set | frozenset):
        return tuple(sorted(spec, key=repr))  # a categorical column's public key set
    raise ValueError(f"bounds must be (lo, hi), a ColumnBounds or a list of keys, got {spec!r}")


class LocalNetwork(StatisticsApi):
    """A whole Tessera network in one process."""

    def __init__(
        self,
        computing_nodes: int = 3,
        threshold: int = 2,
        *,
        seed: int | bytes | str | None = None,
        dlog: DiscreteLog | None = None,
        ledger: LedgerSession | None = None,
    ) -> None:
        if not 1 <= threshold <= computing_nodes:
            raise ValueError(f"threshold {threshold} must be in [1, {computing_nodes}]")
        self.n, self.t = computing_nodes, threshold
        self._rng: Rng = SeededRng(seed) if seed is not None else SystemRng()
        self._sampler: NoiseSampler = (
            ExactSampler(SeededRng(f"noise/{seed!r}")) if seed is not None else OpenDPSampler()
        )
        self._dlog = dlog
        self.keys: dict[int, DkgResult] = run_dkg(computing_nodes, threshold, self._rng)[0]
        if ledger is not None and ledger.committee is not None:
            raise ValueError("this ledger session already serves another committee")
        self.ledger = ledger or LedgerSession(
            rng=SeededRng(f"ledger/{seed!r}") if seed is not None else SystemRng()
        )
        k = next(iter(self.keys.values()))
        self.ledger.register_committee(threshold, k.public_key, k.public_shares)
        self.providers: dict[str, Provider] = {}
        self._counter = 0
        self.cheating_nodes: tuple[int, ...] = ()  # test hook: nodes that corrupt key switching
        self.noise_cheating_nodes: tuple[int, ...] = ()  # test hook: nodes that corrupt noise

    @property
    def committee_key(self) -> Point:
        return next(iter(self.keys.values())).public_key

    def _discrete_log(self) -> DiscreteLog:
        if self._dlog is None:
            from tessera.node.dlog_cache import discrete_log

            self._dlog = discrete_log()
        return self._dlog

    # -- set-up ------------------------------------------------------------------------
    def add_provider(
        self,
        name: str,
        tables: Mapping[str, TableSource],
        bounds: Mapping[str, Mapping[str, BoundsSpec]],
        policies: Mapping[str, DatasetPolicy] | None = None,
    ) -> Provider:
        """Register a provider with its tables, the public bounds of their columns, its policies.

        ``bounds[table][column]`` is ``(lo, hi)`` for a numeric column (integers: exact,
        floats: fixed point with 2^-10 resolution), a :class:`ColumnBounds`, or a list of
        the public keys of a categorical column (usable in GROUP BY).
        """
        if name in self.providers:
            raise ValueError(f"provider {name!r} already exists")
        db = LocalDatabase(tables)
        numeric: dict[str, dict[str, ColumnBounds]] = {}
        cats: dict[str, dict[str, tuple[GroupKey, ...]]] = {}
        for tbl, cols in bounds.items():
            if tbl not in tables:
                raise ValueError(f"bounds given for unknown table {tbl!r}")
            missing = set(cols) - set(db.columns(tbl))
            if missing:
                raise ValueError(f"table {tbl} has no column(s) {sorted(missing)}")
            numeric[tbl], cats[tbl] = {}, {}
            for col, spec in cols.items():
                parsed = _column_spec(spec)
                if isinstance(parsed, ColumnBounds):
                    numeric[tbl][col] = parsed
                else:
                    cats[tbl][col] = parsed
        pol = {tbl: (policies or {}).get(tbl, DatasetPolicy()) for tbl in tables}
        budgets = {tbl: PrivacyBudget(f"{name}/{tbl}", p.budget_rho) for tbl, p in pol.items()}
        prov = Provider(name, db, numeric, cats, pol, budgets)
        self.ledger.add_provider(name)
        for tbl, p in pol.items():
            prov.datasets[tbl] = self._list(name, tbl, numeric.get(tbl, {}), cats.get(tbl, {}), p)
        self.providers[name] = prov
        return prov

    def _list(
        self,
        provider: str,
        table: str,
        numeric: Mapping[str, ColumnBounds],
        categorical: Mapping[str, tuple[GroupKey, ...]],
        policy: DatasetPolicy,
    ) -> int:
        """List one table in the ledger's catalog with its policy."""
        bounds = {col: (b.lo, b.hi) for col, b in numeric.items()}
        if len(encode_bounds(bounds)) > MAX_BOUNDS_BYTES:  # pragma: no cover - very wide tables
            bounds = {}  # the schema hash still commits to every bound
        listing = make_listing(
            bounds,
            operations=policy.allowed,
            min_cohort=policy.min_cohort,
            budget_rho=policy.budget_rho,
            price_per_query=policy.price_per_query,
            price_per_training=policy.price_per_training,
            node_share_bps=policy.node_share_bps,
            tags=policy.tags,
        )
        schema = schema_hash(table, {**numeric, **categorical})
        return self.ledger.list_dataset(provider, schema, listing)

    def _holders(self, table: str) -> list[Provider]:
        holders = [p for p in self.providers.values() if table in p.bounds]
        if not holders:
            raise QueryError(f"no provider holds a table named {table!r}")
        return holders

    def _bounds(self, table: str) -> dict[str, ColumnBounds]:
        holders = self._holders(table)
        first = holders[0].bounds[table]
        for p in holders[1:]:
            if p.bounds[table] != first:
                raise PolicyViolation(f"providers disagree on the public bounds of {table!r}")
        return dict(first)

    def _categories(self, table: str, column: str) -> tuple[GroupKey, ...]:
        sets = {p.categories[table].get(column) for p in self._holders(table)}
        if None in sets or len(sets) != 1:
            raise QueryError(
                f"GROUP BY {column}: every provider must publish the same key set for it"
            )
        keys = sets.pop()
        assert keys is not None
        return keys

    def run(
        self,
        table: str,
        stats: Sequence[Statistic],
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Run any list of statistics over ``table`` as one encrypted query."""
        if not stats:
            raise QueryError("a query needs at least one statistic")
        holders = self._holders(table)
        bounds = self._bounds(table)
        plan = plan_of(stats, bounds)
        rho = self._check_policies(table, holders, stats, epsilon, delta)
        return self._execute(table, holders, bounds, plan, stats, where, rho, delta)

    def _check_policies(
        self,
        table: str,
        holders: Sequence[Provider],
        stats: Sequence[Statistic],
        epsilon: float | None,
        delta: float,
    ) -> float | None:
        for p in holders:
            pol = p.policies[table]
            if pol.allowed is not None:
                denied = sorted({s.kind for s in stats if s.kind not in pol.allowed})
                if denied:
                    raise PolicyViolation(f"{p.name}/{table} does not allow {', '.join(denied)}")
            if epsilon is None and not pol.allow_exact:
                raise PolicyViolation(
                    f"{p.name}/{table} requires differential privacy: pass epsilon"
                )
        if epsilon is None:
            return None
        if epsilon <= 0 or not 0 < delta < 1:
            raise QueryError("epsilon must be positive and delta in (0, 1)")
        rho = float(eps_to_rho(epsilon, delta))
        for p in holders:
            budget = p.budgets[table]
            if not budget.can_spend(rho):
                raise BudgetExceeded(
                    f"{p.name}/{table}: the query needs rho={rho:.4g} but only "
                    f"{budget.remaining:.4g} of {budget.cap:.4g} remains"
                )
        return rho

    def _next_query_id(self, payload: Mapping[str, Any]) -> bytes:
        """32 bytes: the hash of the query's canonical JSON, a counter and fresh randomness."""
        self._counter += 1
        nonce = self._rng.randbytes(16).hex()
        body = json.dumps(
            {**payload, "counter": self._counter, "nonce": nonce}, sort_keys=True, default=str
        )
        return hashlib.sha256(body.encode()).digest()

    def _evaluate_locally(
        self,
        table: str,
        holders: Sequence[Provider],
        bounds: Mapping[str, ColumnBounds],
        plan: Plan,
        stats: Sequence[Statistic],
        where: str | None,
        query_id: bytes,
        timed: StepRunner,
    ) -> tuple[dict[str, LocalResult], dict[str, str]]:
        group_cols = sorted({c for s in stats for c in group_columns(s)})
        group_terms = [i for i, t in enumerate(plan.terms) if t.name.startswith("n@")]
        local: dict[str, LocalResult] = {}
        excluded: dict[str, str] = {}
        for p in holders:
            res: LocalResult = timed(
                "provider",
                p.name,
                partial(p.db.evaluate, plan, table, bounds, where, extra_columns=group_cols),
            )
            pol = p.policies[table]
            small_group = any(0 < res.values[i] < pol.min_cohort for i in group_terms)
            if res.rows < pol.min_cohort or small_group:
                excluded[p.name] = "cohort or group below the provider's minimum"
            elif res.rows > pol.max_rows:
                excluded[p.name] = "more rows than the public maximum"
            else:
                local[p.name] = res
            p.reports.append(
                {"query": query_id.hex(), "rows": res.rows, "clipped": dict(res.clipped)}
            )
        if not local:
            raise PolicyViolation("no provider could contribute (cohorts below their minimum)")
        return local, excluded

    def _execute(
        self,
        table: str,
        holders: Sequence[Provider],
        bounds: Mapping[str, ColumnBounds],
        plan: Plan,
        stats: Sequence[Statistic],
        where: str | None,
        rho: float | None,
        delta: float,
    ) -> QueryResult:
        t0 = time.perf_counter()
        query_id = self._next_query_id(
            {"table": table, "stats": [s.label for s in stats], "where": where, "rho": rho}
        )
        roles: dict[str, dict[str, float]] = {}

        def timed(role: str, who: str, fn: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            out = fn()
            per_role = roles.setdefault(role, {})
            per_role[who] = per_role.get(who, 0.0) + time.perf_counter() - start
            return out

        # the ledger first: a query it refuses (policy, budget, escrow) reaches no provider
        receipt = self.ledger.new_receipt(query_id)
        timed(
            "ledger",
            "analyst",
            partial(
                self.ledger.submit,
                query_id,
                {f"{p.name}/{table}": p.datasets[table] for p in holders},
                rho,
                {s.kind for s in stats},
                receipt,
            ),
        )
        if rho is not None:
            for p in holders:  # the providers' own accountants mirror the on-chain budgets
                p.budgets[table].spend(rho)
        t0 = time.perf_counter()
        local, excluded = self._evaluate_locally(
            table, holders, bounds, plan, stats, where, query_id, timed
        )
        spec = plan.vector_spec(max(p.policies[table].max_rows for p in holders))
        t_local = time.perf_counter() - t0

        sd = [0.0] * len(plan.terms)
        noise: dict[int, list[int]] | None = None
        noise_bounds: list[int] = []
        if rho is not None:
            noise, noise_bounds, sd = self._noise(plan, rho, delta)
        t1 = time.perf_counter()
        k = next(iter(self.keys.values()))
        analyst = keygen(self._rng)
        node_keys = [NodeKey(i, key.secret_share) for i, key in sorted(self.keys.items())]
        record, totals = run_aggregation(
            query_id,
            spec,
            {name: list(r.values) for name, r in local.items()},
            k.public_key,
            k.public_shares,
            node_keys,
            self.t,
            self._discrete_log(),
            self._rng,
            noise=noise,
            noise_bounds=noise_bounds,
            cheating_nodes=self.cheating_nodes,
            step=timed,
            analyst=analyst,
            noise_cheating_nodes=self.noise_cheating_nodes,
        )
        t_crypto = time.perf_counter() - t1
        t2 = time.perf_counter()
        verdict = verify_record(record)
        t_verify = time.perf_counter() - t2
        if verdict.noise_cheaters:
            # a node's noise proof failed: set its noise aside, switch again from the
            # honest nodes' (unchanged) noise, and have the record verified again
            totals = set_aside_noise(
                record,
                verdict.noise_cheaters,
                node_keys,
                analyst[0],
                self._discrete_log(),
                self._rng,
            )
            verdict = verify_record(record)
        self.ledger.settle(record, verdict, receipt, step=timed)

        return released(
            query_id,
            stats,
            plan,
            totals,
            bounds,
            sd,
            rho,
            delta,
            verdict,
            record,
            roles,
            providers=sorted(local),
            excluded=excluded,
            seconds={
                "local": t_local,
                "crypto": t_crypto,
                "verify": t_verify,
                "ledger": receipt.seconds,
                "ledger_critical": self.ledger.critical_seconds(roles.get("ledger", {})),
            },
            receipt=receipt,
        )

    def _noise(
        self, plan: Plan, rho: float, delta: float
    ) -> tuple[dict[int, list[int]], list[int], list[float]]:
        """Noise per node and term; the budget splits evenly over the terms (zCDP composition)."""
        noise: dict[int, list[int]] = {i: [] for i in self.keys}
        bounds, sd = [], []
        for term, calib in zip(
            plan.terms, noise_plans(plan, self.n, self.t, rho, delta), strict=True
        ):
            bounds.append(int(calib.bound))
            sd.append(float(calib.sd_all_honest) / term.scale)
            for i in self.keys:
                noise[i].append(calib.draw(self._sampler))
        return noise, bounds, sd


def critical_path(roles: Mapping[str, Mapping[str, float]]) -> float:
    """Latency if every provider and node had its own core.

    Roles that run side by side count their slowest member. Computing nodes draw and
    prove their noise as soon as the query is registered (it depends on the query
    only), so that stage overlaps the providers' work. The ledger's transactions are not
    counted here (their time depends on the chain, not on the computation): see
    ``QueryResult.seconds["ledger"]``.
    """

    def slowest(role: str) -> float:
        return max(roles[role].values()) if roles.get(role) else 0.0

    after = ("aggregate", "key-switch", "combine", "analyst", "decode")
    return max(slowest("provider"), slowest("noise")) + sum(slowest(r) for r in after)


def released(
    query_id: bytes,
    stats: Sequence[Statistic],
    plan: Plan,
    totals: Sequence[int],
    bounds: Mapping[str, ColumnBounds],
    sd: Sequence[float],
    rho: float | None,
    delta: float,
    verdict: Verdict,
    record: AggregationRecord,
    roles: dict[str, dict[str, float]],
    *,
    providers: list[str],
    excluded: dict[str, str],
    seconds: dict[str, float],
    receipt: LedgerReceipt | None,
) -> QueryResult:
    """The analyst's result from the released totals: statistics decoded, their 95%
    intervals, the privacy cost (shared by the in-process and the networked analyst)."""
    t0 = time.perf_counter()
    centred = {t.name: v / t.scale for t, v in zip(plan.terms, totals, strict=True)}
    scaled = plan.uncenter(centred)
    values = {s.label: s.decode(scaled, bounds) for s in stats}
    roles["decode"] = {"analyst": time.perf_counter() - t0}
    cost = None
    if rho is not None:
        eps, d = rho_to_eps_delta(rho, delta)
        cost = PrivacyCost(rho, float(eps), float(d))
    return QueryResult(
        query_id=query_id.hex(),
        values=values,
        intervals=_intervals(stats, plan, centred, sd, bounds),
        privacy_cost=cost,
        noise_sd={t.name: s for t, s in zip(plan.terms, sd, strict=True)},
        verdict=verdict,
        record=record,
        providers=providers,
        excluded_providers=excluded,
        seconds={**seconds, "latency": critical_path(roles)},
        role_seconds=roles,
        ledger=receipt,
    )


def _leaves(value: Any) -> list[float] | None:
    """The numeric leaves of a result (dicts and lists walked in order), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict | list | tuple):
        out: list[float] = []
        for v in value.values() if isinstance(value, dict) else value:
            sub = _leaves(v)
            if sub is None:
                return None
            out += sub
        return out
    return None


def _rebuild(value: Any, pairs: list[tuple[float, float]]) -> Any:
    """``value``'s shape with each numeric leaf replaced by its interval (consumes pairs)."""
    if isinstance(value, dict):
        return {k: _rebuild(v, pairs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebuild(v, pairs) for v in value]
    return pairs.pop(0)


def _intervals(
    stats: Sequence[Statistic],
    plan: Plan,
    centred: Mapping[str, float],
    sd: Sequence[float],
    bounds: Mapping[str, ColumnBounds],
    draws: int = 400,
) -> dict[str, Any]:
    """95% intervals of every numeric result, by simulating the known noise.

    Pure post-processing of released values. Each leaf of a structured result (a
    histogram, regression coefficients, a survival curve) gets its interval; results
    that are not numbers (sets, booleans) get ``None``.
    """
    out: dict[str, Any] = {}
    names = [t.name for t in plan.terms]
    gen = np.random.default_rng(0)
    noise = gen.normal(size=(draws, len(names))) * np.array(sd)
    sims = np.array([centred[n] for n in names]) + noise
    scaled = plan.uncenter(centred)
    for s in stats:
        point = s.decode(scaled, bounds)
        leaves = _leaves(point) if s.quantitative else None
        if leaves is None:
            out[s.label] = None
            continue
        if not any(sd):
            out[s.label] = _rebuild(point, [(v, v) for v in leaves])
            continue
        rows = []
        for row in sims:
            sim = _leaves(s.decode(plan.uncenter(dict(zip(names, row, strict=True))), bounds))
            if sim is not None and len(sim) == len(leaves):
                rows.append(sim)
        if not rows:
            out[s.label] = None
            continue
        arr = np.array(rows)
        pairs = []
        for i, p in enumerate(leaves):
            col = arr[:, i][np.isfinite(arr[:, i])]
            if len(col) == 0 or not math.isfinite(p):
                pairs.append((math.nan, math.nan))
                continue
            lo, med, hi = np.percentile(col, [2.5, 50, 97.5])
            pairs.append((p - (float(med) - float(lo)), p + (float(hi) - float(med))))
        out[s.label] = _rebuild(point, pairs)
    return out
