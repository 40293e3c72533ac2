"""Bounded discrete logarithm by baby-step giant-step (Shanks71), with a serialisable table.

The table holds ``j·G`` for ``0 ≤ j ≤ B`` keyed by the first 8 bytes of the
x-coordinate. Since ``j·G`` and ``−j·G`` share their x-coordinate, one lookup
covers ``±j``, so giant steps of ``S = 2B + 1`` walk ``m ∈ (−M, M)`` in about
``M / S`` steps each way. A match is confirmed by one multiplication, so a
truncated-key collision can never produce a wrong answer.

This module is pure: the table serialises to bytes with a SHA-256 checksum
(:meth:`BabyStepTable.to_bytes`) and refuses corrupt or partial bytes;
:mod:`tessera.node.dlog_cache` keeps it on disk.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from tessera.crypto.group import G, Point, base_mul, walk
from tessera.errors import DecodeError, DlogError

_MAGIC = b"TSRDLOG1"
_HEADER = struct.Struct(">8sQQ32s")  # magic, bound, count, sha256(payload)
DEFAULT_BOUND = 1 << 22
_CHUNK = 64


def _check_bound(bound: int) -> None:
    if not 1 <= bound < 1 << 32:
        raise ValueError("baby-step bound must be in [1, 2^32)")


def segment(first: int, count: int) -> bytes:
    """The 8-byte x-prefixes of ``j·G`` for ``j = first .. first + count − 1`` (``first ≥ 1``)."""
    if first < 1 or count < 0:
        raise ValueError("a segment starts at j ≥ 1")
    raw, _, _ = walk(base_mul(first), G, count)
    return raw


class BabyStepTable:
    """Sorted x-prefixes of ``j·G`` for ``0 ≤ j ≤ bound``."""

    __slots__ = ("bound", "keys", "vals")

    def __init__(self, bound: int, keys: npt.NDArray[np.uint64], vals: npt.NDArray[np.uint32]):
        self.bound = bound
        self.keys = keys
        self.vals = vals

    @classmethod
    def build(cls, bound: int = DEFAULT_BOUND) -> BabyStepTable:
        _check_bound(bound)
        return cls.from_segments(bound, [segment(1, bound)])

    @classmethod
    def from_segments(cls, bound: int, segments: list[bytes]) -> BabyStepTable:
        """The table from the x-prefixes of ``j·G``, ``j = 1..bound``, in consecutive segments.

        Segments may be computed in parallel (:func:`segment`); the identity (``j = 0``)
        is handled by the lookups, not stored.
        """
        _check_bound(bound)
        raw = b"".join(segments)
        if len(raw) != 8 * bound:
            raise ValueError("segments do not cover 1..bound")
        keys = np.frombuffer(raw, dtype=">u8").astype(np.uint64)
        order = np.argsort(keys, kind="stable")
        return cls(bound, keys[order], (order + 1).astype(np.uint32))

    def to_bytes(self) -> bytes:
        payload = self.keys.astype("<u8").tobytes() + self.vals.astype("<u4").tobytes()
        digest = hashlib.sha256(payload).digest()
        return _HEADER.pack(_MAGIC, self.bound, len(self.keys), digest) + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> BabyStepTable:
        if len(data) < _HEADER.size:
            raise DecodeError("dlog table: truncated header")
        magic, bound, count, digest = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise DecodeError("dlog table: bad magic")
        if not 1 <= bound < 1 << 32:
            raise DecodeError(f"dlog table: bound {bound} outside [1, 2^32)")
        if count != bound or len(data) != _HEADER.size + 12 * count:
            raise DecodeError("dlog table: size does not match its header")
        payload = memoryview(data)[_HEADER.size :]
        if hashlib.sha256(payload).digest() != digest:
            raise DecodeError("dlog table: checksum mismatch")
        keys = np.frombuffer(payload[: 8 * count], dtype="<u8").astype(np.uint64)
        vals = np.frombuffer(payload[8 * count :], dtype="<u4").astype(np.uint32)
        if count > 1 and bool(np.any(keys[1:] < keys[:-1])):
            raise DecodeError("dlog table: keys not sorted")
        return cls(bound, keys, vals)

    def candidates(self, keys: npt.NDArray[np.uint64]) -> Iterator[tuple[int, int]]:
        """``(position in keys, |j|)`` for every key present in the table."""
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, len(self.keys) - 1)
        hits = np.nonzero(self.keys[pos] == keys)[0]
        for h in hits:
            yield int(h), int(self.vals[pos[h]])


class DiscreteLog:
    """Recover ``m`` from ``m·G`` for ``|m| < max_abs``."""

    def __init__(self, table: BabyStepTable, max_abs: int = 1 << 32) -> None:
        self.table = table
        self.max_abs = max_abs
        self._step = 2 * table.bound + 1
        self._neg_step = base_mul(-self._step)
        self._pos_step = base_mul(self._step)

    def decode(self, target: Point) -> int:
        if target.is_identity:
            return 0
        steps = -(-self.max_abs // self._step)  # giant steps each way
        down = target  # target − i·S·G, finds m = i·S ± j
        up = target + self._pos_step  # target + i·S·G, finds m = −i·S ± j
        i, chunk = 0, 1
        while i <= steps:
            n = min(chunk, steps + 1 - i)
            chunk = min(2 * chunk, _CHUNK)  # small |m| first, cheaply
            for sign, first, start, step in (
                (1, i, down, self._neg_step),
                (-1, i + 1, up, self._pos_step),
            ):
                keys, nxt, hit = walk(start, step, n)
                if hit is not None:
                    m = sign * (first + hit) * self._step
                    if abs(m) < self.max_abs:
                        return m
                    raise DlogError(f"discrete log {m} not in (−{self.max_abs}, {self.max_abs})")
                found = self._match(target, keys, first, sign)
                if found is not None:
                    return found
                if sign == 1:
                    down = nxt
                else:
                    up = nxt
            i += n
        raise DlogError(f"discrete log not in (−{self.max_abs}, {self.max_abs})")

    def _match(self, target: Point, raw_keys: bytes, first: int, sign: int) -> int | None:
        keys = np.frombuffer(raw_keys, dtype=">u8").astype(np.uint64)
        for pos, j in self.table.candidates(keys):
            base = sign * (first + pos) * self._step
            for cand in (base + j, base - j):
                if abs(cand) < self.max_abs and base_mul(cand) == target:
                    return cand
        return None
