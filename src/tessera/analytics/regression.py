"""One-shot regressions from encrypted moments: OLS / ridge, and logistic (AHTW16).

Both models need only ``XᵀX``, ``Xᵀy`` and ``Σy²`` over the complete cases, so
one encrypted query suffices. Logistic regression minimises the degree-2
Taylor expansion of the logistic loss around ``w = 0``:
``log(1 + e^{−z}) ≈ log 2 − z/2 + z²/8`` with ``z = y'·wᵀx`` and
``y' = 2y − 1``, whose minimiser (with an L2 penalty ``λ``) is
``w = (XᵀX + 4λI)⁻¹ · 2·Xᵀy'`` (the approach of Aono, Hayashi, Trieu Phong and
Wang, used by Drynx). :class:`ModelEvaluation` then scores a public model on
the providers' data (accuracy and AUC, or R²) in a second query.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tessera.analytics.distribution import equal_edges
from tessera.analytics.models import LinearModel, LogisticModel, binary_rates
from tessera.analytics.statistic import (
    Bounds,
    Statistic,
    Totals,
    complete_count_term,
    count_name,
    indicator_term,
    literal,
    product_name,
    product_term,
    q,
    sum_name,
    sum_term,
)
from tessera.analytics.terms import Term
from tessera.errors import QueryError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class _Design(Statistic):
    y: str
    x: tuple[str, ...]
    ridge: float = 0.0
    intercept: bool = True

    def __post_init__(self) -> None:
        if not self.x:
            raise QueryError("a regression needs at least one feature")
        if self.y in self.x or len(set(self.x)) != len(self.x):
            raise QueryError("features must be distinct and differ from the outcome")
        if self.ridge < 0:
            raise QueryError("ridge penalty must be non-negative")

    def columns(self) -> tuple[str, ...]:
        return (self.y, *self.x)

    def terms(self, bounds: Bounds) -> list[Term]:
        cols = self.columns()
        out = [complete_count_term(cols)]
        out += [sum_term(c, bounds, cols) for c in cols]
        out += [product_term(a, b, bounds, cols) for i, a in enumerate(cols) for b in cols[i:]]
        return out

    def moments(self, totals: Totals) -> tuple[float, FloatArray, FloatArray, float, float]:
        """``n``, ``XᵀX`` and ``Xᵀy`` (intercept column first if any), ``Σy``, ``Σy²``."""
        cols = self.columns()
        n = totals[count_name(cols)]
        sx = np.array([totals[sum_name(c, cols)] for c in self.x])
        xx = np.array([[totals[product_name(a, b, cols)] for b in self.x] for a in self.x])
        xy = np.array([totals[product_name(a, self.y, cols)] for a in self.x])
        sy = totals[sum_name(self.y, cols)]
        syy = totals[product_name(self.y, self.y, cols)]
        if self.intercept:
            xtx = np.block([[np.array([[n]]), sx[None, :]], [sx[:, None], xx]])
            xty = np.concatenate([[sy], xy])
        else:
            xtx, xty = xx, xy
        return n, xtx, xty, sy, syy

    def names(self) -> list[str]:
        return (["intercept"] if self.intercept else []) + list(self.x)

    def _penalty(self, p: int) -> FloatArray:
        pen = np.eye(p)
        if self.intercept:
            pen[0, 0] = 0.0
        return pen


@dataclass(frozen=True)
class LinearRegression(_Design):
    """OLS (``ridge = 0``) or ridge regression with standard errors and R²."""

    kind = "linear_regression"

    @property
    def label(self) -> str:
        return f"linear_regression({self.y} ~ {' + '.join(self.x)})"

    def decode(self, totals: Totals, bounds: Bounds) -> LinearModel:
        n, xtx, xty, sy, syy = self.moments(totals)
        p = len(xty)
        if self.intercept:
            beta, cov, rss, tss = self._centred_fit(n, xtx, xty, sy, syy)
        else:
            a = xtx + self.ridge * self._penalty(p)
            beta = _solve(a, xty)
            rss = max(0.0, float(syy - 2 * beta @ xty + beta @ xtx @ beta))
            tss = float(syy)
            try:
                inv = np.linalg.inv(a)
                cov = inv @ xtx @ inv
            except np.linalg.LinAlgError:
                cov = np.full((p, p), math.nan)
        dof = n - p
        sigma2 = rss / dof if dof > 0 else math.nan
        se = np.sqrt(np.clip(np.diag(sigma2 * cov), 0, None))
        return LinearModel(
            dict(zip(self.names(), beta.tolist(), strict=True)),
            n,
            {
                "std_errors": dict(zip(self.names(), se.tolist(), strict=True)),
                "r2": 1.0 - rss / tss if tss > 0 else math.nan,
            },
        )

    def _centred_fit(
        self, n: float, xtx: FloatArray, xty: FloatArray, sy: float, syy: float
    ) -> tuple[FloatArray, FloatArray, float, float]:
        """Slopes from the centred moments (the intercept's collinearity with the raw
        columns would square the condition number), then the intercept; the
        coefficients' covariance up to ``σ²``, the residual and total sums of squares."""
        p = len(xty)
        if n <= 0:
            nan = np.full(p, math.nan)
            return nan, np.full((p, p), math.nan), math.nan, math.nan
        mx, my = xtx[0, 1:] / n, sy / n
        cxx = xtx[1:, 1:] - n * np.outer(mx, mx)
        cxy = xty[1:] - n * mx * my
        cyy = float(syy - n * my * my)
        a = cxx + self.ridge * np.eye(p - 1)
        slopes = _solve(a, cxy)
        beta = np.concatenate([[my - slopes @ mx], slopes])
        rss = max(0.0, float(cyy - 2 * slopes @ cxy + slopes @ cxx @ slopes))
        try:
            inv = np.linalg.inv(a)
        except np.linalg.LinAlgError:
            return beta, np.full((p, p), math.nan), rss, cyy
        cs = inv @ cxx @ inv
        cov = np.empty((p, p))
        cov[1:, 1:] = cs
        cov[0, 1:] = cov[1:, 0] = -cs @ mx
        cov[0, 0] = 1.0 / n + mx @ cs @ mx
        return beta, cov, rss, cyy


