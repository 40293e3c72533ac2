"""The leader's bookkeeping of an aggregation job across every helper."""

from __future__ import annotations

from collections.abc import Sequence

from tessera.errors import ProtocolError
from tessera.protocol.telemetry.messages import PrepareKind, PrepareStep, ReportStatus
from tessera.protocol.telemetry.preparation import Preparer


class LeaderJob:
    """The leader's bookkeeping of one aggregation job across all helpers.

    Feed it the helpers' answers with :meth:`step`; it returns the steps to send next
    (verifier messages or rejections) until every report is finished or rejected.
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

    def step(self, helper_answers: Sequence[Sequence[PrepareStep]]) -> list[PrepareStep]:
        """Process every helper's answer to the last request; the steps to send next."""
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
        messages = iter(self.preparer.combine_batch(to_combine))
        return [step if step is not None else self._advance(next(messages)) for step in out]

    def _advance(self, message: PrepareStep) -> PrepareStep:
        """This aggregator's own ``verify_next`` on a combined message; the step to send."""
        rid = message.report_id
        if message.kind is PrepareKind.REJECT:
            return self._reject(rid, message.reason)
        nxt = self.preparer.advance(rid, message.payload)
        if nxt.kind is PrepareKind.REJECT:
            return self._reject(rid, nxt.reason)
        self._own[rid] = nxt
        return message
