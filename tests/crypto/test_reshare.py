"""Proactive resharing: the key moves to another committee (other members, other n and t)
under the same public key; old shares become useless; cheating dealers are named."""

from __future__ import annotations

import pytest

from tessera.crypto.dkg import run_dkg
from tessera.crypto.dkg_messages import Round, public_key_of, sign_message
from tessera.crypto.elgamal import encrypt
from tessera.crypto.group import N, base_mul
from tessera.crypto.reshare import (
    IncomingMember,
    OutgoingMember,
    ReshareResult,
    ReshareSession,
    reshare_outputs,
    run_reshare,
)
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import combine_partials, partial_decrypt
from tessera.errors import DkgError
from tessera.testing.reshare_faults import ResharesAnotherSecret, SealsAWrongValue


def keys(label: str, n: int) -> list[bytes]:
    rng = SeededRng(f"reshare/keys/{label}")
    return [rng.scalar().to_bytes(32, "big") for _ in range(n)]


def committee(n: int, t: int, seed: str) -> tuple[dict[int, int], object, dict[int, object]]:
    results, _ = run_dkg(n, t, SeededRng(f"reshare/dkg/{seed}"))
    first = results[1]
    return (
        {i: r.secret_share for i, r in results.items()},
        first.public_key,
        dict(first.public_shares),
    )


def session_for(
    shares: dict[int, int],
    public_key: object,
    public_shares: dict[int, object],
    old_t: int,
    old_keys: list[bytes],
    new_keys: list[bytes],
    new_t: int,
) -> ReshareSession:
    return ReshareSession(
        tuple(public_key_of(k) for k in old_keys),
        old_t,
        public_key,  # type: ignore[arg-type]
        tuple(public_shares[i] for i in sorted(shares)),  # type: ignore[misc]
        tuple(public_key_of(k) for k in new_keys),
        new_t,
        b"\x07" * 32,
    )


def decrypts(results: list[tuple[int, int]], t: int, public_key: object, seed: str) -> bool:
    """Whether ``t`` (index, share) pairs decrypt a fresh ciphertext of 42."""
    ct = encrypt(public_key, 42, SeededRng(f"reshare/ct/{seed}"))  # type: ignore[arg-type]
    parts = [
        partial_decrypt(b"ctx", i, s, ct, SeededRng(f"reshare/pd/{seed}/{i}"))
        for i, s in results[:t]
    ]
    return combine_partials(ct, parts, t) == base_mul(42)


def rotate(old: tuple[int, int], new: tuple[int, int], seed: str, outgoing_cls=None, **kw):  # type: ignore[no-untyped-def]
    (n, t), (n2, t2) = old, new
    shares, y, ks = committee(n, t, seed)
    old_keys, new_keys = keys(f"{seed}/old", n), keys(f"{seed}/new", n2)
    session = session_for(shares, y, ks, t, old_keys, new_keys, t2)
    outgoing = [
        OutgoingMember(session, i, shares[i], old_keys[i - 1], SeededRng(f"{seed}/deal/{i}"))
        for i in range(1, n + 1)
    ]
    if outgoing_cls is not None:
        cheat = kw.pop("cheater")
        outgoing[cheat - 1] = outgoing_cls(
            session, cheat, shares[cheat], old_keys[cheat - 1], SeededRng(f"{seed}/x"), **kw
        )
    incoming = [IncomingMember(session, j, new_keys[j - 1]) for j in range(1, n2 + 1)]
    return session, shares, y, outgoing, incoming


def test_the_key_moves_to_another_committee_with_other_n_and_t_and_stays_the_same() -> None:
    session, shares, y, outgoing, incoming = rotate((5, 3), (7, 4), "grow")
    results = run_reshare(session, outgoing, incoming)
    assert all(r.public_key == y for r in results)
    assert all(r.outputs == results[0].outputs for r in results)  # everyone agrees
    for r in results:
        assert base_mul(r.secret_share) == r.public_shares[r.index]
    new = [(r.index, r.secret_share) for r in results]
    assert decrypts(new, 4, y, "grow")
    assert decrypts(new[3:], 4, y, "grow-other-four")
    assert not decrypts(new, 3, y, "grow-three")  # t' = 4 now: three are not enough
    assert results[0].outputs.cheaters == ()
    # the old shares are erased, and an old share is no use among the new ones
    assert all(m.erased for m in outgoing)
    with pytest.raises(DkgError, match="erased"):
        outgoing[0].deal()
    mixed = [(1, shares[1]), *new[1:4]]
    assert not decrypts(mixed, 4, y, "mixed")


