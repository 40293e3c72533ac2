"""The model registry contract on the real EVM (eth-tester's py-evm): part of every deployment,
each market training's rounds chained by CID and tied to the market query that ran them."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import ExactSampler
from tessera.errors import LedgerError
from tessera.learning import Dataset, LocalConfig, LogisticRegression, TrainingConfig, train
from tessera.learning.models import Array, Model
from tessera.learning.rounds import RoundRecord
from tessera.learning.serialize import decode_model
from tessera.ledger import Deployment, EmbeddedChain, LedgerClient
from tessera.ledger.client import rho_to_micro
from tessera.ledger.compile import load_artifact
from tessera.ledger.model_registry import ModelRegistry
from tessera.node.model_store import LocalModelStore, ModelLog, cid_of

from .model_world import World, build

T = hashlib.sha256(b"training 1").digest()


@pytest.fixture(scope="module")
def _world() -> tuple[World, int]:
    w = build(EmbeddedChain(accounts=6))
    return w, w.chain.snapshot()


@pytest.fixture
def world(_world: tuple[World, int]) -> Iterator[World]:
    w, snapshot = _world
    w.chain.revert(snapshot)
    yield w


def test_every_deployment_has_a_model_registry_bound_to_its_market(world: World) -> None:
    d = world.deployment
    assert d.model_registry and world.chain.w3.eth.get_code(d.model_registry)  # type: ignore[arg-type]
    registry = world.registry()
    assert registry.address == d.model_registry and registry.market() == d.market
    assert Deployment.from_json(d.to_json()) == d
    # a record written before the registry was deployed still loads, and says what is missing
    old = d.to_json().replace(f'"model_registry": "{d.model_registry}",', "")
    assert "model_registry" not in old
    legacy = Deployment.from_json(old)
    assert legacy.model_registry == "" and legacy.market == d.market
    with pytest.raises(LedgerError, match="names no model registry"):
        ModelRegistry(LedgerClient(world.chain, legacy, world.analyst.account))


def test_market_rounds_chain_from_the_initial_model_with_the_markets_rho(world: World) -> None:
    reg = world.registry()
    cids = [cid_of(f"model {r}".encode()) for r in range(4)]
    reg.open_training(T, world.committee, cids[0])
    assert reg.analyst_of(T) == world.analyst.account and reg.latest(T) == cids[0]
    assert reg.rounds(T) == 0 and not reg.is_local(T)
    queries, txs = [], []
    for r in (1, 2, 3):
        qid = world.training_query(f"round {r}", rho_micro=1_000 * r)
        txs.append(reg.record_round(T, cids[r], cids[r - 1], qid))
        queries.append(qid)
    gas = [tx.gas_used for tx in txs]
    history = reg.history(T)
    assert [h.block for h in history[1:]] == [tx.block for tx in txs]
    assert [h.cid for h in history] == cids
    assert [h.parent for h in history] == ["", *cids[:3]]
    assert [h.query_id for h in history] == [None, *queries]
    # ρ is the market's privacy cost of each query, charged to the dataset there
    assert [h.rho_micro for h in history] == [0, 1000, 2000, 3000]
    assert [world.analyst.query(q).privacy_cost for q in queries] == [1000, 2000, 3000]
    assert reg.total_rho_micro(T) == 6000 and reg.latest(T) == cids[3]
    assert [reg.training_of_query(q) for q in queries] == [T, T, T]
    # one round's entry (the market's Query read included): ~270k gas the first, ~236k after
    assert max(gas) < 280_000, gas
    print(f"gas of a registry entry (record_round): {gas}")

    # no fork, no gap, no second opening, no query twice
    with pytest.raises(LedgerError, match="parent is not the latest round"):
        reg.record_round(T, cid_of(b"fork"), cids[1], world.training_query("fork"))
    with pytest.raises(LedgerError, match="already open"):
        world.registry(world.rival).open_training(T, world.committee, cids[0])
    with pytest.raises(LedgerError, match="query already recorded"):
        reg.record_round(T, cid_of(b"again"), cids[3], queries[2])
    with pytest.raises(LedgerError, match="no such round"):
        reg.round_of(T, 4)
    with pytest.raises(LedgerError, match="no such training"):
        reg.latest(hashlib.sha256(b"none").digest())
    assert reg.rounds(T) == 3


def test_nobody_records_a_round_for_someone_elses_query(world: World) -> None:
    """The rival analyst opens its own training and tries to claim the analyst's query (its
    privacy spend and its market record) as one of its rounds: refused, as is writing into
    the analyst's training."""
    reg, rival = world.registry(), world.registry(world.rival)
    c0 = cid_of(b"initial")
    reg.open_training(T, world.committee, c0)
    theirs = hashlib.sha256(b"rival's training").digest()
    rival.open_training(theirs, world.committee, c0)
    qid = world.training_query("the analyst's round")
    with pytest.raises(LedgerError, match="not the query's analyst"):
        rival.record_round(theirs, cid_of(b"stolen"), c0, qid)
    with pytest.raises(LedgerError, match="not the training's analyst"):
        rival.record_round(T, cid_of(b"stolen"), c0, world.training_query("r", who=world.rival))
    assert rival.rounds(theirs) == 0 and reg.rounds(T) == 0
    reg.record_round(T, cid_of(b"mine"), c0, qid)  # the query is still the analyst's to use
    assert reg.history(T)[1].query_id == qid


