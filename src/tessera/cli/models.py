"""``tessera model list | show | pull``: the trainings on the model registry, and their models.

``list`` and ``show`` read the model registry of the deployment record ``--deployment``
(default ``$TESSERA_DEPLOYMENT``, else ``./tessera-deployment.json``) on the chain at
``--rpc`` (default ``$TESSERA_LEDGER_RPC``, else ``http://127.0.0.1:8545``), as
``tessera market`` does. ``pull`` needs no chain: it fetches a model by CID from the
store (``--store DIR``, default ``$TESSERA_MODEL_STORE``, else ``./models``; or an IPFS
node's HTTP API with ``--ipfs URL``), checks that the bytes hash to that CID and writes
them to a file. Examples::

    tessera model list                              # every training on the registry
    tessera model list 0x3f...9c                    # its rounds: CID, parent, ρ, ε, query
    tessera model show 0x3f...9c 2 --store models   # round 2's entry and the model's metadata
    tessera model pull bafkrei... --out round2.model --ipfs http://127.0.0.1:5001

Exit codes (one line on stderr says why)::

    0   done
    2   bad arguments: a malformed training id or CID, no such round, an existing --out
    12  the bytes fetched do not hash to the CID (both CIDs named)
    13  the bytes are not a model
    17  the ledger refused: no such training
    18  the chain or the IPFS node cannot be reached
    19  the deployment record is missing, malformed, not on this chain, or names no registry
    22  no model with that CID in the store
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tessera.cli.errors import fail, handle_errors
from tessera.cli.ledger import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_RPC,
    DeploymentOpt,
    JsonOpt,
    RpcOpt,
    connect,
    emit_json,
)
from tessera.cli.network import model_app
from tessera.errors import ConfigError, DecodeError, LedgerError

if TYPE_CHECKING:
    from tessera.ledger.model_registry import ModelRegistry, ModelRound, Training
    from tessera.node.model_store import ModelStore

#: δ at which ρ is shown as ε (the engine's and the market's default).
DEFAULT_DELTA = 1e-6
DEFAULT_STORE = Path("models")

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="TESSERA_MODEL_STORE",
        help="The local model store: a directory of files named by CID.",
        metavar="DIR",
    ),
]
IpfsOpt = Annotated[
    str | None,
    typer.Option(
        "--ipfs",
        envvar="TESSERA_IPFS_API",
        help="Fetch from an IPFS node's HTTP API instead of the local store.",
        metavar="URL",
    ),
]
DeltaOpt = Annotated[float, typer.Option("--delta", help="δ at which ρ is shown as ε.")]


def _training_id(text: str) -> bytes:
    from tessera.ledger.model_registry import training_id_bytes

    try:
        return training_id_bytes(text)
    except ValueError as exc:
        fail(ValueError(f"{text!r}: {exc}"))


def _cid(text: str) -> str:
    from tessera.node.model_store import parse_cid

    try:
        parse_cid(text)
    except DecodeError as exc:
        fail(ValueError(str(exc)))
    return text


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        fail(ValueError(f"--delta must be in (0, 1), not {delta}"))


def _epsilon(rho_micro: int, delta: float) -> float:
    from tessera.dp.accountant import rho_to_eps_delta
    from tessera.ledger.client import MICRO

    return 0.0 if rho_micro == 0 else rho_to_eps_delta(rho_micro / MICRO, delta)[0]


def _registry(rpc: str, deployment: Path) -> ModelRegistry:
    from tessera.ledger.model_registry import ModelRegistry

    try:
        conn = connect(rpc, deployment, None)
    except ValueError as exc:
        fail(exc)
    try:
        registry = ModelRegistry(conn.client())
    except LedgerError as exc:
        raise ConfigError(f"{deployment}: {exc}") from exc
    try:
        bound = registry.market()
    except LedgerError as exc:
        raise ConfigError(
            f"{deployment}: no model registry answers at {registry.address}: {exc}"
        ) from exc
    if bound.lower() != conn.deployment.market.lower():
        raise ConfigError(
            f"{deployment}: the model registry at {registry.address} reads the market at "
            f"{bound}, not this deployment's market {conn.deployment.market}"
        )
    return registry


def _store(store: Path, ipfs: str | None) -> ModelStore:
    from tessera.node.model_store import IpfsHttpStore, LocalModelStore

    if ipfs:
        if not ipfs.startswith(("http://", "https://")):
            fail(ValueError(f"--ipfs {ipfs!r}: expected an http(s) URL of an IPFS node's API"))
        return IpfsHttpStore(ipfs)
    if not store.is_dir():
        raise ConfigError(f"no model store at {store} (a directory of models named by CID)")
    return LocalModelStore(store)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def _training_json(t: Training, delta: float) -> dict[str, Any]:
    return {
        "training": _hex(t.training),
        "analyst": t.analyst,
        "committee": None if t.local else t.committee,
        "local": t.local,
        "rounds": t.rounds,
        "rho_micro": t.total_rho_micro,
        "epsilon": _epsilon(t.total_rho_micro, delta),
        "delta": delta,
    }


def _round_json(r: ModelRound, total_micro: int, delta: float) -> dict[str, Any]:
    return {
        "round": r.round,
        "cid": r.cid,
        "parent": r.parent or None,
        "rho_micro": r.rho_micro,
        "epsilon_so_far": _epsilon(total_micro, delta),
        "block": r.block,
        "query_id": _hex(r.query_id),
    }


def _chain_json(history: list[ModelRound], delta: float) -> list[dict[str, Any]]:
    out, total = [], 0
    for r in history:
        total += r.rho_micro
        out.append(_round_json(r, total, delta))
    return out


def _kind(t: Training) -> str:
    return "local (ρ as stated by the analyst)" if t.local else f"market, committee {t.committee}"


@model_app.command("list")
@handle_errors
def model_list(
    training: Annotated[
        str | None,
        typer.Argument(help="A training id (64 hex digits); none: every training."),
    ] = None,
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    delta: DeltaOpt = DEFAULT_DELTA,
    as_json: JsonOpt = False,
) -> None:
    """The trainings on the model registry, or one training's chain of rounds."""
    _check_delta(delta)
    tid = None if training is None else _training_id(training)
    registry = _registry(rpc, deployment)
    if tid is None:
        trainings = registry.trainings()
        if as_json:
            emit_json([_training_json(t, delta) for t in trainings])
            return
        table = Table(title=f"Trainings on the model registry {registry.address}")
        for column in ("training", "analyst", "kind", "rounds", "ρ (µρ)", f"ε (δ={delta:g})"):
            table.add_column(column, overflow="fold")
        for t in trainings:
            table.add_row(
                _hex(t.training),
                t.analyst,
                _kind(t),
                str(t.rounds),
                f"{t.total_rho_micro:,}",
                f"{_epsilon(t.total_rho_micro, delta):.4g}",
            )
        Console().print(table)
        return
    info = registry.training(tid)
    rounds = _chain_json(registry.history(tid), delta)
    if as_json:
        emit_json({**_training_json(info, delta), "history": rounds})
        return
    table = Table(title=f"Training {_hex(tid)}: {_kind(info)}, analyst {info.analyst}")
    for column in ("round", "CID", "parent", "ρ (µρ)", f"ε so far (δ={delta:g})", "query"):
        table.add_column(column, overflow="fold")
    for r in rounds:
        local_mark = "local" if info.local and r["round"] > 0 else "-"
        table.add_row(
            str(r["round"]),
            r["cid"],
            r["parent"] or "-",
            f"{r['rho_micro']:,}",
            f"{r['epsilon_so_far']:.4g}",
            r["query_id"] or local_mark,
        )
    Console().print(table)


