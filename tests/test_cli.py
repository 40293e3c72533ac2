"""The command line: `tessera demo` end to end, in a subprocess-free runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path))


def test_demo_json_reports_verified_sum() -> None:
    res = runner.invoke(app, ["demo", "--json", "--seed", "11"])
    assert res.exit_code == 0, res.output
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
    report = json.loads(line)
    assert report["result"] == report["truth"]
    assert report["verified"] is True
    # per provider: 1 limb proof (20-bit span, 21-bit limbs) + 1 exact-bound proof;
    # per node: 1 key-switch share; the analyst: 1 decryption proof
    assert report["proofs_checked"] == 4 * 2 + 3 * 1 + 1


def test_demo_with_cheating_node_still_correct() -> None:
    res = runner.invoke(app, ["demo", "--json", "--seed", "12", "--cheat"])
    assert res.exit_code == 0, res.output
    report = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
    assert report["result"] == report["truth"]
    assert report["excluded_nodes"] == [1]
    assert report["cheaters_proven"] == [1]


def test_demo_table_output() -> None:
    res = runner.invoke(app, ["demo", "--seed", "13"])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output and "yes" in res.output
