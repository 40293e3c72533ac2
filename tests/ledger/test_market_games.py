"""The ten ways the market could be gamed, each played against the contracts.

Each test is the attack as a dishonest analyst, node, provider, verifier or admin
would play it, and checks that it now fails or gains nothing. They run on the
embedded chain, and on Hardhat in CI (``TESSERA_LEDGER_RPC``).
"""

from __future__ import annotations

from typing import Any

import pytest
from web3.types import RPCEndpoint

from tessera.errors import LedgerError
from tessera.ledger import EmbeddedChain, LedgerClient, Listing, deploy

from .conftest import STAKE, World, h, point
from .direct import send
from .test_flow import do_work, submit


def balances(w: World, *clients: LedgerClient) -> dict[str, int]:
    return {c.account: w.worth(c.account) for c in clients}


def extra_verifier(w: World, index: int, pool: bool = True) -> LedgerClient:
    """Another registered, staked verifier (account 11 or 12 of the chain)."""
    v = w.admin.as_(w.chain.accounts[index])
    w.admin.register(v.account, "verifier", point(80 + index))
    w.admin.mint(v.account, STAKE)
    v.stake(STAKE)
    if pool:
        v.join_pool()
    return v


# -- 1. a result without paying --------------------------------------------------------
def test_an_analyst_that_never_commits_its_result_still_pays_for_the_work(world: World) -> None:
    w = world
    qid = submit(w, "g1", w.datasets)
    do_work(w, "g1", qid, w.datasets, result=False)  # the analyst decrypts and stays silent
    who = (w.analyst, *w.providers, *w.nodes)
    before = balances(w, *who)
    w.chain.mine(60)
    w.outsider.expire(qid)  # anyone: today this refunded the analyst in full
    q = w.admin.query(qid)
    assert q.status == "completed"
    after = balances(w, *who)
    assert after[w.analyst.account] - before[w.analyst.account] == 1  # the pool's remainder
    assert after[w.providers[0].account] - before[w.providers[0].account] == 700
    assert after[w.providers[1].account] - before[w.providers[1].account] == 1_600
    assert all(after[n.account] - before[n.account] == 233 for n in w.nodes)
    assert w.admin.escrowed() == 0


# -- 2. one verifier denies payment ----------------------------------------------------
def test_one_dissenting_verifier_cannot_deny_payment(world: World) -> None:
    w = world
    qid = submit(w, "g2", w.datasets)
    do_work(w, "g2", qid, w.datasets)
    assert len(w.admin.verifiers_of(qid)) == 3 and w.admin.quorum(qid) == 2
    assert not w.verifiers[0].post_verdict(qid, False).settled
    assert not w.verifiers[1].post_verdict(qid, True).settled
    assert w.verifiers[2].post_verdict(qid, True).settled
    assert w.admin.query(qid).status == "passed"
    assert w.admin.participant(w.verifiers[0].account).stake == 0  # outvoted: slashed


def test_racing_slow_verifiers_to_expiry_does_not_refund_done_work(world: World) -> None:
    w = world
    qid = submit(w, "g2b", [w.datasets[0]])
    do_work(w, "g2b", qid, [w.datasets[0]])
    w.verifiers[0].post_verdict(qid, False)  # one vote, no quorum
    before = w.worth(w.analyst.account)
    w.chain.mine(60)
    with pytest.raises(LedgerError, match="query past its deadline"):
        w.verifiers[1].post_verdict(qid, True)
    w.analyst.expire(qid)
    assert w.admin.query(qid).status == "completed"
    assert w.worth(w.analyst.account) == before  # 300 splits evenly: no refund


