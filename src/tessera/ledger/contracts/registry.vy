# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Tessera registry
@notice Participants and their roles (provider, computing node, analyst,
        verifier) with their secp256k1 public keys; stakes of computing nodes
        and verifiers in credit tokens; the staked verifier pool; committees,
        formed only when n - t + 1 of their members have endorsed the same
        DKG result; reputation; the node pool, its commit-reveal beacon and the
        stake- and reputation-weighted committee drawn from it for each epoch,
        and the cool-down before a pool node's stake is released.
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
import sortition

initializes: access_control

exports: access_control.__interface__

PROVIDER_ROLE: public(constant(bytes32)) = keccak256("tessera.PROVIDER")
NODE_ROLE: public(constant(bytes32)) = keccak256("tessera.NODE")
ANALYST_ROLE: public(constant(bytes32)) = keccak256("tessera.ANALYST")
VERIFIER_ROLE: public(constant(bytes32)) = keccak256("tessera.VERIFIER")

MAX_MEMBERS: constant(uint256) = 64
# a committee as a caller may send it: one more than the limit, so that a larger one is
# refused with a reason instead of failing to decode
MAX_MEMBERS_ARG: constant(uint256) = 65
MAX_POOL: constant(uint256) = 64
MAX_NODE_POOL: constant(uint256) = 64

# A pool node's draw weight: stake x clamp(1 + reputation / 20, 1/4, 2), in basis
# points of the stake (reputation clamped to [-15, 20] first). `tessera.ledger.draw`
# computes the same.
REPUTATION_SCALE: constant(int256) = 20
REPUTATION_FLOOR: constant(int256) = -15
REPUTATION_CAP: constant(int256) = 20
BPS: constant(int256) = 10000
# reputation lost by a node that committed to the beacon and did not reveal
REVEAL_REPUTATION_PENALTY: constant(int256) = -10

EPOCH_OPEN: constant(uint8) = 1
EPOCH_DRAWN: constant(uint8) = 2
EPOCH_FAILED: constant(uint8) = 3  # fewer nodes revealed than the committee's size

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
member_of: HashMap[uint256, HashMap[address, bool]]  # committee id -> its members

struct DrawRules:
    cooldown_blocks: uint256  # a pool node's stake is released this many blocks after it asks
    commit_blocks: uint256  # the beacon's commit window, from the block that opens the epoch
    reveal_blocks: uint256  # the reveal window, right after the commit window
    reveal_penalty: uint256  # stake burned from a node that committed and did not reveal
    committee_size: uint256
    threshold: uint256

struct BeaconEntry:
    commitment: bytes32
    stake: uint256  # recorded at the commitment: the node's weight in the draw
    reputation: int256
    revealed: bool
    secret: bytes32

struct Epoch:
    size: uint256
    threshold: uint256
    commit_end: uint256  # last block of the commit window
    reveal_end: uint256  # last block of the reveal window
    mix: bytes32  # XOR of the secrets revealed so far
    seed: bytes32  # keccak256(abi_encode(epoch, mix)), set by the draw
    status: uint8
    committee: uint256  # id + 1 of the committee the drawn members formed; 0: none yet

draw_rules: public(DrawRules)
node_pool: DynArray[address, MAX_NODE_POOL]
in_node_pool: public(HashMap[address, bool])
# Until this block, unstaking starts a cool-down (max_value while in the node pool).
bonded_until: public(HashMap[address, uint256])
unbonding: public(HashMap[address, uint256])  # asked for, slashable, not yet released
release_block: public(HashMap[address, uint256])
pending_epoch: public(HashMap[address, uint256])  # epoch + 1 of the account's last commitment

epochs: HashMap[uint256, Epoch]
epoch_count: public(uint256)
participants: HashMap[uint256, DynArray[address, MAX_NODE_POOL]]  # in commit order
commitments: HashMap[uint256, HashMap[address, bytes32]]
snapshot_stake: HashMap[uint256, HashMap[address, uint256]]
snapshot_reputation: HashMap[uint256, HashMap[address, int256]]
revealed: HashMap[uint256, HashMap[address, bool]]
secrets: HashMap[uint256, HashMap[address, bytes32]]
drawn_order: HashMap[uint256, DynArray[address, MAX_MEMBERS]]

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

event NodePoolChanged:
    node: indexed(address)
    joined: bool

event UnstakeRequested:
    account: indexed(address)
    amount: uint256
    release_block: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

