"""HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM.

A thin layer over ``cryptography``'s :mod:`~cryptography.hazmat.primitives.hpke`: keys
as raw 32-byte X25519 values in hex files, and failures converted to Tessera errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from tessera.errors import ConfigError, DecodeError, InvalidProof
from tessera.node.files import atomic_write

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
#: ``enc`` (32) plus the AES-GCM tag (16).
OVERHEAD = 48


@dataclass(frozen=True)
class HpkeKeypair:
    """An X25519 receiver key pair and the one-byte config id senders quote."""

    config_id: int
    private_key: X25519PrivateKey

    @property
    def public_key(self) -> X25519PublicKey:
        return self.private_key.public_key()


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key from the operating system's randomness."""
    return X25519PrivateKey.generate()


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    """Raw 32-byte encoding of a private key."""
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_key_bytes(key: X25519PublicKey) -> bytes:
    """Raw 32-byte encoding of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_from_bytes(data: bytes) -> X25519PrivateKey:
    """Strict decoding of a raw private key."""
    if len(data) != 32:
        raise DecodeError("an X25519 private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(data)


def public_key_from_bytes(data: bytes) -> X25519PublicKey:
    """Strict decoding of a raw public key."""
    if len(data) != 32:
        raise DecodeError("an X25519 public key is 32 bytes")
    return X25519PublicKey.from_public_bytes(data)


def _read_hex(path: Path, what: str) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not hex") from exc
    if len(data) != 32:
        raise ConfigError(f"{what} {path} must hold 32 bytes in hex, found {len(data)}")
    return data


def load_private_key(path: Path) -> X25519PrivateKey:
    """Read a hex private key file."""
    return private_key_from_bytes(_read_hex(path, "HPKE private key"))


def load_public_key(path: Path) -> X25519PublicKey:
    """Read a hex public key file."""
    return public_key_from_bytes(_read_hex(path, "HPKE public key"))


def write_keypair(private_path: Path, public_path: Path) -> X25519PrivateKey:
    """Generate a key pair; write the private key (mode 0600) and the public key as hex."""
    key = generate_private_key()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private = (private_key_bytes(key).hex() + "\n").encode("ascii")
    atomic_write(private_path, private, 0o600, overwrite=False)
    atomic_write(public_path, (public_key_bytes(key.public_key()).hex() + "\n").encode(), 0o644)
    return key


def seal(public_key: X25519PublicKey, info: bytes, plaintext: bytes) -> bytes:
    """``enc || ciphertext`` of single-shot base-mode HPKE to ``public_key``."""
    return _SUITE.encrypt(plaintext, public_key, info=info)


def open_sealed(private_key: X25519PrivateKey, info: bytes, sealed: bytes) -> bytes:
    """Open :func:`seal`'s output; :class:`InvalidProof` if it was tampered with or misbound."""
    if len(sealed) < OVERHEAD:
        raise DecodeError("HPKE ciphertext too short")
    try:
        return _SUITE.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise InvalidProof("HPKE ciphertext does not open (tampered or misdirected)") from exc
