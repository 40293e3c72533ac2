"""Extendable-output functions of draft-irtf-cfrg-vdaf-18, §6.2."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from Crypto.Cipher import AES
from Crypto.Hash import TurboSHAKE128

from tessera.crypto.field import Field, next_power_of_2

#: Document version, the first byte of every domain-separation tag.
VERSION = 18


def format_dst(algo_class: int, algo: int, usage: int) -> bytes:
    """Domain-separation tag: version, algorithm class, algorithm ID and usage."""
    return (
        VERSION.to_bytes(1, "big")
        + algo_class.to_bytes(1, "big")
        + algo.to_bytes(4, "big")
        + usage.to_bytes(2, "big")
    )


class Xof:
    """Base class: a seeded stream of bytes bound to a DST and a binder string."""

    SEED_SIZE: ClassVar[int]

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        raise NotImplementedError

    def next(self, length: int) -> bytes:
        """The next ``length`` bytes of the stream."""
        raise NotImplementedError

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        """A fresh seed derived from the stream."""
        return cls(seed, dst, binder).next(cls.SEED_SIZE)

    def next_vec(self, field: type[Field], length: int) -> list[int]:
        """The next ``length`` field elements, by rejection sampling."""
        size = field.ENCODED_SIZE
        p = field.MODULUS
        mask = next_power_of_2(p) - 1
        out: list[int] = []
        while len(out) < length:
            need = length - len(out)
            buf = self.next(need * size)
            if size == 8:
                cand: list[int] = np.frombuffer(buf, dtype="<u8").tolist()
            elif size == 16:
                halves: list[int] = np.frombuffer(buf, dtype="<u8").tolist()
                cand = [lo | (hi << 64) for lo, hi in zip(halves[0::2], halves[1::2], strict=True)]
            else:
                cand = [
                    int.from_bytes(buf[i : i + size], "little") & mask
                    for i in range(0, len(buf), size)
                ]
            out.extend(x for x in cand if x < p)
        return out

    @classmethod
    def expand_into_vec(
        cls, field: type[Field], seed: bytes, dst: bytes, binder: bytes, length: int
    ) -> list[int]:
        """``length`` field elements expanded from ``seed``."""
        return cls(seed, dst, binder).next_vec(field, length)


class XofTurboShake128(Xof):
    """TurboSHAKE128 with domain byte 1 over ``len(dst) || dst || len(seed) || seed || binder``."""

    SEED_SIZE = 32

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(dst) >= 1 << 16 or len(seed) >= 1 << 8:
            raise ValueError("dst or seed too long")
        self._h = TurboSHAKE128.new(domain=1)
        self._h.update(
            len(dst).to_bytes(2, "little") + dst + len(seed).to_bytes(1, "little") + seed + binder
        )

    def next(self, length: int) -> bytes:
        out: bytes = self._h.read(length)
        return out


_FIXED_KEY_CACHE: dict[bytes, object] = {}


def _fixed_key_cipher(dst: bytes, binder: bytes) -> object:
    """ECB cipher under the fixed key derived from ``dst`` and ``binder`` (memoised)."""
    tag = len(dst).to_bytes(2, "little") + dst + binder
    cipher = _FIXED_KEY_CACHE.get(tag)
    if cipher is None:
        h = TurboSHAKE128.new(domain=2)
        h.update(tag)
        cipher = AES.new(h.read(16), AES.MODE_ECB)
        if len(_FIXED_KEY_CACHE) > 64:
            _FIXED_KEY_CACHE.clear()
        _FIXED_KEY_CACHE[tag] = cipher
    return cipher


class XofFixedKeyAes128(Xof):
    """Fixed-key AES-128 in the circular correlation-robust hash mode of [GKWWY20]."""

    SEED_SIZE = 16

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(seed) != self.SEED_SIZE:
            raise ValueError("incorrect seed size")
        self._cipher = _fixed_key_cipher(dst, binder)
        self._seed = int.from_bytes(seed, "little")
        self._consumed = 0

    def next(self, length: int) -> bytes:
        start = self._consumed
        end = start + length
        first, last = start // 16, (end + 15) // 16
        seed = self._seed
        # sigma(x) = (hi, hi xor lo) on 64-bit halves; block i is seed xor le(i).
        sigmas = bytearray()
        for i in range(first, last):
            x = seed ^ i
            lo, hi = x & 0xFFFFFFFFFFFFFFFF, x >> 64
            sigmas += hi.to_bytes(8, "little") + (hi ^ lo).to_bytes(8, "little")
        enc: bytes = self._cipher.encrypt(bytes(sigmas))  # type: ignore[attr-defined]
        hashed = int.from_bytes(enc, "little") ^ int.from_bytes(sigmas, "little")
        stream = hashed.to_bytes(len(sigmas), "little")
        self._consumed = end
        off = start - first * 16
        return stream[off : off + length]
