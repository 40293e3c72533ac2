"""Typed client of the Tessera contracts: one method per contract action.

A :class:`LedgerClient` acts as one account. Transactions return a :class:`Tx`
(or a small dataclass carrying the value the action produced and its
``Tx``); views return dataclasses. Every revert, RPC or web3 error becomes a
:class:`~tessera.errors.LedgerError` whose ``reason`` is the contract's revert
reason (``"privacy budget exceeded"``, ``"not a verifier"``, ...).

Privacy budgets and costs are integers in micro-units of zCDP ρ
(:func:`rho_to_micro`); prices are integer credit-token units.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.abi import collapse_if_tuple
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.logs import DISCARD

from tessera.errors import ChainUnreachable, LedgerError
from tessera.ledger.chain import Chain
from tessera.ledger.compile import load_artifact
from tessera.ledger.deploy import Deployment
from tessera.ledger.draw import BeaconEntry, EpochRecord, seed_commitment
from tessera.protocol.contribution import WEIGHT_TOTAL

#: Participant roles, as the registry names them.
Role = Literal["provider", "node", "analyst", "verifier"]
ROLES: Final[tuple[Role, ...]] = ("provider", "node", "analyst", "verifier")
_ROLE_IDS: Final[dict[str, bytes]] = {
    role: Web3.keccak(text=f"tessera.{name}")
    for role, name in zip(ROLES, ("PROVIDER", "NODE", "ANALYST", "VERIFIER"), strict=True)
}

#: Operations a policy may allow; bit ``i`` of the on-chain mask is ``OPERATIONS[i]``.
#: Names are :attr:`tessera.analytics.statistic.Statistic.kind`; append only.
OPERATIONS: Final[tuple[str, ...]] = (
    "count",
    "sum",
    "mean",
    "variance",
    "std",
    "histogram",
    "quantile",
    "min",
    "max",
    "covariance",
    "correlation",
    "linear_regression",
    "logistic_regression",
    "model_evaluation",
    "kaplan_meier",
    "set_union",
    "set_intersection",
    "boolean_or",
    "boolean_and",
    "federated_training",
)

#: Kinds of audit-trail commitments (the contract's numbering).
CommitmentKind = Literal[
    "contribution", "aggregate", "noise", "key_switch", "proof_bundle", "result", "exclusion"
]
COMMITMENT_KINDS: Final[tuple[CommitmentKind, ...]] = (
    "contribution",
    "aggregate",
    "noise",
    "key_switch",
    "proof_bundle",
    "result",
    "exclusion",  # a provider looked at its data and left it out (below its minimum cohort)
)
QueryKind = Literal["query", "training"]
#: ``completed``: settled for the workers at its deadline, without a verdict quorum.
QueryStatus = Literal["open", "passed", "failed", "expired", "completed"]
_STATUS: Final[dict[int, QueryStatus]] = {
    1: "open",
    2: "passed",
    3: "failed",
    4: "expired",
    5: "completed",
}

MICRO: Final = 1_000_000
#: A query's dataset entry on the market: the provider's cut << 32 | the dataset id.
_ID_MASK: Final = (1 << 32) - 1
MAX_BOUNDS_BYTES: Final = 512
#: The contracts' limits: members of a committee (``registry.vy``), datasets of a query
#: (``market.vy``, ``catalog.vy``). Over them, the client refuses with the contract's reason.
MAX_MEMBERS: Final = 64
MAX_QUERY_DATASETS: Final = 256
COMMITTEE_TOO_LARGE: Final = f"committee larger than {MAX_MEMBERS} members"
TOO_MANY_DATASETS: Final = f"query over more than {MAX_QUERY_DATASETS} datasets"
#: Gas allowance of every transaction. The costliest, a query over 256 datasets never
#: bought before, needs 18.7M, a settlement batch of 64 first-time providers about
#: 11M; a block holds 30M on the embedded chain and on
#: Hardhat (``docs/ledger.md``, gas).
TX_GAS: Final = 29_000_000
QueryId = bytes | str


def rho_to_micro(rho: float) -> int:
    """A zCDP ρ as the contract's integer micro-units, rounded up (never under-charged)."""
    if not math.isfinite(rho) or rho < 0:
        raise ValueError("rho must be finite and non-negative")
    return math.ceil(round(rho * MICRO, 6))


def operations_mask(operations: Iterable[str]) -> int:
    mask = 0
    for op in operations:
        try:
            mask |= 1 << OPERATIONS.index(op)
        except ValueError:
            raise ValueError(f"unknown operation {op!r}; known: {', '.join(OPERATIONS)}") from None
    return mask


def operations_of(mask: int) -> frozenset[str]:
    return frozenset(op for i, op in enumerate(OPERATIONS) if mask >> i & 1)


def encode_tag(tag: str) -> bytes:
    raw = tag.encode("utf-8")
    if not raw or len(raw) > 32:
        raise ValueError(f"tag {tag!r} must be 1 to 32 bytes of UTF-8")
    return raw.ljust(32, b"\0")


def decode_tag(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


def encode_bounds(bounds: Mapping[str, tuple[float, float]]) -> bytes:
    """Public column bounds as canonical JSON (sorted keys, no spaces)."""
    data = {name: [lo, hi] for name, (lo, hi) in sorted(bounds.items())}
    for name, (lo, hi) in data.items():
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"bounds of {name!r} must be finite with lo <= hi")
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    if len(raw) > MAX_BOUNDS_BYTES:
        raise ValueError(f"bounds take {len(raw)} bytes, at most {MAX_BOUNDS_BYTES} fit on-chain")
    return raw


def decode_bounds(raw: bytes) -> dict[str, tuple[float, float]]:
    if not raw:
        return {}
    return {name: (lo, hi) for name, (lo, hi) in json.loads(raw).items()}


def query_id_bytes(query_id: QueryId) -> bytes:
    if isinstance(query_id, str):
        text = query_id.removeprefix("0x")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
            raise ValueError("a query id is 32 bytes (64 hex digits)")
        return bytes.fromhex(text)
    if len(query_id) != 32:
        raise ValueError("a query id is 32 bytes")
    return bytes(query_id)


def query_id_for(analyst: str, ticket_hash: bytes) -> bytes:
    """The on-chain id of the query ``analyst`` submits with ``ticket_hash``:
    keccak256(analyst's 20 bytes ‖ ticket hash). Bound to its submitter, so nobody can
    take another's query id first."""
    raw = bytes.fromhex(Web3.to_checksum_address(analyst)[2:])
    return bytes(Web3.keccak(raw + _digest(ticket_hash)))


def _digest(value: bytes) -> bytes:
    if len(value) != 32:
        raise ValueError("a commitment is a 32-byte hash")
    return bytes(value)


def _ascending(accounts: Iterable[str]) -> list[str]:
    """Accounts once each, ascending by address: the order the market requires of the
    accounts a verdict names (so that equal verdicts are the same vote)."""
    return sorted({Web3.to_checksum_address(a) for a in accounts}, key=lambda a: int(a, 16))


