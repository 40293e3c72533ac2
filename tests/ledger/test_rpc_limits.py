"""Hostile bodies against `tessera ledger serve`, and the nesting scan that guards its parser.

CPython's JSON decoder recurses once per nested array or object, and eth-account
raises the recursion limit to 100 000: a body of 100 000 ``[`` used to kill the
served chain with a segmentation fault. The server must answer every such body
with a JSON-RPC error (HTTP 400 or 413) and keep serving.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.errors import DecodeError
from tessera.protocol.json_limits import MAX_DEPTH, check_depth, nesting_depth

from .test_serve import Served

CHAIN_ID = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}


# -- the scan ------------------------------------------------------------------------------


def reference_depth(data: bytes) -> int:
    """The nesting depth by the obvious byte-at-a-time state machine."""
    depth = deepest = 0
    in_string = escaped = False
    for b in data:
        if in_string:
            if escaped:
                escaped = False
            elif b == ord("\\"):
                escaped = True
            elif b == ord('"'):
                in_string = False
        elif b == ord('"'):
            in_string = True
        elif b in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif b in b"]}" and depth:
            depth -= 1
    return deepest


def value_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(value_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(value_depth, value.values()), default=0)
    return 0


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"", 0),
        (b"1", 0),
        (b"[]", 1),
        (b"{}", 1),
        (b'{"a":[{},[[]]]}', 4),
        (b'"[[[["', 0),
        (b'{"s":"[[[[{{{{"}', 1),
        (b'{"[[[[":1}', 1),  # brackets in a key
        (b'{"s":"\\"[[[","t":[1]}', 2),  # an escaped quote does not end the string
        (b'{"s":"\\\\","t":[1]}', 2),  # an escaped backslash does not escape the quote
        (b'{"s":"\\\\\\"[","t":[1]}', 2),  # \\ then \" : still inside the string
        (b'["\\u005b\\u005b", []]', 2),  # \u005b is "[" only once parsed
        (b'["]]]]", [[]]]', 3),
        (b'["abc', 1),  # an unclosed string runs to the end ...
        (b'["abc\\', 1),  # ... even when the input ends in a backslash
        (b'["a\\"[[[[', 1),
        (b"]]]][[", 2),  # a stray closer closes nothing
        (b"[]][[", 2),
        ('["é[ü", [{}]]'.encode(), 3),  # multi-byte UTF-8 inside a string
    ],
)
def test_depth_counts_brackets_outside_strings(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth
    assert reference_depth(text) == depth


def test_limit_is_exact() -> None:
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    over = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    assert MAX_DEPTH == 64
    assert nesting_depth(at_limit) == 64
    check_depth(at_limit)  # no error
    assert nesting_depth(over) == 65
    with pytest.raises(DecodeError, match="nested deeper than 64"):
        check_depth(over)
    # the same with objects, and with brackets in strings that must not count
    obj = b'{"a":' * 63 + b'"[[[[{{"' + b"}" * 63
    check_depth(b"[" + obj + b"]")
    with pytest.raises(DecodeError, match="nested deeper than 64"):
        check_depth(b"[[" + obj + b"]]")
    check_depth(b"[" * 3 + b"]" * 3, limit=3)
    with pytest.raises(DecodeError, match="nested deeper than 3"):
        check_depth(b"[" * 4, limit=3)


def test_stray_closers_do_not_hide_openers() -> None:
    with pytest.raises(DecodeError):
        check_depth(b"]" * 1000 + b"[" * 65)


def test_limit_stops_the_scan_early() -> None:
    assert nesting_depth(b"[" * 100_000) == 100_000
    assert nesting_depth(b"[" * 100_000, limit=64) == 65
    assert nesting_depth(b"[" * 10, limit=64) == 10


def test_scan_is_linear_on_unclosed_strings() -> None:
    # Every quote but the first is escaped, so the first string never closes: a
    # backtracking string pattern retried at each quote takes quadratic time here
    # (the previous scan, in node/envelope.py, needed ~55 s for this input).
    data = b'"' + b'\\"' * 50_000 + b"[" * 100
    start = time.perf_counter()
    assert nesting_depth(data) == 0
    assert time.perf_counter() - start < 2.0
    big = b'["' + b'\\"' * 500_000  # 1 MB, the RPC server's body limit
    start = time.perf_counter()
    assert nesting_depth(big) == 1
    assert time.perf_counter() - start < 2.0


def test_depth_carries_across_chunks() -> None:
    # Long enough to span several of the scan's internal chunks, with the deepest
    # point, dips to zero and stray closers falling anywhere.
    rng = random.Random(7)
    data = bytes(rng.choice(b"[[[]]]]{}") for _ in range(300_000))
    assert nesting_depth(data) == reference_depth(data)
    # down to 10 after the first peak, then up past it: the carried depth counts
    deep = b"]" * 100_000 + b"[" * 70_000 + b"]" * 69_990 + b"[" * 70_005
    assert nesting_depth(deep) == reference_depth(deep) == 70_015


@given(st.binary(max_size=300) | st.text(alphabet='[]{}"\\a:,', max_size=300).map(str.encode))
def test_scan_matches_the_state_machine(data: bytes) -> None:
    assert nesting_depth(data) == reference_depth(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\/ aé\n\x00'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=40,
)


@given(JSON_VALUES)
def test_scan_measures_valid_json_exactly(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert nesting_depth(text.encode()) == value_depth(value)


# -- the served chain ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Served]]:
    server = Served("--port", "0")
    try:
        yield server.wait_url(), server
    finally:
        server.stop()


def _post(url: str, body: bytes | Iterator[bytes]) -> httpx.Response:
    try:
        return httpx.post(url, content=body, timeout=60)
    except httpx.TransportError as exc:
        pytest.fail(f"the server did not answer ({type(exc).__name__}: {exc})")


def _still_serving(url: str, server: Served) -> None:
    assert server.process.poll() is None, f"serve died with {server.process.returncode}"
    reply = httpx.post(url, json=CHAIN_ID, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["result"].startswith("0x")
    assert server.process.poll() is None


def _error(reply: httpx.Response, status: int, code: int, message: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["jsonrpc"] == "2.0" and "id" in body
    assert body["error"]["code"] == code
    assert message in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b"[" * 100_000 + b"]" * 100_000,  # well-formed, just deep
        b'[{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":' + b"[" * 100_000,  # a batch
        b"[" * 65 + b"]" * 65,  # one over the limit
    ],
    ids=["arrays", "objects", "closed-arrays", "batch", "limit+1"],
)
def test_deep_body_is_refused_and_the_server_lives(served: tuple[str, Served], body: bytes) -> None:
    url, server = served
    reply = _post(url, body)
    _error(reply, 400, -32600, "nested deeper than 64")
    _still_serving(url, server)


def test_nesting_at_the_limit_is_served(served: tuple[str, Served]) -> None:
    url, server = served
    request = b'{"jsonrpc":"2.0","id":9,"method":"eth_chainId","params":%s}'
    at_limit = _post(url, request % (b"[" * 63 + b"]" * 63))  # 1 + 63 = 64 deep
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["id"] == 9 and at_limit.json()["result"].startswith("0x")
    over = _post(url, request % (b"[" * 64 + b"]" * 64))
    _error(over, 400, -32600, "nested deeper than 64")
    # a batch 64 deep is parsed, and its one item (an array) answered as invalid
    batch = _post(url, b"[" * 64 + b"]" * 64)
    assert batch.status_code == 200
    assert [r["error"]["code"] for r in batch.json()] == [-32600]
    _still_serving(url, server)


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"', 400, -32700, "parse error"),
        (b"", 400, -32700, "parse error"),
        (b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', 400, -32700, "not UTF-8"),
        (json.dumps(CHAIN_ID).encode("utf-16"), 400, -32700, "not UTF-8"),
        (b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[NaN]}', 400, -32700, "NaN"),
        (b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b"}", 400, -32700, "parse error"),
        (b'"' + b'\\"' * 400_000, 400, -32700, "Unterminated string"),
        (b"5", 400, -32600, "invalid request"),
        (b"null", 400, -32600, "invalid request"),
        (b'{"jsonrpc":"2.0","id":1}', 400, -32600, "invalid request"),
        (b"[]", 400, -32600, "a batch holds 1 to 1000"),
        (json.dumps([CHAIN_ID] * 1001).encode(), 400, -32600, "a batch holds 1 to 1000"),
        (b"[" * (1 << 20) + b"]", 413, -32600, "exceeds 1048576 bytes"),
    ],
    ids=[
        "truncated",
        "empty",
        "non-utf8",
        "utf16",
        "nan",
        "huge-int",
        "unclosed-string",
        "scalar",
        "null",
        "no-method",
        "empty-batch",
        "big-batch",
        "oversized",
    ],
)
def test_bad_body_gets_a_json_rpc_error(
    served: tuple[str, Served], body: bytes, status: int, code: int, message: str
) -> None:
    url, server = served
    _error(_post(url, body), status, code, message)
    _still_serving(url, server)


def test_oversized_chunked_body_is_cut_off(served: tuple[str, Served]) -> None:
    # no Content-Length: the limit holds while the body streams in
    url, server = served
    reply = _post(url, iter([b"[" * 100_000] * 20))
    _error(reply, 413, -32600, "exceeds 1048576 bytes")
    _still_serving(url, server)


def test_batch_items_are_answered_one_by_one(served: tuple[str, Served]) -> None:
    url, server = served
    reply = _post(url, json.dumps([CHAIN_ID, 5, {"jsonrpc": "2.0", "id": 3}]).encode())
    assert reply.status_code == 200
    first, second, third = reply.json()
    assert first["result"].startswith("0x")
    assert second["error"]["code"] == third["error"]["code"] == -32600
    _still_serving(url, server)


def test_lone_surrogate_echoed_back_is_still_json(served: tuple[str, Served]) -> None:
    # The id and the unknown method name come back in the reply; a lone surrogate
    # cannot be encoded as UTF-8, so it must be escaped, not crash the reply (500).
    url, server = served
    reply = _post(url, b'{"jsonrpc":"2.0","id":"\\ud800","method":"eth_\\udfff"}')
    assert reply.status_code == 200
    body = reply.json()
    assert body["id"] == "\ud800"
    assert body["error"]["code"] == -32601 and "\udfff" in body["error"]["message"]
    _still_serving(url, server)
