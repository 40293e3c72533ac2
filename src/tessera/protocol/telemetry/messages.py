"""Telemetry wire messages (draft-ietf-ppm-dap shapes) with strict ``encode``/``decode``.

Every message decodes from a whole buffer (trailing bytes, truncation, unknown enum
values and item counts the buffer cannot hold are :class:`~tessera.errors.DecodeError`).
Also the HPKE ``info`` strings that bind a sealed share to the message it travels in.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from tessera.errors import DecodeError, PolicyViolation

REPORT_ID_SIZE = 16
JOB_ID_SIZE = 16
MAX_U64 = (1 << 64) - 1
#: Times (seconds) and durations are at most this: what a signed 64-bit store column holds.
MAX_TIME = (1 << 63) - 1


# -- codec ----------------------------------------------------------------------------


class _Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> None:
        self._parts.append(struct.pack(">B", v))

    def u16(self, v: int) -> None:
        self._parts.append(struct.pack(">H", v))

    def u32(self, v: int) -> None:
        self._parts.append(struct.pack(">I", v))

    def u64(self, v: int) -> None:
        self._parts.append(struct.pack(">Q", v))

    def fixed(self, data: bytes, size: int) -> None:
        if len(data) != size:
            raise ValueError(f"expected {size} bytes, got {len(data)}")
        self._parts.append(data)

    def opaque32(self, data: bytes) -> None:
        self.u32(len(data))
        self._parts.append(data)

    def raw(self, data: bytes) -> None:
        self._parts.append(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise DecodeError("message truncated")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def opaque32(self) -> bytes:
        return self.take(self.u32())

    def count(self, min_item_size: int) -> int:
        """A u32 item count, refused if the remaining bytes cannot hold that many items."""
        n = self.u32()
        if n * min_item_size > len(self._data) - self._pos:
            raise DecodeError("item count exceeds message length")
        return n

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError("trailing bytes after message")


def _enum(cls: type[IntEnum], value: int, what: str) -> Any:
    try:
        return cls(value)
    except ValueError as exc:
        raise DecodeError(f"unknown {what} {value}") from exc


class _Message:
    """Strict whole-buffer ``decode`` on top of ``_read``/``_write``."""

    def _write(self, w: _Writer) -> None:
        raise NotImplementedError

    def encode(self) -> bytes:
        """Wire encoding."""
        w = _Writer()
        self._write(w)
        return w.getvalue()


# -- enums ----------------------------------------------------------------------------


class ReportStatus(IntEnum):
    """The outcome of one report, as told to the client and between aggregators."""

    ACCEPTED = 0
    MALFORMED = 1
    UNDECRYPTABLE = 2
    REPLAYED = 3
    BATCH_COLLECTED = 4
    INVALID_PROOF = 5
    INVALID_TIME = 6
    PEER_REJECTED = 7
    UNKNOWN_REPORT = 8
    EXPIRED = 9
    TASK_ENDED = 10

    @property
    def label(self) -> str:
        """Lower-case name used in JSON and logs."""
        return self.name.lower()


class PrepareKind(IntEnum):
    """What a prepare step carries: a verifier share/message, completion, or refusal."""

    CONTINUE = 0
    FINISHED = 1
    REJECT = 2


# -- messages -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportMetadata(_Message):
    """Report id (also the VDAF nonce) and client time, rounded to the task's precision."""

    report_id: bytes
    time: int

    def __post_init__(self) -> None:
        if len(self.report_id) != REPORT_ID_SIZE:
            raise ValueError("report id must be 16 bytes")
        if not 0 <= self.time <= MAX_TIME:
            raise ValueError(f"report time out of range (at most 2^63 - 1), got {self.time}")

    def _write(self, w: _Writer) -> None:
        w.fixed(self.report_id, REPORT_ID_SIZE)
        w.u64(self.time)

    @classmethod
    def _read(cls, r: _Reader) -> ReportMetadata:
        report_id, time = r.take(REPORT_ID_SIZE), r.u64()
        try:
            return cls(report_id, time)
        except ValueError as exc:
            raise DecodeError(str(exc)) from exc

    @classmethod
    def decode(cls, data: bytes) -> ReportMetadata:
        r = _Reader(data)
        out = cls._read(r)
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class SealedShare(_Message):
    """An HPKE ciphertext (``enc || ct``) under the receiver's key ``config_id``."""

    config_id: int
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.config_id < 256:
            raise ValueError("config id out of range")

    def _write(self, w: _Writer) -> None:
        w.u8(self.config_id)
        w.opaque32(self.ciphertext)

    @classmethod
    def _read(cls, r: _Reader) -> SealedShare:
        return cls(r.u8(), r.opaque32())

    @classmethod
    def decode(cls, data: bytes) -> SealedShare:
        r = _Reader(data)
        out = cls._read(r)
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class Report(_Message):
    """A client's upload: metadata, public share, one sealed input share per aggregator."""

    metadata: ReportMetadata
    public_share: bytes
    sealed_shares: tuple[SealedShare, ...]

    def _write(self, w: _Writer) -> None:
        self.metadata._write(w)
        w.opaque32(self.public_share)
        w.u8(len(self.sealed_shares))
        for s in self.sealed_shares:
            s._write(w)

    @classmethod
    def _read(cls, r: _Reader) -> Report:
        metadata = ReportMetadata._read(r)
        public_share = r.opaque32()
        n = r.u8()
        if n < 2:
            raise DecodeError("a report needs at least two input shares")
        return cls(metadata, public_share, tuple(SealedShare._read(r) for _ in range(n)))

    @classmethod
    def decode(cls, data: bytes) -> Report:
        r = _Reader(data)
        out = cls._read(r)
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class UploadRequest(_Message):
    """One or more reports uploaded to the leader in one request."""

    reports: tuple[Report, ...]

    def _write(self, w: _Writer) -> None:
        w.u32(len(self.reports))
        for rep in self.reports:
            rep._write(w)

    @classmethod
    def decode(cls, data: bytes) -> UploadRequest:
        r = _Reader(data)
        n = r.count(REPORT_ID_SIZE + 8 + 4 + 1)
        out = cls(tuple(Report._read(r) for _ in range(n)))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class ReportOutcome(_Message):
    """Whether one report was accepted, and if not, why."""

    report_id: bytes
    status: ReportStatus

    def _write(self, w: _Writer) -> None:
        w.fixed(self.report_id, REPORT_ID_SIZE)
        w.u8(self.status)

    @classmethod
    def _read(cls, r: _Reader) -> ReportOutcome:
        return cls(r.take(REPORT_ID_SIZE), _enum(ReportStatus, r.u8(), "report status"))


