"""The networked DKG against a malicious relay, outsiders and members without a complaint.

Three computing nodes (t = 2) as :class:`NodeRole` behind one :class:`InProcessTransport`
(signed requests, as over HTTP). Node 1 relays; in the attacks below the relay is the
test's own code acting with node 1's key, so it can drop, reorder, substitute and
forge whatever it carries, and sign anything as node 1. MALLORY is registered (an
analyst) but not a member; PROVIDER is a registered provider; STRANGER is unregistered.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tessera.crypto import dkg
from tessera.crypto.dkg_messages import DkgSession, Round, SignedMessage, sign_message
from tessera.crypto.group import N, base_mul
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import lagrange_at_zero
from tessera.errors import (
    ConfigError,
    DkgError,
    LedgerError,
    PolicyViolation,
    ProtocolError,
    TesseraError,
    TransportError,
    Unauthorized,
)
from tessera.ledger import Committee, Participant
from tessera.node.config import load_role_config
from tessera.node.envelope import ReplayGuard, StaticDirectory
from tessera.node.identity import Identity
from tessera.node.roles import NodeRole
from tessera.node.roles.committee import PATHS
from tessera.node.store import SqliteStore
from tessera.node.transport import InProcessTransport

MALLORY = Identity(bytes([0x4D]) * 32)
PROVIDER = Identity(bytes([0x50]) * 32)
STRANGER = Identity(bytes([0x53]) * 32)
NONCE = bytes(range(32))


@dataclass
class _Created:
    committee_id: int


@dataclass
class _Endorsed:
    proposal: bytes
    committee_id: int | None


@dataclass
class Book:
    """The registry as the DKG uses it: committees and participants' roles."""

    committees: list[Committee] = field(default_factory=list)
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    endorsements: dict[bytes, set[str]] = field(default_factory=dict)
    formed: dict[bytes, int] = field(default_factory=dict)


class FakeLedger:
    def __init__(self, account: str, book: Book) -> None:
        self.account, self.book = account, book

    def record_committee(
        self, members: Sequence[str], t: int, public_key: bytes, shares: Sequence[bytes]
    ) -> _Created:
        """Put a committee on the fake ledger as is: what a corrupt relay would want."""
        pairs = sorted(zip(members, shares, strict=True), key=lambda p: int(p[0], 16))
        cid = len(self.book.committees)
        self.book.committees.append(
            Committee(cid, tuple(m for m, _ in pairs), t, public_key, tuple(s for _, s in pairs))
        )
        return _Created(cid)

    def endorse_committee(
        self, members: Sequence[str], t: int, public_key: bytes, shares: Sequence[bytes]
    ) -> _Endorsed:
        """The registry's rule: formed once n - t + 1 members endorsed the same proposal."""
        proposal = hashlib.sha256(repr((sorted(members), t, public_key, list(shares))).encode())
        key = proposal.digest()
        signed = self.book.endorsements.setdefault(key, set())
        signed.add(self.account)
        cid = None
        if len(signed) == len(members) - t + 1:
            cid = self.record_committee(members, t, public_key, shares).committee_id
            self.book.formed[key] = cid
        return _Endorsed(key, cid)

    def committee_of(self, proposal: bytes) -> int:
        if proposal not in self.book.formed:
            raise LedgerError("committee_of: committee not formed yet", reason=None)
        return self.book.formed[proposal]

    def committee(self, cid: int) -> Committee:
        return self.book.committees[cid]

    def participant(self, account: str) -> Participant:
        roles = self.book.roles.get(account, frozenset())
        return Participant(account, roles, b"", 0, 0, 0)  # type: ignore[arg-type]


class Down:
    """A node that is down: every call fails."""

    def handle(self, path: str, body: dict[str, Any], sender: str) -> dict[str, Any]:
        raise TransportError("node is down")

    def progress(self) -> dict[str, Any]:
        return {}


