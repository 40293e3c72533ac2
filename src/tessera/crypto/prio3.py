"""Prio3 (draft-irtf-cfrg-vdaf-18, §7).

The spec's Prio3, report by report. Verifying a whole aggregation job at once
(:meth:`Prio3.verify_init_batch`, compiled kernels for the Field128 range-check
circuits) lives in :mod:`tessera.crypto.prio3_batch`, imported on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

from tessera.crypto.field import Field64, Field128, NttField
from tessera.crypto.flp import (
    Count,
    FixedPointBoundedL2VecSum,
    FlpBBCGGI19,
    Histogram,
    MultihotCountVec,
    PolyEvalTest,
    Sum,
    SumVec,
    Valid,
)
from tessera.crypto.vdaf import Vdaf
from tessera.crypto.xof import Xof, XofTurboShake128
from tessera.errors import DecodeError, InvalidProof

if TYPE_CHECKING:
    from tessera.crypto.prio3_batch import RangeCheckBatch

USAGE_MEAS_SHARE = 1
USAGE_PROOF_SHARE = 2
USAGE_JOINT_RANDOMNESS = 3
USAGE_PROVE_RANDOMNESS = 4
USAGE_QUERY_RANDOMNESS = 5
USAGE_JOINT_RAND_SEED = 6
USAGE_JOINT_RAND_PART = 7

Measurement = TypeVar("Measurement")
AggResult = TypeVar("AggResult")


@dataclass(frozen=True)
class Prio3LeaderShare:
    """The leader's input share: explicit measurement and proof shares."""

    meas_share: list[int]
    proofs_share: list[int]
    blind: bytes | None


@dataclass(frozen=True)
class Prio3HelperShare:
    """A helper's input share: a seed expanding to its measurement and proof shares."""

    share_seed: bytes
    blind: bytes | None


Prio3InputShare: TypeAlias = Prio3LeaderShare | Prio3HelperShare
Prio3PublicShare: TypeAlias = list[bytes] | None
#: ``(output share, corrected joint randomness seed)``
Prio3VerifyState: TypeAlias = tuple[list[int], bytes | None]
#: ``(verifiers share, joint randomness part)``
Prio3VerifierShare: TypeAlias = tuple[list[int], bytes | None]
Prio3VerifierMessage: TypeAlias = bytes | None


