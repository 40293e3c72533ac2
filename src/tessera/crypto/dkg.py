"""Distributed key generation with no dealer (GJKR99: Pedersen VSS, complaints, extraction).

``n`` nodes with indices ``1..n`` produce a ``t``-of-``n`` sharing of a secret
``x`` nobody knows: node ``j`` ends with ``x_j`` and everyone with the public
key ``Y = x·G`` and the public shares ``K_j = x_j·G``. Up to ``t − 1`` nodes may
be corrupt, so ``n ≥ 2t − 1`` (:func:`check_committee_size`): the ``n − t + 1``
honest nodes are at least ``t`` and can finish without the others.

1. *Sharing.* Dealer ``i`` picks polynomials ``a_i, b_i`` of degree ``t − 1``,
   broadcasts ``C_ik = a_ik·G + b_ik·H`` and the share ``(a_i(j), b_i(j))`` of
   each node ``j`` sealed to ``j``'s registered key.
2. *Complaints.* Node ``j`` complains about a share that does not match the
   commitments; the dealer answers by broadcasting it. A dealer with ``t`` or
   more complaints, or a bad answer, is disqualified. The rest form ``QUAL``.
3. *Extraction.* Each qualified dealer broadcasts ``A_ik = a_ik·G``. A node
   whose Pedersen-valid share fails this Feldman check publishes it; the
   complaint is checked by all, and the dealer's polynomial is then
   reconstructed from the other nodes' revealed shares, so a cheater can neither
   bias ``Y`` nor make the run fail.

The broadcast is authenticated (:mod:`tessera.crypto.dkg_messages`): every
message is signed by its author for one session. A :class:`DkgNode` verifies
every message it is handed and computes ``QUAL``, the extractions and its result
itself (:class:`BroadcastView`); a share leaves it only as GJKR requires (an
answer to a complaint signed by the accuser, a reveal against a proven
cheater). :func:`drive` sequences the rounds once for every setting: it hands
each participant what was broadcast in the previous round and collects what it
says, through a callable that reaches the participants in memory
(:func:`run_dkg`) or over the network (``tessera.node.roles.committee``).

This module is pure: participants are state machines, randomness is passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from tessera.crypto.dkg_messages import (
    ROUNDS,
    DkgSession,
    Round,
    SignedMessage,
    message_valid,
    public_key_of,
    sign_message,
)
from tessera.crypto.group import G, H, N, Point, base_mul, msm, point_sum
from tessera.crypto.rng import Rng, SeededRng
from tessera.crypto.seal import open_sealed, seal
from tessera.errors import DecodeError, DkgError, ProtocolError, TesseraError


# -- messages ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DealerCommitments:
    """Broadcast, phase 1: ``C_ik = a_ik·G + b_ik·H`` for ``k < t``."""

    dealer: int
    commitments: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Share:
    """Private, phase 1 (also broadcast as a complaint answer or for reconstruction)."""

    dealer: int
    recipient: int
    s: int
    s_blind: int


@dataclass(frozen=True, slots=True)
class Complaint:
    """Broadcast, phase 2: ``accuser`` got no valid share from ``dealer``."""

    accuser: int
    dealer: int


@dataclass(frozen=True, slots=True)
class FeldmanCommitments:
    """Broadcast, phase 3: ``A_ik = a_ik·G``."""

    dealer: int
    commitments: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class DkgResult:
    """What node ``index`` keeps; everything but ``secret_share`` is public."""

    index: int
    threshold: int
    qualified: tuple[int, ...]
    secret_share: int
    public_key: Point
    public_shares: Mapping[int, Point] = field(repr=False)


# -- public checks (anyone can run them on the broadcast channel) -----------------
def _powers(j: int, t: int) -> list[int]:
    out, acc = [], 1
    for _ in range(t):
        out.append(acc)
        acc = acc * j % N
    return out


def commitment_at(commitments: Sequence[Point], j: int) -> Point:
    """``Σ_k j^k · commitments[k]``: the commitment to a polynomial's value at ``j``."""
    return msm(_powers(j, len(commitments)), list(commitments))


def pedersen_share_ok(dc: DealerCommitments, share: Share) -> bool:
    lhs = msm([share.s, share.s_blind], [G, H])
    return lhs == commitment_at(dc.commitments, share.recipient)


