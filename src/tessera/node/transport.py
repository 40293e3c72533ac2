"""How nodes call each other: signed JSON requests, in-process or over HTTP, one behaviour.

Both transports put a request through the same steps (:func:`serve_request` on
the receiving side, :func:`raise_for_reply` on the calling side), so a role that
works over :class:`InProcessTransport` works over :class:`HttpTransport`::

    caller                                   receiver
    encode_body -> sign_request  ----->  size limit -> verify_request -> decode_body
                                              -> handler.handle(path, body, sender)
    raise_for_reply  <-----  status + {"error": class name, "message": ...} or the result

Errors at the caller:

- the peer is unknown, unreachable, refused the connection or timed out:
  :class:`~tessera.errors.TransportError` naming the peer and the path;
- the peer refused the request: the same :class:`~tessera.errors.TesseraError`
  subclass it raised (looked up by name in :mod:`tessera.errors`) with its message,
  or :class:`~tessera.errors.RemoteError` (with ``status``) for a name not there.

HTTP statuses of refusals (:data:`tessera.errors.HTTP_STATUS`, the one table the
telemetry aggregators use too)::

    400  DecodeError, QueryError     malformed body (names the problem) or query
    401  Unauthorized                unsigned, bad signature, unknown key, wrong recipient
    403  PolicyViolation, BudgetExceeded
    404  NotFound                    unknown endpoint
    409  Replay                      nonce seen before, timestamp outside ±120 s
    413  PayloadTooLarge             body over the receiver's limit (a RemoteError at the caller)
    422  InvalidProof, ProtocolError
    502  LedgerError, TransportError  the receiver's own upstream (chain, another peer) failed
    500  anything else               no traceback leaves the node
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

import httpx

from tessera import errors
from tessera.errors import (
    BodyTooLarge,
    DecodeError,
    LedgerError,
    NotFound,
    RemoteError,
    TesseraError,
    TransportError,
    http_status,
)
from tessera.node.envelope import (
    KeyDirectory,
    ReplayGuard,
    decode_body,
    encode_body,
    normalize_path,
    sign_request,
    verify_request,
)
from tessera.node.identity import Identity, to_checksum_address

__all__ = [
    "MAX_BODY",
    "Handler",
    "HttpTransport",
    "InProcessTransport",
    "RemoteError",
    "Transport",
    "raise_for_reply",
    "serve_request",
]

log = logging.getLogger("tessera.node")

#: Largest request body a node accepts by default (64 MiB).
MAX_BODY: Final = 64 * 2**20


class Handler(Protocol):
    """A node's request logic, behind whichever transport delivers to it."""

    def handle(self, path: str, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The reply to ``body`` posted to ``path`` by ``sender`` (a verified address).

        Refusals are :class:`~tessera.errors.TesseraError` subclasses (an unknown
        path: :class:`~tessera.errors.NotFound`).
        """
        ...

    def progress(self) -> dict[str, Any]:
        """What the node is doing, for dashboards (served unsigned)."""
        ...


class Transport(Protocol):
    """A way to call a peer by its address."""

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]: ...


def _error_reply(exc: TesseraError) -> tuple[int, bytes]:
    reply: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, LedgerError) and exc.reason is not None:
        reply["reason"] = exc.reason
    return http_status(exc), encode_body(reply)


def too_large(max_body: int) -> tuple[int, bytes]:
    exc = BodyTooLarge(f"request body exceeds {max_body} bytes")
    # On the wire it is "PayloadTooLarge", a name outside the tree: a RemoteError(413).
    return http_status(exc), encode_body({"error": "PayloadTooLarge", "message": str(exc)})


def internal_error(exc: BaseException) -> tuple[int, bytes]:
    log.error("request failed", exc_info=exc)
    return 500, encode_body({"error": "InternalError", "message": "internal error"})


def serve_request(
    handler: Handler,
    recipient: str,
    directory: KeyDirectory,
    guard: ReplayGuard,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_body: int = MAX_BODY,
    now: float | None = None,
) -> tuple[int, bytes]:
    """The receiving side of a call: ``(HTTP status, JSON reply bytes)``.

    The handler is called only for an authentic, fresh, well-formed request.
    """
    if len(body) > max_body:
        return too_large(max_body)
    try:
        try:
            path = normalize_path(path)
        except DecodeError as exc:
            raise NotFound(f"no endpoint {path!r}") from exc
        sender = verify_request(headers, path, body, recipient, directory, guard, now)
        result = handler.handle(path, decode_body(body), sender)
        if not isinstance(result, dict):
            raise TypeError(f"handler returned a {type(result).__name__}, not a dict")
        return 200, encode_body(result)
    except TesseraError as exc:
        # in the role's log: a refusal the caller may report only as "left out"
        log.warning("refused %s: %s: %s", path, type(exc).__name__, exc)
        return _error_reply(exc)
    except Exception as exc:
        return internal_error(exc)


def serve_progress(handler: Handler) -> tuple[int, bytes]:
    try:
        return 200, encode_body(handler.progress())
    except TesseraError as exc:
        return _error_reply(exc)
    except Exception as exc:
        return internal_error(exc)


def _remote_class(name: Any) -> type[TesseraError] | None:
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if isinstance(cls, type) and issubclass(cls, TesseraError):
        return cls
    return None


def raise_for_reply(peer: str, path: str, status: int, content: bytes) -> dict[str, Any]:
    """The reply of a successful call, or the peer's refusal raised as at the peer."""
    try:
        reply = decode_body(content)
    except DecodeError as exc:
        raise TransportError(
            f"{peer} answered {path} with HTTP {status} and a body that is not a JSON object"
        ) from exc
    if status == 200:
        return reply
    message = reply.get("message")
    if not isinstance(message, str):
        message = f"HTTP {status}: {json.dumps(reply)[:200]}"
    raise _remote_error(peer, path, status, reply, message)


def _remote_error(
    peer: str, path: str, status: int, reply: dict[str, Any], message: str
) -> TesseraError:
    name = reply.get("error")
    cls = _remote_class(name)
    if cls is None or cls is RemoteError:
        return RemoteError(f"{peer} refused {path}: {name}: {message}", status)
    if issubclass(cls, LedgerError):
        reason = reply.get("reason")
        return cls(message, reason if isinstance(reason, str) else None)
    try:
        return cls(message)
    except Exception:
        return RemoteError(f"{peer} refused {path}: {name}: {message}", status)


# -- in process -----------------------------------------------------------------------------


class _Route:
    __slots__ = ("guard", "handler")

    def __init__(self, handler: Handler, guard: ReplayGuard) -> None:
        self.handler = handler
        self.guard = guard


class InProcessTransport:
    """Calls to handlers in this process, through the same envelope and JSON as HTTP.

    Transports made by :meth:`with_identity` share the routing table, so one
    table serves a whole in-process network. ``timeout`` is accepted and ignored.
    """

    def __init__(
        self,
        identity: Identity,
        directory: KeyDirectory,
        handlers: Mapping[str, Handler] | None = None,
        *,
        max_body: int = MAX_BODY,
        _routes: dict[str, _Route] | None = None,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.max_body = max_body
        self._routes: dict[str, _Route] = {} if _routes is None else _routes
        for address, handler in (handlers or {}).items():
            self.register(address, handler, ReplayGuard())

    def register(self, address: str, handler: Handler, guard: ReplayGuard) -> None:
        self._routes[to_checksum_address(address)] = _Route(handler, guard)

    def with_identity(self, identity: Identity) -> InProcessTransport:
        """A transport for another node of the same network (same routes and directory)."""
        return InProcessTransport(
            identity, self.directory, max_body=self.max_body, _routes=self._routes
        )

    def _route(self, peer: str, path: str) -> tuple[str, _Route]:
        try:
            address = to_checksum_address(peer)
        except DecodeError as exc:
            raise TransportError(f"cannot call {path} on {peer!r}: not an address") from exc
        route = self._routes.get(address)
        if route is None:
            raise TransportError(f"cannot call {path} on {address}: no such peer in this process")
        return address, route

    def send(
        self,
        peer: str,
        path: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """Deliver prepared headers and body bytes: ``(status, reply bytes)``, nothing raised
        for a refusal. :meth:`call` is this plus encoding, signing and :func:`raise_for_reply`.
        """
        address, route = self._route(peer, path)
        return serve_request(
            route.handler,
            address,
            self.directory,
            route.guard,
            path,
            headers,
            content,
            max_body=self.max_body,
        )

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        address, _ = self._route(peer, path)
        path = normalize_path(path)
        data = encode_body(body)
        headers = sign_request(self.identity, address, path, data)
        return raise_for_reply(address, path, *self.send(address, path, headers, data))

    def progress(self, peer: str) -> dict[str, Any]:
        address, route = self._route(peer, "progress")
        return raise_for_reply(address, "progress", *serve_progress(route.handler))

    def health(self, peer: str) -> dict[str, Any]:
        address, _ = self._route(peer, "health")
        return {"address": address, "status": "ok"}

    def close(self) -> None:
        pass


# -- over HTTP ------------------------------------------------------------------------------


class HttpTransport:
    """Calls to peers' HTTP APIs (``peers``: address -> base URL), one keep-alive pool."""

    def __init__(
        self, identity: Identity, peers: Mapping[str, str], timeout: float = 600.0
    ) -> None:
        self.identity = identity
        self.timeout = timeout
        self._peers = {to_checksum_address(a): url.rstrip("/") for a, url in peers.items()}
        # trust_env=False: peers are on loopback; a proxy from the environment must not
        # see (or break) node-to-node traffic. An idle connection is dropped after 5 s, well
        # before the servers' 30 s (serve.py): one the server is closing at the moment it
        # is reused would lose the request. A refused connection is tried once more (a
        # peer restarting), as nothing was sent.
        self._client = httpx.Client(
            timeout=timeout,
            trust_env=False,
            transport=httpx.HTTPTransport(
                retries=1,
                limits=httpx.Limits(max_keepalive_connections=32, keepalive_expiry=5.0),
            ),
        )

    def add_peer(self, address: str, url: str) -> None:
        self._peers[to_checksum_address(address)] = url.rstrip("/")

    def _url(self, peer: str, path: str) -> tuple[str, str]:
        try:
            address = to_checksum_address(peer)
        except DecodeError as exc:
            raise TransportError(f"cannot call {path} on {peer!r}: not an address") from exc
        base = self._peers.get(address)
        if base is None:
            raise TransportError(f"cannot call {path} on {address}: no URL known for this peer")
        return address, f"{base}/v1/{path}"

    def _send(
        self, address: str, path: str, request: httpx.Request, timeout: float | None
    ) -> httpx.Response:
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        try:
            return self._client.send(request)
        except httpx.TimeoutException as exc:
            limit = self.timeout if timeout is None else timeout
            raise TransportError(
                f"{address} did not answer {path} within {limit:g} s ({request.url})"
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach {address} for {path} at {request.url}: {type(exc).__name__}: {exc}"
            ) from exc

    def send(
        self,
        peer: str,
        path: str,
        headers: Mapping[str, str],
        content: bytes,
        *,
        timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """POST prepared headers and body bytes: ``(status, reply bytes)``, nothing raised for
        a refusal. :meth:`call` is this plus encoding, signing and :func:`raise_for_reply`.
        """
        address, url = self._url(peer, path)
        request = self._client.build_request(
            "POST", url, content=content, headers={**headers, "Content-Type": "application/json"}
        )
        response = self._send(address, path, request, timeout)
        return response.status_code, response.content

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        path = normalize_path(path)
        address, _ = self._url(peer, path)
        data = encode_body(body)
        headers = sign_request(self.identity, address, path, data)
        status, reply = self.send(address, path, headers, data, timeout=timeout)
        return raise_for_reply(address, path, status, reply)

    def _get(self, peer: str, what: str) -> dict[str, Any]:
        address, url = self._url(peer, what)
        response = self._send(address, what, self._client.build_request("GET", url), None)
        return raise_for_reply(address, what, response.status_code, response.content)

    def progress(self, peer: str) -> dict[str, Any]:
        """``GET /v1/progress`` (unsigned)."""
        return self._get(peer, "progress")

    def health(self, peer: str) -> dict[str, Any]:
        """``GET /v1/health`` (unsigned)."""
        return self._get(peer, "health")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