@dataclass(frozen=True, slots=True)
class UploadResponse(_Message):
    """The leader's outcome for each uploaded report, in upload order."""

    outcomes: tuple[ReportOutcome, ...]

    def _write(self, w: _Writer) -> None:
        w.u32(len(self.outcomes))
        for o in self.outcomes:
            o._write(w)

    @classmethod
    def decode(cls, data: bytes) -> UploadResponse:
        r = _Reader(data)
        n = r.count(REPORT_ID_SIZE + 1)
        out = cls(tuple(ReportOutcome._read(r) for _ in range(n)))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class ReportShare(_Message):
    """What a helper receives of a report: metadata, public share, its sealed share."""

    metadata: ReportMetadata
    public_share: bytes
    sealed_share: SealedShare

    def _write(self, w: _Writer) -> None:
        self.metadata._write(w)
        w.opaque32(self.public_share)
        self.sealed_share._write(w)

    @classmethod
    def _read(cls, r: _Reader) -> ReportShare:
        return cls(ReportMetadata._read(r), r.opaque32(), SealedShare._read(r))


@dataclass(frozen=True, slots=True)
class AggregationJobInit(_Message):
    """Leader to helper: start verifying these reports under ``agg_param``."""

    job_id: bytes
    agg_param: bytes
    report_shares: tuple[ReportShare, ...]

    def _write(self, w: _Writer) -> None:
        w.fixed(self.job_id, JOB_ID_SIZE)
        w.opaque32(self.agg_param)
        w.u32(len(self.report_shares))
        for s in self.report_shares:
            s._write(w)

    @classmethod
    def decode(cls, data: bytes) -> AggregationJobInit:
        r = _Reader(data)
        job_id = r.take(JOB_ID_SIZE)
        agg_param = r.opaque32()
        n = r.count(REPORT_ID_SIZE + 8 + 4 + 5)
        out = cls(job_id, agg_param, tuple(ReportShare._read(r) for _ in range(n)))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class PrepareStep(_Message):
    """One report's step: a verifier share or message (CONTINUE), FINISHED, or REJECT."""

    report_id: bytes
    kind: PrepareKind
    payload: bytes = b""
    reason: ReportStatus = ReportStatus.ACCEPTED

    def _write(self, w: _Writer) -> None:
        w.fixed(self.report_id, REPORT_ID_SIZE)
        w.u8(self.kind)
        if self.kind is PrepareKind.CONTINUE:
            w.opaque32(self.payload)
        elif self.kind is PrepareKind.REJECT:
            w.u8(self.reason)

    @classmethod
    def _read(cls, r: _Reader) -> PrepareStep:
        report_id = r.take(REPORT_ID_SIZE)
        kind = _enum(PrepareKind, r.u8(), "prepare step kind")
        if kind is PrepareKind.CONTINUE:
            return cls(report_id, kind, r.opaque32())
        if kind is PrepareKind.REJECT:
            return cls(report_id, kind, reason=_enum(ReportStatus, r.u8(), "report status"))
        return cls(report_id, kind)


