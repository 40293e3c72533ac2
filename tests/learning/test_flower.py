"""Flower interop: a Flower app's training through Tessera's committee (issue 13).

Every run is Flower's own machinery: a Flower server (``flwr.server.Server`` behind its
gRPC transport) and one Flower client per provider (``ClientApp`` driven by Flower's
client loop), on 127.0.0.1, the clients in threads (``tessera.learning.flower.run_loopback``).
The app is what a Flower user would write: a ``NumPyClient`` training logistic
regression on its own part of scikit-learn's breast-cancer table, numpy parameters
``[weights, bias]``. Tessera enters as a client mod and a strategy.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import pytest
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import NDArrays, Scalar, ndarrays_to_parameters
from flwr.server.strategy import FedAvg
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from tessera.crypto.rng import SeededRng
from tessera.dp.samplers import ExactSampler
from tessera.learning import secure
from tessera.learning.config import fixed_point_for
from tessera.learning.flower import (
    SEALED_REPORT,
    InProcessCommittee,
    SecureAggregation,
    TesseraFedAvg,
    TesseraMod,
    flatten,
    run_loopback,
)
from tessera.learning.local import LocalConfig, train_locally
from tessera.learning.models import Array, LogisticRegression
from tessera.learning.partition import dirichlet_split
from tessera.learning.rounds import Dataset, Provider, server_update
from tessera.node.model_store import LocalModelStore, ModelLog
from tessera.protocol.training import SealedReport
from tessera.testing.learning import OversizedUpdate

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENTS = 4
ROUNDS = 6
MAX_ROWS = 200
LOCAL = LocalConfig(epochs=2, learning_rate=0.1, batch_size=32)
MODEL = LogisticRegression(30)


@pytest.fixture(scope="module", autouse=True)
def _quiet_flower() -> Any:
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def _data() -> tuple[list[tuple[Array, Array]], Array, Array]:
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    parts = dirichlet_split(ytr, CLIENTS, 1.0, np.random.default_rng(0), min_rows=20)
    return [(xtr[p], ytr[p]) for p in parts], xte, yte


PARTS, X_TEST, Y_TEST = _data()


class CancerClient(NumPyClient):
    """An ordinary Flower client: local SGD epochs from the global model, its parameters
    back (``sent`` keeps what it returned, to look for it at the server)."""

    def __init__(self, index: int, sent: list[bytes] | None = None, scale: float = 1.0) -> None:
        self.index, self.sent, self.scale = index, sent, scale

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> tuple[NDArrays, int, dict]:
        x, y = PARTS[self.index]
        start = flatten(parameters)
        rng = np.random.default_rng([self.index, int(config.get("round", 0))])
        update = train_locally(MODEL, start, x, y, LOCAL, rng)
        params = start + self.scale * update
        out = [params[:30].copy(), params[30:].copy()]
        if self.sent is not None:
            self.sent.extend(a.tobytes() for a in out)
        return out, len(y), {"local_rows": len(y)}


def _round_config(server_round: int) -> dict[str, Scalar]:
    return {"round": server_round}


def _app(index: int, mod: TesseraMod | None = None, **client: Any) -> ClientApp:
    return ClientApp(
        client_fn=lambda _ctx: CancerClient(index, **client).to_client(),
        mods=[mod] if mod is not None else [],
    )


def _init() -> NDArrays:
    return [np.zeros(30), np.zeros(1)]


def _accuracy(params: NDArrays) -> float:
    return float(MODEL.score(flatten(params), X_TEST, Y_TEST))


def _plain_fedavg(
    rounds: int = ROUNDS, apps: list[ClientApp] | None = None
) -> tuple[NDArrays, float]:
    """Flower's own FedAvg over the same clients (no mod): the final model and the time."""
    final: list[NDArrays] = []

    def evaluate(_r: int, params: NDArrays, _c: dict[str, Scalar]) -> tuple[float, dict]:
        final[:] = [params]
        return 0.0, {}

    strategy = FedAvg(
        initial_parameters=ndarrays_to_parameters(_init()),
        fraction_evaluate=0.0,
        min_fit_clients=CLIENTS,
        min_available_clients=CLIENTS,
        on_fit_config_fn=_round_config,
        evaluate_fn=evaluate,
    )
    start = time.perf_counter()
    run_loopback(strategy, apps or [_app(i) for i in range(CLIENTS)], rounds)
    return final[0], time.perf_counter() - start


