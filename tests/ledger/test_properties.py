"""Random sequences of market and registry actions, checked step by step against a Python model.

A hypothesis state machine lists, updates and delists datasets, submits queries
(many of them refused), commits audit-trail hashes (some parties drop out),
votes verdicts with random cheaters (drawn and undrawn verifiers, split votes),
lets queries run past their deadline and expires them (with their work complete
or not), stakes, unstakes, joins and leaves the verifier pool, changes stake
rules, market parameters (the lock fee) and roles through governance, and rates.

The model predicts each action's outcome under the market's rules (the exact
revert reason, or success), including the verifiers each query draws (the
sortition recomputed from the submission block's hash), and the whole resulting
state; after every step the chain must match it. A refused action leaves the
model as it was, so the comparison also shows it changed nothing on-chain.

Besides chain == model, three properties are checked on the chain's own numbers:

* escrow is conserved: the market holds exactly the price of its open queries,
  and the total supply is all balances, the registry's being the stake still held
  plus the stake burned;
* work that is done is paid: a query that settles with its work complete (by a
  passing quorum or at its deadline) paid every contributing provider its cut and
  every honest working node its share, observed as balance changes on the chain;
* no honest party loses stake: each staker's stake is what it deposited, less
  only slashes it earned as a cheater named by a verdict quorum, as a drawn
  verifier the quorum outvoted, or as a committee member that timed out (asked to
  act, it committed nothing); the registry burned exactly those.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest
from eth_utils import keccak
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tessera.errors import LedgerError
from tessera.ledger import COMMITMENT_KINDS, ROLES, LedgerClient, Listing, query_id_for
from tessera.ledger.client import operations_of

from .conftest import STAKE, World, h, point
from .direct import Reader, send

MAX_UINT = 2**256 - 1
BPS = 10_000
REWARD, PENALTY, ABSENT, TIMEOUT = 1, -10, -1, -2
TIMEOUT_SLASH_DIVISOR = 10  # a timeout burns a tenth of the query's node slash
OPS = ("count", "sum", "mean", "variance", "linear_regression")
POOR_CREDITS = 4_000  # the second analyst can afford only a few queries
PROVIDER_CREDITS = 20_000  # provider 0 also buys (other providers' data)
MAX_DATASETS = 7
MAX_DRAWN = 16
MISSING_ROLE = "access_control: account is missing role"
NOT_OWNER = "ownable: caller is not the owner"
NO_FUNDS = "erc20: transfer amount exceeds balance"
SWEEP_EVERY = 3  # steps between full comparisons of the chain with the model
STATUS = {1: "open", 2: "passed", 3: "failed", 4: "expired", 5: "completed"}
SETTLED = ("passed", "failed", "expired", "completed")

_T = TypeVar("_T")
Verdict = tuple[bool, tuple[str, ...]]


# -- the model -------------------------------------------------------------------


@dataclass
class MDataset:
    provider: str
    budget_cap: int
    budget_spent: int
    price_per_query: int
    price_per_training: int
    node_share_bps: int
    operations: frozenset[str]
    allow_exact: bool
    active: bool = True
    queries: int = 0
    revenue: int = 0
    buyers: set[str] = field(default_factory=set)  # distinct analysts that paid for it
    ratings: dict[str, int] = field(default_factory=dict)  # one per analyst


@dataclass
class MQuery:
    analyst: str
    ticket: bytes
    datasets: tuple[int, ...]
    cuts: tuple[int, ...]
    node_pool: int
    committee: int
    privacy_cost: int
    price: int
    fee: int
    block: int
    deadline: int
    wanted: int
    node_slash: int
    verifier_slash: int
    status: str = "open"
    cheaters: tuple[str, ...] = ()
    commits: dict[str, set[str]] = field(default_factory=dict)
    assigned: tuple[str, ...] | None = None  # None: not drawn yet
    vote_of: dict[str, Verdict] = field(default_factory=dict)
    votes: Counter[Verdict] = field(default_factory=Counter)
    quorum_verdict: Verdict | None = None
    work_done: bool = False  # whether its work was complete when it settled
    observed: dict[str, int] = field(default_factory=dict)  # balance changes at settlement

    def committed(self, kind: str) -> set[str]:
        return self.commits.setdefault(kind, set())


@dataclass
class Slash:
    account: str
    amount: int
    qid: bytes
    why: str  # "cheater", "outvoted" or "timeout"


@dataclass
class Model:
    market: str
    registry: str
    governance: str
    roles: dict[str, set[str]]
    balances: dict[str, int]
    stakes: dict[str, int]
    deposited: dict[str, int]  # stake put in less stake taken out: what no slash touched
    locks: dict[str, int]
    reputation: dict[str, int]
    pool: list[str]
    committees: list[tuple[tuple[str, ...], int]]  # members, threshold
    datasets: list[MDataset]
    supply: int
    min_stake: int
    slash_amount: int
    timeout: int
    verifiers_per_query: int
    lock_fee: int
    burned: int = 0
    slashes: list[Slash] = field(default_factory=list)
    queries: dict[bytes, MQuery] = field(default_factory=dict)
    escrowed: int = 0
    query_count: int = 0
    settled: int = 0
    volume: int = 0
    provider_revenue: Counter[str] = field(default_factory=Counter)
    node_revenue: Counter[str] = field(default_factory=Counter)
    owed: Counter[str] = field(default_factory=Counter)  # credited by settlements (pull)
    served: set[tuple[str, str]] = field(default_factory=set)  # (node, analyst) paid
    ranked: set[int] = field(default_factory=set)  # datasets in the top list

    def providers_of(self, q: MQuery) -> list[str]:
        return [self.datasets[d].provider for d in q.datasets]

    def members(self, q: MQuery) -> tuple[str, ...]:
        return self.committees[q.committee][0]

    def open_queries(self) -> list[bytes]:
        return [qid for qid, q in self.queries.items() if q.status == "open"]

    def work_complete(self, q: MQuery) -> bool:
        members, t = self.committees[q.committee]
        return (
            len(q.committed("contribution")) > 0
            and len(q.committed("aggregate")) > 0
            and len(q.committed("key_switch")) >= t
            and len(q.committed("proof_bundle")) > 0
            and (q.privacy_cost == 0 or len(q.committed("noise")) >= len(members) - t + 1)
        )

    def top(self) -> list[int]:
        ds = self.datasets
        return sorted(self.ranked, key=lambda d: (-len(ds[d].buyers), -ds[d].revenue, d))[:16]


def addr_key(address: str) -> int:
    return int(address, 16)


def sortition(seed: bytes, candidates: Sequence[str], k: int) -> tuple[str, ...]:
    """The contract's draw (sortition.vy): a partial Fisher-Yates shuffle keyed by
    keccak256(seed, i), recomputed from public data."""
    pool = list(candidates)
    m = len(pool)
    drawn = []
    for i in range(min(k, m, MAX_DRAWN)):
        r = int.from_bytes(keccak(seed + i.to_bytes(32, "big")), "big")
        j = i + r % (m - i)
        pool[i], pool[j] = pool[j], pool[i]
        drawn.append(pool[i])
    return tuple(drawn)


# -- the environment: the world, extra participants, the initial model -------------------


@dataclass
class Env:
    world: World
    reader: Reader
    clients: dict[str, LedgerClient]
    analysts: list[str]  # who submits: two analysts, a provider that buys, an outsider
    voters: list[str]  # who votes: pool verifiers, an unpooled one, non-verifiers
    stakers: list[str]  # who may stake: nodes and verifiers (and an outsider)
    poolers: list[str]  # who may join or leave the verifier pool
    everyone: list[str]
    initial: Model
    snapshot: int

    @classmethod
    def prepare(cls, w: World) -> Env:
        """Add a poor analyst, a buying provider, an unpooled verifier, verifiers with a
        stake in other queries (a provider, a node, the analyst), a second committee."""
        admin = w.admin
        poor = admin.as_(w.chain.accounts[11])
        extra = admin.as_(w.chain.accounts[12])  # a staked verifier outside the pool
        p0, n2, analyst = w.providers[0], w.nodes[2], w.analyst
        admin.register_many(
            [
                (poor.account, "analyst", point(21)),
                (extra.account, "verifier", point(36)),
                (p0.account, "analyst", b""),
                *((c.account, "verifier", b"") for c in (p0, n2, analyst)),
            ]
        )
        admin.mint(poor.account, POOR_CREDITS)
        admin.mint(p0.account, PROVIDER_CREDITS)
        admin.mint(extra.account, 2 * STAKE)
        for a in (analyst, poor, p0):
            a.approve(admin.deployment.market, MAX_UINT)
        for s in (*w.nodes, *w.verifiers, p0, analyst, extra):
            s.approve(admin.deployment.registry, MAX_UINT)
        for s in (p0, analyst, extra):
            s.stake(STAKE)
        # headroom: a slash or a small unstake leaves a node or verifier still eligible
        for s in (*w.nodes, *w.verifiers):
            s.stake(2 * STAKE)
        for s in (p0, n2, analyst):
            s.join_pool()
        pair = [w.nodes[0].account, w.nodes[1].account]
        for n in w.nodes[:2]:  # n - t + 1 = 2 endorsements form it
            n.endorse_committee(pair, 1, point(50), [point(51), point(52)])
        clients = [admin, *w.providers, *w.nodes, analyst, poor, *w.verifiers, extra, w.outsider]
        by_address = {c.account: c for c in clients}
        reader = Reader(admin)
        verifiers = [v.account for v in w.verifiers]
        conflicted = [p0.account, n2.account, analyst.account]
        initial = cls._read_model(w, reader, list(by_address))
        return cls(
            world=w,
            reader=reader,
            clients=by_address,
            analysts=[analyst.account, poor.account, p0.account, w.outsider.account],
            voters=[*verifiers, *conflicted, extra.account, poor.account, w.outsider.account],
            stakers=[
                *(n.account for n in w.nodes),
                *verifiers,
                p0.account,
                analyst.account,
                extra.account,
                w.outsider.account,
            ],
            poolers=[*verifiers, *conflicted, extra.account, w.outsider.account],
            everyone=list(by_address),
            initial=initial,
            snapshot=w.chain.snapshot(),
        )

    @staticmethod
    def _read_model(w: World, reader: Reader, accounts: list[str]) -> Model:
        c = w.admin
        d = c.deployment
        count = c.dataset_count()
        committees = int(reader(c.registry, "committee_count"))
        assert c.stats().submitted_queries == 0
        params = c.params()
        stakes = {a: int(reader(c.registry, "stakes", a)) for a in accounts}
        return Model(
            market=d.market,
            registry=d.registry,
            governance=d.governance,
            roles={a: {r for r in ROLES if c.has_role(r, a)} for a in accounts},
            balances={a: c.balance(a) for a in (*accounts, d.market, d.registry, d.governance)},
            stakes=stakes,
            deposited=dict(stakes),
            locks={a: int(reader(c.registry, "locks", a)) for a in accounts},
            reputation={a: int(reader(c.registry, "reputation", a)) for a in accounts},
            pool=c.verifier_pool(),
            committees=[
                (c.committee(i).members, c.committee(i).threshold) for i in range(committees)
            ],
            datasets=[
                MDataset(
                    provider=ds.provider,
                    budget_cap=ds.budget_cap,
                    budget_spent=ds.budget_spent,
                    price_per_query=ds.price_per_query,
                    price_per_training=ds.price_per_training,
                    node_share_bps=ds.node_share_bps,
                    operations=ds.operations,
                    allow_exact=ds.allow_exact,
                    active=ds.active,
                    queries=ds.queries,
                    revenue=ds.revenue,
                )
                for ds in (c.dataset(i) for i in range(count))
            ],
            supply=c.total_supply(),
            min_stake=int(reader(c.registry, "min_stake")),
            slash_amount=int(reader(c.registry, "slash_amount")),
            timeout=params.timeout_blocks,
            verifiers_per_query=params.verifiers_per_query,
            lock_fee=params.lock_fee,
            burned=int(reader(c.registry, "burned")),
        )

    def reset(self) -> None:
        chain = self.world.chain
        chain.revert(self.snapshot)
        self.snapshot = chain.snapshot()  # a JSON-RPC node forgets a snapshot once reverted to


# -- strategies ---------------------------------------------------------------------

picks = st.integers(0, 2**16)
# mostly small costs, so a budget runs out after several queries; some exact (0), some huge
privacy_costs = st.one_of(
    st.integers(1, 200_000), st.just(0), st.just(MAX_UINT), st.integers(1, 20_000)
)
# which parties of a query drop out (bit per step): mostly nobody, so work gets done
dropouts = st.one_of(
    st.just(0), st.integers(0, 2**10 - 1), st.sampled_from([1, 2, 4, 8, 16, 48, 512])
)


def pick(items: Sequence[_T], i: int) -> _T:
    return items[i % len(items)]


# -- the state machine ----------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    ENV: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.env = self.ENV
        self.env.reset()
        self.m = copy.deepcopy(self.env.initial)
        self.c = self.env.world.admin
        self.serial = 0
        self.touched: set[bytes] = set()
        self.block_hashes: dict[int, bytes] = {}
        self.sweeps = 0

    # -- helpers ------------------------------------------------------------------
    def client(self, address: str) -> LedgerClient:
        return self.env.clients[address]

    def label(self, prefix: str) -> bytes:
        self.serial += 1
        return h(f"{prefix}/{self.serial}")

    @staticmethod
    def attempt(expected: str | None, action: Callable[[], _T]) -> _T | None:
        """Run ``action``: it must succeed if ``expected`` is None, else revert with that reason."""
        if expected is None:
            return action()
        with pytest.raises(LedgerError) as err:
            action()
        assert err.value.reason == expected, f"expected {expected!r}, got {err.value.reason!r}"
        return None

    def next_block(self) -> int:
        """The block the next transaction goes into."""
        return int(self.env.reader.block_number()) + 1

    def query_ids(self) -> list[bytes]:
        return list(self.m.queries)

    def some_query(self, i: int, unknown: bool = True) -> bytes:
        """A query the model knows, or (one pick in eight) one never submitted."""
        ids = self.query_ids()
        if not ids or (unknown and i % 8 == 7):
            return h(f"never submitted {i}")
        return pick(ids, i // 8)

    def transfer(self, frm: str, to: str, amount: int) -> None:
        assert 0 <= amount <= self.m.balances[frm]
        self.m.balances[frm] -= amount
        self.m.balances[to] += amount

    def credit(self, to: str, amount: int) -> None:
        """Pull payments: a settlement credits ``to``; the credits stay in the market."""
        assert amount >= 0
        self.m.owed[to] += amount

    def rep(self, account: str, delta: int) -> None:
        self.m.reputation[account] += delta

    def slash(self, account: str, amount: int, qid: bytes, why: str) -> int:
        burned = min(amount, self.m.stakes[account])
        self.m.stakes[account] -= burned
        self.m.burned += burned
        self.m.slashes.append(Slash(account, burned, qid, why))
        # the registry keeps burned stake: it moves from nobody's stake to nobody's balance
        return burned

    # -- catalog ------------------------------------------------------------------
    def list_dataset(
        self, who: int, cap: int, price_query: int, price_training: int, share: int, ops: Any,
        exact: bool,
    ) -> None:  # fmt: skip
        if len(self.m.datasets) >= MAX_DATASETS:
            return
        w = self.env.world
        author = pick([*(p.account for p in w.providers), w.outsider.account], who)
        listing = Listing(
            bounds={"x": (0, 1)},
            operations=ops,
            budget_cap=cap,
            price_per_query=price_query,
            price_per_training=price_training,
            node_share_bps=share,
            allow_exact=exact,
        )
        expected = None if "provider" in self.m.roles[author] else "not a provider"
        schema = self.label("schema")
        listed = self.attempt(expected, lambda: self.client(author).list_dataset(schema, listing))
        if listed is not None:
            assert listed.dataset_id == len(self.m.datasets)
            self.m.datasets.append(
                MDataset(author, cap, 0, price_query, price_training, share, ops, exact)
            )

    def update_dataset(
        self, who: int, which: int, cap_delta: int, price_query: int, share: int, ops: Any,
        exact: bool,
    ) -> None:  # fmt: skip
        author = pick([p.account for p in self.env.world.providers], who)
        d = which % (len(self.m.datasets) + 1)  # the last one is not listed
        spent = self.m.datasets[d].budget_spent if d < len(self.m.datasets) else 0
        cap = max(0, spent + cap_delta)
        listing = Listing(
            bounds={}, operations=ops, budget_cap=cap, price_per_query=price_query,
            price_per_training=price_query * 2, node_share_bps=share, allow_exact=exact,
        )  # fmt: skip
        if d == len(self.m.datasets):
            expected: str | None = "unknown dataset"
        elif self.m.datasets[d].provider != author:
            expected = "not the dataset's provider"
        elif cap < spent:
            expected = "cap below spent budget"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(author).update_dataset(d, listing))
        if expected is None:
            ds = self.m.datasets[d]
            ds.budget_cap, ds.operations, ds.node_share_bps = cap, ops, share
            ds.price_per_query, ds.price_per_training = price_query, price_query * 2
            ds.allow_exact = exact

    def delist_dataset(self, who: int, which: int) -> None:
        author = pick([p.account for p in self.env.world.providers], who)
        d = which % (len(self.m.datasets) + 1)
        if d == len(self.m.datasets):
            expected: str | None = "unknown dataset"
        elif self.m.datasets[d].provider != author:
            expected = "not the dataset's provider"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(author).delist_dataset(d))
        if expected is None:
            self.m.datasets[d].active = False

    @rule(
        action=st.integers(0, 5),
        who=picks,
        which=picks,
        cap=st.integers(0, 1_500_000),
        price_query=st.integers(0, 3_000),
        price_training=st.integers(0, 6_000),
        share=st.integers(0, BPS),
        ops=st.frozensets(st.sampled_from(OPS), max_size=5),
        exact=st.booleans(),
    )
    def catalog(
        self, action: int, who: int, which: int, cap: int, price_query: int,
        price_training: int, share: int, ops: Any, exact: bool,
    ) -> None:  # fmt: skip
        """A provider (or not) lists, delists or updates a dataset (or one never listed)."""
        if action <= 1:
            self.list_dataset(who, cap, price_query, price_training, share, ops, exact)
        elif action == 2:
            self.delist_dataset(who, which)
        else:
            self.update_dataset(who, which, cap - 200_000, price_query, share, ops, exact)

    # -- queries ---------------------------------------------------------------------
    def predict_submit(
        self, who: str, qid: bytes, ids: list[int], committee: int, cost: int,
        ops: frozenset[str], training: bool,
    ) -> str | None:  # fmt: skip
        """The contract's checks, in its order."""
        m = self.m
        if "analyst" not in m.roles[who]:
            return "not an analyst"
        if qid in m.queries:
            return "query already submitted"
        if not ids:
            return "no dataset"
        if not ops:
            return "no operation"
        if committee >= len(m.committees):
            return "unknown committee"
        members = m.committees[committee][0]
        for member in members:
            if "node" not in m.roles[member]:
                return "committee member deregistered"
            if m.stakes[member] < m.min_stake:
                return "committee member under-staked"
        price = 0
        for d in ids:
            if d >= len(m.datasets):
                return "unknown dataset"
            ds = m.datasets[d]
            if not ds.active:
                return "dataset not listed"
            if ds.provider == who:
                return "an analyst cannot buy its own data"
            if not ops <= ds.operations:
                return "operation not allowed"
            if cost == 0 and not ds.allow_exact:
                return "dataset does not allow exact queries"
            if cost > ds.budget_cap - ds.budget_spent:
                return "privacy budget exceeded"
            price += ds.price_per_training if training else ds.price_per_query
        if price + m.lock_fee * len(members) > m.balances[who]:
            return NO_FUNDS  # the escrow or a lock fee transfer
        return None

    @rule(
        who=st.integers(0, 9),
        subset=st.lists(st.integers(0, 15), min_size=1, max_size=3),
        committee=st.integers(0, 9),
        cost=privacy_costs,
        ops_mask=st.integers(0, 2**6 - 1),
        training=st.booleans(),
        reuse=picks,
    )
    def submit_query(
        self, who: int, subset: list[int], committee: int, cost: int, ops_mask: int,
        training: bool, reuse: int,
    ) -> None:  # fmt: skip
        """Any analyst (or not), datasets, committee, cost and operations: many are refused."""
        m = self.m
        analyst = self.env.analysts[[0, 0, 0, 0, 0, 1, 1, 2, 2, 3][who]]
        committee = len(m.committees) if committee == 9 else committee % len(m.committees)
        # 15 is a dataset that was never listed; 14 drops out, so a query may have none
        known = len(m.datasets)
        ids = sorted({known if d == 15 else d % known for d in subset if d != 14})
        ops = self.operations(ids, ops_mask)
        if ops_mask >> 5 & 1:
            ops |= {pick(OPS, ops_mask)}  # perhaps not allowed
        ticket = self.label("query")
        if m.queries and reuse % 5 == 0:
            # an earlier ticket: the same analyst's is taken, another analyst's id is its own
            ticket = m.queries[pick(self.query_ids(), reuse // 5)].ticket
        self.submit(analyst, ticket, ids, committee, cost, ops, training)

    @rule(
        who=st.integers(0, 5),
        subset=st.lists(st.integers(0, 15), min_size=1, max_size=3),
        committee=st.booleans(),
        cost=st.one_of(st.integers(1, 150_000), st.just(0)),
        ops_mask=st.integers(0, 2**5 - 1),
        training=st.booleans(),
        drop=dropouts,
        then=st.sampled_from([2, 4, 0, 3, 5, 1]),
        mask=st.integers(0, 7),
    )
    def buy(
        self, who: int, subset: list[int], committee: bool, cost: int, ops_mask: int,
        training: bool, drop: int, then: int, mask: int,
    ) -> None:  # fmt: skip
        """A well-formed query, then its parties commit, except those that drop out; then
        perhaps its drawn verifiers decide it (passed, failed, with a dissenter)."""
        self.trade_query(who, subset, committee, cost, ops_mask, training, drop, then, mask)

    def trade_query(
        self, who: int, subset: list[int], committee: bool, cost: int, ops_mask: int,
        training: bool, drop: int, then: int, mask: int,
    ) -> bytes | None:  # fmt: skip
        m = self.m
        analyst = self.env.analysts[[0, 0, 0, 1, 2, 2][who]]
        ids = sorted({d % len(m.datasets) for d in subset})
        if analyst == self.env.world.providers[0].account:  # it buys the others' data
            ids = [d for d in ids if m.datasets[d].provider != analyst] or ids
        ops = self.operations(ids, ops_mask) or frozenset({"count"})
        ticket = self.label("query")
        qid = self.submit(analyst, ticket, ids, int(committee), cost, ops, training)
        if qid is None:
            return None
        self.participate(qid, drop)
        if then >= 2:
            dissent = 9 if then < 4 else then - 4  # 9: nobody dissents
            self.decide_on(qid, then % 2 == 0, self.cheaters_of(qid, mask), dissent, False)
        return qid

    @rule(how=st.integers(0, 5))
    def trade(self, how: int) -> None:
        """A routine trade over the first two datasets, everybody working (but in 4): it
        passes (0), fails naming cheaters (1), passes over a dissenter (2), or runs out
        with its work done (3) or not (4), or passes with the other committee (5)."""
        drop = 0b1111111000 if how == 4 else 1 << 9
        then = [2, 3, 4, 0, 0, 2][how]
        mask = 2 if how == 1 else 0  # the second member cheats in 1
        qid = self.trade_query(0, [0, 1], how == 5, 1_000 + how, 7, False, drop, then, mask)
        if qid is not None and how in (3, 4):
            self.run_out_on(qid, 0, False, True)
        if qid is not None and self.m.queries[qid].status in ("passed", "completed"):
            self.rate_as(self.m.queries[qid].analyst, qid, 0, 1 + how)  # rating again replaces

    @initialize(fee=st.sampled_from([10, 0, 25]))
    def a_busy_market(self, fee: int) -> None:
        """Every run starts with a lock fee set by governance and a query whose work is
        complete, left open."""
        self.set_params(True, self.m.timeout, self.m.verifiers_per_query, fee)
        self.trade_query(0, [0, 1], False, 1_000, 1, False, 1 << 9, 0, 0)

    def operations(self, ids: list[int], mask: int) -> frozenset[str]:
        """The operations of ``mask`` among those every listed dataset of ``ids`` allows."""
        listed = [self.m.datasets[d].operations for d in ids if d < len(self.m.datasets)]
        allowed = sorted(frozenset.intersection(*listed)) if listed else []
        return frozenset(op for i, op in enumerate(allowed) if mask >> i & 1)

    def submit(
        self, analyst: str, ticket: bytes, ids: list[int], committee: int, cost: int,
        ops: frozenset[str], training: bool,
    ) -> bytes | None:  # fmt: skip
        m = self.m
        qid = query_id_for(analyst, ticket)
        expected = self.predict_submit(analyst, qid, ids, committee, cost, ops, training)
        kind = "training" if training else "query"
        submitted = self.attempt(
            expected,
            lambda: self.client(analyst).submit_query(
                ticket, ids, committee, cost, ops, kind, approve=False
            ),
        )
        if submitted is None:
            return None  # refused: the model is untouched, so the check shows nothing changed
        assert submitted.query_id == qid
        cuts, pool, price = [], 0, 0
        for d in ids:
            ds = m.datasets[d]
            ds.budget_spent += cost
            ds.queries += 1
            p = ds.price_per_training if training else ds.price_per_query
            node_cut = p * ds.node_share_bps // BPS
            cuts.append(p - node_cut)
            pool += node_cut
            price += p
        members = m.committees[committee][0]
        self.transfer(analyst, m.market, price)
        for member in members:  # the lock fee: paid at once, never refunded
            self.transfer(analyst, member, m.lock_fee)
            m.locks[member] += 1
        m.escrowed += price
        m.query_count += 1
        block = submitted.tx.block
        m.queries[qid] = MQuery(
            analyst=analyst, ticket=ticket, datasets=tuple(ids), cuts=tuple(cuts),
            node_pool=pool, committee=committee, privacy_cost=cost, price=price,
            fee=m.lock_fee * len(members), block=block, deadline=block + m.timeout,
            wanted=m.verifiers_per_query, node_slash=m.slash_amount,
            verifier_slash=m.slash_amount,
        )  # fmt: skip
        self.touched.add(qid)
        return qid

    # -- the verifier draw ---------------------------------------------------------------
    def block_hash(self, number: int) -> bytes:
        known = self.block_hashes.get(number)
        if known is None:
            known = bytes(self.env.world.chain.w3.eth.get_block(number)["hash"])
            self.block_hashes[number] = known
        return known

    def draw_for(self, qid: bytes, block: int) -> tuple[str, ...]:
        """The verifiers a query would draw in ``block`` (or those it drew)."""
        m, q = self.m, self.m.queries[qid]
        if q.assigned is not None:
            return q.assigned
        anchor = q.block
        if block - anchor > 256:  # out of BLOCKHASH's reach: the latest 256-block window
            anchor += (block - anchor - 1) // 256 * 256
        seed = keccak(self.block_hash(anchor) + qid)
        members = m.members(q)
        providers = m.providers_of(q)
        eligible = [
            v
            for v in m.pool
            if v != q.analyst
            and v not in members
            and v not in providers
            and "verifier" in m.roles[v]
            and m.stakes[v] >= m.min_stake
        ]
        return sortition(seed, eligible, q.wanted)

    def drawn(self, qid: bytes, block: int) -> None:
        """A transaction in ``block`` drew the query's verifiers (if not done yet)."""
        q = self.m.queries[qid]
        if q.assigned is None:
            q.assigned = self.draw_for(qid, block)
            for v in q.assigned:
                self.m.locks[v] += 1

    # -- audit trail --------------------------------------------------------------
    def predict_commit(
        self, author: str, qid: bytes, kinds: Sequence[str], block: int
    ) -> str | None:
        m = self.m
        q = m.queries.get(qid)
        if q is None or q.status != "open":
            return "query not open"
        if block > q.deadline:
            return "query past its deadline"
        for kind in kinds:
            if kind == "contribution":
                if "provider" not in m.roles[author]:
                    return "not a provider"
                if author not in m.providers_of(q):
                    return "not a provider of this query"
            elif kind == "result":
                if author != q.analyst:
                    return "not the query's analyst"
            else:
                if "node" not in m.roles[author]:
                    return "not a computing node"
                if author not in m.members(q):
                    return "not a committee member"
            if author in q.committed(kind):
                return "already committed"
        return None

    def do_commit(self, author: str, qid: bytes, kinds: Sequence[str]) -> None:
        block = self.next_block()
        expected = self.predict_commit(author, qid, kinds, block)
        client = self.client(author)
        digests = {k: h(f"{qid.hex()}/{k}/{author}") for k in kinds}
        if len(kinds) == 1:
            self.attempt(expected, lambda: client.commit(qid, kinds[0], digests[kinds[0]]))
        else:
            self.attempt(expected, lambda: client.commit_many(qid, digests))  # type: ignore[arg-type]
        if expected is None:
            for kind in kinds:
                self.m.queries[qid].committed(kind).add(author)
            self.drawn(qid, block)  # the first commitment after submission draws
            self.touched.add(qid)

    @precondition(lambda self: self.m.queries)
    @rule(
        which=picks,
        who=picks,
        # exclusions are not modelled (their budget and refund rules are tested in
        # test_market_games.py): the model would take one for a node's commitment
        kinds=st.lists(
            st.sampled_from([k for k in COMMITMENT_KINDS if k != "exclusion"]),
            min_size=1,
            max_size=2,
            unique=True,
        ),
    )
    def commit(self, which: int, who: int, kinds: list[str]) -> None:
        """A party to the query, or anyone, commits one or two kinds (perhaps late)."""
        qid = self.some_query(which)
        q = self.m.queries.get(qid)
        parties = self.parties(q) if q else []
        self.do_commit(pick([*parties, *self.env.everyone], who), qid, kinds)

    def participate(self, qid: bytes, drop: int) -> None:
        """The parties of an open query commit, except those whose bit of ``drop`` is set:
        bits 0-1 the providers' contributions, bit 2 the first member's aggregate and proof
        bundle, bits 3-8 each member's noise and key switch, bit 9 the analyst's result."""
        q = self.m.queries[qid]
        members = self.m.members(q)
        steps: list[tuple[str, list[str]]] = []
        for i, p in enumerate(dict.fromkeys(self.m.providers_of(q))):
            if not drop >> i & 1:
                steps.append((p, ["contribution"]))
        for i, n in enumerate(members):
            kinds = ["aggregate", "proof_bundle"] if i == 0 and not drop >> 2 & 1 else []
            kinds += [
                k for j, k in enumerate(("noise", "key_switch")) if not drop >> 3 + 2 * i + j & 1
            ]
            if kinds:
                steps.append((n, sorted(kinds, key=COMMITMENT_KINDS.index)))
        if not drop >> 9 & 1:
            steps.append((q.analyst, ["result"]))
        for author, kinds in steps:
            if self.predict_commit(author, qid, kinds, self.next_block()) is None:
                self.do_commit(author, qid, kinds)

    # -- verdicts and settlement ----------------------------------------------------------
    def predict_vote(
        self, who: str, qid: bytes, passed: bool, cheaters: tuple[str, ...], block: int
    ) -> str | None:
        m = self.m
        q = m.queries.get(qid)
        if q is None or q.status != "open":
            return "query not open"
        if block > q.deadline:
            return "query past its deadline"
        if who not in self.draw_for(qid, block):
            return "not a verifier of this query"
        if who in q.vote_of:
            return "already voted"
        if any(c not in m.members(q) for c in cheaters):
            return "cheater not in committee"
        if passed and not m.work_complete(q):
            return "work not complete"
        return None

    def do_vote(self, who: str, qid: bytes, passed: bool, cheaters: tuple[str, ...]) -> None:
        block = self.next_block()
        expected = self.predict_vote(who, qid, passed, cheaters, block)
        settles = False
        if expected is None:
            q = self.m.queries[qid]
            assigned = self.draw_for(qid, block)
            settles = q.votes[passed, cheaters] + 1 >= len(assigned) // 2 + 1
        vote = lambda: self.client(who).post_verdict(qid, passed, cheaters)  # noqa: E731
        posted = self.attempt(expected, lambda: self.observing(qid, settles, vote))
        if posted is None:
            return
        q = self.m.queries[qid]
        self.drawn(qid, block)
        q.vote_of[who] = (passed, cheaters)
        q.votes[passed, cheaters] += 1
        assert posted.settled == settles
        if settles:
            self.judge(qid, (passed, cheaters))
            if passed:
                self.pay_work(qid, cheaters, by_verdict=True)
            else:
                self.fail(qid, cheaters)
        self.touched.add(qid)

    def parties(self, q: MQuery) -> list[str]:
        return list(dict.fromkeys([*self.m.providers_of(q), *self.m.members(q), q.analyst]))

    def observing(self, qid: bytes, settles: bool, action: Callable[[], _T]) -> _T:
        """Run ``action``; if it settles the query, record the changes of what the chain
        shows its providers, members and analyst are owed (pull payments: settlement
        credits, the parties withdraw later)."""
        if not settles:
            return action()
        q = self.m.queries[qid]
        read, market = self.env.reader, self.c.market
        before = {a: int(read(market, "owed", a)) for a in self.parties(q)}
        result = action()
        q.observed = {a: int(read(market, "owed", a)) - b for a, b in before.items()}
        return result

    def judge(self, qid: bytes, verdict: Verdict) -> None:
        """At a quorum: drawn verifiers that agreed gain reputation, the outvoted are
        slashed, the absent lose a little."""
        q = self.m.queries[qid]
        assert q.assigned is not None
        q.quorum_verdict = verdict
        for v in q.assigned:
            vote = q.vote_of.get(v)
            if vote == verdict:
                self.rep(v, REWARD)
            elif vote is None:
                self.rep(v, ABSENT)
            else:
                self.slash(v, q.verifier_slash, qid, "outvoted")
                self.rep(v, PENALTY)

    def pay_providers(self, qid: bytes, pay: bool) -> tuple[int, int]:
        """Contributing providers paid (if ``pay``); the others' cut refunded, budget back."""
        m = self.m
        q = m.queries[qid]
        paid = refund = 0
        for d, cut in zip(q.datasets, q.cuts, strict=True):
            ds = m.datasets[d]
            if ds.provider not in q.committed("contribution"):
                refund += cut
                ds.budget_spent -= q.privacy_cost
                continue
            if not pay:
                continue
            self.credit(ds.provider, cut)
            paid += cut
            m.provider_revenue[ds.provider] += cut
            ds.revenue += cut
            if q.analyst not in ds.buyers:  # distinct paying analysts, not purchases
                ds.buyers.add(q.analyst)
                self.rep(ds.provider, REWARD)
            m.ranked.add(d)
        return paid, refund

    def slash_cheaters(self, qid: bytes, cheaters: tuple[str, ...]) -> None:
        q = self.m.queries[qid]
        for cheater in cheaters:
            self.slash(cheater, q.node_slash, qid, "cheater")
            self.rep(cheater, PENALTY)

    def timeouts(self, qid: bytes) -> None:
        """Once the aggregate is locked every member was asked to act: one that committed
        no noise, aggregate nor key switch loses a tenth of the node slash and reputation."""
        q = self.m.queries[qid]
        if not q.committed("aggregate"):
            return
        acted = q.committed("noise") | q.committed("aggregate") | q.committed("key_switch")
        for n in self.m.members(q):
            if n not in acted:
                self.slash(n, q.node_slash // TIMEOUT_SLASH_DIVISOR, qid, "timeout")
                self.rep(n, TIMEOUT)

    def close(self, qid: bytes, status: str) -> None:
        m = self.m
        q = m.queries[qid]
        m.escrowed -= q.price
        q.status = status
        for a in (*m.members(q), *(q.assigned or ())):
            m.locks[a] -= 1

    def pay_work(self, qid: bytes, cheaters: tuple[str, ...], by_verdict: bool) -> None:
        m = self.m
        q = m.queries[qid]
        q.work_done = m.work_complete(q)
        assert q.work_done
        paid, refund = self.pay_providers(qid, True)
        honest = [
            n
            for n in m.members(q)
            if n not in cheaters and (n in q.committed("noise") or n in q.committed("key_switch"))
        ]
        each = q.node_pool // len(honest) if honest else 0
        refund += q.node_pool - each * len(honest)
        for n in honest:
            self.credit(n, each)
            paid += each
            m.node_revenue[n] += each
            if (n, q.analyst) not in m.served:
                m.served.add((n, q.analyst))
                self.rep(n, REWARD)
        self.slash_cheaters(qid, cheaters)
        self.timeouts(qid)
        assert paid + refund == q.price
        self.credit(q.analyst, refund)
        m.volume += paid
        m.settled += 1
        q.cheaters = cheaters
        self.close(qid, "passed" if by_verdict else "completed")

    def fail(self, qid: bytes, cheaters: tuple[str, ...]) -> None:
        m = self.m
        q = m.queries[qid]
        q.work_done = m.work_complete(q)
        self.pay_providers(qid, False)
        self.slash_cheaters(qid, cheaters)
        self.credit(q.analyst, q.price)  # the whole price back
        m.settled += 1
        q.cheaters = cheaters
        self.close(qid, "failed")

    def cheaters_of(self, qid: bytes, mask: int) -> tuple[str, ...]:
        q = self.m.queries.get(qid)
        pool = list(self.m.members(q)) if q else []
        pool.append(self.env.world.outsider.account)  # never a member: refused
        chosen = {a for i, a in enumerate(pool) if mask >> i & 1}
        if q and mask >> 8 & 1 == 0:
            chosen.discard(self.env.world.outsider.account)
        return tuple(sorted(chosen, key=addr_key))

    @precondition(lambda self: self.m.queries)
    @rule(which=picks, who=picks, passed=st.booleans(), mask=st.integers(0, 511))
    def vote(self, which: int, who: int, passed: bool, mask: int) -> None:
        """Anyone votes: a drawn verifier, an undrawn one, a party to the query, an outsider."""
        qid = self.some_query(which)
        self.do_vote(pick(self.env.voters, who), qid, passed, self.cheaters_of(qid, mask))

    @precondition(lambda self: self.m.open_queries())
    @rule(
        which=picks,
        passed=st.booleans(),
        mask=st.integers(0, 7),
        dissent=st.integers(0, 4),
        undrawn=st.booleans(),
    )
    def decide(self, which: int, passed: bool, mask: int, dissent: int, undrawn: bool) -> None:
        """The drawn verifiers vote the same verdict until the query settles; perhaps one
        of them dissents first (and is outvoted), perhaps an undrawn verifier tries first."""
        qid = pick(self.m.open_queries(), which)
        self.decide_on(qid, passed, self.cheaters_of(qid, mask), dissent, undrawn, which)

    def decide_on(
        self, qid: bytes, passed: bool, cheaters: tuple[str, ...], dissent: int, undrawn: bool,
        which: int = 0,
    ) -> None:  # fmt: skip
        assigned = self.draw_for(qid, self.next_block())
        if undrawn:
            others = [v for v in self.env.voters if v not in assigned]
            self.do_vote(pick(others, which), qid, passed, cheaters)
        if dissent < len(assigned):
            self.do_vote(assigned[dissent], qid, not passed, ())
        for voter in assigned:
            if self.m.queries[qid].status != "open":
                break
            if self.predict_vote(voter, qid, passed, cheaters, self.next_block()) is None:
                self.do_vote(voter, qid, passed, cheaters)

    def do_expire(self, qid: bytes, who: str) -> None:
        q = self.m.queries.get(qid)
        if q is None or q.status != "open":
            expected: str | None = "query not open"
        elif self.next_block() <= q.deadline:
            expected = "query not timed out"
        else:
            expected = None
        action = lambda: self.client(who).expire(qid)  # noqa: E731
        self.attempt(expected, lambda: self.observing(qid, expected is None, action))
        if q is None or expected is not None:
            return
        m = self.m
        for v in q.assigned or ():
            if v not in q.vote_of:
                self.rep(v, ABSENT)
        if m.work_complete(q):  # the analyst could decrypt: the workers are paid
            self.pay_work(qid, (), by_verdict=False)
        else:
            self.timeouts(qid)
            paid, refund = self.pay_providers(qid, True)
            refund += q.node_pool
            assert paid + refund == q.price
            self.credit(q.analyst, refund)
            m.volume += paid
            self.close(qid, "expired")
        self.touched.add(qid)

    @precondition(lambda self: self.m.queries)
    @rule(who=picks)
    def withdraw(self, who: int) -> None:
        """Anyone takes what settlements owe it; refused when nothing is (so twice in a
        row pays nothing the second time)."""
        account = pick(self.env.everyone, who)
        owed = self.m.owed[account]
        expected = None if owed > 0 else "nothing owed to this account"
        done = self.attempt(expected, lambda: self.client(account).withdraw())
        if expected is None:
            assert done is not None and done.amount == owed
            self.transfer(self.m.market, account, owed)
            self.m.owed[account] = 0

    @rule(blocks=st.integers(0, 60), which=picks, who=picks)
    def expire(self, blocks: int, which: int, who: int) -> None:
        """Blocks go by, then anyone asks to settle a query without a verdict."""
        if blocks:
            self.env.world.chain.mine(blocks)
        self.do_expire(self.some_query(which), pick(self.env.everyone, who))

    @precondition(lambda self: self.m.open_queries())
    @rule(which=picks, who=picks, finish=st.booleans(), late=st.booleans())
    def run_out(self, which: int, who: int, finish: bool, late: bool) -> None:
        """An open query's work is finished (or not), its deadline passes (or is about to),
        then someone expires it: the workers are paid if the work is complete."""
        self.run_out_on(pick(self.m.open_queries(), which), who, finish, late)

    def run_out_on(self, qid: bytes, who: int, finish: bool, late: bool) -> None:
        if finish:
            self.participate(qid, 1 << 9)  # everybody, but the analyst keeps quiet
        q = self.m.queries[qid]
        gap = q.deadline - self.next_block() + (1 if late else 0)
        if gap > 0:
            self.env.world.chain.mine(gap)
        self.do_expire(qid, pick(self.env.everyone, who))
        if not late:  # expiring in the deadline block itself is too early
            self.env.world.chain.mine(1)
            self.do_expire(qid, pick(self.env.everyone, who))

    @precondition(lambda self: self.m.queries)
    @rule(which=picks, dataset=picks, stars=st.integers(0, 6), other=st.booleans())
    def rate(self, which: int, dataset: int, stars: int, other: bool) -> None:
        qid = self.some_query(which)
        q = self.m.queries.get(qid)
        if q is None:
            who, d = self.env.analysts[0], dataset % (len(self.m.datasets) + 1)
        else:
            others = [a for a in self.env.analysts if a != q.analyst]
            who = pick(others, dataset) if other else q.analyst
            d = pick([*q.datasets, len(self.m.datasets)], dataset)
        self.rate_as(who, qid, d, stars)

    def rate_as(self, who: str, qid: bytes, d: int, stars: int) -> None:
        q = self.m.queries.get(qid)
        if q is None or who != q.analyst:
            expected: str | None = "not the query's analyst"
        elif q.status not in ("passed", "completed"):
            expected = "query has not passed"
        elif d not in q.datasets:
            expected = "dataset not in query"
        elif not 1 <= stars <= 5:
            expected = "stars must be 1 to 5"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(who).rate(qid, d, stars))
        if q is not None and expected is None:
            self.m.datasets[d].ratings[who] = stars  # rating again replaces

    # -- registry and governance ---------------------------------------------------------
    @rule(
        action=st.integers(0, 11),
        who=picks,
        amount=st.integers(0, 8_000),
        min_stake=st.sampled_from([5_000, 0, 1_000, 12_000]),
        slash=st.sampled_from([5_000, 0, 1_000, 50_000]),
        timeout=st.sampled_from([50, 12, 3]),
        wanted=st.sampled_from([3, 1, 2, 5]),
        fee=st.sampled_from([25, 0, 10, 400]),
    )
    def registry_action(
        self, action: int, who: int, amount: int, min_stake: int, slash: int, timeout: int,
        wanted: int, fee: int,
    ) -> None:  # fmt: skip
        """Stake, unstake, join or leave the pool; governance changes the stake rules, the
        market's parameters (deadline, verifiers per query, lock fee), roles."""
        if action <= 1:
            self.stake(who, 0 if amount == 8_000 else amount % 3_000 + 1)
        elif action <= 3:
            self.unstake(who, amount if amount > 7_000 else amount // 4)
        elif action <= 5:
            self.pool_move(who)
        elif action <= 7:
            self.set_stake_rules(who % 3 != 2, min_stake, slash)
        elif action <= 9:
            self.set_params(who % 4 != 3, timeout, wanted, fee)
        else:
            self.toggle_role(who % 3)

    def stake(self, who: int, amount: int) -> None:
        account = pick(self.env.stakers, who)
        roles = self.m.roles[account]
        if "node" not in roles and "verifier" not in roles:
            expected: str | None = "not a computing node or verifier"
        elif amount == 0:
            expected = "zero amount"
        elif amount > self.m.balances[account]:
            expected = NO_FUNDS
        else:
            expected = None
        self.attempt(expected, lambda: self.client(account).stake(amount))
        if expected is None:
            self.transfer(account, self.m.registry, amount)
            self.m.stakes[account] += amount
            self.m.deposited[account] += amount

    def unstake(self, who: int, amount: int) -> None:
        account = pick(self.env.stakers[:-1], who)
        m = self.m
        if m.locks[account] > 0:
            expected: str | None = "stake locked by open queries"
        elif amount > m.stakes[account]:
            expected = "amount exceeds stake"
        elif account in m.pool and m.stakes[account] - amount < m.min_stake:
            expected = "leave the verifier pool first"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(account).unstake(amount))
        if expected is None:
            self.transfer(m.registry, account, amount)
            m.stakes[account] -= amount
            m.deposited[account] -= amount

    def pool_move(self, who: int) -> None:
        """A verifier joins the pool, or leaves it."""
        account = pick(self.env.poolers, who)
        m = self.m
        if account in m.pool:
            expected = "stake locked by open queries" if m.locks[account] else None
            self.attempt(expected, lambda: self.client(account).leave_pool())
            if expected is None:
                m.pool.remove(account)
            return
        if "verifier" not in m.roles[account]:
            expected = "not a verifier"
        elif m.stakes[account] < m.min_stake:
            expected = "verifier under-staked"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(account).join_pool())
        if expected is None:
            m.pool.append(account)

    def set_stake_rules(self, by_admin: bool, min_stake: int, slash: int) -> None:
        """Governance (no delay) changes the stake rules for later queries; nobody else can,
        not even the admin directly."""
        w = self.env.world
        if by_admin:
            w.admin.set_stake_rules(min_stake, slash)
            self.m.min_stake, self.m.slash_amount = min_stake, slash
            return
        fn = self.c.registry.functions.set_stake_rules(min_stake, slash)
        sender = w.admin if min_stake == 0 else w.nodes[0]
        self.attempt(MISSING_ROLE, lambda: send(sender, fn))

    def set_params(self, by_admin: bool, timeout: int, wanted: int, fee: int) -> None:
        """Governance changes the deadline, the verifiers per query and the lock fee of
        queries submitted from now on; open queries keep theirs."""
        w = self.env.world
        if by_admin:
            w.admin.set_params(timeout, wanted, fee)
            m = self.m
            m.timeout, m.verifiers_per_query, m.lock_fee = timeout, wanted, fee
            return
        fn = self.c.market.functions.set_params(timeout, wanted, fee)
        self.attempt(NOT_OWNER, lambda: send(w.admin, fn))

    def toggle_role(self, which: int) -> None:
        """Governance deregisters (or registers again) the third node, verifier or provider 1."""
        w = self.env.world
        account, role = [
            (w.nodes[2].account, "node"),
            (w.verifiers[2].account, "verifier"),
            (w.providers[1].account, "provider"),
        ][which]
        roles = self.m.roles[account]
        if role in roles:
            w.admin.deregister(account, role)  # type: ignore[arg-type]
            roles.discard(role)
        else:
            w.admin.register(account, role)  # type: ignore[arg-type]
            roles.add(role)

    # -- the invariants -------------------------------------------------------------------
    @invariant()
    def escrow_is_conserved(self) -> None:
        """The market holds the prices of its open queries and what settlements owe, nothing
        else; every credit is in some balance; the registry holds the stakes plus the
        burned stake."""
        m, c, read = self.m, self.c, self.env.reader
        supply = int(read(c.token, "totalSupply"))
        balances = {a: int(read(c.token, "balanceOf", a)) for a in m.balances}
        assert balances == m.balances
        assert supply == m.supply == sum(balances.values())
        open_prices = sum(q.price for q in m.queries.values() if q.status == "open")
        owed = int(read(c.market, "total_owed"))
        assert owed == sum(m.owed.values())
        assert int(read(c.market, "escrowed")) == m.escrowed == open_prices
        assert balances[m.market] == m.escrowed + owed  # escrow held + owed, nothing else
        total_staked = int(read(c.registry, "total_staked"))
        burned = int(read(c.registry, "burned"))
        assert total_staked == sum(m.stakes.values())
        assert balances[m.registry] == total_staked + burned
        assert balances[m.governance] == 0

    @invariant()
    def no_honest_party_loses_stake(self) -> None:
        """Stake only ever leaves by its owner's unstaking, or by a slash it earned: named a
        cheater by a verdict quorum, or a drawn verifier the quorum outvoted. Slashed stake
        is burned, paid to nobody."""
        m, read = self.m, self.env.reader
        slashed: Counter[str] = Counter()
        for s in m.slashes:
            q = m.queries[s.qid]
            if s.why == "timeout":  # a member asked to act (the aggregate locked) that did not
                acted = q.committed("noise") | q.committed("aggregate") | q.committed("key_switch")
                assert q.status in ("passed", "completed", "expired") and q.committed("aggregate")
                assert s.account in m.members(q) and s.account not in acted
                slashed[s.account] += s.amount
                continue
            assert q.status in ("passed", "failed") and q.quorum_verdict is not None
            if s.why == "cheater":
                assert s.account in q.cheaters == q.quorum_verdict[1]
            else:
                assert q.assigned is not None and s.account in q.assigned
                assert q.vote_of[s.account] != q.quorum_verdict
            slashed[s.account] += s.amount
        assert int(read(self.c.registry, "burned")) == m.burned == sum(slashed.values())
        for a in dict.fromkeys(self.env.stakers):
            stake = int(read(self.c.registry, "stakes", a))
            assert stake == m.stakes[a] == m.deposited[a] - slashed[a], a

    @invariant()
    def work_done_is_paid(self) -> None:
        """A query that settled with its work complete paid every contributing provider its
        cut and every honest working node its share (balance changes seen on the chain);
        an expired query still paid the providers whose data it used; a failed one paid
        nobody; the analyst got the rest back."""
        m = self.m
        for q in m.queries.values():
            if q.status == "open":
                continue
            assert q.observed, "a settlement observed on the chain"
            contributed = q.committed("contribution")
            due: Counter[str] = Counter()
            if q.status != "failed":
                for d, cut in zip(q.datasets, q.cuts, strict=True):
                    if m.datasets[d].provider in contributed:
                        due[m.datasets[d].provider] += cut
            for p in dict.fromkeys(m.providers_of(q)):
                assert q.observed[p] == due[p], (p, q.status)
            working = [
                n
                for n in m.members(q)
                if n not in q.cheaters
                and (n in q.committed("noise") or n in q.committed("key_switch"))
            ]
            if q.status in ("passed", "completed"):
                assert q.work_done
                for n in m.members(q):
                    share = q.node_pool // len(working) if n in working else 0
                    assert q.observed[n] == share, n
            else:
                assert all(q.observed[n] == 0 for n in m.members(q))
            if q.status == "expired":
                assert not q.work_done
            paid = sum(v for a, v in q.observed.items() if a != q.analyst)
            assert paid + q.observed[q.analyst] == q.price

    @invariant()
    def queries_match_model(self) -> None:
        """Every query the step touched is as the model has it; the counters too."""
        m, market, read = self.m, self.c.market, self.env.reader
        assert int(read(market, "query_count")) == m.query_count == len(m.queries)
        settled = sum(
            1 for q in m.queries.values() if q.status in ("passed", "failed", "completed")
        )
        assert int(read(market, "settled_queries")) == m.settled == settled
        assert int(read(market, "total_volume")) == m.volume
        for qid in self.touched:  # an untouched query's on-chain record cannot have changed
            self.check_query(qid)
        self.touched.clear()

    @invariant()
    def chain_matches_model(self) -> None:
        """The rest of the state (locks, reputation, pool, parameters, the catalog, revenue):
        every third step and at the end of each run, where a difference left by any earlier
        step still shows (the chain changes only through the steps)."""
        self.sweeps += 1
        if self.sweeps % SWEEP_EVERY:
            return
        self.sweep()

    def teardown(self) -> None:
        self.sweep()

    def sweep(self) -> None:
        m, c, read = self.m, self.c, self.env.reader
        registry, market = c.registry, c.market
        for a in dict.fromkeys(self.env.stakers):
            # one lock per open query whose committee it sits on or that drew it
            expected_locks = sum(
                1
                for q in m.queries.values()
                if q.status == "open" and (a in m.members(q) or a in (q.assigned or ()))
            )
            assert int(read(registry, "locks", a)) == m.locks[a] == expected_locks, a
        for a in m.reputation:
            assert int(read(registry, "reputation", a)) == m.reputation[a], a
        assert [x.lower() for x in read(registry, "pool")] == [x.lower() for x in m.pool]
        assert tuple(read(market, "params")) == (m.timeout, m.verifiers_per_query, m.lock_fee)
        assert int(read(registry, "min_stake")) == m.min_stake
        # budgets: never above the cap; the costs of the queries that used (or may use) it
        for i, ds in enumerate(m.datasets):
            raw = read(self.c.catalog, "dataset", i)
            charged = sum(
                q.privacy_cost
                for q in m.queries.values()
                if i in q.datasets
                and (q.status == "open" or ds.provider in q.committed("contribution"))
            )
            assert raw[7] == ds.budget_spent == charged <= raw[6] == ds.budget_cap
            assert raw[0].lower() == ds.provider.lower()
            assert operations_of(raw[4]) == ds.operations
            assert raw[8:] == (
                ds.price_per_query, ds.price_per_training, ds.node_share_bps, ds.allow_exact,
                ds.active, ds.queries, ds.revenue, len(ds.buyers), sum(ds.ratings.values()),
                len(ds.ratings),
            )  # fmt: skip
        assert list(read(self.c.catalog, "top_datasets", 16)) == m.top()
        for p in self.env.world.providers:
            assert int(read(market, "provider_revenue", p.account)) == m.provider_revenue[p.account]
        for n in self.env.world.nodes:
            assert int(read(market, "node_revenue", n.account)) == m.node_revenue[n.account]
        for a in m.balances:
            assert int(read(market, "owed", a)) == m.owed[a], a

    def check_query(self, qid: bytes) -> None:
        q = self.m.queries[qid]
        read = self.env.reader
        raw = read(self.c.market, "query", qid)
        (analyst, ticket, count, pool, committee, cost, _ops, _kind) = raw[:8]
        (price, fee, status, block, deadline, wanted, node_slash, verifier_slash, ch) = raw[8:]
        entries = read(self.c.market, "query_datasets", qid)
        assert count == len(entries)
        datasets = [e & (2**32 - 1) for e in entries]
        cuts = [e >> 32 for e in entries]
        assert analyst.lower() == q.analyst.lower() and bytes(ticket) == q.ticket
        assert (tuple(datasets), tuple(cuts), pool, committee) == (
            q.datasets, q.cuts, q.node_pool, q.committee,
        )  # fmt: skip
        assert (cost, price, fee, STATUS[status], block) == (
            q.privacy_cost, q.price, q.fee, q.status, q.block,
        )  # fmt: skip
        assert (deadline, wanted, node_slash, verifier_slash) == (
            q.deadline, q.wanted, q.node_slash, q.verifier_slash,
        )  # fmt: skip
        assert [a.lower() for a in ch] == [a.lower() for a in q.cheaters]
        drawn = [a.lower() for a in read(self.c.market, "verifiers_of", qid)]
        assert drawn == [a.lower() for a in q.assigned or ()]
        assert int(read(self.c.market, "verdict_count", qid)) == len(q.vote_of)
        if q.status == "open":
            assert bool(read(self.c.market, "work_complete", qid)) == self.m.work_complete(q)
        else:  # its audit trail is final
            trail: dict[str, set[str]] = {}
            for kind, author, _digest in read(self.c.market, "trail", qid):
                trail.setdefault(COMMITMENT_KINDS[kind], set()).add(author.lower())
            for kind in COMMITMENT_KINDS:
                assert trail.get(kind, set()) == {a.lower() for a in q.committed(kind)}


def test_market_matches_model(world: World) -> None:
    env = Env.prepare(world)

    class Machine(LedgerMachine):
        ENV = env

    run_state_machine_as_test(Machine, settings=settings(max_examples=6, stateful_step_count=25))
