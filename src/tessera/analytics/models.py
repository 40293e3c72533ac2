"""Fitted models as objects, with scikit-learn's estimator conventions.

A regression query releases coefficients; these classes hold them on the original
scale of the columns and predict with them, so that a pandas user can use the result
directly: ``coef_`` and ``intercept_``, ``feature_names_in_`` and ``n_features_in_``,
``predict``, ``predict_proba`` and ``decision_function`` (logistic), ``score`` (R² for
a linear model, accuracy for a logistic one, as scikit-learn's regressors and
classifiers). The model was fitted by the query, so ``fit`` is refused: ask for another
query instead. For compatibility a model also reads like the dict it replaced
(``model["coefficients"]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tessera.errors import QueryError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _matrix(x: Any, names: Sequence[str]) -> FloatArray:
    """The design matrix of ``x``: a DataFrame (columns by name) or a 2-D array in order."""
    if hasattr(x, "columns"):
        missing = [n for n in names if n not in x.columns]
        if missing:
            raise QueryError(f"X has no column(s) {', '.join(missing)}")
        arr = np.asarray(x[list(names)], dtype=np.float64)
    else:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise QueryError(f"X must have {len(names)} features ({', '.join(names)})")
    return arr


def _vector(y: Any) -> FloatArray:
    return np.asarray(y, dtype=np.float64).ravel()


class _Model(Mapping[str, Any]):
    """What linear and logistic models share."""

    _estimator_type = ""

    def __init__(
        self,
        coefficients: Mapping[str, float],
        n: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.coefficients = dict(coefficients)
        names = [k for k in coefficients if k != "intercept"]
        self.feature_names_in_ = np.array(names, dtype=object)
        self.n_features_in_ = len(names)
        self.n_samples_ = n
        self._extra = dict(extra or {})
        self._coef = np.array([coefficients[k] for k in names], dtype=np.float64)
        self._intercept = float(coefficients.get("intercept", 0.0))

    # -- the dict it replaced -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"coefficients": dict(self.coefficients), **self._extra, "n": self.n_samples_}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        coef = ", ".join(f"{k}={v:.6g}" for k, v in self.coefficients.items())
        return f"{type(self).__name__}({coef})"

    # -- scikit-learn's conventions ------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def fit(self, *_: Any, **__: Any) -> _Model:
        raise QueryError(
            "a Tessera model is fitted by its query; run another query to fit on other data"
        )

    def decision_function(self, x: Any) -> FloatArray:
        """``Xw + b``."""
        names = [str(n) for n in self.feature_names_in_]
        return np.asarray(_matrix(x, names) @ self._coef + self._intercept, dtype=np.float64)


class LinearModel(_Model):
    """A linear (OLS or ridge) regression: ``coef_`` of shape ``(p,)``, ``intercept_`` a float."""

    _estimator_type = "regressor"

    @property
    def coef_(self) -> FloatArray:
        return self._coef.copy()

    @property
    def intercept_(self) -> float:
        return self._intercept

    @property
    def std_errors(self) -> dict[str, float]:
        return dict(self._extra.get("std_errors", {}))

    @property
    def r2(self) -> float:
        return float(self._extra.get("r2", math.nan))

    def predict(self, x: Any) -> FloatArray:
        return self.decision_function(x)

    def score(self, x: Any, y: Any) -> float:
        """R² of the predictions on ``(X, y)``, as scikit-learn's regressors."""
        return r2_score(_vector(y), self.predict(x))


class LogisticModel(_Model):
    """A logistic regression for ``y`` in {0, 1}: ``coef_`` of shape ``(1, p)``,
    ``intercept_`` of shape ``(1,)`` and ``classes_ = [0, 1]`` as scikit-learn's."""

    _estimator_type = "classifier"
    classes_ = np.array([0, 1])

    @property
    def coef_(self) -> FloatArray:
        return self._coef.reshape(1, -1).copy()

    @property
    def intercept_(self) -> FloatArray:
        return np.array([self._intercept])

    def predict_proba(self, x: Any) -> FloatArray:
        z = self.decision_function(x)
        p1 = 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, x: Any) -> FloatArray:
        return (self.decision_function(x) > 0).astype(np.int64)

    def score(self, x: Any, y: Any) -> float:
        """Accuracy on ``(X, y)``, as scikit-learn's classifiers."""
        return float(np.mean(self.predict(x) == _vector(y)))

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """Accuracy, precision, recall, F1 and AUC on local ``(X, y)`` (the same metrics
        as the encrypted :class:`~tessera.analytics.regression.ModelEvaluation`)."""
        yv = _vector(y)
        return classification_metrics(yv, self.predict(x), self.predict_proba(x)[:, 1])


def r2_score(y: FloatArray, pred: FloatArray) -> float:
    tss = float(np.sum((y - y.mean()) ** 2))
    rss = float(np.sum((y - pred) ** 2))
    return 1.0 - rss / tss if tss > 0 else math.nan


def classification_metrics(y: FloatArray, pred: FloatArray, score: FloatArray) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and the AUC (ties count one half)."""
    tp = float(np.sum((pred == 1) & (y == 1)))
    fp = float(np.sum((pred == 1) & (y == 0)))
    fn = float(np.sum((pred == 0) & (y == 1)))
    out = {"accuracy": float(np.mean(pred == y))}
    out.update(binary_rates(tp, fp, fn))
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) and len(neg):
        order = np.argsort(np.concatenate([neg, pos]), kind="mergesort")
        ranks = np.empty(len(order))
        allv = np.concatenate([neg, pos])[order]
        # average ranks over ties
        _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
        starts = np.cumsum(counts) - counts
        avg = starts + (counts + 1) / 2.0
        ranks[order] = avg[inv]
        r_pos = ranks[len(neg) :].sum()
        out["auc"] = float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
    else:
        out["auc"] = math.nan
    return out


def binary_rates(tp: float, fp: float, fn: float) -> dict[str, float]:
    """Precision, recall and F1 from the confusion counts (NaN where undefined)."""
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else math.nan
    return {"precision": precision, "recall": recall, "f1": f1}
