"""The privacy budget splits over the terms one row can touch, not over all terms.

A row falls in one bin of a histogram, one group of a GROUP BY, one cell of a minimum's
domain: those terms are a partition (``Term.cell``), and the noise of each is calibrated
to the budget shared by what a row can touch at once (``Plan.row_reach``). Each check
below adds up, for rows spanning the domain, the zCDP cost ``v²/(2σ²)`` of the terms the
row makes non-zero (``σ²`` that of the noise the honest quorum is sure to add, ``v`` the
row's own term value from DuckDB's evaluation), and requires the worst row to cost the
query's ρ: never more (the guarantee), and not less (no budget wasted on terms a row
cannot reach).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tessera.analytics.distribution import Histogram, Max, Min, Quantile
from tessera.analytics.grouping import GroupBy
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.analytics.moments import Count, Mean, Variance
from tessera.analytics.precision import choose_precision, resolve
from tessera.analytics.statistic import Statistic
from tessera.analytics.terms import Term, row_reach
from tessera.protocol.query import noise_plans, plan_of

RHO, DELTA, N, T = 0.5, 1e-6, 3, 2
BOUNDS = {"age": ColumnBounds(18.0, 80.0), "sex": ColumnBounds(0.0, 1.0, 0)}


def worst_row_cost(stats: list[Statistic]) -> tuple[float, int, int]:
    """The highest zCDP cost of one row, over rows spanning the domain; the plan's
    reach and its number of terms."""
    bounds = resolve(BOUNDS, choose_precision(stats, BOUNDS, 10_000, True))
    plan = plan_of(stats, bounds)
    noise = noise_plans(plan, N, T, RHO, DELTA)
    rows = list(itertools.product(np.linspace(18, 80, 24), (0, 1)))
    db = LocalDatabase(
        {
            "t": pd.DataFrame(
                {"row": range(len(rows)), "age": [a for a, _ in rows], "sex": [s for _, s in rows]}
            )
        }
    )
    worst = 0.0
    for i in range(len(rows)):
        values = db.evaluate(plan, "t", BOUNDS, where=f"row = {i}", extra_columns=["row"]).values
        cost = sum(v * v / (2 * float(p.sigma_sq)) for v, p in zip(values, noise, strict=True) if v)
        worst = max(worst, cost)
    return worst, plan.row_reach(), len(plan.terms)


@pytest.mark.parametrize(
    "stats",
    [
        [Histogram("age", (18.0, 30.0, 45.0, 60.0, 80.0))],
        [Count(), Histogram("age", (18.0, 30.0, 45.0, 60.0, 80.0))],
        [Quantile("age", 0.5, bins=16)],
        [Quantile("age", 0.5, window=(30.0, 40.0))],
        [Min("age", cells=16), Max("age", cells=16)],
        [GroupBy(Histogram("age", (18.0, 40.0, 80.0)), "sex", (0, 1))],
        [GroupBy(Mean("age"), "sex", (0, 1)), Variance("age")],
    ],
    ids=lambda s: " + ".join(x.label for x in s),
)
def test_no_row_costs_more_than_the_budget_and_the_worst_costs_all_of_it(
    stats: list[Statistic],
) -> None:
    worst, reach, terms = worst_row_cost(stats)
    # σ² of the honest quorum's noise is at least Δ²/(2ρ) per term, and rounds up a hair
    assert 0.97 * RHO <= worst <= RHO
    assert reach < terms  # a partition was found: the split is over fewer terms than all


def test_a_histograms_bins_each_get_the_noise_of_one_count() -> None:
    bounds = resolve(BOUNDS, choose_precision([Count()], BOUNDS, 10_000, True))
    (count,) = noise_plans(plan_of([Count()], bounds), N, T, RHO, DELTA)
    hist = plan_of([Histogram("age", tuple(float(e) for e in range(18, 81, 2)))], bounds)
    assert len(hist.terms) == 31 and hist.row_reach() == 1
    assert {p.sd_all_honest for p in noise_plans(hist, N, T, RHO, DELTA)} == {count.sd_all_honest}


def test_partitions_side_by_side_and_nested_are_counted_as_a_row_can_touch_them() -> None:
    def term(name: str, *cell: tuple[str, str]) -> Term:
        return Term(name, "1", 0, 1, cell=cell)

    terms = [
        term("free"),
        term("a0", ("A", "0")),
        term("a1", ("A", "1")),
        term("b0", ("B", "0")),  # another partition: a row is in one of its cells too
        term("g0", ("G", "x")),
        term("g0h0", ("G", "x"), ("H", "0")),
        term("g0h1", ("G", "x"), ("H", "1")),
        term("g1", ("G", "y")),
    ]
    # free + one of A + one of B + (group x: its own term + one of H) = 1 + 1 + 1 + 2
    assert row_reach(terms) == 5
    assert row_reach([term("a", ("A", "0")), term("b", ("A", "0"))]) == 2  # one cell, 2 terms
