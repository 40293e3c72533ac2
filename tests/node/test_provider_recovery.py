"""A provider restarted after a crash: queries left running are resumed or failed, and recorded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tessera.analytics.local import ColumnBounds
from tessera.analytics.moments import Count
from tessera.crypto.group import G
from tessera.data import medical
from tessera.errors import LedgerError, ProtocolError
from tessera.node.roles import ProviderRole, Table
from tessera.node.store import SqliteStore
from tessera.protocol.policy import DatasetPolicy
from tessera.protocol.query import QueryTicket


@dataclass
class _Query:
    status: str
    deadline: int = 10**9


@dataclass
class _Trail:
    committed: dict[str, dict[str, bytes]]

    def of(self, kind: str) -> dict[str, bytes]:
        return self.committed.get(kind, {})


class _Ledger:
    """The calls recovery makes: a query's status and what this provider committed to it
    (a missing query raises, as on-chain)."""

    account = "0x" + "11" * 20

    def __init__(
        self,
        statuses: dict[bytes, str],
        committed: set[bytes] = frozenset(),  # type: ignore[assignment]
        late: set[bytes] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        self.statuses, self.committed, self.late = statuses, committed, late
        self.chain = SimpleNamespace(w3=SimpleNamespace(eth=SimpleNamespace(block_number=100)))
        self.expired: list[bytes] = []

    def query(self, qid: bytes) -> _Query:
        if qid not in self.statuses:
            raise LedgerError("query: unknown query", reason="unknown query")
        return _Query(self.statuses[qid], 50 if qid in self.late else 10**9)

    def expire(self, qid: bytes) -> None:
        assert self.statuses[qid] == "open" and qid in self.late
        self.statuses[qid] = "expired"
        self.expired.append(qid)

    def audit_trail(self, qid: bytes, verdicts: bool = True) -> _Trail:
        self.query(qid)
        mine = {self.account: b"\x01" * 32} if qid in self.committed else {}
        return _Trail({"contribution": mine})


def test_restart_fails_closed_queries_and_keeps_open_ones(tmp_path: Path) -> None:
    ticket = QueryTicket(
        table="patients", statistics=(Count(),), where=None, rho=0.1, delta=1e-6,
        analyst_key=G, bounds={"age": ColumnBounds(18, 95)}, max_rows=10_000, n=3, t=2,
        committee=0, providers=(("lab-d", _Ledger.account),), nonce=b"\x01" * 32,
        analyst=_Ledger.account,
    )  # fmt: skip
    closed = ticket.query_id
    still_open, missing, done, used, late = (os.urandom(32) for _ in range(5))
    ledger = _Ledger(
        {closed: "passed", still_open: "open", done: "passed", used: "expired", late: "open"},
        committed={used},
        late={late},
    )
    store = SqliteStore(tmp_path / "state.sqlite")
    for qid in (closed, still_open, missing, used, late):
        store.put(
            "query",
            qid.hex(),
            {"status": "running", "started": 0, "table": "patients", "rho": 0.1},
        )
    store.put("budget", "patients", 0.5)
    store.put("query", done.hex(), {"status": "done", "response": {"contribution": "00"}})
    table = Table(
        str(medical.sample_path("lab-d")), {"age": ColumnBounds(18, 95)}, {}, DatasetPolicy()
    )
    role = ProviderRole("lab-d", {"patients": table}, ledger, store)  # type: ignore[arg-type]

    marked = role.recover()

    assert set(marked) == {closed.hex(), missing.hex(), used.hex(), late.hex()}
    # the query left open past its deadline (its verifiers died) is settled: escrow released
    assert ledger.expired == [late] and "expired on the ledger" in marked[late.hex()]
    # the closed query this provider committed nothing to gives its budget back, as the
    # ledger does; the one it contributed to, and the one the ledger cannot tell, do not
    assert store.get("budget", "patients") == pytest.approx(0.3)  # closed and late gave back
    assert "passed on the ledger" in marked[closed.hex()]
    assert store.get("query", still_open.hex())["status"] == "running"
    assert store.get("query", done.hex())["status"] == "done"
    assert role.query_counts() == {"failed": 4, "running": 1, "done": 1}
    assert role.progress()["jobs"][still_open.hex()]["stage"] == "resumable"
    # asked again about a failed query, the provider says why instead of starting over
    with pytest.raises(ProtocolError, match="interrupted by a restart"):
        role.handle("contribute", {"ticket": ticket.to_json()}, "0x" + "22" * 20)
    # and the store survives a reopen as it was left
    store.close()
    assert SqliteStore(tmp_path / "state.sqlite").get("query", closed.hex())["status"] == "failed"


def test_a_query_failed_by_the_chain_is_reconciled_without_a_restart(tmp_path: Path) -> None:
    """The chain failed the provider's commitment and the query expired while the provider
    lived on: the next time anyone asks for its info (or a new query) it settles the
    query's fate and gives the budget back, as the ledger did."""
    stuck = os.urandom(32)
    ledger = _Ledger({stuck: "expired"})
    store = SqliteStore(tmp_path / "state.sqlite")
    store.put("query", stuck.hex(), {"status": "running", "table": "patients", "rho": 0.2})
    store.put("budget", "patients", 0.2)
    table = Table(
        str(medical.sample_path("lab-d")), {"age": ColumnBounds(18, 95)}, {}, DatasetPolicy()
    )
    role = ProviderRole("lab-d", {"patients": table}, ledger, store)  # type: ignore[arg-type]
    info = role.handle("info", {}, "0x" + "22" * 20)
    assert info["tables"]["patients"]["budget_spent"] == 0.0
    state = store.get("query", stuck.hex())
    assert state["status"] == "failed" and "left unfinished" in state["reason"]
