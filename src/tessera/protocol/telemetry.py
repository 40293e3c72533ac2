"""Telemetry mode: a DAP-like service around Prio3 and Poplar1 (draft-ietf-ppm-dap, VDAF-18).

Pure: wire messages with strict ``encode``/``decode``, the VDAF catalogue of a task,
the aggregator-side verification state machine, batch rules and DP noise. Time,
randomness and keys come in as arguments; the HTTP service lives in
:mod:`tessera.node.telemetry`.

Roles and message flow (one leader, ``n - 1 >= 1`` helpers)::

    client  --UploadRequest(Report...)-->            leader
    leader  --AggregationJobInit(ReportShare...)-->  each helper   -> AggregationJobResp
    leader  --AggregationJobContinue(...)-->         each helper   -> AggregationJobResp
            (until every report is finished or rejected by every aggregator)
    collector --CollectReq(interval, agg_param)-->   leader
    leader  --AggregateShareReq(count, checksum)-->  each helper   -> AggregateShareResp
    leader  --Collection(sealed aggregate shares)--> collector

Every input share is sealed with HPKE to its aggregator, bound by
:func:`input_share_info` to the task, the aggregator, the report metadata and the
public share, so a share moved to another report or a tampered public share fails to
open. Aggregate shares are sealed to the collector the same way.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from fractions import Fraction
from typing import Any, ClassVar, TypeAlias

from tessera.crypto.field import Field
from tessera.crypto.poplar1 import FieldVec, Poplar1
from tessera.crypto.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultihotCountVec,
    Prio3Sum,
    Prio3SumVec,
)
from tessera.crypto.rng import Rng
from tessera.dp.samplers import sample_discrete_gaussian, sample_discrete_laplace
from tessera.errors import DecodeError, InvalidProof, PolicyViolation, ProtocolError

TASK_ID_SIZE = 32
REPORT_ID_SIZE = 16
JOB_ID_SIZE = 16
MAX_U64 = (1 << 64) - 1

#: Any of the VDAFs a telemetry task can run.
AnyVdaf: TypeAlias = Prio3[Any, Any] | Poplar1


# -- errors -------------------------------------------------------------------------


class BatchTooSmall(PolicyViolation):
    """A batch with fewer reports than the task's minimum batch size."""


class BatchCollected(PolicyViolation):
    """A batch that was already released (or would be released twice)."""


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
        if not 0 <= self.time <= MAX_U64:
            raise ValueError("time out of range")

    def _write(self, w: _Writer) -> None:
        w.fixed(self.report_id, REPORT_ID_SIZE)
        w.u64(self.time)

    @classmethod
    def _read(cls, r: _Reader) -> ReportMetadata:
        return cls(r.take(REPORT_ID_SIZE), r.u64())

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
        if self.start < 0 or self.duration <= 0 or self.start + self.duration > MAX_U64:
            raise ValueError("invalid batch interval")

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


# -- binding strings ---------------------------------------------------------------------

_INPUT_LABEL = b"tessera telemetry input share v1"
_AGG_LABEL = b"tessera telemetry aggregate share v1"


def vdaf_ctx(task_id: bytes) -> bytes:
    """The VDAF application context string of a task."""
    return b"tessera-telemetry/v1" + task_id


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


def report_checksum(report_ids: Iterable[bytes]) -> bytes:
    """XOR of ``SHA-256(report_id)``: lets aggregators check they aggregated the same set."""
    acc = 0
    for rid in report_ids:
        acc ^= int.from_bytes(hashlib.sha256(rid).digest(), "big")
    return acc.to_bytes(32, "big")