@dataclass(frozen=True, slots=True)
class PrepareSteps(_Message):
    """A list of prepare steps: the body of a job response or a continue request."""

    job_id: bytes
    round: int
    steps: tuple[PrepareStep, ...]

    def _write(self, w: _Writer) -> None:
        w.fixed(self.job_id, JOB_ID_SIZE)
        w.u16(self.round)
        w.u32(len(self.steps))
        for s in self.steps:
            s._write(w)

    @classmethod
    def decode(cls, data: bytes) -> PrepareSteps:
        r = _Reader(data)
        job_id = r.take(JOB_ID_SIZE)
        rnd = r.u16()
        n = r.count(REPORT_ID_SIZE + 1)
        out = cls(job_id, rnd, tuple(PrepareStep._read(r) for _ in range(n)))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class BatchInterval(_Message):
    """``[start, start + duration)`` in seconds; both multiples of the time precision."""

    start: int
    duration: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.duration <= 0 or self.start + self.duration > MAX_TIME:
            raise ValueError(
                "invalid batch interval: need start >= 0, duration > 0 and "
                "start + duration <= 2^63 - 1"
            )

    def _write(self, w: _Writer) -> None:
        w.u64(self.start)
        w.u64(self.duration)

    @classmethod
    def _read(cls, r: _Reader) -> BatchInterval:
        start, duration = r.u64(), r.u64()
        try:
            return cls(start, duration)
        except ValueError as exc:
            raise DecodeError(str(exc)) from exc

    @property
    def end(self) -> int:
        return self.start + self.duration

    def overlaps(self, other: BatchInterval) -> bool:
        """Whether the two intervals share a second."""
        return self.start < other.end and other.start < self.end

    def buckets(self, time_precision: int) -> list[int]:
        """Start times of the time-precision buckets the interval covers."""
        if self.start % time_precision or self.duration % time_precision:
            raise PolicyViolation(
                f"batch interval must be aligned to the time precision ({time_precision} s)"
            )
        count = self.duration // time_precision
        if count > 100_000:
            raise PolicyViolation("batch interval covers too many time buckets")
        return [self.start + i * time_precision for i in range(count)]


