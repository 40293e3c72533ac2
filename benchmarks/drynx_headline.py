"""Drynx's headline setting in process: logistic regression, 600,000 records × 12 features,
12 providers, 6 computing nodes (threshold 3, the most ``n >= 2t - 1`` allows), proofs and
differential privacy on.

Drynx (Froelicher et al., 2020) reports 1.96 s for this query and 22.4 s to verify it, with
every provider and node on its own machine and verifiers sampling the proofs. This machine
has 2 cores, so we report:

* ``wall_s``: the whole query here, every role in turn on one core;
* ``latency_s``: the critical path if each provider and node had its own core, built from
  the per-role times measured in the same run (slowest provider; committee noise,
  aggregation and key switch; the analyst's combination, decryption and fit);
* ``verify_s``: one verifier on one core checking every proof, no sampling.

``--json`` prints one JSON object; ``--quick`` runs a small smoke configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from tessera import DatasetPolicy, LocalNetwork, QueryResult
from tessera.analytics.local import ColumnBounds
from tessera.node.dlog_cache import discrete_log

FEATURES: dict[str, tuple[float, float, float, float]] = {
    # name: (lo, hi, mean, sd) — magnitudes of a clinical table
    "age": (18.0, 95.0, 55.0, 15.0),
    "bmi": (12.0, 60.0, 27.0, 5.0),
    "sbp": (80.0, 200.0, 130.0, 18.0),
    "dbp": (40.0, 130.0, 80.0, 11.0),
    "cholesterol": (100.0, 400.0, 200.0, 40.0),
    "glucose": (50.0, 300.0, 105.0, 25.0),
    "hba1c": (3.0, 15.0, 5.8, 0.9),
    "heart_rate": (40.0, 180.0, 75.0, 12.0),
    "creatinine": (0.3, 10.0, 1.0, 0.3),
    "weight": (30.0, 200.0, 80.0, 16.0),
    "height": (120.0, 210.0, 170.0, 10.0),
    "smoker": (0.0, 1.0, 0.3, 0.0),
}
COEF = {"age": 0.04, "bmi": 0.08, "glucose": 0.025, "hba1c": 0.6, "smoker": 0.5, "sbp": 0.01}


def make_data(rows: int, seed: int) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for name, (lo, hi, mu, sd) in FEATURES.items():
        if name == "smoker":
            cols[name] = (g.random(rows) < mu).astype(int)
        else:
            cols[name] = np.clip(g.normal(mu, sd, rows), lo, hi)
    logit = -13.2 + sum(w * cols[f] for f, w in COEF.items())
    cols["diabetic"] = (g.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(cols)


#: fixed-point fraction bits per column: the precision a clinical record carries
PRECISION = {"hba1c": 6, "creatinine": 7}


def bounds() -> dict[str, Any]:
    b: dict[str, Any] = {
        f: ColumnBounds(lo, hi, PRECISION.get(f, 4)) for f, (lo, hi, _, _) in FEATURES.items()
    }
    b["smoker"] = (0, 1)
    b["diabetic"] = (0, 1)
    return {"records": b}


def build(
    providers: int, rows_each: int, nodes: int, threshold: int, quick: bool
) -> tuple[LocalNetwork, pd.DataFrame]:
    dlog = discrete_log(bound=1 << 14) if quick else discrete_log()
    net = LocalNetwork(nodes, threshold, dlog=dlog)  # production randomness and OpenDP noise
    policy = DatasetPolicy(
        min_cohort=10,
        budget_rho=1e6,
        max_rows=rows_each,
        price_per_query=10,
        price_per_training=100,
        tags=("clinical",),
    )
    frames = []
    for i in range(providers):
        df = make_data(rows_each, 1000 + i)
        frames.append(df)
        net.add_provider(f"provider-{i:02d}", {"records": df}, bounds(), {"records": policy})
    return net, pd.concat(frames, ignore_index=True)


def accuracy(coefs: dict[str, float], test: pd.DataFrame) -> float:
    score = coefs["intercept"] + sum(coefs[f] * test[f] for f in FEATURES)
    return float(((score > 0).astype(int) == test.diabetic).mean())


def sklearn_accuracy(train: pd.DataFrame, test: pd.DataFrame, feats: list[str]) -> float:
    """Held-out accuracy of scikit-learn's logistic regression on the pooled plaintext."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # scikit-learn is a test dependency only
        return float("nan")
    model = LogisticRegression(max_iter=1000).fit(train[feats], train.diabetic)
    return float(model.score(test[feats], test.diabetic))


