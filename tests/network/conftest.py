"""A network of real processes on loopback (chain, 3 nodes t=2, 4 providers, a verifier)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.cli.demo import network_spec
from tessera.node.launcher import Network


def start(path: Path, cheating_nodes: tuple[int, ...] = ()) -> Network:
    net = Network(path)
    net.up(network_spec(kdf_iterations=2**10, cheating_nodes=cheating_nodes))
    return net


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = start(tmp_path_factory.mktemp("net") / "network")
    try:
        yield net
    finally:
        net.down()
