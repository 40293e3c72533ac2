"""Typed access to the model registry contract (``contracts/model_registry.vy``).

The registry chains each training's rounds by CID: ``(round, CID, parent CID, micro-ρ,
market query)``. Every deployment has one (:attr:`Deployment.model_registry`), bound to
the deployment's market: a round of a *market* training names the training query that
ran it, and the registry reads that query from the market (its kind, its analyst, its
committee, its privacy cost) before it records anything. A *local* training is marked as
such on-chain; its rounds name no query and state their own micro-ρ.

Transactions go through a :class:`~tessera.ledger.LedgerClient` of the acting account,
so they are signed as its other transactions are (an unlocked account or its own key)
and land in its gas log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3

from tessera.errors import LedgerError
from tessera.ledger.client import LedgerClient, QueryId, Tx, _call, query_id_bytes
from tessera.ledger.compile import load_artifact

NO_QUERY = bytes(32)


@dataclass(frozen=True, slots=True)
class ModelRound:
    """One round of a training as the registry holds it (round 0: the initial model)."""

    round: int
    cid: str
    parent: str
    rho_micro: int
    block: int
    #: The market query that ran the round; ``None`` for round 0 and local trainings.
    query_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class Training:
    """A training as the registry opened it."""

    training: bytes
    analyst: str
    committee: int
    local: bool
    rounds: int
    total_rho_micro: int


def training_id_bytes(training: bytes | str) -> bytes:
    """A training id: 32 bytes, or their 64 hex digits (``0x`` optional)."""
    try:
        return query_id_bytes(training)
    except ValueError:
        raise ValueError("a training id is 32 bytes (64 hex digits)") from None


class ModelRegistry:
    """The model registry of ``client``'s deployment (or at ``address``), acting as
    ``client.account``."""

    def __init__(self, client: LedgerClient, address: str | None = None) -> None:
        address = address or client.deployment.model_registry
        if not address:
            raise LedgerError(
                "the deployment record names no model registry (written before the "
                "registry was part of every deployment): deploy again",
                reason="no model registry",
            )
        self.client = client
        self.address = Web3.to_checksum_address(address)
        self.contract: Any = client.chain.w3.eth.contract(
            address=self.address, abi=load_artifact("model_registry").abi
        )

    @property
    def account(self) -> str:
        return self.client.account

    def as_(self, account: str) -> ModelRegistry:
        """The same registry seen by another (unlocked) account."""
        return ModelRegistry(self.client.as_(account), self.address)

    def _send(self, action: str, fn: Any) -> Tx:
        return self.client._transact(action, fn)[0]

    def _call(self, action: str, fn: Any) -> Any:
        return _call(action, lambda: fn.call({"from": self.account}))

    # -- transactions ------------------------------------------------------------------
    def open_training(self, training: bytes, committee: int, cid: str) -> Tx:
        """Open a market training (32-byte id) on ``committee`` with its initial model
        ``cid``; we are its analyst, and every round will name its training query."""
        fn = self.contract.functions.open_training(training_id_bytes(training), committee, cid)
        return self._send("open_training", fn)

    def open_local_training(self, training: bytes, cid: str) -> Tx:
        """Open a training off the market: its rounds name no query (marked local)."""
        fn = self.contract.functions.open_local_training(training_id_bytes(training), cid)
        return self._send("open_local_training", fn)

    def record_round(self, training: bytes, cid: str, parent: str, query_id: QueryId) -> Tx:
        """Append the next round's model on top of ``parent`` (the latest CID) as the round
        market query ``query_id`` ran; its micro-ρ is that query's privacy cost."""
        fn = self.contract.functions.record_round(
            training_id_bytes(training), cid, parent, query_id_bytes(query_id)
        )
        return self._send("record_round", fn)

    def record_local_round(self, training: bytes, cid: str, parent: str, rho_micro: int) -> Tx:
        """Append the next round of a local training, with the micro-ρ we state."""
        fn = self.contract.functions.record_local_round(
            training_id_bytes(training), cid, parent, rho_micro
        )
        return self._send("record_local_round", fn)

    # -- views ------------------------------------------------------------------------
    def market(self) -> str:
        return str(self._call("market", self.contract.functions.market()))

    def rounds(self, training: bytes) -> int:
        """Rounds recorded after the initial model."""
        return int(self._call("rounds_of", self.contract.functions.rounds_of(training)))

    def round_of(self, training: bytes, r: int) -> ModelRound:
        cid, parent, rho, block, qid = self._call(
            "round_of", self.contract.functions.round_of(training, r)
        )
        query = bytes(qid)
        return ModelRound(
            r, str(cid), str(parent), int(rho), int(block), None if query == NO_QUERY else query
        )

    def latest(self, training: bytes) -> str:
        return str(self._call("latest", self.contract.functions.latest(training)))

    def history(self, training: bytes) -> list[ModelRound]:
        """Every round from the initial model to the latest."""
        return [self.round_of(training, r) for r in range(self.rounds(training) + 1)]

    def total_rho_micro(self, training: bytes) -> int:
        fn = self.contract.functions.total_rho_micro(training)
        return int(self._call("total_rho_micro", fn))

    def analyst_of(self, training: bytes) -> str:
        return str(self._call("analyst_of", self.contract.functions.analyst_of(training)))

    def is_local(self, training: bytes) -> bool:
        return bool(self._call("local_of", self.contract.functions.local_of(training)))

    def training_of_query(self, query_id: QueryId) -> bytes | None:
        """The training whose round market query ``query_id`` ran, if any."""
        fn = self.contract.functions.training_of_query(query_id_bytes(query_id))
        got = bytes(self._call("training_of_query", fn))
        return None if got == NO_QUERY else got

    def training(self, training: bytes) -> Training:
        """The training ``training`` (``LedgerError`` "no such training" if none)."""
        tid = training_id_bytes(training)
        analyst = self.analyst_of(tid)
        if int(analyst, 16) == 0:
            raise LedgerError(
                f"no training 0x{tid.hex()} on the registry", reason="no such training"
            )
        committee = int(self._call("committee_of", self.contract.functions.committee_of(tid)))
        return Training(
            tid,
            Web3.to_checksum_address(analyst),
            committee,
            self.is_local(tid),
            self.rounds(tid),
            self.total_rho_micro(tid),
        )

    def trainings(self, from_block: int | None = None) -> list[Training]:
        """Every training opened on this registry (from its ``TrainingOpened`` events)."""
        start = self.client.deployment.block if from_block is None else from_block

        def logs() -> Any:
            return self.contract.events.TrainingOpened.get_logs(from_block=start)

        ids = [bytes(e["args"]["training"]) for e in _call("TrainingOpened", logs)]
        return [self.training(t) for t in dict.fromkeys(ids)]
