"""Content-addressed storage of models: CIDv1 (raw, sha2-256, base32), local or an IPFS node.

A model's bytes (:func:`tessera.learning.serialize.encode_model`) are stored under their
CID, the address any IPFS node would give the same bytes as a raw block; reading checks
the bytes against the CID, so a store cannot hand back something else. The local store
is a directory of files named by CID (written atomically); :class:`IpfsHttpStore` talks
to an IPFS node's HTTP API (``/api/v0/block/put`` and ``/api/v0/block/get``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import httpx
from multiformats import CID, multihash

from tessera.errors import DecodeError, InvalidProof, TransportError
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
    try:
        cid = CID.decode(text)
    except (ValueError, KeyError) as exc:
        raise DecodeError(f"not a CID: {text!r}") from exc
    if cid.version != 1 or cid.codec.name != "raw" or cid.hashfun.name != "sha2-256":
        raise DecodeError(f"{text}: expected a CIDv1 of a raw block with sha2-256")
    return cid


def check(cid: str, data: bytes) -> bytes:
    """``data`` if it is what ``cid`` addresses, else ``InvalidProof``."""
    parse_cid(cid)
    if cid_of(data) != str(CID.decode(cid).set(base="base32")):
        raise InvalidProof(f"the bytes fetched for {cid} do not hash to it")
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
            raise KeyError(f"no model {cid} in {self.directory}") from exc
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
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            raise TransportError(
                f"IPFS block/get of {cid} at {self.api_url} failed: {exc}"
            ) from exc
        return check(cid, resp.content)


class RegistryLike(Protocol):
    def open_training(self, training: bytes, committee: int, cid: str) -> str: ...

    def record_round(self, training: bytes, cid: str, parent: str, rho_micro: int) -> str: ...


class ModelLog:
    """A :class:`tessera.learning.rounds.Observer` that stores every round's model by CID
    and, given a registry (:class:`tessera.ledger.model_registry.ModelRegistry`), chains
    it there: ``(CID, parent CID, micro-ρ of the round)``."""

    def __init__(
        self,
        store: ModelStore,
        training: bytes,
        registry: RegistryLike | None = None,
        committee: int = 0,
    ) -> None:
        self.store, self.training, self.registry, self.committee = (
            store,
            training,
            registry,
            committee,
        )
        self.cids: list[str] = []

    def start(self, model: Model, params: Array) -> None:
        cid = self.store.put(encode_model(model, params, {"round": 0, "parent": None}))
        if self.registry is not None:
            self.registry.open_training(self.training, self.committee, cid)
        self.cids = [cid]

    def round(self, model: Model, params: Array, record: RoundRecord) -> None:
        if not self.cids:
            raise ValueError("the training was not started")
        parent = self.cids[-1]
        meta = {"round": record.index + 1, "parent": parent, "epsilon": record.epsilon_spent}
        cid = self.store.put(encode_model(model, params, meta))
        if self.registry is not None:
            self.registry.record_round(self.training, cid, parent, rho_to_micro(record.rho))
        self.cids.append(cid)
