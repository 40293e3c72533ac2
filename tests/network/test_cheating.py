"""Cheaters in one network of real processes: a computing node that corrupts its key-switch
shares; a provider that refuses a query its public policy allows; one that commits its
contribution on-chain, then sends the analyst other bytes (the nodes fetch the committed
ones); one that commits, then holds the analyst's request open and serves nothing to
anyone (left out on the record, and paid nothing at settlement); and an
analyst that tells the nodes an honest provider withheld."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from tessera.cli.demo import network_spec
from tessera.data import medical
from tessera.node.launcher import Network, open_session
from tessera.protocol import codec
from tessera.testing.adversary import strips_contribution

REFUSER, WITHHOLDER, GARBLER, HONEST = "lab-d", "clinic-c", "hospital-b", "hospital-a"
ROWS = {p: len(pd.read_csv(medical.sample_path(p))) for p in medical.PROVIDERS}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    spec = network_spec(kdf_iterations=2**10, cheating_nodes=(1,))
    roles = {p.name: p for p in spec.providers}
    roles[REFUSER].adversary = "refusing-provider"  # listed, then refuses to contribute
    roles[WITHHOLDER].adversary = "stalling-provider"  # commits, holds on, serves nothing
    roles[GARBLER].adversary = "garbling-provider"  # commits, sends the analyst other bytes
    net = Network(tmp_path_factory.mktemp("cheating") / "network")
    net.up(spec)
    try:
        yield net
    finally:
        net.down()


def budgets(analyst: Any) -> dict[str, int]:
    return {
        p: analyst.ledger.dataset(int(h["dataset_id"])).budget_remaining
        for p, h in analyst._holders("patients").items()
    }


def test_cheating_node_is_excluded_slashed_and_the_result_stands(network: Network) -> None:
    analyst, transport = open_session(network.dir)
    try:
        cheater = analyst.node_address[1]
        honest = [analyst.node_address[i] for i in (2, 3)]
        before = {a: analyst.ledger.balance(a) for a in (cheater, *honest)}
        stake = analyst.ledger.participant(cheater).stake
        budget = budgets(analyst)
        holders = analyst._holders("patients")
        owed = {p: analyst.ledger.owed(str(h["address"])) for p, h in holders.items()}
        start = time.perf_counter()
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
        seconds = time.perf_counter() - start
        after = budgets(analyst)
        accounts = {p: str(h["address"]) for p, h in analyst._holders("patients").items()}
        trail = analyst.ledger.audit_trail(bytes.fromhex(res.query_id), verdicts=False)
        q = analyst.ledger.query(bytes.fromhex(res.query_id))
        paid = {p: analyst.ledger.owed(accounts[p]) - owed[p] for p in accounts}
    finally:
        analyst.close()
        transport.close()
    print(f"query with a refuser, a withholder and a garbler: {seconds:.1f} s")
    # the refusing provider is left out, with its reason, and its budget is not spent (its
    # data was never used); the withholder is left out on the record, its budget spent (it
    # committed); the garbler's committed contribution the nodes fetched: it is in
    assert set(res.excluded_providers) == {REFUSER, WITHHOLDER}
    assert res.excluded_providers[REFUSER] == (
        "refused: PolicyViolation: this provider refuses every query"
    )
    assert res.excluded_providers[WITHHOLDER].startswith("withheld: refused node ")
    assert res.record.withheld == {WITHHOLDER: res.excluded_providers[WITHHOLDER]}
    assert res.providers == sorted([HONEST, GARBLER])
    assert after[REFUSER] == budget[REFUSER]
    assert all(after[p] < budget[p] for p in budget if p != REFUSER)
    # the switching nodes locked the aggregate together with the withholder's account
    qid = bytes.fromhex(res.query_id)
    locked = codec.aggregate_digest(qid, res.record.aggregate, [accounts[WITHHOLDER]])
    assert accounts[WITHHOLDER] in trail.of("contribution")
    assert set(trail.of("aggregate").values()) == {locked}
    # detected and excluded: the result rests on nodes 2 and 3 and verifies
    assert res.record.excluded_nodes == [1] and res.record.used_nodes == [2, 3]
    contributed = ROWS[HONEST] + ROWS[GARBLER]
    assert res.verified and abs(res.value - contributed) < 60
    assert 1 in res.verdict.cheaters
    # slashed and debited on the ledger; the honest nodes are paid
    assert res.ledger is not None and res.ledger.status == "passed"
    assert [a.lower() for a in res.ledger.slashed] == [cheater.lower()]
    assert analyst.ledger.participant(cheater).stake < stake
    assert analyst.ledger.participant(cheater).reputation < 0
    # pull payments: the settlement credits the honest nodes, the cheater nothing
    assert analyst.ledger.balance(cheater) == before[cheater]
    assert analyst.ledger.owed(cheater) == 0
    for a in honest:
        assert analyst.ledger.owed(a) > 0
    # the verdict named the withholder withheld: the settlement paid the two providers
    # whose data is in the result their cut, and neither the withholder (it committed,
    # then delivered nothing) nor the refuser (it committed nothing)
    cut = {
        p: q.provider_cuts[q.dataset_ids.index(int(h["dataset_id"]))] for p, h in holders.items()
    }
    assert paid == {HONEST: cut[HONEST], GARBLER: cut[GARBLER], WITHHOLDER: 0, REFUSER: 0}
    assert cut[WITHHOLDER] > 0


def test_an_analyst_that_claims_an_honest_provider_withheld_gets_its_data_included(
    network: Network,
) -> None:
    analyst, transport = open_session(network.dir)
    analyst.transport = strips_contribution(transport, HONEST)
    try:
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    finally:
        analyst.close()
        transport.close()
    # the nodes fetched the honest provider's contribution themselves: it is counted, and
    # only the provider that really withheld is on the record as withholding
    assert res.verified and res.providers == sorted([HONEST, GARBLER])
    assert set(res.record.withheld) == {WITHHOLDER}
    assert abs(res.value - (ROWS[HONEST] + ROWS[GARBLER])) < 60
