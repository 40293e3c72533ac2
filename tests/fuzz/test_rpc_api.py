"""The chain's JSON-RPC server fuzzed from its OpenAPI description (schemathesis) and with
params of every wrong type: no 5xx, no internal error for a malformed call, a refused
call changes no state; and the gap-5 messages of issue 17 (-32602 naming the param,
ids that are not ids, numbers that are not finite)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import HOSTILE, json_values
from starlette.testclient import TestClient

from tessera.ledger.chain import EmbeddedChain
from tessera.ledger.rpc_server import (
    _SHAPES,
    INTERNAL_ERROR,
    EmbeddedRpc,
    create_app,
    openapi_schema,
)

EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "2")) * 20
HUGE = "<an integer of 5000 digits>"


@dataclass
class Chain:
    rpc: EmbeddedRpc
    client: TestClient
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)

    def head(self) -> Any:
        return self.rpc.call("eth_getBlockByNumber", ["latest", False])["hash"]

    def post(self, body: bytes) -> Any:
        before = self.head()
        reply = self.client.post("/", content=body, headers={"content-type": "application/json"})
        self.requests += 1
        if reply.status_code >= 500:
            self.server_errors.append(f"{body[:200]!r} -> {reply.status_code} {reply.text[:200]}")
            return reply
        if reply.status_code != 204:
            payload = reply.json()
            for r in payload if isinstance(payload, list) else [payload]:
                error = r.get("error")
                assert error is None or error["code"] != INTERNAL_ERROR, (body[:300], error)
                if error is not None and not isinstance(payload, list):
                    assert self.head() == before, f"a refused call changed the chain: {body!r}"
        return reply


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    rpc = EmbeddedRpc(EmbeddedChain())
    with TestClient(create_app(rpc), base_url="http://127.0.0.1:8545") as client:
        yield Chain(rpc, client)


def test_schema_generated_requests_get_no_5xx(chain: Chain) -> None:
    schema = schemathesis.openapi.from_dict(openapi_schema())
    operation = next(iter(schema.get_all_operations())).ok()

    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(operation.as_strategy())
    def run(case: Any) -> None:
        chain.post(json.dumps(case.body).encode())

    run()
    assert not chain.server_errors, chain.server_errors


def _dumps(value: Any) -> bytes:
    return json.dumps(value).replace(json.dumps(HUGE), "9" * 5000).encode()


@given(
    st.sampled_from(sorted(_SHAPES)),
    st.lists(st.sampled_from(HOSTILE) | json_values, max_size=4),
    st.sampled_from([1, "a", None]),
)
@settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
def test_params_of_every_wrong_type_are_invalid_params(
    chain: Chain, method: str, params: list[Any], request_id: Any
) -> None:
    if method in ("evm_revert", "evm_snapshot"):
        return  # a revert to a snapshot changes the chain by design
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
    reply = chain.post(_dumps(body))
    assert reply.status_code < 500


def _call(chain: Chain, body: bytes) -> tuple[int, dict[str, Any]]:
    reply = chain.post(body)
    return reply.status_code, reply.json()


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ([5, "latest"], "param 1 must be an address"),
        (["0x" + "11" * 20, {}], "param 2 must be a block number or tag"),
        (["0x" + "11" * 20, "latest", 3], "takes 1 to 2 params, not 3"),
    ],
)
def test_wrong_param_types_are_32602_naming_the_param(
    chain: Chain, params: list[Any], problem: str
) -> None:
    body = {"jsonrpc": "2.0", "id": 7, "method": "eth_getBalance", "params": params}
    status, reply = _call(chain, json.dumps(body).encode())
    assert status == 200 and reply["id"] == 7
    assert reply["error"]["code"] == -32602 and problem in reply["error"]["message"]


def test_no_python_exception_text_for_a_wrong_type(chain: Chain) -> None:
    for method, params in (
        ("eth_getBlockByNumber", [{}, True]),
        ("eth_call", [5]),
        ("eth_getLogs", [[1]]),
    ):
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        _, reply = _call(chain, json.dumps(body).encode())
        message = reply["error"]["message"]
        assert reply["error"]["code"] == -32602, reply
        assert "unhashable" not in message and "iterable" not in message, message


@pytest.mark.parametrize(
    ("id_text", "problem"),
    [
        (b"NaN", "the id is NaN or Infinity"),
        (b"Infinity", "the id is NaN or Infinity"),
        (b"1e999999", "the id is NaN or Infinity"),
        (b"1.5", "the id is a float"),
        (b"[1]", "the id is a list"),
        (b"true", "the id is a bool"),
    ],
)
def test_an_id_that_is_not_an_id_is_an_invalid_request(
    chain: Chain, id_text: bytes, problem: str
) -> None:
    body = b'{"jsonrpc":"2.0","id":%s,"method":"eth_chainId","params":[]}' % id_text
    status, reply = _call(chain, body)
    assert status == 400 and reply["id"] is None and "result" not in reply
    assert reply["error"]["code"] == -32600 and problem in reply["error"]["message"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"1e999999", "NaN, Infinity and numbers out of a double's range are not JSON"),
        (b"-1e400", "NaN, Infinity and numbers out of a double's range are not JSON"),
        (b"9" * 4301, "an integer of 4301 digits"),
    ],
)
def test_numbers_json_cannot_carry_are_parse_errors(
    chain: Chain, value: bytes, problem: str
) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[{"a":%s}]}' % value
    status, reply = _call(chain, body)
    assert status == 400 and reply["error"]["code"] == -32700
    assert problem in reply["error"]["message"]


def test_zz_report(chain: Chain) -> None:
    print(f"chain-rpc: {chain.requests} requests, {len(chain.server_errors)} 5xx")
    assert not chain.server_errors
