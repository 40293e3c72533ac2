"""secp256k1 wrapper, randomness sources and the Fiat–Shamir transcript."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera import errors
from tessera.crypto.group import (
    H2C_DST,
    POINT_LEN,
    SCALAR_LEN,
    G,
    H,
    N,
    P,
    Point,
    _double_mul,
    base_mul,
    decode_scalar,
    encode_scalar,
    generator,
    hash_to_point,
    inv,
    msm,
    mul_public,
    point_sum,
    walk,
)
from tessera.crypto.rng import SeededRng, SystemRng, default_rng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, TesseraError

# Generator of secp256k1 (SEC 2 §2.4.1), written out so the library cannot agree with itself.
GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8

# Scalars where modular arithmetic tends to break, mixed with uniform ones.
EDGE_SCALARS = [0, 1, 2, N - 2, N - 1, N, N + 1, -1, 2**255, 2**256 - 1]
scalars = st.one_of(st.sampled_from(EDGE_SCALARS), st.integers(min_value=0, max_value=N - 1))
small_or_edge = st.one_of(st.sampled_from(EDGE_SCALARS), st.integers(-(2**20), 2**20))


def _on_curve(x: int, y: int) -> bool:
    return (y * y - x * x * x - 7) % P == 0


def _is_square(v: int) -> bool:
    return v % P == 0 or pow(v, (P - 1) // 2, P) == 1


def _first_x(start: int, on_curve: bool) -> int:
    x = start
    while _is_square(x**3 + 7) != on_curve:
        x += 1
    return x


def _naive_mul(k: int, pt: Point) -> Point:
    """Double-and-add with the wrapper's addition only (no scalar multiplication)."""
    k %= N
    acc, addend = Point.identity(), pt
    while k:
        if k & 1:
            acc = acc + addend
        addend = addend + addend
        k >>= 1
    return acc


# -- constants and encodings ----------------------------------------------------------
def test_generator_matches_sec2() -> None:
    assert G.encode() == b"\x02" + GX.to_bytes(32, "big")  # GY is even
    assert GY % 2 == 0 and _on_curve(GX, GY)
    assert G.x == GX
    assert base_mul(N) == Point.identity()
    assert base_mul(N - 1) == -G
    assert base_mul(N - 1).encode() == b"\x03" + GX.to_bytes(32, "big")


def test_identity_encoding_and_behaviour() -> None:
    o = Point.identity()
    assert o.is_identity and not G.is_identity
    assert o.encode() == bytes(POINT_LEN) == bytes(o)
    assert Point.decode(bytes(33)) is o
    assert Point.decode(bytearray(33)) == o
    assert -o == o and o + o == o and o - o == o
    for zero in (o * 5, 0 * G, G * N, G + (-G), G - G):
        assert zero.is_identity and zero == o
    assert o != G and o != bytes(33)
    with pytest.raises(ValueError):
        _ = o.x
    assert "identity" in repr(o)


@given(scalars)
def test_point_roundtrip(k: int) -> None:
    pt = base_mul(k)
    enc = pt.encode()
    assert len(enc) == POINT_LEN
    back = Point.decode(enc)
    assert back == pt and hash(back) == hash(pt) and back.encode() == enc
    assert Point.decode(bytearray(enc)) == pt


@given(st.integers(min_value=0, max_value=N - 1))
def test_scalar_roundtrip(k: int) -> None:
    enc = encode_scalar(k)
    assert len(enc) == SCALAR_LEN and int.from_bytes(enc, "big") == k
    assert decode_scalar(enc) == k
    assert decode_scalar(bytearray(enc)) == k


@pytest.mark.parametrize("k", [-1, N, N + 1, 2**256])
def test_encode_scalar_rejects_unreduced(k: int) -> None:
    with pytest.raises(ValueError):
        encode_scalar(k)


