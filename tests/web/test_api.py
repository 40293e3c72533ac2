"""The console's HTTP guards without a network or a browser: Host, CSRF, Origin, JSON,
validation, security headers, and the vendored charting files against their README.

The console behind the app is a stand-in that records what reaches it: a refused request
must not reach it at all."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tessera.errors import ConfigError, QueryError
from tessera.web.app import create_app
from tessera.web.server import is_loopback

VENDOR = Path(__file__).parents[2] / "src" / "tessera" / "web" / "static" / "vendor"


class StandIn:
    """What the app asks of a console; every acting call is recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.unlocked = False
        self.address = "0x" + "11" * 20
        self.keystore = Path("analyst.json")
        self.dir = Path("/nowhere")
        self.state: dict[str, Any] = {"spec": {"nodes": 3, "t": 2}, "committee": 0}
        self.peers: list[Any] = []

    def unlock(self, password: str) -> str:
        self.calls.append(("unlock", password))
        if password != "right":
            raise ConfigError("analyst.json: wrong password for this key file")
        self.unlocked = True
        return self.address

    def quote(self, request: Any) -> dict[str, Any]:
        self.calls.append(("quote", request))
        if "SELEKT" in request.sql:
            raise QueryError("cannot parse SQL: \x1b[4mSELEKT\x1b[0m")
        return {"price": 400, "epsilon": request.epsilon}

    def start(self, request: Any, accepted_price: int) -> Any:
        self.calls.append(("start", request))
        raise AssertionError("not in these tests")

    def rate(self, query_id: str, dataset_id: int, stars: int) -> dict[str, Any]:
        self.calls.append(("rate", (query_id, dataset_id, stars)))
        return {"dataset_id": dataset_id, "stars": stars}


def client_for(console: StandIn, base: str = "http://127.0.0.1:8765") -> TestClient:
    return TestClient(create_app(console), base_url=base)  # type: ignore[arg-type]


def session(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.get("/api/session").json()["csrf_token"]}


def test_every_post_needs_the_sessions_csrf_token_and_a_same_origin_json_body() -> None:
    console = StandIn()
    client = client_for(console)
    quote = {"sql": "SELECT COUNT(*) FROM patients", "epsilon": 1}
    r = client.post("/api/quote", json=quote)  # no session cookie yet
    assert r.status_code == 403 and r.json()["kind"] == "CsrfRefused"
    h = session(client)
    assert client.post("/api/quote", json=quote).status_code == 403  # no token
    assert (
        client.post("/api/quote", json=quote, headers={"X-CSRF-Token": "forged"}).status_code == 403
    )
    other = client_for(console)  # another session's token is not this one's
    assert client.post("/api/quote", json=quote, headers=session(other)).status_code == 403
    for extra in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = client.post("/api/quote", json=quote, headers={**h, **extra})
        assert r.status_code == 403, extra
    r = client.post(
        "/api/quote", content="sql=1", headers={**h, "Content-Type": "text/plain"}
    )  # what a cross-site form could send
    assert r.status_code == 403 and "JSON" in r.json()["error"]
    assert console.calls == []  # nothing refused reached the console
    r = client.post("/api/quote", json=quote, headers={**h, "Origin": "http://127.0.0.1:8765"})
    assert r.status_code == 200 and r.json()["price"] == 400
    assert [c[0] for c in console.calls] == ["quote"]


