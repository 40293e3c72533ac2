"""``tessera telemetry``: set up a task, run an aggregator, submit reports, collect."""

from __future__ import annotations

import json
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.errors import ConfigError

app = typer.Typer(
    help="Private telemetry (Prio3, Poplar1): aggregators, clients and the collector.",
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The task's TOML file.")]


def _emit(as_json: bool, payload: dict[str, Any]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()


@app.command()
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Empty directory for the task files.")],
    vdaf: Annotated[
        str,
        typer.Option(
            help="Prio3Count, Prio3Sum, Prio3SumVec, Prio3Histogram, "
            "Prio3MultihotCountVec, Prio3Statistics or Poplar1."
        ),
    ] = "Prio3Count",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="VDAF parameter NAME=VALUE (repeatable)."),
    ] = None,
    aggregators: Annotated[int, typer.Option(help="Number of aggregators (>= 2).")] = 2,
    base_port: Annotated[int, typer.Option(help="Port of the leader; helpers follow.")] = 8701,
    min_batch_size: Annotated[int, typer.Option(help="Smallest batch ever released.")] = 100,
    time_precision: Annotated[int, typer.Option(help="Seconds per time bucket.")] = 60,
    dp: Annotated[
        str, typer.Option(help="discrete_laplace, discrete_gaussian or none.")
    ] = "discrete_laplace",
    epsilon: Annotated[str, typer.Option(help="ε per release (discrete_laplace).")] = "1",
    rho: Annotated[str, typer.Option(help="ρ-zCDP per release (discrete_gaussian).")] = "1/2",
    report_expiry_age: Annotated[
        int, typer.Option(help="Seconds after which a report is refused as expired.")
    ] = 7 * 24 * 3600,
    task_end: Annotated[
        int | None,
        typer.Option(help="Unix time from which reports are refused (default: in a year)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Host name in the aggregators' URLs.")] = "127.0.0.1",
    as_json: JsonOpt = False,
) -> None:
    """Create a task description (task.toml); it holds no key: each party makes its own."""
    from tessera.node.telemetry.config import write_task
    from tessera.protocol.telemetry.task import DpSpec, VdafSpec

    try:
        params: dict[str, int] = {}
        for item in param or []:
            name, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
            params[name.strip()] = int(value)
        spec = VdafSpec.of(vdaf, **params)
        dp_spec = DpSpec(
            dp,
            epsilon=Fraction(epsilon) if dp == "discrete_laplace" else None,
            rho=Fraction(rho) if dp == "discrete_gaussian" else None,
        )
        path = write_task(
            directory,
            spec,
            aggregator_ports=[base_port + i for i in range(aggregators)],
            min_batch_size=min_batch_size,
            time_precision=time_precision,
            dp=dp_spec,
            host=host,
            report_expiry_age=report_expiry_age,
            task_end=task_end,
        )
    except ValueError as exc:
        fail(ConfigError(str(exc)))
    _emit(as_json, {"config": str(path)})
    if not as_json:
        Console().print(f"wrote {path}")


