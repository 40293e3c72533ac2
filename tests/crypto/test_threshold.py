"""Threshold decryption and key switching over DKG shares; Lagrange coefficients."""

from __future__ import annotations

import dataclasses
import itertools
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.dkg import DkgResult, run_dkg
from tessera.crypto.elgamal import Ciphertext, decrypt_to_point, encrypt, keygen
from tessera.crypto.group import G, N, Point, base_mul
from tessera.crypto.proofs import LinearProof
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import (
    KeySwitchShare,
    PartialDecryption,
    combine_key_switch,
    combine_partials,
    filter_valid_key_switch,
    filter_valid_partials,
    key_switch_share,
    lagrange_at_zero,
    partial_decrypt,
    verify_key_switch,
    verify_partial,
)
from tessera.errors import DecodeError, InvalidProof, ProtocolError

CTX = b"query-42"
PARAMS = [(3, 2), (5, 3), (7, 4)]


@cache
def committee(n: int, t: int) -> dict[int, DkgResult]:
    results, _ = run_dkg(n, t, SeededRng(f"committee-{n}-{t}"))
    assert sorted(results) == list(range(1, n + 1))
    return results


def _public(results: dict[int, DkgResult]) -> tuple[Point, dict[int, Point]]:
    any_node = next(iter(results.values()))
    return any_node.public_key, dict(any_node.public_shares)


def _interpolate_at_zero(points: dict[int, int]) -> int:
    idx = list(points)
    return sum(points[i] * lagrange_at_zero(i, idx) for i in idx) % N


# -- Lagrange -----------------------------------------------------------------------------
@given(st.integers(1, 6), st.integers(0, 2**32), st.data())
def test_lagrange_reconstructs_polynomial_at_zero(t: int, seed: int, data: st.DataObject) -> None:
    rng = SeededRng(seed)
    coeffs = [rng.scalar() for _ in range(t)]
    idx = data.draw(st.lists(st.integers(1, 50), min_size=t, max_size=t, unique=True))

    def f(x: int) -> int:
        return sum(c * pow(x, k, N) for k, c in enumerate(coeffs)) % N

    assert _interpolate_at_zero({i: f(i) for i in idx}) == coeffs[0]
    assert sum(lagrange_at_zero(i, idx) for i in idx) % N == 1


def test_lagrange_argument_checks() -> None:
    assert lagrange_at_zero(1, [1]) == 1
    # λ_1 over {1, 2} = 2 / (2 − 1) = 2 and λ_2 = 1 / (1 − 2) = −1
    assert lagrange_at_zero(1, [1, 2]) == 2
    assert lagrange_at_zero(2, [1, 2]) == N - 1
    with pytest.raises(ValueError):
        lagrange_at_zero(3, [1, 2])
    with pytest.raises(ValueError):
        lagrange_at_zero(1, [1, 1, 2])


# -- every t-subset decrypts ----------------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), PARAMS)
def test_every_t_subset_partial_decrypts(n: int, t: int) -> None:
    results = committee(n, t)
    pk, pub = _public(results)
    rng = SeededRng(b"pd" + bytes([n, t]))
    for m in (0, 1, -7, 123456):
        ct = encrypt(pk, m, rng)
        parts = {i: partial_decrypt(CTX, i, r.secret_share, ct, rng) for i, r in results.items()}
        for i, p in parts.items():
            verify_partial(CTX, pub[i], ct, p)
        for subset in itertools.combinations(sorted(parts), t):
            chosen = [parts[i] for i in subset]
            assert combine_partials(ct, chosen, t) == base_mul(m), subset
            # order of the shares does not matter
            assert combine_partials(ct, chosen[::-1], t) == base_mul(m)


@pytest.mark.parametrize(("n", "t"), PARAMS)
def test_every_t_subset_key_switches(n: int, t: int) -> None:
    results = committee(n, t)
    pk, pub = _public(results)
    rng = SeededRng(b"ks" + bytes([n, t]))
    a, target = keygen(rng)
    for m in (0, 5, -3):
        ct = encrypt(pk, m, rng)
        shares = {
            i: key_switch_share(CTX, i, r.secret_share, ct, target, rng) for i, r in results.items()
        }
        for i, s in shares.items():
            verify_key_switch(CTX, pub[i], ct, target, s)
        switched = set()
        for subset in itertools.combinations(sorted(shares), t):
            new_ct = combine_key_switch(ct, [shares[i] for i in subset], t)
            assert decrypt_to_point(a, new_ct) == base_mul(m), subset
            switched.add(new_ct.encode())
        # different subsets give different ciphertexts of the same plaintext
        assert len(switched) == len(list(itertools.combinations(range(n), t)))


