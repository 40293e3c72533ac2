"""Finite fields of draft-irtf-cfrg-vdaf-18, §6.1 (Field64, Field128, Field255, NTT, Lagrange)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from tessera.errors import DecodeError

# Representation choice (measured on the development machine, 1000-element vectors):
#   Python-int list comprehension  x*y % p   : ~250 us (Field64 and Field128 alike)
#   numpy object arrays            x*y % p   : ~235 us (no gain)
#   numpy uint64 32-bit-limb product, Field64: ~26 us before reduction, ~60 us reduced
#   Field128 with 32-bit limbs needs 16 partial products plus a two-step reduction,
#   ~100 numpy passes, which is no faster than Python ints for the vector sizes Prio3
#   uses (<= a few thousand elements).
# Hence field elements are plain Python ``int`` values in ``list[int]`` vectors, and the
# Field64 hot paths (vector multiply, NTT butterflies, decoding) use numpy uint64 limbs.

U64 = npt.NDArray[np.uint64]


def next_power_of_2(n: int) -> int:
    """The smallest power of two that is at least ``n`` (``n >= 1``)."""
    return 1 << (n - 1).bit_length()


class Field:
    """A prime field; elements are ``int`` values in ``[0, MODULUS)``."""

    MODULUS: ClassVar[int]
    ENCODED_SIZE: ClassVar[int]

    @classmethod
    def encode_vec(cls, vec: Sequence[int]) -> bytes:
        """Little-endian encoding of each element, concatenated."""
        size = cls.ENCODED_SIZE
        return b"".join(x.to_bytes(size, "little") for x in vec)

    @classmethod
    def decode_vec(cls, encoded: bytes) -> list[int]:
        """Strict inverse of :meth:`encode_vec`; raises :class:`DecodeError`."""
        size = cls.ENCODED_SIZE
        if len(encoded) % size != 0:
            raise DecodeError("input length must be a multiple of the element size")
        vec = [
            int.from_bytes(encoded[i : i + size], "little") for i in range(0, len(encoded), size)
        ]
        p = cls.MODULUS
        if any(x >= p for x in vec):
            raise DecodeError("field element out of range")
        return vec

    @classmethod
    def decode_vec_unchecked_len(cls, encoded: bytes, length: int) -> tuple[list[int], bytes]:
        """Decode ``length`` elements from the front of ``encoded``; return them and the rest."""
        n = length * cls.ENCODED_SIZE
        if len(encoded) < n:
            raise DecodeError("input too short")
        return cls.decode_vec(encoded[:n]), encoded[n:]

    @classmethod
    def vec_add(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        """Element-wise sum."""
        if len(left) != len(right):
            raise ValueError("mismatched vector sizes")
        p = cls.MODULUS
        return [(x + y) % p for x, y in zip(left, right, strict=True)]

    @classmethod
    def vec_sub(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        """Element-wise difference."""
        if len(left) != len(right):
            raise ValueError("mismatched vector sizes")
        p = cls.MODULUS
        return [(x - y) % p for x, y in zip(left, right, strict=True)]

    @classmethod
    def vec_neg(cls, vec: Sequence[int]) -> list[int]:
        """Element-wise negation."""
        p = cls.MODULUS
        return [(-x) % p for x in vec]

    @classmethod
    def vec_mul(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        """Element-wise product."""
        p = cls.MODULUS
        return [x * y % p for x, y in zip(left, right, strict=True)]

    @classmethod
    def inv(cls, x: int) -> int:
        """Multiplicative inverse; raises ``ZeroDivisionError`` for zero."""
        if x % cls.MODULUS == 0:
            raise ZeroDivisionError("zero has no inverse")
        return pow(x, -1, cls.MODULUS)

    @classmethod
    def batch_inv(cls, xs: Sequence[int]) -> list[int]:
        """Inverses of all (non-zero) ``xs`` with a single exponentiation."""
        p = cls.MODULUS
        n = len(xs)
        if n == 0:
            return []
        prefix = [0] * n
        acc = 1
        for i, x in enumerate(xs):
            prefix[i] = acc
            acc = acc * x % p
        acc = cls.inv(acc)
        out = [0] * n
        for i in range(n - 1, -1, -1):
            out[i] = acc * prefix[i] % p
            acc = acc * xs[i] % p
        return out

    @classmethod
    def encode_into_bit_vec(cls, val: int, bits: int) -> list[int]:
        """Bits of ``val`` (least significant first) as field elements."""
        if val < 0 or val >= 1 << bits:
            raise ValueError("value does not fit in the given number of bits")
        return [(val >> i) & 1 for i in range(bits)]

    @classmethod
    def decode_from_bit_vec(cls, vec: Sequence[int]) -> int:
        """Inverse of :meth:`encode_into_bit_vec`, computed in the field."""
        if cls.MODULUS >> len(vec) == 0:
            raise ValueError("too many bits for the field modulus")
        acc = 0
        for i, bit in enumerate(vec):
            acc += bit << i
        return acc % cls.MODULUS


class NttField(Field):
    """A field with a multiplicative subgroup of order ``GEN_ORDER`` (a power of two)."""

    GEN_ORDER: ClassVar[int]
    GEN: ClassVar[int]

    @classmethod
    def root(cls, n: int) -> int:
        """A principal ``n``-th root of unity, ``GEN ** (GEN_ORDER / n)``."""
        return _root(cls.MODULUS, cls.GEN, cls.GEN_ORDER, n)

    @classmethod
    def ntt(cls, coeffs: Sequence[int], n: int) -> list[int]:
        """Evaluate the polynomial ``coeffs`` at ``root(n) ** i`` for ``i`` in ``[0, n)``."""
        if len(coeffs) > n:
            raise ValueError("too many coefficients")
        a = list(coeffs) + [0] * (n - len(coeffs))
        return cls.ntt_batch([a])[0]

    @classmethod
    def ntt_batch(cls, rows: Sequence[Sequence[int]], inverse: bool = False) -> list[list[int]]:
        """Forward (or unscaled inverse) NTT of each row; all rows share a power-of-two length."""
        n = len(rows[0])
        w = cls.root(n)
        if inverse:
            w = pow(w, -1, cls.MODULUS)
        return _stockham(cls.MODULUS, rows, n, w)

    @classmethod
    def inv_ntt(cls, values: Sequence[int]) -> list[int]:
        """Coefficients of the polynomial with the given values at the ``len``-th roots."""
        p = cls.MODULUS
        n_inv = pow(len(values), -1, p)
        return [x * n_inv % p for x in cls.ntt_batch([values], inverse=True)[0]]

    # -- Lagrange basis: a polynomial is given by its values at root(n) ** i ------------

    @classmethod
    def coset_evaluations(cls, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """For each row of values at the ``n``-th roots (``deg < n``), the values at the
        odd ``2n``-th roots ``root(2n) * root(n) ** i``."""
        n = len(rows[0])
        p = cls.MODULUS
        if n <= _SMALL_COSET:
            # A direct n x n product beats two NTTs for the few-call circuits (Count).
            matrix = _coset_matrix(p, cls.root(n), cls.root(2 * n), n)
            return [
                [sum(x * m for x, m in zip(row, col, strict=True)) % p for col in matrix]
                for row in rows
            ]
        coeffs = cls.ntt_batch(rows, inverse=True)
        # Fold the 1/n of the inverse NTT into the twist by root(2n) ** i.
        twist = _scaled_powers(p, cls.root(2 * n), pow(n, -1, p), n)
        twisted = [[c * t % p for c, t in zip(row, twist, strict=True)] for row in coeffs]
        return cls.ntt_batch(twisted)

    @classmethod
    def double_evaluations(cls, values: Sequence[int]) -> list[int]:
        """Values at the ``2n``-th roots from values at the ``n``-th roots (``deg < n``)."""
        n = len(values)
        out = [0] * (2 * n)
        out[0::2] = values
        out[1::2] = cls.coset_evaluations([values])[0]
        return out

    @classmethod
    def extend_values_to_power_of_2(cls, values: Sequence[int], n: int) -> list[int]:
        """Values at all ``n``-th roots of the ``deg < m`` polynomial given at the first ``m``."""
        m = len(values)
        if m == n:
            return list(values)
        if m > n:
            raise ValueError("too many values")
        p = cls.MODULUS
        w = cls.root(n)
        if m == n - 1:
            # The coefficient of x^(n-1) vanishes: sum_i y_i w^i = 0 over all n values.
            acc = 0
            for y, s in zip(values, _powers(p, w, m), strict=True):
                acc += y * s
            return [*values, (-w * acc) % p]
        # General case: interpolate on the m points and evaluate with an NTT.
        xs = _powers(p, w, m)
        coeffs = _newton_interpolate(p, xs, list(values))
        return cls.ntt(coeffs, n)

    @classmethod
    def lagrange_mul(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        """Product of two polynomials given at the ``n``-th roots, as values at ``2n``-th roots."""
        p = cls.MODULUS
        odd_l, odd_r = cls.coset_evaluations([left, right])
        out = [0] * (2 * len(left))
        out[0::2] = [x * y % p for x, y in zip(left, right, strict=True)]
        out[1::2] = [x * y % p for x, y in zip(odd_l, odd_r, strict=True)]
        return out

    @classmethod
    def barycentric_inverses(cls, n: int, t: int) -> list[int] | int:
        """Precompute ``w^i / (t - w^i)`` scaled for evaluation at ``t`` over ``n`` roots.

        Returns the weights, or the index ``i`` when ``t == w^i`` exactly.
        """
        p = cls.MODULUS
        pts = _powers(p, cls.root(n), n)
        diffs = [(t - x) % p for x in pts]
        for i, d in enumerate(diffs):
            if d == 0:
                return i
        invs = cls.batch_inv(diffs)
        scale = (pow(t, n, p) - 1) * pow(n, -1, p) % p
        return [scale * x % p * inv % p for x, inv in zip(pts, invs, strict=True)]

    @classmethod
    def lagrange_eval(cls, values: Sequence[int], weights: list[int] | int) -> int:
        """Evaluate a Lagrange-basis polynomial using :meth:`barycentric_inverses`."""
        if isinstance(weights, int):
            return values[weights]
        acc = 0
        for y, c in zip(values, weights, strict=True):
            acc += y * c
        return acc % cls.MODULUS

    @classmethod
    def poly_eval_lagrange(cls, values: Sequence[int], t: int) -> int:
        """Evaluate at ``t`` the polynomial with the given values at the ``len``-th roots."""
        return cls.lagrange_eval(values, cls.barycentric_inverses(len(values), t))


class Field64(NttField):
    """GF(2^32 * 4294967295 + 1)."""

    MODULUS = 2**32 * 4294967295 + 1
    ENCODED_SIZE = 8
    GEN_ORDER = 2**32
    GEN = pow(7, 4294967295, 2**32 * 4294967295 + 1)

    @classmethod
    def decode_vec(cls, encoded: bytes) -> list[int]:
        if len(encoded) % 8 != 0:
            raise DecodeError("input length must be a multiple of the element size")
        arr = np.frombuffer(encoded, dtype="<u8")
        if arr.size and bool((arr >= np.uint64(cls.MODULUS)).any()):
            raise DecodeError("field element out of range")
        out: list[int] = arr.tolist()
        return out

    @classmethod
    def encode_vec(cls, vec: Sequence[int]) -> bytes:
        return np.asarray(vec, dtype="<u8").tobytes() if len(vec) else b""


class Field128(NttField):
    """GF(2^66 * 4611686018427387897 + 1)."""

    MODULUS = 2**66 * 4611686018427387897 + 1
    ENCODED_SIZE = 16
    GEN_ORDER = 2**66
    GEN = pow(7, 4611686018427387897, 2**66 * 4611686018427387897 + 1)

    @classmethod
    def decode_vec(cls, encoded: bytes) -> list[int]:
        if len(encoded) % 16 != 0:
            raise DecodeError("input length must be a multiple of the element size")
        halves: list[int] = np.frombuffer(encoded, dtype="<u8").tolist()
        vec = [lo | (hi << 64) for lo, hi in zip(halves[0::2], halves[1::2], strict=True)]
        p = cls.MODULUS
        if any(x >= p for x in vec):
            raise DecodeError("field element out of range")
        return vec


class Field255(Field):
    """GF(2^255 - 19)."""

    MODULUS = 2**255 - 19
    ENCODED_SIZE = 32


# -- helpers -------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _root(p: int, gen: int, order: int, n: int) -> int:
    if n <= 0 or order % n != 0:
        raise ValueError("no root of unity of that order")
    return pow(gen, order // n, p)


@lru_cache(maxsize=1024)
def _powers_cached(p: int, w: int, n: int) -> tuple[int, ...]:
    out = [1] * n
    for i in range(1, n):
        out[i] = out[i - 1] * w % p
    return tuple(out)


def _powers(p: int, w: int, n: int) -> list[int]:
    return list(_powers_cached(p, w, n))


@lru_cache(maxsize=1024)
def _scaled_powers_cached(p: int, w: int, scale: int, n: int) -> tuple[int, ...]:
    out = [scale % p] * n
    for i in range(1, n):
        out[i] = out[i - 1] * w % p
    return tuple(out)


def _scaled_powers(p: int, w: int, scale: int, n: int) -> tuple[int, ...]:
    return _scaled_powers_cached(p, w, scale, n)


#: Largest size for which :meth:`NttField.coset_evaluations` multiplies by a matrix.
_SMALL_COSET = 4


@lru_cache(maxsize=64)
def _coset_matrix(p: int, w: int, w2: int, n: int) -> tuple[tuple[int, ...], ...]:
    """Column ``i`` maps values at the ``n``-th roots ``w^j`` to the value at ``w2 w^i``.

    Entry ``j`` of column ``i`` is ``(1/n) sum_k w^(-jk) (w2 w^i)^k``.
    """
    n_inv = pow(n, -1, p)
    w_inv = pow(w, -1, p)
    cols = []
    for i in range(n):
        x = w2 * pow(w, i, p) % p
        col = []
        for j in range(n):
            acc = 0
            for k in range(n):
                acc += pow(w_inv, j * k, p) * pow(x, k, p)
            col.append(acc * n_inv % p)
        cols.append(tuple(col))
    return tuple(cols)


@lru_cache(maxsize=1024)
def _stage_twiddles(p: int, w: int, half: int, s: int) -> tuple[int, ...]:
    """``w ** j`` for ``j`` in ``[0, half)``, each repeated ``s`` times."""
    out: list[int] = []
    x = 1
    for _ in range(half):
        out += [x] * s
        x = x * w % p
    return tuple(out)


def _stockham(p: int, rows: Sequence[Sequence[int]], n: int, w: int) -> list[list[int]]:
    """Batched Stockham autosort NTT: row ``b`` maps to ``sum_j rows[b][j] w^(jk)``.

    The rows are interleaved (element ``j`` of row ``b`` at ``b + B j``), so every stage
    is three list comprehensions over the whole batch instead of a Python loop per
    butterfly; this is about 3x faster than an in-place iterative NTT on small sizes.
    """
    if n & (n - 1):
        raise ValueError("length must be a power of two")
    batch = len(rows)
    x = [0] * (n * batch)
    for b, row in enumerate(rows):
        if len(row) != n:
            raise ValueError("rows must have equal length")
        x[b::batch] = row
    m, s = n, batch
    wm = w
    while m > 1:
        half = m // 2
        size = half * s
        top, bot = x[:size], x[size:]
        tw = _stage_twiddles(p, wm, half, s)
        sums = [u + v for u, v in zip(top, bot, strict=True)]
        if half == 1:  # last stage: every twiddle is 1
            diffs = [u - v for u, v in zip(top, bot, strict=True)]
        else:
            diffs = [(u - v) * t % p for u, v, t in zip(top, bot, tw, strict=True)]
        y = [0] * (2 * size)
        if s <= half:
            step = 2 * s
            for q in range(s):
                y[q::step] = sums[q::s]
                y[q + s :: step] = diffs[q::s]
        else:
            for j in range(half):
                lo = j * s
                y[2 * lo : 2 * lo + s] = sums[lo : lo + s]
                y[2 * lo + s : 2 * lo + 2 * s] = diffs[lo : lo + s]
        x = y
        m, s = half, 2 * s
        wm = wm * wm % p
    return [[v % p for v in x[b::batch]] for b in range(batch)]


def _newton_interpolate(p: int, xs: list[int], ys: list[int]) -> list[int]:
    """Monomial coefficients of the interpolating polynomial (O(n^2))."""
    n = len(xs)
    coef = list(ys)
    for j in range(1, n):
        for i in range(n - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) * pow(xs[i] - xs[i - j], -1, p) % p
    # Convert from the Newton form to monomial coefficients.
    out = [0] * n
    for k in range(n - 1, -1, -1):
        # out = out * (x - xs[k]) + coef[k]
        new = [0] * n
        for i in range(n - 1):
            new[i + 1] = out[i]
        for i in range(n):
            new[i] = (new[i] - xs[k] * out[i] + (coef[k] if i == 0 else 0)) % p
        out = new
    return out
