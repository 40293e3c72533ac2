"""The command line: `tessera demo` end to end, as the user runs it (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tessera.cli.main import app

runner = CliRunner()


def test_demo_json_over_real_processes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tessera.cli.main", "demo", "--json", "--dir", str(tmp_path / "n")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = {r["name"]: r for r in report["results"]}
    assert len(results) == 5 and all(r["verified"] for r in results.values())
    assert all(r["ledger"] == "passed" for r in results.values())
    count = results["patients (count)"]
    assert count["truth"] == 4020 and abs(count["result"] - 4020) < 60
    age = results["mean age"]
    assert abs(age["result"] - age["truth"]) < 2
    curve = results["survival at 1..5 years"]
    assert len(curve["result"]) == len(curve["truth"]) == 5
    assert all(abs(a - b) < 0.05 for a, b in zip(curve["result"], curve["truth"], strict=True))
    assert report["market"]["status"] == "passed" and report["market"]["rating"] == 5.0
    # every process was stopped
    state = json.loads((tmp_path / "n" / "network.json").read_text())
    assert state["processes"] == []


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for command in ("demo", "query", "verify", "network", "node", "keys", "market", "model"):
        assert command in res.output
