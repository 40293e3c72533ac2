"""A node's secp256k1 identity: its Ethereum address, message signatures and key file.

The key that signs a node's messages is the key of its Ethereum account, so the
address a peer sees in ``X-Tessera-Sender`` is the account the ledger knows.
Signatures are libsecp256k1's 65-byte recoverable form ``r ‖ s ‖ recid``
(``recid`` in 0..3, not Ethereum's 27/28) over a 32-byte digest; verification
insists on a low ``s`` so that a signature has one encoding. Key files are
Ethereum keystore v3 JSON (scrypt by default), readable by any Ethereum wallet.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from coincurve import PrivateKey, PublicKey
from Crypto.Hash import keccak

from tessera.errors import ConfigError, DecodeError
from tessera.node.files import atomic_write

#: Order of the secp256k1 group.
CURVE_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER: Final = CURVE_ORDER // 2
SIGNATURE_SIZE: Final = 65
DIGEST_SIZE: Final = 32
PUBLIC_KEY_SIZE: Final = 33


def _keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _checksum(hex40: str) -> str:
    """EIP-55 mixed-case form of 40 lowercase hex digits."""
    h = _keccak256(hex40.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(h[i], 16) >= 8 else c for i, c in enumerate(hex40))


def to_checksum_address(address: str) -> str:
    """``address`` (``0x`` + 40 hex digits, any case) in EIP-55 form.

    A mixed-case address must already carry a valid checksum (a typo is refused,
    not silently accepted); all-lower or all-upper addresses carry none.
    """
    if not isinstance(address, str) or len(address) != 42 or address[:2] not in ("0x", "0X"):
        raise DecodeError(f"{address!r} is not an address (0x and 40 hex digits)")
    digits = address[2:]
    try:
        bytes.fromhex(digits)
    except ValueError as exc:
        raise DecodeError(f"{address!r} is not an address (0x and 40 hex digits)") from exc
    out = _checksum(digits.lower())
    if digits != digits.lower() and digits != digits.upper() and digits != out[2:]:
        raise DecodeError(f"{address!r} has a wrong EIP-55 checksum")
    return out


def address_of(public_key: bytes) -> str:
    """The Ethereum address (EIP-55) of a SEC1 public key, compressed or not."""
    try:
        raw = PublicKey(bytes(public_key)).format(compressed=False)
    except Exception as exc:
        raise DecodeError("not a secp256k1 public key") from exc
    return _checksum(_keccak256(raw[1:])[-20:].hex())


@dataclass(frozen=True)
class Identity:
    """A secp256k1 private key and what derives from it."""

    private_key: bytes

    def __post_init__(self) -> None:
        key = bytes(self.private_key)
        if len(key) != 32 or not 0 < int.from_bytes(key, "big") < CURVE_ORDER:
            raise ValueError("a private key is a 32-byte scalar in [1, n-1]")
        object.__setattr__(self, "private_key", key)

    def __repr__(self) -> str:  # never print the key
        return f"Identity(address={self.address!r})"

    @property
    def _key(self) -> PrivateKey:
        return PrivateKey(self.private_key)

    @property
    def public_key(self) -> bytes:
        """The 33-byte SEC1 compressed public key."""
        return bytes(self._key.public_key.format(compressed=True))

    @property
    def address(self) -> str:
        """The EIP-55 checksum Ethereum address of the key."""
        return address_of(self.public_key)

    @classmethod
    def generate(cls, rng_bytes: bytes | None = None) -> Identity:
        """A fresh key from the OS CSPRNG, or from ``rng_bytes`` (32 bytes, for tests)."""
        if rng_bytes is None:
            while True:
                candidate = secrets.token_bytes(32)
                if 0 < int.from_bytes(candidate, "big") < CURVE_ORDER:
                    return cls(candidate)
        return cls(rng_bytes)

    def sign(self, digest: bytes) -> bytes:
        """A 65-byte recoverable signature ``r ‖ s ‖ recid`` over a 32-byte digest."""
        if len(digest) != DIGEST_SIZE:
            raise ValueError("sign a 32-byte digest")
        # libsecp256k1 always produces low-s signatures (RFC 6979 nonces).
        return bytes(self._key.sign_recoverable(bytes(digest), hasher=None))


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """The compressed public key that produced ``signature`` over ``digest``.

    Raises :class:`DecodeError` for a signature of the wrong shape (length,
    ``recid``, ``r`` or ``s`` out of range, high ``s``) or one that recovers no key.
    """
    if len(digest) != DIGEST_SIZE:
        raise DecodeError("a signed digest is 32 bytes")
    if len(signature) != SIGNATURE_SIZE:
        raise DecodeError(f"a signature is {SIGNATURE_SIZE} bytes, not {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if signature[64] > 3 or not 0 < r < CURVE_ORDER or not 0 < s <= _HALF_ORDER:
        raise DecodeError("malformed signature (recid, r or s out of range, or high s)")
    try:
        key = PublicKey.from_signature_and_message(bytes(signature), bytes(digest), hasher=None)
    except Exception as exc:
        raise DecodeError("the signature recovers no public key") from exc
    return bytes(key.format(compressed=True))


def verify_signature(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` over ``digest`` was made by ``public_key``'s private key."""
    try:
        expected = PublicKey(bytes(public_key)).format(compressed=True)
        return recover_public_key(digest, signature) == expected
    except Exception:
        return False


