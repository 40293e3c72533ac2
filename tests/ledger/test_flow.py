"""A query's whole life on the ledger: submit, audit trail, verdicts, settlement."""

from __future__ import annotations

import pytest

from tessera.errors import LedgerError
from tessera.ledger import Listing

from .conftest import STAKE, World, h, qid


def submit(w: World, label: str, datasets: list[int], cost: int = 100_000, **kw: object) -> bytes:
    """Submit the query ticketed ``h(label)``; its on-chain id."""
    ops = kw.pop("ops", {"count", "mean"})
    return w.analyst.submit_query(h(label), datasets, w.committee, cost, ops, **kw).query_id  # type: ignore[arg-type]


def do_work(w: World, label: str, qid: bytes, datasets: list[int], result: bool = True) -> None:
    """Every party commits its part: the work is then complete."""
    for p in w.providers:
        if any(w.admin.dataset(d).provider == p.account for d in datasets):
            p.post_contribution(qid, h(f"{label}/contrib/{p.account}"))
    w.nodes[0].post_aggregate(qid, h(f"{label}/aggregate"))
    for n in w.nodes:
        n.post_noise(qid, h(f"{label}/noise/{n.account}"))
        n.post_key_switch(qid, h(f"{label}/ks/{n.account}"))
    w.nodes[0].post_proof_bundle(qid, h(f"{label}/proofs"))
    if result:
        w.analyst.post_result(qid, h(f"{label}/result"))


def run_query(w: World, label: str, datasets: list[int], cost: int = 100_000) -> bytes:
    query_id = submit(w, label, datasets, cost)
    do_work(w, label, query_id, datasets)
    return query_id


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
    # pull payments: the settlement credits what each party is owed and moves nothing
    assert w.admin.owed(w.providers[0].account) == 700 and w.admin.owed(w.analyst.account) == 1
    assert all(w.admin.owed(n.account) == 233 for n in w.nodes)
    assert w.admin.balance(w.admin.deployment.market) == w.admin.total_owed() == 3_000
    assert w.supply_accounted() == supply
    w.cash_out()
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
    assert stats.top_datasets[:2] == (w.datasets[1], w.datasets[0])  # one buyer each
    assert w.admin.provider_revenue(w.providers[1].account) == 1_600
    trail = w.admin.audit_trail(qid)
    assert set(trail.of("noise")) == {n.account for n in w.nodes}
    assert trail.of("result") == {w.analyst.account: h("q1/result")}
    assert trail.verdicts == 2
    # the drawn verifiers that voted with the quorum gain reputation; the third did not vote
    drawn = w.admin.verifiers_of(qid)
    assert sorted(drawn) == sorted(v.account for v in w.verifiers)
    assert w.admin.participant(w.verifiers[0].account).reputation == 1
    assert w.admin.participant(w.verifiers[2].account).reputation == -1
    assert all(w.admin.participant(v.account).locks == 0 for v in w.verifiers)


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
    assert w.admin.query(qid(w, "d1")).ticket_hash == h("d1")
    with pytest.raises(LedgerError, match="query already submitted"):
        w.analyst.submit_query(h("d1"), [w.datasets[0]], w.committee, 1, {"count"})
    with pytest.raises(LedgerError, match="unknown committee"):
        w.analyst.submit_query(h("d2"), [w.datasets[0]], 7, 1, {"count"})


def test_training_run_uses_the_training_price(world: World) -> None:
    w = world
    w.analyst.submit_query(h("t1"), [w.datasets[0]], w.committee, 1, {"count"}, kind="training")
    q = w.admin.query(qid(w, "t1"))
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
    # a full refund; the slashed stake is burned (nobody profits from a slashing)
    assert w.cash_out() == {w.analyst.account: 3_000}
    assert w.admin.balance(w.analyst.account) == analyst_before
    assert w.admin.burned() == STAKE
    p = w.admin.participant(cheater.account)
    assert p.stake == 0 and p.reputation == -10 and p.locks == 0
    assert w.admin.participant(w.nodes[0].account).reputation == 0
    assert w.admin.total_staked() == 2 * STAKE + 3 * STAKE  # two nodes, three verifiers
    assert w.supply_accounted() == supply


def test_cheater_slashed_honest_nodes_paid_when_quorum_finishes(world: World) -> None:
    w = world
    cheater = w.nodes[1]
    before = {n.account: w.admin.balance(n.account) for n in w.nodes}
    query_id = run_query(w, "a1", w.datasets)
    for v in w.verifiers[1:]:
        v.post_verdict(query_id, True, [cheater.account])
    qid_ = query_id
    assert w.admin.query(qid_).status == "passed"
    # the pool of 700 goes to the two honest nodes
    w.cash_out()
    for n in (w.nodes[0], w.nodes[2]):
        assert w.admin.balance(n.account) - before[n.account] == 350
        assert w.admin.participant(n.account).reputation == 1
    assert w.admin.balance(cheater.account) == before[cheater.account]
    assert w.admin.participant(cheater.account).stake == 0
    assert w.admin.participant(cheater.account).reputation == -10
    # the slashed node no longer qualifies for new queries
    with pytest.raises(LedgerError, match="committee member under-staked"):
        w.analyst.submit_query(h("a2"), [w.datasets[0]], w.committee, 1, {"count"})