def xor_checksums(a: bytes, b: bytes) -> bytes:
    """Combine two checksums of disjoint report sets."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(32, "big")


ZERO_CHECKSUM = bytes(32)


# -- the VDAF of a task ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VdafSpec:
    """A task's VDAF: its kind and integer parameters, as written in the task config."""

    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Prio3Count": (),
        "Prio3Sum": ("max_measurement",),
        "Prio3SumVec": ("length", "max_measurement", "chunk_length"),
        "Prio3Histogram": ("length", "chunk_length"),
        "Prio3MultihotCountVec": ("length", "max_weight", "chunk_length"),
        "Poplar1": ("bits",),
    }

    kind: str
    params: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            known = ", ".join(self.KINDS)
            raise ValueError(f"unknown VDAF {self.kind!r}; known: {known}")
        names = tuple(n for n, _ in self.params)
        if sorted(names) != sorted(self.KINDS[self.kind]):
            need = ", ".join(self.KINDS[self.kind]) or "none"
            raise ValueError(f"{self.kind} takes parameters: {need}; got {', '.join(names)}")
        for name, value in self.params:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"VDAF parameter {name} must be a positive integer")

    @classmethod
    def of(cls, kind: str, **params: int) -> VdafSpec:
        """``VdafSpec.of("Prio3Histogram", length=100, chunk_length=10)``."""
        return cls(kind, tuple(sorted(params.items())))

    def param(self, name: str) -> int:
        """A parameter by name."""
        return dict(self.params)[name]

    @property
    def is_poplar1(self) -> bool:
        return self.kind == "Poplar1"

    def instantiate(self, shares: int) -> AnyVdaf:
        """The VDAF object for ``shares`` aggregators."""
        p = dict(self.params)
        try:
            match self.kind:
                case "Prio3Count":
                    return Prio3Count(shares)
                case "Prio3Sum":
                    return Prio3Sum(shares, p["max_measurement"])
                case "Prio3SumVec":
                    return Prio3SumVec(shares, p["length"], p["max_measurement"], p["chunk_length"])
                case "Prio3Histogram":
                    return Prio3Histogram(shares, p["length"], p["chunk_length"])
                case "Prio3MultihotCountVec":
                    return Prio3MultihotCountVec(
                        shares, p["length"], p["max_weight"], p["chunk_length"]
                    )
                case _:
                    if shares != 2:
                        raise ValueError("Poplar1 runs with exactly two aggregators")
                    return Poplar1(p["bits"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"invalid {self.kind} parameters: {exc}") from exc

    def parse_measurement(self, text: str) -> Any:
        """A measurement from its command-line text (an integer, a JSON list, or bits)."""
        text = text.strip()
        try:
            if self.kind in ("Prio3Count", "Prio3Sum", "Prio3Histogram"):
                return int(text)
            if self.kind == "Poplar1":
                if not text or set(text) - {"0", "1"}:
                    raise ValueError("expected a string of 0 and 1")
                return tuple(c == "1" for c in text)
            value = json.loads(text)
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot parse {self.kind} measurement {text!r}: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(x, int | bool) for x in value):
            raise ValueError(f"{self.kind} measurement must be a JSON list of integers")
        if self.kind == "Prio3MultihotCountVec":
            if any(x not in (0, 1) for x in value):
                raise ValueError("multihot entries must be 0/1 or booleans")
            return [bool(x) for x in value]
        return [int(x) for x in value]

    def sensitivity(self) -> tuple[Fraction, Fraction]:
        """``(L1, L2^2)`` sensitivity of one report (add/remove neighbours) per release."""
        p = dict(self.params)
        match self.kind:
            case "Prio3Sum":
                m = p["max_measurement"]
                return Fraction(m), Fraction(m * m)
            case "Prio3SumVec":
                m, n = p["max_measurement"], p["length"]
                return Fraction(n * m), Fraction(n * m * m)
            case "Prio3MultihotCountVec":
                w = p["max_weight"]
                return Fraction(w), Fraction(w)
            case _:  # Count, Histogram, Poplar1 (one prefix per level)
                return Fraction(1), Fraction(1)


# -- differential privacy: exact discrete samplers (CKS20), from tessera.dp -----------------


def discrete_laplace(scale: Fraction, rng: Rng) -> int:
    """A sample with ``P(x) ∝ exp(-|x| / scale)`` (CKS20, Algorithm 2)."""
    return sample_discrete_laplace(scale, rng)


