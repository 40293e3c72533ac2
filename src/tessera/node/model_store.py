"""Content-addressed storage of models: CIDv1 (raw, sha2-256, base32), local or an IPFS node.

A model's bytes (:func:`tessera.learning.serialize.encode_model`) are stored under their
CID, the address any IPFS node would give the same bytes as a raw block; reading checks
the bytes against the CID, so a store cannot hand back something else. The local store
is a directory of files named by CID (written atomically); :class:`IpfsHttpStore` talks
to an IPFS node's HTTP API (``/api/v0/block/put`` and ``/api/v0/block/get``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import httpx
from multiformats import CID, multihash

from tessera.errors import DecodeError, InvalidProof, NotFound, TransportError
from tessera.learning.models import Array, Model
from tessera.learning.rounds import RoundRecord
from tessera.learning.serialize import encode_model
from tessera.ledger.client import rho_to_micro
from tessera.node.files import atomic_write


def cid_of(data: bytes) -> str:
    """The CIDv1 of ``data`` as a raw block with a sha2-256 multihash, in base32."""
    return str(CID("base32", 1, "raw", multihash.digest(data, "sha2-256")))


def parse_cid(text: str) -> CID:
    """A CID this store can check (CIDv1, raw, sha2-256), or ``DecodeError``."""
    if not isinstance(text, str) or len(text) > 256:
        raise DecodeError(f"not a CID: {str(text)[:80]!r}")
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # multiformats' errors vary
        raise DecodeError(f"not a CID: {text!r}") from exc
    if cid.version != 1 or cid.codec.name != "raw" or cid.hashfun.name != "sha2-256":
        raise DecodeError(f"{text}: expected a CIDv1 of a raw block with sha2-256")
    return cid


def check(cid: str, data: bytes) -> bytes:
    """``data`` if it is what ``cid`` addresses, else ``InvalidProof`` naming both CIDs."""
    parse_cid(cid)
    actual = cid_of(data)
    if actual != str(CID.decode(cid).set(base="base32")):
        raise InvalidProof(f"the bytes fetched for {cid} do not hash to it: their CID is {actual}")
    return data


class ModelStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, cid: str) -> bytes: ...


class LocalModelStore:
    """Files named by CID in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        cid = cid_of(data)
        path = self.directory / cid
        if not path.exists():
            atomic_write(path, data, mode=0o644)
        return cid

    def get(self, cid: str) -> bytes:
        parse_cid(cid)
        path = self.directory / str(CID.decode(cid).set(base="base32"))
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"no model {cid} in {self.directory}") from exc
        return check(cid, data)

    def list(self) -> list[str]:
        return sorted(p.name for p in self.directory.iterdir() if p.name.startswith("bafk"))


