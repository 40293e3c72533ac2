"""Flower interop: Tessera's proven-clipping secure aggregation and noise in a Flower app.

Two pieces, for Flower's (``flwr``, the ``flower`` extra) ``ClientApp`` and its strategy
API (``flwr.server.strategy.Strategy``, the API of ``FedAvg`` and of a ``ServerApp``
built from a strategy):

* :class:`TesseraMod`, a client mod. The wrapped client trains as it always does; on
  the way out the mod takes its parameters, subtracts the global ones it was sent,
  clips the update, quantises it, shards it with its Prio3 norm proof
  (:mod:`tessera.learning.secure`) and seals each input share to its computing node
  (:func:`tessera.protocol.training.seal_report`). The reply carries that sealed report
  only: no parameters, no row count, no client metrics.
* :class:`TesseraFedAvg`, a strategy. It sends the round's training id, round and the
  nodes' seed commitments with the global parameters, takes the sealed reports, has
  the committee (:class:`Committee`) verify them jointly, exclude the failing ones and
  release their noised sum, and applies FedAvg's step. Each round's metrics say which
  reports were excluded and why; with an ε, rounds are charged to a
  :class:`~tessera.learning.privacy.TrainingBudget` and training stops, with a message,
  at the round that would exceed it.

Both sides must agree on :class:`SecureAggregation` (the nodes' keys, the clip, the bits,
the public maximum of rows): it is the training's public configuration, which a client
takes from its own configuration (in a deployment, the ledger's registry), never from
the server's messages — a server that sent its own keys could open the shares.

:class:`InProcessCommittee` runs the nodes' :class:`~tessera.learning.committee.NodeRound`
in the strategy's process (the steps of ``rounds._aggregate``); a networked committee
implements the same two calls. :func:`run_loopback` runs a Flower server and clients on
loopback over Flower's gRPC transport, in threads (tests, benchmarks, demos).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
from coincurve import PrivateKey
from flwr.app import Array as FlowerArray
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    NDArrays,
    Parameters,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat
from flwr.server import History, Server, ServerConfig, SimpleClientManager
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg as MessageFedAvg

from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.crypto.rng import Rng, SystemRng
from tessera.dp.distributed import NoisePlan
from tessera.dp.samplers import NoiseSampler
from tessera.errors import DecodeError, ProtocolError
from tessera.learning import secure
from tessera.learning.committee import NodeRound
from tessera.learning.config import TrainingConfig, fixed_point_for, payload_length
from tessera.learning.fixed_point import FixedPoint, clip_l2
from tessera.learning.models import Array, Model
from tessera.learning.privacy import TrainingBudget, round_noise
from tessera.learning.rounds import Observer, RoundRecord, server_update
from tessera.protocol.training import (
    SealedReport,
    positions,
    report_digest,
    seal_report,
)

log = logging.getLogger(__name__)

#: ``Parameters.tensor_type`` of a reply that carries a sealed report (one tensor).
SEALED_REPORT = "tessera/sealed-report/v1"
#: Keys of the fit configuration the strategy sends (Flower ``Config``).
KEY_TRAINING = "tessera.training"
KEY_ROUND = "tessera.round"
KEY_COMMITMENTS = "tessera.commitments"
#: The Message API's weight key (``flwr.serverapp.strategy.FedAvg``'s ``weighted_by_key``).
KEY_EXAMPLES = "num-examples"
_LEGACY_FIT = "fitins.parameters"  # how a strategy-API training message holds its model


@dataclass(frozen=True, slots=True)
class SecureAggregation:
    """A training's public configuration, shared by the strategy and every client.

    ``node_keys``: each computing node's registered 33-byte public key, by node index.
    ``clip``: the L2 bound of an update. ``max_rows``: the public maximum of a client's
    rows; when set, the aggregate is FedAvg's row-weighted mean (the weight
    ``a = rows / max_rows`` travels inside the proven vector, ``(a·clip(u), a·C)``, so no
    one learns a client's row count), otherwise every accepted update has weight one.
    """

    node_keys: Mapping[int, bytes]
    clip: float = 1.0
    bits: int = 16
    max_rows: int | None = None

    def __post_init__(self) -> None:
        if len(self.node_keys) < 2:
            raise ValueError("a committee needs at least two nodes")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be positive, got {self.clip!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("max_rows must be positive")
        self.config()  # the network's checks of the same parameters (bits)

    @property
    def weighted(self) -> bool:
        return self.max_rows is not None

    def config(self, server_learning_rate: float = 1.0) -> TrainingConfig:
        """The same aggregation as the network's :class:`TrainingConfig`: provider-level,
        weighted exactly when ``max_rows`` is set. The fixed point, the payload's length
        and the server step are derived from it by the network's own functions
        (``fixed_point_for``, ``payload_length``, ``server_update``), so a Flower training
        and a ``tessera train`` one quantise, prove and step by one rule."""
        return TrainingConfig(
            unit="provider",
            weighted=self.weighted,
            clip=self.clip,
            bits=self.bits,
            server_learning_rate=server_learning_rate,
        )

    @property
    def fixed_point(self) -> FixedPoint:
        # weighted: |(a·u, a·C)| <= √2·a·C <= √2·C; the provider unit ignores max_rows
        return fixed_point_for(self.config(), self.max_rows or 1)

    def length(self, num_params: int) -> int:
        """Entries of the proven vector for a model of ``num_params`` parameters."""
        return payload_length(self.config(), num_params)

    def vdaf(self, num_params: int) -> Prio3FixedPointBoundedL2VecSum:
        return _vdaf(self.length(num_params), self.fixed_point, len(self.node_keys))

    def payload(self, update: Array, rows: int) -> Array:
        """What the client proves: ``clip(u)``, or ``(a·clip(u), a·C)`` when weighted."""
        clipped, _ = clip_l2(update, self.clip)
        if self.max_rows is None:
            return clipped
        a = min(max(rows, 0), self.max_rows) / self.max_rows
        out: Array = np.concatenate([a * clipped, [a * self.clip]])
        return out


_VDAFS: dict[tuple[int, float, int, int], Prio3FixedPointBoundedL2VecSum] = {}
_VDAF_LOCK = threading.Lock()


def _vdaf(length: int, fixed_point: FixedPoint, nodes: int) -> Prio3FixedPointBoundedL2VecSum:
    key = (length, fixed_point.norm_bound, fixed_point.bits, nodes)
    with _VDAF_LOCK:
        if key not in _VDAFS:
            _VDAFS[key] = secure.update_vdaf(length, fixed_point, nodes)
        return _VDAFS[key]


def flatten(arrays: Sequence[Any]) -> Array:
    """Flower's list of arrays as one float64 vector (the order and shapes of the list)."""
    if not arrays:
        return np.zeros(0)
    out: Array = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    return out


