"""The role services' HTTP API fuzzed from its OpenAPI description (schemathesis): zero 5xx,
and a refused request stores nothing.

The roles of a real in-process network (3 nodes, a provider, a verifier; the
embedded chain) are served by :func:`tessera.node.http.create_app` and called
through the ASGI app. Every generated request is signed by a registered sender
(a committee member for the DKG paths, the analyst for the rest), so it gets past
the envelope and reaches the role's decoders; every fifth is also sent with the
generated (unsigned) headers, which must get 401. Bodies come from the schema
(schemathesis) and from valid bodies mutated value by value (huge integers,
wrong types: the values behind the 500s of issue 17). ``TESSERA_FUZZ_EXAMPLES``
raises the examples per endpoint for the long run recorded in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from decoders import _ticket
from hypothesis import given, settings
from hypothesis import strategies as st
from mutations import mutated_json
from starlette.testclient import TestClient

from tessera.data import medical
from tessera.node.envelope import ReplayGuard, StaticDirectory, encode_body, sign_request
from tessera.node.http import create_app
from tessera.node.identity import Identity
from tessera.node.local_network import LocalNetwork
from tessera.node.openapi import endpoints, role_schema
from tessera.protocol.policy import DatasetPolicy

EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "2"))
HUGE = "9" * 4301


@dataclass
class Served:
    name: str
    role: Any
    identity: Identity
    client: TestClient
    schema: Any
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)


@dataclass
class Roles:
    net: LocalNetwork
    analyst: Identity
    member: Identity
    served: dict[str, Served]


def _store_rows(role: Any) -> list[tuple[str, str, str]]:
    db = role.store._db
    return sorted(db.execute("SELECT kind, key, value FROM items").fetchall())


@pytest.fixture(scope="module")
def roles() -> Iterator[Roles]:
    from tessera.node.dlog_cache import discrete_log

    net = LocalNetwork(3, 2, seed="fuzz/roles", dlog=discrete_log())
    policy = DatasetPolicy(min_cohort=1, budget_rho=5.0, price_per_query=1_000)
    name = medical.PROVIDERS[0]
    net.add_provider(
        name,
        tables={"patients": medical.load(name)},
        bounds=medical.bounds_for_network(),
        policies={"patients": policy},
    )
    led = net.ledger
    analyst = Identity(led.analyst.secret_key)
    member = Identity(led.nodes[2].secret_key)
    directory = StaticDirectory.of([analyst, member])
    targets = {
        "node": (net.nodes[1], Identity(led.nodes[1].secret_key)),
        "provider": (net.providers[name].role, Identity(led.providers[name].secret_key)),
        "verifier": (net.verifiers[0], Identity(led.verifiers[0].secret_key)),
    }
    served = {}
    for label, (role, identity) in targets.items():
        app = create_app(role, identity, directory, ReplayGuard())
        schema = schemathesis.openapi.from_dict(role_schema(role, f"tessera {label}"))
        served[label] = Served(label, role, identity, TestClient(app), schema)
    yield Roles(net, analyst, member, served)
    for s in served.values():
        s.client.close()
    net.close()


def _post(roles: Roles, target: Served, path: str, body: bytes) -> Any:
    sender = roles.member if path.startswith("dkg/") else roles.analyst
    headers = sign_request(sender, target.identity.address, path, body)
    headers["content-type"] = "application/json"
    return target.client.post(f"/v1/{path}", content=body, headers=headers)


def _check(roles: Roles, target: Served, path: str, body: bytes) -> int:
    before = _store_rows(target.role)
    reply = _post(roles, target, path, body)
    target.requests += 1
    if reply.status_code >= 500:
        target.server_errors.append(f"{path} {body[:200]!r} -> {reply.text[:200]}")
    if reply.status_code >= 400:
        assert _store_rows(target.role) == before, f"refused {path} changed the store"
        refusal = reply.json()
        assert refusal["message"] and "Traceback" not in refusal["message"]
    return reply.status_code


def _role_paths() -> list[tuple[str, str]]:
    from tessera.node.roles.computing_node import NodeRole
    from tessera.node.roles.provider import ProviderRole
    from tessera.node.roles.verifier import VerifierRole

    out = []
    for label, cls in (("node", NodeRole), ("provider", ProviderRole), ("verifier", VerifierRole)):
        out += [(label, p) for p in endpoints(cls) if p != "dkg/run"]
    return out


ROLE_PATHS = _role_paths()
TICKET = encode_body({"ticket": _ticket().to_json()})


@pytest.mark.parametrize(("label", "path"), ROLE_PATHS)
def test_schema_generated_requests_get_no_5xx(roles: Roles, label: str, path: str) -> None:
    target = roles.served[label]
    operation = next(
        op.ok()
        for op in target.schema.get_all_operations()
        if op.ok().path == f"/v1/{path}" and op.ok().method == "post"
    )
    count = 0

    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(operation.as_strategy())
    def run(case: Any) -> None:
        nonlocal count
        body = json.dumps(case.body).encode()
        _check(roles, target, path, body)
        count += 1
        if count % 5 == 0:  # the generated headers: no valid signature
            unsigned = target.client.post(f"/v1/{path}", content=body, headers=case.headers)
            target.requests += 1
            assert unsigned.status_code in (401, 409), unsigned.text

    run()
    assert not target.server_errors, target.server_errors


@pytest.mark.parametrize(("label", "path"), ROLE_PATHS)
def test_mutated_valid_bodies_get_no_5xx(roles: Roles, label: str, path: str) -> None:
    target = roles.served[label]
    seed = TICKET if not path.startswith("dkg/") else encode_body({"messages": [], "session": {}})

    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(st.just(seed).flatmap(mutated_json))
    def run(body: bytes) -> None:
        _check(roles, target, path, body)

    run()
    assert not target.server_errors, target.server_errors


@pytest.mark.parametrize(("label", "path"), ROLE_PATHS)
def test_a_huge_integer_is_a_400_on_every_endpoint(roles: Roles, label: str, path: str) -> None:
    """Issue 17, gap 1: an integer over 4,300 digits was a 500 on every endpoint."""
    target = roles.served[label]
    assert _check(roles, target, path, b'{"x": %s}' % HUGE.encode()) == 400
    reply = _post(roles, target, path, b'{"ticket": {"rho": %s}}' % HUGE.encode())
    assert reply.status_code == 400 and "integer of 4301 digits" in reply.json()["message"]
    reply = _post(roles, target, path, b'{"ticket": {"rho": 1e999999}}')
    assert reply.status_code == 400 and "not finite" in reply.json()["message"]


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        # outside a DKG session a round is refused before its body is read (422); the
        # messages of one are SignedMessage.from_json, fuzzed in test_decoders.py
        ("dkg/answer", {"complaints": [[]]}, "no DKG under way"),
        ("dkg/answer", {"complaints": 5}, "no DKG under way"),
        ("dkg/answer", {"messages": [[]], "session": {}}, "no DKG under way"),
        ("dkg/answer", {"messages": 5}, "no DKG under way"),
        ("key_switch", {"noise": 5}, "ticket"),
        ("key_switch", {"contributions": 5}, "ticket"),
        ("key_switch", {"ticket": None, "noise": 5}, "ticket"),
    ],
)
def test_the_malformed_fields_of_issue_17_are_4xx_naming_the_problem(
    roles: Roles, path: str, body: dict[str, Any], problem: str
) -> None:
    target = roles.served["node"]
    status = _check(roles, target, path, encode_body(body))
    assert 400 <= status < 500
    assert problem in _post(roles, target, path, encode_body(body)).json()["message"]


def test_key_switch_with_a_valid_ticket_and_malformed_lists(roles: Roles) -> None:
    """Past the ticket: ``noise`` or ``contributions`` of the wrong type are 400s."""
    target = roles.served["node"]
    ticket = _ticket().to_json()
    for body, problem in (
        ({"ticket": ticket, "noise": 5}, "noise: expected a list"),
        ({"ticket": ticket, "contributions": 5}, "contributions: expected a list"),
        ({"ticket": ticket, "contributions": [5]}, "contribution: expected a hex string"),
        ({"ticket": ticket, "contributions": ["zz"]}, "contribution: not hex"),
        ({"ticket": ticket, "contributions": ["00"]}, "contribution"),
    ):
        reply = _post(roles, target, "key_switch", encode_body(body))
        assert reply.status_code == 400, reply.text
        assert problem in reply.json()["message"]


def test_zz_report(roles: Roles) -> None:
    """Requests sent per role and 5xx (printed for docs/reliability.md)."""
    for s in roles.served.values():
        print(f"role-api {s.name}: {s.requests} requests, {len(s.server_errors)} 5xx")
        assert not s.server_errors
