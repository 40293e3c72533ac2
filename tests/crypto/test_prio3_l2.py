"""Prio3FixedPointBoundedL2VecSum: the spec-style circuit, and the compiled path against it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tessera.crypto import prio3_l2
from tessera.crypto.flp import chunk_length_for
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.errors import DecodeError, InvalidProof

CTX = b"tessera l2 tests"

# (shares, length, bits, norm_bound_sq, chunk_length, norm_chunk_length)
PARAMS = [(2, 7, 6, 400, 5, 3), (3, 20, 8, 20_000, 9, 4), (5, 33, 5, 100, 7, 6)]


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


def _vector(rng: random.Random, vdaf: Prio3FixedPointBoundedL2VecSum) -> list[int]:
    """A uniform in-range vector, rescaled into the norm ball."""
    off = 1 << (vdaf.BITS - 1)
    v = [rng.randrange(-off, off) for _ in range(vdaf.LENGTH)]
    while sum(x * x for x in v) > vdaf.NORM_BOUND_SQ:
        v = [x // 2 if x >= 0 else -((-x) // 2) for x in v]
    return v


def _run_fast(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    public: bytes,
    shares: list[bytes],
    nonce: bytes,
    verify_key: bytes,
) -> list[np.ndarray]:
    """Every aggregator's verify_init, the joint decision and verify_next."""
    states, verifier_shares = [], []
    for agg_id, share in enumerate(shares):
        state, vshare = prio3_l2.verify_init(vdaf, verify_key, CTX, agg_id, nonce, public, share)
        states.append(state)
        verifier_shares.append(vshare)
    message = prio3_l2.verifier_message(vdaf, CTX, verifier_shares)
    return [prio3_l2.verify_next(state, message) for state in states]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p[0]}shares")
def test_compiled_shard_and_verify_are_the_spec_byte_for_byte(
    params: tuple[int, ...],
) -> None:
    rng = random.Random(params[0])
    vdaf = Prio3FixedPointBoundedL2VecSum(*params)
    m = _vector(rng, vdaf)
    nonce, rand, verify_key = _bytes(rng, 16), _bytes(rng, vdaf.RAND_SIZE), _bytes(rng, 32)
    public, shares = vdaf.shard(CTX, m, nonce, rand)
    fast_public, fast_shares = prio3_l2.shard(vdaf, CTX, m, nonce, rand)
    assert fast_public == vdaf.encode_public_share(public)
    assert fast_shares == [vdaf.encode_input_share(s) for s in shares]
    spec_vshares = []
    for agg_id, share in enumerate(shares):
        state, vshare = vdaf.verify_init(verify_key, CTX, agg_id, None, nonce, public, share)
        (out, seed), fast_vshare = prio3_l2.verify_init(
            vdaf, verify_key, CTX, agg_id, nonce, fast_public, fast_shares[agg_id]
        )
        assert fast_vshare == vdaf.encode_verifier_share(vshare)
        assert prio3_l2.to_ints(out) == state[0]
        assert seed == state[1]
        spec_vshares.append(vshare)
    vdaf.verifier_shares_to_message(CTX, None, spec_vshares)  # accepted by the spec too


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"{p[0]}shares")
def test_aggregate_round_trips_through_every_aggregator(params: tuple[int, ...]) -> None:
    rng = random.Random(10 + params[0])
    vdaf = Prio3FixedPointBoundedL2VecSum(*params)
    verify_key = _bytes(rng, 32)
    vectors = [_vector(rng, vdaf) for _ in range(4)]
    outs: list[list[np.ndarray]] = [[] for _ in range(vdaf.SHARES)]
    for m in vectors:
        nonce = _bytes(rng, 16)
        public, shares = prio3_l2.shard(vdaf, CTX, m, nonce, _bytes(rng, vdaf.RAND_SIZE))
        for agg_id, out in enumerate(_run_fast(vdaf, public, shares, nonce, verify_key)):
            outs[agg_id].append(out)
    agg_shares = [prio3_l2.to_ints(prio3_l2.aggregate(o, vdaf.LENGTH)) for o in outs]
    expected = [sum(col) for col in zip(*vectors, strict=True)]
    assert vdaf.unshard(None, agg_shares, len(vectors)) == expected


