"""A role process's configuration: one TOML file, checked field by field.

::

    role = "provider"                 # provider | node | verifier
    name = "hospital-a"
    port = 7101                       # on 127.0.0.1
    data_dir = "state/hospital-a"     # its SQLite store and replay guard
    # store = "postgresql://tessera@db.example/hospital_a"  # default: data_dir/state.sqlite
    keystore = "keys/hospital-a.json" # Ethereum keystore v3 (its ledger account and signing key)
    password_env = "TESSERA_KEY_PASSWORD"   # or password_file = "..."
    peers = "peers.json"              # the network: name, role, address, url, index

    [ledger]
    rpc = "http://127.0.0.1:8545"
    deployment = "deployment.json"

    [node]                            # computing nodes only
    index = 1
    n = 3
    t = 2

    [tables.patients]                 # providers only
    source = "data/hospital-a.csv"
    bounds = { age = [18, 95], bmi = [15.0, 50.0], sex = ["F", "M"] }
    policy = { min_cohort = 10, budget_rho = 5.0, price_per_query = 100 }

Relative paths are relative to the file. Errors name the file and the field.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.errors import ConfigError
from tessera.node.analyst import Peer
from tessera.node.files import atomic_write
from tessera.node.store import is_dsn

ROLES = ("provider", "node", "verifier")
POLICY_FIELDS = {
    "allowed", "min_cohort", "budget_rho", "max_rows", "allow_exact", "price_per_query",
    "price_per_training", "node_share_bps", "tags",
}  # fmt: skip


@dataclass(frozen=True)
class TableConfig:
    source: Path
    bounds: dict[str, Any]
    policy: dict[str, Any]


@dataclass(frozen=True)
class RoleConfig:
    path: Path
    role: str
    name: str
    port: int
    data_dir: Path
    keystore: Path
    password: str = field(repr=False)
    peers_file: Path
    rpc: str
    deployment: Path
    index: int = 0
    n: int = 0
    t: int = 0
    adversary: str = ""  # tests only: a tessera.testing.adversary wrapper for this role
    tables: dict[str, TableConfig] = field(default_factory=dict)
    store: str = ""  # a postgresql:// DSN or an SQLite path; "" is data_dir/state.sqlite

    @property
    def store_location(self) -> str:
        return self.store or str(self.data_dir / "state.sqlite")

    def peers(self) -> list[Peer]:
        return load_peers(self.peers_file)


def _get(data: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise ConfigError(f"{where}: missing {key!r}")
        return default
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's contents; a missing or malformed file is a ConfigError naming it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_role_config(path: Path | str) -> RoleConfig:
    path = Path(path)
    data = read_toml(path)
    where = str(path)
    base = path.parent

    def rel(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else (base / q)

    role = _get(data, "role", str, where)
    if role not in ROLES:
        raise ConfigError(f"{where}: role must be one of {ROLES}, got {role!r}")
    if "password_file" in data:
        try:
            password = rel(_get(data, "password_file", str, where)).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the password file: {exc}") from exc
    else:
        env = _get(data, "password_env", str, where, "TESSERA_KEY_PASSWORD")
        if env not in os.environ:
            raise ConfigError(f"{where}: the key password is expected in ${env}, which is unset")
        password = os.environ[env]
    ledger = _get(data, "ledger", dict, where)
    port = _get(data, "port", int, where)
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} out of range")
    index = n = t = 0
    if role == "node":
        node = _get(data, "node", dict, where)
        index, n, t = (_get(node, k, int, f"{where} [node]") for k in ("index", "n", "t"))
        if not 1 <= index <= n:
            raise ConfigError(f"{where} [node]: need 1 <= index <= n, got index={index}, n={n}")
        if t < 1 or n < 2 * t - 1:
            raise ConfigError(
                f"{where} [node]: need 1 <= t and n >= 2t - 1 (so that t - 1 corrupt nodes "
                f"cannot block the DKG), got n={n}, t={t}"
            )
    tables: dict[str, TableConfig] = {}
    if role == "provider":
        for name, spec in _get(data, "tables", dict, where).items():
            w = f"{where} [tables.{name}]"
            policy = _get(spec, "policy", dict, w, {})
            unknown = sorted(set(policy) - POLICY_FIELDS)
            if unknown:
                raise ConfigError(f"{w}: unknown policy field(s) {unknown}")
            tables[name] = TableConfig(
                rel(_get(spec, "source", str, w)), _get(spec, "bounds", dict, w), policy
            )
        if not tables:
            raise ConfigError(f"{where}: a provider needs at least one table")
    store = _get(data, "store", str, where, "")
    if is_dsn(store):
        from tessera.node.store_postgres import check_dsn

        check_dsn(store, where)
    elif store:
        store = str(rel(store))
    return RoleConfig(
        path=path,
        role=role,
        name=_get(data, "name", str, where),
        port=port,
        data_dir=rel(_get(data, "data_dir", str, where)),
        keystore=rel(_get(data, "keystore", str, where)),
        password=password,
        peers_file=rel(_get(data, "peers", str, where)),
        rpc=_get(ledger, "rpc", str, f"{where} [ledger]"),
        deployment=rel(_get(ledger, "deployment", str, f"{where} [ledger]")),
        index=index,
        n=n,
        t=t,
        adversary=_get(data, "adversary", str, where, ""),
        tables=tables,
        store=store,
    )


def load_peers(path: Path) -> list[Peer]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [
            Peer(p["name"], p["role"], p["address"], p.get("url", ""), p.get("index"))
            for p in raw["peers"]
        ]
    except OSError as exc:
        raise ConfigError(f"cannot read the peers file {path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: malformed peers file ({exc})") from exc


def save_peers(path: Path, peers: list[Peer]) -> None:
    body = {
        "peers": [
            {"name": p.name, "role": p.role, "address": p.address, "url": p.url, "index": p.index}
            for p in peers
        ]
    }
    atomic_write(path, (json.dumps(body, indent=2) + "\n").encode(), 0o644)
