"""Contribution scores of a training round's providers from secure subset aggregates (pure).

After a round's release, the committee releases the noised sums of *subsets* of the
accepted reports (:meth:`tessera.learning.committee.NodeRound.release_subset`, driven by
:func:`tessera.learning.rounds.release_subsets`): the same output shares, the same noise
plan, fresh noise for each sum. No update is revealed; every subset sum is a release of
its own and is charged ρ to each provider in it (:func:`privacy_charges`).

The value of a subset ``S`` is its **validation gain**: the validation loss of the model
the round started from, minus that of the model the server step takes on ``S``'s sum
(:func:`tessera.learning.rounds.server_update`, the round's own step); ``v(∅) = 0``.

- ``"loo"`` (leave-one-out): ``score(i) = v(A) − v(A∖{i})`` over the accepted ``A``;
  ``|A|`` subset releases.
- ``"shapley"``: permutation sampling (Castro et al. 2009): ``permutations`` orderings of
  the round's providers drawn from the seed, each provider's marginal gain over its
  prefix averaged; up to ``permutations·|A|`` releases (repeated prefixes released once).

Subsets are drawn over the round's providers and restricted to the accepted ones, so an
excluded provider adds nothing to any sum and scores 0. Which subsets are released is a
function of the method, the seed and the providers only (:func:`plan_subsets`): the
verifier re-derives it, re-computes every value from the released shares and the
validation set, and refuses a record whose scores or weights differ
(:func:`check_record`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.learning import secure
from tessera.learning.config import TrainingConfig
from tessera.learning.fixed_point import FixedPoint
from tessera.learning.models import Array, Model
from tessera.protocol.contribution import (
    METHODS,
    SEED_SIZE,
    ContributionError,
    ScoreRecord,
    digest_bytes,
    weights_of,
)

Subset = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContributionSpec:
    """How a training's rounds are scored: the method, Shapley's permutations, and which
    rounds (``None``: every round). Each scored round costs its providers more privacy
    (:func:`privacy_charges`)."""

    method: str = "loo"
    permutations: int = 8
    rounds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ContributionError(f"unknown scoring method {self.method!r}: one of {METHODS}")
        if self.permutations < 1:
            raise ContributionError(f"permutations must be positive, got {self.permutations}")
        if self.rounds is not None and any(r < 0 for r in self.rounds):
            raise ContributionError(f"round indices must be ≥ 0, got {self.rounds}")

    def scores_round(self, round_index: int) -> bool:
        return self.rounds is None or round_index in self.rounds

    def plan(self, seed: bytes, providers: Sequence[str], validation: bytes = b"") -> ScoringPlan:
        return ScoringPlan(self.method, self.permutations, seed, tuple(providers), validation)


def _orderings(providers: Sequence[str], seed: bytes, permutations: int) -> list[tuple[str, ...]]:
    if len(seed) != SEED_SIZE:
        raise ContributionError(f"the seed must be {SEED_SIZE} bytes, got {len(seed)}")
    rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
    names = list(providers)
    return [tuple(names[i] for i in rng.permutation(len(names))) for _ in range(permutations)]


def _coalitions(
    method: str, providers: Sequence[str], seed: bytes, permutations: int
) -> list[Subset]:
    """Every coalition the method evaluates (over the round's providers), in order."""
    if method == "loo":
        full = tuple(providers)
        return [full, *(tuple(p for p in providers if p != q) for q in providers)]
    if method == "shapley":
        out: list[Subset] = []
        for order in _orderings(providers, seed, permutations):
            out.extend(order[: k + 1] for k in range(len(order)))
        return out
    raise ContributionError(f"unknown scoring method {method!r}: one of {METHODS}")


def _restrict(coalition: Sequence[str], accepted: Sequence[str]) -> Subset:
    keep = set(accepted)
    return tuple(sorted(p for p in coalition if p in keep))


def plan_subsets(
    method: str,
    providers: Sequence[str],
    accepted: Sequence[str],
    seed: bytes,
    permutations: int,
) -> tuple[Subset, ...]:
    """The subsets of accepted providers the committee releases for the scores, each once,
    in a fixed order; neither the empty set nor the whole accepted set (the round's own
    release is that sum)."""
    if len(set(providers)) != len(providers):
        raise ContributionError("a provider is named twice")
    if not set(accepted) <= set(providers):
        raise ContributionError("an accepted provider is not one of the round's providers")
    everyone = tuple(sorted(accepted))
    seen: dict[Subset, None] = {}
    for c in _coalitions(method, providers, seed, permutations):
        s = _restrict(c, accepted)
        if s and s != everyone:
            seen.setdefault(s, None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class ScoringPlan:
    """What fixes a round's subset releases before any is made: the method, its
    permutations and seed, the round's providers. A node holding it releases only these
    subsets (:meth:`tessera.learning.committee.NodeRound.release_subset`), so whoever drives
    the round cannot ask for others (a single provider's sum under leave-one-out)."""

    method: str
    permutations: int
    seed: bytes
    providers: tuple[str, ...]
    #: the digest of the validation set the scores are computed on (:func:`validation_digest`),
    #: when it is fixed with the plan (a training ticket's): empty if not
    validation: bytes = b""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ContributionError(f"unknown scoring method {self.method!r}: one of {METHODS}")
        if self.permutations < 1:
            raise ContributionError(f"permutations must be positive, got {self.permutations}")
        if len(self.seed) != SEED_SIZE:
            raise ContributionError(f"the seed must be {SEED_SIZE} bytes, got {len(self.seed)}")
        if not self.providers or len(set(self.providers)) != len(self.providers):
            raise ContributionError("the plan's providers must be distinct, at least one")
        if len(self.validation) not in (0, 32):
            raise ContributionError("the validation digest must be 32 bytes (or none)")

    def subsets(self, accepted: Sequence[str]) -> tuple[Subset, ...]:
        return plan_subsets(self.method, self.providers, accepted, self.seed, self.permutations)

    def most_releases(self) -> int:
        """The most subset releases any provider is in, whoever is accepted: the plan over
        every provider (leaving some out merges subsets, it never adds one), so charging
        each provider ``(1 + most_releases)·ρ`` before the round covers its scoring."""
        counts = privacy_charges(self.subsets(self.providers), 1.0)
        return int(max(counts.values(), default=0.0))


def privacy_charges(subsets: Sequence[Subset], rho: float) -> dict[str, float]:
    """ρ each provider is charged for the subset releases it is in (on top of the round's)."""
    out: dict[str, float] = {}
    for s in subsets:
        for p in s:
            out[p] = out.get(p, 0.0) + rho
    return out


def marginal_scores(
    method: str,
    providers: Sequence[str],
    accepted: Sequence[str],
    seed: bytes,
    permutations: int,
    value: Callable[[Subset], float],
) -> tuple[float, ...]:
    """Each provider's score from the subset values (``value`` of a sorted subset of the
    accepted providers; ``v(∅) = 0`` without calling it)."""
    cache: dict[Subset, float] = {(): 0.0}

    def v(coalition: Sequence[str]) -> float:
        s = _restrict(coalition, accepted)
        if s not in cache:
            cache[s] = float(value(s))
        return cache[s]

    if method == "loo":
        full = v(providers)
        return tuple(full - v([p for p in providers if p != q]) for q in providers)
    if method == "shapley":
        total = dict.fromkeys(providers, 0.0)
        for order in _orderings(providers, seed, permutations):
            before = 0.0
            for k, p in enumerate(order):
                after = v(order[: k + 1])
                total[p] += after - before
                before = after
        return tuple(total[p] / permutations for p in providers)
    raise ContributionError(f"unknown scoring method {method!r}: one of {METHODS}")


def params_digest(params: Array) -> bytes:
    """The digest of a model's parameters (float64, little-endian)."""
    return digest_bytes(np.ascontiguousarray(params, dtype="<f8").tobytes())


def validation_digest(validation: tuple[Array, Any]) -> bytes:
    """The digest of a validation set: its shape, features and labels (float64)."""
    x = np.ascontiguousarray(validation[0], dtype="<f8")
    y = np.ascontiguousarray(np.asarray(validation[1]), dtype="<f8")
    shape = np.asarray(x.shape, dtype="<i8").tobytes()
    return digest_bytes(shape, x.tobytes(), y.tobytes())


@dataclass(frozen=True, slots=True)
class RoundContext:
    """What a round's scores depend on besides the releases: the model and where the round
    started, its configuration and encoding, the providers' public maxima, the validation set."""

    model: Model
    params: Array
    config: TrainingConfig
    fixed_point: FixedPoint
    vdaf: Prio3FixedPointBoundedL2VecSum
    max_rows: Mapping[str, int]
    validation: tuple[Array, Any]

    def gain(self, subset: Subset, shares: Sequence[bytes]) -> float:
        """The validation gain of the server step on ``subset``'s released sum."""
        from tessera.learning.rounds import server_update

        total = secure.unshard(self.vdaf, shares, len(subset))
        new = server_update(
            self.params, total, subset, self.config, self.fixed_point, self.max_rows
        )
        # C order, float64: the loss's products then round alike wherever the set came from
        # (a data frame's Fortran-ordered array, or the verifier's decoded JSON)
        x = np.ascontiguousarray(self.validation[0], dtype=np.float64)
        y = self.validation[1]
        return self.model.loss(self.params, x, y) - self.model.loss(new, x, y)


def score_record(
    ctx: RoundContext,
    method: str,
    seed: bytes,
    permutations: int,
    providers: Sequence[str],
    accepted: Sequence[str],
    round_shares: Sequence[bytes],
    releases: Mapping[Subset, Sequence[bytes]],
) -> ScoreRecord:
    """The round's scores from its own release (``round_shares``, the sum of every accepted
    report) and the subset releases of :func:`plan_subsets`."""
    subsets = plan_subsets(method, providers, accepted, seed, permutations)
    missing = [list(s) for s in subsets if s not in releases]
    if missing:
        raise ContributionError(f"subsets not released: {missing}")
    everyone = tuple(sorted(accepted))
    shares: dict[Subset, Sequence[bytes]] = {s: releases[s] for s in subsets}
    if everyone:
        shares[everyone] = round_shares
    scores = marginal_scores(
        method, providers, accepted, seed, permutations, lambda s: ctx.gain(s, shares[s])
    )
    listed = (everyone, *subsets) if everyone else subsets
    return ScoreRecord(
        method=method,
        seed=seed,
        permutations=permutations,
        providers=tuple(providers),
        accepted=tuple(accepted),
        params_digest=params_digest(ctx.params),
        validation_digest=validation_digest(ctx.validation),
        subsets=tuple(listed),
        releases=tuple(tuple(shares[s]) for s in listed),
        scores=scores,
        weights=weights_of(scores),
    )


def check_record(
    record: ScoreRecord,
    ctx: RoundContext,
    round_shares: Sequence[bytes] | None = None,
    release_digests: Sequence[bytes] | None = None,
) -> None:
    """The verifier's re-check of a round's scores from the record: the model and the
    validation set are the ones it names, the subsets are the method's plan for the seed,
    the round's own release is the one given (``round_shares``, if known), each released
    aggregate has the digest on the trail (``release_digests``, if known), and every score
    and weight re-computes exactly. Raises :class:`ContributionError` naming the problem."""
    if params_digest(ctx.params) != record.params_digest:
        raise ContributionError("the record names another starting model")
    if validation_digest(ctx.validation) != record.validation_digest:
        raise ContributionError("the record names another validation set")
    plan = plan_subsets(
        record.method, record.providers, record.accepted, record.seed, record.permutations
    )
    everyone = tuple(sorted(record.accepted))
    expected = ((everyone,) if everyone else ()) + plan
    if record.subsets != expected:
        raise ContributionError("the released subsets are not the method's plan for the seed")
    if round_shares is not None and everyone and record.releases[0] != tuple(round_shares):
        raise ContributionError("the record's full sum is not the round's release")
    if release_digests is not None and tuple(release_digests) != record.release_digests:
        raise ContributionError("a released aggregate is not the one on the trail")
    shares = dict(zip(record.subsets, record.releases, strict=True))
    try:
        scores = marginal_scores(
            record.method,
            record.providers,
            record.accepted,
            record.seed,
            record.permutations,
            lambda s: ctx.gain(s, shares[s]),
        )
    except ValueError as exc:
        raise ContributionError(f"a released aggregate does not decode: {exc}") from exc
    for name, got, want in zip(record.providers, record.scores, scores, strict=True):
        if got != want:
            raise ContributionError(f"the score of {name} is {got!r}, re-computed {want!r}")
    if record.weights != weights_of(scores):
        raise ContributionError("the weights are not the scores' weights")
