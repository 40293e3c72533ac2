"""Batched FLP query (draft-irtf-cfrg-vdaf-18, §7.3.3) for Field128 range-check circuits.

The verifier of :class:`tessera.crypto.flp.FlpBBCGGI19` for the circuits whose only
gadget is ``ParallelSum(Mul(), chunk_length)`` applied by the chunked range check
(SumVec, Histogram, MultihotCountVec), run over a whole aggregation job at once in
compiled code (numba). Field128 elements are pairs of ``uint64`` limbs ``(lo, hi)``,
which is also their little-endian wire encoding, so XOF output and decoded shares are
used without conversion.

The query is computed in closed form instead of replaying the circuit:

* the gadget outputs the circuit sums are the proof polynomial's values at the even
  ``2P``-th roots, i.e. proof elements, so the range-check output is their sum;
* the wire polynomials are zero beyond the ``C`` gadget calls, so each wire's value
  at the test point ``t`` is a dot product with ``C + 1`` Lagrange weights;
* the weights ``w^c / (t - w^c)`` for every report of the job share one inversion
  (Montgomery's trick across the batch).

Reports whose test point is a ``2P``-th root of unity (probability about ``2^-120``)
are flagged and handled by the generic code, which rejects or evaluates them exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

U64 = npt.NDArray[np.uint64]

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S62 = np.uint64(62)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_K28 = np.uint64(28)
#: Field128 modulus ``2^128 - 28 * 2^64 + 1`` as limbs.
_P0 = np.uint64(1)
_P1 = np.uint64(0xFFFFFFFFFFFFFFE4)

#: Circuit kinds of :func:`query_range_checked`.
KIND_SUMVEC = 0
KIND_HISTOGRAM = 1
KIND_MULTIHOT = 2

#: Per-report status codes of :func:`query_range_checked`.
STATUS_OK = 0
STATUS_ROOT_OF_UNITY = 1


def _jit(fn: Any) -> Any:
    return njit(cache=True)(fn)


@_jit
def _mul64(a: Any, b: Any) -> Any:
    a0 = a & _M32
    a1 = a >> _S32
    b0 = b & _M32
    b1 = b >> _S32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    lo = (p00 & _M32) | (mid << _S32)
    hi = p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)
    return lo, hi


@_jit
def _fold(z0: Any, z1: Any, h0: Any, h1: Any) -> Any:
    """``(z0 + z1 2^64) + (h0 + h1 2^64) * (2^128 mod p)`` as four limbs (exact)."""
    # 2^128 = 28 * 2^64 - 1 (mod p): add 28 * H * 2^64, then subtract H.
    u0, c0 = _mul64(h0, _K28)
    u1, c1 = _mul64(h1, _K28)
    u1 = u1 + c0
    u2 = c1 + (_ONE if u1 < c0 else _ZERO)
    a1 = z1 + u0
    carry = _ONE if a1 < u0 else _ZERO
    a2 = u1 + carry
    carry = _ONE if a2 < carry else _ZERO
    a3 = u2 + carry
    # subtract H = (h0, h1)
    t0 = z0 - h0
    borrow = _ONE if z0 < h0 else _ZERO
    t1 = a1 - h1
    b1 = _ONE if a1 < h1 else _ZERO
    t1b = t1 - borrow
    b1 = b1 | (_ONE if t1 < borrow else _ZERO)
    t2 = a2 - b1
    b2 = _ONE if a2 < b1 else _ZERO
    t3 = a3 - b2
    return t0, t1b, t2, t3


@_jit
def _reduce(z0: Any, z1: Any, z2: Any, z3: Any) -> Any:
    """A 256-bit value modulo p."""
    t0, t1, t2, t3 = _fold(z0, z1, z2, z3)
    t0, t1, t2, t3 = _fold(t0, t1, t2, t3)
    t0, t1, t2, t3 = _fold(t0, t1, t2, t3)
    # Now t < 2^128 + 2^81 < 2p: one conditional subtraction.
    if t2 != _ZERO or t1 > _P1 or (t1 == _P1 and t0 >= _P0):
        r0 = t0 - _P0
        borrow = _ONE if t0 < _P0 else _ZERO
        r1 = t1 - _P1 - borrow
        return r0, r1
    return t0, t1


@_jit
def _mul(a0: Any, a1: Any, b0: Any, b1: Any) -> Any:
    l00, h00 = _mul64(a0, b0)
    l01, h01 = _mul64(a0, b1)
    l10, h10 = _mul64(a1, b0)
    l11, h11 = _mul64(a1, b1)
    z1 = h00 + l01
    c = _ONE if z1 < l01 else _ZERO
    z1b = z1 + l10
    c = c + (_ONE if z1b < l10 else _ZERO)
    z2 = h01 + h10
    d = _ONE if z2 < h10 else _ZERO
    z2b = z2 + l11
    d = d + (_ONE if z2b < l11 else _ZERO)
    z2c = z2b + c
    d = d + (_ONE if z2c < c else _ZERO)
    z3 = h11 + d
    return _reduce(l00, z1b, z2c, z3)


@_jit
def _add(a0: Any, a1: Any, b0: Any, b1: Any) -> Any:
    s0 = a0 + b0
    c = _ONE if s0 < a0 else _ZERO
    s1 = a1 + b1
    c2 = _ONE if s1 < a1 else _ZERO
    s1b = s1 + c
    c2 = c2 | (_ONE if s1b < c else _ZERO)
    if c2 != _ZERO or s1b > _P1 or (s1b == _P1 and s0 >= _P0):
        r0 = s0 - _P0
        borrow = _ONE if s0 < _P0 else _ZERO
        return r0, s1b - _P1 - borrow
    return s0, s1b


@_jit
def _sub(a0: Any, a1: Any, b0: Any, b1: Any) -> Any:
    d0 = a0 - b0
    borrow = _ONE if a0 < b0 else _ZERO
    d1 = a1 - b1
    b2 = _ONE if a1 < b1 else _ZERO
    d1b = d1 - borrow
    b2 = b2 | (_ONE if d1 < borrow else _ZERO)
    if b2 != _ZERO:
        r0 = d0 + _P0
        c = _ONE if r0 < d0 else _ZERO
        return r0, d1b + _P1 + c
    return d0, d1b


@_jit
def _pow(a0: Any, a1: Any, e0: Any, e1: Any) -> Any:
    r0, r1 = _ONE, _ZERO
    for word in (e1, e0):
        for i in range(63, -1, -1):
            r0, r1 = _mul(r0, r1, r0, r1)
            if (word >> np.uint64(i)) & _ONE:
                r0, r1 = _mul(r0, r1, a0, a1)
    return r0, r1


@njit(cache=True)
def _mul_vec(a: U64, b: U64, out: U64) -> None:
    for i in range(a.shape[0]):
        out[i, 0], out[i, 1] = _mul(a[i, 0], a[i, 1], b[i, 0], b[i, 1])


def mul_vec(a: U64, b: U64) -> U64:
    """Element-wise product of ``(n, 2)`` limb arrays (used by the tests)."""
    out = np.empty_like(a)
    _mul_vec(a, b, out)
    return out


@njit(cache=True)
def _query(
    meas: U64,
    proof: U64,
    joint_rand: U64,
    query_rand: U64,
    roots: U64,
    consts: U64,
    kind: int,
    chunk: int,
    calls: int,
    length: int,
    bits: int,
    out: U64,
    status: Any,
) -> None:
    n_rep = meas.shape[0]
    meas_len = meas.shape[1]
    big_p = roots.shape[0] // 2  # P; roots holds the 2P-th roots w^c
    n2 = 2 * big_p
    arity = 2 * chunk
    sinv0, sinv1 = consts[0, 0], consts[0, 1]
    inv_p0, inv_p1 = consts[1, 0], consts[1, 1]
    inv_2p0, inv_2p1 = consts[2, 0], consts[2, 1]
    lw0, lw1 = consts[3, 0], consts[3, 1]  # Multihot: last weight
    pm2_0, pm2_1 = consts[4, 0], consts[4, 1]  # p - 2
    t_index = query_rand.shape[1] - 1

    # -- one batch inversion of (t - w^c) for every report and c < 2P ----------------
    diffs = np.empty((n_rep, n2, 2), dtype=np.uint64)
    prefix = np.empty((n_rep, n2, 2), dtype=np.uint64)
    acc0, acc1 = _ONE, _ZERO
    for b in range(n_rep):
        t0, t1 = query_rand[b, t_index, 0], query_rand[b, t_index, 1]
        status[b] = STATUS_OK
        for c in range(n2):
            d0, d1 = _sub(t0, t1, roots[c, 0], roots[c, 1])
            if d0 == _ZERO and d1 == _ZERO:
                status[b] = STATUS_ROOT_OF_UNITY
        for c in range(n2):
            if status[b] != STATUS_OK:
                d0, d1 = _ONE, _ZERO
            else:
                d0, d1 = _sub(t0, t1, roots[c, 0], roots[c, 1])
            diffs[b, c, 0] = d0
            diffs[b, c, 1] = d1
            prefix[b, c, 0] = acc0
            prefix[b, c, 1] = acc1
            acc0, acc1 = _mul(acc0, acc1, d0, d1)
    inv0, inv1 = _pow(acc0, acc1, pm2_0, pm2_1)
    invs = np.empty((n_rep, n2, 2), dtype=np.uint64)
    for b in range(n_rep - 1, -1, -1):
        for c in range(n2 - 1, -1, -1):
            invs[b, c, 0], invs[b, c, 1] = _mul(inv0, inv1, prefix[b, c, 0], prefix[b, c, 1])
            inv0, inv1 = _mul(inv0, inv1, diffs[b, c, 0], diffs[b, c, 1])

    lag = np.empty((calls + 1, 2), dtype=np.uint64)
    acc = np.empty((chunk, 4), dtype=np.uint64)
    for b in range(n_rep):
        if status[b] != STATUS_OK:
            continue
        t0, t1 = query_rand[b, t_index, 0], query_rand[b, t_index, 1]
        # t^P and t^2P; a test point with t^P = 1 is refused by the spec.
        tp0, tp1 = t0, t1
        m = 1
        while m < big_p:
            tp0, tp1 = _mul(tp0, tp1, tp0, tp1)
            m *= 2
        if tp0 == _ONE and tp1 == _ZERO:
            status[b] = STATUS_ROOT_OF_UNITY
            continue
        t2p0, t2p1 = _mul(tp0, tp1, tp0, tp1)
        # Lagrange weights on the P-th roots w^(2c): (t^P - 1)/P * w^(2c) / (t - w^(2c)).
        s0, s1 = _sub(tp0, tp1, _ONE, _ZERO)
        s0, s1 = _mul(s0, s1, inv_p0, inv_p1)
        for c in range(calls + 1):
            w0, w1 = _mul(s0, s1, roots[2 * c, 0], roots[2 * c, 1])
            lag[c, 0], lag[c, 1] = _mul(w0, w1, invs[b, 2 * c, 0], invs[b, 2 * c, 1])

        # Wires: seed, then input k of each call, zero beyond the calls.
        for j in range(chunk):
            acc[j, 0], acc[j, 1] = _mul(
                lag[0, 0], lag[0, 1], proof[b, 2 * j, 0], proof[b, 2 * j, 1]
            )
            acc[j, 2], acc[j, 3] = _mul(
                lag[0, 0], lag[0, 1], proof[b, 2 * j + 1, 0], proof[b, 2 * j + 1, 1]
            )
        for i in range(calls):
            r0, r1 = joint_rand[b, i, 0], joint_rand[b, i, 1]
            l0, l1 = lag[i + 1, 0], lag[i + 1, 1]
            lr0, lr1 = _mul(l0, l1, r0, r1)  # L_(i+1)(t) * r_i^(j+1), j = 0
            for j in range(chunk):
                idx = i * chunk + j
                if idx < meas_len:
                    x0, x1 = meas[b, idx, 0], meas[b, idx, 1]
                else:
                    x0, x1 = _ZERO, _ZERO
                a0, a1 = _mul(lr0, lr1, x0, x1)
                acc[j, 0], acc[j, 1] = _add(acc[j, 0], acc[j, 1], a0, a1)
                xs0, xs1 = _sub(x0, x1, sinv0, sinv1)
                a0, a1 = _mul(xs0, xs1, l0, l1)
                acc[j, 2], acc[j, 3] = _add(acc[j, 2], acc[j, 3], a0, a1)
                lr0, lr1 = _mul(lr0, lr1, r0, r1)
        for j in range(chunk):
            out[b, 1 + 2 * j, 0], out[b, 1 + 2 * j, 1] = acc[j, 0], acc[j, 1]
            out[b, 2 + 2 * j, 0], out[b, 2 + 2 * j, 1] = acc[j, 2], acc[j, 3]
        base = arity

        # Gadget polynomial: 2P - 1 values at the 2P-th roots, extended to 2P.
        ext0, ext1 = _ZERO, _ZERO
        for c in range(n2 - 1):
            a0, a1 = _mul(proof[b, base + c, 0], proof[b, base + c, 1], roots[c, 0], roots[c, 1])
            ext0, ext1 = _add(ext0, ext1, a0, a1)
        ext0, ext1 = _mul(ext0, ext1, roots[1, 0], roots[1, 1])
        ext0, ext1 = _sub(_ZERO, _ZERO, ext0, ext1)
        s0, s1 = _sub(t2p0, t2p1, _ONE, _ZERO)
        s0, s1 = _mul(s0, s1, inv_2p0, inv_2p1)
        g0, g1 = _ZERO, _ZERO
        for c in range(n2):
            if c < n2 - 1:
                y0, y1 = proof[b, base + c, 0], proof[b, base + c, 1]
            else:
                y0, y1 = ext0, ext1
            w0, w1 = _mul(roots[c, 0], roots[c, 1], invs[b, c, 0], invs[b, c, 1])
            a0, a1 = _mul(w0, w1, y0, y1)
            g0, g1 = _add(g0, g1, a0, a1)
        g0, g1 = _mul(g0, g1, s0, s1)
        out[b, 1 + arity, 0], out[b, 1 + arity, 1] = g0, g1

        # Circuit output: the range check is the sum of the gadget outputs.
        rc0, rc1 = _ZERO, _ZERO
        for i in range(calls):
            rc0, rc1 = _add(
                rc0, rc1, proof[b, base + 2 * (i + 1), 0], proof[b, base + 2 * (i + 1), 1]
            )
        if kind == KIND_SUMVEC:
            out[b, 0, 0], out[b, 0, 1] = rc0, rc1
            continue
        chk0, chk1 = _ZERO, _ZERO
        for i in range(length):
            chk0, chk1 = _add(chk0, chk1, meas[b, i, 0], meas[b, i, 1])
        if kind == KIND_HISTOGRAM:
            chk0, chk1 = _sub(chk0, chk1, sinv0, sinv1)
        else:
            # weight - (sum_k 2^k bit_k + last_weight * last_bit)
            pw0, pw1 = _ONE, _ZERO
            for k in range(bits - 1):
                a0, a1 = _mul(pw0, pw1, meas[b, length + k, 0], meas[b, length + k, 1])
                chk0, chk1 = _sub(chk0, chk1, a0, a1)
                pw0, pw1 = _add(pw0, pw1, pw0, pw1)
            a0, a1 = _mul(lw0, lw1, meas[b, length + bits - 1, 0], meas[b, length + bits - 1, 1])
            chk0, chk1 = _sub(chk0, chk1, a0, a1)
        q0, q1 = _mul(query_rand[b, 0, 0], query_rand[b, 0, 1], rc0, rc1)
        a0, a1 = _mul(query_rand[b, 1, 0], query_rand[b, 1, 1], chk0, chk1)
        out[b, 0, 0], out[b, 0, 1] = _add(q0, q1, a0, a1)


def limbs(values: list[int]) -> U64:
    """Python ints in ``[0, 2^128)`` as an ``(n, 2)`` limb array."""
    mask = (1 << 64) - 1
    flat = [v for x in values for v in (x & mask, x >> 64)]
    return np.array(flat, dtype=np.uint64).reshape(-1, 2)


def query_range_checked(
    meas: U64,
    proof: U64,
    joint_rand: U64,
    query_rand: U64,
    *,
    roots: U64,
    consts: U64,
    kind: int,
    chunk: int,
    calls: int,
    length: int,
    bits: int,
) -> tuple[U64, npt.NDArray[np.int64]]:
    """Verifier shares ``(n, 2 chunk + 2, 2)`` and per-report status codes."""
    n = meas.shape[0]
    out = np.zeros((n, 2 * chunk + 2, 2), dtype=np.uint64)
    status = np.zeros(n, dtype=np.int64)
    if n:
        _query(
            meas,
            proof,
            joint_rand,
            query_rand,
            roots,
            consts,
            kind,
            chunk,
            calls,
            length,
            bits,
            out,
            status,
        )
    return out, status


@njit(cache=True)
def _decide(verifier_shares: U64, out: Any) -> None:
    n_rep, n_shares, length = (
        verifier_shares.shape[0],
        verifier_shares.shape[1],
        verifier_shares.shape[2],
    )
    total = np.empty((length, 2), dtype=np.uint64)
    for b in range(n_rep):
        for k in range(length):
            s0, s1 = _ZERO, _ZERO
            for a in range(n_shares):
                s0, s1 = _add(s0, s1, verifier_shares[b, a, k, 0], verifier_shares[b, a, k, 1])
            total[k, 0], total[k, 1] = s0, s1
        # [v, wire checks (2 chunk), gadget check]: v = 0 and sum_j w_2j w_2j+1 = check.
        g0, g1 = _ZERO, _ZERO
        for j in range(1, length - 1, 2):
            a0, a1 = _mul(total[j, 0], total[j, 1], total[j + 1, 0], total[j + 1, 1])
            g0, g1 = _add(g0, g1, a0, a1)
        ok = total[0, 0] == _ZERO and total[0, 1] == _ZERO
        out[b] = ok and g0 == total[length - 1, 0] and g1 == total[length - 1, 1]


def decide_range_checked(verifier_shares: U64) -> npt.NDArray[np.bool_]:
    """FLP decision on the sum of the aggregators' verifier shares, per report.

    ``verifier_shares`` is ``(reports, aggregators, 2 chunk + 2, 2)`` limbs of canonical
    elements; the circuit's one gadget is ``ParallelSum(Mul(), chunk)``.
    """
    out = np.zeros(verifier_shares.shape[0], dtype=np.bool_)
    if out.size:
        _decide(verifier_shares, out)
    return out
