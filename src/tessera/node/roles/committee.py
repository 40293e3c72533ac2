"""A computing node's part in the committee's distributed key generation (GJKR99).

The rounds are :func:`tessera.crypto.dkg.drive`'s; node 1 (or any member asked to
``dkg/run``) relays them over the transport and each node runs its own
:class:`~tessera.crypto.dkg.DkgNode`, which signs what the node says with its
registered key and verifies what it hears. Paths, one per round::

    dkg/deal      {"session": {"nonce", "n", "t"}}      -> {"session", "messages"}
    dkg/receive   dealings    -> complaints              dkg/answer   complaints -> answers
    dkg/extract   answers     -> extraction              dkg/check    extractions -> accusations
    dkg/reveal    accusations -> reveals                 dkg/finalize reveals -> result

Every ``dkg/*`` path is for the committee's own nodes only (the request's signer
must be one of them); the rounds after ``dkg/deal`` only from the node that
started the session. ``dkg/run`` may also be asked by a participant the ledger
registers as an analyst (the operator's account, as ``tessera network up`` does):
the run's outcome does not depend on who asks. A node builds the session from its
own view of the committee (the registered keys by index) and the relay's nonce,
joins a session once, and keeps a key only once the ledger's committee carries
exactly what it computed (``dkg/committee``). The committee forms on-chain only once
n − t + 1 members have endorsed the key each computed itself (``dkg/endorse``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from tessera.crypto import dkg
from tessera.crypto.dkg_messages import (
    NONCE_SIZE,
    DkgSession,
    Round,
    SignedMessage,
)
from tessera.crypto.rng import Rng
from tessera.errors import (
    DecodeError,
    DkgError,
    LedgerError,
    PolicyViolation,
    ProtocolError,
    TesseraError,
)
from tessera.ledger import LedgerClient
from tessera.node.roles.base import Role
from tessera.node.store import Store
from tessera.protocol.wire import field as wire_field
from tessera.protocol.wire import from_hex

#: The path of each round.
PATHS: Final[dict[Round, str]] = {
    Round.DEALING: "dkg/deal",
    Round.COMPLAINTS: "dkg/receive",
    Round.ANSWERS: "dkg/answer",
    Round.EXTRACTION: "dkg/extract",
    Round.ACCUSATIONS: "dkg/check",
    Round.REVEALS: "dkg/reveal",
    Round.RESULT: "dkg/finalize",
}


def _messages(body: Mapping[str, Any], where: str, limit: int) -> list[SignedMessage]:
    raw = body.get("messages")
    if not isinstance(raw, list):
        raise DecodeError(f"{where}: 'messages' must be a list")
    if len(raw) > limit:
        raise DecodeError(f"{where}: more than {limit} messages")
    return [SignedMessage.from_json(m, f"{where}.messages[{k}]") for k, m in enumerate(raw)]


def _same(a: str, b: str) -> bool:
    return a.lower() == b.lower()


class DkgMember(Role):
    """The DKG handlers of a computing node (mixed into :class:`NodeRole`)."""

    index: int
    n: int
    t: int
    ledger: LedgerClient
    store: Store
    transport: Any
    _secret: bytes
    _peer_keys: Callable[[], Mapping[int, bytes]]
    _node_addresses: Callable[[], Mapping[int, str]]
    _rng: Rng
    _dkg: dkg.DkgNode | None
    _lock: threading.Lock
    _dkg_relay: str | None = None  # who started the session under way
    _dkg_running: bool = False  # this node is relaying a run

    @property
    def key(self) -> dict[str, Any] | None:  # pragma: no cover - NodeRole's
        raise NotImplementedError

    def on_key(self, body: dict[str, Any], sender: str) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    # -- who and what ----------------------------------------------------------------
    def _committee(self) -> dict[int, str]:
        peers = dict(self._node_addresses())
        if sorted(peers) != list(range(1, self.n + 1)):
            raise ProtocolError(f"node {self.index} does not know all {self.n} nodes")
        return peers

    def _check_size(self) -> None:
        try:
            dkg.check_committee_size(self.n, self.t)
        except ValueError as exc:
            raise ProtocolError(f"node {self.index}: {exc}") from exc

    def _member_only(self, sender: str, path: str) -> None:
        if not any(_same(sender, a) for a in self._committee().values()):
            raise PolicyViolation(f"{path} is for the committee's nodes only, not {sender}")

    def _session(self, nonce: bytes) -> DkgSession:
        """The session of ``nonce`` among the committee as this node knows it (the keys the
        ledger registers for nodes ``1..n``), never as a relay describes it."""
        keys = dict(self._peer_keys())
        if sorted(keys) != list(range(1, self.n + 1)):
            raise ProtocolError(f"node {self.index} does not know all {self.n} nodes' keys")
        return DkgSession(self.n, self.t, tuple(keys[i] for i in range(1, self.n + 1)), nonce)

    def _node(self, body: Mapping[str, Any], sender: str, path: str) -> dkg.DkgNode:
        self._member_only(sender, path)
        node = self._dkg
        if node is None:
            raise ProtocolError(f"node {self.index}: no DKG under way")
        if self._dkg_relay is None or not _same(sender, self._dkg_relay):
            raise PolicyViolation(f"{path}: only the node that started this session relays it")
        sid = from_hex(body.get("session"), f"{path}.session")
        if sid != node.session.id:
            raise ProtocolError(f"{path}: not the session under way on node {self.index}")
        return node

    # -- the rounds --------------------------------------------------------------------
    def on_dkg_deal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        self._member_only(sender, "dkg/deal")
        self._check_size()
        spec = body.get("session")
        if not isinstance(spec, dict):
            raise DecodeError("dkg/deal: 'session' must be an object")
        n = wire_field(spec, "n", int, "dkg/deal.session")
        t = wire_field(spec, "t", int, "dkg/deal.session")
        if (n, t) != (self.n, self.t):
            raise ProtocolError(f"this committee is n={self.n}, t={self.t}, not n={n}, t={t}")
        nonce = from_hex(spec.get("nonce"), "dkg/deal.session.nonce")
        if len(nonce) != NONCE_SIZE:
            raise DecodeError(f"dkg/deal: the nonce is {NONCE_SIZE} bytes")
        session = self._session(nonce)
        with self._lock:
            if self.key is not None:
                raise ProtocolError(f"node {self.index} already holds a committee key")
            if self.store.get("dkg_session", session.id.hex()) is not None:
                raise ProtocolError(f"node {self.index} already took part in this session")
            self.store.put("dkg_session", session.id.hex(), {"relay": sender})
            self.progress_.update("dkg", "dealing")
            participant = dkg.DkgParticipant(self.index, self.n, self.t, self._rng)
            self._dkg = dkg.DkgNode(session, participant, self._secret, self._rng)
            self._dkg_relay = sender
            out = self._dkg.step(Round.DEALING, [])
        return {"session": session.id.hex(), "messages": [m.to_json() for m in out]}

    def _round(self, kind: Round, body: dict[str, Any], sender: str) -> list[SignedMessage]:
        path = PATHS[kind]
        with self._lock:
            node = self._node(body, sender, path)
            inbox = _messages(body, path, 4 * self.n)
            self.progress_.update("dkg", kind.value)
            return node.step(kind, inbox)

    def on_dkg_receive(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The dealings in, this node's signed complaints out."""
        return {"messages": [m.to_json() for m in self._round(Round.COMPLAINTS, body, sender)]}

    def on_dkg_answer(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The complaints in; out, the shares of the nodes whose *signed* complaint accuses
        this node (nobody else's share, and nothing for an unsigned or forged complaint)."""
        return {"messages": [m.to_json() for m in self._round(Round.ANSWERS, body, sender)]}

    def on_dkg_extract(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The answers in; QUAL computed here; this dealer's Feldman commitments out."""
        return {"messages": [m.to_json() for m in self._round(Round.EXTRACTION, body, sender)]}

    def on_dkg_check(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The extractions in; out, this node's shares that prove a dealer's extraction wrong."""
        return {"messages": [m.to_json() for m in self._round(Round.ACCUSATIONS, body, sender)]}

    def on_dkg_reveal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The accusations in; out, this node's shares of the dealers that a signed accusation
        proves, against the dealing and extraction the dealer signed, to have cheated."""
        return {"messages": [m.to_json() for m in self._round(Round.REVEALS, body, sender)]}

    def on_dkg_finalize(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The reveals in; this node's key computed and kept (not yet ready); its signed
        result out."""
        out = self._round(Round.RESULT, body, sender)
        with self._lock:
            node = self._dkg
            result = None if node is None else node.result
            if result is None:
                raise ProtocolError(f"node {self.index} computed no key")
            self.store.put(
                "dkg",
                "result",
                {
                    "index": self.index,
                    "secret_share": hex(result.secret_share),
                    "public_key": result.public_key.encode().hex(),
                    "public_shares": {
                        str(i): p.encode().hex() for i, p in result.public_shares.items()
                    },
                    "qualified": list(result.qualified),
                    "committee": None,
                },
            )
            self._dkg = None
            self._dkg_relay = None
        self.progress_.update("dkg", "done")
        return {"messages": [m.to_json() for m in out]}

    def on_dkg_endorse(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Endorse on-chain the committee this node computed: its members, threshold, key
        and every member's public share, from its own DKG result only (the request carries
        nothing). The committee forms when n − t + 1 members have endorsed the same."""
        self._member_only(sender, "dkg/endorse")
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no key to endorse")
        peers = self._committee()
        members = [peers[i] for i in range(1, self.n + 1)]
        shares = [bytes.fromhex(key["public_shares"][str(i)]) for i in range(1, self.n + 1)]
        with self._lock:
            done = self.store.get("dkg", "endorsed")
            if done is None:
                endorsed = self.ledger.endorse_committee(
                    members, self.t, bytes.fromhex(key["public_key"]), shares
                )
                done = {"proposal": endorsed.proposal.hex(), "committee": endorsed.committee_id}
                self.store.put("dkg", "endorsed", done)
        return dict(done)

    def on_dkg_committee(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The committee registered on-chain: adopt it only if it is exactly this node's result
        (its key, threshold, members and every member's public share)."""
        self._member_only(sender, "dkg/committee")
        cid = wire_field(body, "committee", int, "dkg/committee")
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no key to register")
        if key.get("committee") is not None:
            if key["committee"] == cid:
                return {"committee": cid}
            raise ProtocolError(f"node {self.index} already serves committee {key['committee']}")
        c = self.ledger.committee(cid)
        peers = self._committee()
        expected = {peers[i].lower(): key["public_shares"][str(i)] for i in peers}
        registered = {m.lower(): s.hex() for m, s in zip(c.members, c.key_shares, strict=True)}
        if (
            c.public_key.hex() != key["public_key"]
            or c.threshold != self.t
            or registered != expected
            or self.ledger.account.lower() not in registered
        ):
            raise ProtocolError(f"committee {cid} on the ledger is not the key this node computed")
        with self._lock:
            self.store.put("dkg", "result", {**key, "committee": cid})
        return {"committee": cid}

    # -- relaying a run -----------------------------------------------------------------
    def _may_run(self, sender: str) -> None:
        if any(_same(sender, a) for a in self._committee().values()):
            return
        try:
            roles = self.ledger.participant(sender).roles
        except TesseraError as exc:
            raise PolicyViolation(f"dkg/run: {sender} is not on the ledger") from exc
        if "analyst" not in roles:
            raise PolicyViolation(
                "dkg/run is for the committee's nodes and registered analysts only"
            )

    def on_dkg_run(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Relay a run of the committee's DKG, then register the committee on the ledger.

        This node only carries messages: every node (this one too) checks them and
        computes its key itself; a node that disagrees with what is registered keeps no
        key. Idempotent: once the committee is registered, its key is returned."""
        self._may_run(sender)
        self._check_size()
        key = self.key
        if key is not None and key.get("committee") is not None:
            return self.on_key({}, sender)
        if key is not None:
            raise ProtocolError(f"node {self.index} holds a key that was never registered")
        with self._lock:
            if self._dkg_running:
                raise ProtocolError(f"node {self.index} is already running a DKG")
            self._dkg_running = True
        try:
            return self._relay(sender)
        finally:
            with self._lock:
                self._dkg_running = False

    def _relay(self, sender: str) -> dict[str, Any]:
        peers = self._committee()
        session = self._session(self._rng.randbytes(NONCE_SIZE))
        me = self.ledger.account
        failures: dict[int, str] = {}

        def call(i: int, kind: Round, body: dict[str, Any]) -> dict[str, Any]:
            if i == self.index:
                return self.handle(PATHS[kind], body, me)
            reply: dict[str, Any] = self.transport.call(peers[i], PATHS[kind], body)
            return reply

        def exchange(
            kind: Round, inbox: tuple[SignedMessage, ...]
        ) -> dict[int, Sequence[SignedMessage]]:
            self.progress_.update("dkg", f"relaying {kind.value}")
            body: dict[str, Any] = {
                "session": (
                    {"n": self.n, "t": self.t, "nonce": session.nonce.hex()}
                    if kind is Round.DEALING
                    else session.id.hex()
                ),
                "messages": [m.to_json() for m in inbox] if kind is not Round.DEALING else [],
            }
            replies: dict[int, Sequence[SignedMessage]] = {}
            for i in range(1, self.n + 1):
                if i in failures:
                    continue
                try:
                    replies[i] = _messages(call(i, kind, body), PATHS[kind], 1)
                except TesseraError as exc:
                    if i == self.index:
                        raise
                    failures[i] = f"{kind.value}: {type(exc).__name__}: {exc}"
            return replies

        log = dkg.drive(session, exchange)
        return self._register(session, log, failures)

    def _register(
        self,
        session: DkgSession,
        log: Mapping[Round, Sequence[SignedMessage]],
        failures: Mapping[int, str],
    ) -> dict[str, Any]:
        key = self.key
        said = {m.author: m.payload for m in log[Round.RESULT]}
        if key is None or self.index not in said:  # pragma: no cover - finalize raised
            raise ProtocolError(f"node {self.index} computed no key")
        # results are canonical bytes: equal payloads, equal keys, shares and QUAL
        agree = sorted(a for a, payload in said.items() if payload == said[self.index])
        quorum = self.n - self.t + 1
        if len(agree) < quorum:
            raise DkgError(
                f"only nodes {agree} computed the key node {self.index} computed; {quorum} "
                f"must (failed: {dict(failures)})"
            )
        peers = self._committee()
        # the committee forms on-chain once n - t + 1 members endorsed the key each computed
        proposal = bytes.fromhex(self.on_dkg_endorse({}, self.ledger.account)["proposal"])
        missing: dict[int, str] = {}
        for i in range(1, self.n + 1):
            if i != self.index:
                try:
                    self.transport.call(peers[i], "dkg/endorse", {})
                except TesseraError as exc:
                    missing[i] = f"{type(exc).__name__}: {exc}"
        try:
            cid = self.ledger.committee_of(proposal)
        except LedgerError as exc:
            raise DkgError(
                f"the committee did not form: nodes {sorted(missing)} did not endorse the "
                f"key node {self.index} computed ({missing})"
            ) from exc
        self.on_dkg_committee({"committee": cid}, self.ledger.account)
        refused: dict[int, str] = {}
        for i in range(1, self.n + 1):
            if i != self.index:
                try:
                    self.transport.call(peers[i], "dkg/committee", {"committee": cid})
                except TesseraError as exc:
                    refused[i] = f"{type(exc).__name__}: {exc}"
        self.progress_.update(
            "dkg", "registered", committee=cid, refused=refused, session=session.id.hex()
        )
        return self.on_key({}, self.ledger.account)