@dataclass
class Net:
    n: int
    t: int
    ids: dict[int, Identity]
    roles: dict[int, NodeRole]
    routes: InProcessTransport
    book: Book

    @property
    def addrs(self) -> dict[int, str]:
        return {i: ident.address for i, ident in self.ids.items()}

    def as_(self, who: Identity) -> InProcessTransport:
        return self.routes.with_identity(who)

    def session(self, nonce: bytes = NONCE) -> DkgSession:
        return DkgSession(self.n, self.t, tuple(self.ids[i].public_key for i in self.ids), nonce)

    def key(self, i: int) -> dict[str, Any] | None:
        return self.roles[i].key


def make_net(n: int = 3, t: int = 2, seed: str = "net", down: Sequence[int] = ()) -> Net:
    idents = sorted(
        (Identity(bytes([0x10 + i]) * 32) for i in range(n)), key=lambda x: int(x.address, 16)
    )
    ids = {i: ident for i, ident in enumerate(idents, 1)}
    directory = StaticDirectory.of([*idents, MALLORY, PROVIDER])
    routes = InProcessTransport(MALLORY, directory)
    book = Book(
        roles={MALLORY.address: frozenset({"analyst"}), PROVIDER.address: frozenset({"provider"})}
    )
    for ident in idents:
        book.roles[ident.address] = frozenset({"node"})
    addrs = {i: ident.address for i, ident in ids.items()}
    keys = {i: ident.public_key for i, ident in ids.items()}
    roles = {}
    for i, ident in ids.items():
        role = NodeRole(
            i,
            n,
            t,
            FakeLedger(ident.address, book),  # type: ignore[arg-type]
            SqliteStore(":memory:"),
            ident.private_key,
            lambda: keys,
            rng=SeededRng(f"{seed}/node-{i}"),
            transport=routes.with_identity(ident),
            node_addresses=lambda: addrs,
        )
        roles[i] = role
        routes.register(ident.address, Down() if i in down else role, ReplayGuard())
    return Net(n, t, ids, roles, routes, book)


# -- a relay the test controls ------------------------------------------------------------
Tamper = Callable[[Round, int, tuple[SignedMessage, ...]], tuple[SignedMessage, ...]]


def _body(session: DkgSession, kind: Round, inbox: Sequence[SignedMessage]) -> dict[str, Any]:
    if kind is Round.DEALING:
        spec = {"n": session.n, "t": session.t, "nonce": session.nonce.hex()}
        return {"session": spec, "messages": []}
    return {"session": session.id.hex(), "messages": [m.to_json() for m in inbox]}


def relay(
    net: Net,
    session: DkgSession,
    tamper: Tamper | None = None,
    *,
    until: Round = Round.RESULT,
    before: Callable[[Round, tuple[SignedMessage, ...]], None] | None = None,
    extra: dict[str, Any] | None = None,
    errors: dict[int, TesseraError] | None = None,
) -> dict[Round, tuple[SignedMessage, ...]]:
    """Node 1 relaying the rounds up to ``until`` with :func:`dkg.drive`: ``tamper`` chooses
    what node ``i`` is handed, ``before`` sees each round's inbox first, ``extra`` is added
    to every body; a node's refusal is recorded in ``errors`` and the node left out."""
    transport = net.as_(net.ids[1])
    failed = {} if errors is None else errors
    last = dkg.ROUNDS.index(until)

    def exchange(
        kind: Round, inbox: tuple[SignedMessage, ...]
    ) -> dict[int, Sequence[SignedMessage]]:
        replies: dict[int, Sequence[SignedMessage]] = {}
        if dkg.ROUNDS.index(kind) > last:
            return replies
        if before is not None:
            before(kind, inbox)
        for i in net.ids:
            if i in failed:
                continue
            box = tamper(kind, i, inbox) if tamper else inbox
            body = {**_body(session, kind, box), **(extra or {})}
            try:
                reply = transport.call(net.addrs[i], PATHS[kind], body)
            except TesseraError as exc:
                failed[i] = exc
                continue
            replies[i] = [SignedMessage.from_json(m) for m in reply["messages"]]
        return replies

    return dkg.drive(session, exchange)


