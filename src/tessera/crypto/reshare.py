"""Proactive resharing: a committee hands its key to another, and the public key stays.

The outgoing committee (``n`` members, threshold ``t``, each member ``i`` holding the
share ``x_i`` of the key ``x`` with public share ``K_i = x_i·G``) reshares to an
incoming one (``n'`` members, threshold ``t'``; members may be the same nodes, or
not). This is verifiable secret redistribution (Desmedt–Jajodia; Wong, Wang and
Wing), over the same authenticated broadcast as the DKG:

1. *Dealing.* Each old member ``i`` picks a polynomial ``f_i`` of degree ``t' − 1``
   with ``f_i(0) = x_i``, broadcasts the Feldman commitments ``A_ik = f_ik·G`` and
   the value ``f_i(j)`` of each new member ``j`` sealed to ``j``'s registered key.
   Anyone checks ``A_i0 = K_i``: the dealer reshares the share it holds, not another.
2. *Complaints.* A new member complains about a dealer whose share does not open or
   does not match the commitments.
3. *Answers.* The dealer broadcasts the shares complained about; anyone checks them.

A dealer is *qualified* if its dealing is well formed with ``A_i0 = K_i``, fewer than
``t'`` new members complained about it, and it answered every complaint with a share
that matches its commitments; the others are named as cheaters (:attr:`ReshareOutputs.
cheaters`: a bad dealing or a bad or missing answer is public evidence). At least
``t`` qualified dealers are needed. The first ``t`` of them, ``S``, are used: new
member ``j``'s share is ``x'_j = Σ_{i∈S} λ_i · f_i(j)``, with ``λ_i`` the Lagrange
coefficients of ``S`` at 0, so that ``Σ_j λ'_j x'_j = Σ_i λ_i x_i = x`` for any ``t'``
new members. The new public shares ``K'_j = Σ_{i∈S} λ_i · Σ_k j^k A_ik`` and the
key ``Σ_{i∈S} λ_i A_i0 = Y`` follow from the broadcast alone
(:func:`reshare_outputs`), so anyone can re-check a rotation from its transcript.

Old members erase their shares once the new committee holds its own
(:meth:`OutgoingMember.erase`): the new shares lie on unrelated polynomials, so an
old share combined with new ones decrypts nothing. Up to ``t − 1`` old and ``t' − 1``
new members may be corrupt (a coalition of ``t`` old members that kept their shares
still holds the key: resharing protects against an adversary that corrupts fewer
than a threshold in each committee, as every proactive scheme).

Pure: participants are state machines, randomness is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from tessera.crypto.dkg import (
    check_committee_size,
    commitment_at,
    decode_dealing,
    decode_indices,
    decode_shares,
    encode_dealing,
    encode_indices,
    encode_shares,
)
from tessera.crypto.dkg_messages import (
    NONCE_SIZE,
    Round,
    SignedMessage,
    member_keys,
    message_valid,
    session_digest,
    sign_message,
)
from tessera.crypto.group import N, Point, base_mul, msm, point_sum
from tessera.crypto.rng import Rng
from tessera.crypto.seal import open_sealed, seal
from tessera.crypto.threshold import lagrange_at_zero
from tessera.errors import DecodeError, DkgError, TesseraError

SESSION_DOMAIN: Final = b"tessera/reshare/v1/session"
SHARE_DOMAIN: Final = b"tessera/reshare/v1/share"


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _u16(i: int) -> bytes:
    return i.to_bytes(2, "big")


@dataclass(frozen=True)
class ReshareSession:
    """One rotation: the outgoing committee (keys, threshold, public key and shares), the
    incoming one (keys, threshold) and a nonce. Authors of its messages are the old
    members ``1..n`` and the new members ``n + 1 .. n + n'`` (:meth:`new_author`)."""

    old_members: tuple[bytes, ...]
    old_t: int
    public_key: Point
    public_shares: tuple[Point, ...]  # K_i of old member i = 1..n, in order
    new_members: tuple[bytes, ...]
    new_t: int
    nonce: bytes
    id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.old_t <= len(self.old_members):
            raise ValueError(
                f"reshare: old threshold {self.old_t} for {len(self.old_members)} members"
            )
        check_committee_size(len(self.new_members), self.new_t)
        if len(self.public_shares) != len(self.old_members):
            raise ValueError(
                f"reshare: {len(self.public_shares)} public shares, {len(self.old_members)} members"
            )
        old = member_keys(self.old_members, "reshare, old committee")
        new = member_keys(self.new_members, "reshare, new committee")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"reshare: the nonce is {NONCE_SIZE} bytes")
        first = list(range(1, self.old_t + 1))
        combined = point_sum(self.public_shares[i - 1] * lagrange_at_zero(i, first) for i in first)
        if combined != self.public_key:
            raise ValueError("reshare: the public shares do not interpolate to the public key")
        object.__setattr__(self, "old_members", old)
        object.__setattr__(self, "new_members", new)
        digest = session_digest(
            SESSION_DOMAIN,
            _u16(len(old)),
            _u16(self.old_t),
            *old,
            self.public_key.encode(),
            *(k.encode() for k in self.public_shares),
            _u16(len(new)),
            _u16(self.new_t),
            *new,
            bytes(self.nonce),
        )
        object.__setattr__(self, "id", digest)

    @property
    def old_n(self) -> int:
        return len(self.old_members)

    @property
    def new_n(self) -> int:
        return len(self.new_members)

    @property
    def n(self) -> int:
        """Authors of this session: old and new members."""
        return self.old_n + self.new_n

    def key_of(self, index: int) -> bytes:
        """Author ``index``'s registered key."""
        if index <= self.old_n:
            return self.old_members[index - 1]
        return self.new_members[index - self.old_n - 1]

    def new_author(self, j: int) -> int:
        """The author index of new member ``j``."""
        return self.old_n + j

    def share_aad(self, dealer: int, recipient: int) -> bytes:
        return SHARE_DOMAIN + self.id + _u16(dealer) + _u16(recipient)