def _committee(seed: int, noise: bool = False) -> InProcessCommittee:
    sampler = ExactSampler(SeededRng(seed + 1)) if noise else None
    return InProcessCommittee(3, sampler=sampler, rng=SeededRng(seed))


def _strategy(committee: InProcessCommittee, spec: SecureAggregation, **kw: Any) -> TesseraFedAvg:
    kw.setdefault("min_fit_clients", CLIENTS)
    kw.setdefault("min_available_clients", CLIENTS)
    return TesseraFedAvg(
        initial_parameters=_init(),
        committee=committee,
        spec=spec,
        on_fit_config_fn=_round_config,
        training_id=b"flower-test",
        **kw,
    )


class Capture:
    """An observer (``rounds.Observer``) that keeps every round's parameters."""

    def __init__(self) -> None:
        self.params: list[Array] = []

    def start(self, model: object, params: Array) -> None:
        self.params = [params.copy()]

    def round(self, model: object, params: Array, record: object) -> None:
        self.params.append(params.copy())


def _mod(spec: SecureAggregation, index: int) -> TesseraMod:
    return TesseraMod(spec, f"client{index}", SeededRng(100 + index))


@pytest.fixture(scope="module")
def secure_run() -> dict[str, Any]:
    committee = _committee(1)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    capture = Capture()
    strategy = _strategy(committee, spec, observer=capture, model=MODEL)
    sent: list[bytes] = []
    apps = [_app(i, _mod(spec, i), sent=sent) for i in range(CLIENTS)]
    start = time.perf_counter()
    history = run_loopback(strategy, apps, ROUNDS)
    return {
        "strategy": strategy,
        "history": history,
        "sent": sent,
        "params": capture.params,
        "seconds": time.perf_counter() - start,
    }


def test_through_tessera_the_model_is_within_a_few_points_of_flower_fedavg(
    secure_run: dict[str, Any],
) -> None:
    plain, plain_s = _plain_fedavg()
    strategy: TesseraFedAvg = secure_run["strategy"]
    fedavg, tessera = _accuracy(plain), _accuracy(strategy.parameters)
    print(
        f"accuracy: Flower FedAvg {fedavg:.3f} ({plain_s:.1f} s), "
        f"through Tessera {tessera:.3f} ({secure_run['seconds']:.1f} s), "
        f"aggregation per round {np.mean(list(strategy.aggregate_s.values())):.3f} s"
    )
    # measured: FedAvg 0.944, through Tessera 0.944 (6 rounds, 4 clients, Dirichlet(1.0))
    assert fedavg > 0.93
    assert tessera >= fedavg - 0.03
    assert len(strategy.records) == ROUNDS
    assert all(len(r.accepted) == CLIENTS and not r.excluded for r in strategy.records)
    # the parameters the strategy computed are what Flower's server holds
    history = secure_run["history"]
    assert history.metrics_distributed_fit["tessera.accepted"] == [
        (r, CLIENTS) for r in range(1, ROUNDS + 1)
    ]


def test_the_server_receives_sealed_reports_and_never_a_clients_parameters(
    secure_run: dict[str, Any],
) -> None:
    strategy: TesseraFedAvg = secure_run["strategy"]
    sent: list[bytes] = secure_run["sent"]
    assert len(sent) == 2 * CLIENTS * ROUNDS  # the clients did return their parameters...
    received = [res for r in range(1, ROUNDS + 1) for res in strategy.received[r]]
    assert len(received) == CLIENTS * ROUNDS
    providers = set()
    for res in received:
        # ...but what reached the server is one sealed report per reply, nothing else
        assert res.parameters.tensor_type == SEALED_REPORT
        assert len(res.parameters.tensors) == 1
        blob = res.parameters.tensors[0]
        report = SealedReport.decode(blob)
        assert report.training_id == b"flower-test"
        assert len(report.sealed) == 3 and {n for n, _ in report.sealed} == {1, 2, 3}
        assert res.num_examples == 0 and res.metrics == {}
        providers.add(report.provider)
        for arr in sent:
            assert arr[:16] not in blob and arr[-16:] not in blob
    assert providers == {f"client{i}" for i in range(CLIENTS)}


