"""The numpy models: gradients against finite differences, and centralised accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tessera.learning import (
    MLP,
    LinearRegression,
    LocalConfig,
    LogisticRegression,
    Model,
    SoftmaxRegression,
    train_locally,
)


def _data(model: Model, rng: np.random.Generator, rows: int = 9) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(rows, model.features))
    if model.task == "regression":
        return x, rng.normal(size=rows)
    classes = getattr(model, "classes", 2)
    return x, rng.integers(0, classes, size=rows)


MODELS = [
    LinearRegression(4, l2=0.1),
    LogisticRegression(4, l2=0.1),
    SoftmaxRegression(4, 3, l2=0.1),
    MLP(4, 5, 3, l2=0.1),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_gradients_match_finite_differences(model: Model) -> None:
    rng = np.random.default_rng(0)
    x, y = _data(model, rng)
    w = rng.normal(size=model.num_params) * 0.5
    g = model.grad(w, x, y)
    eps = 1e-6
    numeric = np.array(
        [
            (model.loss(w + eps * e, x, y) - model.loss(w - eps * e, x, y)) / (2 * eps)
            for e in np.eye(model.num_params)
        ]
    )
    np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-7)
    per_row = model.per_example_grads(w, x, y)
    assert per_row.shape == (x.shape[0], model.num_params)
    np.testing.assert_allclose(per_row.mean(axis=0), g, rtol=1e-9, atol=1e-12)


def test_wrong_shapes_and_labels_are_refused() -> None:
    model = SoftmaxRegression(4, 3)
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match="parameters"):
        model.grad(np.zeros(3), x, [0, 1])
    with pytest.raises(ValueError, match="features"):
        model.grad(np.zeros(model.num_params), np.zeros((2, 5)), [0, 1])
    with pytest.raises(ValueError, match="class indices"):
        model.grad(np.zeros(model.num_params), x, [0, 3])


def test_centralised_softmax_on_digits_is_accurate() -> None:
    # scikit-learn's LogisticRegression reaches 0.969 on this split (lbfgs, C = 1)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    model = SoftmaxRegression(64, 10)
    rng = np.random.default_rng(0)
    w = model.init(rng)
    w = w + train_locally(model, w, xtr, ytr, LocalConfig(20, 0.5, 32), rng)
    assert model.score(w, xte, yte) > 0.95