# -- 3. whoever holds quorum votes decides ----------------------------------------------
def test_only_the_verifiers_drawn_for_a_query_vote_on_it(world: World) -> None:
    w = world
    extra = [extra_verifier(w, 11), extra_verifier(w, 12)]
    # a party to the query is never drawn, even if it is a staked verifier in the pool
    w.admin.register(w.providers[0].account, "verifier", b"")
    w.admin.mint(w.providers[0].account, STAKE)
    w.providers[0].stake(STAKE)
    w.providers[0].join_pool()
    qid = submit(w, "g3", w.datasets)
    do_work(w, "g3", qid, w.datasets)
    drawn = w.admin.verifiers_of(qid)
    everyone = {v.account for v in (*w.verifiers, *extra)}
    assert len(drawn) == 3 and set(drawn) <= everyone
    assert w.providers[0].account not in drawn
    for v in (*w.verifiers, *extra, w.providers[0]):
        if v.account not in drawn:
            with pytest.raises(LedgerError, match="not a verifier of this query"):
                v.post_verdict(qid, False, [w.nodes[0].account])
    assert w.admin.query(qid).status == "open"
    assert w.admin.participant(w.nodes[0].account).stake == STAKE


def test_colluding_verifiers_that_frame_honest_nodes_give_the_analyst_nothing(
    world: World,
) -> None:
    w = world
    qid = submit(w, "g3b", w.datasets)
    do_work(w, "g3b", qid, w.datasets)
    before = w.worth(w.analyst.account)
    framed = sorted((n.account for n in w.nodes), key=lambda a: int(a, 16))
    w.verifiers[0].post_verdict(qid, True, framed)
    assert w.verifiers[1].post_verdict(qid, True, framed).settled
    # the analyst paid the price and got back only the node pool nobody honest earned:
    # the slashed stakes are burned, not handed to it
    assert w.worth(w.analyst.account) - before == 700
    assert w.admin.burned() == 3 * STAKE


# -- 4. stake lock at no cost ----------------------------------------------------------
def test_locking_a_committee_costs_a_fee_that_never_comes_back(world: World) -> None:
    w = world
    w.admin.set_params(50, 3, 25)  # governance: a lock fee of 25 per member
    nodes_before = balances(w, *w.nodes)
    analyst_before = w.worth(w.analyst.account)
    qid = submit(w, "g4", [w.datasets[0]])
    assert w.admin.query(qid).fee == 75
    assert all(w.admin.participant(n.account).locks == 1 for n in w.nodes)
    w.chain.mine(60)
    w.analyst.expire(qid)
    assert w.worth(w.analyst.account) == analyst_before - 75
    assert all(w.worth(n.account) - nodes_before[n.account] == 25 for n in w.nodes)


def test_an_exact_query_needs_every_dataset_to_allow_it(world: World) -> None:
    w = world
    with pytest.raises(LedgerError) as err:
        submit(w, "g4b", [w.datasets[0]], 0)
    assert err.value.reason == "dataset does not allow exact queries"
    w.providers[0].update_dataset(
        w.datasets[0],
        Listing(bounds={"age": (0, 120)}, budget_cap=1_000_000, allow_exact=True),
    )
    submit(w, "g4c", [w.datasets[0]], 0)


# -- 5. committees without consent ------------------------------------------------------
def test_a_committee_forms_only_when_n_minus_t_plus_1_members_endorsed_it(world: World) -> None:
    """A node alone (up to t - 1 = 1 of 3) cannot put the others in a committee with key
    shares it made up; it takes n - t + 1 = 2 endorsements of the very same proposal."""
    w = world
    members = [n.account for n in w.nodes]
    made_up = [point(90 + i) for i in range(3)]
    count = w.admin.registry.functions.committee_count().call()
    first = w.nodes[0].endorse_committee(members, 2, point(89), made_up)
    assert first.committee_id is None
    with pytest.raises(LedgerError, match="committee not formed yet"):
        w.admin.committee_of(first.proposal)
    with pytest.raises(LedgerError, match="already endorsed"):
        w.nodes[0].endorse_committee(members, 2, point(89), made_up)
    other = w.nodes[1].endorse_committee(members, 2, point(89), [point(99)] * 3)
    assert other.committee_id is None  # another proposal: nothing adds up
    assert w.admin.registry.functions.committee_count().call() == count
    with pytest.raises(LedgerError, match="unknown committee"):
        w.analyst.submit_query(h("g5"), [w.datasets[0]], count, 1, {"count"})
    last = w.nodes[2].endorse_committee(members, 2, point(89), made_up)
    assert last.committee_id == count == w.admin.committee_of(first.proposal)


