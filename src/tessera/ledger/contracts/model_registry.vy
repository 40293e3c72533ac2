# pragma version ~=0.4.3
"""
@title Model registry
@notice Chains the rounds of each federated training: round `r`'s global model
        is addressed by its IPFS CID, names the CID of round `r - 1` as its
        parent, and states the privacy spent in that round (micro-rho, zCDP).
        A training is opened by its analyst with the CID of the initial model;
        only that analyst appends rounds, each on top of the latest one, so the
        chain has no forks and no gaps. The CID is the analyst's statement
        (only the analyst can decode the aggregate); the round's work and its
        privacy charge are on the market's trail.
@dev A separate contract: the market is close to the EIP-170 size limit.
"""

MAX_CID: constant(uint256) = 96


struct Round:
    cid: String[MAX_CID]
    parent: String[MAX_CID]
    rho_micro: uint256
    block: uint256


event TrainingOpened:
    training: indexed(bytes32)
    analyst: indexed(address)
    committee: uint256
    cid: String[MAX_CID]


event RoundRecorded:
    training: indexed(bytes32)
    round: uint256
    cid: String[MAX_CID]
    parent: String[MAX_CID]
    rho_micro: uint256
    total_rho_micro: uint256


analyst_of: public(HashMap[bytes32, address])
committee_of: public(HashMap[bytes32, uint256])
#: Rounds recorded after the initial model (round 0).
rounds_of: public(HashMap[bytes32, uint256])
total_rho_micro: public(HashMap[bytes32, uint256])
_rounds: HashMap[bytes32, HashMap[uint256, Round]]


@external
def open_training(training: bytes32, committee: uint256, cid: String[MAX_CID]):
    """@notice Open `training` with its initial model `cid`; the caller is its analyst."""
    assert training != empty(bytes32), "empty training id"
    assert self.analyst_of[training] == empty(address), "training already open"
    assert len(cid) > 0, "empty cid"
    self.analyst_of[training] = msg.sender
    self.committee_of[training] = committee
    self._rounds[training][0] = Round(cid=cid, parent="", rho_micro=0, block=block.number)
    log TrainingOpened(training=training, analyst=msg.sender, committee=committee, cid=cid)


@external
def record_round(
    training: bytes32, cid: String[MAX_CID], parent: String[MAX_CID], rho_micro: uint256
):
    """@notice Append the next round's model `cid` on top of `parent`, the latest one."""
    assert self.analyst_of[training] != empty(address), "no such training"
    assert msg.sender == self.analyst_of[training], "not the training's analyst"
    assert len(cid) > 0, "empty cid"
    r: uint256 = self.rounds_of[training]
    assert keccak256(parent) == keccak256(self._rounds[training][r].cid), "parent is not the latest round"
    total: uint256 = self.total_rho_micro[training] + rho_micro
    self._rounds[training][r + 1] = Round(
        cid=cid, parent=parent, rho_micro=rho_micro, block=block.number
    )
    self.rounds_of[training] = r + 1
    self.total_rho_micro[training] = total
    log RoundRecorded(
        training=training,
        round=r + 1,
        cid=cid,
        parent=parent,
        rho_micro=rho_micro,
        total_rho_micro=total,
    )


@external
@view
def round_of(training: bytes32, r: uint256) -> Round:
    """@notice Round `r` of `training` (round 0 is the initial model)."""
    assert self.analyst_of[training] != empty(address), "no such training"
    assert r <= self.rounds_of[training], "no such round"
    return self._rounds[training][r]


@external
@view
def latest(training: bytes32) -> String[MAX_CID]:
    """@notice The CID of the latest model of `training`."""
    assert self.analyst_of[training] != empty(address), "no such training"
    return self._rounds[training][self.rounds_of[training]].cid
