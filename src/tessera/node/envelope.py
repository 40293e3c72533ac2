"""Signed requests between Tessera nodes: the envelope, key directories and the replay guard.

A request is a JSON object (the body, sent as exact bytes) and five headers::

    X-Tessera-Sender      the signer's address (EIP-55)
    X-Tessera-Recipient   the address of the node the request is for
    X-Tessera-Timestamp   unix time in milliseconds (decimal)
    X-Tessera-Nonce       16 random bytes, 32 lowercase hex digits
    X-Tessera-Signature   65-byte recoverable secp256k1 signature, 130 lowercase hex digits

The signature is over ``SHA-256(message)`` where ``message`` is the
length-prefixed (4-byte big-endian) concatenation of :data:`DOMAIN`, the sender's
and recipient's 20-byte addresses, ``"POST /v1/" + path``, the timestamp (8 bytes
big-endian), the nonce and ``SHA-256(body)``. A receiver accepts a request only if

1. every header is present and well formed, and the recipient is itself;
2. its :class:`KeyDirectory` has a key for the sender and the signature verifies
   under that key (else :class:`~tessera.errors.Unauthorized`);
3. the timestamp is within :data:`WINDOW` seconds of its clock and the
   ``(sender, nonce)`` pair is new to its :class:`ReplayGuard`
   (else :class:`~tessera.errors.Replay`).

The nonce is stored only after the signature verified, so a forged request cannot
burn an honest sender's nonce. Bodies are strict JSON (:func:`decode_body`):
an object, UTF-8, no duplicate keys, finite numbers only (no NaN or Infinity),
integers of at most 4,300 digits.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from tessera.errors import DecodeError, Replay, Unauthorized
from tessera.node.identity import Identity, recover_public_key, to_checksum_address
from tessera.protocol import json_limits
from tessera.protocol.json_limits import MAX_DEPTH

if TYPE_CHECKING:
    from tessera.ledger.client import LedgerClient, Role

#: Domain separation tag of request signatures.
DOMAIN: Final = b"tessera/v1/request"
#: Largest clock difference (seconds) between a request's timestamp and the receiver.
WINDOW: Final = 120.0

SENDER: Final = "X-Tessera-Sender"
RECIPIENT: Final = "X-Tessera-Recipient"
TIMESTAMP: Final = "X-Tessera-Timestamp"
NONCE: Final = "X-Tessera-Nonce"
SIGNATURE: Final = "X-Tessera-Signature"
HEADERS: Final = (SENDER, RECIPIENT, TIMESTAMP, NONCE, SIGNATURE)

_PATH = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*(/[A-Za-z0-9_~-][A-Za-z0-9_.~-]*)*")
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,15}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE = re.compile(r"[0-9a-f]{130}")


def normalize_path(path: str) -> str:
    """An endpoint path without leading ``/`` (``"query/commit"``); others are refused.

    Segments are letters, digits and ``_ . ~ -`` and may not start with a dot, so a
    path needs no percent-encoding and cannot climb (``..``).
    """
    p = path.lstrip("/")
    if not _PATH.fullmatch(p):
        raise DecodeError(f"malformed endpoint path {path!r}")
    return p


def _now_ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def request_digest(
    sender: str, recipient: str, path: str, timestamp_ms: int, nonce: bytes, body: bytes
) -> bytes:
    """The 32-byte digest a request's signature covers."""
    message = b"".join(
        _field(x)
        for x in (
            DOMAIN,
            bytes.fromhex(to_checksum_address(sender)[2:]),
            bytes.fromhex(to_checksum_address(recipient)[2:]),
            f"POST /v1/{normalize_path(path)}".encode("ascii"),
            timestamp_ms.to_bytes(8, "big"),
            nonce,
            hashlib.sha256(body).digest(),
        )
    )
    return hashlib.sha256(message).digest()


