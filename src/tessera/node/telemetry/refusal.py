"""An aggregator's refusal as its caller sees it (the leader calling a helper, the collector).

Aggregators answer a refused request with the status of
:data:`tessera.errors.HTTP_STATUS` and the JSON body ``{"error": <message>, "kind":
<class name>}``; the caller raises the same class for the batch-rule and request
errors named below, and a :class:`~tessera.errors.TransportError` for anything else.
"""

from __future__ import annotations

import httpx

from tessera.errors import (
    BatchCollected,
    BatchTooSmall,
    DecodeError,
    PolicyViolation,
    ProtocolError,
    TesseraError,
    TransportError,
)

#: Refusals raised again by the caller as the class the aggregator named.
_KINDS: dict[str, type[TesseraError]] = {
    cls.__name__: cls
    for cls in (BatchTooSmall, BatchCollected, PolicyViolation, DecodeError, ProtocolError)
}


def refusal(resp: httpx.Response, who: str, prefix: str = "") -> TesseraError:
    """The error ``who`` answered with: its class where :data:`_KINDS` names it (a 4xx)."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        cls = _KINDS.get(str(data.get("kind")))
        if cls is not None and 400 <= resp.status_code < 500:
            return cls(prefix + str(data["error"]))
        return TransportError(f"{who} answered {resp.status_code}: {data['error']}")
    return TransportError(f"{who} answered {resp.status_code}: {resp.text[:300]}")
