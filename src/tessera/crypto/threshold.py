"""Threshold decryption and key switching for t-of-n ElGamal (Shamir79, DF89, Drynx §IV).

Computing node ``i`` holds the Shamir share ``xᵢ`` of the collective secret
``x`` and its public share ``Kᵢ = xᵢ·G``. For a ciphertext ``C = (C1, C2)``:

* a *partial decryption* is ``Dᵢ = xᵢ·C1`` with a DLEQ proof
  ``log_G Kᵢ = log_{C1} Dᵢ``; any ``t`` valid ones give ``m·G = C2 − Σ λᵢ·Dᵢ``;
* a *key-switch share* towards a public key ``A`` is
  ``(Uᵢ, Wᵢ) = (vᵢ·G, −xᵢ·C1 + vᵢ·A)`` with a proof of that linear relation;
  any ``t`` valid ones give ``(Σ λᵢ·Uᵢ, C2 + Σ λᵢ·Wᵢ)``, an encryption of the
  same ``m`` under ``A``.

Shares carry no Lagrange coefficient (unlike DESIGN §4's formula), so the
combiner may pick *any* ``t`` valid shares, after excluding invalid ones,
without another round. Each share is bound to a context (query id, node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from tessera.crypto.elgamal import Ciphertext
from tessera.crypto.group import POINT_LEN, G, N, Point, base_mul, point_sum
from tessera.crypto.proofs import (
    LinearProof,
    LinearStatement,
    dleq_statement,
    prove_linear,
    verify_linear,
)
from tessera.crypto.rng import Rng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, InvalidProof, ProtocolError

_S = TypeVar("_S", "PartialDecryption", "KeySwitchShare")
_PARTIAL = b"tessera/partial-decryption/v1"
_KEYSWITCH = b"tessera/key-switch/v1"


def lagrange_at_zero(index: int, indices: Sequence[int]) -> int:
    """Lagrange coefficient ``λᵢ`` of ``index`` for interpolation at 0 over ``indices``."""
    if index not in indices or len(set(indices)) != len(indices):
        raise ValueError("lagrange_at_zero: index must appear once among distinct indices")
    num, den = 1, 1
    for j in indices:
        if j != index:
            num = num * j % N
            den = den * (j - index) % N
    return num * pow(den, -1, N) % N


def _context(context: bytes, index: int) -> bytes:
    return context + b"/node/" + index.to_bytes(4, "big")


# -- partial decryption -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PartialDecryption:
    index: int
    d: Point
    proof: LinearProof

    def encode(self) -> bytes:
        return self.index.to_bytes(4, "big") + self.d.encode() + self.proof.encode()

    @classmethod
    def decode(cls, data: bytes) -> PartialDecryption:
        if len(data) != 4 + POINT_LEN + 64:
            raise DecodeError(f"partial decryption: expected {4 + POINT_LEN + 64} bytes")
        return cls(
            int.from_bytes(data[:4], "big"),
            Point.decode(data[4 : 4 + POINT_LEN]),
            LinearProof.decode(data[4 + POINT_LEN :], 1),
        )


def partial_decrypt(
    context: bytes, index: int, share: int, ct: Ciphertext, rng: Rng
) -> PartialDecryption:
    d = ct.c1 * share
    stmt = dleq_statement(G, base_mul(share), ct.c1, d)
    proof = prove_linear(Transcript(_PARTIAL, _context(context, index)), stmt, [share], rng)
    return PartialDecryption(index, d, proof)


def verify_partial(
    context: bytes, public_share: Point, ct: Ciphertext, part: PartialDecryption
) -> None:
    stmt = dleq_statement(G, public_share, ct.c1, part.d)
    verify_linear(Transcript(_PARTIAL, _context(context, part.index)), stmt, part.proof)


def combine_partials(ct: Ciphertext, parts: Sequence[PartialDecryption], threshold: int) -> Point:
    """``m·G`` from ``threshold`` already-verified partial decryptions."""
    chosen = _pick(parts, threshold)
    idx = [p.index for p in chosen]
    xc1 = point_sum(p.d * lagrange_at_zero(p.index, idx) for p in chosen)
    return ct.c2 - xc1


# -- key switching ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeySwitchShare:
    index: int
    u: Point
    w: Point
    proof: LinearProof

    def encode(self) -> bytes:
        return (
            self.index.to_bytes(4, "big") + self.u.encode() + self.w.encode() + self.proof.encode()
        )

    @classmethod
    def decode(cls, data: bytes) -> KeySwitchShare:
        want = 4 + 2 * POINT_LEN + 96
        if len(data) != want:
            raise DecodeError(f"key-switch share: expected {want} bytes, got {len(data)}")
        return cls(
            int.from_bytes(data[:4], "big"),
            Point.decode(data[4 : 4 + POINT_LEN]),
            Point.decode(data[4 + POINT_LEN : 4 + 2 * POINT_LEN]),
            LinearProof.decode(data[4 + 2 * POINT_LEN :], 2),
        )


def _keyswitch_statement(
    public_share: Point, target_key: Point, ct: Ciphertext, u: Point, w: Point
) -> LinearStatement:
    zero = Point.identity()
    # witnesses (xᵢ, vᵢ): Kᵢ = xᵢG; U = vᵢG; W = xᵢ(−C1) + vᵢA
    return LinearStatement(
        ((G, zero), (zero, G), (-ct.c1, target_key)),
        (public_share, u, w),
    )


def key_switch_share(
    context: bytes,
    index: int,
    share: int,
    ct: Ciphertext,
    target_key: Point,
    rng: Rng,
) -> KeySwitchShare:
    v = rng.scalar()
    u = base_mul(v)
    w = target_key * v - ct.c1 * share
    stmt = _keyswitch_statement(base_mul(share), target_key, ct, u, w)
    proof = prove_linear(Transcript(_KEYSWITCH, _context(context, index)), stmt, [share, v], rng)
    return KeySwitchShare(index, u, w, proof)


def verify_key_switch(
    context: bytes,
    public_share: Point,
    ct: Ciphertext,
    target_key: Point,
    ks: KeySwitchShare,
) -> None:
    stmt = _keyswitch_statement(public_share, target_key, ct, ks.u, ks.w)
    verify_linear(Transcript(_KEYSWITCH, _context(context, ks.index)), stmt, ks.proof)


def combine_key_switch(
    ct: Ciphertext, shares: Sequence[KeySwitchShare], threshold: int
) -> Ciphertext:
    """The ciphertext re-encrypted under the target key, from verified shares."""
    chosen = _pick(shares, threshold)
    idx = [s.index for s in chosen]
    lams = [lagrange_at_zero(s.index, idx) for s in chosen]
    u = point_sum(s.u * lam for s, lam in zip(chosen, lams, strict=True))
    w = point_sum(s.w * lam for s, lam in zip(chosen, lams, strict=True))
    return Ciphertext(u, ct.c2 + w)


def _pick(shares: Sequence[_S], threshold: int) -> list[_S]:
    seen: dict[int, _S] = {}
    for s in shares:
        seen.setdefault(s.index, s)
    if len(seen) < threshold:
        raise ProtocolError(f"need {threshold} valid shares, have {len(seen)}")
    return [seen[i] for i in sorted(seen)[:threshold]]


def filter_valid_key_switch(
    context: bytes,
    public_shares: Mapping[int, Point],
    ct: Ciphertext,
    target_key: Point,
    shares: Sequence[KeySwitchShare],
) -> tuple[list[KeySwitchShare], list[int]]:
    """Split shares into the valid ones and the indices of the nodes whose proof failed."""
    good, bad = [], []
    for s in shares:
        try:
            if s.index not in public_shares:
                raise InvalidProof(f"key-switch share from unknown node {s.index}")
            verify_key_switch(context, public_shares[s.index], ct, target_key, s)
        except InvalidProof:
            bad.append(s.index)
        else:
            good.append(s)
    return good, bad


def filter_valid_partials(
    context: bytes,
    public_shares: Mapping[int, Point],
    ct: Ciphertext,
    parts: Sequence[PartialDecryption],
) -> tuple[list[PartialDecryption], list[int]]:
    good, bad = [], []
    for p in parts:
        try:
            if p.index not in public_shares:
                raise InvalidProof(f"partial decryption from unknown node {p.index}")
            verify_partial(context, public_shares[p.index], ct, p)
        except InvalidProof:
            bad.append(p.index)
        else:
            good.append(p)
    return good, bad