def _shares_in(msgs: Sequence[SignedMessage], n: int) -> list[tuple[int, int, int, int]]:
    """Every (author, other, s, b) share carried by answers, accusations or reveals."""
    return [(m.author, *e) for m in msgs for e in dkg.decode_shares(m.payload, n)]


def _secret_of(results: dict[int, int], t: int) -> int:
    idx = sorted(results)[:t]
    return sum(results[i] * lagrange_at_zero(i, idx) for i in idx) % N


# -- an honest run, over the transport -----------------------------------------------------
def test_an_honest_run_registers_the_key_every_node_computed() -> None:
    net = make_net(seed="honest")
    key = net.as_(MALLORY).call(net.addrs[1], "dkg/run", {})  # the operator (an analyst)
    assert key["ready"] and key["committee"] == 0
    c = net.book.committees[0]
    shares = {}
    for i in net.ids:
        k = net.key(i)
        assert k is not None and k["committee"] == 0 and k["public_key"] == key["public_key"]
        assert k["qualified"] == [1, 2, 3]
        assert base_mul(int(k["secret_share"], 16)).encode().hex() == k["public_shares"][str(i)]
        shares[i] = int(k["secret_share"], 16)
    assert c.public_key.hex() == key["public_key"]
    for subset in itertools.combinations(net.ids, 2):
        sub = {i: shares[i] for i in subset}
        assert base_mul(_secret_of(sub, 2)).encode() == c.public_key
    # idempotent: asked again, the registered key is returned and nothing new is registered
    assert net.as_(MALLORY).call(net.addrs[1], "dkg/run", {}) == key
    assert len(net.book.committees) == 1


def test_t_minus_1_nodes_down_do_not_block_the_run() -> None:
    net = make_net(seed="one-down", down=[3])
    key = net.as_(net.ids[2]).call(net.addrs[1], "dkg/run", {})  # a member may ask too
    assert key["ready"] and key["qualified"] == [1, 2]
    k2 = net.key(2)
    assert k2 is not None and k2["committee"] == key["committee"]


def test_only_members_and_analysts_may_start_a_run() -> None:
    net = make_net(seed="who-runs")
    with pytest.raises(PolicyViolation, match="analysts only"):
        net.as_(PROVIDER).call(net.addrs[1], "dkg/run", {})
    with pytest.raises(Unauthorized):
        net.as_(STRANGER).call(net.addrs[1], "dkg/run", {})
    assert net.book.committees == [] and all(net.key(i) is None for i in net.ids)


# -- (1) share disclosure ------------------------------------------------------------------
def test_a_non_member_is_refused_every_dkg_path_and_learns_no_share() -> None:
    net = make_net(seed="outsider")
    session = net.session()
    sid = session.id.hex()
    tried: list[str] = []

    def probe(kind: Round, inbox: tuple[SignedMessage, ...]) -> None:
        # every round of a run under way, asked by an outsider with what the relay holds
        body: dict[str, Any] = {"session": sid, "messages": [m.to_json() for m in inbox]}
        if kind is Round.DEALING:
            body = _body(net.session(bytes([7]) * 32), kind, ())
        paths = [PATHS[kind]] + (["dkg/committee"] if kind is Round.RESULT else [])
        for path in paths:
            asked = {**body, "dealer": 2, "complaints": [[1, 2], [2, 3], [3, 1]], "committee": 0}
            for i in net.ids:
                with pytest.raises(PolicyViolation, match="committee's nodes only"):
                    net.as_(MALLORY).call(net.addrs[i], path, asked)
                with pytest.raises(Unauthorized):
                    net.as_(STRANGER).call(net.addrs[i], path, asked)
            tried.append(path)

    log = relay(net, session, before=probe)
    assert tried == [*PATHS.values(), "dkg/committee"]
    # the refusals changed nothing: the run went on and every node computed the same key
    assert len(log[Round.RESULT]) == 3 and len({m.payload for m in log[Round.RESULT]}) == 1
    assert _shares_in(log[Round.ANSWERS], 3) == [] and _shares_in(log[Round.REVEALS], 3) == []


