# pragma version ~=0.4.3
# pragma nonreentrancy off
# pragma optimize codesize
"""
@title Tessera market
@notice Catalog (datasets, policies, tags, ratings, statistics), queries
        (privacy-budget enforcement, escrow of the price, a lock fee), the
        audit trail of each query, the verifiers drawn for it, their verdicts
        and settlement.
@dev Fair exchange: once a query's work is on the trail (contributions, the
     locked aggregate, enough noise and key-switch shares, a proof bundle),
     its price is owed to the workers. It settles for them at a verdict
     quorum of its drawn verifiers, or at its deadline unless such a quorum
     proved cheating; the analyst's own result commitment is never needed.
     Token accounting: this contract's credit balance always equals
     `escrowed`, the prices of open queries. Settlement moves a query's whole
     price out (to providers, nodes and the analyst's refund) and nothing
     else. Privacy budgets are integers in micro-units of zCDP rho.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable

import sortition

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


interface Registry:
    def hasRole(role: bytes32, account: address) -> bool: view
    def stakes(account: address) -> uint256: view
    def min_stake() -> uint256: view
    def slash_amount() -> uint256: view
    def committee_members(committee_id: uint256) -> DynArray[address, MAX_MEMBERS]: view
    def committee_threshold(committee_id: uint256) -> uint256: view
    def pool() -> DynArray[address, MAX_POOL]: view
    def lock(accounts: DynArray[address, MAX_MEMBERS]): nonpayable
    def unlock(accounts: DynArray[address, MAX_MEMBERS]): nonpayable
    def slash(account: address, amount: uint256) -> uint256: nonpayable
    def add_reputation(account: address, delta: int256): nonpayable


PROVIDER_ROLE: constant(bytes32) = keccak256("tessera.PROVIDER")
NODE_ROLE: constant(bytes32) = keccak256("tessera.NODE")
ANALYST_ROLE: constant(bytes32) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: constant(bytes32) = keccak256("tessera.VERIFIER")

MAX_MEMBERS: constant(uint256) = 16
MAX_POOL: constant(uint256) = 64
MAX_ASSIGNED: constant(uint256) = 16
MAX_QUERY_DATASETS: constant(uint256) = 16
MAX_TAGS: constant(uint256) = 8
MAX_PAGE: constant(uint256) = 128
MAX_TOP: constant(uint256) = 16
MAX_COMMITTERS: constant(uint256) = 32
MAX_TRAIL: constant(uint256) = 224  # 7 kinds x MAX_COMMITTERS
BPS: constant(uint256) = 10000
REPUTATION_REWARD: constant(int256) = 1
REPUTATION_PENALTY: constant(int256) = -10
REPUTATION_ABSENT: constant(int256) = -1

# query kinds
KIND_QUERY: constant(uint8) = 0
KIND_TRAINING: constant(uint8) = 1

# query status
OPEN: constant(uint8) = 1
PASSED: constant(uint8) = 2
FAILED: constant(uint8) = 3
EXPIRED: constant(uint8) = 4
COMPLETED: constant(uint8) = 5  # settled for the workers at its deadline, with no verdict quorum

# audit-trail commitment kinds
CONTRIBUTION: constant(uint8) = 0
AGGREGATE: constant(uint8) = 1
NOISE: constant(uint8) = 2
KEY_SWITCH: constant(uint8) = 3
PROOF_BUNDLE: constant(uint8) = 4
RESULT: constant(uint8) = 5
EXCLUSION: constant(uint8) = 6  # a provider's data was looked at and left out (below its cohort)


struct Dataset:
    provider: address
    schema_hash: bytes32
    bounds: Bytes[512]
    tags: DynArray[bytes32, MAX_TAGS]
    allowed_operations: uint256
    min_cohort: uint256
    budget_cap: uint256
    budget_spent: uint256
    price_per_query: uint256
    price_per_training: uint256
    node_share_bps: uint256
    allow_exact: bool
    active: bool
    queries: uint256
    revenue: uint256
    buyers: uint256
    rating_sum: uint256
    rating_count: uint256


struct Query:
    analyst: address
    ticket_hash: bytes32
    datasets: DynArray[uint256, MAX_QUERY_DATASETS]
    provider_cuts: DynArray[uint256, MAX_QUERY_DATASETS]
    node_pool: uint256
    committee: uint256
    privacy_cost: uint256
    operations: uint256
    kind: uint8
    price: uint256
    fee: uint256
    status: uint8
    submitted_block: uint256
    deadline: uint256
    verifiers_wanted: uint256
    node_slash: uint256
    verifier_slash: uint256
    cheaters: DynArray[address, MAX_MEMBERS]


struct Params:
    timeout_blocks: uint256
    verifiers_per_query: uint256
    lock_fee: uint256


token: public(immutable(IERC20))
registry: public(immutable(Registry))
params: public(Params)

datasets: HashMap[uint256, Dataset]
dataset_count: public(uint256)
tag_entries: HashMap[bytes32, HashMap[uint256, uint256]]
tag_size: public(HashMap[bytes32, uint256])
tag_indexed: HashMap[bytes32, HashMap[uint256, bool]]
bought: HashMap[uint256, HashMap[address, bool]]
rating_of: HashMap[uint256, HashMap[address, uint256]]
served: HashMap[address, HashMap[address, bool]]  # node -> analysts it was paid by
top: DynArray[uint256, MAX_TOP]

queries: HashMap[bytes32, Query]
query_count: public(uint256)
escrowed: public(uint256)

commitments: HashMap[bytes32, HashMap[uint8, HashMap[address, bytes32]]]
committers: HashMap[bytes32, HashMap[uint8, DynArray[address, MAX_COMMITTERS]]]

assigned: HashMap[bytes32, DynArray[address, MAX_ASSIGNED]]
drawn: HashMap[bytes32, bool]
vote_of: HashMap[bytes32, HashMap[address, bytes32]]
votes: HashMap[bytes32, HashMap[bytes32, uint256]]
verdict_count: public(HashMap[bytes32, uint256])

total_volume: public(uint256)
settled_queries: public(uint256)
provider_revenue: public(HashMap[address, uint256])
node_revenue: public(HashMap[address, uint256])


event DatasetListed:
    dataset_id: indexed(uint256)
    provider: indexed(address)
    schema_hash: bytes32

event DatasetUpdated:
    dataset_id: indexed(uint256)

event DatasetDelisted:
    dataset_id: indexed(uint256)

event QuerySubmitted:
    query_id: indexed(bytes32)
    analyst: indexed(address)
    ticket_hash: bytes32
    committee: uint256
    privacy_cost: uint256
    price: uint256
    fee: uint256

event VerifiersDrawn:
    query_id: indexed(bytes32)
    seed: bytes32
    verifiers: DynArray[address, MAX_ASSIGNED]

event Committed:
    query_id: indexed(bytes32)
    kind: indexed(uint8)
    author: indexed(address)
    digest: bytes32

event VerdictPosted:
    query_id: indexed(bytes32)
    verifier: indexed(address)
    passed: bool
    cheaters: DynArray[address, MAX_MEMBERS]

event QuerySettled:
    query_id: indexed(bytes32)
    passed: bool
    paid: uint256
    refunded: uint256
    slashed: uint256

event QueryExpired:
    query_id: indexed(bytes32)
    work_complete: bool
    paid: uint256
    refunded: uint256

event Rated:
    dataset_id: indexed(uint256)
    analyst: indexed(address)
    stars: uint256


@deploy
def __init__(
    token_: IERC20,
    registry_: Registry,
    timeout_blocks_: uint256,
    verifiers_per_query_: uint256,
    lock_fee_: uint256,
):
    ownable.__init__()
    token = token_
    registry = registry_
    self._set_params(timeout_blocks_, verifiers_per_query_, lock_fee_)


@internal
def _set_params(timeout_blocks_: uint256, verifiers_per_query_: uint256, lock_fee_: uint256):
    assert verifiers_per_query_ >= 1 and verifiers_per_query_ <= MAX_ASSIGNED, "verifiers per query out of range"
    assert timeout_blocks_ >= 1, "timeout must be at least one block"
    self.params = Params(
        timeout_blocks=timeout_blocks_, verifiers_per_query=verifiers_per_query_, lock_fee=lock_fee_
    )


@external
def set_params(timeout_blocks_: uint256, verifiers_per_query_: uint256, lock_fee_: uint256):
    """@notice Owner (the governance timelock): parameters of queries submitted from now on."""
    ownable._check_owner()
    self._set_params(timeout_blocks_, verifiers_per_query_, lock_fee_)


# -- catalog -----------------------------------------------------------------


@internal
def _index_tags(dataset_id: uint256, tags: DynArray[bytes32, MAX_TAGS]):
    for tag: bytes32 in tags:
        assert tag != empty(bytes32), "empty tag"
        if not self.tag_indexed[tag][dataset_id]:
            self.tag_indexed[tag][dataset_id] = True
            size: uint256 = self.tag_size[tag]
            self.tag_entries[tag][size] = dataset_id
            self.tag_size[tag] = size + 1


@internal
def _write_listing(
    dataset_id: uint256,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
):
    """A listing's policy (the budget cap never below what is already spent)."""
    assert node_share_bps <= BPS, "node share above 100%"
    assert min_cohort > 0, "minimum cohort must be positive"
    assert budget_cap >= self.datasets[dataset_id].budget_spent, "cap below spent budget"
    self.datasets[dataset_id].bounds = bounds
    self.datasets[dataset_id].tags = tags
    self.datasets[dataset_id].allowed_operations = allowed_operations
    self.datasets[dataset_id].min_cohort = min_cohort
    self.datasets[dataset_id].budget_cap = budget_cap
    self.datasets[dataset_id].price_per_query = price_per_query
    self.datasets[dataset_id].price_per_training = price_per_training
    self.datasets[dataset_id].node_share_bps = node_share_bps
    self.datasets[dataset_id].allow_exact = allow_exact
    self._index_tags(dataset_id, tags)


