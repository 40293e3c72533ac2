"""A deployed ledger with registered participants, shared by the tests through chain snapshots."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tessera.crypto.group import G
from tessera.ledger import EmbeddedChain, LedgerClient, Listing, deploy

CREDITS = 1_000_000
STAKE = 5_000


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def point(i: int) -> bytes:
    return (G * (i + 1)).encode()


@dataclass
class World:
    chain: EmbeddedChain
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
        holders = {c.account, c.deployment.market, c.deployment.registry}
        for group in (self.providers, self.nodes, self.verifiers):
            holders.update(x.account for x in group)
        holders.update((self.analyst.account, self.outsider.account))
        return sum(c.balance(a) for a in holders)


def _build() -> World:
    chain = EmbeddedChain(accounts=12)
    deployment = deploy(chain, quorum=2, min_stake=STAKE, slash_amount=STAKE, timeout_blocks=50)
    accts = chain.accounts
    admin = LedgerClient(chain, deployment, accts[0])
    providers = [admin.as_(a) for a in accts[1:3]]
    nodes = [admin.as_(a) for a in accts[3:6]]
    analyst = admin.as_(accts[6])
    verifiers = [admin.as_(a) for a in accts[7:10]]
    outsider = admin.as_(accts[10])
    for i, p in enumerate(providers):
        admin.register(p.account, "provider", point(i))
    for i, n in enumerate(nodes):
        admin.register(n.account, "node", point(10 + i))
        admin.mint(n.account, CREDITS)
        n.stake(STAKE)
    admin.register(analyst.account, "analyst", point(20))
    admin.mint(analyst.account, CREDITS)
    for i, v in enumerate(verifiers):
        admin.register(v.account, "verifier", point(30 + i))
    committee = (
        nodes[0]
        .create_committee(
            [n.account for n in nodes], 2, point(40), [point(41 + i) for i in range(3)]
        )
        .committee_id
    )
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


@pytest.fixture(scope="session")
def _world_and_snapshot() -> tuple[World, int]:
    world = _build()
    return world, world.chain.snapshot()


@pytest.fixture
def world(_world_and_snapshot: tuple[World, int]) -> Iterator[World]:
    w, snap = _world_and_snapshot
    w.chain.revert(snap)
    w.admin.gas_log.clear()
    yield w
