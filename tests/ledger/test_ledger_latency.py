"""The ledger off a query's critical path: views answered once per head block, the same
answers as the chain's, and every role's chain calls of one query counted."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.errors import LedgerError
from tessera.ledger import client as ledger_client
from tessera.ledger.chain import EmbeddedChain
from tessera.ledger.rpc_server import EmbeddedRpc
from tessera.ledger.session import LedgerSession
from tessera.node.local_network import DatasetPolicy, LocalNetwork


@pytest.fixture(scope="module")
def session() -> LedgerSession:
    return LedgerSession()


@pytest.fixture
def evm_calls(session: LedgerSession, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every view the chain's EVM actually runs (eth-tester's backend ``call``)."""
    chain = session.chain
    assert isinstance(chain, EmbeddedChain)
    backend = chain.tester.backend
    runs: list[Any] = []
    original = backend.call

    def call(transaction: Any, block_number: Any = "latest") -> Any:
        runs.append(transaction)
        return original(transaction, block_number)

    monkeypatch.setattr(backend, "call", call)
    return runs


def test_a_view_re_read_on_an_unchanged_chain_runs_the_evm_once(
    session: LedgerSession, evm_calls: list[Any]
) -> None:
    admin = session.admin
    first = admin.params()
    assert admin.params() == first
    assert admin.total_supply() == admin.total_supply()
    assert len(evm_calls) == 2  # params once, total_supply once


def test_a_transaction_mining_and_a_revert_each_drop_the_cached_views(
    session: LedgerSession, evm_calls: list[Any]
) -> None:
    chain = session.chain
    assert isinstance(chain, EmbeddedChain)
    admin = session.admin
    before = admin.balance()
    snapshot = chain.snapshot()
    admin.mint(admin.account, 7)
    assert admin.balance() == before + 7  # not the cached answer
    chain.mine()
    assert admin.balance() == before + 7
    chain.revert(snapshot)
    assert admin.balance() == before
    assert len(evm_calls) == 4  # each read ran after each change: none was served stale


def test_the_served_chain_answers_a_repeated_view_once_per_head(
    session: LedgerSession, evm_calls: list[Any]
) -> None:
    chain = session.chain
    assert isinstance(chain, EmbeddedChain)
    rpc = EmbeddedRpc(chain)
    token = session.admin.token
    data = token.encode_abi("totalSupply", [])
    params = [{"to": token.address, "data": data}, "latest"]
    supply = rpc.call("eth_call", params)
    assert rpc.call("eth_call", params) == supply
    assert len(evm_calls) == 1
    rpc.call("evm_mine", [])
    assert rpc.call("eth_call", params) == supply
    assert len(evm_calls) == 2
    # the served chain's and the in-process client's answers agree, each in its own form
    assert int(supply, 16) == session.admin.total_supply()