@external
def list_dataset(
    schema_hash: bytes32,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
) -> uint256:
    assert staticcall registry.hasRole(PROVIDER_ROLE, msg.sender), "not a provider"
    dataset_id: uint256 = self.dataset_count
    self.datasets[dataset_id].provider = msg.sender
    self.datasets[dataset_id].schema_hash = schema_hash
    self.datasets[dataset_id].active = True
    self.dataset_count = dataset_id + 1
    self._write_listing(
        dataset_id, bounds, tags, allowed_operations, min_cohort, budget_cap,
        price_per_query, price_per_training, node_share_bps, allow_exact,
    )
    log DatasetListed(dataset_id=dataset_id, provider=msg.sender, schema_hash=schema_hash)
    return dataset_id


@internal
@view
def _own_dataset(dataset_id: uint256):
    assert dataset_id < self.dataset_count, "unknown dataset"
    assert self.datasets[dataset_id].provider == msg.sender, "not the dataset's provider"


@external
def update_dataset(
    dataset_id: uint256,
    bounds: Bytes[512],
    tags: DynArray[bytes32, MAX_TAGS],
    allowed_operations: uint256,
    min_cohort: uint256,
    budget_cap: uint256,
    price_per_query: uint256,
    price_per_training: uint256,
    node_share_bps: uint256,
    allow_exact: bool,
):
    """
    @notice Change a listing's policy. The budget cap can never drop below
            what has already been spent; open queries keep the prices and
            payout split they were submitted with.
    """
    self._own_dataset(dataset_id)
    self._write_listing(
        dataset_id, bounds, tags, allowed_operations, min_cohort, budget_cap,
        price_per_query, price_per_training, node_share_bps, allow_exact,
    )
    log DatasetUpdated(dataset_id=dataset_id)


