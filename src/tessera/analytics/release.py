"""What a query releases: the statistics decoded, their 95% intervals, the privacy cost.

Pure post-processing of the released totals, the same for every way a query runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tessera.analytics.local import ColumnBounds
from tessera.analytics.precision import term_rounding
from tessera.analytics.statistic import Statistic
from tessera.analytics.terms import Plan
from tessera.dp import rho_to_eps_delta
from tessera.errors import QueryError
from tessera.protocol.aggregation import AggregationRecord, Verdict

if TYPE_CHECKING:
    from tessera.ledger.session import LedgerReceipt
    from tessera.protocol.query import QueryTicket


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
    max_bias: dict[str, float] = field(default_factory=dict)  # per term: t-1 cheaters' reach
    ticket: QueryTicket | None = field(default=None, repr=False)  # the query, as its id hashes
    #: per numeric column, the fixed-point bits the query scaled it by
    precision: dict[str, int] = field(default_factory=dict)
    #: per statistic (shaped like its value), the most rounding to fixed point and the
    #: statistic's own bins or cells can have moved it; None for sets and truth values
    rounding: dict[str, Any] = field(default_factory=dict)
    #: the released totals, by term, in the columns' units (what later passes build on)
    totals: dict[str, float] = field(default_factory=dict, repr=False)
    #: a statistic that takes several queries: every pass's own result, in order
    passes: list[QueryResult] = field(default_factory=list, repr=False)
    #: the SQL the query came from (:class:`~tessera.analytics.sql.ParsedQuery`), if any
    sql: Any = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        return self.verdict.ok

    def __getitem__(self, label: str) -> Any:
        """A statistic's value by its label, or by its SQL alias or column name."""
        if label not in self.values and self.sql is not None:
            alias = self.sql.alias(label)
            if alias is not None:
                return self.values[alias]
        return self.values[label]

    @property
    def value(self) -> Any:
        """The value of a single-statistic query."""
        if len(self.values) != 1:
            raise QueryError("this result holds several statistics; index it by label")
        return next(iter(self.values.values()))

    def merge(self, later: QueryResult) -> QueryResult:
        """This result with a later pass's statistics, costs, verdicts and timings added."""
        if not self.passes:
            self.passes.append(dataclasses.replace(self, passes=[]))
        self.passes.append(later)
        for label, value in later.values.items():
            self.values[label] = value
            self.intervals[label] = later.intervals.get(label)
            self.rounding[label] = later.rounding.get(label)
        costs = [p.privacy_cost for p in self.passes]
        if all(c is not None for c in costs):
            rho = sum(c.rho for c in costs if c is not None)
            delta = costs[0].delta if costs[0] is not None else 0.0
            eps, d = rho_to_eps_delta(rho, delta)
            self.privacy_cost = PrivacyCost(rho, float(eps), float(d))
        v, w = self.verdict, later.verdict
        self.verdict = Verdict(
            v.ok and w.ok,
            v.checked_proofs + w.checked_proofs,
            v.failures + w.failures,
            tuple(sorted({*v.cheaters, *w.cheaters})),
            tuple(sorted({*v.noise_cheaters, *w.noise_cheaters})),
        )
        for k, s in later.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + s
        self.excluded_providers.update(later.excluded_providers)
        return self

    def to_pandas(self) -> Any:
        """A wide frame: for SQL, as SQL shapes it (:func:`~tessera.analytics.sql.to_frame`:
        one row per group, one column per select item); otherwise one row, one column per
        statistic (a scalar's interval in ``<label>_ci95_low`` / ``_high`` after it,
        structured values as they are)."""
        import pandas as pd

        if self.sql is not None:
            from tessera.analytics.sql import to_frame

            return to_frame(self, self.sql)
        row: dict[str, Any] = {}
        for k, v in self.values.items():
            row[k] = v
            ci = self.intervals.get(k)
            if isinstance(v, int | float) and isinstance(ci, tuple) and len(ci) == 2:
                row[f"{k}_ci95_low"], row[f"{k}_ci95_high"] = ci
        return pd.DataFrame([row])