class Prio3(
    Generic[Measurement, AggResult],
    Vdaf[
        Measurement,
        None,
        Prio3PublicShare,
        Prio3InputShare,
        list[int],
        list[int],
        AggResult,
        Prio3VerifyState,
        Prio3VerifierShare,
        Prio3VerifierMessage,
    ],
):
    """Prio3 for a validity circuit ``valid`` (§7.2)."""

    NONCE_SIZE = 16
    ROUNDS = 1
    xof: type[Xof] = XofTurboShake128

    def __init__(
        self,
        shares: int,
        valid: Valid[Measurement, AggResult],
        vdaf_id: int,
        proofs: int = 1,
        xof: type[Xof] = XofTurboShake128,
    ) -> None:
        if not 2 <= shares < 256:
            raise ValueError("invalid number of shares")
        if not 1 <= proofs < 256:
            raise ValueError("invalid number of proofs")
        self.ID = vdaf_id
        self.SHARES = shares
        self.PROOFS = proofs
        self.xof = xof
        self.flp = FlpBBCGGI19(valid)
        self.field: type[NttField] = valid.field
        self.VERIFY_KEY_SIZE = xof.SEED_SIZE
        seeds = shares + (shares if self.flp.JOINT_RAND_LEN > 0 else 0)
        self.RAND_SIZE = seeds * xof.SEED_SIZE

    @property
    def uses_joint_rand(self) -> bool:
        """Whether the circuit takes joint randomness."""
        return self.flp.JOINT_RAND_LEN > 0

    # -- sharding -------------------------------------------------------------------

    def shard(
        self, ctx: bytes, measurement: Measurement, nonce: bytes, rand: bytes
    ) -> tuple[Prio3PublicShare, list[Prio3InputShare]]:
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if len(rand) != self.RAND_SIZE:
            raise ValueError("incorrect size of random bytes argument")
        size = self.xof.SEED_SIZE
        seeds = [rand[i : i + size] for i in range(0, self.RAND_SIZE, size)]
        meas = self.flp.encode(measurement)
        if self.uses_joint_rand:
            return self.shard_with_joint_rand(ctx, meas, nonce, seeds)
        return self.shard_without_joint_rand(ctx, meas, seeds)

    def shard_without_joint_rand(
        self, ctx: bytes, meas: list[int], seeds: list[bytes]
    ) -> tuple[Prio3PublicShare, list[Prio3InputShare]]:
        """Sharding for circuits without joint randomness."""
        helper_seeds = seeds[: self.SHARES - 1]
        k_prove = seeds[self.SHARES - 1]
        field = self.field
        leader_meas_share = meas
        for j, k_share in enumerate(helper_seeds):
            leader_meas_share = field.vec_sub(
                leader_meas_share, self.helper_meas_share(ctx, j + 1, k_share)
            )
        prove_rands = self.prove_rands(ctx, k_prove)
        proofs: list[int] = []
        n = self.flp.PROVE_RAND_LEN
        for i in range(self.PROOFS):
            proofs += self.flp.prove(meas, prove_rands[i * n : (i + 1) * n], [])
        for j, k_share in enumerate(helper_seeds):
            proofs = field.vec_sub(proofs, self.helper_proofs_share(ctx, j + 1, k_share))
        shares: list[Prio3InputShare] = [Prio3LeaderShare(leader_meas_share, proofs, None)]
        shares += [Prio3HelperShare(k, None) for k in helper_seeds]
        return None, shares

    def shard_with_joint_rand(
        self, ctx: bytes, meas: list[int], nonce: bytes, seeds: list[bytes]
    ) -> tuple[Prio3PublicShare, list[Prio3InputShare]]:
        """Sharding for circuits with joint randomness."""
        h = self.SHARES - 1
        helper_seeds = seeds[0 : 2 * h : 2]
        helper_blinds = seeds[1 : 2 * h : 2]
        k_leader_blind, k_prove = seeds[2 * h], seeds[2 * h + 1]
        field = self.field
        leader_meas_share = meas
        parts: list[bytes] = []
        for j in range(h):
            helper_meas = self.helper_meas_share(ctx, j + 1, helper_seeds[j])
            leader_meas_share = field.vec_sub(leader_meas_share, helper_meas)
            parts.append(self.joint_rand_part(ctx, j + 1, helper_blinds[j], helper_meas, nonce))
        parts.insert(0, self.joint_rand_part(ctx, 0, k_leader_blind, leader_meas_share, nonce))

        prove_rands = self.prove_rands(ctx, k_prove)
        joint_rands = self.joint_rands(ctx, self.joint_rand_seed(ctx, parts))
        n, m = self.flp.PROVE_RAND_LEN, self.flp.JOINT_RAND_LEN
        proofs: list[int] = []
        for i in range(self.PROOFS):
            proofs += self.flp.prove(
                meas, prove_rands[i * n : (i + 1) * n], joint_rands[i * m : (i + 1) * m]
            )
        for j in range(h):
            proofs = field.vec_sub(proofs, self.helper_proofs_share(ctx, j + 1, helper_seeds[j]))
        shares: list[Prio3InputShare] = [
            Prio3LeaderShare(leader_meas_share, proofs, k_leader_blind)
        ]
        shares += [Prio3HelperShare(helper_seeds[j], helper_blinds[j]) for j in range(h)]
        return parts, shares

    # -- verification ---------------------------------------------------------------

    def is_valid(self, agg_param: None, previous_agg_params: list[None]) -> bool:
        return len(previous_agg_params) == 0

    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        agg_param: None,
        nonce: bytes,
        public_share: Prio3PublicShare,
        input_share: Prio3InputShare,
    ) -> tuple[Prio3VerifyState, Prio3VerifierShare]:
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise ValueError("incorrect verify key size")
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if not 0 <= agg_id < self.SHARES:
            raise ValueError("aggregator id out of range")
        meas_share, proofs_share, k_blind = self.expand_input_share(ctx, agg_id, input_share)
        out_share = self.flp.truncate(meas_share)

        joint_rands: list[int] = []
        k_corrected: bytes | None = None
        k_part: bytes | None = None
        if self.uses_joint_rand:
            if k_blind is None or public_share is None or len(public_share) != self.SHARES:
                raise DecodeError("missing joint randomness inputs")
            k_part = self.joint_rand_part(ctx, agg_id, k_blind, meas_share, nonce)
            parts = list(public_share)
            parts[agg_id] = k_part
            k_corrected = self.joint_rand_seed(ctx, parts)
            joint_rands = self.joint_rands(ctx, k_corrected)

        query_rands = self.query_rands(verify_key, ctx, nonce)
        flp = self.flp
        verifiers: list[int] = []
        for i in range(self.PROOFS):
            proof = proofs_share[i * flp.PROOF_LEN : (i + 1) * flp.PROOF_LEN]
            query_rand = query_rands[i * flp.QUERY_RAND_LEN : (i + 1) * flp.QUERY_RAND_LEN]
            joint_rand = joint_rands[i * flp.JOINT_RAND_LEN : (i + 1) * flp.JOINT_RAND_LEN]
            verifiers += flp.query(meas_share, proof, query_rand, joint_rand, self.SHARES)
        return (out_share, k_corrected), (verifiers, k_part)

    def _verify_init_encoded(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonce: bytes,
        public_share: bytes,
        input_share: bytes,
    ) -> tuple[Prio3VerifyState, bytes] | Exception:
        try:
            state, verifier_share = self.verify_init(
                verify_key,
                ctx,
                agg_id,
                None,
                nonce,
                self.decode_public_share(public_share),
                self.decode_input_share(agg_id, input_share),
            )
        except (ValueError, InvalidProof) as exc:
            return exc
        return state, self.encode_verifier_share(verifier_share)

    def verifier_shares_to_message(
        self, ctx: bytes, agg_param: None, verifier_shares: Sequence[Prio3VerifierShare]
    ) -> Prio3VerifierMessage:
        if len(verifier_shares) != self.SHARES:
            raise ValueError("incorrect number of verifier shares")
        field = self.field
        flp = self.flp
        verifiers = [0] * (flp.VERIFIER_LEN * self.PROOFS)
        parts: list[bytes] = []
        for share, part in verifier_shares:
            verifiers = field.vec_add(verifiers, share)
            if self.uses_joint_rand:
                if part is None:
                    raise DecodeError("missing joint randomness part")
                parts.append(part)
        for i in range(self.PROOFS):
            if not flp.decide(verifiers[i * flp.VERIFIER_LEN : (i + 1) * flp.VERIFIER_LEN]):
                raise InvalidProof("proof verifier check failed")
        if self.uses_joint_rand:
            return self.joint_rand_seed(ctx, parts)
        return None

    def _message_encoded(self, ctx: bytes, verifier_shares: Sequence[bytes]) -> bytes | Exception:
        try:
            # Prio3 decodes verifier shares without looking at the state.
            decoded = [self.decode_verifier_share(([], None), s) for s in verifier_shares]
            message = self.verifier_shares_to_message(ctx, None, decoded)
        except (ValueError, InvalidProof) as exc:
            return exc
        return self.encode_verifier_message(message)

    def verify_next(
        self, ctx: bytes, state: Prio3VerifyState, verifier_message: Prio3VerifierMessage
    ) -> tuple[Prio3VerifyState, Prio3VerifierShare] | list[int]:
        out_share, k_corrected = state
        if verifier_message != k_corrected:
            raise InvalidProof("joint randomness check failed")
        return out_share

    # -- many reports at once (compiled path: tessera.crypto.prio3_batch) --------------

    def verify_init_batch(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        nonces: Sequence[bytes],
        public_shares: Sequence[bytes],
        input_shares: Sequence[bytes],
    ) -> list[tuple[Prio3VerifyState, bytes] | Exception]:
        """:meth:`verify_init` for many reports from their *encoded* shares.

        Returns, per report, the verification state and the encoded verifier share, or
        the exception :meth:`verify_init` would raise (``DecodeError``, ``InvalidProof``
        or ``ValueError``). The results are exactly those of :meth:`verify_init`; the
        Field128 range-check circuits (SumVec, Histogram, MultihotCountVec with one
        proof) run batched in compiled code (:mod:`tessera.crypto.prio3_batch`).
        """
        if not len(nonces) == len(public_shares) == len(input_shares):
            raise ValueError("mismatched batch sizes")
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise ValueError("incorrect verify key size")
        if not 0 <= agg_id < self.SHARES:
            raise ValueError("aggregator id out of range")
        batch = self._range_check_batch
        if batch is None:
            return [
                self._verify_init_encoded(verify_key, ctx, agg_id, n, p, i)
                for n, p, i in zip(nonces, public_shares, input_shares, strict=True)
            ]
        return batch.run(verify_key, ctx, agg_id, nonces, public_shares, input_shares)

    def verifier_messages_batch(
        self, ctx: bytes, verifier_shares: Sequence[Sequence[bytes]]
    ) -> list[bytes | Exception]:
        """:meth:`verifier_shares_to_message` for many reports from their *encoded* shares.

        Returns, per report, the encoded verifier message or the exception the per-report
        path raises; the FLP decisions of the Field128 range-check circuits run batched.
        """
        batch = self._range_check_batch
        if batch is None:
            return [self._message_encoded(ctx, shares) for shares in verifier_shares]
        return batch.messages(ctx, verifier_shares)

    def warm_up_batch(self) -> None:
        """Load the compiled kernels of :meth:`verify_init_batch` now rather than on first use.

        Numba compiles them once per machine (cached next to the module); loading still
        takes about a second, which a server should spend before taking traffic.
        """
        batch = self._range_check_batch
        if batch is not None:
            batch.warm_up()

    @functools.cached_property
    def _range_check_batch(self) -> RangeCheckBatch | None:
        """The compiled batch path of this circuit, or ``None`` (report by report)."""
        from tessera.crypto.prio3_batch import RangeCheckBatch  # loads numba

        return RangeCheckBatch.of(self)

    # -- aggregation ----------------------------------------------------------------

    def agg_init(self, agg_param: None) -> list[int]:
        return [0] * self.flp.OUTPUT_LEN

    def agg_update(self, agg_param: None, agg_share: list[int], out_share: list[int]) -> list[int]:
        return self.field.vec_add(agg_share, out_share)

    def aggregate(self, agg_param: None, out_shares: Sequence[list[int]]) -> list[int]:
        """Sum of the output shares, reduced once per column instead of once per report."""
        if not out_shares:
            return self.agg_init(agg_param)
        p = self.field.MODULUS
        length = self.flp.OUTPUT_LEN
        if any(len(s) != length for s in out_shares):
            raise ValueError("mismatched vector sizes")
        return [sum(col) % p for col in zip(*out_shares, strict=True)]

    def merge(self, agg_param: None, agg_shares: Sequence[list[int]]) -> list[int]:
        agg = self.agg_init(agg_param)
        for share in agg_shares:
            agg = self.field.vec_add(agg, share)
        return agg

    def unshard(
        self, agg_param: None, agg_shares: Sequence[list[int]], num_measurements: int
    ) -> AggResult:
        return self.flp.decode(self.merge(agg_param, agg_shares), num_measurements)

    # -- auxiliary functions (§7.2.6) -----------------------------------------------

    def helper_meas_share(self, ctx: bytes, agg_id: int, k_share: bytes) -> list[int]:
        """Measurement share of helper ``agg_id``."""
        return self.xof.expand_into_vec(
            self.field,
            k_share,
            self.domain_separation_tag(USAGE_MEAS_SHARE, ctx),
            bytes([agg_id]),
            self.flp.MEAS_LEN,
        )

    def helper_proofs_share(self, ctx: bytes, agg_id: int, k_share: bytes) -> list[int]:
        """Proof shares of helper ``agg_id``."""
        return self.xof.expand_into_vec(
            self.field,
            k_share,
            self.domain_separation_tag(USAGE_PROOF_SHARE, ctx),
            bytes([self.PROOFS, agg_id]),
            self.flp.PROOF_LEN * self.PROOFS,
        )

    def expand_input_share(
        self, ctx: bytes, agg_id: int, input_share: Prio3InputShare
    ) -> tuple[list[int], list[int], bytes | None]:
        """Measurement share, proof shares and blind of an input share."""
        if agg_id == 0:
            if not isinstance(input_share, Prio3LeaderShare):
                raise ValueError("leader needs a leader input share")
            return input_share.meas_share, input_share.proofs_share, input_share.blind
        if not isinstance(input_share, Prio3HelperShare):
            raise ValueError("helper needs a helper input share")
        return (
            self.helper_meas_share(ctx, agg_id, input_share.share_seed),
            self.helper_proofs_share(ctx, agg_id, input_share.share_seed),
            input_share.blind,
        )

    def prove_rands(self, ctx: bytes, k_prove: bytes) -> list[int]:
        """Prover randomness for all proofs."""
        return self.xof.expand_into_vec(
            self.field,
            k_prove,
            self.domain_separation_tag(USAGE_PROVE_RANDOMNESS, ctx),
            bytes([self.PROOFS]),
            self.flp.PROVE_RAND_LEN * self.PROOFS,
        )

    def query_rands(self, verify_key: bytes, ctx: bytes, nonce: bytes) -> list[int]:
        """Query randomness for all proofs."""
        return self.xof.expand_into_vec(
            self.field,
            verify_key,
            self.domain_separation_tag(USAGE_QUERY_RANDOMNESS, ctx),
            bytes([self.PROOFS]) + nonce,
            self.flp.QUERY_RAND_LEN * self.PROOFS,
        )

    def joint_rand_part(
        self, ctx: bytes, agg_id: int, k_blind: bytes, meas_share: list[int], nonce: bytes
    ) -> bytes:
        """Joint randomness part of aggregator ``agg_id``."""
        return self.xof.derive_seed(
            k_blind,
            self.domain_separation_tag(USAGE_JOINT_RAND_PART, ctx),
            bytes([agg_id]) + nonce + self.field.encode_vec(meas_share),
        )

    def joint_rand_seed(self, ctx: bytes, parts: Sequence[bytes]) -> bytes:
        """Joint randomness seed from all parts."""
        return self.xof.derive_seed(
            bytes(self.xof.SEED_SIZE),
            self.domain_separation_tag(USAGE_JOINT_RAND_SEED, ctx),
            b"".join(parts),
        )

    def joint_rands(self, ctx: bytes, k_joint_rand_seed: bytes) -> list[int]:
        """Joint randomness for all proofs."""
        return self.xof.expand_into_vec(
            self.field,
            k_joint_rand_seed,
            self.domain_separation_tag(USAGE_JOINT_RANDOMNESS, ctx),
            bytes([self.PROOFS]),
            self.flp.JOINT_RAND_LEN * self.PROOFS,
        )

    # -- encodings (§7.2.7) ---------------------------------------------------------

    def _take(self, encoded: bytes, n: int) -> tuple[bytes, bytes]:
        if len(encoded) < n:
            raise DecodeError("input too short")
        return encoded[:n], encoded[n:]

    def encode_public_share(self, public_share: Prio3PublicShare) -> bytes:
        return b"".join(public_share) if public_share is not None else b""

    def decode_public_share(self, encoded: bytes) -> Prio3PublicShare:
        if not self.uses_joint_rand:
            if encoded:
                raise DecodeError("unexpected public share")
            return None
        size = self.xof.SEED_SIZE
        if len(encoded) != size * self.SHARES:
            raise DecodeError("incorrect public share length")
        return [encoded[i : i + size] for i in range(0, len(encoded), size)]

    def encode_input_share(self, input_share: Prio3InputShare) -> bytes:
        if isinstance(input_share, Prio3LeaderShare):
            out = self.field.encode_vec(input_share.meas_share)
            out += self.field.encode_vec(input_share.proofs_share)
        else:
            out = input_share.share_seed
        if input_share.blind is not None:
            out += input_share.blind
        return out

    def decode_input_share(self, agg_id: int, encoded: bytes) -> Prio3InputShare:
        size = self.xof.SEED_SIZE
        blind_len = size if self.uses_joint_rand else 0
        if agg_id == 0:
            elem = self.field.ENCODED_SIZE
            meas_len = self.flp.MEAS_LEN * elem
            proofs_len = self.flp.PROOF_LEN * self.PROOFS * elem
            if len(encoded) != meas_len + proofs_len + blind_len:
                raise DecodeError("incorrect leader input share length")
            meas = self.field.decode_vec(encoded[:meas_len])
            proofs = self.field.decode_vec(encoded[meas_len : meas_len + proofs_len])
            blind = encoded[meas_len + proofs_len :] if blind_len else None
            return Prio3LeaderShare(meas, proofs, blind)
        if not 0 < agg_id < self.SHARES:
            raise ValueError("aggregator id out of range")
        if len(encoded) != size + blind_len:
            raise DecodeError("incorrect helper input share length")
        return Prio3HelperShare(encoded[:size], encoded[size:] if blind_len else None)

    def encode_verifier_share(self, verifier_share: Prio3VerifierShare) -> bytes:
        verifiers, part = verifier_share
        out = self.field.encode_vec(verifiers)
        return out + part if part is not None else out

    def decode_verifier_share(self, state: Prio3VerifyState, encoded: bytes) -> Prio3VerifierShare:
        n = self.flp.VERIFIER_LEN * self.PROOFS * self.field.ENCODED_SIZE
        part_len = self.xof.SEED_SIZE if self.uses_joint_rand else 0
        if len(encoded) != n + part_len:
            raise DecodeError("incorrect verifier share length")
        return self.field.decode_vec(encoded[:n]), (encoded[n:] if part_len else None)

    def encode_verifier_message(self, verifier_message: Prio3VerifierMessage) -> bytes:
        return verifier_message if verifier_message is not None else b""

    def decode_verifier_message(
        self, state: Prio3VerifyState, encoded: bytes
    ) -> Prio3VerifierMessage:
        if not self.uses_joint_rand:
            if encoded:
                raise DecodeError("unexpected verifier message")
            return None
        if len(encoded) != self.xof.SEED_SIZE:
            raise DecodeError("incorrect verifier message length")
        return encoded

    def encode_agg_param(self, agg_param: None) -> bytes:
        return b""

    def decode_agg_param(self, encoded: bytes) -> None:
        if encoded:
            raise DecodeError("Prio3 takes no aggregation parameter")

    def encode_agg_share(self, agg_share: list[int]) -> bytes:
        return self.field.encode_vec(agg_share)

    def decode_agg_share(self, agg_param: None, encoded: bytes) -> list[int]:
        vec = self.field.decode_vec(encoded)
        if len(vec) != self.flp.OUTPUT_LEN:
            raise DecodeError("incorrect aggregate share length")
        return vec


