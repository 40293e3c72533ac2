"""A whole local network as real processes: ``tessera network up | down | status``.

``up`` reads one TOML file, then, in a state directory:

1. starts the chain (``tessera ledger serve``) and deploys the contracts;
2. creates a key (Ethereum keystore) for the analyst and every provider, node and
   verifier; funds each account, registers it with its role and public key on the
   ledger; the nodes stake; computing-node indices follow their addresses' order;
3. writes each role's configuration and the peers file, and starts one process per
   role (``tessera node run --config ...``), each with its own SQLite state;
4. asks node 1 to run the DKG with the others over the network, which registers
   the committee and its key shares on the ledger.

``network.json`` in the state directory records the processes, ports and files,
for ``status``, ``down`` and the analyst's session (:func:`open_session`).

The network file::

    [network]
    nodes = 3
    threshold = 2
    verifiers = 1

    [[provider]]
    name = "hospital-a"
    [provider.tables.patients]
    source = "hospital-a.csv"
    bounds = { age = [18, 95], sex = ["F", "M"] }
    policy = { min_cohort = 10, budget_rho = 5.0 }
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web3.types import Wei

from tessera.errors import ConfigError, TesseraError, TransportError
from tessera.ledger import LedgerClient, RpcChain, deploy
from tessera.node.analyst import NetworkAnalyst, Peer
from tessera.node.config import read_toml, save_peers
from tessera.node.files import atomic_write
from tessera.node.identity import Identity, load_keystore, save_keystore
from tessera.node.transport import HttpTransport

HOST = "127.0.0.1"
STATE_FILE = "network.json"
ANALYST_CREDITS = 10**12
NODE_STAKE = 1_000  # the minimum stake of a committee member, and what one slash takes
NODE_BOND = 10 * NODE_STAKE  # what each node stakes: a node slashed once still serves
ETH = 10**20


#: Ports :func:`free_port` handed out lately, one empty file each, shared by every process.
PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "tessera-ports"
#: How long a port handed out stays reserved (the process given it binds it within that).
PORT_RESERVATION_SECONDS = 120.0


def free_port() -> int:
    """A loopback port free now that no other process got from this function in the last
    two minutes. The port is bound later, by the process it is given to, so two networks
    started at once (parallel test workers, two ``network up``) could otherwise be handed
    the same one; a reservation file (created with ``O_EXCL``) makes them take turns."""
    port = 0
    for _ in range(64):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if _reserve(port):
            return port
    return port  # every try reserved elsewhere: the port is at least free now


def _reserve(port: int) -> bool:
    mark = PORT_RESERVATIONS / str(port)
    try:
        PORT_RESERVATIONS.mkdir(mode=0o1777, exist_ok=True)
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        return True
    except FileExistsError:
        try:
            if time.time() - mark.stat().st_mtime < PORT_RESERVATION_SECONDS:
                return False
            os.utime(mark)  # an old reservation: the port is ours now
        except OSError:
            pass
        return True
    except OSError:  # no shared directory here: the port is free, which is all we know
        return True


@dataclass
class ProviderSpec:
    name: str
    tables: dict[str, dict[str, Any]]
    adversary: str = ""  # test hook: a tessera.testing.adversary wrapper for this provider


@dataclass
class NetworkSpec:
    nodes: int = 3
    threshold: int = 2
    verifiers: int = 1
    providers: list[ProviderSpec] = field(default_factory=list)
    kdf_iterations: int | None = None  # scrypt cost of the key files (None: the standard)
    cheating_nodes: tuple[int, ...] = ()  # test hook: nodes that corrupt key switching

    @classmethod
    def load(cls, path: Path) -> NetworkSpec:
        data = read_toml(path)
        net = data.get("network", {})
        providers = []
        for p in data.get("provider", []):
            if "name" not in p or "tables" not in p:
                raise ConfigError(f"{path}: every [[provider]] needs a name and tables")
            tables = {}
            for t, spec in p["tables"].items():
                spec = dict(spec)
                src = Path(spec["source"])
                spec["source"] = str(src if src.is_absolute() else (path.parent / src).resolve())
                tables[t] = spec
            providers.append(ProviderSpec(p["name"], tables))
        spec = cls(
            nodes=int(net.get("nodes", 3)),
            threshold=int(net.get("threshold", 2)),
            verifiers=int(net.get("verifiers", 1)),
            providers=providers,
            kdf_iterations=net.get("kdf_iterations"),
        )
        spec.check(str(path))
        return spec

    def check(self, where: str) -> None:
        if not 1 <= self.threshold <= self.nodes:
            raise ConfigError(f"{where}: threshold {self.threshold} not in [1, {self.nodes}]")
        if self.verifiers < 1 or not self.providers:
            raise ConfigError(f"{where}: a network needs providers and at least one verifier")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: provider names must be unique")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise ConfigError(f"cannot write {v!r} to TOML")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write(path, text.encode(), mode)


@dataclass
class Member:
    name: str
    role: str  # analyst | provider | node | verifier
    identity: Identity
    port: int = 0
    index: int | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}" if self.port else ""


def _tessera(*args: str) -> list[str]:
    return [sys.executable, "-m", "tessera.cli.main", *args]


def _spawn(cmd: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not them
        )
    finally:
        out.close()


def wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None,
               log: Path | None, timeout: float = 60.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise TransportError(f"{what} exited with code {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise TransportError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.1)


def _chain_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return int(RpcChain(url, timeout=2).w3.eth.chain_id) > 0
        except Exception:
            return False

    return ready


class Network:
    """A local network's processes and files (``network.json`` in ``state_dir``)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir).resolve()
        self.state: dict[str, Any] = {}
        path = self.dir / STATE_FILE
        if path.is_file():
            try:
                self.state = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{path}: malformed ({exc})") from exc

    def _save(self) -> None:
        _write(self.dir / STATE_FILE, json.dumps(self.state, indent=2) + "\n")

    @property
    def password(self) -> str:
        return (self.dir / "password").read_text(encoding="utf-8").strip()

    # -- up ------------------------------------------------------------------------------
    def up(
        self, spec: NetworkSpec, progress: Callable[[str], None] = lambda _m: None
    ) -> dict[str, Any]:
        if self.state.get("processes") and any(_alive(p["pid"]) for p in self.state["processes"]):
            raise ConfigError(f"a network is already running from {self.dir} (network down)")
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("keys", "config", "state", "logs"):
            (self.dir / sub).mkdir(exist_ok=True)
        _write(self.dir / "password", secrets.token_hex(16) + "\n", 0o600)
        self.state = {"processes": [], "spec": {"nodes": spec.nodes, "t": spec.threshold}}
        try:
            self._up(spec, progress)
        except BaseException:
            self.down()
            raise
        return self.state

    def _start(self, name: str, cmd: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = self.dir / "logs" / f"{name}.log"
        proc = _spawn(cmd, log, env)
        self.state["processes"].append(
            {"name": name, "pid": proc.pid, "log": str(log), "cmd": cmd, "env": sorted(env)}
        )
        self._save()
        return proc

    def _up(self, spec: NetworkSpec, progress: Callable[[str], None]) -> None:
        password = self.password
        chain_port = free_port()
        rpc = f"http://{HOST}:{chain_port}"
        progress(f"starting the chain on {rpc}")
        journal = self.dir / "chain.journal"
        journal.unlink(missing_ok=True)  # a new network: a new chain
        chain_cmd = ["ledger", "serve", "--port", str(chain_port), "--state", str(journal)]
        chain_proc = self._start("chain", _tessera(*chain_cmd), {})
        wait_until(_chain_ready(rpc), "the chain", chain_proc, self.dir / "logs" / "chain.log")
        chain = RpcChain(rpc)
        deployment = deploy(
            chain,
            verifiers_per_query=min(spec.verifiers, 16),
            min_stake=NODE_STAKE,
            slash_amount=NODE_STAKE,
        )
        deployment.save(self.dir / "deployment.json")
        self.state.update(rpc=rpc, deployment=str(self.dir / "deployment.json"))
        admin = LedgerClient(chain, deployment, deployment.admin)

        progress("creating keys and registering every participant on the ledger")
        members = [Member("analyst", "analyst", Identity.generate())]
        members += [Member(p.name, "provider", Identity.generate()) for p in spec.providers]
        nodes = sorted(
            (Identity.generate() for _ in range(spec.nodes)), key=lambda i: int(i.address, 16)
        )
        members += [Member(f"node-{i}", "node", ident, index=i) for i, ident in enumerate(nodes, 1)]
        members += [
            Member(f"verifier-{i}", "verifier", Identity.generate())
            for i in range(1, spec.verifiers + 1)
        ]
        for m in members:
            save_keystore(
                m.identity,
                self.dir / "keys" / f"{m.name}.json",
                password,
                iterations=spec.kdf_iterations,
            )
            chain.w3.eth.send_transaction(
                {"from": chain.accounts[0], "to": m.identity.address, "value": Wei(ETH)}
            )
            if m.role != "analyst":
                m.port = free_port()
        admin.register_many(
            [(m.identity.address, m.role, m.identity.public_key) for m in members]  # type: ignore[misc]
        )
        analyst = LedgerClient(
            chain, deployment, members[0].identity.address, signer=members[0].identity.private_key
        )
        admin.mint(analyst.account, ANALYST_CREDITS)
        analyst.approve(deployment.market, 2**256 - 1)
        for m in members:
            if m.role in ("node", "verifier"):
                admin.mint(m.identity.address, NODE_BOND)
                client = LedgerClient(
                    chain, deployment, m.identity.address, signer=m.identity.private_key
                )
                client.stake(NODE_BOND)
                if m.role == "verifier":  # drawn for queries from the staked pool
                    client.join_pool()
        peers = [
            Peer(m.name, m.role, m.identity.address, m.url, m.index)
            for m in members
            if m.role != "analyst"
        ]
        save_peers(self.dir / "peers.json", peers)

        progress(f"starting {len(peers)} role processes")
        procs = []
        for m in members[1:]:
            cfg = self.dir / "config" / f"{m.name}.toml"
            _write(cfg, self._role_toml(m, spec, rpc))
            proc = self._start(
                m.name,
                _tessera("node", "run", "--config", str(cfg)),
                {"TESSERA_KEY_PASSWORD": password},
            )
            procs.append((m, proc))
        transport = HttpTransport(members[0].identity, {p.address: p.url for p in peers})
        try:
            for m, proc in procs:
                wait_until(
                    _healthy(transport, m.identity.address),
                    m.name,
                    proc,
                    self.dir / "logs" / f"{m.name}.log",
                )
            progress(f"distributed key generation: {spec.nodes} nodes, threshold {spec.threshold}")
            node1 = next(m for m in members if m.index == 1)
            key = transport.call(node1.identity.address, "dkg/run", {}, timeout=300)
        finally:
            transport.close()
        self.state.update(
            committee=key["committee"],
            committee_key=key["public_key"],
            analyst_keystore=str(self.dir / "keys" / "analyst.json"),
            peers=str(self.dir / "peers.json"),
        )
        self._save()
        progress(f"committee {key['committee']} registered with key {key['public_key'][:16]}...")

    def _role_toml(self, m: Member, spec: NetworkSpec, rpc: str) -> str:
        lines = [
            f"role = {json.dumps(m.role)}",
            f"name = {json.dumps(m.name)}",
            f"port = {m.port}",
            f"data_dir = {json.dumps(str(self.dir / 'state' / m.name))}",
            f"keystore = {json.dumps(str(self.dir / 'keys' / (m.name + '.json')))}",
            'password_env = "TESSERA_KEY_PASSWORD"',
            f"peers = {json.dumps(str(self.dir / 'peers.json'))}",
        ]
        if m.role == "node" and m.index in spec.cheating_nodes:
            lines.append('adversary = "corrupt-key-switch"')
        cheat = next((p.adversary for p in spec.providers if p.name == m.name), "")
        if m.role == "provider" and cheat:
            lines.append(f"adversary = {json.dumps(cheat)}")
        lines += [
            "",
            "[ledger]",
            f"rpc = {json.dumps(rpc)}",
            f"deployment = {json.dumps(str(self.dir / 'deployment.json'))}",
        ]
        if m.role == "node":
            lines += [
                "",
                "[node]",
                f"index = {m.index}",
                f"n = {spec.nodes}",
                f"t = {spec.threshold}",
            ]
        if m.role == "provider":
            p = next(p for p in spec.providers if p.name == m.name)
            for t, tspec in p.tables.items():
                lines += ["", f"[tables.{t}]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in tspec.items()]
        return "\n".join(lines) + "\n"

    # -- down / status -------------------------------------------------------------------
    def down(self, timeout: float = 10.0) -> list[str]:
        """Stop every process (roles first, the chain last); the names stopped."""
        stopped = []
        procs = list(self.state.get("processes", []))
        for group in (
            [p for p in procs if p["name"] != "chain"],
            [p for p in procs if p["name"] == "chain"],
        ):
            for p in group:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p["pid"], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for p in group:
                while _alive(p["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(p["pid"]):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(p["pid"], signal.SIGKILL)
                stopped.append(p["name"])
        if self.state:
            self.state["processes"] = []
            if self.dir.is_dir():
                self._save()
        return stopped

    def status(self) -> dict[str, Any]:
        if not self.state:
            raise ConfigError(f"no network in {self.dir} (network up)")
        out: dict[str, Any] = {
            "rpc": self.state.get("rpc"),
            "committee": self.state.get("committee"),
        }
        out["chain"] = (
            "up" if self.state.get("rpc") and _chain_ready(self.state["rpc"])() else "down"
        )
        peers = _load_peer_list(Path(self.state["peers"])) if self.state.get("peers") else []
        pids = {p["name"]: p["pid"] for p in self.state.get("processes", [])}
        roles = {}
        with HttpTransport(Identity.generate(), {p.address: p.url for p in peers}) as t:
            for p in peers:
                entry: dict[str, Any] = {"role": p.role, "url": p.url, "pid": pids.get(p.name)}
                try:
                    t.health(p.address)
                    entry["status"] = "up"
                    entry["progress"] = t.progress(p.address).get("jobs", {})
                except TesseraError:
                    entry["status"] = "down"
                roles[p.name] = entry
        out["roles"] = roles
        return out

    def pid_of(self, name: str) -> int:
        for p in self.state.get("processes", []):
            if p["name"] == name:
                return int(p["pid"])
        raise ConfigError(f"no process named {name!r}")

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start process ``name`` (a role, or ``chain``) again as it was started.

        ``timeout``: seconds to wait for it to answer. A restarted chain replays its whole
        journal first, so its start-up grows with the chain's history."""
        entry = next((p for p in self.state["processes"] if p["name"] == name), None)
        if entry is None:
            raise ConfigError(f"no process named {name!r}")
        self.state["processes"].remove(entry)
        env = {"TESSERA_KEY_PASSWORD": self.password} if entry.get("env") else {}
        proc = self._start(name, entry["cmd"], env)
        log = self.dir / "logs" / f"{name}.log"
        if name == "chain":
            wait_until(_chain_ready(self.state["rpc"]), name, proc, log, timeout)
            return
        peer = next(p for p in _load_peer_list(Path(self.state["peers"])) if p.name == name)
        with HttpTransport(Identity.generate(), {peer.address: peer.url}) as t:
            wait_until(_healthy(t, peer.address), name, proc, log, timeout)


def _load_peer_list(path: Path) -> list[Peer]:
    from tessera.node.config import load_peers

    return load_peers(path)


def _healthy(transport: HttpTransport, address: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            transport.health(address)
            return True
        except TesseraError:
            return False

    return ready


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def open_session(state_dir: Path, rng: Any = None) -> tuple[NetworkAnalyst, HttpTransport]:
    """The analyst's client for the network in ``state_dir``."""
    net = Network(state_dir)
    if not net.state.get("committee") and net.state.get("committee") != 0:
        raise ConfigError(f"no running network in {state_dir} (network up)")
    identity = load_keystore(Path(net.state["analyst_keystore"]), net.password)
    peers = _load_peer_list(Path(net.state["peers"]))
    return session_for(net.state, peers, identity, rng)


def session_for(
    state: Mapping[str, Any], peers: Sequence[Peer], identity: Identity, rng: Any = None
) -> tuple[NetworkAnalyst, HttpTransport]:
    """The analyst's session as ``identity`` over a running network (its ``state``, the
    launcher's, and its ``peers``): the ledger client, one keep-alive transport to the
    roles, and the :class:`NetworkAnalyst` over both."""
    from tessera.node.dlog_cache import discrete_log
    from tessera.node.runner import connect_ledger

    # a few seconds, not a role's 30: a user asking while the chain is down is told so
    ledger = connect_ledger(state["rpc"], Path(state["deployment"]), identity, wait=5.0)
    transport = HttpTransport(identity, {p.address: p.url for p in peers})
    analyst = NetworkAnalyst(ledger, transport, peers, int(state["committee"]), discrete_log, rng)
    return analyst, transport
