"""Assemble a role from its configuration and serve it over HTTP (``tessera node run``).

A role process loads its key from its keystore, connects to the chain, opens its
store, checks it is registered on the ledger under the role it plays, and (a
provider) lists its tables in the catalog unless they already are. Requests are
accepted only signed by a registered participant (the ledger's registry is the
key directory) and never twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tessera.analytics.local import ColumnBounds, column_spec
from tessera.crypto.group import Point
from tessera.errors import (
    ChainUnreachable,
    ConfigError,
    LedgerError,
    ProtocolError,
    TransportError,
)
from tessera.ledger import Deployment, LedgerClient, RpcChain
from tessera.ledger.client import MAX_BOUNDS_BYTES, encode_bounds
from tessera.ledger.session import make_listing, schema_hash
from tessera.node.config import RoleConfig
from tessera.node.envelope import LedgerDirectory, ReplayGuard
from tessera.node.identity import Identity, load_keystore
from tessera.node.roles import NodeRole, ProviderRole, Role, Table, VerifierRole
from tessera.node.roles.base import Recovering
from tessera.node.store import open_store
from tessera.node.transport import HttpTransport
from tessera.protocol.policy import DatasetPolicy

ROLE_OF = {"provider": "provider", "node": "node", "verifier": "verifier"}
RECONCILE_SECONDS = 5.0  # a served provider's and verifier's background reconciliation


@dataclass
class Assembled:
    role: Role
    identity: Identity
    ledger: LedgerClient
    directory: LedgerDirectory
    guard: ReplayGuard
    transport: HttpTransport


def connect_ledger(
    rpc: str, deployment_path: Any, identity: Identity, wait: float = 30.0
) -> LedgerClient:
    """A client signing as ``identity`` on the chain at ``rpc`` (retried up to ``wait`` s)."""
    deployment = Deployment.load(deployment_path)
    deadline = time.monotonic() + wait
    while True:
        try:
            chain = RpcChain(rpc)
            return LedgerClient(chain, deployment, identity.address, signer=identity.private_key)
        except (LedgerError, TransportError, OSError) as exc:
            if time.monotonic() > deadline:
                if isinstance(exc, ChainUnreachable):
                    raise  # it names the chain and says what to do
                raise TransportError(f"cannot reach the chain at {rpc}: {exc}") from exc
            time.sleep(0.25)


def provider_tables(cfg: RoleConfig) -> dict[str, Table]:
    tables = {}
    for name, t in cfg.tables.items():
        numeric: dict[str, ColumnBounds] = {}
        cats: dict[str, tuple[Any, ...]] = {}
        for col, spec in t.bounds.items():
            numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
            if numbers and len(spec) == 3:  # [lo, hi, fixed-point fraction bits]
                try:
                    numeric[col] = ColumnBounds(float(spec[0]), float(spec[1]), int(spec[2]))
                except ValueError as exc:
                    raise ConfigError(f"{cfg.path} [tables.{name}] {col}: {exc}") from exc
                continue
            try:
                parsed = column_spec(tuple(spec) if numbers and len(spec) == 2 else list(spec))
            except ValueError as exc:
                raise ConfigError(f"{cfg.path} [tables.{name}] {col}: {exc}") from exc
            if isinstance(parsed, ColumnBounds):
                numeric[col] = parsed
            else:
                cats[col] = parsed
        policy = dict(t.policy)
        if "allowed" in policy:
            policy["allowed"] = frozenset(policy["allowed"])
        if "tags" in policy:
            policy["tags"] = tuple(policy["tags"])
        try:
            pol = DatasetPolicy(**policy)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cfg.path} [tables.{name}.policy]: {exc}") from exc
        if not t.source.is_file():
            raise ConfigError(f"{cfg.path} [tables.{name}]: no file at {t.source}")
        tables[name] = Table(str(t.source), numeric, cats, pol)
    return tables


def list_datasets(role: ProviderRole) -> None:
    """List each table in the catalog once (the dataset id is kept in the store)."""
    for name, t in role.tables.items():
        if role.dataset_id(name) is not None:
            continue
        bounds = {c: (b.lo, b.hi) for c, b in t.bounds.items()}
        if len(encode_bounds(bounds)) > MAX_BOUNDS_BYTES:
            bounds = {}
        listing = make_listing(
            bounds,
            operations=t.policy.allowed,
            min_cohort=t.policy.min_cohort,
            budget_rho=t.policy.budget_rho,
            allow_exact=t.policy.allow_exact,
            price_per_query=t.policy.price_per_query,
            price_per_training=t.policy.price_per_training,
            node_share_bps=t.policy.node_share_bps,
            tags=t.policy.tags,
        )
        schema = schema_hash(name, {**t.bounds, **t.categories})
        listed = role.ledger.list_dataset(schema, listing)
        role.store.put("dataset", name, listed.dataset_id)


def committee_key_of(ledger: LedgerClient) -> Callable[[], Point]:
    """The newest committee's key (cached once read)."""
    cache: dict[str, Point] = {}

    def key() -> Point:
        if "key" not in cache:
            count = int(ledger.registry.functions.committee_count().call())
            if count == 0:
                raise ProtocolError("no committee is registered yet")
            cache["key"] = Point.decode(ledger.committee(count - 1).public_key)
        return cache["key"]

    return key


