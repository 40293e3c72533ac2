"""The ledger: Vyper contracts compiled from source, their deployment and a typed client.

Contracts (``contracts/*.vy``): ``credit_token`` (snekmate ERC-20), ``registry``
(roles, keys, stakes, the verifier pool, committees, reputation), ``market``
(catalog, queries with on-chain privacy-budget enforcement and escrow, audit
trail, verifiers drawn per query, verdicts, settlement) and ``governance`` (the
timelock that administers the other two). The default chain is in-process (:class:`EmbeddedChain`)::

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
    CommitteeEndorsed,
    Dataset,
    DatasetListed,
    GasReport,
    LedgerClient,
    Listing,
    MarketStats,
    Participant,
    Query,
    QuerySubmitted,
    Tx,
    VerdictPosted,
    Withdrawal,
    operations_mask,
    query_id_for,
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
    "CommitteeEndorsed",
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
    "QuerySubmitted",
    "RpcChain",
    "Tx",
    "VerdictPosted",
    "Withdrawal",
    "deploy",
    "operations_mask",
    "query_id_for",
    "rho_to_micro",
]