def _solve(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a⁻¹b`` for a symmetric ``a``, equilibrated by its diagonal (least squares if singular)."""
    d = np.sqrt(np.abs(np.diag(a)))
    d[d == 0] = 1.0
    scaled = a / np.outer(d, d)
    try:
        z = np.linalg.solve(scaled, b / d)
    except np.linalg.LinAlgError:
        z = np.linalg.lstsq(scaled, b / d, rcond=None)[0]
    return np.asarray(z / d, dtype=np.float64)


@dataclass(frozen=True)
class LogisticRegression(_Design):
    """Logistic regression from the degree-2 approximation of its loss (``y`` in {0, 1})."""

    kind = "logistic_regression"

    @property
    def label(self) -> str:
        return f"logistic_regression({self.y} ~ {' + '.join(self.x)})"

    def decode(self, totals: Totals, bounds: Bounds) -> LogisticModel:
        n, xtx, xty, _, _ = self.moments(totals)
        # Xᵀy' with y' = 2y − 1: 2·Xᵀy − Xᵀ1, and Xᵀ1 is the first row of XᵀX with intercept
        x_sum = xtx[0] if self.intercept else self._column_sums(totals)
        xty_signed = 2 * xty - x_sum
        p = len(xty)
        w = _solve(xtx + 4 * self.ridge * self._penalty(p), 2 * xty_signed)
        return LogisticModel(dict(zip(self.names(), w.tolist(), strict=True)), n)

    def _column_sums(self, totals: Totals) -> FloatArray:
        cols = self.columns()
        return np.array([totals[sum_name(c, cols)] for c in self.x])


@dataclass(frozen=True)
class ModelEvaluation(Statistic):
    """Accuracy, precision, recall, F1 and AUC of a public logistic model (the AUC from
    score histograms of ``auc_bins`` bins), or R² of a linear one, on providers' data."""

    y: str
    coefficients: tuple[tuple[str, float], ...]  # ("intercept", b0), (feature, w)...
    model: str = "logistic"
    auc_bins: int = 64
    residual_scale_bits: int | None = None  # None: 2^40 steps of the squared bound
    _cols: tuple[str, ...] = field(init=False, repr=False, compare=False)

    kind = "model_evaluation"

    def __post_init__(self) -> None:
        if self.model not in ("logistic", "linear"):
            raise QueryError("model must be 'logistic' or 'linear'")
        feats = tuple(n for n, _ in self.coefficients if n != "intercept")
        object.__setattr__(self, "_cols", (self.y, *feats))

    @property
    def label(self) -> str:
        return f"evaluate_{self.model}({self.y})"

    def columns(self) -> tuple[str, ...]:
        return self._cols

    def _score_sql(self, bounds: Bounds) -> tuple[str, float, float]:
        """DuckDB expression of ``wᵀx`` in real units, with its public bounds."""
        parts, lo, hi = [], 0.0, 0.0
        for name, w in self.coefficients:
            if name == "intercept":
                parts.append(literal(w))
                lo, hi = lo + w, hi + w
                continue
            b = bounds[name]
            parts.append(f"{literal(w)} * ({q(name)}::DOUBLE / {b.scale})")
            ends = (w * b.lo, w * b.hi)
            lo, hi = lo + min(ends), hi + max(ends)
        return " + ".join(parts) or "0", lo, hi

    def _present(self) -> str:
        return " AND ".join(f"{q(c)} IS NOT NULL" for c in self._cols)

    def terms(self, bounds: Bounds) -> list[Term]:
        score, lo, hi = self._score_sql(bounds)
        y = f"({q(self.y)}::DOUBLE / {bounds[self.y].scale})"
        ok = self._present()
        out = [complete_count_term(self._cols)]
        if self.model == "logistic":
            out.append(
                indicator_term(
                    f"eval[{self.label}:correct]", f"{ok} AND (({score}) > 0) = ({y} > 0.5)"
                )
            )
            for name, cond in (
                ("tp", f"({score}) > 0 AND {y} > 0.5"),
                ("fp", f"({score}) > 0 AND {y} <= 0.5"),
                ("fn", f"({score}) <= 0 AND {y} > 0.5"),
            ):
                out.append(indicator_term(f"eval[{self.label}:{name}]", f"{ok} AND {cond}"))
            edges = equal_edges(lo, hi, self.auc_bins) if hi > lo else (lo, lo + 1.0)
            for cls in (0, 1):
                for i in range(len(edges) - 1):
                    cmp = "<=" if i == len(edges) - 2 else "<"
                    lo_e, hi_e = literal(edges[i]), literal(edges[i + 1])
                    cond = (
                        f"{ok} AND ({y} > 0.5) = {'TRUE' if cls else 'FALSE'} AND "
                        f"({score}) >= {lo_e} AND ({score}) {cmp} {hi_e}"
                    )
                    out.append(indicator_term(f"eval[{self.label}:h{cls}:{i}]", cond))
            return out
        yb = bounds[self.y]
        worst = max(abs(yb.hi - lo), abs(yb.lo - hi), abs(yb.hi - hi), abs(yb.lo - lo))
        bits = self.residual_scale_bits
        if bits is None:  # a squared residual in 2^40 steps of its bound (3 limbs a row sum)
            bits = max(0, min(40, 40 - math.ceil(math.log2(worst * worst + 1))))
        scale = 1 << bits
        cap = math.ceil(worst * worst * scale)
        resid = f"CASE WHEN {ok} THEN ROUND(POWER({y} - ({score}), 2) * {scale}) ELSE 0 END"
        cols = self._cols
        out += [
            Term(
                f"eval[{self.label}:rss]",
                resid,
                0,
                cap,
                scale,
                row_rounding=0.5 / scale,
                count_ref=count_name(cols),
            ),
            sum_term(self.y, bounds, cols),
            product_term(self.y, self.y, bounds, cols),
        ]
        return out

    def decode(self, totals: Totals, bounds: Bounds) -> dict[str, float]:
        n = totals[count_name(self._cols)]
        if self.model == "logistic":
            correct = totals[f"eval[{self.label}:correct]"]
            h0 = [totals[f"eval[{self.label}:h0:{i}]"] for i in range(self.auc_bins)]
            h1 = [totals[f"eval[{self.label}:h1:{i}]"] for i in range(self.auc_bins)]
            tp, fp, fn = (totals[f"eval[{self.label}:{k}]"] for k in ("tp", "fp", "fn"))
            return {
                "accuracy": correct / n if n > 0 else math.nan,
                **binary_rates(max(tp, 0.0), max(fp, 0.0), max(fn, 0.0)),
                "auc": auc(h0, h1),
                "n": n,
            }
        rss = totals[f"eval[{self.label}:rss]"]
        sy = totals[sum_name(self.y, self._cols)]
        syy = totals[product_name(self.y, self.y, self._cols)]
        tss = syy - sy * sy / n if n > 0 else math.nan
        return {"r2": 1.0 - rss / tss if tss and tss > 0 else math.nan, "n": n}


def auc(neg_hist: Sequence[float], pos_hist: Sequence[float]) -> float:
    """Area under the ROC curve from score histograms (ties within a bin count one half)."""
    neg = np.clip(np.asarray(neg_hist, dtype=float), 0, None)
    pos = np.clip(np.asarray(pos_hist, dtype=float), 0, None)
    if neg.sum() <= 0 or pos.sum() <= 0:
        return math.nan
    neg_below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    wins = float(np.sum(pos * (neg_below + 0.5 * neg)))
    return wins / float(pos.sum() * neg.sum())
