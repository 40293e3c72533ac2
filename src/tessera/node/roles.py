"""The roles a Tessera process plays: provider, computing node, verifier.

Each role is a :class:`~tessera.node.transport.Handler`: ``handle(path, body,
sender)`` with ``sender`` the address whose registered key signed the request.
The roles run the shared protocol steps (:mod:`tessera.protocol.aggregation`,
:mod:`tessera.crypto.dkg`) on what they receive, check the ledger before they
act (the query is open, the sender is its analyst, the committee is theirs),
commit the digest of what they send, and keep their state in their own
:class:`~tessera.node.store.Store`, so a request repeated after a crash gets the
answer already given instead of a second, different one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.crypto import dkg
from tessera.crypto.group import G, N, Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.crypto.seal import open_sealed, seal
from tessera.crypto.threshold import KeySwitchShare
from tessera.dp import NoiseSampler, OpenDPSampler
from tessera.errors import (
    BudgetExceeded,
    DecodeError,
    LedgerError,
    NotFound,
    PolicyViolation,
    ProtocolError,
    TesseraError,
)
from tessera.ledger import LedgerClient, Query, rho_to_micro
from tessera.node.ledger_session import check_trail
from tessera.node.local_network import DatasetPolicy
from tessera.node.store import Store
from tessera.node.ticket import (
    QueryTicket,
    bounds_to_json,
    categories_to_json,
)
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    NodeKey,
    add_noise,
    aggregate,
    contribute,
    key_switch,
    verify_record,
)
from tessera.protocol.wire import (
    encoded_record_from_json,
    from_hex,
    point_from_hex,
    record_from_json,
)
from tessera.protocol.wire import field as wire_field


def _hex32(value: Any, where: str) -> bytes:
    raw = from_hex(value, where)
    if len(raw) != 32:
        raise DecodeError(f"{where}: must be 32 bytes")
    return raw


@dataclass
class Progress:
    """What a role is doing, for ``GET /v1/progress`` and the command line."""

    role: str
    name: str
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, job: str, stage: str, **extra: Any) -> None:
        with self._lock:
            entry = self.jobs.setdefault(job, {"started": time.time()})
            entry.update(stage=stage, updated=time.time(), **extra)
            if len(self.jobs) > 100:  # keep the latest hundred
                for old in sorted(self.jobs, key=lambda j: self.jobs[j]["updated"])[:-100]:
                    del self.jobs[old]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"role": self.role, "name": self.name, "jobs": dict(self.jobs)}


class Role:
    """Dispatch by path to ``on_<path with / as _>`` methods."""

    progress_: Progress

    def handle(self, path: str, body: dict[str, Any], sender: str) -> dict[str, Any]:
        method = getattr(self, "on_" + path.replace("/", "_").replace("-", "_"), None)
        if method is None or not path.replace("/", "").replace("_", "").isalnum():
            raise NotFound(f"{type(self).__name__} serves no path {path!r}")
        result: dict[str, Any] = method(body, sender)
        return result

    def progress(self) -> dict[str, Any]:
        return self.progress_.snapshot()


def open_query(ledger: LedgerClient, query_id: bytes, sender: str) -> Query:
    """The query as the ledger records it; refuses unless it is open and ``sender`` submitted it."""
    try:
        q = ledger.query(query_id)
    except LedgerError as exc:
        raise PolicyViolation(f"query 0x{query_id.hex()} is not on the ledger") from exc
    if q.status != "open":
        raise PolicyViolation(f"query 0x{query_id.hex()} is {q.status}, not open")
    if q.analyst.lower() != sender.lower():
        raise PolicyViolation("only the analyst who submitted the query may ask for it")
    return q


def admitted(ledger: LedgerClient, ticket: QueryTicket, sender: str) -> Query:
    """:func:`open_query`, and the ledger charged the privacy cost the ticket states."""
    q = open_query(ledger, ticket.query_id, sender)
    expected = 0 if ticket.rho is None else rho_to_micro(ticket.rho)
    if q.privacy_cost != expected:
        raise PolicyViolation("the privacy cost on the ledger differs from the query's")
    return q


# -- provider ---------------------------------------------------------------------------
@dataclass
class Table:
    """A provider's table: where its rows are, its public bounds, its policy."""

    source: Any
    bounds: dict[str, ColumnBounds]
    categories: dict[str, tuple[GroupKey, ...]]
    policy: DatasetPolicy


