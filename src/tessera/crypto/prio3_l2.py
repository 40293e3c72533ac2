"""Compiled sharding and verification of :class:`Prio3FixedPointBoundedL2VecSum` (§7 of the draft).

:class:`~tessera.crypto.prio3.Prio3FixedPointBoundedL2VecSum` follows the spec's code,
which handles Python ``int`` lists and takes minutes for a model update of 10^5
parameters (1.6 million encoded digits at 16 bits). This module produces the *same
bytes* from Field128 elements held as ``(n, 2)`` arrays of ``uint64`` limbs (their wire
encoding) and the numba kernels of :mod:`tessera.crypto.flp_batch`:

* :func:`shard` encodes, shares and proves (``FlpBBCGGI19.prove``): the wire
  polynomials of both gadgets are interpolated and evaluated on the odd ``2P``-th roots
  with radix-2 NTTs, as ``ParallelSum(Mul())`` does;
* :func:`verify_init` computes one aggregator's verifier share in closed form (wire
  values at the test point as Lagrange sums over the gadget calls; gadget outputs are
  proof elements), as :mod:`tessera.crypto.flp_batch` does for SumVec.

Anything the kernels cannot decide exactly (an XOF value or a share element at or
above the modulus, a test point on a root of unity) goes through the spec code, so the
results are always the spec's. Imported on first use: loading it loads numba.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from tessera.crypto import flp_batch
from tessera.crypto.field import Field128, next_power_of_2
from tessera.crypto.flp import FixedPointBoundedL2VecSum
from tessera.crypto.prio3 import (
    USAGE_JOINT_RAND_PART,
    USAGE_MEAS_SHARE,
    USAGE_PROOF_SHARE,
    Prio3FixedPointBoundedL2VecSum,
)
from tessera.errors import DecodeError, InvalidProof

U64 = npt.NDArray[np.uint64]

_mul = flp_batch._mul
_add = flp_batch._add
_sub = flp_batch._sub
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_P = Field128.MODULUS
#: High limb of the modulus: an element whose high limb is below it is canonical.
_F128_HI = _P >> 64

#: ``(out_share limbs, corrected joint randomness seed)``: what :func:`verify_init` keeps.
L2VerifyState = tuple[U64, bytes]


# -- kernels ---------------------------------------------------------------------------


@njit(cache=True)
def _ntt_rows(a: U64, twiddles: U64, rev: Any) -> None:
    """In-place radix-2 NTT of every row of ``a`` (rows, n, 2); ``twiddles[k] = w^k``."""
    rows, n = a.shape[0], a.shape[1]
    for r in range(rows):
        for i in range(n):
            j = rev[i]
            if i < j:
                t0, t1 = a[r, i, 0], a[r, i, 1]
                a[r, i, 0], a[r, i, 1] = a[r, j, 0], a[r, j, 1]
                a[r, j, 0], a[r, j, 1] = t0, t1
        length = 2
        while length <= n:
            half = length // 2
            step = n // length
            for start in range(0, n, length):
                for k in range(half):
                    w0, w1 = twiddles[k * step, 0], twiddles[k * step, 1]
                    i0 = start + k
                    i1 = i0 + half
                    v0, v1 = _mul(a[r, i1, 0], a[r, i1, 1], w0, w1)
                    u0, u1 = a[r, i0, 0], a[r, i0, 1]
                    a[r, i0, 0], a[r, i0, 1] = _add(u0, u1, v0, v1)
                    a[r, i1, 0], a[r, i1, 1] = _sub(u0, u1, v0, v1)
            length *= 2


@njit(cache=True)
def _twist(a: U64, twist: U64) -> None:
    for r in range(a.shape[0]):
        for i in range(a.shape[1]):
            a[r, i, 0], a[r, i, 1] = _mul(a[r, i, 0], a[r, i, 1], twist[i, 0], twist[i, 1])


@njit(cache=True)
def _gadget_poly(wires: U64, odd: U64, out: U64) -> None:
    """Values at the ``2P``-th roots of ``sum_j wire_2j * wire_2j+1`` (even: the wires'
    own values, odd: their coset values)."""
    n_wires, p = wires.shape[0], wires.shape[1]
    for i in range(p):
        e0, e1 = _ZERO, _ZERO
        o0, o1 = _ZERO, _ZERO
        for j in range(0, n_wires, 2):
            a0, a1 = _mul(wires[j, i, 0], wires[j, i, 1], wires[j + 1, i, 0], wires[j + 1, i, 1])
            e0, e1 = _add(e0, e1, a0, a1)
            a0, a1 = _mul(odd[j, i, 0], odd[j, i, 1], odd[j + 1, i, 0], odd[j + 1, i, 1])
            o0, o1 = _add(o0, o1, a0, a1)
        out[2 * i, 0], out[2 * i, 1] = e0, e1
        out[2 * i + 1, 0], out[2 * i + 1, 1] = o0, o1


@njit(cache=True)
def _range_wires(bits: Any, seeds: U64, joint_rand: U64, chunk: int, wires: U64) -> None:
    """Gadget 0's wires for the prover: call ``i``, slot ``j``: ``(r_i^(j+1) x, x - 1)``."""
    n = bits.shape[0]
    calls = joint_rand.shape[0]
    for w in range(2 * chunk):
        wires[w, 0, 0], wires[w, 0, 1] = seeds[w, 0], seeds[w, 1]
    for i in range(calls):
        r0, r1 = joint_rand[i, 0], joint_rand[i, 1]
        p0, p1 = r0, r1
        for j in range(chunk):
            idx = i * chunk + j
            x = bits[idx] if idx < n else 0
            if x:
                wires[2 * j, 1 + i, 0], wires[2 * j, 1 + i, 1] = p0, p1
                wires[2 * j + 1, 1 + i, 0], wires[2 * j + 1, 1 + i, 1] = _ZERO, _ZERO
            else:
                wires[2 * j + 1, 1 + i, 0], wires[2 * j + 1, 1 + i, 1] = _sub(
                    _ZERO, _ZERO, _ONE, _ZERO
                )
            p0, p1 = _mul(p0, p1, r0, r1)


