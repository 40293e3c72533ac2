"""The command line: `tessera demo` end to end, as the user runs it (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tessera.cli.errors import handle_errors
from tessera.cli.main import app
from tessera.errors import VerificationFailed, exit_code

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
    training = report["training"]["rounds"]
    assert len(training) == 4 and all(r["query_id"].startswith("0x") for r in training)
    assert all(len(r["accepted"]) == 4 and not r["excluded"] for r in training)
    assert training[-1]["loss"] < training[0]["loss"]
    # every process was stopped
    state = json.loads((tmp_path / "n" / "network.json").read_text())
    assert state["processes"] == []


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for command in (
        "demo",
        "query",
        "verify",
        "network",
        "node",
        "keys",
        "market",
        "model",
        "train",
    ):
        assert command in res.output


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group of commands
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((prefix + name, cmd))
    return out


def test_every_command_goes_through_the_one_error_handler() -> None:
    handler = handle_errors(lambda: None).__code__
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 20
    for name, cmd in commands:
        fn, codes = cmd.callback, []
        while fn is not None:
            codes.append(getattr(fn, "__code__", None))
            fn = getattr(fn, "__wrapped__", None)
        assert handler in codes, f"`tessera {name}` does not use cli.errors.handle_errors"


def _fake_session(status: str) -> Any:
    query = SimpleNamespace(status=status, price=10, cheaters=[], committee=0, analyst="0x0")
    ledger = SimpleNamespace(
        query=lambda qid: query, audit_trail=lambda qid: SimpleNamespace(of=lambda kind: [])
    )
    return lambda state_dir: (SimpleNamespace(ledger=ledger, peers=[]), None)


@pytest.mark.parametrize(
    ("status", "recheck", "why"),
    [
        (
            "failed",
            {"passed": True, "proofs_checked": 11, "failures": []},
            "the ledger says failed",
        ),
        (
            "passed",
            {"passed": False, "proofs_checked": 11, "failures": ["x"]},
            "the re-check here failed",
        ),
        ("passed", {"passed": None, "error": "no record"}, "not re-checked here: no record"),
    ],
)
def test_verify_exits_23_when_the_query_did_not_pass(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: str, recheck: Any, why: str
) -> None:
    from tessera.cli import network
    from tessera.node import launcher

    monkeypatch.setattr(launcher, "open_session", _fake_session(status))
    monkeypatch.setattr(network, "_recheck", lambda *args: recheck)
    res = runner.invoke(app, ["verify", "0x" + "ab" * 32, "--dir", str(tmp_path), "--json"])
    assert res.exit_code == 23 == exit_code(VerificationFailed("x")), res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["verified"] is False
    assert f"VerificationFailed: query 0x{'ab' * 32} did not pass verification: {why}" in (
        res.stderr
    )