def test_split_verdicts_wait_for_a_quorum_and_the_outvoted_verifier_is_slashed(
    world: World,
) -> None:
    w = world
    query_id = run_query(w, "s1", [w.datasets[0]])
    assert not w.verifiers[0].post_verdict(query_id, True).settled
    assert not w.verifiers[1].post_verdict(query_id, False, [w.nodes[0].account]).settled
    assert w.verifiers[2].post_verdict(query_id, True).settled
    assert w.admin.query(query_id).status == "passed"
    # the vote the quorum contradicts costs its verifier its stake, like a cheating node
    liar = w.admin.participant(w.verifiers[1].account)
    assert liar.stake == 0 and liar.reputation == -10
    assert w.admin.participant(w.nodes[0].account).stake == STAKE


def test_missing_contribution_and_idle_nodes_are_refunded(world: World) -> None:
    w = world
    query_id = submit(w, "m1", w.datasets, 1, ops={"count"})
    spent = w.admin.dataset(w.datasets[0]).budget_spent
    w.providers[1].post_contribution(query_id, h("m1/c"))  # provider 0 dropped out
    w.nodes[0].post_aggregate(query_id, h("m1/a"))
    for n in w.nodes:
        n.post_noise(query_id, h(f"m1/n/{n.account}"))
    for n in w.nodes[:2]:  # node 2 neither switched: it still added noise
        n.post_key_switch(query_id, h(f"m1/k/{n.account}"))
    w.nodes[0].post_proof_bundle(query_id, h("m1/b"))
    analyst_before = w.admin.balance(w.analyst.account)
    for v in w.verifiers[:2]:
        v.post_verdict(query_id, True)
    w.cash_out()
    assert w.admin.balance(w.providers[0].account) == 0
    assert w.admin.node_revenue(w.nodes[0].account) == 700 // 3
    assert w.admin.balance(w.analyst.account) - analyst_before == 700 + 1  # p0's cut, remainder
    # the dataset that never contributed gets its budget back
    assert w.admin.dataset(w.datasets[0]).budget_spent == spent - 1


def test_passing_verdict_needs_the_work_not_the_analysts_result(world: World) -> None:
    w = world
    query_id = submit(w, "r1", [w.datasets[0]], 1, ops={"count"})
    w.providers[0].post_contribution(query_id, h("r1/c"))
    with pytest.raises(LedgerError, match="work not complete"):
        w.verifiers[0].post_verdict(query_id, True)
    do_work(w, "r1", query_id, [], result=False)  # nodes only; no result committed
    assert w.admin.work_complete(query_id)
    w.verifiers[0].post_verdict(query_id, True)
    assert w.verifiers[1].post_verdict(query_id, True).settled


def test_expire_refunds_unused_work_after_the_deadline(world: World) -> None:
    w = world
    before = w.admin.balance(w.analyst.account)
    query_id = submit(w, "e1", [w.datasets[0]], 1, ops={"count"})
    with pytest.raises(LedgerError, match="query not timed out"):
        w.outsider.expire(query_id)
    w.chain.mine(60)
    with pytest.raises(LedgerError, match="query past its deadline"):
        w.providers[0].post_contribution(query_id, h("e1/late"))
    w.outsider.expire(query_id)
    assert w.admin.query(query_id).status == "expired"
    w.cash_out()
    assert w.admin.balance(w.analyst.account) == before
    assert w.admin.participant(w.nodes[0].account).locks == 0
    assert w.admin.dataset(w.datasets[0]).budget_spent == 0  # nobody contributed


def test_locked_stake_cannot_be_withdrawn(world: World) -> None:
    w = world
    run_query(w, "l1", [w.datasets[0]])
    with pytest.raises(LedgerError, match="stake locked by open queries"):
        w.nodes[0].unstake(1)
    w.nodes[0].chain.mine(60)
    w.outsider.expire(qid(w, "l1"))
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
    query_id = run_query(w, "rate", [d0])
    qid = query_id
    with pytest.raises(LedgerError, match="query has not passed"):
        w.analyst.rate(qid, d0, 5)
    for v in w.verifiers[:2]:
        v.post_verdict(qid, True)
    w.analyst.rate(qid, d0, 4)
    w.analyst.rate(qid, d0, 2)  # rating again replaces: one analyst counts once
    assert w.admin.dataset(d0).rating == 2.0 and w.admin.dataset(d0).rating_count == 1
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
    qid = submit(w, "cm", [w.datasets[0]], 1, ops={"count"})
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
