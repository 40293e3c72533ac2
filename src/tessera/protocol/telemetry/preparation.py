"""One aggregator's verification of the reports of an aggregation job (VDAF §5.7).

Every aggregator decides for itself: in each round it combines its *own* verifier
share with the other aggregators' shares into the round's verifier message
(``verifier_shares_to_message``) and runs ``verify_next`` on it. Between aggregators
only verifier shares travel, never a verifier message, so a caller cannot make an
aggregator accept a report whose proof it did not check itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tessera.crypto.prio3 import Prio3
from tessera.errors import DecodeError, InvalidProof
from tessera.protocol.telemetry.messages import (
    PrepareKind,
    PrepareStep,
    ReportStatus,
    decode_verifier_shares,
)
from tessera.protocol.telemetry.task import AnyVdaf


def _reason_of(exc: Exception) -> ReportStatus:
    if isinstance(exc, InvalidProof):
        return ReportStatus.INVALID_PROOF
    return ReportStatus.MALFORMED


class Preparer:
    """One aggregator's verification of the reports of one aggregation job (VDAF §5.7)."""

    def __init__(
        self, vdaf: AnyVdaf, verify_key: bytes, ctx: bytes, agg_id: int, agg_param: bytes
    ) -> None:
        # Typed loosely: the Prio3 and Poplar1 share types differ, the flow does not.
        self.vdaf: Any = vdaf
        self.verify_key = verify_key
        self.ctx = ctx
        self.agg_id = agg_id
        self.agg_param_bytes = agg_param
        self.agg_param: Any = vdaf.decode_agg_param(agg_param)
        self._states: dict[bytes, Any] = {}
        self._shares: dict[bytes, bytes] = {}
        self._rounds: dict[bytes, int] = {}
        self.out_shares: dict[bytes, Any] = {}

    def start(self, report_id: bytes, public_share: bytes, input_share: bytes) -> PrepareStep:
        """``verify_init`` on a decrypted input share: this aggregator's first share."""
        vdaf = self.vdaf
        try:
            public = vdaf.decode_public_share(public_share)
            share = vdaf.decode_input_share(self.agg_id, input_share)
            state, verifier_share = vdaf.verify_init(
                self.verify_key,
                self.ctx,
                self.agg_id,
                self.agg_param,
                report_id,
                public,
                share,
            )
            payload = vdaf.encode_verifier_share(verifier_share)
        except (ValueError, InvalidProof) as exc:
            return PrepareStep(report_id, PrepareKind.REJECT, reason=_reason_of(exc))
        self._states[report_id] = state
        self._shares[report_id] = payload
        self._rounds[report_id] = 0
        return PrepareStep(report_id, PrepareKind.CONTINUE, payload)

    def start_batch(self, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[PrepareStep]:
        """:meth:`start` for many ``(report_id, public_share, input_share)`` at once.

        Prio3 verifies the whole batch with :meth:`Prio3.verify_init_batch` (same results
        as one :meth:`start` per report, much less interpreter work); other VDAFs go
        report by report.
        """
        vdaf = self.vdaf
        if not isinstance(vdaf, Prio3) or not items:
            return [self.start(rid, pub, share) for rid, pub, share in items]
        results = vdaf.verify_init_batch(
            self.verify_key,
            self.ctx,
            self.agg_id,
            [rid for rid, _, _ in items],
            [pub for _, pub, _ in items],
            [share for _, _, share in items],
        )
        out: list[PrepareStep] = []
        for (rid, _, _), res in zip(items, results, strict=True):
            if isinstance(res, Exception):
                out.append(PrepareStep(rid, PrepareKind.REJECT, reason=_reason_of(res)))
                continue
            state, payload = res
            self._states[rid] = state
            self._shares[rid] = payload
            self._rounds[rid] = 0
            out.append(PrepareStep(rid, PrepareKind.CONTINUE, payload))
        return out

    def in_flight(self, report_id: bytes) -> bool:
        """Whether ``report_id`` awaits a verifier message."""
        return report_id in self._states

    def own_share(self, report_id: bytes) -> bytes:
        """This aggregator's verifier share of the current round."""
        return self._shares[report_id]

    def combine(self, report_id: bytes, verifier_shares: Sequence[bytes]) -> PrepareStep:
        """Leader: the round's verifier message from every aggregator's share, or REJECT."""
        vdaf = self.vdaf
        state = self._states[report_id]
        try:
            decoded = [vdaf.decode_verifier_share(state, s) for s in verifier_shares]
            message = vdaf.verifier_shares_to_message(self.ctx, self.agg_param, decoded)
            payload = vdaf.encode_verifier_message(message)
        except (ValueError, InvalidProof) as exc:
            return PrepareStep(report_id, PrepareKind.REJECT, reason=_reason_of(exc))
        return PrepareStep(report_id, PrepareKind.CONTINUE, payload)

    def combine_batch(self, items: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[PrepareStep]:
        """:meth:`combine` for many ``(report_id, verifier_shares)``; Prio3 decides in a batch."""
        vdaf = self.vdaf
        if not isinstance(vdaf, Prio3) or vdaf.ROUNDS != 1:
            return [self.combine(rid, shares) for rid, shares in items]
        messages = vdaf.verifier_messages_batch(self.ctx, [shares for _, shares in items])
        out: list[PrepareStep] = []
        for (rid, _), msg in zip(items, messages, strict=True):
            if isinstance(msg, Exception):
                out.append(PrepareStep(rid, PrepareKind.REJECT, reason=_reason_of(msg)))
            else:
                out.append(PrepareStep(rid, PrepareKind.CONTINUE, msg))
        return out

    def advance(self, report_id: bytes, message: bytes) -> PrepareStep:
        """``verify_next`` with the round's verifier message: the next share, or FINISHED."""
        vdaf = self.vdaf
        state = self._states.pop(report_id, None)
        self._shares.pop(report_id, None)
        if state is None:
            return PrepareStep(report_id, PrepareKind.REJECT, reason=ReportStatus.UNKNOWN_REPORT)
        try:
            decoded = vdaf.decode_verifier_message(state, message)
            result = vdaf.verify_next(self.ctx, state, decoded)
        except (ValueError, InvalidProof) as exc:
            return PrepareStep(report_id, PrepareKind.REJECT, reason=_reason_of(exc))
        self._rounds[report_id] += 1
        if isinstance(result, tuple):
            next_state, share = result
            if self._rounds[report_id] >= vdaf.ROUNDS:
                return PrepareStep(report_id, PrepareKind.REJECT, reason=ReportStatus.MALFORMED)
            self._states[report_id] = next_state
            payload = vdaf.encode_verifier_share(share)
            self._shares[report_id] = payload
            return PrepareStep(report_id, PrepareKind.CONTINUE, payload)
        self.out_shares[report_id] = result
        return PrepareStep(report_id, PrepareKind.FINISHED)

    def drop(self, report_id: bytes) -> None:
        """Forget a report that some aggregator rejected."""
        self._states.pop(report_id, None)
        self._shares.pop(report_id, None)
        self.out_shares.pop(report_id, None)

    def aggregate(self, report_ids: Iterable[bytes]) -> bytes:
        """Encoded aggregate share of the given finished reports."""
        vdaf = self.vdaf
        agg: Any = vdaf.aggregate(self.agg_param, [self.out_shares[rid] for rid in report_ids])
        encoded: bytes = vdaf.encode_agg_share(agg)
        return encoded

    def respond(self, steps: Sequence[PrepareStep]) -> list[PrepareStep]:
        """Helper: one round of a continue request from the leader.

        A ``CONTINUE`` step carries the *other* aggregators' verifier shares of the
        round (:func:`~tessera.protocol.telemetry.messages.encode_verifier_shares`, in
        aggregator order); this aggregator adds its own share, combines them itself and
        advances. A ``REJECT`` drops the report. Anything else is refused.
        """
        answers: dict[bytes, PrepareStep] = {}
        to_combine: list[tuple[bytes, Sequence[bytes]]] = []
        seen: set[bytes] = set()
        for step in steps:
            rid = step.report_id
            if rid in seen:  # a report twice in one request: refuse it outright
                answers[rid] = self._refuse(rid, ReportStatus.MALFORMED)
                to_combine = [(r, sh) for r, sh in to_combine if r != rid]
                continue
            seen.add(rid)
            if step.kind is not PrepareKind.CONTINUE:
                reason = step.reason if step.kind is PrepareKind.REJECT else ReportStatus.MALFORMED
                answers[rid] = self._refuse(rid, reason)
                continue
            if rid not in self._states:
                answers[rid] = self._refuse(rid, ReportStatus.UNKNOWN_REPORT)
                continue
            try:
                others = decode_verifier_shares(step.payload)
            except DecodeError:
                others = []
            if len(others) != self.vdaf.SHARES - 1:
                answers[rid] = self._refuse(rid, ReportStatus.MALFORMED)
                continue
            shares = [*others[: self.agg_id], self._shares[rid], *others[self.agg_id :]]
            to_combine.append((rid, shares))
        for message in self.combine_batch(to_combine):
            rid = message.report_id
            if message.kind is PrepareKind.REJECT:
                answers[rid] = self._refuse(rid, message.reason)
            else:
                answers[rid] = self.advance(rid, message.payload)
        return _in_order(steps, answers)

    def _refuse(self, report_id: bytes, reason: ReportStatus) -> PrepareStep:
        self.drop(report_id)
        return PrepareStep(report_id, PrepareKind.REJECT, reason=reason)


def _in_order(steps: Sequence[PrepareStep], answers: dict[bytes, PrepareStep]) -> list[PrepareStep]:
    """One answer per distinct report id, in the order of the request."""
    out: list[PrepareStep] = []
    seen: set[bytes] = set()
    for s in steps:
        if s.report_id not in seen:
            seen.add(s.report_id)
            out.append(answers[s.report_id])
    return out
