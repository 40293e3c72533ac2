"""The verifier: checks a query's record against its proofs and its on-chain trail, then votes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tessera.errors import (
    NotFound,
)
from tessera.ledger import LedgerClient
from tessera.node.ledger_session import check_trail
from tessera.node.roles.base import Progress, Role, _hex32
from tessera.node.store import Store
from tessera.protocol.aggregation import (
    verify_record,
)
from tessera.protocol.wire import (
    record_from_json,
)


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
