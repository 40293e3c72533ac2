"""Exponential ElGamal: homomorphism, re-randomisation and strict decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.elgamal import (
    CIPHERTEXT_LEN,
    Ciphertext,
    add_all,
    add_vectors,
    decrypt_to_point,
    encodes,
    encrypt,
    encrypt_many,
    encrypt_many_with,
    encrypt_with,
    keygen,
)
from tessera.crypto.group import G, N, Point, base_mul
from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError

plaintexts = st.one_of(
    st.sampled_from([0, 1, -1, N - 1, 2**64, -(2**64)]), st.integers(-(2**40), 2**40)
)
seeds = st.integers(0, 2**32)


def _setup(seed: int) -> tuple[SeededRng, int, Point]:
    rng = SeededRng(seed)
    x, pk = keygen(rng)
    return rng, x, pk


def test_keygen() -> None:
    rng = SeededRng(1)
    x, pk = keygen(rng)
    assert 1 <= x < N and pk == base_mul(x)
    assert keygen(SeededRng(1)) == (x, pk)
    assert keygen(SeededRng(2))[0] != x


@given(plaintexts, seeds)
def test_decrypt_inverts_encrypt(m: int, seed: int) -> None:
    rng, x, pk = _setup(seed)
    ct = encrypt(pk, m, rng)
    assert decrypt_to_point(x, ct) == base_mul(m)
    # the wrong key does not decrypt (overwhelmingly)
    assert decrypt_to_point(x + 1, ct) != base_mul(m)


@given(plaintexts, plaintexts, seeds)
def test_additive_homomorphism(a: int, b: int, seed: int) -> None:
    rng, x, pk = _setup(seed)
    ca, cb = encrypt(pk, a, rng), encrypt(pk, b, rng)
    assert decrypt_to_point(x, ca + cb) == base_mul(a + b)
    assert decrypt_to_point(x, ca - cb) == base_mul(a - b)
    assert decrypt_to_point(x, -ca) == base_mul(-a)
    assert decrypt_to_point(x, ca.add_plain(b)) == base_mul(a + b)
    assert decrypt_to_point(x, ca + Ciphertext.zero()) == base_mul(a)


@given(plaintexts, st.integers(-(2**64), 2**64), seeds)
def test_scalar_homomorphism(a: int, k: int, seed: int) -> None:
    rng, x, pk = _setup(seed)
    ct = encrypt(pk, a, rng)
    assert decrypt_to_point(x, ct * k) == base_mul(a * k)
    assert decrypt_to_point(x, k * ct) == base_mul(a * k)


def test_negative_values_and_cancellation() -> None:
    rng, x, pk = _setup(3)
    c = encrypt(pk, -5, rng) + encrypt(pk, 5, rng)
    assert decrypt_to_point(x, c).is_identity
    same = encrypt_with(pk, 7, 11)
    diff = same - same
    assert diff == Ciphertext.zero()
    assert diff.c1.is_identity and diff.c2.is_identity
    assert decrypt_to_point(x, encrypt(pk, -1, rng)) == -G


@given(plaintexts, seeds)
def test_rerandomize_keeps_plaintext_changes_bytes(m: int, seed: int) -> None:
    rng, x, pk = _setup(seed)
    ct = encrypt(pk, m, rng)
    ct2 = ct.rerandomize(pk, rng)
    assert decrypt_to_point(x, ct2) == base_mul(m)
    assert ct2.c1 != ct.c1 and ct2.c2 != ct.c2
    assert ct2.encode() != ct.encode()


def test_encrypt_with_is_deterministic_and_fresh_randomness_differs() -> None:
    _, x, pk = _setup(4)
    assert encrypt_with(pk, 9, 123) == encrypt_with(pk, 9, 123)
    assert encrypt_with(pk, 9, 123) == Ciphertext(base_mul(123), base_mul(9) + pk * 123)
    rng = SeededRng(5)
    assert encrypt(pk, 9, rng) != encrypt(pk, 9, rng)
    assert encodes(pk, encrypt_with(pk, 9, 123), 9, 123)
    assert encodes(pk, encrypt_with(pk, -9, 123), -9, 123)
    assert not encodes(pk, encrypt_with(pk, 9, 123), 10, 123)
    assert not encodes(pk, encrypt_with(pk, 9, 123), 9, 124)
    assert not encodes(base_mul(x + 1), encrypt_with(pk, 9, 123), 9, 123)


def test_batch_helpers() -> None:
    rng, x, pk = _setup(6)
    ms = [3, -2, 0, 10]
    cts = encrypt_many(pk, ms, rng)
    assert [decrypt_to_point(x, c) for c in cts] == [base_mul(m) for m in ms]
    assert decrypt_to_point(x, add_all(cts)) == base_mul(sum(ms))
    assert add_all([]) == Ciphertext.zero()
    assert encrypt_many_with(pk, ms, [1, 2, 3, 4]) == [
        encrypt_with(pk, m, r) for m, r in zip(ms, [1, 2, 3, 4], strict=True)
    ]
    with pytest.raises(ValueError):
        encrypt_many_with(pk, ms, [1, 2])
    rows = [encrypt_many(pk, [i, 2 * i, -i], rng) for i in range(1, 4)]
    summed = add_vectors(rows)
    assert [decrypt_to_point(x, c) for c in summed] == [base_mul(v) for v in (6, 12, -6)]
    assert add_vectors([]) == []
    with pytest.raises(ValueError):
        add_vectors([cts, cts[:2]])


@given(plaintexts, seeds)
def test_encode_decode_roundtrip(m: int, seed: int) -> None:
    rng, _, pk = _setup(seed)
    ct = encrypt(pk, m, rng)
    enc = ct.encode()
    assert len(enc) == CIPHERTEXT_LEN
    assert Ciphertext.decode(enc) == ct


def test_zero_ciphertext_roundtrip() -> None:
    zero = Ciphertext.zero()
    assert zero.encode() == bytes(CIPHERTEXT_LEN)
    assert Ciphertext.decode(bytes(CIPHERTEXT_LEN)) == zero


def test_decode_strict() -> None:
    good = encrypt_with(base_mul(5), 1, 2).encode()
    for bad in (
        b"",
        good[:-1],
        good + b"\x00",
        good[:33],
        b"\x04" + good[1:],  # bad prefix on c1
        good[:33] + b"\x07" + good[34:],  # bad prefix on c2
        good[:33] + b"\x02" + b"\xff" * 32,  # c2's x not reduced
    ):
        with pytest.raises(DecodeError):
            Ciphertext.decode(bad)
