"""Crux's statistics in telemetry mode (issue 12): exact against the standard library,
and the stated 95% intervals under DP noise over seeded runs; over real processes too."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from tessera.cli.telemetry import app
from tessera.crypto.rng import SeededRng
from tessera.node.telemetry.client import ReportBuilder
from tessera.protocol.telemetry import DpSpec, VdafSpec
from tessera.protocol.telemetry.statistics import describe
from tessera.protocol.telemetry.task import noise_per_coordinate

from .conftest import PRECISION, T0, Deployment
from .test_e2e import _upload_all

M = 100


def _data(seed: int, n: int) -> list[int]:
    rnd = random.Random(seed)
    return [min(M, max(0, round(rnd.gauss(40, 18)))) for _ in range(n)]


def _aggregate(spec: VdafSpec, data: list[int]) -> list[int]:
    vectors = [spec.encode_measurement(x) for x in data]
    return [sum(col) for col in zip(*vectors, strict=True)]


def test_encoding_and_exact_statistics() -> None:
    spec = VdafSpec.of("Prio3Statistics", max_measurement=M, bins=M + 1)
    assert spec.encode_measurement(3)[:2] == [3, 9] and spec.encode_measurement(3)[5] == 1
    with pytest.raises(ValueError, match="out of range"):
        spec.encode_measurement(M + 1)
    data = _data(1, 999)
    d = describe(_aggregate(spec, data), len(data), M)
    assert d.count == 999 and d.sum.value == sum(data) and d.sum.error == 0
    assert d.mean.value == pytest.approx(statistics.fmean(data), rel=1e-12)
    assert d.variance.value == pytest.approx(statistics.pvariance(data), rel=1e-9)
    assert d.stddev.value == pytest.approx(statistics.pstdev(data), rel=1e-9)
    # One bin per value: quantiles within one unit, and their intervals hold the truth.
    truth = statistics.quantiles(data, n=20, method="inclusive")
    for q, est in d.quantiles.items():
        exact = truth[round(q * 20) - 1]
        assert abs(est.value - exact) <= 1.0, q
        assert est.low <= exact <= est.high
    assert abs(d.median.value - statistics.median(data)) <= 1.0


@pytest.mark.parametrize(
    "dp",
    [
        DpSpec("discrete_gaussian", rho=Fraction(1, 2)),
        DpSpec("discrete_laplace", epsilon=Fraction(1)),
    ],
    ids=["gaussian", "laplace"],
)
def test_dp_intervals_cover_about_95_percent(dp: DpSpec) -> None:
    """200 seeded releases: each statistic falls in its stated 95% interval 90-99% of the time."""
    spec = VdafSpec.of("Prio3Statistics", max_measurement=M, bins=20)
    data = _data(2, 2000)
    exact = _aggregate(spec, data)
    blocks = dp.noise(spec)
    assert blocks is not None
    per = noise_per_coordinate(blocks, len(exact))
    variance = [2 * per[i].variance for i in (0, 1, 2)]  # two aggregators
    rng = SeededRng(12)
    hits = {"mean": 0, "variance": 0, "median": 0}
    truth = {
        "mean": statistics.fmean(data),
        "variance": statistics.pvariance(data),
        "median": statistics.median(data),
    }
    runs = 200
    for _ in range(runs):
        noised = [x + b.sample(rng) + b.sample(rng) for x, b in zip(exact, per, strict=True)]
        d = describe(noised, len(data), M, noise_variance=variance)
        for name, est in (("mean", d.mean), ("variance", d.variance), ("median", d.median)):
            hits[name] += est.low <= truth[name] <= est.high
    assert 0.90 * runs <= hits["mean"] <= 0.99 * runs, hits
    assert 0.90 * runs <= hits["variance"] <= 0.99 * runs, hits
    assert hits["median"] >= 0.90 * runs, hits  # conservative: one bin of resolution added


def _collect_json(config_path: str, start: int) -> dict[str, object]:
    res = CliRunner().invoke(
        app,
        [
            "collect",
            "-c",
            config_path,
            "--start",
            str(start),
            "--duration",
            str(PRECISION),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_collect_gives_the_statistics_over_real_processes(deployment: Deployment) -> None:
    config = deployment.configs["statistics"]
    data = _data(3, 300)
    builder = ReportBuilder(config)
    rng = SeededRng(13)
    reports = [builder.report(x, T0, rng) for x in data]
    asyncio.run(_upload_all(config, reports, per_request=20))
    stats = _collect_json(str(config.path), T0)["statistics"]
    assert isinstance(stats, dict)
    assert stats["count"] == 300
    assert stats["mean"]["value"] == pytest.approx(statistics.fmean(data), rel=1e-12)
    assert stats["mean"]["error"] == 0
    assert stats["variance"]["value"] == pytest.approx(statistics.pvariance(data), rel=1e-9)
    assert abs(stats["median"]["value"] - statistics.median(data)) <= 1.0


def test_collect_gives_noised_statistics_with_their_error(deployment: Deployment) -> None:
    config = deployment.configs["statistics_dp"]
    data = _data(4, 400)
    builder = ReportBuilder(config)
    rng = SeededRng(14)
    asyncio.run(_upload_all(config, [builder.report(x, T0, rng) for x in data], per_request=20))
    stats = _collect_json(str(config.path), T0)["statistics"]
    assert isinstance(stats, dict)
    # Noise drawn by the aggregators (not seeded): within twice the 95% half-width, i.e.
    # about four standard deviations (failure probability about 1e-4 per statistic).
    for name, truth in (("mean", statistics.fmean(data)), ("variance", statistics.pvariance(data))):
        est = stats[name]
        assert est["error"] > 0
        assert abs(est["value"] - truth) <= 2 * est["error"], (name, est, truth)
    assert stats["median"]["low"] - 10 <= statistics.median(data) <= stats["median"]["high"] + 10
