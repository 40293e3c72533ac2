"""The deployed roles under attack, in process and as real processes.

Every attack test runs against both targets: a :class:`~tessera.LocalNetwork` (the
roles wired over the in-process transport) and a network of real processes on
loopback (chain, 3 nodes with threshold 2 after a live DKG, 4 providers, a verifier),
each holding the bundled medical sample. The attacker holds keys of the parties it
corrupts (the analyst, a provider, a node) and talks to the honest roles as any
registered account can.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tessera.cli.demo import network_spec
from tessera.crypto.rng import SeededRng
from tessera.data import medical
from tessera.ledger import LedgerClient
from tessera.node.analyst import NetworkAnalyst
from tessera.node.identity import Identity, load_keystore
from tessera.node.launcher import Network, open_session
from tessera.node.local_network import LocalNetwork
from tessera.node.runner import connect_ledger
from tessera.node.transport import HttpTransport
from tessera.protocol.policy import DatasetPolicy
from tessera.testing.adversary import TamperingTransport


@dataclasses.dataclass
class Target:
    """What an attacker needs of a network: the analyst's client and the keys it holds."""

    kind: str
    analyst: NetworkAnalyst
    identities: dict[str, Identity]  # label -> key: analyst, providers by name, node-i
    ledger_of: Callable[[Identity], LedgerClient]
    transport_of: Callable[[Identity], Any]

    def tampering(
        self, edit: Callable[[str, dict[str, Any]], dict[str, Any] | None]
    ) -> NetworkAnalyst:
        """The analyst, lying to the other roles through ``edit`` (see TamperingTransport)."""
        a = self.analyst
        return NetworkAnalyst(
            a.ledger, TamperingTransport(a.transport, edit), a.peers, a.committee, a._dlog
        )

    def address(self, label: str) -> str:
        return self.identities[label].address

    def peer(self, role: str, name: str | None = None, index: int | None = None) -> str:
        for p in self.analyst.peers:
            if (
                p.role == role
                and (name is None or p.name == name)
                and (index is None or p.index == index)
            ):
                return p.address
        raise KeyError((role, name, index))


def _local() -> tuple[Target, Callable[[], None]]:
    from tessera.node.dlog_cache import discrete_log

    net = LocalNetwork(3, 2, seed="attacks", dlog=discrete_log())
    policy = DatasetPolicy(min_cohort=10, budget_rho=5.0, price_per_query=1_000)
    for p in medical.PROVIDERS:
        net.add_provider(
            p,
            tables={"patients": medical.load(p)},
            bounds=medical.bounds_for_network(),
            policies={"patients": policy},
        )
    led = net.ledger
    identities = {"analyst": Identity(led.analyst.secret_key)}
    identities |= {n: Identity(p.secret_key) for n, p in led.providers.items()}
    identities |= {f"node-{i}": Identity(p.secret_key) for i, p in led.nodes.items()}
    return (
        Target(
            "in-process",
            net.analyst,
            identities,
            lambda ident: led.admin.as_(ident.address),
            lambda ident: net._transport.with_identity(ident),
        ),
        net.close,
    )


def _processes(path: Path) -> tuple[Target, Callable[[], None]]:
    net = Network(path)
    net.up(network_spec(kdf_iterations=2**10))
    analyst, transport = open_session(path, SeededRng("attacks/processes"))
    names = ["analyst", *medical.PROVIDERS, "node-1", "node-2", "node-3"]
    identities = {n: load_keystore(path / "keys" / f"{n}.json", net.password) for n in names}
    urls = {p.address: p.url for p in analyst.peers}

    def stop() -> None:
        analyst.close()
        transport.close()
        net.down()

    return (
        Target(
            "processes",
            analyst,
            identities,
            lambda ident: connect_ledger(net.state["rpc"], Path(net.state["deployment"]), ident),
            lambda ident: HttpTransport(ident, urls),
        ),
        stop,
    )


@pytest.fixture(scope="module", params=["in-process", "processes"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    if request.param == "in-process":
        made, stop = _local()
    else:
        made, stop = _processes(tmp_path_factory.mktemp("attacks") / "network")
    try:
        yield made
    finally:
        stop()
