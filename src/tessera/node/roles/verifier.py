"""The verifier: checks a query's record against its proofs and its on-chain trail, then votes.

A verifier trusts nothing a record says about itself. The query (what was asked,
at what privacy cost) is the ticket whose hash is the query's id on the ledger;
the committee's key, its members' public shares and its threshold come from the
registry; every message of the record must be the one its author committed
on-chain, and every message committed must be in the record. Only then does it
check the proofs and vote, so a verdict is a function of the chain and of
messages their authors signed for: anyone may ask for one, nobody can steer it.
A node is named a cheater only for a message it committed whose proof fails; a provider
is named withheld (and the market pays it nothing) only if it committed a contribution the
record leaves out, as every switching node locked the aggregate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tessera.crypto.group import Point
from tessera.errors import (
    ChainUnreachable,
    LedgerError,
    NotFound,
    PolicyViolation,
    ProtocolError,
    TesseraError,
)
from tessera.ledger import AuditTrail, Committee, LedgerClient, Query
from tessera.ledger.client import VerdictPosted
from tessera.node.roles.base import (
    Progress,
    Recovering,
    _hex32,
    on_ledger,
    reconcile_with_ledger,
)
from tessera.node.store import Store
from tessera.protocol import codec
from tessera.protocol.aggregation import AggregationRecord, Verdict, verify_record
from tessera.protocol.query import QueryTicket
from tessera.protocol.training_round import (
    RoundTranscript,
    TrainingTicket,
    check_round,
    check_scores,
)
from tessera.protocol.wire import record_from_json


def bind_record(record: AggregationRecord, ticket: QueryTicket, committee: Committee) -> None:
    """Replace what a record says of its query and committee by the ticket's and the registry's."""
    record.query = ticket.prepare().query
    record.committee_key = Point.decode(committee.public_key)
    record.public_shares = {i: Point.decode(k) for i, k in committee.shares.items()}
    record.threshold = committee.threshold


def check_trail(
    trail: AuditTrail,
    record: AggregationRecord,
    ticket: QueryTicket,
    nodes: Mapping[int, str],
    analyst: str,
) -> list[str]:
    """What in ``record`` is not what its authors committed on-chain, or is missing from it.

    An empty list means the record is exactly the query's: each contribution is committed
    by the account the ticket names for it, each noise and key switch by its node (a key
    switch together with the aggregate it switched), the release (if the record has one)
    by the analyst, and every contribution and noise committed is in the record, but for
    the contributions the record names withheld, which the aggregate the nodes locked
    names too (:func:`~tessera.protocol.codec.aggregate_digest`).
    """
    qid = ticket.query_id
    failures: list[str] = []

    def expect(kind: Any, author: str | None, what: str, digest: bytes) -> None:
        if author is None or trail.of(kind).get(author) != digest:
            failures.append(f"{what}: not what its author committed on-chain")

    seen: set[str] = set()
    for vc in record.contributions:
        account = ticket.account_of(vc.provider)
        if account in seen:
            failures.append(f"contribution of {vc.provider} appears twice")
        seen.add(account or "")
        expect(
            "contribution",
            account,
            f"contribution of {vc.provider}",
            codec.contribution_digest(qid, vc),
        )
    withheld: set[str] = set()  # committed, left out: the locked aggregate names them
    for name in record.withheld:
        account = ticket.account_of(name)
        if account is None or account in seen or account not in trail.of("contribution"):
            failures.append(f"{name} is named withheld but committed no contribution left out")
        withheld.add(account or "")
    if trail.of("contribution").keys() - seen - withheld:
        failures.append("a contribution committed on-chain is missing from the record")
    noise_authors: set[str] = set()
    for nc in [*record.noise, *record.rejected_noise]:
        author = nodes.get(nc.node)
        noise_authors.add(author or "")
        expect("noise", author, f"noise of node {nc.node}", codec.noise_digest(qid, nc))
    if trail.of("noise").keys() - noise_authors:
        failures.append("noise committed on-chain is missing from the record")
    for i, shares in record.key_switch_shares.items():
        digest = codec.key_switch_digest(qid, record.aggregate, shares)
        expect("key_switch", nodes.get(i), f"key switch of node {i}", digest)
    if record.release is not None:
        expect("result", analyst, "result", codec.release_digest(qid, record.release))
    aggregates = set(trail.of("aggregate").values())
    if aggregates != {codec.aggregate_digest(qid, record.aggregate, withheld)}:
        failures.append("aggregate: not the one the switching nodes committed")
    if codec.record_digest(record) not in trail.of("proof_bundle").values():
        failures.append("proof bundle: no committee member committed it")
    return failures


def check_query(
    ledger: LedgerClient, ticket: QueryTicket, record_json: Any
) -> tuple[Verdict, Query, dict[int, str]]:
    """Everything a verifier checks of a query, from the ledger and the record only.

    Raises :class:`~tessera.errors.ProtocolError` if the record is not exactly what the
    query's parties committed on-chain (then there is nothing to vote on); else returns
    the proofs' verdict. Anyone holding the ticket and the record can run it."""
    record, q, nodes = trail_record(ledger, ticket, record_json)
    return verify_record(record), q, nodes