@njit(cache=True)
def _norm_wires(values: Any, seeds: U64, chunk: int, wires: U64) -> None:
    """Gadget 1's wires for the prover: call ``i``, slot ``j``: ``(v, v)``, ``v`` signed."""
    n = values.shape[0]
    for w in range(2 * chunk):
        wires[w, 0, 0], wires[w, 0, 1] = seeds[w, 0], seeds[w, 1]
    for idx in range(n):
        i = idx // chunk
        j = idx - i * chunk
        v = values[idx]
        if v >= 0:
            y0, y1 = np.uint64(v), _ZERO
        else:
            y0, y1 = _sub(_ZERO, _ZERO, np.uint64(-v), _ZERO)
        wires[2 * j, 1 + i, 0], wires[2 * j, 1 + i, 1] = y0, y1
        wires[2 * j + 1, 1 + i, 0], wires[2 * j + 1, 1 + i, 1] = y0, y1


@njit(cache=True)
def _sub_into(a: U64, b: U64) -> None:
    for i in range(a.shape[0]):
        a[i, 0], a[i, 1] = _sub(a[i, 0], a[i, 1], b[i, 0], b[i, 1])


@njit(cache=True)
def _add_into(a: U64, b: U64) -> None:
    for i in range(a.shape[0]):
        a[i, 0], a[i, 1] = _add(a[i, 0], a[i, 1], b[i, 0], b[i, 1])


