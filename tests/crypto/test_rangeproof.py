"""Range proofs for ElGamal ciphertexts: completeness, soundness checks, binding, encoding."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.elgamal import Ciphertext, encrypt_with, keygen
from tessera.crypto.group import POINT_LEN, SCALAR_LEN, G, H, N, Point, base_mul
from tessera.crypto.rangeproof import (
    MAX_BITS,
    RangeProof,
    _decompose,
    _weights,
    bit_length_for,
    prove_range,
    verify_range,
)
from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError, InvalidProof

CTX = b"query-7/provider-3/slot-0"


def _prove(
    seed: int, m: int, lo: int, hi: int, ctx: bytes = CTX
) -> tuple[SeededRng, int, Point, Ciphertext, int, RangeProof]:
    rng = SeededRng(seed)
    x, pk = keygen(rng)
    r = rng.scalar()
    ct = encrypt_with(pk, m, r)
    proof = prove_range(ctx, pk, ct, m, r, lo, hi, rng)
    return rng, x, pk, ct, r, proof


@st.composite
def intervals_and_values(draw: st.DrawFn) -> tuple[int, int, int]:
    lo = draw(st.integers(-(2**20), 2**20))
    kind = draw(st.sampled_from(["zero", "pow2-1", "pow2", "any"]))
    bits = draw(st.integers(1, 20))
    span = {
        "zero": 0,
        "pow2-1": (1 << bits) - 1,
        "pow2": 1 << bits,
        "any": draw(st.integers(0, (1 << bits) - 1)),
    }[kind]
    hi = lo + span
    m = draw(st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi)))
    return lo, hi, m


# -- the weight decomposition ---------------------------------------------------------------
def test_weights_cover_exactly_the_interval_for_small_spans() -> None:
    for span in range(0, 70):
        bits = max(1, span.bit_length())
        w = _weights(span, bits)
        reachable = {
            sum(wi for wi, bi in zip(w, pattern, strict=True) if bi)
            for pattern in itertools.product((0, 1), repeat=bits)
        }
        assert reachable == set(range(span + 1)), span
        for d in range(span + 1):
            b = _decompose(d, span, bits)
            assert sum(wi * bi for wi, bi in zip(w, b, strict=True)) == d


@given(st.integers(0, 2**MAX_BITS - 1), st.data())
def test_decomposition_for_large_spans(span: int, data: st.DataObject) -> None:
    bits = max(1, span.bit_length())
    w = _weights(span, bits)
    assert sum(w) == span and all(v >= 0 for v in w)
    d = data.draw(st.one_of(st.sampled_from([0, span, span // 2]), st.integers(0, span)))
    b = _decompose(d, span, bits)
    assert set(b) <= {0, 1} and len(b) == bits
    assert sum(wi * bi for wi, bi in zip(w, b, strict=True)) == d


def test_bit_length_for() -> None:
    assert bit_length_for(5, 5) == 1
    assert bit_length_for(0, 1) == 1
    assert bit_length_for(-3, 0) == 2
    assert bit_length_for(0, 255) == 8
    assert bit_length_for(0, 256) == 9
    with pytest.raises(ValueError):
        bit_length_for(1, 0)


# -- completeness -------------------------------------------------------------------------
@given(intervals_and_values(), st.integers(0, 2**16))
def test_in_range_values_verify(case: tuple[int, int, int], seed: int) -> None:
    lo, hi, m = case
    _, _, pk, ct, _, proof = _prove(seed, m, lo, hi)
    assert proof.bits == bit_length_for(lo, hi)
    verify_range(CTX, pk, ct, lo, hi, proof)
    assert RangeProof.decode(proof.encode()) == proof


@pytest.mark.parametrize(
    ("lo", "hi", "m"),
    [
        (0, 0, 0),
        (-5, -5, -5),
        (0, 1, 0),
        (0, 1, 1),
        (-1, 0, -1),
        (-(2**63), 2**63 - 1, -(2**63)),
        (-(2**63), 2**63 - 1, 2**63 - 1),
        (0, 2**MAX_BITS - 1, 2**MAX_BITS - 1),  # the widest interval
        (0, 2**MAX_BITS - 1, 0),
        (10, 10 + 2**MAX_BITS - 1, 2**MAX_BITS),
    ],
)
def test_boundary_intervals(lo: int, hi: int, m: int) -> None:
    _, _, pk, ct, _, proof = _prove(1, m, lo, hi)
    verify_range(CTX, pk, ct, lo, hi, proof)


def test_interval_too_wide() -> None:
    rng = SeededRng(2)
    _, pk = keygen(rng)
    ct = encrypt_with(pk, 0, 1)
    with pytest.raises(ValueError):
        prove_range(CTX, pk, ct, 0, 1, 0, 2**MAX_BITS, rng)
    with pytest.raises(ValueError):
        prove_range(CTX, pk, ct, 0, 1, 1, 0, rng)


# -- soundness-side checks ----------------------------------------------------------------
@pytest.mark.parametrize(("lo", "hi"), [(0, 7), (-4, 3), (5, 5), (0, 10)])
def test_out_of_range_value_cannot_be_proven(lo: int, hi: int) -> None:
    rng = SeededRng(3)
    _, pk = keygen(rng)
    for m in (lo - 1, hi + 1, hi + 2**20, lo - 2**20):
        r = rng.scalar()
        with pytest.raises(ValueError):
            prove_range(CTX, pk, encrypt_with(pk, m, r), m, r, lo, hi, rng)


@pytest.mark.parametrize(("lo", "hi"), [(0, 7), (-4, 3), (5, 5), (0, 10)])
def test_reusing_a_valid_proof_for_an_out_of_range_ciphertext_fails(lo: int, hi: int) -> None:
    _, _, pk, ct, r, proof = _prove(4, hi, lo, hi)
    verify_range(CTX, pk, ct, lo, hi, proof)
    span = hi - lo
    for bad_m in (hi + 1, lo - 1, hi + span + 1, lo + N - 1):
        # same randomness: only c2 changes; fresh randomness: both change
        for forged in (encrypt_with(pk, bad_m, r), encrypt_with(pk, bad_m, r + 1)):
            with pytest.raises(InvalidProof):
                verify_range(CTX, pk, forged, lo, hi, proof)
    # shifting the valid ciphertext homomorphically out of the interval
    for shift in (1, span + 1, -(span + 1), 2**128):
        with pytest.raises(InvalidProof):
            verify_range(CTX, pk, ct.add_plain(shift), lo, hi, proof)


def test_prover_lying_about_the_plaintext_fails() -> None:
    """ct encrypts hi + 1; the prover claims m = hi (in range) with the right r."""
    rng = SeededRng(5)
    _, pk = keygen(rng)
    lo, hi = 0, 15
    r = rng.scalar()
    ct = encrypt_with(pk, hi + 1, r)
    proof = prove_range(CTX, pk, ct, hi, r, lo, hi, rng)
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct, lo, hi, proof)
    # and with the right m but the wrong r
    ct2 = encrypt_with(pk, 3, r)
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct2, lo, hi, prove_range(CTX, pk, ct2, 3, r + 1, lo, hi, rng))


def test_proof_bound_to_ciphertext_key_interval_and_context() -> None:
    rng, x, pk, ct, r, proof = _prove(6, 5, 0, 12)
    verify_range(CTX, pk, ct, 0, 12, proof)
    other_ct = encrypt_with(pk, 5, r + 1)  # same plaintext, other randomness
    other_pk = base_mul(x + 1)
    cases = [
        (CTX, pk, other_ct, 0, 12),
        (CTX, pk, ct.rerandomize(pk, rng), 0, 12),
        (CTX, pk, Ciphertext(ct.c2, ct.c1), 0, 12),
        (CTX, other_pk, ct, 0, 12),
        (CTX, pk, ct, 0, 13),  # same bit length, other interval
        (CTX, pk, ct, 0, 15),
        (CTX, pk, ct, 1, 12),
        (CTX, pk, ct, -1, 12),
        (CTX, pk, ct, 0, 8),
        (CTX, pk, ct, 0, 100),  # other bit length
        (b"query-8/provider-3/slot-0", pk, ct, 0, 12),  # other query
        (b"query-7/provider-4/slot-0", pk, ct, 0, 12),  # other provider
        (b"query-7/provider-3/slot-1", pk, ct, 0, 12),  # other slot
        (b"", pk, ct, 0, 12),
    ]
    for ctx, key, c, lo, hi in cases:
        with pytest.raises(InvalidProof):
            verify_range(ctx, key, c, lo, hi, proof)


def test_interval_congruent_modulo_the_group_order_is_rejected() -> None:
    """[lo + N, hi + N] gives the same verification equations as [lo, hi]; only the
    transcript tells them apart, and it must (the interval is over the integers)."""
    _, _, pk, ct, _, proof = _prove(12, 5, 0, 12)
    for k in (N, -N, 2 * N):
        with pytest.raises(InvalidProof):
            verify_range(CTX, pk, ct, 0 + k, 12 + k, proof)


def test_shifted_interval_with_shifted_ciphertext_is_rejected() -> None:
    """[lo+k, hi+k] with ct + k·G holds the same relation, but the statement differs."""
    _, _, pk, ct, _, proof = _prove(7, 3, 0, 7)
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct.add_plain(8), 8, 15, proof)


def _replace_at(values: tuple[int, ...], i: int, new: int) -> tuple[int, ...]:
    out = list(values)
    out[i] = new
    return tuple(out)


def test_every_field_of_the_proof_is_checked() -> None:
    _, _, pk, ct, _, proof = _prove(8, 9, -3, 20)
    verify_range(CTX, pk, ct, -3, 20, proof)
    bump = lambda v: (v + 1) % N  # noqa: E731
    tampered: list[RangeProof] = [
        dataclasses.replace(proof, e=bump(proof.e)),
    ]
    for k in range(3):
        tampered.append(
            dataclasses.replace(proof, z_link=_replace_at(proof.z_link, k, bump(proof.z_link[k])))  # type: ignore[arg-type]
        )
    for i in range(proof.bits):
        cs = list(proof.commitments)
        for delta in (G, H, -H):
            cs_i = list(cs)
            cs_i[i] = cs[i] + delta
            tampered.append(dataclasses.replace(proof, commitments=tuple(cs_i)))
        for name in ("e0", "z0", "z1"):
            vals = getattr(proof, name)
            tampered.append(
                dataclasses.replace(proof, **{name: _replace_at(vals, i, bump(vals[i]))})
            )
    # swap two bit records wholesale
    swap = lambda t: (t[1], t[0], *t[2:])  # noqa: E731
    tampered.append(
        RangeProof(
            swap(proof.commitments),
            swap(proof.e0),
            swap(proof.z0),
            swap(proof.z1),
            proof.e,
            proof.z_link,
        )
    )
    assert len(tampered) == 4 + proof.bits * 6 + 1
    for bad in tampered:
        assert bad != proof
        with pytest.raises(InvalidProof):
            verify_range(CTX, pk, ct, -3, 20, bad)


def test_bit_count_mismatch_is_invalid_proof() -> None:
    _, _, pk, ct, _, proof = _prove(9, 3, 0, 7)
    short = RangeProof(
        proof.commitments[:2], proof.e0[:2], proof.z0[:2], proof.z1[:2], proof.e, proof.z_link
    )
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct, 0, 7, short)
    # a proof with more bits than the interval needs (made for a wider interval)
    _, _, pk, ct, _, wide = _prove(9, 3, 0, 100)
    assert wide.bits > proof.bits
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct, 0, 7, wide)


# -- encoding --------------------------------------------------------------------------------
def test_encoding_roundtrip_and_strict_decode() -> None:
    _, _, pk, ct, _, proof = _prove(10, 100, 0, 1000)
    enc = proof.encode()
    rec = POINT_LEN + 3 * SCALAR_LEN
    assert len(enc) == 2 + proof.bits * rec + 4 * SCALAR_LEN
    back = RangeProof.decode(enc)
    assert back == proof
    verify_range(CTX, pk, ct, 0, 1000, back)
    for bad in (
        b"",
        b"\x00",
        enc[:-1],
        enc + b"\x00",
        enc[:2],
        b"\x00\x00" + enc[2:],  # zero bits
        b"\x00\x00" + enc[-4 * SCALAR_LEN :],  # zero bits, length consistent with that
        (MAX_BITS + 1).to_bytes(2, "big") + enc[2:],
        (proof.bits + 1).to_bytes(2, "big") + enc[2:],  # header disagrees with the body
        (proof.bits - 1).to_bytes(2, "big") + enc[2:],
        enc[:2] + b"\x05" + enc[3:],  # first commitment: bad prefix
        enc[:2] + b"\x02" + b"\xff" * 32 + enc[2 + POINT_LEN :],  # x not reduced
        enc[: 2 + POINT_LEN] + N.to_bytes(32, "big") + enc[2 + POINT_LEN + 32 :],  # e0 ≥ N
        enc[:-SCALAR_LEN] + b"\xff" * SCALAR_LEN,  # last link response ≥ N
        enc[: -4 * SCALAR_LEN] + N.to_bytes(32, "big") + enc[-3 * SCALAR_LEN :],  # e ≥ N
    ):
        with pytest.raises(DecodeError):
            RangeProof.decode(bad)


def test_decoded_identity_commitment_is_rejected_by_verification() -> None:
    _, _, pk, ct, _, proof = _prove(11, 1, 0, 3)
    enc = bytearray(proof.encode())
    enc[2 : 2 + POINT_LEN] = bytes(POINT_LEN)  # first commitment → identity (decodes fine)
    bad = RangeProof.decode(bytes(enc))
    assert bad.commitments[0].is_identity
    with pytest.raises(InvalidProof):
        verify_range(CTX, pk, ct, 0, 3, bad)
