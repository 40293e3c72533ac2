"""Sigma proofs of linear relations (Maurer09), their OR composition (CDS94), made non-interactive.

A *linear relation* states that public points ``Y_j`` are known linear
combinations of public bases: ``Y_j = Σ_k w_k · M[j][k]`` for a secret witness
vector ``w``. Schnorr (knowledge of a discrete log), Chaum–Pedersen DLEQ, the
correctness of a key-switch share and the link between an ElGamal ciphertext
and a Pedersen commitment are all instances. A zero base is written as the
identity point.

Proofs are in *challenge form* ``(e, z_1..z_k)``: the verifier recomputes the
commitments ``T_j = Σ_k z_k M[j][k] − e·Y_j``, hashes them with the statement
into the same :class:`~tessera.crypto.transcript.Transcript`, and compares.
Verification returns ``None`` or raises :class:`~tessera.errors.InvalidProof`.
Each ``T_j`` is one libsecp256k1 ``ecmult_multi`` call straight to its encoding
(:func:`~tessera.crypto.msm.msm_encoded`: the transcript needs the bytes only, so
no point object is built).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.crypto.group import (
    POINT_LEN,
    SCALAR_LEN,
    G,
    N,
    Point,
    base_mul,
    decode_scalar,
    encode_scalar,
    msm,
    point_sum,
)
from tessera.crypto.group import P as _P
from tessera.crypto.msm import failing_part, msm_encoded
from tessera.crypto.rng import Rng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, InvalidProof


@dataclass(frozen=True, slots=True)
class LinearStatement:
    """``targets[j] = Σ_k w_k · bases[j][k]`` for a secret ``w``."""

    bases: tuple[tuple[Point, ...], ...]
    targets: tuple[Point, ...]

    def __post_init__(self) -> None:
        if not self.bases or len(self.bases) != len(self.targets):
            raise ValueError("linear statement: one target per row of bases")
        width = len(self.bases[0])
        if width == 0 or any(len(row) != width for row in self.bases):
            raise ValueError("linear statement: rows of bases differ in width")

    @property
    def width(self) -> int:
        return len(self.bases[0])

    def absorb(self, t: Transcript) -> None:
        t.append_int(b"rows", len(self.bases))
        t.append_int(b"cols", self.width)
        for row in self.bases:
            t.append_points(b"bases", row)
        t.append_points(b"targets", self.targets)

    def commit(self, nonces: Sequence[int]) -> list[Point]:
        """Prover's first message ``T_j = Σ_k a_k M[j][k]`` (constant time in the nonces)."""
        return [_lincomb_secret(nonces, row) for row in self.bases]

    def recompute(self, e: int, z: Sequence[int]) -> list[Point]:
        """Verifier's ``T_j = Σ_k z_k M[j][k] − e·Y_j`` (variable time, public inputs)."""
        return [msm([*z, -e], [*row, y]) for row, y in zip(self.bases, self.targets, strict=True)]

    def recompute_encoded(self, e: int, z: Sequence[int]) -> bytes:
        """The encodings of :meth:`recompute`'s points, concatenated (what the transcript
        absorbs): one native multi-scalar multiplication per row, no point decoded."""
        scalars = [*z, -e]
        return b"".join(
            msm_encoded([*(p.encode() for p in row), y.encode()], scalars)
            for row, y in zip(self.bases, self.targets, strict=True)
        )

    def holds_for(self, witness: Sequence[int]) -> bool:
        return self.commit(witness) == list(self.targets)


def _lincomb_secret(scalars: Sequence[int], points: Sequence[Point]) -> Point:
    parts: list[Point] = []
    g_coeff = 0
    for k, pt in zip(scalars, points, strict=True):
        if pt == G:
            g_coeff += k
        else:
            parts.append(pt * k)
    parts.append(base_mul(g_coeff))
    return point_sum(parts)


