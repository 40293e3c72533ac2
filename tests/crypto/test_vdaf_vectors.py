"""Replays the official draft-irtf-cfrg-vdaf-18 test vectors (XOF, IDPF, Prio3, Poplar1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tessera.crypto.field import Field64, Field128, Field255
from tessera.crypto.idpf import IdpfBBCGGI21
from tessera.crypto.poplar1 import Poplar1
from tessera.crypto.prio3 import (
    Prio3Count,
    Prio3HigherDegree,
    Prio3Histogram,
    Prio3MultihotCountVec,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
)
from tessera.crypto.vdaf import Vdaf
from tessera.crypto.xof import XofFixedKeyAes128, XofTurboShake128
from tessera.errors import DecodeError, InvalidProof

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "vdaf"


def _files() -> list[Path]:
    if not VECTORS.is_dir():
        raise RuntimeError(f"VDAF test vectors not found at {VECTORS}")
    files = sorted(VECTORS.glob("*.json"))
    if len(files) != 35:
        raise RuntimeError(f"expected 35 VDAF vector files in {VECTORS}, found {len(files)}")
    return files


FILES = _files()
XOF_FILES = [f for f in FILES if f.stem.startswith("Xof")]
IDPF_FILES = [f for f in FILES if f.stem.startswith("Idpf")]
VDAF_FILES = [f for f in FILES if f.stem.startswith(("Prio3", "Poplar1"))]


def test_all_vectors_present() -> None:
    assert len(XOF_FILES) + len(IDPF_FILES) + len(VDAF_FILES) == 35


@pytest.mark.parametrize("path", XOF_FILES, ids=lambda p: p.stem)
def test_xof_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    xof = {"XofTurboShake128": XofTurboShake128, "XofFixedKeyAes128": XofFixedKeyAes128}[path.stem]
    seed, dst, binder = (bytes.fromhex(v[k]) for k in ("seed", "dst", "binder"))
    assert xof.derive_seed(seed, dst, binder).hex() == v["derived_seed"]
    vec = xof.expand_into_vec(Field128, seed, dst, binder, v["length"])
    assert Field128.encode_vec(vec).hex() == v["expanded_vec_field128"]


@pytest.mark.parametrize("path", IDPF_FILES, ids=lambda p: p.stem)
def test_idpf_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    idpf = IdpfBBCGGI21(len(v["beta_leaf"]), v["bits"])
    alpha = tuple(bool(b) for b in v["alpha"])
    beta_inner = [[int(x) for x in level] for level in v["beta_inner"]]
    beta_leaf = [int(x) for x in v["beta_leaf"]]
    ctx, nonce = bytes.fromhex(v["ctx"]), bytes.fromhex(v["nonce"])
    rand = b"".join(bytes.fromhex(k) for k in v["keys"])
    public_share, keys = idpf.gen(alpha, beta_inner, beta_leaf, ctx, nonce, rand)
    assert idpf.encode_public_share(public_share).hex() == v["public_share"]
    assert [k.hex() for k in keys] == v["keys"]
    decoded = idpf.decode_public_share(bytes.fromhex(v["public_share"]))
    # Evaluating both keys on alpha's prefixes yields beta at every level.
    for level in range(v["bits"]):
        prefix = alpha[: level + 1]
        field = Field64 if level < v["bits"] - 1 else Field255
        shares = [
            idpf.eval(agg_id, decoded, keys[agg_id], level, [prefix], ctx, nonce)[0]
            for agg_id in range(2)
        ]
        expected = beta_inner[level] if level < v["bits"] - 1 else beta_leaf
        assert field.vec_add(shares[0], shares[1]) == expected


def _vdaf_for(
    name: str, v: dict[str, Any]
) -> Vdaf[Any, Any, Any, Any, Any, Any, Any, Any, Any, Any]:
    shares = v["shares"]
    kind = name.rsplit("_", 1)[0]
    if kind.startswith("Prio3Count"):
        return Prio3Count(shares)
    if kind == "Prio3Sum":
        return Prio3Sum(shares, v["max_measurement"])
    if kind == "Prio3SumVec":
        return Prio3SumVec(shares, v["length"], v["max_measurement"], v["chunk_length"])
    if kind == "Prio3SumVecWithMultiproof":
        return Prio3SumVecWithMultiproof(
            shares, v["length"], v["max_measurement"], v["chunk_length"], proofs=3
        )
    if kind.startswith("Prio3Histogram"):
        return Prio3Histogram(shares, v["length"], v["chunk_length"])
    if kind == "Prio3MultihotCountVec":
        return Prio3MultihotCountVec(shares, v["length"], v["max_weight"], v["chunk_length"])
    if kind == "Prio3HigherDegree":
        return Prio3HigherDegree(shares)
    if kind.startswith("Poplar1"):
        return Poplar1(v["bits"])
    raise AssertionError(f"unknown vector {name}")


def _measurement(name: str, m: Any) -> Any:
    if name.startswith("Poplar1"):
        return tuple(bool(b) for b in m)
    return m


@pytest.mark.parametrize("path", VDAF_FILES, ids=lambda p: p.stem)
def test_vdaf_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    vdaf = _vdaf_for(path.stem, v)
    ctx = bytes.fromhex(v["ctx"])
    verify_key = bytes.fromhex(v["verify_key"])
    agg_param = vdaf.decode_agg_param(bytes.fromhex(v["agg_param"]))
    assert vdaf.encode_agg_param(agg_param).hex() == v["agg_param"]
    reports = v["reports"]
    states: dict[tuple[int, int], Any] = {}
    out_shares: dict[tuple[int, int], Any] = {}
    agg_shares: list[Any] = []
    ran = 0

    for op in v["operations"]:
        kind, success = op["operation"], op["success"]
        ran += 1
        if kind == "shard":
            r = reports[op["report_index"]]
            public_share, input_shares = vdaf.shard(
                ctx,
                _measurement(path.stem, r["measurement"]),
                bytes.fromhex(r["nonce"]),
                bytes.fromhex(r["rand"]),
            )
            assert success
            assert vdaf.encode_public_share(public_share).hex() == r["public_share"]
            assert [vdaf.encode_input_share(s).hex() for s in input_shares] == r["input_shares"]
        elif kind == "verify_init":
            i, agg_id = op["report_index"], op["aggregator_id"]
            r = reports[i]

            def init(r: dict[str, Any] = r, agg_id: int = agg_id) -> Any:
                public_share = vdaf.decode_public_share(bytes.fromhex(r["public_share"]))
                input_share = vdaf.decode_input_share(
                    agg_id, bytes.fromhex(r["input_shares"][agg_id])
                )
                return vdaf.verify_init(
                    verify_key,
                    ctx,
                    agg_id,
                    agg_param,
                    bytes.fromhex(r["nonce"]),
                    public_share,
                    input_share,
                )

            if not success:
                with pytest.raises((InvalidProof, DecodeError)):
                    init()
                continue
            state, share = init()
            states[(i, agg_id)] = state
            assert vdaf.encode_verifier_share(share).hex() == r["verifier_shares"][0][agg_id]
        elif kind == "verifier_shares_to_message":
            i, rnd = op["report_index"], op["round"]
            r = reports[i]

            def combine(r: dict[str, Any] = r, i: int = i, rnd: int = rnd) -> Any:
                shares = [
                    vdaf.decode_verifier_share(states[(i, agg_id)], bytes.fromhex(enc))
                    for agg_id, enc in enumerate(r["verifier_shares"][rnd])
                ]
                return vdaf.verifier_shares_to_message(ctx, agg_param, shares)

            if not success:
                with pytest.raises((InvalidProof, DecodeError)):
                    combine()
                continue
            msg = combine()
            assert vdaf.encode_verifier_message(msg).hex() == r["verifier_messages"][rnd]
        elif kind == "verify_next":
            i, agg_id, rnd = op["report_index"], op["aggregator_id"], op["round"]
            r = reports[i]
            state = states[(i, agg_id)]
            msg = vdaf.decode_verifier_message(
                state, bytes.fromhex(r["verifier_messages"][rnd - 1])
            )
            if not success:
                with pytest.raises((InvalidProof, DecodeError)):
                    vdaf.verify_next(ctx, state, msg)
                continue
            result = vdaf.verify_next(ctx, state, msg)
            if rnd == vdaf.ROUNDS:
                out_shares[(i, agg_id)] = result
                assert vdaf.encode_agg_share(result).hex() == r["out_shares"][agg_id]
            else:
                assert isinstance(result, tuple)
                states[(i, agg_id)] = result[0]
                assert (
                    vdaf.encode_verifier_share(result[1]).hex() == r["verifier_shares"][rnd][agg_id]
                )
        elif kind == "aggregate":
            agg_id = op["aggregator_id"]
            assert success
            outs = [out_shares[(i, agg_id)] for i in range(len(reports))]
            agg_share = vdaf.aggregate(agg_param, outs)
            assert vdaf.encode_agg_share(agg_share).hex() == v["agg_shares"][agg_id]
            agg_shares.append(
                vdaf.decode_agg_share(agg_param, bytes.fromhex(v["agg_shares"][agg_id]))
            )
        elif kind == "unshard":
            assert success
            assert vdaf.unshard(agg_param, agg_shares, len(reports)) == v["agg_result"]
        else:
            raise AssertionError(f"unknown operation {kind}")
    assert ran == len(v["operations"]) > 0
