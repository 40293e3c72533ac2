"""Built-in numpy models with flat parameter vectors: linear, logistic, softmax, a small MLP.

Every model keeps its parameters in one ``float64`` vector (what a provider clips,
quantises and secret-shares) and gives the mean loss, its gradient, per-example
gradients (for per-row clipping) and predictions. Labels are ``float`` targets for
:class:`LinearRegression`, ``{0, 1}`` for :class:`LogisticRegression` and class
indices ``0..classes-1`` for :class:`SoftmaxRegression` and :class:`MLP`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _softmax(z: Array) -> Array:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def _sigmoid(z: Array) -> Array:
    out: Array = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _one_hot(y: Any, classes: int) -> Array:
    idx = np.asarray(y, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= classes):
        raise ValueError(f"labels must be class indices in [0, {classes})")
    out = np.zeros((idx.shape[0], classes))
    out[np.arange(idx.shape[0]), idx] = 1.0
    return out


class Model(ABC):
    """A differentiable model over a flat parameter vector."""

    #: ``"classification"`` or ``"regression"``: what :meth:`score` reports.
    task: str
    features: int

    @property
    @abstractmethod
    def num_params(self) -> int:
        """Length of the parameter vector."""

    @abstractmethod
    def init(self, rng: np.random.Generator) -> Array:
        """Initial parameters (small random weights, zero biases)."""

    @abstractmethod
    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        """``(rows, num_params)``: the gradient of each row's loss."""

    @abstractmethod
    def loss(self, params: Array, x: Array, y: Any) -> float:
        """Mean loss over the rows."""

    @abstractmethod
    def predict(self, params: Array, x: Array) -> Any:
        """Predicted targets (regression) or class indices (classification)."""

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        """Gradient of the mean loss."""
        out: Array = self.per_example_grads(params, x, y).mean(axis=0)
        return out

    def score(self, params: Array, x: Array, y: Any) -> float:
        """Accuracy (classification) or R² (regression)."""
        pred = self.predict(params, x)
        if self.task == "classification":
            return float(np.mean(pred == np.asarray(y)))
        target = np.asarray(y, dtype=np.float64)
        ss_res = float(np.sum((target - pred) ** 2))
        ss_tot = float(np.sum((target - target.mean()) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The JSON description of the model (its kind and shape, not its parameters):
        what a training ticket names and a stored model's header records; the model
        :func:`tessera.learning.serialize.model_from_spec` builds from it is this one."""

    def _check(self, params: Array, x: Array) -> None:
        if params.shape != (self.num_params,):
            raise ValueError(f"expected {self.num_params} parameters, got {params.shape}")
        if x.ndim != 2 or x.shape[1] != self.features:
            raise ValueError(f"expected rows of {self.features} features, got {x.shape}")


@dataclass(frozen=True)
class _Affine:
    """``x @ W + b`` with ``W`` of shape ``(features, outputs)`` stored first."""

    features: int
    outputs: int

    @property
    def size(self) -> int:
        return self.features * self.outputs + self.outputs

    def split(self, params: Array) -> tuple[Array, Array]:
        k = self.features * self.outputs
        return params[:k].reshape(self.features, self.outputs), params[k : self.size]

    def mean_grad(self, x: Array, delta: Array) -> Array:
        """The mean over rows of :meth:`per_example`, without the per-row matrix."""
        rows = x.shape[0]
        out: Array = np.concatenate([(x.T @ delta).ravel() / rows, delta.mean(axis=0)])
        return out

    def per_example(self, x: Array, delta: Array) -> Array:
        """Per-row gradients of ``W`` and ``b`` for output gradients ``delta``."""
        rows = x.shape[0]
        gw = np.einsum("ri,ro->rio", x, delta).reshape(rows, -1)
        out: Array = np.concatenate([gw, delta], axis=1)
        return out


class LinearRegression(Model):
    """Least squares: ``y ≈ x·w + b``, loss ``(y - ŷ)² / 2``."""

    task = "regression"

    def __init__(self, features: int, l2: float = 0.0) -> None:
        self.features = features
        self.l2 = l2
        self._layer = _Affine(features, 1)

    @property
    def num_params(self) -> int:
        return self._layer.size

    def init(self, rng: np.random.Generator) -> Array:
        return np.zeros(self.num_params)

    def spec(self) -> dict[str, Any]:
        return {"kind": "linear", "features": self.features, "l2": float(self.l2)}

    def _out(self, params: Array, x: Array) -> Array:
        w, b = self._layer.split(params)
        out: Array = (x @ w + b)[:, 0]
        return out

    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = (self._out(params, x) - np.asarray(y, dtype=np.float64))[:, None]
        return self._layer.per_example(x, delta) + self.l2 * params

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = (self._out(params, x) - np.asarray(y, dtype=np.float64))[:, None]
        return self._layer.mean_grad(x, delta) + self.l2 * params

    def loss(self, params: Array, x: Array, y: Any) -> float:
        self._check(params, x)
        r = self._out(params, x) - np.asarray(y, dtype=np.float64)
        return float(0.5 * np.mean(r * r) + 0.5 * self.l2 * params @ params)

    def predict(self, params: Array, x: Array) -> Any:
        self._check(params, x)
        return self._out(params, x)


class LogisticRegression(Model):
    """Binary logistic regression, cross-entropy loss; labels in ``{0, 1}``."""

    task = "classification"

    def __init__(self, features: int, l2: float = 0.0) -> None:
        self.features = features
        self.l2 = l2
        self._layer = _Affine(features, 1)

    @property
    def num_params(self) -> int:
        return self._layer.size

    def init(self, rng: np.random.Generator) -> Array:
        return np.zeros(self.num_params)

    def spec(self) -> dict[str, Any]:
        return {"kind": "logistic", "features": self.features, "l2": float(self.l2)}

    def _logit(self, params: Array, x: Array) -> Array:
        w, b = self._layer.split(params)
        out: Array = (x @ w + b)[:, 0]
        return out

    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = (_sigmoid(self._logit(params, x)) - np.asarray(y, dtype=np.float64))[:, None]
        return self._layer.per_example(x, delta) + self.l2 * params

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = (_sigmoid(self._logit(params, x)) - np.asarray(y, dtype=np.float64))[:, None]
        return self._layer.mean_grad(x, delta) + self.l2 * params

    def loss(self, params: Array, x: Array, y: Any) -> float:
        self._check(params, x)
        z = self._logit(params, x)
        t = np.asarray(y, dtype=np.float64)
        # log(1 + e^z) - t z, computed stably
        nll = np.logaddexp(0.0, z) - t * z
        return float(np.mean(nll) + 0.5 * self.l2 * params @ params)

    def predict(self, params: Array, x: Array) -> Any:
        self._check(params, x)
        return (self._logit(params, x) > 0).astype(np.int64)


class SoftmaxRegression(Model):
    """Multinomial logistic regression over ``classes`` classes."""

    task = "classification"

    def __init__(self, features: int, classes: int, l2: float = 0.0) -> None:
        if classes < 2:
            raise ValueError("classes must be at least 2")
        self.features = features
        self.classes = classes
        self.l2 = l2
        self._layer = _Affine(features, classes)

    @property
    def num_params(self) -> int:
        return self._layer.size

    def init(self, rng: np.random.Generator) -> Array:
        return np.zeros(self.num_params)

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "softmax",
            "features": self.features,
            "classes": self.classes,
            "l2": float(self.l2),
        }

    def _probs(self, params: Array, x: Array) -> Array:
        w, b = self._layer.split(params)
        return _softmax(x @ w + b)

    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = self._probs(params, x) - _one_hot(y, self.classes)
        return self._layer.per_example(x, delta) + self.l2 * params

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        delta = self._probs(params, x) - _one_hot(y, self.classes)
        return self._layer.mean_grad(x, delta) + self.l2 * params

    def loss(self, params: Array, x: Array, y: Any) -> float:
        self._check(params, x)
        p = self._probs(params, x)
        idx = np.asarray(y, dtype=np.int64)
        nll = -np.log(np.maximum(p[np.arange(len(idx)), idx], 1e-300))
        return float(np.mean(nll) + 0.5 * self.l2 * params @ params)

    def predict(self, params: Array, x: Array) -> Any:
        self._check(params, x)
        return np.argmax(self._probs(params, x), axis=1)


class MLP(Model):
    """One hidden layer of ``hidden`` tanh units, softmax output over ``classes``."""

    task = "classification"

    def __init__(self, features: int, hidden: int, classes: int, l2: float = 0.0) -> None:
        if hidden < 1 or classes < 2:
            raise ValueError("need at least one hidden unit and two classes")
        self.features = features
        self.hidden = hidden
        self.classes = classes
        self.l2 = l2
        self._first = _Affine(features, hidden)
        self._second = _Affine(hidden, classes)

    @property
    def num_params(self) -> int:
        return self._first.size + self._second.size

    def init(self, rng: np.random.Generator) -> Array:
        """Glorot-uniform weights, zero biases."""
        params = np.zeros(self.num_params)
        for layer, start in ((self._first, 0), (self._second, self._first.size)):
            limit = np.sqrt(6.0 / (layer.features + layer.outputs))
            k = layer.features * layer.outputs
            params[start : start + k] = rng.uniform(-limit, limit, size=k)
        return params

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "mlp",
            "features": self.features,
            "hidden": self.hidden,
            "classes": self.classes,
            "l2": float(self.l2),
        }

    def _forward(self, params: Array, x: Array) -> tuple[Array, Array]:
        w1, b1 = self._first.split(params[: self._first.size])
        w2, b2 = self._second.split(params[self._first.size :])
        h = np.tanh(x @ w1 + b1)
        return h, _softmax(h @ w2 + b2)

    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        self._check(params, x)
        h, p = self._forward(params, x)
        delta2 = p - _one_hot(y, self.classes)
        w2, _ = self._second.split(params[self._first.size :])
        delta1 = (delta2 @ w2.T) * (1.0 - h * h)
        g = np.concatenate(
            [self._first.per_example(x, delta1), self._second.per_example(h, delta2)], axis=1
        )
        out: Array = g + self.l2 * params
        return out

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        """The mean gradient by backpropagation (no per-row matrix)."""
        self._check(params, x)
        h, p = self._forward(params, x)
        rows = x.shape[0]
        delta2 = (p - _one_hot(y, self.classes)) / rows
        w2, _ = self._second.split(params[self._first.size :])
        delta1 = (delta2 @ w2.T) * (1.0 - h * h)
        out: Array = np.concatenate(
            [(x.T @ delta1).ravel(), delta1.sum(0), (h.T @ delta2).ravel(), delta2.sum(0)]
        )
        return out + self.l2 * params

    def loss(self, params: Array, x: Array, y: Any) -> float:
        self._check(params, x)
        _, p = self._forward(params, x)
        idx = np.asarray(y, dtype=np.int64)
        nll = -np.log(np.maximum(p[np.arange(len(idx)), idx], 1e-300))
        return float(np.mean(nll) + 0.5 * self.l2 * params @ params)

    def predict(self, params: Array, x: Array) -> Any:
        self._check(params, x)
        return np.argmax(self._forward(params, x)[1], axis=1)


#: The built-in models by name, as ``tessera train --model`` and the web console name them.
MODEL_KINDS = ("linear", "logistic", "softmax", "mlp")


def build_model(
    kind: str, features: int, *, classes: int = 2, hidden: int = 16, l2: float = 0.0
) -> Model:
    """The built-in model ``kind`` over ``features`` inputs: a linear regression (the
    label a target), a logistic regression (a 0/1 label), a softmax regression or an MLP
    with one tanh hidden layer of ``hidden`` units (the label a class index below
    ``classes``); ``l2`` is the local loss's penalty."""
    if kind == "linear":
        return LinearRegression(features, l2=l2)
    if kind == "logistic":
        return LogisticRegression(features, l2=l2)
    if kind == "softmax":
        return SoftmaxRegression(features, classes, l2=l2)
    if kind == "mlp":
        return MLP(features, hidden, classes, l2=l2)
    raise ValueError(f"the model must be one of {', '.join(MODEL_KINDS)}, not {kind!r}")