def sign_request(
    identity: Identity,
    recipient: str,
    path: str,
    body: bytes,
    now: float | None = None,
    *,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The headers that authenticate ``body`` sent by ``identity`` to ``recipient``.

    ``now`` is unix time in seconds (default: the clock); ``nonce`` 16 bytes
    (default: fresh from the OS CSPRNG).
    """
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    if len(nonce) != 16:
        raise ValueError("a nonce is 16 bytes")
    ts = _now_ms(now)
    recipient = to_checksum_address(recipient)
    digest = request_digest(identity.address, recipient, path, ts, nonce, body)
    return {
        SENDER: identity.address,
        RECIPIENT: recipient,
        TIMESTAMP: str(ts),
        NONCE: nonce.hex(),
        SIGNATURE: identity.sign(digest).hex(),
    }


def verify_request(
    headers: Mapping[str, str],
    path: str,
    body: bytes,
    recipient: str,
    directory: KeyDirectory,
    guard: ReplayGuard,
    now: float | None = None,
) -> str:
    """The sender's address if the request is authentic, addressed here and new.

    Raises :class:`Unauthorized` (missing or malformed headers, another recipient,
    an unknown sender, a bad signature) or :class:`Replay` (a seen nonce, a
    timestamp outside the window). Only an authentic request's nonce is stored.
    """
    h = {k.lower(): v for k, v in headers.items()}
    values: dict[str, str] = {}
    for name in HEADERS:
        value = h.get(name.lower())
        if value is None:
            raise Unauthorized(f"unsigned request: no {name} header")
        values[name] = value
    try:
        sender = to_checksum_address(values[SENDER])
        claimed = to_checksum_address(values[RECIPIENT])
    except DecodeError as exc:
        raise Unauthorized(f"malformed address header: {exc}") from exc
    if claimed != to_checksum_address(recipient):
        raise Unauthorized(f"request addressed to {claimed}, not to this node ({recipient})")
    if not _TIMESTAMP.fullmatch(values[TIMESTAMP]):
        raise Unauthorized(f"malformed {TIMESTAMP} header (unix milliseconds expected)")
    if not _NONCE.fullmatch(values[NONCE]):
        raise Unauthorized(f"malformed {NONCE} header (32 lowercase hex digits expected)")
    if not _SIGNATURE.fullmatch(values[SIGNATURE]):
        raise Unauthorized(f"malformed {SIGNATURE} header (130 lowercase hex digits expected)")
    ts = int(values[TIMESTAMP])
    nonce = bytes.fromhex(values[NONCE])
    key = directory.public_key(sender)
    if key is None:
        raise Unauthorized(f"{sender} has no registered key here")
    digest = request_digest(sender, claimed, path, ts, nonce, body)
    try:
        signer = recover_public_key(digest, bytes.fromhex(values[SIGNATURE]))
    except DecodeError as exc:
        raise Unauthorized(f"invalid signature from {sender}: {exc}") from exc
    if signer != key:
        raise Unauthorized(f"signature does not verify under {sender}'s registered key")
    guard.check_and_store(sender, nonce.hex(), ts, now=now)
    return sender


# -- body ---------------------------------------------------------------------------------


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of an object; NaN and Infinity are refused (``ValueError``)."""
    if not isinstance(body, Mapping):
        raise TypeError("a message body is a JSON object (a mapping)")
    return json.dumps(
        dict(body), separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def decode_body(data: bytes) -> dict[str, Any]:
    """A strict JSON object: UTF-8, no duplicate keys, finite numbers, integers of at most
    :data:`~tessera.protocol.json_limits.MAX_INT_DIGITS` digits (:class:`DecodeError`).

    Nesting deeper than :data:`~tessera.protocol.json_limits.MAX_DEPTH` is refused
    before parsing (:func:`~tessera.protocol.json_limits.check_depth`): the C parser
    recurses, and with a raised recursion limit (eth-account raises it to 100 000)
    a deep enough body would overflow the stack and crash the process.
    """
    try:
        value = json_limits.loads(data, MAX_DEPTH)
    except DecodeError as exc:
        raise DecodeError(f"malformed JSON body: {exc}") from exc
    if not isinstance(value, dict):
        raise DecodeError(f"malformed JSON body: an object is expected, not {type(value).__name__}")
    return value


# -- who may speak ------------------------------------------------------------------------


class KeyDirectory(Protocol):
    """Where a receiver looks up the key registered for a sender."""

    def public_key(self, address: str) -> bytes | None:
        """The registered 33-byte compressed key of ``address``, or ``None``."""
        ...


class StaticDirectory:
    """A fixed address-to-key table (tests, in-process networks)."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys = {to_checksum_address(a): bytes(k) for a, k in (keys or {}).items()}

    @classmethod
    def of(cls, identities: Iterable[Identity]) -> StaticDirectory:
        return cls({i.address: i.public_key for i in identities})

    def add(self, address: str, public_key: bytes) -> None:
        self._keys[to_checksum_address(address)] = bytes(public_key)

    def public_key(self, address: str) -> bytes | None:
        try:
            return self._keys.get(to_checksum_address(address))
        except DecodeError:
            return None


class LedgerDirectory:
    """Keys from the ledger's registry, cached for ``ttl`` seconds (misses for ``miss_ttl``).

    With ``roles``, a participant holding none of them has no key here: a node can
    insist that, say, only analysts submit queries.
    """

    def __init__(
        self,
        client: LedgerClient,
        *,
        roles: Iterable[Role] | None = None,
        ttl: float = 30.0,
        miss_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._roles = frozenset(roles) if roles is not None else None
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, bytes | None]] = {}
        self._lock = threading.Lock()

    def public_key(self, address: str) -> bytes | None:
        try:
            who = to_checksum_address(address)
        except DecodeError:
            return None
        with self._lock:  # also serialises calls into the (not thread-safe) client
            hit = self._cache.get(who)
            if hit is not None and hit[0] > self._clock():
                return hit[1]
            record = self._client.participant(who)
            key: bytes | None = bytes(record.public_key) or None
            if key is not None and self._roles is not None and not (record.roles & self._roles):
                key = None
            life = self._ttl if key is not None else self._miss_ttl
            self._cache[who] = (self._clock() + life, key)
            return key


# -- replays ------------------------------------------------------------------------------


class ReplayGuard:
    """The ``(sender, nonce)`` pairs seen within the window, in SQLite (a path or ``:memory:``).

    A pair is rejected if seen before; a timestamp more than ``window`` seconds
    from the clock is rejected outright, so entries older than the window can be
    pruned without letting their requests back in.
    """

    def __init__(self, path: Path | str = ":memory:", *, window: float = WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_nonces ("
            " sender TEXT NOT NULL, nonce TEXT NOT NULL, ts INTEGER NOT NULL,"
            " PRIMARY KEY (sender, nonce)) WITHOUT ROWID"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS seen_nonces_ts ON seen_nonces (ts)")

    def check_and_store(
        self, sender: str, nonce: str, ts: int, *, now: float | None = None
    ) -> None:
        """Record ``(sender, nonce)`` stamped ``ts`` (unix ms), or raise :class:`Replay`."""
        now_ms = _now_ms(now)
        window_ms = int(self.window * 1000)
        if abs(ts - now_ms) > window_ms:
            raise Replay(
                f"request from {sender} stamped {(ts - now_ms) / 1000:+.1f} s from this "
                f"node's clock (allowed: ±{self.window:g} s)"
            )
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM seen_nonces WHERE ts < ?", (now_ms - window_ms,))
                self._db.execute(
                    "INSERT INTO seen_nonces (sender, nonce, ts) VALUES (?, ?, ?)",
                    (sender, nonce, ts),
                )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._db.execute("ROLLBACK")
                raise Replay(f"replayed request: nonce {nonce} from {sender} was seen") from exc
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM seen_nonces").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
