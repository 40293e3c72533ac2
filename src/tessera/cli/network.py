"""``tessera node run``, ``tessera network up|down|status``, ``tessera query``, ``tessera
model``, ``tessera verify``: the network as processes, and the analyst's commands.

Exit codes (from :data:`tessera.errors.EXIT_CODES`)::

    0   done (``verify``: the query passed)
    1   ``query``, ``model``: the result did not verify
    2   bad arguments
    10  a provider's policy refused the query; 11 its privacy budget is spent
    14  the protocol failed (too few honest nodes)
    17  the ledger refused; 18 a peer or the chain cannot be reached
    19  a configuration, key or state file is missing or malformed
    20  the query is malformed
    23  ``verify``: the query did not pass verification (the ledger's verdict or the
        re-check here)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.cli.ledger import JsonOpt, emit_json
from tessera.errors import ConfigError, TesseraError, TransportError

node_app = typer.Typer(help="Run one role process.", no_args_is_help=True, add_completion=False)
network_app = typer.Typer(
    help="A whole local network as processes, from one TOML file.",
    no_args_is_help=True,
    add_completion=False,
)
model_app = typer.Typer(
    help="Models over the network: regressions, survival.", no_args_is_help=True
)
_out = Console()
_err = Console(stderr=True)

DirOpt = Annotated[
    Path,
    typer.Option(
        "--dir", envvar="TESSERA_NETWORK", help="The network's state directory.", metavar="DIR"
    ),
]
DEFAULT_DIR = Path("tessera-network")
EpsOpt = Annotated[
    float | None, typer.Option("--epsilon", help="Differential privacy: epsilon (omit: exact).")
]


@node_app.command("run")
@handle_errors
def node_run(
    config: Annotated[Path, typer.Option("--config", help="The role's TOML configuration.")],
) -> None:
    """Run one role (provider, computing node or verifier) until SIGINT/SIGTERM."""
    from tessera.node.config import load_role_config
    from tessera.node.runner import run

    cfg = load_role_config(config)
    run(cfg, on_ready=lambda port: _err.print(f"{cfg.role} {cfg.name} on 127.0.0.1:{port}"))


@network_app.command("up")
@handle_errors
def network_up(
    file: Annotated[Path, typer.Argument(help="The network's TOML file.")],
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Start the chain, every role as a process, run the DKG; then return (``down`` stops)."""
    from tessera.node.launcher import Network, NetworkSpec

    spec = NetworkSpec.load(file)
    state = Network(state_dir).up(spec, progress=lambda m: _err.print(f"[dim]·[/dim] {m}"))
    summary = {
        "dir": str(state_dir),
        "rpc": state["rpc"],
        "committee": state["committee"],
        "processes": {p["name"]: p["pid"] for p in state["processes"]},
    }
    if as_json:
        emit_json(summary)
    else:
        _out.print(f"network up in {state_dir}: {len(state['processes'])} processes")


