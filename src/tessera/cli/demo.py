"""``tessera demo``: a whole network as real processes on loopback, and an analyst session.

It starts the chain, 3 computing nodes (threshold 2) that run a live DKG, 4
providers holding the bundled synthetic medical tables (:mod:`tessera.data.medical`)
and a verifier, each its own process; runs statistics, a regression, a survival
curve and a market purchase over them; prints each result beside the plaintext
truth (computed here from the same bundled files, which only a demo can do), its
privacy cost and its verdict; and stops every process, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tessera.cli.network import _plain
from tessera.errors import TesseraError

EDGES = (0.0, 365.0, 730.0, 1095.0, 1460.0, 1826.0)  # yearly bins [lo, hi) of follow-up days
PRICE = 100  # credits per query, per provider


@dataclass
class Analysis:
    name: str
    epsilon: float
    run: Callable[[Any], Any]  # analyst -> QueryResult
    result: Callable[[Any], Any]  # QueryResult -> the figure(s) shown
    truth: Callable[[pd.DataFrame], Any]


def _km_truth(df: pd.DataFrame) -> list[float]:
    """Kaplan–Meier survival at the end of each bin ``[lo, hi)``, as the engine bins time."""
    out, s = [], 1.0
    t, e = df.followup_days.to_numpy(), df.event.to_numpy()
    for lo, hi in itertools.pairwise(EDGES):
        at_risk = int((t >= lo).sum())
        events = int(((t >= lo) & (t < hi) & (e == 1)).sum())
        s *= 1 - events / at_risk if at_risk else 1.0
        out.append(round(s, 4))
    return out


def _ols(df: pd.DataFrame, y: str, xs: list[str]) -> dict[str, float]:
    x = np.column_stack([np.ones(len(df)), *(df[c].to_numpy(float) for c in xs)])
    beta = np.linalg.lstsq(x, df[y].to_numpy(float), rcond=None)[0]
    return {k: round(float(b), 3) for k, b in zip(["intercept", *xs], beta, strict=True)}


def analyses() -> list[Analysis]:
    def only(res: Any) -> Any:
        return res.value

    return [
        Analysis(
            "patients (count)",
            1.0,
            lambda a: a.sql("SELECT COUNT(*) FROM patients", epsilon=1.0),
            lambda r: round(only(r)),
            lambda df: len(df),
        ),
        Analysis(
            "mean age",
            1.0,
            lambda a: a.sql("SELECT AVG(age) FROM patients", epsilon=1.0),
            lambda r: round(only(r), 2),
            lambda df: round(float(df.age.mean()), 2),
        ),
        Analysis(
            "diabetes prevalence, age 65+",
            1.0,
            lambda a: a.sql("SELECT AVG(diabetes) FROM patients WHERE age >= 65", epsilon=1.0),
            lambda r: round(only(r), 4),
            lambda df: round(float(df[df.age >= 65].diabetes.mean()), 4),
        ),
        Analysis(
            "regression sbp ~ age + bmi",
            2.0,
            lambda a: a.linear_regression("patients", "sbp", ["age", "bmi"], epsilon=2.0),
            lambda r: {k: round(v, 3) for k, v in only(r)["coefficients"].items()},
            lambda df: _ols(df, "sbp", ["age", "bmi"]),
        ),
        Analysis(
            "survival at 1..5 years",
            1.0,
            lambda a: a.kaplan_meier(
                "patients", "followup_days", "event", edges=EDGES, epsilon=1.0
            ),
            lambda r: [round(p["survival"], 4) for p in only(r)["curve"]],
            lambda df: _km_truth(df),
        ),
    ]


def network_spec(kdf_iterations: int, cheating_nodes: tuple[int, ...] = ()) -> Any:
    from tessera.data import medical
    from tessera.node.launcher import NetworkSpec, ProviderSpec

    bounds = {c: list(v) for c, v in medical.bounds_for_network()["patients"].items()}
    policy = {
        "min_cohort": 10,
        "budget_rho": 5.0,
        "price_per_query": PRICE,
        "price_per_training": PRICE,
        "max_rows": 2000,  # public: no hospital's table holds more
        "tags": ["health"],
    }
    return NetworkSpec(
        nodes=3,
        threshold=2,
        verifiers=1,
        kdf_iterations=kdf_iterations,
        cheating_nodes=cheating_nodes,
        providers=[
            ProviderSpec(
                p,
                {
                    "patients": {
                        "source": str(medical.sample_path(p)),
                        "bounds": bounds,
                        "policy": policy,
                    }
                },
            )
            for p in medical.PROVIDERS
        ],
    )


def run_demo(
    state_dir: Path | None,
    *,
    cheat: bool,
    say: Callable[[str], None],
    kdf_iterations: int = 2**12,
) -> dict[str, Any]:
    """Start the network, run the session, stop the network; the report."""
    from tessera.data import medical
    from tessera.node.launcher import Network, open_session

    truth_df = pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        net = Network(state_dir or Path(tmp) / "network")
        try:
            net.up(network_spec(kdf_iterations, (1,) if cheat else ()), progress=say)
            t_up = time.perf_counter() - t0
            analyst, transport = open_session(net.dir)
            analyst.on_progress = lambda m: say(f"  {m}")
            results = []
            for a in analyses():
                say(f"query: {a.name} (epsilon={a.epsilon:g})")
                res = a.run(analyst)
                results.append(
                    {
                        "name": a.name,
                        "result": a.result(res),
                        "truth": a.truth(truth_df),
                        "interval": _plain(next(iter(res.intervals.values()), None)),
                        "verified": res.verified,
                        "epsilon": res.privacy_cost.epsilon if res.privacy_cost else None,
                        "query_id": "0x" + res.query_id,
                        "ledger": res.ledger.status if res.ledger else None,
                        "excluded_nodes": res.record.excluded_nodes,
                        "slashed": list(res.ledger.slashed) if res.ledger else [],
                        "seconds": round(res.seconds.get("wall", 0.0), 2),
                    }
                )
            market = _market(analyst, results[0]["query_id"], say)
            training = _training(analyst, truth_df, say)
            transport.close()
        finally:
            say("stopping every process")
            net.down()
    return {
        "results": results,
        "market": market,
        "training": training,
        "network": {"nodes": 3, "threshold": 2, "providers": list(medical.PROVIDERS)},
        "seconds": {"network_up": round(t_up, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def _market(analyst: Any, query_id: str, say: Callable[[str], None]) -> dict[str, Any]:
    """The purchase behind a query: the catalog, the price paid, the providers' revenue and
    what settlements owe them (pull payments: each withdraws with `tessera market
    withdraw`)."""
    ledger = analyst.ledger
    qid = bytes.fromhex(query_id[2:])
    q = ledger.query(qid)
    info = analyst.providers_info()
    revenue = {name: ledger.provider_revenue(i["address"]) for name, i in info.items()}
    owed = {name: ledger.owed(i["address"]) for name, i in info.items()}
    dataset = q.dataset_ids[0]
    ledger.rate(qid, dataset, 5)
    stats = ledger.stats()
    say(f"market: paid {q.price} credits for query {query_id[:10]}..., rated dataset {dataset} 5/5")
    return {
        "catalog": [ledger.dataset(i).dataset_id for i in ledger.search("health")],
        "query_price": q.price,
        "status": q.status,
        "provider_revenue": revenue,
        "provider_owed": owed,
        "rated_dataset": dataset,
        "rating": ledger.dataset(dataset).rating,
        "volume": stats.volume,
        "settled_queries": stats.settled_queries,
    }


TRAIN_FEATURES = ("age", "bmi", "glucose", "hba1c")


def _training(analyst: Any, pooled: pd.DataFrame, say: Callable[[str], None]) -> dict[str, Any]:
    """Federated logistic regression of diabetes over the four hospitals: each round a
    training query, every update clipped per row, proven and noised (ε = 2 in all): four
    full-batch steps of DP-FedSGD from zero, so the loss falls (the accuracy moves off
    the majority class only as the steps accumulate)."""
    from tessera.learning import LogisticRegression, TrainingConfig

    config = TrainingConfig(rounds=4, unit="row", clip=1.0, epsilon=2.0, server_learning_rate=12.0)
    model = LogisticRegression(len(TRAIN_FEATURES))
    features = list(TRAIN_FEATURES)
    quote = analyst.training_quote("patients", model, features, "diabetes", config)
    say(
        f"training: logistic regression of diabetes, {config.rounds} rounds, "
        f"epsilon={quote.epsilon:.3g} in all, at most {quote.price} credits"
    )
    validation = (pooled[features].to_numpy(), pooled["diabetes"].to_numpy())
    res = analyst.train("patients", model, features, "diabetes", config, validation=validation)
    rounds = [
        {
            "round": r.index + 1,
            "accepted": list(r.accepted),
            "excluded": [list(e) for e in r.excluded],
            "loss": None if r.loss is None else round(r.loss, 4),
            "accuracy": None if r.score is None else round(r.score, 4),
            "epsilon": round(r.epsilon_spent, 4),
            "query_id": r.query_id,
        }
        for r in res.rounds
    ]
    for r in rounds:
        say(f"  round {r['round']}: loss {r['loss']}, accuracy {r['accuracy']}, ε {r['epsilon']}")
    return {
        "model": "logistic",
        "features": features,
        "label": "diabetes",
        "rounds": rounds,
        "price": quote.price,
        "epsilon": quote.epsilon,
    }


def print_report(report: dict[str, Any], out: Any) -> None:
    from rich.table import Table

    table = Table(title="Tessera demo: 4 providers, 3 computing nodes (t=2), real processes")
    for col in ("analysis", "result", "plaintext truth", "epsilon", "verified", "ledger"):
        table.add_column(col)
    for r in report["results"]:
        table.add_row(
            r["name"],
            json.dumps(r["result"]),
            json.dumps(r["truth"]),
            f"{r['epsilon']:g}" if r["epsilon"] is not None else "exact",
            "[green]yes[/green]" if r["verified"] else "[red]NO[/red]",
            r["ledger"] or "",
        )
    out.print(table)
    m = report["market"]
    out.print(
        f"market: {len(m['catalog'])} datasets listed; a query costs {m['query_price']} credits; "
        f"provider revenue {m['provider_revenue']}, owed to withdraw {m['provider_owed']}; "
        f"volume {m['volume']}, "
        f"{m['settled_queries']} settled; dataset {m['rated_dataset']} rated {m['rating']}"
    )
    t = report.get("training")
    if t:
        last = t["rounds"][-1]
        out.print(
            f"training: {t['model']} regression of {t['label']} over {len(t['rounds'])} rounds "
            f"(each a training query): loss {t['rounds'][0]['loss']} → {last['loss']}, "
            f"accuracy {last['accuracy']}, ε {last['epsilon']}"
        )
    if any(r["slashed"] for r in report["results"]):
        out.print(f"cheating node slashed: {report['results'][0]['slashed']}")
    out.print(f"seconds: {report['seconds']}")


#: the provider whose patients' devices report their age to the demo's Poplar1 task
AGES_OF = "clinic-c"


@contextlib.contextmanager
def demo_telemetry(root: Path, say: Callable[[str], None]) -> Iterator[list[Path]]:
    """Two telemetry tasks over the demo's patients, each patient's device reporting once
    (in the last full minute), served by two aggregator processes until the block ends:
    a noised histogram of the systolic blood pressure of all 4,020 (Prio3Histogram, 12 bins
    of 10 mmHg from 80, discrete Gaussian noise at ρ = 1/2 per release), and the heavy
    hitters of the ages of clinic-c's 620 (Poplar1, 7 bits: an age in whole years, as the
    tables hold it; one clinic's, so that a collection, 7 rounds of preparation over every
    report, takes seconds). Yields the task files, for ``tessera web --telemetry``."""
    from fractions import Fraction

    from tessera.crypto.rng import SystemRng
    from tessera.data import medical
    from tessera.node.launcher import free_port
    from tessera.node.telemetry.client import TelemetryClient
    from tessera.node.telemetry.config import load_task_config, write_task
    from tessera.node.telemetry.launcher import aggregators
    from tessera.protocol.telemetry import DpSpec, VdafSpec

    ports = [free_port(), free_port()]
    common: dict[str, Any] = {"aggregator_ports": ports, "min_batch_size": 100}
    ages = write_task(root / "ages", VdafSpec.of("Poplar1", bits=7), dp=DpSpec("none"), **common)
    sbp = write_task(
        root / "blood-pressure",
        VdafSpec.of("Prio3Histogram", length=12, chunk_length=4),
        dp=DpSpec("discrete_gaussian", rho=Fraction(1, 2)),
        **common,
    )
    patients = pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)
    with aggregators([ages, sbp], root):
        when = int(time.time()) // 60 * 60 - 60
        rng = SystemRng()
        clinic = medical.load(AGES_OF)
        say(
            f"telemetry: {len(patients)} devices report blood pressure, "
            f"{len(clinic)} of {AGES_OF} their age"
        )
        with TelemetryClient(load_task_config(ages)) as client:
            bits = [tuple(c == "1" for c in f"{int(a):07b}") for a in clinic.age]
            client.submit(bits, when, rng)
        with TelemetryClient(load_task_config(sbp)) as client:
            client.submit([(int(v) - 80) // 10 for v in patients.sbp], when, rng)
        yield [ages, sbp]


def serve_web(
    state_dir: Path | None,
    *,
    cheat: bool,
    say: Callable[[str], None],
    host: str = "127.0.0.1",
    port: int = 8765,
    kdf_iterations: int = 2**12,
) -> None:
    """``tessera demo --web``: start the demo network, serve the web console over it with
    the analyst's key unlocked (the demo made that key file and its password), until
    Ctrl-C; then stop every process."""
    from tessera.data import medical
    from tessera.node.launcher import Network
    from tessera.web.console import Console
    from tessera.web.server import make_server

    with tempfile.TemporaryDirectory(prefix="tessera-demo-") as tmp:
        net = Network(state_dir or Path(tmp) / "network")
        try:
            net.up(network_spec(kdf_iterations, (1,) if cheat else ()), progress=say)
            # trainings started from the page are scored on the bundled tables, pooled (as
            # the command-line demo's training is): the demo's stand-in for the analyst's own
            validation = net.dir / "validation.csv"
            pooled = pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)
            pooled.to_csv(validation, index=False)
            with demo_telemetry(net.dir / "telemetry", say) as tasks:
                console = Console(
                    net.dir, password=net.password, validation=validation, telemetry=tasks
                )
                server = make_server(console, host, port)
                say(f"network files in {net.dir}")
                say(f"Tessera console: http://{host}:{port}/ (Ctrl-C stops it and the network)")
                try:
                    server.run()
                finally:
                    console.close()
        finally:
            say("stopping every process")
            net.down()


def main(
    as_json: bool, cheat: bool, state_dir: Path | None, *, web: bool = False, port: int = 8765
) -> int:
    from rich.console import Console

    out = Console(stderr=as_json)
    err = Console(stderr=True)
    if web:
        try:
            serve_web(
                state_dir, cheat=cheat, say=lambda m: err.print(f"[dim]·[/dim] {m}"), port=port
            )
        except KeyboardInterrupt:
            err.print("interrupted: every process stopped")
            return 130
        except TesseraError as exc:
            from tessera.cli.errors import report_error

            return report_error(exc)
        return 0
    try:
        report = run_demo(state_dir, cheat=cheat, say=lambda m: err.print(f"[dim]·[/dim] {m}"))
    except KeyboardInterrupt:
        err.print("interrupted: every process stopped")
        return 130
    except TesseraError as exc:
        from tessera.cli.errors import report_error

        return report_error(exc)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print_report(report, out)
    return 0 if all(r["verified"] for r in report["results"]) else 1