@njit(cache=True)
def _lagrange_at(t0: Any, t1: Any, roots: U64, step: int, count: int, p: int, out: U64) -> bool:
    """``out[k] = (t^P - 1)/P * w^k / (t - w^k)`` on the ``P``-th roots ``w^k = roots[k step]``
    for ``k < count``; ``False`` if ``t`` is one of them."""
    n = count
    diffs = np.empty((n, 2), dtype=np.uint64)
    prefix = np.empty((n, 2), dtype=np.uint64)
    a0, a1 = _ONE, _ZERO
    for k in range(n):
        d0, d1 = _sub(t0, t1, roots[k * step, 0], roots[k * step, 1])
        if d0 == _ZERO and d1 == _ZERO:
            return False
        diffs[k, 0], diffs[k, 1] = d0, d1
        prefix[k, 0], prefix[k, 1] = a0, a1
        a0, a1 = _mul(a0, a1, d0, d1)
    i0, i1 = flp_batch._pow(a0, a1, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0xFFFFFFFFFFFFFFE3))
    # t^P
    tp0, tp1 = t0, t1
    m = 1
    while m < p:
        tp0, tp1 = _mul(tp0, tp1, tp0, tp1)
        m *= 2
    s0, s1 = _sub(tp0, tp1, _ONE, _ZERO)
    pinv0, pinv1 = flp_batch._pow(
        np.uint64(p), _ZERO, np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64(0xFFFFFFFFFFFFFFE3)
    )
    s0, s1 = _mul(s0, s1, pinv0, pinv1)
    for k in range(n - 1, -1, -1):
        v0, v1 = _mul(i0, i1, prefix[k, 0], prefix[k, 1])
        i0, i1 = _mul(i0, i1, diffs[k, 0], diffs[k, 1])
        w0, w1 = _mul(s0, s1, roots[k * step, 0], roots[k * step, 1])
        out[k, 0], out[k, 1] = _mul(w0, w1, v0, v1)
    return True