def test_only_the_consoles_own_host_names_are_answered() -> None:
    console = StandIn()
    assert client_for(console, "http://evil.example").get("/api/session").status_code == 421
    assert client_for(console, "http://localhost:8765").get("/api/session").status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_inputs_are_validated_with_one_clear_message_and_never_a_5xx() -> None:
    console = StandIn()
    client = client_for(console)
    h = session(client)
    cases = [
        ("/api/quote", {"sql": "SELECT 1", "epsilon": 0}, 422, "epsilon"),
        ("/api/quote", {"sql": "SELECT 1", "epsilon": "much"}, 422, "epsilon"),
        ("/api/quote", {"sql": "SELECT 1"}, 422, "epsilon"),
        ("/api/quote", {"sql": "x" * 5000, "epsilon": 1}, 422, "sql"),
        ("/api/quote", {"kind": "pie", "epsilon": 1}, 422, "kind"),
        ("/api/quote", {"sql": "  ", "epsilon": 1}, 400, "SQL"),
        ("/api/quote", {"kind": "histogram", "epsilon": 1, "table": "t;--"}, 422, "table"),
        ("/api/quote", {"kind": "histogram", "epsilon": 1, "table": "t"}, 400, "column"),
        (
            "/api/run",
            {"sql": "SELECT 1", "epsilon": 1, "accepted_price": -5},
            422,
            "accepted_price",
        ),
        ("/api/market/rate", {"query_id": "0x12", "dataset_id": 0, "stars": 5}, 422, "query_id"),
        (
            "/api/market/rate",
            {"query_id": "0x" + "a" * 64, "dataset_id": -1, "stars": 5},
            422,
            "dataset_id",
        ),
        (
            "/api/market/rate",
            {"query_id": "0x" + "a" * 64, "dataset_id": 0, "stars": 0},
            422,
            "stars",
        ),
        ("/api/unlock", {"password": ""}, 422, "password"),
        ("/api/telemetry/collect", {"task": "ab", "start": 0, "duration": 60}, 422, "task"),
        (
            "/api/telemetry/collect",
            {"task": "ab" * 32, "start": -60, "duration": 60},
            422,
            "start",
        ),
        ("/api/telemetry/collect", {"task": "ab" * 32, "start": 0, "duration": 0}, 422, "duration"),
        (
            "/api/telemetry/collect",
            {"task": "ab" * 32, "start": 0, "duration": 60, "prefixes": ["012"]},
            422,
            "prefixes",
        ),
        (
            "/api/telemetry/collect",
            {"task": "ab" * 32, "start": 0, "duration": 60, "threshold": 0},
            422,
            "threshold",
        ),
    ]
    for path, body, code, word in cases:
        r = client.post(path, json=body, headers=h)
        assert r.status_code == code, (path, body, r.status_code, r.text)
        assert word in r.json()["error"], (path, body, r.json())
    assert console.calls == []
    r = client.post("/api/quote", json={"sql": "SELEKT 1", "epsilon": 1}, headers=h)
    assert r.status_code == 400 and r.json()["error"] == "cannot parse SQL: SELEKT"  # no ANSI
    r = client.post("/api/unlock", json={"password": "wrong"}, headers=h)
    assert r.status_code == 403 and "wrong password" in r.json()["error"]
    assert not console.unlocked
    r = client.post("/api/unlock", json={"password": "right"}, headers=h)
    assert r.status_code == 200 and r.json() == {"unlocked": True, "account": console.address}
    assert "right" not in client.get("/api/session").text  # the password is never echoed


def test_pages_carry_a_strict_content_security_policy_and_no_cdn() -> None:
    client = client_for(StandIn())
    r = client.get("/")
    assert r.status_code == 200 and "tessera_console" in r.headers["set-cookie"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert r.headers["x-frame-options"] == "DENY"
    html = r.text
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts and all(s.startswith("/static/") for s in scripts)
    assert "<script>" not in html  # nothing inline
    for s in scripts:
        assert client.get(s).status_code == 200


def test_the_vendored_charting_files_are_the_ones_the_readme_names() -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"\| `([\w.-]+\.js)` \| `([\w-]+)` \| ([\d.]+) \| `([0-9a-f]{64})` \|", readme
    )
    assert {r[0] for r in rows} == {p.name for p in VENDOR.glob("*.js")} and len(rows) == 3
    for name, package, version, digest in rows:
        data = (VENDOR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert f'"{version}"'.encode() in data, (name, version)  # the build names its version
        assert (VENDOR / f"{package}.LICENSE").is_file()


def test_tessera_web_needs_a_running_network_and_warns_beyond_loopback(
    tmp_path: Path, capsys: Any
) -> None:
    from typer.testing import CliRunner

    from tessera.cli.main import app
    from tessera.cli.web import warn_if_exposed

    result = CliRunner().invoke(app, ["web", "--dir", str(tmp_path)])
    assert result.exit_code == 19 and "no running network" in result.output
    warn_if_exposed("127.0.0.1")
    assert "WARNING" not in capsys.readouterr().err
    warn_if_exposed("0.0.0.0")
    assert "WARNING" in capsys.readouterr().err
