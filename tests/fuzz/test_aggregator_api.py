"""The telemetry aggregators' HTTP API fuzzed from its OpenAPI schema (schemathesis): zero
5xx, and a refused request stores nothing.

A leader and a helper of one Prio3Sum task run in process (their FastAPI apps,
lifespans included). The schema is the app's own ``/openapi.json``; its handlers
read raw DAP bodies, which FastAPI cannot describe, so each POST gets an
``application/octet-stream`` body (binary) and an ``Authorization`` header added
here. Half the generated requests are aimed at the real task (its id in the path,
the real credential), so they reach the message decoders; the rest stay as
generated (unknown tasks, no credential: 4xx).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tessera.node.telemetry.aggregator import AggregatorNode, create_app
from tessera.node.telemetry.config import TaskConfig, load_task_config, write_task
from tessera.node.telemetry.keys import aggregator_credential
from tessera.protocol.telemetry import VdafSpec

EXAMPLES = int(os.environ.get("TESSERA_FUZZ_EXAMPLES", "2")) * 6


@dataclass
class Aggregator:
    name: str
    node: AggregatorNode
    client: TestClient
    requests: int = 0
    bodies: int = 0  # POSTs with a non-empty body (the schema's binary strings arrive)
    server_errors: list[str] = field(default_factory=list)

    def rows(self) -> list[Any]:
        out = []
        for store in self.node._stores:
            db = store._db  # type: ignore[attr-defined]
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                out.append((table, sorted(db.execute(f"SELECT * FROM {table}").fetchall())))
        return out


@dataclass
class Deployment:
    config: TaskConfig
    credential: str
    aggregators: dict[str, Aggregator]
    schema: Any


def _with_bodies(raw: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(raw)
    for item in schema["paths"].values():
        for method, op in item.items():
            op.setdefault("parameters", []).append(
                {"name": "authorization", "in": "header", "schema": {"type": "string"}}
            )
            if method == "post":
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
    return schema


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root: Path = tmp_path_factory.mktemp("fuzz-telemetry")
    path = write_task(
        root / "task",
        VdafSpec.of("Prio3Sum", max_measurement=100),
        aggregator_ports=[1, 2],  # never bound: the apps are called in process
        min_batch_size=2,
        allow_insecure_http_for_tests=True,
    )
    aggregators = {}
    for agg_id, name in ((1, "helper"), (0, "leader")):
        node = AggregatorNode([load_task_config(path)], agg_id)
        client = TestClient(create_app(node))
        client.__enter__()
        aggregators[name] = Aggregator(name, node, client)
    config = load_task_config(path)
    own = config.aggregators[0].keys(config.task_id).auth_private_key
    helper = config.aggregators[1].public_config(config.task_id).auth_public_key
    credential = aggregator_credential(own, helper, config.task_id, 1)
    raw = aggregators["leader"].client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_with_bodies(raw))
    yield Deployment(config, credential, aggregators, schema)
    for a in aggregators.values():
        a.client.__exit__(None, None, None)


def _operations(deployment: Deployment) -> list[Any]:
    return [r.ok() for r in deployment.schema.get_all_operations()]


OPERATIONS = [
    "GET /health",
    "POST /tasks/{task_hex}/reports",
    "POST /tasks/{task_hex}/collections",
    "POST /tasks/{task_hex}/verify_key",
    "POST /tasks/{task_hex}/aggregation_jobs/{job_hex}/init",
    "POST /tasks/{task_hex}/aggregation_jobs/{job_hex}/continue",
    "POST /tasks/{task_hex}/aggregate_shares",
    "GET /tasks/{task_hex}/stats",
]


@pytest.mark.parametrize("who", ["leader", "helper"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_schema_generated_requests_get_no_5xx(deployment: Deployment, who: str, label: str) -> None:
    agg = deployment.aggregators[who]
    method, path = label.split(" ")
    operation = next(
        op for op in _operations(deployment) if op.method.upper() == method and op.path == path
    )

    @settings(settings.get_profile("fuzz"), max_examples=EXAMPLES)
    @given(operation.as_strategy(), st.booleans(), st.booleans())
    def run(case: Any, real_task: bool, real_credential: bool) -> None:
        params = dict(case.path_parameters or {})
        if real_task and "task_hex" in params:
            params["task_hex"] = deployment.config.task_id_hex
        url = path.format(**params)
        headers = {k: v for k, v in (case.headers or {}).items() if k.isascii()}
        if real_credential:
            headers["authorization"] = deployment.credential
        body = getattr(case.body, "data", case.body)  # schemathesis wraps binary bodies
        body = body if isinstance(body, bytes) else b""
        before = agg.rows()
        if method == "GET":
            reply = agg.client.get(url, headers=headers)
        else:
            headers["content-type"] = "application/octet-stream"
            agg.bodies += bool(body)
            reply = agg.client.post(url, content=body, headers=headers)
        agg.requests += 1
        if reply.status_code >= 500:
            agg.server_errors.append(f"{label} {url} {body[:100]!r} -> {reply.text[:200]}")
        elif reply.status_code >= 400:
            assert agg.rows() == before, f"refused {label} changed the store"

    run()
    assert not agg.server_errors, agg.server_errors


def test_zz_report(deployment: Deployment) -> None:
    for a in deployment.aggregators.values():
        print(f"aggregator-api {a.name}: {a.requests} requests, {len(a.server_errors)} 5xx")
        assert not a.server_errors and a.bodies > 0
