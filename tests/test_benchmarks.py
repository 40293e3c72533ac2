"""The benchmark scripts run and report the keys the issues ask for (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
