"""``tessera web``: the web console over a running network's state directory.

It binds to 127.0.0.1 unless ``--host`` says otherwise, and then warns: the console acts
with the analyst's key (unlocked in this process, never sent to the browser), so anyone who
can reach a console bound beyond loopback can ask it to act once it is unlocked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console as RichConsole

from tessera.cli.errors import handle_errors
from tessera.cli.keys import PasswordFileOpt, read_password

_err = RichConsole(stderr=True, highlight=False)


def warn_if_exposed(host: str) -> None:
    from tessera.web.server import is_loopback

    if not is_loopback(host):
        _err.print(
            f"[bold red]WARNING[/bold red]: the console listens on {host}, beyond loopback. "
            "Anyone who reaches it can read the ledger views and, once the key is unlocked, "
            "run and pay for queries with the analyst's key. Use 127.0.0.1 unless the network "
            "in between is yours, and put TLS in front of it."
        )


@handle_errors
def web(
    state_dir: Annotated[
        Path, typer.Option("--dir", help="The running network's state directory.")
    ] = Path("net"),
    host: Annotated[str, typer.Option(help="Address to bind (default: loopback only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    unlock: Annotated[
        bool,
        typer.Option(
            "--unlock/--locked",
            help="Unlock the analyst's key file now (password from --password-file, "
            "$TESSERA_KEY_PASSWORD or a prompt); else the page asks for it.",
        ),
    ] = False,
    password_file: PasswordFileOpt = None,
    validation: Annotated[
        Path | None,
        typer.Option(
            "--validation",
            help="The analyst's own validation table (CSV): a training started from the "
            "page is scored on it after every round (loss, accuracy).",
        ),
    ] = None,
    telemetry: Annotated[
        list[Path] | None,
        typer.Option(
            "--telemetry",
            help="A telemetry task file (tessera telemetry init) whose collector keys are on "
            "this machine: the page shows its aggregators and collects (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve the web console (analyst, ledger explorer, market, providers, training,
    telemetry) over a running network."""
    from tessera.web.console import Console
    from tessera.web.server import make_server

    password = read_password(password_file, confirm=False) if unlock or password_file else None
    console = Console(
        state_dir, password=password, validation=validation, telemetry=telemetry or ()
    )
    warn_if_exposed(host)
    server = make_server(console, host, port)
    shown = f"[{host}]" if ":" in host else host
    _err.print(f"Tessera console on http://{shown}:{port}/ (Ctrl-C stops it)")
    try:
        server.run()
    finally:
        console.close()
