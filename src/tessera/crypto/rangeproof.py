"""Range proof for ElGamal ciphertexts: bit commitments with CDS OR-proofs and a Sigma link.

Statement: ciphertext ``C = (r·G, m·G + r·K)`` under key ``K`` encrypts
``m ∈ [a, b]``. Let ``d = m − a`` and ``B = b − a < 2^L``. The prover writes
``d = Σ wᵢ·bᵢ`` with bits ``bᵢ`` and weights ``wᵢ = 2^i`` for ``i < L−1`` and
``w_{L−1} = B − 2^{L−1} + 1``: every bit pattern gives a value in ``[0, B]``
and every value in ``[0, B]`` has a pattern, so one ``L``-bit proof covers any
interval (no second proof for the upper bound).

* Bit commitments are Pedersen commitments ``Pᵢ = bᵢ·H + sᵢ·G``; each carries a
  one-equation OR proof ``Pᵢ = sᵢ·G  ∨  Pᵢ − H = sᵢ·G``. With the blinding on
  ``G`` every verifier equation is ``z·G − e·X``: one libsecp256k1
  double-multiplication, so ``2L`` of them verify the bits.
* A link proof shows knowledge of ``(r, d, s)`` with ``C1 = r·G``,
  ``C2 − a·G = d·G + r·K`` and ``Σ wᵢ·Pᵢ = d·H + s·G``.
* All branches and the link share one Fiat–Shamir challenge ``e``, bound to the
  context, ``K``, ``C``, ``[a, b]`` and every commitment.

The alternatives measured (ElGamal bit ciphertexts with two-equation
branches, Bulletproofs) are compared in ``docs/decisions.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.crypto.elgamal import Ciphertext
from tessera.crypto.group import (
    POINT_LEN,
    SCALAR_LEN,
    G,
    H,
    N,
    Point,
    _double_mul,
    base_mul,
    decode_scalar,
    encode_scalar,
    msm,
    point_sum,
)
from tessera.crypto.rng import Rng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, InvalidProof

_PROTOCOL = b"tessera/range-proof/v1"
MAX_BITS = 128


def bit_length_for(lo: int, hi: int) -> int:
    """Number of bits ``L`` the proof for ``[lo, hi]`` uses."""
    if hi < lo:
        raise ValueError(f"range proof: empty interval [{lo}, {hi}]")
    return max(1, (hi - lo).bit_length())


def _weights(span: int, bits: int) -> list[int]:
    w = [1 << i for i in range(bits - 1)]
    w.append(span - (1 << (bits - 1)) + 1)
    return w


def _decompose(d: int, span: int, bits: int) -> list[int]:
    """Bits of ``d ∈ [0, span]`` for the weights of :func:`_weights`."""
    top = 1 << (bits - 1)
    if d >= top:  # use the last weight, then the low bits for the remainder
        rest = d - (span - top + 1)
        return [(rest >> i) & 1 for i in range(bits - 1)] + [1]
    return [(d >> i) & 1 for i in range(bits - 1)] + [0]


@dataclass(frozen=True, slots=True)
class RangeProof:
    """Bit commitments, per-bit ``(e₀, z₀, z₁)``, the common challenge and the link responses."""

    commitments: tuple[Point, ...]
    e0: tuple[int, ...]
    z0: tuple[int, ...]
    z1: tuple[int, ...]
    e: int
    z_link: tuple[int, int, int]

    @property
    def bits(self) -> int:
        return len(self.commitments)

    def encode(self) -> bytes:
        head = len(self.commitments).to_bytes(2, "big")
        per_bit = b"".join(
            c.encode() + encode_scalar(a) + encode_scalar(b) + encode_scalar(d)
            for c, a, b, d in zip(self.commitments, self.e0, self.z0, self.z1, strict=True)
        )
        tail = encode_scalar(self.e) + b"".join(encode_scalar(v) for v in self.z_link)
        return head + per_bit + tail

    @classmethod
    def decode(cls, data: bytes) -> RangeProof:
        if len(data) < 2:
            raise DecodeError("range proof: truncated header")
        bits = int.from_bytes(data[:2], "big")
        if not 1 <= bits <= MAX_BITS:
            raise DecodeError(f"range proof: {bits} bits is outside [1, {MAX_BITS}]")
        rec = POINT_LEN + 3 * SCALAR_LEN
        want = 2 + bits * rec + 4 * SCALAR_LEN
        if len(data) != want:
            raise DecodeError(f"range proof: expected {want} bytes, got {len(data)}")
        cs, e0, z0, z1 = [], [], [], []
        pos = 2
        for _ in range(bits):
            cs.append(Point.decode(data[pos : pos + POINT_LEN]))
            pos += POINT_LEN
            e0.append(decode_scalar(data[pos : pos + SCALAR_LEN]))
            z0.append(decode_scalar(data[pos + SCALAR_LEN : pos + 2 * SCALAR_LEN]))
            z1.append(decode_scalar(data[pos + 2 * SCALAR_LEN : pos + 3 * SCALAR_LEN]))
            pos += 3 * SCALAR_LEN
        tail = [decode_scalar(data[p : p + SCALAR_LEN]) for p in range(pos, len(data), SCALAR_LEN)]
        return cls(tuple(cs), tuple(e0), tuple(z0), tuple(z1), tail[0], (tail[1], tail[2], tail[3]))


def _weighted_sum(weights: Sequence[int], points: Sequence[Point]) -> Point:
    """``Σ wᵢ·Pᵢ`` with powers of two by Horner (additions only) and one multiplication."""
    acc = Point.identity()
    for p in reversed(points[:-1]):
        acc = point_sum((acc, acc, p))
    last = msm([weights[-1]], [points[-1]])
    return acc + last


def _absorb_statement(
    t: Transcript, public_key: Point, ct: Ciphertext, lo: int, hi: int, bits: int
) -> None:
    t.append_point(b"K", public_key)
    t.append(b"C", ct.encode())
    t.append_int(b"lo", lo)
    t.append_int(b"hi", hi)
    t.append_int(b"bits", bits)


def prove_range(
    context: bytes,
    public_key: Point,
    ct: Ciphertext,
    m: int,
    r: int,
    lo: int,
    hi: int,
    rng: Rng,
) -> RangeProof:
    """Prove ``ct = Enc_K(m; r)`` with ``lo ≤ m ≤ hi``."""
    if not lo <= m <= hi:
        raise ValueError(f"range proof: value {m} is outside [{lo}, {hi}]")
    bits = bit_length_for(lo, hi)
    if bits > MAX_BITS:
        raise ValueError(f"range proof: interval wider than 2^{MAX_BITS}")
    span = hi - lo
    d = m - lo
    weights = _weights(span, bits)
    bvec = _decompose(d, span, bits)
    t = Transcript(_PROTOCOL, context)
    _absorb_statement(t, public_key, ct, lo, hi, bits)

    s = [rng.scalar() for _ in range(bits)]
    commitments = [base_mul(si) + H if bi else base_mul(si) for si, bi in zip(s, bvec, strict=True)]
    k = [rng.scalar() for _ in range(bits)]
    e_sim = [rng.scalar() for _ in range(bits)]
    z_sim = [rng.scalar() for _ in range(bits)]
    t_pairs: list[Point] = []
    for i in range(bits):
        real = base_mul(k[i])
        shifted = commitments[i] - H
        if bvec[i]:  # simulate branch 0: T0 = z·G − e·P
            sim = _double_mul(z_sim[i], -e_sim[i], commitments[i])
            t_pairs += (sim, real)
        else:  # simulate branch 1: T1 = z·G − e·(P − H)
            sim = _double_mul(z_sim[i], -e_sim[i], shifted)
            t_pairs += (real, sim)
    t.append_points(b"bit-commitments", commitments)
    t.append_points(b"bit-nonces", t_pairs)

    s_total = sum(w * si for w, si in zip(weights, s, strict=True)) % N
    kr, kd, ks = rng.scalar(), rng.scalar(), rng.scalar()
    link_t = (base_mul(kr), base_mul(kd) + public_key * kr, H * kd + base_mul(ks))
    t.append_points(b"link-nonces", link_t)
    e = t.challenge(b"range")

    e0, z0, z1 = [], [], []
    for i in range(bits):
        e_real = (e - e_sim[i]) % N
        z_real = (k[i] + e_real * s[i]) % N
        if bvec[i]:
            e0.append(e_sim[i])
            z0.append(z_sim[i])
            z1.append(z_real)
        else:
            e0.append(e_real)
            z0.append(z_real)
            z1.append(z_sim[i])
    z_link = ((kr + e * r) % N, (kd + e * d) % N, (ks + e * s_total) % N)
    return RangeProof(tuple(commitments), tuple(e0), tuple(z0), tuple(z1), e, z_link)


def verify_range(
    context: bytes,
    public_key: Point,
    ct: Ciphertext,
    lo: int,
    hi: int,
    proof: RangeProof,
) -> None:
    """Return ``None`` if ``proof`` shows ``ct`` encrypts a value in ``[lo, hi]``; else raise."""
    bits = bit_length_for(lo, hi)
    if proof.bits != bits:
        raise InvalidProof(f"range proof: {proof.bits} bit commitments, interval needs {bits}")
    t = Transcript(_PROTOCOL, context)
    _absorb_statement(t, public_key, ct, lo, hi, bits)
    e = proof.e
    t_pairs: list[Point] = []
    for c, e0, z0, z1 in zip(proof.commitments, proof.e0, proof.z0, proof.z1, strict=True):
        e1 = (e - e0) % N
        t_pairs.append(_double_mul(z0, -e0, c))
        t_pairs.append(_double_mul(z1, -e1, c - H))
    t.append_points(b"bit-commitments", proof.commitments)
    t.append_points(b"bit-nonces", t_pairs)

    p_total = _weighted_sum(_weights(hi - lo, bits), proof.commitments)
    zr, zd, zs = proof.z_link
    shifted_c2 = ct.c2 - base_mul(lo)
    link_t = (
        _double_mul(zr, -e, ct.c1),
        msm([zd, zr, -e], [G, public_key, shifted_c2]),
        msm([zd, zs, -e], [H, G, p_total]),
    )
    t.append_points(b"link-nonces", link_t)
    if t.challenge(b"range") != e:
        raise InvalidProof("range proof: challenge mismatch")
