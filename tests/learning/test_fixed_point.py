"""Clipping and the fixed-point encoding the norm proof checks."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.learning import FixedPoint, clip_l2


def test_clip_scales_only_vectors_outside_the_ball() -> None:
    u = np.array([3.0, 4.0])
    inside, was = clip_l2(u, 10.0)
    assert not was and np.array_equal(inside, u)
    out, was = clip_l2(u, 1.0)
    assert was and np.isclose(np.linalg.norm(out), 1.0) and np.allclose(out * 5, u)


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("norm", [0.01, 0.999, 1.0, 50.0])
def test_encoded_vectors_are_in_range_and_within_the_proven_bound(bits: int, norm: float) -> None:
    rng = np.random.default_rng(bits)
    fp = FixedPoint(2.0, bits)
    for _ in range(20):
        u = rng.normal(size=300)
        u *= 2.0 * norm / np.linalg.norm(u)
        v = fp.encode(u, rng)
        assert v.min() >= -(1 << (bits - 1)) and v.max() < 1 << (bits - 1)
        assert int(np.dot(v, v)) <= fp.norm_bound_sq
    # a vector on an axis at the bound: the top entry is 2^(bits-1) - 1
    axis = np.zeros(5)
    axis[0] = 2.0
    assert fp.encode(axis, rng)[0] == (1 << (bits - 1)) - 1


def test_decoding_is_close_and_stochastic_rounding_is_unbiased() -> None:
    rng = np.random.default_rng(1)
    fp = FixedPoint(1.0, 8)
    u = rng.normal(size=50)
    u *= 0.5 / np.linalg.norm(u)
    step = 1.0 / fp.scale
    draws = np.stack([fp.decode(fp.encode(u, rng)) for _ in range(2000)])
    assert np.abs(draws - u).max() <= step
    assert np.abs(draws.mean(axis=0) - u).max() < 0.1 * step


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        FixedPoint(0.0)
    with pytest.raises(ValueError):
        FixedPoint(1.0, 1)
    with pytest.raises(ValueError, match="non-finite"):
        FixedPoint(1.0).encode(np.array([1.0, np.nan]), np.random.default_rng(0))
