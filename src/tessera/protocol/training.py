"""Messages of a federated training round between providers and computing nodes (pure).

What the networked roles will exchange for :mod:`tessera.learning.secure`; nothing here
does I/O. Three pieces:

* **Positions.** Prio3's aggregator 0 (the leader) receives the whole encoded
  measurement, the others a seed; :func:`positions` rotates which node holds which
  position from report to report (by the report's nonce), so the bandwidth is spread.
* **Sealed reports.** A provider seals each input share to the node that holds its
  position (:mod:`tessera.crypto.seal`, bound to the training, the round, the provider,
  the nonce, the node and the position), so a relay — the analyst — never holds two
  shares of an update. :func:`report_digest` is what the provider commits on-chain.
* **The verify key.** Prio3's query randomness comes from a verify key that the
  providers must not know when they shard. Each node commits to a fresh seed before the
  round (:func:`seed_commitment`), reveals it once the reports are committed, and the
  key is the hash of every revealed seed (:func:`verify_key`): one honest node's seed
  makes it unpredictable, and the commitments stop a node from choosing its seed
  after seeing the reports.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tessera.crypto.rng import Rng
from tessera.crypto.seal import open_sealed, seal
from tessera.errors import DecodeError, InvalidProof

_DOMAIN = b"tessera/train/v1/"
SEED_SIZE = 32
NONCE_SIZE = 16
#: The longest input share (a 10^6-parameter, 32-bit update's leader share is 512 MB).
MAX_SHARE = 1 << 30


def positions(nonce: bytes, nodes: Sequence[int]) -> tuple[int, ...]:
    """The node (index in ``nodes``' order) at each Prio3 position for this report:
    position ``k`` goes to ``nodes[(r + k) mod n]`` with ``r`` drawn from the nonce."""
    n = len(nodes)
    if n < 2 or len(set(nodes)) != n:
        raise ValueError("need at least two distinct nodes")
    if len(nonce) != NONCE_SIZE:
        raise ValueError("incorrect nonce size")
    r = int.from_bytes(hashlib.sha256(_DOMAIN + b"positions" + nonce).digest(), "big") % n
    ordered = sorted(nodes)
    return tuple(ordered[(r + k) % n] for k in range(n))


def _aad(
    training_id: bytes, round_index: int, provider: str, nonce: bytes, node: int, position: int
) -> bytes:
    who = provider.encode()
    return (
        _DOMAIN
        + b"share"
        + struct.pack(">B", len(training_id))
        + training_id
        + struct.pack(">IH", round_index, len(who))
        + who
        + nonce
        + struct.pack(">HB", node, position)
    )


@dataclass(frozen=True, slots=True)
class SealedReport:
    """A provider's report for one round: nonce, public share, one sealed share per node."""

    training_id: bytes
    round_index: int
    provider: str
    nonce: bytes
    public_share: bytes
    sealed: tuple[tuple[int, bytes], ...]  # (node index, box), in position order

    def encode(self) -> bytes:
        """``len ‖ training id ‖ round ‖ len ‖ provider ‖ nonce ‖ len ‖ public share ‖ count ‖
        (node ‖ len ‖ box)*``, lengths big-endian."""
        who = self.provider.encode()
        out = [
            struct.pack(">B", len(self.training_id)),
            self.training_id,
            struct.pack(">IH", self.round_index, len(who)),
            who,
            self.nonce,
            struct.pack(">I", len(self.public_share)),
            self.public_share,
            struct.pack(">B", len(self.sealed)),
        ]
        for node, box in self.sealed:
            out += [struct.pack(">HI", node, len(box)), box]
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> SealedReport:
        """Strict inverse of :meth:`encode`; raises :class:`DecodeError`."""
        reader = _Reader(data)
        training_id = reader.take(reader.unpack(">B")[0])
        round_index, who_len = reader.unpack(">IH")
        try:
            provider = reader.take(who_len).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("sealed report: provider is not UTF-8") from exc
        nonce = reader.take(NONCE_SIZE)
        public_share = reader.take(reader.unpack(">I")[0])
        count = reader.unpack(">B")[0]
        if count < 2:
            raise DecodeError("sealed report: fewer than two shares")
        sealed = []
        for _ in range(count):
            node, size = reader.unpack(">HI")
            if size > MAX_SHARE:
                raise DecodeError("sealed report: share too long")
            sealed.append((node, reader.take(size)))
        reader.done()
        nodes = [node for node, _ in sealed]
        if len(set(nodes)) != len(nodes):
            raise DecodeError("sealed report: a node twice")
        if tuple(nodes) != positions(nonce, nodes):
            raise DecodeError("sealed report: shares not at the positions the nonce gives")
        return cls(training_id, round_index, provider, nonce, public_share, tuple(sealed))

    def open_share(self, node: int, secret_key: bytes) -> tuple[int, bytes]:
        """Node ``node``'s Prio3 position and input share; ``InvalidProof`` if the box was
        not sealed to it for this training, round, provider and nonce."""
        for position, (who, box) in enumerate(self.sealed):
            if who == node:
                aad = _aad(
                    self.training_id, self.round_index, self.provider, self.nonce, node, position
                )
                return position, open_sealed(secret_key, box, aad)
        raise DecodeError(f"sealed report: no share for node {node}")


def seal_report(
    training_id: bytes,
    round_index: int,
    provider: str,
    nonce: bytes,
    public_share: bytes,
    input_shares: Sequence[bytes],
    node_keys: Mapping[int, bytes],
    rng: Rng,
) -> SealedReport:
    """Seal input share ``k`` to the node at position ``k`` (``node_keys``: index → the
    node's registered 33-byte public key)."""
    if len(input_shares) != len(node_keys):
        raise ValueError("one input share per node")
    if not 0 < len(training_id) < 256:
        raise ValueError("training id must be 1 to 255 bytes")
    order = positions(nonce, list(node_keys))
    sealed = tuple(
        (
            node,
            seal(
                node_keys[node],
                share,
                _aad(training_id, round_index, provider, nonce, node, k),
                rng,
            ),
        )
        for k, (node, share) in enumerate(zip(order, input_shares, strict=True))
    )
    return SealedReport(training_id, round_index, provider, nonce, public_share, sealed)


def report_digest(report: SealedReport) -> bytes:
    """SHA-256 of the report's encoding under this module's domain: the on-chain commitment."""
    return hashlib.sha256(_DOMAIN + b"report" + report.encode()).digest()


def seed_commitment(training_id: bytes, round_index: int, node: int, seed: bytes) -> bytes:
    """A node's commitment to its verify-key seed for one round."""
    if len(seed) != SEED_SIZE:
        raise ValueError("incorrect seed size")
    header = (
        struct.pack(">B", len(training_id)) + training_id + struct.pack(">IH", round_index, node)
    )
    return hashlib.sha256(_DOMAIN + b"seed" + header + seed).digest()


def verify_key(
    training_id: bytes,
    round_index: int,
    commitments: Mapping[int, bytes],
    seeds: Mapping[int, bytes],
) -> bytes:
    """The round's Prio3 verify key from every node's revealed seed, each checked against
    its commitment; ``InvalidProof`` names a node whose seed does not match or is missing."""
    if set(seeds) != set(commitments):
        missing = sorted(set(commitments) - set(seeds))
        raise InvalidProof(f"verify key: no seed revealed by node(s) {missing}")
    for node in sorted(commitments):
        if seed_commitment(training_id, round_index, node, seeds[node]) != commitments[node]:
            raise InvalidProof(f"verify key: node {node}'s seed does not match its commitment")
    h = hashlib.sha256(_DOMAIN + b"verify key" + struct.pack(">B", len(training_id)) + training_id)
    h.update(struct.pack(">I", round_index))
    for node in sorted(seeds):
        h.update(struct.pack(">H", node) + seeds[node])
    return h.digest()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("sealed report: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[int, ...]:
        values: tuple[int, ...] = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return values

    def done(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError("sealed report: trailing bytes")