def feldman_share_ok(fc: FeldmanCommitments, share: Share) -> bool:
    return base_mul(share.s) == commitment_at(fc.commitments, share.recipient)


def qualified_set(
    n: int,
    t: int,
    dealt: Mapping[int, DealerCommitments],
    complaints: Sequence[Complaint],
    answers: Sequence[Share],
) -> tuple[int, ...]:
    """``QUAL``: dealers with a well-formed commitment, < t complaints, all answered well."""
    qual = []
    for i in range(1, n + 1):
        dc = dealt.get(i)
        if dc is None or len(dc.commitments) != t:
            continue
        accusers = {c.accuser for c in complaints if c.dealer == i and 1 <= c.accuser <= n}
        if len(accusers) >= t:
            continue
        answered = {a.recipient: a for a in answers if a.dealer == i}
        if all(j in answered and pedersen_share_ok(dc, answered[j]) for j in accusers):
            qual.append(i)
    if len(qual) < t:
        raise DkgError(f"only {len(qual)} qualified dealers, need at least {t}")
    return tuple(qual)


def interpolate_coefficients(points: Mapping[int, int], t: int) -> list[int]:
    """Coefficients of the degree ``t − 1`` polynomial through ``t`` of ``points``."""
    xs = sorted(points)[:t]
    if len(xs) < t:
        raise DkgError(f"need {t} shares to reconstruct, have {len(xs)}")
    coeffs = [0] * t
    for xi in xs:
        # basis polynomial ∏_{j≠i} (X − x_j)/(x_i − x_j), expanded
        basis = [1]
        denom = 1
        for xj in xs:
            if xj == xi:
                continue
            nxt = [0] * (len(basis) + 1)
            for k, c in enumerate(basis):  # multiply by (X − x_j)
                nxt[k] = (nxt[k] - xj * c) % N
                nxt[k + 1] = (nxt[k + 1] + c) % N
            basis = nxt
            denom = denom * (xi - xj) % N
        scale = points[xi] * pow(denom, -1, N) % N
        for k in range(t):
            coeffs[k] = (coeffs[k] + scale * basis[k]) % N
    return coeffs


# -- participant state machine ------------------------------------------------------
def check_committee_size(n: int, t: int) -> None:
    """``1 ≤ t`` and ``n ≥ 2t − 1`` (else ValueError): ``t − 1`` corrupt nodes can neither
    block the run nor leave the honest ones fewer than ``t``."""
    if t < 1 or n < 2 * t - 1:
        raise ValueError(
            f"a DKG needs 1 <= t and n >= 2t - 1 (t - 1 corrupt nodes must not block the "
            f"honest ones); got n={n}, t={t}"
        )


