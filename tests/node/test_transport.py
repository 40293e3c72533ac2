"""One contract for both transports: in-process and HTTP (a real uvicorn on loopback)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tessera.errors import (
    BudgetExceeded,
    DecodeError,
    LedgerError,
    NotFound,
    PolicyViolation,
    RemoteError,
    Replay,
    TesseraError,
    TransportError,
    Unauthorized,
)
from tessera.node.envelope import NONCE, SIGNATURE, ReplayGuard, StaticDirectory, sign_request
from tessera.node.http import create_app, start_in_thread, stop_thread
from tessera.node.identity import Identity
from tessera.node.transport import HttpTransport, InProcessTransport, raise_for_reply

ALICE = Identity(bytes([1]) * 32)  # the caller
BOB = Identity(bytes([2]) * 32)  # the node called
CAROL = Identity(bytes([3]) * 32)  # another registered node
MALLORY = Identity(bytes([4]) * 32)  # signs, but is not in the directory
MAX_BODY = 4096


class Unlisted(TesseraError):
    """An error class that tessera.errors does not name."""


@dataclass
class Recorder:
    """A handler that echoes, refuses on demand, and records what it was asked."""

    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, body: dict[str, Any], sender: str) -> dict[str, Any]:
        with self.lock:
            self.calls.append((path, body, sender))
        if path == "echo":
            return {"echo": body, "sender": sender}
        if path == "budget":
            raise BudgetExceeded("dataset 7 has 0.1 of its zCDP budget left")
        if path == "ledger":
            raise LedgerError("the market refused", reason="query expired")
        if path == "unlisted":
            raise Unlisted("something odd")
        if path == "boom":
            raise RuntimeError("secret detail from deep inside")
        raise NotFound(f"no endpoint {path!r}")

    def progress(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}


@dataclass
class Net:
    """A caller (ALICE) and a node (BOB) behind one kind of transport."""

    transport: InProcessTransport | HttpTransport
    handler: Recorder
    guard: ReplayGuard

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.transport.call(BOB.address, path, body)

    def send(self, path: str, headers: dict[str, str], content: bytes) -> tuple[int, bytes]:
        return self.transport.send(BOB.address, path, headers, content)

    def raw(self, path: str, headers: dict[str, str], content: bytes) -> dict[str, Any]:
        """Send prepared bytes; refusals raised as :meth:`Transport.call` raises them."""
        return raise_for_reply(BOB.address, path, *self.send(path, headers, content))


def _directory() -> StaticDirectory:
    return StaticDirectory.of([ALICE, BOB, CAROL])


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[int, Recorder, ReplayGuard]]:
    handler, guard = Recorder(), ReplayGuard()
    app = create_app(handler, BOB, _directory(), guard, max_body=MAX_BODY)
    server, thread, port = start_in_thread(app)
    yield port, handler, guard
    stop_thread(server, thread)


@pytest.fixture(params=["inprocess", "http"])
def net(request: pytest.FixtureRequest) -> Iterator[Net]:
    if request.param == "inprocess":
        handler, guard = Recorder(), ReplayGuard()
        transport = InProcessTransport(ALICE, _directory(), max_body=MAX_BODY)
        transport.register(BOB.address, handler, guard)
        yield Net(transport, handler, guard)
        return
    port, handler, guard = request.getfixturevalue("http_server")
    handler.calls.clear()
    with HttpTransport(ALICE, {BOB.address: f"http://127.0.0.1:{port}"}, timeout=10) as t:
        yield Net(t, handler, guard)


def _signed(
    body: bytes, *, who: Identity = ALICE, to: Identity = BOB, path: str = "echo", **kw: Any
) -> dict[str, str]:
    return sign_request(who, to.address, path, body, **kw)


# -- the happy path -------------------------------------------------------------------------


def test_round_trip_names_the_verified_sender(net: Net) -> None:
    body = {"x": [1, 2.5, "é", None, True], "nested": {"k": "v"}}
    reply = net.call("echo", body)
    assert reply == {"echo": body, "sender": ALICE.address}
    assert net.handler.calls == [("echo", body, ALICE.address)]


def test_each_call_is_fresh(net: Net) -> None:
    for i in range(3):
        assert net.call("echo", {"i": i})["echo"] == {"i": i}
    assert len(net.handler.calls) == 3


def test_progress_is_served(net: Net) -> None:
    net.call("echo", {})
    assert net.transport.progress(BOB.address) == {"calls": 1}


# -- refusals by the handler come back as the same class ----------------------------------


def test_remote_error_class_is_reraised(net: Net) -> None:
    with pytest.raises(BudgetExceeded, match=r"0\.1 of its zCDP budget left") as info:
        net.call("budget", {})
    assert type(info.value) is BudgetExceeded
    assert isinstance(info.value, PolicyViolation)


def test_ledger_error_keeps_its_reason(net: Net) -> None:
    with pytest.raises(LedgerError) as info:
        net.call("ledger", {})
    assert info.value.reason == "query expired"


def test_unknown_path_is_not_found(net: Net) -> None:
    with pytest.raises(NotFound, match="nowhere"):
        net.call("nowhere", {})


def test_error_class_not_in_the_tree_is_a_remote_error(net: Net) -> None:
    with pytest.raises(RemoteError, match="Unlisted: something odd") as info:
        net.call("unlisted", {})
    assert info.value.status == 500


def test_crash_is_500_without_details(net: Net) -> None:
    with pytest.raises(RemoteError) as info:
        net.call("boom", {})
    assert info.value.status == 500
    assert "secret detail" not in str(info.value)
    assert "Traceback" not in str(info.value)


# -- peers that cannot be reached -----------------------------------------------------------


def test_unknown_peer_is_a_transport_error(net: Net) -> None:
    with pytest.raises(TransportError, match=CAROL.address) as info:
        net.transport.call(CAROL.address, "echo", {})
    assert "echo" in str(info.value)
    assert not isinstance(info.value, RemoteError)


def test_unreachable_peer_is_a_transport_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with HttpTransport(ALICE, {BOB.address: f"http://127.0.0.1:{port}"}, timeout=5) as t:
        with pytest.raises(TransportError, match=rf"{BOB.address}.*echo") as info:
            t.call(BOB.address, "echo", {})
        assert not isinstance(info.value, RemoteError)


def test_not_an_address_is_a_transport_error(net: Net) -> None:
    with pytest.raises(TransportError, match="not an address"):
        net.transport.call("bob", "echo", {})


# -- authentication -------------------------------------------------------------------------


def test_unsigned_request_is_unauthorized(net: Net) -> None:
    with pytest.raises(Unauthorized, match="unsigned"):
        net.raw("echo", {}, b"{}")
    assert net.handler.calls == []


@pytest.mark.parametrize("missing", [NONCE, SIGNATURE])
def test_request_missing_a_header_is_unauthorized(net: Net, missing: str) -> None:
    headers = _signed(b"{}")
    del headers[missing]
    with pytest.raises(Unauthorized, match=missing):
        net.raw("echo", headers, b"{}")
    assert net.handler.calls == []


def test_key_not_in_the_directory_is_unauthorized(net: Net) -> None:
    with pytest.raises(Unauthorized, match="no registered key") as info:
        net.raw("echo", _signed(b"{}", who=MALLORY), b"{}")
    assert not isinstance(info.value, Replay)
    assert net.handler.calls == []


def test_claiming_another_sender_is_unauthorized(net: Net) -> None:
    headers = _signed(b"{}", who=MALLORY)
    headers["X-Tessera-Sender"] = CAROL.address  # registered, but Mallory lacks the key
    with pytest.raises(Unauthorized, match="does not verify"):
        net.raw("echo", headers, b"{}")
    assert net.handler.calls == []


def test_tampered_body_is_unauthorized(net: Net) -> None:
    headers = _signed(b'{"amount":1}')
    with pytest.raises(Unauthorized):
        net.raw("echo", headers, b'{"amount":9}')
    assert net.handler.calls == []


def test_signature_for_another_path_is_unauthorized(net: Net) -> None:
    headers = _signed(b"{}", path="echo")
    with pytest.raises(Unauthorized):
        net.raw("budget", headers, b"{}")
    assert net.handler.calls == []


def test_message_for_another_recipient_is_unauthorized(net: Net) -> None:
    with pytest.raises(Unauthorized, match="addressed to"):
        net.raw("echo", _signed(b"{}", to=CAROL), b"{}")
    assert net.handler.calls == []


def test_replayed_request_is_refused_and_handled_once(net: Net) -> None:
    headers = _signed(b'{"pay":1}')
    assert net.raw("echo", headers, b'{"pay":1}')["echo"] == {"pay": 1}
    with pytest.raises(Replay, match="replayed"):
        net.raw("echo", headers, b'{"pay":1}')
    assert len(net.handler.calls) == 1


def test_nonce_in_upper_case_is_not_a_fresh_nonce(net: Net) -> None:
    headers = _signed(b"{}")
    net.raw("echo", headers, b"{}")
    headers[NONCE] = headers[NONCE].upper()
    with pytest.raises(Unauthorized):
        net.raw("echo", headers, b"{}")
    assert len(net.handler.calls) == 1


def test_forged_request_does_not_burn_the_nonce(net: Net) -> None:
    nonce = bytes(range(16))
    forged = _signed(b'{"a":1}', nonce=nonce)
    forged[SIGNATURE] = _signed(b'{"a":2}', nonce=nonce)[SIGNATURE]
    with pytest.raises(Unauthorized):
        net.raw("echo", forged, b'{"a":1}')
    genuine = _signed(b'{"a":1}', nonce=nonce)
    assert net.raw("echo", genuine, b'{"a":1}')["echo"] == {"a": 1}


@pytest.mark.parametrize("skew", [-121.0, 121.0])
def test_timestamp_outside_the_window_is_a_replay(net: Net, skew: float) -> None:
    import time

    headers = _signed(b"{}", now=time.time() + skew)
    with pytest.raises(Replay, match="allowed"):
        net.raw("echo", headers, b"{}")
    assert net.handler.calls == []


def test_timestamp_inside_the_window_is_accepted(net: Net) -> None:
    import time

    headers = _signed(b"{}", now=time.time() - 100)
    assert net.raw("echo", headers, b"{}")["sender"] == ALICE.address


# -- bodies ---------------------------------------------------------------------------------


def test_oversized_body_is_413_and_not_handled(net: Net) -> None:
    body = {"blob": "x" * MAX_BODY}
    stored = len(net.guard)
    with pytest.raises(RemoteError, match=f"exceeds {MAX_BODY} bytes") as info:
        net.call("echo", body)
    assert info.value.status == 413
    assert net.handler.calls == []
    assert len(net.guard) == stored  # refused before verification: no nonce kept


def test_body_at_the_limit_is_accepted(net: Net) -> None:
    body = {"blob": ""}
    overhead = len(json.dumps(body, separators=(",", ":")))
    body["blob"] = "x" * (MAX_BODY - overhead)
    assert net.call("echo", body)["echo"] == body


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"a":1', "malformed JSON body"),
        (b"[1,2]", "an object is expected, not list"),
        (b'"text"', "an object is expected, not str"),
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b'{"a":NaN}', "NaN is not JSON"),
        (b'{"a":-Infinity}', "-Infinity is not JSON"),
        (b'{"a":"\xff"}', "not UTF-8"),
        pytest.param(b'{"a":' + b"[" * 500 + b"]" * 500 + b"}", "nested deeper than 64", id="deep"),
    ],
)
def test_malformed_body_is_a_decode_error_naming_the_problem(
    net: Net, content: bytes, problem: str
) -> None:
    with pytest.raises(DecodeError, match=problem):
        net.raw("echo", _signed(content), content)
    assert net.handler.calls == []


def test_body_that_json_cannot_carry_is_refused_before_sending(net: Net) -> None:
    with pytest.raises(ValueError):
        net.call("echo", {"x": float("nan")})
    assert net.handler.calls == []
