"""Batch verification of range proofs by one random linear combination (one multi-scalar
multiplication), its fallback that names each cheater, and its use by the aggregation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tessera.crypto import rangeproof
from tessera.crypto.dkg import run_dkg
from tessera.crypto.elgamal import encrypt_with, keygen
from tessera.crypto.group import G, H, N, Point
from tessera.crypto.rangeproof import (
    NONCE_LEN,
    RangeClaim,
    RangeProof,
    batch_verify_range,
    nonce_count,
    prove_range,
    verify_range,
)
from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError, InvalidProof
from tessera.protocol.aggregation import (
    AggregationQuery,
    AggregationRecord,
    SlotSpec,
    VectorSpec,
    add_noise,
    contribute,
    verify_contribution,
    verify_noise,
    verify_record,
)

INTERVALS = [(0, (1 << 21) - 1), (0, 1), (-3, 20), (5, 5), (-(1 << 20), 1 << 20), (0, 1000)]


def claims(seed: str, count: int, batchable: bool = True) -> list[RangeClaim]:
    rng = SeededRng(seed)
    keys = [keygen(rng)[1] for _ in range(2)]
    out = []
    for j in range(count):
        lo, hi = INTERVALS[j % len(INTERVALS)]
        key = keys[j % 2]
        m = lo + rng.below(hi - lo + 1)
        r = rng.scalar()
        ct = encrypt_with(key, m, r)
        ctx = f"batch/{seed}/{j}".encode()
        pf = prove_range(ctx, key, ct, m, r, lo, hi, rng, batchable=batchable)
        out.append(RangeClaim(ctx, key, ct, lo, hi, pf))
    return out


def one_by_one(cs: list[RangeClaim]) -> dict[int, str]:
    out = {}
    for i, c in enumerate(cs):
        try:
            verify_range(c.context, c.public_key, c.ct, c.lo, c.hi, c.proof)
        except InvalidProof as exc:
            out[i] = str(exc)
    return out


def bump(v: int) -> int:
    return (v + 1) % N


def _nonce(pf: RangeProof, k: int, new: bytes) -> RangeProof:
    n = pf.nonces
    return dataclasses.replace(pf, nonces=n[: k * NONCE_LEN] + new + n[(k + 1) * NONCE_LEN :])


def _uncompressed(p: Point) -> bytes:
    return rangeproof._uncompressed(p)


# every way of corrupting one proof: each keeps a well-formed proof object
CORRUPTIONS: dict[str, Callable[[RangeClaim], RangeClaim]] = {
    "z0": lambda c: dataclasses.replace(
        c, proof=dataclasses.replace(c.proof, z0=(bump(c.proof.z0[0]), *c.proof.z0[1:]))
    ),
    "z1 of the last bit": lambda c: dataclasses.replace(
        c, proof=dataclasses.replace(c.proof, z1=(*c.proof.z1[:-1], bump(c.proof.z1[-1])))
    ),
    "e0": lambda c: dataclasses.replace(
        c, proof=dataclasses.replace(c.proof, e0=(bump(c.proof.e0[0]), *c.proof.e0[1:]))
    ),
    "e": lambda c: dataclasses.replace(c, proof=dataclasses.replace(c.proof, e=bump(c.proof.e))),
    "link response": lambda c: dataclasses.replace(
        c,
        proof=dataclasses.replace(
            c.proof, z_link=(c.proof.z_link[0], bump(c.proof.z_link[1]), c.proof.z_link[2])
        ),
    ),
    "commitment": lambda c: dataclasses.replace(
        c,
        proof=dataclasses.replace(
            c.proof, commitments=(c.proof.commitments[0] + H, *c.proof.commitments[1:])
        ),
    ),
    "ciphertext": lambda c: dataclasses.replace(c, ct=c.ct + c.ct),
    "interval": lambda c: dataclasses.replace(c, hi=c.hi + 1),
    "context": lambda c: dataclasses.replace(c, context=c.context + b"!"),
    "key": lambda c: dataclasses.replace(c, public_key=c.public_key + G),
    "a nonce": lambda c: dataclasses.replace(c, proof=_nonce(c.proof, 0, _uncompressed(G + G))),
    "a nonce off the curve": lambda c: dataclasses.replace(
        c, proof=_nonce(c.proof, 1, c.proof.nonces[NONCE_LEN : 2 * NONCE_LEN - 1] + b"\x00")
    ),
    "the nonces dropped": lambda c: dataclasses.replace(
        c, proof=dataclasses.replace(c.proof, e=bump(c.proof.e), nonces=b"")
    ),
}


def test_a_batch_of_valid_proofs_passes_through_the_combination_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cs = claims("valid", 24)
    assert all(len(c.proof.nonces) == NONCE_LEN * nonce_count(c.proof.bits) for c in cs)
    assert one_by_one(cs) == {}

    def refuse(*args: object) -> None:
        raise AssertionError("a valid batch must not fall back to one-by-one checks")

    monkeypatch.setattr(rangeproof, "verify_range", refuse)
    assert batch_verify_range(cs) == {}
    assert batch_verify_range(cs, SeededRng(b"weights")) == {}
    assert batch_verify_range([]) == {}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_one_corrupted_proof_among_many_fails_the_batch_and_is_named(how: str) -> None:
    cs = claims("one-bad", 18)
    bad = list(cs)
    bad[11] = CORRUPTIONS[how](cs[11])
    expected = one_by_one(bad)
    assert list(expected) == [11]
    calls: list[int] = []
    real = rangeproof._combination_vanishes

    def watched(sub: list[RangeClaim], rng: object) -> bool:
        calls.append(len(sub))
        return real(sub, rng)  # type: ignore[arg-type]

    rangeproof._combination_vanishes = watched  # type: ignore[assignment]
    try:
        got = batch_verify_range(bad, SeededRng(b"weights"))
    finally:
        rangeproof._combination_vanishes = real
    assert {i: str(e) for i, e in got.items()} == expected
    assert {i: str(e) for i, e in batch_verify_range(bad).items()} == expected  # hashed weights
    # the first combination covered every proof, or every proof but the one whose carried
    # nonces do not hash to its challenge (sent straight to one-by-one checking)
    assert calls and calls[0] in (17, 18)


def test_the_batch_equals_one_by_one_on_seeded_random_batches() -> None:
    base = claims("random", 30)
    names = sorted(CORRUPTIONS)
    for trial in range(6):
        rng = SeededRng(f"trial/{trial}")
        cs = list(base)
        for _ in range(rng.below(4)):  # 0 to 3 cheaters, anywhere
            i = rng.below(len(cs))
            cs[i] = CORRUPTIONS[names[rng.below(len(names))]](cs[i])
        expected = one_by_one(cs)
        for weights in (None, SeededRng(f"w/{trial}")):
            got = batch_verify_range(cs, weights)
            assert {i: str(e) for i, e in got.items()} == expected


def test_proofs_without_nonces_are_checked_one_by_one_beside_the_batch() -> None:
    plain = claims("plain", 4, batchable=False)
    assert all(c.proof.nonces == b"" for c in plain)
    mixed = [*claims("mixed", 6), *plain]
    assert batch_verify_range(mixed) == {}
    mixed[8] = CORRUPTIONS["z0"](mixed[8])
    assert list(batch_verify_range(mixed)) == [8]


def test_the_batch_checks_each_equation_not_only_their_sum() -> None:
    # Two proofs whose errors would cancel under equal weights: shift one link response
    # up and, in another proof with the same key and statement shape, down.
    cs = claims("cancel", 2 * len(INTERVALS))
    a, b = 0, len(INTERVALS)  # same interval, same key parity
    pa, pb = cs[a].proof, cs[b].proof
    cs[a] = dataclasses.replace(
        cs[a], proof=dataclasses.replace(pa, z_link=(bump(pa.z_link[0]), *pa.z_link[1:]))
    )
    cs[b] = dataclasses.replace(
        cs[b], proof=dataclasses.replace(pb, z_link=((pb.z_link[0] - 1) % N, *pb.z_link[1:]))
    )
    assert sorted(batch_verify_range(cs, SeededRng(b"x"))) == [a, b]


def test_batchable_proofs_encode_their_nonces_and_decode_strictly() -> None:
    (c,) = claims("encoding", 1)
    enc = c.proof.encode()
    assert enc[0] & 0x80  # the flag
    back = RangeProof.decode(enc)
    assert back == c.proof
    verify_range(c.context, c.public_key, c.ct, c.lo, c.hi, back)
    plain = dataclasses.replace(c.proof, nonces=b"")
    assert RangeProof.decode(plain.encode()) == plain
    assert len(enc) == len(plain.encode()) + NONCE_LEN * nonce_count(c.proof.bits)
    body = len(plain.encode())
    for bad in (
        enc[:-1],
        enc + b"\x00",
        bytes([enc[0] & 0x7F]) + enc[1:],  # flag cleared, nonces still there
        plain.encode()[:1] and bytes([enc[0]]) + plain.encode()[1:],  # flag set, no nonces
        enc[:body] + b"\x02" + enc[body + 1 :],  # a nonce that is not uncompressed
    ):
        with pytest.raises(DecodeError):
            RangeProof.decode(bad)


# -- the aggregation's call sites -----------------------------------------------------------
def _record(seed: str) -> AggregationRecord:
    rng = SeededRng(seed)
    keys, _ = run_dkg(3, 2, rng)
    k = keys[1]
    _, analyst = keygen(rng)
    spec = VectorSpec((SlotSpec(0, (1 << 30) - 1), SlotSpec(-5, 10)))
    query = AggregationQuery(b"batch-q", spec, analyst, (1 << 12, 1 << 12))
    rec = AggregationRecord(query, k.public_key, k.public_shares, k.threshold)
    rec.contributions = [
        contribute(query, k.public_key, f"p{i}", [rng.below(1 << 30), rng.below(16) - 5], rng)
        for i in range(4)
    ]
    rec.noise = [add_noise(query, k.public_key, n, [17, -3], rng) for n in (1, 2, 3)]
    return rec


def test_the_aggregation_names_the_provider_and_node_whose_range_proof_fails() -> None:
    rec = _record("aggregation")
    q, key = rec.query, rec.committee_key
    for c in rec.contributions:
        verify_contribution(q, key, c)
    for nc in rec.noise:
        verify_noise(q, key, nc)
    honest = verify_record(rec)
    assert not any("provider" in f or " noise: " in f for f in honest.failures)

    c2 = rec.contributions[2]
    slot = c2.slots[0]
    pf = slot.limb_proofs[1]
    bad_pf = dataclasses.replace(pf, z0=(bump(pf.z0[0]), *pf.z0[1:]))
    bad_slot = dataclasses.replace(slot, limb_proofs=(slot.limb_proofs[0], bad_pf))
    rec.contributions[2] = dataclasses.replace(c2, slots=(bad_slot, *c2.slots[1:]))
    n1 = rec.noise[1]
    nslot = n1.slots[1]
    npf = nslot.limb_proofs[0]
    bad_n = dataclasses.replace(npf, z_link=(npf.z_link[0], npf.z_link[1], bump(npf.z_link[2])))
    rec.noise[1] = dataclasses.replace(
        n1, slots=(n1.slots[0], dataclasses.replace(nslot, limb_proofs=(bad_n,)))
    )

    with pytest.raises(InvalidProof, match="range proof: challenge mismatch"):
        verify_contribution(q, key, rec.contributions[2])
    with pytest.raises(InvalidProof, match="range proof: challenge mismatch"):
        verify_noise(q, key, rec.noise[1])
    verdict = verify_record(rec)
    provider_failures = [f for f in verdict.failures if f.startswith("provider")]
    assert provider_failures == ["provider p2: range proof: challenge mismatch"]
    noise_failures = [f for f in verdict.failures if " noise: " in f]
    assert noise_failures == ["node 2 noise: range proof: challenge mismatch"]
