"""Batched Prio3 verification (``verify_init_batch``, Field128 kernels) against the spec path."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.crypto import flp_batch
from tessera.crypto.field import Field128
from tessera.crypto.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultihotCountVec,
    Prio3SumVec,
)
from tessera.errors import DecodeError, InvalidProof

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "vdaf"
CTX = b"tessera batch tests"
P = Field128.MODULUS


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _vdaf_for(stem: str, v: dict[str, Any]) -> Prio3[Any, Any] | None:
    kind = stem.rsplit("_", 1)[0]
    if kind.startswith("Prio3Histogram"):
        return Prio3Histogram(v["shares"], v["length"], v["chunk_length"])
    if kind == "Prio3SumVec":
        return Prio3SumVec(v["shares"], v["length"], v["max_measurement"], v["chunk_length"])
    if kind == "Prio3MultihotCountVec":
        return Prio3MultihotCountVec(v["shares"], v["length"], v["max_weight"], v["chunk_length"])
    return None


BATCHED_FILES = [
    f
    for f in sorted(VECTORS.glob("Prio3*.json"))
    if _vdaf_for(f.stem, json.loads(f.read_text())) is not None
]


def test_batched_circuits_have_vectors() -> None:
    assert len(BATCHED_FILES) >= 10


@pytest.mark.parametrize("path", BATCHED_FILES, ids=lambda p: p.stem)
def test_official_vectors(path: Path) -> None:
    """Every ``verify_init`` of the official vectors, all reports of a file in one batch."""
    v = json.loads(path.read_text())
    vdaf = _vdaf_for(path.stem, v)
    assert vdaf is not None and vdaf._range_check_batch is not None
    verify_key, ctx = bytes.fromhex(v["verify_key"]), bytes.fromhex(v["ctx"])
    reports = v["reports"]
    expected_ok = {
        (op["report_index"], op["aggregator_id"]): op["success"]
        for op in v["operations"]
        if op["operation"] == "verify_init"
    }
    for agg_id in range(vdaf.SHARES):
        got = vdaf.verify_init_batch(
            verify_key,
            ctx,
            agg_id,
            [bytes.fromhex(r["nonce"]) for r in reports],
            [bytes.fromhex(r["public_share"]) for r in reports],
            [bytes.fromhex(r["input_shares"][agg_id]) for r in reports],
        )
        for i, (r, res) in enumerate(zip(reports, got, strict=True)):
            if (i, agg_id) not in expected_ok:
                continue
            if not expected_ok[(i, agg_id)]:
                assert isinstance(res, InvalidProof | DecodeError)
                continue
            assert not isinstance(res, Exception)
            _, verifier_share = res
            assert verifier_share.hex() == r["verifier_shares"][0][agg_id]


def _reports(
    vdaf: Prio3[Any, Any], measurements: list[Any], rng: random.Random
) -> tuple[list[bytes], list[bytes], list[list[bytes]]]:
    nonces, publics, shares = [], [], []
    for m in measurements:
        nonce = _bytes(rng, vdaf.NONCE_SIZE)
        public, input_shares = vdaf.shard(CTX, m, nonce, _bytes(rng, vdaf.RAND_SIZE))
        nonces.append(nonce)
        publics.append(vdaf.encode_public_share(public))
        shares.append([vdaf.encode_input_share(s) for s in input_shares])
    return nonces, publics, shares


def _tamper(
    vdaf: Prio3[Any, Any], nonces: list[bytes], publics: list[bytes], shares: list[list[bytes]]
) -> None:
    """Spoil some reports in every way the batch path must answer like the spec path."""
    flip = bytearray(shares[1][0])
    flip[3] ^= 1  # a measurement share element
    shares[1][0] = bytes(flip)
    flip = bytearray(shares[2][0])
    flip[-vdaf.xof.SEED_SIZE - 20] ^= 0x80  # a proof share element
    shares[2][0] = bytes(flip)
    shares[3][1] = shares[3][1][:-1]  # short helper share
    shares[4][0] = shares[4][0] + b"\0"  # long leader share
    publics[5] = publics[5][:-1]  # short public share
    nonces[6] = nonces[6][:-1]  # short nonce
    # A leader element >= p: the encoding is rejected, not reduced.
    shares[7][0] = (P + 1).to_bytes(16, "little") + shares[7][0][16:]
    publics[8] = bytes(len(publics[8]))  # wrong joint randomness parts


def _check_same(vdaf: Prio3[Any, Any], verify_key: bytes, reports: Any) -> None:
    nonces, publics, shares = reports
    for agg_id in range(vdaf.SHARES):
        got = vdaf.verify_init_batch(
            verify_key, CTX, agg_id, nonces, publics, [s[agg_id] for s in shares]
        )
        for nonce, public, share, res in zip(nonces, publics, shares, got, strict=True):
            want = vdaf._verify_init_encoded(verify_key, CTX, agg_id, nonce, public, share[agg_id])
            if isinstance(want, Exception):
                assert type(res) is type(want)
            else:
                assert res == want


CASES: list[tuple[Prio3[Any, Any], Any]] = [
    (Prio3Histogram(2, 100, 10), lambda i: i % 100),
    (Prio3Histogram(3, 7, 3), lambda i: i % 7),
    (Prio3SumVec(2, 10, 255, 4), lambda i: [(i * j) % 256 for j in range(10)]),
    (Prio3SumVec(2, 5, 1, 2), lambda i: [(i >> j) & 1 for j in range(5)]),
    (Prio3MultihotCountVec(2, 20, 5, 4), lambda i: [j < i % 6 for j in range(20)]),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_results_as_verify_init(case: int) -> None:
    vdaf, measurement = CASES[case]
    rng = random.Random(case)
    reports = _reports(vdaf, [measurement(i) for i in range(12)], rng)
    _tamper(vdaf, *reports)
    _check_same(vdaf, _bytes(rng, vdaf.VERIFY_KEY_SIZE), reports)


def test_batch_prepares_to_the_right_aggregate() -> None:
    vdaf = Prio3Histogram(2, 10, 3)
    rng = random.Random(7)
    measurements = [i % 10 for i in range(25)]
    nonces, publics, shares = _reports(vdaf, measurements, rng)
    verify_key = _bytes(rng, vdaf.VERIFY_KEY_SIZE)
    per_agg = [
        vdaf.verify_init_batch(verify_key, CTX, a, nonces, publics, [s[a] for s in shares])
        for a in range(2)
    ]
    agg_shares: list[list[int]] = [vdaf.agg_init(None) for _ in range(2)]
    for results in zip(*per_agg, strict=True):
        states, vshares = [], []
        for res in results:
            assert not isinstance(res, Exception)
            state, encoded = res
            states.append(state)
            vshares.append(vdaf.decode_verifier_share(state, encoded))
        msg = vdaf.verifier_shares_to_message(CTX, None, vshares)
        for a, state in enumerate(states):
            out = vdaf.verify_next(CTX, state, msg)
            assert isinstance(out, list)
            agg_shares[a] = vdaf.agg_update(None, agg_shares[a], out)
    assert vdaf.unshard(None, agg_shares, 25) == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]


def test_circuits_without_kernel_fall_back() -> None:
    vdaf = Prio3Count(2)
    assert vdaf._range_check_batch is None
    rng = random.Random(3)
    reports = _reports(vdaf, [i % 2 for i in range(4)], rng)
    _check_same(vdaf, _bytes(rng, vdaf.VERIFY_KEY_SIZE), reports)


def test_test_point_at_a_root_of_unity_is_flagged() -> None:
    vdaf = Prio3Histogram(2, 10, 3)
    batch = vdaf._range_check_batch
    assert batch is not None
    flp = vdaf.flp
    width = flp.MEAS_LEN + flp.PROOF_LEN + flp.JOINT_RAND_LEN + flp.QUERY_RAND_LEN
    rows = np.full((2, width, 2), 3, dtype=np.uint64)
    rows[:, :, 1] = 0
    # Report 1's test point (the last query randomness element) is a root of unity.
    root = Field128.root(8)
    rows[1, -1] = [root & (2**64 - 1), root >> 64]
    _, status = batch.query(rows)
    assert status.tolist() == [flp_batch.STATUS_OK, flp_batch.STATUS_ROOT_OF_UNITY]


_elements = st.one_of(st.integers(0, P - 1), st.sampled_from([0, 1, 2, P - 1, P - 2, 2**64]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_elements, _elements), min_size=1, max_size=8))
def test_kernel_multiplication(pairs: list[tuple[int, int]]) -> None:
    a = flp_batch.limbs([x for x, _ in pairs])
    b = flp_batch.limbs([y for _, y in pairs])
    got = flp_batch.mul_vec(a, b).tolist()
    assert [lo | hi << 64 for lo, hi in got] == [x * y % P for x, y in pairs]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_messages_same_as_verifier_shares_to_message(case: int) -> None:
    vdaf, measurement = CASES[case]
    rng = random.Random(100 + case)
    nonces, publics, shares = _reports(vdaf, [measurement(i) for i in range(10)], rng)
    verify_key = _bytes(rng, vdaf.VERIFY_KEY_SIZE)
    per_agg = [
        vdaf.verify_init_batch(verify_key, CTX, a, nonces, publics, [s[a] for s in shares])
        for a in range(vdaf.SHARES)
    ]
    vshares: list[list[bytes]] = []
    for results in zip(*per_agg, strict=True):
        encoded = []
        for res in results:
            assert not isinstance(res, Exception)
            encoded.append(res[1])
        vshares.append(encoded)
    vshares[1][0] = vshares[1][0][:-1]  # short share
    vshares[2] = vshares[2][:-1]  # missing share
    flip = bytearray(vshares[3][-1])
    flip[0] ^= 1  # v != 0
    vshares[3][-1] = bytes(flip)
    flip = bytearray(vshares[4][0])
    flip[20] ^= 1  # a wire check
    vshares[4][0] = bytes(flip)
    vshares[5][0] = (P + 3).to_bytes(16, "little") + vshares[5][0][16:]  # not canonical
    got = vdaf.verifier_messages_batch(CTX, vshares)
    for shares_of_report, res in zip(vshares, got, strict=True):
        want = vdaf._message_encoded(CTX, shares_of_report)
        if isinstance(want, Exception):
            assert type(res) is type(want)
        else:
            assert res == want
    assert [isinstance(r, Exception) for r in got] == [i in (1, 2, 3, 4, 5) for i in range(10)]
