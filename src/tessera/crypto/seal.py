"""Sealing a message to a secp256k1 public key (ECIES: ECDH, HKDF-SHA256, AES-256-GCM).

Used where a protocol message is private to one recipient, such as a DKG share
sent from one computing node to another: the sealed box is
``ephemeral public key (33) ‖ AES-GCM ciphertext and tag``, bound to ``aad``.
"""

from __future__ import annotations

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tessera.crypto.rng import Rng
from tessera.errors import DecodeError, InvalidProof

_INFO = b"tessera/seal/v1"
_NONCE = b"\x00" * 12  # every key is fresh (a new ephemeral key per message)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO)
    return hkdf.derive(shared)


def seal(recipient: bytes, plaintext: bytes, aad: bytes, rng: Rng) -> bytes:
    """Encrypt ``plaintext`` to the 33-byte compressed public key ``recipient``."""
    try:
        peer = PublicKey(recipient)
    except ValueError as exc:
        raise DecodeError(f"seal: recipient key is not a curve point ({exc})") from exc
    eph = PrivateKey(rng.scalar().to_bytes(32, "big"))
    eph_pub = eph.public_key.format(compressed=True)
    key = _key(eph.ecdh(peer.format()), eph_pub, peer.format(compressed=True))
    return eph_pub + AESGCM(key).encrypt(_NONCE, plaintext, aad)


def open_sealed(secret: bytes, box: bytes, aad: bytes) -> bytes:
    """Decrypt a sealed box with the recipient's 32-byte secret key."""
    if len(box) < 33 + 16:
        raise DecodeError("sealed box: too short")
    own = PrivateKey(secret)
    try:
        eph = PublicKey(box[:33])
    except ValueError as exc:
        raise DecodeError("sealed box: bad ephemeral key") from exc
    key = _key(own.ecdh(eph.format()), box[:33], own.public_key.format(compressed=True))
    try:
        return AESGCM(key).decrypt(_NONCE, box[33:], aad)
    except InvalidTag as exc:
        raise InvalidProof("sealed box: authentication failed (tampered or not for us)") from exc
