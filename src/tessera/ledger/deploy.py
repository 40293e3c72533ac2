"""Deploy the credit token, the registry and the market, and wire them together."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tessera.errors import LedgerError
from tessera.ledger.chain import Chain
from tessera.ledger.compile import Artifact, load_all
from tessera.node.files import atomic_write

#: Defaults for a local network: 1 verifier decides, a node stakes 1000 credits.
DEFAULT_QUORUM = 1
DEFAULT_MIN_STAKE = 1_000
DEFAULT_SLASH_AMOUNT = 1_000
DEFAULT_TIMEOUT_BLOCKS = 1_000


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live (enough, with the ABIs from :mod:`compile`, to talk to them)."""

    chain_id: int
    admin: str
    token: str
    registry: str
    market: str
    block: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(f"malformed deployment record: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write the record atomically (a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (self.to_json() + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LedgerError(f"cannot read deployment record {path}: {exc}") from exc


def _deploy_one(chain: Chain, artifact: Artifact, sender: str, *args: Any) -> str:
    w3 = chain.w3
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    try:
        tx_hash = factory.constructor(*args).transact({"from": sender})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    except Exception as exc:
        raise LedgerError(f"deploying {artifact.name} failed: {exc}") from exc
    address = receipt["contractAddress"]
    if receipt["status"] != 1 or address is None:
        raise LedgerError(f"deploying {artifact.name} failed")
    return str(address)


def deploy(
    chain: Chain,
    admin: str | None = None,
    *,
    quorum: int = DEFAULT_QUORUM,
    min_stake: int = DEFAULT_MIN_STAKE,
    slash_amount: int = DEFAULT_SLASH_AMOUNT,
    timeout_blocks: int = DEFAULT_TIMEOUT_BLOCKS,
) -> Deployment:
    """Deploy the three contracts from ``admin`` (default: the chain's first account).

    The admin owns the token (mints credits), administers the registry (registers
    participants) and owns the market (sets the verifier quorum).
    """
    if quorum < 1:
        raise ValueError("quorum must be at least 1")
    admin = admin or chain.accounts[0]
    artifacts = load_all()
    token = _deploy_one(chain, artifacts["credit_token"], admin)
    registry = _deploy_one(chain, artifacts["registry"], admin, token, min_stake, slash_amount)
    market = _deploy_one(chain, artifacts["market"], admin, token, registry, quorum, timeout_blocks)
    reg = chain.w3.eth.contract(address=registry, abi=artifacts["registry"].abi)  # type: ignore[call-overload]
    try:
        role = reg.functions.MARKET_ROLE().call()
        tx = reg.functions.grantRole(role, market).transact({"from": admin})
        chain.w3.eth.wait_for_transaction_receipt(tx)
    except Exception as exc:
        raise LedgerError(f"granting the market role failed: {exc}") from exc
    return Deployment(
        chain_id=int(chain.w3.eth.chain_id),
        admin=admin,
        token=token,
        registry=registry,
        market=market,
        block=int(chain.w3.eth.block_number),
    )
