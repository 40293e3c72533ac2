"""Tessera's one exception tree.

Every error Tessera raises on purpose derives from :class:`TesseraError`::

    TesseraError
    ├── DecodeError          malformed bytes: wrong length, point not on the curve,
    │   │                    scalar or field element out of range
    │   └── BodyTooLarge     a request body over the receiver's limit
    ├── InvalidProof         a zero-knowledge proof or a share failed verification
    ├── ProtocolError        a protocol step out of order, or a participant misbehaved
    │   └── DkgError         distributed key generation could not qualify a key
    ├── DlogError            a discrete logarithm outside the searched range
    ├── QueryError           a query that is malformed or uses unsupported SQL
    ├── PolicyViolation      a query breaks a dataset's policy, or a batch the task's rules
    │   ├── BudgetExceeded   a query would overspend a privacy budget
    │   ├── BatchTooSmall    a telemetry batch under the task's minimum batch size
    │   └── BatchCollected   a telemetry batch already released
    ├── LedgerError          the chain refused a transaction (carries the revert reason)
    │   └── ChainUnreachable the chain's JSON-RPC endpoint cannot be reached (also a
    │                        TransportError: the exit code and status of one)
    ├── TransportError       a peer could not be reached or answered badly
    │   └── RemoteError      a peer refused with an error this tree does not name
    ├── ConfigError          a configuration or key file is missing or malformed
    ├── Unauthorized         a request without a valid signature by a registered key,
    │   │                    or without the telemetry task's bearer token
    │   └── Replay           a request seen before, or stamped outside the time window
    ├── NotFound             a request for an endpoint or object the peer does not have
    └── VerificationFailed   a query that did not pass verification (the ledger's verdict
                             or the re-check of its record)

Third-party exceptions are converted at the boundary with ``raise X from exc``.
The command line maps each class to a one-line message and an exit code
(:data:`EXIT_CODES`); the HTTP services (the nodes' API, the telemetry aggregators)
answer each with the status of :data:`HTTP_STATUS`.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Root of every error Tessera raises on purpose."""


class DecodeError(TesseraError, ValueError):
    """Bytes that do not decode to a valid value of the expected type."""


class BodyTooLarge(DecodeError):
    """A request body over the receiver's limit (HTTP 413); nothing of it is kept."""


class InvalidProof(TesseraError):
    """A proof, signature or share that does not verify."""


class ProtocolError(TesseraError):
    """A protocol step taken out of order, or a participant that misbehaved."""


class DkgError(ProtocolError):
    """Distributed key generation could not produce a qualified key."""


class DlogError(TesseraError, ValueError):
    """A discrete logarithm that is not in the searched range."""


class QueryError(TesseraError, ValueError):
    """A query that is malformed or uses a construct Tessera does not support."""


class PolicyViolation(TesseraError):
    """A query that a dataset's policy does not allow."""


class BudgetExceeded(PolicyViolation):
    """A query that would spend more privacy budget than remains."""


class BatchTooSmall(PolicyViolation):
    """A telemetry batch with fewer reports than the task's minimum batch size."""


class BatchCollected(PolicyViolation):
    """A telemetry batch that was already released (or would be released twice)."""


class LedgerError(TesseraError):
    """A transaction or call the ledger refused; ``reason`` is the revert reason."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class TransportError(TesseraError):
    """A peer that could not be reached, or that answered badly."""


class ChainUnreachable(LedgerError, TransportError):
    """The chain's JSON-RPC endpoint at ``url`` refused the connection, dropped it or did
    not answer in time: nothing was refused, the ledger is down (or the URL is wrong).

    A :class:`LedgerError` (code that handles a failed ledger call handles it) and a
    :class:`TransportError` (exit code 18, like any peer that cannot be reached)."""

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message, reason=None)
        self.url = url


class RemoteError(TransportError):
    """A peer that refused a request with an error not in this tree; ``status`` is HTTP's."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(TesseraError):
    """A configuration or key file that is missing or malformed."""


class Unauthorized(TesseraError):
    """A request whose signature is missing, invalid, or not by the sender's registered key."""


class Replay(Unauthorized):
    """A request whose nonce was seen before, or whose timestamp is outside the window."""


class NotFound(TesseraError):
    """An endpoint or object that the peer does not have."""


class VerificationFailed(TesseraError):
    """A query that did not pass verification: the ledger's verdict or a re-check of it."""


#: Exit codes of the command line, most specific class first.
EXIT_CODES: tuple[tuple[type[TesseraError], int], ...] = (
    (BudgetExceeded, 11),
    (PolicyViolation, 10),
    (InvalidProof, 12),
    (QueryError, 20),
    (DecodeError, 13),
    (DkgError, 15),
    (ProtocolError, 14),
    (DlogError, 16),
    (ChainUnreachable, 18),
    (LedgerError, 17),
    (TransportError, 18),
    (ConfigError, 19),
    (Unauthorized, 21),
    (NotFound, 22),
    (VerificationFailed, 23),
    (TesseraError, 1),
)

#: HTTP status of each refusal, most specific class first (anything else: 500).
HTTP_STATUS: tuple[tuple[type[TesseraError], int], ...] = (
    (BodyTooLarge, 413),
    (Replay, 409),
    (Unauthorized, 401),
    (NotFound, 404),
    (BatchCollected, 409),
    (PolicyViolation, 403),
    (DecodeError, 400),
    (QueryError, 400),
    (InvalidProof, 422),
    (ProtocolError, 422),
    (LedgerError, 502),
    (TransportError, 502),
)


def _lookup(
    table: tuple[tuple[type[TesseraError], int], ...], exc: BaseException, default: int
) -> int:
    for cls, code in table:
        if isinstance(exc, cls):
            return code
    return default


def exit_code(exc: TesseraError) -> int:
    """The command-line exit code for ``exc``."""
    return _lookup(EXIT_CODES, exc, 1)


def http_status(exc: BaseException) -> int:
    """The HTTP status a service answers ``exc`` with (500 for anything not in the table)."""
    return _lookup(HTTP_STATUS, exc, 500)
