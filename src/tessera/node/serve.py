"""Every HTTP server of Tessera under uvicorn: loopback only, the same log settings,
readiness announced with the port, and a normal exit on SIGINT/SIGTERM.

``serve(app, host, port, on_ready=...)`` blocks until a signal; ``start_in_thread``
serves from a daemon thread (tests, the in-process launcher). Both bind the socket
themselves, so ``port=0`` picks a free port and a port in use is a
:class:`~tessera.errors.ConfigError` before uvicorn starts. The JSON-RPC chain of
:mod:`tessera.ledger.rpc_server` runs under the same :class:`NodeServer` with a
socket of its own (its refusals keep their own exit codes).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from tessera.errors import ConfigError

_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address literal) is a loopback interface."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host!r}: nodes listen on loopback only "
            "(127.0.0.1, ::1 or localhost; put a proxy in front to expose one)"
        )
    address = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Without it a reply written in two parts waits out the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


class NodeServer(uvicorn.Server):
    """uvicorn, announcing readiness, and exiting normally on SIGINT/SIGTERM."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises a caught signal after shutting down; a node that stopped
        # as asked exits normally. A second signal forces the exit.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    def stop(self) -> None:
        self.should_exit = True


def _server(app: ASGIApp, on_ready: Callable[[], None], log_level: str) -> NodeServer:
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
    )
    return NodeServer(config, on_ready)


def serve(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    on_ready: Callable[[int], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``port=0`` picks a free port, given to ``on_ready``."""
    sock = _bind(host, port)
    actual = int(sock.getsockname()[1])
    server = _server(app, (lambda: on_ready(actual)) if on_ready else (lambda: None), log_level)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def start_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    timeout: float = 10.0,
    log_level: str = "warning",
) -> tuple[NodeServer, threading.Thread, int]:
    """Serve ``app`` from a daemon thread; returns once it accepts connections.

    Stop it with ``server.stop(); thread.join()`` (or :func:`stop_thread`).
    """
    sock = _bind(host, port)
    actual = int(sock.getsockname()[1])
    ready = threading.Event()
    server = _server(app, ready.set, log_level)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"tessera-node-{actual}", daemon=True)
    thread.start()
    if not ready.wait(timeout):
        server.stop()
        thread.join(timeout)
        raise ConfigError(f"the node server on {host}:{actual} did not start")
    return server, thread, actual


def stop_thread(server: NodeServer, thread: threading.Thread, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start_in_thread` and wait for its thread."""
    server.stop()
    thread.join(timeout)
