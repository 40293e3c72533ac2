"""Replay Tessera's own seeded vectors (tests/vectors/*.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tessera.crypto.elgamal import Ciphertext, decrypt_to_point
from tessera.crypto.group import H, N, Point, base_mul, hash_to_point
from tessera.crypto.proofs import LinearProof, dleq_statement, verify_linear, verify_schnorr
from tessera.crypto.rangeproof import RangeProof, verify_range
from tessera.crypto.threshold import (
    KeySwitchShare,
    PartialDecryption,
    combine_partials,
    verify_key_switch,
    verify_partial,
)
from tessera.crypto.transcript import Transcript
from tessera.errors import InvalidProof

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tessera_vectors", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@pytest.mark.parametrize("name", sorted(GEN.ALL))
def test_code_reproduces_stored_bytes(name: str) -> None:
    assert GEN.ALL[name]() == load(name)


def test_group_vectors() -> None:
    v = load("group.json")
    for case in v["base_mul"]:
        assert base_mul(int(case["k"])).encode().hex() == case["point"]
    for case in v["hash_to_point"]:
        assert hash_to_point(case["label"].encode()).encode().hex() == case["point"]
    assert H.encode().hex() == v["H"]
    assert v["base_mul"][0]["point"] == "00" * 33  # identity


def test_elgamal_vectors_decrypt() -> None:
    v = load("elgamal.json")
    x = int(v["secret_key"])
    for case in v["cases"]:
        ct = Ciphertext.decode(bytes.fromhex(case["ciphertext"]))
        assert decrypt_to_point(x, ct) == base_mul(case["m"] % N)


def test_proof_vectors_verify() -> None:
    v = load("proofs.json")
    public = Point.decode(bytes.fromhex(v["public"]))
    s = v["schnorr"]
    proof = LinearProof.decode(bytes.fromhex(s["proof"]), 1)
    verify_schnorr(Transcript(s["protocol"].encode(), s["context"].encode()), public, proof)
    with pytest.raises(InvalidProof):
        verify_schnorr(Transcript(s["protocol"].encode(), b"other"), public, proof)
    d = v["dleq"]
    stmt = dleq_statement(
        base_mul(1),
        public,
        Point.decode(bytes.fromhex(d["base2"])),
        Point.decode(bytes.fromhex(d["y2"])),
    )
    verify_linear(
        Transcript(d["protocol"].encode(), d["context"].encode()),
        stmt,
        LinearProof.decode(bytes.fromhex(d["proof"]), 1),
    )


def test_range_vectors_verify() -> None:
    v = load("rangeproof.json")
    pub = Point.decode(bytes.fromhex(v["public_key"]))
    for case in v["cases"]:
        ct = Ciphertext.decode(bytes.fromhex(case["ciphertext"]))
        proof = RangeProof.decode(bytes.fromhex(case["proof"]))
        verify_range(v["context"].encode(), pub, ct, case["lo"], case["hi"], proof)
        with pytest.raises(InvalidProof):
            verify_range(v["context"].encode(), pub, ct, case["lo"], case["hi"] + 1, proof)


def test_threshold_vectors_verify_and_combine() -> None:
    v = load("threshold.json")
    shares = {int(i): Point.decode(bytes.fromhex(p)) for i, p in v["public_shares"].items()}
    ct = Ciphertext.decode(bytes.fromhex(v["ciphertext"]))
    analyst = Point.decode(bytes.fromhex(v["analyst_key"]))
    parts = [PartialDecryption.decode(bytes.fromhex(p)) for p in v["partial_decryptions"]]
    for p in parts:
        verify_partial(b"vector", shares[p.index], ct, p)
    assert combine_partials(ct, parts[1:], v["t"]) == base_mul(v["plaintext"])
    for raw in v["key_switch_shares"]:
        ks = KeySwitchShare.decode(bytes.fromhex(raw))
        verify_key_switch(b"vector", shares[ks.index], ct, analyst, ks)
