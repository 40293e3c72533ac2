"""Load: 16 concurrent analysts over one network, and 10^5 telemetry reports with replays and
malformed ones; throughput, latency percentiles, and nothing lost.

    python benchmarks/load.py [--analysts 16] [--seconds 120] [--reports 100000] [--json]
    python benchmarks/load.py --quick      # 4 analysts for 20 s, 2,000 reports

**Queries.** One network of real processes (``tessera.node.launcher.Network``: the chain,
3 nodes t = 2, 4 providers, 1 verifier). Each analyst has its own key, registered on the
ledger, funded and approving the market, and its own ``NetworkAnalyst``; each runs
queries back to back for the bounded time. Every query the analysts started is then
looked up on the ledger: a query is *completed* if its result verified and the ledger
has it ``passed``, *failed* if the analyst got an error or an unverified result (with its
reason), and *lost* if it has no recorded outcome or the ledger has no trace of a query
the analyst believed submitted. Open queries are mined past their deadline and expired,
then the books are checked: escrow, supply, budgets (``benchmarks/crash.py``'s rules).

**Telemetry.** A Prio3Count task on two aggregator processes (``tessera telemetry
serve``). The reports: valid ones (a seeded 0/1 measurement each), replays (a valid report
sent again, byte for byte) and malformed ones (a flipped ciphertext byte, a wrong HPKE
config id, a public share that should be empty), shuffled and uploaded concurrently in
requests of 100. Every valid report must be accepted, every replay answered ``replayed``
and every malformed one refused; the collected aggregate must count exactly the valid
reports and sum exactly their measurements (the task has no noise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from web3.types import Wei

from tessera.crypto.rng import SeededRng
from tessera.ledger import rho_to_micro
from tessera.ledger.deploy import DEFAULT_TIMEOUT_BLOCKS
from tessera.node.analyst import NetworkAnalyst
from tessera.node.dlog_cache import discrete_log
from tessera.node.identity import Identity
from tessera.node.launcher import ANALYST_CREDITS, ETH, free_port
from tessera.node.runner import connect_ledger
from tessera.node.transport import HttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import CLOSED, Harness  # the network, its settlement and its checks

QUERY = "SELECT COUNT(*), AVG(age) FROM patients"
EPSILON = 0.05


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[k], 2)


# -- queries ---------------------------------------------------------------------------
def add_analysts(h: Harness, count: int, seed: str) -> list[NetworkAnalyst]:
    """``count`` analysts with keys of their own: registered, funded, approving the market."""
    rng = SeededRng(f"load/{seed}/keys")
    ids = [Identity((rng.below(2**255) + 1).to_bytes(32, "big")) for _ in range(count)]
    chain = h.admin.chain
    for ident in ids:
        chain.w3.eth.send_transaction(
            {"from": chain.accounts[0], "to": ident.address, "value": Wei(ETH)}
        )
    h.admin.register_many([(i.address, "analyst", i.public_key) for i in ids])
    peers = h.analyst.peers
    urls = {p.address: p.url for p in peers}
    analysts = []
    for k, ident in enumerate(ids):
        h.admin.mint(ident.address, ANALYST_CREDITS)
        ledger = connect_ledger(h.net.state["rpc"], Path(h.net.state["deployment"]), ident)
        ledger.approve(h.deployment.market, 2**256 - 1)
        a = NetworkAnalyst(
            ledger,
            HttpTransport(ident, urls),
            peers,
            int(h.net.state["committee"]),
            discrete_log,
            SeededRng(f"load/{seed}/analyst/{k}"),
            workers=8,
        )
        analysts.append(a)
        h.accounts.append(ident.address)
    h.supply = h.admin.total_supply()  # the analysts' credits were minted just now
    return analysts


def run_queries(h: Harness, analysts: list[NetworkAnalyst], seconds: float) -> dict[str, Any]:
    attempts: list[dict[str, Any]] = []  # one per ticket an analyst executed
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def track(a: NetworkAnalyst, current: list[dict[str, Any]]) -> None:
        execute = a._execute

        def tracked(ticket: Any, holders: Any, secret: int) -> Any:
            entry = {"qid": ticket.query_id, "rho": float(ticket.rho or 0.0), "outcome": None}
            with lock:
                attempts.append(entry)
            current.append(entry)
            return execute(ticket, holders, secret)

        a._execute = tracked  # type: ignore[method-assign]

    def worker(a: NetworkAnalyst) -> None:
        current: list[dict[str, Any]] = []
        track(a, current)
        while time.monotonic() < stop:
            current.clear()
            start = time.monotonic()
            try:
                res = a.sql(QUERY, epsilon=EPSILON)
                outcome, reason = ("completed" if res.verified else "failed"), ""
                if not res.verified:
                    reason = "; ".join(res.verdict.failures)
            except Exception as exc:  # every error is an outcome, with its reason
                outcome, reason = "failed", f"{type(exc).__name__}: {exc}"
            latency = time.monotonic() - start
            for e in current:
                e.update(outcome=outcome, reason=reason, latency=latency)

    threads = [threading.Thread(target=worker, args=(a,), daemon=True) for a in analysts]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 600)
    wall = time.monotonic() - start
    hung = sum(t.is_alive() for t in threads)

    # the books: every attempt on the ledger, open ones settled, then the crash checks
    for e in attempts:
        h.attempts_rho[e["qid"]] = e["rho"]
    h.settle_all(a["qid"] for a in attempts)
    completed = failed = lost = 0
    reasons: dict[str, int] = {}
    samples: dict[str, str] = {}  # one full reason of each kind
    for e in attempts:
        status = h.status(e["qid"])
        e["status"] = status
        if e["outcome"] is None or (status == "none" and not e.get("reason")):
            lost += 1
        elif e["outcome"] == "completed" and status == "passed":
            completed += 1
        elif e["outcome"] == "completed":
            lost += 1  # verified for the analyst, yet not passed on-chain: unaccounted for
        else:
            failed += 1
            key = (e["reason"] or status).split(":")[0][:60]
            reasons[key] = reasons.get(key, 0) + 1
            samples.setdefault(key, (e["reason"] or status)[:400])
        if status not in (*CLOSED, "none"):
            lost += 1
    broken = h.check_books(attempts)
    latencies = [e["latency"] for e in attempts if e.get("outcome") == "completed"]
    return {
        "analysts": len(analysts),
        "seconds": round(wall, 1),
        "queries": len(attempts),
        "completed": completed,
        "failed": failed,
        "lost": lost + hung,
        "failure_reasons": reasons,
        "failure_samples": samples,
        "queries_per_minute": round(60 * completed / wall, 2),
        "latency_s": {f"p{q}": percentile(latencies, q) for q in (50, 90, 99)},
        "invariants_broken": broken,
    }


class LoadHarness(Harness):
    """The crash harness's network and checks, over many analysts' queries."""

    # the standard deadline: 16 concurrent queries share the blocks (each commits ~20 times)
    TIMEOUT_BLOCKS = DEFAULT_TIMEOUT_BLOCKS

    def __init__(self, state_dir: Path, seed: str) -> None:
        super().__init__(state_dir, seed)
        self.attempts_rho: dict[bytes, float] = {}

    def settle_all(self, qids: Any) -> None:
        from crash import Attempt

        for qid in qids:
            self.attempts.setdefault(qid, Attempt(qid, self.attempts_rho[qid], "load", "load"))
        self.settle()

    def check_books(self, attempts: list[dict[str, Any]]) -> list[str]:
        """Budgets, supply and escrow (payments per analyst are not modelled here)."""
        led = self.admin
        queries = {
            a["qid"]: (led.query(a["qid"]), led.audit_trail(a["qid"], verdicts=False))
            for a in attempts
            if a["status"] != "none"
        }
        broken = []
        for name, addr in self.providers.items():
            d = led.dataset(self.datasets[addr].dataset_id)
            used = [
                self.attempts_rho[qid]
                for qid, (q, trail) in queries.items()
                if addr in trail.of("contribution") or addr in trail.of("exclusion")
            ]
            if d.budget_spent > d.budget_cap or d.budget_spent != sum(map(rho_to_micro, used)):
                broken.append(f"budget_ledger: {name} spent {d.budget_spent}")
            info = self.transport.call(addr, "info", {})
            own = float(info["tables"]["patients"]["budget_spent"])
            if abs(own - sum(used)) > 1e-9:
                broken.append(f"budget_provider: {name} counts {own:.6f} of {sum(used):.6f}")
        supply = led.total_supply()
        held = sum(led.balance(a) for a in self.accounts)
        if supply != self.supply or held != supply:
            broken.append(f"supply: {held} held of {supply} (was {self.supply})")
        # pull payments: the market also holds what settlements credited and nobody withdrew
        market, owed = led.balance(self.deployment.market), led.total_owed()
        if not market - owed == led.escrowed() == 0:
            broken.append(
                f"escrow: market holds {market} ({owed} of it owed), escrowed {led.escrowed()}"
            )
        return broken


# -- telemetry -------------------------------------------------------------------------
@contextlib.contextmanager
def telemetry_task(root: Path) -> Iterator[Any]:
    """A Prio3Count task, its two aggregators serving it until the block ends."""
    from tessera.node.telemetry.config import load_task_config, write_task
    from tessera.node.telemetry.launcher import aggregators
    from tessera.protocol.telemetry import DpSpec, VdafSpec

    ports = [free_port(), free_port()]
    path = write_task(
        root / "task",
        VdafSpec.of("Prio3Count"),
        aggregator_ports=ports,
        min_batch_size=100,
        time_precision=3600,
        dp=DpSpec("none"),
    )
    with aggregators([path], root):
        yield load_task_config(path)


def malformed(builder: Any, report: Any, k: int, rng: SeededRng) -> Any:
    """A refused variant of a valid ``report`` (its own report id), one of five kinds."""
    from tessera.node.telemetry import hpke
    from tessera.protocol.telemetry.messages import SealedShare, input_share_info

    shares = list(report.sealed_shares)
    kind = k % 5
    if kind == 0:  # a flipped ciphertext byte: the share does not open
        ct = bytearray(shares[1].ciphertext)
        ct[-1] ^= 1
        shares[1] = SealedShare(shares[1].config_id, bytes(ct))
    elif kind == 1:  # sealed to an HPKE config the leader does not have
        shares[0] = SealedShare((shares[0].config_id + 1) % 256, shares[0].ciphertext)
    elif kind == 2:  # a public share where Prio3Count has none (bound into the HPKE info)
        return replace(report, public_share=b"\x01" * 16)
    else:  # the leader's input share, sealed correctly: truncated (3) or random bytes (4)
        peer = builder._configs[0]
        info = input_share_info(builder.config.task_id, 0, report.metadata, report.public_share)
        vdaf, spec = builder.vdaf, builder.config.vdaf_spec
        _, input_shares = vdaf.shard(
            builder.ctx,
            spec.encode_measurement(1),
            rng.randbytes(16),
            rng.randbytes(vdaf.RAND_SIZE),
        )
        size = len(vdaf.encode_input_share(input_shares[0]))
        body = rng.randbytes(size // 2 if kind == 3 else size)
        shares[0] = SealedShare(peer.hpke_config_id, hpke.seal(peer.hpke_public_key, info, body))
    return replace(report, sealed_shares=tuple(shares))


def run_telemetry(total: int, seed: str, concurrency: int = 8) -> dict[str, Any]:
    from tessera.node.telemetry.client import ReportBuilder, upload_async
    from tessera.node.telemetry.collector import TelemetryCollector
    from tessera.protocol.telemetry.messages import BatchInterval, ReportStatus

    rng = SeededRng(f"load/{seed}/telemetry")
    n_replay = n_bad = total // 20
    n_valid = total - n_replay - n_bad
    t0 = (int(time.time()) - 86_400) // 3600 * 3600
    with (
        tempfile.TemporaryDirectory(prefix="tessera-load-telemetry-") as tmp,
        telemetry_task(Path(tmp)) as config,
    ):
        builder = ReportBuilder(config)
        start = time.monotonic()
        measurements = [rng.below(2) for _ in range(n_valid)]
        valid = [builder.report(m, t0, rng) for m in measurements]
        bad = [malformed(builder, builder.report(1, t0, rng), k, rng) for k in range(n_bad)]
        shard_s = time.monotonic() - start
        half = n_valid // 2
        replays = [valid[rng.below(half)] for _ in range(n_replay)]
        # first half: valid and half the malformed; second: the rest, and the replays
        # of first-half reports (their originals are already stored)
        items = [(r, "valid") for r in valid]
        items += [(r, "malformed") for r in bad]
        items += [(r, "replay") for r in replays]
        phase1 = items[:half] + items[n_valid : n_valid + n_bad // 2]
        phase2 = items[half:n_valid] + items[n_valid + n_bad // 2 :]
        for phase in (phase1, phase2):
            for i in range(len(phase) - 1, 0, -1):  # seeded Fisher-Yates
                j = rng.below(i + 1)
                phase[i], phase[j] = phase[j], phase[i]
        outcomes: dict[str, dict[str, int]] = {k: {} for k in ("valid", "malformed", "replay")}
        refused_requests = 0

        async def upload(batches: list[list[tuple[Any, str]]]) -> None:
            nonlocal refused_requests
            sem = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(timeout=600) as http:

                async def one(batch: list[tuple[Any, str]]) -> None:
                    nonlocal refused_requests
                    async with sem:
                        try:
                            got = await upload_async(http, config, [r for r, _ in batch])
                        except Exception:
                            refused_requests += 1
                            for _, kind in batch:
                                outcomes[kind]["request_failed"] = (
                                    outcomes[kind].get("request_failed", 0) + 1
                                )
                            return
                    for (_, kind), o in zip(batch, got, strict=True):
                        label = ReportStatus(o.status).name.lower()
                        outcomes[kind][label] = outcomes[kind].get(label, 0) + 1

                await asyncio.gather(*(one(b) for b in batches))

        start = time.monotonic()
        for phase in (phase1, phase2):
            asyncio.run(upload([phase[i : i + 100] for i in range(0, len(phase), 100)]))
        upload_s = time.monotonic() - start
        start = time.monotonic()
        with TelemetryCollector(config) as collector:
            got = collector.collect(BatchInterval(t0, 3600))
        collect_s = time.monotonic() - start
    accepted = outcomes["valid"].get("accepted", 0)
    lost = (
        (n_valid - accepted)
        + outcomes["replay"].get("accepted", 0)
        + outcomes["malformed"].get("accepted", 0)
        + (n_replay - outcomes["replay"].get("replayed", 0))
        + (got.report_count != n_valid)
        + (got.result != sum(measurements))
    )
    return {
        "reports": total,
        "valid": n_valid,
        "replays": n_replay,
        "malformed": n_bad,
        "outcomes": outcomes,
        "collected_count": got.report_count,
        "collected_sum": got.result,
        "expected_sum": sum(measurements),
        "lost": lost,
        "shard_seconds": round(shard_s, 1),
        "upload_seconds": round(upload_s, 1),
        "collect_seconds": round(collect_s, 1),
        "reports_per_s": round(total / upload_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--analysts", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--seed", default="load")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip", choices=("queries", "telemetry"), help="run only the other half")
    args = ap.parse_args(argv)
    if args.quick:
        args.analysts, args.seconds, args.reports = 4, 20.0, 2_000
    report: dict[str, Any] = {}
    if args.skip != "queries":
        with tempfile.TemporaryDirectory(prefix="tessera-load-") as tmp:
            h = LoadHarness(Path(tmp) / "network", args.seed)
            try:
                analysts = add_analysts(h, args.analysts, args.seed)
                report["queries"] = run_queries(h, analysts, args.seconds)
            finally:
                h.close()
    if args.skip != "telemetry":
        report["telemetry"] = run_telemetry(args.reports, args.seed)
    if args.json:
        print(json.dumps(report))
    else:
        for part, figures in report.items():
            print(f"## {part}")
            for k, v in figures.items():
                print(f"| {k} | {v} |")
    q, t = report.get("queries", {}), report.get("telemetry", {})
    bad = q.get("lost", 0) + len(q.get("invariants_broken", [])) + t.get("lost", 0)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
