"""Real aggregator processes for the end-to-end telemetry tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

from tessera.node.launcher import free_port as launcher_free_port
from tessera.node.telemetry.config import TaskConfig, load_task_config, write_task
from tessera.node.telemetry.keys import PartyKeys, aggregator_credential
from tessera.node.telemetry.launcher import aggregators
from tessera.protocol.telemetry import DpSpec, VdafSpec

PRECISION = 60
#: An aligned report time a day ago: reports expire after a week, so every report time
#: the tests use (T0 plus a few buckets) is accepted whenever the tests run.
T0 = (int(time.time()) - 86_400) // 3600 * 3600

TASKS: dict[str, tuple[VdafSpec, DpSpec, int]] = {
    "count": (VdafSpec.of("Prio3Count"), DpSpec("none"), 100),
    "sum": (
        VdafSpec.of("Prio3Sum", max_measurement=255),
        DpSpec("discrete_laplace", epsilon=Fraction(1)),
        100,
    ),
    "sumvec": (
        VdafSpec.of("Prio3SumVec", length=8, max_measurement=3, chunk_length=4),
        DpSpec("none"),
        100,
    ),
    "histogram": (
        VdafSpec.of("Prio3Histogram", length=20, chunk_length=5),
        DpSpec("discrete_gaussian", rho=Fraction(1, 2)),
        100,
    ),
    "multihot": (
        VdafSpec.of("Prio3MultihotCountVec", length=10, max_weight=3, chunk_length=4),
        DpSpec("none"),
        100,
    ),
    "poplar1": (VdafSpec.of("Poplar1", bits=8), DpSpec("none"), 100),
    "adversarial": (
        VdafSpec.of("Prio3Histogram", length=4, chunk_length=2),
        DpSpec("none"),
        5,
    ),
    # issue 19
    "differencing": (VdafSpec.of("Poplar1", bits=4), DpSpec("none"), 10),
    "credentials": (VdafSpec.of("Prio3Histogram", length=4, chunk_length=2), DpSpec("none"), 3),
    "ending": (VdafSpec.of("Prio3Count"), DpSpec("none"), 1),
    # issue 12: Crux's statistics
    "statistics": (
        VdafSpec.of("Prio3Statistics", max_measurement=100, bins=101),
        DpSpec("none"),
        50,
    ),
    "statistics_dp": (
        VdafSpec.of("Prio3Statistics", max_measurement=100, bins=20),
        DpSpec("discrete_gaussian", rho=Fraction(1, 2)),
        50,
    ),
}
#: The "ending" task ends five buckets after T0.
TASK_END = {"ending": T0 + 5 * PRECISION}


def free_port() -> int:
    return launcher_free_port()  # reserved: parallel workers never get the same


@dataclass
class Deployment:
    configs: dict[str, TaskConfig]
    processes: list[subprocess.Popen[bytes]]


def leader_credential(config: TaskConfig) -> str:
    """The aggregator credential, as the leader computes it (a test posing as the leader)."""
    own = load_party_keys(config, 0).auth_private_key
    helper = config.aggregators[1].public_config(config.task_id).auth_public_key
    return aggregator_credential(own, helper, config.task_id, 1)


def load_party_keys(config: TaskConfig, agg_id: int) -> PartyKeys:
    return config.aggregators[agg_id].keys(config.task_id)


def serve_exits(config: Path, agg_id: int) -> subprocess.CompletedProcess[str]:
    """Run ``tessera telemetry serve`` expecting it to refuse to start."""
    args = [sys.executable, "-m", "tessera.cli.telemetry", "serve", "-c", str(config)]
    return subprocess.run(
        [*args, "--aggregator", str(agg_id)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("telemetry")
    ports = [free_port(), free_port()]
    paths = {
        name: write_task(
            root / name,
            spec,
            aggregator_ports=ports,
            min_batch_size=min_batch,
            time_precision=PRECISION,
            dp=dp,
            task_end=TASK_END.get(name),
        )
        for name, (spec, dp, min_batch) in TASKS.items()
    }
    configs = {name: load_task_config(p) for name, p in paths.items()}
    with aggregators(list(paths.values()), root) as procs:
        yield Deployment(configs, procs)