@njit(cache=True)
def _query(
    meas: U64,
    proof: U64,
    joint_rand: U64,
    query_rand: U64,
    roots0: U64,
    roots1: U64,
    consts: U64,
    length: int,
    bits: int,
    norm_bits: int,
    chunk0: int,
    chunk1: int,
    verifier: U64,
    out_share: U64,
) -> bool:
    """One aggregator's verifier share and output share; ``False``: use the spec code."""
    meas_len = meas.shape[0]
    calls0 = joint_rand.shape[0]
    calls1 = (length + chunk1 - 1) // chunk1
    p0 = roots0.shape[0] // 2
    p1 = roots1.shape[0] // 2
    sinv0, sinv1 = consts[0, 0], consts[0, 1]
    sh0, sh1 = consts[1, 0], consts[1, 1]  # offset / num_shares
    lw0, lw1 = consts[2, 0], consts[2, 1]  # norm last weight

    # Output share: the offset entries from their digits.
    for i in range(length):
        acc0, acc1 = _ZERO, _ZERO
        for k in range(bits - 1, -1, -1):  # Horner: sum_k 2^k digit_k
            acc0, acc1 = _add(acc0, acc1, acc0, acc1)
            acc0, acc1 = _add(acc0, acc1, meas[i * bits + k, 0], meas[i * bits + k, 1])
        out_share[i, 0], out_share[i, 1] = acc0, acc1

    # -- gadget 0: range check of every digit --------------------------------------
    t0, t1 = query_rand[2, 0], query_rand[2, 1]
    lag = np.empty((2 * p0, 2), dtype=np.uint64)
    if not _lagrange_at(t0, t1, roots0, 2, calls0 + 1, p0, lag):
        return False
    arity0 = 2 * chunk0
    for j in range(chunk0):
        verifier[1 + 2 * j, 0], verifier[1 + 2 * j, 1] = _mul(
            lag[0, 0], lag[0, 1], proof[2 * j, 0], proof[2 * j, 1]
        )
        verifier[2 + 2 * j, 0], verifier[2 + 2 * j, 1] = _mul(
            lag[0, 0], lag[0, 1], proof[2 * j + 1, 0], proof[2 * j + 1, 1]
        )
    for i in range(calls0):
        r0, r1 = joint_rand[i, 0], joint_rand[i, 1]
        l0, l1 = lag[i + 1, 0], lag[i + 1, 1]
        lr0, lr1 = _mul(l0, l1, r0, r1)
        for j in range(chunk0):
            idx = i * chunk0 + j
            if idx < meas_len:
                x0, x1 = meas[idx, 0], meas[idx, 1]
            else:
                x0, x1 = _ZERO, _ZERO
            a0, a1 = _mul(lr0, lr1, x0, x1)
            verifier[1 + 2 * j, 0], verifier[1 + 2 * j, 1] = _add(
                verifier[1 + 2 * j, 0], verifier[1 + 2 * j, 1], a0, a1
            )
            a0, a1 = _mul(x0, x1, l0, l1)  # the - 1/num_shares part is added below
            verifier[2 + 2 * j, 0], verifier[2 + 2 * j, 1] = _add(
                verifier[2 + 2 * j, 0], verifier[2 + 2 * j, 1], a0, a1
            )
            lr0, lr1 = _mul(lr0, lr1, r0, r1)
    # Every slot of every call has its x - 1/num_shares: subtract sinv * sum_i L_(i+1)(t).
    ls0, ls1 = _ZERO, _ZERO
    for i in range(calls0):
        ls0, ls1 = _add(ls0, ls1, lag[i + 1, 0], lag[i + 1, 1])
    ls0, ls1 = _mul(ls0, ls1, sinv0, sinv1)
    for j in range(chunk0):
        verifier[2 + 2 * j, 0], verifier[2 + 2 * j, 1] = _sub(
            verifier[2 + 2 * j, 0], verifier[2 + 2 * j, 1], ls0, ls1
        )
    base0 = arity0
    g0 = _poly_at(proof, base0, 2 * p0, roots0, t0, t1)
    if g0[2]:
        return False
    verifier[1 + arity0, 0], verifier[1 + arity0, 1] = g0[0], g0[1]
    rc0, rc1 = _ZERO, _ZERO
    for i in range(calls0):
        rc0, rc1 = _add(rc0, rc1, proof[base0 + 2 * (i + 1), 0], proof[base0 + 2 * (i + 1), 1])

    # -- gadget 1: the squared norm -------------------------------------------------
    off1 = base0 + 2 * p0 - 1  # start of gadget 1's part of the proof
    vbase = 2 + arity0  # start of gadget 1's part of the verifier
    u0, u1 = query_rand[3, 0], query_rand[3, 1]
    lag1 = np.empty((2 * p1, 2), dtype=np.uint64)
    if not _lagrange_at(u0, u1, roots1, 2, calls1 + 1, p1, lag1):
        return False
    for w in range(2 * chunk1):
        verifier[vbase + w, 0], verifier[vbase + w, 1] = _mul(
            lag1[0, 0], lag1[0, 1], proof[off1 + w, 0], proof[off1 + w, 1]
        )
    for idx in range(length):
        i = idx // chunk1
        j = idx - i * chunk1
        y0, y1 = _sub(out_share[idx, 0], out_share[idx, 1], sh0, sh1)
        a0, a1 = _mul(y0, y1, lag1[i + 1, 0], lag1[i + 1, 1])
        verifier[vbase + 2 * j, 0], verifier[vbase + 2 * j, 1] = _add(
            verifier[vbase + 2 * j, 0], verifier[vbase + 2 * j, 1], a0, a1
        )
        verifier[vbase + 2 * j + 1, 0], verifier[vbase + 2 * j + 1, 1] = _add(
            verifier[vbase + 2 * j + 1, 0], verifier[vbase + 2 * j + 1, 1], a0, a1
        )
    base1 = off1 + 2 * chunk1
    g1 = _poly_at(proof, base1, 2 * p1, roots1, u0, u1)
    if g1[2]:
        return False
    verifier[vbase + 2 * chunk1, 0], verifier[vbase + 2 * chunk1, 1] = g1[0], g1[1]
    nm0, nm1 = _ZERO, _ZERO
    for i in range(calls1):
        nm0, nm1 = _add(nm0, nm1, proof[base1 + 2 * (i + 1), 0], proof[base1 + 2 * (i + 1), 1])
    # claimed norm: weighted bits
    nb = length * bits
    pw0, pw1 = _ONE, _ZERO
    for k in range(norm_bits - 1):
        a0, a1 = _mul(pw0, pw1, meas[nb + k, 0], meas[nb + k, 1])
        nm0, nm1 = _sub(nm0, nm1, a0, a1)
        pw0, pw1 = _add(pw0, pw1, pw0, pw1)
    a0, a1 = _mul(lw0, lw1, meas[nb + norm_bits - 1, 0], meas[nb + norm_bits - 1, 1])
    nm0, nm1 = _sub(nm0, nm1, a0, a1)

    q0, q1 = _mul(query_rand[0, 0], query_rand[0, 1], rc0, rc1)
    a0, a1 = _mul(query_rand[1, 0], query_rand[1, 1], nm0, nm1)
    verifier[0, 0], verifier[0, 1] = _add(q0, q1, a0, a1)
    return True


