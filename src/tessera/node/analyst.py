"""The analyst's side of a networked query: a client of the providers, nodes and verifiers.

:class:`NetworkAnalyst` offers the same Python API as
:class:`~tessera.node.local_network.LocalNetwork` (``sql``, ``run``,
``histogram``, ``linear_regression``, ``kaplan_meier``, ...) but each role is a
separate process reached through a :class:`~tessera.node.transport.Transport`.
One query:

1. the analyst submits it on the ledger (policy, budget, escrow: a refusal stops here);
2. the providers contribute and the nodes add noise, concurrently;
3. the analyst checks the noise proofs, asks every node to key-switch the
   aggregate of what was committed on-chain, and combines any ``t`` valid answers
   (:func:`~tessera.protocol.aggregation.switch_and_release`: a node that is down
   or sends a bad share is left out);
4. a node commits the aggregate and proof bundle, the analyst its result, and the
   verifiers check everything and vote: a quorum settles payment or slashing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import ColumnBounds
from tessera.analytics.passes import run_in_passes, schedule
from tessera.analytics.release import QueryResult, released
from tessera.analytics.statistic import Statistic
from tessera.crypto.dlog import DiscreteLog
from tessera.crypto.elgamal import keygen
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.dp import eps_to_rho
from tessera.errors import (
    ChainUnreachable,
    InvalidProof,
    LedgerError,
    PolicyViolation,
    ProtocolError,
    QueryError,
    TesseraError,
    TransportError,
)
from tessera.learning.config import TrainingConfig
from tessera.learning.contribution import ContributionSpec
from tessera.learning.models import Model
from tessera.learning.rounds import Observer, TrainingResult
from tessera.ledger import LedgerClient, rho_to_micro
from tessera.ledger.client import chain_seconds
from tessera.ledger.session import LedgerReceipt, query_kind, refusal
from tessera.node.answers import (
    Excluded,
    await_answers,
    fetch_through_nodes,
    gather,
    nobody_left,
)
from tessera.node.api import DEFAULT_DELTA, StatisticsApi
from tessera.node.training import NetworkRounds, TrainingQuote, train_over
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    AggregationRecord,
    KeySwitcher,
    NoiseContribution,
    VectorContribution,
    Verdict,
    check_contribution_knowledge,
    max_noise_bias,
    switch_and_release,
    verify_noise,
)
from tessera.protocol.query import QueryTicket, bounds_from_json, plan_of
from tessera.protocol.wire import record_to_json


class Caller:
    """What the analyst needs of a transport: a signed request to a peer by address."""

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:  # pragma: no cover - a protocol
        raise NotImplementedError


@dataclass(frozen=True)
class Peer:
    name: str
    role: str  # provider | node | verifier
    address: str
    url: str = ""
    index: int | None = None  # a computing node's index in the committee


@dataclass(frozen=True)
class DatasetQuote:
    """One dataset a query would use: its provider, its price for the query's kind, and
    its privacy budget left on the ledger (µρ)."""

    provider: str
    dataset_id: int
    price: int
    budget_remaining: int


@dataclass(frozen=True)
class QueryQuote:
    """What a query would cost before anything runs: its ρ (``None``: exact) and the µρ it
    takes of each dataset's budget, the market's kind, how many passes it runs in, and the
    price of them all (credits); :attr:`short` names the datasets whose budget is short."""

    table: str
    rho: float | None
    delta: float
    cost_micro: int
    kind: str
    passes: int
    price: int
    datasets: tuple[DatasetQuote, ...]

    @property
    def short(self) -> tuple[DatasetQuote, ...]:
        return tuple(d for d in self.datasets if d.budget_remaining < self.cost_micro)


class NetworkAnalyst(StatisticsApi):
    def __init__(
        self,
        ledger: LedgerClient,
        transport: Any,
        peers: Sequence[Peer],
        committee: int,
        dlog: Callable[[], DiscreteLog],
        rng: Rng | None = None,
        workers: int = 16,
    ) -> None:
        self.ledger, self.transport = ledger, transport
        self.peers = list(peers)
        self.committee = committee
        self._dlog = dlog
        self._rng = rng or SystemRng()
        c = ledger.committee(committee)
        self.t = c.threshold
        self.n = len(c.members)
        self.committee_key = Point.decode(c.public_key)
        self.public_shares = {i: Point.decode(k) for i, k in c.shares.items()}
        self.node_address = c.nodes
        # workers=1 runs each request in turn (the in-process network: per-role timings stay
        # each role's own instead of the sum of everything sharing the interpreter)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analyst")
        self._info: dict[str, dict[str, Any]] = {}
        #: providers the last :meth:`providers_info` could not reach, with the reason
        self.absent: dict[str, str] = {}
        self._absent_at: dict[str, float] = {}  # when each was last found absent (monotonic)
        self.on_progress: Callable[[str], None] = lambda _msg: None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _of(self, role: str) -> list[Peer]:
        return [p for p in self.peers if p.role == role]

    # -- what the providers publish -------------------------------------------------------
    def providers_info(self, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """Each provider's published info (tables, bounds, budgets), by name: asked once and
        kept, asked again with ``refresh``. A provider that cannot be reached (asked twice)
        is not a holder for now, and is asked again after :attr:`ABSENT_RETRY` seconds; it
        is listed, with the reason, in :attr:`absent`, and every query made meanwhile
        reports it left out."""
        now = time.monotonic()
        ask = [
            p
            for p in self._of("provider")
            if refresh
            or (
                p.name not in self._info
                and now - self._absent_at.get(p.name, -self.ABSENT_RETRY) >= self.ABSENT_RETRY
            )
        ]
        if ask:
            futures = {p.name: self._pool.submit(self._ask_info, p) for p in ask}
            info = {} if refresh else dict(self._info)
            absent = {} if refresh else dict(self.absent)
            for name, f in futures.items():
                try:
                    info[name] = f.result()
                    absent.pop(name, None)
                except TransportError as exc:
                    info.pop(name, None)
                    absent[name] = f"could not be asked for its info: {exc}"
                    self._absent_at[name] = time.monotonic()
            self._info, self.absent = info, absent
        return self._info

    #: seconds a provider has to publish its info (a cheap read): one that hangs is absent
    INFO_TIMEOUT = 30.0
    #: seconds before an absent provider is asked again (not at every look at the holders
    #: within one query); ``providers_info(refresh=True)`` asks every provider at once
    ABSENT_RETRY = 10.0

    def _ask_info(self, peer: Peer) -> dict[str, Any]:
        """A provider's info; asked once more after a failure (a dropped connection, a
        restart under way), as asking has no effect."""
        try:
            answer: dict[str, Any] = self.transport.call(
                peer.address, "info", {}, timeout=self.INFO_TIMEOUT
            )
        except TransportError:
            time.sleep(0.5)
            answer = self.transport.call(peer.address, "info", {}, timeout=self.INFO_TIMEOUT)
        return answer

    def _holders(self, table: str) -> dict[str, dict[str, Any]]:
        holders = {
            name: {**i["tables"][table], "address": i["address"]}
            for name, i in self.providers_info().items()
            if table in i["tables"]
        }
        if not holders:
            raise QueryError(f"no provider holds a table named {table!r}")
        return holders

    def bounds(self, table: str) -> dict[str, ColumnBounds]:
        return self._agreed_bounds(self._holders(table), table)

    def _agreed_bounds(
        self, holders: Mapping[str, Mapping[str, Any]], table: str
    ) -> dict[str, ColumnBounds]:
        first = next(iter(holders.values()))
        for h in holders.values():
            if h["bounds"] != first["bounds"]:
                raise PolicyViolation(f"providers disagree on the public bounds of {table!r}")
        return bounds_from_json(first["bounds"], f"{table} bounds")

    def categories(self, table: str, column: str) -> tuple[GroupKey, ...]:
        sets = {tuple(h["categories"].get(column) or ()) for h in self._holders(table).values()}
        if len(sets) != 1 or not next(iter(sets)):
            raise QueryError(
                f"GROUP BY {column}: every provider must publish the same key set for it"
            )
        return sets.pop()

    def ask_verifiers(
        self, query_id: bytes, path: str, body: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """Ask the verifiers drawn for a query to check its record and vote (``path``:
        ``verify`` or ``verify_training``), until one says the query settled; their answers.
        One that cannot be reached gives none; one that refuses the record, a failing one."""
        verdicts = []
        drawn = {a.lower() for a in self.ledger.verifiers_of(query_id)}
        for v in self._of("verifier"):
            if v.address.lower() not in drawn:
                continue  # only the verifiers drawn for this query may vote on it
            try:
                out = self.transport.call(v.address, path, body)
            except TransportError:
                continue
            except TesseraError as exc:  # the verifier refused the record: no vote
                out = {"passed": False, "failures": [str(exc)], "cheaters": [], "proofs_checked": 0}
            verdicts.append(out)
            if out.get("settled"):
                break
        return verdicts

    # -- a training ---------------------------------------------------------------------
    def train(
        self,
        table: str,
        model: Model,
        features: Sequence[str],
        label: str,
        config: TrainingConfig | None = None,
        *,
        validation: tuple[Any, Any] | None = None,
        init: Any = None,
        observer: Observer | None = None,
        seed: int | None = None,
        training_id: bytes | None = None,
        contribution: ContributionSpec | None = None,
    ) -> TrainingResult:
        """Train ``model`` on ``table``'s ``features`` to predict ``label``, federated over
        its providers: each round is a training query on the ledger (priced, its ρ charged
        to every dataset asked), the providers' updates are clipped, proven and aggregated
        by the committee with its noise (:mod:`tessera.node.training`). Features are
        scaled to [0, 1] by their public bounds, at the providers and in ``validation``
        (raw ``(x, y)`` of the analyst's own, scored after every round). Refuses before the
        first round if a dataset's budget cannot pay for every round. ``training_id`` (32
        random bytes by default, as the model registry takes it) names the training in its
        tickets and the model registry. With ``contribution`` (and ``validation``) the rounds
        it names are scored and the market pays the providers by their scores, once the
        verifiers confirm them (:func:`~tessera.node.training.train_over`)."""
        return train_over(
            self,
            table,
            model,
            features,
            label,
            config or TrainingConfig(),
            validation=validation,
            init=init,
            observer=observer,
            seed=seed,
            training_id=training_id,
            contribution=contribution,
        )

    def training_quote(
        self,
        table: str,
        model: Model,
        features: Sequence[str],
        label: str,
        config: TrainingConfig | None = None,
        *,
        contribution: ContributionSpec | None = None,
        training_id: bytes = b"quote",
    ) -> TrainingQuote:
        """Price, ε and each dataset's budget left, before a training starts; with
        ``contribution``, the scores' subset releases' ρ too (``scoring_rho``, and
        ``epsilon_total`` the whole training's ε with them): exact for the training of
        ``training_id`` (Shapley's sampled coalitions follow it)."""
        config = config or TrainingConfig()
        rounds = NetworkRounds(
            self, model, table, features, label, config, training_id, contribution
        )
        return rounds.quote()

    # -- one query ------------------------------------------------------------------------
    def run(
        self,
        table: str,
        stats: Sequence[Statistic],
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        holders, bounds, rho = self._planned(table, stats, epsilon, delta)

        def one_pass(pass_stats: Sequence[Statistic], pass_rho: float | None) -> QueryResult:
            secret, analyst_key = keygen(self._rng)
            ticket = QueryTicket(
                table=table,
                statistics=tuple(pass_stats),
                where=where,
                rho=pass_rho,
                delta=delta,
                analyst_key=analyst_key,
                bounds=bounds,
                max_rows=max(int(h["max_rows"]) for h in holders.values()),
                n=self.n,
                t=self.t,
                committee=self.committee,
                providers=tuple(sorted((name, str(h["address"])) for name, h in holders.items())),
                nonce=self._rng.randbytes(32),
                analyst=self.ledger.account,
            )
            return self._execute(ticket, holders, secret)

        return run_in_passes(one_pass, stats, bounds, rho)

    def _planned(
        self, table: str, stats: Sequence[Statistic], epsilon: float | None, delta: float
    ) -> tuple[dict[str, dict[str, Any]], dict[str, ColumnBounds], float | None]:
        """The holders of ``table``, their agreed bounds and the query's ρ, once the
        statistics are known to fit the bounds: what a query is run and quoted from."""
        if not stats:
            raise QueryError("a query needs at least one statistic")
        holders = self._holders(table)
        bounds = self._agreed_bounds(holders, table)
        plan_of(stats, bounds)  # refuses a statistic the bounds cannot support, before the ledger
        rho: float | None = None
        if epsilon is not None:
            if epsilon <= 0 or not 0 < delta < 1:
                raise QueryError("epsilon must be positive and delta in (0, 1)")
            rho = float(eps_to_rho(epsilon, delta))
        return holders, bounds, rho

    def query_quote(
        self,
        table: str,
        stats: Sequence[Statistic],
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryQuote:
        """What :meth:`run` of the same arguments would cost, read from the providers and
        the ledger, nothing spent: each dataset's price and budget left, the passes, the
        price of them all."""
        holders, bounds, rho = self._planned(table, stats, epsilon, delta)
        passes = len(schedule(stats, bounds, rho is not None))
        kind = query_kind({s.kind for s in stats})
        datasets = []
        for name, h in sorted(holders.items()):
            ds = self.ledger.dataset(int(h["dataset_id"]))
            price = ds.price_per_training if kind == "training" else ds.price_per_query
            datasets.append(DatasetQuote(name, ds.dataset_id, price, ds.budget_remaining))
        per_pass = self.ledger.quote([d.dataset_id for d in datasets], kind)
        return QueryQuote(
            table=table,
            rho=rho,
            delta=delta,
            cost_micro=0 if rho is None else rho_to_micro(rho),
            kind=kind,
            passes=passes,
            price=per_pass * passes,
            datasets=tuple(datasets),
        )

    def _submit(
        self, ticket: QueryTicket, holders: Mapping[str, Mapping[str, Any]], receipt: LedgerReceipt
    ) -> None:
        datasets = {f"{name}/{ticket.table}": int(h["dataset_id"]) for name, h in holders.items()}
        cost = 0 if ticket.rho is None else rho_to_micro(ticket.rho)
        self.submit_to_ledger(
            ticket.ticket_hash,
            ticket.query_id,
            datasets,
            cost,
            ticket.operations,
            query_kind(ticket.operations),
            receipt,
        )

    def submit_to_ledger(
        self,
        ticket_hash: bytes,
        query_id: bytes,
        datasets: Mapping[str, int],
        cost: int,
        operations: Iterable[str],
        kind: Literal["query", "training"],
        receipt: LedgerReceipt | None = None,
    ) -> None:
        """Submit a query or a training round (``kind``) over ``datasets`` (display name →
        dataset id) at ``cost`` micro-ρ each, escrowing its price. A refusal names its
        reason (a spent budget names the datasets short of it); the ledger must name the
        query as its ticket does."""
        start = time.perf_counter()
        if receipt is not None:
            receipt.status = "submitting"  # sent, not yet mined: the chain may hold it
        try:
            submitted = self.ledger.submit_query(
                ticket_hash, datasets.values(), self.committee, cost, operations, kind, approve=True
            )
        except LedgerError as exc:
            raise refusal(self.ledger, exc, datasets, cost) from exc
        finally:
            if receipt is not None:
                receipt.seconds += time.perf_counter() - start
        if submitted.query_id != query_id:  # pragma: no cover - the market's own rule
            raise ProtocolError("the ledger named the query differently from its ticket")
        if receipt is not None:
            receipt.record("submit_query", submitted.tx)

    def _execute(
        self, ticket: QueryTicket, holders: Mapping[str, Mapping[str, Any]], secret: int
    ) -> QueryResult:
        receipt = LedgerReceipt(query_id="0x" + ticket.query_id.hex(), status="new", price=0)
        try:
            return self._query(ticket, holders, secret, receipt)
        except TesseraError as exc:
            down = self._chain_failure(exc, receipt)
            if down is None:
                raise
            raise down from exc

    #: seconds a provider whose contribution is on-chain has to answer before the nodes
    #: are asked to fetch it (an honest one taken for late costs a fetch, not its data)
    ANSWER_GRACE = 10.0

    def _answers(
        self, ticket: QueryTicket, futures: Mapping[str, Future[dict[str, Any]]]
    ) -> tuple[dict[str, Future[dict[str, Any]]], dict[str, bytes]]:
        """The providers' answers once each has come, or has committed its contribution
        on-chain and held its answer back for :attr:`ANSWER_GRACE` seconds (then its
        answer is a failure, and the nodes fetch what it committed); and the committed
        contributions, by account (:func:`~tessera.node.answers.await_answers`, as for a
        training round's reports)."""
        return await_answers(
            futures,
            lambda: self.ledger.audit_trail(ticket.query_id, verdicts=False).of("contribution"),
            ticket.account_of,
            self.ANSWER_GRACE,
            "contribution",
        )

    def _fetch_committed(
        self,
        ticket: QueryTicket,
        nodes: Mapping[int, Peer],
        lacking: Sequence[str],
        accept: Callable[[str, Mapping[str, Any]], tuple[VectorContribution, str]],
    ) -> tuple[dict[str, tuple[VectorContribution, str]], dict[str, str]]:
        """The committed contributions of ``lacking`` as the nodes fetched them from their
        providers (``fetch``), each checked as one received from its provider, and the
        reason of each no node got: withheld. Every node is asked before any key switch,
        so one that a node got is forwarded to all, and every honest node that got none
        leaves the same providers out (and locks that, :func:`codec.aggregate_digest`);
        :func:`~tessera.node.answers.fetch_through_nodes`, as for a training round."""
        return fetch_through_nodes(
            self._pool,
            self.transport,
            [p.address for p in nodes.values()],
            "fetch",
            {"ticket": ticket.to_json()},
            lacking,
            "contribution",
            accept,
        )

    def _chain_failure(self, exc: TesseraError, receipt: LedgerReceipt) -> ChainUnreachable | None:
        """A query that failed because the chain went down, as one error that says so.

        The roles then fail in ways that hide it (a provider that cannot commit, nodes that
        cannot check the trail: "only 0 nodes gave valid shares"), so on any failure the
        analyst asks the chain itself; one that does not answer is what is reported, with
        its URL, what to do, and what becomes of the query."""
        cause = exc if isinstance(exc, ChainUnreachable) else None
        try:
            self.ledger.block_number()
        except ChainUnreachable as probe:
            cause = probe
        except LedgerError:
            pass
        if cause is None:
            return None
        message = str(cause)
        if "cannot reach the chain" in message:
            message = message[message.index("cannot reach the chain") :]
        if "submit_query" in receipt.transactions:
            fate = (
                f"Query {receipt.query_id} is on the ledger: with the chain back it stays "
                "open until its deadline, then `tessera market expire` settles it (the work "
                "done is paid, the rest refunded, unused privacy budget returned)."
            )
        elif receipt.status == "submitting":
            fate = (
                f"Query {receipt.query_id} was being submitted when the chain stopped "
                "answering: it may be on the ledger. With the chain back, `tessera verify "
                f"{receipt.query_id}` shows whether it is; if it is, it settles at its "
                "deadline (`tessera market expire`), else nothing was spent."
            )
        else:
            fate = f"Query {receipt.query_id} was not submitted: nothing was spent."
        return ChainUnreachable(f"{message}. {fate}", url=cause.url)

    def _query(
        self,
        ticket: QueryTicket,
        holders: Mapping[str, Mapping[str, Any]],
        secret: int,
        receipt: LedgerReceipt,
    ) -> QueryResult:
        t_start = time.perf_counter()
        qid = ticket.query_id
        roles: dict[str, dict[str, float]] = {}
        self.on_progress("submitting the query to the ledger")
        self._submit(ticket, holders, receipt)
        prepared = ticket.prepare()
        body = {"ticket": ticket.to_json()}
        providers = {p.name: p for p in self._of("provider") if p.name in holders}
        absent = {n: why for n, why in self.absent.items() if n not in holders}
        nodes = {p.index: p for p in self._of("node") if p.index is not None}

        def ask(peer: Peer, path: str, payload: Mapping[str, Any]) -> Callable[[], dict[str, Any]]:
            def call() -> dict[str, Any]:
                answer: dict[str, Any] = self.transport.call(peer.address, path, payload)
                return answer

            return call

        def timed(role: str, who: str, fn: Callable[[], Any]) -> Callable[[], Any]:
            """``fn`` timed as ``role``'s work; the time it waited for the chain (in this
            thread: roles served in process) is counted apart, under ``ledger``."""

            def run() -> Any:
                start, chain = time.perf_counter(), chain_seconds()
                try:
                    return fn()
                finally:
                    on_chain = chain_seconds() - chain
                    roles.setdefault(role, {})[who] = time.perf_counter() - start - on_chain
                    if on_chain:
                        ledger = roles.setdefault("ledger", {})
                        ledger[f"{role}/{who}"] = ledger.get(f"{role}/{who}", 0.0) + on_chain

            return run

        self.on_progress(f"asking {len(providers)} providers and {len(nodes)} nodes")
        contrib_f = {
            name: self._pool.submit(timed("provider", name, ask(p, "contribute", body)))
            for name, p in providers.items()
        }

        def noisy(peer: Peer) -> Callable[[], tuple[NoiseContribution, bool]]:
            """A node's noise, its proofs checked as soon as it arrives (while providers work)."""
            fetch = ask(peer, "noise", body)

            def run() -> tuple[NoiseContribution, bool]:
                nc = codec.decode_noise(bytes.fromhex(fetch()["noise"]))
                try:
                    verify_noise(prepared.query, self.committee_key, nc)
                except InvalidProof:
                    return nc, False
                return nc, True

            return run

        noise_f: dict[int, Future[tuple[NoiseContribution, bool]]] = {}
        if ticket.rho is not None:
            noise_f = {
                i: self._pool.submit(timed("noise", str(i), noisy(p))) for i, p in nodes.items()
            }

        contrib_f, committed = self._answers(ticket, contrib_f)

        def contribution(name: str, answer: Mapping[str, Any]) -> tuple[VectorContribution, str]:
            raw = answer.get("contribution")  # as received: forwarded as is, never re-encoded
            try:
                encoded = bytes.fromhex(str(raw))
                vc = codec.decode_contribution_limbs(encoded)
            except ValueError as exc:
                raise Excluded(f"malformed contribution: {exc}") from exc
            if vc.provider != name:
                raise Excluded("sent a contribution under another name")
            if committed.get(str(ticket.account_of(name))) != codec.digest(
                "contribution", qid, encoded
            ):
                raise Excluded("sent a contribution other than the one it committed on-chain")
            try:
                check_contribution_knowledge(prepared.query, vc)
            except InvalidProof as exc:
                raise Excluded(f"sent a contribution whose knowledge proof fails: {exc}") from exc
            return vc, str(raw)

        taken, excluded = gather(contrib_f, contribution)
        for name, why in absent.items():  # never asked: said, not dropped silently
            excluded.setdefault(name, f"not in the query: {why}")
        # committed, but the analyst did not get it: the nodes fetch it from the provider
        lacking = sorted(n for n in excluded if ticket.account_of(n) in committed)
        if lacking:
            self.on_progress(f"the nodes fetch what {len(lacking)} providers committed")
            got, withheld = self._fetch_committed(ticket, nodes, lacking, contribution)
            for name in got:
                del excluded[name]
            taken.update(got)
            excluded.update(withheld)
        if not taken:
            raise nobody_left("no provider could contribute", excluded)
        contributions = [vc for vc, _ in taken.values()]
        raw_contributions = [raw for _, raw in taken.values()]
        noise: list[NoiseContribution] = []
        rejected: list[NoiseContribution] = []
        for nf in noise_f.values():
            try:
                nc, valid = nf.result()
            except TesseraError:  # down, or refused: the others may still be enough
                continue
            (noise if valid else rejected).append(nc)
        if ticket.rho is not None and len(noise) < self.n - self.t + 1:
            raise ProtocolError(
                f"only {len(noise)} nodes gave valid noise; privacy needs {self.n - self.t + 1}"
            )
        self.on_progress("key switching")
        switch_body = {
            **body,
            "contributions": raw_contributions,
            "noise": [codec.encode_noise(nc).hex() for nc in noise],
            "rejected_noise": [codec.encode_noise(nc).hex() for nc in rejected],
        }
        switch_f = {
            i: self._pool.submit(
                timed(
                    "key-switch",
                    str(i),
                    ask(p, "key_switch", switch_body),
                )
            )
            for i, p in nodes.items()
        }

        trail: list[dict[str, bytes]] = []  # the key switches committed, read once if it can

        def switcher(i: int, f: Future[dict[str, Any]]) -> KeySwitcher:
            def shares(agg: Sequence[Any]) -> list[Any]:
                try:
                    got = codec.decode_key_switch(bytes.fromhex(f.result()["shares"]))
                except TesseraError as exc:  # down, or refused: the others may make a quorum
                    raise TransportError(str(exc)) from exc
                # only shares their node committed to (with this aggregate) can be verified
                digest = codec.key_switch_digest(qid, agg, got)
                account = self.node_address[i]
                if not trail or trail[0].get(account) != digest:
                    trail[:] = [self.ledger.audit_trail(qid, verdicts=False).of("key_switch")]
                if trail[0].get(account) != digest:
                    raise TransportError(f"node {i} sent shares it did not commit on-chain")
                return got

            return shares

        record = AggregationRecord(prepared.query, self.committee_key, self.public_shares, self.t)
        record.contributions, record.noise, record.rejected_noise = contributions, noise, rejected
        record.excluded_nodes = sorted(nc.node for nc in rejected)
        record.withheld = {n: excluded[n] for n in lacking if n in excluded}
        dlog = self._dlog()
        t_crypto = time.perf_counter()
        totals = switch_and_release(
            record,
            {i: switcher(i, f) for i, f in switch_f.items()},
            secret,
            dlog,
            self._rng,
            step=lambda role, who, fn: timed(role, who, fn)() if role != "key-switch" else fn(),
        )
        t_crypto = time.perf_counter() - t_crypto
        assert record.release is not None
        # the audit trail: the combining quorum's first node commits the aggregate and the
        # proof bundle, the analyst its result; then the verifiers check and vote
        self.on_progress("committing the result, verifying")
        record_json = record_to_json(
            record,
            raw_contributions,
            [codec.encode_noise(nc).hex() for nc in record.noise],
            [codec.encode_noise(nc).hex() for nc in record.rejected_noise],
        )
        bundle_node = nodes[record.used_nodes[0]]
        start = time.perf_counter()
        self.transport.call(bundle_node.address, "bundle", {**body, "record": record_json})
        tx = self.ledger.post_result(qid, codec.release_digest(qid, record.release))
        receipt.record("result", tx)
        receipt.seconds += time.perf_counter() - start
        t_verify = time.perf_counter()
        verdicts = self.ask_verifiers(qid, "verify", {**body, "record": record_json})
        t_verify = time.perf_counter() - t_verify
        q = self.ledger.query(qid)
        receipt.status, receipt.price, receipt.slashed = q.status, q.price, q.cheaters
        passed = bool(verdicts) and all(v["passed"] for v in verdicts)
        failures = tuple(f for v in verdicts for f in v["failures"])
        if not verdicts:
            failures = ("no verifier answered",)
        if q.status == "open":  # no majority of the drawn verifiers voted
            failures += (
                f"the query is still open on the ledger: with no majority of its drawn "
                f"verifiers it settles at its deadline, block {q.deadline} (anyone may then "
                f"call expire: `tessera market expire 0x{qid.hex()}`)",
            )
            passed = False
        cheaters = tuple(sorted({c for v in verdicts for c in v["cheaters"]}))
        verdict = Verdict(
            passed,
            max((int(v["proofs_checked"]) for v in verdicts), default=0),
            failures,
            cheaters,
        )
        sd = [0.0] * len(prepared.plan.terms)
        if prepared.noise:
            sd = [
                float(p.sd_all_honest) / t.scale
                for t, p in zip(prepared.plan.terms, prepared.noise, strict=True)
            ]
        max_bias = {
            term.name: (self.t - 1) * max_noise_bias(prepared.query, i) / term.scale
            for i, term in enumerate(prepared.plan.terms)
            if prepared.noise
        }
        result = released(
            qid,
            ticket.statistics,
            prepared.plan,
            totals,
            ticket.bounds,
            sd,
            ticket.rho,
            ticket.delta,
            verdict,
            record,
            roles,
            providers=sorted(c.provider for c in contributions),
            excluded=excluded,
            seconds={
                "crypto": t_crypto,
                "verify": t_verify,
                "ledger": receipt.seconds,
                "wall": time.perf_counter() - t_start,
            },
            receipt=receipt,
            max_bias=max_bias,
        )
        result.ticket = ticket
        return result
