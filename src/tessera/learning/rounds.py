"""Rounds of federated training (pure: no I/O, no clock): the loop, one round's driver,
the server's step, and every party in one process.

:func:`run_training` is the loop of rounds, whoever runs them (a :class:`RoundRunner`):
:func:`train` with every party in this process, or ``tessera.node.training`` with the
network's provider and node roles over a transport, each round a query on the ledger.
A secure round: each provider's clipped, quantised update is sharded to the ``n``
computing nodes with its norm proof; :func:`open_round` and :func:`close_round` drive
the nodes (:class:`RoundNode`) through the joint verification that excludes failing
updates (each exclusion is recorded in the round's :class:`RoundRecord`), the nodes add
their noise shares, and :func:`server_update` turns the released sum into the next
model. Without ``secure`` (the baseline), plain FedAvg in process.

Privacy units (:mod:`tessera.learning.privacy`): ``"provider"`` (DP-FedAvg: local
epochs, the update clipped to ``clip``) or ``"row"`` (DP-FedSGD: each provider sends the
sum of its rows' gradients, each clipped to ``clip``; the proven bound is
``max_rows · clip``). Every round charges its ρ to each participating dataset in a
:class:`~tessera.dp.accountant.PrivacyAccountant`; a round that would overspend is
not run, and training stops with :class:`~tessera.errors.BudgetExceeded`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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
from tessera.learning.config import (
    TrainingConfig,
    fixed_point_for,
    sensitivity_of,
    vdaf_for,
)
from tessera.learning.contribution import (
    ContributionSpec,
    RoundContext,
    ScoringPlan,
    Subset,
    privacy_charges,
    score_record,
)
from tessera.learning.fedavg import dp_fedavg_mean, fedavg_mean, server_step
from tessera.learning.fixed_point import FixedPoint, Ints, clip_l2
from tessera.learning.local import clipped_gradient_sum, train_locally
from tessera.learning.models import Array, Model
from tessera.learning.privacy import round_noise
from tessera.protocol.contribution import SEED_SIZE, ScoreRecord
from tessera.protocol.training import SealedReport, positions, report_digest, seal_report

_T = TypeVar("_T")


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
class RoundRecord:
    """What one round did: who took part, who was excluded and why, and the cost."""

    index: int
    providers: tuple[str, ...]
    accepted: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    #: updates over the clip (clipped before sharding); None over the network, where each
    #: provider keeps it to itself (whether one update was clipped says something of its rows)
    clipped: int | None
    rho: float
    epsilon_spent: float
    loss: float | None = None
    score: float | None = None
    query_id: str | None = None  # the round's query on the market (hex), if it ran on one
    #: the providers' contribution scores, if the round was scored (``contribution=``)
    contribution: ScoreRecord | None = None
    #: providers that committed their report and withheld it (name, reason): left out of
    #: the round (they are in ``excluded`` too), their budget charged all the same
    withheld: tuple[tuple[str, str], ...] = ()


class Observer(Protocol):
    """Told of the initial model and of every round's model (for a store, a registry, a
    progress display); what it does is its own (I/O lives in ``tessera.node``)."""

    def start(self, model: Model, params: Array) -> None: ...

    def round(self, model: Model, params: Array, record: RoundRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class TrainingResult:
    params: Array
    rounds: tuple[RoundRecord, ...]

    @property
    def withheld(self) -> dict[str, tuple[int, ...]]:
        """Each provider that committed a report and withheld it, with the rounds it did
        so in (left out of them, charged for them)."""
        out: dict[str, list[int]] = {}
        for record in self.rounds:
            for name, _ in record.withheld:
                out.setdefault(name, []).append(record.index)
        return {name: tuple(rounds) for name, rounds in sorted(out.items())}


class RoundNode(Protocol):
    """A computing node's side of one secure round, as the relaying analyst drives it:
    :class:`~tessera.learning.committee.NodeRound` in process, a proxy to a node role's
    ``train/*`` endpoints over a transport (``tessera.node.training``)."""

    index: int

    def commitment(self) -> bytes: ...

    def lock(self, digests: Mapping[str, bytes]) -> bytes: ...

    def agree(self, commitments: Mapping[int, bytes], seeds: Mapping[int, bytes]) -> None: ...

    def prepare_many(self, reports: Mapping[str, SealedReport]) -> dict[str, bytes | None]: ...

    def decide_many(
        self, verifier_shares: Mapping[str, Sequence[bytes | None]]
    ) -> tuple[list[str], dict[str, str]]: ...

    def release(self) -> bytes: ...


class SubsetNode(RoundNode, Protocol):
    """A node that also releases noised sums of subsets of the round's accepted reports
    (contribution scoring): :class:`~tessera.learning.committee.NodeRound`."""

    def release_subset(self, providers: Sequence[str]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Aggregated:
    """What the committee released for a round: the sum and who is in it."""

    shares: tuple[bytes, ...]
    accepted: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]


def _in_turn(step: Callable[[RoundNode], _T], nodes: Sequence[RoundNode]) -> list[_T]:
    return [step(node) for node in nodes]


#: How a step reaches every node: in turn (the default), or concurrently (a thread pool's
#: ``map`` over a transport); the results in the nodes' order either way.
EachNode = Callable[[Callable[[RoundNode], _T], Sequence[RoundNode]], list[_T]]


def open_round(nodes: Sequence[RoundNode], each: EachNode[bytes] = _in_turn) -> dict[int, bytes]:
    """Step 1: every node's commitment to its verify-key seed, before any report exists."""
    return dict(zip([n.index for n in nodes], each(lambda n: n.commitment(), nodes), strict=True))


def close_round(
    nodes: Sequence[RoundNode],
    commitments: Mapping[int, bytes],
    sealed: Mapping[str, SealedReport],
    names: Sequence[str],
    excluded: Mapping[str, str] | None = None,
    each: EachNode[Any] = _in_turn,
) -> Aggregated:
    """Steps 2–6 over the sealed reports of ``names`` (those not in ``sealed`` are excluded
    with the reason in ``excluded``): the reports fixed, seeds revealed, the verify key
    agreed, each node's verifier shares, every node's decision on every report, and each
    node's noised aggregate share. The one driver of a round, in process and over the
    network; a node that fails to answer fails the round (Prio3 needs every share)."""
    out: dict[str, str] = dict(excluded or {})
    digests = {name: report_digest(rep) for name, rep in sealed.items()}
    indices = [node.index for node in nodes]
    seeds = dict(zip(indices, each(lambda n: n.lock(digests), nodes), strict=True))
    each(lambda n: n.agree(commitments, seeds), nodes)
    prepared = dict(zip(indices, each(lambda n: n.prepare_many(sealed), nodes), strict=True))
    shares: dict[str, list[bytes | None]] = {}
    for name, rep in sealed.items():
        order = positions(rep.nonce, indices)
        shares[name] = [prepared[i].get(name) for i in order]
    decisions: list[tuple[list[str], dict[str, str]]] = each(lambda n: n.decide_many(shares), nodes)
    accepted = decisions[0][0]
    if any(d[0] != accepted for d in decisions):
        raise ProtocolError("the nodes accepted different reports")
    for _, reasons in decisions:
        for name, reason in reasons.items():
            out.setdefault(name, reason)
    released = tuple(each(lambda n: n.release(), nodes))
    return Aggregated(
        released,
        tuple(n for n in names if n in accepted),
        tuple((n, out[n]) for n in names if n in out and n not in accepted),
    )


def release_subsets(
    nodes: Sequence[SubsetNode], subsets: Sequence[Subset]
) -> dict[Subset, tuple[bytes, ...]]:
    """After :func:`close_round`: every node's noised aggregate share of each subset of the
    accepted reports (the round's own aggregation, restricted; each sum with fresh noise,
    a release of its own to charge to the providers in it)."""
    return {s: tuple(node.release_subset(s) for node in nodes) for s in subsets}


def server_update(
    params: Array,
    total: Ints,
    accepted: Sequence[str],
    config: TrainingConfig,
    fixed_point: FixedPoint,
    max_rows: Mapping[str, int],
) -> Array:
    """The global model after a round from the decoded noised sum of the accepted payloads
    (``max_rows``: every provider's public maximum of rows)."""
    if not accepted:
        return params
    real = fixed_point.decode(total)
    if config.unit == "row":
        step = real / sum(max_rows[n] for n in accepted)
    elif config.weighted:
        # the noised total weight, kept away from zero (noise can make it small):
        # one row of the largest table is the least weight a round can hold
        floor = 1.0 / max(max_rows.values())
        weight = max(real[-1] / config.clip, floor)
        step = real[:-1] / weight
    else:
        step = dp_fedavg_mean(real, len(accepted))
    return server_step(params, step, config.server_learning_rate)


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """A round as its runner did it: the new model, who took part, the cost, its query."""

    params: Array
    accepted: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    clipped: int | None  # updates over the clip; None where the providers keep it to themselves
    query_id: str | None = None
    contribution: ScoreRecord | None = None
    #: committed reports no node got, with the reason (also in ``excluded``)
    withheld: tuple[tuple[str, str], ...] = ()


class RoundRunner(Protocol):
    """Who runs the rounds: every party in this process (:func:`train`), or the network's
    roles (``tessera.node.training.NetworkRounds``). ``max_rows``: the providers, by name,
    with their public maximum of rows."""

    @property
    def max_rows(self) -> Mapping[str, int]: ...

    def run(
        self, round_index: int, chosen: Sequence[str], params: Array, rho: float
    ) -> RoundOutcome: ...


def run_training(
    model: Model,
    runner: RoundRunner,
    config: TrainingConfig,
    rng: np.random.Generator,
    *,
    accountant: PrivacyAccountant | None = None,
    validation: tuple[Array, Any] | None = None,
    init: Array | None = None,
    observer: Observer | None = None,
) -> TrainingResult:
    """The rounds of a training: providers drawn, the round run, the budget spent (in
    ``accountant`` here, or by the runner on the ledger), the model scored and shown to
    ``observer``. A round that would overspend stops training with
    :class:`~tessera.errors.BudgetExceeded`, naming the datasets and the rounds done."""
    names = sorted(runner.max_rows)
    budget = config.budget()
    params = model.init(rng) if init is None else init.copy()
    if observer is not None:
        observer.start(model, params)
    per_round = config.providers_per_round or len(names)
    if not 1 <= per_round <= len(names):
        raise ValueError(
            f"providers_per_round must be in [1, {len(names)}], got {config.providers_per_round}"
        )
    records: list[RoundRecord] = []
    for r in range(config.rounds):
        chosen = tuple(names[i] for i in sorted(rng.choice(len(names), per_round, False).tolist()))
        rho = budget.rho_per_round if budget is not None else 0.0
        if accountant is not None and rho:
            costs = {name: rho for name in chosen}
            if not accountant.can_charge(costs):
                refused = [n for n in chosen if accountant.remaining(n) < rho]
                raise BudgetExceeded(
                    f"round {r + 1} of {config.rounds} would exceed the privacy budget "
                    f"of {', '.join(refused)}: trained {r} rounds"
                )
            accountant.charge(costs)
        try:
            outcome = runner.run(r, chosen, params, rho)
        except BudgetExceeded as exc:
            raise BudgetExceeded(
                f"round {r + 1} of {config.rounds} would exceed the privacy budget: {exc}; "
                f"trained {r} rounds"
            ) from exc
        params = outcome.params
        loss = score = None
        if validation is not None:
            loss = model.loss(params, validation[0], validation[1])
            score = model.score(params, validation[0], validation[1])
        records.append(
            RoundRecord(
                index=r,
                providers=chosen,
                accepted=outcome.accepted,
                excluded=outcome.excluded,
                clipped=outcome.clipped,
                rho=rho,
                epsilon_spent=budget.epsilon_after(r + 1) if budget is not None else 0.0,
                loss=loss,
                score=score,
                query_id=outcome.query_id,
                contribution=outcome.contribution,
                withheld=outcome.withheld,
            )
        )
        if observer is not None:
            observer.round(model, params, records[-1])
    return TrainingResult(params, tuple(records))


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
    contribution: ContributionSpec | None = None,
) -> TrainingResult:
    """Train ``model`` over the providers' tables, every party in this process (see the
    module docstring). With ``contribution``, the rounds it names also release the
    subset sums of :mod:`tessera.learning.contribution` (each charged to the providers in
    it) and score the providers on ``validation`` (``RoundRecord.contribution``)."""
    if not parties:
        raise ValueError("no dataset")
    providers = [p if isinstance(p, Provider) else Provider(p) for p in parties]
    if len({p.name for p in providers}) != len(providers):
        raise ValueError("two providers with the same name")
    if config.budget() is not None and sampler is None:
        raise ValueError("differential privacy needs a noise sampler")
    if contribution is not None and (validation is None or not config.secure):
        raise ValueError("contribution scores need secure rounds and a validation set")
    runner = _InProcessRounds(model, providers, config, rng, nodes, threshold, sampler)
    if contribution is not None:
        assert validation is not None
        runner.scoring = (contribution, validation, accountant)
    return run_training(
        model,
        runner,
        config,
        rng,
        accountant=accountant,
        validation=validation,
        init=init,
        observer=observer,
    )


class _InProcessRounds:
    """Every provider and node of :func:`train` in this process, on one random stream."""

    def __init__(
        self,
        model: Model,
        providers: Sequence[Provider],
        config: TrainingConfig,
        rng: np.random.Generator,
        nodes: int,
        threshold: int,
        sampler: NoiseSampler | None,
    ) -> None:
        self.model, self.config, self.rng = model, config, rng
        self.providers = {p.name: p for p in providers}
        self.max_rows = {p.name: p.dataset.max_rows for p in providers}
        self.fixed_point = fixed_point_for(config, max(self.max_rows.values()))
        self.committee: _Committee | None = None
        self.scoring: (
            tuple[ContributionSpec, tuple[Array, Any], PrivacyAccountant | None] | None
        ) = None
        budget = config.budget()
        if config.secure:
            vdaf = vdaf_for(config, model.num_params, self.fixed_point, nodes)
            plan = None
            if budget is not None:
                plan = round_noise(
                    self.fixed_point,
                    sensitivity_of(config, self.fixed_point),
                    nodes,
                    threshold,
                    budget.rho_per_round,
                    vdaf.LENGTH,
                    delta=config.delta,
                )
            training_id = rng.bytes(16)
            self.committee = _Committee.make(
                vdaf, training_id, plan, sampler, SeededRng(rng.bytes(32))
            )

    def run(
        self, round_index: int, chosen: Sequence[str], params: Array, rho: float
    ) -> RoundOutcome:
        config, rng = self.config, self.rng
        parties = [self.providers[name] for name in chosen]
        if self.committee is None:
            updates = [p.local_update(self.model, params, config, rng) for p in parties]
            weights = [p.dataset.x.shape[0] for p in parties]
            new = server_step(params, fedavg_mean(updates, weights), config.server_learning_rate)
            return RoundOutcome(new, tuple(chosen), (), 0)
        committee = self.committee
        vdaf = committee.vdaf
        plan = None
        if self.scoring is not None and self.scoring[0].scores_round(round_index):
            # fixed before the reports: the nodes release only its subsets
            plan = self.scoring[0].plan(rng.bytes(SEED_SIZE), chosen)
        nodes = committee.nodes(round_index, plan)
        commitments = open_round(nodes)
        ctx = secure.round_ctx(committee.training_id, round_index)
        sealed: dict[str, SealedReport] = {}
        excluded: dict[str, str] = {}
        clipped = 0
        for p in parties:
            u = p.local_update(self.model, params, config, rng)
            bound = config.clip if config.unit == "provider" else self.fixed_point.norm_bound
            if float(np.linalg.norm(u)) > bound:
                clipped += 1
            payload = p.payload(u, config)
            report = p.report(round_index, vdaf, ctx, self.fixed_point, payload, rng)
            try:
                sealed[p.name] = seal_report(
                    committee.training_id,
                    round_index,
                    p.name,
                    report.nonce,
                    report.public_share,
                    report.input_shares,
                    committee.public_keys,
                    committee.rng,
                )
            except ValueError as exc:
                excluded[p.name] = f"malformed: {exc}"
        agg = close_round(nodes, commitments, sealed, chosen, excluded)
        total = secure.unshard(vdaf, agg.shares, len(agg.accepted))
        new = server_update(params, total, agg.accepted, config, self.fixed_point, self.max_rows)
        record = None
        if plan is not None:
            record = self._score(round_index, nodes, plan, agg, params, rho)
        return RoundOutcome(new, agg.accepted, agg.excluded, clipped, contribution=record)

    def _score(
        self,
        round_index: int,
        nodes: Sequence[NodeRound],
        plan: ScoringPlan,
        agg: Aggregated,
        params: Array,
        rho: float,
    ) -> ScoreRecord:
        """The round's subset releases, charged to the providers in them, and the scores."""
        assert self.scoring is not None and self.committee is not None
        _, validation, accountant = self.scoring
        subsets = plan.subsets(agg.accepted)
        costs = privacy_charges(subsets, rho)
        if accountant is not None and rho:
            if not accountant.can_charge(costs):
                refused = sorted(n for n, c in costs.items() if accountant.remaining(n) < c)
                raise BudgetExceeded(
                    f"round {round_index + 1}: the contribution scores' subset releases "
                    f"would exceed the privacy budget of {', '.join(refused)}"
                )
            accountant.charge(costs)
        releases = release_subsets(nodes, subsets)
        ctx = RoundContext(
            self.model,
            params,
            self.config,
            self.fixed_point,
            self.committee.vdaf,
            self.max_rows,
            validation,
        )
        return score_record(
            ctx,
            plan.method,
            plan.seed,
            plan.permutations,
            plan.providers,
            agg.accepted,
            agg.shares,
            releases,
        )


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

    def nodes(self, round_index: int, scoring: ScoringPlan | None = None) -> list[NodeRound]:
        return [
            NodeRound(
                i,
                self.secrets[i],
                self.vdaf,
                self.training_id,
                round_index,
                self.plan,
                self.sampler,
                self.rng,
                seen=self.seen[i],
                scoring=scoring,
            )
            for i in sorted(self.secrets)
        ]
