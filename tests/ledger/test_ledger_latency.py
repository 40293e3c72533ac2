"""The ledger off a query's critical path: views answered once per head block, the same
answers as the chain's, and every role's chain calls of one query counted."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.ledger.chain import EmbeddedChain
from tessera.ledger.rpc_server import EmbeddedRpc
from tessera.ledger.session import LedgerSession


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