class ProviderRole(Role):
    def __init__(
        self,
        name: str,
        tables: Mapping[str, Table],
        ledger: LedgerClient,
        store: Store,
        committee_key: Callable[[], Point],
        rng: Rng | None = None,
    ) -> None:
        self.name, self.tables, self.ledger, self.store = name, dict(tables), ledger, store
        self._committee_key = committee_key
        self._rng = rng or SystemRng()
        self.db = LocalDatabase({t: tb.source for t, tb in self.tables.items()})
        self.progress_ = Progress("provider", name)
        self._lock = threading.Lock()  # one query at a time per provider: budgets stay exact

    def recover(self) -> dict[str, str]:
        """After a restart: settle the fate of queries left running by a crash.

        A query still open on the ledger stays resumable (asked again, the provider
        continues from what it stored); one the ledger has closed is marked failed,
        with the reason, so nothing is left half-done and unrecorded. Returns the
        queries marked, by id."""
        marked: dict[str, str] = {}
        for key, state in self.store.items("query").items():
            if state.get("status") != "running":
                continue
            status: str
            try:
                status = self.ledger.query(bytes.fromhex(key)).status
            except LedgerError:
                status = "unknown"
            if status == "open":
                self.progress_.update(key, "resumable")
                continue
            reason = f"interrupted by a restart; the query is {status} on the ledger"
            self.store.put("query", key, {**state, "status": "failed", "reason": reason})
            self.progress_.update(key, "failed", reason=reason)
            marked[key] = reason
        return marked

    def query_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.store.items("query").values():
            counts[state.get("status", "?")] = counts.get(state.get("status", "?"), 0) + 1
        return counts

    def dataset_id(self, table: str) -> int | None:
        value = self.store.get("dataset", table)
        return None if value is None else int(value)

    def on_info(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.ledger.account,
            "queries": self.query_counts(),
            "tables": {
                t: {
                    "bounds": bounds_to_json(tb.bounds),
                    "categories": categories_to_json(tb.categories),
                    "dataset_id": self.dataset_id(t),
                    "max_rows": tb.policy.max_rows,
                    "min_cohort": tb.policy.min_cohort,
                    "budget_spent": float(self.store.get("budget", t) or 0.0),
                    "budget_cap": tb.policy.budget_rho,
                }
                for t, tb in sorted(self.tables.items())
            },
        }

    def on_contribute(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        ticket = QueryTicket.from_json(body.get("ticket"))
        key = ticket.query_id.hex()
        with self._lock:
            state = self.store.get("query", key)
            if state is not None and state.get("status") in ("done", "excluded"):
                return dict(state["response"])  # asked again: the same answer
            if state is not None and state.get("status") == "failed":
                raise ProtocolError(f"{self.name}: {state['reason']}")
            table = self._check(ticket, sender)
            if state is None:
                self._admit(ticket, key, table)
            return self._run(ticket, key, table)

    def _check(self, ticket: QueryTicket, sender: str) -> Table:
        table = self.tables.get(ticket.table)
        if table is None:
            raise PolicyViolation(f"{self.name} holds no table {ticket.table!r}")
        if dict(ticket.bounds) != table.bounds:
            raise PolicyViolation(f"{self.name}/{ticket.table}: the query's bounds are not ours")
        pol = table.policy
        if pol.allowed is not None:
            denied = sorted(ticket.operations - pol.allowed)
            if denied:
                raise PolicyViolation(f"{self.name}/{ticket.table} does not allow {denied}")
        if ticket.rho is None and not pol.allow_exact:
            raise PolicyViolation(f"{self.name}/{ticket.table} requires differential privacy")
        q = admitted(self.ledger, ticket, sender)
        dataset = self.dataset_id(ticket.table)
        if dataset is None or dataset not in q.dataset_ids:
            raise PolicyViolation(f"the query on the ledger does not name {self.name}'s dataset")
        return table

    def _admit(self, ticket: QueryTicket, key: str, table: Table) -> None:
        """Spend the budget and mark the query running, in one transaction."""
        with self.store.transaction() as st:
            spent = float(st.get("budget", ticket.table) or 0.0)
            rho = ticket.rho or 0.0
            if spent + rho > table.policy.budget_rho * (1 + 1e-12):
                raise BudgetExceeded(
                    f"{self.name}/{ticket.table}: the query needs rho={rho:.4g} but only "
                    f"{table.policy.budget_rho - spent:.4g} remains"
                )
            st.put("budget", ticket.table, spent + rho)
            st.put("query", key, {"status": "running", "started": time.time()})

    def _run(self, ticket: QueryTicket, key: str, table: Table) -> dict[str, Any]:
        state = self.store.get("query", key)
        encoded = state.get("contribution")
        prepared = ticket.prepare()
        if encoded is None:
            self.progress_.update(key, "evaluating")
            res = self.db.evaluate(
                prepared.plan,
                ticket.table,
                table.bounds,
                ticket.where,
                extra_columns=ticket.group_columns(),
            )
            pol = table.policy
            groups = [i for i, t in enumerate(prepared.plan.terms) if t.name.startswith("n@")]
            reason = None
            if res.rows < pol.min_cohort or any(0 < res.values[i] < pol.min_cohort for i in groups):
                reason = "cohort or group below the provider's minimum"
            elif res.rows > min(pol.max_rows, ticket.max_rows):
                reason = "more rows than the public maximum"
            if reason is not None:
                response = {"excluded": reason, "rows": None}
                self.store.put("query", key, {"status": "excluded", "response": response})
                self.progress_.update(key, "excluded")
                return response
            self.progress_.update(key, "encrypting", rows=res.rows)
            vc = contribute(prepared.query, self._committee_key(), self.name, res.values, self._rng)
            encoded = codec.encode_contribution(vc).hex()
            state = {**state, "contribution": encoded, "rows": res.rows, "clipped": res.clipped}
            self.store.put("query", key, state)  # before the chain: a retry resends the same
        vc = codec.decode_contribution(bytes.fromhex(encoded))
        digest = codec.contribution_digest(ticket.query_id, vc)
        committed = self.ledger.audit_trail(ticket.query_id).of("contribution")
        if self.ledger.account not in committed:
            self.progress_.update(key, "committing")
            self.ledger.post_contribution(ticket.query_id, digest)
        elif committed[self.ledger.account] != digest:
            raise ProtocolError("a different contribution is already committed for this query")
        response = {"contribution": encoded, "rows": state["rows"]}
        self.store.put("query", key, {**state, "status": "done", "response": response})
        self.progress_.update(key, "done")
        return response


# -- computing node ---------------------------------------------------------------------
def _share_json(s: dkg.Share) -> dict[str, Any]:
    return {"dealer": s.dealer, "recipient": s.recipient, "s": hex(s.s), "b": hex(s.s_blind)}


def _share_from(data: Any, where: str) -> dkg.Share:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    try:
        s, b = int(str(data["s"]), 16), int(str(data["b"]), 16)
    except (KeyError, ValueError) as exc:
        raise DecodeError(f"{where}: bad share ({exc})") from exc
    if not (0 <= s < N and 0 <= b < N):
        raise DecodeError(f"{where}: share out of range")
    return dkg.Share(
        wire_field(data, "dealer", int, where), wire_field(data, "recipient", int, where), s, b
    )


def _points(value: Any, where: str) -> tuple[Point, ...]:
    if not isinstance(value, list):
        raise DecodeError(f"{where}: expected a list of points")
    return tuple(point_from_hex(v, f"{where}[{i}]") for i, v in enumerate(value))


def _hex_points(points: Sequence[Point]) -> list[str]:
    return [p.encode().hex() for p in points]


class NodeRole(Role):
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
        self._dkg: dkg.DkgParticipant | None = None
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

    def _aad(self, dealer: int, recipient: int) -> bytes:
        return f"tessera/dkg/{self.n}/{self.t}/{dealer}->{recipient}".encode()

    def on_dkg_deal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        with self._lock:
            if self.key is not None:
                raise ProtocolError(f"node {self.index} already holds a committee key")
            self.progress_.update("dkg", "dealing")
            self._dkg = dkg.DkgParticipant(self.index, self.n, self.t, self._rng)
            dc, shares = self._dkg.deal()
            keys = self._peer_keys()
            sealed = {}
            for s in shares:
                plain = f"{s.s:064x}{s.s_blind:064x}".encode()
                sealed[str(s.recipient)] = seal(
                    keys[s.recipient], plain, self._aad(self.index, s.recipient), self._rng
                ).hex()
            return {"commitments": _hex_points(dc.commitments), "shares": sealed}

    def _participant(self) -> dkg.DkgParticipant:
        if self._dkg is None:
            raise ProtocolError(f"node {self.index}: no DKG under way")
        return self._dkg

    def on_dkg_receive(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        dealings = body.get("dealings")
        if not isinstance(dealings, dict):
            raise DecodeError("dkg/receive: 'dealings' must be an object")
        part = self._participant()
        complaints = []
        self.progress_.update("dkg", "receiving")
        for dealer in range(1, self.n + 1):
            d = dealings.get(str(dealer))
            if d is None:
                complaints.append(dkg.Complaint(self.index, dealer))
                continue
            dc = dkg.DealerCommitments(dealer, _points(d.get("commitments"), f"dealer {dealer}"))
            share = None
            try:
                box = from_hex(d.get("share"), f"dealer {dealer} share")
                plain = open_sealed(self._secret, box, self._aad(dealer, self.index)).decode()
                share = dkg.Share(dealer, self.index, int(plain[:64], 16), int(plain[64:], 16))
            except (TesseraError, ValueError):
                share = None  # unreadable: complain, the dealer must answer publicly
            c = part.receive(dc, share)
            if c is not None:
                complaints.append(c)
        return {"complaints": [[c.accuser, c.dealer] for c in complaints]}

    def on_dkg_answer(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        complaints = [dkg.Complaint(int(a), int(d)) for a, d in body.get("complaints", [])]
        return {"answers": [_share_json(s) for s in self._participant().answer(complaints)]}

    def on_dkg_extract(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        answers = [_share_from(a, "answer") for a in body.get("answers", [])]
        part.adopt_answers(answers)
        return {"commitments": _hex_points(part.extraction().commitments)}

    def on_dkg_check(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        accusations = []
        for dealer, pts in (body.get("extracted") or {}).items():
            fc = dkg.FeldmanCommitments(int(dealer), _points(pts, f"extraction {dealer}"))
            if int(dealer) != self.index:
                bad = part.check_extraction(fc)
                if bad is not None:
                    accusations.append(_share_json(bad))
        return {"accusations": accusations}

    def on_dkg_reveal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        dealer = wire_field(body, "dealer", int, "dkg/reveal")
        return {"share": _share_json(self._participant().reveal(dealer))}

    def on_dkg_finalize(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        qualified = [int(i) for i in body.get("qualified", [])]
        extracted = {
            int(d): dkg.FeldmanCommitments(int(d), _points(pts, f"extraction {d}"))
            for d, pts in (body.get("extracted") or {}).items()
        }
        result = part.finalize(qualified, extracted)
        with self._lock:
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
        self.progress_.update("dkg", "done")
        return {
            "public_key": result.public_key.encode().hex(),
            "public_shares": {str(i): p.encode().hex() for i, p in result.public_shares.items()},
        }

    def on_dkg_committee(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The committee registered on-chain: check it carries our key, then adopt its id."""
        cid = wire_field(body, "committee", int, "dkg/committee")
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no key to register")
        c = self.ledger.committee(cid)
        if c.public_key.hex() != key["public_key"] or self.ledger.account not in c.members:
            raise ProtocolError(f"committee {cid} on the ledger is not ours")
        with self._lock:
            self.store.put("dkg", "result", {**key, "committee": cid})
        return {"committee": cid}

    def on_dkg_run(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Drive the committee's DKG (relaying every broadcast) and register the committee.

        Idempotent: once the committee is registered, its key is returned."""
        key = self.key
        if key is not None and key.get("committee") is not None:
            return self.on_key({}, sender)
        if key is not None:
            raise ProtocolError(f"node {self.index} holds a key that was never registered")
        peers = dict(self._node_addresses())
        if sorted(peers) != list(range(1, self.n + 1)):
            raise ProtocolError(f"node {self.index} does not know all {self.n} nodes")

        def each(path: str, bodies: Mapping[int, Mapping[str, Any]]) -> dict[int, Any]:
            self.progress_.update("dkg", path)
            return {
                i: self.handle(path, dict(bodies[i]), self.ledger.account)
                if i == self.index
                else self.transport.call(peers[i], path, bodies[i])
                for i in sorted(bodies)
            }

        everyone = range(1, self.n + 1)
        dealt = each("dkg/deal", {i: {} for i in everyone})
        complaints_raw = each(
            "dkg/receive",
            {
                j: {
                    "dealings": {
                        str(i): {"commitments": d["commitments"], "share": d["shares"][str(j)]}
                        for i, d in dealt.items()
                    }
                }
                for j in everyone
            },
        )
        complaints = [c for r in complaints_raw.values() for c in r["complaints"]]
        answers_raw = each("dkg/answer", {i: {"complaints": complaints} for i in everyone})
        answers = [a for r in answers_raw.values() for a in r["answers"]]
        dcs = {
            i: dkg.DealerCommitments(i, _points(d["commitments"], f"dealer {i}"))
            for i, d in dealt.items()
        }
        qualified = dkg.qualified_set(
            self.n,
            self.t,
            dcs,
            [dkg.Complaint(int(a), int(d)) for a, d in complaints],
            [_share_from(a, "answer") for a in answers],
        )
        extracted = each("dkg/extract", {i: {"answers": answers} for i in everyone})
        ext = {str(i): extracted[i]["commitments"] for i in qualified}
        accusations = each("dkg/check", {i: {"extracted": ext} for i in qualified})
        for i in qualified:
            fc = dkg.FeldmanCommitments(i, _points(ext[str(i)], f"extraction {i}"))
            shares = [
                _share_from(a, "accusation")
                for r in accusations.values()
                for a in r["accusations"]
                if int(a["dealer"]) == i
            ]
            if any(dkg.extraction_complaint_valid(dcs[i], fc, sh) for sh in shares):
                others = [j for j in qualified if j != i]
                revealed = each("dkg/reveal", {j: {"dealer": i} for j in others})
                rebuilt = dkg.reconstruct_extraction(
                    dcs[i], [_share_from(r["share"], "reveal") for r in revealed.values()], self.t
                )
                ext[str(i)] = _hex_points(rebuilt.commitments)
        final = each(
            "dkg/finalize",
            {i: {"qualified": list(qualified), "extracted": ext} for i in qualified},
        )
        mine = final[self.index]
        if any(f != mine for f in final.values()):
            raise ProtocolError("the nodes disagree on the committee's public key")
        members = [peers[i] for i in everyone]
        created = self.ledger.create_committee(
            members,
            self.t,
            bytes.fromhex(mine["public_key"]),
            [bytes.fromhex(mine["public_shares"][str(i)]) for i in everyone],
        )
        each("dkg/committee", {i: {"committee": created.committee_id} for i in qualified})
        self.progress_.update("dkg", "registered", committee=created.committee_id)
        return self.on_key({}, sender)

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


# -- verifier ---------------------------------------------------------------------------
class VerifierRole(Role):
    """Checks a query's record against its proofs and its on-chain trail, then votes."""

    def __init__(
        self,
        name: str,
        ledger: LedgerClient,
        store: Store,
        providers: Callable[[], Mapping[str, str]],
    ) -> None:
        self.name, self.ledger, self.store = name, ledger, store
        self._providers = providers  # provider name -> account
        self.progress_ = Progress("verifier", name)

    def on_verify(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        record = record_from_json(body.get("record"))
        qid = record.query.query_id
        key = qid.hex()
        done = self.store.get("verdict", key)
        if done is not None:
            return dict(done)
        q = self.ledger.query(qid)
        self.progress_.update(key, "verifying")
        verdict = verify_record(record)
        committee = self.ledger.committee(q.committee)
        nodes = {i + 1: a for i, a in enumerate(committee.members)}
        failures = check_trail(
            self.ledger.audit_trail(qid), record, self._providers(), nodes, q.analyst
        )
        passed = verdict.ok and not failures
        cheaters = sorted({*verdict.cheaters, *verdict.noise_cheaters})
        settled = False
        tx = None
        if q.status == "open":
            posted = self.ledger.post_verdict(qid, passed, [nodes[i] for i in cheaters])
            settled, tx = posted.settled, posted.tx.tx_hash
        status = self.ledger.query(qid).status
        result = {
            "passed": passed,
            "proofs_checked": verdict.checked_proofs,
            "failures": [*verdict.failures, *failures],
            "cheaters": cheaters,
            "settled": settled,
            "status": status,
            "tx": tx,
        }
        with self.store.transaction() as st:
            st.put("verdict", key, result)
            st.put("record", key, body.get("record"))  # for anyone to re-check later
        self.progress_.update(key, "voted", passed=passed)
        return result

    def on_record(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """A verified query's whole public record (ciphertexts, proofs, release)."""
        qid = _hex32(body.get("query_id"), "query_id")
        record = self.store.get("record", qid.hex())
        if record is None:
            raise NotFound(f"no record for query 0x{qid.hex()}")
        return {"record": record}

    def on_verdict(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        qid = _hex32(body.get("query_id"), "query_id")
        done = self.store.get("verdict", qid.hex())
        if done is None:
            raise NotFound(f"no verdict for query 0x{qid.hex()}")
        return dict(done)
