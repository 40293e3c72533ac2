"""Adversaries as wrappers around a deployed role: each takes a role and makes it cheat.

A wrapper replaces one of the role's message-making steps
(:meth:`~tessera.node.roles.NodeRole.make_shares`,
:meth:`~tessera.node.roles.NodeRole.make_noise`) by a corrupted one; the role
still commits the digest of what it sends, so the cheating is its own, on the
record, and must be caught, blamed on it and slashed. The production code has no
cheating parameter: a test wraps a role of a :class:`~tessera.LocalNetwork`
(``corrupt_key_switch(net.nodes[2])``), and a role process wraps itself when its
configuration names an adversary (``adversary = "corrupt-key-switch"``, tests
and ``tessera demo --cheat`` only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tessera.crypto.elgamal import Ciphertext, encrypt_with
from tessera.crypto.group import G
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import KeySwitchShare
from tessera.errors import NotFound, PolicyViolation
from tessera.node.roles import NodeRole
from tessera.protocol.aggregation import AggregationQuery, NoiseContribution, SlotNoise
from tessera.testing.faults import commit_fails_once, crash_before_vote


def corrupt_key_switch(role: NodeRole) -> NodeRole:
    """The node adds ``G`` to its first key-switch share, keeping the proof (which then fails)."""
    honest = role.make_shares

    def make_shares(query: AggregationQuery, agg: Sequence[Ciphertext]) -> list[KeySwitchShare]:
        shares = honest(query, agg)
        s = shares[0]
        shares[0] = KeySwitchShare(s.index, s.u, s.w + G, s.proof)
        return shares

    role.make_shares = make_shares  # type: ignore[method-assign]
    return role


def corrupt_noise(role: NodeRole) -> NodeRole:
    """The node adds 2^20 to its first noise limb, keeping the proofs (which then fail)."""
    honest = role.make_noise
    rng = SeededRng(f"corrupt-noise/{role.index}")

    def make_noise(query: AggregationQuery, values: Sequence[int]) -> NoiseContribution:
        nc = honest(query, values)
        first = nc.slots[0]
        key = role._committee_key()
        big = first.limbs[0] + encrypt_with(key, 1 << 20, rng.scalar())
        slot = SlotNoise((big, *first.limbs[1:]), first.limb_proofs, first.knowledge)
        return NoiseContribution(nc.node, (slot, *nc.slots[1:]))

    role.make_noise = make_noise  # type: ignore[method-assign]
    return role


def refusing_provider(role: Any) -> Any:
    """The provider is listed for the query, then refuses to contribute to it, claiming its
    policy forbids what its public policy allows: it tries to stop the query for everyone."""

    def on_contribute(body: dict[str, Any], sender: str) -> dict[str, Any]:
        raise PolicyViolation("this provider refuses every query")

    role.on_contribute = on_contribute
    return role


def garbling_provider(role: Any) -> Any:
    """The provider contributes and commits its contribution's digest on-chain, then sends
    the analyst other bytes (its contribution with one byte flipped), while it serves the
    committed bytes to the nodes that fetch them: the analyst cannot tell, the nodes can."""
    honest = role.on_contribute

    def on_contribute(body: dict[str, Any], sender: str) -> dict[str, Any]:
        answer = dict(honest(body, sender))
        raw = bytearray(bytes.fromhex(answer["contribution"]))
        raw[-1] ^= 1
        return {"contribution": raw.hex()}

    role.on_contribute = on_contribute
    return role


def withholding_provider(role: Any) -> Any:
    """The provider commits its contribution's digest on-chain, then sends the analyst
    bytes that do not decode and serves the nodes nothing (each fetch is refused): it tries
    to stop, at no cost to itself, every query it is in."""
    honest = role.on_contribute

    def on_contribute(body: dict[str, Any], sender: str) -> dict[str, Any]:
        honest(body, sender)  # committed on-chain
        return {"contribution": "00" * 32}

    def on_committed(body: dict[str, Any], sender: str) -> dict[str, Any]:
        raise NotFound("this provider serves nothing")

    role.on_contribute, role.on_committed = on_contribute, on_committed
    return role


def stalling_provider(role: Any) -> Any:
    """:func:`withholding_provider` that also holds the analyst's request open (two
    minutes) before it answers: it tries to make the query wait on it."""
    withholding_provider(role)
    withheld = role.on_contribute

    def on_contribute(body: dict[str, Any], sender: str) -> dict[str, Any]:
        answer: dict[str, Any] = withheld(body, sender)
        time.sleep(120)
        return answer

    role.on_contribute = on_contribute
    return role


def garbling_trainer(role: Any) -> Any:
    """:func:`garbling_provider` in a training round: the provider commits its report's
    digest on-chain, then sends the analyst other bytes (its report with one byte
    flipped), while it serves the committed bytes to the nodes that fetch them."""
    honest = role.on_train_report

    def on_train_report(body: dict[str, Any], sender: str) -> dict[str, Any]:
        answer = dict(honest(body, sender))
        raw = bytearray(bytes.fromhex(answer["report"]))
        raw[-1] ^= 1
        return {"report": raw.hex()}

    role.on_train_report = on_train_report
    return role


def withholding_trainer(role: Any) -> Any:
    """:func:`withholding_provider` in a training round: the provider trains, commits its
    report's digest on-chain, then sends the analyst bytes that do not decode and serves
    the nodes nothing (each fetch is refused): it tries to stop the round, and with it the
    training, at no cost to itself."""
    honest = role.on_train_report

    def on_train_report(body: dict[str, Any], sender: str) -> dict[str, Any]:
        honest(body, sender)  # committed on-chain
        return {"report": "00" * 32}

    def on_committed(body: dict[str, Any], sender: str) -> dict[str, Any]:
        raise NotFound("this provider serves nothing")

    role.on_train_report, role.on_committed = on_train_report, on_committed
    return role


def stalling_trainer(role: Any, hold: float = 120.0, until: threading.Event | None = None) -> Any:
    """:func:`withholding_trainer` that also holds the analyst's request open (``hold``
    seconds, or until ``until`` is set) before it answers: it tries to make the round
    wait on it."""
    withholding_trainer(role)
    withheld = role.on_train_report

    def on_train_report(body: dict[str, Any], sender: str) -> dict[str, Any]:
        answer: dict[str, Any] = withheld(body, sender)
        (until or threading.Event()).wait(hold)
        return answer

    role.on_train_report = on_train_report
    return role


def strips_report(inner: Any, victim: str) -> TamperingTransport:
    """A malicious analyst's transport that fixes a training round's reports without
    ``victim``'s (left out of every ``train/lock``, never named to be fetched): it claims
    an honest provider withheld its committed report, to leave its update out."""

    def edit(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path == "train/lock":
            digests = {n: d for n, d in body["digests"].items() if n != victim}
            return {**body, "digests": digests}
        return None

    return TamperingTransport(inner, edit)


def strips_contribution(inner: Any, victim: str) -> TamperingTransport:
    """A malicious analyst's transport that tells the nodes it lacks ``victim``'s
    contribution (left out of every key switch it asks for, never named to be fetched):
    it claims an honest provider withheld, to leave its data out."""

    def edit(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path == "key_switch":
            keep = [c for c in body["contributions"] if _author(c) != victim]
            return {**body, "contributions": keep}
        return None

    return TamperingTransport(inner, edit)


def _author(contribution_hex: str) -> str:
    from tessera.protocol import codec

    return codec.decode_contribution_limbs(bytes.fromhex(contribution_hex)).provider


class TamperingTransport:
    """A malicious analyst's transport: ``edit(path, body)`` rewrites each request it sends.

    Wrap the transport of a :class:`~tessera.node.analyst.NetworkAnalyst` to make the
    analyst lie to the other roles (another ticket to the nodes, a noise set of its
    choosing, a record with a swapped key share) while it follows the protocol otherwise.
    """

    def __init__(
        self, inner: Any, edit: Callable[[str, dict[str, Any]], dict[str, Any] | None]
    ) -> None:
        self.inner, self.edit = inner, edit

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        changed = self.edit(path, dict(body))
        out: dict[str, Any] = self.inner.call(
            peer, path, body if changed is None else changed, timeout=timeout
        )
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


#: The wrappers a role configuration may name (``adversary = "..."``).
ADVERSARIES: dict[str, Callable[[Any], Any]] = {
    "corrupt-key-switch": corrupt_key_switch,
    "corrupt-noise": corrupt_noise,
    "crash-before-vote": crash_before_vote,  # a fault, not a cheat (tessera.testing.faults)
    "commit-fails-once": commit_fails_once,  # a fault too (a provider)
    "refusing-provider": refusing_provider,  # a provider
    "garbling-provider": garbling_provider,  # a provider
    "withholding-provider": withholding_provider,  # a provider
    "stalling-provider": stalling_provider,  # a provider
    "garbling-trainer": garbling_trainer,  # a provider, in training rounds
    "withholding-trainer": withholding_trainer,  # a provider, in training rounds
    "stalling-trainer": stalling_trainer,  # a provider, in training rounds
    "oversized-update": lambda role: _learning().oversized_trainer(role),  # a provider
}


def _learning() -> Any:
    from tessera.testing import learning

    return learning
