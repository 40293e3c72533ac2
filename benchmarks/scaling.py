"""Issue 14, scale: what one query costs on the ledger as its parties grow.

A query over ``P`` datasets (one per provider) on a committee of ``N`` computing nodes runs
on the contracts alone (the embedded py-evm chain): every provider lists its dataset, the
nodes endorse their committee, the analyst submits, every provider commits its
contribution, every node its noise and key-switch share, one node the aggregate and the
proof bundle, the analyst its result, the drawn verifiers vote, and then **every party
withdraws** what the settlement credited it (pull payments). Sweeps:

* ``providers``: ``P`` in 4, 16, 64, 256 with ``N = 3``;
* ``nodes``: ``N`` in 3, 8, 16, 32, 64 with ``P = 4``;
* ``latency_nodes``, ``latency_providers``, ``latency_rows`` (``--latency``): a query's
  latency and verification time over the in-process network (``tessera.LocalNetwork``:
  DKG, encryption, every proof made and checked) against ``N`` in 3 to 48 (3 providers),
  against ``P`` in 4 to 256 (3 nodes), and against rows per provider in 10³ to 10⁶;
* ``reshare`` (``--reshare``): one rotation of the committee's key by proactive
  resharing against ``n`` in 3 to 48, per party and step.

For each gas point: gas of ``submit_query``, of the settling verdict (``settle``), of one
``withdraw``, of the whole query (every transaction from submission to the last
withdrawal), and the settlement's gas per paid party. Before pull payments, settling 12
providers and 6 nodes took 1.9 M gas (transfers to each party inside the verdict), and the
contracts refused more than 16 datasets or members.

``--json`` prints one JSON object per sweep; ``--quick`` runs a small smoke configuration.
``tests/ledger/test_scale.py`` runs the 64-node query with the same code (256 providers against
Hardhat, 130 on the embedded chain).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tessera.crypto.group import G
from tessera.ledger import Chain, EmbeddedChain, LedgerClient, Listing, deploy

PRICE = 1_000  # per dataset and query; the nodes' share 30 %
STAKE = 1_000
REGISTER_BATCH = 40  # registrations per governance batch (one transaction each)


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def point(i: int) -> bytes:
    return (G * (i + 1)).encode()


@dataclass
class Scene:
    """A deployment with ``nodes`` in one committee and one dataset per provider."""

    chain: Chain
    admin: LedgerClient
    analyst: LedgerClient
    verifiers: list[LedgerClient]
    nodes: list[LedgerClient]
    providers: list[LedgerClient]
    committee: int
    datasets: list[int]
    stake: int  # what each node staked: the registry's minimum, at least STAKE
    setup_gas: dict[str, int] = field(default_factory=dict)


@dataclass
class QueryGas:
    submit: int
    settle: int
    withdraw: int  # one provider's withdrawal
    total: int  # every transaction of the query, submission to the last withdrawal
    paid_parties: int
    withdrawn: int  # credits every party took out

    @property
    def settle_per_party(self) -> float:
        return self.settle / max(1, self.paid_parties)


def unlocked_parties(chain: Chain, admin: LedgerClient, first: int) -> Callable[[], LedgerClient]:
    """Parties from the chain's own unlocked accounts, from index ``first`` on."""
    accounts = iter(chain.accounts[first:])

    def make() -> LedgerClient:
        return admin.as_(next(accounts))

    return make


def signed_parties(chain: Chain, admin: LedgerClient) -> Callable[[], LedgerClient]:
    """Parties with fresh keys (signing their own transactions), funded with gas money by
    the admin: any number of them, on any chain."""
    from eth_account import Account

    def make() -> LedgerClient:
        acct = Account.create()
        w3 = chain.w3
        # 10 ETH each: a Hardhat account holds 10,000, and a 64 x 256 query has 320 parties
        tx = w3.eth.send_transaction({"from": admin.account, "to": acct.address, "value": 10**19})
        w3.eth.wait_for_transaction_receipt(tx)
        client = LedgerClient(chain, admin.deployment, acct.address, signer=bytes(acct.key))
        client.gas_log = admin.gas_log  # one log for the whole query
        return client

    return make


def _register(admin: LedgerClient, entries: Sequence[tuple[str, Any, bytes]]) -> int:
    gas = 0
    for i in range(0, len(entries), REGISTER_BATCH):
        gas += admin.register_many(list(entries[i : i + REGISTER_BATCH])).gas_used
    return gas


