"""A secure round as each node plays it (learning/committee.py), against a relaying analyst."""

from __future__ import annotations

import numpy as np
import pytest
from coincurve import PrivateKey

from tessera.crypto.rng import SeededRng
from tessera.errors import ProtocolError
from tessera.learning import FixedPoint, secure
from tessera.learning.committee import NodeRound
from tessera.protocol.training import positions, report_digest, seal_report

TID = b"committee-test"
NODES = (1, 2, 3)


def _setup(round_index: int = 0) -> tuple[list[NodeRound], dict[int, bytes], object]:
    rng = SeededRng("committee")
    secrets = {i: rng.scalar().to_bytes(32, "big") for i in NODES}
    public = {i: PrivateKey(s).public_key.format(compressed=True) for i, s in secrets.items()}
    vdaf = secure.update_vdaf(12, FixedPoint(1.0, 8), len(NODES))
    nodes = [
        NodeRound(i, secrets[i], vdaf, TID, round_index, None, None, SeededRng(f"n{i}"))
        for i in NODES
    ]
    return nodes, public, vdaf


def _sealed(vdaf: object, public: dict[int, bytes], name: str, values: np.ndarray, seed: int):  # type: ignore[no-untyped-def]
    r = np.random.default_rng(seed)
    rep = secure.shard_update(
        vdaf,
        secure.round_ctx(TID, 0),
        values,
        r.bytes(16),
        r.bytes(vdaf.RAND_SIZE),  # type: ignore[attr-defined]
    )
    return seal_report(
        TID, 0, name, rep.nonce, rep.public_share, rep.input_shares, public, SeededRng(name)
    )


def _agree(nodes: list[NodeRound], digests: dict[str, bytes]) -> None:
    commitments = {n.index: n.commitment() for n in nodes}
    for n in nodes:
        n.lock(digests)
    seeds = {n.index: n.reveal() for n in nodes}
    for n in nodes:
        n.agree(commitments, seeds)


def test_an_honest_round_sums_the_updates_and_releases_once() -> None:
    nodes, public, vdaf = _setup()
    a, b = np.arange(12) - 6, np.ones(12, dtype=np.int64) * 3
    reports = {"a": _sealed(vdaf, public, "a", a, 1), "b": _sealed(vdaf, public, "b", b, 2)}
    _agree(nodes, {k: report_digest(v) for k, v in reports.items()})
    for name, rep in reports.items():
        shares = {n.index: n.prepare(name, rep) for n in nodes}
        ordered = [shares[i] for i in positions(rep.nonce, list(NODES))]
        assert all(n.decide(name, ordered) for n in nodes)
    total = secure.unshard(vdaf, [n.release() for n in nodes], 2)  # type: ignore[arg-type]
    assert total.tolist() == (a + b).tolist()
    with pytest.raises(ProtocolError, match="released already"):
        nodes[0].release()


def test_no_seed_before_the_reports_are_fixed_and_no_other_report_after() -> None:
    nodes, public, vdaf = _setup()
    with pytest.raises(ProtocolError, match="no seed"):
        nodes[0].reveal()
    rep = _sealed(vdaf, public, "a", np.zeros(12, dtype=np.int64), 1)
    other = _sealed(vdaf, public, "a", np.ones(12, dtype=np.int64), 5)
    _agree(nodes, {"a": report_digest(rep)})
    with pytest.raises(ProtocolError, match="already fixed"):
        nodes[0].lock({"a": report_digest(other)})
    assert nodes[0].prepare("a", other) is None
    assert "not the one fixed" in nodes[0].exclusions()["a"]


def test_verifier_shares_altered_by_the_relay_exclude_the_report() -> None:
    nodes, public, vdaf = _setup()
    rep = _sealed(vdaf, public, "a", np.zeros(12, dtype=np.int64), 1)
    _agree(nodes, {"a": report_digest(rep)})
    shares = {n.index: n.prepare("a", rep) for n in nodes}
    ordered = [shares[i] for i in positions(rep.nonce, list(NODES))]
    k = next(i for i, v in enumerate(ordered) if v != shares[nodes[0].index])
    bad = list(ordered)
    bad[k] = bytes([bad[k][0] ^ 1]) + bad[k][1:]  # type: ignore[index]
    assert not nodes[0].decide("a", bad)
    assert nodes[0].accepted() == [] and "a" in nodes[0].exclusions()
    mine = ordered.index(shares[nodes[1].index])
    swapped = list(ordered)
    swapped[mine] = ordered[(mine + 1) % 3]
    assert not nodes[1].decide("a", swapped)
    assert "not the nodes'" in nodes[1].exclusions()["a"]


def test_a_node_refuses_a_verify_key_without_its_own_seed() -> None:
    nodes, _, _ = _setup()
    commitments = {n.index: n.commitment() for n in nodes}
    for n in nodes:
        n.lock({})
    seeds = {n.index: n.reveal() for n in nodes}
    with pytest.raises(ProtocolError, match="own seed"):
        nodes[0].agree(commitments, {**seeds, 1: bytes(32)})
