"""``tessera telemetry`` commands: init, and submit/collect against real aggregators."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tessera.cli.telemetry import app

from .conftest import PRECISION, T0, Deployment

runner = CliRunner()


def test_init_writes_a_loadable_task(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["init", str(tmp_path / "t"), "--vdaf", "Prio3Sum", "-p", "max_measurement=100",
         "--aggregators", "3", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    path = Path(json.loads(res.stdout)["config"])
    assert 'type = "Prio3Sum"' in path.read_text()
    bad = runner.invoke(app, ["init", str(tmp_path / "u"), "--vdaf", "Prio3Sum"])
    assert bad.exit_code == 19
    assert "Prio3Sum takes parameters: max_measurement" in bad.output


def test_submit_and_collect_json(deployment: Deployment) -> None:
    cfg = str(deployment.configs["adversarial"].path)
    t = T0 + 10 * PRECISION
    res = runner.invoke(
        app, ["submit", "-c", cfg, "--time", str(t), "--json", "0", "1", "1", "3", "3", "3"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["accepted"] == 6 and {r["status"] for r in out["reports"]} == {"accepted"}

    bad = runner.invoke(app, ["submit", "-c", cfg, "--time", str(t), "7"])
    assert bad.exit_code != 0 and "measurement out of range" in bad.output

    res = runner.invoke(
        app, ["collect", "-c", cfg, "--start", str(t), "--duration", str(PRECISION), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["result"] == [1, 2, 0, 3]
    overlapping = runner.invoke(
        app, ["collect", "-c", cfg, "--start", str(t), "--duration", str(2 * PRECISION)]
    )
    assert overlapping.exit_code == 10 and "overlaps" in overlapping.output
