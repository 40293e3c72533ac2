"""A training round's contribution scores as the ledger and the verifiers see them (pure).

:class:`ScoreRecord` is how a round's providers were scored: the method and its seed (so
anyone re-derives which subsets of providers were released), the subsets, every node's
noised aggregate share of each (the released subset aggregates; their digests name them),
the digests of the model the round started from and of the validation set, the scores
and the integer weights the market splits the providers' escrow by. Its :meth:`digest`
is what the verifiers confirm on-chain (``market.post_scores``).

:func:`weights_of` is the one rule from scores to weights: a provider with a score ≤ 0
weighs 0; the others share :data:`WEIGHT_TOTAL` in proportion to their scores (largest
remainders, ties by position, so the weights sum to it exactly); if no score is positive
every weight is 0 and the market returns the whole providers' cut to the analyst.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from tessera.errors import DecodeError, ProtocolError

_T = TypeVar("_T")

#: The contribution weights of a training query sum to this (``market.vy``'s ``WEIGHT_TOTAL``).
WEIGHT_TOTAL: Final = 1_000_000
#: Leave-one-out, or Shapley values estimated by permutation sampling.
METHODS: Final = ("loo", "shapley")
SEED_SIZE: Final = 32


class ContributionError(ProtocolError):
    """A score record or score input is refused; the message names the problem."""


def digest_bytes(*parts: bytes) -> bytes:
    """SHA-256 of length-prefixed parts (a model's, a validation set's, a share's digest)."""
    h = hashlib.sha256(b"tessera/contribution/v1")
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def weights_of(scores: Sequence[float], total: int = WEIGHT_TOTAL) -> tuple[int, ...]:
    """Integer weights summing to ``total`` in proportion to the positive scores (see the
    module docstring); all 0 when none is positive."""
    for i, s in enumerate(scores):
        if not math.isfinite(s):
            raise ContributionError(f"score {i} is not a finite number: {s!r}")
    positive = [max(float(s), 0.0) for s in scores]
    mass = math.fsum(positive)
    if mass <= 0.0:
        return tuple(0 for _ in scores)
    exact = [total * p / mass for p in positive]
    floors = [math.floor(e) for e in exact]
    left = total - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return tuple(floors)


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """How one round's providers were scored, and the result (see the module docstring)."""

    method: str
    seed: bytes
    permutations: int
    providers: tuple[str, ...]  # the round's providers, in the ticket's order
    accepted: tuple[str, ...]  # those whose reports the committee accepted
    params_digest: bytes  # the model the round started from
    validation_digest: bytes
    subsets: tuple[tuple[str, ...], ...]  # the subsets of accepted providers released
    releases: tuple[tuple[bytes, ...], ...]  # each subset's nodes' noised aggregate shares
    scores: tuple[float, ...]  # one per provider
    weights: tuple[int, ...]  # one per provider, :func:`weights_of` the scores

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ContributionError(f"unknown scoring method {self.method!r}: one of {METHODS}")
        if len(self.seed) != SEED_SIZE:
            raise ContributionError(f"the seed must be {SEED_SIZE} bytes, got {len(self.seed)}")
        if self.permutations < 1:
            raise ContributionError(f"permutations must be positive, got {self.permutations}")
        if len(set(self.providers)) != len(self.providers):
            raise ContributionError("a provider is named twice")
        if not set(self.accepted) <= set(self.providers):
            raise ContributionError("an accepted provider is not one of the round's providers")
        if len(self.subsets) != len(self.releases):
            raise ContributionError("one release per subset")
        if len(self.scores) != len(self.providers) or len(self.weights) != len(self.providers):
            raise ContributionError("one score and one weight per provider")
        if any(w < 0 for w in self.weights) or sum(self.weights) not in (0, WEIGHT_TOTAL):
            raise ContributionError(f"the weights must be ≥ 0 and sum to {WEIGHT_TOTAL} or 0")
        for i, s in enumerate(self.scores):
            if not math.isfinite(s):
                raise ContributionError(f"the score of {self.providers[i]} is not finite")

    @property
    def release_digests(self) -> tuple[bytes, ...]:
        """One digest per released subset aggregate (its nodes' shares, in node order)."""
        return tuple(digest_bytes(*shares) for shares in self.releases)

    def score_of(self, provider: str) -> float:
        return self.scores[self.providers.index(provider)]

    def weight_of(self, provider: str) -> int:
        return self.weights[self.providers.index(provider)]

    def _fields(self, releases: list[Any]) -> dict[str, Any]:
        """Every field as JSON (scores as exact hex floats), with ``releases`` as given:
        the one field list both forms share."""
        return {
            "method": self.method,
            "seed": self.seed.hex(),
            "permutations": self.permutations,
            "providers": list(self.providers),
            "accepted": list(self.accepted),
            "params": self.params_digest.hex(),
            "validation": self.validation_digest.hex(),
            "subsets": [list(s) for s in self.subsets],
            "releases": releases,
            "scores": [float(s).hex() for s in self.scores],
            "weights": list(self.weights),
        }

    def canonical(self) -> bytes:
        """The record's canonical JSON (the shares by digest; scores as exact hex floats)."""
        body = {"v": 1, **self._fields([d.hex() for d in self.release_digests])}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        """What the verifiers confirm on-chain with the weights."""
        return hashlib.sha256(self.canonical()).digest()

    def to_json(self) -> dict[str, Any]:
        """The whole record, shares included (what a verifier is sent)."""
        return self._fields([[b.hex() for b in shares] for shares in self.releases])

    @classmethod
    def from_json(cls, data: Any, where: str = "scores") -> ScoreRecord:
        """Strictly decode :meth:`to_json`; raises :class:`~tessera.errors.DecodeError`."""
        if not isinstance(data, dict) or set(data) != _FIELDS:
            raise DecodeError(f"{where}: expected exactly the fields {sorted(_FIELDS)}")
        try:
            return cls(
                method=_typed(data, "method", str, where),
                seed=bytes.fromhex(_typed(data, "seed", str, where)),
                permutations=_typed(data, "permutations", int, where),
                providers=_names(data["providers"], f"{where}.providers"),
                accepted=_names(data["accepted"], f"{where}.accepted"),
                params_digest=bytes.fromhex(_typed(data, "params", str, where)),
                validation_digest=bytes.fromhex(_typed(data, "validation", str, where)),
                subsets=tuple(
                    _names(s, f"{where}.subsets") for s in _typed(data, "subsets", list, where)
                ),
                releases=tuple(
                    tuple(bytes.fromhex(_hex(b, f"{where}.releases")) for b in _list(r, where))
                    for r in _typed(data, "releases", list, where)
                ),
                scores=tuple(
                    float.fromhex(_hex(v, f"{where}.scores"))
                    for v in _typed(data, "scores", list, where)
                ),
                weights=tuple(
                    _int(w, f"{where}.weights") for w in _typed(data, "weights", list, where)
                ),
            )
        except (ContributionError, ValueError, OverflowError) as exc:
            raise DecodeError(f"{where}: {exc}") from exc


_FIELDS: Final = frozenset(
    {
        "method", "seed", "permutations", "providers", "accepted", "params", "validation",
        "subsets", "releases", "scores", "weights",
    }
)  # fmt: skip
_MAX_ITEMS: Final = 1 << 16


def _typed(data: dict[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = data[key]
    if type(value) is not kind:
        raise DecodeError(f"{where}.{key}: expected {kind.__name__}")
    if isinstance(value, list) and len(value) > _MAX_ITEMS:
        raise DecodeError(f"{where}.{key}: too many items")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise DecodeError(f"{where}: expected a list")
    return value


def _hex(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{where}: expected a hex string")
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise DecodeError(f"{where}: expected an integer")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(n, str) for n in items):
        raise DecodeError(f"{where}: expected a list of names")
    return tuple(items)