@njit(cache=True)
def _poly_at(proof: U64, base: int, n2: int, roots: U64, t0: Any, t1: Any) -> Any:
    """The gadget polynomial (``n2 - 1`` values at the ``n2``-th roots, extended) at ``t``."""
    # The coefficient of x^(n2-1) vanishes: the missing value is -w * sum_c y_c w^c.
    ext0, ext1 = _ZERO, _ZERO
    for c in range(n2 - 1):
        a0, a1 = _mul(proof[base + c, 0], proof[base + c, 1], roots[c, 0], roots[c, 1])
        ext0, ext1 = _add(ext0, ext1, a0, a1)
    ext0, ext1 = _mul(ext0, ext1, roots[1, 0], roots[1, 1])
    ext0, ext1 = _sub(_ZERO, _ZERO, ext0, ext1)
    lag = np.empty((n2, 2), dtype=np.uint64)
    if not _lagrange_at(t0, t1, roots, 1, n2, n2, lag):
        return _ZERO, _ZERO, True
    g0, g1 = _ZERO, _ZERO
    for c in range(n2):
        if c < n2 - 1:
            y0, y1 = proof[base + c, 0], proof[base + c, 1]
        else:
            y0, y1 = ext0, ext1
        a0, a1 = _mul(lag[c, 0], lag[c, 1], y0, y1)
        g0, g1 = _add(g0, g1, a0, a1)
    return g0, g1, False