def _shard_encoded(
    vdaf: Prio3FixedPointBoundedL2VecSum, meas: list[int], nonce: bytes, rand: bytes
) -> tuple[bytes, list[bytes]]:
    """A dishonest client: shares and proves an arbitrary encoded measurement."""
    size = vdaf.xof.SEED_SIZE
    seeds = [rand[i : i + size] for i in range(0, len(rand), size)]
    public, shares = vdaf.shard_with_joint_rand(CTX, meas, nonce, seeds)
    return vdaf.encode_public_share(public), [vdaf.encode_input_share(s) for s in shares]


def _encode_lying(vdaf: Prio3FixedPointBoundedL2VecSum, v: list[int], norm: int) -> list[int]:
    """Digits of ``v`` with an arbitrary claimed squared norm (weighted bits, unchecked)."""
    valid = vdaf.flp.valid
    field = vdaf.field
    out: list[int] = []
    for x in v:
        out += field.encode_into_bit_vec(x + (1 << (vdaf.BITS - 1)), vdaf.BITS)
    nb = vdaf.NORM_BOUND_SQ.bit_length()
    last = vdaf.NORM_BOUND_SQ - ((1 << (nb - 1)) - 1)
    if norm <= (1 << (nb - 1)) - 1:
        return [*out, *field.encode_into_bit_vec(norm, nb - 1), 0]
    if norm - last < 1 << (nb - 1):
        return [*out, *field.encode_into_bit_vec(norm - last, nb - 1), 1]
    # Too large for the weighted bits: write the norm in binary over the norm digits,
    # with a last "digit" that is not a bit.
    assert len(out) + nb == valid.MEAS_LEN
    low = field.encode_into_bit_vec(norm % (1 << (nb - 1)), nb - 1)
    high = (norm >> (nb - 1)) * (1 << (nb - 1)) * pow(last, -1, field.MODULUS) % field.MODULUS
    return [*out, *low, high]


@pytest.mark.parametrize("claim", ["bound", "true_norm"])
def test_a_vector_of_norm_ten_times_the_bound_is_rejected(claim: str) -> None:
    rng = random.Random(7)
    vdaf = Prio3FixedPointBoundedL2VecSum(3, 20, 8, 400, 9, 4)  # C = 20
    v = [0] * 20
    v[:4] = [100, 100, 100, 100]  # norm 200 = 10 C, every entry in range
    assert sum(x * x for x in v) == 100 * vdaf.NORM_BOUND_SQ
    with pytest.raises(ValueError, match="norm bound"):
        prio3_l2.shard(vdaf, CTX, v, _bytes(rng, 16), _bytes(rng, vdaf.RAND_SIZE))
    norm = vdaf.NORM_BOUND_SQ if claim == "bound" else 40_000
    meas = _encode_lying(vdaf, v, norm)
    nonce, verify_key = _bytes(rng, 16), _bytes(rng, 32)
    public, shares = _shard_encoded(vdaf, meas, nonce, _bytes(rng, vdaf.RAND_SIZE))
    with pytest.raises(InvalidProof):
        _run_fast(vdaf, public, shares, nonce, verify_key)


def test_a_digit_that_is_not_a_bit_is_rejected() -> None:
    rng = random.Random(8)
    vdaf = Prio3FixedPointBoundedL2VecSum(2, 7, 6, 400, 5, 3)
    v = _vector(rng, vdaf)
    meas = _encode_lying(vdaf, v, sum(x * x for x in v))
    meas[3] = 2  # entry 0 is now off by 2^3 - still "a number", but digit 3 is 2
    nonce, verify_key = _bytes(rng, 16), _bytes(rng, 32)
    public, shares = _shard_encoded(vdaf, meas, nonce, _bytes(rng, vdaf.RAND_SIZE))
    with pytest.raises(InvalidProof):
        _run_fast(vdaf, public, shares, nonce, verify_key)


