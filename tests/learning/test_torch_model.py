"""PyTorch models (the ``torch`` extra) as Tessera models, on scikit-learn's tables.

Differential: a torch ``nn.Sequential`` gives the same loss, gradients (mean and per
row) and predictions as the built-in numpy model of the same architecture, and a CNN's
per-row gradients match plain autograd row by row. Then a CNN trained federated over
digits split non-IID (Dirichlet 0.3, 6 providers), through the secure rounds (clipping,
norm proofs, joint verification), against the same CNN trained centrally with
``torch.optim.SGD``. Descriptions are untrusted input: every bad one is refused by name.
"""

from __future__ import annotations

import itertools
import re
from functools import cache

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import ExactSampler
from tessera.errors import DecodeError
from tessera.learning import Dataset, LocalConfig, TrainingConfig, train
from tessera.learning.models import MLP, LinearRegression, SoftmaxRegression
from tessera.learning.partition import dirichlet_split
from tessera.learning.serialize import decode_model, encode_model, model_from_spec
from tessera.learning.torch_model import MAX_PARAMS, TorchModel
from tessera.node.model_store import cid_of

CNN = [
    ["unflatten", 1, 8, 8],
    ["conv2d", 1, 8, 3, 1, 1],
    ["relu"],
    ["maxpool2d", 2],
    ["flatten"],
    ["linear", 128, 10],
]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, xte, ytr, yte


def _to_torch_layout(params: np.ndarray, widths: list[int]) -> np.ndarray:
    """A built-in model's vector (each layer W as (in, out), then b) in torch's layout
    (W as (out, in), then b)."""
    out, start = [], 0
    for a, b in itertools.pairwise(widths):
        w = params[start : start + a * b].reshape(a, b)
        out += [w.T.ravel(), params[start + a * b : start + a * b + b]]
        start += a * b + b
    return np.concatenate(out)


@pytest.mark.parametrize(
    ("numpy_model", "layers", "widths"),
    [
        (SoftmaxRegression(64, 10, l2=0.01), [["linear", 64, 10]], [64, 10]),
        (
            MLP(64, 16, 10, l2=0.001),
            [["linear", 64, 16], ["tanh"], ["linear", 16, 10]],
            [64, 16, 10],
        ),
    ],
)
def test_a_torch_classifier_matches_the_built_in_numpy_model(
    numpy_model: SoftmaxRegression | MLP, layers: list[list[object]], widths: list[int]
) -> None:
    xtr, _, ytr, _ = _digits()
    model = TorchModel(layers, features=64, classes=10, l2=numpy_model.l2)
    assert model.num_params == numpy_model.num_params
    p = numpy_model.init(np.random.default_rng(3)) + np.random.default_rng(4).normal(
        0, 0.1, numpy_model.num_params
    )
    q = _to_torch_layout(p, widths)
    assert model.loss(q, xtr, ytr) == pytest.approx(numpy_model.loss(p, xtr, ytr), abs=1e-12)
    g = model.grad(q, xtr, ytr)
    assert np.abs(g - _to_torch_layout(numpy_model.grad(p, xtr, ytr), widths)).max() < 1e-12
    rows = model.per_example_grads(q, xtr[:50], ytr[:50])
    theirs = numpy_model.per_example_grads(p, xtr[:50], ytr[:50])
    mapped = np.stack([_to_torch_layout(r, widths) for r in theirs])
    assert np.abs(rows - mapped).max() < 1e-12
    assert (model.predict(q, xtr) == numpy_model.predict(p, xtr)).all()
    assert model.score(q, xtr, ytr) == numpy_model.score(p, xtr, ytr)


