"""The ``tessera`` command line."""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.keys import app as keys_app
from tessera.cli.ledger import app as ledger_app
from tessera.cli.market import app as market_app
from tessera.cli.network import model_app, network_app, node_app
from tessera.cli.network import query as query_command
from tessera.cli.network import verify as verify_command
from tessera.cli.telemetry import app as telemetry_app
from tessera.errors import TesseraError, exit_code

app = typer.Typer(
    help="Tessera: statistics over data that never leaves its owners.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(telemetry_app, name="telemetry", help="Telemetry mode: Prio3 / Poplar1 service.")
app.add_typer(ledger_app, name="ledger", help="The ledger: serve the embedded chain, deploy.")
app.add_typer(market_app, name="market", help="The data market: catalog, purchases, ratings.")
app.add_typer(keys_app, name="keys", help="Node key files: create one, show its address.")
app.add_typer(node_app, name="node", help="Run one role process (provider, node, verifier).")
app.add_typer(network_app, name="network", help="A local network as processes: up, down, status.")
app.add_typer(model_app, name="model", help="Models over the network: regressions, survival.")
app.command("query")(query_command)
app.command("verify")(verify_command)
_err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Tessera command line."""


def _fail(exc: TesseraError) -> None:
    _err.print(f"[red]error:[/red] {type(exc).__name__}: {exc}")
    raise typer.Exit(exit_code(exc))


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed: Annotated[
        int | None, typer.Option(help="Seed for reproducible randomness (default: OS randomness).")
    ] = None,
    cheat: Annotated[
        bool, typer.Option(help="Make computing node 1 corrupt its key-switch share.")
    ] = False,
) -> None:
    """Run a committee of 3 nodes (threshold 2) and 4 providers: an encrypted, verified sum."""
    from tessera.crypto.dkg import run_dkg
    from tessera.crypto.rng import Rng, SeededRng, SystemRng
    from tessera.node.dlog_cache import discrete_log
    from tessera.protocol.aggregation import (
        NodeKey,
        SlotSpec,
        VectorSpec,
        run_aggregation,
        verify_record,
    )

    rng: Rng = SeededRng(seed) if seed is not None else SystemRng()
    out = Console(stderr=as_json)
    try:
        t0 = time.perf_counter()
        out.print("[bold]1.[/bold] distributed key generation: 3 computing nodes, threshold 2")
        keys, transcript = run_dkg(3, 2, rng)
        t_dkg = time.perf_counter() - t0
        names = ["hospital-a", "hospital-b", "clinic-c", "lab-d"]
        values = {n: rng.below(1_000_001) for n in names}
        out.print(
            "[bold]2.[/bold] 4 providers encrypt a private value in [0, 1000000] with range proofs"
        )
        dlog = discrete_log(max_abs=1 << 32, bound=1 << 16)
        query_id = secrets.token_bytes(16) if seed is None else rng.randbytes(16)
        k1 = keys[1]
        t1 = time.perf_counter()
        record, decoded = run_aggregation(
            query_id,
            VectorSpec((SlotSpec(0, 1_000_000),)),
            {name: [v] for name, v in values.items()},
            k1.public_key,
            k1.public_shares,
            [NodeKey(i, k.secret_share) for i, k in sorted(keys.items())],
            k1.threshold,
            dlog,
            rng,
            cheating_nodes=(1,) if cheat else (),
        )
        result = decoded[0]
        t_query = time.perf_counter() - t1
        out.print(
            "[bold]3.[/bold] committee aggregates and key-switches to the analyst; analyst decrypts"
        )
        t2 = time.perf_counter()
        verdict = verify_record(record)
        t_verify = time.perf_counter() - t2
    except TesseraError as exc:
        _fail(exc)
        return
    truth = sum(values.values())
    report: dict[str, Any] = {
        "result": result,
        "truth": truth,
        "verified": verdict.ok,
        "proofs_checked": verdict.checked_proofs,
        "failures": list(verdict.failures),
        "excluded_nodes": record.excluded_nodes,
        "cheaters_proven": list(verdict.cheaters),
        "committee": {"n": 3, "t": 2, "qualified": list(transcript.qualified)},
        "query_id": query_id.hex(),
        "seconds": {
            "dkg": round(t_dkg, 4),
            "query": round(t_query, 4),
            "verify": round(t_verify, 4),
        },
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        table = Table(title="Encrypted sum over 4 providers")
        table.add_column("result")
        table.add_column("plaintext truth")
        table.add_column("verified")
        table.add_column("proofs checked")
        table.add_column("excluded nodes")
        table.add_row(
            str(result),
            str(truth),
            "[green]yes[/green]" if verdict.ok else "[red]NO[/red]",
            str(verdict.checked_proofs),
            ", ".join(map(str, record.excluded_nodes)) or "none",
        )
        out.print(table)
        for f in verdict.failures:
            out.print(f"[red]verifier:[/red] {f}")
    if not verdict.ok or result != truth:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover - python -m tessera.cli.main
    main()
