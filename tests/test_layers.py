"""Layering: the pure layers (crypto, protocol) do no I/O, no clock and no networking."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tessera"
PURE_PACKAGES = ("crypto", "protocol")

FORBIDDEN_MODULES = frozenset(
    {
        "socket",
        "asyncio",
        "web3",
        "sqlite3",
        "http",
        "urllib",
        "httpx",
        "requests",
        "aiohttp",
        "fastapi",
        "uvicorn",
        "time",
        "datetime",
        "selectors",
        "ssl",
        "subprocess",
        "multiprocessing",
        "threading",
    }
)
FORBIDDEN_PACKAGES = ("tessera.node", "tessera.cli", "tessera.ledger")


def _forbidden(module: str) -> bool:
    if module.split(".")[0] in FORBIDDEN_MODULES:
        return True
    return any(module == p or module.startswith(p + ".") for p in FORBIDDEN_PACKAGES)


def _imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """Every module an import statement names, with relative imports resolved.

    ``from X import Y`` yields both ``X`` and ``X.Y`` (``Y`` may be a submodule, as in
    ``from tessera import node``). Imports inside functions and ``if TYPE_CHECKING``
    blocks are included: the rule is about the source, not about the runtime path.
    """
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.append((node.lineno, base))
            out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def violations(source: str, package: str = "tessera.crypto") -> list[str]:
    """Forbidden imports in ``source``, a module of ``package``, as ``line: module``."""
    tree = ast.parse(source)
    return [f"{line}: {mod}" for line, mod in _imported_modules(tree, package) if _forbidden(mod)]


def _pure_files() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (SRC / pkg).rglob("*.py"))


def test_pure_layers_exist() -> None:
    files = _pure_files()
    names = {p.relative_to(SRC).as_posix() for p in files}
    # guard against the walk silently finding nothing (wrong path, renamed package)
    assert "crypto/group.py" in names and "protocol/aggregation.py" in names
    assert len(files) >= 10


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_pure_layer_has_no_forbidden_imports(path: Path) -> None:
    rel = path.relative_to(SRC).with_suffix("")
    package = ".".join(("tessera", *rel.parts[:-1]))  # also right for __init__.py
    found = violations(path.read_text(encoding="utf-8"), package)
    assert found == [], f"{path.relative_to(SRC)} imports forbidden modules: {found}"


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import asyncio.events",
        "import os, time",
        "import datetime as dt",
        "from time import monotonic",
        "from datetime import datetime",
        "from urllib.request import urlopen",
        "from http import client",
        "import http.client",
        "import web3",
        "from web3 import Web3",
        "import sqlite3",
        "import httpx",
        "import requests",
        "import aiohttp",
        "from fastapi import FastAPI",
        "import uvicorn",
        "import selectors",
        "import ssl",
        "import subprocess",
        "from multiprocessing import Pool",
        "import threading",
        "import tessera.node",
        "import tessera.node.dlog_cache",
        "from tessera.node import dlog_cache",
        "from tessera.node.dlog_cache import load_table",
        "from tessera import node",
        "from tessera import cli",
        "from tessera import ledger",
        "from tessera.cli.main import app",
        "import tessera.ledger.chain as chain",
        "from ..node import dlog_cache",
        "from .. import node",
        "def f():\n    import socket\n",
        "if TYPE_CHECKING:\n    from tessera.node import x\n",
        "try:\n    import ssl\nexcept ImportError:\n    pass\n",
        "__import__('subprocess')",
        "importlib.import_module('tessera.cli')",
    ],
)
def test_checker_flags_offending_source(source: str) -> None:
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import hashlib",
        "import numpy as np",
        "from tessera.crypto.group import G",
        "from tessera.errors import DecodeError",
        "from . import group",
        "from .group import G",
        "import timeit_helpers",  # prefix of a forbidden name is not the name
        "import sslib",
        "from tessera.nodes import x",
        "from tessera.client import x",
        "import tessera.cliff",
        "x = 'import socket'",
        "# import time",
    ],
)
def test_checker_accepts_clean_source(source: str) -> None:
    assert violations(source) == [], source


def test_checker_reports_line_numbers() -> None:
    assert violations("import hashlib\n\nfrom time import sleep\n") == ["3: time", "3: time.sleep"]
