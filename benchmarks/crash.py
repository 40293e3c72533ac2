"""Crash consistency: kill -9 one role at a random point of a query, restart it, check the books.

    python benchmarks/crash.py [--trials 100] [--budget-seconds 3000] [--seed S] [--quick] [--json]

One network of real processes (``tessera.node.launcher.Network``: the chain with its
journal, 3 nodes t = 2, 4 providers, 1 verifier) serves every trial. A trial starts a
query in a thread, waits a seeded delay, kills one role with SIGKILL (a provider, a
node, the verifier or the chain), lets the query end, restarts the killed role, gives
the verifiers up to ``RECOVERY_WAIT`` to settle a query whose work is on the trail (a
restarted verifier finds it on the ledger, fetches the record from a node and votes),
then settles what is left (mines past its deadline, calls ``expire``) and checks, over
every query the harness ever submitted:

- ``settled``: every query is closed on the ledger (passed, failed, completed, expired),
  or was never submitted, and each has an outcome with a reason (a verified result, the
  analyst's error, or the result's recorded failures);
- ``verified``: an analyst's result that claims a passing verdict is ``passed`` on-chain;
- ``provider_store``: no provider store holds a query as ``running`` once the ledger has
  closed it, and a ``failed`` one carries its reason: a killed provider's store the moment
  it is back up (it reconciled before serving; the query was mined past its deadline
  first), every store within ``RECONCILE_WAIT`` of the settlement without anyone asking
  the providers anything (their background reconciliation), then again with the books;
- ``budget_ledger``: each dataset's ``budget_spent`` ≤ its cap and equal to the sum of the
  costs of the queries its provider committed to (contribution or exclusion): nothing
  overspent, and a dataset that committed nothing got its budget back;
- ``budget_provider``: the provider's own count equals that same sum;
- ``supply``: total supply unchanged, and the balances of every account sum to it;
- ``escrow``: the market's balance == ``escrowed`` == the prices of open queries;
- ``payments``: each provider's and node's balance is exactly what the settled queries
  owed it (no double payment), and the analyst's what is left.

The killed role's kind cycles (provider, node, verifier, chain); which one and when are
drawn from the seed. The figures ``docs/reliability.md`` records come from this script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.cli.demo import network_spec
from tessera.crypto.rng import SeededRng
from tessera.data import medical
from tessera.errors import LedgerError
from tessera.ledger import Deployment, LedgerClient, RpcChain, rho_to_micro
from tessera.node.launcher import ANALYST_CREDITS, Network, open_session
from tessera.node.runner import RECONCILE_SECONDS

KINDS = ("provider", "node", "verifier", "chain")
CLOSED = ("passed", "failed", "completed", "expired")
PAID = ("passed", "completed", "expired")  # contributing providers are paid their cut
TIMEOUT_BLOCKS = (
    60  # a query's deadline: short, so settling a stuck one is quick (and the journal short)
)
QUERY_TIMEOUT = 240.0  # seconds a query thread may take before the trial counts it hung
RESTART_TIMEOUT = 600.0  # a restarted chain replays its whole journal: slow on a long run
RECOVERY_WAIT = 120.0  # seconds the verifiers get to settle a query whose work is on the trail
RECONCILE_WAIT = 6 * RECONCILE_SECONDS  # a provider store must hold the invariant by then


@dataclass
class Attempt:
    """One query the harness started: its ticket, and what the analyst got."""

    qid: bytes
    rho: float
    outcome: str = "running"  # result | error
    reason: str = ""
    claims_passed: bool = False


@dataclass
class Trial:
    index: int
    kind: str
    victim: str
    delay: float
    seconds: float = 0.0
    statuses: list[str] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # per query: status, outcome, reason
    recovered: list[str] = field(default_factory=list)  # passed after the kill's restart
    reconcile_seconds: float = 0.0  # until every provider store held its invariant
    broken: list[str] = field(default_factory=list)


class Harness:
    """One network, reused across trials; every query it submits is tracked."""

    TIMEOUT_BLOCKS = TIMEOUT_BLOCKS

    def __init__(self, state_dir: Path, seed: str) -> None:
        self.dir = state_dir
        self.net = Network(state_dir)
        self.net.up(network_spec(kdf_iterations=2**10))
        chain = RpcChain(self.net.state["rpc"])
        self.deployment = Deployment.load(Path(self.net.state["deployment"]))
        self.admin = LedgerClient(chain, self.deployment, self.deployment.admin)
        p = self.admin.params()
        self.admin.set_params(self.TIMEOUT_BLOCKS, p.verifiers_per_query, p.lock_fee)
        self.analyst, self.transport = open_session(state_dir, SeededRng(f"crash/{seed}"))
        self.attempts: dict[bytes, Attempt] = {}
        self._final: dict[bytes, str] = {}  # closed queries' statuses
        execute = self.analyst._execute

        def tracked(ticket: Any, holders: Any, secret: int) -> Any:
            self.attempts[ticket.query_id] = Attempt(ticket.query_id, float(ticket.rho or 0.0))
            self._current.append(ticket.query_id)
            return execute(ticket, holders, secret)

        self.analyst._execute = tracked  # type: ignore[method-assign]
        self._current: list[bytes] = []
        peers = self.analyst.peers
        self.providers = {p.name: p.address for p in peers if p.role == "provider"}
        self.nodes = [p.address for p in peers if p.role == "node"]
        self.victims = {
            "provider": sorted(self.providers),
            "node": sorted(p.name for p in peers if p.role == "node"),
            "verifier": sorted(p.name for p in peers if p.role == "verifier"),
            "chain": ["chain"],
        }
        self.accounts = [
            self.deployment.admin,
            self.analyst.ledger.account,
            *(p.address for p in peers),
            self.deployment.market,
            self.deployment.registry,
            self.deployment.governance,
        ]
        self.supply = self.admin.total_supply()
        self.datasets = {
            d.provider: d
            for d in (self.admin.dataset(i) for i in range(self.admin.dataset_count()))
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.analyst.close()
            self.transport.close()
        self.net.down()

    # -- one trial ------------------------------------------------------------------------
    def query(self, i: int) -> None:
        """The trial's query (its outcome is recorded on the attempts it made)."""
        self._current = []
        try:
            res = self.analyst.sql("SELECT COUNT(*), AVG(age) FROM patients", epsilon=0.05)
        except Exception as exc:  # every error is an outcome: recorded with its reason
            for qid in self._current:
                a = self.attempts[qid]
                if a.outcome == "running":
                    a.outcome, a.reason = "error", f"{type(exc).__name__}: {exc}"
            return
        for qid in self._current:
            a = self.attempts[qid]
            a.outcome = "result"
            a.claims_passed = res.verdict.ok
            a.reason = "verified" if res.verified else "; ".join(res.verdict.failures)

    def kill(self, name: str) -> None:
        pid = self.net.pid_of(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def trial(self, i: int, rng: SeededRng, max_delay: float) -> Trial:
        kind = KINDS[i % len(KINDS)]
        names = self.victims[kind]
        victim = names[rng.below(len(names))]
        delay = max_delay * rng.below(10_000) / 10_000
        t = Trial(i, kind, victim, round(delay, 2))
        start = time.monotonic()
        worker = threading.Thread(target=self.query, args=(i,), daemon=True)
        worker.start()
        time.sleep(delay)
        self.kill(victim)
        if kind == "chain":
            # with the chain down every role's ledger call fails: the query ends with an
            # error; bring the chain back at once so the other roles are not left waiting
            time.sleep(0.5)
            self.net.restart("chain", timeout=RESTART_TIMEOUT)
        worker.join(QUERY_TIMEOUT)
        if worker.is_alive():
            t.broken.append(f"hung: the query did not end within {QUERY_TIMEOUT:.0f} s")
        if kind == "provider":
            self.await_verdicts()
            self.settle(mine_only=True)  # its recover() then sees the query closed
            self.net.restart(victim, timeout=RESTART_TIMEOUT)
            # the moment it is back up (it reconciled before serving), asked nothing yet
            t.broken += [f"{b} (on restart)" for b in self.store_breaks(victim)]
        elif kind in ("node", "verifier"):
            self.net.restart(victim, timeout=RESTART_TIMEOUT)
            self.await_verdicts()  # a restarted verifier fetches the record and votes
        else:
            self.await_verdicts()
        # passed on the ledger although the analyst holds no passing verdict: the verifiers
        # settled it after the kill (a restarted verifier voted on a record it fetched)
        t.recovered = [
            q.hex()
            for q in self._current
            if self.status(q) == "passed" and not self.attempts[q].claims_passed
        ]
        self.settle()
        t.reconcile_seconds, stale = self.await_reconciled()
        t.broken += stale
        t.broken += self.check()
        t.statuses = [self.status(q) for q in self._current]
        t.attempts = [
            f"0x{q.hex()[:12]} {st}: {self.attempts[q].outcome}, {self.attempts[q].reason}"
            for q, st in zip(self._current, t.statuses, strict=True)
        ]
        t.seconds = round(time.monotonic() - start, 1)
        return t

    def await_verdicts(self) -> None:
        """Give the verifiers the time to settle the trial's queries whose work is on the
        trail (a restarted verifier fetches the record from a node and votes), before the
        harness settles what is left with ``expire``."""
        deadline = time.monotonic() + RECOVERY_WAIT
        while time.monotonic() < deadline:
            waiting = [
                q for q in self._current if self.status(q) == "open" and self.admin.work_complete(q)
            ]
            if not waiting:
                return
            time.sleep(1.0)

    def store_breaks(self, name: str) -> list[str]:
        """The ``provider_store`` invariant for one provider, read from its store (asking the
        provider nothing): no query ``running`` that the ledger has closed, and every
        ``failed`` one with its reason."""
        broken = []
        for key, state in self.provider_store(name).items():
            st = self.status(bytes.fromhex(key))
            if state.get("status") == "running" and st in CLOSED:
                broken.append(f"provider_store: {name} holds {key[:12]} running, ledger {st}")
            if state.get("status") == "failed" and not state.get("reason"):
                broken.append(f"provider_store: {name} failed {key[:12]} without a reason")
        return broken

    def await_reconciled(self) -> tuple[float, list[str]]:
        """Wait, asking the providers nothing, until every provider's store holds the
        invariant (their background reconciliation runs every ``RECONCILE_SECONDS``);
        the seconds it took, and what is still broken after ``RECONCILE_WAIT``."""
        start = time.monotonic()
        while True:
            broken = [b for name in self.providers for b in self.store_breaks(name)]
            waited = time.monotonic() - start
            if not broken or waited > RECONCILE_WAIT:
                return round(waited, 1), [f"{b} after {waited:.0f} s" for b in broken]
            time.sleep(0.5)

    def status(self, qid: bytes) -> str:
        if qid in self._final:
            return self._final[qid]
        try:
            status = self.admin.query(qid).status
        except Exception:
            return "none"  # never submitted (the chain died first)
        if status in CLOSED:
            self._final[qid] = status  # a closed query never changes: not asked again
        return status

    def settle(self, mine_only: bool = False) -> None:
        """Every query still open is mined past its deadline, then expired (anyone may)."""
        open_ = [self.admin.query(q) for q in self.attempts if self.status(q) == "open"]
        if not open_:
            return
        chain = self.admin.chain
        last = max(q.deadline for q in open_)
        chain.mine(max(0, last - int(chain.w3.eth.block_number) + 1))
        if mine_only:
            return
        for q in open_:
            if self.status(q.query_id) == "open":
                try:
                    self.admin.expire(q.query_id)
                except LedgerError:  # a provider or verifier expired it first (anyone may)
                    if self.status(q.query_id) == "open":
                        raise

    # -- invariants -----------------------------------------------------------------------
    def provider_store(self, name: str) -> dict[str, Any]:
        path = self.dir / "state" / name / "state.sqlite"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT key, value FROM items WHERE kind = 'query'").fetchall()
        finally:
            db.close()
        return {k: json.loads(v) for k, v in rows}

    def check(self) -> list[str]:
        broken: list[str] = []
        led = self.admin
        queries = {}
        for qid, a in self.attempts.items():
            st = self.status(qid)
            if st == "none":
                if a.outcome != "error" or not a.reason:
                    broken.append(f"settled: {qid.hex()[:12]} never submitted, outcome {a.outcome}")
                continue
            q = led.query(qid)
            queries[qid] = (q, led.audit_trail(qid, verdicts=False))
            if q.status not in CLOSED:
                broken.append(f"settled: {qid.hex()[:12]} is {q.status} after settlement")
            if a.outcome == "running" or not a.reason:
                broken.append(f"settled: {qid.hex()[:12]} has no recorded outcome")
            if a.claims_passed and q.status != "passed":
                broken.append(f"verified: {qid.hex()[:12]} verified, but {q.status} on-chain")
        for name in self.providers:
            broken += self.store_breaks(name)
        info = {
            name: self.transport.call(addr, "info", {}) for name, addr in self.providers.items()
        }
        for name, addr in self.providers.items():
            d = led.dataset(self.datasets[addr].dataset_id)
            used = [
                self.attempts[qid].rho
                for qid, (q, trail) in queries.items()
                if q.status == "open"
                or addr in trail.of("contribution")
                or addr in trail.of("exclusion")
            ]
            micro = sum(rho_to_micro(r) for r in used)
            if d.budget_spent > d.budget_cap:
                broken.append(f"budget_ledger: {name} spent {d.budget_spent} > cap {d.budget_cap}")
            if d.budget_spent != micro:
                broken.append(f"budget_ledger: {name} spent {d.budget_spent}, its work {micro}")
            own = float(info[name]["tables"]["patients"]["budget_spent"])
            if abs(own - sum(used)) > 1e-9:
                broken.append(f"budget_provider: {name} counts {own:.6f}, its work {sum(used):.6f}")
        broken += self.check_tokens(queries)
        return broken

    def check_tokens(self, queries: dict[bytes, Any]) -> list[str]:
        broken: list[str] = []
        led = self.admin
        supply = led.total_supply()
        balances = {a: led.balance(a) for a in self.accounts}
        if supply != self.supply or sum(balances.values()) != supply:
            broken.append(f"supply: {sum(balances.values())} held of {supply} (was {self.supply})")
        open_price = sum(q.price for q, _ in queries.values() if q.status == "open")
        # pull payments: what a settlement credits an account is held by the market until
        # the account withdraws it; an account's due is its balance plus what it is owed
        owed_of = getattr(led, "owed", None)
        owed_now = {a: 0 if owed_of is None else int(owed_of(a)) for a in self.accounts}
        total_owed = int(led.total_owed()) if hasattr(led, "total_owed") else 0
        market = balances[self.deployment.market]
        if not market - total_owed == led.escrowed() == open_price:
            broken.append(
                f"escrow: market holds {market} ({total_owed} of it owed), "
                f"escrowed {led.escrowed()}, open queries {open_price}"
            )
        if total_owed != sum(owed_now.values()):
            broken.append(f"escrow: {total_owed} owed in total, {sum(owed_now.values())} to us")
        balances = {
            a: b + owed_now[a] if a != self.deployment.market else b for a, b in balances.items()
        }
        owed = dict.fromkeys([*self.providers.values(), *self.nodes], 0)
        spent = 0  # what left the analyst for good: lock fees and payments
        for q, trail in queries.values():
            spent += q.fee
            for member in self.nodes:
                owed[member] += q.fee // len(self.nodes)
            if q.status == "open":
                spent += q.price
            if q.status not in PAID:
                continue
            for dataset_id, cut in zip(q.dataset_ids, q.provider_cuts, strict=True):
                provider = led.dataset(dataset_id).provider
                if provider in trail.of("contribution"):
                    owed[provider] += cut
                    spent += cut
            if q.status in ("passed", "completed"):
                cheaters = set(q.cheaters)
                honest = [
                    m
                    for m in self.nodes
                    if m not in cheaters and (m in trail.of("noise") or m in trail.of("key_switch"))
                ]
                for m in honest:
                    owed[m] += q.node_pool // len(honest)
                    spent += q.node_pool // len(honest)
        for account, amount in owed.items():
            if balances[account] != amount:
                broken.append(f"payments: {account} holds {balances[account]}, owed {amount}")
        analyst = balances[self.analyst.ledger.account]
        if analyst != ANALYST_CREDITS - spent:
            expected = ANALYST_CREDITS - spent
            broken.append(f"payments: the analyst holds {analyst}, expected {expected}")
        return broken


def new_break(message: str, seen: set[str]) -> bool:
    """Whether a broken invariant is new: the checks cover every query so far, so one break
    would otherwise be reported again by every later trial (amounts masked: they move)."""
    key = re.sub(r"\b\d+(\.\d+)?\b", "#", message)
    if key in seen:
        return False
    seen.add(key)
    return True


def run(trials: int, budget: float, seed: str, max_delay: float) -> dict[str, Any]:
    rng = SeededRng(f"crash/{seed}")
    per_role: dict[str, dict[str, int]] = {
        k: {"trials": 0, "broken": 0, "passed": 0, "recovered": 0, "other": 0} for k in KINDS
    }
    done: list[Trial] = []
    seen: set[str] = set()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tessera-crash-") as tmp:
        harness = Harness(Path(tmp) / "network", seed)
        setup = time.monotonic() - start
        try:
            for i in range(trials):
                if time.monotonic() - start > budget:
                    break
                try:
                    t = harness.trial(i, rng, max_delay)
                except Exception as exc:  # the harness itself failed: counted as broken
                    t = Trial(i, KINDS[i % len(KINDS)], "?", 0.0)
                    t.broken.append(f"harness: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stderr)
                t.broken = [b for b in t.broken if new_break(b, seen)]  # each break once
                done.append(t)
                row = per_role[t.kind]
                row["trials"] += 1
                row["broken"] += bool(t.broken)
                row["passed" if t.statuses == ["passed"] else "other"] += 1
                row["recovered"] += bool(t.recovered)
                print(
                    f"trial {i:3d} {t.victim:10s} at {t.delay:5.2f} s: "
                    f"{','.join(t.statuses) or '-':18s} {t.seconds:5.1f} s"
                    + (" (settled after the restart)" if t.recovered else "")
                    + f" stores reconciled in {t.reconcile_seconds:.1f} s"
                    + (f"  BROKEN {t.broken}" if t.broken else ""),
                    file=sys.stderr,
                    flush=True,
                )
                for line in t.attempts:
                    print(f"    {line[:400]}", file=sys.stderr, flush=True)
        finally:
            harness.close()
    return {
        "trials": len(done),
        "invariants_broken": sum(len(t.broken) for t in done),
        "trials_broken": [t.index for t in done if t.broken],
        "queries": len(harness.attempts),
        "per_role": per_role,
        "seed": seed,
        "setup_seconds": round(setup, 1),
        "seconds": round(time.monotonic() - start, 1),
        "failures": {t.index: t.broken for t in done if t.broken},
        "attempts": {t.index: t.attempts for t in done},
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"crash consistency: {report['trials']} trials, {report['queries']} queries, "
        f"seed {report['seed']!r}, {report['seconds']} s",
        "",
        "| killed | trials | query passed | of which settled after the restart "
        "| other outcome | trials with a broken invariant |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in report["per_role"].items():
        lines.append(
            f"| {kind} | {row['trials']} | {row['passed']} | {row['recovered']} "
            f"| {row['other']} | {row['broken']} |"
        )
    lines.append(f"\ninvariants broken: {report['invariants_broken']}")
    for i, broken in report["failures"].items():
        lines.append(f"  trial {i}: " + "; ".join(broken))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--budget-seconds", type=float, default=3000.0)
    ap.add_argument("--seed", default="nightly")
    ap.add_argument("--max-delay", type=float, default=6.0, help="latest kill, in seconds")
    ap.add_argument("--quick", action="store_true", help="4 trials, one per role kind (CI)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.budget_seconds = 4, 900.0
    assert medical.PROVIDERS  # the bundled sample the network serves
    report = run(args.trials, args.budget_seconds, args.seed, args.max_delay)
    print(json.dumps(report) if args.json else table(report))
    return 1 if report["invariants_broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