def assemble(cfg: RoleConfig) -> Assembled:
    identity = load_keystore(cfg.keystore, cfg.password)
    ledger = connect_ledger(cfg.rpc, cfg.deployment, identity)
    participant = ledger.participant()
    if ROLE_OF[cfg.role] not in participant.roles or participant.public_key != identity.public_key:
        raise ConfigError(
            f"{cfg.path}: {identity.address} is not registered as a {cfg.role} with this key"
        )
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg.store_location)
    guard = ReplayGuard(cfg.data_dir / "replay.sqlite")
    # the key directory reads the registry through its own connection: lookups then never
    # interleave with the role's transactions on one client
    directory = LedgerDirectory(connect_ledger(cfg.rpc, cfg.deployment, identity))
    peers = cfg.peers()
    transport = HttpTransport(identity, {p.address: p.url for p in peers if p.url})
    role: Role
    if cfg.role == "provider":
        provider = ProviderRole(cfg.name, provider_tables(cfg), ledger, store)
        list_datasets(provider)
        provider.recover()
        role = provider
    elif cfg.role == "node":
        nodes = {p.index: p.address for p in peers if p.role == "node" and p.index is not None}
        keys: dict[int, bytes] = {}

        def peer_keys() -> Mapping[int, bytes]:
            if len(keys) < len(nodes):
                for i, a in nodes.items():
                    key = directory.public_key(a)
                    if key is None:
                        raise ProtocolError(f"node {i} ({a}) has no registered key")
                    keys[i] = key
            return keys

        role = NodeRole(
            cfg.index,
            cfg.n,
            cfg.t,
            ledger,
            store,
            identity.private_key,
            peer_keys,
            transport=transport,
            node_addresses=lambda: nodes,
        )
    else:
        verifier = VerifierRole(cfg.name, ledger, store, transport=transport)
        # votes on the queries it was cut short on, or drawn for while down, before it serves
        verifier.recover()
        role = verifier
    if cfg.adversary:
        from tessera.testing.adversary import ADVERSARIES

        role = ADVERSARIES[cfg.adversary](role)
    return Assembled(role, identity, ledger, directory, guard, transport)


def run(cfg: RoleConfig, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve the role until SIGINT/SIGTERM; its refusals and failures, timed, on stderr
    (the role's log in a launched network)."""
    from tessera.node.http import create_app, serve

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    a = assemble(cfg)
    if isinstance(a.role, Recovering):
        # providers and verifiers settle what the ledger closed, or what they were drawn
        # for, even when nobody asks them anything
        a.role.start_reconciling(RECONCILE_SECONDS)
    app = create_app(a.role, a.identity, a.directory, a.guard)
    serve(app, "127.0.0.1", cfg.port, on_ready=on_ready)
