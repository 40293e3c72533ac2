"""Federated training benchmark: one secure round's time by step, and accuracy against central.

Round time, for providers x parameters (an MLP on digits sized to the parameter count):
each provider's local training and proof (sharding with the norm proof) is measured, the
n nodes each verify every report, decide jointly, sum and add their noise, and the analyst
unshards. Every step runs here, one after the other, on this machine; ``round_s`` is the
round's critical path when the providers and the nodes work in parallel, as deployed:
``max(local + proof) + max(node verification + aggregation + noise) + decisions + unshard``
(``serial_s`` is the sum of everything). Not measured here: the ledger (this is the round's
cryptographic work; the deployed round adds a training query on the chain).

Flower, same model and clients (``flower_round_s``; needs the ``flower`` extra): a Flower
server and one Flower client per provider on loopback (Flower's gRPC transport, the
clients in threads of this one process, so their work is serial), one round timed from
the strategy's ``configure_fit`` to the end of its ``aggregate_fit``, the second of two
(the first loads kernels and connections). ``fedavg`` is Flower's own ``FedAvg`` with
plaintext parameters; ``tessera`` is ``tessera.learning.flower.TesseraFedAvg`` with the
``TesseraMod`` client mod (proof and sealing at each client, 3 in-process nodes verify,
noise at ε = 8 over 20 rounds; beyond 2·10^6 providers x parameters only with
``--flower-all``: the server holds every sealed report at once).

Flower's SecAgg+ (``flower_round_s``, and ``flower_ratio`` = SecAgg+ / Tessera's
``round_s``): the same clients under Flower's ``SecAggPlusWorkflow`` with its
``secaggplus_mod``, in Flower's simulation engine (Ray, 2 CPUs, ``flwr[simulation]``),
3 shares and a threshold of 2 per client's key, as Flower's example configures it;
the second of two rounds. SecAgg+ proves nothing about a client's update.

Accuracy: digits split Dirichlet(0.3) over 6 providers, softmax regression: central
training, FedAvg, secure aggregation without noise, and row-level DP at each epsilon.

    python benchmarks/federated.py             # table
    python benchmarks/federated.py --json      # one JSON object
    python benchmarks/federated.py --quick     # 10 providers x 10^3 parameters, eps 8 only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tessera.crypto import prio3_l2
from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import ExactSampler, OpenDPSampler
from tessera.learning import (
    MLP,
    Dataset,
    FixedPoint,
    LocalConfig,
    SoftmaxRegression,
    TrainingBudget,
    TrainingConfig,
    round_noise,
    secure,
    train,
    train_locally,
)
from tessera.learning.partition import dirichlet_split

NODES, THRESHOLD = 3, 2


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return xtr, xte, ytr, yte


def round_time(providers: int, params: int, seed: int = 0) -> dict[str, float]:
    """One secure DP round at ``providers`` x ``params`` (an MLP on digits), by step."""
    rng = np.random.default_rng(seed)
    xtr, _, ytr, _ = _digits()
    hidden = max(1, round((params - 10) / 75))
    model = MLP(64, hidden, 10)
    parts = dirichlet_split(ytr, providers, 0.3, rng, min_rows=1)
    fixed_point = FixedPoint(1.0, 16)
    vdaf = secure.update_vdaf(model.num_params, fixed_point, NODES)
    budget = TrainingBudget.for_epsilon(8.0, 1e-6, 20)
    plan = round_noise(fixed_point, 1.0, NODES, THRESHOLD, budget.rho_per_round, model.num_params)
    ctx = secure.round_ctx(b"benchmark", 0)
    params0 = model.init(rng)
    local, proof = [], []
    reports = []
    for p in parts:
        t = time.perf_counter()
        u = train_locally(model, params0, xtr[p], ytr[p], LocalConfig(1, 0.1, 32), rng)
        local.append(time.perf_counter() - t)
        t = time.perf_counter()
        ints = fixed_point.encode(u, rng)
        reports.append(
            secure.shard_update(vdaf, ctx, ints, rng.bytes(16), rng.bytes(vdaf.RAND_SIZE))
        )
        proof.append(time.perf_counter() - t)
    verify_key = rng.bytes(32)
    verify = [0.0] * NODES
    prepared: list[list[Any]] = [[] for _ in range(NODES)]
    for report in reports:
        for j in range(NODES):
            t = time.perf_counter()
            prepared[j].append(
                secure.prepare(
                    vdaf,
                    verify_key,
                    ctx,
                    j,
                    report.nonce,
                    report.public_share,
                    report.input_shares[j],
                )
            )
            verify[j] += time.perf_counter() - t
    t = time.perf_counter()
    messages = [
        secure.decide(vdaf, ctx, [prepared[j][k][1] for j in range(NODES)])
        for k in range(len(reports))
    ]
    decide = time.perf_counter() - t
    sampler = OpenDPSampler()
    aggregate, noise = [0.0] * NODES, [0.0] * NODES
    shares = []
    for j in range(NODES):
        t = time.perf_counter()
        outs = [
            prio3_l2.verify_next(prepared[j][k][0], m)
            for k, m in enumerate(messages)
            if not isinstance(m, Exception)
        ]
        aggregate[j] = time.perf_counter() - t
        t = time.perf_counter()
        n = secure.draw_noise(plan, sampler, vdaf.LENGTH)
        noise[j] = time.perf_counter() - t
        t = time.perf_counter()
        shares.append(secure.aggregate_share(vdaf, outs, n))
        aggregate[j] += time.perf_counter() - t
    t = time.perf_counter()
    secure.unshard(vdaf, shares, len(reports))
    unshard = time.perf_counter() - t
    provider_path = max(a + b for a, b in zip(local, proof, strict=True))
    node_path = max(v + a + z for v, a, z in zip(verify, aggregate, noise, strict=True))
    return {
        "params": float(model.num_params),
        "round_s": provider_path + node_path + decide + unshard,
        "serial_s": sum(local)
        + sum(proof)
        + sum(verify)
        + decide
        + sum(aggregate)
        + sum(noise)
        + unshard,
        "local_s": max(local),
        "proof_s": max(proof),
        "verify_per_node_s": max(verify),
        "decide_s": decide,
        "aggregate_per_node_s": max(aggregate),
        "noise_per_node_s": max(noise),
        "unshard_s": unshard,
    }


#: The largest round (providers x parameters) run through Tessera's strategy in one
#: process unless --flower-all: the server holds every sealed report at once (16 bytes
#: per encoded digit in the leader's share: 100 x 10^5 parameters is 2.6 GB).
FLOWER_TESSERA_MAX = 2_000_000


def _timed(base: type) -> Any:
    """``base`` (a Flower strategy) timing each round from ``configure_fit`` to the end of
    ``aggregate_fit``."""

    class Timed(base):  # type: ignore[misc,valid-type]
        times: dict[int, float]

        def configure_fit(self, server_round: int, *a: Any, **kw: Any) -> Any:
            self.times = getattr(self, "times", {})
            self.times[server_round] = time.perf_counter()
            return super().configure_fit(server_round, *a, **kw)

        def aggregate_fit(self, server_round: int, *a: Any, **kw: Any) -> Any:
            out = super().aggregate_fit(server_round, *a, **kw)
            self.times[server_round] = time.perf_counter() - self.times[server_round]
            return out

    return Timed


def _flower_clients(providers: int, params: int, seed: int) -> tuple[MLP, list[Any], Any]:
    """The model, its initial parameters, and the Flower client of provider ``i``: one
    local epoch of SGD on its Dirichlet(0.3) part of digits (the same for every run)."""
    from flwr.client import NumPyClient
    from flwr.common import NDArrays, Scalar

    from tessera.learning.flower import flatten

    rng = np.random.default_rng(seed)
    xtr, _, ytr, _ = _digits()
    hidden = max(1, round((params - 10) / 75))
    model = MLP(64, hidden, 10)
    parts = dirichlet_split(ytr, providers, 0.3, rng, min_rows=1)
    init = [model.init(rng)]

    class Client(NumPyClient):
        def __init__(self, index: int) -> None:
            self.index = index

        def fit(
            self, parameters: NDArrays, config: dict[str, Scalar]
        ) -> tuple[NDArrays, int, dict[str, Scalar]]:
            p = parts[self.index]
            start = flatten(parameters)
            local = np.random.default_rng([seed, self.index])
            u = train_locally(model, start, xtr[p], ytr[p], LocalConfig(1, 0.1, 32), local)
            return [start + u], len(p), {}

    return model, init, Client


def flower_round_time(
    providers: int, params: int, seed: int = 0, tessera: bool = True
) -> dict[str, float]:
    """One Flower round at ``providers`` x ``params``: Flower's FedAvg and (``tessera``)
    Tessera's strategy over the same clients (see the module docstring)."""
    import logging

    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import FedAvg

    from tessera.learning.flower import (
        InProcessCommittee,
        SecureAggregation,
        TesseraFedAvg,
        TesseraMod,
        run_loopback,
    )

    logging.getLogger("flwr").setLevel(logging.WARNING)
    model, init, Client = _flower_clients(providers, params, seed)

    def app(index: int, mod: TesseraMod | None = None) -> ClientApp:
        return ClientApp(
            client_fn=lambda _ctx: Client(index).to_client(), mods=[mod] if mod else []
        )

    fedavg = _timed(FedAvg)(
        initial_parameters=ndarrays_to_parameters(init),
        fraction_evaluate=0.0,
        min_fit_clients=providers,
        min_available_clients=providers,
    )
    run_loopback(fedavg, [app(i) for i in range(providers)], 2, timeout=3600)
    if not tessera:
        return {"params": float(model.num_params), "fedavg_s": fedavg.times[2]}
    committee = InProcessCommittee(NODES, sampler=OpenDPSampler(), rng=SeededRng(seed))
    spec = SecureAggregation(committee.node_keys, clip=1.0)
    strategy = _timed(TesseraFedAvg)(
        initial_parameters=init,
        committee=committee,
        spec=spec,
        num_rounds=20,
        epsilon=8.0,
        threshold=THRESHOLD,
        min_fit_clients=providers,
        min_available_clients=providers,
    )
    mods = [TesseraMod(spec, f"p{i}", SeededRng(seed * 1000 + i)) for i in range(providers)]
    run_loopback(strategy, [app(i, mods[i]) for i in range(providers)], 2, timeout=3600)
    return {
        "params": float(model.num_params),
        "fedavg_s": fedavg.times[2],
        "tessera_s": strategy.times[2],
        "tessera_aggregate_s": strategy.aggregate_s[2],
    }


