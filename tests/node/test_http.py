"""What only the HTTP side does: status codes, streaming limits, loopback, start and stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.errors import (
    BudgetExceeded,
    ConfigError,
    DecodeError,
    DkgError,
    DlogError,
    InvalidProof,
    LedgerError,
    NotFound,
    ProtocolError,
    QueryError,
    Replay,
    TesseraError,
    TransportError,
)
from tessera.node.envelope import ReplayGuard, StaticDirectory, sign_request
from tessera.node.http import create_app
from tessera.node.identity import Identity
from tessera.node.serve import start_in_thread, stop_thread
from tessera.node.transport import HttpTransport

ALICE = Identity(bytes([1]) * 32)
BOB = Identity(bytes([2]) * 32)
LIMIT = 2048

RAISES: dict[str, TesseraError] = {
    "decode": DecodeError("bad point"),
    "query": QueryError("unsupported SQL"),
    "budget": BudgetExceeded("no budget"),
    "proof": InvalidProof("range proof failed"),
    "protocol": ProtocolError("step out of order"),
    "dkg": DkgError("no qualified set"),
    "ledger": LedgerError("chain refused", reason="not a member"),
    "transport": TransportError("peer down"),
    "replay": Replay("seen"),
    "notfound": NotFound("no such query"),
    "config": ConfigError("bad config"),
    "dlog": DlogError("out of range"),
}


class Handler:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def handle(self, path: str, body: dict[str, Any], sender: str) -> dict[str, Any]:
        self.calls.append(path)
        if path in RAISES:
            raise RAISES[path]
        if path == "crash":
            raise KeyError("internal/secret/path.py")
        if path == "not-json":
            return {"x": object()}
        return {"ok": True}

    def progress(self) -> dict[str, Any]:
        return {"queries": {"running": 1}}


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[str, Handler]]:
    handler = Handler()
    app = create_app(handler, BOB, StaticDirectory.of([ALICE, BOB]), ReplayGuard(), max_body=LIMIT)
    server, thread, port = start_in_thread(app)
    yield f"http://127.0.0.1:{port}", handler
    stop_thread(server, thread)
    assert not thread.is_alive()


def _post(url: str, path: str, body: bytes, **kw: Any) -> httpx.Response:
    headers = sign_request(ALICE, BOB.address, path, body)
    return httpx.post(f"{url}/v1/{path}", content=body, headers=headers, trust_env=False, **kw)


def test_health_and_progress(node: tuple[str, Handler]) -> None:
    url, _ = node
    t = HttpTransport(ALICE, {BOB.address: url})
    assert t.health(BOB.address) == {"address": BOB.address, "status": "ok"}
    assert t.progress(BOB.address) == {"queries": {"running": 1}}
    t.close()
    # unsigned GETs, no envelope needed
    assert httpx.get(f"{url}/v1/health", trust_env=False).json()["address"] == BOB.address


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("decode", 400),
        ("query", 400),
        ("budget", 403),
        ("proof", 422),
        ("protocol", 422),
        ("dkg", 422),
        ("ledger", 502),
        ("transport", 502),
        ("replay", 409),
        ("notfound", 404),
        ("config", 500),
        ("dlog", 500),
    ],
)
def test_error_statuses_and_bodies(node: tuple[str, Handler], path: str, status: int) -> None:
    url, _ = node
    res = _post(url, path, b"{}")
    assert res.status_code == status
    expected: dict[str, Any] = {
        "error": type(RAISES[path]).__name__,
        "message": str(RAISES[path]),
    }
    if path == "ledger":
        expected["reason"] = "not a member"
    assert res.json() == expected
    assert res.headers["content-type"] == "application/json"


def test_unauthorized_is_401(node: tuple[str, Handler]) -> None:
    url, _ = node
    res = httpx.post(f"{url}/v1/anything", content=b"{}", trust_env=False)
    assert res.status_code == 401 and res.json()["error"] == "Unauthorized"


def test_crash_is_500_without_a_traceback(node: tuple[str, Handler]) -> None:
    url, _ = node
    for path in ("crash", "not-json"):
        res = _post(url, path, b"{}")
        assert res.status_code == 500
        assert res.json() == {"error": "InternalError", "message": "internal error"}


def _read_response(s: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_declared_length_over_the_limit_is_refused_before_the_body(
    node: tuple[str, Handler],
) -> None:
    url, handler = node
    before = len(handler.calls)
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n{"
        )
        reply = _read_response(s)  # answered without waiting for a gigabyte
    assert reply.startswith("HTTP/1.1 413")
    assert f"exceeds {LIMIT} bytes" in reply
    assert len(handler.calls) == before


def test_streamed_body_over_the_limit_is_cut_off(node: tuple[str, Handler]) -> None:
    url, handler = node
    before = len(handler.calls)
    body = b'{"x":"' + b"y" * (3 * LIMIT) + b'"}'
    headers = sign_request(ALICE, BOB.address, "echo", body)

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    res = httpx.post(f"{url}/v1/echo", content=chunks(), headers=headers, trust_env=False)
    assert res.status_code == 413
    assert res.json()["message"] == f"request body exceeds {LIMIT} bytes"
    assert len(handler.calls) == before


def test_stream_is_cut_off_without_waiting_for_its_end(node: tuple[str, Handler]) -> None:
    url, handler = node
    before = len(handler.calls)
    host, port = url.removeprefix("http://").split(":")
    chunk = b"x" * (LIMIT + 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )  # ... and the stream never ends: only counting the bytes as they come answers
        reply = _read_response(s)
    assert reply.startswith("HTTP/1.1 413")
    assert len(handler.calls) == before


def test_streamed_body_under_the_limit_is_accepted(node: tuple[str, Handler]) -> None:
    url, _ = node
    body = json.dumps({"x": "y" * 1000}).encode()
    headers = sign_request(ALICE, BOB.address, "echo", body)
    res = httpx.post(
        f"{url}/v1/echo", content=iter([body[:300], body[300:]]), headers=headers, trust_env=False
    )
    assert res.status_code == 200 and res.json() == {"ok": True}


def test_percent_encoded_path_is_not_a_way_around_the_path_rules(
    node: tuple[str, Handler],
) -> None:
    url, handler = node
    before = len(handler.calls)
    res = httpx.post(f"{url}/v1/a%2F..%2Fb", content=b"{}", trust_env=False)
    assert res.status_code == 404 and res.json()["error"] == "NotFound"
    assert len(handler.calls) == before


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_host_is_refused(host: str) -> None:
    app = create_app(Handler(), BOB, StaticDirectory(), ReplayGuard())
    with pytest.raises(ConfigError, match="loopback only"):
        start_in_thread(app, host=host)


def test_port_in_use_is_a_config_error(node: tuple[str, Handler]) -> None:
    url, _ = node
    port = int(url.rsplit(":", 1)[1])
    app = create_app(Handler(), BOB, StaticDirectory(), ReplayGuard())
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
        start_in_thread(app, port=port)


def test_stopped_server_is_unreachable() -> None:
    app = create_app(Handler(), BOB, StaticDirectory.of([ALICE]), ReplayGuard())
    server, thread, port = start_in_thread(app)
    with HttpTransport(ALICE, {BOB.address: f"http://127.0.0.1:{port}"}, timeout=5) as t:
        assert t.call(BOB.address, "echo", {}) == {"ok": True}
        stop_thread(server, thread)
        assert not thread.is_alive()
        with pytest.raises(TransportError, match="cannot reach"):
            t.call(BOB.address, "echo", {})


def test_slow_peer_times_out() -> None:
    with socket.socket() as s:  # listens, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with (
            HttpTransport(ALICE, {BOB.address: url}, timeout=30) as t,
            pytest.raises(TransportError, match=r"did not answer echo within 0\.3 s"),
        ):
            t.call(BOB.address, "echo", {}, timeout=0.3)


def test_serve_picks_a_port_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from tessera.node.envelope import ReplayGuard, StaticDirectory
        from tessera.node.http import create_app
        from tessera.node.serve import serve
        from tessera.node.identity import Identity

        class H:
            def handle(self, path, body, sender):
                return {}
            def progress(self):
                return {}

        app = create_app(H(), Identity(bytes([2]) * 32), StaticDirectory(), ReplayGuard())
        serve(app, "127.0.0.1", 0, on_ready=lambda port: print(port, flush=True))
        print("stopped", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert port > 0
        res = httpx.get(f"http://127.0.0.1:{port}/v1/health", trust_env=False)
        assert res.json() == {"address": BOB.address, "status": "ok"}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "stopped"


def test_one_status_table_for_every_service() -> None:
    """The nodes' API and the telemetry aggregators answer from errors.HTTP_STATUS."""
    from tessera import errors

    assert [errors.http_status(e) for e in (errors.BodyTooLarge("x"), DecodeError("x"))] == [
        413,
        400,
    ]
    assert errors.http_status(errors.BatchCollected("x")) == 409
    assert errors.http_status(errors.BatchTooSmall("x")) == 403
    assert errors.http_status(errors.Unauthorized("x")) == 401
    assert errors.http_status(errors.VerificationFailed("x")) == 500
    assert errors.http_status(RuntimeError("x")) == 500
    for table in (errors.HTTP_STATUS, errors.EXIT_CODES):
        classes = [cls for cls, _ in table]
        for i, cls in enumerate(classes):  # most specific first: none shadows a later one
            assert not any(issubclass(later, cls) for later in classes[i + 1 :]), cls