def test_a_round_needs_a_training_query_that_exists_on_the_trainings_committee(
    world: World,
) -> None:
    reg = world.registry()
    c0 = cid_of(b"initial")
    reg.open_training(T, world.committee, c0)
    with pytest.raises(LedgerError, match="not a training query"):
        reg.record_round(T, cid_of(b"r1"), c0, world.plain_query("a mean"))
    with pytest.raises(LedgerError, match="unknown query"):
        reg.record_round(T, cid_of(b"r1"), c0, hashlib.sha256(b"never submitted").digest())
    elsewhere = hashlib.sha256(b"on committee 99").digest()
    reg.open_training(elsewhere, 99, c0)
    with pytest.raises(LedgerError, match="query on another committee"):
        reg.record_round(elsewhere, cid_of(b"r1"), c0, world.training_query("committee"))
    # a query that expired without its work cannot stand for a round
    expired = world.training_query("expired")
    world.chain.mine(51)
    world.analyst.expire(expired)
    assert world.analyst.query(expired).status == "expired"
    with pytest.raises(LedgerError, match="query failed or expired"):
        reg.record_round(T, cid_of(b"r1"), c0, expired)
    assert reg.rounds(T) == 0 and reg.total_rho_micro(T) == 0


def test_local_trainings_are_marked_and_never_mix_with_market_rounds(world: World) -> None:
    reg = world.registry()
    c0, c1 = cid_of(b"local 0"), cid_of(b"local 1")
    reg.open_local_training(T, c0)
    assert reg.is_local(T)
    with pytest.raises(LedgerError, match="a local training: its rounds name no query"):
        reg.record_round(T, c1, c0, world.training_query("q"))
    with pytest.raises(LedgerError, match="privacy cost out of range"):
        reg.record_local_round(T, c1, c0, 2**192)
    tx = reg.record_local_round(T, c1, c0, 2**100)  # the largest figures keep their block
    entry = reg.history(T)[1]
    assert entry.query_id is None and entry.rho_micro == 2**100 and entry.block == tx.block
    assert reg.total_rho_micro(T) == 2**100
    market = hashlib.sha256(b"market").digest()
    reg.open_training(market, world.committee, c0)
    with pytest.raises(LedgerError, match="a market training: a round names its query"):
        reg.record_local_round(market, c1, c0, 1)


def test_the_registry_is_small() -> None:
    assert load_artifact("model_registry").runtime_size < 24_576 // 4


def _cancer() -> list[Dataset]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    parts = np.array_split(np.random.default_rng(0).permutation(len(y)), 5)
    return [Dataset(f"b{i}", x[p], y[p], max_rows=200) for i, p in enumerate(parts)]


CONFIG = TrainingConfig(rounds=3, local=LocalConfig(1, 0.1, 16), clip=2.0, epsilon=4.0, delta=1e-6)


