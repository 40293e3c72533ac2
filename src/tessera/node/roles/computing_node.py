"""The computing node: adds noise inside the encryption and key-switches the aggregate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from tessera.crypto import dkg
from tessera.crypto.group import G, Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.crypto.threshold import KeySwitchShare
from tessera.dp import NoiseSampler, OpenDPSampler
from tessera.errors import (
    PolicyViolation,
    ProtocolError,
)
from tessera.ledger import LedgerClient, Query
from tessera.node.roles.base import Progress, admitted, open_query
from tessera.node.roles.committee import DkgMember
from tessera.node.store import Store
from tessera.node.ticket import (
    QueryTicket,
)
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    NodeKey,
    add_noise,
    aggregate,
    key_switch,
)
from tessera.protocol.wire import (
    encoded_record_from_json,
    from_hex,
)


class NodeRole(DkgMember):
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
        cheat_key_switch: bool = False,
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
        self.cheat_key_switch = cheat_key_switch  # test hook: corrupt a key-switch share
        self.progress_ = Progress("node", f"node-{index}")
        self._dkg: dkg.DkgNode | None = None
        self._lock = threading.Lock()

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

    def _node_key(self) -> NodeKey:
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no committee key")
        return NodeKey(self.index, int(key["secret_share"], 16))

    def _committee_key(self) -> Point:
        key = self.key
        assert key is not None
        return Point.decode(bytes.fromhex(key["public_key"]))

    def _check_query(self, ticket: QueryTicket, sender: str) -> Query:
        q = admitted(self.ledger, ticket, sender)
        if q.committee != self.committee_id():
            raise PolicyViolation("the query on the ledger is for another committee")
        if (ticket.n, ticket.t) != (self.n, self.t):
            raise PolicyViolation(f"the committee is {self.n} nodes, threshold {self.t}")
        return q

    # -- a query -------------------------------------------------------------------------
    def on_noise(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
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
        nc = add_noise(prepared.query, self._committee_key(), self.index, values, self._rng)
        encoded = codec.encode_noise(nc).hex()
        with self._lock:
            if self.store.get("noise", key) is None:
                self.ledger.commit_many(
                    ticket.query_id, {"noise": codec.noise_digest(ticket.query_id, nc)}
                )
                self.store.put("noise", key, {"noise": encoded})
        return dict(self.store.get("noise", key))

    def on_key_switch(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Aggregate what the providers and nodes committed on-chain, switch it to the analyst."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        key = ticket.query_id.hex()
        qid = ticket.query_id
        raw = [from_hex(c, "contribution") for c in body.get("contributions") or []]
        raw_noise = [from_hex(c, "noise") for c in body.get("noise") or []]
        # only the ciphertexts are needed to add up; each message is checked against the
        # digest its author committed on-chain, the proofs are the verifiers' to check
        contributions = [codec.decode_contribution_limbs(c) for c in raw]
        noise = [codec.decode_noise_limbs(c) for c in raw_noise]
        done = self.store.get("key_switch", key)
        prepared = ticket.prepare()
        agg = aggregate(prepared.query, contributions, noise)
        agg_digest = codec.aggregate_digest(qid, agg).hex()
        if done is not None:
            if done["aggregate"] != agg_digest:
                raise ProtocolError("this node already switched a different aggregate")
            return {"shares": done["shares"]}
        self._check_query(ticket, sender)
        trail = self.ledger.audit_trail(qid)
        committed = set(trail.of("contribution").values())
        for vc, encoded in zip(contributions, raw, strict=True):
            if codec.digest("contribution", qid, encoded) not in committed:
                raise ProtocolError(f"contribution of {vc.provider} is not the one committed")
        if len(contributions) != len(committed):
            raise ProtocolError("the contributions sent are not those committed on-chain")
        noise_committed = set(trail.of("noise").values())
        for nc, encoded in zip(noise, raw_noise, strict=True):
            if codec.digest("noise", qid, encoded) not in noise_committed:
                raise ProtocolError(f"noise of node {nc.node} is not the one committed")
        if ticket.rho is not None and len(noise) < self.n - self.t + 1:
            raise PolicyViolation("too little noise: fewer than n - t + 1 nodes' noise")
        self.progress_.update(key, "key-switch")
        k = self._node_key()
        shares = key_switch(prepared.query, k.index, k.secret_share, agg, self._rng)
        if self.cheat_key_switch:
            s = shares[0]
            shares[0] = KeySwitchShare(s.index, s.u, s.w + G, s.proof)
        shares_hex = codec.encode_key_switch(shares).hex()
        with self._lock:
            if self.store.get("key_switch", key) is None:
                self.ledger.commit_many(qid, {"key_switch": codec.key_switch_digest(qid, shares)})
                self.store.put("key_switch", key, {"aggregate": agg_digest, "shares": shares_hex})
        return {"shares": self.store.get("key_switch", key)["shares"]}

    def on_bundle(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Commit the aggregate and the proof bundle of a finished query (one node does)."""
        record = encoded_record_from_json(body.get("record"))
        qid = record.header.query.query_id
        open_query(self.ledger, qid, sender)
        done = self.store.get("key_switch", qid.hex())
        agg = codec.digest("aggregate", qid, record.aggregate)
        if done is None or done["aggregate"] != agg.hex():
            raise ProtocolError("the record's aggregate is not the one this node switched")
        tx = self.ledger.commit_many(
            qid, {"aggregate": agg, "proof_bundle": record.bundle_digest()}
        )
        return {"tx": tx.tx_hash}