# -- what follows from the broadcast (anyone can compute it) ----------------------------
@dataclass(frozen=True)
class ReshareOutputs:
    """The public result of a rotation."""

    dealers: tuple[int, ...]  # S: the t qualified old members whose dealings are used
    cheaters: tuple[int, ...]  # old members with a bad dealing, or a bad or missing answer
    public_key: Point
    public_shares: Mapping[int, Point] = field(repr=False)  # K'_j, j = 1..n'
    transcript: bytes = field(repr=False)  # SHA-256 of every message used (for the ledger)


def _by_author(
    session: ReshareSession, kind: Round, messages: Sequence[SignedMessage]
) -> dict[int, SignedMessage]:
    """The first validly signed message of ``kind`` per author who may say it: old members
    deal and answer, new members complain (forgeries and misplaced messages are dropped)."""
    new = kind is Round.RESHARE_COMPLAINTS
    out: dict[int, SignedMessage] = {}
    for m in messages:
        if m.kind is not kind or m.author in out or (m.author > session.old_n) != new:
            continue
        if message_valid(session, m):
            out[m.author] = m
    return out


def _dealings(
    session: ReshareSession, messages: Sequence[SignedMessage]
) -> tuple[dict[int, tuple[tuple[Point, ...], tuple[bytes, ...]]], set[int]]:
    """Well-formed dealings by old member, and the old members whose dealing is bad."""
    good: dict[int, tuple[tuple[Point, ...], tuple[bytes, ...]]] = {}
    bad: set[int] = set()
    for i, m in _by_author(session, Round.RESHARE_DEALING, messages).items():
        try:
            commitments, boxes = decode_dealing(m.payload, session.new_n)
        except DecodeError:
            bad.add(i)
            continue
        if len(commitments) != session.new_t or commitments[0] != session.public_shares[i - 1]:
            bad.add(i)  # not a resharing of the share it holds
            continue
        good[i] = (commitments, boxes)
    return good, bad


def _complaints(session: ReshareSession, messages: Sequence[SignedMessage]) -> dict[int, set[int]]:
    """Per old member, the new members that complained about it."""
    out: dict[int, set[int]] = {}
    for author, m in _by_author(session, Round.RESHARE_COMPLAINTS, messages).items():
        try:
            dealers = decode_indices(m.payload, session.old_n)
        except DecodeError:
            continue
        for i in dealers:
            out.setdefault(i, set()).add(author - session.old_n)
    return out