@network_app.command("down")
@handle_errors
def network_down(state_dir: DirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Stop every process of the network (the roles first, the chain last)."""
    from tessera.node.launcher import STATE_FILE, Network

    if not (state_dir / STATE_FILE).is_file():
        problem = "no such directory" if not state_dir.is_dir() else f"no {STATE_FILE} in it"
        raise ConfigError(f"no network in {state_dir} ({problem}): nothing to stop")
    stopped = Network(state_dir).down()
    if as_json:
        emit_json({"stopped": stopped})
    else:
        _out.print(f"stopped {len(stopped)} processes")


@network_app.command("status")
@handle_errors
def network_status(state_dir: DirOpt = DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """The chain and each role: up or down, and what it is working on."""
    from tessera.node.launcher import Network

    status = Network(state_dir).status()
    if as_json:
        emit_json(status)
        return
    table = Table(
        title=f"chain {status['rpc']}: {status['chain']}, committee {status['committee']}"
    )
    for col in ("role", "name", "status", "url", "latest job"):
        table.add_column(col)
    for name, r in status["roles"].items():
        jobs = r.get("progress") or {}
        latest = max(jobs.values(), key=lambda j: j.get("updated", 0), default=None)
        table.add_row(
            r["role"], name, r["status"], r["url"], str(latest.get("stage")) if latest else ""
        )
    _out.print(table)


def _plain(value: Any) -> Any:
    """A result value as JSON (tuples as lists, non-finite floats as null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):  # a dict, or a model (a mapping of its fields)
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def result_json(res: Any) -> dict[str, Any]:
    cost = res.privacy_cost
    return {
        "query_id": "0x" + res.query_id,
        "values": _plain(res.values),
        "intervals": _plain(res.intervals),
        "verified": res.verified,
        "failures": list(res.verdict.failures),
        "cheaters": list(res.verdict.cheaters),
        "privacy_cost": None if cost is None else _plain(cost),
        "providers": res.providers,
        "excluded_providers": res.excluded_providers,
        "ledger": None if res.ledger is None else {
            "status": res.ledger.status,
            "price": res.ledger.price,
            "transactions": res.ledger.transactions,
            "slashed": list(res.ledger.slashed),
        },
        "seconds": res.seconds,
    }  # fmt: skip


def _show(res: Any, as_json: bool) -> None:
    if as_json:
        emit_json(result_json(res))
    else:
        table = Table(title=f"query 0x{res.query_id[:16]}...")
        table.add_column("statistic")
        table.add_column("value")
        table.add_column("95% interval")
        for label, v in res.values.items():
            table.add_row(label, _short(v), _short(res.intervals.get(label)))
        _out.print(table)
        cost = res.privacy_cost
        _out.print(
            f"verified: {'[green]yes[/green]' if res.verified else '[red]NO[/red]'}"
            + (f"  privacy: epsilon={cost.epsilon:.3g} (rho={cost.rho:.3g})" if cost else "")
            + (f"  ledger: {res.ledger.status}" if res.ledger else "")
        )
    if not res.verified:  # printed above; the exit code says so too
        from tessera.errors import VerificationFailed, exit_code

        raise typer.Exit(exit_code(VerificationFailed("the result did not pass verification")))


def _short(v: Any) -> str:
    text = repr(_plain(v))
    return text if len(text) < 80 else text[:77] + "..."


def _session(state_dir: Path) -> Any:
    from tessera.node.launcher import open_session

    analyst, _ = open_session(state_dir)
    analyst.on_progress = lambda m: _err.print(f"[dim]·[/dim] {m}")
    return analyst


@handle_errors
def query(
    sql: Annotated[str, typer.Argument(help='e.g. "SELECT AVG(age) FROM patients"')],
    epsilon: EpsOpt = 1.0,
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Run one SQL query over the network: encrypted, noised, verified, settled."""
    analyst = _session(state_dir)
    res = analyst.sql(sql, epsilon=epsilon)
    _show(res, as_json)


@model_app.command("linear")
@handle_errors
def model_linear(
    table: Annotated[str, typer.Option(help="Table name.")],
    target: Annotated[str, typer.Option(help="The outcome column.")],
    features: Annotated[str, typer.Option(help="Comma-separated feature columns.")],
    epsilon: EpsOpt = 1.0,
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Ordinary least squares over the network."""
    res = _session(state_dir).linear_regression(table, target, features.split(","), epsilon=epsilon)
    _show(res, as_json)


@model_app.command("logistic")
@handle_errors
def model_logistic(
    table: Annotated[str, typer.Option(help="Table name.")],
    target: Annotated[str, typer.Option(help="The 0/1 outcome column.")],
    features: Annotated[str, typer.Option(help="Comma-separated feature columns.")],
    newton_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=32,
            help="Newton steps after the first estimate, a query each "
            "(default: 8 exact, 2 with noise; 0: one-shot).",
        ),
    ] = None,
    ridge: Annotated[float, typer.Option(min=0.0, help="L2 penalty λ (scikit-learn's 1/C).")] = 0.0,
    epsilon: EpsOpt = 1.0,
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Logistic regression over the network: a one-shot estimate (Aono's approximation),
    then Newton steps towards the maximum-likelihood fit."""
    res = _session(state_dir).logistic_regression(
        table, target, features.split(","), ridge=ridge, newton_steps=newton_steps, epsilon=epsilon
    )
    _show(res, as_json)


@model_app.command("survival")
@handle_errors
def model_survival(
    table: Annotated[str, typer.Option(help="Table name.")],
    time_column: Annotated[str, typer.Option("--time", help="Follow-up time column.")],
    event: Annotated[str, typer.Option(help="The 0/1 event column.")],
    edges: Annotated[str, typer.Option(help="Comma-separated time points of the curve.")],
    epsilon: EpsOpt = 1.0,
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Kaplan–Meier survival curve over the network."""
    try:
        points = [float(e) for e in edges.split(",")]
        res = _session(state_dir).kaplan_meier(table, time_column, event, points, epsilon=epsilon)
    except ValueError as exc:
        fail(exc)
    _show(res, as_json)


@handle_errors
def verify(
    query_id: Annotated[str, typer.Argument(help="The query id (0x + 64 hex digits).")],
    state_dir: DirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """A query's verdict: the verifiers' check of its proofs and its on-chain audit trail."""
    from tessera.ledger import COMMITMENT_KINDS
    from tessera.node.launcher import open_session

    try:
        qid = bytes.fromhex(query_id.removeprefix("0x"))
        if len(qid) != 32:
            raise ValueError("a query id is 32 bytes")
    except ValueError as exc:
        fail(exc)
    analyst, transport = open_session(state_dir)
    q = analyst.ledger.query(qid)
    trail = analyst.ledger.audit_trail(qid)
    verdicts = []
    for peer in (p for p in analyst.peers if p.role == "verifier"):
        try:
            verdicts.append(
                {
                    "verifier": peer.name,
                    **transport.call(peer.address, "verdict", {"query_id": qid.hex()}),
                }
            )
        except TesseraError as exc:
            verdicts.append({"verifier": peer.name, "error": str(exc)})
    recheck = _recheck(analyst, transport, qid, q)
    # "completed": paid at its deadline with no verdict majority; the re-check here decides
    passed = q.status in ("passed", "completed") and bool(recheck.get("passed"))
    report = {
        "query_id": "0x" + qid.hex(),
        "status": q.status,
        "verified": passed,
        "price": q.price,
        "cheaters": list(q.cheaters),
        "trail": {kind: len(trail.of(kind)) for kind in COMMITMENT_KINDS},
        "verdicts": verdicts,
        "rechecked_here": recheck,
    }  # fmt: skip
    if as_json:
        emit_json(report)
    else:
        _out.print(f"query {report['query_id']}: [bold]{q.status}[/bold] on the ledger")
        if recheck.get("passed") is None:
            _out.print(f"  re-checked here: {recheck.get('error')}")
        else:
            what = "[green]passed[/green]" if recheck["passed"] else "[red]FAILED[/red]"
            _out.print(f"  re-checked here: {what}, {recheck['proofs_checked']} proofs")
            for f in recheck["failures"]:
                _out.print(f"    {f}")
        for v in verdicts:
            _out.print(
                f"  {v['verifier']}: {v.get('passed', v.get('error'))} {v.get('failures', '')}"
            )
    if not passed:
        from tessera.errors import VerificationFailed

        if q.status not in ("passed", "completed"):
            why = f"the ledger says {q.status}"
        elif recheck.get("passed") is None:
            why = f"not re-checked here: {recheck.get('error')}"
        else:
            why = "the re-check here failed"
        raise VerificationFailed(f"query {report['query_id']} did not pass verification: {why}")


def _recheck(analyst: Any, transport: Any, qid: bytes, q: Any) -> dict[str, Any]:
    """Fetch the query's public record from a verifier and check it here, proofs and
    on-chain trail: anyone holding the record can, without trusting the verifiers."""
    from tessera.node.roles.verifier import check_query
    from tessera.protocol.query import QueryTicket

    for peer in (p for p in analyst.peers if p.role == "verifier"):
        try:
            data = transport.call(peer.address, "record", {"query_id": qid.hex()})
            ticket = QueryTicket.from_json(data.get("ticket"))
            if ticket.query_id != qid:
                return {"passed": False, "proofs_checked": 0, "failures": ["another query's"]}
            verdict, _, _ = check_query(analyst.ledger, ticket, data.get("record"))
        except TransportError:
            continue
        except TesseraError as exc:
            return {"passed": False, "proofs_checked": 0, "failures": [str(exc)], "from": peer.name}
        return {
            "passed": verdict.ok,
            "proofs_checked": verdict.checked_proofs,
            "failures": list(verdict.failures),
            "from": peer.name,
        }
    return {"passed": None, "error": "no verifier holds the record"}
