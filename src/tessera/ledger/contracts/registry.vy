# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera registry
@notice Participants and their roles (provider, computing node, analyst,
        verifier) with their secp256k1 public keys; stakes of computing nodes
        and verifiers in credit tokens; the staked verifier pool; committees,
        formed only when n - t + 1 of their members have endorsed the same
        DKG result; reputation.
@dev Roles are snekmate's access control. After deployment the admin role
     belongs to the governance timelock alone, so every admin action is
     public and delayed. The market contract is bound once, at deployment;
     it alone may lock stake, slash (only when a query settles on a verdict)
     and credit reputation. Slashed stake is burned: it stays in this
     contract, counted in `burned`, and nobody can withdraw it, so nobody
     gains by having an honest party slashed.
"""

from ethereum.ercs import IERC20
from snekmate.auth import access_control

initializes: access_control

exports: access_control.__interface__

PROVIDER_ROLE: public(constant(bytes32)) = keccak256("tessera.PROVIDER")
NODE_ROLE: public(constant(bytes32)) = keccak256("tessera.NODE")
ANALYST_ROLE: public(constant(bytes32)) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: public(constant(bytes32)) = keccak256("tessera.VERIFIER")

MAX_MEMBERS: constant(uint256) = 16
MAX_POOL: constant(uint256) = 64

struct Committee:
    members: DynArray[address, MAX_MEMBERS]
    threshold: uint256
    public_key: Bytes[33]
    key_shares: DynArray[Bytes[33], MAX_MEMBERS]

token: public(immutable(IERC20))
market: public(address)
min_stake: public(uint256)
slash_amount: public(uint256)

public_key: public(HashMap[address, Bytes[33]])
stakes: public(HashMap[address, uint256])
locks: public(HashMap[address, uint256])
reputation: public(HashMap[address, int256])
total_staked: public(uint256)
burned: public(uint256)

verifier_pool: DynArray[address, MAX_POOL]
in_pool: public(HashMap[address, bool])

committees: HashMap[uint256, Committee]
committee_count: public(uint256)
endorsements: public(HashMap[bytes32, uint256])
endorsed: public(HashMap[bytes32, HashMap[address, bool]])
committee_of_proposal: HashMap[bytes32, uint256]  # committee id + 1; 0: not formed yet

event ParticipantRegistered:
    account: indexed(address)
    role: indexed(bytes32)
    public_key: Bytes[33]

event Staked:
    account: indexed(address)
    amount: uint256
    total: uint256

event Unstaked:
    account: indexed(address)
    amount: uint256
    total: uint256

event Slashed:
    account: indexed(address)
    amount: uint256

event PoolChanged:
    verifier: indexed(address)
    joined: bool

event CommitteeEndorsed:
    proposal: indexed(bytes32)
    member: indexed(address)
    endorsements: uint256

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
def bind_market(market_: address):
    """@notice Admin, once: the market contract, the only one that may lock, slash and credit."""
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert self.market == empty(address), "market already bound"
    assert market_ != empty(address), "market is the zero address"
    self.market = market_


@internal
@view
def _only_market():
    assert msg.sender == self.market, "only the market"


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
    """@notice Admin: stake rules for queries submitted from now on (open ones keep theirs)."""
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    self.min_stake = min_stake_
    self.slash_amount = slash_amount_


# -- stakes and the verifier pool ------------------------------------------------


@external
def stake(amount: uint256):
    """@notice A computing node or a verifier locks `amount` credits as stake."""
    assert access_control.hasRole[NODE_ROLE][msg.sender] or access_control.hasRole[
        VERIFIER_ROLE
    ][msg.sender], "not a computing node or verifier"
    assert amount > 0, "zero amount"
    self.stakes[msg.sender] += amount
    self.total_staked += amount
    assert extcall token.transferFrom(msg.sender, self, amount), "transfer failed"
    log Staked(account=msg.sender, amount=amount, total=self.stakes[msg.sender])


@external
def unstake(amount: uint256):
    assert self.locks[msg.sender] == 0, "stake locked by open queries"
    assert amount <= self.stakes[msg.sender], "amount exceeds stake"
    remaining: uint256 = self.stakes[msg.sender] - amount
    assert not self.in_pool[msg.sender] or remaining >= self.min_stake, "leave the verifier pool first"
    self.stakes[msg.sender] = remaining
    self.total_staked -= amount
    assert extcall token.transfer(msg.sender, amount), "transfer failed"
    log Unstaked(account=msg.sender, amount=amount, total=remaining)


@external
def join_pool():
    """@notice A staked verifier offers itself to be drawn for queries."""
    assert access_control.hasRole[VERIFIER_ROLE][msg.sender], "not a verifier"
    assert self.stakes[msg.sender] >= self.min_stake, "verifier under-staked"
    assert not self.in_pool[msg.sender], "already in the pool"
    assert len(self.verifier_pool) < MAX_POOL, "verifier pool full"
    self.verifier_pool.append(msg.sender)
    self.in_pool[msg.sender] = True
    log PoolChanged(verifier=msg.sender, joined=True)


@external
def leave_pool():
    """@notice Leave the verifier pool (not while assigned to an open query)."""
    assert self.in_pool[msg.sender], "not in the pool"
    assert self.locks[msg.sender] == 0, "stake locked by open queries"
    pool: DynArray[address, MAX_POOL] = []
    for v: address in self.verifier_pool:
        if v != msg.sender:
            pool.append(v)
    self.verifier_pool = pool
    self.in_pool[msg.sender] = False
    log PoolChanged(verifier=msg.sender, joined=False)


@external
@view
def pool() -> DynArray[address, MAX_POOL]:
    """@notice The verifiers that may be drawn, in the order they joined."""
    return self.verifier_pool


# -- committees ------------------------------------------------------------------


@external
def endorse_committee(
    members: DynArray[address, MAX_MEMBERS],
    threshold: uint256,
    public_key: Bytes[33],
    key_shares: DynArray[Bytes[33], MAX_MEMBERS],
) -> uint256:
    """
    @notice A member endorses a committee and its DKG result. The committee is
            formed when n - t + 1 members have endorsed exactly the same
            members, threshold, key and key shares: the quorum the DKG itself
            needs, and more than the t - 1 members that may be faulty, so at
            least one honest member, which endorses only the key it computed
            with these members, signed it. Nobody can put nodes in a committee
            with key shares it made up. Members are registered computing nodes
            in strictly ascending address order.
            Returns the committee id once formed, else max_value(uint256).
    """
    n: uint256 = len(members)
    assert n > 0, "empty committee"
    assert threshold >= 1 and threshold <= n, "threshold out of range"
    assert len(key_shares) == n, "one key share per member"
    assert len(public_key) == 33, "public key must be 33 bytes"
    previous: address = empty(address)
    for i: uint256 in range(n, bound=MAX_MEMBERS):
        member: address = members[i]
        assert convert(member, uint160) > convert(previous, uint160), "members not ascending"
        assert access_control.hasRole[NODE_ROLE][member], "member is not a computing node"
        assert len(key_shares[i]) == 33, "key share must be 33 bytes"
        previous = member
    assert msg.sender in members, "caller is not a member"
    proposal: bytes32 = keccak256(abi_encode(members, threshold, public_key, key_shares))
    assert not self.endorsed[proposal][msg.sender], "already endorsed"
    self.endorsed[proposal][msg.sender] = True
    count: uint256 = self.endorsements[proposal] + 1
    self.endorsements[proposal] = count
    log CommitteeEndorsed(proposal=proposal, member=msg.sender, endorsements=count)
    formed: uint256 = self.committee_of_proposal[proposal]
    if formed != 0:  # a late member endorses a committee already formed
        return formed - 1
    if count < n - threshold + 1:
        return max_value(uint256)
    cid: uint256 = self.committee_count
    self.committees[cid] = Committee(
        members=members, threshold=threshold, public_key=public_key, key_shares=key_shares
    )
    self.committee_count = cid + 1
    self.committee_of_proposal[proposal] = cid + 1
    log CommitteeCreated(committee_id=cid, threshold=threshold, public_key=public_key)
    return cid


@external
@view
def committee_of(proposal: bytes32) -> uint256:
    """@notice The id of the committee formed from `proposal`; reverts if not formed yet."""
    cid: uint256 = self.committee_of_proposal[proposal]
    assert cid != 0, "committee not formed yet"
    return cid - 1


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
@view
def committee_threshold(committee_id: uint256) -> uint256:
    assert committee_id < self.committee_count, "unknown committee"
    return self.committees[committee_id].threshold


# -- the market's entry points ---------------------------------------------------


@external
def lock(accounts: DynArray[address, MAX_MEMBERS]):
    self._only_market()
    for a: address in accounts:
        self.locks[a] += 1


@external
def unlock(accounts: DynArray[address, MAX_MEMBERS]):
    self._only_market()
    for a: address in accounts:
        self.locks[a] -= 1


@external
def slash(account: address, amount: uint256) -> uint256:
    """
    @notice Market, at a verdict: burn `amount` of `account`'s stake (or all of
            it, if less). Returns the amount burned.
    """
    self._only_market()
    burned: uint256 = min(amount, self.stakes[account])
    self.stakes[account] -= burned
    self.total_staked -= burned
    self.burned += burned
    log Slashed(account=account, amount=burned)
    return burned


@external
def add_reputation(account: address, delta: int256):
    self._only_market()
    self.reputation[account] += delta
    log ReputationChanged(account=account, delta=delta, total=self.reputation[account])