@external
def delist_dataset(dataset_id: uint256):
    self._own_dataset(dataset_id)
    self.datasets[dataset_id].active = False
    log DatasetDelisted(dataset_id=dataset_id)


@external
@view
def dataset(dataset_id: uint256) -> Dataset:
    assert dataset_id < self.dataset_count, "unknown dataset"
    return self.datasets[dataset_id]


@external
@view
def search_by_tag(tag: bytes32, start: uint256) -> DynArray[uint256, MAX_PAGE]:
    """
    @notice One page of the datasets that ever got `tag`: entries `start` to
            `start + 128` of its index (ids in the order they got it), keeping
            those active and still tagged. The index has no size limit, so
            nobody can fill it for others; read `tag_size(tag)` to page.
    """
    found: DynArray[uint256, MAX_PAGE] = []
    size: uint256 = self.tag_size[tag]
    for i: uint256 in range(MAX_PAGE):
        if start + i >= size:
            break
        dataset_id: uint256 = self.tag_entries[tag][start + i]
        if self.datasets[dataset_id].active and tag in self.datasets[dataset_id].tags:
            found.append(dataset_id)
    return found


@internal
@view
def _ranks_above(a: uint256, b: uint256) -> bool:
    """Whether dataset `a` ranks above `b`: more distinct paying analysts, then more revenue."""
    ba: uint256 = self.datasets[a].buyers
    bb: uint256 = self.datasets[b].buyers
    if ba != bb:
        return ba > bb
    ra: uint256 = self.datasets[a].revenue
    rb: uint256 = self.datasets[b].revenue
    if ra != rb:
        return ra > rb
    return a < b


