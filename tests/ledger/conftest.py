"""A deployed ledger with registered participants, shared by the tests through chain snapshots.

The chain is the embedded py-evm one, or, when ``TESSERA_LEDGER_RPC`` names a
JSON-RPC endpoint with unlocked accounts (CI starts a Hardhat node), that chain.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tessera.crypto.group import G
from tessera.ledger import (
    Chain,
    EmbeddedChain,
    LedgerClient,
    Listing,
    RpcChain,
    deploy,
    query_id_for,
)

#: JSON-RPC endpoint to test against instead of the embedded chain.
RPC_URL = os.environ.get("TESSERA_LEDGER_RPC", "")

CREDITS = 1_000_000
STAKE = 5_000


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def qid(w: World, label: str, analyst: LedgerClient | None = None) -> bytes:
    """The id of the query ``analyst`` (default: the world's) submits as ``h(label)``."""
    return query_id_for((analyst or w.analyst).account, h(label))


def point(i: int) -> bytes:
    return (G * (i + 1)).encode()


@dataclass
class World:
    chain: Chain
    admin: LedgerClient
    providers: list[LedgerClient]
    nodes: list[LedgerClient]
    analyst: LedgerClient
    verifiers: list[LedgerClient]
    outsider: LedgerClient
    committee: int
    datasets: list[int]

    def supply_accounted(self) -> int:
        """Credits held by every account the tests use plus the two contracts."""
        c = self.admin
        holders = {
            c.account,
            c.deployment.market,
            c.deployment.registry,
            c.deployment.governance,
        }
        for group in (self.providers, self.nodes, self.verifiers):
            holders.update(x.account for x in group)
        holders.update((self.analyst.account, self.outsider.account))
        return sum(c.balance(a) for a in holders)

    def worth(self, account: str) -> int:
        """What ``account`` holds plus what settlements owe it (pull payments)."""
        return self.admin.balance(account) + self.admin.owed(account)

    def cash_out(self) -> dict[str, int]:
        """Every account settlements owe something withdraws it (pull payments); returns
        what each was paid. Afterwards nothing is owed and the market holds the escrow of
        open queries only."""
        paid: dict[str, int] = {}
        for c in (*self.providers, *self.nodes, self.analyst, *self.verifiers, self.outsider):
            if c.account not in paid and c.owed() > 0:
                paid[c.account] = c.withdraw().amount
        assert self.admin.total_owed() == 0
        return paid


def make_chain(accounts: int = 12) -> Chain:
    """The chain under test: ``TESSERA_LEDGER_RPC``'s, else a fresh embedded one.

    An external chain is one for the whole run: the tests share it through snapshots
    and reverts, which parallel workers would undo under each other. Run them in one
    process (``-n 0``, as ``.ci/run`` does); each worker gets its own embedded chain."""
    if RPC_URL:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        if workers > 1:
            pytest.fail(
                f"the ledger tests against {RPC_URL} share one chain: run them with -n 0, "
                f"not {workers} workers",
                pytrace=False,
            )
        chain: Chain = RpcChain(RPC_URL)
        if len(chain.accounts) < accounts:
            pytest.fail(
                f"{RPC_URL} unlocks {len(chain.accounts)} accounts, the tests need {accounts}"
            )
        return chain
    return EmbeddedChain(accounts=accounts)


def _build() -> World:
    chain = make_chain(14)
    deployment = deploy(
        chain, verifiers_per_query=3, min_stake=STAKE, slash_amount=STAKE, timeout_blocks=50
    )
    accts = chain.accounts
    admin = LedgerClient(chain, deployment, accts[0])
    providers = [admin.as_(a) for a in accts[1:3]]
    nodes = [admin.as_(a) for a in accts[3:6]]
    analyst = admin.as_(accts[6])
    verifiers = [admin.as_(a) for a in accts[7:10]]
    outsider = admin.as_(accts[10])
    admin.register_many(
        [
            *((p.account, "provider", point(i)) for i, p in enumerate(providers)),
            *((n.account, "node", point(10 + i)) for i, n in enumerate(nodes)),
            (analyst.account, "analyst", point(20)),
            *((v.account, "verifier", point(30 + i)) for i, v in enumerate(verifiers)),
        ]
    )
    for n in nodes:
        admin.mint(n.account, CREDITS)
        n.stake(STAKE)
    admin.mint(analyst.account, CREDITS)
    for v in verifiers:
        admin.mint(v.account, CREDITS)
        v.stake(STAKE)
        v.join_pool()
    shares = [point(41 + i) for i in range(3)]
    for n in nodes:
        endorsed = n.endorse_committee([x.account for x in nodes], 2, point(40), shares)
    assert endorsed.committee_id is not None
    committee = endorsed.committee_id
    datasets = [
        providers[0]
        .list_dataset(
            h("schema-a"),
            Listing(
                bounds={"age": (0, 120)},
                tags=("health", "cohort"),
                operations=frozenset({"count", "sum", "mean"}),
                budget_cap=1_000_000,
                price_per_query=1_000,
                price_per_training=5_000,
                node_share_bps=3_000,
            ),
        )
        .dataset_id,
        providers[1]
        .list_dataset(
            h("schema-b"),
            Listing(
                bounds={"income": (0.0, 1e6)},
                tags=("finance",),
                operations=frozenset({"count", "sum", "mean", "linear_regression"}),
                budget_cap=500_000,
                price_per_query=2_000,
                node_share_bps=2_000,
            ),
        )
        .dataset_id,
    ]
    return World(chain, admin, providers, nodes, analyst, verifiers, outsider, committee, datasets)


@dataclass
class _Saved:
    world: World
    snapshot: int


@pytest.fixture(scope="session")
def _world_and_snapshot() -> _Saved:
    world = _build()
    return _Saved(world, world.chain.snapshot())


@pytest.fixture
def world(_world_and_snapshot: _Saved) -> Iterator[World]:
    saved = _world_and_snapshot
    w = saved.world
    w.chain.revert(saved.snapshot)
    # Hardhat consumes a snapshot when it reverts to it: take a fresh one each time.
    saved.snapshot = w.chain.snapshot()
    w.admin.gas_log.clear()
    # committees created after the snapshot are gone: their ids will be reused
    for client in (w.admin, *w.providers, *w.nodes, w.analyst, *w.verifiers, w.outsider):
        client.forget_committees()
    yield w
