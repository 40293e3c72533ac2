"""Choosing the store in a configuration, and aggregator processes that keep it in PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tessera.crypto.rng import SeededRng
from tessera.errors import ConfigError, exit_code
from tessera.node.config import load_role_config
from tessera.node.launcher import free_port as launcher_free_port
from tessera.node.telemetry.client import TelemetryClient
from tessera.node.telemetry.collector import TelemetryCollector
from tessera.node.telemetry.config import TaskConfig, load_task_config, write_task
from tessera.node.telemetry.launcher import aggregators
from tessera.protocol.telemetry import BatchInterval, DpSpec, ReportStatus, VdafSpec

PRECISION = 60
#: An aligned report time a day ago (reports expire after a week).
T0 = (int(time.time()) - 86_400) // 3600 * 3600
REPORTS = 30
SERVE = [sys.executable, "-m", "tessera.cli.telemetry", "serve"]


def _free_port() -> int:
    return launcher_free_port()  # reserved: parallel workers never get the same


# -- role configs --------------------------------------------------------------------------

ROLE = """
role = "verifier"
name = "v1"
port = 7301
data_dir = "state/v1"
keystore = "keys/v1.json"
password_env = "TESSERA_TEST_STORE_PASSWORD"
peers = "peers.json"
{store}
[ledger]
rpc = "http://127.0.0.1:8545"
deployment = "deployment.json"
"""


def _role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str) -> Path:
    monkeypatch.setenv("TESSERA_TEST_STORE_PASSWORD", "pw")
    path = tmp_path / "v1.toml"
    path.write_text(ROLE.format(store=store))
    return path


def test_a_role_stores_in_its_data_dir_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_role_config(_role(tmp_path, monkeypatch, ""))
    assert cfg.store_location == str(tmp_path / "state" / "v1" / "state.sqlite")


def test_a_role_store_is_a_path_relative_to_the_file_or_a_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_role_config(_role(tmp_path, monkeypatch, 'store = "db/v1.sqlite"'))
    assert cfg.store_location == str(tmp_path / "db" / "v1.sqlite")
    dsn = "postgresql://tessera@db.example:5432/v1"
    cfg = load_role_config(_role(tmp_path, monkeypatch, f'store = "{dsn}"'))
    assert cfg.store_location == dsn


def test_a_malformed_role_store_dsn_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _role(tmp_path, monkeypatch, 'store = "postgresql://db/v1?no_such_option=1"')
    with pytest.raises(ConfigError, match=r"v1.toml: store postgresql://db/v1.* not a valid DSN"):
        load_role_config(path)
    path = _role(tmp_path, monkeypatch, "store = 5")
    with pytest.raises(ConfigError, match="'store' must be str"):
        load_role_config(path)


def _task(tmp_path: Path, stores: list[str], ports: list[int] | None = None) -> Path:
    path = write_task(
        tmp_path,
        VdafSpec.of("Prio3Count"),
        aggregator_ports=ports or [_free_port(), _free_port()],
        min_batch_size=10,
        time_precision=PRECISION,
        dp=DpSpec("none"),
    )
    text = path.read_text()
    for i, store in enumerate(stores):
        line = f'state_dir = "agg{i}"\n'
        text = text.replace(line, line + f'store = "{store}"\n' if store else line)
    path.write_text(text)
    return path


def test_an_aggregator_store_is_a_dsn_without_a_password(tmp_path: Path) -> None:
    dsn = "postgresql://agg0@db.example/agg0"
    cfg = load_task_config(_task(tmp_path / "a", [dsn, "agg1.sqlite"]))
    assert cfg.aggregators[0].store_location == dsn
    assert cfg.aggregators[1].store_location == str(tmp_path / "a" / "agg1.sqlite")
    for i, dsn in enumerate(
        ["postgresql://agg0:hunter2@db.example/agg0", "postgresql://db.example/a?password=hunter2"]
    ):
        with pytest.raises(ConfigError, match=r"has a password.*pgpass") as info:
            load_task_config(_task(tmp_path / f"b{i}", [dsn]))
        assert "hunter2" not in str(info.value)


def test_an_aggregator_whose_store_is_unreachable_exits_with_a_config_error(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        task = _task(tmp_path, ["", f"postgresql://agg1@127.0.0.1:{port}/agg1"])
        proc = subprocess.run(
            [*SERVE, "-c", str(task), "--aggregator", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == exit_code(ConfigError("")), proc.stderr
    assert f"127.0.0.1:{port}/agg1: cannot connect to PostgreSQL" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


# -- aggregator processes on PostgreSQL ----------------------------------------------------


@pytest.fixture
def on_postgres(tmp_path: Path, postgres_server: str) -> Iterator[tuple[TaskConfig, list[str]]]:
    from .conftest import new_schema

    dsns = [new_schema(postgres_server), new_schema(postgres_server)]
    ports = [_free_port(), _free_port()]
    cfg = load_task_config(_task(tmp_path, dsns, ports))
    with aggregators([cfg.path], tmp_path):
        yield cfg, dsns


def test_aggregators_with_postgresql_stores_collect_and_refuse_replays(
    on_postgres: tuple[TaskConfig, list[str]],
) -> None:
    cfg, dsns = on_postgres
    measurements = [i % 3 == 0 for i in range(REPORTS)]
    with TelemetryClient(cfg) as client:
        reports = [client.builder.report(m, T0, SeededRng(i)) for i, m in enumerate(measurements)]
        assert [o.status for o in client.upload(reports)] == [ReportStatus.ACCEPTED] * REPORTS
        assert [o.status for o in client.upload(reports[:3])] == [ReportStatus.REPLAYED] * 3
    with TelemetryCollector(cfg) as collector:
        result = collector.collect(BatchInterval(T0, PRECISION))
    assert result.report_count == REPORTS
    assert result.result == sum(measurements)
    # the state is in each aggregator's own schema, and no SQLite store was made
    for dsn in dsns:
        with psycopg.connect(dsn) as db:
            row = db.execute("SELECT count(*) FROM responses").fetchone()
            assert row is not None and row[0] == 1
    assert not any(Path(cfg.path.parent).glob("agg*/store.sqlite"))
