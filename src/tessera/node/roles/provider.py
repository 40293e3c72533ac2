"""The data provider: evaluates its share of a query on its own table, encrypts it with proofs."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.errors import (
    BudgetExceeded,
    DecodeError,
    LedgerError,
    NotFound,
    PolicyViolation,
    ProtocolError,
)
from tessera.learning.config import labels_for, scale_features
from tessera.learning.models import Model
from tessera.learning.rounds import Dataset
from tessera.learning.rounds import Provider as TrainingParty
from tessera.learning.secure import round_ctx
from tessera.learning.serialize import decode_model, model_spec
from tessera.ledger import LedgerClient
from tessera.node.roles.base import Progress, Recovering, admitted, reconcile_with_ledger
from tessera.node.store import Store
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    contribute,
)
from tessera.protocol.policy import DatasetPolicy, admit
from tessera.protocol.query import QueryTicket, bounds_to_json, categories_to_json
from tessera.protocol.training import SealedReport, report_digest, seal_report
from tessera.protocol.training_round import TrainingTicket
from tessera.protocol.wire import from_hex


@dataclass
class Table:
    """A provider's table: where its rows are, its public bounds, its policy."""

    source: Any
    bounds: dict[str, ColumnBounds]
    categories: dict[str, tuple[GroupKey, ...]]
    policy: DatasetPolicy