def discrete_gaussian(sigma2: Fraction, rng: Rng) -> int:
    """A sample with ``P(x) ∝ exp(-x^2 / (2 sigma2))`` (CKS20, Algorithm 3)."""
    return sample_discrete_gaussian(sigma2, rng)


@dataclass(frozen=True, slots=True)
class DpSpec:
    """Noise each aggregator adds to every coordinate of the aggregate share it releases.

    Every aggregator adds the full noise, so a release meets the guarantee even if all
    but one aggregator skip it; ``discrete_laplace`` gives ``epsilon``-DP, and
    ``discrete_gaussian`` gives ``rho``-zCDP, per release.
    """

    MECHANISMS: ClassVar[tuple[str, ...]] = ("none", "discrete_laplace", "discrete_gaussian")

    mechanism: str
    epsilon: Fraction | None = None
    rho: Fraction | None = None

    def __post_init__(self) -> None:
        if self.mechanism not in self.MECHANISMS:
            raise ValueError(
                f"unknown DP mechanism {self.mechanism!r}; known: {', '.join(self.MECHANISMS)}"
            )
        if self.mechanism == "discrete_laplace" and (self.epsilon is None or self.epsilon <= 0):
            raise ValueError("discrete_laplace needs a positive epsilon")
        if self.mechanism == "discrete_gaussian" and (self.rho is None or self.rho <= 0):
            raise ValueError("discrete_gaussian needs a positive rho")

    def sampler(self, vdaf: VdafSpec) -> Callable[[Rng], int] | None:
        """The per-coordinate noise sampler for ``vdaf``, or ``None`` without noise."""
        l1, l2_sq = vdaf.sensitivity()
        if self.mechanism == "discrete_laplace":
            assert self.epsilon is not None
            scale = l1 / self.epsilon
            return lambda rng: discrete_laplace(scale, rng)
        if self.mechanism == "discrete_gaussian":
            assert self.rho is not None
            sigma2 = l2_sq / (2 * self.rho)
            return lambda rng: discrete_gaussian(sigma2, rng)
        return None


def _agg_share_vector(
    vdaf: AnyVdaf, agg_param: Any, encoded: bytes
) -> tuple[type[Field], list[int]]:
    share = vdaf.decode_agg_share(agg_param, encoded)
    if isinstance(share, FieldVec):
        return share.field, share.vec
    assert isinstance(vdaf, Prio3)
    return vdaf.field, share


def add_noise(
    vdaf: AnyVdaf, agg_param: Any, encoded: bytes, sampler: Callable[[Rng], int] | None, rng: Rng
) -> bytes:
    """An encoded aggregate share with independent noise added to every coordinate."""
    if sampler is None:
        return encoded
    field, vec = _agg_share_vector(vdaf, agg_param, encoded)
    p = field.MODULUS
    noised = [(x + sampler(rng)) % p for x in vec]
    if isinstance(vdaf, Poplar1):
        return vdaf.encode_agg_share(FieldVec(field, noised))
    return vdaf.encode_agg_share(noised)


def signed(x: int, modulus: int) -> int:
    """The representative of ``x`` in ``(-modulus/2, modulus/2]`` (noise may be negative)."""
    return x - modulus if x > modulus // 2 else x


def unshard_signed(vdaf: AnyVdaf, agg_param: Any, shares: Sequence[bytes], count: int) -> Any:
    """Combine encoded aggregate shares into the result, with negative values signed."""
    decoded: list[Any] = [vdaf.decode_agg_share(agg_param, s) for s in shares]
    if isinstance(vdaf, Poplar1):
        merged = vdaf.merge(agg_param, decoded)
        return [signed(x, merged.field.MODULUS) for x in merged.vec]
    result = vdaf.unshard(agg_param, decoded, count)
    p = vdaf.field.MODULUS
    if isinstance(result, list):
        return [signed(int(x), p) for x in result]
    return signed(int(result), p)


