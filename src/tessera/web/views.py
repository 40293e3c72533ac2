"""The console's read-only views over the chain: a provider's datasets with their budget
and revenue over time and who queried them, market trends, every verdict and slashing
event, and the trainings on the model registry.

Everything here reads the chain (events, and the market's own ``dataset`` view at past
blocks, so that a series is what the contract held at each block, not a re-derivation);
nothing signs, so none of it needs the analyst's key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from web3 import Web3

from tessera.errors import NotFound

if TYPE_CHECKING:
    from tessera.web.console import Console

#: δ at which a round's ρ is shown as ε (the market's default)
DELTA = 1e-6


def catalog(console: Console) -> Any:
    """The contract holding the listings: the catalog where the deployment has one, else
    the market (deployments from before the catalog left it)."""
    return getattr(console.reader, "catalog", None) or console.reader.market


class LogCache:
    """Every event a contract emitted, read once: each request scans only the blocks
    since the last one (the chain answers ``eth_getLogs`` by walking its blocks, so one
    scan per contract, not one per event type and page view)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, list[Any]]] = {}
        self._times: dict[int, str] = {}

    def time_of(self, w3: Any, block: int) -> str:
        """When ``block`` was mined: its timestamp, in ISO 8601 UTC (a block never changes,
        so each is read once)."""
        with self._lock:
            known = self._times.get(block)
        if known is None:
            stamp = int(w3.eth.get_block(block)["timestamp"])
            known = datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="seconds")
            with self._lock:
                self._times[block] = known
        return known

    def logs(self, contract: Any, name: str, **filters: Any) -> list[Any]:
        from eth_utils.abi import event_abi_to_log_topic

        w3 = contract.w3
        with self._lock:
            upto, logs = self._seen.get(contract.address, (-1, []))
            head = int(w3.eth.block_number)
            if head > upto:
                events = {
                    bytes(event_abi_to_log_topic(e)): e["name"]
                    for e in contract.abi
                    if e.get("type") == "event"
                }
                raw = w3.eth.get_logs(
                    {"address": contract.address, "fromBlock": upto + 1, "toBlock": head}
                )
                for log in raw:
                    topics = log.get("topics") or []
                    event = events.get(bytes(topics[0])) if topics else None
                    if event is not None:
                        logs.append(contract.events[event]().process_log(log))
                self._seen[contract.address] = (head, logs)
        return [
            log
            for log in logs
            if log["event"] == name and all(log["args"].get(k) == v for k, v in filters.items())
        ]


def _logs(console: Console, contract: Any, name: str, **filters: Any) -> list[Any]:
    return console.log_cache.logs(contract, name, **filters)


def _time(console: Console, block: int) -> str:
    return console.log_cache.time_of(console.reader.market.w3, block)


def submissions(console: Console) -> list[dict[str, Any]]:
    """Every query submitted to the market, in chain order: id, analyst, block, cost,
    price and the datasets it named (the market's ``query`` record of each)."""
    out = []
    for log in _logs(console, console.reader.market, "QuerySubmitted"):
        qid = bytes(log["args"]["query_id"])
        q = console.reader.query(qid)
        out.append(
            {
                "query_id": "0x" + qid.hex(),
                "analyst": q.analyst,
                "analyst_name": console.name_of(q.analyst),
                "block": int(log["blockNumber"]),
                "time": _time(console, int(log["blockNumber"])),
                "kind": q.kind,
                "datasets": list(q.dataset_ids),
                "operations": sorted(q.operations),
                "privacy_cost_micro_rho": q.privacy_cost,
                "price": q.price,
                "status": q.status,
            }
        )
    return out


def settlements(console: Console) -> dict[str, dict[str, Any]]:
    """Each settled or expired query's payment, by query id."""
    market = console.reader.market
    out: dict[str, dict[str, Any]] = {}
    for log in _logs(console, market, "QuerySettled"):
        a = log["args"]
        out["0x" + bytes(a["query_id"]).hex()] = {
            "event": "settled",
            "passed": bool(a["passed"]),
            "paid": int(a["paid"]),
            "refunded": int(a["refunded"]),
            "slashed": int(a["slashed"]),
            "block": int(log["blockNumber"]),
        }
    for log in _logs(console, market, "QueryExpired"):
        a = log["args"]
        out["0x" + bytes(a["query_id"]).hex()] = {
            "event": "expired",
            "passed": bool(a["work_complete"]),
            "paid": int(a["paid"]),
            "refunded": int(a["refunded"]),
            "slashed": 0,
            "block": int(log["blockNumber"]),
        }
    return out


def dataset_at(console: Console, dataset_id: int, block: int) -> tuple[int, int, int]:
    """``(budget_spent, budget_remaining, revenue)`` of a dataset as the market held them
    at the end of ``block``."""
    raw = catalog(console).functions.dataset(dataset_id).call(block_identifier=block)
    cap, spent, revenue = int(raw[6]), int(raw[7]), int(raw[14])
    return spent, cap - spent, revenue


