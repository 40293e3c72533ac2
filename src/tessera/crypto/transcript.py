"""Fiat–Shamir transcript (FS86) with domain separation, one type for every proof.

Every proof in Tessera derives its challenge from a :class:`Transcript` that
was opened with a protocol label and a *context* (for example the query id,
the role and the index of the prover). The proof functions then append their
whole statement and their commitments, so a challenge binds the context, the
statement and the first message. Each item is framed as
``len(label) ‖ label ‖ len(data) ‖ data`` so no two sequences of items
collide. The hash is SHA-512, reduced modulo the group order (bias < 2⁻²⁵⁶).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from tessera.crypto.group import N, Point

_VERSION = b"tessera/transcript/v1"


class Transcript:
    """An append-only Fiat–Shamir transcript."""

    __slots__ = ("_h",)

    def __init__(self, protocol: bytes, context: bytes = b"") -> None:
        self._h = hashlib.sha512()
        self._frame(b"version", _VERSION)
        self._frame(b"protocol", protocol)
        self._frame(b"context", context)

    def _frame(self, label: bytes, data: bytes) -> None:
        self._h.update(len(label).to_bytes(2, "big") + label + len(data).to_bytes(8, "big"))
        self._h.update(data)

    def append(self, label: bytes, data: bytes) -> None:
        self._frame(label, data)

    def append_int(self, label: bytes, value: int) -> None:
        self._frame(label, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))

    def append_point(self, label: bytes, point: Point) -> None:
        self._frame(label, point.encode())

    def append_points(self, label: bytes, points: Iterable[Point]) -> None:
        self._frame(label, b"".join(p.encode() for p in points))

    def challenge(self, label: bytes) -> int:
        """A challenge scalar; it is also absorbed, so later challenges depend on it."""
        h = self._h.copy()
        h.update(b"\xffchallenge" + label)
        e = int.from_bytes(h.digest(), "big") % N
        self.append_int(b"challenge/" + label, e)
        return e

    def copy(self) -> Transcript:
        t = Transcript.__new__(Transcript)
        t._h = self._h.copy()
        return t
