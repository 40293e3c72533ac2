"""The secp256k1 group (SEC 2 §2.4.1) as point and scalar types over coincurve.

coincurve (libsecp256k1) refuses the identity point and the zero scalar; this
wrapper handles both, so that homomorphic sums that cancel out, zero messages
and zero coefficients behave as the algebra says. Points are immutable and
cache their 33-byte SEC1 compressed encoding; the identity encodes as 33 zero
bytes (SEC1 uses a single zero byte; a fixed width keeps every wire type
fixed-size).

Variable-base multi-scalar products used by verifiers go through
:func:`msm`, which folds a term on the base point ``G`` into libsecp256k1's
variable-time double multiplication reached through ECDSA public-key recovery
(see ``_double_mul``): about one variable-base multiplication per term.
Operations on secrets use libsecp256k1's constant-time paths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import cache

from coincurve import PublicKey

from tessera.errors import DecodeError

#: Field prime of secp256k1.
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
#: Order of the group (the scalar modulus).
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_LEN = 33
SCALAR_LEN = 32
_IDENTITY_BYTES = bytes(POINT_LEN)

#: Domain-separation tag of the hash-to-curve below (documented in docs/decisions.md).
H2C_DST = b"tessera/v1/secp256k1/try-and-increment/sha256"


class Point:
    """A point of secp256k1, the identity included. Immutable."""

    __slots__ = ("_enc", "_pk")

    def __init__(self, pk: PublicKey | None, enc: bytes | None = None) -> None:
        self._pk = pk
        self._enc = enc

    # -- construction ---------------------------------------------------------
    @classmethod
    def identity(cls) -> Point:
        return _IDENTITY

    @classmethod
    def decode(cls, data: bytes) -> Point:
        """Strictly decode 33 bytes: SEC1 compressed, or 33 zero bytes for the identity."""
        if not isinstance(data, bytes | bytearray) or len(data) != POINT_LEN:
            raise DecodeError(f"point: expected {POINT_LEN} bytes, got {_len(data)}")
        data = bytes(data)
        if data == _IDENTITY_BYTES:
            return _IDENTITY
        if data[0] not in (2, 3):
            raise DecodeError("point: bad SEC1 prefix (want 0x02 or 0x03)")
        if int.from_bytes(data[1:], "big") >= P:
            raise DecodeError("point: x-coordinate not reduced modulo p")
        try:
            pk = PublicKey(data)
        except ValueError as exc:
            raise DecodeError("point: not on secp256k1") from exc
        return cls(pk, data)

    # -- encoding -------------------------------------------------------------
    def encode(self) -> bytes:
        if self._enc is None:
            self._enc = _IDENTITY_BYTES if self._pk is None else self._pk.format(compressed=True)
        return self._enc

    def __bytes__(self) -> bytes:
        return self.encode()

    @property
    def is_identity(self) -> bool:
        return self._pk is None

    # -- group law ------------------------------------------------------------
    def __add__(self, other: Point) -> Point:
        if self._pk is None:
            return other
        if other._pk is None:
            return self
        try:
            return Point(PublicKey.combine_keys([self._pk, other._pk]))
        except ValueError:  # P + (-P): libsecp256k1 refuses to return the identity
            return _IDENTITY

    def __neg__(self) -> Point:
        if self._pk is None:
            return self
        enc = self.encode()
        flipped = bytes([enc[0] ^ 1]) + enc[1:]
        return Point(PublicKey(flipped), flipped)

    def __sub__(self, other: Point) -> Point:
        return self + (-other)

    def __mul__(self, k: int) -> Point:
        """Constant-time scalar multiplication (safe for secret ``k``)."""
        k %= N
        if k == 0 or self._pk is None:
            return _IDENTITY
        return Point(self._pk.multiply(k.to_bytes(SCALAR_LEN, "big")))

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        return "Point(identity)" if self._pk is None else f"Point({self.encode().hex()[:18]}…)"

    @property
    def x(self) -> int:
        """Affine x-coordinate (not defined for the identity)."""
        if self._pk is None:
            raise ValueError("the identity has no affine coordinates")
        return int.from_bytes(self.encode()[1:], "big")


_IDENTITY = Point(None, _IDENTITY_BYTES)


def _len(data: object) -> str:
    return str(len(data)) if isinstance(data, bytes | bytearray) else type(data).__name__


def base_mul(k: int) -> Point:
    """``k·G`` with libsecp256k1's constant-time generator multiplication."""
    k %= N
    if k == 0:
        return _IDENTITY
    return Point(PublicKey.from_secret(k.to_bytes(SCALAR_LEN, "big")))


G = base_mul(1)


def point_sum(points: Iterable[Point]) -> Point:
    """Sum of many points in one libsecp256k1 call (identities skipped)."""
    pks = [p._pk for p in points if p._pk is not None]
    if not pks:
        return _IDENTITY
    if len(pks) == 1:
        return Point(pks[0])
    try:
        return Point(PublicKey.combine_keys(pks))
    except ValueError:
        return _IDENTITY


