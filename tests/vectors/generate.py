"""Generate Tessera's own test vectors from seeded randomness.

``python tests/vectors/generate.py`` rewrites the JSON files beside this
script. ``tests/crypto/test_vectors.py`` checks that the code still produces
these exact bytes and that every stored proof verifies. All randomness comes
from ``SeededRng(seed)`` (SHAKE-256 of the seed and a counter), so another
implementation can reproduce the bytes by consuming the stream in the same
order, or check itself against the verification side alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tessera.crypto.dkg import run_dkg
from tessera.crypto.elgamal import encrypt_with, keygen
from tessera.crypto.group import H, N, base_mul, generator, hash_to_point
from tessera.crypto.proofs import dleq_statement, prove_linear, prove_schnorr
from tessera.crypto.rangeproof import prove_range
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import key_switch_share, partial_decrypt
from tessera.crypto.transcript import Transcript

HERE = Path(__file__).resolve().parent


def group_vectors() -> dict[str, Any]:
    scalars = [0, 1, 2, 7, N - 1, 2**128 + 5]
    return {
        "description": "SEC1-compressed k·G (identity = 33 zero bytes) and hash-to-curve",
        "base_mul": [{"k": str(k), "point": base_mul(k).encode().hex()} for k in scalars],
        "hash_to_point": [
            {"label": label, "point": hash_to_point(label.encode()).encode().hex()}
            for label in ("H", "G/0", "G/1", "")
        ],
        "H": H.encode().hex(),
        "generator_G/17": generator("G/17").encode().hex(),
    }


def transcript_vectors() -> dict[str, Any]:
    t = Transcript(b"tessera/test", b"context")
    t.append(b"a", b"hello")
    t.append_int(b"n", -5)
    t.append_point(b"P", base_mul(3))
    e1 = t.challenge(b"first")
    e2 = t.challenge(b"second")
    return {
        "description": "Transcript(b'tessera/test', b'context'); append a=hello, n=-5, P=3G",
        "challenges": [str(e1), str(e2)],
    }


def elgamal_vectors() -> dict[str, Any]:
    rng = SeededRng("elgamal")
    x, pub = keygen(rng)
    cases = []
    for m in (0, 1, -1, 123456, 2**32 - 1):
        r = rng.scalar()
        cases.append({"m": m, "r": str(r), "ciphertext": encrypt_with(pub, m, r).encode().hex()})
    return {
        "seed": "elgamal",
        "secret_key": str(x),
        "public_key": pub.encode().hex(),
        "cases": cases,
    }


def proof_vectors() -> dict[str, Any]:
    rng = SeededRng("proofs")
    x = rng.scalar()
    schnorr = prove_schnorr(Transcript(b"tessera/test/schnorr", b"ctx"), x, rng)
    base2 = hash_to_point(b"test/base2")
    stmt = dleq_statement(base_mul(1), base_mul(x), base2, base2 * x)
    dleq = prove_linear(Transcript(b"tessera/test/dleq", b"ctx"), stmt, [x], rng)
    return {
        "seed": "proofs",
        "secret": str(x),
        "public": base_mul(x).encode().hex(),
        "schnorr": {
            "protocol": "tessera/test/schnorr",
            "context": "ctx",
            "proof": schnorr.encode().hex(),
        },
        "dleq": {
            "protocol": "tessera/test/dleq",
            "context": "ctx",
            "base2": base2.encode().hex(),
            "y2": (base2 * x).encode().hex(),
            "proof": dleq.encode().hex(),
        },
    }


def range_vectors() -> dict[str, Any]:
    rng = SeededRng("range")
    _, pub = keygen(rng)
    cases = []
    for m, lo, hi in (
        (5, 0, 15),
        (0, 0, 2**32 - 1),
        (2**32 - 1, 0, 2**32 - 1),
        (-3, -50, 70),
        (9, 9, 9),
    ):
        r = rng.scalar()
        ct = encrypt_with(pub, m, r)
        proof = prove_range(b"vector", pub, ct, m, r, lo, hi, rng)
        cases.append(
            {
                "m": m,
                "r": str(r),
                "lo": lo,
                "hi": hi,
                "ciphertext": ct.encode().hex(),
                "proof": proof.encode().hex(),
            }
        )
    return {"seed": "range", "context": "vector", "public_key": pub.encode().hex(), "cases": cases}


def threshold_vectors() -> dict[str, Any]:
    rng = SeededRng("threshold")
    keys, transcript = run_dkg(3, 2, rng)
    k0 = keys[1]
    ct = encrypt_with(k0.public_key, 42, rng.scalar())
    _, analyst = keygen(rng)
    parts = [partial_decrypt(b"vector", i, keys[i].secret_share, ct, rng) for i in (1, 2, 3)]
    switches = [
        key_switch_share(b"vector", i, keys[i].secret_share, ct, analyst, rng) for i in (1, 2, 3)
    ]
    return {
        "seed": "threshold",
        "n": 3,
        "t": 2,
        "qualified": list(transcript.qualified),
        "public_key": k0.public_key.encode().hex(),
        "public_shares": {str(i): p.encode().hex() for i, p in sorted(k0.public_shares.items())},
        "ciphertext": ct.encode().hex(),
        "plaintext": 42,
        "analyst_key": analyst.encode().hex(),
        "partial_decryptions": [p.encode().hex() for p in parts],
        "key_switch_shares": [s.encode().hex() for s in switches],
    }


ALL = {
    "group.json": group_vectors,
    "transcript.json": transcript_vectors,
    "elgamal.json": elgamal_vectors,
    "proofs.json": proof_vectors,
    "rangeproof.json": range_vectors,
    "threshold.json": threshold_vectors,
}


def main() -> int:
    for name, fn in ALL.items():
        (HERE / name).write_text(json.dumps(fn(), indent=2) + "\n")
        print(f"wrote {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