@pytest.mark.parametrize(("n", "t"), PARAMS)
def test_shares_are_consistent_with_the_public_key(n: int, t: int) -> None:
    results = committee(n, t)
    pk, pub = _public(results)
    for i, r in results.items():
        assert base_mul(r.secret_share) == pub[i]
    secrets = {i: r.secret_share for i, r in results.items()}
    xs = {
        _interpolate_at_zero({i: secrets[i] for i in s}) for s in itertools.combinations(secrets, t)
    }
    assert len(xs) == 1
    (x,) = xs
    assert base_mul(x) == pk


# -- fewer than t shares ----------------------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), PARAMS)
def test_fewer_than_t_shares_do_not_give_the_secret(n: int, t: int) -> None:
    results = committee(n, t)
    pk, _ = _public(results)
    secrets = {i: r.secret_share for i, r in results.items()}
    for subset in itertools.combinations(secrets, t - 1):
        guess = _interpolate_at_zero({i: secrets[i] for i in subset})
        assert base_mul(guess) != pk, subset


@pytest.mark.parametrize(("n", "t"), PARAMS)
def test_combining_fewer_than_t_shares(n: int, t: int) -> None:
    results = committee(n, t)
    pk, _ = _public(results)
    rng = SeededRng(b"few")
    _, target = keygen(rng)
    ct = encrypt(pk, 11, rng)
    parts = [partial_decrypt(CTX, i, r.secret_share, ct, rng) for i, r in results.items()]
    kss = [key_switch_share(CTX, i, r.secret_share, ct, target, rng) for i, r in results.items()]
    with pytest.raises(ProtocolError):
        combine_partials(ct, parts[: t - 1], t)
    with pytest.raises(ProtocolError):
        combine_key_switch(ct, kss[: t - 1], t)
    # duplicates of one node's share count once
    with pytest.raises(ProtocolError):
        combine_partials(ct, [parts[0]] * t, t)
    with pytest.raises(ProtocolError):
        combine_key_switch(ct, [kss[0]] * t, t)
    # interpolating t − 1 shares as if the threshold were t − 1 gives a wrong plaintext
    assert combine_partials(ct, parts[: t - 1], t - 1) != base_mul(11)


# -- malicious shares ---------------------------------------------------------------------------
def _setup(
    n: int, t: int, seed: str
) -> tuple[dict[int, DkgResult], Point, dict[int, Point], Ciphertext, SeededRng]:
    results = committee(n, t)
    pk, pub = _public(results)
    rng = SeededRng(seed)
    return results, pk, pub, encrypt(pk, 77, rng), rng


def test_wrong_partial_decryptions_are_rejected_and_filtered() -> None:
    n, t = 7, 4
    results, _, pub, ct, rng = _setup(n, t, "bad-partials")
    honest = {i: partial_decrypt(CTX, i, r.secret_share, ct, rng) for i, r in results.items()}
    other_ct = encrypt(_public(results)[0], 77, rng)
    bad = {
        1: dataclasses.replace(honest[1], d=honest[1].d + G),  # wrong value, original proof
        3: dataclasses.replace(honest[2], index=3),  # node 2's share claimed as node 3's
        5: partial_decrypt(CTX, 5, results[5].secret_share + 1, ct, rng),  # wrong key share
        7: partial_decrypt(CTX, 7, results[7].secret_share + 2, ct, rng),
    }
    for i, p in bad.items():
        with pytest.raises(InvalidProof):
            verify_partial(CTX, pub[i], ct, p)
    # a valid share replayed in another context / for another ciphertext
    with pytest.raises(InvalidProof):
        verify_partial(b"query-43", pub[2], ct, honest[2])
    with pytest.raises(InvalidProof):
        verify_partial(CTX, pub[2], other_ct, honest[2])
    with pytest.raises(InvalidProof):
        verify_partial(CTX, pub[3], ct, honest[2])
    proof = honest[4].proof
    with pytest.raises(InvalidProof):
        verify_partial(
            CTX,
            pub[4],
            ct,
            dataclasses.replace(honest[4], proof=LinearProof((proof.e + 1) % N, proof.z)),
        )

    submitted = [bad.get(i, honest[i]) for i in sorted(honest)]
    submitted.append(dataclasses.replace(honest[6], index=99))  # unknown node
    good, rejected = filter_valid_partials(CTX, pub, ct, submitted)
    assert sorted(rejected) == [1, 3, 5, 7, 99]
    assert sorted(p.index for p in good) == [2, 4, 6]
    # only 3 honest remain: below the threshold of 4
    with pytest.raises(ProtocolError):
        combine_partials(ct, good, t)


