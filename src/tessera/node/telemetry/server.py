"""Run one telemetry aggregator, on the loopback interface only (:mod:`tessera.node.serve`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from tessera.errors import ConfigError
from tessera.node.serve import serve as serve_app
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
    port = urlsplit(node.url).port
    if port is None:
        raise ConfigError(f"aggregator url {node.url} has no port")
    serve_app(
        create_app(node),
        HOST,
        port,
        on_ready=None if on_ready is None else (lambda actual: on_ready(node, actual)),
        log_level=log_level,
    )
