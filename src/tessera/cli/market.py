"""``tessera market``: browse the catalog, buy queries, rate datasets, read market statistics.

Every command talks to the chain at ``--rpc`` (default ``$TESSERA_LEDGER_RPC``,
else ``http://127.0.0.1:8545``) through the deployment record ``--deployment``
(default ``$TESSERA_DEPLOYMENT``, else ``./tessera-deployment.json``); ``buy``
and ``rate`` act as ``--account`` (default ``$TESSERA_ACCOUNT``), an account
the node unlocks. ``--json`` prints one JSON object or array on stdout;
otherwise a table. Examples::

    tessera market search health
    tessera market buy 0 1 --operations count,mean --epsilon 0.5 --account 0xAb...
    tessera market rate 0x3f...9c 0 5 --account 0xAb...

Exit codes (one line on stderr says why)::

    0   done
    2   bad arguments: an unknown operation, epsilon <= 0, delta outside (0, 1),
        a malformed query id or address, no --account for buy/rate, an account
        the node does not unlock
    17  the ledger refused (a revert): "the ledger refused: privacy budget exceeded"
    18  the chain cannot be reached
    19  the deployment record is missing, malformed, or not on this chain
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.cli.ledger import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_RPC,
    AccountOpt,
    Connection,
    DeploymentOpt,
    JsonOpt,
    RpcOpt,
    connect,
    emit_json,
)

if TYPE_CHECKING:
    from tessera.ledger import Dataset, LedgerClient
    from tessera.ledger.client import QueryKind

app = typer.Typer(
    help="The data market: catalog, purchases of queries and training, ratings, statistics.",
    no_args_is_help=True,
    add_completion=False,
)

#: δ of a purchase when none is given (the engine's default, LocalNetwork.DEFAULT_DELTA).
DEFAULT_DELTA = 1e-6


def _open(rpc: str, deployment: Path, account: str | None) -> Connection:
    try:
        return connect(rpc, deployment, account)
    except ValueError as exc:
        fail(exc)


def _dataset_json(ds: Dataset) -> dict[str, Any]:
    return {
        "dataset_id": ds.dataset_id,
        "provider": ds.provider,
        "schema_hash": "0x" + ds.schema_hash.hex(),
        "bounds": {name: [lo, hi] for name, (lo, hi) in ds.bounds.items()},
        "tags": list(ds.tags),
        "operations": sorted(ds.operations),
        "min_cohort": ds.min_cohort,
        "budget_cap": ds.budget_cap,
        "budget_spent": ds.budget_spent,
        "budget_remaining": ds.budget_remaining,
        "price_per_query": ds.price_per_query,
        "price_per_training": ds.price_per_training,
        "node_share_bps": ds.node_share_bps,
        "allow_exact": ds.allow_exact,
        "active": ds.active,
        "queries": ds.queries,
        "revenue": ds.revenue,
        "buyers": ds.buyers,
        "rating": ds.rating,
        "rating_count": ds.rating_count,
    }


def _datasets_table(title: str, datasets: list[Dataset]) -> Table:
    table = Table(title=title)
    for column in ("id", "tags", "operations", "price (query / training)", "budget left (µρ)"):
        table.add_column(column)
    table.add_column("rating")
    table.add_column("queries", justify="right")
    table.add_column("provider")
    for ds in datasets:
        table.add_row(
            str(ds.dataset_id) + ("" if ds.active else " (delisted)"),
            ", ".join(ds.tags),
            ", ".join(sorted(ds.operations)),
            f"{ds.price_per_query} / {ds.price_per_training}",
            f"{ds.budget_remaining:,} of {ds.budget_cap:,}",
            "-" if ds.rating is None else f"{ds.rating:.1f} ({ds.rating_count})",
            str(ds.queries),
            ds.provider,
        )
    return table


def _show_datasets(as_json: bool, title: str, datasets: list[Dataset]) -> None:
    if as_json:
        emit_json([_dataset_json(ds) for ds in datasets])
    else:
        Console().print(_datasets_table(title, datasets))


def _acting(conn: Connection, command: str) -> LedgerClient:
    if conn.account is None:
        fail(ValueError(f"`{command}` acts as an account: pass --account or set TESSERA_ACCOUNT"))
    return conn.client()


@app.command("list")
@handle_errors
def list_datasets(
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    include_delisted: Annotated[
        bool, typer.Option("--all", help="Include delisted datasets.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every listed dataset with its policy, price, remaining budget and rating."""
    conn = _open(rpc, deployment, account)
    client = conn.client()
    datasets = [client.dataset(i) for i in range(client.dataset_count())]
    shown = [ds for ds in datasets if ds.active or include_delisted]
    _show_datasets(as_json, "Datasets", shown)