def test_a_torch_regression_matches_least_squares_on_diabetes() -> None:
    x, y = load_diabetes(return_X_y=True)
    model = TorchModel([["linear", 10, 1]], features=10, task="regression")
    reference = LinearRegression(10)
    p = np.random.default_rng(5).normal(0, 1, 11)
    q = _to_torch_layout(p, [10, 1])
    assert model.classes is None
    assert model.loss(q, x, y) == pytest.approx(reference.loss(p, x, y), rel=1e-12)
    assert np.allclose(model.grad(q, x, y), _to_torch_layout(reference.grad(p, x, y), [10, 1]))
    assert np.allclose(model.predict(q, x), reference.predict(p, x), rtol=0, atol=1e-12)


def test_a_cnns_per_row_gradients_are_autograds_row_by_row() -> None:
    xtr, _, ytr, _ = _digits()
    model = TorchModel(CNN, features=64, classes=10, l2=0.01)
    p = model.init(np.random.default_rng(6))
    rows = model.per_example_grads(p, xtr[:8], ytr[:8])
    module = model.to_module(p)
    for i in range(8):
        module.zero_grad()
        out = module(torch.from_numpy(xtr[i : i + 1]))
        loss = nn.functional.cross_entropy(out, torch.tensor([int(ytr[i])]))
        loss.backward()
        ref = np.concatenate([prm.grad.reshape(-1).numpy() for prm in module.parameters()])
        assert np.abs(rows[i] - (ref + 0.01 * p)).max() < 1e-12
    assert np.abs(model.grad(p, xtr[:8], ytr[:8]) - rows.mean(axis=0)).max() < 1e-12


def test_an_nn_sequential_converts_round_trips_and_is_stored_by_cid() -> None:
    module = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    ).double()
    model = TorchModel.from_module(module, features=64, classes=10)
    assert model.spec()["layers"] == CNN
    p = model.params_of(module)
    xtr, *_ = _digits()
    with torch.no_grad():
        theirs = module(torch.from_numpy(xtr)).argmax(1).numpy()
    assert (model.predict(p, xtr) == theirs).all()
    back = model.to_module(p)
    assert np.array_equal(model.params_of(back), p)
    data = encode_model(model, p, {"round": 1})
    again, q, meta = decode_model(data)
    assert isinstance(again, TorchModel) and again.spec() == model.spec()
    assert np.array_equal(q, p) and meta == {"round": 1}
    assert cid_of(encode_model(again, q, {"round": 1})) == cid_of(data)


def test_init_follows_the_seed_and_leaves_torchs_generator_alone() -> None:
    model = TorchModel(CNN, features=64, classes=10)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    a = model.init(np.random.default_rng(9))
    TorchModel(CNN, features=64, classes=10)
    assert torch.equal(torch.rand(3), before)
    assert np.array_equal(a, model.init(np.random.default_rng(9)))
    assert not np.array_equal(a, model.init(np.random.default_rng(10)))
    biases = [model.num_params - 10 + i for i in range(10)]
    assert (a[biases] == 0).all()


def _central_sgd(model: TorchModel, p: np.ndarray, epochs: int) -> np.ndarray:
    """The same CNN trained on the pooled rows with torch's own SGD (an independent
    reference: no Tessera code in the loop)."""
    xtr, _, ytr, _ = _digits()
    module = model.to_module(p)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(module(x[idx]), y[idx]).backward()
            opt.step()
    return model.params_of(module)


def test_a_cnn_trained_federated_and_secure_on_non_iid_digits_nears_central_training() -> None:
    xtr, xte, ytr, yte = _digits()
    model = TorchModel(CNN, features=64, classes=10)
    central = model.score(_central_sgd(model, model.init(np.random.default_rng(0)), 30), xte, yte)
    parts = dirichlet_split(ytr, 6, 0.3, np.random.default_rng(0), min_rows=10)
    datasets = [Dataset(f"d{i}", xtr[p], ytr[p], max_rows=400) for i, p in enumerate(parts)]
    local = LocalConfig(epochs=2, learning_rate=0.1, batch_size=32)
    secure = train(
        model,
        datasets,
        TrainingConfig(rounds=10, local=local, clip=5.0),
        np.random.default_rng(1),
        validation=(xte, yte),
    )
    assert central > 0.95
    assert secure.rounds[-1].score > central - 0.1
    assert all(len(r.accepted) == 6 for r in secure.rounds)


