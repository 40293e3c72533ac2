"""Prio3 verification of a whole aggregation job at once (draft-irtf-cfrg-vdaf-18, §7).

The compiled path of :meth:`Prio3.verify_init_batch
<tessera.crypto.prio3.Prio3.verify_init_batch>` and
:meth:`~tessera.crypto.prio3.Prio3.verifier_messages_batch`: for the one-proof
Field128 range-check circuits (SumVec, Histogram, MultihotCountVec with
TurboSHAKE128) the FLP query and decision run over the batch in the kernels of
:mod:`tessera.crypto.flp_batch`; any report the kernels cannot decide exactly goes
through the per-report spec code of :class:`~tessera.crypto.prio3.Prio3`, so the
results are always the spec's. Other circuits go report by report.

Imported on first use: loading it loads numba.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from tessera.crypto import flp_batch
from tessera.crypto.field import Field128, next_power_of_2
from tessera.crypto.flp import Histogram, MultihotCountVec, ParallelSum, SumVec
from tessera.crypto.prio3 import (
    USAGE_JOINT_RAND_PART,
    USAGE_JOINT_RAND_SEED,
    USAGE_JOINT_RANDOMNESS,
    USAGE_MEAS_SHARE,
    USAGE_PROOF_SHARE,
    USAGE_QUERY_RANDOMNESS,
    Prio3,
    Prio3VerifyState,
)
from tessera.crypto.xof import XofTurboShake128
from tessera.errors import DecodeError, InvalidProof

#: High limb of the Field128 modulus: an element whose high limb is below it is canonical.
_F128_HI = Field128.MODULUS >> 64


class RangeCheckBatch:
    """:meth:`Prio3.verify_init_batch` for one-proof Field128 range-check circuits.

    The XOF work stays per report (it is C code); shares are kept as the bytes they
    arrive in and viewed as ``uint64`` limbs, and the FLP query runs over the whole
    batch in :func:`tessera.crypto.flp_batch.query_range_checked`. A report with any
    value that might be out of range, or a test point at a root of unity, is redone by
    the generic :meth:`Prio3.verify_init`, so results are always identical.
    """

    def __init__(self, vdaf: Prio3[Any, Any], kind: int, length: int, bits: int, lw: int) -> None:
        self.vdaf = vdaf
        self.kind = kind
        self.length = length
        self.bits = bits
        valid = vdaf.flp.valid
        gadget = valid.GADGETS[0]
        assert isinstance(gadget, ParallelSum)
        self.chunk = gadget.count
        self.calls = valid.GADGET_CALLS[0]
        big_p = next_power_of_2(1 + self.calls)
        p = Field128.MODULUS
        w = Field128.root(2 * big_p)
        self.roots = flp_batch.limbs([pow(w, c, p) for c in range(2 * big_p)])
        self.consts = flp_batch.limbs(
            [
                pow(vdaf.SHARES, -1, p),
                pow(big_p, -1, p),
                pow(2 * big_p, -1, p),
                lw % p,
                p - 2,
            ]
        )

    @staticmethod
    def of(vdaf: Prio3[Any, Any]) -> RangeCheckBatch | None:
        """The batch verifier for ``vdaf``, or ``None`` if its circuit has no fast path."""
        valid = vdaf.flp.valid
        if vdaf.field is not Field128 or vdaf.PROOFS != 1 or vdaf.xof is not XofTurboShake128:
            return None
        if isinstance(valid, Histogram):
            return RangeCheckBatch(vdaf, flp_batch.KIND_HISTOGRAM, valid.length, 0, 0)
        if isinstance(valid, SumVec):
            return RangeCheckBatch(vdaf, flp_batch.KIND_SUMVEC, 0, 0, 0)
        if isinstance(valid, MultihotCountVec):
            return RangeCheckBatch(
                vdaf,
                flp_batch.KIND_MULTIHOT,
                valid.length,
                valid.bits_for_weight,
                valid.last_weight,
            )
        return None

    def warm_up(self) -> None:
        """Run the kernel once on an all-zero report (loads or compiles it)."""
        flp = self.vdaf.flp
        self.query(
            np.zeros(
                (1, flp.MEAS_LEN + flp.PROOF_LEN + flp.JOINT_RAND_LEN + flp.QUERY_RAND_LEN, 2),
                dtype=np.uint64,
            )
        )
        flp_batch.decide_range_checked(
            np.zeros((1, self.vdaf.SHARES, flp.VERIFIER_LEN, 2), dtype=np.uint64)
        )

    def run(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonces: Sequence[bytes],
        public_shares: Sequence[bytes],
        input_shares: Sequence[bytes],
    ) -> list[tuple[Prio3VerifyState, bytes] | Exception]:
        vdaf = self.vdaf
        flp = vdaf.flp
        xof = vdaf.xof
        seed_size = xof.SEED_SIZE
        n = len(nonces)
        meas_bytes = flp.MEAS_LEN * 16
        proof_bytes = flp.PROOF_LEN * 16
        jr_bytes = flp.JOINT_RAND_LEN * 16
        qr_bytes = flp.QUERY_RAND_LEN * 16
        dst_meas = vdaf.domain_separation_tag(USAGE_MEAS_SHARE, ctx)
        dst_proof = vdaf.domain_separation_tag(USAGE_PROOF_SHARE, ctx)
        dst_part = vdaf.domain_separation_tag(USAGE_JOINT_RAND_PART, ctx)
        dst_seed = vdaf.domain_separation_tag(USAGE_JOINT_RAND_SEED, ctx)
        dst_jr = vdaf.domain_separation_tag(USAGE_JOINT_RANDOMNESS, ctx)
        dst_qr = vdaf.domain_separation_tag(USAGE_QUERY_RANDOMNESS, ctx)
        zero_seed = bytes(seed_size)
        one_proof = bytes([vdaf.PROOFS])
        results: list[tuple[Prio3VerifyState, bytes] | Exception | None] = [None] * n
        fast: list[int] = []
        bufs: list[bytes] = []
        parts: list[bytes] = []
        seeds: list[bytes] = []
        for b in range(n):
            nonce, public, share = nonces[b], public_shares[b], input_shares[b]
            if len(nonce) != vdaf.NONCE_SIZE or len(public) != seed_size * vdaf.SHARES:
                results[b] = vdaf._verify_init_encoded(
                    verify_key, ctx, agg_id, nonce, public, share
                )
                continue
            if agg_id == 0:
                if len(share) != meas_bytes + proof_bytes + seed_size:
                    results[b] = DecodeError("incorrect leader input share length")
                    continue
                meas = share[:meas_bytes]
                proof = share[meas_bytes : meas_bytes + proof_bytes]
            else:
                if len(share) != 2 * seed_size:
                    results[b] = DecodeError("incorrect helper input share length")
                    continue
                k_share = share[:seed_size]
                meas = xof(k_share, dst_meas, bytes([agg_id])).next(meas_bytes)
                proof = xof(k_share, dst_proof, bytes([vdaf.PROOFS, agg_id])).next(proof_bytes)
            k_blind = share[-seed_size:]
            k_part = xof(k_blind, dst_part, bytes([agg_id]) + nonce + meas).next(seed_size)
            k_corrected = xof(
                zero_seed,
                dst_seed,
                public[: agg_id * seed_size] + k_part + public[(agg_id + 1) * seed_size :],
            ).next(seed_size)
            jr = xof(k_corrected, dst_jr, one_proof).next(jr_bytes)
            qr = xof(verify_key, dst_qr, one_proof + nonce).next(qr_bytes)
            fast.append(b)
            bufs.append(meas + proof + jr + qr)
            parts.append(k_part)
            seeds.append(k_corrected)
        if fast:
            rows = np.frombuffer(b"".join(bufs), dtype="<u8").reshape(len(fast), -1, 2)
            # Any limb pair that might be >= p (XOF rejection, or a malformed leader share):
            # the generic code decides. Probability about 2^-59 per element otherwise.
            suspicious = cast("list[bool]", (rows[:, :, 1] >= _F128_HI).any(axis=1).tolist())
            verifiers, status = self.query(rows)
            m = flp.MEAS_LEN
            meas_ints = limbs_to_ints(rows[:, :m])
            encoded = verifiers.astype("<u8", copy=False)
            for k, b in enumerate(fast):
                if suspicious[k] or status[k] != flp_batch.STATUS_OK:
                    results[b] = vdaf._verify_init_encoded(
                        verify_key, ctx, agg_id, nonces[b], public_shares[b], input_shares[b]
                    )
                    continue
                out_share = flp.truncate(meas_ints[k * m : (k + 1) * m])
                results[b] = ((out_share, seeds[k]), encoded[k].tobytes() + parts[k])
        return cast("list[tuple[Prio3VerifyState, bytes] | Exception]", results)

    def messages(
        self, ctx: bytes, verifier_shares: Sequence[Sequence[bytes]]
    ) -> list[bytes | Exception]:
        """:meth:`Prio3.verifier_messages_batch` with the decisions in one kernel call."""
        vdaf = self.vdaf
        length = vdaf.flp.VERIFIER_LEN
        size = length * 16
        seed_size = vdaf.xof.SEED_SIZE
        results: list[bytes | Exception | None] = [None] * len(verifier_shares)
        fast: list[int] = []
        bufs: list[bytes] = []
        parts: list[bytes] = []
        for b, shares in enumerate(verifier_shares):
            if len(shares) != vdaf.SHARES or any(len(s) != size + seed_size for s in shares):
                results[b] = vdaf._message_encoded(ctx, shares)
                continue
            fast.append(b)
            bufs += [s[:size] for s in shares]
            parts.append(b"".join(s[size:] for s in shares))
        if fast:
            arr = np.frombuffer(b"".join(bufs), dtype="<u8").reshape(
                len(fast), vdaf.SHARES, length, 2
            )
            suspicious = cast("list[bool]", (arr[..., 1] >= _F128_HI).any(axis=(1, 2)).tolist())
            accepted = cast("list[bool]", flp_batch.decide_range_checked(arr).tolist())
            dst = vdaf.domain_separation_tag(USAGE_JOINT_RAND_SEED, ctx)
            zero_seed = bytes(seed_size)
            for k, b in enumerate(fast):
                if suspicious[k]:
                    results[b] = vdaf._message_encoded(ctx, verifier_shares[b])
                elif not accepted[k]:
                    results[b] = InvalidProof("proof verifier check failed")
                else:
                    results[b] = vdaf.xof.derive_seed(zero_seed, dst, parts[k])
        return cast("list[bytes | Exception]", results)

    def query(self, rows: Any) -> tuple[Any, Any]:
        """The kernel on ``(reports, meas | proof | joint rand | query rand, 2)`` limbs."""
        flp = self.vdaf.flp
        m, pl, jl = flp.MEAS_LEN, flp.PROOF_LEN, flp.JOINT_RAND_LEN
        out: tuple[Any, Any] = flp_batch.query_range_checked(
            np.ascontiguousarray(rows[:, :m]),
            np.ascontiguousarray(rows[:, m : m + pl]),
            np.ascontiguousarray(rows[:, m + pl : m + pl + jl]),
            np.ascontiguousarray(rows[:, m + pl + jl :]),
            roots=self.roots,
            consts=self.consts,
            kind=self.kind,
            chunk=self.chunk,
            calls=self.calls,
            length=self.length,
            bits=self.bits,
        )
        return out


def limbs_to_ints(arr: Any) -> list[int]:
    """Field128 values from ``(..., 2)`` limbs, flattened."""
    flat: list[int] = np.ascontiguousarray(arr).reshape(-1).tolist()
    return [lo | (hi << 64) for lo, hi in zip(flat[0::2], flat[1::2], strict=True)]
