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

Batch verification. A proof made with ``batchable=True`` also carries its
first messages (the ``2L + 3`` nonce points ``T``, uncompressed: 65 bytes each,
so no square root is needed to use them). The verifier then checks the
challenge by hashing the carried points (no curve arithmetic) and every
equation ``T = z·G − e·X`` of every proof in a batch as one random linear
combination with 128-bit weights, evaluated by one libsecp256k1 multi-scalar
multiplication (:func:`batch_verify_range`). A batch that fails is split and
re-checked down to single proofs, checked one by one, so the failing proofs are
named exactly. The challenge form ``(e, z)``
is unchanged, so a proof without the nonces verifies as before and one with them
verifies one by one too (the recomputed nonces must equal the carried ones).

The alternatives measured (ElGamal bit ciphertexts with two-equation
branches, Bulletproofs) are compared in ``docs/decisions.md``.
"""

from __future__ import annotations

import hashlib
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
from tessera.crypto.msm import failing_part, msm_encoded
from tessera.crypto.rng import Rng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, InvalidProof

_PROTOCOL = b"tessera/range-proof/v1"
MAX_BITS = 128
#: Bytes of one carried nonce point (SEC1 uncompressed; 65 zero bytes for the identity).
NONCE_LEN = 65
_NONCES_FLAG = 0x8000  # set in the 2-byte header when the nonces follow the proof
_IDENTITY_NONCE = bytes(NONCE_LEN)
_IDENTITY_ENC = bytes(POINT_LEN)
_BATCH = b"tessera/range-proof-batch/v1"


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


def nonce_count(bits: int) -> int:
    """Nonce points a batchable ``bits``-bit proof carries: two per bit, three for the link."""
    return 2 * bits + 3


def _uncompressed(p: Point) -> bytes:
    return _IDENTITY_NONCE if p._pk is None else p._pk.format(compressed=False)


def _compressed(nonce: bytes) -> bytes:
    """The 33-byte encoding of a carried nonce (the transcript's bytes): no curve arithmetic."""
    if nonce[0] == 0:
        return _IDENTITY_ENC
    return bytes((2 + (nonce[64] & 1),)) + nonce[1:33]


@dataclass(frozen=True, slots=True)
class RangeProof:
    """Bit commitments, per-bit ``(e₀, z₀, z₁)``, the common challenge and the link responses.

    ``nonces`` (optional) carries the first messages for batch verification: per bit
    ``T₀, T₁``, then the three link nonces, each :data:`NONCE_LEN` bytes."""

    commitments: tuple[Point, ...]
    e0: tuple[int, ...]
    z0: tuple[int, ...]
    z1: tuple[int, ...]
    e: int
    z_link: tuple[int, int, int]
    nonces: bytes = b""

    @property
    def bits(self) -> int:
        return len(self.commitments)

    def encode(self) -> bytes:
        head = (len(self.commitments) | (_NONCES_FLAG if self.nonces else 0)).to_bytes(2, "big")
        per_bit = b"".join(
            c.encode() + encode_scalar(a) + encode_scalar(b) + encode_scalar(d)
            for c, a, b, d in zip(self.commitments, self.e0, self.z0, self.z1, strict=True)
        )
        tail = encode_scalar(self.e) + b"".join(encode_scalar(v) for v in self.z_link)
        return head + per_bit + tail + self.nonces

    @classmethod
    def decode(cls, data: bytes) -> RangeProof:
        """Strict decoding. The carried nonces are checked for length and prefix here and
        for being on the curve where they are used (the multi-scalar multiplication parses
        each strictly; one-by-one verification compares them with the recomputed points)."""
        if len(data) < 2:
            raise DecodeError("range proof: truncated header")
        head = int.from_bytes(data[:2], "big")
        carries = bool(head & _NONCES_FLAG)
        bits = head & ~_NONCES_FLAG
        if not 1 <= bits <= MAX_BITS:
            raise DecodeError(f"range proof: {bits} bits is outside [1, {MAX_BITS}]")
        rec = POINT_LEN + 3 * SCALAR_LEN
        body = 2 + bits * rec + 4 * SCALAR_LEN
        want = body + (NONCE_LEN * nonce_count(bits) if carries else 0)
        if len(data) != want:
            raise DecodeError(f"range proof: expected {want} bytes, got {len(data)}")
        nonces = bytes(data[body:])
        for k in range(0, len(nonces), NONCE_LEN):
            chunk = nonces[k : k + NONCE_LEN]
            if chunk[0] != 4 and chunk != _IDENTITY_NONCE:
                raise DecodeError("range proof: a carried nonce is not SEC1 uncompressed")
        data = data[:body]
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
        return cls(
            tuple(cs),
            tuple(e0),
            tuple(z0),
            tuple(z1),
            tail[0],
            (tail[1], tail[2], tail[3]),
            nonces,
        )


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
    *,
    batchable: bool = False,
) -> RangeProof:
    """Prove ``ct = Enc_K(m; r)`` with ``lo ≤ m ≤ hi``; with ``batchable``, the proof also
    carries its nonces so that :func:`batch_verify_range` can check it in a batch."""
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
    nonces = b"".join(_uncompressed(p) for p in (*t_pairs, *link_t)) if batchable else b""
    return RangeProof(tuple(commitments), tuple(e0), tuple(z0), tuple(z1), e, z_link, nonces)


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
    if proof.nonces and proof.nonces != b"".join(_uncompressed(p) for p in (*t_pairs, *link_t)):
        raise InvalidProof("range proof: carried nonces differ from the recomputed ones")


