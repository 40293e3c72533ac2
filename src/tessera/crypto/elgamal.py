"""Exponential ElGamal over secp256k1 (ElGamal85; additive variant, CGS97).

``Enc_K(m; r) = (r·G, m·G + r·K)``. Ciphertexts add, scale by public integers
and re-randomize; decryption yields the point ``m·G``, from which
:mod:`tessera.crypto.dlog` recovers a bounded ``m``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tessera.crypto.group import POINT_LEN, G, N, Point, base_mul, point_sum
from tessera.crypto.rng import Rng
from tessera.errors import DecodeError

CIPHERTEXT_LEN = 2 * POINT_LEN


@dataclass(frozen=True, slots=True)
class Ciphertext:
    """An exponential-ElGamal ciphertext ``(c1, c2)``."""

    c1: Point
    c2: Point

    @classmethod
    def zero(cls) -> Ciphertext:
        """The trivial encryption of 0 (identity of the homomorphic addition)."""
        return cls(Point.identity(), Point.identity())

    def __add__(self, other: Ciphertext) -> Ciphertext:
        return Ciphertext(self.c1 + other.c1, self.c2 + other.c2)

    def __sub__(self, other: Ciphertext) -> Ciphertext:
        return Ciphertext(self.c1 - other.c1, self.c2 - other.c2)

    def __neg__(self) -> Ciphertext:
        return Ciphertext(-self.c1, -self.c2)

    def __mul__(self, k: int) -> Ciphertext:
        """Multiplication by a public integer (negative allowed)."""
        return Ciphertext(self.c1 * k, self.c2 * k)

    __rmul__ = __mul__

    def add_plain(self, m: int) -> Ciphertext:
        """Add a public plaintext without new randomness."""
        return Ciphertext(self.c1, self.c2 + base_mul(m))

    def rerandomize(self, public_key: Point, rng: Rng) -> Ciphertext:
        return self + encrypt(public_key, 0, rng)

    def encode(self) -> bytes:
        return self.c1.encode() + self.c2.encode()

    @classmethod
    def decode(cls, data: bytes) -> Ciphertext:
        if len(data) != CIPHERTEXT_LEN:
            raise DecodeError(f"ciphertext: expected {CIPHERTEXT_LEN} bytes, got {len(data)}")
        return cls(Point.decode(data[:POINT_LEN]), Point.decode(data[POINT_LEN:]))


def keygen(rng: Rng) -> tuple[int, Point]:
    """A secret key ``x`` and its public key ``x·G``."""
    x = rng.scalar()
    return x, base_mul(x)


def encrypt_with(public_key: Point, m: int, r: int) -> Ciphertext:
    """Deterministic encryption with explicit randomness ``r`` (for proofs and vectors)."""
    return Ciphertext(base_mul(r), base_mul(m) + public_key * r)


def encrypt(public_key: Point, m: int, rng: Rng) -> Ciphertext:
    return encrypt_with(public_key, m, rng.scalar())


def encrypt_many(public_key: Point, ms: Sequence[int], rng: Rng) -> list[Ciphertext]:
    """Encrypt a vector of integers, each with fresh randomness."""
    return [encrypt(public_key, m, rng) for m in ms]


def encrypt_many_with(public_key: Point, ms: Sequence[int], rs: Sequence[int]) -> list[Ciphertext]:
    if len(ms) != len(rs):
        raise ValueError("encrypt_many_with: one randomness per message")
    return [encrypt_with(public_key, m, r) for m, r in zip(ms, rs, strict=True)]


def decrypt_to_point(secret_key: int, ct: Ciphertext) -> Point:
    """``m·G = c2 − x·c1``."""
    return ct.c2 - ct.c1 * secret_key


def add_all(cts: Iterable[Ciphertext]) -> Ciphertext:
    """Homomorphic sum of many ciphertexts in two libsecp256k1 calls."""
    cts = list(cts)
    return Ciphertext(point_sum(c.c1 for c in cts), point_sum(c.c2 for c in cts))


def add_vectors(vectors: Sequence[Sequence[Ciphertext]]) -> list[Ciphertext]:
    """Element-wise homomorphic sum of equally long ciphertext vectors."""
    if not vectors:
        return []
    width = len(vectors[0])
    if any(len(v) != width for v in vectors):
        raise ValueError("add_vectors: vectors differ in length")
    return [add_all(v[i] for v in vectors) for i in range(width)]


def encodes(public_key: Point, ct: Ciphertext, m: int, r: int) -> bool:
    """Whether ``ct`` is ``Enc_K(m; r)`` (for tests and vector checks)."""
    return ct == encrypt_with(public_key, m % N, r)


__all__ = [
    "CIPHERTEXT_LEN",
    "Ciphertext",
    "G",
    "add_all",
    "add_vectors",
    "decrypt_to_point",
    "encodes",
    "encrypt",
    "encrypt_many",
    "encrypt_many_with",
    "encrypt_with",
    "keygen",
]
