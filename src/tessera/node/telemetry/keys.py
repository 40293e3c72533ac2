"""Each party's own keys, its published configuration, and the credentials derived from them.

Every party (an aggregator, the collector) generates its keys itself, in its own
state directory, the first time it runs; only the public half leaves it, as a small
JSON *public configuration* (DAP's ``HpkeConfig`` plus a key-agreement key)::

    {"task_id": "<hex>", "hpke_config_id": 17,
     "hpke_public_key": "<hex>", "auth_public_key": "<hex>"}

Credentials follow DAP's two roles and are never stored or sent anywhere but in the
``Authorization`` header:

* the **aggregator credential** of leader and helper ``i``:
  ``HKDF-SHA256(X25519(leader, helper i), salt=task_id, info="... aggregator auth" || i)``;
* the **collector credential** of collector and leader:
  ``HKDF-SHA256(X25519(collector, leader), salt=task_id, info="... collector auth")``.

Each side computes it from its own private key and the other's public key, so the
collector cannot compute an aggregator credential, and nobody hands out secrets.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tessera.errors import ConfigError, DecodeError
from tessera.node.files import atomic_write
from tessera.node.telemetry import hpke

#: The private key file in a party's state directory (mode 0600).
KEYS_FILE = "keys.json"
#: The leader's VDAF verify key, in the state directory of every aggregator (mode 0600).
VERIFY_KEY_FILE = "verify.key"

_AGGREGATOR_AUTH = b"tessera telemetry aggregator auth v1"
_COLLECTOR_AUTH = b"tessera telemetry collector auth v1"


@dataclass(frozen=True)
class PublicConfig:
    """What a party publishes: its HPKE config (id and key) and its key-agreement key."""

    task_id: bytes
    hpke_config_id: int
    hpke_public_key: X25519PublicKey
    auth_public_key: X25519PublicKey

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id.hex(),
            "hpke_config_id": self.hpke_config_id,
            "hpke_public_key": hpke.public_key_bytes(self.hpke_public_key).hex(),
            "auth_public_key": hpke.public_key_bytes(self.auth_public_key).hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PublicConfig:
        """Strict parsing; :class:`DecodeError` on anything missing or malformed."""
        try:
            if not isinstance(data, dict) or set(data) != {
                "task_id",
                "hpke_config_id",
                "hpke_public_key",
                "auth_public_key",
            }:
                raise ValueError("unexpected fields")
            config_id = data["hpke_config_id"]
            if isinstance(config_id, bool) or not isinstance(config_id, int):
                raise ValueError("hpke_config_id must be an integer")
            if not 0 <= config_id < 256:
                raise ValueError("hpke_config_id out of range")
            return cls(
                bytes.fromhex(data["task_id"]),
                config_id,
                hpke.public_key_from_bytes(bytes.fromhex(data["hpke_public_key"])),
                hpke.public_key_from_bytes(bytes.fromhex(data["auth_public_key"])),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise DecodeError(f"malformed public configuration: {exc}") from exc


@dataclass(frozen=True)
class PartyKeys:
    """A party's own private keys: HPKE (with its config id) and key agreement."""

    task_id: bytes
    hpke_config_id: int
    hpke_private_key: X25519PrivateKey
    auth_private_key: X25519PrivateKey

    @property
    def public(self) -> PublicConfig:
        return PublicConfig(
            self.task_id,
            self.hpke_config_id,
            self.hpke_private_key.public_key(),
            self.auth_private_key.public_key(),
        )


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc


def load_public_config(path: Path, task_id: bytes) -> PublicConfig | None:
    """A published configuration, or ``None`` while its owner has not published it."""
    if not path.exists():
        return None
    try:
        config = PublicConfig.from_json(_read_json(path, "public configuration"))
    except DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if config.task_id != task_id:
        raise ConfigError(f"{path} is the public configuration of another task")
    return config


def ensure_party_keys(state_dir: Path, public_path: Path, task_id: bytes) -> PartyKeys:
    """This party's keys: read from ``state_dir``, or generated there on first use.

    The public configuration is (re)published at ``public_path`` every time, so a
    deleted or stale copy is repaired by restarting its owner.
    """
    key_file = state_dir / KEYS_FILE
    if key_file.exists():
        keys = _load_keys(key_file, task_id)
    else:
        keys = PartyKeys(
            task_id,
            1 + secrets.randbelow(255),
            hpke.generate_private_key(),
            hpke.generate_private_key(),
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o700)
        doc = {
            "task_id": task_id.hex(),
            "hpke_config_id": keys.hpke_config_id,
            "hpke_private_key": hpke.private_key_bytes(keys.hpke_private_key).hex(),
            "auth_private_key": hpke.private_key_bytes(keys.auth_private_key).hex(),
        }
        try:
            atomic_write(key_file, json.dumps(doc).encode(), 0o600, overwrite=False)
        except FileExistsError:  # another process of the same party won the race
            keys = _load_keys(key_file, task_id)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    published = (json.dumps(keys.public.to_json(), indent=1) + "\n").encode()
    if not public_path.exists() or public_path.read_bytes() != published:
        atomic_write(public_path, published, 0o644)
    return keys


def _load_keys(path: Path, task_id: bytes) -> PartyKeys:
    doc = _read_json(path, "key file")
    try:
        keys = PartyKeys(
            bytes.fromhex(doc["task_id"]),
            int(doc["hpke_config_id"]),
            hpke.private_key_from_bytes(bytes.fromhex(doc["hpke_private_key"])),
            hpke.private_key_from_bytes(bytes.fromhex(doc["auth_private_key"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"malformed key file {path}: {exc}") from exc
    if keys.task_id != task_id:
        raise ConfigError(f"{path} holds the keys of another task")
    return keys


# -- credentials ----------------------------------------------------------------------


def _derive(own: X25519PrivateKey, peer: X25519PublicKey, task_id: bytes, info: bytes) -> str:
    shared = own.exchange(peer)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=task_id, info=info)
    return hkdf.derive(shared).hex()


def aggregator_credential(
    own: X25519PrivateKey, peer: X25519PublicKey, task_id: bytes, helper: int
) -> str:
    """The bearer token between the leader and helper ``helper`` (either side computes it)."""
    return _derive(own, peer, task_id, _AGGREGATOR_AUTH + bytes([helper]))


def collector_credential(own: X25519PrivateKey, peer: X25519PublicKey, task_id: bytes) -> str:
    """The bearer token between the collector and the leader (either side computes it)."""
    return _derive(own, peer, task_id, _COLLECTOR_AUTH)


# -- the verify key ---------------------------------------------------------------------


def load_verify_key(state_dir: Path) -> bytes | None:
    """The VDAF verify key this aggregator holds, if any."""
    path = state_dir / VERIFY_KEY_FILE
    if not path.exists():
        return None
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read verify key {path}: {exc}") from exc
    if len(key) != 32:
        raise ConfigError(f"verify key {path} must be 32 bytes in hex")
    return key


def store_verify_key(state_dir: Path, key: bytes) -> bytes:
    """Keep ``key`` unless a key is already kept; the key kept."""
    path = state_dir / VERIFY_KEY_FILE
    with contextlib.suppress(FileExistsError):  # the key kept first stays
        atomic_write(path, (key.hex() + "\n").encode("ascii"), 0o600, overwrite=False)
    kept = load_verify_key(state_dir)
    assert kept is not None
    return kept
