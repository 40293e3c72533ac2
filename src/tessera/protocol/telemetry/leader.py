"""The leader's bookkeeping of an aggregation job across every helper."""

from __future__ import annotations

from collections.abc import Sequence

from tessera.errors import ProtocolError
from tessera.protocol.telemetry.messages import (
    PrepareKind,
    PrepareStep,
    ReportStatus,
    encode_verifier_shares,
)
from tessera.protocol.telemetry.preparation import Preparer


class LeaderJob:
    """The leader's bookkeeping of one aggregation job across all helpers.

    Feed it the helpers' answers with :meth:`step`; it returns the steps to send each
    helper next (the round's verifier shares, or rejections) until every report is
    finished or rejected.
    """

    def __init__(self, preparer: Preparer, own: Sequence[PrepareStep]) -> None:
        self.preparer = preparer
        self._own: dict[bytes, PrepareStep] = {}
        self.status: dict[bytes, ReportStatus] = {}
        for s in own:
            if s.kind is PrepareKind.REJECT:
                self.status[s.report_id] = s.reason
            else:
                self._own[s.report_id] = s

    @property
    def pending(self) -> list[bytes]:
        """Report ids still being verified."""
        return list(self._own)

    @property
    def accepted(self) -> list[bytes]:
        """Report ids every aggregator finished."""
        return [rid for rid, st in self.status.items() if st is ReportStatus.ACCEPTED]

    def _reject(self, rid: bytes, reason: ReportStatus) -> PrepareStep:
        self.status[rid] = reason
        self._own.pop(rid, None)
        self.preparer.drop(rid)
        return PrepareStep(rid, PrepareKind.REJECT, reason=reason)

    def step(self, helper_answers: Sequence[Sequence[PrepareStep]]) -> list[list[PrepareStep]]:
        """Process every helper's answer to the last request; per helper, the steps to send.

        For each report still being verified the leader combines its own verifier share
        with the helpers' into the round's message and advances itself; each helper is
        sent the *other* aggregators' shares of the round, to combine and decide for
        itself (never the leader's message). Every list is empty once the job is done.
        """
        by_helper: list[dict[bytes, PrepareStep]] = []
        for answers in helper_answers:
            index: dict[bytes, PrepareStep] = {}
            for a in answers:
                if a.report_id in index:
                    raise ProtocolError("helper answered a report twice")
                index[a.report_id] = a
            by_helper.append(index)
        out: list[PrepareStep | None] = []
        to_combine: list[tuple[bytes, Sequence[bytes]]] = []
        for rid in list(self._own):
            own = self._own[rid]
            theirs = [h.get(rid) for h in by_helper]
            rejected = [t for t in theirs if t is None or t.kind is PrepareKind.REJECT]
            if rejected:
                first = rejected[0]
                reason = first.reason if first is not None else ReportStatus.PEER_REJECTED
                out.append(self._reject(rid, reason))
                continue
            kinds = {t.kind for t in theirs if t is not None}
            if own.kind is PrepareKind.FINISHED:
                if kinds == {PrepareKind.FINISHED}:
                    self.status[rid] = ReportStatus.ACCEPTED
                    del self._own[rid]
                else:
                    out.append(self._reject(rid, ReportStatus.PEER_REJECTED))
                continue
            if kinds != {PrepareKind.CONTINUE}:
                out.append(self._reject(rid, ReportStatus.PEER_REJECTED))
                continue
            to_combine.append((rid, [own.payload, *(t.payload for t in theirs if t is not None)]))
            out.append(None)
        helpers = len(by_helper)
        per_helper: list[list[PrepareStep]] = [[] for _ in range(helpers)]
        shares = iter(to_combine)
        messages = iter(self.preparer.combine_batch(to_combine))
        for step in out:
            if step is None:
                rid, round_shares = next(shares)
                step = self._advance(next(messages))
                if step.kind is PrepareKind.CONTINUE:
                    for h in range(helpers):
                        others = [s for j, s in enumerate(round_shares) if j != h + 1]
                        per_helper[h].append(
                            PrepareStep(rid, PrepareKind.CONTINUE, encode_verifier_shares(others))
                        )
                    continue
            for h in range(helpers):
                per_helper[h].append(step)
        return per_helper

    def _advance(self, message: PrepareStep) -> PrepareStep:
        """This aggregator's own ``verify_next`` on the message it combined itself."""
        rid = message.report_id
        if message.kind is PrepareKind.REJECT:
            return self._reject(rid, message.reason)
        nxt = self.preparer.advance(rid, message.payload)
        if nxt.kind is PrepareKind.REJECT:
            return self._reject(rid, nxt.reason)
        self._own[rid] = nxt
        return message
