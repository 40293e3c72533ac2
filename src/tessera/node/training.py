"""Federated training over the network: each round a training query on the ledger, run by
the provider and node roles through a transport (in process or over HTTP, the same code).

:class:`NetworkRounds` is the :class:`~tessera.learning.rounds.RoundRunner` the analyst
gives :func:`~tessera.learning.rounds.run_training` (the one loop of rounds, shared with
the in-process :func:`~tessera.learning.rounds.train`). One round:

1. the analyst builds the round's :class:`~tessera.protocol.training.TrainingTicket`
   (the model's digest, the providers drawn, the privacy cost) and submits it on the
   ledger as a ``training`` query: the price is escrowed and ρ charged to every
   dataset's budget there; a refusal (a spent budget) stops training;
2. every node commits to its verify-key seed (``train/commit``);
3. each provider trains on its table, and returns its sealed, proven report
   (``train/report``) after committing its digest on-chain; one that committed and then
   holds its answer back ``ANSWER_GRACE`` seconds, or answers other bytes, the nodes
   fetch from it (``train/fetch``, :mod:`tessera.node.answers`, as for a query), and one
   no node gets is left out as *withheld*, named in the round's record and its result;
4. :func:`~tessera.learning.rounds.close_round` drives the nodes through the joint
   verification (:class:`RemoteNode`: ``train/lock`` … ``train/release``), each node
   checking the reports against the chain;
5. the analyst adds the noised shares, takes the server step
   (:func:`~tessera.learning.rounds.server_update`), and commits the new model's
   digest as the round's result.

A round is :meth:`NetworkRounds.open` (steps 1–2), the reports (3), then
:meth:`NetworkRounds.close` (the reports against the chain, the fetch, 4–5 and the
verifiers' vote), so a committee that gets its reports some other way (a Flower strategy's
clients, each a provider committing on-chain) drives the same round and not a copy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tessera.dp.accountant import rho_to_eps_delta
from tessera.errors import PolicyViolation, ProtocolError, QueryError
from tessera.learning import secure
from tessera.learning.config import TrainingConfig, fixed_point_for, labels_for, scale_features
from tessera.learning.contribution import (
    ContributionSpec,
    RoundContext,
    ScoringPlan,
    score_record,
    validation_digest,
)
from tessera.learning.models import Array, Model
from tessera.learning.rounds import (
    Observer,
    RoundOutcome,
    TrainingResult,
    close_round,
    open_round,
    release_subsets,
    run_training,
    server_update,
)
from tessera.learning.serialize import encode_model, model_spec
from tessera.ledger import rho_to_micro
from tessera.ledger.client import MICRO
from tessera.node.answers import (
    Excluded,
    await_answers,
    fetch_through_nodes,
    gather,
    nobody_left,
)
from tessera.protocol.contribution import ScoreRecord
from tessera.protocol.training import SealedReport, report_digest
from tessera.protocol.training_round import OPERATION, RoundTranscript, TrainingTicket

if TYPE_CHECKING:
    from tessera.node.analyst import NetworkAnalyst, Peer


class RemoteNode:
    """A computing node's side of one round, reached through the analyst's transport."""

    def __init__(self, transport: Any, peer: Peer, ticket: Mapping[str, Any]) -> None:
        assert peer.index is not None
        self.index = peer.index
        self._transport, self._peer, self._ticket = transport, peer, ticket
        # what the node answered, for the round's record (what a verifier re-checks)
        self.verifier_shares: dict[str, tuple[bytes | None, ...]] = {}
        self.decisions: tuple[tuple[str, ...], dict[str, str]] = ((), {})
        self.withheld: tuple[str, ...] = ()  # the committed reports it left out, locked
        self.released = b""

    @property
    def address(self) -> str:
        return self._peer.address

    def _call(self, path: str, **body: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self._transport.call(
            self._peer.address, f"train/{path}", {"ticket": self._ticket, **body}
        )
        return answer

    def commitment(self) -> bytes:
        return bytes.fromhex(self._call("commit")["commitment"])

    def lock(self, digests: Mapping[str, bytes]) -> bytes:
        answer = self._call("lock", digests={n: d.hex() for n, d in digests.items()})
        return bytes.fromhex(answer["seed"])

    def agree(self, commitments: Mapping[int, bytes], seeds: Mapping[int, bytes]) -> None:
        self._call(
            "agree",
            commitments={str(i): c.hex() for i, c in commitments.items()},
            seeds={str(i): s.hex() for i, s in seeds.items()},
        )

    def prepare_many(self, reports: Mapping[str, SealedReport]) -> dict[str, bytes | None]:
        answer = self._call("prepare", reports={n: r.encode().hex() for n, r in reports.items()})
        shares = answer["shares"]
        return {n: None if shares.get(n) is None else bytes.fromhex(shares[n]) for n in reports}

    def decide_many(
        self, verifier_shares: Mapping[str, Sequence[bytes | None]]
    ) -> tuple[list[str], dict[str, str]]:
        body = {
            n: [None if v is None else v.hex() for v in vs] for n, vs in verifier_shares.items()
        }
        answer = self._call("decide", shares=body)
        accepted = [str(a) for a in answer["accepted"]]
        excluded = {str(k): str(v) for k, v in answer["excluded"].items()}
        self.verifier_shares = {n: tuple(vs) for n, vs in verifier_shares.items()}
        self.decisions = (tuple(accepted), excluded)
        self.withheld = tuple(sorted(str(n) for n in answer.get("withheld") or {}))
        return accepted, excluded

    def release(self) -> bytes:
        self.released = bytes.fromhex(self._call("release")["share"])
        return self.released

    def release_subset(self, providers: Sequence[str]) -> bytes:
        return bytes.fromhex(self._call("release_subset", providers=list(providers))["share"])


@dataclass(frozen=True)
class TrainingQuote:
    """What a training will cost before it starts: credits, privacy, and who can pay it."""

    rounds: int
    providers: tuple[str, ...]
    price_per_round: int  # credits escrowed per round (all providers asked)
    price: int  # the whole training, at most
    epsilon: float | None  # the whole training's ε at ``delta`` (None: no noise)
    delta: float
    rho_per_round: float
    budget_left: Mapping[str, float]  # each dataset's ρ left on the ledger
    #: the contribution scores' subset releases: ρ charged per dataset on top of the
    #: rounds' own, over the whole training (0 without scoring or without noise)
    scoring_rho: float = 0.0

    @property
    def rho_total(self) -> float:
        """ρ the training charges each dataset asked in every round, scoring included."""
        return self.rho_per_round * self.rounds + self.scoring_rho

    @property
    def epsilon_total(self) -> float | None:
        """ε at ``delta`` of :attr:`rho_total`: the whole training's, scoring included
        (``None``: no noise)."""
        if self.epsilon is None:
            return None
        return rho_to_eps_delta(self.rho_total, self.delta)[0]

    def rounds_affordable(self) -> int:
        """Rounds every dataset can pay for if it is asked in each."""
        if not self.rho_per_round:
            return self.rounds
        least = min(self.budget_left.values(), default=0.0)
        return min(self.rounds, math.floor(least / self.rho_per_round * (1 + 1e-9)))


@dataclass(frozen=True)
class OpenedRound:
    """A round on the ledger whose nodes have committed to their seeds: what
    :meth:`NetworkRounds.close` needs (``body``: the ticket's JSON, as every role gets it;
    ``model``: the encoded model whose digest the ticket names)."""

    ticket: TrainingTicket
    body: dict[str, Any]
    nodes: list[RemoteNode]
    commitments: Mapping[int, bytes]
    params: Array
    model: bytes
    chosen: tuple[str, ...]


class NetworkRounds:
    """The rounds of one training, run by the network's roles (see the module docstring)."""

    def __init__(
        self,
        analyst: NetworkAnalyst,
        model: Model,
        table: str,
        features: Sequence[str],
        label: str,
        config: TrainingConfig,
        training_id: bytes,
        contribution: ContributionSpec | None = None,
    ) -> None:
        if not config.secure:
            raise QueryError("training on the network is always a secure aggregation")
        self.analyst, self.model, self.table = analyst, model, table
        self.features, self.label, self.config = tuple(features), label, config
        self.training_id = training_id
        self.holders = analyst._holders(table)
        self.bounds = analyst._agreed_bounds(self.holders, table)
        missing = [c for c in (*self.features, label) if c not in self.bounds]
        if missing:
            raise QueryError(
                f"{table} has no public bounds for column(s) {', '.join(missing)}: a training "
                "scales every feature and the label by them"
            )
        self._max_rows = {name: int(h["max_rows"]) for name, h in self.holders.items()}
        self.fixed_point = fixed_point_for(config, max(self._max_rows.values()))
        self.contribution = contribution
        #: the analyst's validation set, scaled: what the scores are computed on
        self.validation: tuple[Array, Any] | None = None

    @property
    def max_rows(self) -> Mapping[str, int]:
        return self._max_rows

    def quote(self) -> TrainingQuote:
        """Price and privacy of the whole training, and each dataset's budget left."""
        ledger = self.analyst.ledger
        ids = {name: int(h["dataset_id"]) for name, h in self.holders.items()}
        budget = self.config.budget()
        rho = 0.0 if budget is None else budget.rho_per_round
        extra = sum(
            rho * self.scoring_plan(r, sorted(ids)).most_releases()
            for r in range(self.config.rounds)
            if self.contribution is not None and self.contribution.scores_round(r)
        )
        per_round = ledger.quote(ids.values(), "training")
        left = {
            f"{name}/{self.table}": ledger.dataset(d).budget_remaining / MICRO
            for name, d in ids.items()
        }
        return TrainingQuote(
            rounds=self.config.rounds,
            providers=tuple(sorted(ids)),
            price_per_round=per_round,
            price=per_round * self.config.rounds,
            epsilon=None if budget is None else budget.total_epsilon,
            delta=self.config.delta,
            rho_per_round=rho,
            budget_left=left,
            scoring_rho=extra,
        )

    def scoring_plan(self, round_index: int, chosen: Sequence[str]) -> ScoringPlan:
        """Round ``round_index``'s scoring plan: its seed from the training id and the round
        (public, and fixed with the ticket before any report), the validation set's digest."""
        assert self.contribution is not None
        seed = hashlib.sha256(
            b"tessera/scoring-seed/v1" + self.training_id + round_index.to_bytes(4, "big")
        ).digest()
        digest = b"" if self.validation is None else validation_digest(self.validation)
        return self.contribution.plan(seed, chosen, digest)

    def ticket(self, round_index: int, chosen: Sequence[str], params: Array) -> TrainingTicket:
        a = self.analyst
        scoring = None
        if self.contribution is not None and self.contribution.scores_round(round_index):
            scoring = self.scoring_plan(round_index, sorted(chosen))
        return TrainingTicket(
            training_id=self.training_id,
            round_index=round_index,
            table=self.table,
            features=self.features,
            label=self.label,
            bounds=self.bounds,
            model=model_spec(self.model),
            model_digest=hashlib.sha256(encode_model(self.model, params)).digest(),
            config=self.config,
            limits=tuple(sorted(self._max_rows.items())),
            n=a.n,
            t=a.t,
            committee=a.committee,
            providers=tuple(sorted((n, str(self.holders[n]["address"])) for n in chosen)),
            nonce=a._rng.randbytes(32),
            analyst=a.ledger.account,
            scoring=scoring,
        )

    def run(
        self, round_index: int, chosen: Sequence[str], params: Array, rho: float
    ) -> RoundOutcome:
        """One round: :meth:`open`, the chosen providers' ``train/report``, :meth:`close`."""
        a = self.analyst
        opened = self.open(round_index, chosen, params)
        a.on_progress(f"round {round_index + 1}: training at {len(chosen)} providers")
        providers = {p.name: p for p in a._of("provider")}
        futures = {
            name: a._pool.submit(
                a.transport.call,
                providers[name].address,
                "train/report",
                {"ticket": opened.body, "model": opened.model.hex()},
            )
            for name in chosen
        }
        return self.close(opened, futures)

    def open(self, round_index: int, chosen: Sequence[str], params: Array) -> OpenedRound:
        """The round's ticket submitted on the ledger as a training query (escrow, each
        dataset's budget charged; a refusal is the ledger's ``PolicyViolation``) and every
        node's commitment to its verify-key seed (``train/commit``). Whoever produces the
        reports then (the provider roles, or another client that commits its report's digest
        on-chain for this query), :meth:`close` finishes the round."""
        a = self.analyst
        ticket = self.ticket(round_index, chosen, params)
        datasets = {f"{n}/{self.table}": int(self.holders[n]["dataset_id"]) for n in chosen}
        # the round's release and, with a scoring plan, its subset releases
        cost = rho_to_micro(ticket.rho) if ticket.rho else 0
        a.on_progress(f"round {round_index + 1}: submitting the round to the ledger")
        a.submit_to_ledger(
            ticket.ticket_hash, ticket.query_id, datasets, cost, {OPERATION}, "training"
        )
        body = ticket.to_json()
        nodes = [
            RemoteNode(a.transport, p, body)
            for p in sorted(a._of("node"), key=lambda p: p.index or 0)
        ]
        commitments = open_round(nodes, self._each)
        model = encode_model(self.model, params)
        return OpenedRound(ticket, body, nodes, commitments, params, model, tuple(chosen))

    def _each(self, step: Callable[[Any], Any], targets: Sequence[Any]) -> list[Any]:
        return list(self.analyst._pool.map(step, targets))

    def close(
        self, opened: OpenedRound, futures: Mapping[str, Future[dict[str, Any]]]
    ) -> RoundOutcome:
        """The round from the providers' answers (``{"report": hex}`` by provider, as
        futures): each taken only if it is the report its provider committed on-chain for
        the round's query; one committed but lacking the nodes fetch (``train/fetch``), one
        no node gets is left out as withheld; the nodes' joint verification and release
        (:func:`~tessera.learning.rounds.close_round`), the server step, the result's
        digest on the ledger, and the drawn verifiers' vote on the round's transcript."""
        a = self.analyst
        ticket, nodes, params = opened.ticket, opened.nodes, opened.params
        round_index, qid = ticket.round_index, ticket.query_id
        chosen = opened.chosen
        futures, committed = await_answers(
            futures,
            lambda: a.ledger.audit_trail(qid, verdicts=False).of("contribution"),
            ticket.account_of,
            a.ANSWER_GRACE,
            "report",
        )

        def report(name: str, answer: Mapping[str, Any]) -> SealedReport:
            try:
                sealed = SealedReport.decode(bytes.fromhex(str(answer.get("report"))))
            except ValueError as exc:
                raise Excluded(f"malformed report: {exc}") from exc
            if (sealed.provider, sealed.training_id, sealed.round_index) != (
                name,
                self.training_id,
                round_index,
            ):
                raise Excluded("sent a report for another provider, training or round")
            if committed.get(str(ticket.account_of(name))) != report_digest(sealed):
                raise Excluded("sent a report other than the one it committed on-chain")
            return sealed

        sealed, excluded = gather(futures, report)
        # committed, but the analyst did not get it: the nodes fetch it from the provider
        lacking = sorted(n for n in excluded if ticket.account_of(n) in committed)
        withheld: dict[str, str] = {}
        if lacking:
            a.on_progress(f"round {round_index + 1}: the nodes fetch {len(lacking)} reports")
            got, withheld = fetch_through_nodes(
                a._pool,
                a.transport,
                [node.address for node in nodes],
                "train/fetch",
                {"ticket": opened.body},
                lacking,
                "report",
                report,
            )
            for name in got:
                del excluded[name]
            sealed.update(got)
            excluded.update(withheld)
        if not sealed:
            raise nobody_left(f"round {round_index + 1}: no provider could report", excluded)
        a.on_progress(f"round {round_index + 1}: the nodes verify {len(sealed)} reports")
        agg = close_round(nodes, opened.commitments, sealed, chosen, excluded, self._each)
        locked = {node.withheld for node in nodes}
        if locked != {tuple(sorted(withheld))}:
            raise ProtocolError(
                f"round {round_index + 1}: the nodes left out {sorted(locked)} as withheld, "
                f"the analyst found {sorted(withheld)} withheld"
            )
        total = secure.unshard(ticket.vdaf, agg.shares, len(agg.accepted))
        new = server_update(
            params, total, agg.accepted, self.config, self.fixed_point, self._max_rows
        )
        result = encode_model(self.model, new)
        a.ledger.post_result(qid, hashlib.sha256(result).digest())
        scores = None
        if ticket.scoring is not None:
            a.on_progress(f"round {round_index + 1}: the nodes release the scores' subset sums")
            scores = self.score(ticket, nodes, agg.shares, agg.accepted, params)
        record = RoundTranscript(
            model=opened.model,
            reports={n: r.encode() for n, r in sealed.items()},
            verifier_shares=nodes[0].verifier_shares,
            decisions={node.index: node.decisions for node in nodes},
            released={node.index: node.released for node in nodes},
            result=result,
            withheld=withheld,
            scores=scores,
            validation=None if scores is None else self.validation,
        )
        a.on_progress(f"round {round_index + 1}: the verifiers check the round")
        self.verify(ticket, record)
        return RoundOutcome(
            new,
            agg.accepted,
            agg.excluded,
            None,
            "0x" + qid.hex(),
            contribution=scores,
            withheld=tuple(sorted(withheld.items())),
        )

    def score(
        self,
        ticket: TrainingTicket,
        nodes: Sequence[RemoteNode],
        shares: Sequence[bytes],
        accepted: Sequence[str],
        params: Array,
    ) -> ScoreRecord:
        """The plan's subset sums from every node (``train/release_subset``), unsharded and
        scored as in process (:func:`~tessera.learning.rounds.release_subsets`,
        :func:`~tessera.learning.contribution.score_record`). The analyst posts nothing:
        the verifiers re-check the record and confirm it on-chain."""
        plan = ticket.scoring
        assert plan is not None and self.validation is not None
        releases = release_subsets(nodes, plan.subsets(accepted))
        ctx = RoundContext(
            self.model,
            params,
            self.config,
            self.fixed_point,
            ticket.vdaf,
            self._max_rows,
            self.validation,
        )
        return score_record(
            ctx,
            plan.method,
            plan.seed,
            plan.permutations,
            plan.providers,
            accepted,
            shares,
            releases,
        )

    def verify(self, ticket: TrainingTicket, record: RoundTranscript) -> list[dict[str, Any]]:
        """Ask the verifiers drawn for the round to re-check it and vote (a majority settles
        it: the providers and nodes are paid, unused budget comes back); their answers."""
        body = {"ticket": ticket.to_json(), "record": record.to_json()}
        return self.analyst.ask_verifiers(ticket.query_id, "verify_training", body)


