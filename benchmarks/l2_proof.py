"""Proven-clipping benchmark: Prio3FixedPointBoundedL2VecSum at 10^4 and 10^5 parameters.

For each (parameters, bits) it shards one update (encode, share, prove), runs every
aggregator's verify_init (leader: explicit shares; helpers: expanded from seeds),
the joint decision, and reports the sizes. The compiled path (tessera.crypto.prio3_l2)
is what is timed; the spec-style Prio3 is timed at a size it finishes quickly, as the
reference ratio. Kernels are compiled (or loaded from numba's cache) before timing.

    python benchmarks/l2_proof.py                 # table, 3 aggregators
    python benchmarks/l2_proof.py --json          # one JSON object
    python benchmarks/l2_proof.py --quick         # 10^3 and 10^4 only
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import numpy as np

from tessera.crypto import prio3_l2
from tessera.crypto.flp import chunk_length_for
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum

CTX = b"tessera l2 benchmark"


def make_vdaf(shares: int, length: int, bits: int) -> Prio3FixedPointBoundedL2VecSum:
    """Norm bound C = 1 in units of 2^(bits-1); chunks about sqrt of what each gadget checks."""
    norm_bits = (1 << (2 * bits - 2)).bit_length()
    chunk = chunk_length_for(length * bits + norm_bits)
    norm_chunk = chunk_length_for(length)
    return Prio3FixedPointBoundedL2VecSum(
        shares, length, bits, 1 << (2 * bits - 2), chunk, norm_chunk
    )


def _vector(rng: np.random.Generator, length: int, bits: int) -> Any:
    x = rng.normal(size=length)
    x /= np.linalg.norm(x) * 1.0001
    return np.trunc(x * (1 << (bits - 1))).astype(np.int64)


def measure(shares: int, length: int, bits: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    vdaf = make_vdaf(shares, length, bits)
    v = _vector(np.random.default_rng(seed), length, bits)
    nonce = rng.randbytes(16)
    rand = rng.randbytes(vdaf.RAND_SIZE)
    verify_key = rng.randbytes(32)
    t = time.perf_counter()
    public, input_shares = prio3_l2.shard(vdaf, CTX, v, nonce, rand)
    shard_s = time.perf_counter() - t
    verify_s = []
    states, vshares = [], []
    for agg_id, share in enumerate(input_shares):
        t = time.perf_counter()
        state, vshare = prio3_l2.verify_init(vdaf, verify_key, CTX, agg_id, nonce, public, share)
        verify_s.append(time.perf_counter() - t)
        states.append(state)
        vshares.append(vshare)
    t = time.perf_counter()
    message = prio3_l2.verifier_message(vdaf, CTX, vshares)
    decide_s = time.perf_counter() - t
    for state in states:
        prio3_l2.verify_next(state, message)
    return {
        "params": length,
        "bits": bits,
        "shares": shares,
        "meas_len": vdaf.flp.MEAS_LEN,
        "proof_len": vdaf.flp.PROOF_LEN,
        "chunk": vdaf.flp.valid.GADGETS[0].ARITY // 2,
        "leader_share_mb": len(input_shares[0]) / 1e6,
        "verifier_share_kb": len(vshares[0]) / 1e3,
        "shard_s": shard_s,
        "verify_leader_s": verify_s[0],
        "verify_helper_s": max(verify_s[1:]),
        "decide_s": decide_s,
    }


def spec_shard_s(length: int, bits: int) -> float:
    rng = random.Random(2)
    vdaf = make_vdaf(2, length, bits)
    v = [int(x) for x in _vector(np.random.default_rng(2), length, bits)]
    t = time.perf_counter()
    vdaf.shard(CTX, v, rng.randbytes(16), rng.randbytes(vdaf.RAND_SIZE))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shares", type=int, default=3)
    args = parser.parse_args()
    measure(args.shares, 50, 8)  # compile or load the kernels
    sizes = [1_000, 10_000] if args.quick else [10_000, 100_000]
    bit_choices = [8, 16] if args.quick else [12, 16]
    rows = [measure(args.shares, n, b) for n in sizes for b in bit_choices]
    ref_len = 500 if args.quick else 1_000
    spec = spec_shard_s(ref_len, 16)
    fast = measure(2, ref_len, 16)["shard_s"]
    report = {"rows": rows, "spec_ratio": {"params": ref_len, "spec_over_compiled": spec / fast}}
    if args.json:
        print(json.dumps(report))
        return
    head = (
        "params",
        "bits",
        "meas_len",
        "proof_len",
        "leader MB",
        "shard s",
        "verify L s",
        "verify H s",
        "decide s",
    )
    print(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        cells = (
            r["params"],
            r["bits"],
            r["meas_len"],
            r["proof_len"],
            f"{r['leader_share_mb']:.1f}",
            f"{r['shard_s']:.3f}",
            f"{r['verify_leader_s']:.3f}",
            f"{r['verify_helper_s']:.3f}",
            f"{r['decide_s']:.4f}",
        )
        print(" | ".join(f"{c:>10}" for c in cells))
    print(
        f"spec-style shard at {ref_len} params, 16 bits: {spec:.2f} s "
        f"({spec / fast:.0f}x the compiled path)"
    )


if __name__ == "__main__":
    main()
