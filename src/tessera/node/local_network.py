"""An in-process Tessera network: the deployed roles, wired without sockets.

``LocalNetwork`` runs exactly the code a consortium deploys: one
:class:`~tessera.node.roles.ProviderRole` per provider, ``n``
:class:`~tessera.node.roles.NodeRole` computing nodes that create their key by
the same distributed key generation, a :class:`~tessera.node.roles.VerifierRole`
and the :class:`~tessera.node.analyst.NetworkAnalyst`, each with its own account
and key on an embedded chain, talking through signed requests over the
in-process transport (the same envelope, checks and JSON as HTTP). Only the
sockets are missing, so it serves notebooks, tests and benchmarks::

    net = LocalNetwork(computing_nodes=3, threshold=2)
    net.add_provider("hospital-a", tables={"patients": df}, bounds={"patients": {"age": (0, 120)}})
    res = net.sql("SELECT AVG(age) FROM patients", epsilon=1.0)
    res.to_pandas(); res.verified; res.privacy_cost
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tessera.analytics.grouping import GroupKey
from tessera.analytics.local import BoundsSpec, ColumnBounds, TableSource, column_spec
from tessera.analytics.release import QueryResult
from tessera.analytics.statistic import Statistic
from tessera.crypto.dlog import DiscreteLog
from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SeededRng, SystemRng
from tessera.dp import ExactSampler, NoiseSampler, OpenDPSampler
from tessera.errors import ProtocolError
from tessera.learning.config import TrainingConfig
from tessera.learning.models import Model
from tessera.learning.rounds import TrainingResult
from tessera.ledger.session import LedgerSession, Participant
from tessera.node.analyst import NetworkAnalyst, Peer
from tessera.node.api import DEFAULT_DELTA, StatisticsApi
from tessera.node.envelope import LedgerDirectory, ReplayGuard
from tessera.node.identity import Identity
from tessera.node.roles import NodeRole, ProviderRole, Table, VerifierRole
from tessera.node.runner import list_datasets
from tessera.node.store import SqliteStore
from tessera.node.training import TrainingQuote
from tessera.node.transport import InProcessTransport
from tessera.protocol.policy import DatasetPolicy

__all__ = ["DatasetPolicy", "LocalNetwork", "Provider", "QueryResult"]


@dataclass
class Provider:
    """A provider of the in-process network: its role and its account."""

    name: str
    role: ProviderRole
    account: Participant
    datasets: dict[str, int] = field(default_factory=dict)  # table -> catalog id on the ledger


class LocalNetwork(StatisticsApi):
    """A whole Tessera network in one process: the deployed roles, minus the sockets."""

    def __init__(
        self,
        computing_nodes: int = 3,
        threshold: int = 2,
        *,
        seed: int | bytes | str | None = None,
        dlog: DiscreteLog | None = None,
        ledger: LedgerSession | None = None,
        verifiers: int = 1,
    ) -> None:
        if not 1 <= threshold <= computing_nodes or computing_nodes < 2 * threshold - 1:
            raise ValueError(
                f"threshold {threshold} must be in [1, {computing_nodes}] with "
                f"n >= 2t - 1 (n = {computing_nodes})"
            )
        if ledger is not None and ledger.nodes:
            raise ValueError("this ledger session already serves another committee")
        self.n, self.t = computing_nodes, threshold
        self._seed = seed
        self._dlog = dlog
        self.ledger = ledger or LedgerSession(rng=self._rng("ledger"), verifiers=verifiers)
        analyst = self.ledger.analyst
        self._transport = InProcessTransport(
            Identity(analyst.secret_key), LedgerDirectory(self.ledger.admin)
        )
        self.nodes: dict[int, NodeRole] = {}
        accounts = self.ledger.add_nodes(computing_nodes)
        addresses = {i: a.address for i, a in accounts.items()}
        public_keys = {i: a.public_key for i, a in accounts.items()}
        for i, account in sorted(accounts.items()):
            node = NodeRole(
                i,
                computing_nodes,
                threshold,
                account.client,
                SqliteStore(":memory:"),
                account.secret_key,
                lambda: public_keys,
                rng=self._rng(f"node-{i}"),
                sampler=self._sampler(i),
                transport=self._route(account, None),
                node_addresses=lambda: addresses,
            )
            self._route(account, node)
            self.nodes[i] = node
        self.committee_id = _committee_of(self._transport.call(addresses[1], "dkg/run", {}))
        self.verifiers: list[VerifierRole] = []
        peers = [Peer(f"node-{i}", "node", a, index=i) for i, a in addresses.items()]
        for v in self.ledger.verifiers:
            role = VerifierRole(v.label, v.client, SqliteStore(":memory:"))
            self._route(v, role)
            self.verifiers.append(role)
            peers.append(Peer(v.label, "verifier", v.address))
        self.analyst = NetworkAnalyst(
            analyst.client,
            self._transport,
            peers,
            self.committee_id,
            self._discrete_log,
            rng=self._rng("analyst"),
            workers=1,
        )
        self.providers: dict[str, Provider] = {}

    # -- wiring ------------------------------------------------------------------------
    def _rng(self, label: str) -> Rng:
        return SeededRng(f"{self._seed!r}/{label}") if self._seed is not None else SystemRng()

    def _sampler(self, node: int) -> NoiseSampler:
        if self._seed is None:
            return OpenDPSampler()
        return ExactSampler(SeededRng(f"noise/{self._seed!r}/{node}"))

    def _route(self, account: Participant, role: object | None) -> InProcessTransport:
        """A transport signing as ``account``; with ``role``, requests to it reach it."""
        if role is not None:
            self._transport.register(account.address, role, ReplayGuard())  # type: ignore[arg-type]
        return self._transport.with_identity(Identity(account.secret_key))

    def _discrete_log(self) -> DiscreteLog:
        if self._dlog is None:
            from tessera.node.dlog_cache import discrete_log

            self._dlog = discrete_log()
        return self._dlog

    @property
    def committee_key(self) -> Point:
        return self.analyst.committee_key

    # -- set-up ------------------------------------------------------------------------
    def add_provider(
        self,
        name: str,
        tables: Mapping[str, TableSource],
        bounds: Mapping[str, Mapping[str, BoundsSpec]],
        policies: Mapping[str, DatasetPolicy] | None = None,
    ) -> Provider:
        """Register a provider with its tables, the public bounds of their columns, its policies.

        ``bounds[table][column]`` is ``(lo, hi)`` for a numeric column (integers: exact,
        floats: fixed point with 2^-10 resolution), a :class:`ColumnBounds`, or a list of
        the public keys of a categorical column (usable in GROUP BY). Each table is listed
        in the ledger's catalog with its policy.
        """
        if name in self.providers:
            raise ValueError(f"provider {name!r} already exists")
        parsed: dict[str, Table] = {}
        for tbl in tables:
            if tbl not in bounds:
                raise ValueError(f"table {tbl!r} has no public bounds")
        for tbl, cols in bounds.items():
            if tbl not in tables:
                raise ValueError(f"bounds given for unknown table {tbl!r}")
            numeric: dict[str, ColumnBounds] = {}
            cats: dict[str, tuple[GroupKey, ...]] = {}
            for col, spec in cols.items():
                value = column_spec(spec)
                if isinstance(value, ColumnBounds):
                    numeric[col] = value
                else:
                    cats[col] = value
            policy = (policies or {}).get(tbl, DatasetPolicy())
            parsed[tbl] = Table(tables[tbl], numeric, cats, policy)
        account = self.ledger.add_provider(name)
        role = ProviderRole(name, parsed, account.client, SqliteStore(":memory:"), self._rng(name))
        for tbl, t in parsed.items():
            missing = set(t.bounds) | set(t.categories)
            missing -= set(role.db.columns(tbl))
            if missing:
                raise ValueError(f"table {tbl} has no column(s) {sorted(missing)}")
        list_datasets(role)
        self._route(account, role)
        provider = Provider(name, role, account, {t: int(role.dataset_id(t) or 0) for t in parsed})
        self.providers[name] = provider
        self.analyst.peers.append(Peer(name, "provider", account.address))
        self.analyst.providers_info(refresh=True)
        return provider

    # -- queries -----------------------------------------------------------------------
    def run(
        self,
        table: str,
        stats: Sequence[Statistic],
        where: str | None = None,
        epsilon: float | None = None,
        delta: float = DEFAULT_DELTA,
    ) -> QueryResult:
        """Run any list of statistics over ``table`` as one encrypted query."""
        return self.analyst.run(table, stats, where, epsilon, delta)

    def train(
        self,
        table: str,
        model: Model,
        features: Sequence[str],
        label: str,
        config: TrainingConfig | None = None,
        **options: Any,
    ) -> TrainingResult:
        """Federated training over the providers' ``table``
        (:meth:`~tessera.node.analyst.NetworkAnalyst.train`)."""
        return self.analyst.train(table, model, features, label, config, **options)

    def training_quote(
        self,
        table: str,
        model: Model,
        features: Sequence[str],
        label: str,
        config: TrainingConfig | None = None,
    ) -> TrainingQuote:
        return self.analyst.training_quote(table, model, features, label, config)

    def bounds(self, table: str) -> dict[str, ColumnBounds]:
        return self.analyst.bounds(table)

    def categories(self, table: str, column: str) -> tuple[GroupKey, ...]:
        return self.analyst.categories(table, column)

    def close(self) -> None:
        self.analyst.close()


def _committee_of(key: Mapping[str, object]) -> int:
    if key.get("committee") is None:  # pragma: no cover - the DKG raises first
        raise ProtocolError("the committee's DKG did not register a committee")
    return int(str(key["committee"]))
