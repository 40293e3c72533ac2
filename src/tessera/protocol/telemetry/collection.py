"""Batches and their release: time buckets, batch rules, aggregate shares, noise.

Aggregators keep per-bucket aggregate shares with a count and a checksum of the
report ids; a release checks the batch rules, adds each aggregator's noise, and the
collector combines the shares (with Poplar1, one tree level per release).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from tessera.crypto.field import Field
from tessera.crypto.poplar1 import FieldVec, Poplar1
from tessera.crypto.prio3 import Prio3
from tessera.crypto.rng import Rng
from tessera.errors import BatchCollected, BatchTooSmall
from tessera.protocol.telemetry.messages import BatchInterval, ReportStatus
from tessera.protocol.telemetry.task import AnyVdaf, NoiseBlock, noise_per_coordinate

# -- report checksums -------------------------------------------------------------------


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


# -- batch rules ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """When a task takes reports: not older than ``expiry_age``, before ``task_end``.

    Reports stamped more than ``tolerance`` seconds in the future are refused too.
    """

    expiry_age: int
    task_end: int
    tolerance: int = 3600

    def __post_init__(self) -> None:
        if self.expiry_age < 1 or self.task_end < 1 or self.tolerance < 0:
            raise ValueError("report expiry age and task end must be positive")


def check_report_time(
    time: int, time_precision: int, now: int, bounds: TimeBounds
) -> ReportStatus | None:
    """``None`` if a report's time is acceptable at ``now``, else why not.

    Unaligned or too far in the future: ``INVALID_TIME``; at or after the task's end:
    ``TASK_ENDED``; older than the expiry age: ``EXPIRED``.
    """
    if time % time_precision or time > now + bounds.tolerance:
        return ReportStatus.INVALID_TIME
    if time >= bounds.task_end:
        return ReportStatus.TASK_ENDED
    if time < now - bounds.expiry_age:
        return ReportStatus.EXPIRED
    return None


def bucket_of(time: int, time_precision: int) -> int:
    """Start of the time bucket a report falls into."""
    return time - time % time_precision


#: One earlier release of a bucket: the batch it was part of and its aggregation parameter.
Release: TypeAlias = tuple[BatchInterval, bytes]


def check_no_overlap(interval: BatchInterval, previous: Iterable[Sequence[Release]]) -> None:
    """DAP's batch-overlap rule: a bucket is only ever released as part of one batch.

    ``previous`` holds, per bucket of ``interval``, its earlier releases. Any earlier
    release over a different interval that shares a bucket is refused, whatever its
    aggregation parameter: otherwise two overlapping batches (say A+B and A) can be
    subtracted to isolate the reports of their difference (B), however small.
    """
    for released in previous:
        for batch, _ in released:
            if batch != interval:
                raise BatchCollected(
                    f"batch [{interval.start}, {interval.end}) overlaps the earlier collection "
                    f"[{batch.start}, {batch.end}); a time bucket is collected as part of one "
                    "batch only (later levels or parameters must use the same interval)"
                )


def check_collectable(
    vdaf: AnyVdaf,
    interval: BatchInterval,
    agg_param: bytes,
    previous: Sequence[Sequence[Release]],
    report_count: int,
    min_batch_size: int,
) -> None:
    """Batch rules: no overlap, the earlier releases allow ``agg_param``, size suffices.

    ``previous`` holds, per bucket of the batch, its releases so far. Prio3 allows one
    release per batch; Poplar1 allows one per level over the same batch, each level's
    prefixes extending the previous level's (VDAF ``is_valid``).
    """
    check_no_overlap(interval, previous)
    param: Any = vdaf.decode_agg_param(agg_param)
    for released in previous:
        earlier: list[Any] = [vdaf.decode_agg_param(p) for _, p in released]
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


# -- aggregate shares and noise --------------------------------------------------------


def _agg_share_vector(
    vdaf: AnyVdaf, agg_param: Any, encoded: bytes
) -> tuple[type[Field], list[int]]:
    share = vdaf.decode_agg_share(agg_param, encoded)
    if isinstance(share, FieldVec):
        return share.field, share.vec
    assert isinstance(vdaf, Prio3)
    return vdaf.field, share


def add_noise(
    vdaf: AnyVdaf,
    agg_param: Any,
    encoded: bytes,
    noise: Callable[[Rng], int] | Sequence[NoiseBlock] | None,
    rng: Rng,
) -> bytes:
    """An encoded aggregate share with independent noise added to every coordinate.

    ``noise`` is one sampler for every coordinate, or blocks of coordinates with a
    sampler each (:meth:`~tessera.protocol.telemetry.task.DpSpec.noise`).
    """
    if noise is None:
        return encoded
    field, vec = _agg_share_vector(vdaf, agg_param, encoded)
    p = field.MODULUS
    if callable(noise):
        noised = [(x + noise(rng)) % p for x in vec]
    else:
        per = noise_per_coordinate(noise, len(vec))
        noised = [(x + b.sample(rng)) % p for x, b in zip(vec, per, strict=True)]
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
