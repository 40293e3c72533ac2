"""The epoch committee's draw, recomputed from what the ledger records (pure).

The registry draws each epoch's committee from its node pool (``registry.vy``
``draw_committee``); this module is the same computation in Python, so anyone can
re-run a draw from the chain's data alone: the nodes that committed to the epoch's
beacon (in commit order), the stake and reputation recorded for each when it
committed, and the secrets revealed. :func:`redraw` returns the committee the
contract must have drawn; :func:`weighted_draw` is the sampling step.

- **Weight** of a node: ``stake × clamp(1 + reputation / 20, 1/4, 2)``, computed
  exactly in integers as ``stake × (10⁴ + 500 · clamp(reputation, −15, 20))``.
- **Seed**: ``keccak256(abi_encode(epoch, r₁ ⊕ r₂ ⊕ … ))`` over the revealed secrets;
  each commitment is ``keccak256(abi_encode(secret, node, epoch))``.
- **Draw**: successive sampling without replacement. Step ``i`` takes
  ``r = keccak256(abi_encode(seed, i)) mod W`` (``W`` the weight not drawn yet) and
  picks the first candidate, in commit order, whose cumulative remaining weight
  exceeds ``r``. Only nodes that revealed are candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from eth_utils.address import to_canonical_address
from eth_utils.crypto import keccak

REPUTATION_SCALE: Final = 20
REPUTATION_FLOOR: Final = -15  # weight ×1/4 at or below
REPUTATION_CAP: Final = 20  # weight ×2 at or above
BPS: Final = 10_000
#: A draw takes at most this many members (the registry's MAX_MEMBERS), from at most
#: MAX_NODE_POOL candidates.
MAX_DRAWN: Final = 64
MAX_NODE_POOL: Final = 64


def weight(stake: int, reputation: int) -> int:
    """A pool node's draw weight, in basis points of its stake (the contract's ``weight``)."""
    if stake < 0:
        raise ValueError("a stake is never negative")
    r = max(min(reputation, REPUTATION_CAP), REPUTATION_FLOOR)
    return stake * (BPS + r * BPS // REPUTATION_SCALE)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def seed_commitment(secret: bytes, node: str, epoch: int) -> bytes:
    """``keccak256(abi_encode(secret, node, epoch))``: what a node commits to."""
    if len(secret) != 32:
        raise ValueError("a beacon secret is 32 bytes")
    return keccak(secret + b"\0" * 12 + to_canonical_address(node) + _word(epoch))


def beacon_seed(epoch: int, secrets: Sequence[bytes]) -> bytes:
    """The epoch's seed from the revealed secrets (their XOR: order does not matter)."""
    mix = 0
    for s in secrets:
        if len(s) != 32:
            raise ValueError("a beacon secret is 32 bytes")
        mix ^= int.from_bytes(s, "big")
    return keccak(_word(epoch) + _word(mix))


def weighted_draw(
    seed: bytes, candidates: Sequence[str], weights: Sequence[int], k: int
) -> list[str]:
    """``k`` distinct candidates, each step proportional to the weights not drawn yet."""
    if len(seed) != 32:
        raise ValueError("a seed is 32 bytes")
    if len(candidates) != len(weights):
        raise ValueError("one weight per candidate")
    if not 0 <= k <= MAX_DRAWN:
        raise ValueError(f"a draw takes 0 to {MAX_DRAWN} members")
    if sum(1 for w in weights if w > 0) < k:
        raise ValueError(f"fewer than {k} candidates have a positive weight")
    w = list(weights)
    total = sum(w)
    drawn: list[str] = []
    for i in range(k):
        r = int.from_bytes(keccak(seed + _word(i)), "big") % total
        acc = 0
        for j, wj in enumerate(w):
            acc += wj
            if r < acc:
                drawn.append(candidates[j])
                total -= wj
                w[j] = 0
                break
    return drawn


@dataclass(frozen=True, slots=True)
class BeaconEntry:
    """One node's part in an epoch's beacon, as the registry records it."""

    node: str
    commitment: bytes
    stake: int  # recorded when it committed
    reputation: int  # recorded when it committed
    secret: bytes | None  # None: it did not reveal


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """What the ledger holds about one epoch's beacon and draw."""

    epoch: int
    size: int
    threshold: int
    commit_end: int
    reveal_end: int
    status: str  # "open", "drawn" or "failed"
    seed: bytes  # zero until the draw
    entries: tuple[BeaconEntry, ...]  # in commit order
    drawn: tuple[str, ...]  # in draw order (empty until drawn, or if it failed)
    committee_id: int | None


@dataclass(frozen=True, slots=True)
class Redraw:
    seed: bytes
    candidates: tuple[str, ...]
    weights: tuple[int, ...]
    missed: tuple[str, ...]  # committed and did not reveal: penalised, not candidates
    drawn: tuple[str, ...]  # empty when fewer nodes revealed than the committee's size


def redraw(record: EpochRecord) -> Redraw:
    """The draw the registry must have made for ``record``, recomputed from its data.

    Raises ``ValueError`` if a recorded reveal does not open its commitment (the contract
    never accepts one that does not)."""
    revealed = [e for e in record.entries if e.secret is not None]
    for e in revealed:
        assert e.secret is not None
        if seed_commitment(e.secret, e.node, record.epoch) != e.commitment:
            raise ValueError(f"the reveal of {e.node} does not open its commitment")
    seed = beacon_seed(record.epoch, [e.secret for e in revealed if e.secret is not None])
    candidates = tuple(e.node for e in revealed)
    weights = tuple(weight(e.stake, e.reputation) for e in revealed)
    missed = tuple(e.node for e in record.entries if e.secret is None)
    drawn: tuple[str, ...] = ()
    if len(candidates) >= record.size:
        drawn = tuple(weighted_draw(seed, candidates, weights, record.size))
    return Redraw(seed, candidates, weights, missed, drawn)