def providers(console: Console) -> list[dict[str, Any]]:
    """Every provider of the network and the catalog's datasets it lists."""
    listed: dict[str, list[int]] = {}
    for i in range(console.reader.dataset_count()):
        listed.setdefault(console.reader.dataset(i).provider, []).append(i)
    return [
        {"name": p.name, "address": p.address, "datasets": listed.get(p.address, [])}
        for p in sorted(console.peers, key=lambda p: p.name)
        if p.role == "provider"
    ]


def provider(console: Console, name: str) -> dict[str, Any]:
    """One provider: its datasets (listing and policy), each one's budget left and revenue
    at every block a query of it was submitted or settled (with the block's time), and the
    queries of its data."""
    peer = next((p for p in console.peers if p.role == "provider" and p.name == name), None)
    if peer is None:
        names = ", ".join(sorted(p.name for p in console.peers if p.role == "provider"))
        raise NotFound(f"no provider {name!r} in this network (there are {names})")
    ids = [
        i
        for i in range(console.reader.dataset_count())
        if console.reader.dataset(i).provider == peer.address
    ]
    subs = submissions(console)
    paid = settlements(console)
    datasets = []
    queries = []
    for s in subs:
        mine = [d for d in s["datasets"] if d in ids]
        if mine:
            queries.append({**s, "datasets": mine, "settlement": paid.get(s["query_id"])})
    for i in ids:
        listing = console.dataset(i)
        blocks = sorted(
            {q["block"] for q in queries if i in q["datasets"]}
            | {
                paid[q["query_id"]]["block"]
                for q in queries
                if i in q["datasets"] and q["query_id"] in paid
            }
        )
        listed_block = _listed_block(console, i)
        series = [
            {
                "block": listed_block,
                "time": _time(console, listed_block),
                "budget_remaining": listing["budget_cap"],
                "revenue": 0,
            }
        ]
        for b in blocks:
            _spent, left, revenue = dataset_at(console, i, b)
            series.append(
                {
                    "block": b,
                    "time": _time(console, b),
                    "budget_remaining": left,
                    "revenue": revenue,
                }
            )
        datasets.append({**listing, "series": series})
    return {
        "name": peer.name,
        "address": peer.address,
        "revenue": console.reader.provider_revenue(peer.address),
        "datasets": datasets,
        "queries": queries,
    }


def _listed_block(console: Console, dataset_id: int) -> int:
    logs = _logs(console, catalog(console), "DatasetListed", dataset_id=dataset_id)
    return int(logs[0]["blockNumber"]) if logs else 0


def trends(console: Console, top: int = 10) -> dict[str, Any]:
    """Queries over time (submitted per block, and their running total) and the top
    datasets (the market's ``top_datasets``: distinct paying analysts, then revenue)."""
    subs = submissions(console)
    per_block: dict[int, int] = {}
    for s in subs:
        per_block[s["block"]] = per_block.get(s["block"], 0) + 1
    running, series = 0, []
    for b in sorted(per_block):
        running += per_block[b]
        series.append(
            {"block": b, "time": _time(console, b), "queries": per_block[b], "total": running}
        )
    top_ids = console.reader.top_datasets(top)
    tops = []
    for rank, i in enumerate(top_ids, 1):
        d = console.dataset(i)
        tops.append(
            {
                "rank": rank,
                "dataset_id": i,
                "label": f"#{i} {d['provider_name'] or d['provider'][:10]}",
                "provider_name": d["provider_name"],
                "buyers": d["buyers"],
                "revenue": d["revenue"],
                "queries": d["queries"],
            }
        )
    s = console.stats()
    return {"queries": series, "top": tops, "stats": s}


def verdict_of(console: Console, log: Any) -> dict[str, Any]:
    """A verifier's vote (a ``VerdictPosted`` event): pass or fail, the cheaters it named
    (slashed at a majority) and the providers it named withheld (unpaid at a majority)."""
    args = log["args"]
    return {
        "query_id": "0x" + bytes(args["query_id"]).hex(),
        "verifier": Web3.to_checksum_address(args["verifier"]),
        "name": console.name_of(args["verifier"]),
        "passed": bool(args["passed"]),
        "cheaters": [Web3.to_checksum_address(c) for c in args["cheaters"]],
        "withheld": [Web3.to_checksum_address(c) for c in args.get("withheld", ())],
        "block": int(log["blockNumber"]),
    }


def events(console: Console) -> dict[str, Any]:
    """Every verdict (``VerdictPosted``), settlement (``QuerySettled``, ``QueryExpired``),
    slashing (the registry's ``Slashed``) and reputation change on the chain."""
    market, reg = console.reader.market, console.reader.registry
    verdicts = [verdict_of(console, log) for log in _logs(console, market, "VerdictPosted")]
    slashes = [
        {
            "account": Web3.to_checksum_address(log["args"]["account"]),
            "name": console.name_of(log["args"]["account"]),
            "amount": int(log["args"]["amount"]),
            "block": int(log["blockNumber"]),
        }
        for log in _logs(console, reg, "Slashed")
    ]
    reputation = [
        {
            "account": Web3.to_checksum_address(log["args"]["account"]),
            "name": console.name_of(log["args"]["account"]),
            "delta": int(log["args"]["delta"]),
            "total": int(log["args"]["total"]),
            "block": int(log["blockNumber"]),
        }
        for log in _logs(console, reg, "ReputationChanged")
    ]
    paid = settlements(console)
    settled = [{"query_id": k, **v} for k, v in sorted(paid.items(), key=lambda kv: kv[1]["block"])]
    return {
        "verdicts": verdicts,
        "settlements": settled,
        "slashes": slashes,
        "reputation": reputation,
    }


