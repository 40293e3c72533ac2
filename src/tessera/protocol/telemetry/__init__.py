"""Telemetry mode: a DAP-like service around Prio3 and Poplar1 (draft-ietf-ppm-dap, VDAF-18).

Pure: time, randomness and keys come in as arguments; the HTTP service lives in
:mod:`tessera.node.telemetry`. One module per concept:

* :mod:`~tessera.protocol.telemetry.messages`: the wire messages with strict
  ``encode``/``decode``, and the HPKE ``info`` strings binding sealed shares to them;
* :mod:`~tessera.protocol.telemetry.task`: a task's VDAF (:class:`VdafSpec`) and DP
  noise (:class:`DpSpec`);
* :mod:`~tessera.protocol.telemetry.preparation`: one aggregator's verification of
  the reports of an aggregation job (:class:`Preparer`);
* :mod:`~tessera.protocol.telemetry.leader`: the leader's bookkeeping of a job across
  the helpers (:class:`LeaderJob`);
* :mod:`~tessera.protocol.telemetry.collection`: time buckets, batch rules, report
  checksums, noised aggregate shares and unsharding.

Roles and message flow (one leader, ``n - 1 >= 1`` helpers)::

    client  --UploadRequest(Report...)-->            leader
    leader  --AggregationJobInit(ReportShare...)-->  each helper   -> its verifier shares
    leader  --PrepareSteps(the others' shares)-->    each helper   -> its next shares
            (each aggregator combines the round's shares itself and decides; until
            every report is finished or rejected by every aggregator)
    collector --CollectReq(interval, agg_param)-->   leader
    leader  --AggregateShareReq(count, checksum)-->  each helper   -> AggregateShareResp
    leader  --Collection(sealed aggregate shares)--> collector

Every input share is sealed with HPKE to its aggregator, bound by
:func:`input_share_info` to the task, the aggregator, the report metadata and the
public share, so a share moved to another report or a tampered public share fails to
open. Aggregate shares are sealed to the collector the same way.
"""

from __future__ import annotations

from tessera.errors import BatchCollected, BatchTooSmall
from tessera.protocol.telemetry.collection import (
    ZERO_CHECKSUM,
    Release,
    TimeBounds,
    add_noise,
    bucket_of,
    check_collectable,
    check_no_overlap,
    check_report_time,
    next_candidates,
    poplar1_agg_param,
    report_checksum,
    signed,
    unshard_signed,
    xor_checksums,
)
from tessera.protocol.telemetry.leader import LeaderJob
from tessera.protocol.telemetry.messages import (
    JOB_ID_SIZE,
    MAX_TIME,
    MAX_U64,
    REPORT_ID_SIZE,
    AggregateShareReq,
    AggregateShareResp,
    AggregationJobInit,
    BatchInterval,
    Collection,
    CollectReq,
    PrepareKind,
    PrepareStep,
    PrepareSteps,
    Report,
    ReportMetadata,
    ReportOutcome,
    ReportShare,
    ReportStatus,
    SealedShare,
    UploadRequest,
    UploadResponse,
    aggregate_share_info,
    decode_verifier_shares,
    encode_verifier_shares,
    input_share_info,
    verify_key_info,
)
from tessera.protocol.telemetry.preparation import Preparer
from tessera.protocol.telemetry.task import (
    TASK_ID_SIZE,
    AnyVdaf,
    DpSpec,
    VdafSpec,
    discrete_gaussian,
    discrete_laplace,
    vdaf_ctx,
)

__all__ = [
    "JOB_ID_SIZE",
    "MAX_TIME",
    "MAX_U64",
    "REPORT_ID_SIZE",
    "TASK_ID_SIZE",
    "ZERO_CHECKSUM",
    "AggregateShareReq",
    "AggregateShareResp",
    "AggregationJobInit",
    "AnyVdaf",
    "BatchCollected",
    "BatchInterval",
    "BatchTooSmall",
    "CollectReq",
    "Collection",
    "DpSpec",
    "LeaderJob",
    "PrepareKind",
    "PrepareStep",
    "PrepareSteps",
    "Preparer",
    "Release",
    "Report",
    "ReportMetadata",
    "ReportOutcome",
    "ReportShare",
    "ReportStatus",
    "SealedShare",
    "TimeBounds",
    "UploadRequest",
    "UploadResponse",
    "VdafSpec",
    "add_noise",
    "aggregate_share_info",
    "bucket_of",
    "check_collectable",
    "check_no_overlap",
    "check_report_time",
    "decode_verifier_shares",
    "discrete_gaussian",
    "discrete_laplace",
    "encode_verifier_shares",
    "input_share_info",
    "next_candidates",
    "poplar1_agg_param",
    "report_checksum",
    "signed",
    "unshard_signed",
    "vdaf_ctx",
    "verify_key_info",
    "xor_checksums",
]
