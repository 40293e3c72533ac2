"""``tessera ledger``: serve the embedded chain over JSON-RPC; deploy the contracts anywhere.

Exit codes (shared with ``tessera market``, from :data:`tessera.errors.EXIT_CODES`)::

    0   done
    2   bad arguments (a non-loopback --host, a malformed value, an account the node
        does not unlock)
    17  the ledger refused: a revert, printed with the contract's reason
    18  the chain cannot be reached, or the port cannot be bound
    19  the deployment record is missing, malformed, or not on this chain
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.errors import ConfigError, LedgerError, TesseraError, TransportError

if TYPE_CHECKING:  # web3 is imported by the commands that need it: `tessera --help` stays fast
    from tessera.ledger import Deployment, LedgerClient, RpcChain

app = typer.Typer(
    help="The ledger: serve the embedded chain over JSON-RPC, deploy the contracts.",
    no_args_is_help=True,
    add_completion=False,
)

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_DEPLOYMENT = Path("tessera-deployment.json")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON value on stdout.")]
RpcOpt = Annotated[
    str,
    typer.Option(
        "--rpc", envvar="TESSERA_LEDGER_RPC", help="JSON-RPC endpoint of the chain.", metavar="URL"
    ),
]
DeploymentOpt = Annotated[
    Path,
    typer.Option(
        "--deployment",
        envvar="TESSERA_DEPLOYMENT",
        help="The deployment record written by `tessera ledger deploy` or `serve --deploy`.",
    ),
]
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account",
        envvar="TESSERA_ACCOUNT",
        help="An account the node unlocks (default: TESSERA_ACCOUNT).",
        metavar="ADDRESS",
    ),
]


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True, slots=True)
class Connection:
    """A reachable chain, the deployment on it, and (optionally) the acting account."""

    chain: RpcChain
    deployment: Deployment
    account: str | None

    def client(self, account: str | None = None) -> LedgerClient:
        from tessera.ledger import LedgerClient

        who = account or self.account or self.deployment.admin
        return LedgerClient(self.chain, self.deployment, who)


def connect_chain(rpc: str) -> RpcChain:
    from tessera.ledger import RpcChain

    try:
        return RpcChain(rpc)
    except LedgerError as exc:
        raise TransportError(f"cannot reach the chain at {rpc}") from exc


def unlocked_account(chain: RpcChain, account: str) -> str:
    from web3 import Web3

    if not Web3.is_address(account):
        raise ValueError(f"{account!r} is not an Ethereum address")
    address = Web3.to_checksum_address(account)
    if address not in chain.accounts:
        raise ValueError(f"the node does not unlock {address}")
    return str(address)


def connect(rpc: str, deployment: Path, account: str | None) -> Connection:
    """Reach ``rpc``, load the deployment record and check it describes this chain."""
    from web3 import Web3

    from tessera.ledger import Deployment

    if not deployment.is_file():
        raise ConfigError(f"no deployment record at {deployment} (run `tessera ledger deploy`)")
    try:
        record = Deployment.load(deployment)
    except LedgerError as exc:
        raise ConfigError(f"{deployment}: {exc}") from exc
    chain = connect_chain(rpc)
    try:
        chain_id = int(chain.w3.eth.chain_id)
        code = bytes(chain.w3.eth.get_code(Web3.to_checksum_address(record.market)))
    except Exception as exc:
        raise TransportError(f"the chain at {rpc} does not answer: {exc}") from exc
    if chain_id != record.chain_id or not code:
        raise ConfigError(
            f"{deployment} describes contracts on chain {record.chain_id}, "
            f"not on the chain at {rpc} (chain id {chain_id})"
        )
    who = unlocked_account(chain, account) if account else None
    return Connection(chain, record, who)


# -- commands -------------------------------------------------------------------------------


@app.command()
@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port).")] = 8545,
    accounts: Annotated[int, typer.Option(help="Funded, unlocked accounts.")] = 20,
    deploy_to: Annotated[
        Path | None,
        typer.Option(
            "--deploy",
            help="Deploy the contracts at start and write the deployment record here.",
            metavar="PATH",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Journal every transaction here and replay it at start: the chain survives "
            "a restart (snapshots are then off).",
            metavar="PATH",
        ),
    ] = None,
) -> None:
    """Serve an in-process py-evm chain over Ethereum JSON-RPC until SIGINT/SIGTERM."""
    from tessera.ledger import EmbeddedChain, deploy
    from tessera.ledger.rpc_server import RpcServer, check_loopback

    try:
        check_loopback(host)
        if not 0 <= port <= 65_535:
            raise ValueError(f"port {port} is out of range")
        chain = EmbeddedChain(accounts=accounts)
    except ValueError as exc:
        fail(exc)
    try:
        server = RpcServer(chain, host, port, journal=state)
    except ValueError as exc:
        fail(ConfigError(f"cannot restore the chain from {state}: {exc}"))
    except OSError as exc:
        fail(TransportError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"))
    note = ""
    if deploy_to is not None:
        try:
            deploy(chain).save(deploy_to)
        except (TesseraError, OSError) as exc:
            server.stop()
            fail(exc if isinstance(exc, TesseraError) else ConfigError(str(exc)))
        note = f", contracts in {deploy_to}"

    def ready(url: str) -> None:
        chain_id = int(chain.w3.eth.chain_id)
        print(f"tessera ledger: serving {url} (chain id {chain_id}, {accounts} accounts{note})")
        sys.stdout.flush()

    server.run(on_ready=ready)


@app.command("deploy")
@handle_errors
def deploy_command(
    rpc: RpcOpt = DEFAULT_RPC,
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the deployment record.")
    ] = DEFAULT_DEPLOYMENT,
    verifiers_per_query: Annotated[
        int, typer.Option(help="Verifiers drawn per query (a majority of them settles it).")
    ] = 3,
    min_stake: Annotated[
        int, typer.Option(help="Credits a computing node or verifier must stake.")
    ] = 1_000,
    slash_amount: Annotated[
        int,
        typer.Option(
            help="Credits a proven cheater loses; a committee member that timed out "
            "(no work committed once the aggregate was locked) loses a tenth of it."
        ),
    ] = 1_000,
    timeout_blocks: Annotated[
        int, typer.Option(help="Blocks a query has for its work and verdicts (its deadline).")
    ] = 1_000,
    lock_fee: Annotated[
        int,
        typer.Option(
            help="Credits a query pays each committee member, never refunded: what locking "
            "the members' stake costs its submitter."
        ),
    ] = 10,
    governance_delay: Annotated[
        int, typer.Option(help="Seconds every admin action waits in the timelock.")
    ] = 0,
    account: Annotated[
        str | None,
        typer.Option(help="Admin account (default: the node's first).", metavar="ADDRESS"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the token, registry, catalog, market and model registry to any JSON-RPC chain
    and record where."""
    from tessera.ledger import deploy

    try:
        if not 1 <= verifiers_per_query <= 16 or timeout_blocks < 1:
            raise ValueError("--verifiers-per-query must be 1 to 16 and --timeout-blocks >= 1")
        if min(min_stake, slash_amount, lock_fee, governance_delay) < 0:
            raise ValueError("the amounts and the governance delay must be non-negative")
        chain = connect_chain(rpc)
        admin = unlocked_account(chain, account) if account else None
        deployment = deploy(
            chain,
            admin,
            verifiers_per_query=verifiers_per_query,
            min_stake=min_stake,
            slash_amount=slash_amount,
            timeout_blocks=timeout_blocks,
            lock_fee=lock_fee,
            governance_delay=governance_delay,
        )
        deployment.save(out)
    except OSError as exc:
        fail(ConfigError(f"cannot write {out}: {exc.strerror or exc}"))
    except ValueError as exc:
        fail(exc)
    if as_json:
        emit_json({**asdict(deployment), "out": str(out), "rpc": rpc})
        return
    table = Table(title=f"Tessera contracts on chain {deployment.chain_id}")
    table.add_column("contract")
    table.add_column("address")
    for name in ("token", "registry", "catalog", "market", "governance", "model_registry"):
        table.add_row(name, getattr(deployment, name))
    table.add_row("admin", deployment.admin)
    Console().print(table)
    Console().print(f"deployment record written to {out}")
