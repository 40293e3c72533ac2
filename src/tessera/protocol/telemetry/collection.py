"""Batches and their release: time buckets, batch rules, aggregate shares, noise.

Aggregators keep per-bucket aggregate shares with a count and a checksum of the
report ids; a release checks the batch rules, adds each aggregator's noise, and the
collector combines the shares (with Poplar1, one tree level per release).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tessera.crypto.field import Field
from tessera.crypto.poplar1 import FieldVec, Poplar1
from tessera.crypto.prio3 import Prio3
from tessera.crypto.rng import Rng
from tessera.errors import BatchCollected, BatchTooSmall
from tessera.protocol.telemetry.task import AnyVdaf

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
