"""Adversarial training providers: wrappers around a :class:`~tessera.learning.rounds.Provider`.

Each wraps an honest provider and changes what it sends in a round; the committee's
joint verification must exclude it and the model must be as if it had sent nothing.
"""

from __future__ import annotations

import numpy as np

from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.learning import secure
from tessera.learning.fixed_point import FixedPoint
from tessera.learning.models import Array
from tessera.learning.rounds import Dataset, Provider
from tessera.node.roles import ProviderRole


def _lying_encoding(vdaf: Prio3FixedPointBoundedL2VecSum, ints: list[int]) -> list[int]:
    """Digits of ``ints`` (in range, any norm) with a claimed squared norm of the bound."""
    field = vdaf.field
    offset = 1 << (vdaf.BITS - 1)
    out: list[int] = []
    for v in ints:
        out += field.encode_into_bit_vec(v + offset, vdaf.BITS)
    bound = vdaf.NORM_BOUND_SQ
    nb = bound.bit_length()
    last = bound - ((1 << (nb - 1)) - 1)
    return [*out, *field.encode_into_bit_vec(bound - last, nb - 1), 1]


class OversizedUpdate(Provider):
    """Sends its update scaled to ``factor`` times the norm bound, proven with a false
    claim that its squared norm is the bound (every entry is in range)."""

    def __init__(
        self, honest: Provider, rounds: set[int], factor: float = 10.0, seed: int = 0
    ) -> None:
        super().__init__(honest.dataset)
        self.honest = honest
        self.rounds = rounds
        self.factor = factor
        self.rng = np.random.default_rng(seed)  # its own: the round's stream is unchanged

    def report(
        self,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        ctx: bytes,
        fixed_point: FixedPoint,
        update: Array,
        rng: np.random.Generator,
    ) -> secure.Report:
        honest = self.honest.report(round_index, vdaf, ctx, fixed_point, update, rng)
        if round_index not in self.rounds:
            return honest
        direction = update / max(float(np.linalg.norm(update)), 1e-300)
        big = direction * self.factor * fixed_point.norm_bound * fixed_point.scale
        top = (1 << (fixed_point.bits - 1)) - 1
        ints = np.clip(np.rint(big), -top - 1, top).astype(np.int64).tolist()
        meas = _lying_encoding(vdaf, ints)
        size = vdaf.xof.SEED_SIZE
        rand = self.rng.bytes(vdaf.RAND_SIZE)
        seeds = [rand[i : i + size] for i in range(0, len(rand), size)]
        nonce = self.rng.bytes(vdaf.NONCE_SIZE)
        public, shares = vdaf.shard_with_joint_rand(ctx, meas, nonce, seeds)
        return secure.Report(
            nonce,
            vdaf.encode_public_share(public),
            tuple(vdaf.encode_input_share(s) for s in shares),
        )


class MalformedUpdate(Provider):
    """Sends a leader share one byte short."""

    def __init__(self, honest: Provider, rounds: set[int]) -> None:
        super().__init__(honest.dataset)
        self.honest = honest
        self.rounds = rounds

    def report(
        self,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        ctx: bytes,
        fixed_point: FixedPoint,
        update: Array,
        rng: np.random.Generator,
    ) -> secure.Report:
        report = self.honest.report(round_index, vdaf, ctx, fixed_point, update, rng)
        if round_index not in self.rounds:
            return report
        shares = (report.input_shares[0][:-1], *report.input_shares[1:])
        return secure.Report(report.nonce, report.public_share, shares)


class ReplayingProvider(Provider):
    """From round ``start`` on, sends again the report it sent in the round before."""

    def __init__(self, honest: Provider, start: int, *, fresh_nonce: bool = False) -> None:
        super().__init__(honest.dataset)
        self.honest = honest
        self.start = start
        self.fresh_nonce = fresh_nonce
        self.previous: secure.Report | None = None

    def report(
        self,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        ctx: bytes,
        fixed_point: FixedPoint,
        update: Array,
        rng: np.random.Generator,
    ) -> secure.Report:
        honest = self.honest.report(round_index, vdaf, ctx, fixed_point, update, rng)
        if round_index < self.start or self.previous is None:
            self.previous = honest
            return honest
        old = self.previous
        if self.fresh_nonce:  # the old shares under a new nonce: the proof must fail
            return secure.Report(rng.bytes(vdaf.NONCE_SIZE), old.public_share, old.input_shares)
        return old


def oversized_trainer(role: ProviderRole, rounds: set[int] | None = None) -> ProviderRole:
    """The provider role sends :class:`OversizedUpdate` reports (every round, or ``rounds``):
    its update ten times the norm bound, proven with a false norm claim."""
    honest = role.training_party
    count = iter(range(1 << 62))

    def training_party(dataset: Dataset) -> Provider:
        # a fresh stream per round: a nonce of its own each time (not a replay)
        chosen = rounds if rounds is not None else _EVERY
        return OversizedUpdate(honest(dataset), chosen, seed=next(count))

    role.training_party = training_party  # type: ignore[method-assign]
    return role


class _Every(set[int]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERY = _Every()