@internal
def _rank(dataset_id: uint256):
    """Keep `top` sorted after `dataset_id`'s score went up (scores only ever go up)."""
    ranked: DynArray[uint256, MAX_TOP] = []
    placed: bool = False
    for other: uint256 in self.top:
        if other == dataset_id:
            continue
        if not placed and self._ranks_above(dataset_id, other):
            ranked.append(dataset_id)
            placed = True
        if len(ranked) < MAX_TOP:
            ranked.append(other)
    if not placed and len(ranked) < MAX_TOP:
        ranked.append(dataset_id)
    self.top = ranked


@external
@view
def top_datasets(k: uint256) -> DynArray[uint256, MAX_TOP]:
    """
    @notice Up to `k` datasets ranked by distinct paying analysts, then by
            revenue (ties: earlier listing first). Buying one's own data
            cannot move a dataset: an analyst cannot buy from itself.
    """
    out: DynArray[uint256, MAX_TOP] = []
    for dataset_id: uint256 in self.top:
        if len(out) >= k:
            break
        out.append(dataset_id)
    return out


@external
def rate(query_id: bytes32, dataset_id: uint256, stars: uint256):
    """
    @notice The analyst of a query that passed rates one of its datasets, 1 to
            5. Each analyst counts once per dataset: rating again replaces its
            earlier stars.
    """
    assert self.queries[query_id].analyst == msg.sender, "not the query's analyst"
    status: uint8 = self.queries[query_id].status
    assert status == PASSED or status == COMPLETED, "query has not passed"
    assert dataset_id in self.queries[query_id].datasets, "dataset not in query"
    assert stars >= 1 and stars <= 5, "stars must be 1 to 5"
    previous: uint256 = self.rating_of[dataset_id][msg.sender]
    if previous == 0:
        self.datasets[dataset_id].rating_count += 1
    else:
        self.datasets[dataset_id].rating_sum -= previous
    self.datasets[dataset_id].rating_sum += stars
    self.rating_of[dataset_id][msg.sender] = stars
    log Rated(dataset_id=dataset_id, analyst=msg.sender, stars=stars)


# -- queries -----------------------------------------------------------------


@external
def submit_query(
    ticket_hash: bytes32,
    dataset_ids: DynArray[uint256, MAX_QUERY_DATASETS],
    committee: uint256,
    privacy_cost: uint256,
    operations: uint256,
    kind: uint8,
) -> bytes32:
    """
    @notice Submit a query: `ticket_hash` is the SHA-256 of its canonical
            ticket, and its id is keccak256(analyst, ticket_hash). Spends
            `privacy_cost` of every dataset's budget, escrows the price and
            pays each committee member the lock fee (never refunded: locking
            a node's stake costs the submitter). A cost of 0 (an exact query)
            needs every dataset to allow exact queries. Every role checks that
            the cost is the one its ticket states before it works.
    """
    assert staticcall registry.hasRole(ANALYST_ROLE, msg.sender), "not an analyst"
    query_id: bytes32 = keccak256(concat(convert(msg.sender, bytes20), ticket_hash))
    assert self.queries[query_id].status == 0, "query already submitted"
    assert len(dataset_ids) > 0, "no dataset"
    assert operations != 0, "no operation"
    assert kind == KIND_QUERY or kind == KIND_TRAINING, "unknown query kind"
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(committee)
    min_stake: uint256 = staticcall registry.min_stake()
    for member: address in members:
        assert staticcall registry.hasRole(NODE_ROLE, member), "committee member deregistered"
        assert staticcall registry.stakes(member) >= min_stake, "committee member under-staked"

    cuts: DynArray[uint256, MAX_QUERY_DATASETS] = []
    node_pool: uint256 = 0
    price: uint256 = 0
    previous: uint256 = 0
    for i: uint256 in range(len(dataset_ids), bound=MAX_QUERY_DATASETS):
        dataset_id: uint256 = dataset_ids[i]
        assert i == 0 or dataset_id > previous, "datasets not ascending"
        previous = dataset_id
        assert dataset_id < self.dataset_count, "unknown dataset"
        assert self.datasets[dataset_id].active, "dataset not listed"
        assert self.datasets[dataset_id].provider != msg.sender, "an analyst cannot buy its own data"
        allowed: uint256 = self.datasets[dataset_id].allowed_operations
        assert operations & ~allowed == 0, "operation not allowed"
        assert privacy_cost > 0 or self.datasets[dataset_id].allow_exact, "dataset does not allow exact queries"
        spent: uint256 = self.datasets[dataset_id].budget_spent
        # compared with what remains (spent <= cap always holds): `spent + privacy_cost`
        # would overflow for a huge cost and revert without a reason
        assert privacy_cost <= self.datasets[dataset_id].budget_cap - spent, "privacy budget exceeded"
        self.datasets[dataset_id].budget_spent = spent + privacy_cost
        self.datasets[dataset_id].queries += 1
        dataset_price: uint256 = self.datasets[dataset_id].price_per_query
        if kind == KIND_TRAINING:
            dataset_price = self.datasets[dataset_id].price_per_training
        node_cut: uint256 = dataset_price * self.datasets[dataset_id].node_share_bps // BPS
        cuts.append(dataset_price - node_cut)
        node_pool += node_cut
        price += dataset_price

    p: Params = self.params
    self.queries[query_id] = Query(
        analyst=msg.sender,
        ticket_hash=ticket_hash,
        datasets=dataset_ids,
        provider_cuts=cuts,
        node_pool=node_pool,
        committee=committee,
        privacy_cost=privacy_cost,
        operations=operations,
        kind=kind,
        price=price,
        fee=p.lock_fee * len(members),
        status=OPEN,
        submitted_block=block.number,
        deadline=block.number + p.timeout_blocks,
        verifiers_wanted=p.verifiers_per_query,
        node_slash=staticcall registry.slash_amount(),
        verifier_slash=staticcall registry.slash_amount(),
        cheaters=[],
    )
    self.query_count += 1
    self.escrowed += price
    if price > 0:
        assert extcall token.transferFrom(msg.sender, self, price), "escrow transfer failed"
    if p.lock_fee > 0:
        for member: address in members:
            assert extcall token.transferFrom(msg.sender, member, p.lock_fee), "lock fee transfer failed"
    extcall registry.lock(members)
    log QuerySubmitted(
        query_id=query_id,
        analyst=msg.sender,
        ticket_hash=ticket_hash,
        committee=committee,
        privacy_cost=privacy_cost,
        price=price,
        fee=p.lock_fee * len(members),
    )
    return query_id


