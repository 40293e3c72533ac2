"""The DKG's authenticated broadcast: sessions and messages signed by their author.

Every broadcast message of a run (a dealer's commitments and sealed shares,
complaints, answers, extractions, accusations, reveals, results) is a
:class:`SignedMessage`: ``(kind, author, payload, signature)`` where
``signature`` is the author's secp256k1 ECDSA signature over
``SHA-256(message_bytes(session id, kind, author, payload))``. The key is the one
the ledger's registry records for node ``author``; the signed bytes are the
length-prefixed (4-byte big-endian) concatenation of :data:`MESSAGE_DOMAIN`, the
32-byte session id, the kind's name, the author (2 bytes big-endian) and the
payload (its canonical bytes, which travel as they were signed).

The session id (:attr:`DkgSession.id`) is ``SHA-256`` over :data:`SESSION_DOMAIN`,
``n``, ``t``, each member's registered 33-byte key in index order and a 32-byte
nonce, so a message of one run verifies in no other run, committee or threshold.

Signatures are libsecp256k1's recoverable form ``r ‖ s ‖ recid`` (65 bytes) with
a low ``s``; verification recovers the signer's key and compares it with the
author's registered key. Everything here is pure: keys and bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Protocol

from coincurve import PrivateKey, PublicKey

from tessera.crypto.group import N
from tessera.errors import DecodeError

SESSION_DOMAIN: Final = b"tessera/dkg/v1/session"
MESSAGE_DOMAIN: Final = b"tessera/dkg/v1/message"
SIGNATURE_SIZE: Final = 65
KEY_SIZE: Final = 33
NONCE_SIZE: Final = 32
#: Longest payload accepted (a dealing of n = 64, t = 64 is about 10 KB).
MAX_PAYLOAD: Final = 1 << 20


class Round(Enum):
    """What a broadcast message is; each node says at most one of each per session."""

    DEALING = "dealing"  # commitments C_ik and a sealed share per node
    COMPLAINTS = "complaints"  # the dealers whose share did not verify
    ANSWERS = "answers"  # a dealer's shares of the nodes that complained about it
    EXTRACTION = "extraction"  # Feldman commitments A_ik of a qualified dealer
    ACCUSATIONS = "accusations"  # the author's shares that fail a dealer's extraction
    REVEALS = "reveals"  # the author's shares of dealers proven to have cheated
    RESULT = "result"  # the public key, public shares and QUAL the author computed
    # proactive resharing (tessera.crypto.reshare), a session of its own
    RESHARE_DEALING = "reshare-dealing"  # an old member's Feldman commitments, sealed shares
    RESHARE_COMPLAINTS = "reshare-complaints"  # a new member's dealers whose share failed
    RESHARE_ANSWERS = "reshare-answers"  # a dealer's shares of the members that complained


#: The DKG's rounds in the order they are run (round ``k`` reads what round ``k − 1`` said).
ROUNDS: Final = (
    Round.DEALING,
    Round.COMPLAINTS,
    Round.ANSWERS,
    Round.EXTRACTION,
    Round.ACCUSATIONS,
    Round.REVEALS,
    Round.RESULT,
)
#: A resharing's rounds, in order.
RESHARE_ROUNDS: Final = (Round.RESHARE_DEALING, Round.RESHARE_COMPLAINTS, Round.RESHARE_ANSWERS)


class Session(Protocol):
    """What signing and checking a message needs of its session: its id, its authors'
    count and each author's registered key (:class:`DkgSession`, or a resharing's)."""

    @property
    def id(self) -> bytes: ...

    @property
    def n(self) -> int: ...

    def key_of(self, index: int) -> bytes: ...


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _index(i: int) -> bytes:
    return i.to_bytes(2, "big")


def session_digest(*parts: bytes) -> bytes:
    """SHA-256 of the length-prefixed (4-byte big-endian) parts: a session's id."""
    return hashlib.sha256(b"".join(_lp(x) for x in parts)).digest()


def member_keys(keys: Sequence[bytes], where: str) -> tuple[bytes, ...]:
    """``keys`` as distinct 33-byte secp256k1 public keys (ValueError naming the one that
    is not, as ``<where>: member i``)."""
    out = tuple(bytes(k) for k in keys)
    for i, k in enumerate(out, 1):
        if len(k) != KEY_SIZE:
            raise ValueError(f"{where}: member {i}'s key is not {KEY_SIZE} bytes")
        try:
            PublicKey(k)
        except Exception as exc:
            raise ValueError(f"{where}: member {i}'s key is not a secp256k1 key") from exc
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: two members share a key")
    return out


