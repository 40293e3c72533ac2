"""Telemetry task configuration: one TOML file per task, a description shared by every party.

It holds no secret. Each party keeps its own keys in its own state directory and
publishes only its public configuration (:mod:`tessera.node.telemetry.keys`)::

    [task]
    id = "<64 hex digits>"
    min_batch_size = 100
    time_precision = 60            # seconds; reports are bucketed by this
    report_expiry_age = 604800     # seconds; older reports are refused
    task_end = 1767225600          # Unix seconds; no report at or after it
    # allow_insecure_http_for_tests = true   # plain http:// to a non-loopback peer

    [task.vdaf]
    type = "Prio3Histogram"
    length = 100
    chunk_length = 10

    [dp]
    mechanism = "discrete_laplace"  # or "discrete_gaussian" (rho = ...) or "none"
    epsilon = "1"                   # a number or an exact fraction "1/2"

    [[aggregators]]                 # the first one is the leader
    url = "http://127.0.0.1:8701"
    public_config = "public/agg0.json"   # published by this aggregator
    state_dir = "agg0"                   # this aggregator's own keys and store
    # store = "postgresql://agg0@db.example/agg0"   # or a path; default state_dir/store.sqlite

    [collector]
    public_config = "public/collector.json"
    state_dir = "collector"
"""

from __future__ import annotations

import secrets
import time
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tessera.errors import ConfigError
from tessera.node.files import atomic_write
from tessera.node.serve import is_loopback
from tessera.node.store import is_dsn
from tessera.node.telemetry.keys import (
    PartyKeys,
    PublicConfig,
    ensure_party_keys,
    load_public_config,
)
from tessera.protocol.telemetry.collection import TimeBounds
from tessera.protocol.telemetry.messages import MAX_TIME
from tessera.protocol.telemetry.task import TASK_ID_SIZE, AnyVdaf, DpSpec, VdafSpec


@dataclass(frozen=True)
class Party:
    """A party as the task file describes it: where it publishes, where it keeps its keys."""

    name: str
    public_config_file: Path
    state_dir: Path | None

    def public_config(self, task_id: bytes) -> PublicConfig:
        """Its published configuration; :class:`ConfigError` until it has published one."""
        config = load_public_config(self.public_config_file, task_id)
        if config is None:
            raise ConfigError(
                f"{self.name} has not published its configuration yet "
                f"({self.public_config_file}): start it first"
            )
        return config

    def own_state_dir(self) -> Path:
        if self.state_dir is None:
            raise ConfigError(f"{self.name} has no state_dir in the task file")
        return self.state_dir

    def keys(self, task_id: bytes) -> PartyKeys:
        """This party's own keys, generated in its state directory on first use."""
        return ensure_party_keys(self.own_state_dir(), self.public_config_file, task_id)


@dataclass(frozen=True)
class AggregatorEndpoint(Party):
    """One aggregator as the task file describes it."""

    url: str = ""
    store: str = ""  # a postgresql:// DSN (no password) or an SQLite path; "" is the default

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    @property
    def store_path(self) -> Path:
        return self.own_state_dir() / "store.sqlite"

    @property
    def store_location(self) -> str:
        """Where this aggregator keeps its store: ``store``, else ``state_dir/store.sqlite``."""
        return self.store or str(self.store_path)


@dataclass(frozen=True)
class TaskConfig:
    """A parsed task file."""

    path: Path
    task_id: bytes
    vdaf_spec: VdafSpec
    min_batch_size: int
    time_precision: int
    time_bounds: TimeBounds
    dp: DpSpec
    aggregators: tuple[AggregatorEndpoint, ...]
    collector: Party
    allow_insecure_http_for_tests: bool = False

    @property
    def task_id_hex(self) -> str:
        return self.task_id.hex()

    def vdaf(self) -> AnyVdaf:
        return self.vdaf_spec.instantiate(len(self.aggregators))


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


