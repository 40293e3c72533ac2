"""Benchmark of the cryptographic core: median µs per operation beside a raw multiplication.

Run ``python benchmarks/crypto.py`` for a table, ``--json`` for one JSON object.
``--quick`` uses fewer repetitions and a small discrete-log table (for smoke tests).

Also measured in the same run: libsecp256k1's multi-scalar multiplication
(``tessera.crypto.msm``) against the term-by-term path verifiers used before
(``group.msm``, one ECDSA-recovery double multiplication per term) for n = 16…4096,
batch verification of the protocol's 21-bit limb range proofs
(``batch_verify_range``) against checking them one by one (``verify_range``), and the
verification of the three Sigma proofs of the query path (a ciphertext's knowledge proof,
a release proof, a key-switch share's proof) with their commitments recomputed by
``ecmult_multi`` (``verify_linear``) against the term-by-term path it replaced, and 64
batchable ones of each checked as one batch (``batch_verify_linear``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from coincurve import PublicKey

from tessera.crypto import msm as native_msm
from tessera.crypto.dkg import run_dkg
from tessera.crypto.dlog import DEFAULT_BOUND, DiscreteLog
from tessera.crypto.elgamal import Ciphertext, encrypt, encrypt_with, keygen
from tessera.crypto.group import G, Point, base_mul
from tessera.crypto.group import msm as msm_by_terms
from tessera.crypto.proofs import (
    LinearClaim,
    LinearProof,
    LinearStatement,
    batch_verify_linear,
    dleq_statement,
    prove_linear,
    prove_or,
    schnorr_statement,
    verify_linear,
    verify_or,
)
from tessera.crypto.rangeproof import RangeClaim, batch_verify_range, prove_range, verify_range
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import (
    key_switch_share,
    partial_decrypt,
    verify_key_switch,
    verify_partial,
)
from tessera.crypto.transcript import Transcript
from tessera.node.dlog_cache import load_table


def median_us(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def measure_range(rng: SeededRng, key: Point, bits: int, reps: int) -> tuple[float, float]:
    hi = (1 << bits) - 1
    r = rng.scalar()
    value = hi // 3
    c = encrypt_with(key, value, r)
    pf = prove_range(b"bench", key, c, value, r, 0, hi, rng)
    p_us = median_us(lambda: prove_range(b"bench", key, c, value, r, 0, hi, rng), reps)
    v_us = median_us(lambda: verify_range(b"bench", key, c, 0, hi, pf), reps)
    return p_us, v_us


def naive_range(rng: SeededRng, key: Point, bits: int) -> tuple[float, float]:
    """The textbook alternative: ElGamal bit ciphertexts, two-equation OR proof per bit."""

    def stmts(ct: Ciphertext) -> list[LinearStatement]:
        return [
            LinearStatement(((G,), (key,)), (ct.c1, ct.c2)),
            LinearStatement(((G,), (key,)), (ct.c1, ct.c2 - G)),
        ]

    def prove() -> list[tuple[Ciphertext, Any]]:
        out = []
        for i in range(bits):
            b = i & 1
            r = rng.scalar()
            ct = encrypt_with(key, b, r)
            out.append((ct, prove_or(Transcript(b"naive"), stmts(ct), b, [r], rng)))
        return out

    proofs = prove()

    def verify() -> None:
        for ct, pf in proofs:
            verify_or(Transcript(b"naive"), stmts(ct), pf)

    return median_us(prove, 5), median_us(verify, 5)


def measure_msm(rng: SeededRng, sizes: list[int], reps: int) -> list[dict[str, float]]:
    """Per size: the native MSM and the term-by-term sum, median µs for the whole sum."""
    out = []
    for n in sizes:
        points = [base_mul(rng.scalar()) for _ in range(n)]
        scalars = [rng.scalar() for _ in range(n)]
        assert native_msm.msm(points, scalars) == msm_by_terms(scalars, points)
        fast = median_us(lambda p=points, k=scalars: native_msm.msm(p, k), reps)  # type: ignore[misc]
        naive = median_us(lambda p=points, k=scalars: msm_by_terms(k, p), max(3, reps // 4))  # type: ignore[misc]
        out.append({"n": n, "msm_us": fast, "naive_us": naive, "speedup": naive / fast})
    return out


def measure_range_batch(
    rng: SeededRng, key: Point, counts: list[int], reps: int
) -> list[dict[str, float]]:
    """Per batch size: 21-bit limb proofs (as providers send them) checked as one batch and
    one by one, median ms for the whole batch."""
    hi = (1 << 21) - 1
    claims = []
    for j in range(max(counts)):
        m, r = rng.below(hi + 1), rng.scalar()
        ct = encrypt_with(key, m, r)
        ctx = f"bench/{j}".encode()
        pf = prove_range(ctx, key, ct, m, r, 0, hi, rng, batchable=True)
        claims.append(RangeClaim(ctx, key, ct, 0, hi, pf))
    out = []
    for count in counts:
        batch = claims[:count]
        assert batch_verify_range(batch) == {}

        def each(batch: list[RangeClaim] = batch) -> None:
            for c in batch:
                verify_range(c.context, c.public_key, c.ct, c.lo, c.hi, c.proof)

        fast = median_us(lambda batch=batch: batch_verify_range(batch), reps)  # type: ignore[misc]
        slow = median_us(each, reps)
        out.append(
            {
                "proofs": count,
                "batch_ms": fast / 1000,
                "one_by_one_ms": slow / 1000,
                "speedup": slow / fast,
            }
        )
    return out


def _verify_by_terms(t: Transcript, stmt: LinearStatement, proof: LinearProof) -> None:
    """``verify_linear`` as it was: each commitment by coincurve, term by term."""
    stmt.absorb(t)
    t.append_points(b"commitments", stmt.recompute(proof.e, proof.z))
    if t.challenge(b"linear") != proof.e:
        raise AssertionError("the reference verification failed")


def measure_sigma(rng: SeededRng, reps: int) -> list[dict[str, Any]]:
    """Per Sigma proof of the query path: median µs of ``verify_linear`` and of the
    term-by-term path, interleaved so both see the same load."""
    x, v = rng.scalar(), rng.scalar()
    a, c1 = base_mul(rng.scalar()), base_mul(rng.scalar())
    kinds = {
        "knowledge proof (1 row)": (schnorr_statement(base_mul(x)), [x]),
        "release proof, DLEQ (2 rows)": (dleq_statement(G, base_mul(x), c1, c1 * x), [x]),
        "key-switch share proof (3 rows)": (
            LinearStatement(
                ((G, Point.identity()), (Point.identity(), G), (-c1, a)),
                (base_mul(x), base_mul(v), a * v - c1 * x),
            ),
            [x, v],
        ),
    }
    out = []
    for kind, (stmt, w) in kinds.items():
        pf = prove_linear(Transcript(b"bench"), stmt, w, rng)
        native: list[float] = []
        terms: list[float] = []

        def fast(s: LinearStatement = stmt, p: LinearProof = pf) -> None:
            verify_linear(Transcript(b"bench"), s, p)

        def slow(s: LinearStatement = stmt, p: LinearProof = pf) -> None:
            _verify_by_terms(Transcript(b"bench"), s, p)

        for _ in range(reps):
            native.append(median_us(fast, 1))
            terms.append(median_us(slow, 1))
        n_us, t_us = statistics.median(native), statistics.median(terms)
        # 64 batchable proofs of this kind (not yet what the protocol sends): one MSM
        claims = [
            LinearClaim(Transcript(b"bench", bytes([i])), stmt, p)
            for i in range(64)
            for p in [prove_linear(Transcript(b"bench", bytes([i])), stmt, w, rng, batchable=True)]
        ]
        assert batch_verify_linear(claims) == {}
        batch_us = median_us(lambda c=claims: batch_verify_linear(c), 5) / len(claims)  # type: ignore[misc]
        out.append(
            {
                "proof": kind,
                "native_us": n_us,
                "terms_us": t_us,
                "speedup": t_us / n_us,
                "batch_64_us_per_proof": batch_us,
                "batch_speedup": n_us / batch_us,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="few repetitions, small dlog table")
    args = ap.parse_args(argv)
    reps = 20 if args.quick else 200
    rng = SeededRng(b"benchmark")
    _, key = keygen(rng)
    k_bytes = rng.scalar().to_bytes(32, "big")
    raw_pk = PublicKey.from_secret(rng.scalar().to_bytes(32, "big"))
    rows: list[tuple[str, float]] = []

    raw = median_us(lambda: raw_pk.multiply(k_bytes), reps * 5)
    rows.append(("raw coincurve scalar multiplication", raw))
    rows.append(
        (
            "raw coincurve base-point multiplication",
            median_us(lambda: PublicKey.from_secret(k_bytes), reps * 5),
        )
    )

    m = 123_456
    ct = encrypt(key, m, rng)
    ct2 = encrypt(key, 7, rng)
    rows.append(("ElGamal encryption", median_us(lambda: encrypt(key, m, rng), reps)))
    rows.append(("ElGamal addition", median_us(lambda: ct + ct2, reps * 5)))

    keys, _ = run_dkg(3, 2, rng)
    k1 = keys[1]
    part = partial_decrypt(b"bench", 1, k1.secret_share, ct, rng)
    rows.append(
        (
            "partial decryption + DLEQ proof",
            median_us(lambda: partial_decrypt(b"bench", 1, k1.secret_share, ct, rng), reps),
        )
    )
    rows.append(
        (
            "  its verification",
            median_us(lambda: verify_partial(b"bench", k1.public_shares[1], ct, part), reps),
        )
    )
    _, analyst = keygen(rng)
    ks = key_switch_share(b"bench", 1, k1.secret_share, ct, analyst, rng)
    rows.append(
        (
            "key-switch share + proof",
            median_us(
                lambda: key_switch_share(b"bench", 1, k1.secret_share, ct, analyst, rng), reps
            ),
        )
    )
    rows.append(
        (
            "  its verification",
            median_us(
                lambda: verify_key_switch(b"bench", k1.public_shares[1], ct, analyst, ks), reps
            ),
        )
    )

    results: dict[str, float] = {}
    for bits in (16, 32):
        p_us, v_us = measure_range(rng, key, bits, max(10, reps // 4))
        rows.append((f"range proof L={bits}: prove", p_us))
        rows.append((f"range proof L={bits}: verify", v_us))
        results[f"range_prove_ms_{bits}"] = p_us / 1000
        results[f"range_verify_ms_{bits}"] = v_us / 1000
    np_us, nv_us = naive_range(rng, key, 32)
    rows.append(("  alternative tried: ElGamal-bit OR proofs L=32, prove", np_us))
    rows.append(("  alternative tried: ElGamal-bit OR proofs L=32, verify", nv_us))

    msm_rows = measure_msm(
        rng, [16, 64, 256] if args.quick else [16, 64, 256, 1024, 4096], 3 if args.quick else 9
    )
    for row in msm_rows:
        n = int(row["n"])
        rows.append((f"MSM n={n}: libsecp256k1 ecmult_multi, whole sum", row["msm_us"]))
        rows.append((f"MSM n={n}: term by term (recovery per term), whole sum", row["naive_us"]))
    batch_rows = measure_range_batch(
        rng, key, [1, 4, 16] if args.quick else [1, 4, 16, 64], 3 if args.quick else 7
    )
    for row in batch_rows:
        count = int(row["proofs"])
        rows.append((f"range proofs L=21 ×{count}: batch verify", row["batch_ms"] * 1000))
        rows.append((f"range proofs L=21 ×{count}: one by one", row["one_by_one_ms"] * 1000))

    sigma_rows = measure_sigma(rng, reps)
    for row in sigma_rows:
        rows.append((f"verify {row['proof']}: ecmult_multi per row", row["native_us"]))
        rows.append((f"verify {row['proof']}: term by term", row["terms_us"]))
        rows.append(
            (f"verify {row['proof']}: batch of 64, per proof", row["batch_64_us_per_proof"])
        )

    bound = 1 << 12 if args.quick else DEFAULT_BOUND
    t0 = time.perf_counter()
    table = load_table(bound)
    load_s = time.perf_counter() - t0
    max_abs = 1 << 20 if args.quick else 1 << 32
    dlog = DiscreteLog(table, max_abs)
    small = base_mul(1234)
    worst_pts = [base_mul(max_abs - 1), base_mul(-(max_abs - 1))]
    rows.append(("discrete log, small value (1234)", median_us(lambda: dlog.decode(small), reps)))
    worst = max(median_us(lambda p=p: dlog.decode(p), 5) for p in worst_pts)  # type: ignore[misc]
    rows.append((f"discrete log, worst case |m| = 2^{max_abs.bit_length() - 1} - 1", worst))
    rows.append((f"discrete-log table load or build (bound {bound})", load_s * 1e6))

    dkg_us = median_us(lambda: run_dkg(7, 4, rng), 3 if args.quick else 10)
    rows.append(("DKG n=7, t=4 (all nodes, in memory)", dkg_us))

    out: dict[str, Any] = {
        "raw_mul_us": raw,
        "encrypt_us": dict(rows)["ElGamal encryption"],
        **results,
        "naive_range_prove_ms_32": np_us / 1000,
        "naive_range_verify_ms_32": nv_us / 1000,
        "dlog_small_ms": dict(rows)["discrete log, small value (1234)"] / 1000,
        "dlog_worst_ms": worst / 1000,
        "dlog_table_load_s": load_s,
        "dkg_7_4_s": dkg_us / 1e6,
        "msm_native": native_msm.NATIVE,
        "msm": msm_rows,
        "range_batch": batch_rows,
        "sigma_verify": sigma_rows,
        "rows": [
            {"operation": n, "us": round(v, 1), "ratio_to_raw_mul": round(v / raw, 2)}
            for n, v in rows
        ],
    }
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    width = max(len(n) for n, _ in rows)
    print(f"{'operation':<{width}}  {'median µs':>12}  {'× raw mul':>9}")
    for name, us in rows:
        print(f"{name:<{width}}  {us:>12.1f}  {us / raw:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