def test_a_member_that_does_not_relay_the_session_is_refused() -> None:
    net = make_net(seed="other-member")
    session = net.session()
    log = relay(net, session, until=Round.COMPLAINTS)
    body = {"session": session.id.hex(), "messages": [m.to_json() for m in log[Round.COMPLAINTS]]}
    with pytest.raises(PolicyViolation, match="only the node that started this session"):
        net.as_(net.ids[3]).call(net.addrs[2], "dkg/answer", body)
    with pytest.raises(PolicyViolation, match="only the node that started this session"):
        net.as_(net.ids[3]).call(net.addrs[2], "dkg/reveal", {**body, "messages": []})


def test_the_relay_without_a_signed_complaint_learns_no_share() -> None:
    """Today's attack: complaints 'from everyone about everyone' made every dealer publish
    every share. Now only complaints their accuser signed are answered, and a dealer
    answering reveals the accuser's own share; reveals need a proven accusation."""
    net = make_net(seed="no-complaint")
    session = net.session()
    old = net.session(bytes(32))  # an earlier session, to replay from
    relay_key = net.ids[1].private_key

    def forged(kind: Round, author: int, payload: bytes) -> SignedMessage:
        return sign_message(session, kind, author, payload, relay_key)  # node 1's key

    everyone = dkg.encode_indices([1, 2, 3])

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.ANSWERS:
            # node 1's genuine complaints replaced by: node 1 accusing everyone else, forged
            # complaints of nodes 2 and 3, and node 2's complaint signed for another session
            others = [m for m in inbox if m.author != 1]
            mine = sign_message(session, Round.COMPLAINTS, 1, dkg.encode_indices([2, 3]), relay_key)
            fakes = [
                forged(Round.COMPLAINTS, j, dkg.encode_indices([k for k in (1, 2, 3) if k != j]))
                for j in (2, 3)
            ]
            replayed = sign_message(old, Round.COMPLAINTS, 2, everyone, net.ids[2].private_key)
            return (mine, *fakes, replayed, *others)
        if kind is Round.REVEALS:
            # accusations that prove nothing: forged ones, and node 1's own with a made-up share
            junk = dkg.encode_shares([(2, 12345, 678), (3, 9, 10)])
            mine = sign_message(session, Round.ACCUSATIONS, 1, junk, relay_key)
            fakes = [
                forged(
                    Round.ACCUSATIONS,
                    j,
                    dkg.encode_shares([(k, 5, 6) for k in (1, 2, 3) if k != j]),
                )
                for j in (2, 3)
            ]
            return (mine, *fakes, *(m for m in inbox if m.author != 1))
        return inbox

    log = relay(net, session, tamper)
    answers = _shares_in(log[Round.ANSWERS], 3)
    # dealers 2 and 3 answered node 1's own (signed) complaint with node 1's share only
    assert sorted((a, j) for a, j, _, _ in answers) == [(2, 1), (3, 1)]
    assert _shares_in(log[Round.REVEALS], 3) == []  # nobody revealed anything
    # the honest nodes finished with the key of all three dealers (node 1's complaints were
    # answered well), which the relay cannot compute from node 1's shares alone
    results = {m.author: dkg.decode_result(m.payload, 3) for m in log[Round.RESULT]}
    assert results[2] == results[3] and results[2][1] == (1, 2, 3)