def timed(fn: Any) -> tuple[QueryResult, float]:
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def slowest_stage(res: QueryResult) -> str:
    worst = {role: max(v.values()) for role, v in res.role_seconds.items()}
    return max(worst, key=lambda r: worst[r])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 providers × 2,000 rows, 3 nodes")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument(
        "--processes",
        action="store_true",
        help="run the query over real processes on loopback, beside the same query in process",
    )
    args = ap.parse_args(argv)
    providers, rows, nodes, t = (3, 2000, 3, 2) if args.quick else (12, 50_000, 6, 3)
    eps = args.epsilon
    if args.processes:
        return processes(providers, rows, nodes, t, eps, args.quick, args.json)
    net, _pooled = build(providers, rows, nodes, t, args.quick)
    setup_gas = ledger_gas(tx.action for tx in net.ledger.admin.gas_log)
    setup_gas_used = {a: g for a, g in _mean_gas(net.ledger.admin.gas_log).items()}
    feats = list(FEATURES)

    res, wall = timed(
        lambda: net.logistic_regression("records", "diabetic", feats, newton_steps=0, epsilon=eps)
    )
    test = make_data(100_000 if not args.quick else 5_000, 99)
    acc = accuracy(res.value["coefficients"], test)
    acc_sklearn = sklearn_accuracy(_pooled, test, feats)

    ops: dict[str, float] = {}
    stages: dict[str, str] = {"logistic_regression": slowest_stage(res)}
    queries = {
        "sum": lambda: net.sql("SELECT SUM(age) FROM records", epsilon=eps),
        "mean": lambda: net.sql("SELECT AVG(age) FROM records", epsilon=eps),
        "variance": lambda: net.sql("SELECT VARIANCE(age) FROM records", epsilon=eps),
        "histogram_100": lambda: net.histogram("records", "cholesterol", bins=100, epsilon=eps),
        "min_max_100": lambda: net.sql("SELECT MIN(age), MAX(age) FROM records", epsilon=eps),
        "linear_regression_12": lambda: net.linear_regression(
            "records", "sbp", [f for f in feats if f != "sbp"] + ["diabetic"], epsilon=eps
        ),
        "correlation_12": lambda: net.run("records", [_correlation(feats)], epsilon=eps),
    }
    for name, fn in queries.items():
        r, _ = timed(fn)
        ops[name] = r.seconds["latency"]
        stages[name] = slowest_stage(r)

    out = {
        "setting": {
            "records": providers * rows,
            "features": len(feats),
            "providers": providers,
            "computing_nodes": nodes,
            "threshold": t,
            "epsilon": eps,
        },
        "wall_s": wall,
        "latency_s": res.seconds["latency"],
        "verify_s": res.seconds["verify"],
        "accuracy": acc,
        "accuracy_sklearn_plaintext": acc_sklearn,
        "verified": res.verified,
        "ops": ops,
        "slowest_stage": stages,
        "reference_drynx": {"latency_s": 1.96, "verify_s": 22.4},
        "role_seconds_max": {k: max(v.values()) for k, v in res.role_seconds.items()},
        "ledger": ledger_figures(res, wall, setup_gas, setup_gas_used),
    }
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(
        f"logistic regression, {providers * rows:,} records × {len(feats)} features, "
        f"{providers} providers, {nodes} nodes (t={t}), epsilon={eps}"
    )
    print(f"{'figure':<12} {'Tessera':>10} {'Drynx':>10} {'ratio':>8}")
    for key, ref in (("latency_s", 1.96), ("verify_s", 22.4)):
        print(f"{key:<12} {out[key]:>10.3f} {ref:>10.3f} {out[key] / ref:>8.2f}")
    print(f"{'wall_s':<12} {wall:>10.3f}")
    print(f"accuracy on held-out data: {acc:.4f} (scikit-learn on plaintext: {acc_sklearn:.4f})")
    print(f"verified: {res.verified}")
    led = out["ledger"]
    print(
        f"\nledger (embedded py-evm chain), the analyst's part: {led['analyst_transactions']} "
        f"transactions, {led['analyst_gas']:,} gas, {led['analyst_seconds']:.3f} s = "
        f"{led['share_of_wall']:.1%} of the query's wall time; status {led['status']}"
    )
    for step, gas in led["gas_per_step"].items():
        print(f"  {step:<26} {gas:>10,} gas")
    print("\nper-operation latency_s (12 providers × 50,000 rows):" if not args.quick else "")
    for name, sec in ops.items():
        print(f"  {name:<22} {sec:>8.3f}  slowest stage: {stages[name]}")
    return 0


def _mean_gas(txs: Any) -> dict[str, int]:
    per: dict[str, list[int]] = {}
    for tx in txs:
        per.setdefault(tx.action, []).append(tx.gas_used)
    return {a: round(sum(v) / len(v)) for a, v in per.items()}


def ledger_gas(actions: Any) -> int:
    return sum(1 for _ in actions)


