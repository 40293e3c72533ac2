"""A query's whole life on the ledger: submit, audit trail, verdicts, settlement."""

from __future__ import annotations

import pytest

from tessera.errors import LedgerError
from tessera.ledger import Listing

from .conftest import STAKE, World, h


def run_query(w: World, label: str, datasets: list[int], cost: int = 100_000) -> bytes:
    qid = h(label)
    w.analyst.submit_query(qid, datasets, w.committee, cost, {"count", "mean"})
    for p in w.providers:
        if any(w.admin.dataset(d).provider == p.account for d in datasets):
            p.post_contribution(qid, h(f"{label}/contrib/{p.account}"))
    w.nodes[0].post_aggregate(qid, h(f"{label}/aggregate"))
    for n in w.nodes:
        n.post_noise(qid, h(f"{label}/noise/{n.account}"))
        n.post_key_switch(qid, h(f"{label}/ks/{n.account}"))
    w.nodes[0].post_proof_bundle(qid, h(f"{label}/proofs"))
    w.analyst.post_result(qid, h(f"{label}/result"))
    return qid


def test_honest_query_pays_providers_and_nodes(world: World) -> None:
    w = world
    supply = w.supply_accounted()
    before = {c.account: w.admin.balance(c.account) for c in (*w.providers, *w.nodes, w.analyst)}
    qid = run_query(w, "q1", w.datasets)
    q = w.admin.query(qid)
    assert q.price == 3_000 and q.status == "open"
    assert q.provider_cuts == (700, 1_600) and q.node_pool == 700
    assert w.admin.escrowed() == 3_000
    assert not w.verifiers[0].post_verdict(qid, True).settled
    assert w.verifiers[1].post_verdict(qid, True).settled
    q = w.admin.query(qid)
    assert q.status == "passed"
    after = {c.account: w.admin.balance(c.account) for c in (*w.providers, *w.nodes, w.analyst)}
    assert after[w.providers[0].account] - before[w.providers[0].account] == 700
    assert after[w.providers[1].account] - before[w.providers[1].account] == 1_600
    # 700 split over 3 nodes: 233 each, the remainder 1 back to the analyst
    for n in w.nodes:
        assert after[n.account] - before[n.account] == 233
        assert w.admin.participant(n.account).reputation == 1
        assert w.admin.participant(n.account).locks == 0
    assert before[w.analyst.account] - after[w.analyst.account] == 3_000 - 1
    assert w.admin.escrowed() == 0 and w.admin.balance(w.admin.deployment.market) == 0
    assert w.supply_accounted() == supply
    stats = w.admin.stats()
    assert stats.volume == 2_999 and stats.settled_queries == 1
    assert stats.top_datasets[0] == w.datasets[1]
    assert w.admin.provider_revenue(w.providers[1].account) == 1_600
    trail = w.admin.audit_trail(qid)
    assert set(trail.of("noise")) == {n.account for n in w.nodes}
    assert trail.of("result") == {w.analyst.account: h("q1/result")}
    assert trail.verdicts == 2


def test_dataset_budget_spent_and_enforced(world: World) -> None:
    w = world
    d = w.datasets[1]  # cap 500_000 micro-rho
    w.analyst.submit_query(h("b1"), [d], w.committee, 300_000, {"count"})
    assert w.admin.dataset(d).budget_remaining == 200_000
    with pytest.raises(LedgerError) as err:
        w.analyst.submit_query(h("b2"), [d], w.committee, 200_001, {"count"})
    assert err.value.reason == "privacy budget exceeded"
    w.analyst.submit_query(h("b3"), [d], w.committee, 200_000, {"count"})
    assert w.admin.dataset(d).budget_remaining == 0


def test_budget_checked_on_every_dataset(world: World) -> None:
    w = world
    w.analyst.submit_query(h("c1"), [w.datasets[1]], w.committee, 400_000, {"count"})
    spent0 = w.admin.dataset(w.datasets[0]).budget_spent
    with pytest.raises(LedgerError, match="privacy budget exceeded"):
        w.analyst.submit_query(h("c2"), w.datasets, w.committee, 200_000, {"count"})
    assert w.admin.dataset(w.datasets[0]).budget_spent == spent0  # the revert undid it