# -- dataclasses ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tx:
    """A mined transaction: which action, its hash, the gas it used and its block."""

    action: str
    tx_hash: str
    gas_used: int
    block: int


@dataclass(frozen=True, slots=True)
class DatasetListed:
    dataset_id: int
    tx: Tx


@dataclass(frozen=True, slots=True)
class CommitteeEndorsed:
    """One member's endorsement; ``committee_id`` is set once n − t + 1 members endorsed."""

    proposal: bytes
    committee_id: int | None
    tx: Tx


@dataclass(frozen=True, slots=True)
class QuerySubmitted:
    query_id: bytes
    tx: Tx


@dataclass(frozen=True, slots=True)
class MarketParams:
    """Parameters a query takes when it is submitted (governance changes later ones only)."""

    timeout_blocks: int
    verifiers_per_query: int
    lock_fee: int  # credits paid to each committee member at submission, never refunded


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """What :meth:`LedgerClient.withdraw` paid out."""

    amount: int
    tx: Tx


@dataclass(frozen=True, slots=True)
class VerdictPosted:
    settled: bool
    tx: Tx


@dataclass(frozen=True, slots=True)
class ScoresPosted:
    applied: bool  # a majority of the drawn verifiers confirmed: the split is in the entries
    tx: Tx


@dataclass(frozen=True, slots=True)
class Listing:
    """What a provider publishes for a dataset (its policy, in on-chain units)."""

    bounds: Mapping[str, tuple[float, float]]
    tags: Sequence[str] = ()
    operations: frozenset[str] = frozenset(OPERATIONS)
    min_cohort: int = 10
    budget_cap: int = 5 * MICRO  # micro-ρ
    price_per_query: int = 0
    price_per_training: int = 0
    node_share_bps: int = 2_000  # the computing nodes' share of the price, in basis points
    allow_exact: bool = False  # may a query run without noise (privacy cost 0)?

    def __post_init__(self) -> None:
        if len(self.tags) > 8:
            raise ValueError("at most 8 tags")
        if not 0 <= self.node_share_bps <= 10_000:
            raise ValueError("node_share_bps must be in [0, 10000]")
        if self.min_cohort < 1 or self.budget_cap < 0:
            raise ValueError("min_cohort must be positive and budget_cap non-negative")
        if self.price_per_query < 0 or self.price_per_training < 0:
            raise ValueError("prices must be non-negative")


@dataclass(frozen=True, slots=True)
class Dataset:
    dataset_id: int
    provider: str
    schema_hash: bytes
    bounds: dict[str, tuple[float, float]]
    tags: tuple[str, ...]
    operations: frozenset[str]
    min_cohort: int
    budget_cap: int
    budget_spent: int
    price_per_query: int
    price_per_training: int
    node_share_bps: int
    allow_exact: bool
    active: bool
    queries: int
    revenue: int
    buyers: int  # distinct analysts that paid for it
    rating_sum: int
    rating_count: int  # distinct analysts that rated it

    @property
    def budget_remaining(self) -> int:
        return self.budget_cap - self.budget_spent

    @property
    def rating(self) -> float | None:
        return self.rating_sum / self.rating_count if self.rating_count else None


@dataclass(frozen=True, slots=True)
class Query:
    query_id: bytes
    analyst: str
    ticket_hash: bytes
    dataset_ids: tuple[int, ...]
    provider_cuts: tuple[int, ...]  # what each dataset's provider is owed if it contributes
    node_pool: int
    committee: int
    privacy_cost: int
    operations: frozenset[str]
    kind: QueryKind
    price: int
    fee: int
    status: QueryStatus
    submitted_block: int
    deadline: int  # the last block at which work may be committed and verdicts voted
    verifiers_wanted: int
    node_slash: int
    verifier_slash: int
    cheaters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Committee:
    committee_id: int
    members: tuple[str, ...]  # ascending by address: node i is members[i - 1]
    threshold: int
    public_key: bytes
    key_shares: tuple[bytes, ...]

    @property
    def nodes(self) -> dict[int, str]:
        """Each member's account by its node index (1-based, in the registry's order)."""
        return {i: a for i, a in enumerate(self.members, 1)}

    @property
    def shares(self) -> dict[int, bytes]:
        """Each member's public key share by its node index."""
        return {i: k for i, k in enumerate(self.key_shares, 1)}


@dataclass(frozen=True, slots=True)
class Participant:
    address: str
    roles: frozenset[Role]
    public_key: bytes
    stake: int
    locks: int
    reputation: int


@dataclass(frozen=True, slots=True)
class DrawRules:
    """The node pool's rules (governance): cool-down, beacon windows, penalty, committee."""

    cooldown_blocks: int  # a pool node's stake is released this many blocks after it asks
    commit_blocks: int
    reveal_blocks: int
    reveal_penalty: int  # stake burned from a node that committed and did not reveal
    committee_size: int
    threshold: int


@dataclass(frozen=True, slots=True)
class Bond:
    """An account's stake as the node pool sees it."""

    stake: int  # active stake
    unbonding: int  # asked back, still slashable, released at ``release_block``
    release_block: int
    bonded_until: int  # until this block, unstaking waits the cool-down (2**256 - 1: in the pool)
    in_node_pool: bool


@dataclass(frozen=True, slots=True)
class EpochOpened:
    """A new epoch: commits up to block ``commit_end``, reveals after it up to ``reveal_end``."""

    epoch: int
    commit_end: int
    reveal_end: int
    tx: Tx


@dataclass(frozen=True, slots=True)
class CommitteeDrawn:
    """The outcome of ``draw_committee``: the members in draw order (empty if too few
    nodes revealed), the seed, and the nodes penalised for not revealing."""

    epoch: int
    drawn: tuple[str, ...]
    seed: bytes
    missed: tuple[str, ...]
    tx: Tx


_EPOCH_STATUS: Final[dict[int, str]] = {1: "open", 2: "drawn", 3: "failed"}


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """Every hash committed for a query, by kind, then by author."""

    query_id: bytes
    commitments: dict[CommitmentKind, dict[str, bytes]]
    verdicts: int

    def of(self, kind: CommitmentKind) -> dict[str, bytes]:
        return self.commitments.get(kind, {})


@dataclass(frozen=True, slots=True)
class MarketStats:
    volume: int  # credits owed to providers and nodes by settlements (withdrawn or not)
    settled_queries: int
    submitted_queries: int
    escrowed: int
    datasets: int
    top_datasets: tuple[int, ...]


# -- errors ---------------------------------------------------------------------

_T = TypeVar("_T")
_REVERT_PREFIX = re.compile(r"^(?:execution reverted:?\s*)", re.IGNORECASE)


