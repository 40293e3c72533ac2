"""Tessera: privacy-preserving statistics and learning over data that never leaves its owners.

The public API::

    from tessera import LocalNetwork, DatasetPolicy
    net = LocalNetwork(computing_nodes=3, threshold=2)   # the deployed roles, in process
    net.add_provider("a", tables={"t": df}, bounds={"t": {"x": (0, 100)}})
    res = net.sql("SELECT AVG(x) FROM t", epsilon=1.0)   # a QueryResult

- :class:`LocalNetwork` — a whole network in one process (:mod:`tessera.node.local_network`);
  :func:`open_session` — the analyst's client of a network of processes;
- :class:`QueryResult`, :class:`PrivacyCost` — what a query releases;
- :class:`DatasetPolicy` — a provider's rules for a table;
- :class:`TesseraError` and its subclasses — every error raised on purpose
  (:mod:`tessera.errors`).

Names are imported on first use so that ``import tessera`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tessera.errors import (
    BudgetExceeded,
    DecodeError,
    InvalidProof,
    LedgerError,
    PolicyViolation,
    ProtocolError,
    QueryError,
    TesseraError,
    TransportError,
)

__version__ = "0.1.0"

_LAZY = {
    "LocalNetwork": "tessera.node.local_network",
    "open_session": "tessera.node.launcher",
    "QueryResult": "tessera.analytics.release",
    "PrivacyCost": "tessera.analytics.release",
    "DatasetPolicy": "tessera.protocol.policy",
}

__all__ = [
    "BudgetExceeded",
    "DatasetPolicy",
    "DecodeError",
    "InvalidProof",
    "LedgerError",
    "LocalNetwork",
    "PolicyViolation",
    "PrivacyCost",
    "ProtocolError",
    "QueryError",
    "QueryResult",
    "TesseraError",
    "TransportError",
    "__version__",
    "open_session",
]

if TYPE_CHECKING:
    from tessera.analytics.release import PrivacyCost, QueryResult
    from tessera.node.launcher import open_session
    from tessera.node.local_network import LocalNetwork
    from tessera.protocol.policy import DatasetPolicy


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tessera' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
