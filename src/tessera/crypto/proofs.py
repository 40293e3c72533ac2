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

from collections.abc import Sequence
from dataclasses import dataclass

from tessera.crypto.group import (
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
from tessera.crypto.msm import msm_encoded
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
    """Challenge-form proof ``(e, z)`` of a :class:`LinearStatement`."""

    e: int
    z: tuple[int, ...]

    def encode(self) -> bytes:
        return encode_scalar(self.e) + b"".join(encode_scalar(v) for v in self.z)

    @classmethod
    def decode(cls, data: bytes, width: int) -> LinearProof:
        if len(data) != SCALAR_LEN * (width + 1):
            raise DecodeError(
                f"linear proof: expected {SCALAR_LEN * (width + 1)} bytes, got {len(data)}"
            )
        vals = [decode_scalar(data[i : i + SCALAR_LEN]) for i in range(0, len(data), SCALAR_LEN)]
        return cls(vals[0], tuple(vals[1:]))


def prove_linear(
    t: Transcript, stmt: LinearStatement, witness: Sequence[int], rng: Rng
) -> LinearProof:
    if len(witness) != stmt.width:
        raise ValueError("prove_linear: witness length differs from the statement's width")
    stmt.absorb(t)
    nonces = [rng.scalar() for _ in witness]
    t.append_points(b"commitments", stmt.commit(nonces))
    e = t.challenge(b"linear")
    return LinearProof(e, tuple((a + e * w) % N for a, w in zip(nonces, witness, strict=True)))


def verify_linear(t: Transcript, stmt: LinearStatement, proof: LinearProof) -> None:
    if len(proof.z) != stmt.width:
        raise InvalidProof("linear proof: wrong number of responses")
    stmt.absorb(t)
    t.append(b"commitments", stmt.recompute_encoded(proof.e, proof.z))
    if t.challenge(b"linear") != proof.e:
        raise InvalidProof("linear proof: challenge mismatch")


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
