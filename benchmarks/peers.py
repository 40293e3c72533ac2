"""Tessera beside MPyC, in the same run: mean and variance, and a 10-feature linear
regression, 3 parties, 100,000 rows split in three.

* **Tessera**, exact mode (no noise), the in-process network (``LocalNetwork``: the
  deployed roles, 3 providers, 3 computing nodes with threshold 2, a verifier, the
  embedded chain), every proof made and checked. Its time is the query's wall time
  (the network's build and key generation excluded), split into

  - ``local``: the providers' plaintext evaluation of their rows (DuckDB);
  - ``verify``: the verifier re-checking the whole record (its chain time excluded);
  - ``ledger``: every party's time waiting for the chain, summed over threads
    (``tessera_ledger_share``: its share of the wall time; ``tessera_ledger_wall_s``:
    the time during which at least one party waited, concurrent waits counted once);
  - ``crypto``: the rest: encryption and range proofs, the checks on arrival,
    aggregation, key switching, decryption, the in-process messaging.

  The split comes from timing hooks this script wraps around
  ``ProviderRole.db.evaluate``, ``NetworkAnalyst.ask_verifiers`` and the ledger client's
  one entry point (``tessera.ledger.client._call``); nothing in Tessera is changed.
* **MPyC** (``mpyc`` from PyPI, Shamir secret sharing, semi-honest), its 3 parties as 3
  local processes (``benchmarks/peers_mpyc.py -M3 -I<i>``), each loading its own third of
  the same rows. Its time is the slowest party's from first input to opened result
  (connection set-up and loading its rows excluded). Both systems open the same pooled
  sums (what Tessera's exact mode releases); ``mpyc_s`` is MPyC computing them from the
  secret-shared rows, ``mpyc_presummed_s`` from sums each party makes of its own rows in
  the clear (a secure sum only, as a Tessera provider's contribution is).

MPyC gives no verifiability (no proofs, no audit trail, no ledger, honest majority
assumed for correctness too), so the ratio is the price of those, not of the same
guarantees. ``--json`` prints one object, with ``tessera_s``, ``mpyc_s`` and ``ratio``
(``tessera_s / mpyc_s``) per task; ``--quick`` runs 3 × 2,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drynx_headline import bounds
from peers_data import COLUMN, X, Y, columns, frame
from tessera import DatasetPolicy, LocalNetwork, QueryResult
from tessera.ledger import client as ledger_client
from tessera.node.analyst import NetworkAnalyst
from tessera.node.dlog_cache import discrete_log

HERE = Path(__file__).resolve().parent
TASKS = ("meanvar", "linreg")


# -- timing hooks ------------------------------------------------------------------------------
class Clock:
    """Seconds per bucket, summed over threads; the chain's time per thread too."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.chain_by_thread: dict[int, float] = {}
        self.chain_spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def add(self, bucket: str, seconds: float) -> None:
        with self._lock:
            self.total[bucket] = self.total.get(bucket, 0.0) + seconds

    def reset(self) -> None:
        with self._lock:
            self.total.clear()

    def thread_chain(self) -> float:
        return self.chain_by_thread.get(threading.get_ident(), 0.0)

    def chain_wall(self) -> float:
        """Seconds during which at least one party waited for the chain (the union of
        the chain calls' spans: concurrent calls count once)."""
        total, end = 0.0, float("-inf")
        for start, stop in sorted(self.chain_spans):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total


