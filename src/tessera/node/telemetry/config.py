"""Telemetry task configuration: one TOML file per task, shared by every party.

Secrets live in separate files the config points to (paths relative to the config
file); each party reads only the ones it needs::

    [task]
    id = "<64 hex digits>"
    min_batch_size = 100
    time_precision = 60            # seconds; reports are bucketed by this
    verify_key_file = "keys/verify.key"   # aggregators only
    auth_token_file = "keys/auth.token"   # optional bearer token between parties

    [task.vdaf]
    type = "Prio3Histogram"
    length = 100
    chunk_length = 10

    [dp]
    mechanism = "discrete_laplace"  # or "discrete_gaussian" (rho = ...) or "none"
    epsilon = "1"                   # a number or an exact fraction "1/2"

    [[aggregators]]                 # the first one is the leader
    url = "http://127.0.0.1:8701"
    hpke_public_key_file = "keys/agg0.pub"
    hpke_private_key_file = "keys/agg0.key"   # this aggregator only
    store = "data/agg0.sqlite"                # this aggregator only

    [collector]
    hpke_public_key_file = "keys/collector.pub"
    hpke_private_key_file = "keys/collector.key"  # collector only
"""

from __future__ import annotations

import secrets
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from tessera.errors import ConfigError, TesseraError
from tessera.node.files import atomic_write
from tessera.node.telemetry import hpke
from tessera.protocol.telemetry.task import TASK_ID_SIZE, AnyVdaf, DpSpec, VdafSpec


@dataclass(frozen=True)
class AggregatorEndpoint:
    """One aggregator as the task file describes it."""

    url: str
    hpke_public_key_file: Path
    hpke_private_key_file: Path | None
    store: Path | None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def public_key(self) -> X25519PublicKey:
        return hpke.load_public_key(self.hpke_public_key_file)

    def private_key(self) -> X25519PrivateKey:
        if self.hpke_private_key_file is None:
            raise ConfigError(f"aggregator {self.url} has no hpke_private_key_file")
        return hpke.load_private_key(self.hpke_private_key_file)


@dataclass(frozen=True)
class TaskConfig:
    """A parsed task file."""

    path: Path
    task_id: bytes
    vdaf_spec: VdafSpec
    min_batch_size: int
    time_precision: int
    verify_key_file: Path | None
    auth_token_file: Path | None
    dp: DpSpec
    aggregators: tuple[AggregatorEndpoint, ...]
    collector_public_key_file: Path
    collector_private_key_file: Path | None

    @property
    def task_id_hex(self) -> str:
        return self.task_id.hex()

    def vdaf(self) -> AnyVdaf:
        return self.vdaf_spec.instantiate(len(self.aggregators))

    def verify_key(self) -> bytes:
        """The aggregators' shared VDAF verification key."""
        if self.verify_key_file is None:
            raise ConfigError(f"{self.path}: task has no verify_key_file")
        data = _read_hex_file(self.verify_key_file, "verify key")
        if len(data) != 32:
            raise ConfigError(f"verify key {self.verify_key_file} must be 32 bytes in hex")
        return data

    def auth_token(self) -> str | None:
        """The bearer token parties present to each other, if the task sets one."""
        if self.auth_token_file is None:
            return None
        try:
            token = self.auth_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read auth token {self.auth_token_file}: {exc}") from exc
        if not token:
            raise ConfigError(f"auth token file {self.auth_token_file} is empty")
        return token

    def collector_public_key(self) -> X25519PublicKey:
        return hpke.load_public_key(self.collector_public_key_file)

    def collector_private_key(self) -> X25519PrivateKey:
        if self.collector_private_key_file is None:
            raise ConfigError(f"{self.path}: [collector] has no hpke_private_key_file")
        return hpke.load_private_key(self.collector_private_key_file)


def _read_hex_file(path: Path, what: str) -> bytes:
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where}: {key} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}")
    return value


def _fraction(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where} must be a number or a fraction string like '1/2'")
    try:
        out = Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if out <= 0:
        raise ConfigError(f"{where} must be positive")
    return out