def _answers(
    session: ReshareSession, messages: Sequence[SignedMessage]
) -> dict[int, dict[int, int]]:
    """Per old member, the values it broadcast for the new members (recipient → f_i(j))."""
    out: dict[int, dict[int, int]] = {}
    for i, m in _by_author(session, Round.RESHARE_ANSWERS, messages).items():
        try:
            entries = decode_shares(m.payload, session.new_n)
        except DecodeError:
            continue
        out[i] = {j: s for j, s, _ in entries}
    return out


def share_ok(commitments: Sequence[Point], j: int, value: int) -> bool:
    """Whether ``value`` is ``f(j)`` for the polynomial ``commitments`` commit to."""
    return base_mul(value) == commitment_at(commitments, j)


def reshare_outputs(
    session: ReshareSession,
    dealings: Sequence[SignedMessage],
    complaints: Sequence[SignedMessage],
    answers: Sequence[SignedMessage],
) -> ReshareOutputs:
    """The qualified dealers, the cheaters, the new public shares and key, from the
    broadcast alone (every new member, the verifier and the ledger's auditors agree)."""
    good, bad = _dealings(session, dealings)
    accused = _complaints(session, complaints)
    answered = _answers(session, answers)
    qualified = []
    cheaters = set(bad) | {i for i in range(1, session.old_n + 1) if i not in good}
    for i, (commitments, _) in sorted(good.items()):
        accusers = accused.get(i, set())
        if len(accusers) >= session.new_t:
            cheaters.add(i)
            continue
        given = answered.get(i, {})
        if all(j in given and share_ok(commitments, j, given[j]) for j in accusers):
            qualified.append(i)
        else:
            cheaters.add(i)
    if len(qualified) < session.old_t:
        raise DkgError(
            f"resharing: only {len(qualified)} qualified dealers, need {session.old_t} "
            f"(cheaters: {sorted(cheaters)})"
        )
    dealers = tuple(qualified[: session.old_t])
    lam = {i: lagrange_at_zero(i, dealers) for i in dealers}
    public_shares = {
        j: msm([lam[i] for i in dealers], [commitment_at(good[i][0], j) for i in dealers])
        for j in range(1, session.new_n + 1)
    }
    key = msm([lam[i] for i in dealers], [good[i][0][0] for i in dealers])
    if key != session.public_key:  # A_i0 = K_i for every dealer: cannot happen
        raise DkgError("resharing: the new public key differs from the old one")
    used = sorted(
        (m.kind.value, m.author, m.payload, m.signature)
        for kind, said in (
            (Round.RESHARE_DEALING, dealings),
            (Round.RESHARE_COMPLAINTS, complaints),
            (Round.RESHARE_ANSWERS, answers),
        )
        for m in _by_author(session, kind, said).values()
    )
    transcript = hashlib.sha256(
        session.id + b"".join(_lp(k.encode()) + _u16(a) + _lp(p) + s for k, a, p, s in used)
    ).digest()
    return ReshareOutputs(dealers, tuple(sorted(cheaters)), key, public_shares, transcript)


# -- participants ---------------------------------------------------------------------
class OutgoingMember:
    """Old member ``index`` holding ``share``: deals it, answers complaints, then erases it."""

    def __init__(
        self, session: ReshareSession, index: int, share: int, secret_key: bytes, rng: Rng
    ) -> None:
        if not 1 <= index <= session.old_n:
            raise ValueError(f"old member {index} is not in this committee")
        if base_mul(share) != session.public_shares[index - 1]:
            raise DkgError(f"old member {index}: the share is not the one registered")
        self.session = session
        self.index = index
        self._key = secret_key
        self._rng = rng
        self._share: int | None = share
        self._coeffs: list[int] = []

    def _value(self, j: int) -> int:
        acc = 0
        for c in reversed(self._coeffs):
            acc = (acc * j + c) % N
        return acc

    def deal(self) -> SignedMessage:
        """Commitments to a fresh polynomial through the share, each value sealed."""
        if self._share is None:
            raise DkgError(f"old member {self.index} has erased its share")
        s = self.session
        self._coeffs = [self._share] + [self._rng.scalar() for _ in range(s.new_t - 1)]
        commitments = [base_mul(c) for c in self._coeffs]
        boxes = [
            seal(
                s.new_members[j - 1],
                self._value(j).to_bytes(32, "big"),
                s.share_aad(self.index, j),
                self._rng,
            )
            for j in range(1, s.new_n + 1)
        ]
        payload = encode_dealing(commitments, boxes)
        return sign_message(s, Round.RESHARE_DEALING, self.index, payload, self._key)

    def answer(self, complaints: Sequence[SignedMessage]) -> SignedMessage | None:
        """The values complained about, broadcast (None if nobody complained)."""
        accusers = _complaints(self.session, complaints).get(self.index, set())
        if not accusers:
            return None
        if not self._coeffs:
            raise DkgError(f"old member {self.index} has not dealt")
        payload = encode_shares([(j, self._value(j), 0) for j in sorted(accusers)])
        return sign_message(self.session, Round.RESHARE_ANSWERS, self.index, payload, self._key)

    def erase(self) -> None:
        """Forget the old share and the polynomial (once the new committee holds the key)."""
        self._share = None
        self._coeffs = []

    @property
    def erased(self) -> bool:
        return self._share is None


