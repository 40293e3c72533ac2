"""Sigma proofs of linear relations, Schnorr, DLEQ and CDS OR-proofs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.group import SCALAR_LEN, G, H, N, Point, base_mul, generator
from tessera.crypto.proofs import (
    LinearClaim,
    LinearProof,
    LinearStatement,
    OrProof,
    batch_verify_linear,
    dleq_statement,
    prove_linear,
    prove_or,
    prove_schnorr,
    schnorr_statement,
    verify_linear,
    verify_or,
    verify_schnorr,
)
from tessera.crypto.rng import SeededRng
from tessera.crypto.transcript import Transcript
from tessera.errors import DecodeError, InvalidProof

PROTO = b"test/proofs"
seeds = st.integers(0, 2**32)


def tr(context: bytes = b"query-1/node-1") -> Transcript:
    return Transcript(PROTO, context)


def _random_statement(rng: SeededRng, rows: int, cols: int) -> tuple[LinearStatement, list[int]]:
    """A statement with a mix of random, G, H and identity bases, and its witness."""
    pool = [G, H, Point.identity(), generator("G/1")]
    bases = tuple(
        tuple(
            pool[rng.below(len(pool))] if rng.below(3) == 0 else base_mul(rng.scalar())
            for _ in range(cols)
        )
        for _ in range(rows)
    )
    witness = [rng.scalar() for _ in range(cols)]
    targets = tuple(
        sum((b * w for b, w in zip(row, witness, strict=True)), Point.identity()) for row in bases
    )
    return LinearStatement(bases, targets), witness


def _bump(v: int) -> int:
    return (v + 1) % N


# -- linear relations -------------------------------------------------------------------
@given(seeds, st.integers(1, 3), st.integers(1, 3))
def test_linear_proof_completeness(seed: int, rows: int, cols: int) -> None:
    rng = SeededRng(seed)
    stmt, w = _random_statement(rng, rows, cols)
    assert stmt.holds_for(w)
    proof = prove_linear(tr(), stmt, w, rng)
    verify_linear(tr(), stmt, proof)
    assert len(proof.z) == cols


@given(seeds, st.integers(1, 3), st.integers(1, 3), st.data())
def test_linear_proof_soundness_against_tampering(
    seed: int, rows: int, cols: int, data: st.DataObject
) -> None:
    rng = SeededRng(seed)
    stmt, w = _random_statement(rng, rows, cols)
    proof = prove_linear(tr(), stmt, w, rng)
    # flip the challenge
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, LinearProof(_bump(proof.e), proof.z))
    # flip one response of a witness that some base constrains (a column of identity
    # bases leaves its witness free, so its response is not checked by anything)
    bound_cols = [c for c in range(cols) if any(not row[c].is_identity for row in stmt.bases)]
    if bound_cols:
        k = data.draw(st.sampled_from(bound_cols))
        z = list(proof.z)
        z[k] = _bump(z[k])
        with pytest.raises(InvalidProof):
            verify_linear(tr(), stmt, LinearProof(proof.e, tuple(z)))
    # change one target: the proof no longer fits the statement
    j = data.draw(st.integers(0, rows - 1))
    targets = list(stmt.targets)
    targets[j] = targets[j] + G
    with pytest.raises(InvalidProof):
        verify_linear(tr(), LinearStatement(stmt.bases, tuple(targets)), proof)
    # other context
    with pytest.raises(InvalidProof):
        verify_linear(tr(b"query-2/node-1"), stmt, proof)


def test_linear_proof_with_false_witness_does_not_verify() -> None:
    rng = SeededRng(11)
    stmt, w = _random_statement(rng, 2, 2)
    bad = [w[0], _bump(w[1])]
    assert not stmt.holds_for(bad)
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, prove_linear(tr(), stmt, bad, rng))


def test_linear_statement_shape_checks() -> None:
    with pytest.raises(ValueError):
        LinearStatement((), ())
    with pytest.raises(ValueError):
        LinearStatement(((G,),), (G, H))
    with pytest.raises(ValueError):
        LinearStatement(((G, H), (G,)), (G, H))
    with pytest.raises(ValueError):
        LinearStatement(((),), (G,))
    stmt = schnorr_statement(base_mul(3))
    with pytest.raises(ValueError):
        prove_linear(tr(), stmt, [3, 4], SeededRng(1))
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, LinearProof(1, (1, 2)))
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, LinearProof(1, ()))


def test_statement_is_bound_not_just_the_targets() -> None:
    """The bases are hashed too: a proof for base G does not verify for base H."""
    rng = SeededRng(12)
    x = rng.scalar()
    proof = prove_schnorr(tr(), x, rng)
    with pytest.raises(InvalidProof):
        verify_schnorr(tr(), base_mul(x), proof, base=H)
    # a statement with one extra row cannot reuse the proof
    stmt = LinearStatement(((G,), (H,)), (base_mul(x), H * x))
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, proof)


def test_weak_fiat_shamir_forgery_with_a_base_chosen_afterwards_fails() -> None:
    """ "How not to prove yourself" (BPW12): if the bases were not hashed, a prover could
    pick ``z`` and ``T`` first, then the base ``B = z⁻¹(T + e·Y)``, and "prove" knowledge
    of ``log_B Y`` without knowing it."""
    rng = SeededRng(19)
    y = base_mul(rng.scalar())
    z = rng.scalar()
    commitment = base_mul(rng.scalar())
    t = tr()
    t.append_int(b"rows", 1)
    t.append_int(b"cols", 1)
    t.append_points(b"targets", [y])  # the statement without its base
    t.append_points(b"commitments", [commitment])
    e = t.challenge(b"linear")
    base = (commitment + y * e) * pow(z, -1, N)
    stmt = schnorr_statement(y, base)
    assert stmt.recompute(e, [z]) == [commitment]  # the forged proof satisfies the equation
    with pytest.raises(InvalidProof):
        verify_linear(tr(), stmt, LinearProof(e, (z,)))


def test_proof_does_not_transfer_to_permuted_bases() -> None:
    rng = SeededRng(20)
    a, b = rng.scalar(), rng.scalar()
    y = base_mul(a) + H * b
    proof = prove_linear(tr(), LinearStatement(((G, H),), (y,)), [a, b], rng)
    swapped = LinearStatement(((H, G),), (y,))
    # the permuted responses satisfy the verification equation of the swapped statement…
    assert swapped.recompute(proof.e, proof.z[::-1]) == LinearStatement(((G, H),), (y,)).recompute(
        proof.e, proof.z
    )
    # …but the challenge binds the bases, so it is not accepted
    with pytest.raises(InvalidProof):
        verify_linear(tr(), swapped, LinearProof(proof.e, proof.z[::-1]))


# -- Schnorr ----------------------------------------------------------------------------
@given(seeds)
def test_schnorr(seed: int) -> None:
    rng = SeededRng(seed)
    x = rng.scalar()
    proof = prove_schnorr(tr(), x, rng)
    verify_schnorr(tr(), base_mul(x), proof)
    with pytest.raises(InvalidProof):
        verify_schnorr(tr(), base_mul(x + 1), proof)
    with pytest.raises(InvalidProof):
        verify_schnorr(tr(), -base_mul(x), proof)
    hp = prove_schnorr(tr(), x, rng, base=H)
    verify_schnorr(tr(), H * x, hp, base=H)


def test_schnorr_replay_under_other_context_or_protocol() -> None:
    rng = SeededRng(13)
    x = rng.scalar()
    pub = base_mul(x)
    proof = prove_schnorr(Transcript(PROTO, b"q1/node/1"), x, rng)
    verify_schnorr(Transcript(PROTO, b"q1/node/1"), pub, proof)
    for proto, ctx in (
        (PROTO, b"q2/node/1"),  # other query
        (PROTO, b"q1/node/2"),  # other node
        (PROTO, b"q1/provider/1"),  # other role
        (PROTO, b""),
        (b"test/other", b"q1/node/1"),  # other protocol
    ):
        with pytest.raises(InvalidProof):
            verify_schnorr(Transcript(proto, ctx), pub, proof)
    # the verifier must start from a fresh transcript: extra absorbed data breaks it
    t = Transcript(PROTO, b"q1/node/1")
    t.append(b"extra", b"")
    with pytest.raises(InvalidProof):
        verify_schnorr(t, pub, proof)


def test_schnorr_for_identity_key_binds_to_it() -> None:
    """Knowledge of x = 0 (the identity as public key) proves nothing about another key."""
    rng = SeededRng(14)
    proof = prove_linear(tr(), schnorr_statement(Point.identity()), [0], rng)
    verify_schnorr(tr(), Point.identity(), proof)
    with pytest.raises(InvalidProof):
        verify_schnorr(tr(), G, proof)


# -- DLEQ -------------------------------------------------------------------------------
@given(seeds)
def test_dleq(seed: int) -> None:
    rng = SeededRng(seed)
    x, c = rng.scalar(), base_mul(rng.scalar())
    stmt = dleq_statement(G, base_mul(x), c, c * x)
    proof = prove_linear(tr(), stmt, [x], rng)
    verify_linear(tr(), stmt, proof)
    # unequal logs: an honest prover's proof with either log does not verify
    bad = dleq_statement(G, base_mul(x), c, c * (x + 1))
    for w in (x, x + 1):
        with pytest.raises(InvalidProof):
            verify_linear(tr(), bad, prove_linear(tr(), bad, [w], rng))
    # swapping the two pairs is another statement
    with pytest.raises(InvalidProof):
        verify_linear(tr(), dleq_statement(c, c * x, G, base_mul(x)), proof)


# -- encoding ---------------------------------------------------------------------------
@given(seeds, st.integers(1, 4))
def test_linear_proof_encoding_roundtrip(seed: int, width: int) -> None:
    rng = SeededRng(seed)
    proof = LinearProof(rng.scalar(), tuple(rng.scalar() for _ in range(width)))
    enc = proof.encode()
    assert len(enc) == SCALAR_LEN * (width + 1)
    assert LinearProof.decode(enc, width) == proof


def test_linear_proof_decode_strict() -> None:
    rng = SeededRng(15)
    x = rng.scalar()
    proof = prove_schnorr(tr(), x, rng)
    enc = proof.encode()
    assert LinearProof.decode(enc, 1) == proof
    for bad, width in (
        (enc[:-1], 1),
        (enc + b"\x00", 1),
        (enc + bytes(32), 1),
        (b"", 1),
        (enc, 2),
        (enc, 0),
        (N.to_bytes(32, "big") + enc[32:], 1),  # e not reduced
        (enc[:32] + (N + 3).to_bytes(32, "big"), 1),  # z not reduced
        (enc[:32] + b"\xff" * 32, 1),
    ):
        with pytest.raises(DecodeError):
            LinearProof.decode(bad, width)
    with pytest.raises(ValueError):
        LinearProof(N, (1,)).encode()


# -- OR proofs ----------------------------------------------------------------------------
def _or_statements(rng: SeededRng, k: int, true_index: int) -> tuple[list[LinearStatement], int]:
    """k one-row statements ``P − m_i·H = s·G``; only ``true_index`` holds."""
    s = rng.scalar()
    commitment = base_mul(s) + H * true_index
    stmts = [schnorr_statement(commitment - H * i) for i in range(k)]
    return stmts, s


@given(seeds, st.integers(2, 4), st.data())
def test_or_proof_each_true_branch_verifies(seed: int, k: int, data: st.DataObject) -> None:
    rng = SeededRng(seed)
    true_index = data.draw(st.integers(0, k - 1))
    stmts, s = _or_statements(rng, k, true_index)
    proof = prove_or(tr(), stmts, true_index, [s], rng)
    verify_or(tr(), stmts, proof)
    widths = [st_.width for st_ in stmts]
    assert OrProof.decode(proof.encode(), widths) == proof


def test_or_proof_with_multirow_branches() -> None:
    rng = SeededRng(16)
    x = rng.scalar()
    c = base_mul(rng.scalar())
    good = dleq_statement(G, base_mul(x), c, c * x)
    wrong = dleq_statement(G, base_mul(x), c, c * (x + 1))
    two_wide = LinearStatement(((G, H),), (base_mul(5) + H * 6,))
    stmts = [wrong, good, two_wide]
    proof = prove_or(tr(), stmts, 1, [x], rng)
    verify_or(tr(), stmts, proof)
    proof2 = prove_or(tr(), stmts, 2, [5, 6], rng)
    verify_or(tr(), stmts, proof2)
    assert OrProof.decode(proof2.encode(), [1, 1, 2]) == proof2


@given(seeds, st.integers(2, 3), st.data())
def test_or_proof_where_no_branch_holds_fails(seed: int, k: int, data: st.DataObject) -> None:
    rng = SeededRng(seed)
    s = rng.scalar()
    commitment = base_mul(s) + H * (k + 5)  # committed value is not any branch's value
    stmts = [schnorr_statement(commitment - H * i) for i in range(k)]
    claimed = data.draw(st.integers(0, k - 1))
    proof = prove_or(tr(), stmts, claimed, [s], rng)
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts, proof)


def test_or_proof_tampering_and_replay() -> None:
    rng = SeededRng(17)
    stmts, s = _or_statements(rng, 3, 1)
    proof = prove_or(tr(), stmts, 1, [s], rng)
    verify_or(tr(), stmts, proof)
    for b in range(3):
        e_flipped = list(proof.branches)
        e_flipped[b] = LinearProof(_bump(e_flipped[b].e), e_flipped[b].z)
        z_flipped = list(proof.branches)
        z_flipped[b] = LinearProof(z_flipped[b].e, (_bump(z_flipped[b].z[0]),))
        for branches in (e_flipped, z_flipped):
            with pytest.raises(InvalidProof):
                verify_or(tr(), stmts, OrProof(tuple(branches)))
    # moving challenge mass between branches keeps the sum but breaks the commitments
    shifted = list(proof.branches)
    shifted[0] = LinearProof((shifted[0].e + 7) % N, shifted[0].z)
    shifted[2] = LinearProof((shifted[2].e - 7) % N, shifted[2].z)
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts, OrProof(tuple(shifted)))
    # reordering branches, or the statements, is rejected
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts, OrProof(proof.branches[::-1]))
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts[::-1], proof)
    # wrong number of branches
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts, OrProof(proof.branches[:2]))
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts[:2], proof)
    # a branch with the wrong width
    wide = list(proof.branches)
    wide[0] = LinearProof(wide[0].e, (*wide[0].z, 1))
    with pytest.raises(InvalidProof):
        verify_or(tr(), stmts, OrProof(tuple(wide)))
    # other context
    with pytest.raises(InvalidProof):
        verify_or(tr(b"query-1/node-2"), stmts, proof)


def test_or_proof_argument_checks_and_decoding() -> None:
    rng = SeededRng(18)
    stmts, s = _or_statements(rng, 2, 0)
    for idx in (-1, 2):
        with pytest.raises(ValueError):
            prove_or(tr(), stmts, idx, [s], rng)
    enc = prove_or(tr(), stmts, 0, [s], rng).encode()
    for bad, widths in ((enc[:-1], [1, 1]), (enc + b"\x00", [1, 1]), (enc, [1]), (enc, [1, 2])):
        with pytest.raises(DecodeError):
            OrProof.decode(bad, widths)
    unreduced = enc[:64] + N.to_bytes(32, "big") + enc[96:]
    with pytest.raises(DecodeError):
        OrProof.decode(unreduced, [1, 1])


def test_proof_objects_are_immutable() -> None:
    proof = LinearProof(1, (2,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        proof.e = 3  # type: ignore[misc]


@given(seeds, st.integers(1, 3), st.integers(1, 4))
def test_native_recompute_is_the_term_by_term_one(seed: int, rows: int, cols: int) -> None:
    """Verifiers hash ``recompute_encoded`` (libsecp256k1's ecmult_multi per row); it must be
    the encoding of what coincurve's term-by-term arithmetic gives, for true and false proofs
    alike (random, G, H and identity bases; responses that cancel to the identity)."""
    rng = SeededRng(seed)
    stmt, w = _random_statement(rng, rows, cols)
    pf = prove_linear(tr(), stmt, w, rng)
    for e, z in ((pf.e, pf.z), (rng.scalar(), tuple(rng.scalar() for _ in pf.z)), (0, (0,) * cols)):
        want = b"".join(p.encode() for p in stmt.recompute(e, z))
        assert stmt.recompute_encoded(e, z) == want


# -- batch verification of linear proofs --------------------------------------------------
def _claims(seed: int, count: int) -> list[LinearClaim]:
    """Batchable proofs of random statements (G, H, identity and random bases), each under
    its own context, one in challenge form."""
    rng = SeededRng(seed)
    out = []
    for i in range(count):
        stmt, w = _random_statement(rng, 1 + i % 3, 1 + i % 2)
        ctx = f"claim-{i}".encode()
        pf = prove_linear(tr(ctx), stmt, w, rng, batchable=i != 2)
        out.append(LinearClaim(tr(ctx), stmt, pf))
    return out


def test_batchable_linear_proof_roundtrip_and_one_by_one() -> None:
    rng = SeededRng(7)
    stmt, w = _random_statement(rng, 3, 2)
    pf = prove_linear(tr(), stmt, w, rng, batchable=True)
    assert len(pf.commitments) == 65 * 3
    assert LinearProof.decode(pf.encode(), 2, rows=3) == pf
    plain = LinearProof(pf.e, pf.z)
    assert LinearProof.decode(plain.encode(), 2, rows=3) == plain  # both forms decode
    with pytest.raises(DecodeError):
        LinearProof.decode(pf.encode(), 2)  # rows not given: the long form is refused
    verify_linear(tr(), stmt, pf)
    verify_linear(tr(), stmt, plain)


@given(seeds)
def test_batch_of_valid_linear_proofs_passes(seed: int) -> None:
    assert batch_verify_linear(_claims(seed, 9)) == {}
    assert batch_verify_linear(_claims(seed, 9), SeededRng(seed)) == {}


@pytest.mark.parametrize("bad", [0, 5, 10])
def test_batch_with_one_bad_linear_proof_fails_and_names_it(bad: int) -> None:
    claims = _claims(3, 11)
    c = claims[bad]
    # the response changed, the challenge and carried commitments kept: the challenge still
    # hashes right, so only the one multi-scalar multiplication can catch it
    forged = dataclasses.replace(c.proof, z=(_bump(c.proof.z[0]), *c.proof.z[1:]))
    claims[bad] = LinearClaim(c.transcript, c.statement, forged)
    with pytest.raises(InvalidProof) as one:
        verify_linear(c.transcript.copy(), c.statement, forged)
    failures = batch_verify_linear(claims)
    assert list(failures) == [bad]
    assert str(failures[bad]) == str(one.value)


def test_batch_names_every_cheater_and_carried_commitments_are_checked() -> None:
    claims = _claims(4, 12)
    rng = SeededRng(11)
    # 1: a carried commitment replaced by another point (the challenge no longer hashes)
    c1 = claims[1]
    other = base_mul(rng.scalar())._pk.format(compressed=False)  # type: ignore[union-attr]
    pf1 = dataclasses.replace(c1.proof, commitments=other + c1.proof.commitments[65:])
    claims[1] = LinearClaim(c1.transcript, c1.statement, pf1)
    # 7: a carried commitment off the curve (y changed)
    c7 = claims[7]
    enc = bytearray(c7.proof.commitments)
    enc[64] ^= 1
    pf7 = dataclasses.replace(c7.proof, commitments=bytes(enc))
    claims[7] = LinearClaim(c7.transcript, c7.statement, pf7)
    # 9: the wrong statement (another target)
    c9 = claims[9]
    st9 = LinearStatement(c9.statement.bases, (base_mul(5), *c9.statement.targets[1:]))
    claims[9] = LinearClaim(c9.transcript, st9, c9.proof)
    failures = batch_verify_linear(claims)
    assert sorted(failures) == [1, 7, 9]
    for i in (1, 7, 9):
        with pytest.raises(InvalidProof):
            verify_linear(claims[i].transcript.copy(), claims[i].statement, claims[i].proof)