def _check_url(url: str, where: str, allow_insecure: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ConfigError(f"{where}: url must look like https://agg.example:8701, got {url!r}")
    if parts.path not in ("", "/"):
        raise ConfigError(f"{where}: url must not have a path, got {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure:
        raise ConfigError(
            f"{where}: {url} is plain http to a host that is not loopback; credentials would "
            "travel in clear. Use https:// (a TLS-terminating proxy in front of the "
            "aggregator), or set allow_insecure_http_for_tests = true in [task] for a test"
        )


#: Keys of the former layout, where one command made every party's secrets.
_RETIRED = {
    "verify_key_file": "the leader makes the verify key and sends it to the helpers only",
    "auth_token_file": "credentials are derived from each party's own keys",
    "hpke_public_key_file": "each party publishes its own public_config",
    "hpke_private_key_file": "each party keeps its own keys in its state_dir",
    "store": "only an [[aggregators]] entry has a store",
}


def _refuse_retired(table: dict[str, Any], where: str, allowed: tuple[str, ...] = ()) -> None:
    for key, why in _RETIRED.items():
        if key in table and key not in allowed:
            raise ConfigError(
                f"{where}: {key} is no longer supported ({why}); "
                "recreate the task with `tessera telemetry init`"
            )


def _party(
    entry: dict[str, Any], base: Path, where: str, name: str, allowed: tuple[str, ...] = ()
) -> tuple[Path, Path | None]:
    _refuse_retired(entry, where, allowed)
    if "public_config" not in entry:
        raise ConfigError(
            f"{where}: missing key 'public_config' ({name} has no credential: a task "
            "without credentials is refused)"
        )
    public = _path(base, _get(entry, "public_config", str, where))
    assert public is not None
    return public, _path(base, _get(entry, "state_dir", str, where, None))


def _store(entry: dict[str, Any], base: Path, where: str) -> str:
    """An aggregator's ``store``: a DSN without a password, or a path; "" if unset."""
    store: str = _get(entry, "store", str, where, "")
    if not is_dsn(store):
        return str(_path(base, store)) if store else ""
    from tessera.node.store_postgres import check_dsn, redact

    if check_dsn(store, where).get("password"):
        raise ConfigError(
            f"{where}: store {redact(store)} has a password, and the task file is shared "
            "with every party: put it in ~/.pgpass (or $PGPASSFILE) or $PGPASSWORD instead"
        )
    return store


def parse_task_config(doc: dict[str, Any], path: Path) -> TaskConfig:
    """Validate a decoded TOML document; :class:`ConfigError` names the first problem."""
    base = path.parent
    where = str(path)
    task = _get(doc, "task", dict, where)
    _refuse_retired(task, f"{where} [task]")
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
    expiry = _get(task, "report_expiry_age", int, f"{where} [task]")
    task_end = _get(task, "task_end", int, f"{where} [task]")
    if expiry < 1 or not 0 < task_end <= MAX_TIME:
        raise ConfigError(
            f"{where} [task]: report_expiry_age must be >= 1 and task_end a Unix time"
        )
    insecure = _get(task, "allow_insecure_http_for_tests", bool, f"{where} [task]", False)
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
        _check_url(url, w, insecure)
        public, state = _party(entry, base, w, f"aggregator {i}", ("store",))
        store = _store(entry, base, w)
        aggs.append(AggregatorEndpoint(f"aggregator {i}", public, state, url, store))
    if len({a.url for a in aggs}) != len(aggs):
        raise ConfigError(f"{where}: aggregator urls must be distinct")
    try:
        spec.instantiate(len(aggs))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc

    if "collector" not in doc:
        raise ConfigError(
            f"{where}: missing key 'collector' (a task without a collector credential is refused)"
        )
    coll = _get(doc, "collector", dict, where)
    coll_public, coll_state = _party(coll, base, f"{where} [collector]", "the collector")
    files = [a.public_config_file for a in aggs] + [coll_public]
    if len(set(files)) != len(files):
        raise ConfigError(f"{where}: every party needs its own public_config file")
    states = [a.state_dir for a in aggs if a.state_dir] + ([coll_state] if coll_state else [])
    if len(set(states)) != len(states):
        raise ConfigError(f"{where}: every party needs its own state_dir")
    try:
        bounds = TimeBounds(expiry, task_end)
    except ValueError as exc:
        raise ConfigError(f"{where} [task]: {exc}") from exc
    return TaskConfig(
        path=path,
        task_id=task_id,
        vdaf_spec=spec,
        min_batch_size=min_batch,
        time_precision=precision,
        time_bounds=bounds,
        dp=dp,
        aggregators=tuple(aggs),
        collector=Party("the collector", coll_public, coll_state),
        allow_insecure_http_for_tests=insecure,
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


#: Defaults of ``tessera telemetry init``: reports live a week, a task a year.
DEFAULT_REPORT_EXPIRY_AGE = 7 * 24 * 3600
DEFAULT_TASK_LIFETIME = 365 * 24 * 3600


def write_task(
    directory: Path,
    vdaf: VdafSpec,
    *,
    aggregator_ports: list[int],
    min_batch_size: int,
    time_precision: int = 60,
    dp: DpSpec | None = None,
    host: str = "127.0.0.1",
    report_expiry_age: int = DEFAULT_REPORT_EXPIRY_AGE,
    task_end: int | None = None,
    allow_insecure_http_for_tests: bool = False,
) -> Path:
    """Create ``directory/task.toml``: a task description and nothing secret.

    Each party makes its own keys when it first runs (``tessera telemetry serve``
    for an aggregator, ``tessera telemetry keygen --collector`` or the first
    ``collect`` for the collector) and publishes its public configuration under
    ``public/``. ``task_end`` defaults to a year from now.
    """
    if len(aggregator_ports) < 2:
        raise ConfigError("at least two aggregators are needed")
    dp = dp or DpSpec("discrete_laplace", epsilon=Fraction(1))
    if task_end is None:
        task_end = int(time.time()) + DEFAULT_TASK_LIFETIME
    directory.mkdir(parents=True, exist_ok=True)
    task_toml = directory / "task.toml"
    if task_toml.exists():
        raise ConfigError(f"{task_toml} already exists; choose an empty directory")
    lines = [
        "[task]",
        f'id = "{secrets.token_bytes(TASK_ID_SIZE).hex()}"',
        f"min_batch_size = {min_batch_size}",
        f"time_precision = {time_precision}",
        f"report_expiry_age = {report_expiry_age}",
        f"task_end = {task_end}",
    ]
    if allow_insecure_http_for_tests:
        lines.append("allow_insecure_http_for_tests = true")
    lines += [
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
            f'public_config = "public/agg{i}.json"',
            f'state_dir = "agg{i}"',
        ]
    lines += [
        "",
        "[collector]",
        'public_config = "public/collector.json"',
        'state_dir = "collector"',
        "",
    ]
    atomic_write(task_toml, "\n".join(lines).encode(), 0o644)
    load_task_config(task_toml)  # what we wrote must parse
    return task_toml