# -- batch verification -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RangeClaim:
    """One range proof to check: the arguments of :func:`verify_range`."""

    context: bytes
    public_key: Point
    ct: Ciphertext
    lo: int
    hi: int
    proof: RangeProof


def _challenge_from_nonces(c: RangeClaim) -> bool:
    """Whether ``c`` carries well-formed nonces that hash to its challenge (hashing only)."""
    pf = c.proof
    bits = pf.bits
    if c.hi < c.lo or bits != bit_length_for(c.lo, c.hi):
        return False
    if not (len(pf.e0) == len(pf.z0) == len(pf.z1) == bits):
        return False
    if len(pf.nonces) != NONCE_LEN * nonce_count(bits):
        return False
    chunks = [pf.nonces[k : k + NONCE_LEN] for k in range(0, len(pf.nonces), NONCE_LEN)]
    if any(ch[0] != 4 and ch != _IDENTITY_NONCE for ch in chunks):
        return False
    t = Transcript(_PROTOCOL, c.context)
    _absorb_statement(t, c.public_key, c.ct, c.lo, c.hi, bits)
    t.append_points(b"bit-commitments", pf.commitments)
    t.append(b"bit-nonces", b"".join(_compressed(ch) for ch in chunks[: 2 * bits]))
    t.append(b"link-nonces", b"".join(_compressed(ch) for ch in chunks[2 * bits :]))
    return t.challenge(b"range") == pf.e


def _batch_weights(claims: Sequence[RangeClaim], count: int, rng: Rng | None) -> list[int]:
    """``count`` non-zero 128-bit weights: from ``rng``, or else from SHAKE-256 of every
    claim in the batch (statement and proof), so no proof can be chosen after its weights."""
    if rng is not None:
        return [1 + rng.below((1 << 128) - 1) for _ in range(count)]
    h = hashlib.shake_256(_BATCH)
    for c in claims:
        for part in (
            c.context,
            c.public_key.encode(),
            c.ct.encode(),
            c.lo.to_bytes(32, "big", signed=True),
            c.hi.to_bytes(32, "big", signed=True),
            c.proof.encode(),
        ):
            h.update(len(part).to_bytes(8, "big") + part)
    stream = h.digest(16 * count)
    return [int.from_bytes(stream[k : k + 16], "big") or 1 for k in range(0, len(stream), 16)]


