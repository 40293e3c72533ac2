"""A secure round as each party plays it: pure state machines the network's roles can wrap.

One round, in order (every message is bytes or a frozen dataclass; nothing here does I/O):

1. every node draws a verify-key seed and publishes its commitment
   (:meth:`NodeRound.commitment`);
2. every provider seals its report to the nodes (:func:`tessera.protocol.training.seal_report`);
   the analyst relays the reports and fixes the round's set (:meth:`NodeRound.lock`:
   the provider names and report digests; later the digests are what is on-chain);
3. every node reveals its seed (:meth:`NodeRound.reveal`, refused before the lock), and
   each computes the verify key from all of them (:meth:`NodeRound.agree`);
4. each node opens its share of each report and answers its verifier share
   (:meth:`NodeRound.prepare`), or nothing if its share does not open, decode or verify;
5. the analyst hands every node all verifier shares; each node decides each report itself
   (:meth:`NodeRound.decide`) and keeps the output shares of the accepted ones;
6. each node releases its aggregate share with its noise, once (:meth:`NodeRound.release`);
   the analyst adds them (:func:`tessera.learning.secure.unshard`).

A node that finds a report it cannot prepare says so; the report is then excluded by
every node (each one decides only on a full set of verifier shares), so all nodes sum
the same reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tessera.crypto import prio3_l2
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.crypto.rng import Rng
from tessera.dp.distributed import NoisePlan
from tessera.dp.samplers import NoiseSampler
from tessera.errors import DecodeError, InvalidProof, ProtocolError
from tessera.learning import secure
from tessera.learning.contribution import ScoringPlan
from tessera.protocol.training import (
    SEED_SIZE,
    SealedReport,
    report_digest,
    seed_commitment,
    verify_key,
)


@dataclass
class NodeRound:
    """Computing node ``index``'s side of round ``round_index`` of a training."""

    index: int
    secret_key: bytes
    vdaf: Prio3FixedPointBoundedL2VecSum
    training_id: bytes
    round_index: int
    plan: NoisePlan | None
    sampler: NoiseSampler | None
    rng: Rng
    #: Nonces of reports this node prepared in earlier rounds (the role keeps it in its store).
    seen: set[bytes] = field(default_factory=set)
    _seed: bytes = b""
    _locked: dict[str, bytes] | None = None
    _key: bytes | None = None
    _prepared: dict[str, tuple[int, prio3_l2.L2VerifyState, bytes]] = field(default_factory=dict)
    _accepted: dict[str, Any] = field(default_factory=dict)
    _excluded: dict[str, str] = field(default_factory=dict)
    #: the round's contribution scoring, if any: the only subsets this node releases
    scoring: ScoringPlan | None = None
    _released: bool = False
    _subsets: set[tuple[str, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.plan is not None and self.sampler is None:
            raise ValueError("a noise plan needs a sampler")
        self._seed = self.rng.randbytes(SEED_SIZE)

    @property
    def ctx(self) -> bytes:
        return secure.round_ctx(self.training_id, self.round_index)

    def commitment(self) -> bytes:
        """The commitment to this node's verify-key seed (published before the reports)."""
        return seed_commitment(self.training_id, self.round_index, self.index, self._seed)

    def lock(self, digests: Mapping[str, bytes]) -> bytes:
        """Fix the round's reports (provider → report digest); only these are prepared.
        Returns this node's seed (:meth:`reveal`): once the reports are fixed it may be known."""
        if self._locked is not None and self._locked != dict(digests):
            raise ProtocolError(f"node {self.index}: the round's reports are already fixed")
        self._locked = dict(digests)
        return self._seed

    def reveal(self) -> bytes:
        """This node's seed, once the reports are fixed (before, a provider could learn
        the verify key and prove a false statement)."""
        if self._locked is None:
            raise ProtocolError(f"node {self.index}: no seed before the reports are fixed")
        return self._seed

    def agree(self, commitments: Mapping[int, bytes], seeds: Mapping[int, bytes]) -> None:
        """The verify key from every node's seed; this node's own must be among them."""
        if commitments.get(self.index) != self.commitment() or seeds.get(self.index) != self._seed:
            raise ProtocolError(f"node {self.index}: its own seed is missing or altered")
        self._key = verify_key(self.training_id, self.round_index, commitments, seeds)

    def prepare(self, provider: str, report: SealedReport) -> bytes | None:
        """This node's verifier share of ``provider``'s report, or ``None`` (and why, in
        :meth:`exclusions`) if its share does not open, decode or verify."""
        if self._key is None or self._locked is None:
            raise ProtocolError(f"node {self.index}: no verify key yet")
        if self._locked.get(provider) != report_digest(report):
            reason = "the report is not the one fixed for the round"
            self._excluded.setdefault(provider, reason)
            return None
        if report.provider != provider or report.round_index != self.round_index:
            self._excluded.setdefault(provider, "the report names another provider or round")
            return None
        if provider in self._prepared:
            return self._prepared[provider][2]
        if report.nonce in self.seen:
            self._excluded.setdefault(provider, "replayed: the report's nonce was seen before")
            return None
        try:
            position, share = report.open_share(self.index, self.secret_key)
            state, vshare = prio3_l2.verify_init(
                self.vdaf, self._key, self.ctx, position, report.nonce, report.public_share, share
            )
        except (DecodeError, InvalidProof, ValueError) as exc:
            self._excluded.setdefault(provider, f"{type(exc).__name__}: {exc}")
            return None
        self.seen.add(report.nonce)
        self._prepared[provider] = (position, state, vshare)
        return vshare

    def decide(self, provider: str, verifier_shares: Sequence[bytes | None]) -> bool:
        """Accept or exclude ``provider``'s report from every node's verifier share (in
        position order; ``None`` where a node could not prepare it)."""
        if self._released:
            raise ProtocolError(f"node {self.index}: the round is already released")
        if provider in self._accepted:
            return True
        mine = self._prepared.get(provider)
        if mine is None or any(v is None for v in verifier_shares):
            self._excluded.setdefault(provider, "a node could not verify its share")
            return False
        position, state, vshare = mine
        if len(verifier_shares) != self.vdaf.SHARES or verifier_shares[position] != vshare:
            self._excluded.setdefault(provider, "the verifier shares are not the nodes'")
            return False
        shares = [v for v in verifier_shares if v is not None]
        try:
            message = prio3_l2.verifier_message(self.vdaf, self.ctx, shares)
            self._accepted[provider] = prio3_l2.verify_next(state, message)
        except (DecodeError, InvalidProof, ValueError) as exc:
            self._excluded.setdefault(provider, f"{type(exc).__name__}: {exc}")
            return False
        return True

    def prepare_many(self, reports: Mapping[str, SealedReport]) -> dict[str, bytes | None]:
        """:meth:`prepare` of each report, by provider."""
        return {name: self.prepare(name, rep) for name, rep in reports.items()}

    def decide_many(
        self, verifier_shares: Mapping[str, Sequence[bytes | None]]
    ) -> tuple[list[str], dict[str, str]]:
        """:meth:`decide` of each report; the reports accepted and those refused, with why."""
        for name, shares in verifier_shares.items():
            self.decide(name, shares)
        return self.accepted(), self.exclusions()

    def exclusions(self) -> dict[str, str]:
        """The reports this node refused, with the reason."""
        return dict(self._excluded)

    def accepted(self) -> list[str]:
        return sorted(self._accepted)

    def release(self) -> bytes:
        """This node's aggregate share of the accepted reports plus its noise; once."""
        if self._released:
            raise ProtocolError(f"node {self.index}: the round was released already")
        self._released = True
        return self._noised_sum(self.accepted())

    def release_subset(self, providers: Sequence[str]) -> bytes:
        """This node's aggregate share of a subset of the accepted reports (contribution
        scoring, :mod:`tessera.learning.contribution`), after the round's release, with
        fresh noise: every subset sum is a release of its own (un-noised, two subset sums
        would give an update by subtraction), once per subset, and only the subsets of
        the round's :attr:`scoring` plan. Whoever drives it charges the privacy cost to
        each provider in the subset."""
        if not self._released:
            raise ProtocolError(f"node {self.index}: a subset before the round's release")
        subset = tuple(sorted(set(providers)))
        if not subset:
            raise ProtocolError(f"node {self.index}: an empty subset")
        strangers = [p for p in subset if p not in self._accepted]
        if strangers:
            raise ProtocolError(f"node {self.index}: not accepted this round: {strangers}")
        if subset in self._subsets or subset == tuple(self.accepted()):
            raise ProtocolError(f"node {self.index}: subset {list(subset)} released already")
        if self.scoring is None or subset not in self.scoring.subsets(self.accepted()):
            raise ProtocolError(
                f"node {self.index}: subset {list(subset)} is not in the scoring plan"
            )
        self._subsets.add(subset)
        return self._noised_sum(subset)

    def _noised_sum(self, providers: Sequence[str]) -> bytes:
        noise = None
        if self.plan is not None:
            assert self.sampler is not None
            noise = secure.draw_noise(self.plan, self.sampler, self.vdaf.LENGTH)
        return secure.aggregate_share(self.vdaf, [self._accepted[p] for p in providers], noise)
