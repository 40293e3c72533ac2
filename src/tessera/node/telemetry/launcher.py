"""Telemetry aggregators as local processes (``tessera telemetry serve``), for ``tessera
demo --web`` and the tests: the helpers first, then the leader, each serving every task
file given, each logging to its own file, all stopped when the block ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tessera.errors import ConfigError


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"aggregator exited early:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ConfigError(f"aggregator at {url} not ready in 60 s:\n{log.read_text()[-2000:]}")


@contextmanager
def aggregators(tasks: Sequence[Path], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Serve ``tasks`` (task files sharing one set of aggregators, whose URLs the first one
    names, leader first) from one process per aggregator until the block ends, each ready
    (answering ``/health``) before the next starts; ``logs/agg<i>.log`` holds each one's
    output. A process that exits or is not ready in 60 s is a :class:`ConfigError` with
    the end of its log."""
    from tessera.node.telemetry.config import load_task_config

    urls = [a.url for a in load_task_config(tasks[0]).aggregators]
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        for agg in reversed(range(len(urls))):
            log = logs / f"agg{agg}.log"
            args = [sys.executable, "-m", "tessera.cli.telemetry", "serve", "--json"]
            for p in tasks:
                args += ["--config", str(p)]
            args += ["--aggregator", str(agg)]
            with log.open("wb") as fh:
                procs.append(subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env))
            _wait_ready(urls[agg], procs[-1], log)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