def _first_updates(clip: float) -> list[Array]:
    """What each client's first round sends before quantising: its update from zeros,
    clipped (the clients' local training is seeded by client and round)."""
    out = []
    for i, (x, y) in enumerate(PARTS):
        u = train_locally(MODEL, np.zeros(31), x, y, LOCAL, np.random.default_rng([i, 1]))
        out.append(u * min(1.0, clip / float(np.linalg.norm(u))))
    return out


def test_the_step_is_fedavgs_weighted_mean_or_the_plain_mean_of_clipped_updates(
    secure_run: dict[str, Any],
) -> None:
    # weighted by rows (max_rows set), clip 4 (the updates' norms are about 0.5)
    updates = _first_updates(4.0)
    rows = np.array([len(y) for _, y in PARTS], dtype=float)
    weighted = sum(r * u for r, u in zip(rows, updates, strict=True)) / rows.sum()
    unit = 4.0 * np.sqrt(2) / 2**15  # the fixed point's step
    np.testing.assert_allclose(secure_run["params"][1], weighted, rtol=0, atol=unit)
    # unweighted (no max_rows), clip 0.55: every accepted update clipped and weighing one
    norms = [float(np.linalg.norm(u)) for u in updates]
    assert min(norms) < 0.55 < max(norms)  # the clip binds for some clients
    committee = _committee(5)
    spec = SecureAggregation(committee.node_keys, clip=0.55)
    capture = Capture()
    strategy = _strategy(committee, spec, observer=capture, model=MODEL)
    run_loopback(strategy, [_app(i, _mod(spec, i)) for i in range(CLIENTS)], 1)
    plain = sum(_first_updates(0.55)) / CLIENTS
    np.testing.assert_allclose(capture.params[1], plain, rtol=0, atol=0.55 / 2**15)
    assert not np.allclose(plain, weighted, rtol=0, atol=20 * unit)


def test_the_mod_seals_a_message_api_reply_and_the_message_strategy_aggregates_it() -> None:
    """Flower's Message API without a transport: messages built as a Grid sends them, the
    mod and a ``@app.train()``-style handler called as a ClientApp calls them."""
    from flwr.app import (
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        Metadata,
        MetricRecord,
        RecordDict,
    )

    from tessera.learning.flower import TesseraMessageFedAvg

    def instruction(content: RecordDict, node: int) -> Message:
        """A training message as a Grid addresses it to ``node``."""
        meta = Metadata(0, f"m{node}", 0, node, "", "", time.time(), 3600.0, "train")
        return Message(content=content, metadata=meta)

    committee = _committee(8)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    strategy = TesseraMessageFedAvg(
        initial_arrays=ArrayRecord([np.zeros(30), np.zeros(1)]),
        committee=committee,
        spec=spec,
        training_id=b"flower-test",
    )
    tessera = strategy.tessera.open_round(1)
    assert tessera is not None
    config = ConfigRecord({"server-round": 1, **tessera})
    sent, replies = [], []
    for i in range(CLIENTS):

        def handler(msg: Message, _ctx: Context, index: int = i) -> Message:
            arrays = msg.content["arrays"].to_numpy_ndarrays()
            out, rows, _ = CancerClient(index).fit(arrays, {"round": 1})
            sent.extend(a.tobytes() for a in out)
            content = {"arrays": ArrayRecord(out), "metrics": MetricRecord({"num-examples": rows})}
            return Message(content=RecordDict(content), reply_to=msg)

        msg = instruction(RecordDict({"arrays": strategy.arrays, "config": config}), 10 + i)
        ctx = Context(0, 10 + i, {}, RecordDict(), {})
        reply = TesseraMod(spec, f"client{i}", SeededRng(100 + i))(msg, ctx, handler)
        ((array,),) = (r.values() for r in reply.content.array_records.values())
        assert array.stype == SEALED_REPORT
        assert SealedReport.decode(array.data).provider == f"client{i}"
        assert dict(reply.content["metrics"]) == {"num-examples": 0}
        replies.append(reply)
    # and one client without the mod: its plaintext reply is refused unread
    plain = instruction(RecordDict({"arrays": strategy.arrays, "config": config}), 99)
    plain_reply = Message(
        content=RecordDict({"arrays": ArrayRecord([np.ones(30), np.ones(1)])}), reply_to=plain
    )
    arrays, metrics = strategy.aggregate_train(1, [*replies, plain_reply])
    assert arrays is not None and metrics is not None
    assert metrics["tessera.accepted"] == CLIENTS and metrics["tessera.excluded"] == 1
    assert strategy.tessera.records[0].excluded == (
        ("flower:99", "not a sealed report (refused unread)"),
    )
    for res in strategy.tessera.received[1][:CLIENTS]:
        assert all(b[:16] not in res.parameters.tensors[0] for b in sent)
    rows = np.array([len(y) for _, y in PARTS], dtype=float)
    weighted = sum(r * u for r, u in zip(rows, _first_updates(4.0), strict=True)) / rows.sum()
    unit = 4.0 * np.sqrt(2) / 2**15
    got = flatten(arrays.to_numpy_ndarrays())
    np.testing.assert_allclose(got, weighted, rtol=0, atol=unit)
    assert list(arrays.keys()) == ["0", "1"]