@external
@view
def query(query_id: bytes32) -> Query:
    assert self.queries[query_id].status != 0, "unknown query"
    return self.queries[query_id]


@internal
@view
def _is_query_provider(query_id: bytes32, account: address) -> bool:
    for dataset_id: uint256 in self.queries[query_id].datasets:
        if self.datasets[dataset_id].provider == account:
            return True
    return False


# -- the verifiers of a query --------------------------------------------------


@internal
@view
def _seed(query_id: bytes32) -> bytes32:
    """
    The draw's public randomness: the hash of the block that holds the query's
    submission, unknown until that block is sealed (so not to the analyst when
    it fixed its ticket), mixed with the query id. If that block is out of
    BLOCKHASH's reach (256 blocks), the first block of the latest 256-block
    window since is used instead.
    """
    anchor: uint256 = self.queries[query_id].submitted_block
    if block.number - anchor > 256:
        anchor += (block.number - anchor - 1) // 256 * 256
    return keccak256(concat(blockhash(anchor), query_id))


@internal
def _draw_if_due(query_id: bytes32) -> bool:
    """Draw the query's verifiers once, when its seed exists; whether they are drawn."""
    if self.drawn[query_id]:
        return True
    if block.number <= self.queries[query_id].submitted_block:
        return False
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
        self.queries[query_id].committee
    )
    min_stake: uint256 = staticcall registry.min_stake()
    eligible: DynArray[address, MAX_POOL] = []
    for v: address in staticcall registry.pool():
        if v == self.queries[query_id].analyst or v in members:
            continue
        if self._is_query_provider(query_id, v):
            continue
        if not staticcall registry.hasRole(VERIFIER_ROLE, v):
            continue
        if staticcall registry.stakes(v) < min_stake:
            continue
        eligible.append(v)
    seed: bytes32 = self._seed(query_id)
    chosen: DynArray[address, MAX_ASSIGNED] = sortition._draw(
        seed, eligible, self.queries[query_id].verifiers_wanted
    )
    self.assigned[query_id] = chosen
    self.drawn[query_id] = True
    extcall registry.lock(chosen)
    log VerifiersDrawn(query_id=query_id, seed=seed, verifiers=chosen)
    return True


