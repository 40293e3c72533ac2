"""The embedded chain served over Ethereum JSON-RPC 2.0 (HTTP POST, loopback only).

Several processes (nodes, the market CLI, a notebook) share one in-process
py-evm chain through this server; to them it looks like any other node, so
they use :class:`~tessera.ledger.chain.RpcChain`. Requests are dispatched one
at a time (a lock) to web3's ``EthereumTesterProvider``; results are rewritten
into standard JSON-RPC form (hex quantities, camelCase keys). Errors::

    -32700  parse error            the body is not JSON (or not UTF-8, or has NaN/Infinity,
                                   a number beyond a double's range, an integer over
                                   4,300 digits)
    -32600  invalid request        not a JSON-RPC 2.0 request object (an id that is not a
                                   string, an integer or null), an empty or
                                   oversized batch, or JSON nested deeper than
                                   :data:`~tessera.protocol.json_limits.MAX_DEPTH`
    -32601  method not found
    -32602  invalid params         a parameter of the wrong type or shape, named
    -32603  internal error
    -32000  execution reverted: <reason>   (``data`` carries the ABI-encoded Error(string))

A body that is not a request at all (a parse error, too deep, not an object or
a batch, a malformed single request, an empty or oversized batch) gets HTTP 400
with the error object; the nesting is measured before parsing, since the C JSON
decoder recurses and a deep body would overflow the stack (eth-account raises
the recursion limit). Errors of well-formed calls, and every reply to a batch,
come with HTTP 200. A body over :data:`MAX_BODY_BYTES` gets HTTP 413, a request
from a browser page (an ``Origin`` header) or for a non-loopback ``Host`` gets
HTTP 403: the accounts are unlocked, so nothing but local processes may talk to
the chain.
``evm_snapshot``, ``evm_revert`` (returns ``false`` for an unknown id) and
``evm_mine`` work as on Hardhat, except that a snapshot survives a revert.

With a journal (``tessera ledger serve --state FILE``) every state change
(:data:`JOURNALED`) is appended and fsynced before it is answered, and replayed
when the server starts again: the genesis is deterministic, so the chain comes
back as it was. Snapshots are then refused (a revert cannot be journaled).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import math
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

import uvicorn
from eth_abi.abi import encode as abi_encode
from eth_tester.exceptions import SnapshotNotFound, TransactionFailed
from eth_tester.exceptions import ValidationError as TesterValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import RPCEndpoint

from tessera.errors import DecodeError
from tessera.ledger.chain import ERROR_SELECTOR, EmbeddedChain, decode_revert_data
from tessera.node.serve import NodeServer
from tessera.protocol import json_limits
from tessera.protocol.json_limits import MAX_DEPTH, check_depth

#: Largest request body accepted (1 MiB: a contract deployment is ~30 kB of hex).
MAX_BODY_BYTES: Final = 1 << 20
#: Largest batch accepted.
MAX_BATCH: Final = 1_000

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
EXECUTION_REVERTED: Final = -32000

_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


#: What changes the chain's state: journaled, with ``--state``, and replayed at start.
JOURNALED: Final = frozenset({"eth_sendTransaction", "eth_sendRawTransaction", "evm_mine"})


class JsonRpcError(Exception):
    """A JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def as_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address literal) is a loopback interface."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValueError(
            f"refusing to serve on {host!r}: the chain's accounts are unlocked, so it is "
            "served on loopback only (127.0.0.1, ::1 or localhost)"
        )


# -- results as standard JSON-RPC values ------------------------------------------

_CAMEL = re.compile(r"_([a-z])")
_DROPPED_KEYS: Final = frozenset({"state_root"})  # pre-Byzantium receipt field, always b"\x01"


def _camel(key: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), key)


