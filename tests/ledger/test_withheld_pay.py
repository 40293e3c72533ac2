"""Issue 14: a provider that commits its contribution and then withholds it is not paid.

The drawn verifiers' verdict names the withheld accounts (taken from the record, checked
against the trail and the locked aggregate by ``verifier.check_trail``); at a majority on
the same verdict the market credits no cut to a withheld account, credits it back to the
analyst, and takes one reputation point; its budget stays spent (it committed) and its
stake is untouched (a withholder is not proven a cheater: a crash looks the same).
"""

from __future__ import annotations

from tessera.ledger import LedgerClient, Listing

from .conftest import World, h, point
from .direct import send
from .test_flow import do_work, submit
from .test_scale import expect_reason

COST = 100_000


def third_provider(w: World) -> tuple[LedgerClient, int]:
    """A third provider (an account the world leaves unused) with one listed dataset."""
    p = w.admin.as_(w.chain.accounts[11])
    w.admin.register(p.account, "provider", point(50))
    listing = Listing(
        bounds={"age": (0, 120)},
        tags=("health",),
        operations=frozenset({"count", "sum", "mean"}),
        budget_cap=1_000_000,
        price_per_query=1_500,
        node_share_bps=2_000,
    )
    return p, p.list_dataset(h("schema-c"), listing).dataset_id


def supply(w: World, *extra: LedgerClient) -> int:
    """:meth:`World.supply_accounted` with the extra accounts' balances."""
    return w.supply_accounted() + sum(w.admin.balance(c.account) for c in extra)


def balanced(w: World, total: int, *extra: LedgerClient) -> None:
    """No credit made or lost: the supply is what it was, and the market holds exactly the
    escrow of its open queries and what settlements owe."""
    a = w.admin
    assert supply(w, *extra) == total == a.total_supply()
    assert a.balance(a.deployment.market) == a.escrowed() + a.total_owed()


def three_provider_query(w: World, label: str) -> tuple[bytes, list[LedgerClient], list[int]]:
    """A query over the world's two datasets and a third provider's; every party committed
    its part (the three providers their contributions): the work is on the trail."""
    p2, d2 = third_provider(w)
    providers = [*w.providers, p2]
    datasets = [*w.datasets, d2]
    qid = submit(w, label, datasets, COST)
    do_work(w, label, qid, datasets)
    p2.post_contribution(qid, h(f"{label}/contrib/{p2.account}"))
    return qid, providers, datasets


def test_a_withheld_provider_is_paid_nothing_and_the_others_their_cut(world: World) -> None:
    w = world
    qid, providers, datasets = three_provider_query(w, "withheld")
    total = supply(w, providers[2])
    q = w.admin.query(qid)
    cuts = dict(zip(datasets, q.provider_cuts, strict=True))
    assert len(set(cuts.values())) == 3  # each provider's cut tells which was credited
    withholder = providers[1]
    budget = {d: w.admin.dataset(d).budget_remaining for d in datasets}
    reputation = {p.account: w.admin.participant(p.account).reputation for p in providers}
    burned = w.admin.burned()
    analyst_before = w.worth(w.analyst.account)
    nodes_before = {n.account: w.worth(n.account) for n in w.nodes}

    assert not w.verifiers[0].post_verdict(qid, True, [], [withholder.account]).settled
    assert w.verifiers[1].post_verdict(qid, True, [], [withholder.account]).settled
    assert w.admin.query(qid).status == "passed"
    balanced(w, total, providers[2])

    # the contributors are owed their cuts, the withholder nothing
    owed = {p.account: w.admin.owed(p.account) for p in providers}
    assert owed == {
        providers[0].account: cuts[datasets[0]],
        withholder.account: 0,
        providers[2].account: cuts[datasets[2]],
    }
    assert w.admin.provider_revenue(withholder.account) == 0
    # the nodes are paid as for any passing query: the pool split among the three
    each = q.node_pool // len(w.nodes)
    assert all(w.worth(n.account) - nodes_before[n.account] == each for n in w.nodes)
    # the analyst gets back the withholder's cut (and the pool's rounding remainder)
    remainder = q.node_pool - each * len(w.nodes)
    assert w.worth(w.analyst.account) - analyst_before == cuts[datasets[1]] + remainder
    # its budget stays spent like the others' (no dataset's comes back), its stake is
    # untouched, it loses one reputation point where the contributors gain one
    assert all(w.admin.dataset(d).budget_remaining == budget[d] for d in datasets)
    assert w.admin.burned() == burned
    after = {p.account: w.admin.participant(p.account).reputation for p in providers}
    assert after[withholder.account] == reputation[withholder.account] - 1
    assert after[providers[0].account] == reputation[providers[0].account] + 1

    # every credit withdraws; the market then holds nothing and the supply is whole
    third = providers[2].withdraw().amount
    paid = {**w.cash_out(), providers[2].account: third}
    assert withholder.account not in paid
    assert w.admin.total_owed() == 0 and w.admin.escrowed() == 0
    assert w.admin.balance(w.admin.deployment.market) == 0
    balanced(w, total, providers[2])


