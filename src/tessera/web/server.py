"""Serving the console: uvicorn in the foreground (``tessera web``) or in a thread (tests)."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

from tessera.web.app import LOOPBACK_NAMES, create_app
from tessera.web.console import Console


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(console: Console, host: str = "127.0.0.1", port: int = 8765) -> Any:
    """A uvicorn server for the console; a loopback console answers to loopback names only."""
    import uvicorn

    allowed = LOOPBACK_NAMES | {host} if is_loopback(host) else None
    app = create_app(console, allowed_hosts=allowed)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)


class ThreadedServer:
    """The console served from a thread of this process, until :meth:`stop`."""

    def __init__(self, console: Console, host: str = "127.0.0.1", port: int = 0) -> None:
        from tessera.node.launcher import free_port

        self.port = port or free_port()
        self.host = host
        self.server = make_server(console, host, self.port)
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the console did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
