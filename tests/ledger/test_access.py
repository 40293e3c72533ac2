"""Access control: who may do what on the ledger, and that a refusal changes nothing.

Every refused call must revert with the contract's reason (it reaches Python as
``LedgerError.reason``) and leave the state it touched as it was.
"""

from __future__ import annotations

import pytest

from tessera.errors import LedgerError
from tessera.ledger import COMMITMENT_KINDS, LedgerClient, Listing

from .conftest import STAKE, World, h, point
from .direct import send
from .test_flow import run_query

MISSING_ROLE = "access_control: account is missing role"


def expect_reason(call: object, reason: str) -> None:
    assert callable(call)
    with pytest.raises(LedgerError) as err:
        call()
    assert err.value.reason == reason, err.value


def open_query(w: World, label: str) -> bytes:
    return w.analyst.submit_query(h(label), [w.datasets[0]], w.committee, 1_000, {"count"}).query_id


# -- participants -----------------------------------------------------------------------


def test_only_the_admin_registers_mints_and_sets_stake_rules(world: World) -> None:
    w = world
    out = w.outsider
    expect_reason(lambda: out.register(out.account, "verifier", point(50)), MISSING_ROLE)
    expect_reason(lambda: w.providers[0].register(out.account, "node", point(51)), MISSING_ROLE)
    assert not w.admin.has_role("verifier", out.account)
    supply = w.admin.total_supply()
    expect_reason(lambda: out.mint(out.account, 10**6), "erc20: access is denied")
    expect_reason(lambda: w.analyst.mint(w.analyst.account, 1), "erc20: access is denied")
    assert w.admin.total_supply() == supply and w.admin.balance(out.account) == 0
    rules = w.admin.registry.functions.set_stake_rules(0, 0)
    expect_reason(lambda: send(w.nodes[0], rules), MISSING_ROLE)
    assert w.admin.registry.functions.min_stake().call() == STAKE


def test_only_the_market_locks_slashes_and_rewards(world: World) -> None:
    """The registry's market-only entry points refuse every participant, the admin included."""
    w = world
    victim = w.nodes[0].account
    reg = w.admin.registry.functions
    market_only = "only the market"
    for caller in (w.outsider, w.admin, w.nodes[1], w.verifiers[0]):
        expect_reason(lambda c=caller: send(c, reg.slash(victim, STAKE)), market_only)
        expect_reason(lambda c=caller: send(c, reg.lock([victim])), market_only)
        expect_reason(lambda c=caller: send(c, reg.add_reputation(c.account, 100)), market_only)
    p = w.admin.participant(victim)
    assert (p.stake, p.locks, p.reputation) == (STAKE, 0, 0)


def test_stake_and_committee_need_a_registered_node(world: World) -> None:
    w = world
    w.admin.mint(w.outsider.account, STAKE)
    expect_reason(lambda: w.outsider.stake(STAKE), "not a computing node or verifier")
    assert w.admin.balance(w.outsider.account) == STAKE
    members = sorted((w.nodes[0].account, w.outsider.account), key=lambda a: int(a, 16))
    expect_reason(
        lambda: w.nodes[0].endorse_committee(members, 1, point(60), [point(61), point(62)]),
        "member is not a computing node",
    )
    nodes = [n.account for n in w.nodes]
    expect_reason(
        lambda: w.outsider.endorse_committee(
            nodes, 2, point(60), [point(61 + i) for i in range(3)]
        ),
        "caller is not a member",
    )


# -- the catalog ------------------------------------------------------------------------


def test_only_providers_list_and_only_the_owner_changes_a_dataset(world: World) -> None:
    w = world
    listing = Listing(bounds={"x": (0, 1)}, tags=("t",), operations=frozenset({"count"}))
    count = w.admin.dataset_count()
    for who in (w.outsider, w.analyst, w.nodes[0], w.verifiers[0]):
        expect_reason(lambda c=who: c.list_dataset(h("s"), listing), "not a provider")
    assert w.admin.dataset_count() == count
    mine, theirs = w.datasets[0], w.datasets[1]
    before = w.admin.dataset(theirs)
    other = w.providers[0]
    expect_reason(lambda: other.update_dataset(theirs, listing), "not the dataset's provider")
    expect_reason(lambda: other.delist_dataset(theirs), "not the dataset's provider")
    expect_reason(lambda: w.outsider.delist_dataset(mine), "not the dataset's provider")
    assert w.admin.dataset(theirs) == before and w.admin.dataset(mine).active


def test_only_registered_analysts_submit(world: World) -> None:
    w = world
    w.admin.mint(w.outsider.account, 10**6)
    w.outsider.approve(w.admin.deployment.market, 10**6)
    expect_reason(
        lambda: w.outsider.submit_query(h("x"), [w.datasets[0]], w.committee, 1, {"count"}),
        "not an analyst",
    )
    expect_reason(lambda: w.admin.query(h("x")), "unknown query")
    assert w.admin.dataset(w.datasets[0]).budget_spent == 0
    assert w.admin.balance(w.outsider.account) == 10**6 and w.admin.escrowed() == 0


# -- the audit trail --------------------------------------------------------------------


