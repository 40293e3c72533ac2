"""Extendable-output functions of draft-irtf-cfrg-vdaf-18, §6.2."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from Crypto.Cipher import AES

# TurboSHAKE128 is pycryptodome's C Keccak with 12 rounds; its Python wrapper object
# costs more than the hashing for the short inputs Prio3 uses, so one-shot calls go to
# the C functions directly (tests replay the official XOF vectors through this path).
from Crypto.Hash import keccak as _keccak_module
from Crypto.Util import _raw_api as _raw_api_module

from tessera.crypto.field import Field, next_power_of_2

_keccak: Any = _keccak_module._raw_keccak_lib  # type: ignore[attr-defined]
_raw: Any = _raw_api_module
if _raw.backend != "cffi":  # the one-shot calls below use cffi directly
    raise ImportError("tessera needs pycryptodome's cffi backend")

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


def turboshake128(data: bytes, domain: int, length: int) -> bytes:
    """The first ``length`` bytes of TurboSHAKE128(``data``, ``domain``) (RFC 9861)."""
    ffi = _raw.ffi
    handle = ffi.new("void **")
    # Capacity 32 bytes (256 bits), 12 rounds.
    if _keccak.keccak_init(handle, 32, 12):
        raise ValueError("cannot instantiate TurboSHAKE128")
    state = handle[0]
    try:
        out = ffi.new("uint8_t[]", length)
        if _keccak.keccak_absorb(state, data, len(data)) or _keccak.keccak_squeeze(
            state, out, length, domain
        ):
            raise ValueError("TurboSHAKE128 failed")
    finally:
        _keccak.keccak_destroy(state)
    result: bytes = ffi.buffer(out)[:]
    return result


class XofTurboShake128(Xof):
    """TurboSHAKE128 with domain byte 1 over ``len(dst) || dst || len(seed) || seed || binder``."""

    SEED_SIZE = 32

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(dst) >= 1 << 16 or len(seed) >= 1 << 8:
            raise ValueError("dst or seed too long")
        self._input = (
            len(dst).to_bytes(2, "little") + dst + len(seed).to_bytes(1, "little") + seed + binder
        )
        self._consumed = 0

    def next(self, length: int) -> bytes:
        # Squeezing is deterministic: later calls recompute the prefix (rare: only
        # rejection sampling asks twice).
        start = self._consumed
        self._consumed = start + length
        stream = turboshake128(self._input, 1, start + length)
        return stream[start:] if start else stream


_FIXED_KEY_CACHE: dict[bytes, object] = {}


def _fixed_key_cipher(dst: bytes, binder: bytes) -> object:
    """ECB cipher under the fixed key derived from ``dst`` and ``binder`` (memoised)."""
    tag = len(dst).to_bytes(2, "little") + dst + binder
    cipher = _FIXED_KEY_CACHE.get(tag)
    if cipher is None:
        cipher = AES.new(turboshake128(tag, 2, 16), AES.MODE_ECB)
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
