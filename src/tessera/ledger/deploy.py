"""Deploy the credit token, the registry, the catalog, the market and the model registry,
and wire them together."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tessera.errors import LedgerError
from tessera.ledger.chain import Chain, ChainImage, EmbeddedChain
from tessera.ledger.compile import Artifact, load_all
from tessera.node.files import atomic_write

#: Defaults for a local network: 3 verifiers drawn per query (a majority settles), a node
#: or verifier stakes 1000 credits, no lock fee, no governance delay.
DEFAULT_VERIFIERS_PER_QUERY = 3
DEFAULT_MIN_STAKE = 1_000
DEFAULT_SLASH_AMOUNT = 1_000
DEFAULT_TIMEOUT_BLOCKS = 1_000
DEFAULT_LOCK_FEE = 0
DEFAULT_GOVERNANCE_DELAY = 0


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the contracts live (enough, with the ABIs from :mod:`compile`, to talk to them)."""

    chain_id: int
    admin: str  # proposes and executes governance actions, owns the token (mints)
    token: str
    registry: str
    market: str
    governance: str  # the timelock: the registry's admin and the market's owner
    block: int
    #: The catalog (``catalog.vy``): listings, tags, top datasets, ratings; bound to
    #: ``market``.
    catalog: str
    #: The model registry (``model_registry.vy``), bound to ``market``; empty in a record
    #: written before it was part of every deployment.
    model_registry: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        try:
            data = json.loads(text)
            if isinstance(data, dict) and "market" in data and "catalog" not in data:
                raise LedgerError(
                    "the deployment record names no catalog: it describes contracts deployed "
                    "before the catalog left the market; deploy again"
                )
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "model_registry"}
            model_registry = data.get("model_registry", "")
            if not isinstance(model_registry, str):
                raise TypeError("model_registry is not an address")
            return cls(**fields, model_registry=model_registry)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
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
    verifiers_per_query: int = DEFAULT_VERIFIERS_PER_QUERY,
    min_stake: int = DEFAULT_MIN_STAKE,
    slash_amount: int = DEFAULT_SLASH_AMOUNT,
    timeout_blocks: int = DEFAULT_TIMEOUT_BLOCKS,
    lock_fee: int = DEFAULT_LOCK_FEE,
    governance_delay: int = DEFAULT_GOVERNANCE_DELAY,
) -> Deployment:
    """Deploy the contracts from ``admin`` (default: the chain's first account).

    The admin owns the token (mints credits) and is the governance timelock's only
    proposer and executor: the timelock, not the admin, administers the registry
    (registers participants, stake rules) and owns the market (query parameters), so
    every admin action waits ``governance_delay`` seconds in public before it runs. The
    market is bound to the registry once, here, and the deployer keeps no other right.
    The catalog (listings, search, ranking, ratings) is deployed before the market and
    bound to it once, here: only the market charges its budgets. The model registry is
    deployed last, bound to the market (it reads training queries there); it has no
    admin.
    """
    if not 1 <= verifiers_per_query <= 16:
        raise ValueError("verifiers_per_query must be in [1, 16]")
    if timeout_blocks < 1 or min(min_stake, slash_amount, lock_fee, governance_delay) < 0:
        raise ValueError("timeout_blocks must be >= 1 and the amounts non-negative")
    admin = admin or chain.accounts[0]
    artifacts = load_all()
    params = {
        "verifiers_per_query": verifiers_per_query,
        "min_stake": min_stake,
        "slash_amount": slash_amount,
        "timeout_blocks": timeout_blocks,
        "lock_fee": lock_fee,
        "governance_delay": governance_delay,
    }
    # An embedded chain as new as the one a deployment was imaged from takes on that image:
    # the same genesis accounts, the same transactions, so the same state, without the
    # seconds py-evm spends creating six contracts (every in-process network deploys).
    if not isinstance(chain, EmbeddedChain) or chain.w3.eth.block_number != 0:
        return _deploy_all(chain, admin, artifacts, **params)
    image_key = (
        tuple(chain.accounts),
        admin,
        tuple(params.items()),
        tuple(sorted((name, a.bytecode) for name, a in artifacts.items())),
    )
    imaged = _IMAGES.get(image_key)
    if imaged is not None and chain.restore(imaged[0]):
        return imaged[1]
    deployment = _deploy_all(chain, admin, artifacts, **params)
    _IMAGES[image_key] = (chain.image(), deployment)
    return deployment


#: Deployed embedded chains' images, by everything their state depends on.
_IMAGES: dict[tuple[Any, ...], tuple[ChainImage, Deployment]] = {}


def _deploy_all(
    chain: Chain,
    admin: str,
    artifacts: dict[str, Artifact],
    *,
    verifiers_per_query: int,
    min_stake: int,
    slash_amount: int,
    timeout_blocks: int,
    lock_fee: int,
    governance_delay: int,
) -> Deployment:
    token = _deploy_one(chain, artifacts["credit_token"], admin)
    registry = _deploy_one(chain, artifacts["registry"], admin, token, min_stake, slash_amount)
    catalog = _deploy_one(chain, artifacts["catalog"], admin, registry)
    market = _deploy_one(
        chain,
        artifacts["market"],
        admin,
        token,
        registry,
        catalog,
        timeout_blocks,
        verifiers_per_query,
        lock_fee,
    )
    governance = _deploy_one(
        chain, artifacts["governance"], admin, governance_delay, [admin], [admin]
    )
    w3 = chain.w3
    reg = w3.eth.contract(address=registry, abi=artifacts["registry"].abi)  # type: ignore[call-overload]
    mkt = w3.eth.contract(address=market, abi=artifacts["market"].abi)  # type: ignore[call-overload]
    cat = w3.eth.contract(address=catalog, abi=artifacts["catalog"].abi)  # type: ignore[call-overload]
    try:
        admin_role = reg.functions.DEFAULT_ADMIN_ROLE().call()
        for fn in (
            reg.functions.bind_market(market),
            cat.functions.bind_market(market),
            reg.functions.grantRole(admin_role, governance),
            reg.functions.renounceRole(admin_role, admin),
            mkt.functions.transfer_ownership(governance),
        ):
            receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": admin}))
            if receipt["status"] != 1:
                raise LedgerError(f"{fn.fn_name} reverted")
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(f"handing the contracts to governance failed: {exc}") from exc
    model_registry = _deploy_one(chain, artifacts["model_registry"], admin, market)
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        admin=admin,
        token=token,
        registry=registry,
        market=market,
        governance=governance,
        block=int(w3.eth.block_number),
        catalog=catalog,
        model_registry=model_registry,
    )