def test_an_unregistered_account_cannot_commit(world: World) -> None:
    w = world
    qid = open_query(w, "unregistered-commit")
    reasons = {
        "contribution": "not a provider",
        "aggregate": "not a computing node",
        "noise": "not a computing node",
        "key_switch": "not a computing node",
        "proof_bundle": "not a computing node",
        "result": "not the query's analyst",
        "exclusion": "not a provider",
    }
    assert set(reasons) == set(COMMITMENT_KINDS)
    for kind, reason in reasons.items():
        expect_reason(lambda k=kind: w.outsider.commit(qid, k, h(k)), reason)
    expect_reason(lambda: w.outsider.commit_many(qid, {"noise": h("n")}), "not a computing node")
    trail = w.admin.audit_trail(qid)
    assert all(not trail.of(kind) for kind in COMMITMENT_KINDS)


def test_registered_parties_commit_only_their_own_part(world: World) -> None:
    w = world
    qid = open_query(w, "wrong-role-commit")  # dataset 0 only: provider 1 is not in it
    expect_reason(
        lambda: w.providers[1].post_contribution(qid, h("c")), "not a provider of this query"
    )
    expect_reason(lambda: w.providers[0].post_result(qid, h("r")), "not the query's analyst")
    expect_reason(lambda: w.analyst.post_noise(qid, h("n")), "not a computing node")
    expect_reason(lambda: w.verifiers[0].post_aggregate(qid, h("a")), "not a computing node")
    # a registered node outside the query's committee
    spare = w.admin.as_(w.chain.accounts[11])
    w.admin.register(spare.account, "node", point(70))
    expect_reason(lambda: spare.post_key_switch(qid, h("k")), "not a committee member")
    # each party commits each kind once
    w.providers[0].post_contribution(qid, h("c0"))
    expect_reason(lambda: w.providers[0].post_contribution(qid, h("c1")), "already committed")
    assert w.admin.audit_trail(qid).of("contribution") == {w.providers[0].account: h("c0")}


def test_an_unregistered_account_cannot_vote(world: World) -> None:
    w = world
    qid = run_query(w, "unregistered-vote", w.datasets)
    for who in (w.outsider, w.admin):
        expect_reason(
            lambda c=who: c.post_verdict(qid, False, [w.nodes[0].account]),
            "not a verifier of this query",
        )
    q = w.admin.query(qid)
    assert q.status == "open" and q.cheaters == ()
    assert w.admin.participant(w.nodes[0].account).stake == STAKE


def test_no_party_to_a_query_can_settle_it(world: World) -> None:
    """A provider, the analyst or a committee node that is also a staked verifier in the
    pool is never drawn for the query, so it cannot vote."""
    w = world
    parties: list[LedgerClient] = [w.providers[0], w.analyst, w.nodes[1]]
    for party in parties:
        w.admin.register(party.account, "verifier", b"")
        w.admin.mint(party.account, STAKE)
        if party is not w.nodes[1]:
            party.stake(STAKE)
        party.join_pool()
    qid = run_query(w, "conflict", w.datasets)
    assert not {p.account for p in parties} & set(w.admin.verifiers_of(qid))
    for party in parties:
        expect_reason(lambda p=party: p.post_verdict(qid, True), "not a verifier of this query")
    # two honest votes still settle it; the refused ones were not counted
    assert not w.verifiers[0].post_verdict(qid, True).settled
    expect_reason(lambda: w.verifiers[0].post_verdict(qid, True), "already voted")
    assert w.verifiers[1].post_verdict(qid, True).settled
    expect_reason(lambda: w.verifiers[2].post_verdict(qid, True), "query not open")
    assert w.admin.query(qid).status == "passed"


def test_a_cheater_named_must_sit_on_the_committee(world: World) -> None:
    w = world
    qid = run_query(w, "bad-cheater", w.datasets)
    expect_reason(
        lambda: w.verifiers[0].post_verdict(qid, False, [w.providers[0].account]),
        "cheater not in committee",
    )
    # the client sorts the cheaters; a raw call out of order is refused (no double slashing)
    ordered = sorted((n.account for n in w.nodes[:2]), key=lambda a: int(a, 16), reverse=True)
    for named in (ordered, [ordered[0], ordered[0]]):
        verdict = w.admin.market.functions.post_verdict(qid, False, named)
        expect_reason(lambda f=verdict: send(w.verifiers[0], f), "cheaters not ascending")
    assert w.admin.participant(w.providers[0].account).reputation == 0


def test_only_the_analyst_rates_after_a_pass_and_counts_once(world: World) -> None:
    w = world
    qid = run_query(w, "rating", w.datasets)
    expect_reason(lambda: w.analyst.rate(qid, w.datasets[0], 5), "query has not passed")
    for v in w.verifiers[:2]:
        v.post_verdict(qid, True)
    expect_reason(lambda: w.providers[0].rate(qid, w.datasets[0], 5), "not the query's analyst")
    expect_reason(lambda: w.analyst.rate(qid, w.datasets[0], 6), "stars must be 1 to 5")
    w.analyst.rate(qid, w.datasets[0], 4)
    w.analyst.rate(qid, w.datasets[0], 1)  # again: replaces, one analyst counts once
    ds = w.admin.dataset(w.datasets[0])
    assert ds.rating == 1.0 and ds.rating_count == 1