def build(
    chain: Chain,
    admin: LedgerClient,
    analyst: LedgerClient,
    verifiers: list[LedgerClient],
    make_party: Callable[[], LedgerClient],
    *,
    nodes: int,
    providers: int,
) -> Scene:
    """Register ``nodes`` computing nodes (funded, staked, one committee of threshold
    ⌈n/2⌉) and ``providers`` providers with one dataset each. ``analyst`` and
    ``verifiers`` are registered, funded and (the verifiers) in the pool already."""
    node_clients = [make_party() for _ in range(nodes)]
    provider_clients = [make_party() for _ in range(providers)]
    gas: dict[str, int] = {}
    gas["register"] = _register(
        admin,
        [
            *((n.account, "node", point(100 + i)) for i, n in enumerate(node_clients)),
            *((p.account, "provider", point(400 + i)) for i, p in enumerate(provider_clients)),
        ],
    )
    stake = max(STAKE, int(admin.registry.functions.min_stake().call()))
    for n in node_clients:
        admin.mint(n.account, stake)
        n.stake(stake)
    threshold = (nodes + 1) // 2
    members = [n.account for n in node_clients]
    shares = [point(700 + i) for i in range(nodes)]
    committee: int | None = None
    gas["endorse"] = 0
    for n in node_clients[: nodes - threshold + 1]:
        endorsed = n.endorse_committee(members, threshold, point(699), shares)
        gas["endorse"] += endorsed.tx.gas_used
        committee = endorsed.committee_id
    assert committee is not None
    datasets = []
    for i, p in enumerate(provider_clients):
        listing = Listing(
            bounds={"x": (0, 1)},
            tags=("scale",),
            operations=frozenset({"count", "sum"}),
            budget_cap=10**6,
            price_per_query=PRICE,
            node_share_bps=3_000,
        )
        datasets.append(p.list_dataset(h(f"schema-{i}"), listing).dataset_id)
    return Scene(
        chain,
        admin,
        analyst,
        verifiers,
        node_clients,
        provider_clients,
        committee,
        datasets,
        stake,
        gas,
    )


def market_worth(scene: Scene) -> int:
    """Credits the market holds: the escrow of open queries plus what it owes."""
    return scene.admin.balance(scene.admin.deployment.market)


def run_query(scene: Scene, label: str) -> QueryGas:
    """One query over every dataset on the committee, every party's work committed, a
    passing verdict, and every party withdrawing. Checks the escrow on the way."""
    s = scene
    start = len(s.admin.gas_log)
    a = s.admin
    s.analyst.approve(a.deployment.market, PRICE * len(s.datasets))
    submitted = s.analyst.submit_query(
        h(label), s.datasets, s.committee, 1_000, {"count"}, approve=False
    )
    qid = submitted.query_id
    price = PRICE * len(s.datasets)
    assert a.escrowed() >= price
    for i, p in enumerate(s.providers):
        p.post_contribution(qid, h(f"{label}/c/{i}"))
    s.nodes[0].post_aggregate(qid, h(f"{label}/aggregate"))
    for i, n in enumerate(s.nodes):
        n.commit_many(qid, {"noise": h(f"{label}/n/{i}"), "key_switch": h(f"{label}/k/{i}")})
    s.nodes[0].post_proof_bundle(qid, h(f"{label}/bundle"))
    s.analyst.post_result(qid, h(f"{label}/result"))
    drawn = set(a.verifiers_of(qid))
    settle = 0
    for v in s.verifiers:
        if v.account in drawn:
            mark = len(a.gas_log)
            if v.post_verdict(qid, True).settled:
                # the settling verdict and, past 64 datasets, the `settle` batches it sent
                settle = sum(t.gas_used for t in a.gas_log[mark:])
                break
    assert a.query(qid).status == "passed"
    assert market_worth(s) == a.escrowed() + a.total_owed()
    withdrawn = 0
    one = 0
    for party in (*s.providers, *s.nodes, s.analyst):
        if party.owed() > 0:
            w = party.withdraw()
            withdrawn += w.amount
            one = one or w.tx.gas_used
    assert a.total_owed() == 0
    txs = s.admin.gas_log[start:]
    return QueryGas(
        submit=submitted.tx.gas_used,
        settle=settle,
        withdraw=one,
        total=sum(t.gas_used for t in txs),
        paid_parties=len(s.providers) + len(s.nodes),
        withdrawn=withdrawn,
    )