def test_operation_not_allowed_is_refused(world: World) -> None:
    w = world
    with pytest.raises(LedgerError) as err:
        w.analyst.submit_query(h("o1"), [w.datasets[0]], w.committee, 1, {"linear_regression"})
    assert err.value.reason == "operation not allowed"
    w.analyst.submit_query(h("o2"), [w.datasets[1]], w.committee, 1, {"linear_regression"})


def test_duplicate_query_and_unknown_committee_refused(world: World) -> None:
    w = world
    w.analyst.submit_query(h("d1"), [w.datasets[0]], w.committee, 1, {"count"})
    with pytest.raises(LedgerError, match="query already submitted"):
        w.analyst.submit_query(h("d1"), [w.datasets[0]], w.committee, 1, {"count"})
    with pytest.raises(LedgerError, match="unknown committee"):
        w.analyst.submit_query(h("d2"), [w.datasets[0]], 7, 1, {"count"})


def test_training_run_uses_the_training_price(world: World) -> None:
    w = world
    w.analyst.submit_query(h("t1"), [w.datasets[0]], w.committee, 1, {"count"}, kind="training")
    q = w.admin.query(h("t1"))
    assert q.kind == "training" and q.price == 5_000


def test_failed_verdict_refunds_and_slashes_the_cheater(world: World) -> None:
    w = world
    supply = w.supply_accounted()
    cheater = w.nodes[2]
    analyst_before = w.admin.balance(w.analyst.account)
    qid = run_query(w, "f1", w.datasets)
    for v in w.verifiers[:2]:
        v.post_verdict(qid, False, [cheater.account])
    q = w.admin.query(qid)
    assert q.status == "failed" and q.cheaters == (cheater.account,)
    # full refund plus the slashed stake as compensation
    assert w.admin.balance(w.analyst.account) - analyst_before == STAKE
    p = w.admin.participant(cheater.account)
    assert p.stake == 0 and p.reputation == -10 and p.locks == 0
    assert w.admin.participant(w.nodes[0].account).reputation == 0
    assert w.admin.total_staked() == 2 * STAKE
    assert w.supply_accounted() == supply


def test_cheater_slashed_honest_nodes_paid_when_quorum_finishes(world: World) -> None:
    w = world
    cheater = w.nodes[1]
    before = {n.account: w.admin.balance(n.account) for n in w.nodes}
    qid = run_query(w, "a1", w.datasets)
    for v in w.verifiers[1:]:
        v.post_verdict(qid, True, [cheater.account])
    assert w.admin.query(qid).status == "passed"
    # the pool of 700 goes to the two honest nodes
    for n in (w.nodes[0], w.nodes[2]):
        assert w.admin.balance(n.account) - before[n.account] == 350
        assert w.admin.participant(n.account).reputation == 1
    assert w.admin.balance(cheater.account) == before[cheater.account]
    assert w.admin.participant(cheater.account).stake == 0
    assert w.admin.participant(cheater.account).reputation == -10
    # the slashed node no longer qualifies for new queries
    with pytest.raises(LedgerError, match="committee member under-staked"):
        w.analyst.submit_query(h("a2"), [w.datasets[0]], w.committee, 1, {"count"})


def test_split_verdicts_wait_for_a_quorum(world: World) -> None:
    w = world
    qid = run_query(w, "s1", [w.datasets[0]])
    assert not w.verifiers[0].post_verdict(qid, True).settled
    assert not w.verifiers[1].post_verdict(qid, False, [w.nodes[0].account]).settled
    assert w.verifiers[2].post_verdict(qid, True).settled
    assert w.admin.query(qid).status == "passed"


def test_missing_contribution_and_noise_are_refunded(world: World) -> None:
    w = world
    qid = h("m1")
    w.analyst.submit_query(qid, w.datasets, w.committee, 1, {"count"})
    w.providers[1].post_contribution(qid, h("m1/c"))  # provider 0 dropped out
    w.nodes[0].post_noise(qid, h("m1/n0"))  # only node 0 added noise
    w.analyst.post_result(qid, h("m1/r"))
    analyst_before = w.admin.balance(w.analyst.account)
    for v in w.verifiers[:2]:
        v.post_verdict(qid, True)
    assert w.admin.balance(w.providers[0].account) == 0
    assert w.admin.node_revenue(w.nodes[0].account) == 700
    assert w.admin.balance(w.analyst.account) - analyst_before == 700  # provider 0's cut


