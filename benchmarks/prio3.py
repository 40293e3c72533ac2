"""Prio3 benchmark: shard and preparation time per report, end-to-end throughput.

Reference: the published libprio-rs figures (Rust): Count shard 14 us, Sum (32-bit)
shard 97 us, SumVec (length 1,000) shard 3.6 ms. Target: within 10x of those per
report, and >= 2,000 reports/s end to end for Histogram(100) with 2 aggregators.

End to end runs two real aggregator processes (``tessera telemetry serve``) on the
loopback interface; reports are sharded and sealed beforehand, then uploaded in
concurrent batches, and the clock runs from the first upload to the last outcome.

    python benchmarks/prio3.py            # table
    python benchmarks/prio3.py --json     # one JSON object
    python benchmarks/prio3.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tessera.crypto.rng import SeededRng
from tessera.node.telemetry.client import ReportBuilder, upload_async
from tessera.node.telemetry.config import TaskConfig, load_task_config, write_task
from tessera.node.telemetry.launcher import aggregators
from tessera.protocol.telemetry import DpSpec, Report, ReportStatus, VdafSpec, vdaf_ctx

#: libprio-rs shard times in microseconds (the issue's reference figures).
REFERENCE_SHARD_US = {"Count": 14.0, "Sum": 97.0, "SumVec1000": 3600.0}
TARGET_RPS = {"Histogram100": 2000.0}
#: A report time an hour ago, aligned to the tasks' 60 s precision (reports expire).
T0 = (int(time.time()) - 3600) // 60 * 60


@dataclass(frozen=True)
class Variant:
    name: str
    spec: VdafSpec
    measurement: Callable[[int], Any]
    e2e_reports: int


def _chunk(length: int) -> int:
    """The chunk length the VDAF draft recommends: about sqrt(length)."""
    return max(1, int(length**0.5))


VARIANTS = [
    Variant("Count", VdafSpec.of("Prio3Count"), lambda i: i % 2, 8000),
    Variant("Sum", VdafSpec.of("Prio3Sum", max_measurement=2**32 - 1), lambda i: i * 7919, 4000),
    Variant(
        "Histogram100",
        VdafSpec.of("Prio3Histogram", length=100, chunk_length=10),
        lambda i: i % 100,
        6000,
    ),
    Variant(
        "Histogram1000",
        VdafSpec.of("Prio3Histogram", length=1000, chunk_length=_chunk(1000)),
        lambda i: i % 1000,
        1000,
    ),
    Variant(
        "Histogram10000",
        VdafSpec.of("Prio3Histogram", length=10000, chunk_length=100),
        lambda i: i % 10000,
        150,
    ),
    Variant(
        "SumVec1000",
        VdafSpec.of("Prio3SumVec", length=1000, max_measurement=1, chunk_length=_chunk(1000)),
        lambda i: [(i >> (j % 16)) & 1 for j in range(1000)],
        800,
    ),
]


# -- per-report timings ------------------------------------------------------------------


def _per_report(variant: Variant, n: int) -> tuple[float, float]:
    """Mean shard time and mean per-aggregator preparation time, in microseconds."""
    vdaf: Any = variant.spec.instantiate(2)
    ctx = vdaf_ctx(bytes(32))
    rng = SeededRng(variant.name)
    verify_key = rng.randbytes(32)
    inputs = [(rng.randbytes(16), rng.randbytes(vdaf.RAND_SIZE)) for _ in range(n)]
    # Warm the per-size caches (roots of unity, twiddles) outside the timed region.
    nonce, rand = inputs[0]
    public, shares = vdaf.shard(ctx, variant.measurement(0), nonce, rand)
    vdaf.verify_init(verify_key, ctx, 1, None, nonce, public, shares[1])
    t = time.perf_counter()
    shards = [vdaf.shard(ctx, variant.measurement(i), nonce, rand) for i, (nonce, rand) in
              enumerate(inputs)]  # fmt: skip
    shard_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for (nonce, _), (public, shares) in zip(inputs, shards, strict=True):
        states, vshares = [], []
        for agg in range(2):
            st, vs = vdaf.verify_init(verify_key, ctx, agg, None, nonce, public, shares[agg])
            states.append(st)
            vshares.append(vs)
        msg = vdaf.verifier_shares_to_message(ctx, None, vshares)
        for st in states:
            vdaf.verify_next(ctx, st, msg)
    prep_us = (time.perf_counter() - t) / n / 2 * 1e6
    return shard_us, prep_us


# -- end to end --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _upload(
    config: TaskConfig, reports: Sequence[Report], per_request: int, concurrency: int
) -> float:
    chunks = [reports[i : i + per_request] for i in range(0, len(reports), per_request)]
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600) as http:

        async def one(chunk: Sequence[Report]) -> None:
            async with sem:
                outcomes = await upload_async(http, config, chunk)
            bad = [o for o in outcomes if o.status is not ReportStatus.ACCEPTED]
            if bad:
                raise RuntimeError(f"{len(bad)} reports refused, e.g. {bad[0].status.label}")

        t = time.perf_counter()
        await asyncio.gather(*(one(c) for c in chunks))
        return time.perf_counter() - t


def _throughput(config: TaskConfig, variant: Variant, n: int) -> float:
    builder = ReportBuilder(config)
    rng = SeededRng("e2e" + variant.name)
    reports = [builder.report(variant.measurement(i), T0, rng) for i in range(n)]
    per_request = max(1, min(100, n // 8))
    elapsed = asyncio.run(_upload(config, reports, per_request, concurrency=4))
    return n / elapsed


def run(quick: bool, only: set[str] | None) -> dict[str, dict[str, float]]:
    variants = [v for v in VARIANTS if only is None or v.name in only]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ports = [_free_port(), _free_port()]
        paths = {
            v.name: write_task(
                Path(tmp) / v.name,
                v.spec,
                aggregator_ports=ports,
                min_batch_size=1,
                dp=DpSpec("none"),
            )
            for v in variants
        }
        for v in variants:
            n = 3 if quick and v.name == "Histogram10000" else (20 if quick else 200)
            if v.name in ("Histogram10000", "SumVec1000", "Histogram1000") and not quick:
                n = 20
            shard_us, prep_us = _per_report(v, n)
            results[v.name] = {"shard_us": round(shard_us, 1), "prep_us": round(prep_us, 1)}
        with aggregators(list(paths.values()), Path(tmp)):
            for v in variants:
                n = max(20, v.e2e_reports // 20) if quick else v.e2e_reports
                if quick and v.name == "Histogram10000":
                    n = 8
                cfg = load_task_config(paths[v.name])
                results[v.name]["reports_per_s"] = round(_throughput(cfg, v, n), 1)
    return results


def _table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{'variant':<16}{'shard us':>12}{'ref us':>10}{'ratio':>8}{'prep us':>12}"
        f"{'reports/s':>12}{'target':>9}"
    ]
    for name, r in results.items():
        ref = REFERENCE_SHARD_US.get(name)
        ratio = f"{r['shard_us'] / ref:.1f}x" if ref else "-"
        target = TARGET_RPS.get(name)
        lines.append(
            f"{name:<16}{r['shard_us']:>12.1f}{(f'{ref:.0f}' if ref else '-'):>10}{ratio:>8}"
            f"{r['prep_us']:>12.1f}{r['reports_per_s']:>12.1f}"
            f"{(f'{target:.0f}' if target else '-'):>9}"
        )
    lines.append("ratio = our shard time / libprio-rs shard time (target <= 10x)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--only", help="comma-separated variant names")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    os.environ.setdefault("PYTHONHASHSEED", "0")
    results = run(args.quick, only)
    if args.json:
        print(json.dumps(results))
    else:
        print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
