"""The benchmark scripts run and report the keys the issues ask for (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_crypto_benchmark_quick_json(tmp_path: Path) -> None:
    env = {"TESSERA_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "crypto.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=600,
    )
    report = json.loads(out.stdout)
    for key in (
        "encrypt_us",
        "range_prove_ms_32",
        "range_verify_ms_32",
        "dlog_worst_ms",
        "dkg_7_4_s",
    ):
        assert report[key] > 0
    kinds = [row["proof"] for row in report["sigma_verify"]]
    assert len(kinds) == 3 and all(
        "knowledge" in k or "release" in k or "key-switch" in k for k in kinds
    )
    for row in report["sigma_verify"]:
        assert row["native_us"] > 0 and row["terms_us"] > 0 and row["batch_64_us_per_proof"] > 0


def test_accuracy_benchmark_quick_json() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "accuracy.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    assert set(report) == {"exact", "dp_ratio"}
    for stat in ("mean", "variance", "sum", "correlation", "cosine_similarity"):
        assert 0 <= report["exact"][stat] <= 1e-6
    assert report["exact"]["regression"] <= 1e-4
    assert report["exact"]["median_of_range"] <= 1e-3
    for ratio in report["dp_ratio"].values():
        assert 0.5 < ratio < 5  # distributing the noise costs a bounded factor


def test_privacy_audit_benchmark_quick_json() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "privacy_audit.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    assert set(report) == {"count", "sum", "histogram", "regression"}
    for r in report.values():
        assert set(r) == {"claimed_eps", "measured_eps", "lower_bound", "p_true", "p_low", "p_high"}
        assert r["lower_bound"] <= r["claimed_eps"]
        assert r["p_true"] > 0.001 and r["p_low"] < 0.05 and r["p_high"] < 0.05


def test_load_benchmark_quick_json() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    q, t = report["queries"], report["telemetry"]
    assert q["analysts"] == 4 and q["completed"] >= 1
    assert q["lost"] == 0 and q["invariants_broken"] == []
    assert q["completed"] + q["failed"] == q["queries"]
    assert 0 < q["latency_s"]["p50"] <= q["latency_s"]["p90"] <= q["latency_s"]["p99"]
    assert t["lost"] == 0 and t["reports"] == 2_000
    assert t["outcomes"]["valid"] == {"accepted": t["valid"]}
    assert t["outcomes"]["replay"] == {"replayed": t["replays"]}
    assert sum(t["outcomes"]["malformed"].values()) == t["malformed"]
    assert "accepted" not in t["outcomes"]["malformed"]
    assert t["collected_count"] == t["valid"] and t["collected_sum"] == t["expected_sum"]


# On the worker that runs tests/learning/test_flower.py, after it. A Ray cluster started
# without an address joins the machine's latest one (/tmp/ray/ray_current_cluster): this
# test's SecAgg+ round joined the cluster of that file's simulations, busy or left
# running, and hung until its timeout; every run_simulation now starts its own
# (address "local").
@pytest.mark.xdist_group("learning/test_flower.py")
def test_federated_benchmark_reports_tessera_beside_flower_secagg_plus() -> None:
    """One small size, round times only: Tessera's round, Flower's FedAvg, the same clients
    through Tessera's Flower strategy, and Flower's SecAgg+ workflow (Ray), with the ratio."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "federated.py"),
            "--sizes",
            "4x1000",
            "--no-accuracy",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("round_s", "flower_round_s", "flower_fedavg_round_s", "flower_tessera_round_s"):
        assert report[key]["4x1000"] > 0, key
    ratio = report["flower_round_s"]["4x1000"] / report["round_s"]["4x1000"]
    assert report["flower_ratio"]["4x1000"] == ratio
    assert report["breakdown"]["4x1000"]["proof_s"] > 0


def _scaling() -> Any:
    spec = importlib.util.spec_from_file_location(
        "tessera_benchmark_scaling_sweeps", ROOT / "benchmarks" / "scaling.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def test_scaling_reshare_point_rotates_under_the_same_key_and_times_each_step() -> None:
    row = _scaling().reshare_point(5)  # asserts the key unchanged and no cheater itself
    assert (row["n"], row["threshold"]) == (5, 3)
    for key in ("deal_s", "complain_s", "finish_s", "audit_s", "total_s"):
        assert row[key] > 0, row


def test_scaling_latency_point_reports_latency_and_verification() -> None:
    row = _scaling().latency_point(3, providers=2, rows=500)
    assert (row["nodes"], row["providers"], row["rows"]) == (3, 2, 500)
    assert 0 < row["latency_s"] <= row["wall_s"] and row["verify_s"] > 0, row
