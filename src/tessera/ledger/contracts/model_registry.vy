# pragma version ~=0.4.3
"""
@title Model registry
@notice Chains the rounds of each federated training: round `r`'s global model
        is addressed by its IPFS CID, names the CID of round `r - 1` as its
        parent, and states the privacy spent in that round (micro-rho, zCDP).
        A training is opened by its analyst with the CID of the initial model;
        only that analyst appends rounds, each on top of the latest one, so the
        chain has no forks and no gaps.

        A market training (`open_training`) ties every round to the market
        query that ran it: the registry reads that query from the market and
        refuses the round unless the query exists, is of the training kind, was
        submitted by the caller on the training's committee, did not fail or
        expire, and names no other round. The round's privacy cost is the
        market's `privacy_cost`, charged to the datasets' budgets there, never
        a figure of the caller's.

        A local training (`open_local_training`) is marked as such for good:
        its rounds name no query and their micro-rho is the analyst's word.
        The two never mix in one training.

        The CID itself is the analyst's statement (only the analyst can decode
        the aggregate); the round's work is on the market's trail.
@dev A separate contract: the market is close to the EIP-170 size limit. The
     market's address is fixed at deployment.
"""

MAX_CID: constant(uint256) = 96
# the market's bound, for its `Query` struct (market.vy)
MAX_MEMBERS: constant(uint256) = 64

KIND_TRAINING: constant(uint8) = 1
FAILED: constant(uint8) = 3
EXPIRED: constant(uint8) = 4


# The market's `Query`, field for field (its ABI): what `market.query(id)` returns.
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


interface Market:
    def query(query_id: bytes32) -> Query: view


# One slot less per round: micro-rho (< 2**192) and the block number share one word.
struct Stored:
    cid: String[MAX_CID]
    rho_and_block: uint256  # rho_micro << 64 | block
    query_id: bytes32


struct Round:
    cid: String[MAX_CID]
    parent: String[MAX_CID]
    rho_micro: uint256
    block: uint256
    #: The market query that ran the round (empty: round 0, or a local training).
    query_id: bytes32


event TrainingOpened:
    training: indexed(bytes32)
    analyst: indexed(address)
    committee: uint256
    cid: String[MAX_CID]
    local: bool


event RoundRecorded:
    training: indexed(bytes32)
    query_id: indexed(bytes32)
    round: uint256
    cid: String[MAX_CID]
    parent: String[MAX_CID]
    rho_micro: uint256
    total_rho_micro: uint256


market: public(immutable(address))

analyst_of: public(HashMap[bytes32, address])
committee_of: public(HashMap[bytes32, uint256])
#: True for a training off the market: its rounds' micro-rho is the analyst's word.
local_of: public(HashMap[bytes32, bool])
#: Rounds recorded after the initial model (round 0).
rounds_of: public(HashMap[bytes32, uint256])
total_rho_micro: public(HashMap[bytes32, uint256])
#: The training a market query's round belongs to (one round per query).
training_of_query: public(HashMap[bytes32, bytes32])
_rounds: HashMap[bytes32, HashMap[uint256, Stored]]


@deploy
def __init__(market_address: address):
    assert market_address != empty(address), "no market"
    market = market_address


@internal
def _open(training: bytes32, committee: uint256, cid: String[MAX_CID], local: bool):
    assert training != empty(bytes32), "empty training id"
    assert self.analyst_of[training] == empty(address), "training already open"
    assert len(cid) > 0, "empty cid"
    self.analyst_of[training] = msg.sender
    self.committee_of[training] = committee
    self.local_of[training] = local
    self._rounds[training][0] = Stored(
        cid=cid, rho_and_block=block.number, query_id=empty(bytes32)
    )
    log TrainingOpened(
        training=training, analyst=msg.sender, committee=committee, cid=cid, local=local
    )