@dataclass(frozen=True)
class ReshareResult:
    """What new member ``index`` keeps; everything but ``secret_share`` is public."""

    index: int
    threshold: int
    secret_share: int = field(repr=False)
    outputs: ReshareOutputs

    @property
    def public_key(self) -> Point:
        return self.outputs.public_key

    @property
    def public_shares(self) -> Mapping[int, Point]:
        return self.outputs.public_shares


class IncomingMember:
    """New member ``index``: opens its values, complains, computes its share."""

    def __init__(self, session: ReshareSession, index: int, secret_key: bytes) -> None:
        if not 1 <= index <= session.new_n:
            raise ValueError(f"new member {index} is not in this committee")
        self.session = session
        self.index = index
        self._key = secret_key
        self._values: dict[int, int] = {}

    def complain(self, dealings: Sequence[SignedMessage]) -> SignedMessage:
        """Open each well-formed dealing's value; complain about those that fail."""
        s = self.session
        good, _ = _dealings(s, dealings)
        failed = []
        for i, (commitments, boxes) in sorted(good.items()):
            value = self._open(i, boxes[self.index - 1])
            if value is None or not share_ok(commitments, self.index, value):
                failed.append(i)
            else:
                self._values[i] = value
        author = s.new_author(self.index)
        return sign_message(s, Round.RESHARE_COMPLAINTS, author, encode_indices(failed), self._key)

    def _open(self, dealer: int, box: bytes) -> int | None:
        try:
            plain = open_sealed(self._key, box, self.session.share_aad(dealer, self.index))
        except (TesseraError, ValueError):
            return None
        value = int.from_bytes(plain, "big") if len(plain) == 32 else N
        return value if value < N else None

    def finish(
        self,
        dealings: Sequence[SignedMessage],
        complaints: Sequence[SignedMessage],
        answers: Sequence[SignedMessage],
    ) -> ReshareResult:
        """The new share from the qualified dealers (answers fill what did not open)."""
        out = reshare_outputs(self.session, dealings, complaints, answers)
        given = _answers(self.session, answers)
        share = 0
        for i in out.dealers:
            value = self._values.get(i, given.get(i, {}).get(self.index))
            if value is None:
                raise DkgError(f"new member {self.index}: no value from dealer {i}")
            share = (share + lagrange_at_zero(i, out.dealers) * value) % N
        if base_mul(share) != out.public_shares[self.index]:
            raise DkgError(f"new member {self.index}: the share does not match its public share")
        self._values = {}
        return ReshareResult(self.index, self.session.new_t, share, out)


def run_reshare(
    session: ReshareSession,
    outgoing: Sequence[OutgoingMember],
    incoming: Sequence[IncomingMember],
) -> list[ReshareResult]:
    """A whole rotation in memory (every message goes to everyone); old shares erased.

    ``outgoing`` may be any of the old members (the missing ones deal nothing and are
    named among the cheaters); every new member is needed to end with a share."""
    dealings = [m.deal() for m in outgoing]
    complaints = [m.complain(dealings) for m in incoming]
    answers = [a for m in outgoing if (a := m.answer(complaints)) is not None]
    results = [m.finish(dealings, complaints, answers) for m in incoming]
    for m in outgoing:
        m.erase()
    return results