def revert_reason(exc: BaseException) -> str | None:
    """The contract's revert reason carried by a web3 or eth-tester error, if any."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc.args[0]) if exc.args else str(exc)
    message = _REVERT_PREFIX.sub("", message.strip()).strip()
    return message or None


_on_chain = threading.local()
#: Signed sends of one account, one at a time in this process (all its clients share it).
_ACCOUNT_LOCKS: dict[str, threading.Lock] = {}
_ACCOUNT_LOCKS_GUARD = threading.Lock()
#: Each chain's id, by the chain object (weakly: a chain let go is forgotten).
_CHAIN_IDS: weakref.WeakKeyDictionary[Chain, int] = weakref.WeakKeyDictionary()
#: How often a transaction is signed again when another sender took its nonce.
NONCE_RETRIES: Final = 8
_NONCE_CLASH = re.compile(
    r"nonce too low|invalid transaction nonce|already known|replacement", re.I
)


def _account_lock(account: str) -> threading.Lock:
    with _ACCOUNT_LOCKS_GUARD:
        return _ACCOUNT_LOCKS.setdefault(account.lower(), threading.Lock())


def chain_seconds() -> float:
    """Seconds the calling thread has spent waiting for the chain (views and transactions):
    what a caller subtracts to time its own computation apart from the ledger's."""
    seconds: float = getattr(_on_chain, "seconds", 0.0)
    return seconds


def _call(action: str, fn: Callable[[], _T]) -> _T:
    start = time.perf_counter()
    try:
        return fn()
    except ChainUnreachable as exc:  # the endpoint, not the contract: say which call
        raise ChainUnreachable(f"{action}: {exc}", url=exc.url) from exc
    except LedgerError:
        raise
    except Exception as exc:  # web3, eth-tester and py-evm errors have no common base
        reason = revert_reason(exc)
        raise LedgerError(f"{action}: {reason or type(exc).__name__}", reason=reason) from exc
    finally:
        _on_chain.seconds = chain_seconds() + time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class ViewCodec:
    """One view's calldata and answer, encoded and decoded by eth-abi from its ABI entry
    (web3's contract layer normalised every argument and answer through a dozen mapping
    passes: a fifth of a view's time on the embedded chain)."""

    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    output_abi: tuple[Any, ...]

    @classmethod
    def of(cls, abi: Mapping[str, Any]) -> ViewCodec:
        return _view_codec(json.dumps(abi, sort_keys=True))

    def calldata(self, args: Sequence[Any]) -> str:
        return "0x" + (self.selector + abi_encode(self.inputs, args)).hex()

    def answer(self, raw: bytes) -> Any:
        """The decoded answer as web3 gives it: addresses checksummed, one output as
        itself, several as a list."""
        values = abi_decode(self.outputs, raw)
        out = [_checksummed(v, a) for v, a in zip(values, self.output_abi, strict=True)]
        return out[0] if len(out) == 1 else out


@functools.cache
def _view_codec(abi_json: str) -> ViewCodec:
    abi = json.loads(abi_json)
    inputs = tuple(collapse_if_tuple(a) for a in abi["inputs"])
    selector = bytes(Web3.keccak(text=f"{abi['name']}({','.join(inputs)})"))[:4]
    outputs = tuple(collapse_if_tuple(a) for a in abi["outputs"])
    return ViewCodec(selector, inputs, outputs, tuple(abi["outputs"]))


def _checksummed(value: Any, abi: Mapping[str, Any]) -> Any:
    kind = str(abi["type"])
    if kind.endswith("]"):
        inner = {**abi, "type": kind[: kind.rindex("[")]}
        return [_checksummed(v, inner) for v in value]
    if kind == "address":
        return Web3.to_checksum_address(value)
    if kind == "tuple":
        parts = abi["components"]
        return tuple(_checksummed(v, c) for v, c in zip(value, parts, strict=True))
    return value


# -- the client -----------------------------------------------------------------