def fresh_scene(nodes: int, providers: int) -> Scene:
    """A new embedded chain with enough unlocked accounts, deployed, an analyst and three
    verifiers ready, and the committee and datasets of :func:`build`."""
    chain = EmbeddedChain(accounts=nodes + providers + 8)
    deployment = deploy(chain, min_stake=STAKE, slash_amount=STAKE, timeout_blocks=10_000)
    accts = chain.accounts
    admin = LedgerClient(chain, deployment, accts[0])
    analyst = admin.as_(accts[1])
    verifiers = [admin.as_(a) for a in accts[2:5]]
    admin.register_many(
        [
            (analyst.account, "analyst", point(1)),
            *((v.account, "verifier", point(2 + i)) for i, v in enumerate(verifiers)),
        ]
    )
    admin.mint(analyst.account, 10**12)
    for v in verifiers:
        admin.mint(v.account, STAKE)
        v.stake(STAKE)
        v.join_pool()
    return build(
        chain,
        admin,
        analyst,
        verifiers,
        unlocked_parties(chain, admin, 5),
        nodes=nodes,
        providers=providers,
    )


def gas_point(nodes: int, providers: int) -> dict[str, Any]:
    scene = fresh_scene(nodes, providers)
    first = run_query(scene, "first")
    second = run_query(scene, "second")  # every slot written once already
    return {
        "nodes": nodes,
        "providers": providers,
        "submit_gas": first.submit,
        "settle_gas": first.settle,
        "settle_gas_per_party": round(first.settle_per_party),
        "withdraw_gas": first.withdraw,
        "query_gas": first.total,
        "second_submit_gas": second.submit,
        "second_settle_gas": second.settle,
        "second_settle_gas_per_party": round(second.settle_per_party),
        "second_query_gas": second.total,
        "endorse_gas": scene.setup_gas["endorse"],
    }


def latency_point(nodes: int, providers: int = 3, rows: int = 200) -> dict[str, Any]:
    """One ``COUNT(*), AVG(age)`` query at ε = 1 over the in-process network
    (``tessera.LocalNetwork``: every proof made and checked, three verifiers) with
    ``nodes`` computing nodes (threshold ``⌈nodes/2⌉``) and ``providers`` providers of
    ``rows`` rows each: DKG and registration first (``setup_s``), then the query's
    critical path (``latency_s``: the slowest party of each stage, as Drynx reports it),
    one verifier's check of every proof (``verify_s``) and the whole call (``wall_s``)."""
    import numpy as np
    import pandas as pd

    from tessera import DatasetPolicy, LocalNetwork

    threshold = (nodes + 1) // 2
    t0 = time.perf_counter()
    net = LocalNetwork(nodes, threshold, seed=14, verifiers=3)
    rng = np.random.default_rng(14)
    try:
        for i in range(providers):
            df = pd.DataFrame({"age": rng.integers(18, 90, rows)})
            net.add_provider(
                f"p{i}",
                {"patients": df},
                bounds={"patients": {"age": (0, 120)}},
                policies={"patients": DatasetPolicy(budget_rho=10.0, min_cohort=5)},
            )
        t1 = time.perf_counter()
        res = net.sql("SELECT COUNT(*), AVG(age) FROM patients", epsilon=1.0)
        seconds = time.perf_counter() - t1
        assert res.verified, res.verdict
    finally:
        net.close()
    return {
        "nodes": nodes,
        "threshold": threshold,
        "providers": providers,
        "rows": rows,
        "setup_s": round(t1 - t0, 2),
        "latency_s": round(res.seconds["latency"], 3),
        "verify_s": round(res.seconds["verify"], 3),
        "wall_s": round(seconds, 3),
    }


