"""Run one telemetry aggregator under uvicorn, bound to the loopback interface only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from tessera.errors import ConfigError
from tessera.node.telemetry.aggregator import AggregatorNode, create_app
from tessera.node.telemetry.config import load_task_config

#: Aggregators listen here whatever host their URL names (put a proxy in front to expose).
HOST = "127.0.0.1"


def build_node(config_paths: Sequence[Path | str], agg_id: int) -> AggregatorNode:
    """An aggregator for every task file (all must give it the same URL)."""
    configs = [load_task_config(p) for p in config_paths]
    return AggregatorNode(configs, agg_id)


def serve(
    config_paths: Sequence[Path | str],
    agg_id: int,
    *,
    on_ready: Callable[[AggregatorNode, int], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM shut down cleanly)."""
    node = build_node(config_paths, agg_id)
    from urllib.parse import urlsplit

    port = urlsplit(node.url).port
    if port is None:
        raise ConfigError(f"aggregator url {node.url} has no port")
    config = uvicorn.Config(
        create_app(node),
        host=HOST,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                break
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready(node, port)
        await task

    asyncio.run(main())
    if not server.started:
        raise ConfigError(f"aggregator could not listen on {HOST}:{port} (port in use?)")
