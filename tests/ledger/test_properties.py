"""Random sequences of market and registry actions, checked step by step against a Python model.

A hypothesis state machine lists, updates and delists datasets, submits queries
(many of them refused), commits audit-trail hashes (some parties drop out),
votes verdicts with random cheaters, expires queries, stakes, unstakes, changes
stake rules and roles, and rates. The model predicts each action's outcome
(the exact revert reason, or success) and the whole resulting state; after
every step the chain must match it. A refused action leaves the model as it
was, so the comparison also shows it changed nothing on-chain.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tessera.errors import LedgerError
from tessera.ledger import COMMITMENT_KINDS, ROLES, LedgerClient, Listing
from tessera.ledger.client import operations_of

from .conftest import World, h, point
from .direct import Reader, send

MAX_UINT = 2**256 - 1
BPS = 10_000
REWARD, PENALTY = 1, -10
OPS = ("count", "sum", "mean", "variance", "linear_regression")
POOR_CREDITS = 4_000  # the second analyst can afford only a few queries
MAX_DATASETS = 7
MISSING_ROLE = "access_control: account is missing role"
NO_FUNDS = "erc20: transfer amount exceeds balance"
STATUS = {1: "open", 2: "passed", 3: "failed", 4: "expired"}

_T = TypeVar("_T")


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
    active: bool
    queries: int
    revenue: int
    rating_sum: int
    rating_count: int


@dataclass
class MQuery:
    analyst: str
    datasets: tuple[int, ...]
    cuts: tuple[int, ...]
    node_pool: int
    committee: int
    privacy_cost: int
    price: int
    block: int
    status: str = "open"
    cheaters: tuple[str, ...] = ()
    commits: dict[str, set[str]] = field(default_factory=dict)
    voted: set[str] = field(default_factory=set)
    votes: Counter[tuple[bool, tuple[str, ...]]] = field(default_factory=Counter)
    rated: set[int] = field(default_factory=set)

    def committed(self, kind: str) -> set[str]:
        return self.commits.setdefault(kind, set())


@dataclass
class Model:
    market: str
    registry: str
    roles: dict[str, set[str]]
    balances: dict[str, int]
    stakes: dict[str, int]
    locks: dict[str, int]
    reputation: dict[str, int]
    committees: list[tuple[str, ...]]
    datasets: list[MDataset]
    supply: int
    min_stake: int
    slash_amount: int
    quorum: int
    timeout: int
    queries: dict[bytes, MQuery] = field(default_factory=dict)
    escrowed: int = 0
    query_count: int = 0
    settled: int = 0
    volume: int = 0
    provider_revenue: Counter[str] = field(default_factory=Counter)
    node_revenue: Counter[str] = field(default_factory=Counter)

    def providers_of(self, q: MQuery) -> list[str]:
        return [self.datasets[d].provider for d in q.datasets]

    def open_queries(self) -> list[bytes]:
        return [qid for qid, q in self.queries.items() if q.status == "open"]


def addr_key(address: str) -> int:
    return int(address, 16)


# -- the environment: the world, extra participants, the initial model -------------------


@dataclass
class Env:
    world: World
    reader: Reader
    clients: dict[str, LedgerClient]
    analysts: list[str]  # who submits: two analysts, a provider and an outsider
    voters: list[str]  # who votes: verifiers, conflicted verifiers and non-verifiers
    everyone: list[str]
    initial: Model
    snapshot: int

    @classmethod
    def prepare(cls, w: World) -> Env:
        """Add a poor analyst, a second committee and conflicted verifiers; read the model."""
        admin = w.admin
        poor = admin.as_(w.chain.accounts[11])
        admin.register(poor.account, "analyst", point(21))
        admin.mint(poor.account, POOR_CREDITS)
        for a in (w.analyst, poor):
            a.approve(admin.deployment.market, MAX_UINT)
        for n in w.nodes:
            n.approve(admin.deployment.registry, MAX_UINT)
        # a provider, a node and the analyst who also verify (conflicted on their own queries)
        for c in (w.providers[0], w.nodes[2], w.analyst):
            admin.register(c.account, "verifier")
        w.nodes[0].create_committee(
            [w.nodes[0].account, w.nodes[1].account], 1, point(50), [point(51), point(52)]
        )
        clients = [admin, *w.providers, *w.nodes, w.analyst, poor, *w.verifiers, w.outsider]
        by_address = {c.account: c for c in clients}
        reader = Reader(admin)
        initial = cls._read_model(w, reader, list(by_address))
        return cls(
            world=w,
            reader=reader,
            clients=by_address,
            analysts=[w.analyst.account, poor.account, w.providers[0].account, w.outsider.account],
            voters=[
                *(v.account for v in w.verifiers),
                w.providers[0].account,
                w.nodes[2].account,
                w.analyst.account,
                poor.account,
                w.outsider.account,
            ],
            everyone=list(by_address),
            initial=initial,
            snapshot=w.chain.snapshot(),
        )

    @staticmethod
    def _read_model(w: World, reader: Reader, accounts: list[str]) -> Model:
        c = w.admin
        market, registry = c.deployment.market, c.deployment.registry
        count = c.dataset_count()
        committees = int(reader(c.registry, "committee_count"))
        assert c.stats().submitted_queries == 0
        return Model(
            market=market,
            registry=registry,
            roles={a: {r for r in ROLES if c.has_role(r, a)} for a in accounts},
            balances={a: c.balance(a) for a in (*accounts, market, registry)},
            stakes={a: int(reader(c.registry, "stakes", a)) for a in accounts},
            locks={a: int(reader(c.registry, "locks", a)) for a in accounts},
            reputation={a: int(reader(c.registry, "reputation", a)) for a in accounts},
            committees=[c.committee(i).members for i in range(committees)],
            datasets=[
                MDataset(
                    provider=d.provider,
                    budget_cap=d.budget_cap,
                    budget_spent=d.budget_spent,
                    price_per_query=d.price_per_query,
                    price_per_training=d.price_per_training,
                    node_share_bps=d.node_share_bps,
                    operations=d.operations,
                    active=d.active,
                    queries=d.queries,
                    revenue=d.revenue,
                    rating_sum=d.rating_sum,
                    rating_count=d.rating_count,
                )
                for d in (c.dataset(i) for i in range(count))
            ],
            supply=c.total_supply(),
            min_stake=int(reader(c.registry, "min_stake")),
            slash_amount=int(reader(c.registry, "slash_amount")),
            quorum=int(reader(c.market, "quorum")),
            timeout=int(reader(c.market, "timeout_blocks")),
        )

    def reset(self) -> None:
        chain = self.world.chain
        chain.revert(self.snapshot)
        self.snapshot = chain.snapshot()  # a JSON-RPC node forgets a snapshot once reverted to


# -- strategies ---------------------------------------------------------------------

picks = st.integers(0, 2**16)
# mostly small costs, so a budget runs out after several queries; one in ten overflows
privacy_costs = st.integers(-20_000, 200_000).map(lambda c: MAX_UINT if c < 0 else c)


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

    # -- catalog ------------------------------------------------------------------
    @rule(
        who=picks,
        cap=st.integers(0, 1_500_000),
        price_query=st.integers(0, 3_000),
        price_training=st.integers(0, 6_000),
        share=st.integers(0, BPS),
        ops=st.frozensets(st.sampled_from(OPS), max_size=5),
    )
    def list_dataset(
        self, who: int, cap: int, price_query: int, price_training: int, share: int, ops: Any
    ) -> None:
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
        )
        expected = None if "provider" in self.m.roles[author] else "not a provider"
        schema = self.label("schema")
        listed = self.attempt(expected, lambda: self.client(author).list_dataset(schema, listing))
        if listed is not None:
            assert listed.dataset_id == len(self.m.datasets)
            self.m.datasets.append(
                MDataset(author, cap, 0, price_query, price_training, share, ops, True, 0, 0, 0, 0)
            )

    def update_dataset(
        self, who: int, which: int, cap_delta: int, price_query: int, share: int, ops: Any
    ) -> None:
        author = pick([p.account for p in self.env.world.providers], who)
        d = which % (len(self.m.datasets) + 1)  # the last one is not listed
        spent = self.m.datasets[d].budget_spent if d < len(self.m.datasets) else 0
        cap = max(0, spent + cap_delta)
        listing = Listing(
            bounds={}, operations=ops, budget_cap=cap, price_per_query=price_query,
            price_per_training=price_query * 2, node_share_bps=share,
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
        delist=st.integers(0, 3),
        who=picks,
        which=picks,
        cap_delta=st.integers(-200_000, 1_000_000),
        price_query=st.integers(0, 3_000),
        share=st.integers(0, BPS),
        ops=st.frozensets(st.sampled_from(OPS), max_size=5),
    )
    def change_listing(
        self, delist: int, who: int, which: int, cap_delta: int, price_query: int, share: int,
        ops: Any,
    ) -> None:  # fmt: skip
        if delist == 0:
            self.delist_dataset(who, which)
        else:
            self.update_dataset(who, which, cap_delta, price_query, share, ops)

    # -- queries ---------------------------------------------------------------------
    def predict_submit(
        self, who: str, qid: bytes, ids: list[int], committee: int, cost: int,
        ops: frozenset[str], training: bool,
    ) -> str | None:  # fmt: skip
        m = self.m
        if any(d >= len(m.datasets) for d in ids):
            return "unknown dataset"  # the client reads each dataset to quote the price first
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
        for member in m.committees[committee]:
            if "node" not in m.roles[member]:
                return "committee member deregistered"
            if m.stakes[member] < m.min_stake:
                return "committee member under-staked"
        price = 0
        for d in ids:
            ds = m.datasets[d]
            if not ds.active:
                return "dataset not listed"
            if not ops <= ds.operations:
                return "operation not allowed"
            if cost > ds.budget_cap - ds.budget_spent:
                return "privacy budget exceeded"
            price += ds.price_per_training if training else ds.price_per_query
        if price > m.balances[who]:
            return NO_FUNDS
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
        analyst = self.env.analysts[[0, 0, 0, 0, 0, 0, 1, 1, 2, 3][who]]
        committee = len(m.committees) if committee == 9 else committee % len(m.committees)
        # 15 is a dataset that was never listed; 14 drops out, so a query may have none
        known = len(m.datasets)
        ids = sorted({known if d == 15 else d % known for d in subset if d != 14})
        ops = self.operations(ids, ops_mask)
        if ops_mask >> 5 & 1:
            ops |= {pick(OPS, ops_mask)}  # perhaps not allowed
        qid = self.label("query")
        if m.queries and reuse % 10 == 0:
            qid = pick(self.query_ids(), reuse // 10)
        self.submit(analyst, qid, ids, committee, cost, ops, training)

    @rule(
        poor=st.integers(0, 3),
        subset=st.lists(st.integers(0, 15), min_size=1, max_size=3),
        committee=st.booleans(),
        cost=st.integers(0, 150_000),
        ops_mask=st.integers(0, 2**5 - 1),
        training=st.booleans(),
        keep=st.lists(st.booleans(), min_size=6, max_size=6),
    )
    def buy(
        self, poor: int, subset: list[int], committee: bool, cost: int, ops_mask: int,
        training: bool, keep: list[bool],
    ) -> None:  # fmt: skip
        """A well-formed query, then its parties commit, except those that drop out."""
        m = self.m
        analyst = self.env.analysts[1 if poor == 3 else 0]
        ids = sorted({d % len(m.datasets) for d in subset})
        ops = self.operations(ids, ops_mask) or frozenset({"count"})
        qid = self.label("query")
        if self.submit(analyst, qid, ids, int(committee), cost, ops, training):
            self.participate(qid, keep)

    def operations(self, ids: list[int], mask: int) -> frozenset[str]:
        """The operations of ``mask`` among those every listed dataset of ``ids`` allows."""
        listed = [self.m.datasets[d].operations for d in ids if d < len(self.m.datasets)]
        allowed = sorted(frozenset.intersection(*listed)) if listed else []
        return frozenset(op for i, op in enumerate(allowed) if mask >> i & 1)

    def submit(
        self, analyst: str, qid: bytes, ids: list[int], committee: int, cost: int,
        ops: frozenset[str], training: bool,
    ) -> bool:  # fmt: skip
        m = self.m
        expected = self.predict_submit(analyst, qid, ids, committee, cost, ops, training)
        kind = "training" if training else "query"
        tx = self.attempt(
            expected,
            lambda: self.client(analyst).submit_query(qid, ids, committee, cost, ops, kind),
        )
        if tx is None:
            return False  # refused: the model is untouched, so the check shows nothing changed
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
        self.transfer(analyst, m.market, price)
        m.escrowed += price
        m.query_count += 1
        for member in m.committees[committee]:
            m.locks[member] += 1
        m.queries[qid] = MQuery(
            analyst, tuple(ids), tuple(cuts), pool, committee, cost, price, tx.block
        )
        self.touched.add(qid)
        return True

    # -- audit trail --------------------------------------------------------------
    def predict_commit(self, author: str, qid: bytes, kinds: Sequence[str]) -> str | None:
        m = self.m
        q = m.queries.get(qid)
        if q is None or q.status != "open":
            return "query not open"
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
                if author not in m.committees[q.committee]:
                    return "not a committee member"
            if author in q.committed(kind):
                return "already committed"
        return None

    def do_commit(self, author: str, qid: bytes, kinds: Sequence[str]) -> None:
        expected = self.predict_commit(author, qid, kinds)
        client = self.client(author)
        digests = {k: h(f"{qid.hex()}/{k}/{author}") for k in kinds}
        if len(kinds) == 1:
            self.attempt(expected, lambda: client.commit(qid, kinds[0], digests[kinds[0]]))
        else:
            self.attempt(expected, lambda: client.commit_many(qid, digests))  # type: ignore[arg-type]
        if expected is None:
            for kind in kinds:
                self.m.queries[qid].committed(kind).add(author)
            self.touched.add(qid)

    @precondition(lambda self: self.m.queries)
    @rule(
        which=picks,
        who=picks,
        kinds=st.lists(st.sampled_from(COMMITMENT_KINDS), min_size=1, max_size=2, unique=True),
    )
    def commit(self, which: int, who: int, kinds: list[str]) -> None:
        self.do_commit(pick(self.env.everyone, who), self.some_query(which), kinds)

    def participate(self, qid: bytes, keep: list[bool]) -> None:
        """The parties of an open query commit, except those that drop out."""
        q = self.m.queries[qid]
        steps = [(p, ["contribution"]) for p in dict.fromkeys(self.m.providers_of(q))]
        steps += [(n, ["noise", "key_switch"]) for n in self.m.committees[q.committee]]
        steps.append((q.analyst, ["result"]))
        for (author, kinds), stays in zip(steps, keep * 2, strict=False):
            if stays and self.predict_commit(author, qid, kinds) is None:
                self.do_commit(author, qid, kinds)

    # -- verdicts and settlement ----------------------------------------------------------
    def predict_vote(
        self, who: str, qid: bytes, passed: bool, cheaters: tuple[str, ...]
    ) -> str | None:
        m = self.m
        if "verifier" not in m.roles[who]:
            return "not a verifier"
        q = m.queries.get(qid)
        if q is None or q.status != "open":
            return "query not open"
        members = m.committees[q.committee]
        if who == q.analyst or who in m.providers_of(q) or who in members:
            return "conflict of interest"
        if who in q.voted:
            return "already voted"
        if any(c not in members for c in cheaters):
            return "cheater not in committee"
        if passed and not q.committed("result"):
            return "no result committed"
        return None

    def do_vote(self, who: str, qid: bytes, passed: bool, cheaters: tuple[str, ...]) -> None:
        expected = self.predict_vote(who, qid, passed, cheaters)
        posted = self.attempt(
            expected, lambda: self.client(who).post_verdict(qid, passed, cheaters)
        )
        if posted is None:
            return
        q = self.m.queries[qid]
        q.voted.add(who)
        q.votes[passed, cheaters] += 1
        settles = q.votes[passed, cheaters] >= self.m.quorum
        assert posted.settled == settles
        if settles:
            self.settle(qid, passed, cheaters)
        self.touched.add(qid)

    def settle(self, qid: bytes, passed: bool, cheaters: tuple[str, ...]) -> None:
        m = self.m
        q = m.queries[qid]
        members = m.committees[q.committee]
        refund, paid = q.price, 0
        if passed:
            refund = 0
            for d, cut in zip(q.datasets, q.cuts, strict=True):
                provider = m.datasets[d].provider
                if provider not in q.committed("contribution"):
                    refund += cut
                    continue
                self.transfer(m.market, provider, cut)
                paid += cut
                m.provider_revenue[provider] += cut
                m.datasets[d].revenue += cut
                m.reputation[provider] += REWARD
            honest = [n for n in members if n not in cheaters and n in q.committed("noise")]
            each = q.node_pool // len(honest) if honest else 0
            refund += q.node_pool - each * len(honest)
            for n in honest:
                self.transfer(m.market, n, each)
                paid += each
                m.node_revenue[n] += each
                m.reputation[n] += REWARD
        for cheater in cheaters:
            slashed = min(m.slash_amount, m.stakes[cheater])
            assert 0 <= slashed <= m.stakes[cheater]  # never more than the node's stake
            m.stakes[cheater] -= slashed
            self.transfer(m.registry, q.analyst, slashed)
            m.reputation[cheater] += PENALTY
        assert paid + refund == q.price
        self.transfer(m.market, q.analyst, refund)
        m.escrowed -= q.price
        m.volume += paid
        m.settled += 1
        q.status = "passed" if passed else "failed"
        q.cheaters = cheaters
        for n in members:
            m.locks[n] -= 1

    def cheaters_of(self, qid: bytes, mask: int) -> tuple[str, ...]:
        q = self.m.queries.get(qid)
        pool = list(self.m.committees[q.committee]) if q else []
        pool.append(self.env.world.outsider.account)  # never a member: refused
        chosen = {a for i, a in enumerate(pool) if mask >> i & 1}
        if q and mask >> 8 & 1 == 0:
            chosen.discard(self.env.world.outsider.account)
        return tuple(sorted(chosen, key=addr_key))

    @precondition(lambda self: self.m.queries)
    @rule(which=picks, who=picks, passed=st.booleans(), mask=st.integers(0, 511))
    def vote(self, which: int, who: int, passed: bool, mask: int) -> None:
        qid = self.some_query(which)
        self.do_vote(pick(self.env.voters, who), qid, passed, self.cheaters_of(qid, mask))

    @precondition(lambda self: self.m.open_queries())
    @rule(which=picks, passed=st.booleans(), mask=st.integers(0, 7))
    def decide(self, which: int, passed: bool, mask: int) -> None:
        """Every eligible verifier votes the same verdict until the query settles."""
        open_ids = self.m.open_queries()
        if not open_ids:
            return
        qid = pick(open_ids, which)
        cheaters = self.cheaters_of(qid, mask)
        for voter in self.env.voters:
            if self.m.queries[qid].status != "open":
                break
            if self.predict_vote(voter, qid, passed, cheaters) is None:
                self.do_vote(voter, qid, passed, cheaters)

    @precondition(lambda self: self.m.queries)
    @rule(blocks=st.integers(0, 60), which=picks, who=picks)
    def expire(self, blocks: int, which: int, who: int) -> None:
        """Blocks go by, then anyone asks for a query's refund."""
        if blocks:
            self.env.world.chain.mine(blocks)
        qid = self.some_query(which)
        q = self.m.queries.get(qid)
        if q is None or q.status != "open":
            expected: str | None = "query not open"
        elif self.env.reader.block_number() + 1 <= q.block + self.m.timeout:
            expected = "query not timed out"  # the transaction goes into the next block
        else:
            expected = None
        self.attempt(expected, lambda: self.client(pick(self.env.everyone, who)).expire(qid))
        if q is not None and expected is None:
            self.transfer(self.m.market, q.analyst, q.price)
            self.m.escrowed -= q.price
            q.status = "expired"
            for n in self.m.committees[q.committee]:
                self.m.locks[n] -= 1
            self.touched.add(qid)

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
        if q is None or who != q.analyst:
            expected: str | None = "not the query's analyst"
        elif q.status != "passed":
            expected = "query has not passed"
        elif d not in q.datasets:
            expected = "dataset not in query"
        elif not 1 <= stars <= 5:
            expected = "stars must be 1 to 5"
        elif d in q.rated:
            expected = "already rated"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(who).rate(qid, d, stars))
        if q is not None and expected is None:
            q.rated.add(d)
            self.m.datasets[d].rating_sum += stars
            self.m.datasets[d].rating_count += 1

    # -- registry ----------------------------------------------------------------------
    @rule(
        action=st.integers(0, 5),
        who=picks,
        amount=st.integers(0, 8_000),
        min_stake=st.sampled_from([0, 1_000, 5_000, 8_000]),
        slash=st.sampled_from([0, 1_000, 5_000, 50_000]),
    )
    def registry_action(
        self, action: int, who: int, amount: int, min_stake: int, slash: int
    ) -> None:
        """Stake, unstake, change the stake rules, or (de)register a participant."""
        if action <= 1:
            self.stake(who, amount % 3_001)
        elif action <= 3:
            self.unstake(who, amount)
        elif action == 4:
            self.set_stake_rules(who % 3 != 0, min_stake, slash)
        else:
            self.toggle_role(who % 3)

    def stake(self, who: int, amount: int) -> None:
        w = self.env.world
        node = pick([*(n.account for n in w.nodes), w.outsider.account], who)
        if "node" not in self.m.roles[node]:
            expected: str | None = "not a computing node"
        elif amount == 0:
            expected = "zero amount"
        elif amount > self.m.balances[node]:
            expected = NO_FUNDS
        else:
            expected = None
        self.attempt(expected, lambda: self.client(node).stake(amount))
        if expected is None:
            self.transfer(node, self.m.registry, amount)
            self.m.stakes[node] += amount

    def unstake(self, who: int, amount: int) -> None:
        node = pick([n.account for n in self.env.world.nodes], who)
        if self.m.locks[node] > 0:
            expected: str | None = "stake locked by open queries"
        elif amount > self.m.stakes[node]:
            expected = "amount exceeds stake"
        else:
            expected = None
        self.attempt(expected, lambda: self.client(node).unstake(amount))
        if expected is None:
            self.transfer(self.m.registry, node, amount)
            self.m.stakes[node] -= amount

    def set_stake_rules(self, by_admin: bool, min_stake: int, slash: int) -> None:
        w = self.env.world
        sender = w.admin if by_admin else w.nodes[0]
        fn = self.c.registry.functions.set_stake_rules(min_stake, slash)
        self.attempt(None if by_admin else MISSING_ROLE, lambda: send(sender, fn))
        if by_admin:
            self.m.min_stake, self.m.slash_amount = min_stake, slash

    def toggle_role(self, which: int) -> None:
        """The admin deregisters (or registers again) the third node, verifier or provider 1."""
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
    def chain_matches_model(self) -> None:
        m, c, read = self.m, self.c, self.env.reader
        token, registry, market = c.token, c.registry, c.market
        # escrow conservation
        supply = int(read(token, "totalSupply"))
        balances = {a: int(read(token, "balanceOf", a)) for a in m.balances}
        assert supply == m.supply == sum(balances.values()) == sum(m.balances.values())
        assert balances == m.balances
        open_prices = sum(q.price for q in m.queries.values() if q.status == "open")
        assert balances[m.market] == int(read(market, "escrowed")) == m.escrowed == open_prices
        stakes = {n.account: int(read(registry, "stakes", n.account)) for n in self.env.world.nodes}
        assert stakes == {a: s for a, s in m.stakes.items() if s or a in stakes}  # only nodes stake
        total_staked = int(read(registry, "total_staked"))
        assert balances[m.registry] == total_staked == sum(stakes.values())
        # locks: one per open query of each committee the node sits on; reputation
        for n in self.env.world.nodes:
            expected_locks = sum(
                1
                for q in m.queries.values()
                if q.status == "open" and n.account in m.committees[q.committee]
            )
            assert int(read(registry, "locks", n.account)) == m.locks[n.account] == expected_locks
        w = self.env.world
        for a in (*(p.account for p in w.providers), *(n.account for n in w.nodes)):
            assert int(read(registry, "reputation", a)) == m.reputation[a], a
        assert all(m.reputation[a] == 0 for a in self.env.analysts + self.env.voters[:3])
        # budgets: never above the cap, the sum of the admitted queries' costs
        for i, ds in enumerate(m.datasets):
            raw = read(market, "dataset", i)
            admitted = sum(q.privacy_cost for q in m.queries.values() if i in q.datasets)
            assert raw[7] == ds.budget_spent == admitted <= raw[6] == ds.budget_cap
            assert raw[0].lower() == ds.provider.lower()
            assert operations_of(raw[4]) == ds.operations
            assert raw[8:] == (
                ds.price_per_query, ds.price_per_training, ds.node_share_bps, ds.active,
                ds.queries, ds.revenue, ds.rating_sum, ds.rating_count,
            )  # fmt: skip
        # queries: counters, and a settled query never settles again (its status is final)
        assert int(read(market, "query_count")) == m.query_count == len(m.queries)
        settled = sum(1 for q in m.queries.values() if q.status in ("passed", "failed"))
        assert int(read(market, "settled_queries")) == m.settled == settled
        assert int(read(market, "total_volume")) == m.volume
        for qid in {*m.open_queries(), *self.touched}:
            self.check_query(qid)
        self.touched.clear()
        for p in self.env.world.providers:
            assert int(read(market, "provider_revenue", p.account)) == m.provider_revenue[p.account]
        for n in self.env.world.nodes:
            assert int(read(market, "node_revenue", n.account)) == m.node_revenue[n.account]

    def check_query(self, qid: bytes) -> None:
        q = self.m.queries[qid]
        raw = self.env.reader(self.c.market, "query", qid)
        analyst, datasets, cuts, pool, committee, cost, _ops, _kind, price, status, block, ch = raw
        assert analyst.lower() == q.analyst.lower()
        assert (tuple(datasets), tuple(cuts), pool, committee) == (
            q.datasets, q.cuts, q.node_pool, q.committee,
        )  # fmt: skip
        assert (cost, price, STATUS[status], block) == (q.privacy_cost, q.price, q.status, q.block)
        assert [a.lower() for a in ch] == [a.lower() for a in q.cheaters]
        if q.status != "open":  # its audit trail is final
            for i, kind in enumerate(COMMITMENT_KINDS):
                authors = self.env.reader(self.c.market, "committers_of", qid, i)
                assert {a.lower() for a in authors} == {a.lower() for a in q.committed(kind)}


def test_market_matches_model(world: World) -> None:
    env = Env.prepare(world)

    class Machine(LedgerMachine):
        ENV = env

    run_state_machine_as_test(Machine, settings=settings(max_examples=6, stateful_step_count=20))