def unflatten(vector: Array, like: Sequence[Any]) -> NDArrays:
    """The inverse of :func:`flatten`, with the shapes and dtypes of ``like``."""
    out: NDArrays = []
    at = 0
    for a in like:
        arr = np.asarray(a)
        out.append(vector[at : at + arr.size].reshape(arr.shape).astype(arr.dtype))
        at += arr.size
    if at != vector.size:
        raise ValueError("the vector does not have the parameters' size")
    return out


# --------------------------------------------------------------------------- client


class TesseraMod:
    """A Flower client mod: the reply to a training message becomes a sealed report.

    ``ClientApp(client_fn=..., mods=[TesseraMod(spec, "hospital-3")])``. ``provider`` is
    the name the report is bound to (sealed with each share), or a function of the
    message's :class:`flwr.app.Context` where one ``ClientApp`` serves several nodes (the
    simulation engine: ``lambda c: f"client{c.node_config['partition-id']}"``). ``rng``
    defaults to the system's — the only choice where copies of the mod run in several
    processes; tests pass a :class:`~tessera.crypto.rng.SeededRng`.
    """

    def __init__(
        self,
        spec: SecureAggregation,
        provider: str | Callable[[Context], str],
        rng: Rng | None = None,
    ) -> None:
        if not provider:
            raise ValueError("a provider needs a name")
        self.spec = spec
        self.provider = provider
        self.rng: Rng = rng if rng is not None else SystemRng()

    def __call__(
        self, msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        if msg.metadata.message_type.split(".")[0] != MessageType.TRAIN:
            return call_next(msg, ctxt)
        if _LEGACY_FIT not in msg.content:
            return self._message_api(msg, ctxt, call_next)
        fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        training, round_index = _round_of(fit_ins.config)
        start = flatten(parameters_to_ndarrays(fit_ins.parameters))
        out = call_next(msg, ctxt)
        if out.has_error():
            return out
        fit_res = compat.recorddict_to_fitres(out.content, keep_input=True)
        trained = flatten(parameters_to_ndarrays(fit_res.parameters))
        if trained.shape != start.shape:
            raise ValueError("the client returned parameters of another shape")
        name = self.provider(ctxt) if callable(self.provider) else self.provider
        sealed = self.seal(name, training, round_index, trained - start, fit_res.num_examples)
        fit_res.parameters = Parameters(tensors=[sealed.encode()], tensor_type=SEALED_REPORT)
        fit_res.num_examples = 0  # the weight is inside the proven vector
        fit_res.metrics = {}  # a client's own metrics would travel in the clear
        out.content = compat.fitres_to_recorddict(fit_res, keep_input=True)
        return out

    def _message_api(
        self, msg: Message, ctxt: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        """A training message of Flower's Message API (``@app.train()`` clients): one
        ``ArrayRecord`` and one ``ConfigRecord`` in, one ``ArrayRecord`` and a
        ``MetricRecord`` with ``num-examples`` out."""
        _, arrays = _single(msg.content.array_records, "ArrayRecord")
        _, config = _single(msg.content.config_records, "ConfigRecord")
        training, round_index = _round_of(dict(config))
        start = flatten(arrays.to_numpy_ndarrays())
        out = call_next(msg, ctxt)
        if out.has_error():
            return out
        key, returned = _single(out.content.array_records, "ArrayRecord")
        rows = 0
        for metrics in out.content.metric_records.values():
            value = metrics.get(KEY_EXAMPLES)
            if isinstance(value, int):
                rows = value
        trained = flatten(returned.to_numpy_ndarrays())
        if trained.shape != start.shape:
            raise ValueError("the client returned parameters of another shape")
        name = self.provider(ctxt) if callable(self.provider) else self.provider
        sealed = self.seal(name, training, round_index, trained - start, rows)
        report = FlowerArray(dtype="", shape=(), stype=SEALED_REPORT, data=sealed.encode())
        out.content = RecordDict(
            {key: ArrayRecord({"tessera": report}), "metrics": MetricRecord({KEY_EXAMPLES: 0})}
        )
        return out

    def report(self, training: bytes, round_index: int, update: Array, rows: int) -> secure.Report:
        """The update clipped (weighted by ``rows``), quantised, sharded and proven."""
        vdaf = self.spec.vdaf(update.size)
        rounding = np.random.default_rng(int.from_bytes(self.rng.randbytes(16), "big"))
        ints = self.spec.fixed_point.encode(self.spec.payload(update, rows), rounding)
        ctx = secure.round_ctx(training, round_index)
        nonce = self.rng.randbytes(vdaf.NONCE_SIZE)
        return secure.shard_update(vdaf, ctx, ints, nonce, self.rng.randbytes(vdaf.RAND_SIZE))

    def seal(
        self, provider: str, training: bytes, round_index: int, update: Array, rows: int
    ) -> SealedReport:
        """:meth:`report`, each input share sealed to the node at its position."""
        if not provider:
            raise ValueError("a provider needs a name")
        rep = self.report(training, round_index, update, rows)
        return seal_report(
            training,
            round_index,
            provider,
            rep.nonce,
            rep.public_share,
            rep.input_shares,
            self.spec.node_keys,
            self.rng,
        )


def _single(records: Mapping[str, Any], kind: str) -> tuple[str, Any]:
    if len(records) != 1:
        raise ValueError(f"expected one {kind} in the training message, got {len(records)}")
    ((key, record),) = records.items()
    return key, record


def _round_of(config: Mapping[str, Any]) -> tuple[bytes, int]:
    training, round_index = config.get(KEY_TRAINING), config.get(KEY_ROUND)
    if not isinstance(training, bytes) or not isinstance(round_index, int):
        raise ValueError(
            "the fit configuration names no Tessera training and round "
            "(is the server's strategy TesseraFedAvg?)"
        )
    return training, round_index


# ------------------------------------------------------------------------ committee


@dataclass(frozen=True, slots=True)
class CommitteeRound:
    """What a committee returns for a round: each node's noised aggregate share (in node
    order), the accepted providers and the excluded ones with the reason."""

    shares: tuple[bytes, ...]
    accepted: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]


class Committee(Protocol):
    """The computing nodes as the strategy drives them; in process or over a network.

    :meth:`open_round` runs before the reports are made (each node commits to its
    verify-key seed; the commitments go to the clients with the round's parameters);
    :meth:`close_round` fixes the reports, has the nodes reveal their seeds, verify their
    shares, decide each report jointly and release their noised sums once.
    """

    @property
    def node_keys(self) -> Mapping[int, bytes]: ...

    def open_round(
        self,
        training: bytes,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        plan: NoisePlan | None,
    ) -> Mapping[int, bytes]: ...

    def close_round(
        self, round_index: int, reports: Mapping[str, SealedReport]
    ) -> CommitteeRound: ...


class InProcessCommittee:
    """``nodes`` computing nodes in this process, each a :class:`NodeRound` per round;
    their replay memory (report nonces seen) persists across rounds."""

    def __init__(
        self, nodes: int = 3, *, sampler: NoiseSampler | None = None, rng: Rng | None = None
    ) -> None:
        if not 2 <= nodes < 256:
            raise ValueError("a committee has 2 to 255 nodes")
        self.rng: Rng = rng if rng is not None else SystemRng()
        self.sampler = sampler
        self._secrets = {i: self.rng.scalar().to_bytes(32, "big") for i in range(1, nodes + 1)}
        self._keys = {
            i: PrivateKey(s).public_key.format(compressed=True) for i, s in self._secrets.items()
        }
        self._seen: dict[int, set[bytes]] = {i: set() for i in self._secrets}
        self._rounds: dict[int, list[NodeRound]] = {}

    @property
    def node_keys(self) -> Mapping[int, bytes]:
        return dict(self._keys)

    def open_round(
        self,
        training: bytes,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        plan: NoisePlan | None,
    ) -> Mapping[int, bytes]:
        if plan is not None and self.sampler is None:
            raise ValueError("differential privacy needs the committee's noise sampler")
        nodes = [
            NodeRound(
                i,
                self._secrets[i],
                vdaf,
                training,
                round_index,
                plan,
                self.sampler,
                self.rng,
                seen=self._seen[i],
            )
            for i in sorted(self._secrets)
        ]
        self._rounds[round_index] = nodes
        return {node.index: node.commitment() for node in nodes}

    def close_round(self, round_index: int, reports: Mapping[str, SealedReport]) -> CommitteeRound:
        nodes = self._rounds.pop(round_index, None)
        if nodes is None:
            raise ProtocolError(f"round {round_index} was not opened")
        commitments = {node.index: node.commitment() for node in nodes}
        digests = {name: report_digest(rep) for name, rep in reports.items()}
        for node in nodes:
            node.lock(digests)
        seeds = {node.index: node.reveal() for node in nodes}
        for node in nodes:
            node.agree(commitments, seeds)
        for name in sorted(reports):
            rep = reports[name]
            by_node = {node.index: node.prepare(name, rep) for node in nodes}
            order = positions(rep.nonce, list(by_node))  # decoded: the nonce has its size
            for node in nodes:
                node.decide(name, [by_node[i] for i in order])
        accepted = nodes[0].accepted()
        if any(node.accepted() != accepted for node in nodes):
            raise ProtocolError("the nodes accepted different reports")  # pragma: no cover
        excluded: dict[str, str] = {}
        for node in nodes:
            for name, reason in node.exclusions().items():
                excluded.setdefault(name, reason)
        shares = tuple(node.release() for node in nodes)
        return CommitteeRound(
            shares, tuple(accepted), tuple((n, excluded[n]) for n in sorted(excluded))
        )


# ------------------------------------------------------------------------- strategy


@dataclass
class _Training:
    shapes: NDArrays
    params: Array
    records: list[RoundRecord] = field(default_factory=list)


class TesseraFedAvg(Strategy):
    """FedAvg over Tessera's committee: the server sees sealed reports and a noised sum.

    ``initial_parameters``: the global model (Flower's list of arrays). ``epsilon`` (with
    ``delta`` and ``num_rounds``, the rounds the budget is spread over) turns on the
    nodes' distributed discrete Gaussian noise (``committee``'s sampler), calibrated per
    round for provider-level DP-FedAvg (sensitivity: one client's whole update, the
    proven bound) against ``threshold - 1`` colluding nodes. ``evaluate_fn`` is Flower's
    centralised evaluation; federated evaluation runs only with ``fraction_evaluate > 0``
    (clients then report their loss in the clear). ``observer`` (e.g.
    :class:`tessera.node.model_store.ModelLog`) is told of every round's model, described
    by ``model`` (a built-in model over the flattened parameters).
    """

    def __init__(
        self,
        *,
        initial_parameters: NDArrays,
        committee: Committee,
        spec: SecureAggregation,
        num_rounds: int | None = None,
        epsilon: float | None = None,
        delta: float = 1e-6,
        threshold: int = 2,
        fraction_fit: float = 1.0,
        min_fit_clients: int = 2,
        min_available_clients: int = 2,
        fraction_evaluate: float = 0.0,
        min_evaluate_clients: int = 2,
        server_learning_rate: float = 1.0,
        evaluate_fn: (
            Callable[[int, NDArrays, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None]
            | None
        ) = None,
        on_fit_config_fn: Callable[[int], dict[str, Scalar]] | None = None,
        training_id: bytes | None = None,
        observer: Observer | None = None,
        model: Model | None = None,
    ) -> None:
        super().__init__()
        if dict(committee.node_keys) != dict(spec.node_keys):
            raise ValueError("the clients' node keys are not the committee's")
        if epsilon is not None and num_rounds is None:
            raise ValueError("a privacy budget needs the number of rounds it is spread over")
        if (observer is None) != (model is None):
            raise ValueError("an observer needs the model that describes the parameters")
        if epsilon is not None and getattr(committee, "sampler", True) is None:
            raise ValueError("differential privacy needs the committee's noise sampler")
        spec.config(server_learning_rate)  # refused here, not at the first round's step
        self.committee = committee
        self.spec = spec
        self.threshold = threshold
        self.fraction_fit, self.min_fit_clients = fraction_fit, min_fit_clients
        self.min_available_clients = min_available_clients
        self.fraction_evaluate, self.min_evaluate_clients = fraction_evaluate, min_evaluate_clients
        self.server_learning_rate = server_learning_rate
        self.evaluate_fn, self.on_fit_config_fn = evaluate_fn, on_fit_config_fn
        self.training_id = training_id if training_id is not None else os.urandom(16)
        self.budget = (
            TrainingBudget.for_epsilon(epsilon, delta, num_rounds)
            if epsilon is not None and num_rounds is not None
            else None
        )
        self.delta = delta
        self.observer, self.model = observer, model
        arrays = [np.asarray(a) for a in initial_parameters]
        self._state = _Training(arrays, flatten(arrays))
        self.vdaf = spec.vdaf(self._state.params.size)
        self.plan: NoisePlan | None = None
        if self.budget is not None:
            fp = spec.fixed_point
            self.plan = round_noise(
                fp,
                fp.norm_bound,
                len(spec.node_keys),
                threshold,
                self.budget.rho_per_round,
                self.vdaf.LENGTH,
                delta=delta,
            )
        self._begun = False
        #: Why training stopped early (the budget), or ``None``.
        self.stopped: str | None = None
        #: Every reply the strategy received, per round: what arrived at the server.
        self.received: dict[int, list[FitRes]] = {}
        #: Each round's released sum (real units, noise included; the weight last when
        #: weighted): what the committee released to the analyst, public.
        self.released: dict[int, Array] = {}
        #: Seconds each round's aggregation took (verification, noise, the step).
        self.aggregate_s: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"TesseraFedAvg(nodes={len(self.spec.node_keys)}, clip={self.spec.clip})"

    @property
    def records(self) -> tuple[RoundRecord, ...]:
        return tuple(self._state.records)

    @property
    def parameters(self) -> NDArrays:
        """The current global model."""
        return unflatten(self._state.params, self._state.shapes)

    # Flower's Strategy ------------------------------------------------------

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        self.begin()
        return ndarrays_to_parameters(self.parameters)

    def begin(self) -> None:
        """The training starts: the observer is told of the initial model (once)."""
        if self.observer is not None and not self._begun:
            assert self.model is not None
            self.observer.start(self.model, self._state.params)
        self._begun = True

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        tessera = self.open_round(server_round)
        if tessera is None:
            return []
        config: dict[str, Scalar] = {}
        if self.on_fit_config_fn is not None:
            config.update(self.on_fit_config_fn(server_round))
        config.update(tessera)
        available = client_manager.num_available()
        size = max(int(available * self.fraction_fit), self.min_fit_clients)
        clients = client_manager.sample(
            num_clients=size, min_num_clients=max(self.min_available_clients, size)
        )
        ins = FitIns(ndarrays_to_parameters(self.parameters), config)
        return [(client, ins) for client in clients]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        replies = [(client.cid, res) for client, res in results]
        metrics = self.close_round(server_round, replies, len(failures))
        return ndarrays_to_parameters(self.parameters), metrics

    # The round, whichever Flower API drives it -------------------------------

    def open_round(self, server_round: int) -> dict[str, Scalar] | None:
        """Open ``server_round`` at the committee: the entries of the fit configuration
        the mod needs, or ``None`` when the round would exceed the budget (then
        :attr:`stopped` says so, and no further round runs)."""
        if self.stopped is not None:
            return None
        if self.budget is not None and len(self._state.records) + 1 > self.budget.rounds:
            b = self.budget
            self.stopped = (
                f"round {server_round} would exceed the privacy budget: ε = "
                f"{b.total_epsilon:.3g} at δ = {b.delta:g} is spent over {b.rounds} rounds; "
                f"trained {len(self._state.records)} rounds"
            )
            log.warning("TesseraFedAvg: %s", self.stopped)
            return None
        commitments = self.committee.open_round(
            self.training_id, server_round, self.vdaf, self.plan
        )
        return {
            KEY_TRAINING: self.training_id,
            KEY_ROUND: server_round,
            KEY_COMMITMENTS: b"".join(
                i.to_bytes(2, "big") + c for i, c in sorted(commitments.items())
            ),
        }

    def close_round(
        self, server_round: int, replies: Sequence[tuple[str | int, FitRes]], failures: int
    ) -> dict[str, Scalar]:
        """The round's replies (Flower's client or node id, what it sent) through the
        committee, then FedAvg's step; the round's metrics."""
        start = time.perf_counter()
        self.received[server_round] = [res for _, res in replies]
        reports, refused = self._reports(server_round, replies)
        outcome = self.committee.close_round(server_round, reports)
        excluded = sorted([*refused, *outcome.excluded])
        fp = self.spec.fixed_point
        if outcome.accepted:
            total = secure.unshard(self.vdaf, outcome.shares, len(outcome.accepted))
            self.released[server_round] = fp.decode(total)
            # the network's step (the one its verifiers re-derive), every client at the
            # public maximum of rows
            rows = {n: self.spec.max_rows or 1 for n in outcome.accepted}
            self._state.params = server_update(
                self._state.params,
                total,
                outcome.accepted,
                self.spec.config(self.server_learning_rate),
                fp,
                rows,
            )
        rho = self.budget.rho_per_round if self.budget is not None else 0.0
        done = len(self._state.records) + 1
        eps = self.budget.epsilon_after(done) if self.budget is not None else 0.0
        record = RoundRecord(
            index=len(self._state.records),
            providers=tuple(sorted([*reports, *(n for n, _ in refused)])),
            accepted=outcome.accepted,
            excluded=tuple(excluded),
            clipped=0,  # the clients' clipping is theirs; the proof bounds it
            rho=rho,
            epsilon_spent=eps,
        )
        self._state.records.append(record)
        if self.observer is not None:
            assert self.model is not None
            self.observer.round(self.model, self._state.params, record)
        self.aggregate_s[server_round] = time.perf_counter() - start
        for name, reason in excluded:
            log.warning("TesseraFedAvg: round %d excluded %s: %s", server_round, name, reason)
        return {
            "tessera.accepted": len(outcome.accepted),
            "tessera.excluded": len(excluded),
            "tessera.exclusions": json.dumps([list(e) for e in excluded]),
            "tessera.failures": failures,
            "tessera.rho": rho,
            "tessera.epsilon": eps,
        }

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if self.fraction_evaluate <= 0:
            return []
        available = client_manager.num_available()
        size = max(int(available * self.fraction_evaluate), self.min_evaluate_clients)
        clients = client_manager.sample(num_clients=size, min_num_clients=size)
        ins = EvaluateIns(parameters, {})
        return [(client, ins) for client in clients]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        total = sum(res.num_examples for _, res in results)
        if not results or total == 0:
            return None, {}
        loss = sum(res.loss * res.num_examples for _, res in results) / total
        return loss, {}

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, parameters_to_ndarrays(parameters), {})

    # -----------------------------------------------------------------------

    def _reports(
        self, server_round: int, results: Sequence[tuple[str | int, FitRes]]
    ) -> tuple[dict[str, SealedReport], list[tuple[str, str]]]:
        """The sealed reports among the replies, and the replies refused before the
        committee (named by the Flower client id when they name no provider)."""
        reports: dict[str, SealedReport] = {}
        refused: list[tuple[str, str]] = []
        for client, res in results:
            params = res.parameters
            if params.tensor_type != SEALED_REPORT or len(params.tensors) != 1:
                refused.append((f"flower:{client}", "not a sealed report (refused unread)"))
                continue
            try:
                rep = SealedReport.decode(params.tensors[0])
            except DecodeError as exc:
                refused.append((f"flower:{client}", f"malformed: {exc}"))
                continue
            if rep.training_id != self.training_id or rep.round_index != server_round:
                refused.append((rep.provider, "the report names another training or round"))
                continue
            if rep.provider in reports:
                refused.append((rep.provider, "a second report from the same provider"))
                continue
            reports[rep.provider] = rep
        return reports, refused


# ------------------------------------------------------------- the Message API


class TesseraMessageFedAvg(MessageFedAvg):
    """The same round for Flower's Message API: ``flwr.serverapp.strategy.FedAvg``, run
    by ``strategy.start(grid=grid, initial_arrays=..., num_rounds=...)`` in a
    ``ServerApp``'s main function, its clients ``@app.train()`` functions with the
    :class:`TesseraMod` mod.

    It drives a :class:`TesseraFedAvg` (:attr:`tessera`: records, exclusions, the budget,
    what arrived) over the model ``initial_arrays``; :meth:`start` must be given the same
    arrays. A ``MetricRecord`` holds numbers only: the round's metrics are the counts,
    ρ and ε, the exclusions with their reasons are in ``tessera.records`` (and logged).
    """

    def __init__(
        self,
        *,
        initial_arrays: ArrayRecord,
        committee: Committee,
        spec: SecureAggregation,
        num_rounds: int | None = None,
        epsilon: float | None = None,
        delta: float = 1e-6,
        threshold: int = 2,
        fraction_train: float = 1.0,
        min_train_nodes: int = 2,
        min_available_nodes: int = 2,
        fraction_evaluate: float = 0.0,
        min_evaluate_nodes: int = 2,
        server_learning_rate: float = 1.0,
        training_id: bytes | None = None,
        observer: Observer | None = None,
        model: Model | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
        )
        self._keys = list(initial_arrays.keys())
        self.tessera = TesseraFedAvg(
            initial_parameters=initial_arrays.to_numpy_ndarrays(),
            committee=committee,
            spec=spec,
            num_rounds=num_rounds,
            epsilon=epsilon,
            delta=delta,
            threshold=threshold,
            min_fit_clients=min_train_nodes,
            min_available_clients=min_available_nodes,
            server_learning_rate=server_learning_rate,
            training_id=training_id,
            observer=observer,
            model=model,
        )

    @property
    def arrays(self) -> ArrayRecord:
        """The current global model, with the initial arrays' names."""
        params = self.tessera.parameters
        return ArrayRecord({k: FlowerArray(v) for k, v in zip(self._keys, params, strict=True)})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        self.tessera.begin()
        tessera = self.tessera.open_round(server_round)
        if tessera is None:
            return []
        record = ConfigRecord(dict(config))
        for key, value in tessera.items():
            record[key] = value
        return list(super().configure_train(server_round, self.arrays, record, grid))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        received: list[tuple[str | int, FitRes]] = []
        failures = 0
        for reply in replies:
            if reply.has_error():
                failures += 1
                continue
            received.append((reply.metadata.src_node_id, _as_fitres(reply)))
        metrics = self.tessera.close_round(server_round, received, failures)
        numbers: dict[str, int | float | list[int] | list[float]] = {
            k: v
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return self.arrays, MetricRecord(numbers)


def _as_fitres(reply: Message) -> FitRes:
    """A Message-API reply as the strategy API's ``FitRes``: its sealed report, or no
    tensors at all (a reply of any other kind is refused unread)."""
    parameters = Parameters(tensors=[], tensor_type="not a sealed report")
    records = list(reply.content.array_records.values())
    if len(records) == 1 and len(records[0]) == 1:
        (array,) = records[0].values()
        if array.stype == SEALED_REPORT:
            parameters = Parameters(tensors=[array.data], tensor_type=SEALED_REPORT)
    return FitRes(Status(Code.OK, ""), parameters, 0, {})


# ------------------------------------------------------------------------ loopback


def run_loopback(
    strategy: Strategy,
    apps: Sequence[ClientApp],
    num_rounds: int,
    *,
    port: int = 0,
    timeout: float = 120.0,
) -> History:
    """A Flower server with ``strategy`` and one Flower client per ``apps`` entry, over
    Flower's gRPC transport (``grpc-bidi``) on 127.0.0.1, the clients in threads.

    ``port=0`` picks a free port. The strategy must wait for every client
    (``min_available_clients = len(apps)``) if every round is to include all of them.
    """
    from flwr.compat.client.app import start_client_internal
    from flwr.server.server import run_fl
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    if port == 0:
        port = _free_port()
    address = f"127.0.0.1:{port}"
    server = Server(client_manager=SimpleClientManager(), strategy=strategy)
    grpc_server = start_grpc_server(client_manager=server.client_manager(), server_address=address)
    errors: list[BaseException] = []
    one_at_a_time = threading.Lock()

    def client(app: ClientApp) -> None:
        serialised = cast(ClientApp, _OneAtATime(app, one_at_a_time))
        try:
            start_client_internal(
                server_address=address,
                node_config={},
                load_client_app_fn=lambda _a, _b, _c: serialised,
                insecure=True,
                transport="grpc-bidi",
                max_wait_time=timeout,
            )
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(app,), daemon=True) for app in apps]
    for t in threads:
        t.start()
    try:
        history = run_fl(server, ServerConfig(num_rounds=num_rounds, round_timeout=timeout))
    finally:
        grpc_server.stop(grace=1)
    for t in threads:
        t.join(timeout=timeout)
    if errors:
        raise RuntimeError(f"a Flower client failed: {errors[0]!r}") from errors[0]
    return history


class _OneAtATime:
    """A client app that handles one message at a time across every client of the loopback.

    The clients share one interpreter. CPython 3.11 before 3.11.8 keeps the AST
    constructor's recursion depth in state shared by threads (python/cpython#106905), so
    two clients decoding numpy arrays at once (``np.load`` parses each header with
    ``ast.literal_eval``) can fail with ``SystemError: AST constructor recursion depth
    mismatch``. The clients contend for the GIL anyway, so taking turns costs little.
    """

    def __init__(self, app: ClientApp, lock: threading.Lock) -> None:
        self._app = app
        self._lock = lock

    def __call__(self, message: Message, context: Context) -> Message:
        with self._lock:
            return self._app(message=message, context=context)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


__all__ = [
    "KEY_COMMITMENTS",
    "KEY_ROUND",
    "KEY_TRAINING",
    "SEALED_REPORT",
    "Committee",
    "CommitteeRound",
    "InProcessCommittee",
    "SecureAggregation",
    "TesseraFedAvg",
    "TesseraMessageFedAvg",
    "TesseraMod",
    "flatten",
    "run_loopback",
    "unflatten",
]