event EpochOpened:
    epoch: indexed(uint256)
    size: uint256
    threshold: uint256
    commit_end: uint256
    reveal_end: uint256

event SeedCommitted:
    epoch: indexed(uint256)
    node: indexed(address)
    commitment: bytes32

event SeedRevealed:
    epoch: indexed(uint256)
    node: indexed(address)
    secret: bytes32

event RevealMissed:
    epoch: indexed(uint256)
    node: indexed(address)
    burned: uint256

event CommitteeDrawn:
    epoch: indexed(uint256)
    seed: bytes32
    drawn: DynArray[address, MAX_MEMBERS]

event DrawFailed:
    epoch: indexed(uint256)
    revealed: uint256
    size: uint256

event EpochCommittee:
    epoch: indexed(uint256)
    committee_id: indexed(uint256)


@deploy
def __init__(token_: IERC20, min_stake_: uint256, slash_amount_: uint256):
    access_control.__init__()
    token = token_
    self.min_stake = min_stake_
    self.slash_amount = slash_amount_
    self.draw_rules = DrawRules(
        cooldown_blocks=100,
        commit_blocks=5,
        reveal_blocks=5,
        reveal_penalty=slash_amount_,
        committee_size=3,
        threshold=2,
    )


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
    """
    @notice Take `amount` of stake back. An account in the node pool, or that left it
            less than `cooldown_blocks` ago, gets it only after the cool-down: the
            amount moves to `unbonding` (still slashable, even by a query still open),
            and `withdraw` releases it `cooldown_blocks` after this request. Others
            get it at once, when no open query locks their stake.
    """
    if block.number < self.bonded_until[msg.sender]:
        assert amount > 0, "zero amount"
        assert amount <= self.stakes[msg.sender], "amount exceeds stake"
        left: uint256 = self.stakes[msg.sender] - amount
        assert not self.in_node_pool[msg.sender] or left >= self.min_stake, "leave the node pool first"
        assert not self.in_pool[msg.sender] or left >= self.min_stake, "leave the verifier pool first"
        self.stakes[msg.sender] = left
        self.unbonding[msg.sender] += amount
        release: uint256 = block.number + self.draw_rules.cooldown_blocks
        self.release_block[msg.sender] = release
        log UnstakeRequested(account=msg.sender, amount=amount, release_block=release)
        return
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


@external
def withdraw() -> uint256:
    """
    @notice Release the stake asked back with `unstake`, once the cool-down is over, no
            open query locks the account and no beacon it committed to is undrawn.
    """
    amount: uint256 = self.unbonding[msg.sender]
    assert amount > 0, "nothing to withdraw"
    assert block.number >= self.release_block[msg.sender], "cool-down not over"
    assert self.locks[msg.sender] == 0, "stake locked by open queries"
    self._check_no_open_commitment(msg.sender)
    self.unbonding[msg.sender] = 0
    self.total_staked -= amount
    assert extcall token.transfer(msg.sender, amount), "transfer failed"
    log Withdrawn(account=msg.sender, amount=amount)
    return amount


# -- the node pool, its beacon and the committee drawn for each epoch ----------------


@external
def set_draw_rules(rules: DrawRules):
    """@notice Admin: cool-down, beacon windows, reveal penalty, committee size and threshold."""
    access_control._check_role(access_control.DEFAULT_ADMIN_ROLE, msg.sender)
    assert rules.commit_blocks >= 1 and rules.reveal_blocks >= 1, "beacon windows must be at least 1 block"
    assert rules.committee_size >= 1, "empty committee"
    assert rules.committee_size <= MAX_MEMBERS, "committee larger than 64 members"
    assert rules.threshold >= 1 and 2 * rules.threshold <= rules.committee_size + 1, "threshold must satisfy 1 <= t and 2t - 1 <= n"
    self.draw_rules = rules