@external
@view
def verifiers_of(query_id: bytes32) -> DynArray[address, MAX_ASSIGNED]:
    """@notice The verifiers drawn for a query (empty until drawn)."""
    return self.assigned[query_id]


@internal
@view
def _quorum(query_id: bytes32) -> uint256:
    return len(self.assigned[query_id]) // 2 + 1


# -- audit trail -------------------------------------------------------------


@internal
def _commit(query_id: bytes32, kind: uint8, digest: bytes32):
    assert digest != empty(bytes32), "empty digest"
    if kind == CONTRIBUTION or kind == EXCLUSION:
        assert staticcall registry.hasRole(PROVIDER_ROLE, msg.sender), "not a provider"
        assert self._is_query_provider(query_id, msg.sender), "not a provider of this query"
        other: uint8 = CONTRIBUTION + EXCLUSION - kind
        assert self.commitments[query_id][other][msg.sender] == empty(bytes32), "already committed"
    elif kind == RESULT:
        assert msg.sender == self.queries[query_id].analyst, "not the query's analyst"
    elif kind <= PROOF_BUNDLE:
        assert staticcall registry.hasRole(NODE_ROLE, msg.sender), "not a computing node"
        members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
            self.queries[query_id].committee
        )
        assert msg.sender in members, "not a committee member"
    else:
        raise "unknown commitment kind"
    assert self.commitments[query_id][kind][msg.sender] == empty(bytes32), "already committed"
    assert len(self.committers[query_id][kind]) < MAX_COMMITTERS, "too many commitments"
    self.commitments[query_id][kind][msg.sender] = digest
    self.committers[query_id][kind].append(msg.sender)
    log Committed(query_id=query_id, kind=kind, author=msg.sender, digest=digest)


@internal
def _check_open(query_id: bytes32):
    assert self.queries[query_id].status == OPEN, "query not open"
    assert block.number <= self.queries[query_id].deadline, "query past its deadline"


@external
def commit(query_id: bytes32, kind: uint8, digest: bytes32):
    """
    @notice Record the hash of one artefact of an open query: a provider's
            contribution, the committee's aggregate, a node's noise term,
            key-switch share or proof bundle, or the analyst's result. Each
            author commits each kind once, before the query's deadline.
    """
    self._check_open(query_id)
    self._commit(query_id, kind, digest)
    self._draw_if_due(query_id)


@external
def commit_many(query_id: bytes32, kinds: DynArray[uint8, 6], digests: DynArray[bytes32, 6]):
    """@notice Several commitments of one author in one transaction (same rules as `commit`)."""
    self._check_open(query_id)
    assert len(kinds) == len(digests), "one digest per kind"
    for i: uint256 in range(len(kinds), bound=6):
        self._commit(query_id, kinds[i], digests[i])
    self._draw_if_due(query_id)


struct Commitment:
    kind: uint8
    author: address
    digest: bytes32


@external
@view
def trail(query_id: bytes32) -> DynArray[Commitment, MAX_TRAIL]:
    """@notice The whole audit trail of a query in one call: every commitment, by kind."""
    out: DynArray[Commitment, MAX_TRAIL] = []
    for kind: uint8 in range(EXCLUSION + 1):
        for author: address in self.committers[query_id][kind]:
            out.append(
                Commitment(kind=kind, author=author, digest=self.commitments[query_id][kind][author])
            )
    return out


@internal
@view
def _work_complete(query_id: bytes32) -> bool:
    """
    Whether everything the analyst needs is on the trail: a contribution, the
    locked aggregate, a threshold of key-switch shares, a proof bundle and,
    under differential privacy, noise from n - t + 1 members.
    """
    committee: uint256 = self.queries[query_id].committee
    t: uint256 = staticcall registry.committee_threshold(committee)
    n: uint256 = len(staticcall registry.committee_members(committee))
    if len(self.committers[query_id][CONTRIBUTION]) == 0:
        return False
    if len(self.committers[query_id][AGGREGATE]) == 0:
        return False
    if len(self.committers[query_id][KEY_SWITCH]) < t:
        return False
    if len(self.committers[query_id][PROOF_BUNDLE]) == 0:
        return False
    if self.queries[query_id].privacy_cost > 0 and len(self.committers[query_id][NOISE]) < n - t + 1:
        return False
    return True


@external
@view
def work_complete(query_id: bytes32) -> bool:
    """@notice Whether a query's work is on its trail (then its price is owed to the workers)."""
    return self._work_complete(query_id)


# -- verdicts and settlement --------------------------------------------------


