"""Tessera: privacy-preserving statistics and learning over data that never leaves its owners.

``from tessera import LocalNetwork`` gives the in-process network (see
:mod:`tessera.node.local_network`); it is imported on first use so that
``import tessera`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["DatasetPolicy", "LocalNetwork", "__version__"]

if TYPE_CHECKING:
    from tessera.node.local_network import DatasetPolicy, LocalNetwork


def __getattr__(name: str) -> Any:
    if name in ("LocalNetwork", "DatasetPolicy"):
        from tessera.node import local_network

        return getattr(local_network, name)
    raise AttributeError(f"module 'tessera' has no attribute {name!r}")
