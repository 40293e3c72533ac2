"""Kaplan–Meier survival curves from encrypted events and removals per public time bin (KM58).

Per bin ``b`` each provider sums ``d_b`` (events) and ``c_b`` (all rows whose
time falls in the bin, events and censored); the analyst rebuilds the number
at risk ``r_b = n − Σ_{b'<b} c_{b'}`` and ``S(t) = Π (1 − d_b / r_b)`` with
Greenwood's variance and a log-log 95% band (Kalbfleisch–Prentice).
With one bin per distinct time this is the textbook estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tessera.analytics.statistic import Bounds, Statistic, Totals, count_name, indicator_term, q
from tessera.analytics.terms import Term
from tessera.errors import QueryError

Z95 = 1.959963984540054


@dataclass(frozen=True)
class KaplanMeier(Statistic):
    """Survival curve of ``time`` (with ``event`` = 1 for an event, 0 for censored)."""

    time: str
    event: str
    edges: tuple[float, ...]
    kind = "kaplan_meier"

    def __post_init__(self) -> None:
        pairs = zip(self.edges, self.edges[1:], strict=False)
        if len(self.edges) < 2 or any(b <= a for a, b in pairs):
            raise QueryError("Kaplan–Meier time edges must be strictly increasing")

    @property
    def label(self) -> str:
        return f"kaplan_meier({self.time}, {self.event})"

    def columns(self) -> tuple[str, ...]:
        return (self.time, self.event)

    def integer_columns(self) -> tuple[str, ...]:
        return (self.event,)  # compared with 1

    def _bins(self, bounds: Bounds) -> list[tuple[int, int, bool]]:
        s = bounds[self.time].scale
        e = [math.ceil(x * s) for x in self.edges]
        return [(e[i], e[i + 1], i == len(e) - 2) for i in range(len(e) - 1)]

    def terms(self, bounds: Bounds) -> list[Term]:
        t, ev = q(self.time), q(self.event)
        ok = f"{t} IS NOT NULL AND {ev} IS NOT NULL"
        out = [indicator_term(count_name(self.columns()), ok)]
        for i, (lo, hi, last) in enumerate(self._bins(bounds)):
            inside = f"{ok} AND {t} >= {lo} AND {t} {'<=' if last else '<'} {hi}"
            out.append(indicator_term(f"km[{self.time};{i}]:removed", inside))
            out.append(indicator_term(f"km[{self.time};{i}]:events", f"{inside} AND {ev} = 1"))
        return out

    def decode(self, totals: Totals, bounds: Bounds) -> dict[str, Any]:
        n = totals[count_name(self.columns())]
        at_risk = n
        surv, green = 1.0, 0.0
        rows = []
        for i in range(len(self.edges) - 1):
            d = max(0.0, totals[f"km[{self.time};{i}]:events"])
            c = max(0.0, totals[f"km[{self.time};{i}]:removed"])
            d = min(d, at_risk) if at_risk > 0 else 0.0
            if at_risk > 0 and d > 0:
                surv *= 1.0 - d / at_risk
                if at_risk > d:
                    green += d / (at_risk * (at_risk - d))
            lo, hi = _loglog_band(surv, green)
            rows.append(
                {
                    "time": self.edges[i + 1],
                    "at_risk": at_risk,
                    "events": d,
                    "survival": surv,
                    "ci95_low": lo,
                    "ci95_high": hi,
                }
            )
            at_risk = max(0.0, at_risk - c)
        return {"n": n, "curve": rows}


def _loglog_band(s: float, greenwood: float) -> tuple[float, float]:
    if s <= 0.0 or s >= 1.0 or greenwood <= 0.0:
        return s, s
    log_s = math.log(s)
    se = math.sqrt(greenwood) / abs(log_s)
    lo = s ** math.exp(Z95 * se)
    hi = s ** math.exp(-Z95 * se)
    return lo, hi