@app.command()
@handle_errors
def search(
    tag: Annotated[str, typer.Argument(help="A search tag (1 to 32 bytes).")],
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The listed datasets carrying TAG."""
    conn = _open(rpc, deployment, account)
    try:
        client = conn.client()
        datasets = [client.dataset(i) for i in client.search(tag)]
    except ValueError as exc:
        fail(exc)
    _show_datasets(as_json, f"Datasets tagged {tag!r}", datasets)


@app.command()
@handle_errors
def show(
    dataset_id: Annotated[int, typer.Argument(help="The dataset's id.", min=0)],
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One dataset in full: policy, public bounds, budget, price, revenue, rating."""
    conn = _open(rpc, deployment, account)
    ds = conn.client().dataset(dataset_id)
    record = _dataset_json(ds)
    if as_json:
        emit_json(record)
        return
    table = Table(title=f"Dataset {dataset_id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in record.items():
        if isinstance(value, list | dict):
            value = json.dumps(value)
        table.add_row(key, str(value))
    Console().print(table)


def purchase_id(purchase: dict[str, Any]) -> bytes:
    """The ticket hash of a purchase: SHA-256 of its canonical JSON (which holds a nonce);
    the query id is keccak256(analyst ‖ this hash), as the market binds it."""
    canonical = json.dumps(purchase, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


@app.command()
@handle_errors
def buy(
    dataset_ids: Annotated[list[int], typer.Argument(help="Dataset ids to query.", min=0)],
    operations: Annotated[
        str, typer.Option(help="Comma-separated operations, e.g. count,mean.")
    ] = "count",
    epsilon: Annotated[float, typer.Option(help="The query's ε (spent on every dataset).")] = 1.0,
    delta: Annotated[float, typer.Option(help="The query's δ.")] = DEFAULT_DELTA,
    training: Annotated[
        bool, typer.Option("--training", help="Buy a training run, not a query.")
    ] = False,
    committee: Annotated[int, typer.Option(help="Committee that computes it.", min=0)] = 0,
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a query purchase on-chain: the budget is charged and the price escrowed."""
    from tessera.dp import eps_to_rho
    from tessera.ledger import operations_mask, rho_to_micro

    try:
        ops = sorted({op.strip() for op in operations.split(",") if op.strip()})
        if not ops:
            raise ValueError("--operations names at least one operation")
        operations_mask(ops)
        rho = float(eps_to_rho(epsilon, delta))
        cost = rho_to_micro(rho)
    except ValueError as exc:
        fail(exc)
    conn = _open(rpc, deployment, account)
    analyst = _acting(conn, "buy")
    kind: QueryKind = "training" if training else "query"
    datasets = sorted(set(dataset_ids))
    purchase: dict[str, Any] = {
        "analyst": analyst.account,
        "chain_id": conn.deployment.chain_id,
        "market": conn.deployment.market,
        "datasets": datasets,
        "operations": ops,
        "epsilon": epsilon,
        "delta": delta,
        "kind": kind,
        "committee": committee,
        "nonce": secrets.token_hex(16),
    }
    ticket_hash = purchase_id(purchase)
    price = analyst.quote(datasets, kind)
    submitted = analyst.submit_query(ticket_hash, datasets, committee, cost, ops, kind)
    tx = submitted.tx
    qid_hex = "0x" + submitted.query_id.hex()
    report = {
        "query_id": qid_hex,
        "ticket_hash": "0x" + ticket_hash.hex(),
        "price": price,
        "lock_fee": analyst.query(submitted.query_id).fee,
        "privacy_cost": cost,
        "rho": rho,
        "tx_hash": tx.tx_hash,
        "block": tx.block,
        "purchase": purchase,
    }
    if as_json:
        emit_json(report)
        return
    table = Table(title="Query purchased", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("query id", qid_hex)
    table.add_row("price", f"{price} credits (escrowed)")
    table.add_row("lock fee", f"{report['lock_fee']} credits (paid to the committee)")
    table.add_row("privacy cost", f"{cost:,} µρ (ε={epsilon}, δ={delta}) on each dataset")
    table.add_row("datasets", ", ".join(map(str, datasets)))
    table.add_row("tx", tx.tx_hash)
    Console().print(table)


@app.command()
@handle_errors
def rate(
    query_id: Annotated[
        str, typer.Argument(help="The passed or completed query (0x + 64 hex digits).")
    ],
    dataset_id: Annotated[int, typer.Argument(help="A dataset the query used.", min=0)],
    stars: Annotated[int, typer.Argument(help="1 to 5 stars.", min=1, max=5)],
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rate a dataset used by one of your passed queries."""
    from tessera.ledger.client import query_id_bytes

    try:
        qid = query_id_bytes(query_id)
    except ValueError as exc:
        fail(exc)
    conn = _open(rpc, deployment, account)
    analyst = _acting(conn, "rate")
    tx = analyst.rate(qid, dataset_id, stars)
    ds = analyst.dataset(dataset_id)
    report = {
        "query_id": "0x" + qid.hex(),
        "dataset_id": dataset_id,
        "stars": stars,
        "rating": ds.rating,
        "rating_count": ds.rating_count,
        "tx_hash": tx.tx_hash,
    }
    if as_json:
        emit_json(report)
    else:
        Console().print(
            f"rated dataset {dataset_id} {stars}★ — now {ds.rating:.2f} over "
            f"{ds.rating_count} rating(s); tx {tx.tx_hash}"
        )


@app.command()
@handle_errors
def expire(
    query_id: Annotated[str, typer.Argument(help="An open query past its deadline.")],
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Settle a query past its deadline without a verdict majority (anyone may): the
    workers are paid if its work is on the trail, else what was not used is refunded."""
    from tessera.ledger.client import query_id_bytes

    try:
        qid = query_id_bytes(query_id)
    except ValueError as exc:
        fail(exc)
    conn = _open(rpc, deployment, account)
    caller = _acting(conn, "expire")
    tx = caller.expire(qid)
    q = caller.query(qid)
    report = {"query_id": "0x" + qid.hex(), "status": q.status, "tx_hash": tx.tx_hash}
    if as_json:
        emit_json(report)
    else:
        Console().print(f"query {report['query_id']}: {q.status}; tx {tx.tx_hash}")


@app.command()
@handle_errors
def owed(
    address: Annotated[str | None, typer.Argument(help="The account (default: --account).")] = None,
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Credits settlements owe an account (its cuts, node shares, refunds), not withdrawn."""
    from web3 import Web3

    who = address or account
    if not who:
        fail(ValueError("owed needs an address or --account (or $TESSERA_ACCOUNT)"))
    if not Web3.is_address(who):
        fail(ValueError(f"not an address: {who!r}"))
    conn = _open(rpc, deployment, None)
    amount = conn.client().owed(who)
    report = {"account": Web3.to_checksum_address(who), "owed": amount}
    if as_json:
        emit_json(report)
    else:
        Console().print(f"{report['account']} is owed {amount} credits")


@app.command()
@handle_errors
def withdraw(
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take every credit settlements owe --account (pull payments). Refused (exit 17,
    "nothing owed to this account") when nothing is owed."""
    conn = _open(rpc, deployment, account)
    caller = _acting(conn, "withdraw")
    paid = caller.withdraw()
    report = {
        "account": caller.account,
        "amount": paid.amount,
        "balance": caller.balance(),
        "tx_hash": paid.tx.tx_hash,
    }
    if as_json:
        emit_json(report)
    else:
        Console().print(
            f"withdrew {paid.amount} credits to {caller.account} (balance {report['balance']}); "
            f"tx {paid.tx.tx_hash}"
        )


@app.command()
@handle_errors
def stats(
    top: Annotated[int, typer.Option(help="How many top datasets.", min=1, max=16)] = 5,
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    account: AccountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Market statistics: volume, queries, escrow, and the top datasets by revenue."""
    conn = _open(rpc, deployment, account)
    client = conn.client()
    s = client.stats(top)
    tops = [client.dataset(i) for i in s.top_datasets]
    report = {
        "volume": s.volume,
        "settled_queries": s.settled_queries,
        "submitted_queries": s.submitted_queries,
        "escrowed": s.escrowed,
        "datasets": s.datasets,
        "top_datasets": [
            {
                "dataset_id": ds.dataset_id,
                "revenue": ds.revenue,
                "queries": ds.queries,
                "tags": list(ds.tags),
                "rating": ds.rating,
            }
            for ds in tops
        ],
    }
    if as_json:
        emit_json(report)
        return
    summary = Table(title="Market", show_header=False)
    summary.add_column("")
    summary.add_column("", justify="right")
    for key in ("volume", "settled_queries", "submitted_queries", "escrowed", "datasets"):
        summary.add_row(key.replace("_", " "), f"{report[key]:,}")
    console = Console()
    console.print(summary)
    board = Table(title="Top datasets by revenue")
    for column in ("id", "revenue", "queries", "tags", "rating"):
        board.add_column(column)
    for ds in tops:
        board.add_row(
            str(ds.dataset_id),
            f"{ds.revenue:,}",
            str(ds.queries),
            ", ".join(ds.tags),
            "-" if ds.rating is None else f"{ds.rating:.1f}",
        )
    console.print(board)
