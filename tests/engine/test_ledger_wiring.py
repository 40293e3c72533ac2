"""Every query of the in-process network goes through the contracts: admission, escrow,
the audit trail, the verifiers' verdict and settlement."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.errors import BudgetExceeded, PolicyViolation, TransportError
from tessera.ledger import Listing
from tessera.ledger.session import NODE_STAKE
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.node.roles.verifier import check_trail
from tessera.protocol.aggregation import AggregationRecord
from tessera.protocol.wire import record_from_json
from tessera.testing.adversary import TamperingTransport, corrupt_key_switch, corrupt_noise

PRICE = 1_000
POLICY = DatasetPolicy(
    min_cohort=5, budget_rho=2.0, price_per_query=PRICE, node_share_bps=3_000, tags=("clinic",)
)


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 12), max_abs=1 << 32)


def network(dlog: DiscreteLog, seed: int) -> tuple[LocalNetwork, pd.DataFrame]:
    g = np.random.default_rng(seed)
    net = LocalNetwork(3, 2, seed=seed, dlog=dlog)
    frames = []
    for i in range(2):
        df = pd.DataFrame({"age": g.integers(18, 90, 80), "smoker": g.integers(0, 2, 80)})
        frames.append(df)
        net.add_provider(
            f"p{i}",
            tables={"patients": df},
            bounds={"patients": {"age": (0, 100), "smoker": (0, 1)}},
            policies={"patients": POLICY},
        )
    return net, pd.concat(frames, ignore_index=True)


def full_record(net: LocalNetwork, query_id: str) -> AggregationRecord:
    """The record the verifier checked (every proof decoded), as anyone can fetch it."""
    stored = net.verifiers[0].on_record({"query_id": query_id}, net.ledger.analyst.address)
    return record_from_json(stored["record"])


def balances(net: LocalNetwork) -> dict[str, int]:
    """Every party's credits, once each has withdrawn what settlements owe it (pull
    payments); the market then holds the escrow of open queries only."""
    led = net.ledger
    parties = [led.analyst, *led.nodes.values(), *led.providers.values()]
    for party in parties:
        if party.client.owed() > 0:
            party.client.withdraw()
    assert led.admin.total_owed() == 0
    who = {"analyst": led.analyst.address, "market": led.deployment.market}
    who |= {f"node-{i}": n.address for i, n in led.nodes.items()}
    who |= {name: p.address for name, p in led.providers.items()}
    return {k: led.admin.balance(a) for k, a in who.items()}


def test_honest_query_is_admitted_audited_and_settled(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, seed=21)
    led = net.ledger
    before = balances(net)
    res = net.sql("SELECT COUNT(*), SUM(age) FROM patients", epsilon=1.0)
    assert res.verified and res.ledger is not None
    receipt = res.ledger
    assert receipt.status == "passed" and receipt.price == 2 * PRICE
    assert receipt.query_id == "0x" + res.query_id and len(res.query_id) == 64
    for label in ("submit_query", "result"):
        assert receipt.transactions[label].startswith("0x")
    assert receipt.total_gas > 0
    after = balances(net)
    assert before["analyst"] - after["analyst"] == receipt.price - (600 - 3 * 200)
    assert after["p0"] - before["p0"] == 700 and after["p1"] - before["p1"] == 700
    assert all(after[f"node-{i}"] - before[f"node-{i}"] == 200 for i in led.nodes)
    assert after["market"] == 0
    # the audit trail on-chain matches the record the analyst got
    trail = led.admin.audit_trail(bytes.fromhex(res.query_id))
    nodes = {i: n.address for i, n in led.nodes.items()}
    assert res.ticket is not None
    assert (
        check_trail(trail, full_record(net, res.query_id), res.ticket, nodes, led.analyst.address)
        == []
    )
    assert set(trail.of("contribution")) == {p.address for p in led.providers.values()}
    assert set(trail.of("key_switch")) <= set(nodes.values())
    # on-chain budget spent by the query's cost on both datasets
    for p in net.providers.values():
        ds = led.admin.dataset(p.datasets["patients"])
        assert ds.budget_spent >= res.privacy_cost.rho * 1e6 > 0  # type: ignore[union-attr]
        assert ds.tags == ("clinic",) and ds.price_per_query == PRICE
    assert abs(res["count(*)"] - len(pooled)) < 60


def test_a_query_the_contract_refuses_reaches_no_provider(dlog: DiscreteLog) -> None:
    net, _ = network(dlog, seed=22)
    led = net.ledger
    p1 = led.providers["p1"].client
    d1 = net.providers["p1"].datasets["patients"]
    # the provider lowers its cap on-chain; its local accountant still has budget left
    p1.update_dataset(d1, Listing(bounds={}, budget_cap=1_000, min_cohort=5))
    before = balances(net)
    with pytest.raises(BudgetExceeded, match=r"ledger refused.*p1/patients"):
        net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert all(not p.role.store.items("query") for p in net.providers.values())  # never asked
    assert balances(net) == before  # nothing escrowed
    assert led.admin.dataset(net.providers["p0"].datasets["patients"]).budget_spent == 0
    p1.update_dataset(d1, Listing(bounds={}, operations=frozenset({"count"}), budget_cap=2 * 10**6))
    with pytest.raises(PolicyViolation, match=r"ledger refused.*operation not allowed"):
        net.sql("SELECT AVG(age) FROM patients", epsilon=1.0)
    assert all(not p.role.store.items("query") for p in net.providers.values())
    assert net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0).ledger.status == "passed"  # type: ignore[union-attr]


def test_cheating_node_is_slashed_and_the_honest_ones_paid(dlog: DiscreteLog) -> None:
    net, pooled = network(dlog, seed=23)
    led = net.ledger
    corrupt_key_switch(net.nodes[2])
    before = balances(net)
    res = net.sql("SELECT SUM(age) FROM patients", epsilon=1.0)
    assert res.verified and res.verdict.cheaters == (2,)
    assert res.ledger is not None and res.ledger.status == "passed"
    assert res.ledger.slashed == (led.nodes[2].address,)
    cheater = led.admin.participant(led.nodes[2].address)
    assert cheater.stake == 0 and cheater.reputation < 0
    after = balances(net)
    assert after["node-2"] == before["node-2"]
    honest_pay = 2 * PRICE * 3_000 // 10_000 // 2
    assert after["node-1"] - before["node-1"] == honest_pay
    assert after["node-3"] - before["node-3"] == honest_pay
    # the analyst paid the price; the slashed stake is burned: nobody gains from a slashing
    assert after["analyst"] - before["analyst"] == -2 * PRICE
    assert led.admin.burned() == NODE_STAKE
    assert abs(res.value - pooled.age.sum()) < 2_000


def test_node_with_a_bad_noise_proof_is_slashed_and_the_trail_still_matches(
    dlog: DiscreteLog,
) -> None:
    net, _ = network(dlog, seed=24)
    led = net.ledger
    corrupt_noise(net.nodes[1])
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert res.verified and res.verdict.cheaters == (1,)  # its noise set aside, named
    assert res.ledger is not None and res.ledger.status == "passed"
    assert res.ledger.slashed == (led.nodes[1].address,)
    assert led.admin.participant(led.nodes[1].address).stake == 0
    # a record altered after the fact no longer matches what its authors committed
    trail = led.admin.audit_trail(bytes.fromhex(res.query_id))
    nodes = {i: n.address for i, n in led.nodes.items()}
    assert res.ticket is not None
    record = full_record(net, res.query_id)
    assert check_trail(trail, record, res.ticket, nodes, led.analyst.address) == []
    record.contributions.reverse()
    record.contributions[0] = record.contributions[1]
    failures = check_trail(trail, record, res.ticket, nodes, led.analyst.address)
    assert any("contribution of" in f for f in failures)
    assert any("proof bundle" in f for f in failures)


def test_an_analyst_that_never_asks_the_verifiers_still_pays_at_the_deadline(
    dlog: DiscreteLog,
) -> None:
    """Fair exchange through the deployed roles: the analyst takes the result and never
    has it verified (nor needs to commit it); at the deadline anyone settles the query
    for the providers and nodes that did the work."""
    net, pooled = network(dlog, seed=31)
    led = net.ledger

    def withhold(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path == "verify":
            raise TransportError("the analyst never asks the verifiers")
        return None

    net.analyst.transport = TamperingTransport(net.analyst.transport, withhold)
    led.admin.set_params(80, 1, 0)  # governance: an 80-block deadline (the default is 1,000)
    before = balances(net)
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert abs(res.value - len(pooled)) < 50  # the analyst holds its result
    assert not res.verified and res.ledger is not None and res.ledger.status == "open"
    qid = res.ledger.query_id
    assert led.admin.work_complete(qid)
    q = led.admin.query(qid)
    led.chain.mine(q.deadline - led.chain.w3.eth.block_number + 1)
    led.providers["p0"].client.expire(qid)  # anyone may: here a provider
    assert led.admin.query(qid).status == "completed"
    after = balances(net)
    for name in ("p0", "p1"):
        assert after[name] - before[name] == PRICE * 7_000 // 10_000
    paid = {i: after[f"node-{i}"] - before[f"node-{i}"] for i in led.nodes}
    assert sum(paid.values()) == 2 * PRICE * 3_000 // 10_000 and all(paid.values())
    assert before["analyst"] - after["analyst"] == 2 * PRICE


def test_a_providers_own_budget_agrees_with_the_ledger(dlog: DiscreteLog) -> None:
    """One provider contributes, one looks and is left out (no row matches: below its
    cohort), one is down when asked (killed before it contributed): after settlement each
    provider's own count of spent budget is the ledger's (the ledger used to keep the
    budget of the provider that never contributed spent)."""
    g = np.random.default_rng(5)
    net = LocalNetwork(3, 2, seed=5, dlog=dlog)
    ages = {
        "p0": g.integers(18, 50, 80),
        "p1": g.integers(60, 90, 80),
        "p2": g.integers(18, 50, 80),
    }
    for name, age in ages.items():
        net.add_provider(
            name,
            tables={"patients": pd.DataFrame({"age": age})},
            bounds={"patients": {"age": (0, 100)}},
            policies={"patients": POLICY},
        )

    def down(body: dict[str, Any], sender: str) -> dict[str, Any]:
        raise TransportError("provider p2 is down")

    net.providers["p2"].role.on_contribute = down  # type: ignore[method-assign]
    res = net.sql("SELECT COUNT(*) FROM patients WHERE age < 55", epsilon=1.0)
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert res.providers == ["p0"]
    assert {"p1", "p2"} <= set(res.excluded_providers)
    led = net.ledger
    spent = {}
    for name in ages:
        role = net.providers[name].role
        own = float(role.store.get("budget", "patients") or 0.0)
        on_chain = led.admin.dataset(role.dataset_id("patients") or 0).budget_spent
        assert abs(on_chain - own * 1_000_000) <= 1, (name, own, on_chain)
        spent[name] = on_chain
    assert spent["p0"] == spent["p1"] > 0 and spent["p2"] == 0  # looked, looked, never asked