@app.command()
@handle_errors
def keygen(
    config: ConfigOpt,
    aggregator: Annotated[
        int | None, typer.Option(help="Make aggregator N's keys (serve does it too).")
    ] = None,
    collector: Annotated[
        bool, typer.Option("--collector", help="Make the collector's keys.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make this party's own keys in its state_dir and publish its public configuration."""
    from tessera.node.telemetry.config import load_task_config

    cfg = load_task_config(config)
    if collector == (aggregator is not None):
        raise ConfigError("give exactly one of --aggregator N and --collector")
    if aggregator is not None and not 0 <= aggregator < len(cfg.aggregators):
        raise ConfigError(f"{cfg.path}: no aggregator #{aggregator}")
    party = cfg.collector if aggregator is None else cfg.aggregators[aggregator]
    keys = party.keys(cfg.task_id)
    payload = {"public_config": str(party.public_config_file), **keys.public.to_json()}
    _emit(as_json, payload)
    if not as_json:
        Console().print(f"{party.name}: published {party.public_config_file}")


@app.command()
@handle_errors
def serve(
    config: Annotated[
        list[Path], typer.Option("--config", "-c", help="Task TOML file (repeatable).")
    ],
    aggregator: Annotated[int, typer.Option(help="Which aggregator to run (0 = leader).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run aggregator N of the given tasks until interrupted (listens on 127.0.0.1)."""
    from tessera.node.telemetry.aggregator import AggregatorNode
    from tessera.node.telemetry.server import HOST
    from tessera.node.telemetry.server import serve as run

    def ready(node: AggregatorNode, port: int) -> None:
        payload = {
            "status": "ready",
            "aggregator": node.agg_id,
            "role": "leader" if node.is_leader else "helper",
            "listen": f"http://{HOST}:{port}",
            "tasks": [t.hex() for t in node.tasks],
        }
        if as_json:
            _emit(True, payload)
        else:
            _err.print(f"aggregator {node.agg_id} ({payload['role']}) on {payload['listen']}")

    run(config, aggregator, on_ready=ready)


def _checked_measurement(cfg: Any, text: str) -> Any:
    """A measurement the task's VDAF accepts, or a ``ValueError`` naming it and the task's
    parameters (the VDAF shards it with throwaway randomness to check its range)."""
    spec = cfg.vdaf_spec
    try:
        value = spec.parse_measurement(text)
        vdaf = cfg.vdaf()
        zeros = bytes(vdaf.RAND_SIZE)
        vdaf.shard(b"check", spec.encode_measurement(value), bytes(vdaf.NONCE_SIZE), zeros)
    except ValueError as exc:
        params = ", ".join(f"{k}={v}" for k, v in spec.params) or "no parameters"
        raise ValueError(f"measurement {text!r} refused by {spec.kind} ({params}): {exc}") from None
    return value


@app.command()
@handle_errors
def submit(
    config: ConfigOpt,
    measurements: Annotated[
        list[str],
        typer.Argument(help="Measurements: an integer, a JSON list, or a bit string (Poplar1)."),
    ],
    at: Annotated[
        int | None, typer.Option("--time", help="Report time, Unix seconds (default: now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Shard, seal and upload one report per measurement."""
    from tessera.crypto.rng import SystemRng
    from tessera.node.telemetry.client import TelemetryClient
    from tessera.node.telemetry.config import load_task_config

    try:
        cfg = load_task_config(config)
        values = [_checked_measurement(cfg, m) for m in measurements]  # before any upload
        when = int(time.time()) if at is None else at
        with TelemetryClient(cfg) as client:
            outcomes = client.submit(values, when, SystemRng())
    except ValueError as exc:
        fail(exc)
    rows = [{"report_id": o.report_id.hex(), "status": o.status.label} for o in outcomes]
    accepted = sum(1 for o in outcomes if o.status.label == "accepted")
    _emit(as_json, {"task": cfg.task_id_hex, "accepted": accepted, "reports": rows})
    if not as_json:
        table = Table("report id", "status")
        for r in rows:
            table.add_row(r["report_id"], r["status"])
        Console().print(table)
    if accepted != len(outcomes):
        raise typer.Exit(3)


@app.command()
@handle_errors
def collect(
    config: ConfigOpt,
    start: Annotated[int, typer.Option(help="Batch start, Unix seconds (aligned).")],
    duration: Annotated[int, typer.Option(help="Batch length in seconds (aligned).")],
    threshold: Annotated[
        int | None,
        typer.Option(help="Poplar1: report strings counted at least this many times."),
    ] = None,
    prefixes: Annotated[
        str | None, typer.Option(help="Poplar1: count these comma-separated prefixes only.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Release the (noised) aggregate of a batch, or Poplar1's heavy hitters."""
    from tessera.node.telemetry.collector import TelemetryCollector
    from tessera.node.telemetry.config import load_task_config
    from tessera.protocol.telemetry.messages import BatchInterval

    try:
        cfg = load_task_config(config)
        interval = BatchInterval(start, duration)
        with TelemetryCollector(cfg) as collector:
            payload = collector.release(
                interval,
                threshold=threshold,
                prefixes=None if prefixes is None else prefixes.split(","),
            )
    except ValueError as exc:
        fail(exc)
    if as_json:
        _emit(True, payload)
    else:
        Console().print_json(json.dumps(payload))


if __name__ == "__main__":
    app()