def test_a_tampered_or_misattributed_message_counts_as_dropped() -> None:
    net = make_net(seed="ignored")
    session = net.session()
    seen: dict[int, dkg.DkgNode] = {}

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        node = net.roles[i]._dkg
        if node is not None:
            seen[i] = node
        if kind is Round.COMPLAINTS and i == 2:
            # node 2 gets dealer 3's dealing with a byte flipped, and dealer 1's claiming to be 3's
            out = []
            for m in inbox:
                if m.author == 3:
                    flipped = m.payload[:-1] + bytes([m.payload[-1] ^ 1])
                    m = SignedMessage(m.kind, 3, flipped, m.signature)
                out.append(m)
            first = next(m for m in inbox if m.author == 1)
            out.append(SignedMessage(first.kind, 3, first.payload, first.signature))
            return tuple(out)
        return inbox

    log = relay(net, session, tamper)
    assert [r for r in seen[2].view.rejected if "bad signature" in r] == [
        "dealing: bad signature or author (3)"
    ] * 2
    assert sorted(seen[2].view.dealt) == [1, 2] and sorted(seen[3].view.dealt) == [1, 2, 3]
    again = make_net(seed="ignored")
    dropped = relay(again, again.session(), _drop([3], only_for=[2]))
    assert log[Round.RESULT] == dropped[Round.RESULT]


def test_a_proven_cheater_is_rebuilt_from_revealed_shares_of_that_dealer_only() -> None:
    """The one case where nodes reveal a share of another dealer: node 1 (the relay) signs an
    extraction that its own dealing disproves. Nodes 2 and 3 accuse it with their shares,
    reveal their shares of dealer 1 and nothing else, and rebuild its true commitments:
    the key is that of the honest run."""
    net = make_net(seed="cheat")
    session = net.session()
    relay_key = net.ids[1].private_key

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.ACCUSATIONS and i != 1:
            out = []
            for m in inbox:
                if m.author == 1:
                    a = dkg.decode_extraction(m.payload)
                    wrong = dkg.encode_extraction((a[0] + base_mul(1), *a[1:]))
                    m = sign_message(session, Round.EXTRACTION, 1, wrong, relay_key)
                out.append(m)
            return tuple(out)
        return inbox

    log = relay(net, session, tamper)
    assert sorted((a, d) for a, d, _, _ in _shares_in(log[Round.ACCUSATIONS], 3)) == [
        (2, 1),
        (3, 1),
    ]
    assert sorted((a, d) for a, d, _, _ in _shares_in(log[Round.REVEALS], 3)) == [(2, 1), (3, 1)]
    clean = make_net(seed="cheat")
    clean_log = relay(clean, clean.session())
    assert {m.payload for m in log[Round.RESULT]} == {m.payload for m in clean_log[Round.RESULT]}
    assert len({m.payload for m in log[Round.RESULT]}) == 1


# -- (2) a malicious relay -----------------------------------------------------------------
def _fake_dealing(
    session: DkgSession, author: int, signer: bytes
) -> tuple[SignedMessage, dkg.DkgParticipant]:
    """A dealing the relay made up (it knows the polynomial), signed with ``signer``."""
    p = dkg.DkgParticipant(author, session.n, session.t, SeededRng(f"relay-poly-{author}"))
    dc, shares = p.deal()
    boxes = [dkg.seal_share(session, s, SeededRng("relay-seal")) for s in shares]
    payload = dkg.encode_dealing(dc.commitments, boxes)
    return sign_message(session, Round.DEALING, author, payload, signer), p


def _swap(replace: dict[int, SignedMessage], only_for: Sequence[int] = (1, 2, 3)) -> Tamper:
    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.COMPLAINTS and i in only_for:
            return tuple(replace.get(m.author, m) for m in inbox)
        return inbox

    return tamper


def _drop(authors: Sequence[int], only_for: Sequence[int]) -> Tamper:
    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.COMPLAINTS and i in only_for:
            return tuple(m for m in inbox if m.author not in authors)
        return inbox

    return tamper