@pytest.mark.parametrize("where", ["leader_meas", "leader_proof", "helper_seed", "public"])
def test_a_tampered_share_or_proof_is_rejected(where: str) -> None:
    rng = random.Random(9)
    vdaf = Prio3FixedPointBoundedL2VecSum(3, 20, 8, 20_000, 9, 4)
    nonce, verify_key = _bytes(rng, 16), _bytes(rng, 32)
    public, shares = prio3_l2.shard(
        vdaf, CTX, _vector(rng, vdaf), nonce, _bytes(rng, vdaf.RAND_SIZE)
    )
    leader = bytearray(shares[0])
    meas_bytes = vdaf.flp.MEAS_LEN * 16
    if where == "leader_meas":
        leader[5 * 16] ^= 1  # digit 5 of entry 0, low bit
    elif where == "leader_proof":
        leader[meas_bytes + 40 * 16] ^= 1
    elif where == "helper_seed":
        shares[2] = bytes([shares[2][0] ^ 1]) + shares[2][1:]
    else:
        public = bytes([public[0] ^ 1]) + public[1:]
    shares[0] = bytes(leader)
    with pytest.raises(InvalidProof):
        _run_fast(vdaf, public, shares, nonce, verify_key)


def test_malformed_shares_are_decode_errors() -> None:
    rng = random.Random(11)
    vdaf = Prio3FixedPointBoundedL2VecSum(2, 7, 6, 400, 5, 3)
    nonce, verify_key = _bytes(rng, 16), _bytes(rng, 32)
    public, shares = prio3_l2.shard(
        vdaf, CTX, _vector(rng, vdaf), nonce, _bytes(rng, vdaf.RAND_SIZE)
    )
    with pytest.raises(DecodeError):
        prio3_l2.verify_init(vdaf, verify_key, CTX, 0, nonce, public, shares[0][:-1])
    with pytest.raises(DecodeError):
        prio3_l2.verify_init(vdaf, verify_key, CTX, 1, nonce, public[:-1], shares[1])
    # An element at or above the modulus goes through the spec, which refuses it.
    bad = b"\xff" * 16 + shares[0][16:]
    with pytest.raises(DecodeError):
        prio3_l2.verify_init(vdaf, verify_key, CTX, 0, nonce, public, bad)


def test_parameters_that_would_let_the_norm_wrap_are_refused() -> None:
    with pytest.raises(ValueError, match="wrap"):
        Prio3FixedPointBoundedL2VecSum(2, 1 << 70, 30, 1, 10, 10)
    with pytest.raises(ValueError, match="bits"):
        Prio3FixedPointBoundedL2VecSum(2, 10, 1, 1, 3, 3)


def test_chunk_lengths_fill_a_power_of_two_of_calls() -> None:
    for inputs in (1, 7, 100, 1_600_031):
        chunk = chunk_length_for(inputs)
        calls = -(-inputs // chunk)
        p = 1 << calls.bit_length()  # next_power_of_2(1 + calls)
        assert calls <= p - 1 < 2 * calls + 1
    assert chunk_length_for(1_600_031) == 1565  # 1023 calls, P = 1024


def test_a_unit_norm_update_of_two_thousand_parameters_sums_exactly() -> None:
    rng = np.random.default_rng(5)
    length, bits = 2_000, 16
    norm_bits = (1 << (2 * bits - 2)).bit_length()
    vdaf = Prio3FixedPointBoundedL2VecSum(
        4,
        length,
        bits,
        1 << (2 * bits - 2),
        chunk_length_for(length * bits + norm_bits),
        chunk_length_for(length),
    )
    r = random.Random(5)
    verify_key = _bytes(r, 32)
    vectors = []
    outs: list[list[np.ndarray]] = [[] for _ in range(4)]
    for _ in range(3):
        x = rng.normal(size=length)
        v = np.trunc(x / np.linalg.norm(x) * (1 << (bits - 1))).astype(np.int64)
        vectors.append(v)
        nonce = _bytes(r, 16)
        public, shares = prio3_l2.shard(vdaf, CTX, v, nonce, _bytes(r, vdaf.RAND_SIZE))
        for agg_id, out in enumerate(_run_fast(vdaf, public, shares, nonce, verify_key)):
            outs[agg_id].append(out)
    agg = [prio3_l2.to_ints(prio3_l2.aggregate(o, length)) for o in outs]
    assert vdaf.unshard(None, agg, 3) == np.sum(vectors, axis=0).tolist()