# -- aggregator-side verification -----------------------------------------------------


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
            self._rounds[rid] = 0
            out.append(PrepareStep(rid, PrepareKind.CONTINUE, payload))
        return out

    def in_flight(self, report_id: bytes) -> bool:
        """Whether ``report_id`` awaits a verifier message."""
        return report_id in self._states

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
            return PrepareStep(report_id, PrepareKind.CONTINUE, vdaf.encode_verifier_share(share))
        self.out_shares[report_id] = result
        return PrepareStep(report_id, PrepareKind.FINISHED)

    def drop(self, report_id: bytes) -> None:
        """Forget a report that some aggregator rejected."""
        self._states.pop(report_id, None)
        self.out_shares.pop(report_id, None)

    def aggregate(self, report_ids: Iterable[bytes]) -> bytes:
        """Encoded aggregate share of the given finished reports."""
        vdaf = self.vdaf
        agg: Any = vdaf.aggregate(self.agg_param, [self.out_shares[rid] for rid in report_ids])
        encoded: bytes = vdaf.encode_agg_share(agg)
        return encoded

    def respond(self, steps: Sequence[PrepareStep]) -> list[PrepareStep]:
        """Helper: answer a continue request (messages or rejections from the leader)."""
        out: list[PrepareStep] = []
        for step in steps:
            if step.kind is PrepareKind.CONTINUE:
                out.append(self.advance(step.report_id, step.payload))
            else:
                self.drop(step.report_id)
                reason = step.reason if step.kind is PrepareKind.REJECT else ReportStatus.MALFORMED
                out.append(PrepareStep(step.report_id, PrepareKind.REJECT, reason=reason))
        return out


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


# -- batch rules ------------------------------------------------------------------------


def check_report_time(time: int, time_precision: int, now: int, tolerance: int) -> bool:
    """Whether a report's time is aligned and not further in the future than ``tolerance``."""
    return time % time_precision == 0 and time <= now + tolerance


def bucket_of(time: int, time_precision: int) -> int:
    """Start of the time bucket a report falls into."""
    return time - time % time_precision


def check_collectable(
    vdaf: AnyVdaf,
    agg_param: bytes,
    previous: Sequence[Sequence[bytes]],
    report_count: int,
    min_batch_size: int,
) -> None:
    """Batch rules: each bucket's previous releases allow ``agg_param``, and size suffices.

    ``previous`` holds, per bucket of the batch, the aggregation parameters already
    released. Prio3 allows one release per batch; Poplar1 allows one per level with
    each level's prefixes extending the previous level's (VDAF ``is_valid``).
    """
    param: Any = vdaf.decode_agg_param(agg_param)
    for released in previous:
        earlier: list[Any] = [vdaf.decode_agg_param(p) for p in released]
        if not vdaf.is_valid(param, earlier):
            if isinstance(vdaf, Prio3):
                raise BatchCollected("batch already collected")
            raise BatchCollected(
                "aggregation parameter not allowed after the earlier releases of this batch"
            )
    if report_count < min_batch_size:
        raise BatchTooSmall(
            f"batch has {report_count} reports; the task's minimum batch size is {min_batch_size}"
        )


def poplar1_agg_param(vdaf: Poplar1, prefixes: Sequence[str]) -> bytes:
    """Encoded Poplar1 aggregation parameter for bit-string prefixes of one level."""
    if not prefixes:
        raise ValueError("at least one prefix is needed")
    level = len(prefixes[0]) - 1
    tuples = sorted({tuple(c == "1" for c in p) for p in prefixes})
    if any(len(p) != level + 1 for p in tuples) or any(set(p) - {"0", "1"} for p in prefixes):
        raise ValueError("prefixes must be bit strings of equal length")
    return vdaf.encode_agg_param((level, tuple(tuples)))


def next_candidates(survivors: Sequence[str]) -> list[str]:
    """Children of the surviving prefixes: the next level's candidates."""
    return sorted(p + b for p in survivors for b in "01")