def test_honest_quorum_still_decrypts_after_filtering() -> None:
    n, t = 7, 4
    results, _, pub, ct, rng = _setup(n, t, "quorum")
    honest = {i: partial_decrypt(CTX, i, r.secret_share, ct, rng) for i, r in results.items()}
    submitted = [
        dataclasses.replace(honest[1], d=honest[1].d + G),
        honest[2],
        dataclasses.replace(honest[3], d=-honest[3].d),
        honest[4],
        honest[5],
        honest[6],
    ]
    good, rejected = filter_valid_partials(CTX, pub, ct, submitted)
    assert rejected == [1, 3]
    assert combine_partials(ct, good, t) == base_mul(77)
    # combining unfiltered shares with a bad one among the first t gives a wrong answer
    assert combine_partials(ct, submitted, t) != base_mul(77)


def test_wrong_key_switch_shares_are_rejected_and_filtered() -> None:
    n, t = 7, 4
    results, _, pub, ct, rng = _setup(n, t, "bad-ks")
    a, target = keygen(rng)
    _, other_target = keygen(rng)
    honest = {
        i: key_switch_share(CTX, i, r.secret_share, ct, target, rng) for i, r in results.items()
    }
    bad = {
        1: dataclasses.replace(honest[1], w=honest[1].w + G),
        2: dataclasses.replace(honest[2], u=honest[2].u + G),
        4: dataclasses.replace(honest[5], index=4),
        7: dataclasses.replace(honest[7], w=honest[7].w + G),
    }
    for i, s in bad.items():
        with pytest.raises(InvalidProof):
            verify_key_switch(CTX, pub[i], ct, target, s)
    # a share made for another target key, or context, does not verify for this one
    with pytest.raises(InvalidProof):
        verify_key_switch(CTX, pub[3], ct, other_target, honest[3])
    with pytest.raises(InvalidProof):
        verify_key_switch(b"query-43", pub[3], ct, target, honest[3])
    submitted = [bad.get(i, honest[i]) for i in sorted(honest)]
    good, rejected = filter_valid_key_switch(CTX, pub, ct, target, submitted)
    assert sorted(rejected) == [1, 2, 4, 7]
    assert sorted(s.index for s in good) == [3, 5, 6]
    with pytest.raises(ProtocolError):
        combine_key_switch(ct, good, t)
    # with one more honest share the quorum is met and the plaintext is right
    good, rejected = filter_valid_key_switch(CTX, pub, ct, target, [*submitted, honest[2]])
    assert sorted(rejected) == [1, 2, 4, 7]
    assert decrypt_to_point(a, combine_key_switch(ct, good, t)) == base_mul(77)
    # unknown index
    _, rejected = filter_valid_key_switch(
        CTX, pub, ct, target, [dataclasses.replace(honest[3], index=0)]
    )
    assert rejected == [0]


def test_index_inside_a_share_is_bound_by_its_proof() -> None:
    """Relabelling a share breaks its proof even against the right public share, so a
    verifier that looks keys up by sender cannot be fooled into a wrong Lagrange index."""
    results, _, pub, ct, rng = _setup(5, 3, "relabel")
    _, target = keygen(rng)
    pd = partial_decrypt(CTX, 2, results[2].secret_share, ct, rng)
    ks = key_switch_share(CTX, 2, results[2].secret_share, ct, target, rng)
    verify_partial(CTX, pub[2], ct, pd)
    verify_key_switch(CTX, pub[2], ct, target, ks)
    for other in (1, 3, 2 + 2**16):
        with pytest.raises(InvalidProof):
            verify_partial(CTX, pub[2], ct, dataclasses.replace(pd, index=other))
        with pytest.raises(InvalidProof):
            verify_key_switch(CTX, pub[2], ct, target, dataclasses.replace(ks, index=other))


# -- encoding ----------------------------------------------------------------------------------
def test_share_encodings_roundtrip_and_are_strict() -> None:
    results, _, _, ct, rng = _setup(3, 2, "enc")
    _, target = keygen(rng)
    pd = partial_decrypt(CTX, 2, results[2].secret_share, ct, rng)
    ks = key_switch_share(CTX, 3, results[3].secret_share, ct, target, rng)
    assert PartialDecryption.decode(pd.encode()) == pd
    assert KeySwitchShare.decode(ks.encode()) == ks
    for data in (pd.encode()[:-1], pd.encode() + b"\x00", b""):
        with pytest.raises(DecodeError):
            PartialDecryption.decode(data)
    for data in (ks.encode()[:-1], ks.encode() + b"\x00", b""):
        with pytest.raises(DecodeError):
            KeySwitchShare.decode(data)
    bad_point = pd.encode()[:4] + b"\x04" + pd.encode()[5:]
    with pytest.raises(DecodeError):
        PartialDecryption.decode(bad_point)
    bad_scalar = ks.encode()[:-32] + N.to_bytes(32, "big")
    with pytest.raises(DecodeError):
        KeySwitchShare.decode(bad_scalar)