def test_a_substituted_dealing_counts_as_a_dropped_one_and_the_relay_learns_no_key() -> None:
    """Today's attack: node 1 relayed its own dealings in place of nodes 2's and 3's, and
    the honest nodes adopted a key it knew. Now the substitutes do not verify: for each
    honest node the run is exactly the run in which the relay dropped them."""
    net = make_net(seed="swap")
    session = net.session()
    fake2, poly2 = _fake_dealing(session, 2, net.ids[1].private_key)
    fake3, poly3 = _fake_dealing(session, 3, net.ids[1].private_key)
    errors: dict[int, TesseraError] = {}
    log = relay(net, session, _swap({2: fake2, 3: fake3}, only_for=[2, 3]), errors=errors)
    swapped = {m.author: m.payload for m in log[Round.RESULT]}

    again = make_net(seed="swap")
    dropped_log = relay(again, again.session(), _drop([2, 3], only_for=[2, 3]), errors=errors)
    dropped = {m.author: m.payload for m in dropped_log[Round.RESULT]}
    assert errors == {} and sorted(swapped) == [1, 2, 3]
    assert swapped == dropped  # substitution achieved nothing a drop would not
    # each honest node's key holds its own secret contribution: not one the relay knows
    relay_poly = dkg.DkgParticipant(1, 3, 2, SeededRng("swap/node-1"))
    known = [relay_poly._a[0], poly2._a[0], poly3._a[0]]
    for i in (2, 3):
        _, qual, key, _ = dkg.decode_result(swapped[i], 3)
        assert i in qual
        for r in range(1, 4):
            for subset in itertools.combinations(known, r):
                assert key != base_mul(sum(subset) % N)
    # the relay registers the key it knows; no honest node adopts it
    fake_key = base_mul(sum(known) % N)
    ledger = net.roles[1].ledger
    cid = ledger.record_committee(
        list(net.addrs.values()), 2, fake_key.encode(), [fake_key.encode()] * 3
    ).committee_id
    for i in (2, 3):
        with pytest.raises(ProtocolError, match="not the key this node computed"):
            net.as_(net.ids[1]).call(net.addrs[i], "dkg/committee", {"committee": cid})
        k = net.key(i)
        assert k is not None and k["committee"] is None


def test_the_relay_cannot_send_a_qual_set_or_extractions() -> None:
    """Today's nodes took QUAL and the extractions from the relay's finalize request. Now a
    body's other fields are not read: the old ones are added to every request, ignored."""
    net = make_net(seed="qual")
    session = net.session()
    made_up = {"1": [base_mul(7).encode().hex(), base_mul(8).encode().hex()]}
    extra = {"qualified": [1], "extracted": made_up, "dealings": {}, "answers": []}
    log = relay(net, session, extra=extra)
    tr = dkg.audit(session, log)
    assert tr.qualified == (1, 2, 3)
    y, shares = dkg.public_outputs(3, tr.qualified, tr.extracted)
    for m in log[Round.RESULT]:
        assert dkg.decode_result(m.payload, 3) == (2, (1, 2, 3), y, shares)


def test_a_forged_extraction_makes_the_run_fail_not_change_the_key() -> None:
    net = make_net(seed="extraction")
    session = net.session()
    made_up = sign_message(
        session,
        Round.EXTRACTION,
        2,
        dkg.encode_extraction([base_mul(5), base_mul(6)]),
        net.ids[1].private_key,
    )

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.ACCUSATIONS and i == 3:
            return tuple(made_up if m.author == 2 else m for m in inbox)
        return inbox

    errors: dict[int, TesseraError] = {}
    relay(net, session, tamper, errors=errors)
    assert isinstance(
        errors.get(3), DkgError
    ) and "no extraction from qualified dealers [2]" in str(errors[3])
    assert net.key(3) is None  # it refused rather than take the relay's word


def test_a_message_replayed_from_an_earlier_session_is_refused() -> None:
    net = make_net(seed="replay")
    first = net.session(bytes(32))
    old = relay(net, first, until=Round.COMPLAINTS)
    # the relay starts a new session and hands out the first session's dealings instead
    second = net.session(bytes([1]) * 32)
    stale = {m.author: m for m in old[Round.DEALING]}

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        if kind is Round.COMPLAINTS:
            return tuple(stale[m.author] if m.author != i else m for m in inbox)
        return inbox

    errors: dict[int, TesseraError] = {}
    relay(net, second, tamper, errors=errors)
    # each node keeps only its own dealing: one qualified dealer, fewer than t = 2
    assert set(errors) == {1, 2, 3}
    assert all(isinstance(e, DkgError) and "only 1 qualified" in str(e) for e in errors.values())
    assert all(net.key(i) is None for i in net.ids)
    # and a session is never joined twice: the first session's nonce is refused
    with pytest.raises(ProtocolError, match="already took part in this session"):
        net.as_(net.ids[1]).call(net.addrs[2], "dkg/deal", _body(first, Round.DEALING, ()))


