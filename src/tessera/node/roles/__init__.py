"""The roles a Tessera process plays: provider, computing node, verifier (the analyst is
:mod:`tessera.node.analyst`).

Each role is a :class:`~tessera.node.transport.Handler`: ``handle(path, body,
sender)`` with ``sender`` the address whose registered key signed the request.
The roles run the shared protocol steps (:mod:`tessera.protocol.aggregation`,
:mod:`tessera.crypto.dkg`) on what they receive, check the ledger before they
act, commit the digest of what they send, and keep their state in their own
:class:`~tessera.node.store.Store`, so a request repeated after a crash gets the
answer already given instead of a second, different one.
"""

from tessera.node.roles.base import Progress, Role, admitted, open_query
from tessera.node.roles.computing_node import NodeRole
from tessera.node.roles.provider import ProviderRole, Table
from tessera.node.roles.verifier import VerifierRole

__all__ = [
    "NodeRole",
    "Progress",
    "ProviderRole",
    "Role",
    "Table",
    "VerifierRole",
    "admitted",
    "open_query",
]
