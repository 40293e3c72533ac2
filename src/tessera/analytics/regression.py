"""Regressions from encrypted sums: OLS / ridge in one query, logistic by Newton's method.

Linear regression needs only ``XᵀX``, ``Xᵀy`` and ``Σy²`` over the complete cases, so
one encrypted query suffices. Logistic regression (``y`` in {0, 1}) starts from the
minimiser of the degree-2 Taylor expansion of the logistic loss around ``w = 0``,
``log(1 + e^{−z}) ≈ log 2 − z/2 + z²/8`` with ``z = y'·wᵀx`` and ``y' = 2y − 1``
(with an L2 penalty ``λ``: ``w = (XᵀX + 4λI)⁻¹ · 2·Xᵀy'``, the one-shot approach of
Aono, Hayashi, Trieu Phong and Wang, used by Drynx), then takes Newton steps towards
the maximum-likelihood fit: each step is one more query, in which every provider
sums the gradient ``Σ (y − p)·x``, the Hessian ``Σ p(1 − p)·x xᵀ`` and the loss at the
current, public coefficients (:mod:`tessera.analytics.passes`). A step whose loss
came out higher than the best so far is halved back towards it. Eight steps reach
scikit-learn's fit to 1e-8 on its bundled tables; the penalty is ``λ/2·‖w‖²`` on the
slopes, scikit-learn's ``C = 1/λ``. :class:`ModelEvaluation` then scores a public model
on the providers' data (accuracy and AUC, or R²) in a query of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
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


#: Newton steps a logistic regression takes after its first estimate, by default
NEWTON_STEPS_EXACT = 8
NEWTON_STEPS_NOISED = 2
#: a Newton pass's row values are resolved into 2^bits steps of their bound
NEWTON_ROW_BITS_EXACT = 40
NEWTON_ROW_BITS_NOISED = 24
#: the largest coefficient a Newton pass evaluates at (bounds the terms' row values)
MAX_COEFFICIENT = 1e9


@dataclass(frozen=True)
class LogisticRegression(_Design):
    """Logistic regression (``y`` in {0, 1}): a first estimate from the degree-2
    approximation of the loss, then ``newton_steps`` Newton steps (None: 8 in exact
    mode, 2 under noise, where each pass's share of the budget shrinks with their
    number). ``row_bits`` (None: 40 exact, 24 under noise) resolves a Newton pass's row
    values into ``2^row_bits`` steps of their bounds. ``at``, ``best`` and ``best_loss``
    are set by the passes themselves: the coefficients a Newton pass evaluates at, and
    the best point and penalised loss so far."""

    newton_steps: int | None = None
    row_bits: int | None = None
    at: tuple[float, ...] | None = None
    best: tuple[float, ...] | None = None
    best_loss: float | None = None

    kind = "logistic_regression"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.newton_steps is not None and not 0 <= self.newton_steps <= 32:
            raise QueryError("newton_steps must be between 0 and 32")
        p = len(self.x) + self.intercept
        for name in ("at", "best"):
            point = getattr(self, name)
            if point is not None and len(point) != p:
                raise QueryError(f"logistic regression: {name} must hold {p} coefficients")
            if point is not None and not all(abs(v) <= MAX_COEFFICIENT for v in point):
                raise QueryError(f"logistic regression: {name} holds a coefficient beyond 1e9")
        if self.row_bits is not None and not 8 <= self.row_bits <= 48:
            raise QueryError("row_bits must be between 8 and 48")
        if self.best is not None and (self.at is None or self.best_loss is None):
            raise QueryError("logistic regression: best needs at and best_loss")

    @property
    def label(self) -> str:
        return f"logistic_regression({self.y} ~ {' + '.join(self.x)})"

    def _steps(self, noised: bool) -> int:
        if self.newton_steps is not None:
            return self.newton_steps
        return NEWTON_STEPS_NOISED if noised else NEWTON_STEPS_EXACT

    def passes(self, bounds: Bounds, noised: bool) -> int:
        return 1 if self.at is not None else 1 + self._steps(noised)

    def terms(self, bounds: Bounds) -> list[Term]:
        if self.at is None:
            return super().terms(bounds)
        return self._newton_terms(bounds)

    # -- the first estimate ----------------------------------------------------------
    def _first(self, totals: Totals) -> FloatArray:
        _, xtx, xty, _, _ = self.moments(totals)
        # Xᵀy' with y' = 2y − 1: 2·Xᵀy − Xᵀ1, and Xᵀ1 is the first row of XᵀX with intercept
        x_sum = xtx[0] if self.intercept else self._column_sums(totals)
        xty_signed = 2 * xty - x_sum
        p = len(xty)
        return _solve(xtx + 4 * self.ridge * self._penalty(p), 2 * xty_signed)

    def _column_sums(self, totals: Totals) -> FloatArray:
        cols = self.columns()
        return np.array([totals[sum_name(c, cols)] for c in self.x])

    # -- a Newton pass -------------------------------------------------------------------
    def _newton_terms(self, bounds: Bounds) -> list[Term]:
        """Count, loss, gradient and Hessian at ``at`` over the complete cases."""
        assert self.at is not None
        cols = self.columns()
        names = self.names()
        score, s_lo, s_hi = score_sql(tuple(zip(names, self.at, strict=True)), bounds)
        ok = " AND ".join(f"{q(c)} IS NOT NULL" for c in sorted(set(cols)))
        y = f"({q(self.y)}::DOUBLE / {bounds[self.y].scale})"
        names_of = {k: f"_newton_{k}_{self._point_id()}" for k in "szh"}
        derived = (
            (names_of["s"], score),
            (names_of["z"], f"(2 * {y} - 1) * {q(names_of['s'])}"),
            (names_of["h"], f"TANH(0.5 * {q(names_of['s'])})"),  # p = (1 + tanh(s/2)) / 2
        )
        half, z = q(names_of["h"]), q(names_of["z"])
        xs = {"intercept": ("1.0", (1.0, 1.0))}
        for c in self.x:
            b = bounds[c]
            xs[c] = (f"({q(c)}::DOUBLE / {b.scale})", (b.lo, b.hi))
        bits = self.row_bits or NEWTON_ROW_BITS_EXACT
        out = [complete_count_term(cols)]
        loss = f"GREATEST(-{z}, 0) + LN(1 + EXP(-ABS({z})))"  # log(1 + e^-z), stable
        worst = max(abs(s_lo), abs(s_hi)) + math.log(2)
        out.append(self._term("loss", loss, ok, 0.0, worst, bits, derived))
        for a in names:
            xa, (lo, hi) = xs[a]
            m = max(abs(lo), abs(hi))
            grad = f"({y} - 0.5 * (1 + {half})) * {xa}"
            out.append(self._term(f"g:{a}", grad, ok, -m, m, bits, derived))
        for i, a in enumerate(names):
            for b_ in names[i:]:
                (xa, ra), (xb, rb) = xs[a], xs[b_]
                ends = [u * v for u in ra for v in rb]
                lo, hi = (0.0, max(ends)) if a == b_ else (min(ends), max(ends))
                expr = f"0.25 * (1 - {half} * {half}) * {xa} * {xb}"
                out.append(self._term(f"h:{a}:{b_}", expr, ok, 0.25 * lo, 0.25 * hi, bits, derived))
        return out

    def _term(
        self,
        part: str,
        expr: str,
        ok: str,
        lo: float,
        hi: float,
        bits: int,
        derived: tuple[tuple[str, str], ...],
    ) -> Term:
        """A Newton pass's term: ``expr`` in ``[lo, hi]``, resolved into ``2^bits`` steps of
        its bound (its fixed-point scale)."""
        top = max(abs(lo), abs(hi), 1e-300)
        scale = 1 << max(0, min(60, bits - math.ceil(math.log2(top))))
        cols = self.columns()
        return Term(
            f"newton[{self.label}@{self._point_id()}:{part}]",
            f"CASE WHEN {ok} THEN ROUND(({expr}) * {scale}) ELSE 0 END",
            math.floor(lo * scale),
            math.ceil(hi * scale),
            scale,
            row_rounding=0.5 / scale,
            count_ref=count_name(cols),
            derived=derived,
        )

    def _point_id(self) -> str:
        """A short name of the point ``at`` (in term names: each pass's terms differ)."""
        assert self.at is not None
        return hashlib.sha256(",".join(repr(v) for v in self.at).encode()).hexdigest()[:16]

    def _newton(self, totals: Totals) -> tuple[FloatArray, FloatArray, float]:
        """The next point, the best point so far and its penalised loss."""
        assert self.at is not None
        w = np.array(self.at)
        names = self.names()
        p = len(names)
        pen = self._penalty(p)
        key = f"newton[{self.label}@{self._point_id()}:"
        loss = totals[f"{key}loss]"] + 0.5 * self.ridge * float(w @ pen @ w)
        if self.best is not None and self.best_loss is not None and loss > self.best_loss:
            best = np.array(self.best)
            return 0.5 * (best + w), best, self.best_loss  # the step overshot: halve it
        g = np.array([totals[f"{key}g:{a}]"] for a in names]) - self.ridge * (pen @ w)
        h = np.empty((p, p))
        for i, a in enumerate(names):
            for j in range(i, p):
                h[i, j] = h[j, i] = totals[f"{key}h:{a}:{names[j]}]"]
        return w + _solve(h + self.ridge * pen, g), w, loss

    def refine(self, totals: Totals | None, bounds: Bounds, noised: bool) -> Statistic:
        """The next Newton pass, at the point this pass's totals give."""
        left = self._steps(noised) - 1
        bits = self.row_bits or (NEWTON_ROW_BITS_NOISED if noised else NEWTON_ROW_BITS_EXACT)
        if totals is None:  # the shape only: any point has the same terms
            point: tuple[float, ...] = (0.0,) * len(self.names())
            best, best_loss = None, None
        elif self.at is None:
            point = tuple(float(v) for v in self._first(totals))
            best, best_loss = None, None
        else:
            nxt, b, best_loss = self._newton(totals)
            point, best = tuple(float(v) for v in nxt), tuple(float(v) for v in b)
        return dataclasses.replace(
            self, newton_steps=left, row_bits=bits, at=point, best=best, best_loss=best_loss
        )

    def decode(self, totals: Totals, bounds: Bounds) -> LogisticModel:
        names = self.names()
        cols = self.columns()
        n = totals[count_name(cols)]
        if self.at is None:
            return LogisticModel(dict(zip(names, self._first(totals).tolist(), strict=True)), n)
        nxt, best, best_loss = self._newton(totals)
        if self.newton_steps == 0 and best_loss is not None and not np.array_equal(best, self.at):
            nxt = best  # the last step overshot: the best point evaluated is the fit
        key = f"newton[{self.label}@{self._point_id()}:loss]"
        return LogisticModel(
            dict(zip(names, nxt.tolist(), strict=True)),
            n,
            {"log_loss": totals[key] / n if n > 0 else math.nan},
        )


def score_sql(
    coefficients: Sequence[tuple[str, float]], bounds: Bounds
) -> tuple[str, float, float]:
    """DuckDB expression of ``wᵀx + b`` in real units, with its public bounds."""
    parts, lo, hi = [], 0.0, 0.0
    for name, w in coefficients:
        if name == "intercept":
            parts.append(literal(w))
            lo, hi = lo + w, hi + w
            continue
        b = bounds[name]
        parts.append(f"{literal(w)} * ({q(name)}::DOUBLE / {b.scale})")
        ends = (w * b.lo, w * b.hi)
        lo, hi = lo + min(ends), hi + max(ends)
    return " + ".join(parts) or "0", lo, hi


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

    def _present(self) -> str:
        return " AND ".join(f"{q(c)} IS NOT NULL" for c in self._cols)

    def terms(self, bounds: Bounds) -> list[Term]:
        score, lo, hi = score_sql(self.coefficients, bounds)
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
