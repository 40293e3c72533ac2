"""Crashes at chosen points of a role's work, as wrappers around a deployed role.

Like the adversaries (:mod:`tessera.testing.adversary`), a wrapper replaces one step of
the role; a role process wraps itself when its configuration names it
(``adversary = "crash-before-vote"``, tests only). The production code has no crash
parameter.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from tessera.errors import ChainUnreachable
from tessera.ledger.client import QueryId, Tx, VerdictPosted
from tessera.node.roles import ProviderRole, VerifierRole


def crash_before_vote(role: VerifierRole) -> VerifierRole:
    """The verifier's process is killed (SIGKILL, as ``kill -9``) at the moment it would
    post its verdict: it has checked the record, its vote is not on the ledger."""

    def vote(
        query_id: bytes, work_ok: bool, cheaters: list[str], withheld: Sequence[str] = ()
    ) -> VerdictPosted:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process is gone")  # pragma: no cover

    role.vote = vote  # type: ignore[method-assign]
    return role


def commit_fails_once(role: ProviderRole) -> ProviderRole:
    """The provider's first contribution commitment fails, as when the chain fails between
    the provider's admission of a query and its commitment (``ChainUnreachable``: the
    analyst leaves the provider out as unreachable): the provider answers an error,
    its store holds the query ``running`` with its budget spent, and the query goes on
    without it. Later commitments go through."""
    post = role.ledger.post_contribution
    failed: list[QueryId] = []

    def post_contribution(query_id: QueryId, digest: bytes) -> Tx:
        if not failed:
            failed.append(query_id)
            raise ChainUnreachable("post_contribution: the chain failed (tessera.testing.faults)")
        return post(query_id, digest)

    role.ledger.post_contribution = post_contribution  # type: ignore[method-assign]
    return role