# -- 6. free budget exhaustion -----------------------------------------------------------
def test_budget_spent_by_a_query_that_used_no_data_comes_back(world: World) -> None:
    w = world
    d = w.datasets[1]  # cap 500_000
    qid = submit(w, "g6", [d], 500_000, ops={"count"})
    assert w.admin.dataset(d).budget_remaining == 0
    w.chain.mine(60)
    w.analyst.expire(qid)  # nobody contributed: the data was never used
    assert w.admin.dataset(d).budget_remaining == 500_000
    # once the data is used, the budget stays spent and the provider is paid for it
    qid = submit(w, "g6b", [d], 400_000, ops={"count"})
    w.providers[1].post_contribution(qid, h("g6b/c"))
    before = w.worth(w.providers[1].account)
    w.chain.mine(60)
    w.analyst.expire(qid)
    assert w.admin.query(qid).status == "expired"
    assert w.admin.dataset(d).budget_remaining == 100_000
    assert w.worth(w.providers[1].account) - before == 1_600


def test_an_excluded_provider_keeps_its_budget_spent_and_earns_no_cut(world: World) -> None:
    """A provider that looked at its data and left it out (below its minimum cohort) says
    so on-chain: its budget stays spent (the look itself tells something), its cut goes
    back to the analyst, and it cannot also contribute."""
    w = world
    d = w.datasets[1]
    qid = submit(w, "g6c", [d], 100_000, ops={"count"})
    w.providers[1].commit(qid, "exclusion", h("g6c/excluded"))
    with pytest.raises(LedgerError, match="already committed"):
        w.providers[1].post_contribution(qid, h("g6c/c"))
    before = w.worth(w.providers[1].account)
    w.chain.mine(60)
    w.analyst.expire(qid)
    assert w.admin.dataset(d).budget_spent == 100_000
    assert w.worth(w.providers[1].account) == before


# -- 7. catalog flooding ------------------------------------------------------------------
def test_nobody_can_fill_a_tag_index_for_the_others(world: World) -> None:
    w = world
    flood = Listing(bounds={}, tags=("health",), operations=frozenset({"count"}))
    for i in range(260):  # over the old index's 256
        w.providers[1].list_dataset(h(f"flood/{i}"), flood)
    late = w.providers[0].list_dataset(h("late"), flood).dataset_id
    found = w.admin.search("health")
    assert len(found) == 262 and late in found and w.datasets[0] in found


# -- 8. query-id squatting -----------------------------------------------------------------
def test_a_query_id_cannot_be_taken_by_another_analyst(world: World) -> None:
    w = world
    thief = w.outsider
    w.admin.register(thief.account, "analyst", point(95))
    w.admin.mint(thief.account, 10**5)
    ticket = h("victim's ticket")
    stolen = thief.submit_query(ticket, [w.datasets[0]], w.committee, 1, {"count"}).query_id
    mine = w.analyst.submit_query(ticket, [w.datasets[0]], w.committee, 1, {"count"}).query_id
    assert stolen != mine
    assert w.admin.query(mine).analyst == w.analyst.account
    assert w.admin.query(stolen).analyst == thief.account


