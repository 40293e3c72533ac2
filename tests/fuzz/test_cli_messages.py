"""Issue 17, gap 5, on the command line: ``network down`` on a missing directory fails,
errors are plain text when stderr is not a terminal, and an out-of-range telemetry
measurement is a clear bad-argument error (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tessera.cli.main import app

runner = CliRunner()


def test_network_down_on_a_missing_directory_fails(tmp_path: Path) -> None:
    res = runner.invoke(app, ["network", "down", "--dir", str(tmp_path / "nowhere")])
    assert res.exit_code == 19
    assert "no network in" in res.output and "no such directory" in res.output
    res = runner.invoke(app, ["network", "down", "--dir", str(tmp_path)])
    assert res.exit_code == 19 and "no network.json in it" in res.output


def test_errors_carry_no_escape_codes_when_stderr_is_not_a_terminal() -> None:
    """Under CI variables that make typer force colour (GITHUB_ACTIONS, PY_COLORS): a
    usage error of the parser and one of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env |= {"GITHUB_ACTIONS": "true", "PY_COLORS": "1"}
    for args in (["query"], ["network", "down", "--dir", "/nonexistent/tessera"]):
        out = subprocess.run(
            [sys.executable, "-m", "tessera.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert out.returncode != 0
        assert "\x1b[" not in out.stderr, out.stderr


def test_an_out_of_range_measurement_is_a_bad_argument(tmp_path: Path) -> None:
    init = runner.invoke(
        app,
        [
            "telemetry",
            "init",
            str(tmp_path / "t"),
            "--vdaf",
            "Prio3Sum",
            "-p",
            "max_measurement=100",
        ],
    )
    assert init.exit_code == 0, init.output
    res = runner.invoke(
        app, ["telemetry", "submit", "-c", str(tmp_path / "t" / "task.toml"), "5", "101"]
    )
    assert res.exit_code == 2
    assert "measurement '101' refused by Prio3Sum (max_measurement=100)" in res.output
    assert "out of range" in res.output and "Traceback" not in res.output
