"""A provider's local work on its rows: mini-batch SGD epochs, or a per-row clipped gradient sum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.learning.models import Array, Model


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """Local training at each provider: ``epochs`` passes of mini-batch SGD."""

    epochs: int = 1
    learning_rate: float = 0.1
    batch_size: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")


def train_locally(
    model: Model,
    params: Array,
    x: Array,
    y: Any,
    config: LocalConfig,
    rng: np.random.Generator,
) -> Array:
    """The model update ``params' - params`` after ``config.epochs`` of shuffled mini-batch SGD."""
    if x.shape[0] == 0:
        return np.zeros_like(params)
    labels = np.asarray(y)
    w = params.copy()
    rows = x.shape[0]
    for _ in range(config.epochs):
        order = rng.permutation(rows)
        for start in range(0, rows, config.batch_size):
            idx = order[start : start + config.batch_size]
            w -= config.learning_rate * model.grad(w, x[idx], labels[idx])
    out: Array = w - params
    return out


def clipped_gradient_sum(
    model: Model, params: Array, x: Array, y: Any, clip: float, block_rows: int = 256
) -> Array:
    """``sum_rows clip(grad_row, clip)``: each row moves the sum by at most ``clip`` (L2).

    This is DP-SGD's per-example clipping (Abadi et al. 2016), the unit of privacy being
    one row; rows are processed in blocks so that memory stays ``block_rows x params``.
    """
    if not clip > 0:
        raise ValueError(f"clip must be positive, got {clip!r}")
    labels = np.asarray(y)
    total = np.zeros(model.num_params)
    for start in range(0, x.shape[0], block_rows):
        g = model.per_example_grads(
            params, x[start : start + block_rows], labels[start : start + block_rows]
        )
        norms = np.linalg.norm(g, axis=1)
        factors = np.minimum(1.0, clip / np.maximum(norms, 1e-300))
        total += factors @ g
    return total
