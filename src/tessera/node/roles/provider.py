"""The data provider: evaluates its share of a query on its own table, encrypts it with proofs."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import ColumnBounds, LocalDatabase
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.errors import (
    BudgetExceeded,
    LedgerError,
    PolicyViolation,
    ProtocolError,
)
from tessera.ledger import LedgerClient
from tessera.node.roles.base import Progress, Recovering, admitted, reconcile_with_ledger
from tessera.node.store import Store
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    contribute,
)
from tessera.protocol.policy import DatasetPolicy, admit
from tessera.protocol.query import QueryTicket, bounds_to_json, categories_to_json


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
        self._lock = threading.Lock()  # one query at a time per provider: budgets stay exact
        self._reconciling = threading.Lock()

    def recover(self, why: str = "interrupted by a restart") -> dict[str, str]:
        """After a restart, and whenever the provider is asked for its info or a new query:
        settle the fate of queries left running (by a crash, or a chain that failed it),
        through :func:`~tessera.node.roles.base.reconcile_with_ledger`.

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

    def _check(self, ticket: QueryTicket, sender: str) -> tuple[Table, Point]:
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
        dataset = self.dataset_id(ticket.table)
        if dataset is None or dataset not in q.dataset_ids:
            raise PolicyViolation(f"the query on the ledger does not name {self.name}'s dataset")
        if self.db.row_count(ticket.table) > table.policy.max_rows:
            raise PolicyViolation(f"{who} holds more rows than its public maximum")
        return table, Point.decode(committee.public_key)

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
                # the data was looked at: the budget stays spent, and the ledger is told so
                # (an exclusion commitment keeps it spent there too, and pays no cut)
                response = {"excluded": reason}
                trail = self.ledger.audit_trail(ticket.query_id, verdicts=False)
                if self.ledger.account not in trail.of("exclusion"):
                    body = reason.encode()
                    self.ledger.commit(
                        ticket.query_id,
                        "exclusion",
                        codec.digest("exclusion", ticket.query_id, body),
                    )
                self.store.put("query", key, {**state, "status": "excluded", "response": response})
                self.progress_.update(key, "excluded")
                return response
            self.progress_.update(key, "encrypting")
            vc = contribute(prepared.query, committee_key, self.name, res.values, self._rng)
            encoded = codec.encode_contribution(vc).hex()
            state = {**state, "contribution": encoded, "rows": res.rows, "clipped": res.clipped}
            self.store.put("query", key, state)  # before the chain: a retry resends the same
        vc = codec.decode_contribution(bytes.fromhex(encoded))
        digest = codec.contribution_digest(ticket.query_id, vc)
        committed = self.ledger.audit_trail(ticket.query_id, verdicts=False).of("contribution")
        if self.ledger.account not in committed:
            self.progress_.update(key, "committing")
            self.ledger.post_contribution(ticket.query_id, digest)
        elif committed[self.ledger.account] != digest:
            raise ProtocolError("a different contribution is already committed for this query")
        response = {"contribution": encoded}
        self.store.put("query", key, {**state, "status": "done", "response": response})
        self.progress_.update(key, "done")
        return response