# -- 9. wash trading --------------------------------------------------------------------------
def test_a_provider_cannot_buy_its_own_data_nor_inflate_its_rank(world: World) -> None:
    w = world
    seller = w.providers[0]
    w.admin.register(seller.account, "analyst", b"")
    w.admin.mint(seller.account, 10**5)
    with pytest.raises(LedgerError) as err:
        seller.submit_query(h("g9"), [w.datasets[0]], w.committee, 1, {"count"})
    assert err.value.reason == "an analyst cannot buy its own data"
    # one real analyst buying five times counts once for reputation, rank and rating
    for i in range(5):
        qid = submit(w, f"g9/{i}", [w.datasets[0]], 1, ops={"count"})
        do_work(w, f"g9/{i}", qid, [w.datasets[0]])
        w.verifiers[0].post_verdict(qid, True)
        w.verifiers[1].post_verdict(qid, True)
        w.analyst.rate(qid, w.datasets[0], 5)
    ds = w.admin.dataset(w.datasets[0])
    assert ds.buyers == 1 and ds.rating_count == 1 and ds.revenue == 5 * 700
    assert w.admin.participant(seller.account).reputation == 1


# -- 10. an admin that can do anything, at once -------------------------------------------
def test_the_admin_acts_only_through_governance_and_never_slashes(world: World) -> None:
    w = world
    reg = w.admin.registry.functions
    victim = w.nodes[0].account
    missing = "access_control: account is missing role"
    for fn in (
        reg.register(w.admin.account, reg.NODE_ROLE().call(), b""),
        reg.set_stake_rules(0, 0),
        reg.grantRole(reg.DEFAULT_ADMIN_ROLE().call(), w.admin.account),
    ):
        with pytest.raises(LedgerError) as err:
            send(w.admin, fn)
        assert err.value.reason == missing
    with pytest.raises(LedgerError) as err:
        send(w.admin, reg.bind_market(w.admin.account))
    assert err.value.reason == missing
    # slashing is the market's alone, at a verdict; governance cannot call it either
    with pytest.raises(LedgerError, match="only the market"):
        w.admin.govern("slash", [(w.admin.registry, "slash", [victim, STAKE])])
    with pytest.raises(LedgerError) as err:
        send(w.admin, w.admin.market.functions.set_params(1, 1, 0))
    assert err.value.reason == "ownable: caller is not the owner"
    assert w.admin.participant(victim).stake == STAKE


def test_rule_changes_never_reach_a_query_already_open(world: World) -> None:
    w = world
    qid = submit(w, "g10", w.datasets)
    deadline = w.admin.query(qid).deadline
    w.admin.set_stake_rules(STAKE, 1)  # slash 1 credit from now on
    w.admin.set_params(5, 1, 0)  # and a 5-block deadline, one verifier
    assert w.admin.query(qid).deadline == deadline
    do_work(w, "g10", qid, w.datasets)
    cheater = w.nodes[2].account
    w.verifiers[0].post_verdict(qid, False, [cheater])
    assert w.verifiers[1].post_verdict(qid, False, [cheater]).settled
    assert w.admin.participant(cheater).stake == 0  # the rule it was submitted under


def _advance_time(chain: Any, seconds: int) -> None:
    if isinstance(chain, EmbeddedChain):
        block = chain.w3.eth.get_block("latest")
        chain.tester.time_travel(int(block["timestamp"]) + seconds)
    else:
        chain.w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [seconds])
        chain.w3.provider.make_request(RPCEndpoint("evm_mine"), [])


def test_admin_actions_wait_for_the_timelock(world: World) -> None:
    w = world
    delayed = deploy(w.chain, w.admin.account, governance_delay=3_600)
    admin = LedgerClient(w.chain, delayed, w.admin.account)
    admin.set_stake_rules(7, 7)
    reg = admin.registry.functions
    assert reg.min_stake().call() != 7  # scheduled, in public, not applied
    with pytest.raises(LedgerError, match="not ready"):
        admin.execute_governance()
    _advance_time(w.chain, 3_601)
    admin.execute_governance()
    assert reg.min_stake().call() == 7
