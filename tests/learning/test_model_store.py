"""Models as canonical bytes, stored and fetched by CID (local directory, IPFS HTTP API)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import numpy as np
import pytest

from tessera.errors import DecodeError, InvalidProof, NotFound, TransportError
from tessera.learning import MLP, LinearRegression, LogisticRegression, SoftmaxRegression
from tessera.learning.serialize import decode_model, encode_model
from tessera.node.model_store import IpfsHttpStore, LocalModelStore, cid_of, parse_cid


def _cid_by_hand(data: bytes) -> str:
    """CIDv1 = multibase 'b' (base32, lower, unpadded) of version 1, raw 0x55, sha2-256."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def test_cids_are_ipfs_raw_block_cids() -> None:
    assert cid_of(b"hello") == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    for data in (b"", b"x" * 1000):
        assert cid_of(data) == _cid_by_hand(data)


@pytest.mark.parametrize(
    "model",
    [LinearRegression(3), LogisticRegression(4, l2=0.5), SoftmaxRegression(5, 3), MLP(4, 6, 3)],
    ids=lambda m: type(m).__name__,
)
def test_models_round_trip_canonically(model: object) -> None:
    rng = np.random.default_rng(0)
    params = rng.normal(size=model.num_params)  # type: ignore[attr-defined]
    data = encode_model(model, params, {"round": 3, "parent": None})  # type: ignore[arg-type]
    back, got, meta = decode_model(data)
    assert type(back) is type(model) and back.num_params == model.num_params  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got, params)
    assert meta == {"round": 3, "parent": None}
    assert encode_model(back, got, meta) == data


def test_malformed_models_are_refused() -> None:
    model = SoftmaxRegression(2, 2)
    data = encode_model(model, np.zeros(model.num_params))
    for bad in (
        data[:-8],
        data + b"\0" * 8,
        b"x" + data,
        data.replace(b'"kind":"softmax"', b'"kind":"forest"'),
    ):
        with pytest.raises(DecodeError):
            decode_model(bad)
    spaced = data.replace(b'{"meta"', b'{ "meta"')
    with pytest.raises(DecodeError, match="canonical"):
        decode_model(spaced)
    with pytest.raises(ValueError):
        encode_model(model, np.full(model.num_params, np.nan))


def test_the_local_store_checks_what_it_reads(tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "models")
    data = encode_model(LinearRegression(2), np.array([1.0, 2.0, 3.0]))
    cid = store.put(data)
    assert cid == cid_of(data) and store.put(data) == cid
    assert store.get(cid) == data and store.list() == [cid]
    tampered = data[:-1] + b"\1"
    (tmp_path / "models" / cid).write_bytes(tampered)
    with pytest.raises(InvalidProof, match="do not hash") as refused:
        store.get(cid)
    assert cid in str(refused.value) and cid_of(tampered) in str(refused.value)
    with pytest.raises(NotFound, match="no model"):
        store.get(cid_of(b"other"))
    with pytest.raises(DecodeError):
        store.get("not-a-cid")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "b",
        "not-a-cid",
        "../../etc/passwd",
        "bafk!!",
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4y",  # truncated digest
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0 (dag-pb)
        "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",  # dag-cbor
        "b" + "a" * 5000,
    ],
)
def test_a_malformed_or_foreign_cid_is_a_decode_error(text: str, tmp_path: Path) -> None:
    with pytest.raises(DecodeError):
        parse_cid(text)
    with pytest.raises(DecodeError):
        LocalModelStore(tmp_path).get(text)


def test_the_same_cid_in_another_base_reads_the_same_file(tmp_path: Path) -> None:
    from multiformats import CID

    store = LocalModelStore(tmp_path)
    data = encode_model(LinearRegression(1), np.array([1.0, 2.0]))
    cid = store.put(data)
    assert store.get(str(CID.decode(cid).set(base="base58btc"))) == data


def test_the_ipfs_store_uses_block_put_and_get_and_checks_the_node() -> None:
    blocks: dict[str, bytes] = {}
    lie = {"on": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v0/block/put":
            assert request.url.params["cid-codec"] == "raw"
            assert request.url.params["mhtype"] == "sha2-256"
            body = request.content
            data = body[body.index(b"\r\n\r\n") + 4 : body.rindex(b"\r\n--")]
            blocks[cid_of(data)] = data
            return httpx.Response(200, json={"Key": cid_of(data), "Size": len(data)})
        if request.url.path == "/api/v0/block/get":
            cid = request.url.params["arg"]
            if cid not in blocks:
                return httpx.Response(500, json={"Message": "block not found"})
            return httpx.Response(200, content=b"evil" if lie["on"] else blocks[cid])
        return httpx.Response(404)

    store = IpfsHttpStore(
        "http://127.0.0.1:5001", httpx.Client(transport=httpx.MockTransport(handler))
    )
    data = encode_model(LogisticRegression(2), np.array([0.5, -1.0, 2.0]))
    cid = store.put(data)
    assert cid == cid_of(data) and store.get(cid) == data
    lie["on"] = True
    with pytest.raises(InvalidProof):
        store.get(cid)
    with pytest.raises(TransportError):
        store.get(cid_of(b"missing"))