# -- key files ------------------------------------------------------------------------------


def save_keystore(
    identity: Identity,
    path: str | os.PathLike[str],
    password: str,
    *,
    overwrite: bool = False,
    iterations: int | None = None,
) -> None:
    """Write ``identity`` as an Ethereum keystore v3 file (mode 0600, atomically).

    ``iterations`` is scrypt's cost ``n`` (a power of two); the default is
    eth-account's standard 2**18. Small values are for tests only.
    """
    from eth_account import Account  # slow to import; only key-file commands need it

    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: a key file already exists (refusing to overwrite it)")
    try:
        keystore = Account.encrypt(
            identity.private_key, password, kdf="scrypt", iterations=iterations
        )
    except Exception as exc:
        raise ConfigError(f"{path}: cannot encrypt the key: {exc}") from exc
    data = json.dumps(keystore, indent=2, sort_keys=True).encode()
    try:
        # Without overwrite, a key file that appeared meanwhile is left alone.
        atomic_write(path, data, 0o600, overwrite=overwrite)
    except FileExistsError as exc:
        raise ConfigError(f"{path}: a key file already exists (refusing to overwrite it)") from exc


def load_keystore(path: Path, password: str) -> Identity:
    """The identity in an Ethereum keystore v3 file; any problem is a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such key file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the key file: {exc}") from exc
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a keystore (malformed JSON: {exc})") from exc
    if not isinstance(data, dict) or data.get("version") != 3 or "crypto" not in data:
        raise ConfigError(f"{path}: not an Ethereum keystore v3 file")

    from eth_account import Account

    try:
        key = bytes(Account.decrypt(data, password))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise ConfigError(
                f"{path}: wrong password for this key file (or the file is corrupted: MAC mismatch)"
            ) from exc
        raise ConfigError(f"{path}: malformed keystore ({exc})") from exc
    except Exception as exc:
        raise ConfigError(f"{path}: malformed keystore ({type(exc).__name__}: {exc})") from exc
    try:
        identity = Identity(key)
    except ValueError as exc:
        raise ConfigError(f"{path}: the keystore holds an invalid key") from exc
    recorded = data.get("address")
    if (
        isinstance(recorded, str)
        and recorded.lower().removeprefix("0x") != identity.address[2:].lower()
    ):
        raise ConfigError(f"{path}: the key does not match the address the file records")
    return identity