def test_honest_nodes_that_finish_agree_even_if_the_relay_equivocates() -> None:
    """A corrupt dealer (node 1, the relay) signs two dealings and two matching extractions,
    and hands node 3 the other pair: nodes 2 and 3 compute different keys, so at most one
    matches what is registered, and only that one adopts it."""
    net = make_net(seed="equivocate")
    session = net.session()
    other, poly = _fake_dealing(session, 1, net.ids[1].private_key)  # node 1's second dealing
    other_ext = sign_message(
        session,
        Round.EXTRACTION,
        1,
        dkg.encode_extraction(poly.extraction().commitments),
        net.ids[1].private_key,
    )

    def tamper(kind: Round, i: int, inbox: tuple[SignedMessage, ...]) -> tuple[SignedMessage, ...]:
        swap = {Round.COMPLAINTS: other, Round.ACCUSATIONS: other_ext}.get(kind)
        if i == 3 and swap is not None:
            return tuple(swap if m.author == 1 else m for m in inbox)
        return inbox

    log = relay(net, session, tamper)
    results = {m.author: m.payload for m in log[Round.RESULT]}
    assert sorted(results) == [1, 2, 3] and results[1] == results[2] != results[3]
    k2 = net.key(2)
    assert k2 is not None
    shares = [bytes.fromhex(k2["public_shares"][str(i)]) for i in (1, 2, 3)]
    ledger = net.roles[1].ledger
    cid = ledger.record_committee(
        list(net.addrs.values()), 2, bytes.fromhex(k2["public_key"]), shares
    ).committee_id
    adopted = []
    for i in (2, 3):
        try:
            net.as_(net.ids[1]).call(net.addrs[i], "dkg/committee", {"committee": cid})
            adopted.append(i)
        except ProtocolError:
            pass
    assert adopted == [2]
    ready = [i for i in (2, 3) if (net.key(i) or {}).get("committee") is not None]
    assert ready == [2]


# -- (3) committee sizes -------------------------------------------------------------------
def test_a_committee_smaller_than_2t_minus_1_is_refused(tmp_path: Path) -> None:
    net = make_net(n=3, t=2, seed="size")
    small = NodeRole(
        1, 3, 3, net.roles[1].ledger, SqliteStore(":memory:"), net.ids[1].private_key,
        lambda: {i: net.ids[i].public_key for i in net.ids},
        node_addresses=lambda: net.addrs,
    )  # fmt: skip
    for path, body in (("dkg/run", {}), ("dkg/deal", _body(net.session(), Round.DEALING, ()))):
        with pytest.raises(ProtocolError, match=r"n >= 2t - 1"):
            small.handle(path, body, net.ids[1].address)
    text = (
        'role = "node"\nname = "n1"\nport = 7000\ndata_dir = "d"\nkeystore = "k.json"\n'
        'password_file = "pw"\npeers = "peers.json"\n[ledger]\nrpc = "http://x"\n'
        'deployment = "d.json"\n[node]\nindex = 1\n'
    )
    (tmp_path / "pw").write_text("x")
    for n, t in ((4, 3), (2, 2), (3, 0)):
        cfg = tmp_path / f"node-{n}-{t}.toml"
        cfg.write_text(text + f"n = {n}\nt = {t}\n")
        with pytest.raises(ConfigError, match=r"n >= 2t - 1"):
            load_role_config(cfg)
    ok = tmp_path / "ok.toml"
    ok.write_text(text + "n = 5\nt = 3\n")
    assert (load_role_config(ok).n, load_role_config(ok).t) == (5, 3)