class DkgParticipant:
    """Node ``index`` of an ``n``-node, threshold-``t`` GJKR run (the private arithmetic)."""

    def __init__(self, index: int, n: int, t: int, rng: Rng) -> None:
        check_committee_size(n, t)
        if not 1 <= index <= n:
            raise ValueError(f"index {index} must be in [1, {n}]")
        self.index, self.n, self.t = index, n, t
        self._a = [rng.scalar() for _ in range(t)]
        self._b = [rng.scalar() for _ in range(t)]
        self._received: dict[int, Share] = {}
        self._dealt: dict[int, DealerCommitments] = {}

    def derive_secret(self, label: bytes) -> bytes:
        """32 bytes derived from this participant's secret polynomials (SHA-256, by ``label``).

        For the in-memory run only, whose simulated nodes need signing keys and sealing
        randomness without drawing more from the caller's ``rng``."""
        h = hashlib.sha256(b"tessera/dkg/v1/derived" + len(label).to_bytes(4, "big") + label)
        for c in (*self._a, *self._b):
            h.update(c.to_bytes(32, "big"))
        return h.digest()

    @staticmethod
    def _eval(coeffs: Sequence[int], x: int) -> int:
        acc = 0
        for c in reversed(coeffs):
            acc = (acc * x + c) % N
        return acc

    def deal(self) -> tuple[DealerCommitments, list[Share]]:
        cs = tuple(base_mul(a) + H * b for a, b in zip(self._a, self._b, strict=True))
        shares = [
            Share(self.index, j, self._eval(self._a, j), self._eval(self._b, j))
            for j in range(1, self.n + 1)
        ]
        return DealerCommitments(self.index, cs), shares

    def receive(self, dc: DealerCommitments, share: Share | None) -> Complaint | None:
        """Store dealer ``dc.dealer``'s commitments and our share; complain if it is bad."""
        if share is not None and (share.dealer != dc.dealer or share.recipient != self.index):
            raise ProtocolError("share addressed to another node or from another dealer")
        self._dealt[dc.dealer] = dc
        if share is None or len(dc.commitments) != self.t or not pedersen_share_ok(dc, share):
            return Complaint(self.index, dc.dealer)
        self._received[dc.dealer] = share
        return None

    def answer(self, complaints: Sequence[Complaint]) -> list[Share]:
        """Broadcast the shares of the nodes that complained about us."""
        return [
            Share(
                self.index,
                c.accuser,
                self._eval(self._a, c.accuser),
                self._eval(self._b, c.accuser),
            )
            for c in complaints
            if c.dealer == self.index and 1 <= c.accuser <= self.n
        ]

    def adopt_answers(self, answers: Sequence[Share]) -> None:
        """Take a dealer's publicly answered share in place of the bad one we got."""
        for a in answers:
            dc = self._dealt.get(a.dealer)
            if a.recipient == self.index and dc is not None and pedersen_share_ok(dc, a):
                self._received[a.dealer] = a

    def extraction(self) -> FeldmanCommitments:
        return FeldmanCommitments(self.index, tuple(base_mul(a) for a in self._a))

    def check_extraction(self, fc: FeldmanCommitments) -> Share | None:
        """Our share of ``fc.dealer``, published as a complaint, if it fails the Feldman check."""
        share = self._received[fc.dealer]
        if len(fc.commitments) != self.t or not feldman_share_ok(fc, share):
            return share
        return None

    def reveal(self, dealer: int) -> Share:
        """Our share of a dealer whose extraction was proven wrong, for reconstruction."""
        return self._received[dealer]

    def finalize(
        self, qualified: Sequence[int], extracted: Mapping[int, FeldmanCommitments]
    ) -> DkgResult:
        missing = [i for i in qualified if i not in self._received or i not in extracted]
        if missing:
            raise DkgError(f"node {self.index} lacks shares or commitments of dealers {missing}")
        x = sum(self._received[i].s for i in qualified) % N
        pub = public_outputs(self.n, qualified, extracted)
        if base_mul(x) != pub[1][self.index]:
            raise DkgError(f"node {self.index}: share does not match the public share")
        return DkgResult(self.index, self.t, tuple(qualified), x, pub[0], pub[1])


def public_outputs(
    n: int, qualified: Sequence[int], extracted: Mapping[int, FeldmanCommitments]
) -> tuple[Point, dict[int, Point]]:
    """The public key and every node's public share from the qualified extractions."""
    y = point_sum(extracted[i].commitments[0] for i in qualified)
    shares = {
        j: point_sum(commitment_at(extracted[i].commitments, j) for i in qualified)
        for j in range(1, n + 1)
    }
    return y, shares


def extraction_complaint_valid(dc: DealerCommitments, fc: FeldmanCommitments, share: Share) -> bool:
    """A published share that passes Pedersen but fails Feldman proves the dealer cheated."""
    return pedersen_share_ok(dc, share) and not (
        len(fc.commitments) == len(dc.commitments) and feldman_share_ok(fc, share)
    )


def reconstruct_extraction(
    dc: DealerCommitments, revealed: Sequence[Share], t: int
) -> FeldmanCommitments:
    """Rebuild a cheating dealer's ``A_ik`` from ``t`` Pedersen-valid revealed shares."""
    points = {
        s.recipient: s.s for s in revealed if s.dealer == dc.dealer and pedersen_share_ok(dc, s)
    }
    coeffs = interpolate_coefficients(points, t)
    return FeldmanCommitments(dc.dealer, tuple(base_mul(c) for c in coeffs))