def walk(start: Point, step: Point, count: int) -> tuple[bytes, Point, int | None]:
    """Visit ``start + k·step`` for ``k < count``; the hot loop of baby-step giant-step.

    Returns the 8-byte x-prefixes of the visited points concatenated, the next
    point, and the first ``k`` at which the walk hit the identity (then stops).
    """
    out = bytearray()
    pk = start._pk
    step_pk = step._pk
    if step_pk is None:
        raise ValueError("walk: step must not be the identity")
    combine = PublicKey.combine_keys
    for k in range(count):
        if pk is None:
            return bytes(out), _IDENTITY, k
        out += pk.format(compressed=True)[1:9]
        try:
            pk = combine([pk, step_pk])
        except ValueError:
            pk = None
    return bytes(out), (_IDENTITY if pk is None else Point(pk)), None


def _double_mul(u1: int, u2: int, q: Point) -> Point:
    """Variable-time ``u1·G + u2·q`` through ECDSA public-key recovery.

    ``secp256k1_ecdsa_recover`` returns ``r⁻¹(s·R − z·G)`` where ``R`` is the
    point with x-coordinate ``r`` and y-parity ``recid``. Choosing ``R = q``,
    ``s = u2·r`` and ``z = −u1·r`` yields ``u1·G + u2·q``. Only for public
    scalars: the recovery path is not constant-time.
    """
    u1 %= N
    u2 %= N
    if u2 == 0 or q._pk is None:
        return base_mul(u1)
    enc = q.encode()
    r = int.from_bytes(enc[1:], "big")
    if r >= N:  # x in [n, p): probability ~2^-128, take the generic path
        return base_mul(u1) + q * u2
    s = u2 * r % N
    z = (-u1 * r) % N
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([enc[0] - 2])
    try:
        return Point(PublicKey.from_signature_and_message(sig, z.to_bytes(32, "big"), hasher=None))
    except ValueError:  # the result is the identity
        return _IDENTITY


def msm(scalars: Sequence[int], points: Sequence[Point]) -> Point:
    """Variable-time multi-scalar multiplication ``Σ kᵢ·Pᵢ`` for public inputs.

    A term on ``G`` (or, failing that, nothing) rides along with the first
    variable-base term, so ``k`` terms cost about ``k − 1`` multiplications
    when one of them is on ``G``.
    """
    if len(scalars) != len(points):
        raise ValueError("msm: scalars and points differ in length")
    g_coeff = 0
    rest: list[tuple[int, Point]] = []
    for k, pt in zip(scalars, points, strict=True):
        if pt._pk is None or k % N == 0:
            continue
        if pt == G:
            g_coeff += k
        else:
            rest.append((k, pt))
    if not rest:
        return base_mul(g_coeff)
    parts = [_double_mul(g_coeff, rest[0][0], rest[0][1])]
    parts.extend(_double_mul(0, k, pt) for k, pt in rest[1:])
    return point_sum(parts)


def mul_public(k: int, q: Point) -> Point:
    """Variable-time ``k·q`` for a public scalar ``k``."""
    return _double_mul(0, k, q)


# -- scalars ------------------------------------------------------------------
def encode_scalar(k: int) -> bytes:
    if not 0 <= k < N:
        raise ValueError("scalar out of range")
    return k.to_bytes(SCALAR_LEN, "big")


def decode_scalar(data: bytes) -> int:
    """Strictly decode 32 big-endian bytes into a scalar ``< N``."""
    if not isinstance(data, bytes | bytearray) or len(data) != SCALAR_LEN:
        raise DecodeError(f"scalar: expected {SCALAR_LEN} bytes, got {_len(data)}")
    k = int.from_bytes(data, "big")
    if k >= N:
        raise DecodeError("scalar: not reduced modulo the group order")
    return k


def inv(k: int) -> int:
    """Inverse modulo the group order."""
    if k % N == 0:
        raise ZeroDivisionError("zero has no inverse modulo the group order")
    return pow(k, -1, N)


# -- hash to curve ------------------------------------------------------------
def hash_to_point(label: bytes) -> Point:
    """Deterministic point with unknown discrete log, by try-and-increment.

    For ``ctr = 0, 1, …``: ``x = SHA-256(DST ‖ len(label) ‖ label ‖ ctr) mod p``;
    the first ``x`` for which ``x³ + 7`` is a square gives the point with even
    ``y`` (prefix 0x02). Inputs are public, so the variable time leaks nothing.
    """
    for ctr in range(256):
        digest = hashlib.sha256(
            H2C_DST + len(label).to_bytes(4, "big") + label + ctr.to_bytes(4, "big")
        ).digest()
        x = int.from_bytes(digest, "big") % P
        rhs = (pow(x, 3, P) + 7) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            return Point.decode(b"\x02" + x.to_bytes(32, "big"))
    raise AssertionError("hash_to_point: no square in 256 tries")  # probability 2^-256


@cache
def generator(name: str) -> Point:
    """Named independent generator, e.g. ``generator("H")`` or ``generator("G/17")``."""
    return hash_to_point(name.encode())


H = generator("H")