# -- tables ------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _ntt_tables(n: int) -> tuple[U64, U64, U64, Any]:
    """Forward and inverse twiddles of size ``n``, the coset twist ``w_2n^i / n``, and
    the bit-reversal permutation."""
    w = Field128.root(n)
    w_inv = pow(w, -1, _P)
    fwd = flp_batch.limbs([pow(w, k, _P) for k in range(max(n // 2, 1))])
    inv = flp_batch.limbs([pow(w_inv, k, _P) for k in range(max(n // 2, 1))])
    w2 = Field128.root(2 * n)
    n_inv = pow(n, -1, _P)
    twist = flp_batch.limbs([pow(w2, i, _P) * n_inv % _P for i in range(n)])
    bits = n.bit_length() - 1
    rev = np.array([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(n)])
    return fwd, inv, twist, rev.astype(np.int64)


@lru_cache(maxsize=16)
def _roots(n: int) -> U64:
    w = Field128.root(n)
    return flp_batch.limbs([pow(w, k, _P) for k in range(n)])


def _gadget_proof(wires: U64) -> U64:
    """``ParallelSum(Mul())``'s polynomial at the ``2P``-th roots for the given wires."""
    p = wires.shape[1]
    fwd, inv, twist, rev = _ntt_tables(p)
    odd = wires.copy()
    _ntt_rows(odd, inv, rev)  # P * coefficients
    _twist(odd, twist)
    _ntt_rows(odd, fwd, rev)
    out = np.empty((2 * p, 2), dtype=np.uint64)
    _gadget_poly(wires, odd, out)
    return out[: 2 * p - 1]


# -- the public functions ------------------------------------------------------------


def _circuit(vdaf: Prio3FixedPointBoundedL2VecSum) -> FixedPointBoundedL2VecSum:
    valid = vdaf.flp.valid
    if not isinstance(valid, FixedPointBoundedL2VecSum):  # pragma: no cover - by construction
        raise TypeError("not an L2 circuit")
    return valid


def _to_limbs(buf: bytes) -> U64:
    return np.frombuffer(buf, dtype="<u8").reshape(-1, 2).astype(np.uint64)


def _expand(
    vdaf: Prio3FixedPointBoundedL2VecSum, seed: bytes, dst: bytes, binder: bytes, length: int
) -> U64:
    """``Xof.expand_into_vec`` as limbs; the rare rejection goes through the spec code."""
    arr = _to_limbs(vdaf.xof(seed, dst, binder).next(16 * length))
    if bool((arr[:, 1] >= _F128_HI).any()):
        return flp_batch.limbs(vdaf.xof.expand_into_vec(Field128, seed, dst, binder, length))
    return arr


def encode_measurement(vdaf: Prio3FixedPointBoundedL2VecSum, values: Any) -> Any:
    """The encoded measurement's digits (``uint8``), as :meth:`FixedPointBoundedL2VecSum.encode`."""
    valid = _circuit(vdaf)
    v = np.asarray(values, dtype=np.int64)
    if v.shape != (valid.length,):
        raise ValueError("incorrect measurement length")
    if bool((v < -valid.offset).any()) or bool((v >= valid.offset).any()):
        raise ValueError("entry of measurement vector is out of range")
    norm = int(np.dot(v.astype(object), v.astype(object)))
    if norm > valid.norm_bound_sq:
        raise ValueError("measurement exceeds the L2 norm bound")
    q = (v + valid.offset).astype(np.uint64)
    digits = ((q[:, None] >> np.arange(valid.bits, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8
    )
    nb = valid.norm_bits
    if norm <= (1 << (nb - 1)) - 1:
        tail = [(norm >> i) & 1 for i in range(nb - 1)] + [0]
    else:
        rest = norm - valid.norm_last_weight
        tail = [(rest >> i) & 1 for i in range(nb - 1)] + [1]
    return np.concatenate([digits.reshape(-1), np.array(tail, dtype=np.uint8)]), v


def prove(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    digits: Any,
    values: Any,
    prove_rand: U64,
    joint_rand: U64,
) -> U64:
    """``FlpBBCGGI19.prove`` for the L2 circuit on the encoded ``digits`` of ``values``."""
    valid = _circuit(vdaf)
    c0, c1 = valid.chunk_length, valid.norm_chunk_length
    calls0, calls1 = valid.GADGET_CALLS
    p0, p1 = next_power_of_2(1 + calls0), next_power_of_2(1 + calls1)
    wires0 = np.zeros((2 * c0, p0, 2), dtype=np.uint64)
    _range_wires(digits, prove_rand[: 2 * c0], joint_rand, c0, wires0)
    wires1 = np.zeros((2 * c1, p1, 2), dtype=np.uint64)
    _norm_wires(np.asarray(values, dtype=np.int64), prove_rand[2 * c0 :], c1, wires1)
    return np.concatenate(
        [prove_rand[: 2 * c0], _gadget_proof(wires0), prove_rand[2 * c0 :], _gadget_proof(wires1)]
    )


def shard(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    ctx: bytes,
    measurement: Any,
    nonce: bytes,
    rand: bytes,
) -> tuple[bytes, list[bytes]]:
    """The *encoded* public share and input shares of :meth:`Prio3.shard`, byte for byte."""
    if len(nonce) != vdaf.NONCE_SIZE:
        raise ValueError("incorrect nonce size")
    if len(rand) != vdaf.RAND_SIZE:
        raise ValueError("incorrect size of random bytes argument")
    flp = vdaf.flp
    size = vdaf.xof.SEED_SIZE
    seeds = [rand[i : i + size] for i in range(0, vdaf.RAND_SIZE, size)]
    digits, values = encode_measurement(vdaf, measurement)
    h = vdaf.SHARES - 1
    helper_seeds = seeds[0 : 2 * h : 2]
    helper_blinds = seeds[1 : 2 * h : 2]
    k_leader_blind, k_prove = seeds[2 * h], seeds[2 * h + 1]
    dst_meas = vdaf.domain_separation_tag(USAGE_MEAS_SHARE, ctx)
    dst_proof = vdaf.domain_separation_tag(USAGE_PROOF_SHARE, ctx)
    dst_part = vdaf.domain_separation_tag(USAGE_JOINT_RAND_PART, ctx)

    leader_meas = np.zeros((flp.MEAS_LEN, 2), dtype=np.uint64)
    leader_meas[:, 0] = digits
    parts: list[bytes] = []
    for j in range(h):
        helper = _expand(vdaf, helper_seeds[j], dst_meas, bytes([j + 1]), flp.MEAS_LEN)
        _sub_into(leader_meas, helper)
        binder = bytes([j + 1]) + nonce + helper.astype("<u8").tobytes()
        parts.append(vdaf.xof.derive_seed(helper_blinds[j], dst_part, binder))
    leader_bytes = leader_meas.astype("<u8").tobytes()
    parts.insert(
        0, vdaf.xof.derive_seed(k_leader_blind, dst_part, bytes([0]) + nonce + leader_bytes)
    )

    prove_rand = flp_batch.limbs(vdaf.prove_rands(ctx, k_prove))
    joint_rand = flp_batch.limbs(vdaf.joint_rands(ctx, vdaf.joint_rand_seed(ctx, parts)))
    proof = prove(vdaf, digits, values, prove_rand, joint_rand)
    for j in range(h):
        _sub_into(
            proof,
            _expand(vdaf, helper_seeds[j], dst_proof, bytes([vdaf.PROOFS, j + 1]), flp.PROOF_LEN),
        )
    leader = leader_bytes + proof.astype("<u8").tobytes() + k_leader_blind
    helpers = [helper_seeds[j] + helper_blinds[j] for j in range(h)]
    return b"".join(parts), [leader, *helpers]


def _consts(vdaf: Prio3FixedPointBoundedL2VecSum) -> U64:
    valid = _circuit(vdaf)
    sinv = pow(vdaf.SHARES, -1, _P)
    return flp_batch.limbs([sinv, valid.offset * sinv % _P, valid.norm_last_weight % _P])


def verify_init(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    verify_key: bytes,
    ctx: bytes,
    agg_id: int,
    nonce: bytes,
    public_share: bytes,
    input_share: bytes,
) -> tuple[L2VerifyState, bytes]:
    """:meth:`Prio3.verify_init` on encoded shares: the state and the encoded verifier share.

    The state's output share is kept as limbs (:func:`aggregate` sums them). Raises what
    the spec raises: ``DecodeError``, ``InvalidProof`` or ``ValueError``.
    """
    if len(verify_key) != vdaf.VERIFY_KEY_SIZE:
        raise ValueError("incorrect verify key size")
    if len(nonce) != vdaf.NONCE_SIZE:
        raise ValueError("incorrect nonce size")
    if not 0 <= agg_id < vdaf.SHARES:
        raise ValueError("aggregator id out of range")
    flp = vdaf.flp
    valid = _circuit(vdaf)
    size = vdaf.xof.SEED_SIZE
    if len(public_share) != size * vdaf.SHARES:
        raise DecodeError("incorrect public share length")
    meas_bytes, proof_bytes = flp.MEAS_LEN * 16, flp.PROOF_LEN * 16
    if agg_id == 0:
        if len(input_share) != meas_bytes + proof_bytes + size:
            raise DecodeError("incorrect leader input share length")
        meas = _to_limbs(input_share[:meas_bytes])
        proof = _to_limbs(input_share[meas_bytes : meas_bytes + proof_bytes])
        if bool((meas[:, 1] >= _F128_HI).any()) or bool((proof[:, 1] >= _F128_HI).any()):
            return _spec_verify(vdaf, verify_key, ctx, agg_id, nonce, public_share, input_share)
        encoded_meas = input_share[:meas_bytes]
    else:
        if len(input_share) != 2 * size:
            raise DecodeError("incorrect helper input share length")
        k_share = input_share[:size]
        meas = _expand(
            vdaf,
            k_share,
            vdaf.domain_separation_tag(USAGE_MEAS_SHARE, ctx),
            bytes([agg_id]),
            flp.MEAS_LEN,
        )
        proof = _expand(
            vdaf,
            k_share,
            vdaf.domain_separation_tag(USAGE_PROOF_SHARE, ctx),
            bytes([vdaf.PROOFS, agg_id]),
            flp.PROOF_LEN,
        )
        encoded_meas = meas.astype("<u8").tobytes()
    k_blind = input_share[-size:]
    k_part = vdaf.xof.derive_seed(
        k_blind,
        vdaf.domain_separation_tag(USAGE_JOINT_RAND_PART, ctx),
        bytes([agg_id]) + nonce + encoded_meas,
    )
    parts = [public_share[i : i + size] for i in range(0, len(public_share), size)]
    parts[agg_id] = k_part
    k_corrected = vdaf.joint_rand_seed(ctx, parts)
    joint_rand = flp_batch.limbs(vdaf.joint_rands(ctx, k_corrected))
    query_rand = flp_batch.limbs(vdaf.query_rands(verify_key, ctx, nonce))
    calls0, calls1 = valid.GADGET_CALLS
    verifier = np.zeros((flp.VERIFIER_LEN, 2), dtype=np.uint64)
    out_share = np.zeros((valid.length, 2), dtype=np.uint64)
    ok = _query(
        meas,
        proof,
        joint_rand,
        query_rand,
        _roots(2 * next_power_of_2(1 + calls0)),
        _roots(2 * next_power_of_2(1 + calls1)),
        _consts(vdaf),
        valid.length,
        valid.bits,
        valid.norm_bits,
        valid.chunk_length,
        valid.norm_chunk_length,
        verifier,
        out_share,
    )
    if not ok:  # a test point on a root of unity: the spec decides
        return _spec_verify(vdaf, verify_key, ctx, agg_id, nonce, public_share, input_share)
    return (out_share, k_corrected), verifier.astype("<u8").tobytes() + k_part


def _spec_verify(
    vdaf: Prio3FixedPointBoundedL2VecSum,
    verify_key: bytes,
    ctx: bytes,
    agg_id: int,
    nonce: bytes,
    public_share: bytes,
    input_share: bytes,
) -> tuple[L2VerifyState, bytes]:
    result = vdaf._verify_init_encoded(verify_key, ctx, agg_id, nonce, public_share, input_share)
    if isinstance(result, Exception):
        raise result
    (out_share, k_corrected), verifier_share = result
    assert k_corrected is not None
    return (flp_batch.limbs(out_share), k_corrected), verifier_share


def verifier_message(
    vdaf: Prio3FixedPointBoundedL2VecSum, ctx: bytes, verifier_shares: Sequence[bytes]
) -> bytes:
    """The spec's decision on the aggregators' encoded verifier shares: the verifier
    message (the joint randomness seed), or ``InvalidProof``."""
    result = vdaf._message_encoded(ctx, verifier_shares)
    if isinstance(result, Exception):
        raise result
    return result


def verify_next(state: L2VerifyState, message: bytes) -> U64:
    """The output share, if the verifier message confirms this aggregator's joint randomness."""
    out_share, k_corrected = state
    if message != k_corrected:
        raise InvalidProof("joint randomness check failed")
    return out_share


def aggregate(out_shares: Sequence[U64], length: int) -> U64:
    """Sum of output shares (limbs)."""
    acc = np.zeros((length, 2), dtype=np.uint64)
    for share in out_shares:
        if share.shape != (length, 2):
            raise ValueError("mismatched vector sizes")
        _add_into(acc, share)
    return acc


def to_ints(arr: U64) -> list[int]:
    """Field128 elements from limbs."""
    flat: list[int] = np.ascontiguousarray(arr).reshape(-1).tolist()
    return [lo | (hi << 64) for lo, hi in zip(flat[0::2], flat[1::2], strict=True)]


def from_signed(values: Any) -> U64:
    """Signed integers (``|v| < 2^63``) as Field128 limbs, ``v mod p``."""
    v = np.asarray(values, dtype=np.int64)
    out = np.zeros((v.shape[0], 2), dtype=np.uint64)
    neg = v < 0
    mag = np.abs(v).astype(np.uint64)
    out[:, 0] = np.where(neg, np.uint64(1) - mag, mag)
    hi = np.uint64(_F128_HI)
    out[:, 1] = np.where(neg, np.where(mag >= 2, hi - np.uint64(1), hi), np.uint64(0))
    return out


def add(a: U64, b: U64) -> U64:
    """Element-wise sum of two limb vectors."""
    if a.shape != b.shape:
        raise ValueError("mismatched vector sizes")
    out = a.copy()
    _add_into(out, b)
    return out