# -- concrete instantiations (§7.4) ------------------------------------------------------


class Prio3Count(Prio3[int, int]):
    """Prio3Count: a count of ``0``/``1`` measurements (Field64)."""

    ID = 0x00000001
    FIELD = Field64

    def __init__(self, shares: int) -> None:
        super().__init__(shares, Count(self.FIELD), self.ID)


class Prio3Sum(Prio3[int, int]):
    """Prio3Sum: a sum of integers in ``[0, MAX_MEASUREMENT]`` (Field64)."""

    ID = 0x00000002
    FIELD = Field64

    def __init__(self, shares: int, max_measurement: int) -> None:
        self.MAX_MEASUREMENT = max_measurement
        super().__init__(shares, Sum(self.FIELD, max_measurement), self.ID)


class Prio3SumVec(Prio3[list[int], list[int]]):
    """Prio3SumVec: an element-wise sum of vectors (Field128)."""

    ID = 0x00000003
    FIELD: type[NttField] = Field128

    def __init__(
        self,
        shares: int,
        length: int,
        max_measurement: int,
        chunk_length: int,
        *,
        vdaf_id: int | None = None,
        field: type[NttField] | None = None,
        proofs: int = 1,
    ) -> None:
        self.LENGTH = length
        self.MAX_MEASUREMENT = max_measurement
        self.CHUNK_LENGTH = chunk_length
        valid = SumVec(field or self.FIELD, length, max_measurement, chunk_length)
        super().__init__(shares, valid, self.ID if vdaf_id is None else vdaf_id, proofs)