class LedgerClient:
    """The contracts of one :class:`Deployment`, as seen by ``account``."""

    def __init__(
        self, chain: Chain, deployment: Deployment, account: str, signer: bytes | None = None
    ) -> None:
        """``signer``: the account's private key, to sign transactions here (a chain that
        does not hold the key, such as a served one); else the chain's unlocked account."""
        self.chain = chain
        self.deployment = deployment
        self.account = Web3.to_checksum_address(account)
        self.gas_log: list[Tx] = []
        self._signer: LocalAccount | None = None
        self._committees: dict[int, Committee] = {}  # a committee never changes once created
        #: governance batches this client scheduled and has not executed yet
        self.pending_governance: list[tuple[Any, ...]] = []
        if signer is not None:
            self._signer = Account.from_key(signer)
            if self._signer.address != self.account:
                raise ValueError(f"the signing key is not account {self.account}'s")
        w3 = chain.w3
        self.token: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.token),
            abi=load_artifact("credit_token").abi,
        )
        self.registry: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.registry),
            abi=load_artifact("registry").abi,
        )
        self.market: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.market),
            abi=load_artifact("market").abi,
        )
        self.catalog: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.catalog),
            abi=load_artifact("catalog").abi,
        )
        self.governance: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(deployment.governance),
            abi=load_artifact("governance").abi,
        )

    def forget_committees(self) -> None:
        """Drop the committees this client (and those made by :meth:`as_`) has cached. A
        committee never changes once created, but a chain reverted to a snapshot (a test
        chain, a reorganised one) may reuse its id for another."""
        self._committees.clear()

    def as_(self, account: str) -> LedgerClient:
        """The same deployment seen by another account (shares the gas log)."""
        other = LedgerClient.__new__(LedgerClient)
        other.chain, other.deployment = self.chain, self.deployment
        other.account = Web3.to_checksum_address(account)
        other.gas_log = self.gas_log
        other._signer = None
        other._committees = self._committees
        other.pending_governance = self.pending_governance
        other.token, other.registry, other.market = self.token, self.registry, self.market
        other.catalog = self.catalog
        other.governance = self.governance
        return other

    # -- plumbing -----------------------------------------------------------
    def _transact(self, action: str, fn: ContractFunction) -> tuple[Tx, Any]:
        # A fixed gas allowance skips gas estimation (a dozen EVM runs per transaction
        # on py-evm); a revert then shows as status 0, and replaying the call on the
        # state before the transaction recovers the contract's reason.
        def send() -> Any:
            w3 = self.chain.w3
            if self._signer is None:
                tx_hash = fn.transact({"from": self.account, "gas": TX_GAS})
            else:
                tx_hash = self._send_signed(fn)
            return w3.eth.wait_for_transaction_receipt(tx_hash)

        receipt = _call(action, send)
        if receipt["status"] != 1:
            # Replay the call on the state of the transaction's own block (a reverted
            # transaction changed nothing there): a chain that runs a call at block N
            # with `block.number` N then sees the number the transaction saw, so a
            # check on it (a window that closed with this block) gives its own reason.
            # One that runs it with N + 1 refuses nothing there: then the block before.
            mined = int(receipt["blockNumber"])
            for at in (mined, mined - 1):
                _call(action, functools.partial(fn.call, {"from": self.account}, at))
            raise LedgerError(f"{action}: transaction reverted", reason=None)
        tx = Tx(
            action=action,
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            gas_used=int(receipt["gasUsed"]),
            block=int(receipt["blockNumber"]),
        )
        self.gas_log.append(tx)
        return tx, receipt

    def _send_signed(self, fn: ContractFunction) -> Any:
        """Sign and send with the account's next nonce. One account's transactions are
        serialised within the process (every client of it shares one lock); one sent at
        the same moment from another process takes the nonce first, and then this one is
        signed again with the next nonce, a few times, before giving up with a message
        that says so."""
        w3 = self.chain.w3
        assert self._signer is not None
        lock = _account_lock(self.account)
        for attempt in range(NONCE_RETRIES):
            with lock:
                tx = fn.build_transaction(
                    {
                        "from": self.account,
                        "chainId": self._chain_id(),
                        "gas": TX_GAS,
                        "gasPrice": w3.eth.gas_price,
                        "nonce": w3.eth.get_transaction_count(self.account, "pending"),
                    }
                )
                signed = self._signer.sign_transaction(tx)  # type: ignore[arg-type]
                try:
                    return w3.eth.send_raw_transaction(signed.raw_transaction)
                except Exception as exc:
                    if not _NONCE_CLASH.search(str(exc)):
                        raise
            time.sleep(0.05 * (attempt + 1))
        raise LedgerError(
            f"account {self.account} is sending from elsewhere at the same time: its nonce "
            f"was taken {NONCE_RETRIES} times in a row; send from one process at a time",
            reason=None,
        )

    def _chain_id(self) -> int:
        """The chain's id, asked once per chain (web3 would ask it of every transaction it
        builds: one more round trip each)."""
        with _ACCOUNT_LOCKS_GUARD:
            known = _CHAIN_IDS.get(self.chain)
        if known is None:
            known = int(self.chain.w3.eth.chain_id)
            with _ACCOUNT_LOCKS_GUARD:
                _CHAIN_IDS[self.chain] = known
        return known

    def _tx(self, action: str, fn: ContractFunction) -> Tx:
        return self._transact(action, fn)[0]

    def _view(self, action: str, fn: ContractFunction) -> Any:
        """Run a view at the head, from the deployment's admin whoever asks: no view of
        the contracts reads ``msg.sender`` (tests/ledger/test_ledger_latency.py checks it),
        so every role's read of the same view at the same head is one entry of the
        embedded chain's :class:`~tessera.ledger.chain.ViewCache`."""
        codec = ViewCodec.of(fn.abi)
        call = {"from": self.deployment.admin, "to": fn.address, "data": codec.calldata(fn.args)}

        def run() -> Any:
            return codec.answer(bytes(self.chain.w3.eth.call(call, "latest")))  # type: ignore[arg-type]

        return _call(action, run)

    def block_number(self) -> int:
        """The chain's head block; :class:`~tessera.errors.ChainUnreachable` if it is down."""
        return int(_call("block_number", lambda: self.chain.w3.eth.block_number))

    # -- credit token ---------------------------------------------------------
    def mint(self, to: str, amount: int) -> Tx:
        """Token owner: create ``amount`` credits for ``to``."""
        return self._tx("mint", self.token.functions.mint(Web3.to_checksum_address(to), amount))

    def transfer(self, to: str, amount: int) -> Tx:
        fn = self.token.functions.transfer(Web3.to_checksum_address(to), amount)
        return self._tx("transfer", fn)

    def approve(self, spender: str, amount: int) -> Tx:
        fn = self.token.functions.approve(Web3.to_checksum_address(spender), amount)
        return self._tx("approve", fn)

    def balance(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account or self.account)
        return int(self._view("balanceOf", self.token.functions.balanceOf(who)))

    def allowance(self, spender: str, owner: str | None = None) -> int:
        fn = self.token.functions.allowance(
            Web3.to_checksum_address(owner or self.account), Web3.to_checksum_address(spender)
        )
        return int(self._view("allowance", fn))

    def total_supply(self) -> int:
        return int(self._view("totalSupply", self.token.functions.totalSupply()))

    def _ensure_allowance(self, spender: str, amount: int) -> None:
        if amount > 0 and self.allowance(spender) < amount:
            self.approve(spender, amount)

    # -- governance -----------------------------------------------------------
    def govern(self, action: str, calls: Sequence[tuple[Contract, str, list[Any]]]) -> Tx:
        """Admin (the timelock's proposer and executor): schedule ``calls`` as one
        timelocked batch, and run it at once if the governance delay is zero.

        With a delay the batch is only scheduled: :meth:`execute_governance` runs it once
        the delay has passed (a pending batch is public, and the canceller may cancel it).
        """
        targets = [c.address for c, _, _ in calls]
        payloads = [bytes.fromhex(c.encode_abi(name, args)[2:]) for c, name, args in calls]
        salt = os.urandom(32)
        delay = self.governance_delay()
        f = self.governance.functions
        args = (targets, [0] * len(calls), payloads, b"\0" * 32, salt)
        tx = self._tx(f"schedule_{action}", f.schedule_batch(*args, delay))
        if delay > 0:
            self.pending_governance.append(args)
            return tx
        return self._tx(action, f.execute_batch(*args))

    def execute_governance(self, action: str = "governance") -> Tx:
        """Run the oldest governance batch this client scheduled (its delay must be over)."""
        if not self.pending_governance:
            raise LedgerError("no governance action is pending", reason=None)
        tx = self._tx(action, self.governance.functions.execute_batch(*self.pending_governance[0]))
        self.pending_governance.pop(0)
        return tx

    def governance_delay(self) -> int:
        return int(self._view("get_minimum_delay", self.governance.functions.get_minimum_delay()))

    # -- registry -------------------------------------------------------------
    def register(self, account: str, role: Role, public_key: bytes = b"") -> Tx:
        """Admin, through governance: give ``account`` a role and record its 33-byte key."""
        return self.register_many([(account, role, public_key)])

    def register_many(self, entries: Sequence[tuple[str, Role, bytes]]) -> Tx:
        """Admin, through governance: several registrations in one timelocked batch."""
        calls: list[tuple[Contract, str, list[Any]]] = []
        for account, role, public_key in entries:
            if role not in _ROLE_IDS:
                raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
            address = Web3.to_checksum_address(account)
            calls.append((self.registry, "register", [address, _ROLE_IDS[role], public_key]))
        return self.govern("register", calls)

    def deregister(self, account: str, role: Role) -> Tx:
        """Admin, through governance: take a role away."""
        address = Web3.to_checksum_address(account)
        return self.govern(
            "deregister", [(self.registry, "revokeRole", [_ROLE_IDS[role], address])]
        )

    def set_stake_rules(self, min_stake: int, slash_amount: int) -> Tx:
        """Admin, through governance: stake rules for queries submitted from then on."""
        return self.govern(
            "set_stake_rules", [(self.registry, "set_stake_rules", [min_stake, slash_amount])]
        )

    def set_params(self, timeout_blocks: int, verifiers_per_query: int, lock_fee: int) -> Tx:
        """Admin, through governance: market parameters for queries submitted from then on."""
        return self.govern(
            "set_params",
            [(self.market, "set_params", [timeout_blocks, verifiers_per_query, lock_fee])],
        )

    def params(self) -> MarketParams:
        timeout, wanted, fee = self._view("params", self.market.functions.params())
        return MarketParams(int(timeout), int(wanted), int(fee))

    def has_role(self, role: Role, account: str | None = None) -> bool:
        who = Web3.to_checksum_address(account or self.account)
        return bool(self._view("hasRole", self.registry.functions.hasRole(_ROLE_IDS[role], who)))

    def stake(self, amount: int) -> Tx:
        """Computing node or verifier: lock ``amount`` credits as stake (approves the
        registry if needed)."""
        self._ensure_allowance(self.deployment.registry, amount)
        return self._tx("stake", self.registry.functions.stake(amount))

    def unstake(self, amount: int) -> Tx:
        return self._tx("unstake", self.registry.functions.unstake(amount))

    def participant(self, account: str | None = None) -> Participant:
        who = Web3.to_checksum_address(account or self.account)
        f = self.registry.functions
        return Participant(
            address=who,
            roles=frozenset(r for r in ROLES if self.has_role(r, who)),
            public_key=bytes(self._view("public_key", f.public_key(who))),
            stake=int(self._view("stakes", f.stakes(who))),
            locks=int(self._view("locks", f.locks(who))),
            reputation=int(self._view("reputation", f.reputation(who))),
        )

    def total_staked(self) -> int:
        return int(self._view("total_staked", self.registry.functions.total_staked()))

    def burned(self) -> int:
        """Stake slashed so far: burned, held by the registry, withdrawable by nobody."""
        return int(self._view("burned", self.registry.functions.burned()))

    def join_pool(self) -> Tx:
        """Verifier: offer itself to be drawn for queries (needs the minimum stake)."""
        return self._tx("join_pool", self.registry.functions.join_pool())

    def leave_pool(self) -> Tx:
        return self._tx("leave_pool", self.registry.functions.leave_pool())

    def verifier_pool(self) -> list[str]:
        return [
            Web3.to_checksum_address(a) for a in self._view("pool", self.registry.functions.pool())
        ]

    def endorse_committee(
        self,
        members: Sequence[str],
        threshold: int,
        public_key: bytes,
        key_shares: Sequence[bytes],
    ) -> CommitteeEndorsed:
        """Member: endorse a committee and its DKG public key and shares (members in any
        order). The committee forms when n − t + 1 members have endorsed the same."""
        if len(members) != len(key_shares):
            raise ValueError("one key share per member")
        if len(members) > MAX_MEMBERS:
            raise LedgerError(
                f"endorse_committee: {COMMITTEE_TOO_LARGE}", reason=COMMITTEE_TOO_LARGE
            )
        pairs = sorted(
            zip((Web3.to_checksum_address(m) for m in members), key_shares, strict=True),
            key=lambda p: int(p[0], 16),
        )
        fn = self.registry.functions.endorse_committee(
            [m for m, _ in pairs], threshold, public_key, [bytes(k) for _, k in pairs]
        )
        tx, receipt = self._transact("endorse_committee", fn)
        endorsed = self.registry.events.CommitteeEndorsed().process_receipt(receipt, errors=DISCARD)
        created = self.registry.events.CommitteeCreated().process_receipt(receipt, errors=DISCARD)
        proposal = bytes(endorsed[0]["args"]["proposal"])
        cid: int | None = int(created[0]["args"]["committee_id"]) if created else None
        if cid is None:  # formed earlier (a late endorsement), or not yet
            try:
                cid = self.committee_of(proposal)
            except LedgerError:
                cid = None
        return CommitteeEndorsed(proposal=proposal, committee_id=cid, tx=tx)

    def committee_of(self, proposal: bytes) -> int:
        """The id of the committee formed from ``proposal`` (LedgerError if not yet)."""
        return int(self._view("committee_of", self.registry.functions.committee_of(proposal)))

    def committee(self, committee_id: int) -> Committee:
        known = self._committees.get(committee_id)
        if known is not None:
            return known
        raw = self._view("committee", self.registry.functions.committee(committee_id))
        members, threshold, public_key, shares = raw
        self._committees[committee_id] = Committee(
            committee_id=committee_id,
            members=tuple(Web3.to_checksum_address(m) for m in members),
            threshold=int(threshold),
            public_key=bytes(public_key),
            key_shares=tuple(bytes(s) for s in shares),
        )
        return self._committees[committee_id]

    # -- the node pool, its beacon and the epoch committees ----------------------------
    def set_draw_rules(self, rules: DrawRules) -> Tx:
        """Admin, through governance: the node pool's cool-down, beacon windows, reveal
        penalty, and the size and threshold of the committees drawn from then on."""
        args = [
            (
                rules.cooldown_blocks,
                rules.commit_blocks,
                rules.reveal_blocks,
                rules.reveal_penalty,
                rules.committee_size,
                rules.threshold,
            )
        ]
        return self.govern("set_draw_rules", [(self.registry, "set_draw_rules", args)])

    def draw_rules(self) -> DrawRules:
        raw = self._view("draw_rules", self.registry.functions.draw_rules())
        return DrawRules(*(int(x) for x in raw))

    def join_node_pool(self) -> Tx:
        """Computing node (with the minimum stake): offer itself to epoch committee draws.
        From then on its stake is released only after the cool-down."""
        return self._tx("join_node_pool", self.registry.functions.join_node_pool())

    def leave_node_pool(self) -> Tx:
        """Leave the node pool; the stake stays bonded for the cool-down."""
        return self._tx("leave_node_pool", self.registry.functions.leave_node_pool())

    def node_pool(self) -> list[str]:
        raw = self._view("node_pool_members", self.registry.functions.node_pool_members())
        return [Web3.to_checksum_address(a) for a in raw]

    def withdraw_stake(self) -> Tx:
        """Release the stake asked back with :meth:`unstake` once its cool-down is over
        (the registry's ``withdraw``; :meth:`withdraw` takes what settlements owe)."""
        return self._tx("withdraw_stake", self.registry.functions.withdraw())

    def bond(self, account: str | None = None) -> Bond:
        who = Web3.to_checksum_address(account or self.account)
        f = self.registry.functions
        return Bond(
            stake=int(self._view("stakes", f.stakes(who))),
            unbonding=int(self._view("unbonding", f.unbonding(who))),
            release_block=int(self._view("release_block", f.release_block(who))),
            bonded_until=int(self._view("bonded_until", f.bonded_until(who))),
            in_node_pool=bool(self._view("in_node_pool", f.in_node_pool(who))),
        )

    def draw_weight(self, stake: int, reputation: int) -> int:
        """The contract's weight of a node with ``stake`` and ``reputation``."""
        return int(self._view("weight", self.registry.functions.weight(stake, reputation)))

    def open_epoch(self) -> EpochOpened:
        """Anyone: open the next epoch (its beacon's commit window starts now)."""
        tx, receipt = self._transact("open_epoch", self.registry.functions.open_epoch())
        args = self.registry.events.EpochOpened().process_receipt(receipt, errors=DISCARD)[0][
            "args"
        ]
        return EpochOpened(
            epoch=int(args["epoch"]),
            commit_end=int(args["commit_end"]),
            reveal_end=int(args["reveal_end"]),
            tx=tx,
        )

    def commit_seed(self, epoch: int, secret: bytes) -> Tx:
        """Pool node: commit to ``secret`` (32 bytes, kept until :meth:`reveal_seed`)."""
        commitment = seed_commitment(secret, self.account, epoch)
        return self._tx("commit_seed", self.registry.functions.commit_seed(epoch, commitment))

    def reveal_seed(self, epoch: int, secret: bytes) -> Tx:
        return self._tx("reveal_seed", self.registry.functions.reveal_seed(epoch, secret))

    def draw_committee(self, epoch: int) -> CommitteeDrawn:
        """Anyone, after the reveal window: penalise the nodes that did not reveal and draw."""
        tx, receipt = self._transact(
            "draw_committee", self.registry.functions.draw_committee(epoch)
        )
        ev = self.registry.events
        missed = tuple(
            Web3.to_checksum_address(e["args"]["node"])
            for e in ev.RevealMissed().process_receipt(receipt, errors=DISCARD)
        )
        drawn: tuple[str, ...] = ()
        for e in ev.CommitteeDrawn().process_receipt(receipt, errors=DISCARD):
            drawn = tuple(Web3.to_checksum_address(a) for a in e["args"]["drawn"])
        seed = bytes(self._view("epoch", self.registry.functions.epoch(epoch))[5])
        return CommitteeDrawn(epoch=epoch, drawn=drawn, seed=seed, missed=missed, tx=tx)

    def epoch_count(self) -> int:
        return int(self._view("epoch_count", self.registry.functions.epoch_count()))

    def epoch(self, epoch: int) -> EpochRecord:
        """Everything the registry holds about ``epoch``'s beacon and draw: enough for
        :func:`tessera.ledger.draw.redraw` to recompute the committee."""
        f = self.registry.functions
        size, threshold, commit_end, reveal_end, _mix, seed, status, committee = self._view(
            "epoch", f.epoch(epoch)
        )
        entries = []
        for raw in self._view("epoch_participants", f.epoch_participants(epoch)):
            node = Web3.to_checksum_address(raw)
            commitment, stake, reputation, revealed, secret = self._view(
                "beacon_entry", f.beacon_entry(epoch, node)
            )
            entries.append(
                BeaconEntry(
                    node=node,
                    commitment=bytes(commitment),
                    stake=int(stake),
                    reputation=int(reputation),
                    secret=bytes(secret) if revealed else None,
                )
            )
        drawn = tuple(Web3.to_checksum_address(a) for a in self._view("drawn", f.drawn(epoch)))
        return EpochRecord(
            epoch=epoch,
            size=int(size),
            threshold=int(threshold),
            commit_end=int(commit_end),
            reveal_end=int(reveal_end),
            status=_EPOCH_STATUS.get(int(status), "unknown"),
            seed=bytes(seed),
            entries=tuple(entries),
            drawn=drawn,
            committee_id=int(committee) - 1 if int(committee) else None,
        )

    def endorse_drawn_committee(
        self, epoch: int, public_key: bytes, key_shares: Sequence[bytes]
    ) -> CommitteeEndorsed:
        """Drawn member: endorse the epoch committee's DKG result. The members are the
        drawn nodes in ascending address order (node ``i`` is the ``i``-th); ``key_shares``
        are their public key shares in that order."""
        fn = self.registry.functions.endorse_drawn_committee(
            epoch, public_key, [bytes(k) for k in key_shares]
        )
        tx, receipt = self._transact("endorse_drawn_committee", fn)
        endorsed = self.registry.events.CommitteeEndorsed().process_receipt(receipt, errors=DISCARD)
        proposal = bytes(endorsed[0]["args"]["proposal"])
        cid: int | None
        try:
            cid = self.epoch_committee(epoch)
        except LedgerError:
            cid = None
        return CommitteeEndorsed(proposal=proposal, committee_id=cid, tx=tx)

    def epoch_committee(self, epoch: int) -> int:
        """The committee the epoch's drawn members formed (LedgerError if none yet)."""
        return int(self._view("epoch_committee", self.registry.functions.epoch_committee(epoch)))

    # -- catalog and market ---------------------------------------------------------
    @staticmethod
    def _listing_args(listing: Listing) -> list[Any]:
        return [
            encode_bounds(listing.bounds),
            [encode_tag(t) for t in listing.tags],
            operations_mask(listing.operations),
            listing.min_cohort,
            listing.budget_cap,
            listing.price_per_query,
            listing.price_per_training,
            listing.node_share_bps,
            listing.allow_exact,
        ]

    def list_dataset(self, schema_hash: bytes, listing: Listing) -> DatasetListed:
        fn = self.catalog.functions.list_dataset(_digest(schema_hash), *self._listing_args(listing))
        tx, receipt = self._transact("list_dataset", fn)
        event = self.catalog.events.DatasetListed().process_receipt(receipt, errors=DISCARD)
        return DatasetListed(dataset_id=int(event[0]["args"]["dataset_id"]), tx=tx)

    def update_dataset(self, dataset_id: int, listing: Listing) -> Tx:
        fn = self.catalog.functions.update_dataset(dataset_id, *self._listing_args(listing))
        return self._tx("update_dataset", fn)

    def delist_dataset(self, dataset_id: int) -> Tx:
        return self._tx("delist_dataset", self.catalog.functions.delist_dataset(dataset_id))

    def dataset(self, dataset_id: int) -> Dataset:
        raw = self._view("dataset", self.catalog.functions.dataset(dataset_id))
        (provider, schema, bounds, tags, ops, cohort, cap, spent) = raw[:8]
        (pq, pt, share, exact, active, queries, revenue, buyers, rsum, rcount) = raw[8:]
        return Dataset(
            dataset_id=dataset_id,
            provider=Web3.to_checksum_address(provider),
            schema_hash=bytes(schema),
            bounds=decode_bounds(bytes(bounds)),
            tags=tuple(decode_tag(bytes(t)) for t in tags),
            operations=operations_of(int(ops)),
            min_cohort=int(cohort),
            budget_cap=int(cap),
            budget_spent=int(spent),
            price_per_query=int(pq),
            price_per_training=int(pt),
            node_share_bps=int(share),
            allow_exact=bool(exact),
            active=bool(active),
            queries=int(queries),
            revenue=int(revenue),
            buyers=int(buyers),
            rating_sum=int(rsum),
            rating_count=int(rcount),
        )

    def dataset_count(self) -> int:
        return int(self._view("dataset_count", self.catalog.functions.dataset_count()))

    def search(self, tag: str) -> list[int]:
        """Ids of the listed datasets carrying ``tag``."""
        raw = encode_tag(tag)
        f = self.catalog.functions
        size = int(self._view("tag_size", f.tag_size(raw)))
        found: list[int] = []
        for start in range(0, size, 128):  # the index is paged: nobody can fill it
            found.extend(int(i) for i in self._view("search_by_tag", f.search_by_tag(raw, start)))
        return sorted(found)

    def top_datasets(self, k: int = 10) -> list[int]:
        """Up to ``k`` (≤ 16) dataset ids by distinct paying analysts, then revenue."""
        return [int(i) for i in self._view("top_datasets", self.catalog.functions.top_datasets(k))]

    def rate(self, query_id: QueryId, dataset_id: int, stars: int) -> Tx:
        fn = self.market.functions.rate(query_id_bytes(query_id), dataset_id, stars)
        return self._tx("rate", fn)

    def provider_revenue(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account or self.account)
        return int(self._view("provider_revenue", self.market.functions.provider_revenue(who)))

    def node_revenue(self, account: str | None = None) -> int:
        who = Web3.to_checksum_address(account or self.account)
        return int(self._view("node_revenue", self.market.functions.node_revenue(who)))

    def stats(self, top: int = 5) -> MarketStats:
        f = self.market.functions
        return MarketStats(
            volume=int(self._view("total_volume", f.total_volume())),
            settled_queries=int(self._view("settled_queries", f.settled_queries())),
            submitted_queries=int(self._view("query_count", f.query_count())),
            escrowed=int(self._view("escrowed", f.escrowed())),
            datasets=self.dataset_count(),
            top_datasets=tuple(self.top_datasets(top)),
        )

    # -- queries --------------------------------------------------------------
    def quote(self, dataset_ids: Iterable[int], kind: QueryKind = "query") -> int:
        """The price a query over ``dataset_ids`` would escrow now."""
        total = 0
        for d in set(dataset_ids):
            ds = self.dataset(d)
            total += ds.price_per_training if kind == "training" else ds.price_per_query
        return total

    def submit_query(
        self,
        ticket_hash: bytes,
        dataset_ids: Iterable[int],
        committee: int,
        privacy_cost: int,
        operations: Iterable[str],
        kind: QueryKind = "query",
        *,
        approve: bool = True,
    ) -> QuerySubmitted:
        """Analyst: submit the query whose ticket hashes to ``ticket_hash``, escrow its
        price and pay the committee's lock fee. Its id is :func:`query_id_for` of this
        account and ``ticket_hash``.

        ``privacy_cost`` is in micro-ρ and is charged to every dataset's budget. With
        ``approve`` the client first reads the price and fee and approves the market for
        them if the allowance falls short; an analyst who approved the market once for a
        large amount passes ``approve=False`` and saves those calls.
        """
        ids = sorted(set(dataset_ids))
        if len(ids) > MAX_QUERY_DATASETS:
            raise LedgerError(
                f"submit_query: {TOO_MANY_DATASETS} ({len(ids)})", reason=TOO_MANY_DATASETS
            )
        if approve:
            fee = self.params().lock_fee * len(self.committee(committee).members)
            self._ensure_allowance(self.deployment.market, self.quote(ids, kind) + fee)
        fn = self.market.functions.submit_query(
            _digest(ticket_hash),
            ids,
            committee,
            privacy_cost,
            operations_mask(operations),
            1 if kind == "training" else 0,
        )
        tx = self._tx("submit_query", fn)
        return QuerySubmitted(query_id_for(self.account, ticket_hash), tx)

    def query(self, query_id: QueryId) -> Query:
        qid = query_id_bytes(query_id)
        raw = self._view("query", self.market.functions.query(qid))
        (analyst, ticket, _count, pool, committee, cost, ops, kind) = raw[:8]
        (price, fee, status, block, deadline, wanted, node_slash, verifier_slash) = raw[8:16]
        cheaters = raw[16]
        entries = [
            int(e) for e in self._view("query_datasets", self.market.functions.query_datasets(qid))
        ]
        return Query(
            query_id=qid,
            analyst=Web3.to_checksum_address(analyst),
            ticket_hash=bytes(ticket),
            dataset_ids=tuple(e & _ID_MASK for e in entries),
            provider_cuts=tuple(e >> 32 for e in entries),
            node_pool=int(pool),
            committee=int(committee),
            privacy_cost=int(cost),
            operations=operations_of(int(ops)),
            kind="training" if int(kind) == 1 else "query",
            price=int(price),
            fee=int(fee),
            status=_STATUS[int(status)],
            submitted_block=int(block),
            deadline=int(deadline),
            verifiers_wanted=int(wanted),
            node_slash=int(node_slash),
            verifier_slash=int(verifier_slash),
            cheaters=tuple(Web3.to_checksum_address(c) for c in cheaters),
        )

    # -- audit trail ----------------------------------------------------------------
    def commit(self, query_id: QueryId, kind: CommitmentKind, digest: bytes) -> Tx:
        fn = self.market.functions.commit(
            query_id_bytes(query_id), COMMITMENT_KINDS.index(kind), _digest(digest)
        )
        return self._tx(f"commit_{kind}", fn)

    def commit_many(self, query_id: QueryId, digests: Mapping[CommitmentKind, bytes]) -> Tx:
        """Several commitments of this account in one transaction."""
        if not digests:
            raise ValueError("nothing to commit")
        kinds = list(digests)
        fn = self.market.functions.commit_many(
            query_id_bytes(query_id),
            [COMMITMENT_KINDS.index(k) for k in kinds],
            [_digest(digests[k]) for k in kinds],
        )
        return self._tx("commit_" + "+".join(kinds), fn)

    def post_contribution(self, query_id: QueryId, digest: bytes) -> Tx:
        """Provider: the hash of its (encrypted, proven) contribution."""
        return self.commit(query_id, "contribution", digest)

    def post_aggregate(self, query_id: QueryId, digest: bytes) -> Tx:
        return self.commit(query_id, "aggregate", digest)

    def post_noise(self, query_id: QueryId, digest: bytes) -> Tx:
        """Computing node: the hash of its encrypted noise term and its proof."""
        return self.commit(query_id, "noise", digest)

    def post_key_switch(self, query_id: QueryId, digest: bytes) -> Tx:
        return self.commit(query_id, "key_switch", digest)

    def post_proof_bundle(self, query_id: QueryId, digest: bytes) -> Tx:
        return self.commit(query_id, "proof_bundle", digest)

    def post_result(self, query_id: QueryId, digest: bytes) -> Tx:
        """Analyst: the hash of the released result (with its decryption proof)."""
        return self.commit(query_id, "result", digest)

    def audit_trail(self, query_id: QueryId, *, verdicts: bool = True) -> AuditTrail:
        """Every commitment of a query; its verdict count too unless ``verdicts=False``
        (then ``AuditTrail.verdicts`` is -1; one view instead of two)."""
        qid = query_id_bytes(query_id)
        f = self.market.functions
        trail: dict[CommitmentKind, dict[str, bytes]] = {}
        for kind, author, digest in self._view("trail", f.trail(qid)):
            trail.setdefault(COMMITMENT_KINDS[int(kind)], {})[Web3.to_checksum_address(author)] = (
                bytes(digest)
            )
        count = int(self._view("verdict_count", f.verdict_count(qid))) if verdicts else -1
        return AuditTrail(query_id=qid, commitments=trail, verdicts=count)

    # -- verifiers, verdicts and settlement ----------------------------------------------
    def verifiers_of(self, query_id: QueryId) -> list[str]:
        """The verifiers drawn for a query (empty until drawn: at its first commitment
        after its submission block, or its first vote)."""
        raw = self._view(
            "verifiers_of", self.market.functions.verifiers_of(query_id_bytes(query_id))
        )
        return [Web3.to_checksum_address(a) for a in raw]

    def quorum(self, query_id: QueryId) -> int:
        """Votes that settle a query: a majority of its drawn verifiers."""
        return len(self.verifiers_of(query_id)) // 2 + 1

    def work_complete(self, query_id: QueryId) -> bool:
        """Whether a query's work is on its trail (its price is then owed to the workers)."""
        fn = self.market.functions.work_complete(query_id_bytes(query_id))
        return bool(self._view("work_complete", fn))

    def post_verdict(
        self,
        query_id: QueryId,
        passed: bool,
        cheaters: Iterable[str] = (),
        withheld: Iterable[str] = (),
    ) -> VerdictPosted:
        """Drawn verifier: vote a verdict (passed or not, the committee members proven to
        have cheated, the providers whose committed contribution the record leaves out as
        withheld); the query settles when a majority agrees on the same verdict, and then
        pays no withheld provider its cut (it goes back to the analyst). A query over
        more than 64 datasets then credits its providers in further transactions
        (:meth:`settle`), which this one sends."""
        fn = self.market.functions.post_verdict(
            query_id_bytes(query_id), passed, _ascending(cheaters), _ascending(withheld)
        )
        tx, receipt = self._transact("post_verdict", fn)
        settled = bool(self.market.events.QuerySettled().process_receipt(receipt, errors=DISCARD))
        if settled:
            self._settle_rest(receipt)
        return VerdictPosted(settled=settled, tx=tx)

    def post_scores(self, query_id: QueryId, digest: bytes, weights: Sequence[int]) -> ScoresPosted:
        """Drawn verifier of a training query: confirm its contribution scores (the score
        record's digest, one integer weight per dataset in the query's order, summing to
        :data:`WEIGHT_TOTAL` or all 0), before the verdict; at a majority the providers'
        escrow is split by weight (``applied``: whether this confirmation did it)."""
        weights = [int(w) for w in weights]
        if any(w < 0 for w in weights):
            raise ValueError("a contribution weight is negative")
        if sum(weights) not in (0, WEIGHT_TOTAL):
            raise ValueError(f"contribution weights sum to {sum(weights)}, not {WEIGHT_TOTAL} or 0")
        fn = self.market.functions.post_scores(query_id_bytes(query_id), _digest(digest), weights)
        tx, receipt = self._transact("post_scores", fn)
        applied = self.market.events.ScoresApplied().process_receipt(receipt, errors=DISCARD)
        return ScoresPosted(applied=bool(applied), tx=tx)

    def scores_applied(self, query_id: QueryId) -> bool:
        """Whether a training query's providers' escrow is split by confirmed scores."""
        return bool(self._view("scored", self.market.functions.scored(query_id_bytes(query_id))))

    def _settle_rest(self, receipt: Any) -> None:
        """Send :meth:`settle` until every provider of the query ``receipt`` closed is
        credited (its ``ProvidersSettled`` event says how many are left)."""
        events = self.market.events.ProvidersSettled().process_receipt(receipt, errors=DISCARD)
        if not events or int(events[-1]["args"]["remaining"]) == 0:
            return
        qid = bytes(events[-1]["args"]["query_id"])
        while self.settle(qid) > 0:
            pass

    def settle(self, query_id: QueryId) -> int:
        """Anyone: credit the next 64 providers of a settled query over more datasets than
        its verdict credited (``"nothing left to settle"`` once all are); how many are
        left."""
        qid = query_id_bytes(query_id)
        _tx, receipt = self._transact("settle", self.market.functions.settle(qid))
        events = self.market.events.ProvidersSettled().process_receipt(receipt, errors=DISCARD)
        return int(events[-1]["args"]["remaining"])

    def unsettled(self, query_id: QueryId) -> int:
        """Datasets of a query whose providers are not credited (or refunded) yet."""
        fn = self.market.functions.unsettled(query_id_bytes(query_id))
        return int(self._view("unsettled", fn))

    def expire(self, query_id: QueryId) -> Tx:
        """Anyone, after a query's deadline: settle it without a verdict quorum (the workers
        are paid if the work is on the trail, else the analyst is refunded what was not
        used)."""
        tx, receipt = self._transact(
            "expire", self.market.functions.expire(query_id_bytes(query_id))
        )
        self._settle_rest(receipt)
        return tx

    def escrowed(self) -> int:
        return int(self._view("escrowed", self.market.functions.escrowed()))

    # -- pull payments ------------------------------------------------------------------
    def owed(self, account: str | None = None) -> int:
        """Credits settlements owe ``account`` (default: this one), not yet withdrawn: its
        providers' cuts, node shares and, for an analyst, refunds."""
        who = Web3.to_checksum_address(account or self.account)
        return int(self._view("owed", self.market.functions.owed(who)))

    def total_owed(self) -> int:
        """Credits owed to every account; the market holds ``escrowed() + total_owed()``."""
        return int(self._view("total_owed", self.market.functions.total_owed()))

    def withdraw(self) -> Withdrawal:
        """Take every credit settlements owe this account. Refused (``LedgerError``,
        reason ``"nothing owed to this account"``) when nothing is owed, so a second
        withdrawal pays nothing."""
        tx, receipt = self._transact("withdraw", self.market.functions.withdraw())
        events = self.market.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
        return Withdrawal(amount=int(events[0]["args"]["amount"]), tx=tx)


@dataclass
class GasReport:
    """Gas per action over a client's log (mean over repeated actions)."""

    per_action: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, txs: Iterable[Tx]) -> GasReport:
        report = cls()
        for tx in txs:
            report.per_action.setdefault(tx.action, []).append(tx.gas_used)
        return report

    def mean(self) -> dict[str, int]:
        return {a: round(sum(v) / len(v)) for a, v in self.per_action.items()}
