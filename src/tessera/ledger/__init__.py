"""The ledger: Vyper contracts compiled from source, their deployment and a typed client.

Contracts (``contracts/*.vy``): ``credit_token`` (snekmate ERC-20), ``registry``
(roles, keys, stakes, committees, reputation) and ``market`` (catalog, queries
with on-chain privacy-budget enforcement and escrow, audit trail, verdicts,
settlement). The default chain is in-process (:class:`EmbeddedChain`)::

    chain = EmbeddedChain()
    deployment = deploy(chain)
    admin = LedgerClient(chain, deployment, deployment.admin)
"""

from tessera.ledger.chain import Chain, EmbeddedChain, RpcChain
from tessera.ledger.client import (
    COMMITMENT_KINDS,
    OPERATIONS,
    ROLES,
    AuditTrail,
    Committee,
    CommitteeCreated,
    Dataset,
    DatasetListed,
    GasReport,
    LedgerClient,
    Listing,
    MarketStats,
    Participant,
    Query,
    Tx,
    VerdictPosted,
    operations_mask,
    rho_to_micro,
)
from tessera.ledger.deploy import Deployment, deploy

__all__ = [
    "COMMITMENT_KINDS",
    "OPERATIONS",
    "ROLES",
    "AuditTrail",
    "Chain",
    "Committee",
    "CommitteeCreated",
    "Dataset",
    "DatasetListed",
    "Deployment",
    "EmbeddedChain",
    "GasReport",
    "LedgerClient",
    "Listing",
    "MarketStats",
    "Participant",
    "Query",
    "RpcChain",
    "Tx",
    "VerdictPosted",
    "deploy",
    "operations_mask",
    "rho_to_micro",
]