class Prio3SumVecWithMultiproof(Prio3SumVec):
    """SumVec over Field64 with several proofs (experimental, ID ``0xFFFFFFFF``)."""

    ID = 0xFFFFFFFF
    FIELD = Field64

    def __init__(
        self, shares: int, length: int, max_measurement: int, chunk_length: int, proofs: int = 3
    ) -> None:
        super().__init__(
            shares, length, max_measurement, chunk_length, field=Field64, proofs=proofs
        )


class Prio3Histogram(Prio3[int, list[int]]):
    """Prio3Histogram: bucket counts of indices in ``[0, LENGTH)`` (Field128)."""

    ID = 0x00000004
    FIELD = Field128

    def __init__(self, shares: int, length: int, chunk_length: int) -> None:
        self.LENGTH = length
        self.CHUNK_LENGTH = chunk_length
        super().__init__(shares, Histogram(self.FIELD, length, chunk_length), self.ID)


class Prio3MultihotCountVec(Prio3[list[bool], list[int]]):
    """Prio3MultihotCountVec: per-entry counts of bounded-weight bit vectors (Field128)."""

    ID = 0x00000005
    FIELD = Field128

    def __init__(self, shares: int, length: int, max_weight: int, chunk_length: int) -> None:
        self.LENGTH = length
        self.MAX_WEIGHT = max_weight
        self.CHUNK_LENGTH = chunk_length
        valid = MultihotCountVec(self.FIELD, length, max_weight, chunk_length)
        super().__init__(shares, valid, self.ID)


