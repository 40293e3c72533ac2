"""Crux's statistics in telemetry mode: count, sum, mean, variance and quantiles from Prio3.

A ``Prio3Statistics`` task shards, for each integer ``x`` in ``[0, M]``, the
Prio3SumVec vector ``(x, x^2, e_bin(x))`` with ``bins`` equal bins over ``[0, M + 1)``
(:meth:`~tessera.protocol.telemetry.task.VdafSpec.encode_measurement`). The released
aggregate holds ``Σx``, ``Σx²`` and the histogram; the report count is exact. From
these :func:`describe` computes each statistic with the error it carries:

* the noise of a sum is the sum of every aggregator's draws, with known variance
  (:class:`~tessera.protocol.telemetry.task.NoiseBlock`); ``mean = Σx / n`` and the
  population ``variance = Σx² / n - mean²`` carry it divided by ``n`` (the delta
  method for the variance); each is given with a 95% half-width (``1.96 σ``);
* a quantile is read from the noised histogram (negative counts clipped to zero),
  interpolated linearly in its bin; its interval spans the quantiles at the ranks
  ``q n ± 1.96 σ_rank`` (the noise of the cumulative count) widened by one bin, the
  resolution of the histogram.

The VDAF range-checks every entry (``0 ≤ entry ≤ M²``) but does not prove that the
entries are ``x``, ``x²`` and one bin of ``x``: a malicious client can skew each
statistic within those ranges, as with any Prio3 measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: Quantiles reported besides the median.
QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
#: The normal quantile of a two-sided 95% interval.
Z95 = 1.96


@dataclass(frozen=True, slots=True)
class Estimate:
    """A released statistic: its value and a 95% interval ``[low, high]``."""

    value: float
    low: float
    high: float

    @property
    def error(self) -> float:
        """The half-width of the 95% interval (0 for an exact value)."""
        return (self.high - self.low) / 2

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "error": self.error}


@dataclass(frozen=True, slots=True)
class Description:
    """The statistics of a batch of integer measurements."""

    count: int
    sum: Estimate
    mean: Estimate
    variance: Estimate
    stddev: Estimate
    median: Estimate
    quantiles: dict[float, Estimate]
    histogram: list[int]
    bin_width: float

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "sum": self.sum.to_json(),
            "mean": self.mean.to_json(),
            "variance": self.variance.to_json(),
            "stddev": self.stddev.to_json(),
            "median": self.median.to_json(),
            "quantiles": {str(q): e.to_json() for q, e in self.quantiles.items()},
            "histogram": self.histogram,
            "bin_width": self.bin_width,
        }


def _around(value: float, sd: float) -> Estimate:
    return Estimate(value, value - Z95 * sd, value + Z95 * sd)


def _quantile_at(rank: float, hist: Sequence[int], width: float) -> float:
    """The value at ``rank`` of the clipped histogram, linear within a bin."""
    total = sum(hist)
    rank = min(max(rank, 0.0), float(total))
    below = 0
    for k, h in enumerate(hist):
        if h > 0 and below + h >= rank:
            return (k + (rank - below) / h) * width
        below += h
    return len(hist) * width


def describe(
    aggregate: Sequence[int],
    count: int,
    max_measurement: int,
    noise_variance: Sequence[float] = (0.0, 0.0, 0.0),
    quantiles: Sequence[float] = QUANTILES,
) -> Description:
    """The statistics of a released ``(Σx, Σx², histogram...)`` over ``count`` reports.

    ``noise_variance`` is the variance of the total noise (every aggregator's) on one
    coordinate of each block: the sum, the sum of squares, one histogram count.
    """
    if count < 1:
        raise ValueError("no reports to describe")
    if len(aggregate) < 3:
        raise ValueError("a Prio3Statistics aggregate has at least three coordinates")
    var_x, var_x2, var_h = noise_variance
    total, total_sq, hist = aggregate[0], aggregate[1], list(aggregate[2:])
    n = count
    mean = total / n
    sd_mean = math.sqrt(var_x) / n
    variance = total_sq / n - mean * mean
    sd_var = math.sqrt(var_x2 / n**2 + (2 * mean) ** 2 * var_x / n**2)
    var_est = _around(variance, sd_var)
    width = (max_measurement + 1) / len(hist)
    clipped = [max(h, 0) for h in hist]
    estimates: dict[float, Estimate] = {}
    total_clipped = sum(clipped)
    for q in sorted({*quantiles, 0.5}):
        if not 0 < q < 1:
            raise ValueError("quantiles lie strictly between 0 and 1")
        rank = q * total_clipped
        value = _quantile_at(rank, clipped, width)
        # The noise of the cumulative count up to the quantile's bin.
        k = min(int(value / width), len(hist) - 1)
        sd_rank = math.sqrt((k + 1) * var_h)
        low = _quantile_at(rank - Z95 * sd_rank, clipped, width) - width
        high = _quantile_at(rank + Z95 * sd_rank, clipped, width) + width
        estimates[q] = Estimate(value, max(low, 0.0), min(high, max_measurement + 1.0))
    return Description(
        count=n,
        sum=_around(float(total), math.sqrt(var_x)),
        mean=_around(mean, sd_mean),
        variance=var_est,
        stddev=Estimate(
            math.sqrt(max(variance, 0.0)),
            math.sqrt(max(var_est.low, 0.0)),
            math.sqrt(max(var_est.high, 0.0)),
        ),
        median=estimates[0.5],
        quantiles={q: estimates[q] for q in quantiles},
        histogram=hist,
        bin_width=width,
    )
