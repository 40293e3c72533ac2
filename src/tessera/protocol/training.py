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
* **The ticket.** :class:`TrainingTicket` is one round as every role receives it: the
  model and the digest of the parameters it starts from, the local training and the
  clipping, the privacy cost, the committee and the providers asked. Like a query's
  ticket (:mod:`tessera.protocol.query`), its hash names the round's query on the
  ledger, so every party works from the same one.
* **The verify key.** Prio3's query randomness comes from a verify key that the
  providers must not know when they shard. Each node commits to a fresh seed before the
  round (:func:`seed_commitment`), reveals it once the reports are committed, and the
  key is the hash of every revealed seed (:func:`verify_key`): one honest node's seed
  makes it unpredictable, and the commitments stop a node from choosing its seed
  after seeing the reports.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from Crypto.Hash import keccak

from tessera.analytics.local import ColumnBounds
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.crypto.rng import Rng
from tessera.crypto.seal import open_sealed, seal
from tessera.dp.distributed import NoisePlan
from tessera.errors import DecodeError, InvalidProof, QueryError
from tessera.learning.config import (
    TrainingConfig,
    classes_of,
    fixed_point_for,
    sensitivity_of,
    vdaf_for,
)
from tessera.learning.fixed_point import FixedPoint
from tessera.learning.local import LocalConfig
from tessera.learning.models import Model
from tessera.learning.privacy import round_noise
from tessera.learning.serialize import encode_model, model_from_spec
from tessera.protocol.query import bounds_from_json, bounds_to_json
from tessera.protocol.wire import field, from_hex

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


# -- the ticket -------------------------------------------------------------------------

_TICKET_DOMAIN = b"tessera/train-ticket/v1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
MAX_ROUND_PROVIDERS = 1024
#: The operation a training round is on the market (its price: the datasets' training price).
OPERATION = "federated_training"


