"""The model registry contract: each training's rounds chained by CID, appended by its analyst."""

from __future__ import annotations

import hashlib

import pytest

from tessera.errors import LedgerError
from tessera.ledger import EmbeddedChain
from tessera.ledger.compile import load_artifact
from tessera.ledger.model_registry import ModelRegistry, deploy_model_registry
from tessera.node.model_store import cid_of

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