class IpfsHttpStore:
    """An IPFS node's HTTP API (Kubo's ``/api/v0``); ``client`` may carry a test transport."""

    def __init__(self, api_url: str, client: httpx.Client | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.client = client or httpx.Client(timeout=60.0)

    def put(self, data: bytes) -> str:
        try:
            resp = self.client.post(
                f"{self.api_url}/api/v0/block/put",
                params={"cid-codec": "raw", "mhtype": "sha2-256", "pin": "true"},
                files={"data": ("model", data)},
            )
            resp.raise_for_status()
            key = resp.json()["Key"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise TransportError(f"IPFS block/put at {self.api_url} failed: {exc}") from exc
        cid = cid_of(data)
        if str(CID.decode(key).set(base="base32")) != cid:
            raise InvalidProof(f"the IPFS node stored the model as {key}, expected {cid}")
        return cid

    def get(self, cid: str) -> bytes:
        parse_cid(cid)
        try:
            resp = self.client.post(f"{self.api_url}/api/v0/block/get", params={"arg": cid})
        except httpx.HTTPError as exc:
            raise TransportError(
                f"IPFS block/get of {cid} at {self.api_url} failed: {exc}"
            ) from exc
        if resp.status_code != 200:
            raise TransportError(
                f"IPFS block/get of {cid} at {self.api_url} failed: HTTP {resp.status_code}"
                f"{_node_message(resp)}"
            )
        return check(cid, resp.content)


def _node_message(resp: httpx.Response) -> str:
    """The IPFS node's own one-line reason (Kubo answers errors as ``{"Message": ...}``)."""
    try:
        message = resp.json().get("Message")
    except (ValueError, AttributeError):
        return ""
    return f" ({' '.join(str(message).split())[:200]})" if message else ""


class RegistryLike(Protocol):
    """What :class:`ModelLog` needs of :class:`tessera.ledger.model_registry.ModelRegistry`."""

    def open_training(self, training: bytes, committee: int, cid: str) -> object: ...

    def open_local_training(self, training: bytes, cid: str) -> object: ...

    def record_round(self, training: bytes, cid: str, parent: str, query_id: bytes) -> object: ...

    def record_local_round(
        self, training: bytes, cid: str, parent: str, rho_micro: int
    ) -> object: ...


def round_query_id(record: RoundRecord) -> bytes | None:
    """The market query that ran ``record``'s round (``RoundRecord.query_id``, the hex of
    32 bytes), or ``None`` for a round off the market."""
    text = getattr(record, "query_id", None)
    if text is None:
        return None
    if not isinstance(text, str) or not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        raise ValueError(f"round {record.index + 1}: {text!r} is not a market query id")
    return bytes.fromhex(text.removeprefix("0x"))


class ModelLog:
    """A :class:`tessera.learning.rounds.Observer` that stores every round's model by CID
    and, given a registry (:class:`tessera.ledger.model_registry.ModelRegistry`), chains
    it there.

    A market training (the default) records each round with the market query that ran it
    (``RoundRecord.query_id``): the registry takes the round's ρ from that query, and a
    round without one stops the training with ``ValueError`` rather than go unrecorded.
    ``local=True`` opens the training as local on the registry: rounds name no query and
    the registry holds the micro-ρ stated here (``rho_to_micro(record.rho)``).
    """

    def __init__(
        self,
        store: ModelStore,
        training: bytes,
        registry: RegistryLike | None = None,
        committee: int = 0,
        *,
        local: bool = False,
    ) -> None:
        self.store, self.training, self.registry = store, training, registry
        self.committee, self.local = committee, local
        self.cids: list[str] = []

    def start(self, model: Model, params: Array) -> None:
        meta = {"round": 0, "parent": None, "training": "0x" + self.training.hex()}
        cid = self.store.put(encode_model(model, params, meta))
        if self.registry is not None:
            if self.local:
                self.registry.open_local_training(self.training, cid)
            else:
                self.registry.open_training(self.training, self.committee, cid)
        self.cids = [cid]

    def round(self, model: Model, params: Array, record: RoundRecord) -> None:
        if not self.cids:
            raise ValueError("the training was not started")
        query = round_query_id(record)
        if self.registry is not None and not self.local and query is None:
            raise ValueError(
                f"round {record.index + 1} names no market query: a market training's "
                "registry entry needs one (ModelLog(local=True) records a local training)"
            )
        if self.local and query is not None:
            raise ValueError(
                f"round {record.index + 1} ran as market query 0x{query.hex()}, "
                "but the training is local"
            )
        parent = self.cids[-1]
        meta: dict[str, object] = {
            "round": record.index + 1,
            "parent": parent,
            "epsilon": record.epsilon_spent,
            "training": "0x" + self.training.hex(),
        }
        if query is not None:
            meta["query_id"] = "0x" + query.hex()
        cid = self.store.put(encode_model(model, params, meta))
        if self.registry is not None:
            if query is not None:
                self.registry.record_round(self.training, cid, parent, query)
            else:
                self.registry.record_local_round(
                    self.training, cid, parent, rho_to_micro(record.rho)
                )
        self.cids.append(cid)
