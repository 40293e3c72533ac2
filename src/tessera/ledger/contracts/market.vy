# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera market
@notice Catalog (datasets, policies, tags, ratings, statistics), queries
        (privacy-budget enforcement and escrow of the price), the audit trail
        of each query, verifier verdicts and settlement.
@dev Token accounting: this contract's credit balance always equals
     `escrowed`, the sum of the prices of open queries. Settlement moves a
     query's whole price out (to providers, nodes, and the analyst's refund)
     and nothing else; slashed stake moves from the registry to the analyst.
     Privacy budgets are integers in micro-units of zCDP rho.
"""

from ethereum.ercs import IERC20
from snekmate.auth import ownable

initializes: ownable

exports: (ownable.owner, ownable.transfer_ownership)


interface Registry:
    def hasRole(role: bytes32, account: address) -> bool: view
    def stakes(node: address) -> uint256: view
    def min_stake() -> uint256: view
    def committee_members(committee_id: uint256) -> DynArray[address, MAX_MEMBERS]: view
    def lock(nodes: DynArray[address, MAX_MEMBERS]): nonpayable
    def unlock(nodes: DynArray[address, MAX_MEMBERS]): nonpayable
    def slash(node: address, beneficiary: address) -> uint256: nonpayable
    def add_reputation(account: address, delta: int256): nonpayable


PROVIDER_ROLE: constant(bytes32) = keccak256("tessera.PROVIDER")
NODE_ROLE: constant(bytes32) = keccak256("tessera.NODE")
ANALYST_ROLE: constant(bytes32) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: constant(bytes32) = keccak256("tessera.VERIFIER")

MAX_MEMBERS: constant(uint256) = 16
MAX_QUERY_DATASETS: constant(uint256) = 16
MAX_TAGS: constant(uint256) = 8
MAX_TAGGED: constant(uint256) = 256
MAX_DATASETS: constant(uint256) = 1024
MAX_TOP: constant(uint256) = 16
MAX_COMMITTERS: constant(uint256) = 32
MAX_TRAIL: constant(uint256) = 192  # 6 kinds x MAX_COMMITTERS
BPS: constant(uint256) = 10000
REPUTATION_REWARD: constant(int256) = 1
REPUTATION_PENALTY: constant(int256) = -10

# query kinds
KIND_QUERY: constant(uint8) = 0
KIND_TRAINING: constant(uint8) = 1

# query status
OPEN: constant(uint8) = 1
PASSED: constant(uint8) = 2
FAILED: constant(uint8) = 3
EXPIRED: constant(uint8) = 4

# audit-trail commitment kinds
CONTRIBUTION: constant(uint8) = 0
AGGREGATE: constant(uint8) = 1
NOISE: constant(uint8) = 2
KEY_SWITCH: constant(uint8) = 3
PROOF_BUNDLE: constant(uint8) = 4
RESULT: constant(uint8) = 5


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
    active: bool
    queries: uint256
    revenue: uint256
    rating_sum: uint256
    rating_count: uint256


struct Query:
    analyst: address
    datasets: DynArray[uint256, MAX_QUERY_DATASETS]
    provider_cuts: DynArray[uint256, MAX_QUERY_DATASETS]
    node_pool: uint256
    committee: uint256
    privacy_cost: uint256
    operations: uint256
    kind: uint8
    price: uint256
    status: uint8
    submitted_block: uint256
    cheaters: DynArray[address, MAX_MEMBERS]


token: public(immutable(IERC20))
registry: public(immutable(Registry))
quorum: public(uint256)
timeout_blocks: public(uint256)

datasets: HashMap[uint256, Dataset]
dataset_count: public(uint256)
tag_index: HashMap[bytes32, DynArray[uint256, MAX_TAGGED]]
tag_indexed: HashMap[bytes32, HashMap[uint256, bool]]

queries: HashMap[bytes32, Query]
query_count: public(uint256)
escrowed: public(uint256)

commitments: HashMap[bytes32, HashMap[uint8, HashMap[address, bytes32]]]
committers: HashMap[bytes32, HashMap[uint8, DynArray[address, MAX_COMMITTERS]]]

voted: HashMap[bytes32, HashMap[address, bool]]
votes: HashMap[bytes32, HashMap[bytes32, uint256]]
verdict_count: public(HashMap[bytes32, uint256])
rated: HashMap[bytes32, HashMap[uint256, bool]]

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
    committee: uint256
    privacy_cost: uint256
    price: uint256

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
    refunded: uint256

event Rated:
    dataset_id: indexed(uint256)
    query_id: indexed(bytes32)
    stars: uint256


@deploy
def __init__(token_: IERC20, registry_: Registry, quorum_: uint256, timeout_blocks_: uint256):
    ownable.__init__()
    assert quorum_ > 0, "quorum must be positive"
    token = token_
    registry = registry_
    self.quorum = quorum_
    self.timeout_blocks = timeout_blocks_


@external
def set_quorum(quorum_: uint256, timeout_blocks_: uint256):
    ownable._check_owner()
    assert quorum_ > 0, "quorum must be positive"
    self.quorum = quorum_
    self.timeout_blocks = timeout_blocks_


# -- catalog -----------------------------------------------------------------


@internal
def _check_policy(node_share_bps: uint256, min_cohort: uint256):
    assert node_share_bps <= BPS, "node share above 100%"
    assert min_cohort > 0, "minimum cohort must be positive"


@internal
def _index_tags(dataset_id: uint256, tags: DynArray[bytes32, MAX_TAGS]):
    for tag: bytes32 in tags:
        assert tag != empty(bytes32), "empty tag"
        if not self.tag_indexed[tag][dataset_id]:
            self.tag_indexed[tag][dataset_id] = True
            self.tag_index[tag].append(dataset_id)


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
) -> uint256:
    assert staticcall registry.hasRole(PROVIDER_ROLE, msg.sender), "not a provider"
    self._check_policy(node_share_bps, min_cohort)
    dataset_id: uint256 = self.dataset_count
    assert dataset_id < MAX_DATASETS, "catalog full"
    self.datasets[dataset_id] = Dataset(
        provider=msg.sender,
        schema_hash=schema_hash,
        bounds=bounds,
        tags=tags,
        allowed_operations=allowed_operations,
        min_cohort=min_cohort,
        budget_cap=budget_cap,
        budget_spent=0,
        price_per_query=price_per_query,
        price_per_training=price_per_training,
        node_share_bps=node_share_bps,
        active=True,
        queries=0,
        revenue=0,
        rating_sum=0,
        rating_count=0,
    )
    self.dataset_count = dataset_id + 1
    self._index_tags(dataset_id, tags)
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
):
    """
    @notice Change a listing's policy. The budget cap can never drop below
            what has already been spent; open queries keep the prices and
            payout split they were submitted with.
    """
    self._own_dataset(dataset_id)
    self._check_policy(node_share_bps, min_cohort)
    assert budget_cap >= self.datasets[dataset_id].budget_spent, "cap below spent budget"
    self.datasets[dataset_id].bounds = bounds
    self.datasets[dataset_id].tags = tags
    self.datasets[dataset_id].allowed_operations = allowed_operations
    self.datasets[dataset_id].min_cohort = min_cohort
    self.datasets[dataset_id].budget_cap = budget_cap
    self.datasets[dataset_id].price_per_query = price_per_query
    self.datasets[dataset_id].price_per_training = price_per_training
    self.datasets[dataset_id].node_share_bps = node_share_bps
    self._index_tags(dataset_id, tags)
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
def search_by_tag(tag: bytes32) -> DynArray[uint256, MAX_TAGGED]:
    """@notice Active datasets currently carrying `tag`, in the order they first got it."""
    found: DynArray[uint256, MAX_TAGGED] = []
    for dataset_id: uint256 in self.tag_index[tag]:
        if self.datasets[dataset_id].active and tag in self.datasets[dataset_id].tags:
            found.append(dataset_id)
    return found


@external
@view
def top_datasets(k: uint256) -> DynArray[uint256, MAX_TOP]:
    """@notice The `k` datasets with the most revenue (ties: earlier listing first)."""
    top: DynArray[uint256, MAX_TOP] = []
    count: uint256 = self.dataset_count
    for _: uint256 in range(min(k, MAX_TOP), bound=MAX_TOP):
        best: uint256 = max_value(uint256)
        best_revenue: uint256 = 0
        for dataset_id: uint256 in range(count, bound=MAX_DATASETS):
            if dataset_id in top:
                continue
            revenue: uint256 = self.datasets[dataset_id].revenue
            if best == max_value(uint256) or revenue > best_revenue:
                best = dataset_id
                best_revenue = revenue
        if best == max_value(uint256):
            break
        top.append(best)
    return top


@external
def rate(query_id: bytes32, dataset_id: uint256, stars: uint256):
    """@notice The analyst of a query that passed rates one of its datasets, once, 1 to 5."""
    assert self.queries[query_id].analyst == msg.sender, "not the query's analyst"
    assert self.queries[query_id].status == PASSED, "query has not passed"
    assert dataset_id in self.queries[query_id].datasets, "dataset not in query"
    assert stars >= 1 and stars <= 5, "stars must be 1 to 5"
    assert not self.rated[query_id][dataset_id], "already rated"
    self.rated[query_id][dataset_id] = True
    self.datasets[dataset_id].rating_sum += stars
    self.datasets[dataset_id].rating_count += 1
    log Rated(dataset_id=dataset_id, query_id=query_id, stars=stars)


# -- queries -----------------------------------------------------------------


@external
def submit_query(
    query_id: bytes32,
    dataset_ids: DynArray[uint256, MAX_QUERY_DATASETS],
    committee: uint256,
    privacy_cost: uint256,
    operations: uint256,
    kind: uint8,
):
    """
    @notice Submit a query (its id is the hash of its canonical JSON), spend
            `privacy_cost` of every dataset's budget and escrow the price.
            Refused if a dataset is not listed, an operation is not allowed or
            a budget would be overspent.
    """
    assert staticcall registry.hasRole(ANALYST_ROLE, msg.sender), "not an analyst"
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
        allowed: uint256 = self.datasets[dataset_id].allowed_operations
        assert operations & ~allowed == 0, "operation not allowed"
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

    self.queries[query_id] = Query(
        analyst=msg.sender,
        datasets=dataset_ids,
        provider_cuts=cuts,
        node_pool=node_pool,
        committee=committee,
        privacy_cost=privacy_cost,
        operations=operations,
        kind=kind,
        price=price,
        status=OPEN,
        submitted_block=block.number,
        cheaters=[],
    )
    self.query_count += 1
    self.escrowed += price
    if price > 0:
        assert extcall token.transferFrom(msg.sender, self, price), "escrow transfer failed"
    extcall registry.lock(members)
    log QuerySubmitted(
        query_id=query_id, analyst=msg.sender, committee=committee, privacy_cost=privacy_cost, price=price
    )


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


# -- audit trail -------------------------------------------------------------


@internal
def _commit(query_id: bytes32, kind: uint8, digest: bytes32):
    assert digest != empty(bytes32), "empty digest"
    if kind == CONTRIBUTION:
        assert staticcall registry.hasRole(PROVIDER_ROLE, msg.sender), "not a provider"
        assert self._is_query_provider(query_id, msg.sender), "not a provider of this query"
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
    self.commitments[query_id][kind][msg.sender] = digest
    self.committers[query_id][kind].append(msg.sender)
    log Committed(query_id=query_id, kind=kind, author=msg.sender, digest=digest)


@external
def commit(query_id: bytes32, kind: uint8, digest: bytes32):
    """
    @notice Record the hash of one artefact of an open query: a provider's
            contribution, the committee's aggregate, a node's noise term,
            key-switch share or proof bundle, or the analyst's result. Each
            author commits each kind once.
    """
    assert self.queries[query_id].status == OPEN, "query not open"
    self._commit(query_id, kind, digest)


@external
def commit_many(query_id: bytes32, kinds: DynArray[uint8, 6], digests: DynArray[bytes32, 6]):
    """@notice Several commitments of one author in one transaction (same rules as `commit`)."""
    assert self.queries[query_id].status == OPEN, "query not open"
    assert len(kinds) == len(digests), "one digest per kind"
    for i: uint256 in range(len(kinds), bound=6):
        self._commit(query_id, kinds[i], digests[i])


@external
@view
def commitment(query_id: bytes32, kind: uint8, author: address) -> bytes32:
    return self.commitments[query_id][kind][author]


@external
@view
def committers_of(query_id: bytes32, kind: uint8) -> DynArray[address, MAX_COMMITTERS]:
    return self.committers[query_id][kind]


struct Commitment:
    kind: uint8
    author: address
    digest: bytes32


@external
@view
def trail(query_id: bytes32) -> DynArray[Commitment, MAX_TRAIL]:
    """@notice The whole audit trail of a query in one call: every commitment, by kind."""
    out: DynArray[Commitment, MAX_TRAIL] = []
    for kind: uint8 in range(RESULT + 1):
        for author: address in self.committers[query_id][kind]:
            out.append(
                Commitment(kind=kind, author=author, digest=self.commitments[query_id][kind][author])
            )
    return out


# -- verdicts and settlement --------------------------------------------------


@external
def post_verdict(query_id: bytes32, passed: bool, cheaters: DynArray[address, MAX_MEMBERS]) -> bool:
    """
    @notice A registered verifier who is no party to the query (not its
            analyst, a provider of its datasets or a member of its committee)
            votes a verdict: passed or not, and the committee members proven
            to have cheated (ascending). When `quorum` verifiers agree on the
            same verdict the query settles; returns whether it did.
    """
    assert staticcall registry.hasRole(VERIFIER_ROLE, msg.sender), "not a verifier"
    assert self.queries[query_id].status == OPEN, "query not open"
    assert msg.sender != self.queries[query_id].analyst, "conflict of interest"
    assert not self._is_query_provider(query_id, msg.sender), "conflict of interest"
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
        self.queries[query_id].committee
    )
    assert msg.sender not in members, "conflict of interest"
    assert not self.voted[query_id][msg.sender], "already voted"
    previous: address = empty(address)
    for cheater: address in cheaters:
        assert convert(cheater, uint160) > convert(previous, uint160), "cheaters not ascending"
        assert cheater in members, "cheater not in committee"
        previous = cheater
    if passed:
        assert len(self.committers[query_id][RESULT]) > 0, "no result committed"
    self.voted[query_id][msg.sender] = True
    self.verdict_count[query_id] += 1
    key: bytes32 = keccak256(abi_encode(passed, cheaters))
    count: uint256 = self.votes[query_id][key] + 1
    self.votes[query_id][key] = count
    log VerdictPosted(query_id=query_id, verifier=msg.sender, passed=passed, cheaters=cheaters)
    if count < self.quorum:
        return False
    self._settle(query_id, passed, cheaters, members)
    return True


@internal
def _pay(to: address, amount: uint256):
    if amount > 0:
        assert extcall token.transfer(to, amount), "payment failed"


@internal
def _settle(
    query_id: bytes32,
    passed: bool,
    cheaters: DynArray[address, MAX_MEMBERS],
    members: DynArray[address, MAX_MEMBERS],
):
    q: Query = self.queries[query_id]
    refund: uint256 = q.price
    paid: uint256 = 0
    if passed:
        refund = 0
        # providers: their cut, if their contribution is on the audit trail
        for i: uint256 in range(len(q.datasets), bound=MAX_QUERY_DATASETS):
            dataset_id: uint256 = q.datasets[i]
            provider: address = self.datasets[dataset_id].provider
            cut: uint256 = q.provider_cuts[i]
            if self.commitments[query_id][CONTRIBUTION][provider] == empty(bytes32):
                refund += cut
                continue
            self._pay(provider, cut)
            paid += cut
            self.provider_revenue[provider] += cut
            self.datasets[dataset_id].revenue += cut
            extcall registry.add_reputation(provider, REPUTATION_REWARD)
        # nodes: equal shares of the pool to members that committed noise and did not cheat
        honest: DynArray[address, MAX_MEMBERS] = []
        for member: address in members:
            if member in cheaters:
                continue
            if self.commitments[query_id][NOISE][member] != empty(bytes32):
                honest.append(member)
        if len(honest) == 0:
            refund += q.node_pool
        else:
            each: uint256 = q.node_pool // len(honest)
            refund += q.node_pool - each * len(honest)
            for member: address in honest:
                self._pay(member, each)
                paid += each
                self.node_revenue[member] += each
                extcall registry.add_reputation(member, REPUTATION_REWARD)
    slashed: uint256 = 0
    for cheater: address in cheaters:
        slashed += extcall registry.slash(cheater, q.analyst)
        extcall registry.add_reputation(cheater, REPUTATION_PENALTY)
    self._pay(q.analyst, refund)
    self.escrowed -= q.price
    self.total_volume += paid
    self.settled_queries += 1
    self.queries[query_id].cheaters = cheaters
    if passed:
        self.queries[query_id].status = PASSED
    else:
        self.queries[query_id].status = FAILED
    extcall registry.unlock(members)
    log QuerySettled(query_id=query_id, passed=passed, paid=paid, refunded=refund, slashed=slashed)


@external
def expire(query_id: bytes32):
    """@notice Anyone: refund a query that got no verdict within `timeout_blocks`."""
    assert self.queries[query_id].status == OPEN, "query not open"
    deadline: uint256 = self.queries[query_id].submitted_block + self.timeout_blocks
    assert block.number > deadline, "query not timed out"
    price: uint256 = self.queries[query_id].price
    analyst: address = self.queries[query_id].analyst
    self.queries[query_id].status = EXPIRED
    self.escrowed -= price
    self._pay(analyst, price)
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(
        self.queries[query_id].committee
    )
    extcall registry.unlock(members)
    log QueryExpired(query_id=query_id, refunded=price)