def trail_record(
    ledger: LedgerClient, ticket: QueryTicket, record_json: Any
) -> tuple[AggregationRecord, Query, dict[int, str]]:
    """The record, bound to the ticket's query and the registry's committee, once it is
    shown to be exactly the query's on-chain trail (else :class:`ProtocolError`): the part
    of :func:`check_query` before the proofs."""
    q, committee = on_ledger(ledger, ticket)
    nodes = committee.nodes
    record = record_from_json(record_json)
    bind_record(record, ticket, committee)
    mismatch = check_trail(
        ledger.audit_trail(ticket.query_id, verdicts=False), record, ticket, nodes, q.analyst
    )
    if mismatch:
        raise ProtocolError("the record is not this query's: " + "; ".join(mismatch))
    return record, q, nodes


class VerifierRole(Recovering):
    """Checks a query's record against its proofs and its on-chain trail, then votes.

    A query it was drawn for and may vote on is kept in its store (``pending``: the ticket
    and the record it was asked about) before the work starts, until the verdict is
    stored. Killed before it voted, the verifier finds it there on restart
    (:meth:`recover`), or the next time it is asked for work (:meth:`reconcile`), checks
    it again against the ledger's trail and votes, so the query settles and its escrow
    is released instead of waiting for the deadline.

    A query it was drawn for but never asked about (it was down when the analyst asked,
    or the analyst stopped) it finds on the ledger (:meth:`discover`: the market's
    ``VerifiersDrawn`` events), at start and in the background (:meth:`tick`), and
    fetches the ticket and record from the committee's nodes (the one that committed the
    proof bundle keeps them, ``record``) or from the other verifiers drawn for it; a
    record fetched is checked against the trail exactly as one the analyst sent. The
    same for a query and for a training round."""

    FETCH_GRACE = 30.0  # seconds a fetched record waits for the analyst's own request

    def __init__(
        self, name: str, ledger: LedgerClient, store: Store, transport: Any = None
    ) -> None:
        self.name, self.ledger, self.store = name, ledger, store
        self.transport = transport  # to fetch records from nodes and verifiers (or None)
        self.progress_ = Progress("verifier", name)
        self._voting = threading.Lock()  # one verdict at a time: a query is voted once
        self._reconciling = threading.Lock()

    def on_verify(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Verify a query's record and vote once; any registered participant may ask."""
        ticket = QueryTicket.from_json(body.get("ticket"))
        self.reconcile()  # first, the queries a crash or a failed chain left unvoted
        return self.verify(ticket, body.get("record"))

    def on_verify_training(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Verify a training round's record (:func:`~tessera.protocol.training_round.check_round`)
        and vote once; any registered participant may ask. A record that is not the
        round's on-chain trail is refused without a vote."""
        ticket = TrainingTicket.from_json(body.get("ticket"))
        self.reconcile()
        return self.verify_training(ticket, body.get("record"))

    def verify_training(self, ticket: TrainingTicket, record_json: Any) -> dict[str, Any]:
        """The verdict on a training round, voted if this verifier was drawn for it; kept
        ``pending`` from before its checks until the verdict is stored, as a query's."""
        record = RoundTranscript.from_json(record_json)
        qid = ticket.query_id
        key = qid.hex()
        with self._voting:
            done = self.store.get("verdict", key)
            if done is not None:
                return dict(done)
            self.progress_.update(key, "verifying a training round")
            q, committee = on_ledger(self.ledger, ticket)
            if q.kind != "training":
                raise PolicyViolation("the query on the ledger is not a training round")
            trail = self.ledger.audit_trail(ticket.query_id, verdicts=False)
            keep = q.status == "open" and self.ledger.account in self.ledger.verifiers_of(qid)
            if keep:
                self._keep_pending(key, "training", ticket.to_json(), record_json)
            try:
                found = check_round(ticket, record, trail.commitments, committee.nodes, q.analyst)
            except ProtocolError:
                if keep:  # not the round's trail: nothing to vote on, as for a query
                    self.store.put("pending", key, {"status": "fetch", "kind": "training"})
                raise
            release = tuple(f for f in found.failures if "analyst's result" in f)
            verdict = Verdict(
                found.work_ok and found.result_ok,
                found.checked,
                found.failures,
                found.cheaters,
                release_failures=release,
            )
            # check_round took these names only as every node locked them in its decisions
            withheld = [str(ticket.account_of(name)) for name in sorted(record.withheld)]
            scores = None
            if ticket.scoring is not None and q.status == "open":
                scores = self.confirm_scores(ticket, record, q, committee.nodes)
            result = self._vote_and_keep(ticket, record_json, verdict, q, committee.nodes, withheld)
            if scores is not None:
                result["scores"] = scores
                self.store.put("verdict", key, result)
            self.progress_.update(key, "voted", passed=result["passed"])
            return result

    def confirm_scores(
        self, ticket: TrainingTicket, record: RoundTranscript, q: Query, nodes: Mapping[int, str]
    ) -> dict[str, Any]:
        """A scored round, before the verdict: re-compute the scores from the released
        subset sums in the record (:func:`~tessera.protocol.training_round.check_scores`)
        and, if they match, confirm the record's digest and weights on-chain
        (``post_scores``, one weight per dataset in the query's order); at a majority of
        the drawn verifiers the providers are paid by weight. A record that differs is
        refused and not confirmed: the listed cuts stand unless others confirm."""
        try:
            scores = check_scores(ticket, record, nodes)
        except ProtocolError as exc:
            return {"confirmed": False, "reason": str(exc)}
        names = {account: name for name, account in ticket.providers}
        weights = []
        for d in q.dataset_ids:
            name = names.get(self.ledger.dataset(d).provider)
            weights.append(0 if name is None else scores.weight_of(name))
        try:
            posted = self.ledger.post_scores(ticket.query_id, scores.digest(), weights)
        except LedgerError as exc:  # e.g. confirmed already, before a restart
            return {"confirmed": False, "reason": f"the ledger refused the scores: {exc}"}
        return {
            "confirmed": True,
            "digest": scores.digest().hex(),
            "weights": weights,
            "applied": posted.applied,
        }

    def verify(self, ticket: QueryTicket, record_json: Any) -> dict[str, Any]:
        """The verdict on ``ticket``'s query, voted if this verifier was drawn for it.

        A record that is not the query's trail is refused before anything is stored; one
        that is, for an open query this verifier was drawn for, is kept (``pending``)
        before its proofs are checked and the vote is cast, until the verdict is stored."""
        qid = ticket.query_id
        key = qid.hex()
        with self._voting:
            done = self.store.get("verdict", key)
            if done is not None:
                return dict(done)
            self.progress_.update(key, "verifying")
            record, q, nodes = trail_record(self.ledger, ticket, record_json)
            if q.status == "open" and self.ledger.account in self.ledger.verifiers_of(qid):
                # killed from here on, or the chain fails: recover() votes on it later
                self._keep_pending(key, "query", ticket.to_json(), record_json)
            verdict = verify_record(record)
            # check_trail took these names only as the switching nodes locked them
            withheld = [str(ticket.account_of(name)) for name in record.withheld]
            result = self._vote_and_keep(ticket, record_json, verdict, q, nodes, withheld)
            self.progress_.update(key, "voted", passed=result["passed"])
            return result

    def _vote_and_keep(
        self,
        ticket: QueryTicket | TrainingTicket,
        record_json: Any,
        verdict: Verdict,
        q: Query,
        nodes: Mapping[int, str],
        withheld: Sequence[str] = (),
    ) -> dict[str, Any]:
        qid = ticket.query_id
        key = qid.hex()
        cheaters = sorted({*verdict.cheaters, *verdict.noise_cheaters})
        settled, tx = False, None
        if q.status == "open":
            if self.ledger.account not in self.ledger.verifiers_of(qid):
                raise PolicyViolation(
                    f"verifier {self.name} was not drawn for query 0x{key}: it cannot vote"
                )
            # the vote is on the providers' and nodes' work; the analyst's own release
            # cannot fail a query (the price is owed once the work is on the trail)
            try:
                posted = self.vote(qid, verdict.work_ok, [nodes[i] for i in cheaters], withheld)
                settled, tx = posted.settled, posted.tx.tx_hash
            except LedgerError as exc:
                if exc.reason != "already voted":
                    raise
                # voted before a crash that came before the verdict was stored: the vote
                # on the ledger stands
        result = verdict_json(verdict, cheaters, settled, self.ledger.query(qid).status, tx)
        result["withheld"] = sorted(withheld)
        with self.store.transaction() as st:
            st.put("verdict", key, result)
            st.put("record", key, {"ticket": ticket.to_json(), "record": record_json})
            if st.get("pending", key) is not None:
                st.put("pending", key, {"status": "voted"})
        return result

    def _keep_pending(self, key: str, kind: str, ticket_json: Any, record_json: Any) -> None:
        self.store.put(
            "pending",
            key,
            {"status": "waiting", "kind": kind, "ticket": ticket_json, "record": record_json},
        )

    def vote(
        self, query_id: bytes, work_ok: bool, cheaters: list[str], withheld: Sequence[str] = ()
    ) -> VerdictPosted:
        """Post this verifier's verdict on the ledger: the work passed or not, the nodes it
        names cheaters, the providers' accounts it names withheld (a step a test may
        wrap)."""
        return self.ledger.post_verdict(query_id, work_ok, cheaters, withheld)

    def recover(self, why: str = "interrupted by a restart") -> dict[str, str]:
        """After a restart, and in the background (:meth:`tick`): find the open queries
        this verifier was drawn for (:meth:`discover`), then vote on every one it has not
        voted on (:meth:`resume_pending`). Returns the queries dropped or refused."""
        self.discover()
        return self.resume_pending(why, fetch=True)

    def reconcile(self) -> None:
        """At each request to verify: vote first on the queries it was asked about before
        and cut short on (no fetching, no discovery: that is the background's)."""
        self.unless_reconciling(lambda: self.resume_pending("left unfinished", fetch=False))

    def tick(self) -> None:
        """The background round: :meth:`recover`, unless a reconciliation is under way."""
        self.unless_reconciling(lambda: self.recover("left unfinished"))

    def discover(self) -> int:
        """Keep (``pending``, to be fetched) every query the market drew this verifier for
        since the last look and that it holds no verdict for; returns how many. Reads the
        market's ``VerifiersDrawn`` events from the block after the last one read (kept in
        the store). Nothing is kept while the chain cannot be read."""
        if self.transport is None:
            return 0  # nowhere to fetch a record from
        try:
            head = self.ledger.block_number()
            since = int(self.store.get("scan", "verifiers_drawn") or 0)
            if since > head:
                return 0
            logs = self.ledger.market.events.VerifiersDrawn().get_logs(
                from_block=since, to_block=head
            )
        except Exception:  # the chain is down or failed: the next round reads again
            return 0
        me = self.ledger.account.lower()
        found = 0
        with self.store.transaction() as st:
            for event in logs:
                if me not in {str(v).lower() for v in event["args"]["verifiers"]}:
                    continue
                key = bytes(event["args"]["query_id"]).hex()
                if st.get("verdict", key) is None and st.get("pending", key) is None:
                    st.put("pending", key, {"status": "fetch"})
                    self.progress_.update(key, "drawn: fetching the record")
                    found += 1
            st.put("scan", "verifiers_drawn", head + 1)
        return found

    def resume_pending(self, why: str, fetch: bool) -> dict[str, str]:
        """Vote on every query kept ``pending`` and not voted on yet, checked again against
        the ledger's trail (:func:`~tessera.node.roles.base.reconcile_with_ledger`): one it
        was asked about (``waiting``) from what it kept; with ``fetch``, one it was drawn
        for but holds no record of (``fetch``) from the nodes or the other verifiers, once
        one serves it, while it is open and before its deadline. One the ledger has closed
        meanwhile is dropped, with the reason; one it was asked about that is past its
        deadline is settled first (``expire``), one it was never asked about is left to
        whoever settles it. Returns the queries dropped or refused."""
        closed: dict[str, str] = {}

        def resume(qid: bytes, state: Mapping[str, Any]) -> None:
            key = qid.hex()
            kind = state.get("kind", "query")
            ticket_json, record_json = state.get("ticket"), state.get("record")
            if state.get("status") == "fetch":
                fetched = self.fetch(qid)
                if fetched is None:
                    return  # nobody serves it yet: the next round asks again
                served = float(state.get("served") or 0.0)
                if not served:
                    self.store.put("pending", key, {**state, "served": time.time()})
                if time.time() - (served or time.time()) < self.FETCH_GRACE:
                    return  # the analyst is likely about to ask: leave it the time to
                kind, ticket_json, record_json = fetched
            try:
                if kind == "training":
                    self.verify_training(TrainingTicket.from_json(ticket_json), record_json)
                else:
                    self.verify(QueryTicket.from_json(ticket_json), record_json)
            except LedgerError:
                return  # the chain again: left for the next reconciliation
            except TesseraError as exc:
                if state.get("status") == "fetch":
                    # a fetched record not (yet) the query's trail: asked again next round
                    self.progress_.update(key, "fetched record refused", reason=str(exc))
                    return
                reason = f"{why}; refused: {exc}"  # never votable: not tried again
                self.store.put("pending", key, {"status": "refused", "reason": reason})
                self.progress_.update(key, "refused", reason=reason)
                closed[key] = reason

        def close(qid: bytes, state: Mapping[str, Any], status: str) -> None:
            key = qid.hex()
            reason = f"{why}; the query is {status} on the ledger before this verifier voted"
            self.store.put("pending", key, {"status": "closed", "reason": reason})
            self.progress_.update(key, "closed", reason=reason)
            closed[key] = reason

        pending = self.store.items("pending")
        waiting = {k: v for k, v in pending.items() if v.get("status") == "waiting"}
        reconcile_with_ledger(self.ledger, waiting, resume, close)
        if fetch:  # drawn, never asked: voted while open, never settled by this verifier
            for key, state in pending.items():
                if state.get("status") != "fetch":
                    continue
                qid = bytes.fromhex(key)
                try:
                    q = self.ledger.query(qid)
                    late = self.ledger.block_number() > q.deadline
                except ChainUnreachable:
                    break  # the chain is down: the next round
                except LedgerError:
                    continue
                if q.status != "open":
                    close(qid, state, q.status)
                elif not late:
                    resume(qid, state)
                # past its deadline and open: whoever holds the query's work settles it
        return closed

    def fetch(self, query_id: bytes) -> tuple[str, Any, Any] | None:
        """The kind, ticket and record of a query this verifier was drawn for, from the
        first of the committee's nodes or of the query's other drawn verifiers that serves
        them (``record``); None if none does yet. Only a ticket whose hash is this query's
        id is taken (the checks against the trail come after, as for any record). A
        record whose release the analyst has not committed is taken without the release:
        the vote is on the work, not on the analyst's result."""
        if self.transport is None:
            return None
        try:
            q = self.ledger.query(query_id)
            sources = [
                *self.ledger.committee(q.committee).nodes.values(),
                *(v for v in self.ledger.verifiers_of(query_id) if v != self.ledger.account),
            ]
            results = self.ledger.audit_trail(query_id, verdicts=False).of("result")
        except LedgerError:
            return None
        ticket_type = TrainingTicket if q.kind == "training" else QueryTicket
        for source in sources:
            try:
                kept = self.transport.call(source, "record", {"query_id": query_id.hex()})
                ticket = ticket_type.from_json(kept.get("ticket"))
            except TesseraError:
                continue  # down, holds nothing, or served something malformed: the next
            if ticket.query_id != query_id or not isinstance(kept.get("record"), dict):
                continue
            record_json = dict(kept["record"])
            if q.kind != "training" and q.analyst not in results:
                record_json.pop("release", None)
            return q.kind, kept.get("ticket"), record_json
        return None

    def _kept(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        qid = _hex32(body.get("query_id"), "query_id")
        stored = self.store.get(kind, qid.hex())
        if stored is None:
            raise NotFound(f"no {kind} for query 0x{qid.hex()}")
        return dict(stored)

    def on_record(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """A verified query's ticket and whole public record (ciphertexts, proofs, release)."""
        return self._kept("record", body)

    def on_verdict(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """This verifier's verdict on a query."""
        return self._kept("verdict", body)


def verdict_json(
    verdict: Verdict, cheaters: list[int], settled: bool, status: str, tx: str | None
) -> dict[str, Any]:
    return {
        "passed": verdict.ok,
        "proofs_checked": verdict.checked_proofs,
        "failures": list(verdict.failures),
        "cheaters": cheaters,
        "settled": settled,
        "status": status,
        "tx": tx,
    }
