"""The network's participants on one deployed market: an account and a key each.

A :class:`LedgerSession` deploys the contracts on a chain (the embedded one by
default) and registers one account per participant of a network: the analyst,
the verifiers, the computing nodes (funded and staked) and each provider, every
one with a secp256k1 key of its own (what its role signs requests with). The
in-process network (:class:`~tessera.node.local_network.LocalNetwork`) wires
its roles to these accounts; the on-chain side of a query is the roles' own
(:mod:`tessera.node.roles`).

Also here, the ledger's rules that the analyst applies: how a query is priced
(:func:`query_kind`) and what a refusal means (:func:`refusal`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PrivateKey

from tessera.crypto.rng import Rng, SystemRng
from tessera.errors import BudgetExceeded, LedgerError, PolicyViolation
from tessera.ledger import (
    OPERATIONS,
    EmbeddedChain,
    LedgerClient,
    Listing,
    Tx,
    deploy,
)
from tessera.ledger.client import MICRO, QueryKind

#: Credits minted for the analyst of a new session, and each node's and verifier's stake.
ANALYST_CREDITS = 10**12
NODE_STAKE = 1_000
TRAINING_KINDS = frozenset({"linear_regression", "logistic_regression"})


@dataclass(frozen=True, slots=True)
class Participant:
    """One account: who it is, its client, its key (kept by the participant only)."""

    label: str
    client: LedgerClient
    public_key: bytes
    secret_key: bytes = field(repr=False)

    @property
    def address(self) -> str:
        return self.client.account


@dataclass
class LedgerReceipt:
    """The on-chain side of one query: its transactions, gas and settlement."""

    query_id: str
    status: str
    price: int
    transactions: dict[str, str] = field(default_factory=dict)  # label -> tx hash
    gas: dict[str, int] = field(default_factory=dict)  # label -> gas used
    slashed: tuple[str, ...] = ()  # addresses of the nodes slashed
    trail_failures: tuple[str, ...] = ()
    seconds: float = 0.0

    def record(self, label: str, tx: Tx) -> None:
        self.transactions[label] = tx.tx_hash
        self.gas[label] = tx.gas_used

    @property
    def total_gas(self) -> int:
        return sum(self.gas.values())


def schema_hash(table: str, columns: Mapping[str, Any]) -> bytes:
    """SHA-256 of a table's name and its columns' public bounds, as canonical JSON."""
    body = json.dumps(
        {"table": table, "columns": {k: repr(v) for k, v in sorted(columns.items())}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).digest()


def query_kind(operations: Iterable[str]) -> QueryKind:
    """A model fit is priced as a training run, anything else as a query."""
    return "training" if set(operations) & TRAINING_KINDS else "query"


def refusal(
    client: LedgerClient, exc: LedgerError, datasets: Mapping[str, int], cost: int
) -> Exception:
    """The error to raise for a query the market refused: a spent budget names the datasets
    short of it, a policy refusal becomes a PolicyViolation, anything else stays as it is.

    ``datasets`` maps a display name (``provider/table``) to its dataset id."""
    if exc.reason == "privacy budget exceeded":
        short = []
        for name, d in datasets.items():
            remaining = client.dataset(d).budget_remaining
            if remaining < cost:
                short.append(f"{name} has rho={remaining / MICRO:.6g} left")
        return BudgetExceeded(
            f"the ledger refused the query: it needs rho={cost / MICRO:.6g} per dataset but "
            + "; ".join(short)
        )
    if exc.reason == "dataset does not allow exact queries":
        return PolicyViolation(
            "the ledger refused the query: a dataset requires differential privacy: pass epsilon"
        )
    if exc.reason in ("operation not allowed", "dataset not listed"):
        return PolicyViolation(f"the ledger refused the query: {exc.reason}")
    if exc.reason == "an analyst cannot buy its own data":
        return PolicyViolation("the ledger refused the query: an analyst cannot buy its own data")
    return exc


class LedgerSession:
    """A deployed market with one account per participant of one network."""

    def __init__(
        self,
        chain: EmbeddedChain | None = None,
        *,
        rng: Rng | None = None,
        verifiers: int = 1,
        node_stake: int = NODE_STAKE,
        analyst_credits: int = ANALYST_CREDITS,
    ) -> None:
        if verifiers < 1:
            raise ValueError("a session needs at least one verifier")
        self.chain = chain or EmbeddedChain(accounts=1)
        self._rng = rng or SystemRng()
        self.node_stake = node_stake
        self.deployment = deploy(
            self.chain,
            verifiers_per_query=min(verifiers, 16),
            min_stake=node_stake,
            slash_amount=node_stake,
        )
        self.admin = LedgerClient(self.chain, self.deployment, self.deployment.admin)
        self.setup_log: list[Tx] = self.admin.gas_log
        made = self._participants(
            [("analyst", "analyst"), *((f"verifier-{i}", "verifier") for i in range(verifiers))]
        )
        self.analyst, self.verifiers = made[0], made[1:]
        self.admin.mint(self.analyst.address, analyst_credits)
        self.analyst.client.approve(self.deployment.market, 2**256 - 1)  # once, not per query
        for v in self.verifiers:  # staked, in the pool every query's verifiers are drawn from
            self.admin.mint(v.address, node_stake)
            v.client.stake(node_stake)
            v.client.join_pool()
        self.nodes: dict[int, Participant] = {}
        self.providers: dict[str, Participant] = {}

    # -- participants ----------------------------------------------------------------
    def _participants(self, wanted: Sequence[tuple[str, Any]]) -> list[Participant]:
        """New accounts with keys of their own, registered in one governance batch."""
        made = []
        for label, _ in wanted:
            secret = self._rng.scalar().to_bytes(32, "big")
            public = PrivateKey(secret).public_key.format(compressed=True)
            address = self.chain.add_account(secret)
            made.append(Participant(label, self.admin.as_(address), public, secret))
        self.admin.register_many(
            [(p.address, role, p.public_key) for p, (_, role) in zip(made, wanted, strict=True)]
        )
        return made

    def add_nodes(self, count: int) -> dict[int, Participant]:
        """Register, fund and stake ``count`` computing nodes.

        Node ``i`` is the ``i``-th by ascending address, the order in which the registry
        lists a committee's members and their key shares. Their committee is created by
        the nodes themselves, at the end of their DKG."""
        if self.nodes:
            raise ValueError("this session already has its computing nodes")
        made = self._participants([(f"node-{i}", "node") for i in range(count)])
        made.sort(key=lambda p: int(p.address, 16))
        for i, node in enumerate(made, 1):
            node = Participant(f"node-{i}", node.client, node.public_key, node.secret_key)
            self.admin.mint(node.address, self.node_stake)
            node.client.stake(self.node_stake)
            self.nodes[i] = node
        return self.nodes

    def add_provider(self, name: str) -> Participant:
        if name in self.providers:
            raise ValueError(f"provider {name!r} already registered")
        self.providers[name] = self._participants([(f"provider-{name}", "provider")])[0]
        return self.providers[name]

    def list_dataset(self, provider: str, schema: bytes, listing: Listing) -> int:
        return self.providers[provider].client.list_dataset(schema, listing).dataset_id


def make_listing(
    bounds: Mapping[str, tuple[float, float]],
    *,
    operations: frozenset[str] | None,
    min_cohort: int,
    budget_rho: float,
    allow_exact: bool = False,
    price_per_query: int,
    price_per_training: int,
    node_share_bps: int,
    tags: Sequence[str],
) -> Listing:
    """A listing from a provider's policy (budget cap rounded down to micro-ρ)."""
    return Listing(
        bounds=bounds,
        tags=tuple(tags),
        operations=frozenset(OPERATIONS) if operations is None else operations,
        min_cohort=min_cohort,
        budget_cap=int(budget_rho * MICRO),
        price_per_query=price_per_query,
        price_per_training=price_per_training,
        node_share_bps=node_share_bps,
        allow_exact=allow_exact,
    )