#: Flower's SecAgg+ as its secure-aggregation example configures it: each client's key
#: split in 3 shares, any 2 reconstruct (Tessera's side: 3 nodes, threshold 2).
SECAGG_SHARES, SECAGG_THRESHOLD = 3, 2


def flower_secagg_round_time(providers: int, params: int, seed: int = 0) -> float:
    """One round of Flower's SecAgg+ workflow (``SecAggPlusWorkflow`` with the
    ``secaggplus_mod`` at every client: key agreement, masking, share reconstruction and
    unmasking, all Flower's code) over the same clients, in Flower's simulation engine
    (Ray, ``flwr[simulation]``): the second of two rounds, from ``configure_fit`` to the
    end of ``aggregate_fit``. No norm proof (SecAgg+ has none); its clipping range is the
    client's own to honour."""
    import logging

    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)
    _, init, Client = _flower_clients(providers, params, seed)
    strategy = _timed(FedAvg)(
        initial_parameters=ndarrays_to_parameters(init),
        fraction_evaluate=0.0,
        min_fit_clients=providers,
        min_available_clients=providers,
    )
    client_app = ClientApp(
        client_fn=lambda ctx: Client(int(ctx.node_config["partition-id"])).to_client(),
        mods=[secaggplus_mod],
    )
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=2), strategy=strategy
        )
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(SECAGG_SHARES, SECAGG_THRESHOLD, timeout=3600.0)
        )
        workflow(grid, legacy)

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=providers,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"address": "local", "num_cpus": 2, "include_dashboard": False},
        },
    )
    return float(strategy.times[2])


