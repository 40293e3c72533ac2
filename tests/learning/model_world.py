"""A deployed ledger (every contract, the model registry too) with two analysts, a committee
and a dataset that sells training: what the model registry's tests run against.

The chain is the real EVM of eth-tester (py-evm), embedded or served over JSON-RPC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tessera.crypto.group import G
from tessera.ledger import Chain, Deployment, LedgerClient, Listing, deploy
from tessera.ledger.model_registry import ModelRegistry

CREDITS = 1_000_000


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def point(i: int) -> bytes:
    return (G * (i + 1)).encode()


@dataclass
class World:
    chain: Chain
    deployment: Deployment
    admin: LedgerClient
    provider: LedgerClient
    node: LedgerClient
    analyst: LedgerClient
    rival: LedgerClient  # another registered analyst
    committee: int
    dataset: int

    def registry(self, who: LedgerClient | None = None) -> ModelRegistry:
        return ModelRegistry(who or self.analyst)

    def training_query(
        self, label: str, rho_micro: int = 1_000, who: LedgerClient | None = None
    ) -> bytes:
        """A market query of kind "training" on the world's committee; its id."""
        client = who or self.analyst
        sub = client.submit_query(
            h(label), [self.dataset], self.committee, rho_micro, {"federated_training"}, "training"
        )
        return sub.query_id

    def plain_query(self, label: str, rho_micro: int = 1_000) -> bytes:
        """A market query of kind "query" (a statistic), same committee and dataset."""
        sub = self.analyst.submit_query(
            h(label), [self.dataset], self.committee, rho_micro, {"mean"}, "query"
        )
        return sub.query_id


def build(chain: Chain, deployment: Deployment | None = None) -> World:
    """Register and fund the participants on ``deployment`` (default: a fresh ``deploy``)."""
    deployment = deployment or deploy(chain, timeout_blocks=50)
    accts = chain.accounts
    admin = LedgerClient(chain, deployment, deployment.admin)
    provider, node, analyst, rival = (admin.as_(a) for a in accts[1:5])
    admin.register_many(
        [
            (provider.account, "provider", point(1)),
            (node.account, "node", point(2)),
            (analyst.account, "analyst", point(3)),
            (rival.account, "analyst", point(4)),
        ]
    )
    admin.mint(node.account, CREDITS)
    node.stake(deployment_min_stake(admin))
    for a in (analyst, rival):
        admin.mint(a.account, CREDITS)
    endorsed = node.endorse_committee([node.account], 1, point(5), [point(6)])
    assert endorsed.committee_id is not None
    dataset = provider.list_dataset(
        h("schema-digits"),
        Listing(
            bounds={"pixel": (0, 16)},
            tags=("digits",),
            operations=frozenset({"mean", "federated_training"}),
            budget_cap=10**9,
            price_per_query=100,
            price_per_training=1_000,
            node_share_bps=2_000,
        ),
    ).dataset_id
    return World(
        chain, deployment, admin, provider, node, analyst, rival, endorsed.committee_id, dataset
    )


def deployment_min_stake(admin: LedgerClient) -> int:
    return int(admin.registry.functions.min_stake().call())
