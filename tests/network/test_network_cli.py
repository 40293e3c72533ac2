"""`tessera network up FILE | status | down` as a user runs them (relative paths included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.data import medical
from tessera.learning.serialize import decode_model
from tessera.learning.torch_model import TorchModel

NETWORK = """
[network]
nodes = 2
threshold = 1
verifiers = 1
kdf_iterations = 1024

[[provider]]
name = "clinic-c"
[provider.tables.patients]
source = "clinic-c.csv"
policy = { min_cohort = 10, budget_rho = 5.0, price_per_query = 10, max_rows = 2000 }
[provider.tables.patients.bounds]
age = [18, 95]
bmi = [15.0, 50.0, 4]
sex = ["F", "M"]
glucose = [50.0, 300.0]
diabetes = [0, 1]
"""


def test_network_up_query_status_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clinic-c.csv").write_bytes(medical.sample_path("clinic-c").read_bytes())
    (tmp_path / "network.toml").write_text(NETWORK)
    runner = CliRunner()
    where = ["--dir", "net", "--json"]
    up = runner.invoke(app, ["network", "up", "network.toml", *where])
    try:
        assert up.exit_code == 0, up.output
        assert json.loads(up.stdout.strip().splitlines()[-1])["committee"] == 0
        res = runner.invoke(app, ["query", "SELECT COUNT(*), AVG(bmi) FROM patients", *where])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout.strip().splitlines()[-1])
        rows = len(medical.load("clinic-c"))
        assert out["verified"] and abs(out["values"]["count(*)"] - rows) < 60
        train = [
            "train", "--table", "patients", "--features", "age,glucose", "--label", "diabetes",
            "--unit", "row", "--epsilon", "4", "--rounds", "2", "--server-learning-rate", "6",
            "--store", "models", "--yes", *where,
        ]  # fmt: skip
        trained = runner.invoke(app, train)
        assert trained.exit_code == 0, trained.output
        report = json.loads(trained.stdout.strip().splitlines()[-1])
        assert [r["accepted"] for r in report["rounds"]] == [["clinic-c"], ["clinic-c"]]
        assert all(r["query_id"].startswith("0x") for r in report["rounds"])
        assert len(list(Path("models").iterdir())) == 3  # the initial model and two rounds
        # bad input: a clear message and a nonzero exit, nothing run
        bad_model = runner.invoke(app, [*train[:-3], "--model", "forest", "--yes", *where])
        assert bad_model.exit_code == 2 and "model must be one of" in bad_model.output
        # a PyTorch model (the torch extra) from its layers, stored by CID as such
        torch_train = [
            "train", "--table", "patients", "--features", "age,glucose", "--label", "diabetes",
            "--unit", "row", "--epsilon", "2", "--rounds", "1", "--server-learning-rate", "6",
            "--model", "torch", "--layers", "linear:2:4,tanh,linear:4:2",
            "--store", "torch-models", "--yes", *where,
        ]  # fmt: skip
        trained = runner.invoke(app, torch_train)
        assert trained.exit_code == 0, trained.output
        assert [r["accepted"] for r in json.loads(trained.stdout.splitlines()[-1])["rounds"]] == [
            ["clinic-c"]
        ]
        stored = [decode_model(f.read_bytes())[0] for f in Path("torch-models").iterdir()]
        assert len(stored) == 2 and all(isinstance(m, TorchModel) for m in stored)
        assert stored[0].spec()["layers"] == [["linear", 2, 4], ["tanh"], ["linear", 4, 2]]
        for layers, why in (
            ("linear:2:4,relu,linear:4:3", "not the 2 class logits"),
            ("linear:2:x", "not an integer"),
            ("dense:2:2", "unknown layer 'dense'"),
        ):
            bad = runner.invoke(app, [*torch_train[:-8], "--layers", layers, "--yes", *where])
            assert bad.exit_code == 2 and why in bad.output, bad.output
        no_layers = runner.invoke(app, [*torch_train[:-8], "--yes", *where])
        assert no_layers.exit_code == 2 and "needs --layers" in no_layers.output
        no_bounds = [*train[:4], "age,cholesterol", *train[5:]]
        refused = runner.invoke(app, no_bounds)
        assert refused.exit_code != 0 and "cholesterol" in refused.output, refused.output
        status = json.loads(runner.invoke(app, ["network", "status", *where]).stdout)
        assert {r["status"] for r in status["roles"].values()} == {"up"}
        assert sorted(status["roles"]) == ["clinic-c", "node-1", "node-2", "verifier-1"]
        again = runner.invoke(app, ["network", "up", "network.toml", *where])
        assert again.exit_code == 19 and "already running" in again.output
    finally:
        down = runner.invoke(app, ["network", "down", *where])
    assert down.exit_code == 0
    assert len(json.loads(down.stdout)["stopped"]) == 5  # 4 roles and the chain


def test_network_file_errors_name_the_problem(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nnodes = 2\nthreshold = 3\n[[provider]]\nname='x'\ntables={}\n")
    res = runner.invoke(app, ["network", "up", str(bad), "--dir", str(tmp_path / "n")])
    assert res.exit_code == 19 and "threshold 3" in res.output
    bad.write_text("[network\n")
    res = runner.invoke(app, ["network", "up", str(bad), "--dir", str(tmp_path / "n")])
    assert res.exit_code == 19 and "not valid TOML" in res.output
    res = runner.invoke(app, ["network", "up", str(tmp_path / "none.toml")])
    assert res.exit_code == 19 and "cannot read" in res.output
