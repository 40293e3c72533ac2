"""Non-IID splits of a labelled table over providers: Dirichlet label skew (Hsu et al. 2019)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def dirichlet_split(
    y: Any, providers: int, alpha: float, rng: np.random.Generator, min_rows: int = 1
) -> list[npt.NDArray[np.int64]]:
    """Row indices per provider: each class's rows spread by proportions drawn from
    Dirichlet(``alpha``); redrawn until every provider has ``min_rows`` rows."""
    if providers < 1:
        raise ValueError("providers must be positive")
    if not alpha > 0:
        raise ValueError("alpha must be positive")
    labels = np.asarray(y)
    if providers * min_rows > labels.shape[0]:
        raise ValueError("too few rows for that many providers")
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(providers)]
        for cls in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(providers, alpha))
            cuts = (np.cumsum(shares)[:-1] * idx.shape[0]).astype(np.int64)
            for p, chunk in enumerate(np.split(idx, cuts)):
                parts[p].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_rows:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError("could not draw a split with min_rows rows per provider")
