"""Rounds of federated training with every party in one process (pure: no I/O, no clock).

:func:`train` runs FedAvg without protection (the baseline), or secure rounds in which
each provider's clipped, quantised update is sharded to the ``n`` computing nodes with
its norm proof, the nodes verify it jointly and exclude failing updates (each exclusion
is recorded in the round's :class:`RoundRecord`), add their noise shares and the
analyst combines them (:mod:`tessera.learning.secure`). The same steps are what the
network's roles will run; this module fixes their order and arithmetic and is what
the accuracy tests and benchmarks exercise.

Privacy units (:mod:`tessera.learning.privacy`): ``"provider"`` (DP-FedAvg: local
epochs, the update clipped to ``clip``) or ``"row"`` (DP-FedSGD: each provider sends the
sum of its rows' gradients, each clipped to ``clip``; the proven bound is
``max_rows · clip``). Every round charges its ρ to each participating dataset in a
:class:`~tessera.dp.accountant.PrivacyAccountant`; a round that would overspend is
not run, and training stops with :class:`~tessera.errors.BudgetExceeded`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from coincurve import PrivateKey

from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.crypto.rng import Rng, SeededRng
from tessera.dp.accountant import PrivacyAccountant
from tessera.dp.distributed import NoisePlan
from tessera.dp.samplers import NoiseSampler
from tessera.errors import BudgetExceeded, ProtocolError
from tessera.learning import secure
from tessera.learning.committee import NodeRound
from tessera.learning.fedavg import dp_fedavg_mean, fedavg_mean, server_step
from tessera.learning.fixed_point import FixedPoint, Ints, clip_l2
from tessera.learning.local import LocalConfig, clipped_gradient_sum, train_locally
from tessera.learning.models import Array, Model
from tessera.learning.privacy import TrainingBudget, round_noise
from tessera.protocol.training import SealedReport, positions, report_digest, seal_report


@dataclass(frozen=True, slots=True)
class Dataset:
    """One provider's table: features, labels, and the public maximum of its rows."""

    name: str
    x: Array
    y: Any
    max_rows: int

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"{self.name}: max_rows must be positive")
        if self.x.ndim != 2 or len(self.y) != self.x.shape[0]:
            raise ValueError(f"{self.name}: need a 2-d feature table and one label per row")
        if self.x.shape[0] > self.max_rows:
            raise ValueError(f"{self.name}: {self.x.shape[0]} rows exceed max_rows")


class Provider:
    """A provider's side of a round: its local work on its own table, then its report.

    Adversaries (``tessera.testing.learning``) wrap one and change what it sends.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    @property
    def name(self) -> str:
        return self.dataset.name

    def local_update(
        self, model: Model, params: Array, config: TrainingConfig, rng: np.random.Generator
    ) -> Array:
        """The update this provider would send, before clipping."""
        d = self.dataset
        if config.unit == "row":
            out: Array = -clipped_gradient_sum(model, params, d.x, d.y, config.clip)
            return out
        return train_locally(model, params, d.x, d.y, config.local, rng)

    def payload(self, update: Array, config: TrainingConfig) -> Array:
        """What is aggregated: the update, or for weighted FedAvg ``(a·clip(u), a·C)`` with
        the weight ``a = rows / max_rows`` (the public maximum), clipped with the update."""
        if config.unit == "row" or not config.weighted:
            return update
        d = self.dataset
        a = min(d.x.shape[0], d.max_rows) / d.max_rows
        clipped, _ = clip_l2(update, config.clip)
        out: Array = np.concatenate([a * clipped, [a * config.clip]])
        return out

    def report(
        self,
        round_index: int,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        ctx: bytes,
        fixed_point: FixedPoint,
        update: Array,
        rng: np.random.Generator,
    ) -> secure.Report:
        """The update clipped, quantised, sharded and proven."""
        ints = fixed_point.encode(update, rng)
        return secure.shard_update(
            vdaf, ctx, ints, rng.bytes(vdaf.NONCE_SIZE), rng.bytes(vdaf.RAND_SIZE)
        )


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """What the analyst asks for."""

    rounds: int = 10
    providers_per_round: int | None = None
    local: LocalConfig = field(default_factory=LocalConfig)
    secure: bool = True
    unit: str = "provider"
    weighted: bool = True
    clip: float = 1.0
    bits: int = 16
    epsilon: float | None = None
    delta: float = 1e-6
    server_learning_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("rounds must be positive")
        if self.unit not in ("provider", "row"):
            raise ValueError(f"unit must be 'provider' or 'row', got {self.unit!r}")
        if self.epsilon is not None and not self.secure:
            raise ValueError("differential privacy needs the secure aggregation")
        if self.unit == "row" and not self.secure:
            raise ValueError("per-row clipping is a mode of the secure aggregation")

    def budget(self) -> TrainingBudget | None:
        if self.epsilon is None:
            return None
        return TrainingBudget.for_epsilon(self.epsilon, self.delta, self.rounds)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    """What one round did: who took part, who was excluded and why, and the cost."""

    index: int
    providers: tuple[str, ...]
    accepted: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    clipped: int
    rho: float
    epsilon_spent: float
    loss: float | None = None
    score: float | None = None


class Observer(Protocol):
    """Told of the initial model and of every round's model (for a store, a registry, a
    progress display); what it does is its own (I/O lives in ``tessera.node``)."""

    def start(self, model: Model, params: Array) -> None: ...

    def round(self, model: Model, params: Array, record: RoundRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class TrainingResult:
    params: Array
    rounds: tuple[RoundRecord, ...]


def _fixed_point(config: TrainingConfig, datasets: Sequence[Dataset]) -> FixedPoint:
    if config.unit == "row":
        return FixedPoint(config.clip * max(d.max_rows for d in datasets), config.bits)
    if config.weighted:  # (a·u, a·C) with |a·u| <= a·C <= C
        return FixedPoint(config.clip * math.sqrt(2.0), config.bits)
    return FixedPoint(config.clip, config.bits)


def _sensitivity(config: TrainingConfig, fixed_point: FixedPoint) -> float:
    """L2 sensitivity of a round's sum to the privacy unit (see the module docstring)."""
    if config.unit == "row":
        return config.clip
    return fixed_point.norm_bound