def test_passing_verdict_needs_a_result(world: World) -> None:
    w = world
    qid = h("r1")
    w.analyst.submit_query(qid, [w.datasets[0]], w.committee, 1, {"count"})
    with pytest.raises(LedgerError, match="no result committed"):
        w.verifiers[0].post_verdict(qid, True)
    w.verifiers[0].post_verdict(qid, False)  # a failing one needs none


def test_expire_refunds_after_timeout(world: World) -> None:
    w = world
    qid = h("e1")
    before = w.admin.balance(w.analyst.account)
    w.analyst.submit_query(qid, [w.datasets[0]], w.committee, 1, {"count"})
    with pytest.raises(LedgerError, match="query not timed out"):
        w.outsider.expire(qid)
    w.chain.mine(60)
    w.outsider.expire(qid)
    assert w.admin.query(qid).status == "expired"
    assert w.admin.balance(w.analyst.account) == before
    assert w.admin.participant(w.nodes[0].account).locks == 0


def test_locked_stake_cannot_be_withdrawn(world: World) -> None:
    w = world
    run_query(w, "l1", [w.datasets[0]])
    with pytest.raises(LedgerError, match="stake locked by open queries"):
        w.nodes[0].unstake(1)
    w.nodes[0].chain.mine(60)
    w.outsider.expire(h("l1"))
    w.nodes[0].unstake(STAKE)
    assert w.admin.participant(w.nodes[0].account).stake == 0


def test_catalog_update_delist_search_rate(world: World) -> None:
    w = world
    p0 = w.providers[0]
    d0, d1 = w.datasets
    assert w.admin.search("health") == [d0]
    assert w.admin.search("finance") == [d1]
    ds = w.admin.dataset(d0)
    assert ds.bounds == {"age": (0, 120)} and ds.tags == ("health", "cohort")
    assert ds.operations == frozenset({"count", "sum", "mean"})
    p0.update_dataset(
        d0,
        Listing(bounds={"age": (0, 110)}, tags=("finance",), budget_cap=2_000_000),
    )
    assert w.admin.search("health") == []
    assert w.admin.search("finance") == [d0, d1]
    with pytest.raises(LedgerError, match="not the dataset's provider"):
        w.providers[1].update_dataset(d0, Listing(bounds={}))
    qid = run_query(w, "rate", [d0])
    with pytest.raises(LedgerError, match="query has not passed"):
        w.analyst.rate(qid, d0, 5)
    for v in w.verifiers[:2]:
        v.post_verdict(qid, True)
    w.analyst.rate(qid, d0, 4)
    with pytest.raises(LedgerError, match="already rated"):
        w.analyst.rate(qid, d0, 5)
    assert w.admin.dataset(d0).rating == 4.0
    p0.delist_dataset(d0)
    assert w.admin.search("finance") == [d1]
    with pytest.raises(LedgerError, match="dataset not listed"):
        w.analyst.submit_query(h("x"), [d0], w.committee, 1, {"count"})


def test_cap_cannot_drop_below_spent(world: World) -> None:
    w = world
    w.analyst.submit_query(h("cap"), [w.datasets[0]], w.committee, 300_000, {"count"})
    with pytest.raises(LedgerError, match="cap below spent budget"):
        w.providers[0].update_dataset(w.datasets[0], Listing(bounds={}, budget_cap=299_999))


def test_committee_record(world: World) -> None:
    w = world
    c = w.admin.committee(w.committee)
    assert set(c.members) == {n.account for n in w.nodes} and c.threshold == 2
    assert len(c.key_shares) == 3 and len(c.public_key) == 33
    with pytest.raises(LedgerError, match="unknown committee"):
        w.admin.committee(99)


def test_commit_many_records_each_kind_once(world: World) -> None:
    w = world
    qid = h("cm")
    w.analyst.submit_query(qid, [w.datasets[0]], w.committee, 1, {"count"})
    node = w.nodes[1]
    node.commit_many(qid, {"noise": h("cm/n"), "key_switch": h("cm/k")})
    trail = w.admin.audit_trail(qid)
    assert trail.of("noise") == {node.account: h("cm/n")}
    assert trail.of("key_switch") == {node.account: h("cm/k")}
    with pytest.raises(LedgerError, match="already committed"):
        node.commit_many(qid, {"aggregate": h("cm/a"), "noise": h("cm/n2")})
    assert "aggregate" not in w.admin.audit_trail(qid).commitments  # the revert undid it
    with pytest.raises(LedgerError, match="not a provider of this query"):
        w.providers[1].commit_many(qid, {"contribution": h("cm/c")})