class ProviderRole(Recovering):
    def __init__(
        self,
        name: str,
        tables: Mapping[str, Table],
        ledger: LedgerClient,
        store: Store,
        rng: Rng | None = None,
    ) -> None:
        self.name, self.tables, self.ledger, self.store = name, dict(tables), ledger, store
        self._rng = rng or SystemRng()
        self.db = LocalDatabase({t: tb.source for t, tb in self.tables.items()})
        self.progress_ = Progress("provider", name)
        # one query at a time per provider (budgets stay exact); reentrant, as a request
        # reconciles while it holds it
        self._lock = threading.RLock()
        self._reconciling = threading.Lock()

    def reconcile(self) -> None:
        """:meth:`recover` now, unless a request is working on a query: run at each request
        for info or a new query and in the background (``start_reconciling``, every few
        seconds in a served provider), so that a query the ledger closed is settled in the
        store even if nobody asks this provider anything. Never beside a query in progress
        (that request settles its own query)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            super().reconcile()
        finally:
            self._lock.release()

    def recover(self, why: str = "interrupted by a restart") -> dict[str, str]:
        """After a restart, whenever the provider is asked for its info or a new query, and
        every few seconds in the background (:meth:`reconcile`): settle the fate of
        queries left running (by a crash, or a chain that failed it), through
        :func:`~tessera.node.roles.base.reconcile_with_ledger`.

        A query still open on the ledger stays resumable (asked again, the provider
        continues from what it stored), unless it is past its deadline: then it is settled
        (``expire``) and its escrow released. One the ledger has closed is marked failed,
        with the reason, so nothing is left half-done and unrecorded. If this provider
        committed nothing to it (no contribution, no exclusion), its budget comes back, as
        the ledger gives it back: the two counts agree. Returns the queries marked, by id."""
        marked: dict[str, str] = {}

        def resume(qid: bytes, state: Mapping[str, Any]) -> None:
            self.progress_.update(qid.hex(), "resumable")

        def close(qid: bytes, state: Mapping[str, Any], status: str) -> None:
            key, reason = qid.hex(), f"{why}; the query is {status} on the ledger"
            try:
                trail = self.ledger.audit_trail(qid, verdicts=False)
                mine = self.ledger.account
                used = mine in trail.of("contribution") or mine in trail.of("exclusion")
            except LedgerError:
                used = True  # cannot tell: keep it spent (never under-count)
            with self.store.transaction() as st:
                if not used:
                    self._give_back(st, state)
                st.put("query", key, {**state, "status": "failed", "reason": reason})
            self.progress_.update(key, "failed", reason=reason)
            marked[key] = reason

        running = {
            k: v for k, v in self.store.items("query").items() if v.get("status") == "running"
        }
        reconcile_with_ledger(self.ledger, running, resume, close)
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
        self.reconcile()
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
            if self.store.get("query", key) is None:
                self.reconcile()  # before spending budget on a new query
            state = self.store.get("query", key)
            if state is not None and state.get("status") in ("done", "excluded"):
                return dict(state["response"])  # asked again: the same answer
            if state is not None and state.get("status") == "failed":
                raise ProtocolError(f"{self.name}: {state['reason']}")
            table, committee_key = self._check(ticket, sender)
            if state is None:
                self._admit(ticket, key, table)
            return self._run(ticket, key, table, committee_key)

    def _check(self, ticket: QueryTicket | TrainingTicket, sender: str) -> tuple[Table, Point]:
        """The ticket against our policy and the ledger; the committee key to encrypt under.

        Every refusal here depends on the query and the policy, never on the rows."""
        table = self.tables.get(ticket.table)
        if table is None:
            raise PolicyViolation(f"{self.name} holds no table {ticket.table!r}")
        who = f"{self.name}/{ticket.table}"
        admit(who, table.policy, table.bounds, ticket)
        if ticket.account_of(self.name) != self.ledger.account:
            raise PolicyViolation(f"the query does not name {self.name} as {self.ledger.account}")
        q, committee = admitted(self.ledger, ticket, sender)
        if isinstance(ticket, TrainingTicket):
            if q.kind != "training":
                raise PolicyViolation("a training round must be a training query on the ledger")
            if ticket.max_rows_of.get(self.name) != table.policy.max_rows:
                raise PolicyViolation(
                    f"{who}: the round assumes at most {ticket.max_rows_of.get(self.name)} rows "
                    f"here, the table's public maximum is {table.policy.max_rows}"
                )
        dataset = self.dataset_id(ticket.table)
        if dataset is None or dataset not in q.dataset_ids:
            raise PolicyViolation(f"the query on the ledger does not name {self.name}'s dataset")
        if self.db.row_count(ticket.table) > table.policy.max_rows:
            raise PolicyViolation(f"{who} holds more rows than its public maximum")
        return table, Point.decode(committee.public_key)

    def _admit(self, ticket: QueryTicket | TrainingTicket, key: str, table: Table) -> None:
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
            st.put(
                "query",
                key,
                {"status": "running", "started": time.time(), "table": ticket.table, "rho": rho},
            )

    @staticmethod
    def _give_back(st: Any, state: Mapping[str, Any]) -> None:
        """Return a query's budget to its table: this provider committed nothing for it (the
        ledger returns it too, for a dataset that committed nothing)."""
        table, rho = state.get("table"), float(state.get("rho") or 0.0)
        if table is not None and rho:
            spent = float(st.get("budget", table) or 0.0)
            st.put("budget", table, max(0.0, spent - rho))

    def _exclude(self, qid: bytes, state: Mapping[str, Any], reason: str) -> dict[str, Any]:
        """Leave this provider's data out of a query it looked at: the budget stays spent,
        and the ledger is told so (an exclusion commitment keeps it spent there too, and
        pays no cut)."""
        key = qid.hex()
        response = {"excluded": reason}
        trail = self.ledger.audit_trail(qid, verdicts=False)
        if self.ledger.account not in trail.of("exclusion"):
            self.ledger.commit(qid, "exclusion", codec.digest("exclusion", qid, reason.encode()))
        self.store.put("query", key, {**state, "status": "excluded", "response": response})
        self.progress_.update(key, "excluded")
        return response

    def _run(
        self, ticket: QueryTicket, key: str, table: Table, committee_key: Point
    ) -> dict[str, Any]:
        """Evaluate, encrypt, store, commit the digest. The answer holds the contribution
        or the reason for an exclusion, never a row count."""
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
            if reason is not None:
                return self._exclude(ticket.query_id, state, reason)
            self.progress_.update(key, "encrypting")
            vc = contribute(prepared.query, committee_key, self.name, res.values, self._rng)
            encoded = codec.encode_contribution(vc).hex()
            state = {**state, "contribution": encoded, "rows": res.rows, "clipped": res.clipped}
            self.store.put("query", key, state)  # before the chain: a retry resends the same
        vc = codec.decode_contribution(bytes.fromhex(encoded))
        digest = codec.contribution_digest(ticket.query_id, vc)
        self.progress_.update(key, "committing")
        self._commit_once(ticket.query_id, digest, "contribution", "this query")
        response = {"contribution": encoded}
        self.store.put("query", key, {**state, "status": "done", "response": response})
        self.progress_.update(key, "done")
        return response

    def on_committed(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """What this provider committed to a query or a training round (``{"contribution"}``
        or ``{"report"}``, as it answered the analyst), for the computing nodes of the
        query's committee only: a node that was not given a committed contribution fetches
        it here, checks it against the digest on-chain, and otherwise leaves this provider
        out as withholding it. The same bytes for every node: their digest is on-chain."""
        qid = from_hex(body.get("query_id"), "query_id")
        if len(qid) != 32:
            raise DecodeError("query_id: must be 32 bytes")
        state = self.store.get("query", qid.hex())
        if state is None or state.get("status") != "done":
            raise NotFound(f"{self.name} committed nothing to query 0x{qid.hex()}")
        committee = self.ledger.committee(self.ledger.query(qid).committee)
        if sender.lower() not in {m.lower() for m in committee.members}:
            raise PolicyViolation("only a node of the query's committee may fetch it")
        return dict(state["response"])

    # -- a round of a training ------------------------------------------------------------
    def training_party(self, dataset: Dataset) -> TrainingParty:
        """This provider's local work in a training round (an adversary wrapper,
        ``tessera.testing``, returns a party that sends something else)."""
        return TrainingParty(dataset)

    def on_train_report(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Train on our table from the round's model, clip, quantise, shard and prove the
        update, seal each share to its node, and commit the report's digest on-chain.

        The model must be the one the ticket names (its digest); the round must be a
        training query the ticket's analyst opened on the ledger, naming our dataset; the
        budget is spent before the rows are read, as for a query."""
        ticket = TrainingTicket.from_json(body.get("ticket"))
        raw_model = from_hex(body.get("model"), "model")
        if hashlib.sha256(raw_model).digest() != ticket.model_digest:
            raise DecodeError("model: not the model the ticket names (digest differs)")
        model, params, _ = decode_model(raw_model)
        if model_spec(model) != dict(ticket.model):
            raise DecodeError("model: not the model the ticket describes")
        key = ticket.query_id.hex()
        with self._lock:
            if self.store.get("query", key) is None:
                self.reconcile()
            state = self.store.get("query", key)
            if state is not None and state.get("status") in ("done", "excluded"):
                return dict(state["response"])
            if state is not None and state.get("status") == "failed":
                raise ProtocolError(f"{self.name}: {state['reason']}")
            table, _ = self._check(ticket, sender)
            if state is None:
                self._admit(ticket, key, table)
            return self._train(ticket, key, table, model, params)

    def _train(
        self, ticket: TrainingTicket, key: str, table: Table, model: Model, params: Any
    ) -> dict[str, Any]:
        state = self.store.get("query", key)
        encoded = state.get("report")
        if encoded is None:
            self.progress_.update(key, "training")
            data = self.db.matrix(ticket.table, [*ticket.features, ticket.label])
            if data.shape[0] < table.policy.min_cohort:
                return self._exclude(ticket.query_id, state, "cohort below the provider's minimum")
            bounds = [
                (float(ticket.bounds[c].lo), float(ticket.bounds[c].hi)) for c in ticket.features
            ]
            x, clipped = scale_features(data[:, :-1], bounds)
            label = ticket.bounds[ticket.label]
            try:
                y, clipped_y = labels_for(model, data[:, -1], (float(label.lo), float(label.hi)))
            except ValueError as exc:
                raise PolicyViolation(f"{self.name}/{ticket.table}: {exc}") from exc
            party = self.training_party(Dataset(self.name, x, y, max_rows=table.policy.max_rows))
            rng = np.random.default_rng(int.from_bytes(self._rng.randbytes(32), "big"))
            update = party.local_update(model, params, ticket.config, rng)
            payload = party.payload(update, ticket.config)
            report = party.report(
                ticket.round_index,
                ticket.vdaf,
                round_ctx(ticket.training_id, ticket.round_index),
                ticket.fixed_point,
                payload,
                rng,
            )
            sealed = seal_report(
                ticket.training_id,
                ticket.round_index,
                self.name,
                report.nonce,
                report.public_share,
                report.input_shares,
                self._node_keys(ticket.committee),
                self._rng,
            )
            encoded = sealed.encode().hex()
            state = {
                **state,
                "report": encoded,
                "rows": int(data.shape[0]),
                "clipped": clipped + clipped_y,
            }
            self.store.put("query", key, state)  # before the chain: a retry resends the same
        digest = report_digest(SealedReport.decode(bytes.fromhex(encoded)))
        self.progress_.update(key, "committing")
        self._commit_once(ticket.query_id, digest, "report", "this round")
        response = {"report": encoded}
        self.store.put("query", key, {**state, "status": "done", "response": response})
        self.progress_.update(key, "done")
        return response

    def _commit_once(self, qid: bytes, digest: bytes, what: str, of: str) -> None:
        """Commit ``digest`` as this provider's contribution unless it is on the trail
        already (a retried request). The commitment is sent first and the trail read only
        when the market refuses it as already committed: one transaction and no view on
        the usual path, and the same outcome as reading first on a retry (the same digest
        is accepted, another is refused, an exclusion keeps the market's refusal)."""
        try:
            self.ledger.post_contribution(qid, digest)
        except LedgerError as exc:
            if exc.reason != "already committed":
                raise
            committed = self.ledger.audit_trail(qid, verdicts=False).of("contribution")
            mine = committed.get(self.ledger.account)
            if mine is None:
                raise
            if mine != digest:
                raise ProtocolError(f"a different {what} is already committed for {of}") from exc

    def _node_keys(self, committee_id: int) -> dict[int, bytes]:
        """Each node's registered public key (what its shares are sealed to), by index;
        read once per committee (a committee's members and their keys never change)."""
        cache: dict[int, dict[int, bytes]] = self.__dict__.setdefault("_sealing_keys", {})
        if committee_id not in cache:
            committee = self.ledger.committee(committee_id)
            cache[committee_id] = {
                i: self.ledger.participant(a).public_key for i, a in committee.nodes.items()
            }
        return cache[committee_id]
