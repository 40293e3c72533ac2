"""Statistics that take several queries: each pass a query of its own, charged to the budget.

A quantile asks first for a coarse histogram over its bounds, then for a fine one over
the bins that hold its order statistics (:class:`~tessera.analytics.distribution.Quantile`);
a logistic regression may take Newton steps from its first estimate
(:class:`~tessera.analytics.regression.LogisticRegression`). How many passes a statistic
takes is public and fixed before the first one runs (:meth:`Statistic.passes`), so the
privacy cost is too: a query of budget ``ρ`` gives each pass the share of ``ρ`` that the
terms one row can touch in it are of those of all passes (every term gets the same ``ρ``
as in a single query of all of them), and by composition of zCDP the passes together
cost ``ρ``. Each pass is submitted, admitted, noised, switched and verified like any
query; the next pass is built from the previous one's released totals only
(post-processing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tessera.analytics.local import ColumnBounds
from tessera.analytics.precision import DEFAULT_MAX_ROWS, choose_precision, resolve
from tessera.analytics.release import QueryResult
from tessera.analytics.statistic import Statistic

#: one query: its statistics and its ρ (None: exact) → its result
RunOnce = Callable[[Sequence[Statistic], float | None], QueryResult]


def schedule(
    stats: Sequence[Statistic], bounds: Mapping[str, ColumnBounds], noised: bool
) -> list[list[Statistic]]:
    """The shape of every pass (their statistics with placeholder windows or steps)."""
    bounds = resolve(bounds, choose_precision(stats, bounds, DEFAULT_MAX_ROWS, noised))
    count = [s.passes(bounds, noised) for s in stats]
    shapes = [list(stats)]
    current = list(stats)
    for k in range(1, max(count)):
        current = [
            s.refine(None, bounds, noised) if c > k else s
            for s, c in zip(current, count, strict=True)
        ]
        shapes.append([s for s, c in zip(current, count, strict=True) if c > k])
    return shapes


def split_budget(
    shapes: Sequence[Sequence[Statistic]], bounds: Mapping[str, ColumnBounds], rho: float
) -> list[float]:
    """Each pass's ``ρ``: its share of the terms a row can touch over all passes."""
    from tessera.protocol.query import plan_of  # the protocol builds on analytics

    terms = [plan_of(list(shape), bounds).row_reach() for shape in shapes]
    return [rho * t / sum(terms) for t in terms]


def run_in_passes(
    run_once: RunOnce,
    stats: Sequence[Statistic],
    bounds: Mapping[str, ColumnBounds],
    rho: float | None,
) -> QueryResult:
    """Run ``stats`` in as many queries as they need; one result, every pass in ``passes``."""
    noised = rho is not None
    shapes = schedule(stats, bounds, noised)
    if len(shapes) == 1:
        return run_once(stats, rho)
    budgets: list[float | None] = [None] * len(shapes)
    if rho is not None:
        budgets = list(split_budget(shapes, bounds, rho))
    resolved = resolve(bounds, choose_precision(stats, bounds, DEFAULT_MAX_ROWS, noised))
    count = [s.passes(resolved, noised) for s in stats]
    result = run_once(stats, budgets[0])
    current = list(stats)
    for k in range(1, len(shapes)):
        last = result.passes[-1] if result.passes else result
        ran = resolve(bounds, last.precision)  # the precision that pass's ticket fixed
        current = [
            s.refine(last.totals, ran, noised) if c > k else s
            for s, c in zip(current, count, strict=True)
        ]
        active = [s for s, c in zip(current, count, strict=True) if c > k]
        result = result.merge(run_once(active, budgets[k]))
    return result