def train(
    model: Model,
    parties: Sequence[Dataset | Provider],
    config: TrainingConfig,
    rng: np.random.Generator,
    *,
    nodes: int = 3,
    threshold: int = 2,
    sampler: NoiseSampler | None = None,
    accountant: PrivacyAccountant | None = None,
    validation: tuple[Array, Any] | None = None,
    init: Array | None = None,
    observer: Observer | None = None,
) -> TrainingResult:
    """Train ``model`` over the providers' tables (see the module docstring)."""
    if not parties:
        raise ValueError("no dataset")
    providers = [p if isinstance(p, Provider) else Provider(p) for p in parties]
    datasets = [p.dataset for p in providers]
    budget = config.budget()
    if budget is not None and sampler is None:
        raise ValueError("differential privacy needs a noise sampler")
    params = model.init(rng) if init is None else init.copy()
    if observer is not None:
        observer.start(model, params)
    fixed_point = _fixed_point(config, datasets)
    length = model.num_params + (1 if config.unit == "provider" and config.weighted else 0)
    vdaf = secure.update_vdaf(length, fixed_point, nodes) if config.secure else None
    plan = None
    if budget is not None:
        plan = round_noise(
            fixed_point,
            _sensitivity(config, fixed_point),
            nodes,
            threshold,
            budget.rho_per_round,
            length,
            delta=config.delta,
        )
    training_id = rng.bytes(16)
    committee = (
        _Committee.make(vdaf, training_id, plan, sampler, SeededRng(rng.bytes(32)))
        if vdaf is not None
        else None
    )
    per_round = config.providers_per_round or len(datasets)
    if not 1 <= per_round <= len(datasets):
        raise ValueError(
            f"providers_per_round must be in [1, {len(datasets)}], got {config.providers_per_round}"
        )
    if len({d.name for d in datasets}) != len(datasets):
        raise ValueError("two providers with the same name")
    records: list[RoundRecord] = []
    for r in range(config.rounds):
        chosen = sorted(rng.choice(len(datasets), size=per_round, replace=False).tolist())
        names = tuple(datasets[i].name for i in chosen)
        rho = 0.0
        accepted: list[str]
        excluded: list[tuple[str, str]]
        if budget is not None:
            rho = budget.rho_per_round
            if accountant is not None:
                costs = {name: rho for name in names}
                if not accountant.can_charge(costs):
                    refused = [n for n in names if accountant.remaining(n) < rho]
                    raise BudgetExceeded(
                        f"round {r + 1} of {config.rounds} would exceed the privacy budget "
                        f"of {', '.join(refused)}: trained {r} rounds"
                    )
                accountant.charge(costs)
        if vdaf is None:
            updates = [providers[i].local_update(model, params, config, rng) for i in chosen]
            weights = [datasets[i].x.shape[0] for i in chosen]
            params = server_step(params, fedavg_mean(updates, weights), config.server_learning_rate)
            accepted, excluded, clipped = list(names), [], 0
        else:
            ctx = secure.round_ctx(training_id, r)
            reports, clipped = [], 0
            for i in chosen:
                u = providers[i].local_update(model, params, config, rng)
                bound = config.clip if config.unit == "provider" else fixed_point.norm_bound
                if float(np.linalg.norm(u)) > bound:
                    clipped += 1
                payload = providers[i].payload(u, config)
                reports.append(providers[i].report(r, vdaf, ctx, fixed_point, payload, rng))
            assert committee is not None
            total, accepted, excluded = _aggregate(committee, r, reports, names)
            if accepted:
                real = fixed_point.decode(total)
                if config.unit == "row":
                    rows = sum(datasets[chosen[names.index(n)]].max_rows for n in accepted)
                    step = real / rows
                elif config.weighted:
                    # the noised total weight, kept away from zero (noise can make it small)
                    # one row of the largest table is the least weight a round can hold
                    floor = 1.0 / max(d.max_rows for d in datasets)
                    weight = max(real[-1] / config.clip, floor)
                    step = real[:-1] / weight
                else:
                    step = dp_fedavg_mean(real, len(accepted))
                params = server_step(params, step, config.server_learning_rate)
        loss = score = None
        if validation is not None:
            loss = model.loss(params, validation[0], validation[1])
            score = model.score(params, validation[0], validation[1])
        records.append(
            RoundRecord(
                index=r,
                providers=names,
                accepted=tuple(accepted),
                excluded=tuple(excluded),
                clipped=clipped,
                rho=rho,
                epsilon_spent=budget.epsilon_after(r + 1) if budget is not None else 0.0,
                loss=loss,
                score=score,
            )
        )
        if observer is not None:
            observer.round(model, params, records[-1])
    return TrainingResult(params, tuple(records))


