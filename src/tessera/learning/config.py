"""What an analyst asks of a training, and what every party derives from it (pure).

:class:`TrainingConfig` is the request; :func:`fixed_point_for`, :func:`sensitivity_of`,
:func:`payload_length` and :func:`vdaf_for` are what the providers, the nodes and the
analyst each compute from it on their own (the in-process rounds and the network's
ticket, :class:`tessera.protocol.training.TrainingTicket`, use these same functions),
so no party has to trust another's arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.learning import secure
from tessera.learning.fixed_point import FixedPoint
from tessera.learning.local import LocalConfig
from tessera.learning.models import Array, LogisticRegression, Model
from tessera.learning.privacy import TrainingBudget


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """What the analyst asks for."""

    rounds: int = 10
    providers_per_round: int | None = None
    local: LocalConfig = field(default_factory=LocalConfig)
    secure: bool = True
    unit: str = "provider"
    weighted: bool = True
    clip: float = 1.0
    bits: int = 16
    epsilon: float | None = None
    delta: float = 1e-6
    server_learning_rate: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be a positive integer, got {self.rounds!r}")
        if self.unit not in ("provider", "row"):
            raise ValueError(f"unit must be 'provider' or 'row', got {self.unit!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be positive, got {self.clip!r}")
        if not 2 <= self.bits <= 32:
            raise ValueError(f"bits must be in [2, 32], got {self.bits!r}")
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"epsilon must be positive, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        if not (math.isfinite(self.server_learning_rate) and self.server_learning_rate > 0):
            raise ValueError("server_learning_rate must be positive")
        if self.epsilon is not None and not self.secure:
            raise ValueError("differential privacy needs the secure aggregation")
        if self.unit == "row" and not self.secure:
            raise ValueError("per-row clipping is a mode of the secure aggregation")

    def budget(self) -> TrainingBudget | None:
        if self.epsilon is None:
            return None
        return TrainingBudget.for_epsilon(self.epsilon, self.delta, self.rounds)


def fixed_point_for(config: TrainingConfig, max_rows: int) -> FixedPoint:
    """The fixed point of the aggregated payload; ``max_rows`` is the largest public
    maximum of rows among the training's providers (the row unit's proven bound)."""
    if config.unit == "row":
        return FixedPoint(config.clip * max_rows, config.bits)
    if config.weighted:  # (a·u, a·C) with |a·u| <= a·C <= C
        return FixedPoint(config.clip * math.sqrt(2.0), config.bits)
    return FixedPoint(config.clip, config.bits)


def sensitivity_of(config: TrainingConfig, fixed_point: FixedPoint) -> float:
    """L2 sensitivity of a round's sum to the privacy unit (real units)."""
    if config.unit == "row":
        return config.clip
    return fixed_point.norm_bound


def payload_length(config: TrainingConfig, num_params: int) -> int:
    """Entries of what a provider sends: the update, and the weight for weighted FedAvg."""
    return num_params + (1 if config.unit == "provider" and config.weighted else 0)


def vdaf_for(
    config: TrainingConfig, num_params: int, fixed_point: FixedPoint, nodes: int
) -> Prio3FixedPointBoundedL2VecSum:
    """The VDAF of the round's payloads, shared among ``nodes`` aggregators."""
    return secure.update_vdaf(payload_length(config, num_params), fixed_point, nodes)


def scale_features(x: Array, bounds: Sequence[tuple[float, float]]) -> tuple[Array, int]:
    """Each column clipped to its public bounds and mapped to ``[0, 1]``, as every provider
    and the analyst's validation set see it; also how many values were clipped."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(bounds):
        raise ValueError(f"expected {len(bounds)} feature columns, got shape {x.shape}")
    lo = np.array([b[0] for b in bounds], dtype=np.float64)
    hi = np.array([b[1] for b in bounds], dtype=np.float64)
    clipped = int(((x < lo) | (x > hi)).sum())
    width = np.where(hi > lo, hi - lo, 1.0)
    out: Array = (np.clip(x, lo, hi) - lo) / width
    return out, clipped


def labels_for(model: Model, y: Any, bounds: tuple[float, float]) -> tuple[Any, int]:
    """The label column as the model takes it: class indices for a classifier (each
    must be an integer in ``[0, classes)``; anything else is refused), else values clipped
    to the public bounds; also how many were clipped."""
    y = np.asarray(y, dtype=np.float64)
    classes = classes_of(model)
    if classes is not None:
        bad = ~np.isfinite(y) | (y != np.rint(y)) | (y < 0) | (y >= classes)
        if bad.any():
            raise ValueError(
                f"the label must hold class indices in [0, {classes}): {int(bad.sum())} rows do not"
            )
        return y.astype(np.int64), 0
    clipped = int(((y < bounds[0]) | (y > bounds[1])).sum())
    return np.clip(y, bounds[0], bounds[1]), clipped


def classes_of(model: Model) -> int | None:
    """The number of classes a classifier predicts; ``None`` for a regression."""
    if isinstance(model, LogisticRegression):
        return 2
    classes = getattr(model, "classes", None)
    return None if classes is None else int(classes)
