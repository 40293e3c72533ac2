"""GJKR distributed key generation: honest runs, every fault, public checks, signed messages."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.dkg import (
    BroadcastView,
    Complaint,
    DealerCommitments,
    DkgNode,
    DkgParticipant,
    DkgResult,
    DkgTranscript,
    FeldmanCommitments,
    Share,
    audit,
    check_committee_size,
    commitment_at,
    decode_dealing,
    decode_extraction,
    decode_indices,
    decode_shares,
    drive,
    encode_dealing,
    encode_extraction,
    encode_indices,
    encode_shares,
    extraction_complaint_valid,
    feldman_share_ok,
    in_memory_nodes,
    interpolate_coefficients,
    pedersen_share_ok,
    public_outputs,
    qualified_set,
    reconstruct_extraction,
    run_dkg,
)
from tessera.crypto.dkg_messages import (
    DkgSession,
    Round,
    SignedMessage,
    message_valid,
    public_key_of,
    sign_message,
)
from tessera.crypto.elgamal import encrypt
from tessera.crypto.group import G, N, Point, base_mul
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import combine_partials, lagrange_at_zero, partial_decrypt
from tessera.errors import DecodeError, DkgError, ProtocolError
from tessera.testing.dkg_faults import Fault, run_with_faults


def _run(
    n: int, t: int, seed: str, faults: dict[int, Fault] | None = None
) -> tuple[dict[int, DkgResult], DkgTranscript]:
    if faults is None:
        return run_dkg(n, t, SeededRng(seed))
    return run_with_faults(n, t, SeededRng(seed), faults)


def _secret(results: dict[int, DkgResult], t: int) -> int:
    idx = sorted(results)[:t]
    return sum(results[i].secret_share * lagrange_at_zero(i, idx) for i in idx) % N


def _check_consistent(results: dict[int, DkgResult], tr: DkgTranscript, n: int, t: int) -> None:
    """All honest nodes agree; shares match; anyone recomputes the outputs; t nodes decrypt."""
    assert results
    first = next(iter(results.values()))
    pub_y, pub_shares = public_outputs(n, tr.qualified, tr.extracted)
    assert pub_y == first.public_key
    for r in results.values():
        assert r.threshold == t
        assert r.qualified == tr.qualified
        assert r.public_key == first.public_key
        assert dict(r.public_shares) == dict(first.public_shares) == pub_shares
        assert base_mul(r.secret_share) == r.public_shares[r.index]
    assert not first.public_key.is_identity
    # every t-subset of honest shares interpolates to the same x with x·G = Y
    for subset in itertools.combinations(sorted(results), t):
        x = sum(results[i].secret_share * lagrange_at_zero(i, subset) for i in subset) % N
        assert base_mul(x) == first.public_key
    # and t honest nodes decrypt
    if len(results) >= t:
        rng = SeededRng(b"decrypt")
        ct = encrypt(first.public_key, 31337, rng)
        parts = [
            partial_decrypt(b"q", i, results[i].secret_share, ct, rng) for i in sorted(results)[:t]
        ]
        assert combine_partials(ct, parts, t) == base_mul(31337)


# -- honest runs -------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "t"), [(1, 1), (2, 1), (3, 1), (3, 2), (4, 2), (5, 3), (7, 4)])
def test_honest_run(n: int, t: int) -> None:
    results, tr = _run(n, t, f"honest-{n}-{t}")
    assert sorted(results) == list(range(1, n + 1))
    assert tr.qualified == tuple(range(1, n + 1))
    assert tr.complaints == [] and tr.answers == [] and tr.reconstructed == ()
    _check_consistent(results, tr, n, t)
    # the key is the sum of the dealers' constant terms
    assert results[1].public_key == sum(
        (tr.extracted[i].commitments[0] for i in tr.qualified), Point.identity()
    )


def test_runs_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    a, _ = _run(3, 2, "same")
    b, _ = _run(3, 2, "same")
    c, _ = _run(3, 2, "other")
    assert a[1].public_key == b[1].public_key and a[2].secret_share == b[2].secret_share
    assert a[1].public_key != c[1].public_key


# -- faults ------------------------------------------------------------------------------------
# With the same seed, every participant draws the same polynomials whatever the faults, so a
# faulty run can be compared with the clean run of that seed.
N5, T3 = 5, 3


def _clean(seed: str) -> tuple[dict[int, DkgResult], DkgTranscript]:
    return _run(N5, T3, seed)


@pytest.mark.parametrize("dealer", [1, 2, 4])
def test_bad_share_disqualifies_the_dealer(dealer: int) -> None:
    seed = f"bad-share-{dealer}"
    clean, clean_tr = _clean(seed)
    results, tr = _run(N5, T3, seed, {dealer: Fault.BAD_SHARE})
    victim = 2 if dealer == 1 else 1
    assert Complaint(victim, dealer) in tr.complaints
    assert dealer not in tr.qualified
    assert tr.qualified == tuple(i for i in range(1, N5 + 1) if i != dealer)
    assert sorted(results) == list(tr.qualified)
    _check_consistent(results, tr, N5, T3)
    # the key is the clean key without the cheater's contribution
    removed = clean_tr.extracted[dealer].commitments[0]
    assert results[victim].public_key == clean[victim].public_key - removed


@pytest.mark.parametrize("dealer", [1, 3])
def test_bad_share_fixed_keeps_the_dealer(dealer: int) -> None:
    seed = f"bad-share-fixed-{dealer}"
    clean, _ = _clean(seed)
    results, tr = _run(N5, T3, seed, {dealer: Fault.BAD_SHARE_FIXED})
    victim = 2 if dealer == 1 else 1
    assert Complaint(victim, dealer) in tr.complaints
    assert any(a.dealer == dealer and a.recipient == victim for a in tr.answers)
    assert dealer in tr.qualified and tr.qualified == tuple(range(1, N5 + 1))
    assert dealer not in results  # faulty nodes get no result from the driver
    _check_consistent(results, tr, N5, T3)
    # the answered share replaced the corrupted one: identical to the clean run
    for j, r in results.items():
        assert r.secret_share == clean[j].secret_share
        assert r.public_key == clean[j].public_key


@pytest.mark.parametrize("dealer", [1, 5])
def test_bad_extraction_is_reconstructed(dealer: int) -> None:
    seed = f"bad-extraction-{dealer}"
    clean, clean_tr = _clean(seed)
    results, tr = _run(N5, T3, seed, {dealer: Fault.BAD_EXTRACTION})
    assert tr.reconstructed == (dealer,)
    assert dealer in tr.qualified
    # the reconstructed commitments are the honest ones, so the key did not move
    assert tr.extracted[dealer] == clean_tr.extracted[dealer]
    _check_consistent(results, tr, N5, T3)
    for j, r in results.items():
        assert r.public_key == clean[j].public_key
        assert r.secret_share == clean[j].secret_share
        assert r.public_shares[j] == base_mul(r.secret_share)


@pytest.mark.parametrize("dealer", [1, 3])
def test_silent_dealer_is_excluded(dealer: int) -> None:
    seed = f"silent-{dealer}"
    clean, clean_tr = _clean(seed)
    results, tr = _run(N5, T3, seed, {dealer: Fault.SILENT})
    assert dealer not in tr.dealt and dealer not in tr.qualified and dealer not in results
    assert tr.complaints == []  # nothing to complain about: a dealer without a dealing is out
    _check_consistent(results, tr, N5, T3)
    some = next(iter(results))
    removed = clean_tr.extracted[dealer].commitments[0]
    assert results[some].public_key == clean[some].public_key - removed


def test_several_faults_at_once() -> None:
    n, t = 6, 3
    faults = {1: Fault.BAD_SHARE, 2: Fault.BAD_EXTRACTION, 4: Fault.SILENT}
    results, tr = _run(n, t, "mixed", faults)
    assert tr.qualified == (2, 3, 5, 6)
    assert tr.reconstructed == (2,)
    assert sorted(results) == [3, 5, 6]
    _check_consistent(results, tr, n, t)


@pytest.mark.parametrize(
    ("n", "t", "faults"),
    [
        (3, 2, {1: Fault.SILENT, 2: Fault.SILENT}),
        (5, 3, {2: Fault.SILENT, 3: Fault.BAD_SHARE, 5: Fault.SILENT}),
        (7, 4, {2: Fault.SILENT, 4: Fault.BAD_SHARE, 5: Fault.BAD_SHARE, 6: Fault.SILENT}),
    ],
)
def test_too_many_failed_dealers_raise(n: int, t: int, faults: dict[int, Fault]) -> None:
    # more than t - 1 faulty dealers (beyond what n >= 2t - 1 is sized for): fewer than t
    # qualify, and the honest nodes refuse to produce a key
    with pytest.raises(DkgError, match="qualified dealers"):
        _run(n, t, "too-many", faults)


@pytest.mark.parametrize(("n", "t"), [(1, 2), (2, 2), (3, 3), (4, 3), (6, 4), (5, 0)])
def test_committees_smaller_than_2t_minus_1_are_refused(n: int, t: int) -> None:
    with pytest.raises(ValueError, match=r"n >= 2t - 1"):
        run_dkg(n, t, SeededRng(1))
    with pytest.raises(ValueError, match=r"n >= 2t - 1"):
        run_with_faults(n, t, SeededRng(1), {})
    with pytest.raises(ValueError, match=r"n >= 2t - 1"):
        DkgParticipant(1, n, t, SeededRng(1))
    check_committee_size(2 * max(t, 1) - 1, max(t, 1))  # the smallest valid size passes


def test_t_minus_1_faulty_nodes_cannot_block_the_smallest_committee() -> None:
    # n = 2t - 1 with t - 1 silent nodes: the t honest ones finish on their own
    n, t = 7, 4
    results, tr = _run(n, t, "smallest", {2: Fault.SILENT, 4: Fault.SILENT, 7: Fault.BAD_SHARE})
    assert tr.qualified == (1, 3, 5, 6) and sorted(results) == [1, 3, 5, 6]
    _check_consistent(results, tr, n, t)


def test_dkg_error_is_a_protocol_error() -> None:
    assert issubclass(DkgError, ProtocolError)


# -- participants and public checks -------------------------------------------------------------
def test_participant_argument_checks() -> None:
    rng = SeededRng(1)
    for index, n, t in ((1, 3, 0), (1, 3, 4), (0, 3, 2), (4, 3, 2), (1, 4, 3)):
        with pytest.raises(ValueError):
            DkgParticipant(index, n, t, rng)


def test_receive_rejects_misaddressed_shares_and_complains_about_bad_ones() -> None:
    rng = SeededRng(2)
    p1, p2, p3 = (DkgParticipant(i, 3, 2, rng) for i in (1, 2, 3))
    dc, shares = p1.deal()
    with pytest.raises(ProtocolError):
        p2.receive(dc, shares[2])  # addressed to node 3
    _, other = p3.deal()
    with pytest.raises(ProtocolError):
        p2.receive(dc, other[1])  # from dealer 3, filed under dealer 1
    assert p2.receive(dc, shares[1]) is None
    bad = Share(1, 2, (shares[1].s + 1) % N, shares[1].s_blind)
    assert p2.receive(dc, bad) == Complaint(2, 1)
    assert p2.receive(dc, None) == Complaint(2, 1)
    short = DealerCommitments(1, dc.commitments[:1])
    assert p2.receive(short, shares[1]) == Complaint(2, 1)
    # answering: a dealer reveals exactly the accused shares
    ans = p1.answer([Complaint(2, 1), Complaint(3, 2), Complaint(3, 1)])
    assert sorted(a.recipient for a in ans) == [2, 3]
    assert all(pedersen_share_ok(dc, a) for a in ans)


def test_pedersen_and_feldman_checks() -> None:
    rng = SeededRng(3)
    p = DkgParticipant(1, 5, 3, rng)
    dc, shares = p.deal()
    fc = p.extraction()
    for s in shares:
        assert pedersen_share_ok(dc, s) and feldman_share_ok(fc, s)
        assert not pedersen_share_ok(dc, Share(1, s.recipient, s.s, (s.s_blind + 1) % N))
        assert not pedersen_share_ok(dc, Share(1, s.recipient % 5 + 1, s.s, s.s_blind))
        assert not feldman_share_ok(fc, Share(1, s.recipient, (s.s + 1) % N, s.s_blind))
        assert not extraction_complaint_valid(dc, fc, s)  # honest dealer: no valid complaint
    cheat = FeldmanCommitments(1, (fc.commitments[0] + G, *fc.commitments[1:]))
    assert all(extraction_complaint_valid(dc, cheat, s) for s in shares)
    truncated = FeldmanCommitments(1, fc.commitments[:2])
    assert extraction_complaint_valid(dc, truncated, shares[0])
    # a share that is not Pedersen-valid proves nothing against the dealer
    forged = Share(1, 1, (shares[0].s + 1) % N, shares[0].s_blind)
    assert not extraction_complaint_valid(dc, cheat, forged)
    # reconstruction from t valid shares (ignoring invalid and foreign ones) gives the truth
    junk = [forged, Share(2, 2, 5, 6)]
    assert reconstruct_extraction(dc, [*junk, *shares[1:]], 3) == fc
    with pytest.raises(DkgError):
        reconstruct_extraction(dc, [*junk, *shares[:2]], 3)
    assert commitment_at(fc.commitments, 0) == fc.commitments[0]


def test_qualified_set_rules() -> None:
    rng = SeededRng(4)
    n, t = 4, 2
    nodes = [DkgParticipant(i, n, t, rng) for i in range(1, n + 1)]
    dealt = {}
    shares: dict[int, list[Share]] = {}
    for p in nodes:
        dc, ss = p.deal()
        dealt[p.index] = dc
        shares[p.index] = ss
    assert qualified_set(n, t, dealt, [], []) == (1, 2, 3, 4)
    # one complaint against 1 answered well: kept; answered badly: dropped; unanswered: dropped
    c = [Complaint(3, 1)]
    good = shares[1][2]
    bad = Share(1, 3, (good.s + 1) % N, good.s_blind)
    assert qualified_set(n, t, dealt, c, [good]) == (1, 2, 3, 4)
    assert qualified_set(n, t, dealt, c, [bad]) == (2, 3, 4)
    assert qualified_set(n, t, dealt, c, []) == (2, 3, 4)
    # t complaints: dropped even if answered; duplicate accusers count once
    c2 = [Complaint(3, 1), Complaint(4, 1)]
    assert qualified_set(n, t, dealt, c2, [shares[1][2], shares[1][3]]) == (2, 3, 4)
    assert qualified_set(n, t, dealt, [Complaint(3, 1)] * 5, [good]) == (1, 2, 3, 4)
    # out-of-range accusers are ignored
    assert qualified_set(n, t, dealt, [Complaint(0, 1), Complaint(9, 1)], []) == (1, 2, 3, 4)
    # malformed commitments and missing dealers are not qualified
    odd = dict(dealt)
    odd[2] = DealerCommitments(2, dealt[2].commitments[:1])
    del odd[4]
    assert qualified_set(n, t, odd, [], []) == (1, 3)
    with pytest.raises(DkgError):
        qualified_set(n, t, {1: dealt[1]}, [], [])


def test_finalize_refuses_inconsistent_state() -> None:
    rng = SeededRng(5)
    p = DkgParticipant(1, 2, 1, rng)
    q = DkgParticipant(2, 2, 1, rng)
    dc_p, sh_p = p.deal()
    dc_q, sh_q = q.deal()
    p.receive(dc_p, sh_p[0])
    with pytest.raises(DkgError):
        p.finalize((1, 2), {1: p.extraction(), 2: q.extraction()})  # no share from 2
    p.receive(dc_q, sh_q[0])
    wrong = FeldmanCommitments(2, (q.extraction().commitments[0] + G,))
    with pytest.raises(DkgError):
        p.finalize((1, 2), {1: p.extraction(), 2: wrong})
    res = p.finalize((1, 2), {1: p.extraction(), 2: q.extraction()})
    assert base_mul(res.secret_share) == res.public_shares[1]


@given(st.integers(1, 5), st.integers(0, 2**32), st.data())
def test_interpolate_coefficients(t: int, seed: int, data: st.DataObject) -> None:
    rng = SeededRng(seed)
    coeffs = [rng.scalar() for _ in range(t)]
    xs = data.draw(st.lists(st.integers(1, 30), min_size=t, max_size=t + 2, unique=True))
    pts = {x: sum(c * pow(x, k, N) for k, c in enumerate(coeffs)) % N for x in xs}
    assert interpolate_coefficients(pts, t) == coeffs
    if t > 1:
        with pytest.raises(DkgError):
            interpolate_coefficients(dict(list(pts.items())[: t - 1]), t)


# -- the signed broadcast ------------------------------------------------------------------------
def _session(nonce: bytes = bytes(32), n: int = 3, t: int = 2) -> tuple[DkgSession, list[bytes]]:
    secrets = [bytes([0x20 + i]) * 32 for i in range(n)]
    return DkgSession(n, t, tuple(public_key_of(k) for k in secrets), nonce), secrets


def test_a_message_verifies_only_in_its_session_kind_author_and_payload() -> None:
    s, keys = _session()
    m = sign_message(s, Round.COMPLAINTS, 2, encode_indices([1]), keys[1])
    assert message_valid(s, m)
    assert SignedMessage.from_json(m.to_json()) == m
    other_nonce, _ = _session(bytes([1]) * 32)
    other_t, _ = _session(n=3, t=1)
    reordered = DkgSession(3, 2, (s.members[1], s.members[0], s.members[2]), s.nonce)
    for other in (other_nonce, other_t, reordered):
        assert other.id != s.id and not message_valid(other, m)
    assert not message_valid(s, SignedMessage(Round.ANSWERS, 2, m.payload, m.signature))
    assert not message_valid(s, SignedMessage(m.kind, 3, m.payload, m.signature))
    assert not message_valid(s, SignedMessage(m.kind, 2, encode_indices([3]), m.signature))
    assert not message_valid(s, SignedMessage(m.kind, 9, m.payload, m.signature))
    forged = sign_message(s, Round.COMPLAINTS, 2, m.payload, keys[0])  # node 1's key
    assert not message_valid(s, forged)
    # a high-s twin of a valid signature is refused (one encoding per signature)
    r, sv = m.signature[:32], int.from_bytes(m.signature[32:64], "big")
    twin = r + (N - sv).to_bytes(32, "big") + bytes([m.signature[64] ^ 1])
    assert not message_valid(s, SignedMessage(m.kind, 2, m.payload, twin))
    with pytest.raises(DecodeError):
        SignedMessage.from_json({**m.to_json(), "extra": 1})
    with pytest.raises(DecodeError):
        SignedMessage.from_json({**m.to_json(), "author": True})
    with pytest.raises(DecodeError):
        SignedMessage.from_json({**m.to_json(), "kind": "qualified"})


def test_sessions_are_checked() -> None:
    s, _ = _session()
    with pytest.raises(ValueError):
        DkgSession(3, 2, s.members[:2], s.nonce)
    with pytest.raises(ValueError):
        DkgSession(3, 2, (s.members[0], s.members[0], s.members[1]), s.nonce)
    with pytest.raises(ValueError):
        DkgSession(3, 2, s.members, b"short")
    with pytest.raises(ValueError):
        DkgSession(3, 2, (b"\x02" + b"\xff" * 32, *s.members[1:]), s.nonce)


def test_payload_decoders_are_strict() -> None:
    assert decode_indices(encode_indices([3, 1]), 3) == (1, 3)
    for bad in (encode_indices([1]) + b"\x00", b"\x00\x02\x00\x02\x00\x01", b"\x00\x01\x00\x04"):
        with pytest.raises(DecodeError):
            decode_indices(bad, 3)
    entries = [(2, 5, 6), (1, 7, 8)]
    assert decode_shares(encode_shares(entries), 3) == ((1, 7, 8), (2, 5, 6))
    with pytest.raises(DecodeError):
        decode_shares(b"\x00\x01\x00\x01" + N.to_bytes(32, "big") + bytes(32), 3)
    with pytest.raises(DecodeError):
        decode_dealing(encode_dealing([G], [b"box"] * 2), 3)  # a box short
    assert decode_extraction(encode_extraction([G, G + G])) == (G, G + G)
    with pytest.raises(DecodeError):
        decode_extraction(encode_extraction([G])[:-1])


def _honest_round(
    nodes: dict[int, DkgNode], kind: Round, inbox: tuple[SignedMessage, ...]
) -> tuple[SignedMessage, ...]:
    return tuple(m for i in sorted(nodes) for m in nodes[i].step(kind, inbox))


def test_a_node_runs_each_round_once_and_in_order() -> None:
    _, nodes = in_memory_nodes(3, 2, SeededRng("order"))
    with pytest.raises(ProtocolError, match="expects the dealing round"):
        nodes[1].step(Round.COMPLAINTS, ())
    dealings = _honest_round(nodes, Round.DEALING, ())
    assert nodes[1].step(Round.DEALING, ()) == [m for m in dealings if m.author == 1]  # retry
    complaints = _honest_round(nodes, Round.COMPLAINTS, dealings)
    assert nodes[2].step(Round.COMPLAINTS, dealings) == [m for m in complaints if m.author == 2]
    with pytest.raises(ProtocolError, match="on other messages"):
        nodes[2].step(Round.COMPLAINTS, dealings[:2])
    with pytest.raises(ProtocolError, match="expects the answers round"):
        nodes[2].step(Round.EXTRACTION, ())


def test_a_view_drops_forgeries_and_equivocations() -> None:
    session, nodes = in_memory_nodes(3, 2, SeededRng("view"))
    dealings = _honest_round(nodes, Round.DEALING, ())
    by = {m.author: m for m in dealings}
    # node 3's second, different dealing (it holds its key: an equivocating dealer)
    other = in_memory_nodes(3, 2, SeededRng("view-other"))[1][3]
    twin_payload = other.step(Round.DEALING, ())[0].payload
    twin = sign_message(session, Round.DEALING, 3, twin_payload, nodes[3]._secret)
    flipped_payload = by[2].payload[:-1] + bytes([by[2].payload[-1] ^ 1])
    flipped = SignedMessage(Round.DEALING, 2, flipped_payload, by[2].signature)
    view = BroadcastView(session)
    view.accept(
        Round.DEALING,
        (by[1], by[1], flipped, by[3], twin, SignedMessage(Round.COMPLAINTS, 2, b"", b"")),
    )
    assert sorted(view.dealt) == [1]  # node 1's (duplicate kept once) only
    assert view.equivocators == {3}
    assert len(view.rejected) == 3
    with pytest.raises(ProtocolError, match="already taken"):
        view.accept(Round.DEALING, dealings)


def test_shares_leave_a_node_only_against_a_signed_complaint_or_a_proof() -> None:
    session, nodes = in_memory_nodes(3, 2, SeededRng("leak"))
    secret = {i: nodes[i]._secret for i in nodes}
    dealings = _honest_round(nodes, Round.DEALING, ())
    complaints = list(_honest_round(nodes, Round.COMPLAINTS, dealings))
    assert all(decode_indices(m.payload, 3) == () for m in complaints)
    # node 1 accuses node 2 (signed: answered with node 1's share); "node 3" accuses
    # node 2 with node 1's key (forged: ignored)
    complaints = [m for m in complaints if m.author != 1]
    complaints.append(sign_message(session, Round.COMPLAINTS, 1, encode_indices([2]), secret[1]))
    complaints.append(sign_message(session, Round.COMPLAINTS, 3, encode_indices([2]), secret[1]))
    answer = nodes[2].step(Round.ANSWERS, tuple(complaints))
    assert [e[0] for e in decode_shares(answer[0].payload, 3)] == [1]
    # a made-up accusation (not Pedersen-valid) proves nothing: no reveals
    answers = (
        *answer,
        *(m for i in (1, 3) for m in nodes[i].step(Round.ANSWERS, tuple(complaints))),
    )
    extractions = _honest_round(nodes, Round.EXTRACTION, answers)
    accusations = [m for m in _honest_round(nodes, Round.ACCUSATIONS, extractions) if m.author != 1]
    junk = encode_shares([(2, 1, 2), (3, 3, 4)])
    accusations.append(sign_message(session, Round.ACCUSATIONS, 1, junk, secret[1]))
    reveals = _honest_round(nodes, Round.REVEALS, tuple(accusations))
    assert all(decode_shares(m.payload, 3) == () for m in reveals)
    results = {m.author: m.payload for m in _honest_round(nodes, Round.RESULT, reveals)}
    assert len(set(results.values())) == 1


def test_the_driver_keeps_only_what_verifies_as_the_repliers_own() -> None:
    session, nodes = in_memory_nodes(3, 2, SeededRng("driver"))

    def exchange(kind: Round, inbox: tuple[SignedMessage, ...]) -> dict[int, list[SignedMessage]]:
        out = {i: nodes[i].step(kind, inbox) for i in nodes}
        if kind is Round.DEALING:  # node 3 also hands in node 1's dealing, and a forgery
            forged = sign_message(session, kind, 2, out[3][0].payload, nodes[3]._secret)
            out[3] = [*out[3], out[1][0], forged]
        return out

    log = drive(session, exchange)
    assert [m.author for m in log[Round.DEALING]] == [1, 2, 3]
    tr = audit(session, log)
    assert tr.qualified == (1, 2, 3) and tr.messages == log
