"""Verifiable vector aggregation in memory: limbs, noise, cheaters, replays and tampering."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pytest

from tessera.crypto.dkg import DkgResult, run_dkg
from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.crypto.elgamal import Ciphertext, encrypt, keygen
from tessera.crypto.group import G, base_mul
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import KeySwitchShare, combine_partials, partial_decrypt
from tessera.errors import InvalidProof, ProtocolError
from tessera.protocol.aggregation import (
    AggregationQuery,
    AggregationRecord,
    KeySwitcher,
    Release,
    SlotSpec,
    VectorSpec,
    add_noise,
    contribute,
    key_switch,
    max_noise_bias,
    noise_limb_ranges,
    recombine,
    switch_and_release,
    verify_contribution,
    verify_noise,
    verify_record,
)


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 10), max_abs=1 << 24)


def committee(seed: str, n: int = 3, t: int = 2) -> dict[int, DkgResult]:
    keys, _ = run_dkg(n, t, SeededRng(seed))
    return keys


def run(
    keys: Mapping[int, DkgResult],
    spec: VectorSpec,
    values: Mapping[str, Sequence[int]],
    dlog: DiscreteLog,
    seed: str,
    qid: bytes = b"q",
    noise: Mapping[int, Sequence[int]] | None = None,
    noise_bounds: Sequence[int] = (),
    cheating_nodes: Sequence[int] = (),
) -> tuple[AggregationRecord, list[int]]:
    """One aggregation from the pure steps: contributions, noise, key switching, release.

    ``cheating_nodes`` corrupt their first key-switch share (keeping its proof)."""
    rng = SeededRng(seed)
    k = next(iter(keys.values()))
    secret, analyst_key = keygen(rng)
    query = AggregationQuery(qid, spec, analyst_key, tuple(noise_bounds))
    rec = AggregationRecord(query, k.public_key, k.public_shares, k.threshold)
    rec.contributions = [contribute(query, k.public_key, p, v, rng) for p, v in values.items()]
    if noise is not None:
        rec.noise = [add_noise(query, k.public_key, i, noise[i], rng) for i in sorted(noise)]

    def switcher(node: DkgResult) -> KeySwitcher:
        def switch(agg: Sequence[Ciphertext]) -> list[KeySwitchShare]:
            shares = key_switch(query, node.index, node.secret_share, agg, rng)
            if node.index in cheating_nodes:
                s = shares[0]
                shares[0] = KeySwitchShare(s.index, s.u, s.w + G, s.proof)
            return shares

        return switch

    switchers = {i: switcher(r) for i, r in sorted(keys.items())}
    return rec, switch_and_release(rec, switchers, secret, dlog, rng)


SPEC = VectorSpec(
    (
        SlotSpec(0, 1),
        SlotSpec(-100, 100),
        SlotSpec(0, 2**40 - 1),
        SlotSpec(0, 2**20),
        SlotSpec(7, 7),
    )
)
VALUES = {
    "a": [1, -100, 2**40 - 1, 5, 7],
    "b": [0, 100, 12_345_678_901, 2**20, 7],
    "c": [1, 3, 0, 0, 7],
}


def truth(values: Mapping[str, Sequence[int]]) -> list[int]:
    width = len(next(iter(values.values())))
    return [sum(v[i] for v in values.values()) for i in range(width)]


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_exact_without_noise(dlog: DiscreteLog, n: int, t: int) -> None:
    keys = committee(f"exact-{n}-{t}", n, t)
    rec, out = run(keys, SPEC, VALUES, dlog, "exact")
    assert out == truth(VALUES)
    verdict = verify_record(rec)
    assert verdict.ok, verdict.failures
    assert verdict.cheaters == ()


def test_noise_is_added_and_verified(dlog: DiscreteLog) -> None:
    keys = committee("noise")
    noise = {1: [0, 1, -2, 3, 0], 2: [1, 0, 0, -5, 0], 3: [-1, 1, 1, 1, 0]}
    rec, out = run(keys, SPEC, VALUES, dlog, "noise", noise=noise, noise_bounds=[5] * 5)
    want = [a + sum(noise[i][j] for i in noise) for j, a in enumerate(truth(VALUES))]
    assert out == want
    assert verify_record(rec).ok


def test_noise_out_of_bound_refused_and_forgery_caught(dlog: DiscreteLog) -> None:
    keys = committee("noise-bound")
    quiet = {i: [0] * 5 for i in (1, 2, 3)}
    rec, _ = run(keys, SPEC, VALUES, dlog, "nb", noise=quiet, noise_bounds=[3] * 5)
    with pytest.raises(ValueError, match="bound"):
        add_noise(rec.query, rec.committee_key, 1, [4, 0, 0, 0, 0], SeededRng("x"))
    # a node swaps in a large noise ciphertext but keeps its valid proof
    nc = rec.noise[0]
    big = encrypt(rec.committee_key, 10_000, SeededRng("big"))
    forged = dataclasses.replace(nc.slots[0], limbs=(big, *nc.slots[0].limbs[1:]))
    rec.noise[0] = dataclasses.replace(nc, slots=(forged, *nc.slots[1:]))
    verdict = verify_record(rec)
    assert not verdict.ok
    assert any("noise" in f for f in verdict.failures)
    assert verdict.cheaters == (nc.node,)


def test_cheating_node_excluded_result_still_correct(dlog: DiscreteLog) -> None:
    keys = committee("cheat")
    rec, out = run(keys, SPEC, VALUES, dlog, "cheat", cheating_nodes=(1,))
    assert out == truth(VALUES)
    assert rec.excluded_nodes == [1]
    verdict = verify_record(rec)
    assert verdict.ok and verdict.cheaters == (1,)


def test_too_many_cheaters_fail(dlog: DiscreteLog) -> None:
    keys = committee("cheat2")
    with pytest.raises(ProtocolError):
        run(keys, SPEC, VALUES, dlog, "c2", cheating_nodes=(1, 2))


def test_replayed_contribution_from_other_query_is_caught(dlog: DiscreteLog) -> None:
    keys = committee("replay")
    rec1, _ = run(keys, SPEC, VALUES, dlog, "r1", qid=b"query-1")
    rec2, _ = run(keys, SPEC, VALUES, dlog, "r2", qid=b"query-2")
    with pytest.raises(InvalidProof):
        verify_contribution(rec2.query, rec2.committee_key, rec1.contributions[0])
    rec2.contributions[0] = rec1.contributions[0]
    assert not verify_record(rec2).ok


def test_out_of_range_value_refused_and_forgery_caught(dlog: DiscreteLog) -> None:
    keys = committee("range")
    rec, _ = run(keys, SPEC, VALUES, dlog, "range")
    with pytest.raises(ValueError, match="outside"):
        contribute(rec.query, rec.committee_key, "a", [2, 0, 0, 0, 7], SeededRng("x"))
    good = rec.contributions[0]
    slot = good.slots[1]
    forged_slot = dataclasses.replace(
        slot, limbs=(encrypt(rec.committee_key, 500, SeededRng("f")), *slot.limbs[1:])
    )
    rec.contributions[0] = dataclasses.replace(
        good, slots=(good.slots[0], forged_slot, *good.slots[2:])
    )
    verdict = verify_record(rec)
    assert not verdict.ok
    assert any("provider a" in f for f in verdict.failures)


def test_exact_bound_beyond_limbs_is_enforced(dlog: DiscreteLog) -> None:
    # span 200 needs 8 bits: limbs alone would allow up to 255; the exact proof must catch more
    keys = committee("exact-bound")
    spec = VectorSpec((SlotSpec(0, 200),), limb_bits=4)
    rec, _ = run(keys, spec, {"a": [200]}, dlog, "eb")
    sc = rec.contributions[0].slots[0]
    assert sc.exact_proof is not None and len(sc.limbs) == 2
    other, _ = run(keys, VectorSpec((SlotSpec(0, 255),), limb_bits=4), {"a": [250]}, dlog, "eb2")
    forged = dataclasses.replace(sc, limbs=other.contributions[0].slots[0].limbs)
    with pytest.raises(InvalidProof):
        verify_contribution(
            rec.query, rec.committee_key, dataclasses.replace(rec.contributions[0], slots=(forged,))
        )


def test_wrong_release_and_tampered_aggregate_are_caught(dlog: DiscreteLog) -> None:
    keys = committee("release")
    rec, _ = run(keys, SPEC, VALUES, dlog, "rel")
    assert rec.release is not None
    sums = list(rec.release.limb_sums)
    sums[0] += 1
    bad = dataclasses.replace(rec, release=Release(tuple(sums), rec.release.proofs))
    assert not verify_record(bad).ok
    agg = list(rec.aggregate)
    agg[0] = dataclasses.replace(agg[0], c2=agg[0].c2 + G)
    assert not verify_record(dataclasses.replace(rec, aggregate=agg)).ok


def test_noise_larger_than_limbs_spreads_over_limbs(dlog: DiscreteLog) -> None:
    keys = committee("big-noise")
    spec = VectorSpec((SlotSpec(0, 15), SlotSpec(-8, 7)), limb_bits=4)
    noise = {1: [-70_000, 5], 2: [123_456, -3], 3: [0, 0]}
    rec, out = run(
        keys, spec, {"a": [3, -8], "b": [15, 7]}, dlog, "bn", noise=noise, noise_bounds=[200_000, 5]
    )
    assert out == [18 + 53_456, -1 + 2]
    assert verify_record(rec).ok
    # 200,000 needs 18 bits: three 4-bit limbs below a signed top limb of up to 4 + 4 bits
    assert rec.query.noise_limbs(0) == 4 and len(rec.aggregate) == 4 + 1


@pytest.mark.parametrize("bound", [1, 5, 255, 256, 1000, 200_000, 2**21 + 1, 2**40 + 12345])
def test_noise_proofs_admit_what_max_noise_bias_says(bound: int) -> None:
    """What the limb proofs admit is exactly max_noise_bias, within 1/16 of the bound (the
    earlier layout admitted almost twice the bound for multi-limb noise)."""
    query = AggregationQuery(b"q", VectorSpec((SlotSpec(0, 1),), limb_bits=4), G, (bound,))
    ranges = noise_limb_ranges(query, 0)
    k, low = 4, 4 * (len(ranges) - 1)
    most = sum((hi << (k * j)) for j, (_, hi) in enumerate(ranges))
    least = sum((lo << (k * j)) for j, (lo, _) in enumerate(ranges))
    assert most >= bound and -least >= bound  # every honest draw is provable
    assert max(most, -least) == max_noise_bias(query, 0)
    assert max_noise_bias(query, 0) <= bound + (bound >> 4) + (1 if low == 0 else 0)
    if len(ranges) == 1:
        assert ranges == [(-bound, bound)]  # one limb: exactly the bound


def test_noise_beyond_max_noise_bias_cannot_be_proven() -> None:
    keys = committee("beyond")
    spec = VectorSpec((SlotSpec(0, 15),), limb_bits=4)
    bound = 200_000
    query = AggregationQuery(b"q", spec, G, (bound,))
    rng = SeededRng("beyond")
    ok = add_noise(query, keys[1].public_key, 1, [bound], rng)
    verify_noise(query, keys[1].public_key, ok)
    with pytest.raises(ValueError, match="bound"):
        add_noise(query, keys[1].public_key, 1, [bound + 1], rng)


def test_recombine_matches_whole_value() -> None:
    keys = committee("recombine")
    rng = SeededRng("rc")
    limbs = [encrypt(keys[1].public_key, m, rng) for m in (3, 1, 2)]
    whole = recombine(limbs, 4)
    parts = [partial_decrypt(b"c", i, keys[i].secret_share, whole, rng) for i in (1, 2)]
    assert combine_partials(whole, parts, 2) == base_mul(3 + (1 << 4) + (2 << 8))