@pytest.mark.parametrize(
    "data",
    [
        N.to_bytes(32, "big"),
        (N + 1).to_bytes(32, "big"),
        b"\xff" * 32,
        b"",
        bytes(31),
        bytes(33),
        (1).to_bytes(33, "big"),
    ],
    ids=["N", "N+1", "max", "empty", "short", "long", "long-one"],
)
def test_decode_scalar_strict(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_scalar(data)


def test_decode_scalar_boundary() -> None:
    assert decode_scalar((N - 1).to_bytes(32, "big")) == N - 1
    assert decode_scalar(bytes(32)) == 0
    with pytest.raises(DecodeError):
        decode_scalar("00" * 32)  # type: ignore[arg-type]


def test_decode_errors_are_value_errors_in_the_tree() -> None:
    with pytest.raises(DecodeError) as info:
        Point.decode(b"\x05" + bytes(32))
    assert isinstance(info.value, TesseraError) and isinstance(info.value, ValueError)


_NOT_ON_CURVE_X = _first_x(1, on_curve=False)
_SMALL_X = _first_x(1, on_curve=True)  # x + P still fits in 32 bytes
_ON_CURVE_ABOVE_N = _first_x(N, on_curve=True)  # x in [N, P): exercises _double_mul's fallback


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(32),
        bytes(34),
        G.encode()[:-1],
        G.encode() + b"\x00",
        b"\x04" + GX.to_bytes(32, "big") + GY.to_bytes(32, "big"),  # uncompressed G
        b"\x04" + GX.to_bytes(32, "big"),
        b"\x00" + GX.to_bytes(32, "big"),
        b"\x01" + GX.to_bytes(32, "big"),
        b"\x05" + GX.to_bytes(32, "big"),
        b"\x06" + GX.to_bytes(32, "big"),
        b"\xff" + GX.to_bytes(32, "big"),
        b"\x00" * 32 + b"\x01",  # almost the identity
        b"\x02" + P.to_bytes(32, "big"),
        b"\x03" + (P + 1).to_bytes(32, "big"),
        b"\x02" + (P + _SMALL_X).to_bytes(32, "big"),  # a valid x, unreduced
        b"\x03" + (P + _SMALL_X).to_bytes(32, "big"),
        b"\x02" + b"\xff" * 32,
        b"\x02" + bytes(32),  # x = 0: 7 is not a square mod p
        b"\x02" + _NOT_ON_CURVE_X.to_bytes(32, "big"),
        b"\x03" + _NOT_ON_CURVE_X.to_bytes(32, "big"),
    ],
)
def test_point_decode_strict(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Point.decode(data)


@pytest.mark.parametrize("obj", ["02" * 33, None, 5])
def test_point_decode_rejects_non_bytes(obj: object) -> None:
    with pytest.raises(DecodeError):
        Point.decode(obj)  # type: ignore[arg-type]


def test_unreduced_x_fixture_is_a_valid_point_when_reduced() -> None:
    # guards the parametrised case above: the reduced encoding decodes fine
    assert _SMALL_X + P < 2**256
    for prefix in (b"\x02", b"\x03"):
        pt = Point.decode(prefix + _SMALL_X.to_bytes(32, "big"))
        assert pt.x == _SMALL_X


# -- group laws -------------------------------------------------------------------------
@given(scalars, scalars, scalars)
def test_group_laws(a: int, b: int, c: int) -> None:
    pa, pb, pc = base_mul(a), base_mul(b), base_mul(c)
    o = Point.identity()
    assert (pa + pb) + pc == pa + (pb + pc)
    assert pa + pb == pb + pa
    assert pa + o == pa == o + pa
    assert pa + (-pa) == o and pa - pa == o
    neg = -pa
    assert -neg == pa
    assert pa - pb == pa + (-pb)
    assert pa + pb == base_mul(a + b)
    assert pa - pb == base_mul(a - b)


@given(scalars, scalars, scalars)
def test_scalar_multiplication_laws(a: int, b: int, k: int) -> None:
    q = base_mul(k)
    assert q * a + q * b == q * (a + b)
    assert (q + G) * a == q * a + G * a
    assert q * (a * b) == (q * a) * b
    assert a * q == q * a
    assert q * (-a) == -(q * a)
    assert q * 0 == Point.identity() and q * 1 == q and q * (N - 1) == -q
    assert q * (N + a) == q * a


@given(small_or_edge)
def test_constant_time_and_naive_multiplication_agree(k: int) -> None:
    assert G * k == _naive_mul(k, G) == base_mul(k)
    assert H * k == _naive_mul(k, H) == mul_public(k, H)


def test_point_encoding_of_small_multiples_matches_affine_formula() -> None:
    # independent affine arithmetic for 2G and 3G
    lam = 3 * GX * GX * pow(2 * GY, -1, P) % P
    x2 = (lam * lam - 2 * GX) % P
    y2 = (lam * (GX - x2) - GY) % P
    lam = (y2 - GY) * pow(x2 - GX, -1, P) % P
    x3 = (lam * lam - GX - x2) % P
    y3 = (lam * (GX - x3) - GY) % P
    for pt, x, y in ((G + G, x2, y2), (base_mul(3), x3, y3)):
        assert _on_curve(x, y)
        assert pt.encode() == bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


def test_point_sum() -> None:
    o = Point.identity()
    assert point_sum([]) == o
    assert point_sum([o, o]) == o
    assert point_sum([G]) == G
    assert point_sum([G, o, -G]) == o
    assert point_sum([G, G, G, H]) == base_mul(3) + H
    assert point_sum(iter([H, H])) == H * 2


def test_inverse() -> None:
    for k in (1, 2, N - 1, 0xDEADBEEF, N + 5):
        assert k * inv(k) % N == 1
    for k in (0, N, -N):
        with pytest.raises(ZeroDivisionError):
            inv(k)


# -- variable-time multiplication -------------------------------------------------------
_POINT_POOL = [
    G,
    -G,
    H,
    -H,
    Point.identity(),
    base_mul(7),
    generator("G/1"),
    Point.decode(b"\x02" + _ON_CURVE_ABOVE_N.to_bytes(32, "big")),
]


@given(
    st.lists(
        st.tuples(small_or_edge | scalars, st.integers(0, len(_POINT_POOL) - 1)),
        max_size=6,
    )
)
def test_msm_equals_naive_sum(terms: list[tuple[int, int]]) -> None:
    ks = [k for k, _ in terms]
    pts = [_POINT_POOL[i] for _, i in terms]
    expected = Point.identity()
    for k, pt in zip(ks, pts, strict=True):
        expected = expected + pt * k
    assert msm(ks, pts) == expected


@pytest.mark.parametrize(
    ("ks", "pts"),
    [
        ([], []),
        ([0], [H]),
        ([5], [Point.identity()]),
        ([3, -3], [G, G]),
        ([1, 1], [H, -H]),
        ([2, N - 2], [H, H]),
        ([4, -2], [G, base_mul(2)]),  # the G term cancels the variable-base term
        ([1, 1, -1], [G, H, H + G]),
        ([N], [G]),
    ],
)
def test_msm_cancellations_give_identity(ks: list[int], pts: list[Point]) -> None:
    assert msm(ks, pts) == Point.identity()


def test_msm_length_mismatch() -> None:
    with pytest.raises(ValueError):
        msm([1, 2], [G])


@given(scalars, scalars, st.integers(0, len(_POINT_POOL) - 1))
def test_double_mul(u1: int, u2: int, i: int) -> None:
    q = _POINT_POOL[i]
    assert _double_mul(u1, u2, q) == base_mul(u1) + q * u2


def test_double_mul_identity_result_and_high_x() -> None:
    q = base_mul(12345)
    assert _double_mul(-12345 * 7, 7, q) == Point.identity()
    big = _POINT_POOL[-1]
    assert big.x >= N
    assert _double_mul(3, 5, big) == base_mul(3) + _naive_mul(5, big)
    assert mul_public(N - 1, big) == -big


def test_walk() -> None:
    raw, nxt, hit = walk(G, G, 5)
    assert hit is None and nxt == base_mul(6)
    assert raw == b"".join(base_mul(j).encode()[1:9] for j in range(1, 6))
    raw, nxt, hit = walk(base_mul(-3), G, 10)
    assert hit == 3 and nxt == Point.identity() and len(raw) == 3 * 8
    raw, nxt, hit = walk(Point.identity(), G, 4)
    assert hit == 0 and raw == b""
    assert walk(G, G, 0) == (b"", G, None)
    with pytest.raises(ValueError):
        walk(G, Point.identity(), 3)


# -- hash to curve ----------------------------------------------------------------------
def _reference_hash_to_point(label: bytes) -> bytes:
    """docs/decisions.md: x = SHA-256(DST ‖ len ‖ label ‖ ctr) mod p, first square, even y."""
    for ctr in range(256):
        data = H2C_DST + len(label).to_bytes(4, "big") + label + ctr.to_bytes(4, "big")
        x = int.from_bytes(hashlib.sha256(data).digest(), "big") % P
        if _is_square(x**3 + 7):
            return b"\x02" + x.to_bytes(32, "big")
    raise AssertionError("unreachable")


@given(st.binary(max_size=40))
def test_hash_to_point_matches_reference(label: bytes) -> None:
    pt = hash_to_point(label)
    assert pt.encode() == _reference_hash_to_point(label)
    assert not pt.is_identity and pt.encode()[0] == 2
    assert hash_to_point(label) == pt


def test_generators_distinct_and_cached() -> None:
    names = ["H", "G/0", "G/1", "G/2", "", "h"]
    pts = [generator(name) for name in names]
    assert len({p.encode() for p in pts} | {G.encode()}) == len(names) + 1
    assert H == generator("H") == hash_to_point(b"H")
    assert generator("G/1") is generator("G/1")
    assert H != G and H != -G and not H.is_identity
    # length framing: label b"a" with ctr bytes must not collide with label b"a\x00..."
    assert hash_to_point(b"a") != hash_to_point(b"a\x00\x00\x00\x00")


# -- randomness -------------------------------------------------------------------------
def test_seeded_rng_deterministic_per_seed() -> None:
    for seed in (0, 1, b"seed", "seed", 2**255):
        a, b = SeededRng(seed), SeededRng(seed)
        assert [a.randbytes(16) for _ in range(4)] == [b.randbytes(16) for _ in range(4)]
        assert [a.scalar() for _ in range(4)] == [b.scalar() for _ in range(4)]
        assert [a.below(1000) for _ in range(4)] == [b.below(1000) for _ in range(4)]


def test_seeded_rng_differs_across_seeds_and_calls() -> None:
    outs = {SeededRng(seed).randbytes(32) for seed in (0, 1, 2, b"", b"\x00", "x", "y")}
    # 0 and b"" / b"\x00" are different seeds: int seeds are 32 bytes wide
    assert len(outs) == 7
    rng = SeededRng(1)
    assert len({rng.randbytes(32) for _ in range(20)}) == 20
    # a length-prefixed seed: b"ab" and b"a" must not share a stream prefix
    assert SeededRng(b"ab").randbytes(32) != SeededRng(b"a").randbytes(32)


@given(st.integers(1, 2**300), st.integers(0, 2**64))
def test_below_stays_in_range(bound: int, seed: int) -> None:
    rng = SeededRng(seed)
    for _ in range(5):
        assert 0 <= rng.below(bound) < bound


def test_below_covers_small_range_and_rejects_bad_bound() -> None:
    rng = SeededRng(7)
    assert {rng.below(5) for _ in range(200)} == {0, 1, 2, 3, 4}
    assert {rng.below(1) for _ in range(10)} == {0}
    for bad in (0, -1):
        with pytest.raises(ValueError):
            rng.below(bad)


def test_scalars_are_nonzero_and_reduced() -> None:
    for rng in (SeededRng(3), SystemRng(), default_rng()):
        for _ in range(50):
            k = rng.scalar()
            assert 1 <= k < N


def test_system_rng_is_not_constant() -> None:
    rng = SystemRng()
    assert len(rng.randbytes(17)) == 17
    assert len({rng.randbytes(16) for _ in range(10)}) == 10


# -- transcript -------------------------------------------------------------------------
def _challenge(protocol: bytes, context: bytes, items: list[tuple[bytes, bytes]]) -> int:
    t = Transcript(protocol, context)
    for label, data in items:
        t.append(label, data)
    return t.challenge(b"c")


def test_transcript_is_deterministic_and_reduced() -> None:
    a = _challenge(b"p", b"ctx", [(b"x", b"1")])
    assert a == _challenge(b"p", b"ctx", [(b"x", b"1")])
    assert 0 <= a < N


def test_transcript_separates_everything() -> None:
    base = (b"p", b"ctx", [(b"x", b"1"), (b"y", b"2")])
    variants = [
        base,
        (b"q", b"ctx", base[2]),  # protocol
        (b"p", b"ctx2", base[2]),  # context
        (b"p", b"", base[2]),
        (b"p", b"ctx", [(b"y", b"2"), (b"x", b"1")]),  # order
        (b"p", b"ctx", [(b"x", b"1"), (b"z", b"2")]),  # label
        (b"p", b"ctx", [(b"x", b"1"), (b"y", b"3")]),  # data
        (b"p", b"ctx", [(b"x", b"1")]),  # fewer items
        (b"p", b"ctx", [(b"x", b"1"), (b"y", b"2"), (b"y", b"")]),  # empty extra item
        # framing: the same concatenated bytes split differently
        (b"p", b"ctx", [(b"x", b"12"), (b"y", b"")]),
        (b"p", b"ctx", [(b"x1", b""), (b"y", b"2")]),
        (b"pc", b"tx", base[2]),
        (b"p", b"ctxx", [(b"1", b""), (b"y", b"2")]),
    ]
    values = [_challenge(*v) for v in variants]
    assert len(set(values)) == len(values)


def test_transcript_framing_label_data_boundary() -> None:
    assert _challenge(b"p", b"", [(b"ab", b"c")]) != _challenge(b"p", b"", [(b"a", b"bc")])
    assert _challenge(b"p", b"", [(b"a", b"b"), (b"c", b"")]) != _challenge(
        b"p", b"", [(b"a", b"bc")]
    )


def test_transcript_framing_data_cannot_smuggle_a_frame() -> None:
    """Data that contains what looks like a following frame is still one item."""
    fake_frame = len(b"y").to_bytes(2, "big") + b"y"
    one = _challenge(b"p", b"", [(b"x", b"A" + fake_frame + b"B")])
    two = _challenge(b"p", b"", [(b"x", b"A"), (b"y", b"B")])
    assert one != two
    fake_frame8 = fake_frame + (1).to_bytes(8, "big")
    one = _challenge(b"p", b"", [(b"x", b"A" + fake_frame8 + b"B")])
    assert one != two


def test_transcript_challenge_label_and_chaining() -> None:
    t = Transcript(b"p")
    u = t.copy()
    assert t.challenge(b"one") != u.challenge(b"two")
    t2 = Transcript(b"p")
    first, second = t2.challenge(b"c"), t2.challenge(b"c")
    assert first != second  # each challenge is absorbed


def test_transcript_copy_is_independent() -> None:
    t = Transcript(b"p", b"c")
    t.append(b"x", b"1")
    u = t.copy()
    u.append(b"y", b"2")
    fresh = Transcript(b"p", b"c")
    fresh.append(b"x", b"1")
    assert t.copy().challenge(b"e") == fresh.challenge(b"e")
    assert t.challenge(b"e") != u.challenge(b"e")


def test_transcript_typed_appends() -> None:
    def chal(fn: object) -> int:
        t = Transcript(b"p")
        fn(t)  # type: ignore[operator]
        return t.challenge(b"c")

    ints = [chal(lambda t, v=v: t.append_int(b"i", v)) for v in (0, 1, -1, 127, 128, 255, -256)]
    assert len(set(ints)) == len(ints)
    assert chal(lambda t: t.append_point(b"P", G)) != chal(lambda t: t.append_point(b"P", H))
    assert chal(lambda t: t.append_points(b"P", [G, H])) != chal(
        lambda t: t.append_points(b"P", [H, G])
    )
    assert chal(lambda t: t.append_point(b"P", G)) == chal(lambda t: t.append(b"P", G.encode()))


# -- the error tree -----------------------------------------------------------------------
def test_error_tree_and_exit_codes() -> None:
    expected = {
        errors.BudgetExceeded: 11,
        errors.PolicyViolation: 10,
        errors.InvalidProof: 12,
        errors.QueryError: 20,
        errors.DecodeError: 13,
        errors.DkgError: 15,
        errors.ProtocolError: 14,
        errors.DlogError: 16,
        errors.LedgerError: 17,
        errors.TransportError: 18,
        errors.ConfigError: 19,
        errors.TesseraError: 1,
    }
    for cls, code in expected.items():
        assert issubclass(cls, TesseraError)
        assert errors.exit_code(cls("x")) == code, cls
    # subclasses resolve to their own code, not their parent's
    assert issubclass(errors.BudgetExceeded, errors.PolicyViolation)
    assert issubclass(errors.DkgError, errors.ProtocolError)
    # the value-like errors are also ValueError, so generic callers can catch them
    for cls in (errors.DecodeError, errors.DlogError, errors.QueryError):
        assert issubclass(cls, ValueError)
    assert not issubclass(errors.InvalidProof, ValueError)

    # a subclass nobody listed falls back to its nearest listed ancestor
    class Custom(errors.InvalidProof):
        pass

    assert errors.exit_code(Custom("x")) == 12
    err = errors.LedgerError("reverted", reason="budget")
    assert err.reason == "budget" and str(err) == "reverted"
    assert errors.LedgerError("no reason").reason is None
