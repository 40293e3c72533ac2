"""The console's telemetry view: the tasks of a telemetry deployment (``tessera telemetry
init``'s task files), their aggregators and counts, and collections made from the page.

The console acts as each task's collector, with the collector's own keys from the task
file's ``[collector] state_dir`` on this machine; the browser gets the released aggregate,
never a key. A collection is the one :meth:`TelemetryCollector.release` that ``tessera
telemetry collect`` makes: the same checks, the same noise, the same privacy rules at the
leader (a batch released once, never smaller than the task's minimum).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tessera.errors import ConfigError, NotFound, TesseraError
from tessera.node.telemetry.config import TaskConfig, load_task_config
from tessera.protocol.telemetry.task import DpSpec

#: collections kept in the page's history (newest last)
MAX_COLLECTIONS = 64


class TelemetryTasks:
    """The task files the console was started with (``tessera web --telemetry``)."""

    def __init__(self, paths: Sequence[Path] = ()) -> None:
        self.tasks: dict[str, tuple[str, TaskConfig]] = {}
        for path in paths:
            cfg = load_task_config(path)
            name = Path(path).parent.name or Path(path).stem
            if cfg.task_id_hex in self.tasks:
                raise ConfigError(f"{path}: task {cfg.task_id_hex} is given twice")
            self.tasks[cfg.task_id_hex] = (name, cfg)
        self.collections: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def task(self, task_hex: str) -> TaskConfig:
        found = self.tasks.get(task_hex.lower())
        if found is None:
            raise NotFound(f"this console has no telemetry task {task_hex}")
        return found[1]

    def overview(self) -> dict[str, Any]:
        """Every task: its VDAF and rules, each aggregator's health, the leader's counts
        (or why they could not be read), and the collections made here."""
        from tessera.node.telemetry.collector import TelemetryCollector

        rows = []
        for task_hex, (name, cfg) in self.tasks.items():
            aggregators = [{"url": a.url, "up": _up(a.url)} for a in cfg.aggregators]
            counts: dict[str, int] | None = None
            unread = None
            try:
                with TelemetryCollector(cfg, timeout=10.0) as collector:
                    counts = collector.stats()
            except TesseraError as exc:
                unread = f"{type(exc).__name__}: {exc}"
            spec = cfg.vdaf_spec
            rows.append(
                {
                    "task": task_hex,
                    "name": name,
                    "vdaf": spec.kind,
                    "params": dict(spec.params),
                    "poplar1": spec.is_poplar1,
                    "min_batch_size": cfg.min_batch_size,
                    "time_precision": cfg.time_precision,
                    "dp": _dp_text(cfg.dp),
                    "aggregators": aggregators,
                    "counts": counts,
                    "counts_error": unread,
                    "collections": [c for c in self.collections if c["task"] == task_hex],
                }
            )
        message = None
        if not rows:
            message = (
                "this console reads no telemetry task: start it with --telemetry TASK.toml "
                "(a task file of tessera telemetry init, whose collector keys are on this "
                "machine) to see its aggregators and collect from here"
            )
        return {"tasks": rows, "message": message, "now": int(time.time())}

    def collect(
        self,
        task_hex: str,
        start: int,
        duration: int,
        *,
        threshold: int | None = None,
        prefixes: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Release a batch of ``task_hex`` (``[start, start + duration)``, aligned to the
        task's time precision), as the collector: the release and a chart of it."""
        from tessera.node.telemetry.collector import TelemetryCollector
        from tessera.protocol.telemetry.messages import BatchInterval

        cfg = self.task(task_hex)
        interval = BatchInterval(start, duration)
        with self._lock, TelemetryCollector(cfg) as collector:
            out = collector.release(
                interval,
                threshold=threshold,
                prefixes=None if prefixes is None else list(prefixes),
            )
        out["chart"] = chart_of_release(out)
        out["collected_at"] = int(time.time())
        with self._lock:
            self.collections.append(out)
            del self.collections[:-MAX_COLLECTIONS]
        return out


def _dp_text(dp: DpSpec) -> str:
    if dp.mechanism == "discrete_laplace":
        return f"discrete Laplace, ε = {dp.epsilon} per release"
    if dp.mechanism == "discrete_gaussian":
        return f"discrete Gaussian, ρ = {dp.rho} per release (zCDP)"
    return "none: exact aggregates"


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def chart_of_release(out: Mapping[str, Any]) -> dict[str, Any] | None:
    """Bars of a release: heavy hitters or prefix counts by string, a vector by index;
    ``None`` for a single number or a description (shown as a table)."""
    if "heavy_hitters" in out:
        values = [_bits(k, v) for k, v in sorted(out["heavy_hitters"].items())]
        return {"type": "bars", "title": f"heavy hitters (count ≥ {out['threshold']})",
                "values": values}  # fmt: skip
    if "counts" in out:
        values = [_bits(k, v) for k, v in sorted(out["counts"].items())]
        return {"type": "bars", "title": "prefix counts", "values": values}
    result = out.get("result")
    if isinstance(result, list):
        values = [{"key": str(i), "label": str(i), "count": v} for i, v in enumerate(result)]
        return {"type": "bars", "title": f"{out['vdaf']} by index", "values": values}
    return None


def _bits(key: str, count: int) -> dict[str, Any]:
    """A Poplar1 string (bits, most significant first) and its count, labelled with the
    integer it spells."""
    return {"key": key, "label": f"{key} = {int(key, 2)}", "count": count}