def to_json_rpc(value: Any, key: str = "") -> Any:
    """eth-tester's Python values as JSON-RPC ones: ints as hex quantities, bytes as hex data."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [to_json_rpc(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _DROPPED_KEYS:
                continue
            name = _camel(str(k))
            out[name] = to_json_rpc(v, name)
        if "data" in out and "gas" in out and "input" not in out:
            out["input"] = out.pop("data")  # a full transaction object, as in blocks
        return out
    raise TypeError(f"cannot express {type(value).__name__} in JSON-RPC")


def _revert_error(exc: TransactionFailed) -> JsonRpcError:
    # web3's provider re-raises eth-tester's error as text; the original (the raw
    # revert payload) is its context.
    original: BaseException = exc.__context__ or exc
    raw: Any = original.args[0] if original.args else b""
    if isinstance(raw, BaseException):
        raw = raw.args[0] if raw.args else b""
    if isinstance(raw, bytes | bytearray):
        payload = bytes(raw)
        reason = decode_revert_data(payload)
    else:
        reason = re.sub(r"^execution reverted:?\s*", "", str(raw)) or None
        payload = ERROR_SELECTOR + abi_encode(["string"], [reason]) if reason else b""
    message = f"execution reverted: {reason}" if reason else "execution reverted"
    return JsonRpcError(EXECUTION_REVERTED, message, "0x" + payload.hex())


def _quantity(value: Any, name: str) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise JsonRpcError(INVALID_PARAMS, f"{name} must be a quantity") from None


# -- parameter shapes -------------------------------------------------------------------

_HEX: Final = re.compile(r"0x[0-9a-fA-F]*")
_TAGS: Final = frozenset({"latest", "earliest", "pending", "safe", "finalized"})
_Check = Callable[[Any], bool]


def _is_hex(value: Any, size: int | None = None) -> bool:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        return False
    return size is None or len(value) == 2 + 2 * size


def _is_quantity(value: Any) -> bool:
    return _is_hex(value) and len(value) > 2


def _is_block(value: Any) -> bool:
    return (isinstance(value, str) and value in _TAGS) or _is_quantity(value)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_percentiles(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    )


_ADDRESS: Final = ("an address (0x and 40 hex digits)", lambda v: _is_hex(v, 20))
_HASH: Final = ("a 32-byte hash (0x and 64 hex digits)", lambda v: _is_hex(v, 32))
_QUANTITY: Final = ("a quantity (0x-prefixed hex)", _is_quantity)
_BLOCK: Final = ("a block number or tag (latest, earliest, pending, safe, finalized)", _is_block)
_DATA: Final = ("hex data (0x-prefixed)", _is_hex)
_BOOL: Final = ("true or false", lambda v: isinstance(v, bool))
_TX: Final = ("a transaction object", _is_object)
_FILTER: Final = ("a filter object", _is_object)
_PERCENTILES: Final = ("a list of percentiles", _is_percentiles)

#: What each position of a method's params must be, and how many may be left out at the
#: end (methods without params ignore any they are given). Checked before the call, so a
#: value of the wrong type is -32602 with a message naming it, never an exception from
#: inside the chain.
_SHAPES: Final[dict[str, tuple[tuple[tuple[str, _Check], ...], int]]] = {
    "eth_getBalance": ((_ADDRESS, _BLOCK), 1),
    "eth_getCode": ((_ADDRESS, _BLOCK), 1),
    "eth_getTransactionCount": ((_ADDRESS, _BLOCK), 1),
    "eth_getStorageAt": ((_ADDRESS, _QUANTITY, _BLOCK), 1),
    "eth_call": ((_TX, _BLOCK), 1),
    "eth_estimateGas": ((_TX, _BLOCK), 1),
    "eth_createAccessList": ((_TX, _BLOCK), 1),
    "eth_sendTransaction": ((_TX,), 0),
    "eth_sendRawTransaction": ((_DATA,), 0),
    "eth_getTransactionReceipt": ((_HASH,), 0),
    "eth_getTransactionByHash": ((_HASH,), 0),
    "eth_getBlockByNumber": ((_BLOCK, _BOOL), 1),
    "eth_getBlockByHash": ((_HASH, _BOOL), 1),
    "eth_getBlockTransactionCountByNumber": ((_BLOCK,), 0),
    "eth_getBlockTransactionCountByHash": ((_HASH,), 0),
    "eth_getTransactionByBlockNumberAndIndex": ((_BLOCK, _QUANTITY), 0),
    "eth_getTransactionByBlockHashAndIndex": ((_HASH, _QUANTITY), 0),
    "eth_getLogs": ((_FILTER,), 0),
    "eth_newFilter": ((_FILTER,), 0),
    "eth_getFilterChanges": ((_QUANTITY,), 0),
    "eth_getFilterLogs": ((_QUANTITY,), 0),
    "eth_uninstallFilter": ((_QUANTITY,), 0),
    "eth_feeHistory": ((_QUANTITY, _BLOCK, _PERCENTILES), 1),
    "web3_sha3": ((_DATA,), 0),
    "evm_revert": ((_QUANTITY,), 0),
}


def check_params(method: str, params: list[Any]) -> None:
    """Raise -32602 naming the first parameter of ``method`` that has the wrong shape."""
    shape = _SHAPES.get(method)
    if shape is None:
        return
    kinds, optional = shape
    if not len(kinds) - optional <= len(params) <= len(kinds):
        wanted = f"{len(kinds) - optional} to {len(kinds)}" if optional else str(len(kinds))
        problem = f"invalid params: {method} takes {wanted} params, not {len(params)}"
        raise JsonRpcError(INVALID_PARAMS, problem)
    for position, (value, (what, ok)) in enumerate(zip(params, kinds, strict=False), 1):
        if not ok(value):
            problem = f"invalid params: {method} param {position} must be {what}"
            raise JsonRpcError(INVALID_PARAMS, problem)


# -- dispatch ---------------------------------------------------------------------------


class EmbeddedRpc:
    """JSON-RPC 2.0 over an :class:`EmbeddedChain`, one call at a time."""

    def __init__(self, chain: EmbeddedChain, journal: Path | None = None) -> None:
        self.chain = chain
        self._lock = threading.Lock()
        self._journal: IO[str] | None = None
        # A bare Web3 (no web3-level middleware) over the chain's tester: the provider's
        # own middleware turns standard JSON-RPC params into eth-tester's, and nothing
        # formats results for a Python caller.
        self._provider = EthereumTesterProvider(chain.tester)
        w3 = Web3(self._provider, middleware=[])
        self._request = self._provider.request_func(w3, w3.middleware_onion)
        self._native: dict[str, Callable[[list[Any]], Any]] = {
            "evm_snapshot": self._snapshot,
            "evm_revert": self._revert,
            "evm_mine": self._mine,
        }
        if journal is not None:
            self._replay(journal)
            self._journal = open(journal, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    # -- persistence ----------------------------------------------------------------
    def _replay(self, journal: Path) -> None:
        """Re-run every state change journaled by an earlier run (same genesis, same order)."""
        if not journal.exists():
            return
        for n, line in enumerate(journal.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                method, params = entry["method"], entry["params"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{journal}:{n}: not a journal entry ({exc})") from exc
            if method in self._native:
                self._native[method](params)
                continue
            try:
                response = self._request(RPCEndpoint(method), params)
            except TransactionFailed:
                continue  # it failed the first time too
            if response.get("error") is not None:
                raise ValueError(f"{journal}:{n}: {method} no longer applies: {response['error']}")

    def _record(self, method: str, params: list[Any]) -> None:
        if self._journal is None or method not in JOURNALED:
            return
        self._journal.write(json.dumps({"method": method, "params": params}) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    # -- the chain's own methods ---------------------------------------------
    def _snapshot(self, params: list[Any]) -> Any:
        return hex(self.chain.snapshot())

    def _revert(self, params: list[Any]) -> Any:
        if len(params) != 1:
            raise JsonRpcError(INVALID_PARAMS, "evm_revert takes one snapshot id")
        try:
            self.chain.revert(_quantity(params[0], "snapshot id"))
        except SnapshotNotFound:
            return False
        return True

    def _mine(self, params: list[Any]) -> Any:
        self.chain.mine(1)
        return "0x0"

    def _known(self, method: str) -> bool:
        namespace, _, endpoint = method.partition("_")
        endpoints = self._provider.api_endpoints or {}
        return endpoint in endpoints.get(namespace, {})

    def call(self, method: str, params: list[Any]) -> Any:
        """The JSON-RPC result of ``method``; raises :class:`JsonRpcError`."""
        if method in self._native or self._known(method):
            check_params(method, params)
        if method in self._native:
            if self._journal is not None and method in ("evm_snapshot", "evm_revert"):
                raise JsonRpcError(METHOD_NOT_FOUND, f"{method} is off on a persistent chain")
            with self._lock:
                result = self._native[method](params)
                self._record(method, params)
                return result
        if not self._known(method):
            raise JsonRpcError(METHOD_NOT_FOUND, f"the method {method} does not exist")
        try:
            with self._lock:
                run = functools.partial(self._request, RPCEndpoint(method), params)
                response = self.chain.serve(method, params, run, space="rpc")
                if response.get("error") is None:
                    self._record(method, params)
        except TransactionFailed as exc:
            raise _revert_error(exc) from exc
        except (TesterValidationError, ValueError) as exc:  # the chain's own validation
            raise JsonRpcError(INVALID_PARAMS, f"invalid params for {method}: {exc}") from exc
        except (TypeError, KeyError, IndexError, AttributeError) as exc:
            # A value of the wrong type deep inside the provider: its text names Python
            # internals ("unhashable type: 'dict'"), not the parameter.
            problem = f"invalid params for {method}: a parameter has the wrong type or shape"
            raise JsonRpcError(INVALID_PARAMS, problem) from exc
        except Exception as exc:  # py-evm and eth-tester errors share no base class
            raise JsonRpcError(INTERNAL_ERROR, f"internal error in {method}") from exc
        error = response.get("error")
        if error is not None:
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            code = METHOD_NOT_FOUND if "RPC Endpoint" in message else INTERNAL_ERROR
            raise JsonRpcError(code, message)
        return to_json_rpc(response.get("result"))

    # -- JSON-RPC 2.0 framing ----------------------------------------------------
    def handle_one(self, request: Any) -> dict[str, Any] | None:
        """The response object for one request (``None`` for a notification)."""
        if not isinstance(request, dict):
            return _error_response(None, JsonRpcError(INVALID_REQUEST, "invalid request"))
        request_id = request.get("id")
        if request_id is _NOT_FINITE:
            problem = (
                "invalid request: the id is NaN or Infinity; ids are strings, integers or null"
            )
            return _error_response(None, JsonRpcError(INVALID_REQUEST, problem))
        if not isinstance(request_id, str | int | type(None)) or isinstance(request_id, bool):
            kind = type(request_id).__name__
            problem = f"invalid request: the id is a {kind}; ids are strings, integers or null"
            return _error_response(None, JsonRpcError(INVALID_REQUEST, problem))
        method, params = request.get("method"), request.get("params", [])
        if request.get("jsonrpc") != "2.0" or not isinstance(method, str):
            problem = "invalid request: needs jsonrpc '2.0' and a method name"
            return _error_response(request_id, JsonRpcError(INVALID_REQUEST, problem))
        if not isinstance(params, list):
            problem = "invalid params: by-position (an array) only"
            return _error_response(request_id, JsonRpcError(INVALID_PARAMS, problem))
        try:
            result = self.call(method, params)
        except JsonRpcError as exc:
            reply: dict[str, Any] = _error_response(request_id, exc)
        else:
            reply = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return reply if "id" in request else None

    def handle_body(self, body: bytes) -> tuple[int, Any]:
        """The HTTP status and the response to a body: an object, a list (batch) or ``None``.

        The status is 400 when the body is not a request (see :func:`parse_body`, a
        malformed single request, an empty or oversized batch), else 200.
        """
        try:
            payload = parse_body(body)
        except JsonRpcError as exc:
            return 400, _error_response(None, exc)
        if isinstance(payload, list):
            if not payload or len(payload) > MAX_BATCH:
                problem = f"invalid request: a batch holds 1 to {MAX_BATCH} requests"
                return 400, _error_response(None, JsonRpcError(INVALID_REQUEST, problem))
            replies = [r for r in map(self.handle_one, payload) if r is not None]
            return 200, replies or None
        reply = self.handle_one(payload)
        refused = reply is not None and reply.get("error", {}).get("code") == INVALID_REQUEST
        return (400 if refused else 200), reply


class _NotFinite:
    """Where the body had NaN, Infinity or a number too large for a float (``1e999999``)."""

    def __repr__(self) -> str:
        return "NaN"


_NOT_FINITE: Final = _NotFinite()


def _parse(text: str) -> tuple[Any, bool]:
    """The JSON value of ``text``, and whether a number in it was not finite."""
    found = False

    def not_finite(_: str) -> Any:
        nonlocal found
        found = True
        return _NOT_FINITE

    def number(text: str) -> Any:
        value = float(text)
        return value if math.isfinite(value) else not_finite(text)

    value = json.loads(
        text, parse_constant=not_finite, parse_float=number, parse_int=json_limits.parse_integer
    )
    return value, found


def parse_body(body: bytes) -> Any:
    """The JSON value of a request body; raises :class:`JsonRpcError` naming the problem.

    The body must be UTF-8 (-32700), nest no deeper than :data:`MAX_DEPTH` (-32600,
    measured before parsing: the decoder recurses, and deep enough JSON would crash
    the process) and be JSON with finite numbers (NaN, Infinity and ``1e999999``
    are refused: -32700, or -32600 when it is the id of a request) and integers of
    at most :data:`~tessera.protocol.json_limits.MAX_INT_DIGITS` digits (-32700).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"parse error: the body is not UTF-8 ({exc.reason})"
        raise JsonRpcError(PARSE_ERROR, problem) from None
    try:
        check_depth(body, MAX_DEPTH)
    except DecodeError as exc:
        raise JsonRpcError(INVALID_REQUEST, f"invalid request: the body is {exc}") from None
    try:
        value, not_finite = _parse(text)
    except DecodeError as exc:  # an integer too long
        raise JsonRpcError(PARSE_ERROR, f"parse error: {exc}") from None
    except ValueError as exc:  # JSONDecodeError
        raise JsonRpcError(PARSE_ERROR, f"parse error: {exc}") from None
    except RecursionError:  # not reached below MAX_DEPTH; kept as a second line
        raise JsonRpcError(INVALID_REQUEST, "invalid request: the body nests too deeply") from None
    if not_finite and not (isinstance(value, dict) and value.get("id") is _NOT_FINITE):
        problem = "parse error: NaN, Infinity and numbers out of a double's range are not JSON"
        raise JsonRpcError(PARSE_ERROR, problem)
    return value


