# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera registry
@notice Participants and their roles (provider, computing node, analyst,
        verifier) with their secp256k1 public keys; computing-node stakes in
        credit tokens; committees with their DKG public key shares; reputation.
        Roles are snekmate's access control: the admin registers participants,
        and the market contract holds MARKET_ROLE, which alone may lock,
        slash and credit reputation.
"""

from ethereum.ercs import IERC20
from snekmate.auth import access_control

initializes: access_control

exports: access_control.__interface__

PROVIDER_ROLE: public(constant(bytes32)) = keccak256("tessera.PROVIDER")
NODE_ROLE: public(constant(bytes32)) = keccak256("tessera.NODE")
ANALYST_ROLE: public(constant(bytes32)) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: public(constant(bytes32)) = keccak256("tessera.VERIFIER")
MARKET_ROLE: public(constant(bytes32)) = keccak256("tessera.MARKET")

MAX_MEMBERS: constant(uint256) = 16

struct Committee:
    members: DynArray[address, MAX_MEMBERS]
    threshold: uint256
    public_key: Bytes[33]
    key_shares: DynArray[Bytes[33], MAX_MEMBERS]

token: public(immutable(IERC20))
min_stake: public(uint256)
slash_amount: public(uint256)

public_key: public(HashMap[address, Bytes[33]])
stakes: public(HashMap[address, uint256])
locks: public(HashMap[address, uint256])
reputation: public(HashMap[address, int256])
total_staked: public(uint256)

committees: HashMap[uint256, Committee]
committee_count: public(uint256)

event ParticipantRegistered:
    account: indexed(address)
    role: indexed(bytes32)
    public_key: Bytes[33]

event Staked:
    node: indexed(address)
    amount: uint256
    total: uint256

event Unstaked:
    node: indexed(address)
    amount: uint256
    total: uint256

event Slashed:
    node: indexed(address)
    amount: uint256
    beneficiary: address

event CommitteeCreated:
    committee_id: indexed(uint256)
    threshold: uint256
    public_key: Bytes[33]

event ReputationChanged:
    account: indexed(address)
    delta: int256
    total: int256


@deploy
def __init__(token_: IERC20, min_stake_: uint256, slash_amount_: uint256):
    access_control.__init__()
    token = token_
    self.min_stake = min_stake_
    self.slash_amount = slash_amount_


@external
def register(account: address, role: bytes32, public_key: Bytes[33]):
    """
    @notice Admin: give `account` a participant role and record its public key
            (33-byte SEC1 compressed; empty keeps the key already recorded).
    """
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert role in [PROVIDER_ROLE, NODE_ROLE, ANALYST_ROLE, VERIFIER_ROLE], "unknown role"
    if len(public_key) > 0:
        assert len(public_key) == 33, "public key must be 33 bytes"
        self.public_key[account] = public_key
    access_control._grant_role(role, account)
    log ParticipantRegistered(account=account, role=role, public_key=self.public_key[account])


@external
def set_stake_rules(min_stake_: uint256, slash_amount_: uint256):
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    self.min_stake = min_stake_
    self.slash_amount = slash_amount_


@external
def stake(amount: uint256):
    assert access_control.hasRole[NODE_ROLE][msg.sender], "not a computing node"
    assert amount > 0, "zero amount"
    self.stakes[msg.sender] += amount
    self.total_staked += amount
    assert extcall token.transferFrom(msg.sender, self, amount), "transfer failed"
    log Staked(node=msg.sender, amount=amount, total=self.stakes[msg.sender])


@external
def unstake(amount: uint256):
    assert self.locks[msg.sender] == 0, "stake locked by open queries"
    assert amount <= self.stakes[msg.sender], "amount exceeds stake"
    self.stakes[msg.sender] -= amount
    self.total_staked -= amount
    assert extcall token.transfer(msg.sender, amount), "transfer failed"
    log Unstaked(node=msg.sender, amount=amount, total=self.stakes[msg.sender])


@external
def create_committee(
    members: DynArray[address, MAX_MEMBERS],
    threshold: uint256,
    public_key: Bytes[33],
    key_shares: DynArray[Bytes[33], MAX_MEMBERS],
) -> uint256:
    """
    @notice Record a committee and its DKG result. The caller must be one of
            the members (or the admin); members are registered computing nodes
            in strictly ascending address order (so none is listed twice).
    """
    n: uint256 = len(members)
    assert n > 0, "empty committee"
    assert threshold >= 1 and threshold <= n, "threshold out of range"
    assert len(key_shares) == n, "one key share per member"
    assert len(public_key) == 33, "public key must be 33 bytes"
    caller_ok: bool = access_control.hasRole[access_control.DEFAULT_ADMIN_ROLE][msg.sender]
    previous: address = empty(address)
    for i: uint256 in range(n, bound=MAX_MEMBERS):
        member: address = members[i]
        assert convert(member, uint160) > convert(previous, uint160), "members not ascending"
        assert access_control.hasRole[NODE_ROLE][member], "member is not a computing node"
        assert len(key_shares[i]) == 33, "key share must be 33 bytes"
        if member == msg.sender:
            caller_ok = True
        previous = member
    assert caller_ok, "caller is not a member"
    cid: uint256 = self.committee_count
    self.committees[cid] = Committee(
        members=members, threshold=threshold, public_key=public_key, key_shares=key_shares
    )
    self.committee_count = cid + 1
    log CommitteeCreated(committee_id=cid, threshold=threshold, public_key=public_key)
    return cid


@external
@view
def committee(committee_id: uint256) -> Committee:
    assert committee_id < self.committee_count, "unknown committee"
    return self.committees[committee_id]


@external
@view
def committee_members(committee_id: uint256) -> DynArray[address, MAX_MEMBERS]:
    assert committee_id < self.committee_count, "unknown committee"
    return self.committees[committee_id].members


@external
def lock(nodes: DynArray[address, MAX_MEMBERS]):
    access_control._check_role(MARKET_ROLE, msg.sender)
    for node: address in nodes:
        self.locks[node] += 1


@external
def unlock(nodes: DynArray[address, MAX_MEMBERS]):
    access_control._check_role(MARKET_ROLE, msg.sender)
    for node: address in nodes:
        self.locks[node] -= 1


@external
def slash(node: address, beneficiary: address) -> uint256:
    """
    @notice Market: move `slash_amount` of `node`'s stake (or all of it, if
            less) to `beneficiary`. Returns the amount moved.
    """
    access_control._check_role(MARKET_ROLE, msg.sender)
    amount: uint256 = min(self.slash_amount, self.stakes[node])
    self.stakes[node] -= amount
    self.total_staked -= amount
    if amount > 0:
        assert extcall token.transfer(beneficiary, amount), "transfer failed"
    log Slashed(node=node, amount=amount, beneficiary=beneficiary)
    return amount


@external
def add_reputation(account: address, delta: int256):
    access_control._check_role(MARKET_ROLE, msg.sender)
    self.reputation[account] += delta
    log ReputationChanged(account=account, delta=delta, total=self.reputation[account])
