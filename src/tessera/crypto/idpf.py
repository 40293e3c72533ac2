"""The IDPF of [BBCGGI21] (draft-irtf-cfrg-vdaf-18, §8.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from tessera.crypto.field import Field, Field64, Field255
from tessera.crypto.xof import Xof, XofFixedKeyAes128, XofTurboShake128, format_dst
from tessera.errors import DecodeError

#: ``(seed correction, (left, right) control-bit corrections, value correction)``
CorrectionWord: TypeAlias = tuple[bytes, tuple[int, int], list[int]]


def _xor(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "little") ^ int.from_bytes(right, "little")).to_bytes(
        len(left), "little"
    )


def pack_bits(bits: Sequence[int]) -> bytes:
    """Pack bits, least significant bit of each byte first."""
    buf = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        buf[i // 8] |= (bit & 1) << (i % 8)
    return bytes(buf)


def unpack_bits(packed: bytes, length: int) -> list[int]:
    """Strict inverse of :func:`pack_bits`: rejects wrong lengths and non-zero padding."""
    if len(packed) != (length + 7) // 8:
        raise DecodeError("incorrect packed bit length")
    bits = [(packed[i // 8] >> (i % 8)) & 1 for i in range(length)]
    if length % 8 and packed[-1] >> (length % 8):
        raise DecodeError("trailing bits")
    return bits


class IdpfBBCGGI21:
    """Incremental DPF with Field64 values at inner levels and Field255 at the leaves."""

    SHARES = 2
    KEY_SIZE = XofFixedKeyAes128.SEED_SIZE
    RAND_SIZE = 2 * XofFixedKeyAes128.SEED_SIZE
    NONCE_SIZE = XofFixedKeyAes128.SEED_SIZE
    field_inner: type[Field] = Field64
    field_leaf: type[Field] = Field255

    def __init__(self, value_len: int, bits: int) -> None:
        if value_len <= 0 or bits <= 0:
            raise ValueError("invalid IDPF parameters")
        self.VALUE_LEN = value_len
        self.BITS = bits

    def current_field(self, level: int) -> type[Field]:
        """Field of the values at ``level``."""
        return self.field_inner if level < self.BITS - 1 else self.field_leaf

    def gen(
        self,
        alpha: Sequence[bool],
        beta_inner: Sequence[Sequence[int]],
        beta_leaf: Sequence[int],
        ctx: bytes,
        nonce: bytes,
        rand: bytes,
    ) -> tuple[list[CorrectionWord], list[bytes]]:
        """Key generation for the point ``alpha`` with values ``beta_inner``/``beta_leaf``."""
        if len(alpha) != self.BITS:
            raise ValueError("incorrect alpha length")
        if len(beta_inner) != self.BITS - 1:
            raise ValueError("incorrect beta_inner length")
        if len(rand) != self.RAND_SIZE:
            raise ValueError("incorrect rand size")
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        key = [rand[: self.KEY_SIZE], rand[self.KEY_SIZE :]]
        seed = list(key)
        ctrl = [0, 1]
        public_share: list[CorrectionWord] = []
        for level in range(self.BITS):
            keep = int(alpha[level])
            lose = 1 - keep
            s0, t0 = self.extend(level, seed[0], ctx, nonce)
            s1, t1 = self.extend(level, seed[1], ctx, nonce)
            seed_cw = _xor(s0[lose], s1[lose])
            ctrl_cw = (t0[0] ^ t1[0] ^ keep ^ 1, t0[1] ^ t1[1] ^ keep)
            x0 = _xor(s0[keep], seed_cw) if ctrl[0] else s0[keep]
            x1 = _xor(s1[keep], seed_cw) if ctrl[1] else s1[keep]
            ctrl[0] = t0[keep] ^ (ctrl_cw[keep] if ctrl[0] else 0)
            ctrl[1] = t1[keep] ^ (ctrl_cw[keep] if ctrl[1] else 0)
            seed[0], w0 = self.convert(level, x0, ctx, nonce)
            seed[1], w1 = self.convert(level, x1, ctx, nonce)
            field = self.current_field(level)
            b = list(beta_inner[level]) if level < self.BITS - 1 else list(beta_leaf)
            if len(b) != self.VALUE_LEN:
                raise ValueError("length of beta must match the value length")
            w_cw = field.vec_add(field.vec_sub(b, w0), w1)
            if ctrl[1]:
                w_cw = field.vec_neg(w_cw)
            public_share.append((seed_cw, ctrl_cw, w_cw))
        return public_share, key

    def eval(
        self,
        agg_id: int,
        public_share: Sequence[CorrectionWord],
        key: bytes,
        level: int,
        prefixes: Sequence[Sequence[bool]],
        ctx: bytes,
        nonce: bytes,
    ) -> list[list[int]]:
        """Aggregator ``agg_id``'s shares of the values at each prefix of length ``level + 1``."""
        if agg_id not in range(self.SHARES):
            raise ValueError("aggregator id out of range")
        if level not in range(self.BITS):
            raise ValueError("level out of range")
        if len({tuple(p) for p in prefixes}) != len(prefixes):
            raise ValueError("prefixes must be unique")
        field = self.current_field(level)
        # Nodes along shared paths are evaluated once: (prefix so far) -> (seed, ctrl).
        cache: dict[tuple[bool, ...], tuple[bytes, int]] = {(): (key, agg_id)}
        out: list[list[int]] = []
        for prefix in prefixes:
            if len(prefix) != level + 1:
                raise ValueError("incorrect prefix length")
            path = tuple(bool(b) for b in prefix)
            y: list[int] = []
            for current in range(level + 1):
                node = path[: current + 1]
                if current < level and node in cache:
                    continue
                seed, ctrl = cache[path[:current]]
                seed, ctrl, y = self.eval_next(
                    seed, ctrl, public_share[current], current, int(path[current]), ctx, nonce
                )
                cache[node] = (seed, ctrl)
            out.append(y if agg_id == 0 else field.vec_neg(y))
        return out

    def eval_next(
        self,
        prev_seed: bytes,
        prev_ctrl: int,
        correction_word: CorrectionWord,
        level: int,
        bit: int,
        ctx: bytes,
        nonce: bytes,
    ) -> tuple[bytes, int, list[int]]:
        """The child node selected by ``bit`` and its (uncorrected-sign) value share."""
        seed_cw, ctrl_cw, w_cw = correction_word
        s, t = self.extend(level, prev_seed, ctx, nonce)
        if prev_ctrl:
            s = [_xor(s[0], seed_cw), _xor(s[1], seed_cw)]
            t = [t[0] ^ ctrl_cw[0], t[1] ^ ctrl_cw[1]]
        next_ctrl = t[bit]
        next_seed, y = self.convert(level, s[bit], ctx, nonce)
        if next_ctrl:
            y = self.current_field(level).vec_add(y, w_cw)
        return next_seed, next_ctrl, y

    def extend(
        self, level: int, seed: bytes, ctx: bytes, nonce: bytes
    ) -> tuple[list[bytes], list[int]]:
        """Two child seeds and control bits (the low bit of each seed, then cleared)."""
        xof = self.current_xof(level, seed, format_dst(1, 0, 0) + ctx, nonce)
        out = xof.next(2 * self.KEY_SIZE)
        s0 = bytearray(out[: self.KEY_SIZE])
        s1 = bytearray(out[self.KEY_SIZE :])
        t = [s0[0] & 1, s1[0] & 1]
        s0[0] &= 0xFE
        s1[0] &= 0xFE
        return [bytes(s0), bytes(s1)], t

    def convert(self, level: int, seed: bytes, ctx: bytes, nonce: bytes) -> tuple[bytes, list[int]]:
        """Next seed and pseudorandom value vector for ``level``."""
        xof = self.current_xof(level, seed, format_dst(1, 0, 1) + ctx, nonce)
        next_seed = xof.next(self.KEY_SIZE)
        return next_seed, xof.next_vec(self.current_field(level), self.VALUE_LEN)

    def current_xof(self, level: int, seed: bytes, dst: bytes, nonce: bytes) -> Xof:
        """Fixed-key AES for inner levels, TurboSHAKE128 for the leaf level."""
        if level < self.BITS - 1:
            return XofFixedKeyAes128(seed, dst, nonce)
        return XofTurboShake128(seed, dst, nonce)

    def encode_public_share(self, public_share: Sequence[CorrectionWord]) -> bytes:
        """Control bits (packed), then seeds, then value corrections."""
        bits = [b for _, ctrl, _ in public_share for b in ctrl]
        out = pack_bits(bits)
        out += b"".join(seed for seed, _, _ in public_share)
        for level, (_, _, w) in enumerate(public_share):
            out += self.current_field(level).encode_vec(w)
        return out

    def decode_public_share(self, encoded: bytes) -> list[CorrectionWord]:
        """Strict inverse of :meth:`encode_public_share`."""
        nbytes = (2 * self.BITS + 7) // 8
        inner = Field64.ENCODED_SIZE * self.VALUE_LEN
        leaf = Field255.ENCODED_SIZE * self.VALUE_LEN
        expected = nbytes + self.BITS * self.KEY_SIZE + (self.BITS - 1) * inner + leaf
        if len(encoded) != expected:
            raise DecodeError("incorrect IDPF public share length")
        bits = unpack_bits(encoded[:nbytes], 2 * self.BITS)
        pos = nbytes
        seeds = []
        for _ in range(self.BITS):
            seeds.append(encoded[pos : pos + self.KEY_SIZE])
            pos += self.KEY_SIZE
        out: list[CorrectionWord] = []
        for level in range(self.BITS):
            field = self.current_field(level)
            n = field.ENCODED_SIZE * self.VALUE_LEN
            w = field.decode_vec(encoded[pos : pos + n])
            pos += n
            out.append((seeds[level], (bits[2 * level], bits[2 * level + 1]), w))
        return out