def _error_response(request_id: Any, error: JsonRpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.as_json()}


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3 description of the server: ``POST /`` with a request or a batch, each
    method with the params :func:`check_params` checks (fuzzers generate requests from it)."""
    request = {
        "type": "object",
        "required": ["jsonrpc", "method"],
        "properties": {
            "jsonrpc": {"type": "string", "enum": ["2.0"]},
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "method": {"type": "string", "enum": sorted(_SHAPES)},
            "params": {"type": "array", "maxItems": 4},
        },
    }
    body = {"oneOf": [request, {"type": "array", "items": request, "minItems": 1}]}
    reply = {"description": "a JSON-RPC response (or a batch of them)"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "tessera chain (JSON-RPC 2.0)", "version": "1"},
        "paths": {
            "/": {
                "post": {
                    "operationId": "json_rpc",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {
                        "200": reply,
                        "204": {"description": "notifications only"},
                        "400": reply,
                        "403": reply,
                        "413": reply,
                    },
                }
            }
        },
    }


# -- HTTP ---------------------------------------------------------------------------------


class _Reply(JSONResponse):
    """JSON with non-ASCII escaped: a lone surrogate echoed from a request stays encodable."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), allow_nan=False).encode("ascii")


def _refused(status: int, message: str) -> JSONResponse:
    body = _error_response(None, JsonRpcError(INVALID_REQUEST, message))
    return _Reply(body, status_code=status)