@contextmanager
def hooks(net: LocalNetwork, clock: Clock) -> Iterator[None]:
    """Wrap the providers' evaluation, the verifiers' round and the ledger client's calls."""
    orig_call = ledger_client._call
    orig_ask = NetworkAnalyst.ask_verifiers

    def call(action: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return orig_call(action, fn)
        finally:
            took = time.perf_counter() - start
            clock.add("ledger", took)
            tid = threading.get_ident()
            with clock._lock:
                clock.chain_by_thread[tid] = clock.chain_by_thread.get(tid, 0.0) + took
                clock.chain_spans.append((start, start + took))

    def ask(self: NetworkAnalyst, *args: Any, **kwargs: Any) -> Any:
        start, chain = time.perf_counter(), clock.thread_chain()
        try:
            return orig_ask(self, *args, **kwargs)
        finally:
            clock.add("verify", time.perf_counter() - start - (clock.thread_chain() - chain))

    dbs = []
    for p in net.providers.values():
        db = p.role.db
        orig_eval = db.evaluate

        def evaluate(*args: Any, _orig: Any = orig_eval, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _orig(*args, **kwargs)
            finally:
                clock.add("local", time.perf_counter() - start)

        db.evaluate = evaluate
        dbs.append(db)
    ledger_client._call = call  # type: ignore[assignment]
    NetworkAnalyst.ask_verifiers = ask  # type: ignore[method-assign]
    try:
        yield
    finally:
        ledger_client._call = orig_call
        NetworkAnalyst.ask_verifiers = orig_ask  # type: ignore[method-assign]
        for db in dbs:
            del db.evaluate


# -- Tessera ------------------------------------------------------------------------------------
def build(rows: list[int], quick: bool) -> LocalNetwork:
    net = LocalNetwork(3, 2, dlog=discrete_log(bound=1 << 14) if quick else discrete_log())
    policy = DatasetPolicy(allow_exact=True, min_cohort=10, budget_rho=1e6, max_rows=max(rows))
    for i, n in enumerate(rows):
        net.add_provider(
            f"party-{i}", {"records": frame(n, 1000 + i)}, bounds(), {"records": policy}
        )
    return net


def tessera_query(net: LocalNetwork, task: str) -> QueryResult:
    if task == "meanvar":
        return net.sql(f"SELECT AVG({COLUMN}), VARIANCE({COLUMN}) FROM records")
    return net.linear_regression("records", Y, list(X))


def tessera_values(task: str, res: QueryResult) -> list[float]:
    if task == "meanvar":
        return [res[f"mean({COLUMN})"], res[f"variance({COLUMN})"]]
    (model,) = res.values.values()
    return [model.intercept_, *(float(c) for c in model.coef_)]


def run_tessera(net: LocalNetwork, task: str) -> dict[str, Any]:
    clock = Clock()
    with hooks(net, clock):
        start = time.perf_counter()
        res = tessera_query(net, task)
        wall = time.perf_counter() - start
    split = {k: clock.total.get(k, 0.0) for k in ("local", "verify", "ledger")}
    split = {"local": split["local"], "crypto": wall - sum(split.values()), **split}
    return {
        "seconds": wall,
        "split": {k: split[k] for k in ("local", "crypto", "verify", "ledger")},
        "ledger_wall": clock.chain_wall(),
        "verified": res.verified,
        "values": tessera_values(task, res),
    }


# -- MPyC ----------------------------------------------------------------------------------------
def free_base_port(count: int = 3) -> int:
    for base in range(23000 + os.getpid() % 5000, 65000, 7):
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports for MPyC")


def run_mpyc(rows_dir: Path, task: str, mode: str, timeout: float = 3600) -> dict[str, Any]:
    port = free_base_port()
    cmd = [sys.executable, str(HERE / "peers_mpyc.py"), "-M3", "--no-log", "-B", str(port)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*cmd, f"-I{i}", str(rows_dir), task, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"MPyC party failed ({p.returncode}): {err.strip()[-2000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - start
    sums = np.array(outs[0]["sums"], dtype=float)
    return {
        "seconds": max(o["seconds"] for o in outs),
        "wall_with_startup": wall,
        "values": finish(task, sums),
    }


def finish(task: str, sums: np.ndarray) -> list[float]:
    """Mean and sample variance from ``n, Σx, Σx²``; the least-squares fit from ``ZᵀZ``."""
    if task == "meanvar":
        n, s1, s2 = sums
        return [s1 / n, (s2 - s1 * s1 / n) / (n - 1)]
    k = len(X) + 1
    return [float(v) for v in np.linalg.solve(sums[:k, :k], sums[:k, k])]


def plaintext(task: str, rows: list[int]) -> list[float]:
    z = np.vstack([columns(task, n, 1000 + i) for i, n in enumerate(rows)])
    x = z[:, 1]
    return finish(task, np.array([len(z), x.sum(), x @ x]) if task == "meanvar" else z.T @ z)


# -- the run ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="3 × 2,000 rows instead of 100,000")
    ap.add_argument("--rows", type=int, default=None, help="rows in all (split in three)")
    args = ap.parse_args(argv)
    total = args.rows or (6_000 if args.quick else 100_000)
    rows = [total // 3 + (1 if i < total % 3 else 0) for i in range(3)]  # 33,334 + 2 × 33,333
    t_build = time.perf_counter()
    net = build(rows, args.quick)
    t_build = time.perf_counter() - t_build
    out: dict[str, Any] = {
        "setting": {"parties": 3, "rows": rows, "features": len(X), "mode": "exact"},
        "tessera_network_build_s": t_build,
    }
    rows_dir = Path(tempfile.mkdtemp(prefix="tessera-peers-"))
    for task in TASKS:
        for i, n in enumerate(rows):
            # MPyC's input takes one shape from every party: the shorter thirds are padded
            # with zero rows (their leading 1 too), which add nothing to any sum
            z = columns(task, n, 1000 + i)
            z = np.vstack([z, np.zeros((max(rows) - n, z.shape[1]))])
            np.save(rows_dir / f"{task}-{i}.npy", z)
    for task in TASKS:
        tess = run_tessera(net, task)
        shared = run_mpyc(rows_dir, task, "rows")
        pre = run_mpyc(rows_dir, task, "presummed")
        truth = plaintext(task, rows)
        scale = max(abs(b) for b in truth)
        err = {  # against the largest value (coefficients near 0 have no relative error to read)
            name: max(abs(a - b) for a, b in zip(v, truth, strict=True)) / scale
            for name, v in (("tessera", tess["values"]), ("mpyc", shared["values"]))
        }
        out[task] = {
            "tessera_s": tess["seconds"],
            "tessera_split_s": tess["split"],
            "tessera_verified": tess["verified"],
            # the measure: the chain's share of the query's wall time
            "tessera_ledger_share": tess["split"]["ledger"] / tess["seconds"],
            "tessera_ledger_wall_s": tess["ledger_wall"],
            "mpyc_s": shared["seconds"],
            "mpyc_presummed_s": pre["seconds"],
            "mpyc_wall_with_startup_s": shared["wall_with_startup"],
            "ratio": tess["seconds"] / shared["seconds"],
            "ratio_presummed": tess["seconds"] / pre["seconds"],
            "max_relative_error": {k: float(v) for k, v in err.items()},
        }
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    split = " + ".join(f"{n:,}" for n in rows)
    print(f"3 parties, {sum(rows):,} rows ({split}), exact mode (network build {t_build:.1f} s)")
    head = ("task", "Tessera", "local", "crypto", "verify", "ledger", "MPyC", "ratio",
            "MPyC presum", "ratio")  # fmt: skip
    print(f"{head[0]:<8}" + "".join(f"{h:>12}" for h in head[1:]))
    for task in TASKS:
        r = out[task]
        s = r["tessera_split_s"]
        cells = [r["tessera_s"], s["local"], s["crypto"], s["verify"], s["ledger"], r["mpyc_s"]]
        print(
            f"{task:<8}"
            + "".join(f"{c:>12.3f}" for c in cells)
            + f"{r['ratio']:>11.1f}×{r['mpyc_presummed_s']:>12.3f}{r['ratio_presummed']:>11.0f}×"
        )
    for task in TASKS:
        r = out[task]
        err = ", ".join(f"{k} {v:.1e}" for k, v in r["max_relative_error"].items())
        print(f"{task}: Tessera verified {r['tessera_verified']}; largest error against numpy on "
              f"the pooled rows, relative to the largest value: {err}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