class Prio3FixedPointBoundedL2VecSum(Prio3[list[int], list[int]]):
    """Sum of fixed-point vectors with a proven L2 norm bound (Field128, one proof).

    Not in the draft: the circuit of libprio-rs's ``Prio3FixedPointBoundedL2VecSum``
    (:class:`~tessera.crypto.flp.FixedPointBoundedL2VecSum`) under a private-use ID,
    so its reports do not interoperate with libprio's. For vectors of 10^4 parameters
    and more, shard and verify with :mod:`tessera.crypto.prio3_l2` (compiled, the same
    bytes).
    """

    ID = 0xFFFF1003
    FIELD = Field128

    def __init__(
        self,
        shares: int,
        length: int,
        bits: int,
        norm_bound_sq: int,
        chunk_length: int,
        norm_chunk_length: int,
    ) -> None:
        self.LENGTH = length
        self.BITS = bits
        self.NORM_BOUND_SQ = norm_bound_sq
        valid = FixedPointBoundedL2VecSum(
            self.FIELD, length, bits, norm_bound_sq, chunk_length, norm_chunk_length
        )
        super().__init__(shares, valid, self.ID)


class Prio3HigherDegree(Prio3[int, int]):
    """Test-only Prio3 over a degree-3 PolyEval gadget (upstream vector ``Prio3HigherDegree``)."""

    ID = 0xFFFFFFFF
    FIELD = Field64

    def __init__(self, shares: int = 2) -> None:
        super().__init__(shares, PolyEvalTest(self.FIELD), self.ID)
