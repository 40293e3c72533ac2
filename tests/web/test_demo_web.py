"""``tessera demo --web`` as a new user runs it: one command starts the demo network, two
telemetry aggregators fed by the demo's patients and the console, unlocked; the page
works without the command line; Ctrl-C stops every process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from tessera.cli.demo import AGES_OF
from tessera.data import medical
from tessera.node.launcher import free_port

from .test_console import by_id, choose, shot, typed, visible_text, wait_for

START = 300.0  # seconds the whole demo may take to start on the shared 2-core machine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child is not alive
        return os.waitpid(pid, os.WNOHANG)[0] == 0
    except ChildProcessError:
        return True


def test_demo_web_serves_the_console_and_telemetry_then_stops_everything(
    tmp_path: Path, browser: Any, artifacts: Path
) -> None:
    port = free_port()
    state = tmp_path / "network"
    log = tmp_path / "demo.log"
    cmd = [sys.executable, "-m", "tessera.cli.main", "demo", "--web", "--port", str(port)]
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [*cmd, "--dir", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START
        while True:
            assert demo.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/api/session", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        session = httpx.get(url + "/api/session", timeout=10).json()
        assert session["unlocked"] and session["network"]["providers"] == sorted(medical.PROVIDERS)
        assert f"Tessera console: {url}/" in log.read_text()
        # the telemetry view: both tasks, every patient's report accepted at the leader
        patients = pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)
        browser.get(url + "/#telemetry")
        rows = wait_for(
            "the tasks",
            lambda: by_id(browser, "telemetry-tasks").find_elements("css selector", "tbody tr"),
        )
        clinic = medical.load(AGES_OF)
        assert [r.text.split(" ")[0] for r in rows] == ["ages", "blood-pressure"]
        assert f"accepted {len(clinic)}" in rows[0].text, rows[0].text
        assert f"accepted {len(patients)}" in rows[1].text, rows[1].text
        # the heavy hitters of the clinic's patients' ages, collected from the page (no noise)
        tasks = {
            t["name"]: t for t in httpx.get(url + "/api/telemetry", timeout=30).json()["tasks"]
        }
        choose(browser, "telemetry-task", tasks["ages"]["task"])
        typed(browser, "telemetry-threshold", "18")
        browser.execute_script("window.tessera.telemetryResult = null")
        by_id(browser, "telemetry-btn").click()
        out = wait_for(
            "the heavy hitters",
            lambda: (
                browser.execute_script("return window.tessera.telemetryResult")
                or visible_text(browser, "telemetry-error")
            ),
            timeout=300,
        )
        assert isinstance(out, dict), out
        counts = Counter(int(a) for a in clinic.age)
        expected = {f"{a:07b}": n for a, n in counts.items() if n >= 18}
        assert len(expected) >= 3 and out["heavy_hitters"] == expected
        assert out["report_count"] == len(clinic)
        shot(browser, artifacts, "demo-web-telemetry")
        # the analyst view is unlocked: the demo made the key and gave the console it
        browser.get(url + "/#analyst")
        wait_for(
            "the unlocked page",
            lambda: by_id(browser, "account").get_attribute("data-unlocked") == "yes",
        )
        pids = [p["pid"] for p in json.loads((state / "network.json").read_text())["processes"]]
        assert pids and all(_alive(p) for p in pids)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
            raise
    assert code == 130, log.read_text()
    assert "interrupted: every process stopped" in log.read_text()
    assert not any(_alive(p) for p in pids)
    for t in tasks.values():  # the aggregators are gone too
        for a in t["aggregators"]:
            try:
                httpx.get(a["url"] + "/health", timeout=2)
            except httpx.ConnectError:
                continue
            raise AssertionError(f"aggregator {a['url']} still answers")