def test_only_a_majority_names_a_provider_withheld(world: World) -> None:
    """One verifier alone cannot have a provider unpaid, nor save a withholder's pay; the
    one outvoted is slashed like any verifier that voted against the quorum."""
    w = world
    qid, providers, _ = three_provider_query(w, "withheld-majority")
    total = supply(w, providers[2])
    withholder = providers[1]
    cut = w.admin.query(qid).provider_cuts[1]
    assert not w.verifiers[0].post_verdict(qid, True, [], [withholder.account]).settled
    # a passing verdict that names nobody withheld is another verdict: no quorum yet
    assert not w.verifiers[1].post_verdict(qid, True).settled
    assert w.admin.query(qid).status == "open"
    assert w.verifiers[2].post_verdict(qid, True).settled
    # the majority named nobody: the provider is paid, the lone vote is slashed
    assert w.admin.owed(withholder.account) == cut
    assert w.admin.participant(w.verifiers[0].account).stake == 0
    assert w.admin.participant(withholder.account).reputation == 1
    balanced(w, total, providers[2])


def test_a_verdict_names_withheld_only_accounts_that_committed_a_contribution(
    world: World,
) -> None:
    w = world
    qid = submit(w, "withheld-names", w.datasets, COST)
    do_work(w, "withheld-names", qid, w.datasets[:1])  # the second provider commits nothing
    absent = w.providers[1].account
    for named in ([absent], [w.outsider.account], [w.nodes[0].account]):
        expect_reason(
            lambda n=named: w.verifiers[0].post_verdict(qid, True, [], n),  # type: ignore[misc]
            "withheld committed nothing",
        )
    # the client sorts the names; a raw call out of order, or naming one twice, is refused
    p0 = w.providers[0].account
    verdict = w.admin.market.functions.post_verdict(qid, True, [], [p0, p0])
    expect_reason(lambda: send(w.verifiers[0], verdict), "withheld not ascending")
    assert w.admin.audit_trail(qid).verdicts == 0
    # the refusal counted no vote: two verdicts naming the contributor withheld settle
    w.verifiers[0].post_verdict(qid, True, [], [p0])
    assert w.verifiers[1].post_verdict(qid, True, [], [p0]).settled
    assert w.admin.owed(p0) == 0
    # neither the withholder nor the provider that never committed is paid (both cuts
    # go back to the analyst, with the pool's rounding remainder); only the latter's
    # budget comes back (its data was never used)
    q = w.admin.query(qid)
    remainder = q.node_pool % len(w.nodes)
    assert w.admin.owed(w.analyst.account) == sum(q.provider_cuts) + remainder
    never_used, withheld = (w.admin.dataset(d) for d in (w.datasets[1], w.datasets[0]))
    assert never_used.budget_remaining == never_used.budget_cap
    assert withheld.budget_remaining == withheld.budget_cap - COST


def test_a_failed_query_refunds_everything_and_still_marks_the_withholder(world: World) -> None:
    w = world
    qid, providers, _ = three_provider_query(w, "withheld-failed")
    total = supply(w, providers[2])
    price = w.admin.query(qid).price
    before = w.worth(w.analyst.account)
    withholder = providers[1]
    for v in w.verifiers[:2]:
        v.post_verdict(qid, False, [], [withholder.account])
    assert w.admin.query(qid).status == "failed"
    assert w.worth(w.analyst.account) - before == price
    assert all(w.admin.owed(p.account) == 0 for p in providers)
    assert w.admin.participant(withholder.account).reputation == -1
    balanced(w, total, providers[2])
