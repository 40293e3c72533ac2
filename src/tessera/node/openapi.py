"""The OpenAPI 3 description of a role's HTTP API (:mod:`tessera.node.http`), from its handlers.

The server has one route, ``POST /v1/{path}``, dispatched to the role's
``on_<path>`` methods (``/`` and ``-`` read as ``_``); this module lists those
methods as the paths they serve, with the request body fields each one reads, the
five signature headers and the refusal statuses of :data:`tessera.errors.HTTP_STATUS`.
It describes what the server does; it is not used to validate requests (the roles'
own decoders do that).
"""

from __future__ import annotations

import inspect
from typing import Any, Final

from tessera.node.envelope import HEADERS

_HEX: Final = {"type": "string", "pattern": "^[0-9a-f]*$"}
_HEX_LIST: Final = {"type": "array", "items": _HEX}
_OBJECT: Final = {"type": "object"}

#: The body fields each endpoint reads (its decoder refuses anything else it needs).
FIELDS: Final[dict[str, dict[str, Any]]] = {
    "key": {"session": _OBJECT},
    "noise": {"ticket": _OBJECT},
    "key_switch": {
        "ticket": _OBJECT,
        "contributions": _HEX_LIST,
        "noise": _HEX_LIST,
        "rejected_noise": _HEX_LIST,
    },
    "bundle": {"ticket": _OBJECT, "record": _OBJECT},
    "contribute": {"ticket": _OBJECT},
    "info": {},
    "verify": {"ticket": _OBJECT, "record": _OBJECT},
    "record": {"query_id": _HEX, "record": _OBJECT},
    "verdict": {"query_id": _HEX},
    "dkg/committee": {"committee": {"type": "integer"}},
    "dkg/run": {},
    "dkg/endorse": {"session": _OBJECT, "messages": {"type": "array", "items": _OBJECT}},
}
_DKG_ROUND: Final = {"session": _OBJECT, "messages": {"type": "array", "items": _OBJECT}}


def endpoints(role: type | object) -> list[str]:
    """The paths a role serves: ``on_dkg_answer`` is ``dkg/answer``, ``on_key_switch``
    ``key_switch`` (either spelling reaches the same method)."""
    cls = role if isinstance(role, type) else type(role)
    out = []
    for name, _ in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("on_"):
            path = name[3:]
            out.append("dkg/" + path[4:] if path.startswith("dkg_") else path)
    return sorted(out)


def _body(path: str) -> dict[str, Any]:
    fields = FIELDS.get(path, _DKG_ROUND if path.startswith("dkg/") else {})
    return {"type": "object", "properties": dict(fields)}


def _refusal(description: str) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        "required": ["error", "message"],
    }
    return {"description": description, "content": {"application/json": {"schema": body}}}


def role_schema(role: type | object, title: str = "tessera node") -> dict[str, Any]:
    """The OpenAPI document of ``role``'s API (unsigned ``health`` and ``progress``
    included)."""
    headers = [
        {"name": h, "in": "header", "required": True, "schema": {"type": "string"}} for h in HEADERS
    ]
    responses = {
        "200": {"description": "the handler's reply", "content": {"application/json": {}}},
        "400": _refusal("malformed body (DecodeError, QueryError)"),
        "401": _refusal("unsigned, forged or unknown sender"),
        "403": _refusal("policy violation"),
        "404": _refusal("no such endpoint or object"),
        "409": _refusal("replayed request"),
        "413": _refusal("body over the limit"),
        "422": _refusal("a proof or protocol step failed"),
        "502": _refusal("the ledger or a peer refused"),
    }
    paths: dict[str, Any] = {
        "/v1/health": {"get": {"operationId": "health", "responses": {"200": responses["200"]}}},
        "/v1/progress": {
            "get": {"operationId": "progress", "responses": {"200": responses["200"]}}
        },
    }
    for path in endpoints(role):
        paths[f"/v1/{path}"] = {
            "post": {
                "operationId": path.replace("/", "_"),
                "parameters": headers,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _body(path)}},
                },
                "responses": responses,
            }
        }
    return {"openapi": "3.0.3", "info": {"title": title, "version": "1"}, "paths": paths}