@external
def post_verdict(query_id: bytes32, passed: bool, cheaters: DynArray[address, MAX_MEMBERS]) -> bool:
    """
    @notice A verifier drawn for the query votes a verdict before its
            deadline: passed or not, and the committee members proven to have
            cheated (ascending). A passing verdict needs the work to be on the
            trail. When a majority of the drawn verifiers agree on the same
            verdict the query settles, and a drawn verifier that voted another
            verdict loses stake like a cheating node; returns whether it did.
    """
    self._check_open(query_id)
    assert self._draw_if_due(query_id), "verifiers are drawn from the next block"
    assert msg.sender in self.assigned[query_id], "not a verifier of this query"
    assert self.vote_of[query_id][msg.sender] == empty(bytes32), "already voted"
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
        self.queries[query_id].committee
    )
    previous: address = empty(address)
    for cheater: address in cheaters:
        assert convert(cheater, uint160) > convert(previous, uint160), "cheaters not ascending"
        assert cheater in members, "cheater not in committee"
        previous = cheater
    if passed:
        assert self._work_complete(query_id), "work not complete"
    key: bytes32 = keccak256(abi_encode(passed, cheaters))
    self.vote_of[query_id][msg.sender] = key
    self.verdict_count[query_id] += 1
    count: uint256 = self.votes[query_id][key] + 1
    self.votes[query_id][key] = count
    log VerdictPosted(query_id=query_id, verifier=msg.sender, passed=passed, cheaters=cheaters)
    if count < self._quorum(query_id):
        return False
    slashed: uint256 = self._judge_verifiers(query_id, key)
    if passed:
        self._pay_work(query_id, cheaters, members, slashed, True)
    else:
        self._fail(query_id, cheaters, members, slashed)
    return True


@internal
def _pay(to: address, amount: uint256):
    if amount > 0:
        assert extcall token.transfer(to, amount), "payment failed"


@internal
def _judge_verifiers(query_id: bytes32, key: bytes32) -> uint256:
    """At a quorum: verifiers that voted with it gain reputation, those that voted
    another verdict (which the quorum's proofs contradict) are slashed, those
    that did not vote lose a little reputation. Returns the stake slashed."""
    slashed: uint256 = 0
    for v: address in self.assigned[query_id]:
        vote: bytes32 = self.vote_of[query_id][v]
        if vote == key:
            extcall registry.add_reputation(v, REPUTATION_REWARD)
        elif vote == empty(bytes32):
            extcall registry.add_reputation(v, REPUTATION_ABSENT)
        else:
            slashed += extcall registry.slash(v, self.queries[query_id].verifier_slash)
            extcall registry.add_reputation(v, REPUTATION_PENALTY)
    return slashed


@internal
def _absent_verifiers(query_id: bytes32):
    for v: address in self.assigned[query_id]:
        if self.vote_of[query_id][v] == empty(bytes32):
            extcall registry.add_reputation(v, REPUTATION_ABSENT)


@internal
def _pay_providers(query_id: bytes32, pay: bool) -> (uint256, uint256):
    """Providers whose contribution is on the trail get their cut if `pay`; the
    others' cut is refunded and their budget given back (their data was never
    used). Returns (paid, refund)."""
    analyst: address = self.queries[query_id].analyst
    cost: uint256 = self.queries[query_id].privacy_cost
    ids: DynArray[uint256, MAX_QUERY_DATASETS] = self.queries[query_id].datasets
    paid: uint256 = 0
    refund: uint256 = 0
    for i: uint256 in range(len(ids), bound=MAX_QUERY_DATASETS):
        dataset_id: uint256 = ids[i]
        provider: address = self.datasets[dataset_id].provider
        cut: uint256 = self.queries[query_id].provider_cuts[i]
        if self.commitments[query_id][CONTRIBUTION][provider] == empty(bytes32):
            refund += cut
            if self.commitments[query_id][EXCLUSION][provider] == empty(bytes32):
                self.datasets[dataset_id].budget_spent -= cost  # its data was never used
            continue
        if not pay:
            continue
        self._pay(provider, cut)
        paid += cut
        self.provider_revenue[provider] += cut
        self.datasets[dataset_id].revenue += cut
        if not self.bought[dataset_id][analyst]:
            # reputation and rank count distinct paying analysts, not purchases
            self.bought[dataset_id][analyst] = True
            self.datasets[dataset_id].buyers += 1
            extcall registry.add_reputation(provider, REPUTATION_REWARD)
        self._rank(dataset_id)
    return paid, refund


