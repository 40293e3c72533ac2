"""The epoch committee drawn from the node pool: weights, beacon, cool-down, endorsement.

On the embedded chain (or ``TESSERA_LEDGER_RPC``'s): eight pool nodes with different
stakes commit to each epoch's beacon, reveal (or not), and the registry draws a
committee of three. The many draws of the frequency test use the pure re-draw of
``tessera.ledger.draw``; a handful of on-chain epochs check that it is the contract's.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from scipy.stats import chisquare

from tessera.crypto.dkg import run_dkg
from tessera.crypto.rng import SeededRng
from tessera.errors import LedgerError
from tessera.ledger import EmbeddedChain, LedgerClient, Listing, deploy
from tessera.ledger.client import CommitteeDrawn, DrawRules
from tessera.ledger.draw import (
    EpochRecord,
    beacon_seed,
    redraw,
    seed_commitment,
    weight,
    weighted_draw,
)

from .conftest import Chain, h, make_chain, point

MIN_STAKE = 1_000
SLASH = 1_000
PENALTY = 1_500
COOLDOWN = 30
RULES = DrawRules(
    cooldown_blocks=COOLDOWN,
    commit_blocks=12,
    reveal_blocks=12,
    reveal_penalty=PENALTY,
    committee_size=3,
    threshold=2,
)
STAKES = (1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000)


def expect_reason(call: Callable[[], object], reason: str) -> None:
    with pytest.raises(LedgerError) as err:
        call()
    assert err.value.reason == reason, err.value


@dataclass
class Pool:
    chain: Chain
    admin: LedgerClient
    nodes: list[LedgerClient]  # in the node pool, staked STAKES
    spare: LedgerClient  # a staked computing node that never joins the pool
    analyst: LedgerClient
    provider: LedgerClient
    verifiers: list[LedgerClient]
    dataset: int

    def mine_to(self, block: int) -> None:
        """Mine until the head is ``block`` (the next transaction lands after it)."""
        head = self.admin.block_number()
        if block > head:
            self.chain.mine(block - head)


def _build() -> Pool:
    chain = make_chain(16)
    deployment = deploy(
        chain, verifiers_per_query=3, min_stake=MIN_STAKE, slash_amount=SLASH, timeout_blocks=200
    )
    a = chain.accounts
    admin = LedgerClient(chain, deployment, a[0])
    nodes = [admin.as_(x) for x in a[1:9]]
    spare, analyst, provider = admin.as_(a[9]), admin.as_(a[10]), admin.as_(a[11])
    verifiers = [admin.as_(x) for x in a[12:15]]
    admin.register_many(
        [
            *((n.account, "node", point(i)) for i, n in enumerate((*nodes, spare))),
            (analyst.account, "analyst", point(20)),
            (provider.account, "provider", point(21)),
            *((v.account, "verifier", point(30 + i)) for i, v in enumerate(verifiers)),
        ]
    )
    admin.set_draw_rules(RULES)
    for n, stake in zip((*nodes, spare), (*STAKES, 5_000), strict=True):
        admin.mint(n.account, 100_000)
        n.stake(stake)
    for n in nodes:
        n.join_node_pool()
    for v in verifiers:
        admin.mint(v.account, 100_000)
        v.stake(MIN_STAKE)
        v.join_pool()
    admin.mint(analyst.account, 100_000)
    listing = Listing(
        bounds={"age": (0, 120)},
        tags=("health",),
        operations=frozenset({"count"}),
        budget_cap=1_000_000,
        price_per_query=1_000,
        node_share_bps=3_000,
    )
    dataset = provider.list_dataset(h("schema"), listing).dataset_id
    return Pool(chain, admin, nodes, spare, analyst, provider, verifiers, dataset)


@dataclass
class _Saved:
    pool: Pool
    snapshot: int


@pytest.fixture(scope="module")
def _saved() -> _Saved:
    pool = _build()
    return _Saved(pool, pool.chain.snapshot())


@pytest.fixture
def pool(_saved: _Saved) -> Iterator[Pool]:
    _saved.pool.chain.revert(_saved.snapshot)
    _saved.pool.admin._committees.clear()  # committee ids are reused after a revert
    _saved.snapshot = _saved.pool.chain.snapshot()  # Hardhat consumes a reverted snapshot
    yield _saved.pool


def run_epoch(
    p: Pool, rng: random.Random, silent: Sequence[LedgerClient] = ()
) -> tuple[int, CommitteeDrawn]:
    """Open an epoch; every pool node commits a fresh secret, all but ``silent`` reveal."""
    opened = p.admin.open_epoch()
    epoch = opened.epoch
    secrets = {n.account: rng.randbytes(32) for n in p.nodes}
    for n in p.nodes:
        n.commit_seed(epoch, secrets[n.account])
    p.mine_to(opened.commit_end)
    for n in p.nodes:
        if n not in silent:
            n.reveal_seed(epoch, secrets[n.account])
    p.mine_to(opened.reveal_end)
    return epoch, p.admin.draw_committee(epoch)


# -- the weights and the frequencies -------------------------------------------------


def set_probabilities(weights: Sequence[int], k: int) -> dict[frozenset[int], float]:
    """Exact probability of each k-set under successive sampling proportional to weight."""
    total = sum(weights)
    out: dict[frozenset[int], float] = Counter()
    for order in itertools.permutations(range(len(weights)), k):
        prob, left = 1.0, total
        for j in order:
            prob *= weights[j] / left
            left -= weights[j]
        out[frozenset(order)] += prob
    return out


def test_selection_frequencies_follow_the_stated_weights() -> None:
    """20,000 seeded draws of 3 out of 8: the drawn sets and the first picks are
    chi-squared consistent with the stated weights, and not with weights that leave out
    reputation or stake (so the test can fail)."""
    stakes = (1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000)
    reputations = (0, 20, -10, 0, 7, -15, 0, -30)  # ×1, ×2, ×½, ×1, ×1.35, ×¼, ×1, ×¼ (floor)
    weights = [weight(s, r) for s, r in zip(stakes, reputations, strict=True)]
    names = [f"0x{i:040x}" for i in range(1, 9)]
    k, draws = 3, 20_000
    sets: Counter[frozenset[int]] = Counter()
    first: Counter[int] = Counter()
    for i in range(draws):
        seed = beacon_seed(i, [h(f"frequency/{i}")])
        drawn = [names.index(a) for a in weighted_draw(seed, names, weights, k)]
        assert len(set(drawn)) == k
        sets[frozenset(drawn)] += 1
        first[drawn[0]] += 1

    def p_value(probabilities: dict[frozenset[int], float]) -> float:
        cats = sorted(probabilities, key=sorted)
        observed = [sets[c] for c in cats]
        expected = [probabilities[c] * draws for c in cats]
        return float(chisquare(observed, expected).pvalue)

    stated = set_probabilities(weights, k)
    assert math.isclose(sum(stated.values()), 1.0)
    assert min(stated.values()) * draws > 5  # the chi-squared approximation holds
    assert p_value(stated) > 1e-3
    obs_first = [first[j] for j in range(8)]
    exp_first = [w / sum(weights) * draws for w in weights]
    assert float(chisquare(obs_first, exp_first).pvalue) > 1e-3
    # the same counts reject weights by stake alone, and uniform weights
    assert p_value(set_probabilities(list(stakes), k)) < 1e-9
    assert p_value(set_probabilities([1] * 8, k)) < 1e-9


def test_the_contract_weight_is_the_stated_function(pool: Pool) -> None:
    p = pool
    for stake in (0, 1, 999, 10**30):
        for rep in (-1_000, -16, -15, -14, -1, 0, 1, 19, 20, 21, 10**6):
            assert p.admin.draw_weight(stake, rep) == weight(stake, rep)
    assert weight(1_000, 0) == 1_000 * 10_000
    assert weight(1_000, 20) == weight(1_000, 99) == 2 * weight(1_000, 0)
    assert weight(1_000, -15) == weight(1_000, -99) == weight(1_000, 0) // 4


# -- the draw on the chain -------------------------------------------------------------


def test_anyone_recomputes_the_contracts_draw_from_the_ledger(pool: Pool) -> None:
    """Three epochs (the first with two silent nodes, so reputations and stakes differ
    afterwards): the pure re-draw from the chain's record is the contract's draw."""
    p = pool
    rng = random.Random(14)
    pool_members = {n.account for n in p.nodes}
    assert set(p.admin.node_pool()) == pool_members
    seen: set[str] = set()
    for e in range(3):
        silent = (p.nodes[3], p.nodes[6]) if e == 0 else ()
        epoch, drawn = run_epoch(p, rng, silent)
        assert epoch == e
        rec = p.admin.epoch(epoch)
        assert rec.status == "drawn" and rec.drawn == drawn.drawn and rec.seed == drawn.seed
        again = redraw(rec)
        assert again.seed == rec.seed
        assert again.drawn == rec.drawn
        assert again.missed == tuple(n.account for n in silent) == drawn.missed
        for node, w in zip(again.candidates, again.weights, strict=True):
            entry = next(x for x in rec.entries if x.node == node)
            assert w == p.admin.draw_weight(entry.stake, entry.reputation)
        assert len(set(rec.drawn)) == 3 and set(rec.drawn) <= pool_members
        seen.update(rec.drawn)
    # after epoch 0, the silent nodes committed with less stake and -10 reputation
    later = p.admin.epoch(1).entries
    assert next(x for x in later if x.node == p.nodes[3].account).stake == STAKES[3] - PENALTY
    assert next(x for x in later if x.node == p.nodes[6].account).reputation == -10
    assert p.spare.account not in seen


def test_a_tampered_record_does_not_redraw_the_same(pool: Pool) -> None:
    """The re-draw depends on every recorded input: a changed stake, reveal or order
    gives another draw (or is refused), so agreement above is not vacuous."""
    p = pool
    epoch, drawn = run_epoch(p, random.Random(3))
    rec = p.admin.epoch(epoch)
    assert redraw(rec).drawn == drawn.drawn

    def changed(**kw: object) -> EpochRecord:
        fields = {f: getattr(rec, f) for f in rec.__dataclass_fields__}
        fields.update(kw)
        return EpochRecord(**fields)  # type: ignore[arg-type]

    first = rec.entries[0]
    with pytest.raises(ValueError, match="does not open its commitment"):
        redraw(changed(entries=(type(first)(**{**_as_dict(first), "secret": h("x")}),)))
    outcomes = set()
    for i in range(len(rec.entries)):
        entries = list(rec.entries)
        entries[i] = type(first)(**{**_as_dict(entries[i]), "stake": entries[i].stake * 50})
        outcomes.add(redraw(changed(entries=tuple(entries))).drawn)
    assert any(o != drawn.drawn for o in outcomes)


def _as_dict(entry: object) -> dict[str, object]:
    return {f: getattr(entry, f) for f in entry.__dataclass_fields__}  # type: ignore[attr-defined]


# -- the beacon ---------------------------------------------------------------------------


def test_a_node_that_does_not_reveal_is_penalised_and_the_draw_still_happens(pool: Pool) -> None:
    p = pool
    silent = p.nodes[7]  # the largest stake: most to gain by choosing between two seeds
    before = p.admin.participant(silent.account)
    burned = p.admin.burned()
    epoch, drawn = run_epoch(p, random.Random(7), silent=(silent,))
    assert drawn.missed == (silent.account,)
    assert len(drawn.drawn) == 3 and silent.account not in drawn.drawn
    after = p.admin.participant(silent.account)
    assert after.stake == before.stake - PENALTY
    assert after.reputation == before.reputation - 10
    assert p.admin.burned() == burned + PENALTY
    # the seed is the XOR of the seven reveals only
    rec = p.admin.epoch(epoch)
    assert rec.seed == beacon_seed(epoch, [e.secret for e in rec.entries if e.secret])
    assert redraw(rec).drawn == drawn.drawn
    # the nodes that revealed lost nothing
    for n in p.nodes[:7]:
        assert p.admin.participant(n.account).reputation == 0


def test_too_few_reveals_close_the_epoch_without_a_committee(pool: Pool) -> None:
    p = pool
    epoch, drawn = run_epoch(p, random.Random(8), silent=p.nodes[2:])
    assert drawn.drawn == () and len(drawn.missed) == 6
    assert p.admin.epoch(epoch).status == "failed"
    expect_reason(
        lambda: p.nodes[0].endorse_drawn_committee(epoch, point(40), [point(41)] * 3),
        "epoch has no drawn committee",
    )
    assert p.admin.open_epoch().epoch == epoch + 1  # the next epoch can start


def test_beacon_windows_and_reveals_are_enforced(pool: Pool) -> None:
    p = pool
    node = p.nodes[0]
    opened = p.admin.open_epoch()
    epoch = opened.epoch
    secret = h("secret")
    expect_reason(lambda: p.admin.open_epoch(), "the previous epoch is not drawn yet")
    node.commit_seed(epoch, secret)
    expect_reason(lambda: node.commit_seed(epoch, secret), "already committed")
    expect_reason(lambda: node.reveal_seed(epoch, secret), "reveal window not open yet")
    expect_reason(lambda: p.spare.commit_seed(epoch, secret), "not in the node pool")
    expect_reason(lambda: p.verifiers[0].commit_seed(epoch, secret), "not in the node pool")
    expect_reason(lambda: p.nodes[1].withdraw_stake(), "nothing to withdraw")
    # a node cannot copy another's commitment: it is bound to the committer
    copied = p.admin.registry.functions.commit_seed(
        epoch, seed_commitment(secret, node.account, epoch)
    )
    p.nodes[1]._tx("commit_seed", copied)
    p.mine_to(opened.commit_end)
    expect_reason(lambda: p.nodes[2].commit_seed(epoch, secret), "commit window closed")
    expect_reason(lambda: p.nodes[2].reveal_seed(epoch, secret), "no commitment to reveal")
    expect_reason(
        lambda: node.reveal_seed(epoch, h("other")), "reveal does not match the commitment"
    )
    expect_reason(
        lambda: p.nodes[1].reveal_seed(epoch, secret), "reveal does not match the commitment"
    )
    node.reveal_seed(epoch, secret)
    expect_reason(lambda: node.reveal_seed(epoch, secret), "already revealed")
    expect_reason(lambda: p.admin.draw_committee(epoch), "reveal window still open")
    expect_reason(lambda: node.leave_node_pool(), "committed to an epoch not drawn yet")
    p.mine_to(opened.reveal_end)
    expect_reason(lambda: p.nodes[1].reveal_seed(epoch, secret), "reveal window closed")
    p.admin.draw_committee(epoch)  # one reveal for a committee of three: failed
    expect_reason(lambda: p.admin.draw_committee(epoch), "epoch already drawn")
    expect_reason(lambda: p.admin.epoch(99), "unknown epoch")


# -- the node pool and the cool-down ---------------------------------------------------------


def test_stake_is_released_only_after_the_cool_down(pool: Pool) -> None:
    p = pool
    node = p.nodes[4]  # 4,000 staked
    expect_reason(lambda: node.unstake(3_500), "leave the node pool first")
    node.unstake(3_000)  # leaves the minimum: it stays in the pool
    b = node.bond()
    assert (b.stake, b.unbonding, b.in_node_pool) == (1_000, 3_000, True)
    expect_reason(lambda: node.withdraw_stake(), "cool-down not over")
    node.leave_node_pool()
    assert node.account not in p.admin.node_pool()
    node.unstake(1_000)  # left just now: still bonded, a second request restarts the clock
    b = node.bond()
    assert (b.stake, b.unbonding) == (0, 4_000) and b.release_block > b.bonded_until - COOLDOWN
    p.mine_to(b.release_block - 2)
    expect_reason(lambda: node.withdraw_stake(), "cool-down not over")
    balance = p.admin.balance(node.account)
    staked = p.admin.total_staked()
    p.mine_to(b.release_block - 1)
    node.withdraw_stake()
    assert p.admin.balance(node.account) == balance + 4_000
    assert p.admin.total_staked() == staked - 4_000
    assert node.bond().unbonding == 0
    # an account outside the node pool keeps the immediate unstake
    spare = p.spare.balance()
    p.spare.unstake(1_000)
    assert p.spare.balance() == spare + 1_000 and p.spare.bond().unbonding == 0
    # once the cool-down after leaving the pool is over, so is the bond
    node.stake(500)
    p.mine_to(node.bond().bonded_until)
    node.unstake(500)
    assert node.bond().unbonding == 0 and p.admin.balance(node.account) == balance + 4_000


def test_a_committed_node_is_slashed_for_silence_from_its_cooling_stake(pool: Pool) -> None:
    """A node asks for most of its stake back after committing; silent, it is penalised
    beyond its active stake, from the stake still cooling down, and cannot withdraw
    before the draw."""
    p = pool
    node = p.nodes[3]  # 3,000 staked
    opened = p.admin.open_epoch()
    epoch = opened.epoch
    secrets = {n.account: h(f"s/{n.account}") for n in p.nodes}
    for n in p.nodes:
        n.commit_seed(epoch, secrets[n.account])
    node.unstake(2_000)  # 1,000 active (the minimum), 2,000 cooling down
    p.mine_to(opened.commit_end)
    for n in p.nodes:
        if n is not node:
            n.reveal_seed(epoch, secrets[n.account])
    p.mine_to(max(opened.reveal_end, node.bond().release_block))
    expect_reason(lambda: node.withdraw_stake(), "committed to an epoch not drawn yet")
    assert p.admin.draw_committee(epoch).missed == (node.account,)
    b = node.bond()
    assert (b.stake, b.unbonding) == (0, 2_000 - (PENALTY - 1_000))
    balance = node.balance()
    node.withdraw_stake()
    assert node.balance() == balance + 1_500


def form_epoch_committee(p: Pool, rng: random.Random) -> tuple[int, tuple[str, ...], int]:
    """Draw an epoch and have its members endorse a (made-up) DKG result."""
    epoch, drawn = run_epoch(p, rng)
    members = sorted(drawn.drawn, key=lambda a: int(a, 16))
    by_account = {n.account: n for n in p.nodes}
    shares = [point(50 + i) for i in range(3)]
    first = by_account[members[0]].endorse_drawn_committee(epoch, point(49), shares)
    assert first.committee_id is None  # n - t + 1 = 2 endorsements form it
    second = by_account[members[1]].endorse_drawn_committee(epoch, point(49), shares)
    assert second.committee_id is not None
    return epoch, tuple(members), second.committee_id


def test_a_query_the_node_served_slashes_it_during_its_cool_down(pool: Pool) -> None:
    p = pool
    _, members, cid = form_epoch_committee(p, random.Random(21))
    qid = p.analyst.submit_query(h("q"), [p.dataset], cid, 1_000, {"count"}).query_id
    by_account = {n.account: n for n in p.nodes}
    cheater = max((by_account[m] for m in members), key=lambda n: n.bond().stake)
    stake = cheater.bond().stake
    p.provider.post_contribution(qid, h("q/contribution"))
    cheater.post_noise(qid, h("q/noise"))
    # it leaves the pool and asks for everything back while the query is open
    cheater.leave_node_pool()
    cheater.unstake(stake)
    b = cheater.bond()
    assert (b.stake, b.unbonding) == (0, stake)
    p.mine_to(b.release_block)
    expect_reason(lambda: cheater.withdraw_stake(), "stake locked by open queries")
    for v in p.verifiers[:2]:
        v.post_verdict(qid, False, [cheater.account])
    assert p.admin.query(qid).status == "failed"
    assert cheater.bond().unbonding == stake - SLASH
    assert p.admin.participant(cheater.account).reputation == -10
    balance = cheater.balance()
    cheater.withdraw_stake()
    assert cheater.balance() == balance + stake - SLASH


# -- the drawn committee runs the DKG and forms --------------------------------------------


def test_the_drawn_members_run_the_dkg_and_form_the_epochs_committee(pool: Pool) -> None:
    p = pool
    epoch, drawn = run_epoch(p, random.Random(5))
    members = sorted(drawn.drawn, key=lambda a: int(a, 16))
    by_account = {n.account: n for n in p.nodes}
    results, _ = run_dkg(3, 2, SeededRng(b"tessera/test/committee-draw"))
    key = results[1].public_key.encode()
    shares = [results[1].public_shares[i].encode() for i in (1, 2, 3)]
    outsider = next(n for n in p.nodes if n.account not in members)
    expect_reason(
        lambda: outsider.endorse_drawn_committee(epoch, key, shares), "caller is not a member"
    )
    expect_reason(
        lambda: by_account[members[0]].endorse_drawn_committee(epoch + 1, key, shares),
        "unknown epoch",
    )
    expect_reason(lambda: p.admin.epoch_committee(epoch), "epoch committee not formed yet")
    cid = None
    for i, account in enumerate(members):  # node i + 1 endorses its own result
        r = results[i + 1]
        assert r.public_key.encode() == key
        cid = by_account[account].endorse_drawn_committee(epoch, key, shares).committee_id
    assert cid is not None and p.admin.epoch_committee(epoch) == cid
    committee = p.admin.committee(cid)
    assert committee.members == tuple(members) and committee.threshold == 2
    assert committee.public_key == key and committee.key_shares == tuple(shares)
    # the existing endorsement flow still forms any other committee of nodes,
    # but only the drawn set is the epoch's
    other = [p.spare.account, outsider.account]
    for n in (p.spare, outsider):
        n.endorse_committee(other, 1, point(60), [point(61), point(62)])
    assert p.admin.epoch_committee(epoch) == cid
    # and queries run on the epoch's committee
    assert p.analyst.submit_query(h("epoch-q"), [p.dataset], cid, 1_000, {"count"}).query_id


# -- limits ---------------------------------------------------------------------------------


def test_limits_are_refused_with_a_reason_that_names_them(pool: Pool) -> None:
    p = pool
    expect_reason(
        lambda: p.admin.set_draw_rules(_rules({"committee_size": 65, "threshold": 2})),
        "committee larger than 64 members",
    )
    expect_reason(
        lambda: p.admin.set_draw_rules(_rules({"committee_size": 5, "threshold": 4})),
        "threshold must satisfy 1 <= t and 2t - 1 <= n",
    )
    expect_reason(
        lambda: p.admin.set_draw_rules(_rules({"reveal_blocks": 0})),
        "beacon windows must be at least 1 block",
    )
    expect_reason(
        lambda: p.nodes[0].set_draw_rules(RULES).tx_hash,  # not through governance
        "access_control: account is missing role",
    )
    p.admin.set_draw_rules(_rules({"committee_size": 9, "threshold": 5}))
    expect_reason(lambda: p.admin.open_epoch(), "committee size exceeds the node pool")
    expect_reason(lambda: p.nodes[0].join_node_pool(), "already in the node pool")
    expect_reason(lambda: p.verifiers[0].join_node_pool(), "not a computing node")
    p.spare.unstake(4_500)
    expect_reason(lambda: p.spare.join_node_pool(), "node under-staked")


def _rules(kw: dict[str, int]) -> DrawRules:
    fields = {f: getattr(RULES, f) for f in RULES.__dataclass_fields__}
    fields.update(kw)
    return DrawRules(**fields)


def test_the_node_pool_holds_at_most_64_nodes() -> None:
    """A chain of its own, no minimum stake (to keep it short): the 65th node is refused,
    naming the limit; a node without stake may sit in the pool but never commit."""
    chain = EmbeddedChain(accounts=66)
    deployment = deploy(chain, min_stake=0, slash_amount=0)
    admin = LedgerClient(chain, deployment, chain.accounts[0])
    nodes = [admin.as_(a) for a in chain.accounts[1:66]]
    admin.register_many([(n.account, "node", b"") for n in nodes])
    for n in nodes[:64]:
        n.join_node_pool()
    expect_reason(lambda: nodes[64].join_node_pool(), "node pool full: 64 nodes at most")
    nodes[0].leave_node_pool()
    nodes[64].join_node_pool()
    assert len(admin.node_pool()) == 64
    epoch = admin.open_epoch().epoch
    expect_reason(lambda: nodes[64].commit_seed(epoch, h("s")), "node under-staked")