def reshare_point(n: int) -> dict[str, Any]:
    """One rotation by proactive resharing (``tessera.crypto.reshare``) from a committee
    of ``n`` (threshold ``⌈n/2⌉``) to ``n`` new members with the same threshold, under
    the same public key; every party's work in this one process, timed per step:
    ``deal_s`` one old member's dealing (its polynomial, Feldman commitments, ``n``
    sealed values), ``complain_s`` one new member's check of every dealing (opening its
    sealed value from each and checking it against the dealer's commitments),
    ``finish_s`` one new member's share and the new public shares,
    ``audit_s`` anyone's re-check of the rotation from its broadcast
    (:func:`~tessera.crypto.reshare.reshare_outputs`), ``total_s`` the whole rotation,
    every party one after the other. The key is checked to be unchanged."""
    from tessera.crypto.dkg import run_dkg
    from tessera.crypto.dkg_messages import public_key_of
    from tessera.crypto.reshare import (
        IncomingMember,
        OutgoingMember,
        ReshareSession,
        reshare_outputs,
    )
    from tessera.crypto.rng import SeededRng

    t = (n + 1) // 2
    results, _ = run_dkg(n, t, SeededRng(f"scaling/reshare/dkg/{n}"))
    first = results[1]
    keys = SeededRng(f"scaling/reshare/keys/{n}")
    old_keys = [keys.scalar().to_bytes(32, "big") for _ in range(n)]
    new_keys = [keys.scalar().to_bytes(32, "big") for _ in range(n)]
    session = ReshareSession(
        tuple(public_key_of(k) for k in old_keys),
        t,
        first.public_key,
        tuple(first.public_shares[i] for i in sorted(results)),
        tuple(public_key_of(k) for k in new_keys),
        t,
        hashlib.sha256(b"scaling/reshare/nonce" + n.to_bytes(2, "big")).digest(),
    )
    outgoing = [
        OutgoingMember(
            session, i, results[i].secret_share, old_keys[i - 1], SeededRng(f"deal/{n}/{i}")
        )
        for i in range(1, n + 1)
    ]
    incoming = [IncomingMember(session, j, new_keys[j - 1]) for j in range(1, n + 1)]
    t0 = time.perf_counter()
    dealings = [m.deal() for m in outgoing]
    t1 = time.perf_counter()
    complaints = [m.complain(dealings) for m in incoming]
    answers = [a for m in outgoing if (a := m.answer(complaints)) is not None]
    t2 = time.perf_counter()
    finished = [m.finish(dealings, complaints, answers) for m in incoming]
    t3 = time.perf_counter()
    for m in outgoing:
        m.erase()
    audit = reshare_outputs(session, dealings, complaints, answers)
    t4 = time.perf_counter()
    assert audit.cheaters == () and all(r.public_key == first.public_key for r in finished)
    return {
        "n": n,
        "threshold": t,
        "deal_s": round((t1 - t0) / n, 4),
        "complain_s": round((t2 - t1) / n, 4),
        "finish_s": round((t3 - t2) / n, 4),
        "audit_s": round(t4 - t3, 4),
        "total_s": round(t3 - t0, 3),
    }


def _table(title: str, rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    widths = [
        max(len(k), *(len(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k])) for r in rows))
        for k in keys
    ]
    lines = [title, "  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    for r in rows:
        cells = [f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in keys]
        lines.append("  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object per sweep")
    ap.add_argument("--quick", action="store_true", help="a small smoke configuration")
    ap.add_argument(
        "--latency",
        action="store_true",
        help="also time queries against nodes, providers and rows per provider",
    )
    ap.add_argument("--reshare", action="store_true", help="also time one resharing against n")
    ap.add_argument("--providers", type=int, nargs="*", help="the providers sweep's points")
    ap.add_argument("--nodes", type=int, nargs="*", help="the nodes sweep's points")
    args = ap.parse_args(argv)
    providers = args.providers if args.providers is not None else [4, 16, 64, 256]
    nodes = args.nodes if args.nodes is not None else [3, 8, 16, 32, 64]
    if args.quick:
        providers, nodes = [4, 16], [3, 8]

    def point(n: int, p: int) -> dict[str, Any]:
        row = gas_point(n, p)
        print(json.dumps(row, sort_keys=True), file=sys.stderr, flush=True)  # progress
        return row

    sweeps: dict[str, list[dict[str, Any]]] = {
        "providers": [point(3, p) for p in providers],
        "nodes": [point(n, 4) for n in nodes],
    }
    if args.latency:
        quick = args.quick

        def timed(row: dict[str, Any]) -> dict[str, Any]:
            print(json.dumps(row, sort_keys=True), file=sys.stderr, flush=True)  # progress
            return row

        sweeps["latency_nodes"] = [
            timed(latency_point(n)) for n in ([3] if quick else [3, 8, 16, 32, 48])
        ]
        sweeps["latency_providers"] = [
            timed(latency_point(3, p)) for p in ([4] if quick else [4, 16, 64, 256])
        ]
        sweeps["latency_rows"] = [
            timed(latency_point(3, 3, r))
            for r in ([1_000] if quick else [1_000, 10_000, 100_000, 1_000_000])
        ]
    if args.reshare:
        sweeps["reshare"] = [reshare_point(n) for n in ([3] if args.quick else [3, 8, 16, 32, 48])]
    for name, rows in sweeps.items():
        if args.json:
            print(json.dumps({"sweep": name, "points": rows}, sort_keys=True))
        else:
            print(_table(f"-- {name} --", rows))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