def _flower(
    sizes: list[tuple[int, ...]], everything: bool, secagg: bool
) -> dict[str, dict[str, float]]:
    try:
        import flwr  # noqa: F401
    except ImportError:
        return {}
    out = {}
    for p, n in sizes:
        row = flower_round_time(p, n, tessera=everything or p * n <= FLOWER_TESSERA_MAX)
        if secagg:
            row["secagg_s"] = flower_secagg_round_time(p, n)
        out[f"{p}x{n}"] = row
        print(f"flower {p}x{n}: {json.dumps(row)}", file=sys.stderr, flush=True)  # progress
    return out


def accuracy(epsilons: list[float]) -> dict[str, float]:
    xtr, xte, ytr, yte = _digits()
    parts = dirichlet_split(ytr, 6, 0.3, np.random.default_rng(0), min_rows=10)
    datasets = [Dataset(f"p{i}", xtr[p], ytr[p], max_rows=400) for i, p in enumerate(parts)]
    model = SoftmaxRegression(64, 10)
    rng = np.random.default_rng(0)
    w = model.init(rng)
    out = {
        "central": model.score(
            w + train_locally(model, w, xtr, ytr, LocalConfig(20, 0.5, 32), rng), xte, yte
        )
    }
    local = LocalConfig(2, 0.5, 32)
    for name, config in (
        ("fedavg", TrainingConfig(rounds=15, local=local, secure=False)),
        ("secure", TrainingConfig(rounds=15, local=local, clip=5.0)),
    ):
        res = train(model, datasets, config, np.random.default_rng(1), validation=(xte, yte))
        out[name] = float(res.rounds[-1].score or 0.0)
    for eps in epsilons:
        # row-level DP-FedSGD: one clipped gradient sum per provider and round, so many
        # cheap rounds and a large server step (150 rounds at 4.0: docs/learning.md)
        config = TrainingConfig(
            rounds=150, unit="row", clip=1.0, epsilon=eps, server_learning_rate=4.0
        )
        res = train(
            model,
            datasets,
            config,
            np.random.default_rng(2),
            sampler=ExactSampler(SeededRng(2)),
            validation=(xte, yte),
        )
        out[f"eps{eps:g}"] = float(res.rounds[-1].score or 0.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--sizes", default=None, help="comma-separated PROVIDERSxPARAMS, e.g. 10x10000,100x100000"
    )
    parser.add_argument("--no-accuracy", action="store_true", help="round times only")
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower rounds")
    parser.add_argument(
        "--no-secagg", action="store_true", help="skip Flower's SecAgg+ rounds (Ray)"
    )
    parser.add_argument(
        "--flower-all",
        action="store_true",
        help=f"Tessera's Flower round beyond {FLOWER_TESSERA_MAX:,} providers x parameters too",
    )
    args = parser.parse_args()
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    elif args.quick:
        sizes = [(10, 1_000)]
    else:
        sizes = [(10, 10_000), (100, 10_000), (10, 100_000), (100, 100_000)]
    round_time(2, 200)  # load the compiled kernels
    rounds = {}
    for p, n in sizes:
        rounds[f"{p}x{n}"] = round_time(p, n)
        print(f"tessera {p}x{n}: {json.dumps(rounds[f'{p}x{n}'])}", file=sys.stderr, flush=True)
    flower = {} if args.no_flower else _flower(sizes, args.flower_all, not args.no_secagg)
    report = {
        "round_s": {k: v["round_s"] for k, v in rounds.items()},
        # Flower's SecAgg+ workflow, the secure aggregation Tessera's round is set against
        "flower_round_s": {k: v["secagg_s"] for k, v in flower.items() if "secagg_s" in v},
        "flower_ratio": {
            k: v["secagg_s"] / rounds[k]["round_s"] for k, v in flower.items() if "secagg_s" in v
        },
        "flower_fedavg_round_s": {k: v["fedavg_s"] for k, v in flower.items()},
        "flower_tessera_round_s": {
            k: v["tessera_s"] for k, v in flower.items() if "tessera_s" in v
        },
        "breakdown": rounds,
        "accuracy": {} if args.no_accuracy else accuracy([8.0] if args.quick else [1.0, 4.0, 8.0]),
    }
    if args.json:
        print(json.dumps(report))
        return
    cols = (
        "round_s",
        "serial_s",
        "local_s",
        "proof_s",
        "verify_per_node_s",
        "decide_s",
        "aggregate_per_node_s",
        "noise_per_node_s",
        "unshard_s",
    )
    print(f"{'size':>12} | " + " | ".join(f"{c:>10.10}" for c in cols))
    for key, row in rounds.items():
        print(f"{key:>12} | " + " | ".join(f"{row[c]:>10.3f}" for c in cols))
    if flower:
        print(
            "Flower, one round: FedAvg and through Tessera on loopback (clients in threads of"
            " one process), SecAgg+ in Flower's simulation engine; ratio = SecAgg+ / round_s:"
        )
        head = ("size", "FedAvg", "Tessera", "SecAgg+", "round_s", "ratio")
        print(" | ".join(f"{h:>12}" for h in head))
        for key, row in flower.items():
            cells = [
                f"{row['fedavg_s']:>12.3f}",
                f"{row['tessera_s']:>12.3f}" if "tessera_s" in row else f"{'(skipped)':>12}",
                f"{row['secagg_s']:>12.3f}" if "secagg_s" in row else f"{'(skipped)':>12}",
                f"{rounds[key]['round_s']:>12.3f}",
                f"{report['flower_ratio'][key]:>12.1f}" if "secagg_s" in row else f"{'':>12}",
            ]
            print(f"{key:>12} | " + " | ".join(cells))
    else:
        print("Flower: not measured (--no-flower, or the flower extra is not installed)")
    print("accuracy:", json.dumps({k: round(v, 4) for k, v in report["accuracy"].items()}))


if __name__ == "__main__":
    main()