@internal
@pure
def _weight(stake: uint256, reputation: int256) -> uint256:
    r: int256 = max(min(reputation, REPUTATION_CAP), REPUTATION_FLOOR)
    return stake * convert(BPS + r * BPS // REPUTATION_SCALE, uint256)


@external
@pure
def weight(stake: uint256, reputation: int256) -> uint256:
    """@notice A pool node's draw weight: stake x clamp(1 + reputation / 20, 1/4, 2), x 10^4."""
    return self._weight(stake, reputation)


@internal
@view
def _check_no_open_commitment(account: address):
    pending: uint256 = self.pending_epoch[account]
    if pending != 0:
        assert self.epochs[pending - 1].status != EPOCH_OPEN, "committed to an epoch not drawn yet"


@external
def join_node_pool():
    """@notice A staked computing node offers itself to be drawn into epoch committees."""
    assert access_control.hasRole[NODE_ROLE][msg.sender], "not a computing node"
    assert self.stakes[msg.sender] >= self.min_stake, "node under-staked"
    assert not self.in_node_pool[msg.sender], "already in the node pool"
    assert len(self.node_pool) < MAX_NODE_POOL, "node pool full: 64 nodes at most"
    self.node_pool.append(msg.sender)
    self.in_node_pool[msg.sender] = True
    self.bonded_until[msg.sender] = max_value(uint256)
    log NodePoolChanged(node=msg.sender, joined=True)


@external
def leave_node_pool():
    """
    @notice Leave the node pool (not while committed to an epoch not drawn yet). The
            stake stays bonded for `cooldown_blocks`: unstaking before then waits the
            cool-down.
    """
    assert self.in_node_pool[msg.sender], "not in the node pool"
    self._check_no_open_commitment(msg.sender)
    pool: DynArray[address, MAX_NODE_POOL] = []
    for a: address in self.node_pool:
        if a != msg.sender:
            pool.append(a)
    self.node_pool = pool
    self.in_node_pool[msg.sender] = False
    self.bonded_until[msg.sender] = block.number + self.draw_rules.cooldown_blocks
    log NodePoolChanged(node=msg.sender, joined=False)


@external
@view
def node_pool_members() -> DynArray[address, MAX_NODE_POOL]:
    """@notice The nodes that may commit to the beacon and be drawn, in the order they joined."""
    return self.node_pool


@external
def open_epoch() -> uint256:
    """
    @notice Anyone: open the next epoch with the draw rules in force. Its commit window
            runs to `commit_end`, its reveal window from there to `reveal_end`.
    """
    count: uint256 = self.epoch_count
    if count > 0:
        assert self.epochs[count - 1].status != EPOCH_OPEN, "the previous epoch is not drawn yet"
    rules: DrawRules = self.draw_rules
    assert rules.committee_size <= len(self.node_pool), "committee size exceeds the node pool"
    commit_end: uint256 = block.number + rules.commit_blocks
    reveal_end: uint256 = commit_end + rules.reveal_blocks
    self.epochs[count] = Epoch(
        size=rules.committee_size,
        threshold=rules.threshold,
        commit_end=commit_end,
        reveal_end=reveal_end,
        mix=empty(bytes32),
        seed=empty(bytes32),
        status=EPOCH_OPEN,
        committee=0,
    )
    self.epoch_count = count + 1
    log EpochOpened(
        epoch=count,
        size=rules.committee_size,
        threshold=rules.threshold,
        commit_end=commit_end,
        reveal_end=reveal_end,
    )
    return count


@internal
@view
def _open_epoch(epoch: uint256) -> Epoch:
    assert epoch < self.epoch_count, "unknown epoch"
    e: Epoch = self.epochs[epoch]
    assert e.status == EPOCH_OPEN, "epoch already drawn"
    return e


@external
def commit_seed(epoch: uint256, commitment: bytes32):
    """
    @notice A pool node commits keccak256(abi_encode(secret, node, epoch)) in the commit
            window. Its stake and reputation are recorded now: its weight in the draw.
    """
    e: Epoch = self._open_epoch(epoch)
    assert block.number <= e.commit_end, "commit window closed"
    assert self.in_node_pool[msg.sender], "not in the node pool"
    stake: uint256 = self.stakes[msg.sender]
    assert stake >= self.min_stake and stake > 0, "node under-staked"
    assert commitment != empty(bytes32), "empty commitment"
    assert self.commitments[epoch][msg.sender] == empty(bytes32), "already committed"
    self.commitments[epoch][msg.sender] = commitment
    self.snapshot_stake[epoch][msg.sender] = stake
    self.snapshot_reputation[epoch][msg.sender] = self.reputation[msg.sender]
    self.participants[epoch].append(msg.sender)
    self.pending_epoch[msg.sender] = epoch + 1
    log SeedCommitted(epoch=epoch, node=msg.sender, commitment=commitment)


@external
def reveal_seed(epoch: uint256, secret: bytes32):
    """@notice A node that committed reveals its secret in the reveal window."""
    e: Epoch = self._open_epoch(epoch)
    assert block.number > e.commit_end, "reveal window not open yet"
    assert block.number <= e.reveal_end, "reveal window closed"
    commitment: bytes32 = self.commitments[epoch][msg.sender]
    assert commitment != empty(bytes32), "no commitment to reveal"
    assert not self.revealed[epoch][msg.sender], "already revealed"
    assert keccak256(abi_encode(secret, msg.sender, epoch)) == commitment, "reveal does not match the commitment"
    self.revealed[epoch][msg.sender] = True
    self.secrets[epoch][msg.sender] = secret
    self.epochs[epoch].mix = convert(
        convert(e.mix, uint256) ^ convert(secret, uint256), bytes32
    )
    log SeedRevealed(epoch=epoch, node=msg.sender, secret=secret)


@external
def draw_committee(epoch: uint256) -> DynArray[address, MAX_MEMBERS]:
    """
    @notice Anyone, after the reveal window: every node that committed and did not
            reveal loses `reveal_penalty` of its stake (burned, taken from its
            unbonding stake too) and 10 reputation, and is not a candidate; the seed is
            keccak256(abi_encode(epoch, XOR of the reveals)); `size` distinct nodes are
            drawn from those that revealed, in commit order, each step with probability
            proportional to its recorded weight. Returns them in draw order, or nothing
            (status failed) when fewer nodes revealed than the committee's size.
    """
    e: Epoch = self._open_epoch(epoch)
    assert block.number > e.reveal_end, "reveal window still open"
    candidates: DynArray[address, MAX_NODE_POOL] = []
    weights: DynArray[uint256, MAX_NODE_POOL] = []
    penalty: uint256 = self.draw_rules.reveal_penalty
    for p: address in self.participants[epoch]:
        if self.revealed[epoch][p]:
            candidates.append(p)
            weights.append(
                self._weight(self.snapshot_stake[epoch][p], self.snapshot_reputation[epoch][p])
            )
        else:
            burned: uint256 = self._burn(p, penalty)
            self._add_reputation(p, REVEAL_REPUTATION_PENALTY)
            log RevealMissed(epoch=epoch, node=p, burned=burned)
    seed: bytes32 = keccak256(abi_encode(epoch, e.mix))
    self.epochs[epoch].seed = seed
    if len(candidates) < e.size:
        self.epochs[epoch].status = EPOCH_FAILED
        log DrawFailed(epoch=epoch, revealed=len(candidates), size=e.size)
        return []
    drawn: DynArray[address, MAX_MEMBERS] = sortition._weighted_draw(seed, candidates, weights, e.size)
    self.drawn_order[epoch] = drawn
    self.epochs[epoch].status = EPOCH_DRAWN
    log CommitteeDrawn(epoch=epoch, seed=seed, drawn=drawn)
    return drawn


@external
@view
def epoch(epoch: uint256) -> Epoch:
    assert epoch < self.epoch_count, "unknown epoch"
    return self.epochs[epoch]


@external
@view
def epoch_participants(epoch: uint256) -> DynArray[address, MAX_NODE_POOL]:
    """@notice The nodes that committed to the epoch's beacon, in commit order."""
    return self.participants[epoch]


@external
@view
def beacon_entry(epoch: uint256, node: address) -> BeaconEntry:
    """@notice A node's commitment, recorded stake and reputation, and reveal in `epoch`."""
    return BeaconEntry(
        commitment=self.commitments[epoch][node],
        stake=self.snapshot_stake[epoch][node],
        reputation=self.snapshot_reputation[epoch][node],
        revealed=self.revealed[epoch][node],
        secret=self.secrets[epoch][node],
    )


@external
@view
def drawn(epoch: uint256) -> DynArray[address, MAX_MEMBERS]:
    """@notice The epoch's committee in draw order (empty until drawn, or if the draw failed)."""
    return self.drawn_order[epoch]


@internal
@pure
def _ascending(accounts: DynArray[address, MAX_MEMBERS]) -> DynArray[address, MAX_MEMBERS]:
    out: DynArray[address, MAX_MEMBERS] = accounts
    n: uint256 = len(out)
    for i: uint256 in range(1, MAX_MEMBERS):
        if i >= n:
            break
        for k: uint256 in range(MAX_MEMBERS):
            j: uint256 = i - k
            if j == 0 or convert(out[j - 1], uint160) <= convert(out[j], uint160):
                break
            x: address = out[j]
            out[j] = out[j - 1]
            out[j - 1] = x
    return out


@external
def endorse_drawn_committee(
    epoch: uint256, public_key: Bytes[33], key_shares: DynArray[Bytes[33], MAX_MEMBERS_ARG]
) -> uint256:
    """
    @notice A drawn member endorses the DKG result of the epoch's committee: exactly the
            drawn nodes, in ascending address order, with the epoch's threshold (key
            shares in that order). Formed as `endorse_committee` forms any committee, at
            n - t + 1 endorsements of the same result; the epoch then names it.
            Returns the committee id once formed, else max_value(uint256).
    """
    assert epoch < self.epoch_count, "unknown epoch"
    e: Epoch = self.epochs[epoch]
    assert e.status == EPOCH_DRAWN, "epoch has no drawn committee"
    members: DynArray[address, MAX_MEMBERS] = self._ascending(self.drawn_order[epoch])
    cid: uint256 = self._endorse(members, e.threshold, public_key, self._bounded_shares(key_shares))
    if cid != max_value(uint256) and e.committee == 0:
        self.epochs[epoch].committee = cid + 1
        log EpochCommittee(epoch=epoch, committee_id=cid)
    return cid


@external
@view
def epoch_committee(epoch: uint256) -> uint256:
    """@notice The committee the epoch's drawn members formed; reverts if none yet."""
    assert epoch < self.epoch_count, "unknown epoch"
    cid: uint256 = self.epochs[epoch].committee
    assert cid != 0, "epoch committee not formed yet"
    return cid - 1


# -- committees ------------------------------------------------------------------


@external
def endorse_committee(
    members: DynArray[address, MAX_MEMBERS_ARG],
    threshold: uint256,
    public_key: Bytes[33],
    key_shares: DynArray[Bytes[33], MAX_MEMBERS_ARG],
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
            At most 64 members.
            Returns the committee id once formed, else max_value(uint256).
    """
    assert len(members) <= MAX_MEMBERS, "committee larger than 64 members"
    bounded: DynArray[address, MAX_MEMBERS] = []
    for m: address in members:
        bounded.append(m)
    return self._endorse(bounded, threshold, public_key, self._bounded_shares(key_shares))


@internal
@pure
def _bounded_shares(
    key_shares: DynArray[Bytes[33], MAX_MEMBERS_ARG]
) -> DynArray[Bytes[33], MAX_MEMBERS]:
    assert len(key_shares) <= MAX_MEMBERS, "committee larger than 64 members"
    out: DynArray[Bytes[33], MAX_MEMBERS] = []
    for k: Bytes[33] in key_shares:
        out.append(k)
    return out


@internal
def _endorse(
    members: DynArray[address, MAX_MEMBERS],
    threshold: uint256,
    public_key: Bytes[33],
    key_shares: DynArray[Bytes[33], MAX_MEMBERS],
) -> uint256:
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
    for member: address in members:
        self.member_of[cid][member] = True
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
def committee_size(committee_id: uint256) -> uint256:
    assert committee_id < self.committee_count, "unknown committee"
    return len(self.committees[committee_id].members)


@external
@view
def is_member(committee_id: uint256, account: address) -> bool:
    """@notice Whether `account` is a member of the committee (one read, any committee size)."""
    return self.member_of[committee_id][account]


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
    @notice Market, at a verdict: burn `amount` of `account`'s stake, then of the
            stake it asked back and is still cooling down (or all of it, if less).
            Returns the amount burned.
    """
    self._only_market()
    return self._burn(account, amount)


@internal
def _burn(account: address, amount: uint256) -> uint256:
    """Burn up to `amount` of the account's stake, then of its unbonding stake."""
    from_stake: uint256 = min(amount, self.stakes[account])
    from_unbonding: uint256 = min(amount - from_stake, self.unbonding[account])
    self.stakes[account] -= from_stake
    self.unbonding[account] -= from_unbonding
    burned: uint256 = from_stake + from_unbonding
    self.total_staked -= burned
    self.burned += burned
    log Slashed(account=account, amount=burned)
    return burned


@internal
def _add_reputation(account: address, delta: int256):
    self.reputation[account] += delta
    log ReputationChanged(account=account, delta=delta, total=self.reputation[account])


@external
def add_reputation(account: address, delta: int256):
    self._only_market()
    self._add_reputation(account, delta)