def ledger_figures(
    res: QueryResult, wall: float, setup_txs: int, setup_gas: dict[str, int]
) -> dict[str, Any]:
    """The ledger's share of one query, as the analyst sees it: its own transactions (the
    submission with its escrow, the result) and the time it spent on the chain. Every other
    party's transactions (contributions, noise, key switches, verdicts) happen inside its
    own role and are counted in that role's time."""
    receipt = res.ledger
    assert receipt is not None
    return {
        "status": receipt.status,
        "price": receipt.price,
        "analyst_transactions": len(receipt.transactions),
        "analyst_gas": receipt.total_gas,
        "gas_per_step": dict(receipt.gas),
        "analyst_seconds": receipt.seconds,
        "share_of_wall": receipt.seconds / wall,
        "setup_transactions": setup_txs,
        "setup_gas_per_action": setup_gas,
    }


def _correlation(feats: list[str]) -> Any:
    from tessera.analytics.moments import Correlation

    return Correlation(tuple(feats))


# -- over real processes ---------------------------------------------------------------------
def processes(
    providers: int, rows: int, nodes: int, t: int, eps: float, quick: bool, as_json: bool
) -> int:
    """The headline query over real processes (chain, every provider and node, a verifier,
    each its own process on loopback) and the same query in process, in the same run."""
    import tempfile
    from pathlib import Path

    from tessera.node.launcher import Network, NetworkSpec, ProviderSpec, open_session

    feats = list(FEATURES)
    policy = {"min_cohort": 10, "budget_rho": 1e6, "max_rows": rows, "price_per_query": 10,
              "price_per_training": 100, "tags": ["clinical"]}  # fmt: skip
    col_bounds: dict[str, list[float]] = {}
    for name, b in bounds()["records"].items():
        col_bounds[name] = [b.lo, b.hi, b.scale_bits] if isinstance(b, ColumnBounds) else list(b)
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        specs = []
        for i in range(providers):
            path = Path(tmp) / f"provider-{i:02d}.parquet"
            make_data(rows, 1000 + i).to_parquet(path)
            specs.append(
                ProviderSpec(
                    f"provider-{i:02d}",
                    {"records": {"source": str(path), "bounds": col_bounds, "policy": policy}},
                )
            )
        net = Network(Path(tmp) / "network")
        t_up = time.perf_counter()
        try:
            net.up(NetworkSpec(nodes, t, 1, specs, kdf_iterations=2**10))
            t_up = time.perf_counter() - t_up
            analyst, transport = open_session(net.dir)
            analyst.providers_info()  # what the analyst reads once per session
            if quick:
                analyst._dlog = lambda: discrete_log(bound=1 << 14)
            analyst._dlog()  # load the table once, as the in-process network does at build
            res, wall = timed(
                lambda: analyst.logistic_regression(
                    "records", "diabetic", feats, newton_steps=0, epsilon=eps
                )
            )
            analyst.close()
            transport.close()
        finally:
            net.down()
    local, _pooled = build(providers, rows, nodes, t, quick)
    res_in, wall_in = timed(
        lambda: local.logistic_regression("records", "diabetic", feats, newton_steps=0, epsilon=eps)
    )
    roles = {k: round(max(v.values()), 3) for k, v in res.role_seconds.items()}
    out = {
        "setting": {
            "records": providers * rows,
            "features": len(feats),
            "providers": providers,
            "computing_nodes": nodes,
            "threshold": t,
            "epsilon": eps,
        },
        "wall_s": wall,
        "inprocess_wall_s": wall_in,
        "ratio": wall / wall_in,
        "target_ratio": 1.25,
        "verified": res.verified and res_in.verified,
        "network_up_s": t_up,
        "processes_role_seconds_max": roles,
        "processes_ledger_s": res.seconds["ledger"],
        "processes_verify_s": res.seconds["verify"],
        "inprocess_role_seconds_max": {
            k: round(max(v.values()), 3) for k, v in res_in.role_seconds.items()
        },
    }
    if as_json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(
        f"logistic regression, {providers * rows:,} records × {len(feats)} features, "
        f"{providers} providers, {nodes} nodes (t={t}), epsilon={eps}"
    )
    print(f"{'figure':<22} {'seconds':>10}")
    print(f"{'wall_s (processes)':<22} {wall:>10.3f}")
    print(f"{'inprocess_wall_s':<22} {wall_in:>10.3f}")
    print(f"ratio {wall / wall_in:.2f} (target <= 1.25); verified: {out['verified']}")
    print(f"network up (not in wall_s): {t_up:.1f} s")
    print("slowest party per stage, processes:", roles)
    print("slowest party per stage, in process:", out["inprocess_role_seconds_max"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
