"""Randomness sources passed into every construction (STYLE: explicit inputs)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Protocol

from tessera.crypto.group import N


class Rng(Protocol):
    """Source of uniformly random bytes and scalars."""

    def randbytes(self, n: int) -> bytes: ...

    def scalar(self) -> int:
        """Uniform non-zero scalar modulo the group order."""
        ...

    def below(self, bound: int) -> int:
        """Uniform integer in ``[0, bound)``."""
        ...


class _RngBase:
    def randbytes(self, n: int) -> bytes:
        raise NotImplementedError

    def below(self, bound: int) -> int:
        if bound <= 0:
            raise ValueError("below: bound must be positive")
        nbytes = (bound.bit_length() + 7) // 8 + 16  # 128 extra bits: bias < 2^-128
        return int.from_bytes(self.randbytes(nbytes), "big") % bound

    def scalar(self) -> int:
        return 1 + self.below(N - 1)


class SystemRng(_RngBase):
    """The operating system's CSPRNG (``secrets``): the production source."""

    def randbytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)


class SeededRng(_RngBase):
    """Deterministic stream for tests and vectors only: SHAKE-256 blocks of the seed.

    Block ``i`` is ``SHAKE-256(seed ‖ i)`` (4096 bytes); the stream is the blocks
    concatenated, read in order.
    """

    _BLOCK = 4096

    def __init__(self, seed: bytes | str | int) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(32, "big", signed=False)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = b"tessera/seeded-rng/v2" + len(seed).to_bytes(4, "big") + seed
        self._counter = 0
        self._buf = b""
        self._pos = 0

    def randbytes(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            block = hashlib.shake_256(self._seed + self._counter.to_bytes(8, "big"))
            self._buf = self._buf[self._pos :] + block.digest(self._BLOCK)
            self._pos = 0
            self._counter += 1
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out


def default_rng() -> Rng:
    return SystemRng()