# -- payloads: the canonical bytes each kind of message carries --------------------------
# Indices are 2 bytes, scalars 32, points 33 (big-endian, SEC1 compressed, 33 zero bytes for
# the identity); a list is a 2-byte count then its items; a sealed box is length-prefixed.
_SHARE_DOMAIN: Final = b"tessera/dkg/v1/share"
_MAX_BOX: Final = 1024


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def take(self, k: int) -> bytes:
        if self.pos + k > len(self.data):
            raise DecodeError(f"{self.where}: truncated")
        out = self.data[self.pos : self.pos + k]
        self.pos += k
        return out

    def uint(self, k: int) -> int:
        return int.from_bytes(self.take(k), "big")

    def scalar(self) -> int:
        v = self.uint(32)
        if v >= N:
            raise DecodeError(f"{self.where}: scalar out of range")
        return v

    def point(self) -> Point:
        return Point.decode(self.take(33))

    def index(self, n: int) -> int:
        i = self.uint(2)
        if not 1 <= i <= n:
            raise DecodeError(f"{self.where}: index {i} is not in 1..{n}")
        return i

    def end(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{self.where}: {len(self.data) - self.pos} trailing bytes")


def _u16(i: int) -> bytes:
    return i.to_bytes(2, "big")


def _points_bytes(points: Sequence[Point]) -> bytes:
    return _u16(len(points)) + b"".join(p.encode() for p in points)


def _read_points(r: _Reader) -> tuple[Point, ...]:
    return tuple(r.point() for _ in range(r.uint(2)))


def _read_indices(r: _Reader, n: int) -> tuple[int, ...]:
    out = tuple(r.index(n) for _ in range(r.uint(2)))
    if list(out) != sorted(set(out)):
        raise DecodeError(f"{r.where}: indices must be strictly increasing")
    return out


def encode_dealing(commitments: Sequence[Point], boxes: Sequence[bytes]) -> bytes:
    """A dealing: the commitments ``C_ik``, then the sealed share of nodes ``1..n``."""
    return _points_bytes(commitments) + b"".join(
        len(b).to_bytes(2, "big") + bytes(b) for b in boxes
    )


def decode_dealing(payload: bytes, n: int) -> tuple[tuple[Point, ...], tuple[bytes, ...]]:
    r = _Reader(payload, "dealing")
    commitments = _read_points(r)
    boxes = []
    for _ in range(n):
        size = r.uint(2)
        if size > _MAX_BOX:
            raise DecodeError("dealing: sealed share too long")
        boxes.append(r.take(size))
    r.end()
    return commitments, tuple(boxes)


def encode_indices(indices: Sequence[int]) -> bytes:
    """A list of node indices (complaints: the dealers complained about)."""
    xs = sorted(set(indices))
    return _u16(len(xs)) + b"".join(_u16(i) for i in xs)


def decode_indices(payload: bytes, n: int) -> tuple[int, ...]:
    r = _Reader(payload, "indices")
    out = _read_indices(r, n)
    r.end()
    return out


def encode_shares(entries: Sequence[tuple[int, int, int]]) -> bytes:
    """``(other node, s, s_blind)`` per share: the recipient in an answer (the dealer is the
    author), the dealer in accusations and reveals (the recipient is the author)."""
    xs = sorted(entries)
    if len({e[0] for e in xs}) != len(xs):
        raise ValueError("one share per node")
    return _u16(len(xs)) + b"".join(
        _u16(i) + s.to_bytes(32, "big") + b.to_bytes(32, "big") for i, s, b in xs
    )


def decode_shares(payload: bytes, n: int) -> tuple[tuple[int, int, int], ...]:
    r = _Reader(payload, "shares")
    out = tuple((r.index(n), r.scalar(), r.scalar()) for _ in range(r.uint(2)))
    r.end()
    if [e[0] for e in out] != sorted({e[0] for e in out}):
        raise DecodeError("shares: node indices must be strictly increasing")
    return out


def encode_extraction(commitments: Sequence[Point]) -> bytes:
    return _points_bytes(commitments)


def decode_extraction(payload: bytes) -> tuple[Point, ...]:
    r = _Reader(payload, "extraction")
    out = _read_points(r)
    r.end()
    return out


def encode_result(result: DkgResult, n: int) -> bytes:
    """What a node computed: ``t``, ``QUAL``, the public key and the public shares ``1..n``."""
    return (
        _u16(result.threshold)
        + encode_indices(result.qualified)
        + result.public_key.encode()
        + b"".join(result.public_shares[j].encode() for j in range(1, n + 1))
    )


def decode_result(payload: bytes, n: int) -> tuple[int, tuple[int, ...], Point, dict[int, Point]]:
    r = _Reader(payload, "result")
    t = r.uint(2)
    qual = _read_indices(r, n)
    key = r.point()
    shares = {j: r.point() for j in range(1, n + 1)}
    r.end()
    return t, qual, key, shares


def share_aad(session: DkgSession, dealer: int, recipient: int) -> bytes:
    """What a sealed share is bound to: this session, its dealer and its recipient."""
    return _SHARE_DOMAIN + session.id + _u16(dealer) + _u16(recipient)


def _share_plain(s: Share) -> bytes:
    return s.s.to_bytes(32, "big") + s.s_blind.to_bytes(32, "big")


def seal_share(session: DkgSession, share: Share, rng: Rng) -> bytes:
    """``share`` sealed to its recipient's registered key."""
    return seal(
        session.key_of(share.recipient),
        _share_plain(share),
        share_aad(session, share.dealer, share.recipient),
        rng,
    )


def open_share(
    session: DkgSession, secret_key: bytes, dealer: int, recipient: int, box: bytes
) -> Share | None:
    """The share sealed in ``box``, or ``None`` if it does not open (then: complain)."""
    try:
        plain = open_sealed(secret_key, box, share_aad(session, dealer, recipient))
    except (TesseraError, ValueError):
        return None
    if len(plain) != 64:
        return None
    s, b = int.from_bytes(plain[:32], "big"), int.from_bytes(plain[32:], "big")
    if s >= N or b >= N:
        return None
    return Share(dealer, recipient, s, b)


# -- what follows from the signed broadcast ---------------------------------------------
_INPUT: Final[dict[Round, Round | None]] = {
    r: (ROUNDS[k - 1] if k else None) for k, r in enumerate(ROUNDS)
}


@dataclass
class DkgTranscript:
    """Everything broadcast in a run: enough for anyone to recompute the public outputs."""

    dealt: dict[int, DealerCommitments]
    complaints: list[Complaint]
    answers: list[Share]
    qualified: tuple[int, ...]
    extracted: dict[int, FeldmanCommitments]
    reconstructed: tuple[int, ...]
    messages: dict[Round, tuple[SignedMessage, ...]] = field(default_factory=dict, repr=False)


class BroadcastView:
    """The signed messages one party accepted, and what anyone computes from them.

    :meth:`accept` keeps, per round, one message per author: signed for this session by
    that author's registered key, of the round's kind, with a well-formed payload.
    Anything else is dropped and noted in :attr:`rejected` (a relay can drop messages,
    not forge them). An author who signed two different messages for one round has
    equivocated: both are dropped and it is listed in :attr:`equivocators`. A node
    passes its own message as ``own``: it trusts its copy over whatever it is handed.
    """

    def __init__(self, session: DkgSession) -> None:
        self.session = session
        self.n, self.t = session.n, session.t
        self.messages: dict[Round, dict[int, SignedMessage]] = {}
        self.rejected: list[str] = []
        self.equivocators: set[int] = set()
        self.dealt: dict[int, DealerCommitments] = {}
        self.boxes: dict[int, tuple[bytes, ...]] = {}
        self.complaints: dict[int, tuple[int, ...]] = {}  # accuser -> dealers
        self.answers: dict[int, tuple[Share, ...]] = {}  # dealer -> answered shares
        self.extracted: dict[int, FeldmanCommitments] = {}
        self.accusations: dict[int, tuple[Share, ...]] = {}  # accuser -> its failing shares
        self.reveals: dict[int, tuple[Share, ...]] = {}  # revealer -> its shares of cheaters
        self.results: dict[int, tuple[int, tuple[int, ...], Point, dict[int, Point]]] = {}
        self._qual: tuple[int, ...] | None = None

    def accept(
        self, kind: Round, inbox: Sequence[SignedMessage], own: SignedMessage | None = None
    ) -> None:
        if kind in self.messages:
            raise ProtocolError(f"the {kind.value} messages were already taken")
        seen: dict[int, SignedMessage] = {}
        twice: set[int] = set()
        for m in inbox:
            if own is not None and m.author == own.author and m == own:
                continue
            if m.kind is not kind:
                self.rejected.append(f"{kind.value}: a {m.kind.value} message from {m.author}")
            elif not message_valid(self.session, m):
                self.rejected.append(f"{kind.value}: bad signature or author ({m.author})")
            elif own is not None and m.author == own.author:
                self.rejected.append(f"{kind.value}: a message claiming to be this node's own")
            elif m.author in seen and seen[m.author] != m:
                twice.add(m.author)
            else:
                seen[m.author] = m
        for a in sorted(twice):
            del seen[a]
            self.equivocators.add(a)
            self.rejected.append(f"{kind.value}: node {a} signed two different messages")
        if own is not None:
            seen[own.author] = own
        accepted: dict[int, SignedMessage] = {}
        for author in sorted(seen):
            m = seen[author]
            try:
                self._decode(kind, m)
            except DecodeError as exc:
                self.rejected.append(f"{kind.value} of node {author}: {exc}")
                continue
            accepted[author] = m
        self.messages[kind] = accepted

    def _decode(self, kind: Round, m: SignedMessage) -> None:
        n, a = self.n, m.author
        if kind is Round.DEALING:
            commitments, boxes = decode_dealing(m.payload, n)
            self.dealt[a] = DealerCommitments(a, commitments)
            self.boxes[a] = boxes
        elif kind is Round.COMPLAINTS:
            dealers = decode_indices(m.payload, n)
            if a in dealers:
                raise DecodeError("a node complains about itself")
            self.complaints[a] = dealers
        elif kind is Round.ANSWERS:
            entries = decode_shares(m.payload, n)
            self.answers[a] = tuple(Share(a, j, s, b) for j, s, b in entries if j != a)
        elif kind is Round.EXTRACTION:
            self.extracted[a] = FeldmanCommitments(a, decode_extraction(m.payload))
        elif kind is Round.ACCUSATIONS:
            entries = decode_shares(m.payload, n)
            self.accusations[a] = tuple(Share(i, a, s, b) for i, s, b in entries if i != a)
        elif kind is Round.REVEALS:
            entries = decode_shares(m.payload, n)
            self.reveals[a] = tuple(Share(i, a, s, b) for i, s, b in entries if i != a)
        else:
            self.results[a] = decode_result(m.payload, n)

    def all_complaints(self) -> list[Complaint]:
        return [Complaint(a, d) for a in sorted(self.complaints) for d in self.complaints[a]]

    def all_answers(self) -> list[Share]:
        return [s for d in sorted(self.answers) for s in self.answers[d]]

    def qualified(self) -> tuple[int, ...]:
        """``QUAL`` from the dealings, complaints and answers taken (DkgError if < t)."""
        if self._qual is None:
            if Round.ANSWERS not in self.messages:
                raise ProtocolError("QUAL is known only once the answers are in")
            self._qual = qualified_set(
                self.n, self.t, self.dealt, self.all_complaints(), self.all_answers()
            )
        return self._qual

    def proven_cheaters(self) -> dict[int, Share]:
        """Qualified dealers whose signed extraction a signed accusation proves wrong, each
        with one accusation share that proves it (:func:`extraction_complaint_valid`)."""
        out: dict[int, Share] = {}
        qual = set(self.qualified())
        for accuser in sorted(self.accusations):
            for s in self.accusations[accuser]:
                i = s.dealer
                if i in out or i not in qual or i not in self.extracted:
                    continue
                if extraction_complaint_valid(self.dealt[i], self.extracted[i], s):
                    out[i] = s
        return out

    def final_extractions(self, own_shares: Sequence[Share] = ()) -> dict[int, FeldmanCommitments]:
        """The qualified extractions, each proven cheater's rebuilt from ``t`` revealed shares
        (published accusations and reveals, and ``own_shares``)."""
        qual = self.qualified()
        missing = [i for i in qual if i not in self.extracted]
        if missing:
            raise DkgError(
                f"no extraction from qualified dealers {missing} (without a proven complaint "
                "nobody reveals a share, so a missing extraction stops the run)"
            )
        out = {i: self.extracted[i] for i in qual}
        for i in self.proven_cheaters():
            published = [s for ss in self.accusations.values() for s in ss if s.dealer == i]
            published += [s for ss in self.reveals.values() for s in ss if s.dealer == i]
            published += [s for s in own_shares if s.dealer == i]
            out[i] = reconstruct_extraction(self.dealt[i], published, self.t)
        return out

    def transcript(self) -> DkgTranscript:
        qual = self.qualified()
        extracted = self.final_extractions()
        return DkgTranscript(
            dict(self.dealt),
            self.all_complaints(),
            self.all_answers(),
            qual,
            extracted,
            tuple(sorted(self.proven_cheaters())),
            {k: tuple(v[a] for a in sorted(v)) for k, v in self.messages.items()},
        )


# -- a participant of the signed broadcast ----------------------------------------------
class DkgNode:
    """Node ``index`` of a :class:`DkgSession`: it signs what it says and checks what it hears.

    :meth:`step` runs one round: it takes the previous round's messages (as handed by
    whoever relays them), keeps those that verify (:class:`BroadcastView`), and returns
    this node's signed message of the round (none when it has nothing to say). Rounds
    run once each, in order; a round asked again with the same messages gets the same
    answer, with other messages a refusal. ``QUAL``, the extractions and the result
    are computed here from the signed messages, never taken from the relay; a share
    leaves this node only in an answer to a complaint its accuser signed, or in a
    reveal of a dealer that a signed accusation proves to have cheated.
    """

    def __init__(
        self, session: DkgSession, participant: DkgParticipant, secret_key: bytes, rng: Rng
    ) -> None:
        p = participant
        if (p.n, p.t) != (session.n, session.t):
            raise ValueError("the participant and the session disagree on n or t")
        if public_key_of(secret_key) != session.key_of(p.index):
            raise ValueError(f"the signing key is not node {p.index}'s registered key")
        self.session, self.index = session, p.index
        self.view = BroadcastView(session)
        self._p = p
        self._secret = secret_key
        self._rng = rng
        self._next = 0
        self._own: dict[Round, SignedMessage | None] = {}
        self._done: dict[Round, tuple[bytes, list[SignedMessage]]] = {}
        self._failed: str | None = None
        self._result: DkgResult | None = None

    @property
    def result(self) -> DkgResult | None:
        """This node's key once the last round ran."""
        return self._result

    def sign(self, kind: Round, payload: bytes) -> SignedMessage:
        return sign_message(self.session, kind, self.index, payload, self._secret)

    def step(self, kind: Round, inbox: Sequence[SignedMessage]) -> list[SignedMessage]:
        key = hashlib.sha256(
            b"".join(
                m.kind.value.encode() + m.author.to_bytes(2, "big") + m.signature + m.payload
                for m in inbox
            )
        ).digest()
        if kind in self._done:
            done_key, out = self._done[kind]
            if done_key != key:
                raise ProtocolError(
                    f"node {self.index} already ran the {kind.value} round on other messages"
                )
            return list(out)
        if self._failed is not None:
            raise ProtocolError(f"node {self.index}'s run has failed: {self._failed}")
        if self._next >= len(ROUNDS) or ROUNDS[self._next] is not kind:
            expected = ROUNDS[self._next].value if self._next < len(ROUNDS) else "nothing"
            raise ProtocolError(f"node {self.index} expects the {expected} round, not {kind.value}")
        try:
            previous = _INPUT[kind]
            if previous is None:
                if inbox:
                    raise ProtocolError("the dealing round takes no messages")
            else:
                self.view.accept(previous, inbox, self._own.get(previous))
            payload = self._say(kind)
        except TesseraError as exc:
            self._failed = str(exc)
            raise
        out = [] if payload is None else [self.sign(kind, payload)]
        self._own[kind] = out[0] if out else None
        self._done[kind] = (key, out)
        self._next += 1
        return list(out)

    def _say(self, kind: Round) -> bytes | None:
        p, v, me = self._p, self.view, self.index
        if kind is Round.DEALING:
            dc, shares = p.deal()
            p.receive(dc, shares[me - 1])
            boxes = [seal_share(self.session, s, self._rng) for s in shares]
            return encode_dealing(dc.commitments, boxes)
        if kind is Round.COMPLAINTS:
            accused = []
            for i in sorted(v.dealt):
                if i == me:
                    continue
                share = open_share(self.session, self._secret, i, me, v.boxes[i][me - 1])
                if p.receive(v.dealt[i], share) is not None:
                    accused.append(i)
            return encode_indices(accused)
        if kind is Round.ANSWERS:
            accusers = [Complaint(a, me) for a, ds in sorted(v.complaints.items()) if me in ds]
            return encode_shares([(s.recipient, s.s, s.s_blind) for s in p.answer(accusers)])
        if kind is Round.EXTRACTION:
            p.adopt_answers(v.all_answers())
            if me not in v.qualified():
                return None
            return encode_extraction(p.extraction().commitments)
        if kind is Round.ACCUSATIONS:
            extracted = {i: v.extracted.get(i) for i in v.qualified() if i != me}
            missing = [i for i, fc in extracted.items() if fc is None]
            if missing:
                raise DkgError(f"node {me}: no extraction from qualified dealers {missing}")
            bad = [p.check_extraction(fc) for fc in extracted.values() if fc is not None]
            return encode_shares([(s.dealer, s.s, s.s_blind) for s in bad if s is not None])
        if kind is Round.REVEALS:
            cheaters = [i for i in v.proven_cheaters() if i != me]
            return encode_shares([(i, p.reveal(i).s, p.reveal(i).s_blind) for i in cheaters])
        own = [p.reveal(i) for i in v.proven_cheaters() if i != me]
        self._result = p.finalize(v.qualified(), v.final_extractions(own))
        return encode_result(self._result, self.session.n)


# -- one round driver for every setting -------------------------------------------------
class RoundParticipant(Protocol):
    """What :func:`drive` talks to: a :class:`DkgNode` or a wrapper around one."""

    @property
    def index(self) -> int: ...

    @property
    def result(self) -> DkgResult | None: ...

    def step(self, kind: Round, inbox: Sequence[SignedMessage]) -> list[SignedMessage]: ...


#: Hands a round's inbox to every participant and returns, by index, what each said.
Exchange = Callable[[Round, tuple[SignedMessage, ...]], Mapping[int, Sequence[SignedMessage]]]


def drive(session: DkgSession, exchange: Exchange) -> dict[Round, tuple[SignedMessage, ...]]:
    """Run every round: the inbox of round ``k`` is all that was said in round ``k − 1``.

    The driver is only a relay: it keeps a reply only if it verifies as its replier's
    message of the round, and decides nothing else. What was said, round by round, is
    returned (the public transcript, :func:`audit`)."""
    log: dict[Round, tuple[SignedMessage, ...]] = {}
    inbox: tuple[SignedMessage, ...] = ()
    for kind in ROUNDS:
        replies = exchange(kind, inbox)
        inbox = tuple(
            m
            for author in sorted(replies)
            for m in replies[author]
            if m.kind is kind and m.author == author and message_valid(session, m)
        )
        log[kind] = inbox
    return log


def audit(session: DkgSession, log: Mapping[Round, Sequence[SignedMessage]]) -> DkgTranscript:
    """What any observer of the broadcast computes from it (signatures checked)."""
    view = BroadcastView(session)
    for kind in ROUNDS:
        view.accept(kind, log.get(kind, ()))
    return view.transcript()


def in_memory_nodes(n: int, t: int, rng: Rng) -> tuple[DkgSession, dict[int, DkgNode]]:
    """``n`` simulated nodes of one session, their polynomials drawn from ``rng`` in index order.

    Each node's signing key and sealing randomness are derived from its own polynomials
    (:meth:`DkgParticipant.derive_secret`), so the run draws from ``rng`` exactly the
    ``2t`` scalars per node that the key depends on."""
    check_committee_size(n, t)
    parts = [DkgParticipant(i, n, t, rng) for i in range(1, n + 1)]
    secrets = [1 + int.from_bytes(p.derive_secret(b"identity"), "big") % (N - 1) for p in parts]
    keys = [k.to_bytes(32, "big") for k in secrets]
    session = DkgSession(n, t, tuple(public_key_of(k) for k in keys), bytes(32))
    nodes = {
        p.index: DkgNode(session, p, k, SeededRng(p.derive_secret(b"seal")))
        for p, k in zip(parts, keys, strict=True)
    }
    return session, nodes


def run_in_memory(
    session: DkgSession, participants: Mapping[int, RoundParticipant]
) -> tuple[dict[int, DkgResult], DkgTranscript]:
    """:func:`drive` with every participant in this process; the results of those that
    finished and the public transcript."""

    def exchange(
        kind: Round, inbox: tuple[SignedMessage, ...]
    ) -> dict[int, Sequence[SignedMessage]]:
        return {i: participants[i].step(kind, inbox) for i in sorted(participants)}

    log = drive(session, exchange)
    results = {i: p.result for i, p in participants.items() if p.result is not None}
    return results, audit(session, log)


def run_dkg(n: int, t: int, rng: Rng) -> tuple[dict[int, DkgResult], DkgTranscript]:
    """Run GJKR among ``n`` honest in-memory nodes (ValueError unless ``n ≥ 2t − 1``)."""
    session, nodes = in_memory_nodes(n, t, rng)
    return run_in_memory(session, nodes)
