"""Typed access to the model registry contract (``contracts/model_registry.vy``).

The registry chains each training's rounds by CID: ``(round, CID, parent CID, micro-ρ)``.
It is deployed on its own (the market is near the EIP-170 size limit); a deployment
record does not name it yet, so its address is passed around explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera.errors import LedgerError
from tessera.ledger.chain import Chain
from tessera.ledger.client import TX_GAS, revert_reason
from tessera.ledger.compile import load_artifact


@dataclass(frozen=True, slots=True)
class ModelRound:
    """One round of a training as the registry holds it (round 0: the initial model)."""

    round: int
    cid: str
    parent: str
    rho_micro: int
    block: int


def deploy_model_registry(chain: Chain, sender: str) -> str:
    """Deploy a model registry from ``sender``; its address."""
    artifact = load_artifact("model_registry")
    w3 = chain.w3
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    try:
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor().transact({"from": sender})
        )
    except Exception as exc:
        raise LedgerError(f"deploying model_registry failed: {exc}") from exc
    address = receipt["contractAddress"]
    if receipt["status"] != 1 or address is None:
        raise LedgerError("deploying model_registry failed")
    return str(address)


class ModelRegistry:
    """The registry at ``address``, acting as ``account``."""

    def __init__(self, chain: Chain, address: str, account: str) -> None:
        self.chain, self.address, self.account = chain, address, account
        self._contract: Any = chain.w3.eth.contract(  # type: ignore[call-overload]
            address=address, abi=load_artifact("model_registry").abi
        )

    def _send(self, fn: Any) -> str:
        w3 = self.chain.w3
        try:
            tx_hash = fn.transact({"from": self.account, "gas": TX_GAS})
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        except Exception as exc:
            raise LedgerError(str(exc), reason=revert_reason(exc)) from exc
        if receipt["status"] != 1:
            try:  # replay the call for its reason
                fn.call({"from": self.account}, block_identifier=int(receipt["blockNumber"]) - 1)
            except Exception as exc:
                raise LedgerError(str(exc), reason=revert_reason(exc)) from exc
            raise LedgerError("transaction reverted", reason=None)
        return str(tx_hash.hex())

    def _call(self, fn: Any) -> Any:
        try:
            return fn.call({"from": self.account})
        except Exception as exc:
            raise LedgerError(str(exc), reason=revert_reason(exc)) from exc

    def open_training(self, training: bytes, committee: int, cid: str) -> str:
        """Open ``training`` (32 bytes) with its initial model ``cid``; we are its analyst."""
        return self._send(self._contract.functions.open_training(training, committee, cid))

    def record_round(self, training: bytes, cid: str, parent: str, rho_micro: int) -> str:
        """Append the next round's model on top of ``parent`` (the latest CID)."""
        return self._send(self._contract.functions.record_round(training, cid, parent, rho_micro))

    def rounds(self, training: bytes) -> int:
        """Rounds recorded after the initial model."""
        return int(self._call(self._contract.functions.rounds_of(training)))

    def round_of(self, training: bytes, r: int) -> ModelRound:
        cid, parent, rho, block = self._call(self._contract.functions.round_of(training, r))
        return ModelRound(r, str(cid), str(parent), int(rho), int(block))

    def latest(self, training: bytes) -> str:
        return str(self._call(self._contract.functions.latest(training)))

    def history(self, training: bytes) -> list[ModelRound]:
        """Every round from the initial model to the latest."""
        return [self.round_of(training, r) for r in range(self.rounds(training) + 1)]

    def total_rho_micro(self, training: bytes) -> int:
        return int(self._call(self._contract.functions.total_rho_micro(training)))

    def analyst_of(self, training: bytes) -> str:
        return str(self._call(self._contract.functions.analyst_of(training)))