@pytest.fixture
def chain_calls(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every ledger call of every role of the in-process network (the client's one entry
    point), by action."""
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    original = ledger_client._call

    def call(action: str, fn: Callable[[], Any]) -> Any:
        with lock:
            counts[action] += 1
        return original(action, fn)

    monkeypatch.setattr(ledger_client, "_call", call)
    return counts


def _network() -> LocalNetwork:
    g = np.random.default_rng(16)
    net = LocalNetwork(3, 2, seed=16, dlog=DiscreteLog(BabyStepTable.build(1 << 12), 1 << 32))
    policy = DatasetPolicy(min_cohort=5, budget_rho=2.0, price_per_query=1_000)
    for i in range(2):
        net.add_provider(
            f"p{i}",
            tables={"t": pd.DataFrame({"x": g.integers(0, 100, 60)})},
            bounds={"t": {"x": (0, 100)}},
            policies={"t": policy},
        )
    return net


def test_a_query_sends_one_transaction_per_commitment_and_a_retried_one_changes_nothing(
    chain_calls: collections.Counter[str],
) -> None:
    net = _network()
    retried: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for provider in net.providers.values():
        role = provider.role
        first_call = role.on_contribute

        def twice(
            body: dict[str, Any], sender: str, _first: Any = first_call, _store: Any = role.store
        ) -> Any:
            answer = _first(body, sender)
            # a crash after the commitment, before the answer was kept: asked again, the
            # provider commits again, the market refuses, and the trail shows it is the same
            key = next(k for k, v in _store.items("query").items() if v.get("response") == answer)
            kept = _store.get("query", key)
            _store.put("query", key, {**kept, "status": "running", "response": None})
            retried.append((answer, _first(body, sender)))
            return answer

        role.on_contribute = twice  # type: ignore[method-assign]
    w3 = net.ledger.chain.w3
    first_block = w3.eth.block_number + 1
    chain_calls.clear()
    res = net.sql("SELECT AVG(x) FROM t", epsilon=1.0)
    assert res.verified
    assert len(retried) == 2 and all(a == b for a, b in retried)
    trail = net.ledger.admin.audit_trail(res.query_id, verdicts=False).commitments
    kinds = {f"commit_{kind}": len(by) for kind, by in trail.items()}
    assert kinds["commit_contribution"] == 2  # the retries changed nothing on the trail
    # one transaction per commitment on the trail, besides the submission and the votes;
    # each retry's commitment was sent and refused ("already committed")
    sent = {a: n for a, n in chain_calls.items() if a.startswith(("commit", "submit", "post"))}
    sent.pop("commit_contribution")
    kinds.pop("commit_contribution")
    assert sent == {**kinds, "submit_query": 1, "post_verdict": len(net.verifiers)}
    statuses = collections.Counter(
        int(w3.eth.get_transaction_receipt(h)["status"])
        for n in range(first_block, w3.eth.block_number + 1)
        for h in w3.eth.get_block(n)["transactions"]
    )
    assert statuses == {1: sum(sent.values()) + 2, 0: 2}


CONTRACTS = Path(ledger_client.__file__).parent / "contracts"


def _functions(source: str) -> dict[str, tuple[str, str]]:
    """Each function of a Vyper source: its decorators and its body."""
    found = {}
    for m in re.finditer(r"((?:^@\w+(?:\(.*\))?\n)+)def (\w+)\(", source, re.M):
        end = re.search(
            r"^(?:@|def |event |struct |interface |flag |\w+: )", source[m.end() :], re.M
        )
        body = source[m.end() : m.end() + end.start()] if end else source[m.end() :]
        found[m.group(2)] = (m.group(1), body)
    return found


def _reads_sender(funcs: dict[str, tuple[str, str]], name: str, seen: set[str]) -> bool:
    """Whether ``name`` reads msg.sender (or tx.origin), itself or in an internal it calls."""
    _, body = funcs[name]
    if "msg.sender" in body or "tx.origin" in body:
        return True
    called = set(re.findall(r"self\.(\w+)\(", body)) & funcs.keys()
    return any(_reads_sender(funcs, c, seen | {c}) for c in called - seen)


def test_no_view_of_the_contracts_reads_its_sender() -> None:
    """Every view is sent from one account whoever asks (shared cache entries): that
    holds only while no external view reads msg.sender, itself or through an internal."""
    checked = 0
    for path in sorted(CONTRACTS.glob("*.vy")):
        funcs = _functions(path.read_text())

        for name, (decorators, _) in funcs.items():
            if "@view" in decorators and "@external" in decorators:
                checked += 1
                assert not _reads_sender(funcs, name, {name}), (
                    f"{path.name}: {name} reads msg.sender"
                )
    assert checked >= 20  # the parser found the views (public getters read no sender)


def test_views_from_every_role_share_one_evm_run_per_head(
    session: LedgerSession, evm_calls: list[Any]
) -> None:
    admin, analyst = session.admin, session.analyst.client
    assert admin.params() == analyst.params() == session.verifiers[0].client.params()
    assert analyst.balance() == admin.balance(analyst.account)
    assert len(evm_calls) == 2  # params once, balanceOf once, for every asker


def test_the_view_codec_answers_as_web3_does(session: LedgerSession) -> None:
    admin = session.admin
    for fn in (
        admin.market.functions.params(),
        admin.registry.functions.pool(),
        admin.catalog.functions.dataset_count(),
        admin.token.functions.balanceOf(session.analyst.address),
    ):
        assert admin._view("v", fn) == fn.call({"from": admin.account})
    mine = admin.registry.functions.committee(0)
    with pytest.raises(LedgerError) as exc:
        admin._view("committee", mine)
    with pytest.raises(Exception) as direct:
        mine.call()
    assert exc.value.reason == ledger_client.revert_reason(direct.value)