@internal
def _slash_cheaters(query_id: bytes32, cheaters: DynArray[address, MAX_MEMBERS]) -> uint256:
    slashed: uint256 = 0
    for cheater: address in cheaters:
        slashed += extcall registry.slash(cheater, self.queries[query_id].node_slash)
        extcall registry.add_reputation(cheater, REPUTATION_PENALTY)
    return slashed


@internal
def _close(query_id: bytes32, status: uint8, members: DynArray[address, MAX_MEMBERS]):
    self.escrowed -= self.queries[query_id].price
    self.queries[query_id].status = status
    extcall registry.unlock(members)
    extcall registry.unlock(self.assigned[query_id])


@internal
def _pay_work(
    query_id: bytes32,
    cheaters: DynArray[address, MAX_MEMBERS],
    members: DynArray[address, MAX_MEMBERS],
    slashed_verifiers: uint256,
    by_verdict: bool,
):
    """The work is done: pay it. Providers that contributed get their cut; the
    node pool is split equally among the members that committed noise or a key
    switch and are not named cheaters (the remainder back to the analyst)."""
    analyst: address = self.queries[query_id].analyst
    pool: uint256 = self.queries[query_id].node_pool
    paid: uint256 = 0
    refund: uint256 = 0
    paid, refund = self._pay_providers(query_id, True)
    honest: DynArray[address, MAX_MEMBERS] = []
    for member: address in members:
        if member in cheaters:
            continue
        if (
            self.commitments[query_id][NOISE][member] != empty(bytes32)
            or self.commitments[query_id][KEY_SWITCH][member] != empty(bytes32)
        ):
            honest.append(member)
    if len(honest) == 0:
        refund += pool
    else:
        each: uint256 = pool // len(honest)
        refund += pool - each * len(honest)
        for member: address in honest:
            self._pay(member, each)
            paid += each
            self.node_revenue[member] += each
            if not self.served[member][analyst]:
                self.served[member][analyst] = True
                extcall registry.add_reputation(member, REPUTATION_REWARD)
    slashed: uint256 = self._slash_cheaters(query_id, cheaters) + slashed_verifiers
    self._pay(analyst, refund)
    self.total_volume += paid
    self.settled_queries += 1
    self.queries[query_id].cheaters = cheaters
    if by_verdict:
        self._close(query_id, PASSED, members)
        log QuerySettled(query_id=query_id, passed=True, paid=paid, refunded=refund, slashed=slashed)
    else:
        self._close(query_id, COMPLETED, members)
        log QueryExpired(query_id=query_id, work_complete=True, paid=paid, refunded=refund)


@internal
def _fail(
    query_id: bytes32,
    cheaters: DynArray[address, MAX_MEMBERS],
    members: DynArray[address, MAX_MEMBERS],
    slashed_verifiers: uint256,
):
    """A quorum found the query failed: the analyst gets its price back, the named
    cheaters are slashed, unused budget is returned."""
    price: uint256 = self.queries[query_id].price
    self._pay_providers(query_id, False)
    slashed: uint256 = self._slash_cheaters(query_id, cheaters) + slashed_verifiers
    self._pay(self.queries[query_id].analyst, price)
    self.settled_queries += 1
    self.queries[query_id].cheaters = cheaters
    self._close(query_id, FAILED, members)
    log QuerySettled(query_id=query_id, passed=False, paid=0, refunded=price, slashed=slashed)


@external
def expire(query_id: bytes32):
    """
    @notice Anyone, after an open query's deadline: settle it without a
            verdict quorum. If its work is on the trail, the workers are paid
            as for a passing verdict (the analyst could decrypt: it cannot
            keep the result and take the price back). Otherwise providers
            that contributed are still paid their cut (their data was used),
            the rest of the price is refunded, and the budget of datasets
            that never contributed is given back.
    """
    assert self.queries[query_id].status == OPEN, "query not open"
    assert block.number > self.queries[query_id].deadline, "query not timed out"
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
        self.queries[query_id].committee
    )
    self._absent_verifiers(query_id)
    if self._work_complete(query_id):
        self._pay_work(query_id, [], members, 0, False)
        return
    paid: uint256 = 0
    refund: uint256 = 0
    paid, refund = self._pay_providers(query_id, True)
    refund += self.queries[query_id].node_pool
    self._pay(self.queries[query_id].analyst, refund)
    self.total_volume += paid
    self._close(query_id, EXPIRED, members)
    log QueryExpired(query_id=query_id, work_complete=False, paid=paid, refunded=refund)
