"""Issue 14: a committee member that does not act before the query closes is penalised.

Every member is asked to act in a query (the analyst asks all of them for noise, then for
the key switch of the aggregate the first of them locks), so once the aggregate is locked
on the trail a member that committed no noise, aggregate nor key switch when the query
closes (a verdict quorum, or ``expire`` after the deadline) timed out: it loses
``REPUTATION_TIMEOUT`` (2) and a tenth of the query's node slash, and is not paid. The
query still pays the members that acted. Before any aggregate is locked nobody was asked
for a key switch, and no member is blamed; a failing verdict blames only its cheaters.
"""

from __future__ import annotations

from tessera.ledger import LedgerClient

from .conftest import World, h
from .test_flow import submit

REPUTATION_TIMEOUT = 2
TIMEOUT_SLASH_DIVISOR = 10


def act(w: World, label: str, qid: bytes, acting: list[LedgerClient]) -> None:
    """Both providers contribute; only ``acting`` members commit noise and a key switch,
    the first of them the aggregate and the proof bundle."""
    for p in w.providers:
        p.post_contribution(qid, h(f"{label}/contrib/{p.account}"))
    acting[0].post_aggregate(qid, h(f"{label}/aggregate"))
    for n in acting:
        n.post_noise(qid, h(f"{label}/noise/{n.account}"))
        n.post_key_switch(qid, h(f"{label}/ks/{n.account}"))
    acting[0].post_proof_bundle(qid, h(f"{label}/proofs"))


def standing(w: World, who: list[LedgerClient]) -> dict[str, tuple[int, int]]:
    """Each account's (stake, reputation)."""
    out = {}
    for c in who:
        p = w.admin.participant(c.account)
        out[c.account] = (p.stake, p.reputation)
    return out


def timeout_slash(w: World, qid: bytes) -> int:
    return w.admin.query(qid).node_slash // TIMEOUT_SLASH_DIVISOR


def assert_timed_out(
    w: World, qid: bytes, before: dict[str, tuple[int, int]], idle: LedgerClient
) -> None:
    stake, reputation = before[idle.account]
    penalty = timeout_slash(w, qid)
    assert penalty > 0
    after = w.admin.participant(idle.account)
    assert after.stake == stake - penalty
    assert after.reputation == reputation - REPUTATION_TIMEOUT
    assert w.admin.owed(idle.account) == 0  # and not paid


def test_a_member_that_never_acts_loses_stake_and_reputation_at_the_verdict(
    world: World,
) -> None:
    w = world
    acting, idle = w.nodes[:2], w.nodes[2]
    qid = submit(w, "timeout-verdict", w.datasets)
    act(w, "timeout-verdict", qid, acting)
    assert w.admin.work_complete(qid)  # t = 2 switches, n - t + 1 = 2 noise terms
    before = standing(w, w.nodes)
    burned = w.admin.burned()
    for v in w.verifiers[:2]:
        v.post_verdict(qid, True)
    assert w.admin.query(qid).status == "passed"
    assert_timed_out(w, qid, before, idle)
    assert w.admin.burned() == burned + timeout_slash(w, qid)
    # the query still pays the members that acted, the node pool split between them only
    pool = w.admin.query(qid).node_pool
    for n in acting:
        assert w.admin.owed(n.account) == pool // 2
        stake, reputation = before[n.account]
        after = w.admin.participant(n.account)
        assert after.stake == stake and after.reputation >= reputation
    # a timeout costs less than cheating
    assert timeout_slash(w, qid) < w.admin.query(qid).node_slash


def test_a_member_that_never_acts_loses_stake_and_reputation_at_expire(world: World) -> None:
    w = world
    acting, idle = w.nodes[:2], w.nodes[2]
    qid = submit(w, "timeout-expire", w.datasets)
    act(w, "timeout-expire", qid, acting)
    before = standing(w, w.nodes)
    w.chain.mine(w.admin.query(qid).deadline - w.chain.w3.eth.block_number + 1)
    w.outsider.expire(qid)
    assert w.admin.query(qid).status == "completed"
    assert_timed_out(w, qid, before, idle)
    pool = w.admin.query(qid).node_pool
    for n in acting:
        assert w.admin.owed(n.account) == pool // 2
        assert w.admin.participant(n.account).stake == before[n.account][0]


def test_members_that_did_not_finish_the_work_time_out_at_expire(world: World) -> None:
    """The work is not on the trail (one key switch of t = 2): the analyst gets the node
    pool back, and the two members asked for a key switch that never committed one (nor
    noise) are penalised; the one that locked the aggregate is not."""
    w = world
    label = "timeout-short"
    qid = submit(w, label, w.datasets)
    for p in w.providers:
        p.post_contribution(qid, h(f"{label}/contrib/{p.account}"))
    w.nodes[0].post_aggregate(qid, h(f"{label}/aggregate"))
    assert not w.admin.work_complete(qid)
    before = standing(w, w.nodes)
    w.chain.mine(w.admin.query(qid).deadline - w.chain.w3.eth.block_number + 1)
    w.outsider.expire(qid)
    assert w.admin.query(qid).status == "expired"
    assert w.admin.participant(w.nodes[0].account).stake == before[w.nodes[0].account][0]
    for idle in w.nodes[1:]:
        assert_timed_out(w, qid, before, idle)


def test_no_member_is_penalised_before_anyone_was_asked_for_a_key_switch(
    world: World,
) -> None:
    """No aggregate locked: the analyst stopped before the key switch (say no provider
    answered), so no member was asked to act; nobody loses stake or reputation at expire,
    and the nodes of no committee of the query (a verifier, an outsider) never do."""
    w = world
    label = "timeout-never-asked"
    qid = submit(w, label, w.datasets)
    w.providers[0].post_contribution(qid, h(f"{label}/contrib"))
    everyone = [*w.nodes, *w.verifiers, w.outsider]
    before = standing(w, everyone)
    burned = w.admin.burned()
    w.chain.mine(w.admin.query(qid).deadline - w.chain.w3.eth.block_number + 1)
    w.outsider.expire(qid)
    assert w.admin.query(qid).status == "expired"
    after = standing(w, everyone)
    for c in everyone:
        assert after[c.account][0] == before[c.account][0], c.account
    for n in w.nodes:
        assert after[n.account][1] == before[n.account][1]
    assert w.admin.burned() == burned


def test_a_failing_verdict_penalises_its_cheaters_not_the_idle(world: World) -> None:
    w = world
    acting, idle = w.nodes[:2], w.nodes[2]
    qid = submit(w, "timeout-failed", w.datasets)
    act(w, "timeout-failed", qid, acting)
    before = standing(w, w.nodes)
    cheater = acting[1]
    for v in w.verifiers[:2]:
        v.post_verdict(qid, False, [cheater.account])
    assert w.admin.query(qid).status == "failed"
    assert w.admin.participant(idle.account).stake == before[idle.account][0]
    assert w.admin.participant(idle.account).reputation == before[idle.account][1]
    assert (
        w.admin.participant(cheater.account).stake
        == before[cheater.account][0] - w.admin.query(qid).node_slash
    )
