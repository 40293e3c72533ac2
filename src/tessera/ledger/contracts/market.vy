# pragma version ~=0.4.3
# pragma nonreentrancy off
# pragma optimize codesize
"""
@title Tessera market
@notice Queries (privacy-budget enforcement through the catalog, escrow of
        the price, a lock fee), the audit trail of each query, the verifiers
        drawn for it, their verdicts, settlement and the credits owed to each
        party, ratings, market statistics. The catalog (listings, tags, top
        datasets, ratings' storage) is its own contract, `catalog.vy`.
@dev Fair exchange: once a query's work is on the trail (contributions, the
     locked aggregate, enough noise and key-switch shares, a proof bundle),
     its price is owed to the workers. It settles for them at a verdict
     quorum of its drawn verifiers, or at its deadline unless such a quorum
     proved cheating; the analyst's own result commitment is never needed.
     Pull payments: settlement transfers nothing; it credits what each
     provider, node and the analyst (its refund) is owed, and each withdraws
     it with `withdraw()`. Token accounting: this contract's credit balance
     always equals `escrowed` (the prices of open queries) + `total_owed`
     (credited, not yet withdrawn). Privacy budgets are integers in
     micro-units of zCDP rho.
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
    def committee_size(committee_id: uint256) -> uint256: view
    def is_member(committee_id: uint256, account: address) -> bool: view
    def pool() -> DynArray[address, MAX_POOL]: view
    def lock(accounts: DynArray[address, MAX_MEMBERS]): nonpayable
    def unlock(accounts: DynArray[address, MAX_MEMBERS]): nonpayable
    def slash(account: address, amount: uint256) -> uint256: nonpayable
    def add_reputation(account: address, delta: int256): nonpayable


interface Catalog:
    def charge(
        analyst: address,
        dataset_ids: DynArray[uint256, MAX_QUERY_DATASETS_ARG],
        privacy_cost: uint256,
        operations: uint256,
        kind: uint8,
    ) -> (DynArray[uint256, MAX_QUERY_DATASETS], uint256, uint256): nonpayable
    def provider_of(dataset_id: uint256) -> address: view
    def return_budget(dataset_id: uint256, privacy_cost: uint256): nonpayable
    def record_sale(dataset_id: uint256, analyst: address, amount: uint256) -> bool: nonpayable
    def record_rating(dataset_id: uint256, analyst: address, stars: uint256): nonpayable


PROVIDER_ROLE: constant(bytes32) = keccak256("tessera.PROVIDER")
NODE_ROLE: constant(bytes32) = keccak256("tessera.NODE")
ANALYST_ROLE: constant(bytes32) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: constant(bytes32) = keccak256("tessera.VERIFIER")

MAX_MEMBERS: constant(uint256) = 64
MAX_POOL: constant(uint256) = 64
MAX_VERIFIERS: constant(uint256) = 16  # drawn per query
MAX_ASSIGNED: constant(uint256) = 64  # the draw's type bound (sortition); MAX_VERIFIERS apply
MAX_QUERY_DATASETS: constant(uint256) = 256
MAX_QUERY_DATASETS_ARG: constant(uint256) = 257  # one more: a longer list gets a reason
MAX_COMMITTERS: constant(uint256) = 256  # per kind: every provider, or every member
MAX_TRAIL: constant(uint256) = 513  # contributions and exclusions (one per provider), 4 node kinds, a result
ID_MASK: constant(uint256) = 2**32 - 1  # an entry: provider's cut << 32 | dataset id (128 bits)
ENTRY_MASK: constant(uint256) = 2**128 - 1  # two entries to a storage word
SETTLE_BATCH: constant(uint256) = 64  # providers credited per transaction (`settle`)
WEIGHT_TOTAL: constant(uint256) = 10**6  # contribution weights of a training query sum to this
REPUTATION_REWARD: constant(int256) = 1
REPUTATION_PENALTY: constant(int256) = -10
REPUTATION_ABSENT: constant(int256) = -1
REPUTATION_TIMEOUT: constant(int256) = -2  # a committee member that did not act
TIMEOUT_SLASH_DIVISOR: constant(uint256) = 10  # a timeout burns a tenth of the query's node slash

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


struct Query:
    analyst: address
    ticket_hash: bytes32
    dataset_count: uint256
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
catalog: public(immutable(Catalog))
params: public(Params)

served: HashMap[address, HashMap[address, bool]]  # node -> analysts it was paid by

queries: HashMap[bytes32, Query]
entries: HashMap[bytes32, DynArray[uint256, MAX_QUERY_DATASETS // 2]]  # two entries a word
settled_upto: HashMap[bytes32, uint256]  # entries credited so far, once the query is closed
settle_pays: HashMap[bytes32, bool]  # whether contributing providers are paid (not on failure)
withholder: HashMap[bytes32, HashMap[address, bool]]  # named withheld by the verdict: unpaid
any_withheld: HashMap[bytes32, bool]  # whether it names any (if not, settlement looks none up)
is_provider: HashMap[bytes32, HashMap[address, bool]]  # the providers of a query's datasets
query_count: public(uint256)
escrowed: public(uint256)
owed: public(HashMap[address, uint256])  # credited by settlements, paid out by `withdraw`
total_owed: public(uint256)

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

scored: public(HashMap[bytes32, bool])  # a training query's providers' cut split by scores
score_voted: HashMap[bytes32, HashMap[address, bool]]
score_votes: HashMap[bytes32, HashMap[bytes32, uint256]]


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
    withheld: DynArray[address, MAX_QUERY_DATASETS]

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

event ScoresApplied:
    query_id: indexed(bytes32)
    digest: bytes32
    refunded: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

event ProvidersSettled:
    query_id: indexed(bytes32)
    paid: uint256
    refunded: uint256
    remaining: uint256


@deploy
def __init__(
    token_: IERC20,
    registry_: Registry,
    catalog_: Catalog,
    timeout_blocks_: uint256,
    verifiers_per_query_: uint256,
    lock_fee_: uint256,
):
    ownable.__init__()
    token = token_
    registry = registry_
    catalog = catalog_
    self._set_params(timeout_blocks_, verifiers_per_query_, lock_fee_)


@internal
def _set_params(timeout_blocks_: uint256, verifiers_per_query_: uint256, lock_fee_: uint256):
    assert verifiers_per_query_ >= 1 and verifiers_per_query_ <= MAX_VERIFIERS, "verifiers per query out of range"
    assert timeout_blocks_ >= 1, "timeout must be at least one block"
    self.params = Params(
        timeout_blocks=timeout_blocks_, verifiers_per_query=verifiers_per_query_, lock_fee=lock_fee_
    )


@external
def set_params(timeout_blocks_: uint256, verifiers_per_query_: uint256, lock_fee_: uint256):
    """@notice Owner (the governance timelock): parameters of queries submitted from now on."""
    ownable._check_owner()
    self._set_params(timeout_blocks_, verifiers_per_query_, lock_fee_)


@external
def rate(query_id: bytes32, dataset_id: uint256, stars: uint256):
    """
    @notice The analyst of a query that passed rates one of its datasets, 1 to
            5 (kept by the catalog). Each analyst counts once per dataset:
            rating again replaces its earlier stars.
    """
    assert self.queries[query_id].analyst == msg.sender, "not the query's analyst"
    status: uint8 = self.queries[query_id].status
    assert status == PASSED or status == COMPLETED, "query has not passed"
    found: bool = False
    for i: uint256 in range(self.queries[query_id].dataset_count, bound=MAX_QUERY_DATASETS):
        if self._entry(query_id, i) & ID_MASK == dataset_id:
            found = True
            break
    assert found, "dataset not in query"
    extcall catalog.record_rating(dataset_id, msg.sender, stars)


# -- queries -----------------------------------------------------------------


@external
def submit_query(
    ticket_hash: bytes32,
    dataset_ids: DynArray[uint256, MAX_QUERY_DATASETS_ARG],
    committee: uint256,
    privacy_cost: uint256,
    operations: uint256,
    kind: uint8,
) -> bytes32:
    """
    @notice Submit a query: `ticket_hash` is the SHA-256 of its canonical
            ticket, and its id is keccak256(analyst, ticket_hash). Spends
            `privacy_cost` of every dataset's budget (the catalog checks each
            dataset's policy), escrows the price and pays each committee
            member the lock fee (never refunded: locking a node's stake costs
            the submitter). A cost of 0 (an exact query) needs every dataset to
            allow exact queries. Every role checks that the cost is the one its
            ticket states before it works.
    """
    assert staticcall registry.hasRole(ANALYST_ROLE, msg.sender), "not an analyst"
    query_id: bytes32 = keccak256(concat(convert(msg.sender, bytes20), ticket_hash))
    assert self.queries[query_id].status == 0, "query already submitted"
    assert operations != 0, "no operation"
    assert kind == KIND_QUERY or kind == KIND_TRAINING, "unknown query kind"
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(committee)
    min_stake: uint256 = staticcall registry.min_stake()
    for member: address in members:
        assert staticcall registry.hasRole(NODE_ROLE, member), "committee member deregistered"
        assert staticcall registry.stakes(member) >= min_stake, "committee member under-staked"

    entries: DynArray[uint256, MAX_QUERY_DATASETS] = []
    node_pool: uint256 = 0
    price: uint256 = 0
    entries, node_pool, price = extcall catalog.charge(
        msg.sender, dataset_ids, privacy_cost, operations, kind
    )
    for e: uint256 in entries:
        self.is_provider[query_id][staticcall catalog.provider_of(e & ID_MASK)] = True
    self._store_entries(query_id, entries)

    p: Params = self.params
    self.queries[query_id] = Query(
        analyst=msg.sender,
        ticket_hash=ticket_hash,
        dataset_count=len(entries),
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
def _entry(query_id: bytes32, i: uint256) -> uint256:
    return self.entries[query_id][i // 2] >> (128 * (i % 2)) & ENTRY_MASK


@internal
def _store_entries(query_id: bytes32, entries: DynArray[uint256, MAX_QUERY_DATASETS]):
    packed: DynArray[uint256, MAX_QUERY_DATASETS // 2] = []
    for i: uint256 in range(len(entries), bound=MAX_QUERY_DATASETS):
        if i % 2 == 0:
            packed.append(entries[i])
        else:
            packed[i // 2] = packed[i // 2] | entries[i] << 128
    self.entries[query_id] = packed


@external
@view
def query_datasets(query_id: bytes32) -> DynArray[uint256, MAX_QUERY_DATASETS]:
    """@notice A query's datasets, each entry its provider's cut << 32 | the dataset id."""
    out: DynArray[uint256, MAX_QUERY_DATASETS] = []
    for i: uint256 in range(self.queries[query_id].dataset_count, bound=MAX_QUERY_DATASETS):
        out.append(self._entry(query_id, i))
    return out


@external
@view
def unsettled(query_id: bytes32) -> uint256:
    """@notice Datasets of a query whose providers are not credited or refunded yet."""
    return self.queries[query_id].dataset_count - self.settled_upto[query_id]


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
    committee: uint256 = self.queries[query_id].committee
    min_stake: uint256 = staticcall registry.min_stake()
    eligible: DynArray[address, MAX_POOL] = []
    for v: address in staticcall registry.pool():
        if v == self.queries[query_id].analyst or self.is_provider[query_id][v]:
            continue
        if staticcall registry.is_member(committee, v):
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
        assert self.is_provider[query_id][msg.sender], "not a provider of this query"
        other: uint8 = CONTRIBUTION + EXCLUSION - kind
        assert self.commitments[query_id][other][msg.sender] == empty(bytes32), "already committed"
    elif kind == RESULT:
        assert msg.sender == self.queries[query_id].analyst, "not the query's analyst"
    elif kind <= PROOF_BUNDLE:
        assert staticcall registry.hasRole(NODE_ROLE, msg.sender), "not a computing node"
        member: bool = staticcall registry.is_member(self.queries[query_id].committee, msg.sender)
        assert member, "not a committee member"
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
    n: uint256 = staticcall registry.committee_size(committee)
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


# -- contribution scores (training) -------------------------------------------


@external
def post_scores(query_id: bytes32, digest: bytes32, weights: DynArray[uint256, MAX_QUERY_DATASETS]) -> bool:
    """
    @notice A verifier drawn for an open training query confirms the score
            record `digest` it re-computed and its weights, one per dataset in
            entry order, summing to 1e6 (or all 0). At a majority of the drawn
            verifiers on the same digest and weights, the providers' escrow is
            split by weight: each contributing provider's cut becomes its share
            (none for weight 0 or no contribution), the rest goes back to the
            analyst. Returns whether the split was applied.
    """
    self._check_open(query_id)
    assert self.queries[query_id].kind == KIND_TRAINING, "not a training query"
    assert self._draw_if_due(query_id), "verifiers are drawn from the next block"
    assert msg.sender in self.assigned[query_id], "not a verifier of this query"
    assert not self.scored[query_id], "scores already applied"
    assert not self.score_voted[query_id][msg.sender], "already posted scores"
    n: uint256 = self.queries[query_id].dataset_count
    assert len(weights) == n, "one weight per dataset"
    total: uint256 = 0
    pool: uint256 = 0
    for i: uint256 in range(n, bound=MAX_QUERY_DATASETS):
        total += weights[i]
        pool += self._entry(query_id, i) >> 32
    assert total == WEIGHT_TOTAL or total == 0, "weights must sum to 1000000 or 0"
    self.score_voted[query_id][msg.sender] = True
    key: bytes32 = keccak256(abi_encode(digest, weights))
    count: uint256 = self.score_votes[query_id][key] + 1
    self.score_votes[query_id][key] = count
    if count < self._quorum(query_id):
        return False
    self.scored[query_id] = True
    entries: DynArray[uint256, MAX_QUERY_DATASETS] = []
    paid: uint256 = 0
    for i: uint256 in range(n, bound=MAX_QUERY_DATASETS):
        dataset_id: uint256 = self._entry(query_id, i) & ID_MASK
        cut: uint256 = 0
        if self.commitments[query_id][CONTRIBUTION][staticcall catalog.provider_of(dataset_id)] != empty(bytes32):
            cut = pool * weights[i] // WEIGHT_TOTAL
        paid += cut
        entries.append(cut << 32 | dataset_id)
    self._store_entries(query_id, entries)
    self._credit(self.queries[query_id].analyst, pool - paid)
    self.escrowed -= pool - paid
    log ScoresApplied(query_id=query_id, digest=digest, refunded=pool - paid)
    return True


# -- verdicts and settlement --------------------------------------------------


@external
def post_verdict(
    query_id: bytes32,
    passed: bool,
    cheaters: DynArray[address, MAX_MEMBERS],
    withheld: DynArray[address, MAX_QUERY_DATASETS] = [],
) -> bool:
    """
    @notice A verifier drawn for the query votes a verdict before its
            deadline: passed or not, the committee members proven to have
            cheated (ascending), and the providers that committed a
            contribution the record leaves out as withheld (ascending), as the
            locked aggregate names them. A passing verdict needs the work to be
            on the trail. When a majority of the drawn verifiers agree on the
            same verdict the query settles, and a drawn verifier that voted
            another verdict loses stake like a cheating node; returns whether
            it did. A withheld provider is paid nothing (its cut goes back to
            the analyst, who got nothing from it), loses a little reputation,
            keeps its stake and its budget spent (it committed).
    """
    self._check_open(query_id)
    assert self._draw_if_due(query_id), "verifiers are drawn from the next block"
    assert msg.sender in self.assigned[query_id], "not a verifier of this query"
    assert self.vote_of[query_id][msg.sender] == empty(bytes32), "already voted"
    committee: uint256 = self.queries[query_id].committee
    previous: address = empty(address)
    for cheater: address in cheaters:
        assert convert(cheater, uint160) > convert(previous, uint160), "cheaters not ascending"
        assert staticcall registry.is_member(committee, cheater), "cheater not in committee"
        previous = cheater
    previous = empty(address)
    for account: address in withheld:
        assert convert(account, uint160) > convert(previous, uint160), "withheld not ascending"
        assert self.commitments[query_id][CONTRIBUTION][account] != empty(bytes32), "withheld committed nothing"
        previous = account
    if passed:
        assert self._work_complete(query_id), "work not complete"
    key: bytes32 = keccak256(abi_encode(passed, cheaters, withheld))
    self.vote_of[query_id][msg.sender] = key
    self.verdict_count[query_id] += 1
    count: uint256 = self.votes[query_id][key] + 1
    self.votes[query_id][key] = count
    log VerdictPosted(
        query_id=query_id, verifier=msg.sender, passed=passed, cheaters=cheaters, withheld=withheld
    )
    if count < self._quorum(query_id):
        return False
    slashed: uint256 = self._judge_verifiers(query_id, key)
    for account: address in withheld:
        self.withholder[query_id][account] = True
        self.any_withheld[query_id] = True
        extcall registry.add_reputation(account, REPUTATION_ABSENT)
    members: DynArray[address, MAX_MEMBERS] = staticcall registry.committee_members(committee)
    if passed:
        self._pay_work(query_id, cheaters, members, slashed, True)
    else:
        self._fail(query_id, cheaters, members, slashed)
    return True


@internal
def _credit(to: address, amount: uint256):
    """Pull payments: what `to` is owed grows; it takes it with `withdraw`."""
    if amount > 0:
        self.owed[to] += amount
        self.total_owed += amount


@external
def withdraw() -> uint256:
    """
    @notice Pay out every credit settlements owe the caller (providers' cuts,
            nodes' shares, an analyst's refunds). Returns the amount; refused
            when nothing is owed, so a second withdrawal pays nothing.
    """
    amount: uint256 = self.owed[msg.sender]
    assert amount > 0, "nothing owed to this account"
    self.owed[msg.sender] = 0
    self.total_owed -= amount
    assert extcall token.transfer(msg.sender, amount), "payment failed"
    log Withdrawn(account=msg.sender, amount=amount)
    return amount


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
def _settle_batch(query_id: bytes32) -> (uint256, uint256):
    """The next `SETTLE_BATCH` datasets of a closed query: providers whose
    contribution is on the trail are credited their cut (unless the query failed
    or the verdict named them withheld); the others' cut is credited back to the
    analyst and, if they committed nothing, their budget given back (their data
    was never used). Returns (paid, refunded)."""
    analyst: address = self.queries[query_id].analyst
    cost: uint256 = self.queries[query_id].privacy_cost
    pay: bool = self.settle_pays[query_id]
    named_any: bool = self.any_withheld[query_id]
    start: uint256 = self.settled_upto[query_id]
    end: uint256 = min(start + SETTLE_BATCH, self.queries[query_id].dataset_count)
    paid: uint256 = 0
    refund: uint256 = 0
    for i: uint256 in range(start, end, bound=SETTLE_BATCH):
        e: uint256 = self._entry(query_id, i)
        dataset_id: uint256 = e & ID_MASK
        cut: uint256 = e >> 32
        provider: address = staticcall catalog.provider_of(dataset_id)
        if self.commitments[query_id][CONTRIBUTION][provider] == empty(bytes32):
            refund += cut
            if self.commitments[query_id][EXCLUSION][provider] == empty(bytes32):
                extcall catalog.return_budget(dataset_id, cost)  # its data was never used
            continue
        if not pay:
            refund += cut
            continue
        if named_any:
            if self.withholder[query_id][provider]:
                refund += cut  # committed, delivered nothing: its budget stays spent
                continue
        self._credit(provider, cut)
        paid += cut
        self.provider_revenue[provider] += cut
        # reputation and rank count distinct paying analysts, not purchases
        if extcall catalog.record_sale(dataset_id, analyst, cut):
            extcall registry.add_reputation(provider, REPUTATION_REWARD)
    self.settled_upto[query_id] = end
    self._credit(analyst, refund)
    self.escrowed -= paid + refund
    self.total_volume += paid
    log ProvidersSettled(
        query_id=query_id,
        paid=paid,
        refunded=refund,
        remaining=self.queries[query_id].dataset_count - end,
    )
    return paid, refund


@external
def settle(query_id: bytes32) -> uint256:
    """
    @notice Anyone: credit the next 64 providers of a query that settled (by a
            verdict or at its deadline) over more datasets than one transaction
            credits. Returns how many are left.
    """
    status: uint8 = self.queries[query_id].status
    assert status != 0 and status != OPEN, "query not settled"
    assert self.settled_upto[query_id] < self.queries[query_id].dataset_count, "nothing left to settle"
    self._settle_batch(query_id)
    return self.queries[query_id].dataset_count - self.settled_upto[query_id]


@internal
def _slash_cheaters(query_id: bytes32, cheaters: DynArray[address, MAX_MEMBERS]) -> uint256:
    slashed: uint256 = 0
    for cheater: address in cheaters:
        slashed += extcall registry.slash(cheater, self.queries[query_id].node_slash)
        extcall registry.add_reputation(cheater, REPUTATION_PENALTY)
    return slashed


@internal
def _timeouts(query_id: bytes32, members: DynArray[address, MAX_MEMBERS]) -> uint256:
    """Once the aggregate is locked, every member was asked to act (the analyst
    asks all of them for noise and for the key switch): one that committed no
    noise, aggregate nor key switch before the query closed timed out. It loses
    REPUTATION_TIMEOUT and a tenth of the query's node slash. Returns the stake
    burned."""
    if len(self.committers[query_id][AGGREGATE]) == 0:
        return 0  # nobody was asked for a key switch: no member is blamed
    burned: uint256 = 0
    penalty: uint256 = self.queries[query_id].node_slash // TIMEOUT_SLASH_DIVISOR
    for member: address in members:
        if (
            self.commitments[query_id][NOISE][member] == empty(bytes32)
            and self.commitments[query_id][AGGREGATE][member] == empty(bytes32)
            and self.commitments[query_id][KEY_SWITCH][member] == empty(bytes32)
        ):
            burned += extcall registry.slash(member, penalty)
            extcall registry.add_reputation(member, REPUTATION_TIMEOUT)
    return burned


@internal
def _close(query_id: bytes32, status: uint8, members: DynArray[address, MAX_MEMBERS]):
    """The node pool leaves escrow now; the providers' cuts as they are credited."""
    self.escrowed -= self.queries[query_id].node_pool
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
    switch and are not named cheaters (the remainder back to the analyst); a
    member that committed nothing timed out (`_timeouts`)."""
    analyst: address = self.queries[query_id].analyst
    pool: uint256 = self.queries[query_id].node_pool
    paid: uint256 = 0
    refund: uint256 = 0
    self.settle_pays[query_id] = True
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
            self._credit(member, each)
            paid += each
            self.node_revenue[member] += each
            if not self.served[member][analyst]:
                self.served[member][analyst] = True
                extcall registry.add_reputation(member, REPUTATION_REWARD)
    slashed: uint256 = self._slash_cheaters(query_id, cheaters) + slashed_verifiers
    slashed += self._timeouts(query_id, members)
    self._credit(analyst, refund)
    self.total_volume += paid
    self.settled_queries += 1
    self.queries[query_id].cheaters = cheaters
    self._close(query_id, PASSED if by_verdict else COMPLETED, members)
    batch_paid: uint256 = 0
    batch_refund: uint256 = 0
    batch_paid, batch_refund = self._settle_batch(query_id)
    paid += batch_paid
    refund += batch_refund
    if by_verdict:
        log QuerySettled(query_id=query_id, passed=True, paid=paid, refunded=refund, slashed=slashed)
    else:
        log QueryExpired(query_id=query_id, work_complete=True, paid=paid, refunded=refund)


@internal
def _fail(
    query_id: bytes32,
    cheaters: DynArray[address, MAX_MEMBERS],
    members: DynArray[address, MAX_MEMBERS],
    slashed_verifiers: uint256,
):
    """A quorum found the query failed: the analyst gets its price back (the node
    pool now, the providers' cuts batch by batch), the named cheaters are slashed,
    unused budget is returned."""
    slashed: uint256 = self._slash_cheaters(query_id, cheaters) + slashed_verifiers
    pool: uint256 = self.queries[query_id].node_pool
    self._credit(self.queries[query_id].analyst, pool)
    self.settled_queries += 1
    self.queries[query_id].cheaters = cheaters
    self._close(query_id, FAILED, members)
    paid: uint256 = 0
    refund: uint256 = 0
    paid, refund = self._settle_batch(query_id)
    log QuerySettled(query_id=query_id, passed=False, paid=0, refunded=pool + refund, slashed=slashed)


@external
def expire(query_id: bytes32):
    """
    @notice Anyone, after an open query's deadline: settle it without a
            verdict quorum. If its work is on the trail, the workers are paid
            as for a passing verdict (the analyst could decrypt: it cannot
            keep the result and take the price back). Otherwise providers
            that contributed are still paid their cut (their data was used),
            the rest of the price is refunded, and the budget of datasets
            that never contributed is given back. Either way, once the
            aggregate is locked a committee member that committed nothing
            timed out: it loses reputation and a tenth of the node slash.
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
    self._timeouts(query_id, members)
    pool: uint256 = self.queries[query_id].node_pool
    self._credit(self.queries[query_id].analyst, pool)
    self.settle_pays[query_id] = True  # contributors are paid: their data was used
    self._close(query_id, EXPIRED, members)
    paid: uint256 = 0
    refund: uint256 = 0
    paid, refund = self._settle_batch(query_id)
    log QueryExpired(query_id=query_id, work_complete=False, paid=paid, refunded=pool + refund)
