"""Secure aggregation of model updates with proven clipping: Prio3 over the committee's nodes.

A provider shards its quantised update (:class:`~tessera.learning.fixed_point.FixedPoint`)
with :class:`~tessera.crypto.prio3.Prio3FixedPointBoundedL2VecSum` into one share per
computing node, with a proof that the update's L2 norm is within the bound. Each node
verifies its share (:func:`prepare`), the nodes combine their verifier shares
(:func:`decide`), and each node sums the shares of the accepted updates and adds its
own discrete Gaussian noise (:func:`aggregate_share`); the analyst adds the nodes'
aggregate shares (:func:`unshard`). Pure functions: randomness, keys and noise come in.

A node learns nothing of an update from its share (any ``n - 1`` shares are uniformly
random); a committee needs every node's share to aggregate, so each release holds every
node's noise, at least the ``n - t + 1`` draws of the honest nodes when ``t - 1`` are
dishonest: what :func:`tessera.learning.privacy.round_noise` calibrates on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.crypto import prio3_l2
from tessera.crypto.flp import chunk_length_for
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.dp.distributed import NoisePlan
from tessera.dp.samplers import NoiseSampler
from tessera.errors import DecodeError, InvalidProof
from tessera.learning.fixed_point import FixedPoint, Ints

#: Domain separation of every training report (the VDAF application context).
CTX_PREFIX = b"tessera/train/v1/"


def update_vdaf(
    num_params: int, fixed_point: FixedPoint, nodes: int
) -> Prio3FixedPointBoundedL2VecSum:
    """The VDAF for updates of ``num_params`` entries, shared among ``nodes`` aggregators."""
    norm_bits = fixed_point.norm_bound_sq.bit_length()
    return Prio3FixedPointBoundedL2VecSum(
        nodes,
        num_params,
        fixed_point.bits,
        fixed_point.norm_bound_sq,
        chunk_length_for(num_params * fixed_point.bits + norm_bits),
        chunk_length_for(num_params),
    )


def round_ctx(training_id: bytes, round_index: int) -> bytes:
    """The VDAF context of one round: a report of one round never verifies in another."""
    return CTX_PREFIX + training_id + round_index.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class Report:
    """One provider's sharded update: a nonce, the public share and one share per node."""

    nonce: bytes
    public_share: bytes
    input_shares: tuple[bytes, ...]


def shard_update(
    vdaf: Prio3FixedPointBoundedL2VecSum, ctx: bytes, update: Ints, nonce: bytes, rand: bytes
) -> Report:
    """Shard and prove a quantised update."""
    public, shares = prio3_l2.shard(vdaf, ctx, update, nonce, rand)
    return Report(nonce, public, tuple(shares))


def prepare(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    verify_key: bytes,
    ctx: bytes,
    node: int,
    nonce: bytes,
    public_share: bytes,
    input_share: bytes,
) -> tuple[prio3_l2.L2VerifyState, bytes] | Exception:
    """Node ``node``'s check of its share: its state and verifier share, or why it failed."""
    try:
        return prio3_l2.verify_init(vdaf, verify_key, ctx, node, nonce, public_share, input_share)
    except (DecodeError, InvalidProof, ValueError) as exc:
        return exc


def decide(
    vdaf: Prio3FixedPointBoundedL2VecSum, ctx: bytes, verifier_shares: Sequence[bytes]
) -> bytes | Exception:
    """The joint decision on one report from every node's verifier share."""
    try:
        return prio3_l2.verifier_message(vdaf, ctx, verifier_shares)
    except (DecodeError, InvalidProof, ValueError) as exc:
        return exc


def draw_noise(plan: NoisePlan, sampler: NoiseSampler, dimension: int) -> Ints:
    """One node's noise vector: ``N_Z(0, σ_node²)`` per entry, redrawn beyond the bound."""
    v = np.asarray(sampler.discrete_gaussian(plan.sigma_node_sq, dimension), dtype=np.int64)
    while True:
        out = np.abs(v) > plan.bound
        if not out.any():
            return v
        v[out] = sampler.discrete_gaussian(plan.sigma_node_sq, int(out.sum()))


def aggregate_share(
    vdaf: Prio3FixedPointBoundedL2VecSum, out_shares: Sequence[Any], noise: Ints | None
) -> bytes:
    """A node's encoded aggregate share: its accepted output shares summed, plus its noise."""
    total = prio3_l2.aggregate(out_shares, vdaf.LENGTH)
    if noise is not None:
        if noise.shape != (vdaf.LENGTH,):
            raise ValueError("noise has the wrong length")
        total = prio3_l2.add(total, prio3_l2.from_signed(noise))
    out: bytes = total.astype("<u8").tobytes()
    return out


def unshard(vdaf: Prio3FixedPointBoundedL2VecSum, agg_shares: Sequence[bytes], count: int) -> Ints:
    """The signed sum of the ``count`` accepted updates (plus the nodes' noise)."""
    if len(agg_shares) != vdaf.SHARES:
        raise ValueError(f"need {vdaf.SHARES} aggregate shares, got {len(agg_shares)}")
    size = vdaf.LENGTH * 16
    total = np.zeros((vdaf.LENGTH, 2), dtype=np.uint64)
    for share in agg_shares:
        if len(share) != size:
            raise DecodeError("incorrect aggregate share length")
        limbs = np.frombuffer(share, dtype="<u8").reshape(-1, 2)
        if bool((limbs[:, 1] >= prio3_l2._F128_HI).any()):
            # rare but legal values have the top limb; check exactly
            vdaf.field.decode_vec(share)
        total = prio3_l2.add(total, limbs.astype(np.uint64))
    return np.asarray(vdaf.flp.decode(prio3_l2.to_ints(total), count), dtype=np.int64)