def _micro_to_epsilon(micro: Iterable[int]) -> list[float]:
    from tessera.dp import rho_to_eps_delta

    return [float(rho_to_eps_delta(m / 1e6, DELTA)[0]) if m > 0 else 0.0 for m in micro]


def registry(console: Console) -> Any:
    from tessera.ledger.model_registry import ModelRegistry

    if not console.reader.deployment.model_registry:
        return None
    return ModelRegistry(console.reader)


def trainings(console: Console) -> list[dict[str, Any]]:
    """Every training on the model registry."""
    reg = registry(console)
    if reg is None:
        return []
    out = []
    for t in reg.trainings():
        out.append(
            {
                "training": "0x" + t.training.hex(),
                "analyst": t.analyst,
                "analyst_name": console.name_of(t.analyst),
                "local": t.local,
                "rounds": t.rounds,
                "total_rho_micro": t.total_rho_micro,
                "epsilon": _micro_to_epsilon([t.total_rho_micro])[0],
            }
        )
    return out


def training(console: Console, training_id: str) -> dict[str, Any]:
    """A training's rounds as the registry chains them (CID, parent, ρ, ε spent so far,
    the market query of each), with the loss and accuracy this console measured if it ran
    the training."""
    from tessera.errors import LedgerError, QueryError
    from tessera.ledger.model_registry import training_id_bytes

    reg = registry(console)
    if reg is None:
        raise NotFound("this network's deployment has no model registry")
    try:
        tid = training_id_bytes(training_id)
    except ValueError as exc:
        raise QueryError(str(exc)) from exc
    try:
        t = reg.training(tid)
    except LedgerError as exc:
        raise NotFound(str(exc)) from exc
    history = reg.history(tid)
    total = 0
    rows = []
    measured = console.training_scores.get("0x" + tid.hex(), {})
    for r in history:
        total += r.rho_micro
        (eps_total,) = _micro_to_epsilon([total])
        m = measured.get(r.round, {})
        rows.append(
            {
                "round": r.round,
                "cid": r.cid,
                "parent": r.parent,
                "rho_micro": r.rho_micro,
                "total_rho_micro": total,
                "epsilon_spent": eps_total,
                "block": r.block,
                "query_id": None if r.query_id is None else "0x" + r.query_id.hex(),
                "loss": m.get("loss"),
                "accuracy": m.get("accuracy"),
            }
        )
    return {
        "training": "0x" + tid.hex(),
        "analyst": t.analyst,
        "analyst_name": console.name_of(t.analyst),
        "local": t.local,
        "committee": t.committee,
        "total_rho_micro": t.total_rho_micro,
        "rounds": rows,
    }


def telemetry(console: Console) -> dict[str, Any]:
    """The telemetry tasks the console was started with (``--telemetry``), each with its
    aggregators and the leader's counts; an empty list says how to add one."""
    return console.telemetry.overview()


def committees(console: Console) -> list[dict[str, Any]]:
    """Every committee on the registry (``CommitteeCreated``): its threshold, public key
    and members (their names, stake and reputation now), and how it came to be: endorsed
    by its members after their DKG, or drawn for an epoch (``EpochCommittee``, with the
    draw's seed)."""
    reg = console.reader.registry
    drawn = {
        int(log["args"]["committee_id"]): int(log["args"]["epoch"])
        for log in _logs(console, reg, "EpochCommittee")
    }
    seeds = {
        int(log["args"]["epoch"]): "0x" + bytes(log["args"]["seed"]).hex()
        for log in _logs(console, reg, "CommitteeDrawn")
    }
    out = []
    for log in _logs(console, reg, "CommitteeCreated"):
        cid = int(log["args"]["committee_id"])
        c = console.reader.committee(cid)
        members = []
        for i, address in c.nodes.items():
            p = console.reader.participant(address)
            members.append(
                {
                    "index": i,
                    "address": address,
                    "name": console.name_of(address),
                    "stake": p.stake,
                    "reputation": p.reputation,
                }
            )
        epoch = drawn.get(cid)
        out.append(
            {
                "committee_id": cid,
                "threshold": c.threshold,
                "size": len(c.members),
                "public_key": "0x" + c.public_key.hex(),
                "block": int(log["blockNumber"]),
                "time": _time(console, int(log["blockNumber"])),
                "origin": "endorsed" if epoch is None else "drawn",
                "epoch": epoch,
                "seed": None if epoch is None else seeds.get(epoch),
                "members": members,
            }
        )
    return out