def test_inconsistent_configurations_are_refused_before_training() -> None:
    committee = _committee(9)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    with pytest.raises(ValueError, match="not the committee's"):
        _strategy(committee, SecureAggregation(_committee(10).node_keys))
    with pytest.raises(ValueError, match="number of rounds"):
        _strategy(committee, spec, epsilon=1.0)
    with pytest.raises(ValueError, match="noise sampler"):
        _strategy(committee, spec, epsilon=1.0, num_rounds=3)
    with pytest.raises(ValueError, match="needs the model"):
        _strategy(committee, spec, observer=Capture())
    with pytest.raises(ValueError, match="two nodes"):
        SecureAggregation({1: committee.node_keys[1]})
    # the network's TrainingConfig checks the same parameters
    with pytest.raises(ValueError, match="bits must be in"):
        SecureAggregation(committee.node_keys, bits=40)
    with pytest.raises(ValueError, match="server_learning_rate"):
        _strategy(committee, spec, server_learning_rate=0.0)
    with pytest.raises(RuntimeError, match=r"client failed: .*no Tessera training"):
        # a mod behind a server that is not Tessera's: the client fails rather than
        # send its parameters in the clear
        _plain_fedavg(1, [_app(i, _mod(spec, i)) for i in range(CLIENTS)])


def _mallory(spec: SecureAggregation, factor: float) -> TesseraMod:
    """A client mod that proves its update negated and scaled to ``factor`` times the
    bound, with a false claim about its norm (every entry in range;
    ``tessera.testing.learning.OversizedUpdate``)."""
    x, y = PARTS[CLIENTS - 1]
    liar = OversizedUpdate(Provider(Dataset("mallory", x, y, MAX_ROWS)), set(), factor, seed=7)
    rounds = liar.rounds

    class Mallory(TesseraMod):
        def report(
            self, training: bytes, round_index: int, update: Array, rows: int
        ) -> secure.Report:
            rounds.add(round_index)
            vdaf = self.spec.vdaf(update.size)
            ctx = secure.round_ctx(training, round_index)
            payload = -self.spec.payload(update, rows)
            return liar.report(
                round_index, vdaf, ctx, self.spec.fixed_point, payload, np.random.default_rng(3)
            )

    return Mallory(spec, "mallory", SeededRng(99))