def train_over(
    analyst: NetworkAnalyst,
    table: str,
    model: Model,
    features: Sequence[str],
    label: str,
    config: TrainingConfig,
    *,
    validation: tuple[Any, Any] | None = None,
    init: Array | None = None,
    observer: Observer | None = None,
    seed: int | None = None,
    training_id: bytes | None = None,
    contribution: ContributionSpec | None = None,
) -> TrainingResult:
    """Train ``model`` on ``table`` over the network (see :meth:`NetworkAnalyst.train`).
    With ``contribution`` (and ``validation``), the rounds it names are scored: each
    round's ticket fixes its :class:`~tessera.learning.contribution.ScoringPlan`, the
    nodes release its subset sums, and the verifiers confirm the scores on-chain, the
    market splitting the providers' pay by them. The subset releases are charged in each
    scored round's ρ (the quote's ``scoring_rho``); a training whose budgets cannot pay
    for all of it is refused before round 1."""
    if contribution is not None and validation is None:
        raise QueryError("contribution scores need a validation set")
    rng = np.random.default_rng(
        seed if seed is not None else int.from_bytes(analyst._rng.randbytes(16), "big")
    )
    rounds = NetworkRounds(
        analyst,
        model,
        table,
        features,
        label,
        config,
        training_id or analyst._rng.randbytes(32),
        contribution,
    )
    val = None
    if validation is not None:
        cols = [(float(rounds.bounds[c].lo), float(rounds.bounds[c].hi)) for c in features]
        x, _ = scale_features(np.asarray(validation[0], dtype=np.float64), cols)
        lb = rounds.bounds[label]
        y, _ = labels_for(model, validation[1], (float(lb.lo), float(lb.hi)))
        val = (x, y)
        rounds.validation = val
    quote = rounds.quote()
    per_round = config.providers_per_round or len(quote.providers)
    need = quote.rho_total * (1 - 1e-9)
    if per_round == len(quote.providers) and any(v < need for v in quote.budget_left.values()):
        short = [
            f"{name} has rho={left:.6g} left"
            for name, left in quote.budget_left.items()
            if left < need
        ]
        scoring = f" ({quote.scoring_rho:.6g} of it for the scores)" if quote.scoring_rho else ""
        raise PolicyViolation(
            f"the training needs rho={quote.rho_total:.6g} per dataset{scoring} "
            f"over {config.rounds} rounds but "
            + "; ".join(short)
            + f": at most {quote.rounds_affordable()} rounds fit"
            + (" unscored" if quote.scoring_rho else "")
        )
    return run_training(model, rounds, config, rng, validation=val, init=init, observer=observer)


__all__ = ["NetworkRounds", "OpenedRound", "RemoteNode", "TrainingQuote", "train_over"]
