"""Misbehaving DKG participants, for tests: wrappers around an honest :class:`DkgNode`.

A faulty node holds its own signing key, so what it says is signed and verifies; it
lies in what it signs. The production driver and nodes know nothing of faults: the
wrappers only change the messages a node returns from :meth:`DkgNode.step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from tessera.crypto.dkg import (
    DkgNode,
    DkgResult,
    DkgTranscript,
    RoundParticipant,
    Share,
    decode_dealing,
    decode_extraction,
    decode_shares,
    encode_dealing,
    encode_extraction,
    encode_shares,
    in_memory_nodes,
    run_in_memory,
    seal_share,
)
from tessera.crypto.dkg_messages import Round, SignedMessage
from tessera.crypto.group import G, N
from tessera.crypto.rng import Rng, SeededRng


class Fault(Enum):
    """How a dealer misbehaves."""

    BAD_SHARE = "bad-share"  # corrupts its victim's share and repeats it when accused
    BAD_SHARE_FIXED = "bad-share-fixed"  # corrupts a share but answers the complaint honestly
    BAD_EXTRACTION = "bad-extraction"  # publishes A_ik inconsistent with its shares
    SILENT = "silent"  # says nothing at all


def victim(dealer: int) -> int:
    """The node whose share a BAD_SHARE dealer corrupts."""
    return 2 if dealer == 1 else 1


class FaultyNode:
    """A node that runs honestly inside and tampers with what it says (then signs it)."""

    def __init__(self, node: DkgNode, fault: Fault) -> None:
        self.node, self.fault = node, fault
        self._rng = SeededRng(b"faulty-node/" + node.session.id + bytes([node.index]))

    @property
    def index(self) -> int:
        return self.node.index

    @property
    def result(self) -> DkgResult | None:
        return None  # a faulty node's own key is of no interest

    def step(self, kind: Round, inbox: Sequence[SignedMessage]) -> list[SignedMessage]:
        if self.fault is Fault.SILENT:
            return []
        out = self.node.step(kind, inbox)
        return [self._tamper(m) for m in out]

    def _tamper(self, m: SignedMessage) -> SignedMessage:
        node, session, f = self.node, self.node.session, self.fault
        bad_share = f in (Fault.BAD_SHARE, Fault.BAD_SHARE_FIXED)
        if m.kind is Round.DEALING and bad_share:
            commitments, boxes = decode_dealing(m.payload, session.n)
            v = victim(node.index)
            poly = node._p  # the dealer's own polynomials (a test may look inside)
            s, b = poly._eval(poly._a, v), poly._eval(poly._b, v)
            wrong = Share(node.index, v, (s + 1) % N, b)
            new = list(boxes)
            new[v - 1] = seal_share(session, wrong, self._rng)
            return node.sign(m.kind, encode_dealing(commitments, new))
        if m.kind is Round.ANSWERS and f is Fault.BAD_SHARE:
            entries = [(j, (s + 1) % N, b) for j, s, b in decode_shares(m.payload, session.n)]
            return node.sign(m.kind, encode_shares(entries))
        if m.kind is Round.EXTRACTION and f is Fault.BAD_EXTRACTION:
            a = decode_extraction(m.payload)
            return node.sign(m.kind, encode_extraction((a[0] + G, *a[1:])))
        return m


def run_with_faults(
    n: int, t: int, rng: Rng, faults: Mapping[int, Fault] | None = None
) -> tuple[dict[int, DkgResult], DkgTranscript]:
    """:func:`tessera.crypto.dkg.run_dkg` with the nodes in ``faults`` misbehaving.

    The polynomials are drawn as in an honest run of the same ``rng``, so a faulty run
    can be compared with the clean one."""
    session, nodes = in_memory_nodes(n, t, rng)
    participants: dict[int, RoundParticipant] = {
        i: FaultyNode(node, faults[i]) if faults and i in faults else node
        for i, node in nodes.items()
    }
    return run_in_memory(session, participants)