def test_a_rotation_can_shrink_the_committee_and_be_followed_by_another() -> None:
    session, _, y, outgoing, incoming = rotate((5, 3), (3, 2), "shrink")
    first = run_reshare(session, outgoing, incoming)
    signing = keys("shrink/new", 3)  # the first rotation's new members' registered keys
    assert tuple(public_key_of(k) for k in signing) == session.new_members
    keys2 = keys("shrink/again", 5)
    again = ReshareSession(
        session.new_members,
        2,
        y,
        tuple(first[0].public_shares[j] for j in range(1, 4)),
        tuple(public_key_of(k) for k in keys2),
        3,
        b"\x08" * 32,
    )
    outgoing2 = [
        OutgoingMember(
            again, r.index, r.secret_share, signing[r.index - 1], SeededRng(f"s{r.index}")
        )
        for r in first
    ]
    incoming2 = [IncomingMember(again, j, keys2[j - 1]) for j in range(1, 6)]
    second = run_reshare(again, outgoing2, incoming2)
    assert second[0].public_key == y
    assert decrypts([(r.index, r.secret_share) for r in second], 3, y, "shrink")
    # a dealing signed by a key the session does not name is dropped: too few dealers
    wrong = keys("shrink/wrong", 3)
    rogue = [
        OutgoingMember(again, r.index, r.secret_share, wrong[r.index - 1], SeededRng("r"))
        for r in first
    ]
    with pytest.raises(DkgError, match="only 0 qualified dealers"):
        run_reshare(again, rogue, [IncomingMember(again, j, keys2[j - 1]) for j in range(1, 6)])


def test_a_dealer_that_reshares_another_value_is_named_and_left_out() -> None:
    session, _, y, outgoing, incoming = rotate(
        (5, 3), (5, 3), "bias", ResharesAnotherSecret, cheater=2
    )
    results = run_reshare(session, outgoing, incoming)
    assert results[0].outputs.cheaters == (2,)
    assert 2 not in results[0].outputs.dealers
    assert results[0].public_key == y  # the key cannot be biased
    assert decrypts([(r.index, r.secret_share) for r in results], 3, y, "bias")


@pytest.mark.parametrize("honest_answer", [True, False])
def test_a_wrong_sealed_value_is_complained_about_and_answered_or_the_dealer_named(
    honest_answer: bool,
) -> None:
    session, _, y, outgoing, incoming = rotate(
        (5, 3), (5, 3), f"box{honest_answer}", SealsAWrongValue,
        cheater=1, victim=2, answer_honestly=honest_answer,
    )  # fmt: skip
    results = run_reshare(session, outgoing, incoming)
    out = results[0].outputs
    if honest_answer:  # the victim takes the value from the public answer
        assert out.cheaters == () and 1 in out.dealers
    else:
        assert out.cheaters == (1,) and 1 not in out.dealers
    assert decrypts([(r.index, r.secret_share) for r in results], 3, y, "box")


def test_too_few_honest_dealers_stop_the_rotation_with_a_reason() -> None:
    _, _, _, outgoing, incoming = rotate((3, 2), (3, 2), "few")
    dealings = [outgoing[0].deal()]  # only one of the two needed deals
    complaints = [m.complain(dealings) for m in incoming]
    with pytest.raises(DkgError, match="only 1 qualified dealers, need 2"):
        incoming[0].finish(dealings, complaints, [])


def test_forged_and_misplaced_messages_are_ignored() -> None:
    session, _, y, outgoing, incoming = rotate((3, 2), (3, 2), "forge")
    dealings = [m.deal() for m in outgoing]
    intruder = keys("forge/intruder", 1)[0]
    forged = sign_message(session, Round.RESHARE_DEALING, 1, dealings[1].payload, intruder)
    # a new member's "dealing", signed with its own key, is not a dealing
    new_key = keys("forge/new", 3)[0]
    misplaced = sign_message(
        session, Round.RESHARE_DEALING, session.new_author(1), dealings[0].payload, new_key
    )
    messages = [forged, misplaced, *dealings]
    complaints = [m.complain(messages) for m in incoming]
    out = reshare_outputs(session, messages, complaints, [])
    assert out.dealers == (1, 2) and out.public_key == y
    assert out.transcript == reshare_outputs(session, dealings, complaints, []).transcript


def test_a_session_refuses_public_shares_that_do_not_make_the_key() -> None:
    shares, y, ks = committee(3, 2, "bad-session")
    ks[2] = base_mul((shares[2] + 1) % N)
    with pytest.raises(ValueError, match="do not interpolate"):
        session_for(shares, y, ks, 2, keys("b/old", 3), keys("b/new", 3), 2)
    with pytest.raises(ValueError, match=r"n >= 2t - 1"):
        session_for(*committee(3, 2, "small"), 2, keys("c/old", 3), keys("c/new", 3), 3)


def test_results_are_what_a_new_member_keeps() -> None:
    session, _, _, outgoing, incoming = rotate((3, 2), (3, 2), "keep")
    results = run_reshare(session, outgoing, incoming)
    assert isinstance(results[0], ReshareResult)
    assert "secret_share" not in repr(results[0])
