"""A node's HTTP API (FastAPI) around a :class:`Handler`, served by :mod:`tessera.node.serve`.

Endpoints::

    POST /v1/{path}     a signed request (see :mod:`tessera.node.envelope`) -> the handler's reply
    GET  /v1/health     unsigned: {"address": <this node>, "status": "ok"}
    GET  /v1/progress   unsigned: handler.progress()

A request body over ``max_body`` bytes is refused with 413 before it is read in
full (the declared ``Content-Length`` is checked first, then the bytes are counted
as they arrive). Refusals are JSON ``{"error": <class name>, "message": ...}`` with
the statuses of :data:`tessera.errors.HTTP_STATUS`.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from tessera.node.envelope import KeyDirectory, ReplayGuard
from tessera.node.identity import Identity
from tessera.node.serve import serve, start_in_thread, stop_thread
from tessera.node.transport import (
    MAX_BODY,
    Handler,
    serve_progress,
    serve_request,
    too_large,
)

__all__ = ["create_app", "serve", "start_in_thread", "stop_thread"]

JSON: Final = "application/json"


def _reply(status_body: tuple[int, bytes]) -> Response:
    status, body = status_body
    return Response(content=body, status_code=status, media_type=JSON)


def create_app(
    handler: Handler,
    identity: Identity,
    directory: KeyDirectory,
    guard: ReplayGuard,
    *,
    max_body: int = MAX_BODY,
) -> FastAPI:
    """The FastAPI application of one node."""
    app = FastAPI(title="tessera node", docs_url=None, redoc_url=None, openapi_url=None)
    address = identity.address

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"address": address, "status": "ok"}

    @app.get("/v1/progress")
    async def progress() -> Response:
        return _reply(await run_in_threadpool(serve_progress, handler))

    @app.post("/v1/{path:path}")
    async def call(path: str, request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return _reply(too_large(max_body))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                return _reply(too_large(max_body))
            chunks.append(chunk)
        body = b"".join(chunks)
        # Verification may ask the chain for a key and the handler may compute for a
        # while: both run in a worker thread, off the event loop.
        return _reply(
            await run_in_threadpool(
                serve_request,
                handler,
                address,
                directory,
                guard,
                path,
                request.headers,
                body,
                max_body=max_body,
            )
        )

    return app
