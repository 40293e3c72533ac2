"""End-to-end and negative tests of Prio3 and Poplar1 (draft-irtf-cfrg-vdaf-18)."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from tessera.crypto.poplar1 import Poplar1
from tessera.crypto.prio3 import (
    Prio3,
    Prio3Count,
    Prio3HelperShare,
    Prio3Histogram,
    Prio3LeaderShare,
    Prio3MultihotCountVec,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
)
from tessera.errors import DecodeError, InvalidProof

CTX = b"tessera tests"


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _run_prio3(vdaf: Prio3[Any, Any], measurements: list[Any], rng: random.Random) -> Any:
    verify_key = _bytes(rng, vdaf.VERIFY_KEY_SIZE)
    out_shares: list[list[list[int]]] = [[] for _ in range(vdaf.SHARES)]
    for m in measurements:
        nonce = _bytes(rng, vdaf.NONCE_SIZE)
        public_share, input_shares = vdaf.shard(CTX, m, nonce, _bytes(rng, vdaf.RAND_SIZE))
        # Go through the wire encodings, as aggregators would.
        public_share = vdaf.decode_public_share(vdaf.encode_public_share(public_share))
        states, shares = [], []
        for agg_id, share in enumerate(input_shares):
            share = vdaf.decode_input_share(agg_id, vdaf.encode_input_share(share))
            state, vshare = vdaf.verify_init(
                verify_key, CTX, agg_id, None, nonce, public_share, share
            )
            states.append(state)
            shares.append(vdaf.decode_verifier_share(state, vdaf.encode_verifier_share(vshare)))
        msg = vdaf.verifier_shares_to_message(CTX, None, shares)
        for agg_id, state in enumerate(states):
            out = vdaf.verify_next(CTX, state, msg)
            assert isinstance(out, list)
            out_shares[agg_id].append(out)
    agg_shares = [vdaf.aggregate(None, outs) for outs in out_shares]
    return vdaf.unshard(None, agg_shares, len(measurements))


@pytest.mark.parametrize("seed", range(3))
def test_prio3_round_trips(seed: int) -> None:
    rng = random.Random(seed)
    shares = rng.randrange(2, 5)

    counts = [rng.randrange(2) for _ in range(6)]
    assert _run_prio3(Prio3Count(shares), counts, rng) == sum(counts)

    bound = rng.randrange(1, 2**20)
    sums = [rng.randrange(bound + 1) for _ in range(4)] + [bound]
    assert _run_prio3(Prio3Sum(shares, bound), sums, rng) == sum(sums)

    length, bound = rng.randrange(1, 12), rng.randrange(1, 300)
    vecs = [[rng.randrange(bound + 1) for _ in range(length)] for _ in range(3)]
    expected = [sum(col) for col in zip(*vecs, strict=True)]
    chunk = rng.randrange(1, 8)
    assert _run_prio3(Prio3SumVec(shares, length, bound, chunk), vecs, rng) == expected
    multi = Prio3SumVecWithMultiproof(shares, length, bound, chunk, proofs=2)
    assert _run_prio3(multi, vecs, rng) == expected

    length = rng.randrange(1, 30)
    buckets = [rng.randrange(length) for _ in range(5)]
    hist = _run_prio3(Prio3Histogram(shares, length, rng.randrange(1, 7)), buckets, rng)
    assert hist == [buckets.count(i) for i in range(length)]

    length = rng.randrange(2, 12)
    max_weight = rng.randrange(1, length + 1)
    hots = []
    for _ in range(4):
        ones = set(rng.sample(range(length), rng.randrange(max_weight + 1)))
        hots.append([i in ones for i in range(length)])
    vdaf = Prio3MultihotCountVec(shares, length, max_weight, rng.randrange(1, 5))
    assert _run_prio3(vdaf, hots, rng) == [sum(h[i] for h in hots) for i in range(length)]


def _verify(vdaf: Prio3[Any, Any], public_share: Any, input_shares: list[Any], nonce: bytes) -> Any:
    key = bytes(vdaf.VERIFY_KEY_SIZE)
    results = [
        vdaf.verify_init(key, CTX, i, None, nonce, public_share, s)
        for i, s in enumerate(input_shares)
    ]
    msg = vdaf.verifier_shares_to_message(CTX, None, [share for _, share in results])
    return [vdaf.verify_next(CTX, state, msg) for state, _ in results]


def test_prio3_rejects_tampered_leader_share() -> None:
    rng = random.Random(7)
    for vdaf in (Prio3Count(2), Prio3Sum(2, 1000), Prio3Histogram(2, 10, 3)):
        meas: Any = 1 if not isinstance(vdaf, Prio3Sum) else 999
        nonce = _bytes(rng, 16)
        public_share, shares = vdaf.shard(CTX, meas, nonce, _bytes(rng, vdaf.RAND_SIZE))
        _verify(vdaf, public_share, shares, nonce)  # untampered: accepted
        leader = shares[0]
        assert isinstance(leader, Prio3LeaderShare)
        bumped = list(leader.meas_share)
        bumped[0] = (bumped[0] + 1) % vdaf.field.MODULUS
        with pytest.raises(InvalidProof):
            _verify(vdaf, public_share, [replace(leader, meas_share=bumped), *shares[1:]], nonce)
        proof = list(leader.proofs_share)
        proof[-1] = (proof[-1] + 1) % vdaf.field.MODULUS
        with pytest.raises(InvalidProof):
            _verify(vdaf, public_share, [replace(leader, proofs_share=proof), *shares[1:]], nonce)


def test_prio3_rejects_tampered_helper_seed_and_joint_rand() -> None:
    rng = random.Random(8)
    vdaf = Prio3Histogram(3, 8, 2)
    nonce = _bytes(rng, 16)
    public_share, shares = vdaf.shard(CTX, 3, nonce, _bytes(rng, vdaf.RAND_SIZE))
    helper = shares[1]
    assert isinstance(helper, Prio3HelperShare)
    with pytest.raises(InvalidProof):
        _verify(
            vdaf, public_share, [shares[0], replace(helper, share_seed=bytes(32)), shares[2]], nonce
        )
    assert public_share is not None
    forged = [bytes(32), *public_share[1:]]
    with pytest.raises(InvalidProof):
        _verify(vdaf, forged, shares, nonce)


def test_prio3_rejects_invalid_measurements() -> None:
    rng = random.Random(9)
    nonce = _bytes(rng, 16)
    size = 32
    count = Prio3Count(2)
    rand = _bytes(rng, count.RAND_SIZE)
    seeds = [rand[i : i + size] for i in range(0, len(rand), size)]
    # An honest proof of a non-bit measurement must not verify.
    public_share, shares = count.shard_without_joint_rand(CTX, [2], seeds)
    with pytest.raises(InvalidProof):
        _verify(count, public_share, shares, nonce)
    hist = Prio3Histogram(2, 4, 2)
    rand = _bytes(rng, hist.RAND_SIZE)
    seeds = [rand[i : i + size] for i in range(0, len(rand), size)]
    public_share, shares = hist.shard_with_joint_rand(CTX, [1, 1, 0, 0], nonce, seeds)
    with pytest.raises(InvalidProof):
        _verify(hist, public_share, shares, nonce)
    with pytest.raises(ValueError):
        count.shard(CTX, 2, nonce, _bytes(rng, count.RAND_SIZE))
    with pytest.raises(ValueError):
        Prio3Sum(2, 10).shard(CTX, 11, nonce, _bytes(rng, 64))


def test_prio3_decoders_are_strict() -> None:
    vdaf = Prio3Histogram(2, 5, 2)
    rng = random.Random(10)
    nonce = _bytes(rng, 16)
    public_share, shares = vdaf.shard(CTX, 1, nonce, _bytes(rng, vdaf.RAND_SIZE))
    leader = vdaf.encode_input_share(shares[0])
    for bad in (leader[:-1], leader + b"\0", b""):
        with pytest.raises(DecodeError):
            vdaf.decode_input_share(0, bad)
    # An out-of-range field element in the leader share.
    with pytest.raises(DecodeError):
        vdaf.decode_input_share(0, b"\xff" * 16 + leader[16:])
    with pytest.raises(DecodeError):
        vdaf.decode_public_share(vdaf.encode_public_share(public_share)[:-1])
    with pytest.raises(DecodeError):
        vdaf.decode_agg_share(None, bytes(16 * 4))


def _run_poplar1(
    vdaf: Poplar1, measurements: list[tuple[bool, ...]], level: int, rng: random.Random
) -> list[int]:
    prefixes = tuple(sorted({m[: level + 1] for m in measurements} | {(True,) * (level + 1)}))
    agg_param = vdaf.decode_agg_param(vdaf.encode_agg_param((level, prefixes)))
    assert agg_param == (level, prefixes)
    verify_key = _bytes(rng, 32)
    outs: list[list[Any]] = [[], []]
    for m in measurements:
        nonce = _bytes(rng, 16)
        public_share, shares = vdaf.shard(CTX, m, nonce, _bytes(rng, vdaf.RAND_SIZE))
        public_share = vdaf.decode_public_share(vdaf.encode_public_share(public_share))
        shares = [
            vdaf.decode_input_share(i, vdaf.encode_input_share(s)) for i, s in enumerate(shares)
        ]
        inits = [
            vdaf.verify_init(verify_key, CTX, i, agg_param, nonce, public_share, s)
            for i, s in enumerate(shares)
        ]
        msg = vdaf.verifier_shares_to_message(CTX, agg_param, [s for _, s in inits])
        nexts = [vdaf.verify_next(CTX, st, msg) for st, _ in inits]
        assert all(isinstance(n, tuple) for n in nexts)
        msg2 = vdaf.verifier_shares_to_message(
            CTX, agg_param, [n[1] for n in nexts if isinstance(n, tuple)]
        )
        for i, n in enumerate(nexts):
            assert isinstance(n, tuple)
            outs[i].append(vdaf.verify_next(CTX, n[0], msg2))
    agg = [vdaf.aggregate(agg_param, o) for o in outs]
    result = vdaf.unshard(agg_param, agg, len(measurements))
    return result


@pytest.mark.parametrize("seed", range(2))
def test_poplar1_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    bits = rng.randrange(2, 7)
    vdaf = Poplar1(bits)
    measurements = [tuple(rng.random() < 0.5 for _ in range(bits)) for _ in range(4)]
    for level in (0, bits // 2, bits - 1):
        prefixes = sorted({m[: level + 1] for m in measurements} | {(True,) * (level + 1)})
        result = _run_poplar1(vdaf, measurements, level, rng)
        assert result == [sum(1 for m in measurements if m[: level + 1] == p) for p in prefixes]


def test_poplar1_rejects_tampered_correlation() -> None:
    rng = random.Random(11)
    vdaf = Poplar1(4)
    nonce = _bytes(rng, 16)
    agg_param = (1, ((False, True), (True, True)))
    public_share, shares = vdaf.shard(
        CTX, (True, True, False, True), nonce, _bytes(rng, vdaf.RAND_SIZE)
    )
    key, seed, inner, leaf = shares[0]
    inner = list(inner)
    inner[2] = (inner[2] + 1) % vdaf.idpf.field_inner.MODULUS  # A share at level 1
    tampered = [(key, seed, inner, leaf), shares[1]]
    verify_key = _bytes(rng, 32)
    inits = [
        vdaf.verify_init(verify_key, CTX, i, agg_param, nonce, public_share, s)
        for i, s in enumerate(tampered)
    ]
    msg = vdaf.verifier_shares_to_message(CTX, agg_param, [s for _, s in inits])
    nexts = [vdaf.verify_next(CTX, st, msg) for st, _ in inits]
    with pytest.raises(InvalidProof):
        vdaf.verifier_shares_to_message(
            CTX, agg_param, [n[1] for n in nexts if isinstance(n, tuple)]
        )
    with pytest.raises(DecodeError):
        vdaf.decode_agg_param(vdaf.encode_agg_param(agg_param)[:-1])
    with pytest.raises(DecodeError):
        vdaf.decode_agg_param(bytes.fromhex("000100000001" + "41"))  # non-zero padding bits