@dataclass(frozen=True, slots=True)
class LinearProof:
    """Challenge-form proof ``(e, z)`` of a :class:`LinearStatement`; a *batchable* one
    (``prove_linear(..., batchable=True)``) also carries its commitments ``T_j``, each as
    65 uncompressed SEC1 bytes, so that :func:`batch_verify_linear` can check many proofs
    with one multi-scalar multiplication."""

    e: int
    z: tuple[int, ...]
    commitments: bytes = b""

    def encode(self) -> bytes:
        return encode_scalar(self.e) + b"".join(encode_scalar(v) for v in self.z) + self.commitments

    @classmethod
    def decode(cls, data: bytes, width: int, rows: int = 0) -> LinearProof:
        """``width + 1`` scalars, followed (if ``rows``) by ``rows`` carried commitments,
        or not: both forms decode."""
        plain = SCALAR_LEN * (width + 1)
        sizes = (plain, plain + _UNCOMPRESSED * rows) if rows else (plain,)
        if len(data) not in sizes:
            raise DecodeError(
                f"linear proof: expected {' or '.join(map(str, sizes))} bytes, got {len(data)}"
            )
        vals = [decode_scalar(data[i : i + SCALAR_LEN]) for i in range(0, plain, SCALAR_LEN)]
        return cls(vals[0], tuple(vals[1:]), bytes(data[plain:]))


_UNCOMPRESSED = 65


_IDENTITY_UNCOMPRESSED = bytes(_UNCOMPRESSED)


def _uncompressed(pt: Point) -> bytes:
    """65 bytes: SEC1 uncompressed, or 65 zero bytes for the identity (a row of zero bases)."""
    if pt.is_identity:
        return _IDENTITY_UNCOMPRESSED
    enc: bytes = pt._pk.format(compressed=False)  # type: ignore[union-attr]
    return enc


def _carried(proof: LinearProof, rows: int) -> bytes | None:
    """The carried commitments' compressed encodings (what the transcript absorbs), or
    ``None`` if they are missing, of the wrong count, or not points of the curve."""
    data = proof.commitments
    if len(data) != _UNCOMPRESSED * rows:
        return None
    out = bytearray()
    for k in range(rows):
        enc = data[k * _UNCOMPRESSED : (k + 1) * _UNCOMPRESSED]
        if enc == _IDENTITY_UNCOMPRESSED:
            out += bytes(POINT_LEN)
            continue
        x, y = int.from_bytes(enc[1:33], "big"), int.from_bytes(enc[33:], "big")
        if enc[0] != 4 or x >= _P or y >= _P or (y * y - x * x * x - 7) % _P:
            return None
        out += bytes([2 + (y & 1)]) + enc[1:33]
    return bytes(out)


def prove_linear(
    t: Transcript,
    stmt: LinearStatement,
    witness: Sequence[int],
    rng: Rng,
    *,
    batchable: bool = False,
) -> LinearProof:
    if len(witness) != stmt.width:
        raise ValueError("prove_linear: witness length differs from the statement's width")
    stmt.absorb(t)
    nonces = [rng.scalar() for _ in witness]
    commitments = stmt.commit(nonces)
    t.append_points(b"commitments", commitments)
    e = t.challenge(b"linear")
    z = tuple((a + e * w) % N for a, w in zip(nonces, witness, strict=True))
    carried = b"".join(_uncompressed(c) for c in commitments) if batchable else b""
    return LinearProof(e, z, carried)


def verify_linear(t: Transcript, stmt: LinearStatement, proof: LinearProof) -> None:
    """Check ``proof``; a batchable one must also carry exactly the recomputed commitments,
    so that this check and :func:`batch_verify_linear` accept the same proofs."""
    if len(proof.z) != stmt.width:
        raise InvalidProof("linear proof: wrong number of responses")
    stmt.absorb(t)
    recomputed = stmt.recompute_encoded(proof.e, proof.z)
    t.append(b"commitments", recomputed)
    if t.challenge(b"linear") != proof.e:
        raise InvalidProof("linear proof: challenge mismatch")
    if proof.commitments and _carried(proof, len(stmt.targets)) != recomputed:
        raise InvalidProof("linear proof: carried commitments differ from the recomputed ones")


