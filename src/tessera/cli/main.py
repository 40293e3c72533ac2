"""The ``tessera`` command line."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.errors import handle_errors
from tessera.cli.keys import app as keys_app
from tessera.cli.ledger import app as ledger_app
from tessera.cli.market import app as market_app
from tessera.cli.models import model_list as _model_commands  # noqa: F401 (model list|show|pull)
from tessera.cli.network import model_app, network_app, node_app
from tessera.cli.network import query as query_command
from tessera.cli.network import verify as verify_command
from tessera.cli.telemetry import app as telemetry_app
from tessera.cli.train import train as train_command
from tessera.cli.web import web as web_command

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
app.command("train")(train_command)
app.command("web")(web_command)


@app.callback()
def _root() -> None:
    """Tessera command line."""


@app.command()
@handle_errors
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    cheat: Annotated[
        bool, typer.Option(help="Make computing node 1 corrupt its key-switch shares.")
    ] = False,
    state_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Keep the network's files here (default: a temporary dir)."),
    ] = None,
    web: Annotated[
        bool, typer.Option("--web", help="Start the network, then serve the web console on it.")
    ] = False,
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The console's port (with --web).")
    ] = 8765,
) -> None:
    """Start a network as real processes (chain, 3 nodes after a live DKG, 4 providers, a
    verifier), run statistics, a regression, a survival curve and a market purchase, and
    stop it."""
    from tessera.cli.demo import main as demo_main

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    raise typer.Exit(demo_main(as_json, cheat, state_dir, web=web, port=port))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover - python -m tessera.cli.main
    main()