@dataclass(frozen=True)
class DkgSession:
    """One run of the DKG: its committee (registered keys by index), ``n``, ``t`` and a nonce."""

    n: int
    t: int
    members: tuple[bytes, ...]
    nonce: bytes
    id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.n < 2**16 or not 1 <= self.t <= self.n:
            raise ValueError(f"session: bad committee size n={self.n}, t={self.t}")
        if len(self.members) != self.n:
            raise ValueError(f"session: {len(self.members)} member keys for n={self.n}")
        members = member_keys(self.members, "session")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError(f"session: the nonce is {NONCE_SIZE} bytes")
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "nonce", bytes(self.nonce))
        digest = session_digest(
            SESSION_DOMAIN, _index(self.n), _index(self.t), *members, self.nonce
        )
        object.__setattr__(self, "id", digest)

    def key_of(self, index: int) -> bytes:
        """Node ``index``'s registered key."""
        return self.members[index - 1]


def message_bytes(session_id: bytes, kind: Round, author: int, payload: bytes) -> bytes:
    """The domain-separated bytes an author signs (their SHA-256 is the signed digest)."""
    return b"".join(
        _lp(x) for x in (MESSAGE_DOMAIN, session_id, kind.value.encode(), _index(author), payload)
    )


def _digest(session_id: bytes, kind: Round, author: int, payload: bytes) -> bytes:
    return hashlib.sha256(message_bytes(session_id, kind, author, payload)).digest()


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A broadcast message and its author's signature (verify with :func:`message_valid`)."""

    kind: Round
    author: int
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "author": self.author,
            "payload": self.payload.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "message") -> SignedMessage:
        """Strictly decode a message (its signature is not checked here)."""
        if not isinstance(data, Mapping):
            raise DecodeError(f"{where}: expected an object")
        if set(data) != {"kind", "author", "payload", "signature"}:
            raise DecodeError(f"{where}: fields must be kind, author, payload, signature")
        try:
            kind = Round(data["kind"])
        except ValueError as exc:
            raise DecodeError(f"{where}: unknown kind {data['kind']!r}") from exc
        author = data["author"]
        if not isinstance(author, int) or isinstance(author, bool) or not 1 <= author < 2**16:
            raise DecodeError(f"{where}: author must be a node index")
        payload = _hex(data["payload"], f"{where}.payload", 2 * MAX_PAYLOAD)
        signature = _hex(data["signature"], f"{where}.signature", 2 * SIGNATURE_SIZE)
        if len(signature) != SIGNATURE_SIZE:
            raise DecodeError(f"{where}: a signature is {SIGNATURE_SIZE} bytes")
        return cls(kind, author, payload, signature)


def _hex(value: Any, where: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit:
        raise DecodeError(f"{where}: expected a hex string of at most {limit} digits")
    if value != value.lower():
        raise DecodeError(f"{where}: hex must be lowercase")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise DecodeError(f"{where}: not hex") from exc


def sign_message(
    session: Session, kind: Round, author: int, payload: bytes, secret_key: bytes
) -> SignedMessage:
    """``payload`` of ``kind`` signed by node ``author`` with its registered key's secret."""
    if not 1 <= author <= session.n:
        raise ValueError(f"author {author} is not a member of this session")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    digest = _digest(session.id, kind, author, payload)
    # libsecp256k1 signs with RFC 6979 nonces and always returns a low s
    signature = PrivateKey(secret_key).sign_recoverable(digest, hasher=None)
    return SignedMessage(kind, author, bytes(payload), bytes(signature))


def message_valid(session: Session, msg: SignedMessage) -> bool:
    """Whether ``msg`` was signed, for this session, by its author's registered key."""
    if not 1 <= msg.author <= session.n or len(msg.signature) != SIGNATURE_SIZE:
        return False
    sig = msg.signature
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if sig[64] > 3 or not 0 < r < N or not 0 < s <= N // 2:
        return False
    digest = _digest(session.id, msg.kind, msg.author, msg.payload)
    try:
        signer = PublicKey.from_signature_and_message(sig, digest, hasher=None)
    except Exception:
        return False
    return bytes(signer.format(compressed=True)) == session.key_of(msg.author)


def public_key_of(secret_key: bytes) -> bytes:
    """The 33-byte compressed public key of a 32-byte secret key."""
    return bytes(PrivateKey(secret_key).public_key.format(compressed=True))


def messages_json(messages: Sequence[SignedMessage]) -> list[dict[str, Any]]:
    return [m.to_json() for m in messages]