def _train(observer: Any) -> Any:
    return train(
        LogisticRegression(30),
        _cancer(),
        CONFIG,
        np.random.default_rng(1),
        sampler=ExactSampler(SeededRng(1)),
        observer=observer,
    )


def test_a_local_training_stores_every_round_and_chains_it_marked_local(
    world: World, tmp_path: Path
) -> None:
    registry = world.registry()
    store = LocalModelStore(tmp_path / "models")
    training = hashlib.sha256(b"training 2").digest()
    log = ModelLog(store, training, registry, local=True)
    result = _train(log)
    history = registry.history(training)
    assert [h.cid for h in history] == log.cids and len(history) == 4
    assert [h.parent for h in history[1:]] == log.cids[:3]
    assert registry.is_local(training) and all(h.query_id is None for h in history)
    per_round = rho_to_micro(CONFIG.budget().rho_per_round)  # type: ignore[union-attr]
    assert all(h.rho_micro == per_round for h in history[1:])
    model, params, meta = decode_model(store.get(registry.latest(training)))
    assert isinstance(model, LogisticRegression)
    np.testing.assert_array_equal(params, result.params)
    assert meta["round"] == 3 and meta["parent"] == history[2].cid and "query_id" not in meta
    assert meta["epsilon"] == pytest.approx(4.0, rel=1e-6)


@dataclass(frozen=True)
class _RecordWithQuery(RoundRecord):
    """``RoundRecord`` with the ``query_id`` field it is getting (hex of the market query)."""

    query_id: str | None = None


@dataclass
class _MarketRounds:
    """Each round admitted on the market as a training query before its model is logged:
    what the analyst's side of a round will do once rounds are market queries."""

    world: World
    log: ModelLog
    queries: list[bytes]

    def start(self, model: Model, params: Array) -> None:
        self.log.start(model, params)

    def round(self, model: Model, params: Array, record: RoundRecord) -> None:
        qid = self.world.training_query(
            f"training 3 round {record.index}", rho_micro=rho_to_micro(record.rho)
        )
        self.queries.append(qid)
        if "query_id" in record.__dataclass_fields__:  # the field has landed
            tagged: RoundRecord = dataclasses.replace(record, query_id=qid.hex())  # type: ignore[call-arg]
        else:
            fields = {f: getattr(record, f) for f in record.__dataclass_fields__}
            tagged = _RecordWithQuery(**fields, query_id=qid.hex())
        self.log.round(model, params, tagged)


def test_a_market_training_chains_each_round_with_its_training_query(
    world: World, tmp_path: Path
) -> None:
    registry = world.registry()
    store = LocalModelStore(tmp_path / "models")
    training = hashlib.sha256(b"training 3").digest()
    observer = _MarketRounds(world, ModelLog(store, training, registry, world.committee), [])
    _train(observer)
    history = registry.history(training)
    assert [h.cid for h in history] == observer.log.cids and len(history) == 4
    assert [h.query_id for h in history[1:]] == observer.queries
    per_round = rho_to_micro(CONFIG.budget().rho_per_round)  # type: ignore[union-attr]
    assert [h.rho_micro for h in history[1:]] == [per_round] * 3
    _, _, meta = decode_model(store.get(history[2].cid))
    assert meta["query_id"] == "0x" + observer.queries[1].hex() and meta["round"] == 2


def test_a_market_training_stops_at_a_round_without_its_query(world: World, tmp_path: Path) -> None:
    registry = world.registry()
    training = hashlib.sha256(b"training 4").digest()
    log = ModelLog(LocalModelStore(tmp_path / "models"), training, registry, world.committee)
    with pytest.raises(ValueError, match="round 1 names no market query"):
        _train(log)
    assert registry.rounds(training) == 0 and len(log.cids) == 1


def test_a_ledger_session_has_the_registry_for_its_analyst() -> None:
    """The in-process network's session deploys it too: its analyst opens a training."""
    from tessera.ledger.session import LedgerSession

    session = LedgerSession()
    d = session.deployment
    reg = ModelRegistry(session.analyst.client)
    assert reg.address == d.model_registry and reg.market() == d.market
    tx = reg.open_local_training(T, cid_of(b"session model"))
    assert tx.gas_used > 0 and reg.analyst_of(T) == session.analyst.address
