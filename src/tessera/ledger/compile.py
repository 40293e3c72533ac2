"""Compile the Vyper contracts from source, caching artifacts by source hash.

The key of a cached artifact is the SHA-256 of the compiler version, the
contract's source and every snekmate module it may import, so editing a
contract or upgrading a dependency recompiles. Artifacts live in the user
cache directory (``$TESSERA_CACHE_DIR``, else ``$XDG_CACHE_HOME/tessera``,
else ``~/.cache/tessera``), under ``ledger/``; they are never committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tessera.errors import LedgerError
from tessera.node.files import atomic_write, file_lock

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
CONTRACT_NAMES = (
    "credit_token",
    "registry",
    "catalog",
    "market",
    "governance",
    "model_registry",
)
#: Modules the contracts import (part of every contract's cache key).
MODULE_NAMES = ("sortition",)


@dataclass(frozen=True, slots=True)
class Artifact:
    """A compiled contract: its ABI and creation bytecode (hex, ``0x``-prefixed)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    runtime_size: int


def cache_dir() -> Path:
    env = os.environ.get("TESSERA_CACHE_DIR")
    if env:
        return Path(env) / "ledger"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tessera" / "ledger"


def _snekmate_root() -> Path:
    import snekmate

    paths = list(snekmate.__path__)
    if not paths:  # pragma: no cover - broken installation
        raise LedgerError("snekmate is not installed")
    return Path(paths[0])


@cache
def _library_digest() -> str:
    """Hash of the compiler version and every snekmate source (what a contract may import)."""
    import vyper

    h = hashlib.sha256(f"vyper {vyper.__version__}\n".encode())
    root = _snekmate_root()
    for path in sorted(root.rglob("*.vy*")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def source_digest(name: str) -> str:
    h = hashlib.sha256(_library_digest().encode() + b"\0")
    for part in (name, *MODULE_NAMES):
        h.update((CONTRACTS_DIR / f"{part}.vy").read_bytes() + b"\0")
    return h.hexdigest()


def _compile(name: str) -> Artifact:
    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle
    from vyper.exceptions import VyperException

    path = CONTRACTS_DIR / f"{name}.vy"
    bundle = FilesystemInputBundle([CONTRACTS_DIR, _snekmate_root().parent])
    try:
        out = vyper.compile_code(
            path.read_text(encoding="utf-8"),
            contract_path=path.name,
            output_formats=["abi", "bytecode", "bytecode_runtime"],
            input_bundle=bundle,
        )
    except VyperException as exc:
        raise LedgerError(f"{name}.vy does not compile: {exc}") from exc
    runtime = str(out["bytecode_runtime"])
    return Artifact(
        name=name,
        abi=list(out["abi"]),
        bytecode=str(out["bytecode"]),
        runtime_size=(len(runtime) - 2) // 2,
    )


def _read_artifact(name: str, path: Path) -> Artifact | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Artifact(
            name=name,
            abi=data["abi"],
            bytecode=data["bytecode"],
            runtime_size=int(data["runtime_size"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: rebuild, never trust a damaged file


def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """The compiled ``name`` contract, from the cache or freshly compiled (then cached).

    Several processes may ask at once (parallel test workers, roles starting together):
    the first compiles under a lock on the artifact, the others wait and read its file.
    The file itself is written atomically, so a reader never sees part of it."""
    if name not in CONTRACT_NAMES:
        raise LedgerError(f"unknown contract {name!r}")
    path = (directory or cache_dir()) / f"{name}-{source_digest(name)[:32]}.json"
    cached = _read_artifact(name, path)
    if cached is not None:
        return cached
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # a read-only cache: compile without the lock
            stack.enter_context(file_lock(path.with_name(f".{path.stem}.lock")))
            cached = _read_artifact(name, path)  # another process compiled it meanwhile
            if cached is not None:
                return cached
        artifact = _compile(name)
        record = {
            "abi": artifact.abi,
            "bytecode": artifact.bytecode,
            "runtime_size": artifact.runtime_size,
        }
        with contextlib.suppress(OSError):  # a read-only cache only costs a recompilation
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(record).encode())
        return artifact


def load_all(directory: Path | None = None) -> dict[str, Artifact]:
    return {name: load_artifact(name, directory) for name in CONTRACT_NAMES}