def _aggregate(
    committee: _Committee,
    round_index: int,
    reports: Sequence[secure.Report],
    names: Sequence[str],
) -> tuple[Ints, list[str], list[tuple[str, str]]]:
    """The round through :class:`~tessera.learning.committee.NodeRound`: commitments,
    sealed reports fixed, seeds revealed, each node prepares its shares, every node
    decides on every report, each releases its noised aggregate share."""
    vdaf = committee.vdaf
    nodes = [
        NodeRound(
            i,
            committee.secrets[i],
            vdaf,
            committee.training_id,
            round_index,
            committee.plan,
            committee.sampler,
            committee.rng,
            seen=committee.seen[i],
        )
        for i in sorted(committee.secrets)
    ]
    commitments = {node.index: node.commitment() for node in nodes}
    excluded: dict[str, str] = {}
    sealed: dict[str, SealedReport] = {}
    for name, report in zip(names, reports, strict=True):
        try:
            sealed[name] = seal_report(
                committee.training_id,
                round_index,
                name,
                report.nonce,
                report.public_share,
                report.input_shares,
                committee.public_keys,
                committee.rng,
            )
        except ValueError as exc:
            excluded[name] = f"malformed: {exc}"
    digests = {name: report_digest(rep) for name, rep in sealed.items()}
    for node in nodes:
        node.lock(digests)
    seeds = {node.index: node.reveal() for node in nodes}
    for node in nodes:
        node.agree(commitments, seeds)
    for name, rep in sealed.items():
        by_node = {node.index: node.prepare(name, rep) for node in nodes}
        order = positions(rep.nonce, list(by_node))
        in_positions = [by_node[i] for i in order]
        for node in nodes:
            node.decide(name, in_positions)
    accepted = nodes[0].accepted()
    if any(node.accepted() != accepted for node in nodes):
        raise ProtocolError("the nodes accepted different reports")  # pragma: no cover
    for node in nodes:
        for name, reason in node.exclusions().items():
            excluded.setdefault(name, reason)
    shares = [node.release() for node in nodes]
    total = secure.unshard(vdaf, shares, len(accepted))
    order_names = [n for n in names if n in excluded]
    return total, [n for n in names if n in accepted], [(n, excluded[n]) for n in order_names]


@dataclass
class _Committee:
    """What the in-process committee holds across rounds: keys, noise, replay memory."""

    vdaf: Prio3FixedPointBoundedL2VecSum
    training_id: bytes
    secrets: dict[int, bytes]
    public_keys: dict[int, bytes]
    plan: NoisePlan | None
    sampler: NoiseSampler | None
    rng: Rng
    seen: dict[int, set[bytes]]

    @classmethod
    def make(
        cls,
        vdaf: Prio3FixedPointBoundedL2VecSum,
        training_id: bytes,
        plan: NoisePlan | None,
        sampler: NoiseSampler | None,
        rng: Rng,
    ) -> _Committee:
        secrets = {i: rng.scalar().to_bytes(32, "big") for i in range(1, vdaf.SHARES + 1)}
        public = {i: PrivateKey(s).public_key.format(compressed=True) for i, s in secrets.items()}
        seen: dict[int, set[bytes]] = {i: set() for i in secrets}
        return cls(vdaf, training_id, secrets, public, plan, sampler, rng, seen)