def test_an_update_beyond_the_norm_bound_is_excluded_and_the_model_is_not_poisoned() -> None:
    rounds = 3
    committee = _committee(2)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    honest = [_app(i, _mod(spec, i)) for i in range(CLIENTS - 1)]
    # the last client trains, then its mod proves -100x the bound in its update's direction
    attacked = _strategy(committee, spec)
    history = run_loopback(attacked, [*honest, _app(CLIENTS - 1, _mallory(spec, 100.0))], rounds)
    exclusions = [json.loads(e) for _, e in history.metrics_distributed_fit["tessera.exclusions"]]
    assert [[name for name, _ in ex] for ex in exclusions] == [["mallory"]] * rounds
    assert all("InvalidProof" in reason for ex in exclusions for _, reason in ex)
    assert [len(r.accepted) for r in attacked.records] == [CLIENTS - 1] * rounds
    # the same honest clients alone: the model is exactly theirs
    committee2 = _committee(2)
    spec2 = SecureAggregation(committee2.node_keys, clip=4.0, max_rows=MAX_ROWS)
    alone = _strategy(
        committee2, spec2, min_fit_clients=CLIENTS - 1, min_available_clients=CLIENTS - 1
    )
    run_loopback(alone, [_app(i, _mod(spec2, i)) for i in range(CLIENTS - 1)], rounds)
    np.testing.assert_allclose(flatten(attacked.parameters), flatten(alone.parameters))
    assert _accuracy(attacked.parameters) > 0.9
    # the same attack on plain Flower FedAvg poisons the model
    attackers = [*(_app(i) for i in range(CLIENTS - 1)), _app(CLIENTS - 1, scale=-100.0)]
    poisoned, _ = _plain_fedavg(rounds, attackers)
    assert _accuracy(poisoned) < _accuracy(attacked.parameters) - 0.2


def test_a_client_without_the_mod_is_refused_unread() -> None:
    committee = _committee(3)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    strategy = _strategy(committee, spec, min_fit_clients=3, min_available_clients=3)
    apps = [_app(0, _mod(spec, 0)), _app(1, _mod(spec, 1)), _app(2, scale=100.0)]
    history = run_loopback(strategy, apps, 1)
    ((_, text),) = history.metrics_distributed_fit["tessera.exclusions"]
    ((who, reason),) = json.loads(text)
    assert who.startswith("flower:") and reason == "not a sealed report (refused unread)"
    assert strategy.records[0].accepted == ("client0", "client1")


