"""The network's participants on the ledger, and a query's life there.

A :class:`LedgerSession` holds one account per participant of a network (the
committee's nodes, each provider, the analyst, the verifiers) on a deployed
set of contracts, and runs the on-chain side of a query:

1. :meth:`submit` — the analyst submits the query; the market checks every
   dataset's policy and remaining privacy budget and escrows the price. A
   refusal raises before any provider sees the query.
2. :meth:`settle` — every party commits the digest of what it sent
   (:mod:`tessera.protocol.codec`), the verifiers check the record against
   those commitments and the proofs, and vote; a quorum settles: providers
   and honest nodes are paid, cheaters slashed, or the analyst refunded.

Every participant's account is a secp256k1 key of its own; the registry
records its compressed public key (what the networked nodes sign with).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from coincurve import PrivateKey

from tessera.crypto.group import Point
from tessera.crypto.rng import Rng, SystemRng
from tessera.errors import BudgetExceeded, LedgerError, PolicyViolation
from tessera.ledger import (
    OPERATIONS,
    AuditTrail,
    EmbeddedChain,
    LedgerClient,
    Listing,
    Tx,
    deploy,
    rho_to_micro,
)
from tessera.ledger.client import MICRO, CommitmentKind, QueryKind
from tessera.protocol import codec
from tessera.protocol.aggregation import AggregationRecord, Verdict

#: Credits minted for the analyst of a new session, and each node's stake.
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


def check_trail(
    trail: AuditTrail,
    record: AggregationRecord,
    providers: Mapping[str, str],
    nodes: Mapping[int, str],
    analyst: str,
) -> list[str]:
    """What in ``record`` does not match the digests its authors committed on-chain.

    ``providers`` and ``nodes`` map protocol names / indices to account addresses.
    """
    qid = record.query.query_id
    failures: list[str] = []

    def expect(kind: CommitmentKind, author: str, what: str, digest: bytes) -> None:
        if trail.of(kind).get(author) != digest:
            failures.append(f"{what}: does not match the digest committed on-chain")

    seen: set[str] = set()
    for vc in record.contributions:
        account = providers.get(vc.provider)
        if account is None:
            failures.append(f"contribution of unknown provider {vc.provider!r}")
            continue
        if account in seen:
            failures.append(f"contribution of {vc.provider} appears twice")
        seen.add(account)
        expect(
            "contribution",
            account,
            f"contribution of {vc.provider}",
            codec.contribution_digest(qid, vc),
        )
    names = {a: n for n, a in providers.items()}
    for author in trail.of("contribution").keys() - seen:
        who = names.get(author, author)
        failures.append(f"contribution of {who}: committed on-chain, missing from the record")
    for nc in [*record.noise, *record.rejected_noise]:
        expect("noise", nodes[nc.node], f"noise of node {nc.node}", codec.noise_digest(qid, nc))
    for i, shares in record.key_switch_shares.items():
        expect(
            "key_switch", nodes[i], f"key switch of node {i}", codec.key_switch_digest(qid, shares)
        )
    bundle = codec.record_digest(record)
    aggregate = codec.aggregate_digest(qid, record.aggregate)
    if aggregate not in trail.of("aggregate").values():
        failures.append("aggregate: no committee member committed it")
    if bundle not in trail.of("proof_bundle").values():
        failures.append("proof bundle: no committee member committed it")
    if record.release is None:
        failures.append("result: no release in the record")
    else:
        expect("result", analyst, "result", codec.release_digest(qid, record.release))
    return failures


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
    if exc.reason in ("operation not allowed", "dataset not listed"):
        return PolicyViolation(f"the ledger refused the query: {exc.reason}")
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
            self.chain, quorum=verifiers, min_stake=node_stake, slash_amount=node_stake
        )
        self.admin = LedgerClient(self.chain, self.deployment, self.deployment.admin)
        self.setup_log: list[Tx] = self.admin.gas_log
        self.analyst = self._participant("analyst", "analyst")
        self.admin.mint(self.analyst.address, analyst_credits)
        self.analyst.client.approve(self.deployment.market, 2**256 - 1)  # once, not per query
        self.verifiers = [self._participant(f"verifier-{i}", "verifier") for i in range(verifiers)]
        self.nodes: dict[int, Participant] = {}
        self.providers: dict[str, Participant] = {}
        self.committee: int | None = None

    # -- participants ----------------------------------------------------------------
    def _participant(self, label: str, role: Any) -> Participant:
        secret = self._rng.scalar().to_bytes(32, "big")
        public = PrivateKey(secret).public_key.format(compressed=True)
        address = self.chain.add_account(secret)
        self.admin.register(address, role, public)
        return Participant(label, self.admin.as_(address), public, secret)

    def register_committee(
        self, threshold: int, public_key: Point, public_shares: Mapping[int, Point]
    ) -> int:
        """Register, fund and stake one node per share; record the committee and its key."""
        for i in sorted(public_shares):
            node = self._participant(f"node-{i}", "node")
            self.admin.mint(node.address, self.node_stake)
            node.client.stake(self.node_stake)
            self.nodes[i] = node
        first = self.nodes[min(self.nodes)].client
        created = first.create_committee(
            [self.nodes[i].address for i in sorted(self.nodes)],
            threshold,
            public_key.encode(),
            [public_shares[i].encode() for i in sorted(self.nodes)],
        )
        self.committee = created.committee_id
        return created.committee_id

    def add_provider(self, name: str) -> Participant:
        if name in self.providers:
            raise ValueError(f"provider {name!r} already registered")
        self.providers[name] = self._participant(f"provider-{name}", "provider")
        return self.providers[name]

    def list_dataset(self, provider: str, schema: bytes, listing: Listing) -> int:
        return self.providers[provider].client.list_dataset(schema, listing).dataset_id

    # -- a query -----------------------------------------------------------------------
    def submit(
        self,
        query_id: bytes,
        datasets: Mapping[str, int],
        rho: float | None,
        operations: Iterable[str],
        receipt: LedgerReceipt,
    ) -> None:
        """Submit the query and escrow its price; a refusal raises the matching error.

        ``datasets`` maps a display name (``provider/table``) to its dataset id.
        """
        if self.committee is None:
            raise LedgerError("no committee registered")
        ops = set(operations)
        kind = query_kind(ops)
        cost = 0 if rho is None else rho_to_micro(rho)
        start = time.perf_counter()
        try:
            txs_before = len(self.analyst.client.gas_log)
            self.analyst.client.submit_query(
                query_id, datasets.values(), self.committee, cost, ops, kind, approve=False
            )
        except LedgerError as exc:
            raise refusal(self.admin, exc, datasets, cost) from exc
        finally:
            receipt.seconds += time.perf_counter() - start
        for tx in self.analyst.client.gas_log[txs_before:]:
            receipt.record(tx.action, tx)

    def settle(
        self,
        record: AggregationRecord,
        verdict: Verdict,
        receipt: LedgerReceipt,
        step: Callable[[str, str, Callable[[], Any]], Any] | None = None,
    ) -> None:
        """Post every party's commitments, the verifiers' verdicts; the quorum settles."""
        qid = record.query.query_id
        run = step or (lambda _role, _who, fn: fn())

        def timed(who: str, label: str, call: Callable[[], Tx]) -> None:
            start = time.perf_counter()
            tx = run("ledger", who, call)
            receipt.seconds += time.perf_counter() - start
            receipt.record(label, tx)

        for vc in record.contributions:
            client = self.providers[vc.provider].client
            digest = codec.contribution_digest(qid, vc)
            timed(
                vc.provider,
                f"contribution/{vc.provider}",
                partial(client.post_contribution, qid, digest),
            )
        noise = {nc.node: nc for nc in [*record.noise, *record.rejected_noise]}
        leader = min(record.used_nodes or self.nodes)
        for i, node in sorted(self.nodes.items()):
            digests: dict[CommitmentKind, bytes] = {}
            if i in noise:
                digests["noise"] = codec.noise_digest(qid, noise[i])
            if i in record.key_switch_shares:
                digests["key_switch"] = codec.key_switch_digest(qid, record.key_switch_shares[i])
            if i == leader:
                digests["aggregate"] = codec.aggregate_digest(qid, record.aggregate)
                digests["proof_bundle"] = codec.record_digest(record)
            if digests:
                timed(
                    f"node-{i}", f"commit/node-{i}", partial(node.client.commit_many, qid, digests)
                )
        if record.release is not None:
            digest = codec.release_digest(qid, record.release)
            timed("analyst", "result", partial(self.analyst.client.post_result, qid, digest))
        # the verifiers: the record against the trail, then the proofs' verdict
        first = self.verifiers[0]
        start = time.perf_counter()
        trail = run("ledger", first.label, partial(first.client.audit_trail, qid))
        receipt.seconds += time.perf_counter() - start
        failures = check_trail(
            trail,
            record,
            {name: p.address for name, p in self.providers.items()},
            {i: n.address for i, n in self.nodes.items()},
            self.analyst.address,
        )
        receipt.trail_failures = tuple(failures)
        passed = verdict.ok and not failures
        cheaters = sorted({*verdict.cheaters, *verdict.noise_cheaters})
        addresses = [self.nodes[i].address for i in cheaters]
        for v in self.verifiers:
            posted: list[bool] = []

            def vote(v: Participant = v, out: list[bool] = posted) -> Tx:
                result = v.client.post_verdict(qid, passed, addresses)
                out.append(result.settled)
                return result.tx

            timed(v.label, f"verdict/{v.label}", vote)
            if posted and posted[0]:
                break
        q = self.admin.query(qid)
        receipt.status, receipt.price, receipt.slashed = q.status, q.price, q.cheaters

    def critical_seconds(self, seconds: Mapping[str, float]) -> float:
        """The ledger's share of a query's latency if every party had its own machine.

        ``seconds`` is per party (as ``settle``'s step reports them): the analyst's
        submission and result, then the slowest provider, node and verifier in turn.
        """
        nodes = {n.label for n in self.nodes.values()}
        verifiers = {v.label for v in self.verifiers}
        providers = set(self.providers)

        def slowest(group: set[str]) -> float:
            return max((t for who, t in seconds.items() if who in group), default=0.0)

        return (
            seconds.get("analyst", 0.0) + slowest(providers) + slowest(nodes) + slowest(verifiers)
        )

    def new_receipt(self, query_id: bytes) -> LedgerReceipt:
        return LedgerReceipt(query_id="0x" + query_id.hex(), status="new", price=0)


def make_listing(
    bounds: Mapping[str, tuple[float, float]],
    *,
    operations: frozenset[str] | None,
    min_cohort: int,
    budget_rho: float,
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
    )