def create_app(rpc: EmbeddedRpc, max_body: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app: ``POST /`` with a JSON-RPC request or batch."""

    async def endpoint(request: Request) -> Response:
        if "origin" in request.headers:
            return _refused(403, "cross-origin requests are refused")
        host = request.headers.get("host", "")
        if not is_loopback(re.sub(r":\d+$", "", host)):
            return _refused(403, f"Host {host!r} is not a loopback address")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            return _refused(413, f"request body exceeds {max_body} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return _refused(413, f"request body exceeds {max_body} bytes")
        status, reply = await run_in_threadpool(rpc.handle_body, bytes(body))
        if reply is None:
            return Response(status_code=204)
        return _Reply(reply, status_code=status)

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])])


class RpcServer:
    """An :class:`EmbeddedRpc` bound to a loopback port (``port=0``: any free one)."""

    def __init__(
        self,
        chain: EmbeddedChain,
        host: str = "127.0.0.1",
        port: int = 8545,
        max_body: int = MAX_BODY_BYTES,
        journal: Path | None = None,
    ) -> None:
        check_loopback(host)
        self.chain = chain
        address = "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit this; without it a response written in two
            # parts waits out the client's delayed ACK (40 ms a request).
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socket.bind((address, port))
            self._socket.listen(128)
        except OSError:
            self._socket.close()
            raise
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://{f'[{address}]' if family == socket.AF_INET6 else address}:{self.port}"
        config = uvicorn.Config(
            create_app(EmbeddedRpc(chain, journal), max_body),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._ready = threading.Event()
        self._announce: Callable[[str], None] | None = None
        self._server = NodeServer(config, self._started)
        self._thread: threading.Thread | None = None

    def _started(self) -> None:
        self._ready.set()
        if self._announce is not None:
            self._announce(self.url)

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM (in the main thread) or :meth:`stop`.

        ``on_ready`` gets the URL once the server accepts requests.
        """
        self._announce = on_ready
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 10.0) -> RpcServer:
        """Serve from a background thread; returns once the server answers."""
        self._thread = threading.Thread(target=self.run, name="tessera-rpc", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError("the JSON-RPC server did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with contextlib.suppress(OSError):
            self._socket.close()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