def test_noise_is_added_and_training_stops_when_the_budget_would_be_exceeded(
    secure_run: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    committee = _committee(1, noise=True)  # the secure run's committee, with a sampler
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    capture = Capture()
    strategy = _strategy(
        committee, spec, epsilon=8.0, delta=1e-6, num_rounds=2, observer=capture, model=MODEL
    )
    apps = [_app(i, _mod(spec, i)) for i in range(CLIENTS)]
    with caplog.at_level(logging.WARNING, logger="tessera.learning.flower"):
        history = run_loopback(strategy, apps, 4)  # Flower asks for 4 rounds
    assert len(strategy.records) == 2
    assert strategy.stopped is not None
    assert strategy.stopped.startswith("round 3 would exceed the privacy budget")
    assert "trained 2 rounds" in strategy.stopped and strategy.stopped in caplog.text
    eps = [e for _, e in history.metrics_distributed_fit["tessera.epsilon"]]
    assert len(eps) == 2 and 0 < eps[0] < eps[1] == pytest.approx(8.0, rel=1e-6)
    assert strategy.records[-1].epsilon_spent == pytest.approx(8.0, rel=1e-6)
    assert len(capture.params) == 3  # rounds 3 and 4 did not run
    # round 1 had the same reports as the secure run's (same clients, same global model):
    # the released sums differ by the nodes' noise, of the planned size (3 nodes' draws)
    plan = strategy.plan
    assert plan is not None
    ref: TesseraFedAvg = secure_run["strategy"]
    noise = (strategy.released[1] - ref.released[1]) * spec.fixed_point.scale
    assert np.allclose(noise, np.round(noise), atol=1e-6)  # whole units: the noise is integer
    planned = float(np.sqrt(3 * float(plan.sigma_node_sq)))
    print(f"noise: per-coordinate std {np.std(noise):.0f} units, planned {planned:.0f}")
    assert 0.7 < float(np.std(noise)) / planned < 1.35
    assert not np.allclose(capture.params[1], secure_run["params"][1])
    # the step is the network's (the rule its verifiers re-derive): server_update of the
    # round's noised sum, every client at the public maximum of rows
    fp = spec.fixed_point
    total = np.round(strategy.released[1] * fp.scale).astype(np.int64)
    accepted = strategy.records[0].accepted
    config = spec.config(strategy.server_learning_rate)
    assert config.weighted and config.unit == "provider"
    assert fp == fixed_point_for(config, MAX_ROWS)
    expected = server_update(
        capture.params[0], total, accepted, config, fp, {n: MAX_ROWS for n in accepted}
    )
    np.testing.assert_allclose(capture.params[1], expected, rtol=0, atol=1e-12)


def test_every_rounds_model_is_stored_by_cid(tmp_path: Any) -> None:
    committee = _committee(4)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    log = ModelLog(LocalModelStore(tmp_path), b"flower-test", local=True)
    strategy = _strategy(committee, spec, observer=log, model=MODEL)
    run_loopback(strategy, [_app(i, _mod(spec, i)) for i in range(CLIENTS)], 2)
    assert len(log.cids) == 3 and len(set(log.cids)) == 3
    from tessera.learning.serialize import decode_model

    _, params, meta = decode_model(LocalModelStore(tmp_path).get(log.cids[-1]))
    np.testing.assert_array_equal(params, flatten(strategy.parameters))
    assert meta["round"] == 2 and meta["parent"] == log.cids[1]


def test_a_flower_simulation_trains_through_tessera() -> None:
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.simulation import run_simulation

    committee = _committee(6)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    strategy = _strategy(committee, spec)
    # one ClientApp for every simulated node: the name and the data from the node's config
    client_app = ClientApp(
        client_fn=lambda ctx: CancerClient(int(ctx.node_config["partition-id"])).to_client(),
        mods=[TesseraMod(spec, lambda ctx: f"client{ctx.node_config['partition-id']}")],
    )
    server_app = ServerApp(
        server_fn=lambda _ctx: ServerAppComponents(
            strategy=strategy, config=ServerConfig(num_rounds=3)
        )
    )
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=CLIENTS,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"address": "local", "num_cpus": 2, "include_dashboard": False},
        },
    )
    assert [r.accepted for r in strategy.records] == [
        tuple(f"client{i}" for i in range(CLIENTS))
    ] * 3
    assert all(
        res.parameters.tensor_type == SEALED_REPORT
        for r in (1, 2, 3)
        for res in strategy.received[r]
    )
    assert _accuracy(strategy.parameters) > 0.9


def test_a_message_api_flower_app_trains_through_tessera_in_simulation() -> None:
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    from tessera.learning.flower import TesseraMessageFedAvg

    committee = _committee(7)
    spec = SecureAggregation(committee.node_keys, clip=4.0, max_rows=MAX_ROWS)
    init = ArrayRecord([np.zeros(30), np.zeros(1)])
    strategy = TesseraMessageFedAvg(
        initial_arrays=init,
        committee=committee,
        spec=spec,
        min_train_nodes=CLIENTS,
        min_available_nodes=CLIENTS,
        training_id=b"flower-test",
    )
    # the app as Flower's Message API has it: @app.train() and strategy.start in main
    client_app = ClientApp(
        mods=[TesseraMod(spec, lambda ctx: f"client{ctx.node_config['partition-id']}")]
    )

    @client_app.train()
    def train(msg: Message, context: Any) -> Message:
        index = int(context.node_config["partition-id"])
        arrays = msg.content["arrays"].to_numpy_ndarrays()
        out, rows, _ = CancerClient(index).fit(arrays, {"round": 0})
        content = RecordDict(
            {"arrays": ArrayRecord(out), "metrics": MetricRecord({"num-examples": rows})}
        )
        return Message(content=content, reply_to=msg)

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Any, context: Any) -> None:
        strategy.start(grid=grid, initial_arrays=init, num_rounds=3)

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=CLIENTS,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"address": "local", "num_cpus": 2, "include_dashboard": False},
        },
    )
    records = strategy.tessera.records
    assert [r.accepted for r in records] == [tuple(f"client{i}" for i in range(CLIENTS))] * 3
    assert all(
        res.parameters.tensor_type == SEALED_REPORT
        for r in (1, 2, 3)
        for res in strategy.tessera.received[r]
    )
    assert _accuracy(strategy.tessera.parameters) > 0.9