def _find_round(registry: ModelRegistry, tid: bytes, which: str | None) -> ModelRound:
    count = registry.rounds(tid)
    if which is None:
        return registry.round_of(tid, count)
    if which.isdecimal():
        r = int(which)
        if r > count:
            fail(ValueError(f"training {_hex(tid)} has rounds 0 to {count}, not {r}"))
        return registry.round_of(tid, r)
    cid = _cid(which)
    from multiformats import CID

    wanted = str(CID.decode(cid).set(base="base32"))
    for entry in registry.history(tid):
        if entry.cid == wanted or entry.cid == cid:
            return entry
    fail(ValueError(f"{cid} is no round of training {_hex(tid)}"))


@model_app.command("show")
@handle_errors
def model_show(
    training: Annotated[str, typer.Argument(help="The training id (64 hex digits).")],
    which: Annotated[
        str | None,
        typer.Argument(help="A round number or a CID of the training (default: the latest)."),
    ] = None,
    rpc: RpcOpt = DEFAULT_RPC,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    store: StoreOpt = DEFAULT_STORE,
    ipfs: IpfsOpt = None,
    delta: DeltaOpt = DEFAULT_DELTA,
    as_json: JsonOpt = False,
) -> None:
    """One model's registry entry (and its market query), with the model's metadata when
    the store holds it."""
    from tessera.errors import NotFound, TransportError
    from tessera.learning.serialize import decode_model, model_spec

    _check_delta(delta)
    tid = _training_id(training)
    registry = _registry(rpc, deployment)
    info = registry.training(tid)
    entry = _find_round(registry, tid, which)
    history = registry.history(tid)[: entry.round + 1]
    out: dict[str, Any] = {
        **_training_json(info, delta),
        **_round_json(entry, sum(r.rho_micro for r in history), delta),
    }
    out["query"] = None
    if entry.query_id is not None:
        q = registry.client.query(entry.query_id)
        out["query"] = {
            "kind": q.kind,
            "analyst": q.analyst,
            "status": q.status,
            "committee": q.committee,
            "privacy_cost": q.privacy_cost,
            "datasets": list(q.dataset_ids),
        }
    source = ipfs or str(store)
    out["model"] = None
    out["store"] = source
    try:
        data = _store(store, ipfs).get(entry.cid)
    except (NotFound, ConfigError, TransportError) as exc:
        out["model_missing"] = str(exc)
    else:
        model, _params, meta = decode_model(data)
        out["model"] = {
            "spec": model_spec(model),
            "num_params": model.num_params,
            "bytes": len(data),
            "meta": meta,
        }
    if as_json:
        emit_json(out)
        return
    table = Table(title=f"Round {entry.round} of training {_hex(tid)}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("kind", _kind(info))
    table.add_row("analyst", info.analyst)
    for key in ("cid", "parent", "rho_micro", "epsilon_so_far", "block", "query_id"):
        value = out[key]
        table.add_row(key, "-" if value is None else str(value))
    if out["query"] is not None:
        q = out["query"]
        table.add_row(
            "market query",
            f"{q['kind']}, {q['status']}, {q['privacy_cost']:,} µρ, datasets {q['datasets']}",
        )
    if out["model"] is not None:
        m = out["model"]
        table.add_row("model", f"{m['spec']} ({m['num_params']:,} parameters, {m['bytes']:,} B)")
        table.add_row("metadata", str(m["meta"]))
    else:
        table.add_row("model", f"not fetched: {out['model_missing']}")
    Console().print(table)


@model_app.command("pull")
@handle_errors
def model_pull(
    cid: Annotated[str, typer.Argument(help="The model's CID (CIDv1, raw, sha2-256).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the model (default: ./CID.model)."),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
    ipfs: IpfsOpt = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing --out file.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model by CID, check that its bytes hash to the CID, and write it to a file."""
    from tessera.learning.serialize import decode_model, model_spec
    from tessera.node.files import atomic_write

    _cid(cid)
    target = out or Path(f"{cid}.model")
    if target.exists() and not force:
        fail(ValueError(f"{target} exists (--force overwrites it)"))
    data = _store(store, ipfs).get(cid)  # checked against the CID: InvalidProof if not
    model, _params, meta = decode_model(data)
    try:
        atomic_write(target, data, mode=0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from exc
    summary = {
        "cid": cid,
        "out": str(target),
        "bytes": len(data),
        "spec": model_spec(model),
        "num_params": model.num_params,
        "meta": meta,
    }
    if as_json:
        emit_json(summary)
        return
    Console().print(
        f"{cid}: {summary['spec']}, {model.num_params:,} parameters, {len(data):,} bytes, "
        f"checked against its CID, written to {target}",
        soft_wrap=True,
        highlight=False,
    )