@dataclass(frozen=True, slots=True)
class LinearClaim:
    """One proof to check in a batch: the transcript as :func:`verify_linear` would be
    given it (protocol, context and any prefix, nothing of the statement yet)."""

    transcript: Transcript
    statement: LinearStatement
    proof: LinearProof


_BATCH = b"tessera/v1/linear-batch-weights"


def batch_verify_linear(
    claims: Sequence[LinearClaim], rng: Rng | None = None
) -> dict[int, InvalidProof]:
    """Check many linear proofs at once; returns the failing ones by index, each with the
    error :func:`verify_linear` raises for it (``{}``: every proof is valid).

    Batchable proofs whose carried commitments hash to their challenge are checked
    together: every equation ``Σ_k z_k·M_jk − e·Y_j − T_j = 0`` of every proof, weighted by
    independent non-zero 128-bit scalars (from ``rng``, or SHAKE-256 of the whole batch),
    summed and evaluated by one multi-scalar multiplication. A failing batch is halved,
    each half checked as a batch, down to a few proofs checked by :func:`verify_linear`, so
    the cheaters are named exactly. Other proofs go to :func:`verify_linear` directly.
    Nothing is sampled: a batch passes only if every proof would (but for a 2⁻¹²⁸ chance)."""
    batched: list[int] = []
    one_by_one: list[int] = []
    for idx, c in enumerate(claims):
        (batched if _challenge_from_carried(c) else one_by_one).append(idx)
    one_by_one += failing_part(
        batched, lambda idxs: _combination_vanishes([claims[i] for i in idxs], rng)
    )
    failures: dict[int, InvalidProof] = {}
    for idx in sorted(one_by_one):
        c = claims[idx]
        try:
            verify_linear(c.transcript.copy(), c.statement, c.proof)
        except InvalidProof as exc:
            failures[idx] = exc
    return failures


def _challenge_from_carried(c: LinearClaim) -> bool:
    compressed = _carried(c.proof, len(c.statement.targets))
    if compressed is None or len(c.proof.z) != c.statement.width:
        return False
    t = c.transcript.copy()
    c.statement.absorb(t)
    t.append(b"commitments", compressed)
    return t.challenge(b"linear") == c.proof.e


def _weights(claims: Sequence[LinearClaim], count: int, rng: Rng | None) -> list[int]:
    if rng is not None:
        return [1 + rng.below((1 << 128) - 1) for _ in range(count)]
    h = hashlib.shake_256(_BATCH)
    for c in claims:
        st = c.statement
        bound = c.transcript.copy().challenge(b"batch")  # binds protocol, context and prefix
        parts = [
            bound.to_bytes(32, "big"),
            *(p.encode() for row in st.bases for p in row),
            *(y.encode() for y in st.targets),
            c.proof.encode(),
        ]
        for data in parts:
            h.update(len(data).to_bytes(8, "big") + data)
    stream = h.digest(16 * count)
    return [int.from_bytes(stream[k : k + 16], "big") or 1 for k in range(0, len(stream), 16)]


def _combination_vanishes(claims: Sequence[LinearClaim], rng: Rng | None) -> bool:
    weights = _weights(claims, sum(len(c.statement.targets) for c in claims), rng)
    terms: dict[bytes, int] = {}
    pos = 0
    for c in claims:
        for j, (row, y) in enumerate(zip(c.statement.bases, c.statement.targets, strict=True)):
            w = weights[pos]
            pos += 1
            for base, zk in zip(row, c.proof.z, strict=True):
                key = base.encode()
                terms[key] = (terms.get(key, 0) + w * zk) % N
            key = y.encode()
            terms[key] = (terms.get(key, 0) - w * c.proof.e) % N
            t_enc = c.proof.commitments[j * _UNCOMPRESSED : (j + 1) * _UNCOMPRESSED]
            if t_enc != _IDENTITY_UNCOMPRESSED:
                terms[t_enc] = (terms.get(t_enc, 0) - w) % N
    points = list(terms)
    try:
        return msm_encoded(points, [terms[p] for p in points]) == bytes(POINT_LEN)
    except DecodeError:
        return False