def critical_path(roles: Mapping[str, Mapping[str, float]]) -> float:
    """Latency if every provider and node had its own core.

    Roles that run side by side count their slowest member. Computing nodes draw and
    prove their noise as soon as the query is registered (it depends on the query
    only), so that stage overlaps the providers' work. The time spent waiting for the
    ledger is not counted here (it depends on the chain, not on the computation): the
    analyst's own is ``QueryResult.seconds["ledger"]``, each role's (when it runs in
    process) ``role_seconds["ledger"]``.
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
    max_bias: dict[str, float] | None = None,
) -> QueryResult:
    """The analyst's result from the released totals: statistics decoded, their 95%
    intervals, the privacy cost, and per term the most that ``t − 1`` cheating nodes
    could have shifted it within their noise proofs (``max_bias``)."""
    t0 = time.perf_counter()
    bounds = plan.bounds or bounds
    centred = {t.name: v / t.scale for t, v in zip(plan.terms, totals, strict=True)}
    scaled = plan.uncenter(centred)
    values = {s.label: s.decode(scaled, bounds) for s in stats}
    sd_by_term = {t.name: s for t, s in zip(plan.terms, sd, strict=True)}
    rounding = _rounding(stats, plan, scaled, values, sd_by_term, bounds)
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
        max_bias=dict(max_bias or {}),
        precision={c: b.bits for c, b in sorted(bounds.items()) if b.chosen},
        rounding=rounding,
        totals=dict(scaled),
    )


def _rounding(
    stats: Sequence[Statistic],
    plan: Plan,
    scaled: Mapping[str, float],
    values: Mapping[str, Any],
    sd: Mapping[str, float],
    bounds: Mapping[str, ColumnBounds],
) -> dict[str, Any]:
    """Per statistic, the most fixed-point rounding (and its own discretisation) can have
    moved each numeric leaf: the effect of shifting each term by its rounding bound
    (:func:`~tessera.analytics.precision.term_rounding`), added up, to first order."""
    counts = {n: abs(v) + 4 * sd.get(n, 0.0) for n, v in scaled.items()}
    per_term = term_rounding(plan, counts)
    out: dict[str, Any] = {}
    for s in stats:
        point = values[s.label]
        leaves = _leaves(point) if s.quantitative else None
        if leaves is None:
            out[s.label] = None
            continue
        total = np.zeros(len(leaves))
        for name in {t.name for t in s.terms(bounds)} & set(per_term):
            moved = dict(scaled)
            moved[name] = scaled[name] + per_term[name]
            got = _leaves(s.decode(moved, bounds))
            if got is None or len(got) != len(leaves):
                total += math.inf
                continue
            with np.errstate(invalid="ignore"):
                total += np.abs(np.array(got) - np.array(leaves))
        total = np.nan_to_num(total, nan=math.inf) + s.discretisation(bounds)
        out[s.label] = _rebuild(point, [float(v) for v in total])
    return out


def _leaves(value: Any) -> list[float] | None:
    """The numeric leaves of a result (dicts and lists walked in order), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return [float(value)]
    if hasattr(value, "to_dict"):  # a model: its numbers
        return _leaves(value.to_dict())
    if isinstance(value, dict | list | tuple):
        out: list[float] = []
        for v in value.values() if isinstance(value, dict) else value:
            sub = _leaves(v)
            if sub is None:
                return None
            out += sub
        return out
    return None


def _rebuild(value: Any, pairs: list[Any]) -> Any:
    """``value``'s shape with each numeric leaf replaced by its interval (consumes pairs)."""
    if isinstance(value, dict):
        return {k: _rebuild(v, pairs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebuild(v, pairs) for v in value]
    if hasattr(value, "to_dict"):
        return _rebuild(value.to_dict(), pairs)
    return pairs.pop(0)


def _intervals(
    stats: Sequence[Statistic],
    plan: Plan,
    centred: Mapping[str, float],
    sd: Sequence[float],
    bounds: Mapping[str, ColumnBounds],
    draws: int = 400,
) -> dict[str, Any]:
    """95% intervals of every numeric result: the statistic's own
    (:meth:`~tessera.analytics.statistic.Statistic.interval`), or by simulating the known
    noise around the released totals.

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
        own = s.interval(scaled, dict(zip(names, sd, strict=True)), bounds)
        if own is not None:
            out[s.label] = own
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
