"""What every role shares: dispatch by path, progress, the ledger's admission checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tessera.errors import (
    ChainUnreachable,
    DecodeError,
    LedgerError,
    NotFound,
    PolicyViolation,
)
from tessera.ledger import Committee, LedgerClient, Query, rho_to_micro
from tessera.protocol.wire import (
    from_hex,
)

log = logging.getLogger(__name__)


class OnLedger(Protocol):
    """What the ledger's record of a query is checked against: a query's ticket
    (:class:`~tessera.protocol.query.QueryTicket`) or a training round's
    (:class:`~tessera.protocol.training.TrainingTicket`)."""

    @property
    def query_id(self) -> bytes: ...

    @property
    def rho(self) -> float | None: ...

    @property
    def committee(self) -> int: ...

    @property
    def n(self) -> int: ...

    @property
    def t(self) -> int: ...


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


class Recovering(Role):
    """A role whose work for a query can be cut short (kill -9, a chain that fails mid-way)
    and is kept in its store until it is finished: ``recover()`` at start, ``reconcile()``
    whenever the role is asked for work, both through :func:`reconcile_with_ledger`."""

    _reconciling: threading.Lock

    def recover(self, why: str = "interrupted by a restart") -> dict[str, str]:
        """Settle the work left unfinished; returns the queries closed, by id, with why."""
        raise NotImplementedError  # pragma: no cover - each role's own

    def reconcile(self) -> None:
        """:meth:`recover` now, while the process lives (a chain that failed mid-query
        leaves work unfinished without a restart). Skipped if one is under way."""
        self.unless_reconciling(lambda: self.recover("left unfinished"))

    def unless_reconciling(self, step: Callable[[], object]) -> None:
        """Run ``step`` as this role's one reconciliation; skipped if one is under way."""
        if not self._reconciling.acquire(blocking=False):
            return
        try:
            step()
        finally:
            self._reconciling.release()

    def tick(self) -> None:
        """One round of the background reconciliation (:meth:`start_reconciling`): by
        default :meth:`reconcile`; a role whose ledger work can start without a request
        (the verifier, on the queries it was drawn for) does more."""
        self.reconcile()

    def start_reconciling(self, period: float) -> threading.Event:
        """Run :meth:`tick` every ``period`` seconds in a daemon thread, for as long as the
        process lives, so that work a crash or the chain left unfinished, or that the
        ledger closed meanwhile, is settled even if nobody asks the role anything.
        Setting the returned event stops the loop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(period):
                try:
                    self.tick()
                except Exception:  # the next round tries again
                    log.exception("%s: background reconciliation failed", type(self).__name__)

        threading.Thread(target=loop, name=f"{type(self).__name__}-reconcile", daemon=True).start()
        return stop


def expire_if_late(ledger: LedgerClient, query_id: bytes) -> str:
    """The query's status, after settling it (``expire``, which anyone may call) if it is
    still open past its deadline (its verifiers or the chain died): its escrow is released.
    ``open`` if that cannot be done now."""
    try:
        q = ledger.query(query_id)
        if q.status == "open" and ledger.chain.w3.eth.block_number > q.deadline:
            ledger.expire(query_id)
            return ledger.query(query_id).status
        return q.status
    except LedgerError:
        return "open"  # cannot settle it now: stays resumable


def reconcile_with_ledger(
    ledger: LedgerClient,
    unfinished: Mapping[str, Mapping[str, Any]],
    resume: Callable[[bytes, Mapping[str, Any]], None],
    close: Callable[[bytes, Mapping[str, Any], str], None],
) -> None:
    """Bring a role's unfinished work (by query id, in hex) in line with the ledger.

    A query the ledger holds open is resumed (``resume``), unless it is past its deadline:
    then it is settled first and closed. One the ledger has closed, or does not know
    (status ``unknown``), is closed with its status (``close``). While the chain cannot
    be reached nothing is decided: the work stays for the next reconciliation."""
    for key, state in unfinished.items():
        qid = bytes.fromhex(key)
        status: str
        try:
            status = ledger.query(qid).status
        except ChainUnreachable:
            return  # the chain is down: every other query would fail the same way
        except LedgerError:
            status = "unknown"
        if status == "open":
            status = expire_if_late(ledger, qid)
        if status == "open":
            resume(qid, state)
        else:
            close(qid, state, status)


def _on_ledger(ledger: LedgerClient, query_id: bytes) -> Query:
    try:
        return ledger.query(query_id)
    except ChainUnreachable:
        raise  # the chain is down: not a query it does not hold
    except LedgerError as exc:
        raise PolicyViolation(f"query 0x{query_id.hex()} is not on the ledger") from exc


def _open_for(q: Query, sender: str) -> Query:
    if q.status != "open":
        raise PolicyViolation(f"query 0x{q.query_id.hex()} is {q.status}, not open")
    if q.analyst.lower() != sender.lower():
        raise PolicyViolation("only the analyst who submitted the query may ask for it")
    return q


def open_query(ledger: LedgerClient, query_id: bytes, sender: str) -> Query:
    """The query as the ledger records it; refuses unless it is open and ``sender`` submitted it."""
    return _open_for(_on_ledger(ledger, query_id), sender)


def on_ledger(ledger: LedgerClient, ticket: OnLedger) -> tuple[Query, Committee]:
    """The query and committee the ledger holds for ``ticket``: refuses unless the ledger
    agrees with the ticket on the privacy cost and on the committee (its id, size and
    threshold). The ticket's id is its own hash, so this binds every field of it."""
    q = _on_ledger(ledger, ticket.query_id)
    expected = 0 if ticket.rho is None else rho_to_micro(ticket.rho)
    if q.privacy_cost != expected:
        raise PolicyViolation("the privacy cost on the ledger differs from the query's")
    if q.committee != ticket.committee:
        raise PolicyViolation("the query on the ledger is for another committee")
    committee = ledger.committee(q.committee)
    if (len(committee.members), committee.threshold) != (ticket.n, ticket.t):
        raise PolicyViolation(
            f"committee {q.committee} is {len(committee.members)} nodes with threshold "
            f"{committee.threshold}, not what the query states"
        )
    return q, committee


def admitted(ledger: LedgerClient, ticket: OnLedger, sender: str) -> tuple[Query, Committee]:
    """:func:`on_ledger`, and the query is open and ``sender`` submitted it: what a role
    checks before it works for a query."""
    q, committee = on_ledger(ledger, ticket)
    return _open_for(q, sender), committee


def provider_accounts(ledger: LedgerClient, q: Query, owners: dict[int, str]) -> set[str]:
    """The accounts that own a dataset of ``q``: the only ones that may contribute.

    ``owners`` caches dataset id -> owner (a dataset never changes hands)."""
    for d in q.dataset_ids:
        if d not in owners:
            owners[d] = ledger.dataset(d).provider
    return {owners[d] for d in q.dataset_ids}