def _path(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


def _check_url(url: str, where: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ConfigError(f"{where}: url must look like http://127.0.0.1:8701, got {url!r}")
    if parts.path not in ("", "/"):
        raise ConfigError(f"{where}: url must not have a path, got {url!r}")


def parse_task_config(doc: dict[str, Any], path: Path) -> TaskConfig:
    """Validate a decoded TOML document; :class:`ConfigError` names the first problem."""
    base = path.parent
    where = str(path)
    task = _get(doc, "task", dict, where)
    tid_hex = _get(task, "id", str, f"{where} [task]")
    try:
        task_id = bytes.fromhex(tid_hex)
    except ValueError as exc:
        raise ConfigError(f"{where} [task]: id must be hex") from exc
    if len(task_id) != TASK_ID_SIZE:
        raise ConfigError(f"{where} [task]: id must be {TASK_ID_SIZE} bytes (64 hex digits)")
    min_batch = _get(task, "min_batch_size", int, f"{where} [task]")
    precision = _get(task, "time_precision", int, f"{where} [task]", 3600)
    if min_batch < 1 or precision < 1:
        raise ConfigError(f"{where} [task]: min_batch_size and time_precision must be >= 1")
    vdaf_table = dict(_get(task, "vdaf", dict, f"{where} [task]"))
    kind = vdaf_table.pop("type", None)
    if not isinstance(kind, str):
        raise ConfigError(f'{where} [task.vdaf]: missing type (e.g. "Prio3Count")')
    try:
        spec = VdafSpec(kind, tuple(sorted(vdaf_table.items())))
    except ValueError as exc:
        raise ConfigError(f"{where} [task.vdaf]: {exc}") from exc

    dp_table = _get(doc, "dp", dict, where)
    mechanism = _get(dp_table, "mechanism", str, f"{where} [dp]")
    eps = dp_table.get("epsilon")
    rho = dp_table.get("rho")
    try:
        dp = DpSpec(
            mechanism,
            _fraction(eps, f"{where} [dp] epsilon") if eps is not None else None,
            _fraction(rho, f"{where} [dp] rho") if rho is not None else None,
        )
    except ValueError as exc:
        raise ConfigError(f"{where} [dp]: {exc}") from exc

    aggs_raw = _get(doc, "aggregators", list, where)
    if len(aggs_raw) < 2:
        raise ConfigError(f"{where}: at least two [[aggregators]] are needed")
    aggs: list[AggregatorEndpoint] = []
    for i, entry in enumerate(aggs_raw):
        w = f"{where} [[aggregators]] #{i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{w}: must be a table")
        url = _get(entry, "url", str, w).rstrip("/")
        _check_url(url, w)
        pub = _path(base, _get(entry, "hpke_public_key_file", str, w))
        assert pub is not None
        aggs.append(
            AggregatorEndpoint(
                url,
                pub,
                _path(base, _get(entry, "hpke_private_key_file", str, w, None)),
                _path(base, _get(entry, "store", str, w, None)),
            )
        )
    if len({a.url for a in aggs}) != len(aggs):
        raise ConfigError(f"{where}: aggregator urls must be distinct")
    try:
        spec.instantiate(len(aggs))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc

    coll = _get(doc, "collector", dict, where)
    coll_pub = _path(base, _get(coll, "hpke_public_key_file", str, f"{where} [collector]"))
    assert coll_pub is not None
    return TaskConfig(
        path=path,
        task_id=task_id,
        vdaf_spec=spec,
        min_batch_size=min_batch,
        time_precision=precision,
        verify_key_file=_path(base, _get(task, "verify_key_file", str, where, None)),
        auth_token_file=_path(base, _get(task, "auth_token_file", str, where, None)),
        dp=dp,
        aggregators=tuple(aggs),
        collector_public_key_file=coll_pub,
        collector_private_key_file=_path(
            base, _get(coll, "hpke_private_key_file", str, f"{where} [collector]", None)
        ),
    )


def load_task_config(path: Path | str) -> TaskConfig:
    """Read and validate a task file."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read task config {p}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    return parse_task_config(doc, p.resolve())


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def write_task(
    directory: Path,
    vdaf: VdafSpec,
    *,
    aggregator_ports: list[int],
    min_batch_size: int,
    time_precision: int = 60,
    dp: DpSpec | None = None,
    host: str = "127.0.0.1",
) -> Path:
    """Create a task directory: fresh keys, a verify key, an auth token and ``task.toml``.

    Everything is written from the operating system's randomness; the files for one
    party can then be copied to where that party runs.
    """
    if len(aggregator_ports) < 2:
        raise ConfigError("at least two aggregators are needed")
    dp = dp or DpSpec("discrete_laplace", epsilon=Fraction(1))
    keys = directory / "keys"
    data = directory / "data"
    keys.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    task_toml = directory / "task.toml"
    if task_toml.exists():
        raise ConfigError(f"{task_toml} already exists; choose an empty directory")
    try:
        for i in range(len(aggregator_ports)):
            hpke.write_keypair(keys / f"agg{i}.key", keys / f"agg{i}.pub")
        hpke.write_keypair(keys / "collector.key", keys / "collector.pub")
        _write_secret(keys / "verify.key", secrets.token_bytes(32).hex())
        _write_secret(keys / "auth.token", secrets.token_urlsafe(32))
    except FileExistsError as exc:
        raise ConfigError(f"key file {exc.filename} already exists") from exc
    except TesseraError:
        raise
    lines = [
        "[task]",
        f'id = "{secrets.token_bytes(TASK_ID_SIZE).hex()}"',
        f"min_batch_size = {min_batch_size}",
        f"time_precision = {time_precision}",
        'verify_key_file = "keys/verify.key"',
        'auth_token_file = "keys/auth.token"',
        "",
        "[task.vdaf]",
        f'type = "{vdaf.kind}"',
        *(f"{name} = {value}" for name, value in vdaf.params),
        "",
        "[dp]",
        f'mechanism = "{dp.mechanism}"',
    ]
    if dp.epsilon is not None:
        lines.append(f"epsilon = {_toml_value(str(dp.epsilon))}")
    if dp.rho is not None:
        lines.append(f"rho = {_toml_value(str(dp.rho))}")
    for i, port in enumerate(aggregator_ports):
        lines += [
            "",
            "[[aggregators]]" + ("  # the leader" if i == 0 else ""),
            f'url = "http://{host}:{port}"',
            f'hpke_public_key_file = "keys/agg{i}.pub"',
            f'hpke_private_key_file = "keys/agg{i}.key"',
            f'store = "data/agg{i}.sqlite"',
        ]
    lines += [
        "",
        "[collector]",
        'hpke_public_key_file = "keys/collector.pub"',
        'hpke_private_key_file = "keys/collector.key"',
        "",
    ]
    atomic_write(task_toml, "\n".join(lines).encode(), 0o644)
    load_task_config(task_toml)  # what we wrote must parse
    return task_toml


def _write_secret(path: Path, text: str) -> None:
    atomic_write(path, (text + "\n").encode("ascii"), 0o600, overwrite=False)
