"""Training round messages: positions, sealed reports, the verify key agreed by the nodes."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from coincurve import PrivateKey

from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError, InvalidProof
from tessera.learning import FixedPoint, secure
from tessera.protocol.training import (
    SealedReport,
    positions,
    report_digest,
    seal_report,
    seed_commitment,
    verify_key,
)

NODES = (1, 2, 3)
TID = b"training-0"


def _keys() -> tuple[dict[int, bytes], dict[int, bytes]]:
    rng = SeededRng("training keys")
    secrets = {i: rng.scalar().to_bytes(32, "big") for i in NODES}
    public = {i: PrivateKey(s).public_key.format(compressed=True) for i, s in secrets.items()}
    return secrets, public


def test_positions_are_a_rotation_spread_over_the_nodes() -> None:
    rng = random.Random(1)
    leaders: Counter[int] = Counter()
    for _ in range(600):
        nonce = rng.randbytes(16)
        order = positions(nonce, [3, 1, 2])
        assert sorted(order) == [1, 2, 3]
        assert order == positions(nonce, [1, 2, 3])  # not the caller's order
        assert order in {(1, 2, 3), (2, 3, 1), (3, 1, 2)}  # a rotation
        leaders[order[0]] += 1
    assert min(leaders.values()) > 150  # each node leads about a third of the reports
    with pytest.raises(ValueError):
        positions(bytes(16), [1])


def _report() -> tuple[SealedReport, list[bytes], dict[int, bytes]]:
    secrets, public = _keys()
    fp = FixedPoint(1.0, 8)
    vdaf = secure.update_vdaf(20, fp, len(NODES))
    r = random.Random(2)
    nonce = r.randbytes(16)
    rep = secure.shard_update(
        vdaf,
        secure.round_ctx(TID, 4),
        np.arange(-10, 10),
        nonce,
        r.randbytes(vdaf.RAND_SIZE),
    )
    sealed = seal_report(
        TID, 4, "hospital-a", nonce, rep.public_share, rep.input_shares, public, SeededRng("seal")
    )
    return sealed, list(rep.input_shares), secrets


def test_each_node_opens_its_own_share_at_its_position_only() -> None:
    sealed, shares, secrets = _report()
    order = positions(sealed.nonce, list(NODES))
    for node in NODES:
        position, share = sealed.open_share(node, secrets[node])
        assert position == order.index(node)
        assert share == shares[position]
        other = next(n for n in NODES if n != node)
        with pytest.raises(InvalidProof):
            sealed.open_share(node, secrets[other])
    with pytest.raises(DecodeError, match="no share for node 9"):
        sealed.open_share(9, secrets[1])


def test_a_share_moved_to_another_round_provider_or_slot_does_not_open() -> None:
    sealed, _, secrets = _report()
    node = sealed.sealed[0][0]
    for changed in (
        SealedReport(
            sealed.training_id, 5, sealed.provider, sealed.nonce, sealed.public_share, sealed.sealed
        ),
        SealedReport(
            sealed.training_id, 4, "hospital-b", sealed.nonce, sealed.public_share, sealed.sealed
        ),
        SealedReport(
            b"training-1", 4, sealed.provider, sealed.nonce, sealed.public_share, sealed.sealed
        ),
    ):
        with pytest.raises(InvalidProof):
            changed.open_share(node, secrets[node])


def test_the_encoding_round_trips_and_is_strict() -> None:
    sealed, _, _ = _report()
    data = sealed.encode()
    assert SealedReport.decode(data) == sealed
    assert len(report_digest(sealed)) == 32
    with pytest.raises(DecodeError, match="truncated"):
        SealedReport.decode(data[:-1])
    with pytest.raises(DecodeError, match="trailing"):
        SealedReport.decode(data + b"\x00")
    swapped = SealedReport(
        sealed.training_id,
        sealed.round_index,
        sealed.provider,
        sealed.nonce,
        sealed.public_share,
        (sealed.sealed[1], sealed.sealed[0], sealed.sealed[2]),
    )
    with pytest.raises(DecodeError, match="positions"):
        SealedReport.decode(swapped.encode())
    assert report_digest(swapped) != report_digest(sealed)


def test_the_verify_key_needs_every_committed_seed() -> None:
    r = random.Random(3)
    seeds = {i: r.randbytes(32) for i in NODES}
    commits = {i: seed_commitment(TID, 2, i, s) for i, s in seeds.items()}
    key = verify_key(TID, 2, commits, seeds)
    assert len(key) == 32
    assert key == verify_key(TID, 2, dict(reversed(commits.items())), dict(reversed(seeds.items())))
    other = {**seeds, 2: r.randbytes(32)}
    with pytest.raises(InvalidProof, match="node 2's seed"):
        verify_key(TID, 2, commits, other)
    with pytest.raises(InvalidProof, match=r"node\(s\) \[3\]"):
        verify_key(TID, 2, commits, {1: seeds[1], 2: seeds[2]})
    # a commitment for one round is no commitment for the next
    with pytest.raises(InvalidProof):
        verify_key(TID, 3, commits, seeds)
