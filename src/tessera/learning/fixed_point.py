"""Clipping to an L2 ball and the fixed-point encoding that the norm proof checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera.learning.models import Array

Ints = npt.NDArray[np.int64]


def clip_l2(update: Array, bound: float) -> tuple[Array, bool]:
    """``update`` scaled into the L2 ball of radius ``bound``, and whether it was scaled."""
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    norm = float(np.linalg.norm(update))
    if norm <= bound:
        return update.copy(), False
    out: Array = update * (bound / norm)
    return out, True


@dataclass(frozen=True, slots=True)
class FixedPoint:
    """Vectors of L2 norm at most ``norm_bound`` as integers of ``bits`` bits.

    Entry ``x`` becomes ``v = round(x · 2^(bits-1) / norm_bound)`` in
    ``[-2^(bits-1), 2^(bits-1))``, and ``sum v² <= 2^(2 bits - 2)``: exactly the statement
    of :class:`tessera.crypto.flp.FixedPointBoundedL2VecSum` with
    ``norm_bound_sq = 2^(2 bits - 2)``. Rounding is stochastic (unbiased); a vector the
    rounding pushes out of the ball is rounded toward zero instead, which never
    increases a norm.
    """

    norm_bound: float
    bits: int = 16

    def __post_init__(self) -> None:
        if not (math.isfinite(self.norm_bound) and self.norm_bound > 0):
            raise ValueError(f"norm_bound must be positive, got {self.norm_bound!r}")
        if not 2 <= self.bits <= 32:
            raise ValueError(f"bits must be in [2, 32], got {self.bits!r}")

    @property
    def scale(self) -> float:
        """Integer units per real unit: ``2^(bits-1) / norm_bound``."""
        return float(1 << (self.bits - 1)) / self.norm_bound

    @property
    def norm_bound_sq(self) -> int:
        """The proven bound on ``sum v²``, in integer units."""
        return 1 << (2 * self.bits - 2)

    def encode(self, update: Array, rng: np.random.Generator) -> Ints:
        """The integer vector of ``update`` (clipped to ``norm_bound`` first)."""
        u = np.asarray(update, dtype=np.float64)
        if not np.isfinite(u).all():
            raise ValueError("the update has non-finite entries (local training diverged?)")
        clipped, _ = clip_l2(u, self.norm_bound)
        top = (1 << (self.bits - 1)) - 1
        scaled = np.clip(clipped * self.scale, -top, top)
        low = np.floor(scaled)
        v = (low + (rng.random(scaled.shape) < scaled - low)).astype(np.int64)
        if _norm_sq(v) > self.norm_bound_sq:
            v = np.trunc(scaled).astype(np.int64)
        return v

    def decode(self, total: Any) -> Array:
        """Real values of a sum of encoded vectors (noise included)."""
        out: Array = np.asarray(total, dtype=np.float64) / self.scale
        return out


def _norm_sq(v: Ints) -> int:
    """Exact ``sum v²`` (int64 when it cannot overflow, Python ints otherwise)."""
    if v.size == 0:
        return 0
    top = int(np.abs(v).max())
    if v.size * top * top < 1 << 62:
        return int(np.dot(v, v))
    return sum(int(x) * int(x) for x in v.tolist())