# -- named instances ------------------------------------------------------------
def schnorr_statement(public: Point, base: Point = G) -> LinearStatement:
    """Knowledge of ``x`` with ``public = x·base``."""
    return LinearStatement(((base,),), (public,))


def dleq_statement(base1: Point, y1: Point, base2: Point, y2: Point) -> LinearStatement:
    """Chaum–Pedersen: ``log_{base1} y1 = log_{base2} y2``."""
    return LinearStatement(((base1,), (base2,)), (y1, y2))


def prove_schnorr(t: Transcript, secret: int, rng: Rng, base: Point = G) -> LinearProof:
    return prove_linear(t, schnorr_statement(base * secret, base), [secret], rng)


def verify_schnorr(t: Transcript, public: Point, proof: LinearProof, base: Point = G) -> None:
    verify_linear(t, schnorr_statement(public, base), proof)


# -- OR composition -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrProof:
    """CDS proof that one of several linear statements holds: per branch ``(e_i, z_i)``."""

    branches: tuple[LinearProof, ...]

    def encode(self) -> bytes:
        return b"".join(b.encode() for b in self.branches)

    @classmethod
    def decode(cls, data: bytes, widths: Sequence[int]) -> OrProof:
        sizes = [SCALAR_LEN * (w + 1) for w in widths]
        if len(data) != sum(sizes):
            raise DecodeError(f"OR proof: expected {sum(sizes)} bytes, got {len(data)}")
        out, pos = [], 0
        for w, size in zip(widths, sizes, strict=True):
            out.append(LinearProof.decode(data[pos : pos + size], w))
            pos += size
        return cls(tuple(out))


def prove_or(
    t: Transcript,
    stmts: Sequence[LinearStatement],
    true_index: int,
    witness: Sequence[int],
    rng: Rng,
) -> OrProof:
    """Prove that ``stmts[true_index]`` holds, hiding which one does."""
    if not 0 <= true_index < len(stmts):
        raise ValueError("prove_or: true_index out of range")
    t.append_int(b"branches", len(stmts))
    for s in stmts:
        s.absorb(t)
    sims: dict[int, LinearProof] = {}
    nonces: list[int] = []
    for i, s in enumerate(stmts):
        if i == true_index:
            nonces = [rng.scalar() for _ in range(s.width)]
            t.append_points(b"commitments", s.commit(nonces))
        else:
            sim = LinearProof(rng.scalar(), tuple(rng.scalar() for _ in range(s.width)))
            sims[i] = sim
            t.append(b"commitments", s.recompute_encoded(sim.e, sim.z))
    e = t.challenge(b"or")
    e_true = (e - sum(p.e for p in sims.values())) % N
    real = LinearProof(
        e_true, tuple((a + e_true * w) % N for a, w in zip(nonces, witness, strict=True))
    )
    return OrProof(tuple(real if i == true_index else sims[i] for i in range(len(stmts))))


def verify_or(t: Transcript, stmts: Sequence[LinearStatement], proof: OrProof) -> None:
    if len(proof.branches) != len(stmts):
        raise InvalidProof("OR proof: wrong number of branches")
    t.append_int(b"branches", len(stmts))
    for s in stmts:
        s.absorb(t)
    for s, b in zip(stmts, proof.branches, strict=True):
        if len(b.z) != s.width:
            raise InvalidProof("OR proof: wrong number of responses")
        t.append(b"commitments", s.recompute_encoded(b.e, b.z))
    if t.challenge(b"or") != sum(b.e for b in proof.branches) % N:
        raise InvalidProof("OR proof: challenges do not add up")