@external
def open_training(training: bytes32, committee: uint256, cid: String[MAX_CID]):
    """
    @notice Open a market training with its initial model `cid`: every round
            will name the training query that ran it on `committee`. The
            caller is its analyst.
    """
    self._open(training, committee, cid, False)


@external
def open_local_training(training: bytes32, cid: String[MAX_CID]):
    """
    @notice Open a local training (off the market) with its initial model `cid`:
            its rounds name no query and state their own privacy cost.
    """
    self._open(training, 0, cid, True)


@internal
def _append(
    training: bytes32,
    cid: String[MAX_CID],
    parent: String[MAX_CID],
    rho_micro: uint256,
    query_id: bytes32,
):
    r: uint256 = self.rounds_of[training]
    assert keccak256(parent) == keccak256(self._rounds[training][r].cid), "parent is not the latest round"
    assert rho_micro < 2**192, "privacy cost out of range"
    total: uint256 = self.total_rho_micro[training] + rho_micro
    self._rounds[training][r + 1] = Stored(
        cid=cid, rho_and_block=(rho_micro << 64) | block.number, query_id=query_id
    )
    self.rounds_of[training] = r + 1
    self.total_rho_micro[training] = total
    log RoundRecorded(
        training=training,
        query_id=query_id,
        round=r + 1,
        cid=cid,
        parent=parent,
        rho_micro=rho_micro,
        total_rho_micro=total,
    )


@internal
@view
def _check_analyst(training: bytes32, cid: String[MAX_CID]):
    assert self.analyst_of[training] != empty(address), "no such training"
    assert msg.sender == self.analyst_of[training], "not the training's analyst"
    assert len(cid) > 0, "empty cid"


@external
def record_round(
    training: bytes32, cid: String[MAX_CID], parent: String[MAX_CID], query_id: bytes32
):
    """
    @notice Append the next round's model `cid` on top of `parent`, the latest
            one, as the round that market query `query_id` ran. The round's
            micro-rho is the query's privacy cost on the market.
    """
    self._check_analyst(training, cid)
    assert not self.local_of[training], "a local training: its rounds name no query"
    assert self.training_of_query[query_id] == empty(bytes32), "query already recorded"
    # reverts with the market's "unknown query" when there is none
    q: Query = staticcall Market(market).query(query_id)
    assert q.kind == KIND_TRAINING, "not a training query"
    assert q.analyst == msg.sender, "not the query's analyst"
    assert q.committee == self.committee_of[training], "query on another committee"
    assert q.status != FAILED and q.status != EXPIRED, "query failed or expired"
    self.training_of_query[query_id] = training
    self._append(training, cid, parent, q.privacy_cost, query_id)


@external
def record_local_round(
    training: bytes32, cid: String[MAX_CID], parent: String[MAX_CID], rho_micro: uint256
):
    """
    @notice Append the next round of a local training: no market query, the
            micro-rho is the analyst's word (the training is marked local).
    """
    self._check_analyst(training, cid)
    assert self.local_of[training], "a market training: a round names its query"
    self._append(training, cid, parent, rho_micro, empty(bytes32))


@external
@view
def round_of(training: bytes32, r: uint256) -> Round:
    """@notice Round `r` of `training` (round 0 is the initial model)."""
    assert self.analyst_of[training] != empty(address), "no such training"
    assert r <= self.rounds_of[training], "no such round"
    s: Stored = self._rounds[training][r]
    parent: String[MAX_CID] = ""
    if r > 0:
        parent = self._rounds[training][r - 1].cid
    return Round(
        cid=s.cid,
        parent=parent,
        rho_micro=s.rho_and_block >> 64,
        block=s.rho_and_block % 2**64,
        query_id=s.query_id,
    )


@external
@view
def latest(training: bytes32) -> String[MAX_CID]:
    """@notice The CID of the latest model of `training`."""
    assert self.analyst_of[training] != empty(address), "no such training"
    return self._rounds[training][self.rounds_of[training]].cid