def test_a_cnn_under_row_level_dp_spends_exactly_its_epsilon_and_learns() -> None:
    xtr, xte, ytr, yte = _digits()
    parts = dirichlet_split(ytr, 6, 0.3, np.random.default_rng(0), min_rows=10)
    datasets = [Dataset(f"d{i}", xtr[p], ytr[p], max_rows=400) for i, p in enumerate(parts)]
    model = TorchModel(CNN, features=64, classes=10)
    config = TrainingConfig(rounds=12, unit="row", clip=1.0, epsilon=8.0, server_learning_rate=10.0)
    res = train(
        model,
        datasets,
        config,
        np.random.default_rng(2),
        sampler=ExactSampler(SeededRng(2)),
        validation=(xte, yte),
    )
    assert res.rounds[-1].epsilon_spent == pytest.approx(8.0, rel=1e-6)
    assert res.rounds[-1].score > 0.5  # chance is 0.1


@pytest.mark.parametrize(
    ("layers", "kwargs", "message"),
    [
        ([["dropout", 0.5]], {}, "unknown layer 'dropout'"),
        ([["linear", 64]], {}, "linear takes in_features, out_features"),
        ([["linear", 64, 10.0]], {}, "out_features must be an integer"),
        ([["linear", 64, True]], {}, "out_features must be an integer"),
        ([["linear", 63, 10]], {}, "expects 63 inputs, gets shape (64,)"),
        ([["linear", 64, 9]], {}, "not the 10 class logits"),
        ([["conv2d", 1, 4, 3, 1, 0]], {}, "expects (1, height, width)"),
        ([["unflatten", 1, 8, 9]], {}, "cannot shape (64,) as (1, 8, 9)"),
        ([["unflatten", 1, 8, 8], ["conv2d", 1, 4, 9, 1, 0]], {}, "does not fit"),
        ([["unflatten", 1, 8, 8], ["maxpool2d", 9]], {}, "window does not fit"),
        ([["linear", 64, 4000], ["linear", 4000, 4000]], {}, f"more than {MAX_PARAMS:,}"),
        ([], {}, "1 to 64 layers"),
        ([["linear", 64, 1]], {"task": "regression", "classes": 2}, "no classes"),
        ([["linear", 64, 10]], {"task": "ranking"}, "classification or regression"),
        ([["linear", 64, 10]], {"l2": -1.0}, "l2 must be a non-negative"),
        ([["linear", 64, 10]], {"features": 0}, "features must be an integer"),
        ("linear", {}, "1 to 64 layers"),
    ],
)
def test_a_bad_description_is_refused_by_name(
    layers: object, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"features": 64, "classes": 10, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        TorchModel(layers, **args)  # type: ignore[arg-type]


def test_a_module_with_a_layer_it_cannot_describe_is_refused_by_name() -> None:
    for module, why in [
        (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), "layer 1 (BatchNorm1d)"),
        (nn.Sequential(nn.Linear(4, 2, bias=False)), "a Linear without bias"),
        (
            nn.Sequential(nn.Unflatten(1, (1, 2, 2)), nn.Conv2d(1, 2, 2, groups=1, dilation=2)),
            "undilated",
        ),
        (nn.Sequential(nn.Dropout(0.1)), "layer 0 (Dropout)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)):
            TorchModel.from_module(module, features=4, classes=2)


def test_a_stored_model_with_a_bad_description_is_a_decode_error() -> None:
    good = TorchModel([["linear", 4, 2]], features=4, classes=2).spec()
    for spec, why in [
        ({**good, "layers": [["linear", 4, 10**7]]}, "model header"),
        ({**good, "code": "import os"}, "unknown key"),
        ({**good, "layers": [["exec", "rm"]]}, "unknown layer"),
        ({key: v for key, v in good.items() if key != "task"}, "task"),
    ]:
        with pytest.raises(DecodeError, match=why):
            model_from_spec(spec)