@dataclass(frozen=True)
class TrainingTicket:
    """One round of a training: what to train, from which model, at what privacy cost."""

    training_id: bytes
    round_index: int
    table: str
    features: tuple[str, ...]
    label: str
    bounds: Mapping[str, ColumnBounds]  # the table's public bounds, as its providers publish
    model: Mapping[str, Any]  # :func:`tessera.learning.serialize.model_spec`
    model_digest: bytes  # SHA-256 of the encoded model the round starts from
    config: TrainingConfig
    max_rows: int  # the largest public maximum of rows among the training's providers
    n: int
    t: int
    committee: int
    providers: tuple[tuple[str, str], ...]  # asked this round: (name, account), by name
    nonce: bytes
    analyst: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.training_id) <= 64:
            raise QueryError("the training id must be 1 to 64 bytes")
        if not 0 <= self.round_index < self.config.rounds:
            raise QueryError(f"round {self.round_index} is not in [0, {self.config.rounds})")
        if not self.config.secure:
            raise QueryError("a round on the network is a secure aggregation")
        if not 1 <= self.t <= self.n or self.n < 2 * self.t - 1 or self.n < 2:
            raise QueryError(f"a committee of {self.n} with threshold {self.t}")
        if self.max_rows < 1:
            raise QueryError("max_rows must be positive")
        if not self.features or len(set(self.features)) != len(self.features):
            raise QueryError("the features must be distinct and at least one")
        if self.label in self.features:
            raise QueryError(f"the label {self.label!r} is also a feature")
        missing = [c for c in (*self.features, self.label) if c not in self.bounds]
        if missing:
            raise QueryError(f"no public bounds for column(s) {', '.join(missing)}")
        names = [name for name, _ in self.providers]
        if not names or names != sorted(set(names)):
            raise QueryError("providers must be distinct, sorted by name, at least one")
        for name, address in self.providers:
            if not _ADDRESS.fullmatch(address):
                raise QueryError(f"provider {name!r}: {address!r} is not an account address")
        if not _ADDRESS.fullmatch(self.analyst):
            raise QueryError(f"analyst: {self.analyst!r} is not an account address")
        if not 16 <= len(self.nonce) <= 64 or len(self.model_digest) != 32:
            raise QueryError("the nonce must be 16 to 64 bytes and the model digest 32")
        model = self.built_model()
        classes = classes_of(model)
        label = self.bounds[self.label]
        if classes is not None and (label.lo, label.hi) != (0, classes - 1):
            raise QueryError(
                f"the label {self.label!r} must have bounds (0, {classes - 1}) for "
                f"{classes} classes, not ({label.lo}, {label.hi})"
            )
        if getattr(model, "features", len(self.features)) != len(self.features):
            raise QueryError("the model's features are not the ticket's")

    def built_model(self) -> Model:
        try:
            return model_from_spec(dict(self.model))
        except DecodeError as exc:
            raise QueryError(str(exc)) from exc

    @property
    def rho(self) -> float | None:
        budget = self.config.budget()
        return None if budget is None else budget.rho_per_round

    @property
    def delta(self) -> float:
        return self.config.delta

    @property
    def operations(self) -> set[str]:
        return {OPERATION}

    @cached_property
    def fixed_point(self) -> FixedPoint:
        return fixed_point_for(self.config, self.max_rows)

    @cached_property
    def vdaf(self) -> Prio3FixedPointBoundedL2VecSum:
        return vdaf_for(self.config, self.built_model().num_params, self.fixed_point, self.n)

    @cached_property
    def noise(self) -> NoisePlan | None:
        """Each node's noise, or ``None`` without differential privacy."""
        rho = self.rho
        if rho is None:
            return None
        return round_noise(
            self.fixed_point,
            sensitivity_of(self.config, self.fixed_point),
            self.n,
            self.t,
            rho,
            self.vdaf.LENGTH,
            delta=self.config.delta,
        )

    def account_of(self, provider: str) -> str | None:
        return dict(self.providers).get(provider)

    @cached_property
    def ticket_hash(self) -> bytes:
        body = json.dumps(self._body(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(_TICKET_DOMAIN + body.encode()).digest()

    @cached_property
    def query_id(self) -> bytes:
        """keccak256(the analyst's 20 bytes ‖ ticket hash), as the market names it."""
        digest = keccak.new(digest_bits=256)
        digest.update(bytes.fromhex(self.analyst[2:]) + self.ticket_hash)
        return digest.digest()

    def _body(self) -> dict[str, Any]:
        c = self.config
        return {
            "training_id": self.training_id.hex(),
            "round": self.round_index,
            "table": self.table,
            "features": list(self.features),
            "label": self.label,
            "bounds": bounds_to_json(self.bounds),
            "model": dict(self.model),
            "model_digest": self.model_digest.hex(),
            "config": {
                "rounds": c.rounds,
                "providers_per_round": c.providers_per_round,
                "epochs": c.local.epochs,
                "learning_rate": c.local.learning_rate,
                "batch_size": c.local.batch_size,
                "unit": c.unit,
                "weighted": c.weighted,
                "clip": c.clip,
                "bits": c.bits,
                "epsilon": c.epsilon,
                "delta": c.delta,
                "server_learning_rate": c.server_learning_rate,
            },
            "max_rows": self.max_rows,
            "n": self.n,
            "t": self.t,
            "committee": self.committee,
            "providers": [list(p) for p in self.providers],
            "nonce": self.nonce.hex(),
            "analyst": self.analyst.lower(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self._body(), "query_id": self.query_id.hex()}

    @classmethod
    def from_json(cls, data: Any, where: str = "ticket") -> TrainingTicket:
        """Strictly decode a ticket; a ``query_id`` given must be the ticket's own hash."""
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object")
        known = {
            "query_id", "training_id", "round", "table", "features", "label", "bounds",
            "model", "model_digest", "config", "max_rows", "n", "t", "committee",
            "providers", "nonce", "analyst",
        }  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise DecodeError(f"{where}: unknown field(s) {unknown}")
        features = field(data, "features", list, where)
        if not all(isinstance(f, str) for f in features) or len(features) > 4096:
            raise DecodeError(f"{where}.features: expected a list of column names")
        providers = field(data, "providers", list, where)
        if len(providers) > MAX_ROUND_PROVIDERS or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in providers
        ):
            raise DecodeError(f"{where}.providers: expected a list of [name, account] pairs")
        try:
            ticket = cls(
                training_id=from_hex(
                    field(data, "training_id", str, where), f"{where}.training_id"
                ),
                round_index=field(data, "round", int, where),
                table=field(data, "table", str, where),
                features=tuple(features),
                label=field(data, "label", str, where),
                bounds=bounds_from_json(data.get("bounds"), f"{where}.bounds"),
                model=field(data, "model", dict, where),
                model_digest=from_hex(
                    field(data, "model_digest", str, where), f"{where}.model_digest"
                ),
                config=_config_from_json(field(data, "config", dict, where), f"{where}.config"),
                max_rows=field(data, "max_rows", int, where),
                n=field(data, "n", int, where),
                t=field(data, "t", int, where),
                committee=field(data, "committee", int, where),
                providers=tuple((str(a), str(b)) for a, b in providers),
                nonce=from_hex(field(data, "nonce", str, where), f"{where}.nonce"),
                analyst=field(data, "analyst", str, where),
            )
        except (QueryError, ValueError) as exc:
            raise DecodeError(f"{where}: {exc}") from exc
        given = data.get("query_id")
        if given is not None and from_hex(given, f"{where}.query_id") != ticket.query_id:
            raise DecodeError(f"{where}.query_id: not the hash of this ticket")
        return ticket


def _config_from_json(data: Mapping[str, Any], where: str) -> TrainingConfig:
    known = {
        "rounds", "providers_per_round", "epochs", "learning_rate", "batch_size", "unit",
        "weighted", "clip", "bits", "epsilon", "delta", "server_learning_rate",
    }  # fmt: skip
    if set(data) != known:
        raise DecodeError(f"{where}: expected exactly the fields {sorted(known)}")
    per_round = data["providers_per_round"]
    if per_round is not None:
        per_round = field(data, "providers_per_round", int, where)
    epsilon = data["epsilon"]
    if epsilon is not None:
        epsilon = field(data, "epsilon", float, where)
    if not isinstance(data["weighted"], bool):
        raise DecodeError(f"{where}.weighted: expected a boolean")
    return TrainingConfig(
        rounds=field(data, "rounds", int, where),
        providers_per_round=per_round,
        local=LocalConfig(
            field(data, "epochs", int, where),
            field(data, "learning_rate", float, where),
            field(data, "batch_size", int, where),
        ),
        secure=True,
        unit=field(data, "unit", str, where),
        weighted=data["weighted"],
        clip=field(data, "clip", float, where),
        bits=field(data, "bits", int, where),
        epsilon=epsilon,
        delta=field(data, "delta", float, where),
        server_learning_rate=field(data, "server_learning_rate", float, where),
    )


def model_digest(model: Model, params: Any) -> bytes:
    """SHA-256 of the model's canonical encoding (:func:`~tessera.learning.serialize.encode_model`,
    no metadata): what a ticket names as the round's starting point."""
    return hashlib.sha256(encode_model(model, params)).digest()
