"""The computing node: adds noise inside the encryption and key-switches the aggregate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tessera.crypto import dkg
from tessera.crypto.elgamal import Ciphertext
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.crypto.threshold import KeySwitchShare
from tessera.dp import NoiseSampler, OpenDPSampler
from tessera.errors import (
    DecodeError,
    InvalidProof,
    NotFound,
    PolicyViolation,
    ProtocolError,
)
from tessera.ledger import AuditTrail, Committee, LedgerClient, Query
from tessera.node.answers import Excluded, committed_among, fetch_committed
from tessera.node.roles.base import Progress, admitted, open_query, provider_accounts
from tessera.node.roles.committee import DkgMember
from tessera.node.roles.training import TrainingMember
from tessera.node.store import Store
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    AggregationQuery,
    NoiseContribution,
    VectorContribution,
    add_noise,
    aggregate,
    check_contribution_knowledge,
    check_noise_knowledge,
    check_noise_set,
    key_switch,
    verify_noise,
)
from tessera.protocol.query import QueryTicket
from tessera.protocol.wire import encoded_record_from_json, from_hex


class NodeRole(DkgMember, TrainingMember):
    """Computing node ``index`` of an ``n``-node, threshold-``t`` committee."""

    def __init__(
        self,
        index: int,
        n: int,
        t: int,
        ledger: LedgerClient,
        store: Store,
        secret_key: bytes,
        peer_keys: Callable[[], Mapping[int, bytes]],
        rng: Rng | None = None,
        sampler: NoiseSampler | None = None,
        transport: Any = None,
        node_addresses: Callable[[], Mapping[int, str]] | None = None,
    ) -> None:
        self.index, self.n, self.t = index, n, t
        self.transport = transport  # to reach the other nodes (the DKG)
        self._node_addresses = node_addresses or (lambda: {})
        self.ledger, self.store = ledger, store
        self._secret = secret_key
        self._peer_keys = peer_keys  # node index -> registered public key, for sealing
        self._rng = rng or SystemRng()
        self._sampler = sampler or OpenDPSampler()
        self.progress_ = Progress("node", f"node-{index}")
        self._dkg: dkg.DkgNode | None = None
        self._lock = threading.Lock()
        self._owners: dict[int, str] = {}  # dataset id -> owner account

    # -- the committee's key -------------------------------------------------------------
    @property
    def key(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.store.get("dkg", "result")
        return value

    def committee_id(self) -> int:
        key = self.key
        if key is None or key.get("committee") is None:
            raise ProtocolError(f"node {self.index} has no committee yet (run the DKG)")
        return int(key["committee"])

    def on_key(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        key = self.key
        if key is None:
            return {"index": self.index, "ready": False}
        public = {k: v for k, v in key.items() if k != "secret_share"}
        return {**public, "ready": key.get("committee") is not None}

    def _secret_share(self) -> int:
        return int(self.key_or_fail()["secret_share"], 16)

    def _committee_key(self) -> Point:
        return Point.decode(bytes.fromhex(self.key_or_fail()["public_key"]))

    def _check_query(self, ticket: QueryTicket, sender: str) -> tuple[Query, Committee]:
        """The ticket is an open query of the analyst ``sender`` for our committee."""
        q, committee = admitted(self.ledger, ticket, sender)
        if q.committee != self.committee_id():
            raise PolicyViolation("the query on the ledger is for another committee")
        if committee.public_key.hex() != self.key_or_fail()["public_key"]:
            raise PolicyViolation("the committee on the ledger does not hold our key")
        return q, committee

    def key_or_fail(self) -> dict[str, Any]:
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no committee key")
        return key

    # -- what an adversary wrapper overrides (tessera.testing.adversary) ----------------------
    def make_noise(self, query: AggregationQuery, values: Sequence[int]) -> NoiseContribution:
        """This node's noise message for ``values`` (encrypted limbs and their proofs)."""
        return add_noise(query, self._committee_key(), self.index, values, self._rng)

    def make_shares(
        self, query: AggregationQuery, agg: Sequence[Ciphertext]
    ) -> list[KeySwitchShare]:
        """This node's key-switch shares of ``agg``, with their proofs."""
        return key_switch(query, self.index, self._secret_share(), agg, self._rng)

    # -- a query -------------------------------------------------------------------------
    def on_noise(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Draw, encrypt and prove this node's noise for a query; commit its digest."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        key = ticket.query_id.hex()
        done = self.store.get("noise", key)
        if done is not None:
            return dict(done)
        if ticket.rho is None:
            raise PolicyViolation("a query without differential privacy gets no noise")
        self._check_query(ticket, sender)
        prepared = ticket.prepare()
        self.progress_.update(key, "noise")
        values = [p.draw(self._sampler) for p in prepared.noise]
        nc = self.make_noise(prepared.query, values)
        encoded = codec.encode_noise(nc).hex()
        with self._lock:
            if self.store.get("noise", key) is None:
                self.ledger.commit_many(
                    ticket.query_id, {"noise": codec.noise_digest(ticket.query_id, nc)}
                )
                self.store.put("noise", key, {"noise": encoded})
        return dict(self.store.get("noise", key))

    def on_key_switch(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Switch the aggregate of a query's committed messages to the analyst's key, once.

        Before switching, the node checks that every contribution is committed on-chain by
        the account the ticket names for it, that this account owns one of the query's
        datasets, and that each ciphertext carries a proof that its author knows it (so
        none is another party's, from this query or an earlier one). A contribution
        committed on-chain that the analyst did not send, the node fetches from its
        provider itself (:meth:`_obtain`); one its provider does not serve, matching its
        digest, is left out as *withheld* (so neither can the analyst leave out an honest
        provider, nor a provider stop the query). The noise must come from at least
        ``n − t + 1`` distinct committee members, its own included, each committed and
        proven the same way, every committed noise there unless it is shown to fail its
        proofs. It then commits the aggregate's digest, with the withheld providers, and
        switches only if no other member committed a different one
        (:meth:`_lock_aggregate`). The answer names what it fetched and who withheld."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        key = ticket.query_id.hex()
        qid = ticket.query_id
        raw = [from_hex(c, "contribution") for c in _list(body, "contributions")]
        raw_noise = [from_hex(c, "noise") for c in _list(body, "noise")]
        raw_rejected = [from_hex(c, "rejected_noise") for c in _list(body, "rejected_noise")]
        contributions = [codec.decode_contribution_limbs(c) for c in raw]
        noise = [codec.decode_noise_limbs(c) for c in raw_noise]
        prepared = ticket.prepare()
        done = self.store.get("key_switch", key)
        if done is not None:
            fetched, withheld = dict(done.get("fetched", {})), dict(done.get("withheld", {}))
        else:
            q, committee = self._check_query(ticket, sender)
            trail = self.ledger.audit_trail(qid, verdicts=False)
            missing = self._check_contributions(
                ticket, prepared.query, q, trail, contributions, raw
            )
            fetched, withheld = self._obtain_contributions(ticket, trail, missing)
            nodes = committee.nodes
            self._check_noise(prepared.query, trail, nodes, noise, raw_noise, raw_rejected)
        everything = [
            *contributions,
            *(codec.decode_contribution_limbs(bytes.fromhex(c)) for c in fetched.values()),
        ]
        if not everything:
            raise ProtocolError("an aggregate needs at least one contribution")
        agg = aggregate(prepared.query, everything, noise)
        accounts = [str(ticket.account_of(name)) for name in withheld]
        agg_digest = codec.aggregate_digest(qid, agg, accounts).hex()
        answer = {"fetched": fetched, "withheld": withheld}
        if done is not None:
            if done["aggregate"] != agg_digest:
                raise ProtocolError("this node already switched a different aggregate")
            return {"shares": done["shares"], **answer}
        with self._lock:
            done = self.store.get("key_switch", key)
            if done is None:
                self._lock_aggregate(qid, trail, set(nodes.values()), bytes.fromhex(agg_digest))
                self.progress_.update(key, "key-switch")
                shares = self.make_shares(prepared.query, agg)
                digest = codec.key_switch_digest(qid, agg, shares)
                self.ledger.commit_many(qid, {"key_switch": digest})
                done = {
                    "aggregate": agg_digest,
                    "shares": codec.encode_key_switch(shares).hex(),
                    **answer,
                }
                self.store.put("key_switch", key, done)
            elif done["aggregate"] != agg_digest:
                raise ProtocolError("this node already switched a different aggregate")
        return {"shares": done["shares"], **answer}

    def on_fetch(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The analyst lacks the committed contributions of ``providers`` (it got something
        else, or nothing): the node fetches each from its provider (:meth:`_obtain`) and
        answers with those it got (``contributions``, by name) and why it has none of the
        others (``withheld``). What it decides here is what it switches later, so asked
        before the key switch, every honest node decides on the same answers from the
        provider: one a node got, the analyst forwards to every node."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        names = _list(body, "providers")
        if not all(isinstance(n, str) for n in names):
            raise DecodeError("providers: expected a list of names")
        self._check_query(ticket, sender)
        trail = self.ledger.audit_trail(ticket.query_id, verdicts=False)
        missing = committed_among(ticket, names, trail.of("contribution"), "query")
        fetched, withheld = self._obtain_contributions(ticket, trail, missing)
        return {"contributions": fetched, "withheld": withheld}

    FETCH_TIMEOUT = 20.0  # seconds a provider has to serve what it committed

    def _obtain(
        self,
        query_id: bytes,
        committed: Mapping[str, bytes],
        missing: Mapping[str, str],
        what: str,
        check: Callable[[str, bytes, bytes], None],
    ) -> tuple[dict[str, str], dict[str, str]]:
        """For each committed ``what`` (a query's ``"contribution"``, a training round's
        ``"report"``) the analyst lacks (``missing``: account → name), the bytes as its
        provider serves them to this node (``committed``), checked by ``check(name, raw,
        digest)`` against the digest on-chain; or why it is left out: unreachable, refused,
        or bytes that are not what it committed, do not decode or fail their proof.
        Decided once per query and provider (kept in the store): a provider that withheld
        cannot change this node's mind later."""
        fetched: dict[str, str] = {}
        withheld: dict[str, str] = {}
        for account, name in sorted(missing.items(), key=lambda item: item[1]):
            key = f"{query_id.hex()}/{account.lower()}"
            kept = self.store.get("fetched", key)
            if kept is None:
                digest = committed[account]
                self.progress_.update(query_id.hex(), f"fetching the {what} of {name}")
                kept = fetch_committed(
                    self.transport,
                    account,
                    query_id,
                    what,
                    _bound(check, name, digest),
                    timeout=self.FETCH_TIMEOUT,
                    who=f"node {self.index}",
                )
                self.store.put("fetched", key, kept)
            if what in kept:
                fetched[name] = kept[what]
            else:
                withheld[name] = kept["withheld"]
        return fetched, withheld

    def _obtain_contributions(
        self, ticket: QueryTicket, trail: AuditTrail, missing: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """:meth:`_obtain` of a query's committed contributions."""
        qid = ticket.query_id

        def check(name: str, raw: bytes, digest: bytes) -> None:
            if codec.digest("contribution", qid, raw) != digest:
                raise Excluded("served a contribution other than the committed one")
            vc = codec.decode_contribution_limbs(raw)
            if vc.provider != name:
                raise Excluded("committed a contribution under another name")
            try:
                check_contribution_knowledge(ticket.prepare().query, vc)
            except InvalidProof as exc:
                raise Excluded("committed a contribution whose knowledge proof fails") from exc

        return self._obtain(qid, trail.of("contribution"), missing, "contribution", check)

    def _lock_aggregate(
        self, qid: bytes, trail: AuditTrail, members: set[str], digest: bytes
    ) -> None:
        """Commit the aggregate about to be switched, then make sure every committee member
        that committed one committed the same: no two honest nodes switch different
        aggregates (two nested ones would let the analyst subtract one from the other and
        read whatever was committed in between, such as a late provider's exact value)."""
        mine = trail.of("aggregate").get(self.ledger.account)
        if mine is None:
            self.ledger.commit_many(qid, {"aggregate": digest})
        elif mine != digest:
            raise ProtocolError("this node already committed a different aggregate")
        locked = self.ledger.audit_trail(qid, verdicts=False).of("aggregate")
        if any(d != digest for author, d in locked.items() if author in members):
            raise ProtocolError("another committee member locked a different aggregate")

    def _check_contributions(
        self,
        ticket: QueryTicket,
        query: AggregationQuery,
        q: Query,
        trail: AuditTrail,
        contributions: Sequence[VectorContribution],
        raw: Sequence[bytes],
    ) -> dict[str, str]:
        """The committed contributions not among ``contributions``, account → name, once
        every one given is shown to be what its provider committed."""
        allowed = provider_accounts(self.ledger, q, self._owners)
        committed = trail.of("contribution")
        seen: set[str] = set()
        for vc, encoded in zip(contributions, raw, strict=True):
            account = ticket.account_of(vc.provider)
            if account is None or account not in allowed:
                raise PolicyViolation(f"{vc.provider!r} is not a provider of this query")
            if account in seen:
                raise ProtocolError(f"two contributions from {vc.provider}")
            seen.add(account)
            if committed.get(account) != codec.digest("contribution", ticket.query_id, encoded):
                raise ProtocolError(
                    f"the contribution of {vc.provider} is not the one it committed"
                )
            check_contribution_knowledge(query, vc)
        names = {account: name for name, account in ticket.providers}
        missing = {a: names[a] for a in set(committed) - seen if a in names}
        if len(missing) < len(set(committed) - seen):  # pragma: no cover - the market's rule
            raise ProtocolError("a contribution is committed by an account the ticket omits")
        return missing

    def _check_noise(
        self,
        query: AggregationQuery,
        trail: AuditTrail,
        nodes: Mapping[int, str],
        noise: Sequence[NoiseContribution],
        raw: Sequence[bytes],
        raw_rejected: Sequence[bytes],
    ) -> None:
        committed = trail.of("noise")
        qid = query.query_id
        for nc, encoded in zip(noise, raw, strict=True):
            if committed.get(nodes.get(nc.node, "")) != codec.digest("noise", qid, encoded):
                raise ProtocolError(f"the noise of node {nc.node} is not the one it committed")
            check_noise_knowledge(query, nc)
        check_noise_set(query, self.n, self.t, noise, own=self.index)
        accounted = {nodes[nc.node] for nc in noise}
        for encoded in raw_rejected:  # set aside by the analyst: must be provably bad
            nc = codec.decode_noise(encoded)
            account = nodes.get(nc.node)
            if account is None or committed.get(account) != codec.digest("noise", qid, encoded):
                raise ProtocolError(f"rejected noise of node {nc.node} is not the one it committed")
            try:
                verify_noise(query, self._committee_key(), nc)
            except InvalidProof:
                accounted.add(account)
                continue
            raise ProtocolError(f"the noise of node {nc.node} was set aside although it verifies")
        if set(committed) - accounted:
            raise ProtocolError("committed noise left out of the aggregate")

    def on_bundle(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Commit the aggregate and the proof bundle of a query this node switched."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        record = encoded_record_from_json(body.get("record"))
        qid = ticket.query_id
        open_query(self.ledger, qid, sender)
        header = record.header
        own = self.key_or_fail()
        if (
            header.query != ticket.prepare().query
            or header.committee_key.encode().hex() != own["public_key"]
            or {str(i): p.encode().hex() for i, p in header.public_shares.items()}
            != own["public_shares"]
            or header.threshold != self.t
        ):
            raise ProtocolError("the record's header is not this query's and this committee's")
        done = self.store.get("key_switch", qid.hex())
        withheld = [str(ticket.account_of(name)) for name in (done or {}).get("withheld", {})]
        agg = codec.aggregate_digest(qid, codec.decode_ciphertexts(record.aggregate), withheld)
        if done is None or done["aggregate"] != agg.hex():
            raise ProtocolError("the record's aggregate is not the one this node switched")
        # kept before the commitment: a verifier that was down when the analyst asked
        # fetches it here (``record``) and votes, so the query settles
        self.store.put(
            "bundle", qid.hex(), {"ticket": body.get("ticket"), "record": body.get("record")}
        )
        tx = self.ledger.commit_many(qid, {"proof_bundle": record.bundle_digest()})
        return {"tx": tx.tx_hash}

    def on_record(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The ticket and the public record of a query whose proof bundle this node
        committed (what the analyst sent with ``bundle``); anyone registered may ask. A
        verifier checks it against the ledger's trail as it checks the analyst's."""
        qid = from_hex(body.get("query_id"), "query_id")
        kept = self.store.get("bundle", qid.hex())
        if kept is None:
            raise NotFound(f"node {self.index} holds no record for query 0x{qid.hex()}")
        return dict(kept)


def _bound(
    check: Callable[[str, bytes, bytes], None], name: str, digest: bytes
) -> Callable[[bytes], None]:
    return lambda raw: check(name, raw, digest)


def _list(body: Mapping[str, Any], name: str) -> list[Any]:
    value = body.get(name) or []
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected a list")
    return value
