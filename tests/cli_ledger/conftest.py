"""A served embedded chain with the contracts deployed by `tessera ledger deploy`, and a market.

The chain runs in this process behind the JSON-RPC server (a background thread);
the CLI reaches it by URL like any other node. Each test starts from the same
chain state (a snapshot).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.crypto.group import G
from tessera.ledger import Deployment, EmbeddedChain, LedgerClient, Listing, RpcChain
from tessera.ledger.rpc_server import RpcServer

runner = CliRunner()


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def point(i: int) -> bytes:
    return (G * (i + 1)).encode()


@dataclass
class Market:
    url: str
    record: Path
    chain: RpcChain
    admin: LedgerClient
    provider: LedgerClient
    node: LedgerClient
    analyst: LedgerClient
    verifier: LedgerClient
    committee: int
    datasets: list[int]

    def cli(self, *args: str, account: str | None = None) -> Result:
        """Run `tessera ARGS --rpc URL --deployment RECORD [--account ...]`."""
        extra = ["--rpc", self.url, "--deployment", str(self.record)]
        if account:
            extra += ["--account", account]
        return runner.invoke(app, [*args, *extra])

    def cli_json(self, *args: str, account: str | None = None) -> object:
        result = self.cli(*args, "--json", account=account)
        assert result.exit_code == 0, result.stderr or result.output
        return json.loads(result.stdout)

    def settle(self, query_id: str | bytes) -> None:
        """The computation and a passing verdict, as the nodes and a verifier would post them."""
        self.provider.post_contribution(query_id, h(f"contribution/{query_id!r}"))
        self.node.commit_many(
            query_id,
            {
                "aggregate": h(f"aggregate/{query_id!r}"),
                "noise": h(f"noise/{query_id!r}"),
                "key_switch": h(f"key_switch/{query_id!r}"),
                "proof_bundle": h(f"bundle/{query_id!r}"),
            },
        )
        self.analyst.post_result(query_id, h(f"result/{query_id!r}"))
        assert self.verifier.post_verdict(query_id, True).settled


@pytest.fixture(scope="session")
def _served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Market, int]]:
    record = tmp_path_factory.mktemp("ledger") / "deployment.json"
    with RpcServer(EmbeddedChain(accounts=8), port=0) as server:
        deployed = runner.invoke(
            app,
            [
                "ledger",
                "deploy",
                "--rpc",
                server.url,
                "--out",
                str(record),
                "--timeout-blocks",
                "20",
                "--json",
            ],
        )
        assert deployed.exit_code == 0, deployed.stderr or deployed.output
        chain = RpcChain(server.url)
        deployment = Deployment.load(record)
        admin = LedgerClient(chain, deployment, chain.accounts[0])
        provider, node, analyst, verifier = (admin.as_(a) for a in chain.accounts[1:5])
        admin.register_many(
            [
                (provider.account, "provider", point(1)),
                (node.account, "node", point(2)),
                (analyst.account, "analyst", point(3)),
                (verifier.account, "verifier", point(4)),
            ]
        )
        admin.mint(node.account, 100_000)
        admin.mint(analyst.account, 100_000)
        admin.mint(verifier.account, 1_000)
        node.stake(1_000)
        verifier.stake(1_000)
        verifier.join_pool()
        endorsed = node.endorse_committee([node.account], 1, point(5), [point(6)])
        assert endorsed.committee_id is not None
        committee = endorsed.committee_id
        health = provider.list_dataset(
            h("schema-health"),
            Listing(
                bounds={"age": (0, 120)},
                tags=("health", "cohort"),
                operations=frozenset({"count", "mean"}),
                budget_cap=1_000_000,
                price_per_query=1_000,
                price_per_training=4_000,
            ),
        ).dataset_id
        finance = provider.list_dataset(
            h("schema-finance"),
            Listing(
                bounds={"income": (0.0, 1e6)},
                tags=("finance",),
                operations=frozenset({"count", "sum"}),
                budget_cap=100_000,
                price_per_query=300,
            ),
        ).dataset_id
        market = Market(
            url=server.url,
            record=record,
            chain=chain,
            admin=admin,
            provider=provider,
            node=node,
            analyst=analyst,
            verifier=verifier,
            committee=committee,
            datasets=[health, finance],
        )
        yield market, chain.snapshot()


@pytest.fixture
def market(_served: tuple[Market, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Market]:
    for name in ("TESSERA_LEDGER_RPC", "TESSERA_DEPLOYMENT", "TESSERA_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    m, snapshot = _served
    m.chain.revert(snapshot)
    yield m
