"""FedAvg (McMahan et al. 2017) and the server step of DP-FedAvg (McMahan et al. 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tessera.learning.models import Array


def fedavg_mean(updates: Sequence[Array], weights: Sequence[float]) -> Array:
    """The weighted mean of the updates (plain FedAvg: weights are the providers' row counts)."""
    if not updates or len(updates) != len(weights):
        raise ValueError("need as many weights as updates, and at least one")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or not w.sum() > 0:
        raise ValueError("weights must be non-negative with a positive sum")
    out: Array = np.tensordot(w / w.sum(), np.stack(updates), axes=1)
    return out


def dp_fedavg_mean(noised_sum: Array, count: int) -> Array:
    """DP-FedAvg's update from the noised sum of ``count`` clipped updates.

    Every update has the same weight (a weight would have to be part of the proven,
    clipped contribution); ``count`` is the number of updates the committee accepted,
    which is public to it.
    """
    if count < 1:
        raise ValueError("no update was accepted")
    out: Array = noised_sum / count
    return out


def server_step(params: Array, update: Array, server_learning_rate: float = 1.0) -> Array:
    """``params + server_learning_rate · update``."""
    out: Array = params + server_learning_rate * update
    return out
