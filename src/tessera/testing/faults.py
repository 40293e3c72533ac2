"""Crashes at chosen points of a role's work, as wrappers around a deployed role.

Like the adversaries (:mod:`tessera.testing.adversary`), a wrapper replaces one step of
the role; a role process wraps itself when its configuration names it
(``adversary = "crash-before-vote"``, tests only). The production code has no crash
parameter.
"""

from __future__ import annotations

import os
import signal

from tessera.ledger.client import VerdictPosted
from tessera.node.roles import VerifierRole


def crash_before_vote(role: VerifierRole) -> VerifierRole:
    """The verifier's process is killed (SIGKILL, as ``kill -9``) at the moment it would
    post its verdict: it has checked the record, its vote is not on the ledger."""

    def vote(query_id: bytes, work_ok: bool, cheaters: list[str]) -> VerdictPosted:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the process is gone")  # pragma: no cover

    role.vote = vote  # type: ignore[method-assign]
    return role
