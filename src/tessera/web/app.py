"""The console's HTTP face: a FastAPI app serving a JSON API and static pages.

Security model (``docs/web.md``):

- every request's ``Host`` must be one of the console's own names (loopback by default),
  so a page on another site cannot reach it through DNS rebinding;
- a session cookie (random, ``HttpOnly``, ``SameSite=Strict``) names a per-session CSRF
  token, which the page reads from ``/api/session`` (same origin only: no CORS) and sends
  in ``X-CSRF-Token`` with every ``POST``; the server compares it in constant time, and
  also refuses a ``POST`` whose ``Origin`` is not its own, whose ``Sec-Fetch-Site`` is
  cross-site, or whose body is not JSON;
- every input is validated before it reaches the network; a refusal is a 4xx with one
  clear message (``{"error": ..., "kind": ...}``) and changes nothing;
- the analyst's key file is decrypted in this process; no answer carries a private key.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Request, Response
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from tessera.errors import (
    ConfigError,
    LedgerError,
    NotFound,
    PolicyViolation,
    QueryError,
    TesseraError,
    TransportError,
)
from tessera.web import views
from tessera.web.console import Console, QueryRequest, TrainRequest

COOKIE = "tessera_console"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
MAX_SESSIONS = 256
SECURITY_HEADERS = {
    # Vega compiles its expressions with Function(): 'unsafe-eval' for scripts, nothing
    # inline, nothing from another origin
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


_IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class QueryBody(BaseModel):
    kind: Literal["sql", "histogram", "kaplan_meier", "regression"] = "sql"
    epsilon: float = Field(gt=0, le=10_000)
    sql: str = Field(default="", max_length=4_000)
    table: str = Field(default="", max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    column: str = Field(default="", max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    bins: int = Field(default=10, ge=1, le=64)
    time_column: str = Field(default="", max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    event_column: str = Field(default="", max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    edges: list[float] = Field(default_factory=list, max_length=64)
    y: str = Field(default="", max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
    x: list[Annotated[str, Field(max_length=64, pattern=_IDENT)]] = Field(
        default_factory=list, max_length=16
    )
    datasets: list[Annotated[int, Field(ge=0, lt=2**63)]] = Field(
        default_factory=list, max_length=16
    )

    def request(self) -> QueryRequest:
        if self.kind == "sql" and not self.sql.strip():
            raise QueryError("type an SQL query, e.g. SELECT COUNT(*) FROM patients")
        if self.kind != "sql" and not self.table:
            raise QueryError("name the table")
        if self.kind == "histogram" and not self.column:
            raise QueryError("name the histogram's column")
        if self.kind == "kaplan_meier" and not (self.time_column and self.event_column):
            raise QueryError("name the time and event columns")
        if self.kind == "regression" and not (self.y and self.x):
            raise QueryError("name the regression's outcome and at least one feature")
        return QueryRequest(
            kind=self.kind,
            epsilon=self.epsilon,
            sql=self.sql.strip(),
            table=self.table,
            column=self.column,
            bins=self.bins,
            time_column=self.time_column,
            event_column=self.event_column,
            edges=tuple(self.edges),
            y=self.y,
            x=tuple(self.x),
            datasets=tuple(sorted(set(self.datasets))),
        )


class RunBody(QueryBody):
    accepted_price: int = Field(ge=0)


class UnlockBody(BaseModel):
    password: str = Field(min_length=1, max_length=1_024)


class TrainBody(BaseModel):
    table: str = Field(default="patients", max_length=64, pattern=_IDENT)
    features: list[Annotated[str, Field(max_length=64, pattern=_IDENT)]] = Field(
        min_length=1, max_length=16
    )
    label: str = Field(max_length=64, pattern=_IDENT)
    rounds: int = Field(ge=1, le=20)
    epsilon: float = Field(gt=0, le=100)
    learning_rate: float = Field(default=12.0, gt=0, le=100)
    model: Literal["linear", "logistic", "softmax", "mlp"] = "logistic"
    classes: int = Field(default=2, ge=2, le=64)
    hidden: int = Field(default=16, ge=1, le=256)

    def request(self) -> TrainRequest:
        return TrainRequest(
            self.table,
            tuple(self.features),
            self.label,
            self.rounds,
            self.epsilon,
            self.learning_rate,
            self.model,
            self.classes,
            self.hidden,
        )


class TrainRunBody(TrainBody):
    accepted_price: int = Field(ge=0)


class VerifyBody(BaseModel):
    query_id: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")


class TelemetryCollectBody(BaseModel):
    task: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    start: int = Field(ge=0, lt=2**63)
    duration: int = Field(gt=0, lt=2**63)
    threshold: int | None = Field(default=None, ge=1, lt=2**63)
    prefixes: (
        list[Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[01]+$")]] | None
    ) = Field(default=None, min_length=1, max_length=1_024)


class RateBody(BaseModel):
    query_id: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")
    dataset_id: int = Field(ge=0, lt=2**63)
    stars: int = Field(ge=1, le=5)


def _status(exc: Exception) -> int:
    if isinstance(exc, PermissionError):
        return 401
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ConfigError):
        return 403 if "password" in str(exc) else 400
    if isinstance(exc, QueryError | ValueError):
        return 400
    if isinstance(exc, TransportError):
        return 502  # a role or the chain is down: not the user's input
    if isinstance(exc, PolicyViolation | LedgerError):
        return 409
    return 400


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error(status: int, message: str, kind: str) -> JSONResponse:
    """One clear message: plain text (a parser's terminal colours taken out)."""
    return JSONResponse({"error": _ANSI.sub("", message), "kind": kind}, status_code=status)


def _static_dir() -> Path:
    return Path(str(resources.files("tessera.web") / "static"))


def create_app(
    console: Console, *, allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES
) -> FastAPI:
    """The console's app over ``console``; ``allowed_hosts`` ``None`` accepts any ``Host``
    (a console bound beyond loopback, on purpose)."""
    app = FastAPI(title="Tessera console", docs_url=None, redoc_url=None, openapi_url=None)
    sessions: OrderedDict[str, str] = OrderedDict()  # session id -> CSRF token
    static = _static_dir()

    def session_of(request: Request) -> str | None:
        sid = request.cookies.get(COOKIE)
        return sid if sid in sessions else None

    def new_session(response: Response) -> str:
        sid = secrets.token_urlsafe(32)
        sessions[sid] = secrets.token_urlsafe(32)
        while len(sessions) > MAX_SESSIONS:
            sessions.popitem(last=False)
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")
        return sid

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        if allowed_hosts is not None and name not in allowed_hosts:
            return _error(421, f"this console does not answer to host {host!r}", "HostRefused")
        if request.method not in ("GET", "HEAD"):
            refusal = csrf_refusal(request, host)
            if refusal is not None:
                return _error(403, refusal, "CsrfRefused")
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def csrf_refusal(request: Request, host: str) -> str | None:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return f"cross-origin request refused (Origin {origin})"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site {site})"
        if not request.headers.get("content-type", "").startswith("application/json"):
            return "a state-changing request must be JSON"
        sid = session_of(request)
        if sid is None:
            return "no console session: reload the page"
        token = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), sessions[sid].encode()):
            return "missing or wrong CSRF token: reload the page"
        return None

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg")))
        return _error(422, "invalid input: " + "; ".join(parts), "ValidationError")

    @app.exception_handler(TesseraError)
    async def refused(_request: Request, exc: TesseraError) -> JSONResponse:
        return _error(_status(exc), str(exc), type(exc).__name__)

    @app.exception_handler(PermissionError)
    async def locked(_request: Request, exc: PermissionError) -> JSONResponse:
        return _error(401, str(exc), "Locked")

    @app.exception_handler(ValueError)
    async def bad_value(_request: Request, exc: ValueError) -> JSONResponse:
        return _error(400, str(exc), "ValueError")

    # -- pages -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        response: Response = FileResponse(static / "index.html", media_type="text/html")
        if session_of(request) is None:
            new_session(response)
        return response

    app.mount("/static", StaticFiles(directory=static), name="static")

    # -- the session ---------------------------------------------------------------------
    @app.get("/api/session")
    def session(request: Request, response: Response) -> dict[str, Any]:
        sid = session_of(request) or new_session(response)
        return {
            "csrf_token": sessions[sid],
            "unlocked": console.unlocked,
            "account": console.address,
            "keystore": console.keystore.name,
            "network": {
                "dir": str(console.dir),
                "nodes": console.state.get("spec", {}).get("nodes"),
                "threshold": console.state.get("spec", {}).get("t"),
                "providers": sorted(p.name for p in console.peers if p.role == "provider"),
                "committee": console.state.get("committee"),
            },
        }

    @app.post("/api/unlock")
    def unlock(body: UnlockBody) -> dict[str, Any]:
        return {"unlocked": True, "account": console.unlock(body.password)}

    # -- the analyst ---------------------------------------------------------------------
    @app.post("/api/quote")
    def quote(body: QueryBody) -> dict[str, Any]:
        return console.quote(body.request())

    @app.post("/api/run", status_code=202)
    def run(body: RunBody) -> dict[str, Any]:
        job = console.start(body.request(), body.accepted_price)
        return {"job_id": job.job_id, "quote": job.quote}

    @app.get("/api/jobs/{job_id}")
    def job(job_id: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]) -> dict[str, Any]:
        j = console.job(job_id)
        return {
            **j.summary(),
            "progress": list(j.progress),
            "result": j.payload,
            "error_kind": j.error_kind,
        }

    @app.get("/api/history")
    def history() -> list[dict[str, Any]]:
        return console.history()

    # -- the ledger explorer ---------------------------------------------------------------
    @app.get("/api/queries/{query_id}")
    def trail(query_id: str) -> dict[str, Any]:
        return console.trail(query_id)

    @app.post("/api/verify")
    def verify(body: VerifyBody) -> dict[str, Any]:
        return console.verify(body.query_id)

    @app.get("/api/ledger/events")
    def ledger_events() -> dict[str, Any]:
        return views.events(console)

    # -- providers, trends, trainings (read-only: no key) ----------------------------------
    @app.get("/api/providers")
    def providers() -> list[dict[str, Any]]:
        return views.providers(console)

    @app.get("/api/providers/{name}")
    def provider(name: Annotated[str, Path_(max_length=64)]) -> dict[str, Any]:
        return views.provider(console, name)

    @app.get("/api/market/trends")
    def trends() -> dict[str, Any]:
        return views.trends(console)

    @app.post("/api/train/quote")
    def train_quote(body: TrainBody) -> dict[str, Any]:
        return console.training_quote(body.request())

    @app.post("/api/train", status_code=202)
    def train(body: TrainRunBody) -> dict[str, Any]:
        job = console.start_training(body.request(), body.accepted_price)
        return {"job_id": job.job_id, "quote": job.quote}

    @app.get("/api/trainings")
    def trainings() -> list[dict[str, Any]]:
        return views.trainings(console)

    @app.get("/api/trainings/{training_id}")
    def training(training_id: Annotated[str, Path_(max_length=66)]) -> dict[str, Any]:
        return views.training(console, training_id)

    @app.get("/api/telemetry")
    def telemetry() -> dict[str, Any]:
        return views.telemetry(console)

    @app.post("/api/telemetry/collect")
    def telemetry_collect(body: TelemetryCollectBody) -> dict[str, Any]:
        return console.telemetry.collect(
            body.task,
            body.start,
            body.duration,
            threshold=body.threshold,
            prefixes=body.prefixes,
        )

    @app.get("/api/committees")
    def committees() -> list[dict[str, Any]]:
        return views.committees(console)

    @app.get("/api/participants")
    def participants() -> list[dict[str, Any]]:
        return console.participants()

    # -- the market ----------------------------------------------------------------------
    @app.get("/api/market/search")
    def search(tag: str = "") -> list[dict[str, Any]]:
        if len(tag) > 32:
            raise QueryError("a tag is at most 32 characters")
        return console.search(tag.strip())

    @app.get("/api/market/datasets/{dataset_id}")
    def dataset(dataset_id: int) -> dict[str, Any]:
        return console.dataset(dataset_id)

    @app.get("/api/market/stats")
    def stats() -> dict[str, Any]:
        return console.stats()

    @app.post("/api/market/rate")
    def rate(body: Annotated[RateBody, Body()]) -> dict[str, Any]:
        return console.rate(body.query_id, body.dataset_id, body.stars)

    return app