def _combination_vanishes(claims: Sequence[RangeClaim], rng: Rng | None) -> bool:
    """One multi-scalar multiplication: ``Σ ρ·(z·G − e·X − T)`` over every equation of every
    claim (all of which carry nonces that hash to their challenge) is the identity."""
    weights = _batch_weights(claims, sum(nonce_count(c.proof.bits) for c in claims), rng)
    points: list[bytes] = []
    scalars: list[int] = []
    shared: dict[bytes, int] = {}  # G, H and the committee key: one term each
    g = h = 0
    pos = 0
    for c in claims:
        pf = c.proof
        bits = pf.bits
        e = pf.e
        nonces = pf.nonces
        rr, rd, rs = weights[pos : pos + 3]
        ws = weights[pos + 3 : pos + 3 + 2 * bits]
        pos += nonce_count(bits)
        es = e * rs
        for i, (p_i, w_i) in enumerate(
            zip(pf.commitments, _weights(c.hi - c.lo, bits), strict=True)
        ):
            ra, rb = ws[2 * i], ws[2 * i + 1]
            e0 = pf.e0[i]
            e1 = e - e0
            g += ra * pf.z0[i] + rb * pf.z1[i]  # T₀ = z₀·G − e₀·P,  T₁ = z₁·G − e₁·(P − H)
            h += rb * e1
            points.append(p_i.encode())
            scalars.append(-(ra * e0 + rb * e1 + es * w_i))  # and −e·wᵢ·Pᵢ of the link
            for k, r in ((2 * i, ra), (2 * i + 1, rb)):
                nonce = nonces[k * NONCE_LEN : (k + 1) * NONCE_LEN]
                points.append(_IDENTITY_ENC if nonce[0] == 0 else nonce)
                scalars.append(-r)
        zr, zd, zs = pf.z_link
        # T_r = zr·G − e·C1,  T_d = (zd + e·lo)·G + zr·K − e·C2,  T_s = zs·G + zd·H − e·Σwᵢ·Pᵢ
        g += rr * zr + rd * (zd + e * c.lo) + rs * zs
        h += rs * zd
        key = c.public_key.encode()
        shared[key] = shared.get(key, 0) + rd * zr
        points += (c.ct.c1.encode(), c.ct.c2.encode())
        scalars += (-rr * e, -rd * e)
        for k, r in ((2 * bits, rr), (2 * bits + 1, rd), (2 * bits + 2, rs)):
            nonce = nonces[k * NONCE_LEN : (k + 1) * NONCE_LEN]
            points.append(_IDENTITY_ENC if nonce[0] == 0 else nonce)
            scalars.append(-r)
    for enc, coeff in ((G.encode(), g), (H.encode(), h), *shared.items()):
        points.append(enc)
        scalars.append(coeff)
    try:
        return msm_encoded(points, scalars) == _IDENTITY_ENC
    except DecodeError:  # a carried nonce that is not a point: the batch fails
        return False


def batch_verify_range(
    claims: Sequence[RangeClaim], rng: Rng | None = None
) -> dict[int, InvalidProof]:
    """Check many range proofs at once; returns the failing ones by index, with the error
    :func:`verify_range` raises for each (``{}``: every proof is valid).

    Proofs that carry their nonces (``prove_range(..., batchable=True)``) and whose nonces
    hash to their challenge are checked together: every verifier equation of every proof,
    weighted by independent random 128-bit scalars (from ``rng``, or derived from the whole
    batch by SHAKE-256), summed and evaluated by one multi-scalar multiplication. If the
    sum is not the identity, the batch is split in halves, each checked as a batch, down
    to a few proofs that :func:`verify_range` checks one by one, so the cheaters are named
    exactly. Proofs without nonces, or whose nonces do not hash to their challenge, are
    checked by :func:`verify_range` directly. Nothing is sampled: a
    batch passes only if every proof would (up to a 2⁻¹²⁸ chance per batch).
    """
    failures: dict[int, InvalidProof] = {}
    batched: list[int] = []
    one_by_one: list[int] = []
    for idx, c in enumerate(claims):
        (batched if c.proof.nonces and _challenge_from_nonces(c) else one_by_one).append(idx)
    one_by_one += failing_part(
        batched, lambda idxs: _combination_vanishes([claims[i] for i in idxs], rng)
    )
    for idx in sorted(one_by_one):
        c = claims[idx]
        try:
            verify_range(c.context, c.public_key, c.ct, c.lo, c.hi, c.proof)
        except InvalidProof as exc:
            failures[idx] = exc
    return failures