@dataclass(frozen=True, slots=True)
class CollectReq(_Message):
    """Collector to leader: release the aggregate of ``interval`` under ``agg_param``."""

    interval: BatchInterval
    agg_param: bytes

    def _write(self, w: _Writer) -> None:
        self.interval._write(w)
        w.opaque32(self.agg_param)

    @classmethod
    def decode(cls, data: bytes) -> CollectReq:
        r = _Reader(data)
        out = cls(BatchInterval._read(r), r.opaque32())
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class AggregateShareReq(_Message):
    """Leader to helper: release your share; ``report_count``/``checksum`` must match yours."""

    interval: BatchInterval
    agg_param: bytes
    report_count: int
    checksum: bytes

    def _write(self, w: _Writer) -> None:
        self.interval._write(w)
        w.opaque32(self.agg_param)
        w.u64(self.report_count)
        w.fixed(self.checksum, 32)

    @classmethod
    def decode(cls, data: bytes) -> AggregateShareReq:
        r = _Reader(data)
        out = cls(BatchInterval._read(r), r.opaque32(), r.u64(), r.take(32))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class AggregateShareResp(_Message):
    """A helper's (noised) aggregate share, sealed to the collector."""

    sealed_share: SealedShare

    def _write(self, w: _Writer) -> None:
        self.sealed_share._write(w)

    @classmethod
    def decode(cls, data: bytes) -> AggregateShareResp:
        r = _Reader(data)
        out = cls(SealedShare._read(r))
        r.finish()
        return out


@dataclass(frozen=True, slots=True)
class Collection(_Message):
    """The leader's answer to the collector: count and every aggregator's sealed share."""

    interval: BatchInterval
    agg_param: bytes
    report_count: int
    sealed_shares: tuple[SealedShare, ...]

    def _write(self, w: _Writer) -> None:
        self.interval._write(w)
        w.opaque32(self.agg_param)
        w.u64(self.report_count)
        w.u8(len(self.sealed_shares))
        for s in self.sealed_shares:
            s._write(w)

    @classmethod
    def decode(cls, data: bytes) -> Collection:
        r = _Reader(data)
        interval = BatchInterval._read(r)
        agg_param = r.opaque32()
        count = r.u64()
        n = r.u8()
        out = cls(interval, agg_param, count, tuple(SealedShare._read(r) for _ in range(n)))
        r.finish()
        return out


def encode_verifier_shares(shares: list[bytes]) -> bytes:
    """The payload of a continue step: the round's verifier shares of the other aggregators."""
    w = _Writer()
    w.u8(len(shares))
    for share in shares:
        w.opaque32(share)
    return w.getvalue()


def decode_verifier_shares(data: bytes) -> list[bytes]:
    """Strict inverse of :func:`encode_verifier_shares`."""
    r = _Reader(data)
    out = [r.opaque32() for _ in range(r.u8())]
    r.finish()
    return out


# -- binding strings ---------------------------------------------------------------------

_INPUT_LABEL = b"tessera telemetry input share v1"
_AGG_LABEL = b"tessera telemetry aggregate share v1"
_VERIFY_KEY_LABEL = b"tessera telemetry verify key v1"


def input_share_info(
    task_id: bytes, agg_id: int, metadata: ReportMetadata, public_share: bytes
) -> bytes:
    """HPKE ``info`` of input share ``agg_id``: binds task, receiver, metadata, public share."""
    digest = hashlib.sha256(metadata.encode() + public_share).digest()
    return _INPUT_LABEL + task_id + bytes([agg_id]) + digest


def aggregate_share_info(
    task_id: bytes, agg_id: int, interval: BatchInterval, agg_param: bytes
) -> bytes:
    """HPKE ``info`` of aggregator ``agg_id``'s aggregate share for the collector."""
    digest = hashlib.sha256(interval.encode() + agg_param).digest()
    return _AGG_LABEL + task_id + bytes([agg_id]) + digest


def verify_key_info(task_id: bytes, agg_id: int) -> bytes:
    """HPKE ``info`` of the verify key the leader seals to aggregator ``agg_id``."""
    return _VERIFY_KEY_LABEL + task_id + bytes([agg_id])
