"""Distributed key generation with no dealer (GJKR99: Pedersen VSS, complaints, extraction).

``n`` nodes with indices ``1..n`` produce a ``t``-of-``n`` sharing of a secret
``x`` nobody knows: node ``j`` ends with ``x_j`` and everyone with the public
key ``Y = x·G`` and the public shares ``K_j = x_j·G``.

1. *Sharing.* Dealer ``i`` picks polynomials ``a_i, b_i`` of degree ``t − 1``,
   broadcasts ``C_ik = a_ik·G + b_ik·H`` and sends ``(a_i(j), b_i(j))`` to
   node ``j`` privately.
2. *Complaints.* Node ``j`` complains about a share that does not match the
   commitments; the dealer answers by broadcasting it. A dealer with ``t`` or
   more complaints, or a bad answer, is disqualified. The rest form ``QUAL``.
3. *Extraction.* Each qualified dealer broadcasts ``A_ik = a_ik·G``. A node
   whose Pedersen-valid share fails this Feldman check publishes it; the
   complaint is checked by all, and the dealer's polynomial is then
   reconstructed from the other nodes' shares, so a cheater can neither bias
   ``Y`` nor make the run fail.

This module is pure: participants are state machines returning message
objects; :func:`run_dkg` drives them in memory (a network driver lives in
``tessera.protocol`` / ``tessera.node``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from tessera.crypto.group import G, H, N, Point, base_mul, msm, point_sum
from tessera.crypto.rng import Rng
from tessera.errors import DkgError, ProtocolError


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
class DkgParticipant:
    """Node ``index`` of an ``n``-node, threshold-``t`` GJKR run."""

    def __init__(self, index: int, n: int, t: int, rng: Rng) -> None:
        if not 1 <= t <= n:
            raise ValueError(f"threshold {t} must be in [1, {n}]")
        if not 1 <= index <= n:
            raise ValueError(f"index {index} must be in [1, {n}]")
        self.index, self.n, self.t = index, n, t
        self._a = [rng.scalar() for _ in range(t)]
        self._b = [rng.scalar() for _ in range(t)]
        self._received: dict[int, Share] = {}
        self._dealt: dict[int, DealerCommitments] = {}

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


# -- in-memory driver ------------------------------------------------------------------
class Fault(Enum):
    """Test-only misbehaviour of a dealer in :func:`run_dkg`."""

    BAD_SHARE = "bad-share"  # corrupts node 1's (or 2's) share and repeats it when accused
    BAD_SHARE_FIXED = "bad-share-fixed"  # corrupts a share but answers the complaint honestly
    BAD_EXTRACTION = "bad-extraction"  # publishes A_ik inconsistent with its shares
    SILENT = "silent"  # never deals


@dataclass
class DkgTranscript:
    """Everything broadcast in a run: enough for anyone to recompute the public outputs."""

    dealt: dict[int, DealerCommitments]
    complaints: list[Complaint]
    answers: list[Share]
    qualified: tuple[int, ...]
    extracted: dict[int, FeldmanCommitments]
    reconstructed: tuple[int, ...]


def run_dkg(
    n: int, t: int, rng: Rng, faults: Mapping[int, Fault] | None = None
) -> tuple[dict[int, DkgResult], DkgTranscript]:
    """Run GJKR among ``n`` in-memory participants; results for every non-silent honest node."""
    faults = dict(faults or {})
    nodes = {i: DkgParticipant(i, n, t, rng) for i in range(1, n + 1)}
    dealt: dict[int, DealerCommitments] = {}
    private: dict[int, dict[int, Share]] = {j: {} for j in nodes}
    for i, node in nodes.items():
        if faults.get(i) is Fault.SILENT:
            continue
        dc, shares = node.deal()
        dealt[i] = dc
        for s in shares:
            if faults.get(i) in (Fault.BAD_SHARE, Fault.BAD_SHARE_FIXED) and s.recipient == _victim(
                i
            ):
                s = Share(s.dealer, s.recipient, (s.s + 1) % N, s.s_blind)
            private[s.recipient][i] = s
    complaints: list[Complaint] = []
    for j, node in nodes.items():
        for i in range(1, n + 1):
            if i == j:
                continue
            c = node.receive(dealt[i], private[j].get(i)) if i in dealt else Complaint(j, i)
            if c is not None:
                complaints.append(c)
        if j in dealt:  # our own share of our own polynomial
            node.receive(dealt[j], private[j][j])
    answers: list[Share] = []
    for i, node in nodes.items():
        if i not in dealt:
            continue
        ans = node.answer(complaints)
        if faults.get(i) is Fault.BAD_SHARE:
            ans = [Share(a.dealer, a.recipient, (a.s + 1) % N, a.s_blind) for a in ans]
        answers.extend(ans)
    for node in nodes.values():
        node.adopt_answers(answers)
    qual = qualified_set(n, t, dealt, complaints, answers)

    extracted: dict[int, FeldmanCommitments] = {}
    for i in qual:
        fc = nodes[i].extraction()
        if faults.get(i) is Fault.BAD_EXTRACTION:
            fc = FeldmanCommitments(i, (fc.commitments[0] + G, *fc.commitments[1:]))
        extracted[i] = fc
    reconstructed: list[int] = []
    for i in qual:
        published = [nodes[j].check_extraction(extracted[i]) for j in qual if j != i]
        accusations = [s for s in published if s is not None]
        if any(extraction_complaint_valid(dealt[i], extracted[i], s) for s in accusations):
            revealed = [nodes[j].reveal(i) for j in qual if j != i]
            extracted[i] = reconstruct_extraction(dealt[i], revealed, t)
            reconstructed.append(i)
    honest = [j for j in qual if j not in faults]
    results = {j: nodes[j].finalize(qual, extracted) for j in honest}
    return results, DkgTranscript(dealt, complaints, answers, qual, extracted, tuple(reconstructed))


def _victim(dealer: int) -> int:
    return 2 if dealer == 1 else 1
