"""The model registry contract: each training's rounds chained by CID, appended by its analyst."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import ExactSampler
from tessera.errors import LedgerError
from tessera.learning import Dataset, LocalConfig, LogisticRegression, TrainingConfig, train
from tessera.learning.serialize import decode_model
from tessera.ledger import EmbeddedChain
from tessera.ledger.client import rho_to_micro
from tessera.ledger.compile import load_artifact
from tessera.ledger.model_registry import ModelRegistry, deploy_model_registry
from tessera.node.model_store import LocalModelStore, ModelLog, cid_of

T = hashlib.sha256(b"training 1").digest()


@pytest.fixture(scope="module")
def chain() -> EmbeddedChain:
    return EmbeddedChain(accounts=3)


def test_rounds_chain_from_the_initial_model(chain: EmbeddedChain) -> None:
    analyst, other = chain.accounts[0], chain.accounts[1]
    address = deploy_model_registry(chain, analyst)
    reg = ModelRegistry(chain, address, analyst)
    cids = [cid_of(f"model {r}".encode()) for r in range(4)]
    reg.open_training(T, 7, cids[0])
    assert reg.analyst_of(T) == analyst and reg.latest(T) == cids[0] and reg.rounds(T) == 0
    for r in (1, 2, 3):
        reg.record_round(T, cids[r], cids[r - 1], 1000 * r)
    history = reg.history(T)
    assert [h.cid for h in history] == cids
    assert [h.parent for h in history] == ["", *cids[:3]]
    assert [h.rho_micro for h in history] == [0, 1000, 2000, 3000]
    assert reg.total_rho_micro(T) == 6000 and reg.latest(T) == cids[3]

    # no fork, no gap, nobody else, no second opening
    with pytest.raises(LedgerError, match="parent is not the latest round"):
        reg.record_round(T, cid_of(b"fork"), cids[1], 1)
    with pytest.raises(LedgerError, match="not the training's analyst"):
        ModelRegistry(chain, address, other).record_round(T, cid_of(b"x"), cids[3], 1)
    with pytest.raises(LedgerError, match="already open"):
        ModelRegistry(chain, address, other).open_training(T, 7, cids[0])
    with pytest.raises(LedgerError, match="no such round"):
        reg.round_of(T, 4)
    with pytest.raises(LedgerError, match="no such training"):
        reg.latest(hashlib.sha256(b"none").digest())
    assert reg.rounds(T) == 3


def test_the_registry_is_small() -> None:
    assert load_artifact("model_registry").runtime_size < 24_576 // 4


def test_a_training_stores_every_round_and_chains_it_on_the_ledger(
    chain: EmbeddedChain, tmp_path: Path
) -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), 5)
    datasets = [Dataset(f"b{i}", x[p], y[p], max_rows=200) for i, p in enumerate(parts)]
    analyst = chain.accounts[2]
    registry = ModelRegistry(chain, deploy_model_registry(chain, analyst), analyst)
    store = LocalModelStore(tmp_path / "models")
    training = hashlib.sha256(b"training 2").digest()
    log = ModelLog(store, training, registry, committee=1)
    config = TrainingConfig(
        rounds=3, local=LocalConfig(1, 0.1, 16), clip=2.0, epsilon=4.0, delta=1e-6
    )
    result = train(
        LogisticRegression(30),
        datasets,
        config,
        np.random.default_rng(1),
        sampler=ExactSampler(SeededRng(1)),
        observer=log,
    )
    history = registry.history(training)
    assert [h.cid for h in history] == log.cids and len(history) == 4
    assert [h.parent for h in history[1:]] == log.cids[:3]
    assert all(h.rho_micro == rho_to_micro(config.budget().rho_per_round) for h in history[1:])  # type: ignore[union-attr]
    model, params, meta = decode_model(store.get(registry.latest(training)))
    assert isinstance(model, LogisticRegression)
    np.testing.assert_array_equal(params, result.params)
    assert meta["round"] == 3 and meta["parent"] == history[2].cid
    assert meta["epsilon"] == pytest.approx(4.0, rel=1e-6)
