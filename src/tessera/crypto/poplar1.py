"""Poplar1 (draft-irtf-cfrg-vdaf-18, §8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from tessera.crypto.field import Field
from tessera.crypto.idpf import CorrectionWord, IdpfBBCGGI21
from tessera.crypto.vdaf import Vdaf
from tessera.crypto.xof import XofTurboShake128
from tessera.errors import DecodeError, InvalidProof

USAGE_SHARD_RAND = 1
USAGE_CORR_INNER = 2
USAGE_CORR_LEAF = 3
USAGE_VERIFY_RAND = 4

Prefix: TypeAlias = tuple[bool, ...]
#: ``(level, candidate prefixes)``
Poplar1AggParam: TypeAlias = tuple[int, tuple[Prefix, ...]]
Poplar1PublicShare: TypeAlias = list[CorrectionWord]
#: ``(IDPF key, correlated-randomness seed, inner (A, B) shares, leaf (A, B) shares)``
Poplar1InputShare: TypeAlias = tuple[bytes, bytes, list[int], list[int]]
#: ``(step, level, memory)`` where step is ``"evaluate sketch"`` or ``"reveal sketch"``
Poplar1VerifyState: TypeAlias = tuple[str, int, list[int]]

EVALUATE = "evaluate sketch"
REVEAL = "reveal sketch"


@dataclass(frozen=True)
class FieldVec:
    """A vector of elements of ``field`` (Field64 at inner levels, Field255 at the leaves)."""

    field: type[Field]
    vec: list[int]

    def encode(self) -> bytes:
        """Little-endian encoding of the elements."""
        return self.field.encode_vec(self.vec)


def get_ancestor(prefix: Prefix, level: int) -> Prefix:
    """The ancestor of ``prefix`` at ``level`` (its first ``level + 1`` bits)."""
    return prefix[: level + 1]


class Poplar1(
    Vdaf[
        tuple[bool, ...],
        Poplar1AggParam,
        Poplar1PublicShare,
        Poplar1InputShare,
        FieldVec,
        FieldVec,
        list[int],
        Poplar1VerifyState,
        FieldVec,
        "FieldVec | None",
    ]
):
    """Poplar1 over ``BITS``-bit strings (two aggregators, two verification rounds)."""

    ID = 0x00000006
    NONCE_SIZE = 16
    SHARES = 2
    ROUNDS = 2
    xof = XofTurboShake128

    def __init__(self, bits: int) -> None:
        self.idpf = IdpfBBCGGI21(2, bits)
        self.BITS = bits
        self.VERIFY_KEY_SIZE = self.xof.SEED_SIZE
        self.RAND_SIZE = 3 * self.xof.SEED_SIZE + self.idpf.RAND_SIZE

    # -- sharding -------------------------------------------------------------------

    def shard(
        self, ctx: bytes, measurement: tuple[bool, ...], nonce: bytes, rand: bytes
    ) -> tuple[Poplar1PublicShare, list[Poplar1InputShare]]:
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if len(rand) != self.RAND_SIZE:
            raise ValueError("incorrect size of random bytes argument")
        if len(measurement) != self.BITS:
            raise ValueError("incorrect measurement length")
        idpf = self.idpf
        size = self.xof.SEED_SIZE
        idpf_rand, rest = rand[: idpf.RAND_SIZE], rand[idpf.RAND_SIZE :]
        corr_seed = [rest[:size], rest[size : 2 * size]]
        k_shard = rest[2 * size :]
        inner, leaf = idpf.field_inner, idpf.field_leaf

        xof = self.xof(k_shard, self.domain_separation_tag(USAGE_SHARD_RAND, ctx), nonce)
        beta_inner = [[1, k] for k in xof.next_vec(inner, self.BITS - 1)]
        beta_leaf = [1, *xof.next_vec(leaf, 1)]
        public_share, keys = idpf.gen(measurement, beta_inner, beta_leaf, ctx, nonce, idpf_rand)

        corr_offsets = inner.vec_add(
            *(
                self.xof.expand_into_vec(
                    inner,
                    corr_seed[j],
                    self.domain_separation_tag(USAGE_CORR_INNER, ctx),
                    bytes([j]) + nonce,
                    3 * (self.BITS - 1),
                )
                for j in range(2)
            )
        )
        leaf_offsets = leaf.vec_add(
            *(
                self.xof.expand_into_vec(
                    leaf,
                    corr_seed[j],
                    self.domain_separation_tag(USAGE_CORR_LEAF, ctx),
                    bytes([j]) + nonce,
                    3,
                )
                for j in range(2)
            )
        )

        corr_inner: list[list[int]] = [[], []]
        corr_leaf: list[list[int]] = [[], []]
        for level in range(self.BITS):
            field = idpf.current_field(level)
            q = field.MODULUS
            if level < self.BITS - 1:
                k = beta_inner[level][1]
                a, b, c = corr_offsets[3 * level : 3 * level + 3]
            else:
                k = beta_leaf[1]
                a, b, c = leaf_offsets
            big_a = (-2 * a + k) % q
            big_b = (a * a + b - a * k + c) % q
            corr1 = xof.next_vec(field, 2)
            corr0 = field.vec_sub([big_a, big_b], corr1)
            if level < self.BITS - 1:
                corr_inner[0] += corr0
                corr_inner[1] += corr1
            else:
                corr_leaf = [corr0, corr1]
        input_shares: list[Poplar1InputShare] = [
            (keys[j], corr_seed[j], corr_inner[j], corr_leaf[j]) for j in range(2)
        ]
        return public_share, input_shares

    # -- verification ---------------------------------------------------------------

    def is_valid(
        self, agg_param: Poplar1AggParam, previous_agg_params: list[Poplar1AggParam]
    ) -> bool:
        """Levels strictly increase and each prefix extends one of the previous prefixes."""
        if not previous_agg_params:
            return True
        level, prefixes = agg_param
        last_level, last_prefixes = previous_agg_params[-1]
        if level <= last_level:
            return False
        last = set(last_prefixes)
        return all(get_ancestor(p, last_level) in last for p in prefixes)

    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        agg_param: Poplar1AggParam,
        nonce: bytes,
        public_share: Poplar1PublicShare,
        input_share: Poplar1InputShare,
    ) -> tuple[Poplar1VerifyState, FieldVec]:
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise ValueError("incorrect verify key size")
        if len(nonce) != self.NONCE_SIZE:
            raise ValueError("incorrect nonce size")
        if agg_id not in (0, 1):
            raise ValueError("aggregator id out of range")
        level, prefixes = agg_param
        key, corr_seed, corr_inner, corr_leaf = input_share
        field = self.idpf.current_field(level)
        q = field.MODULUS
        for i in range(1, len(prefixes)):
            if prefixes[i - 1] >= prefixes[i]:
                raise ValueError("out of order prefix")

        value = self.idpf.eval(agg_id, public_share, key, level, prefixes, ctx, nonce)

        if level < self.BITS - 1:
            corr_xof = self.xof(
                corr_seed,
                self.domain_separation_tag(USAGE_CORR_INNER, ctx),
                bytes([agg_id]) + nonce,
            )
            corr_xof.next_vec(field, 3 * level)  # fast-forward to this level
            big_a, big_b = corr_inner[2 * level : 2 * level + 2]
        else:
            corr_xof = self.xof(
                corr_seed,
                self.domain_separation_tag(USAGE_CORR_LEAF, ctx),
                bytes([agg_id]) + nonce,
            )
            big_a, big_b = corr_leaf
        a_share, b_share, c_share = corr_xof.next_vec(field, 3)

        verify_rand = self.xof(
            verify_key,
            self.domain_separation_tag(USAGE_VERIFY_RAND, ctx),
            nonce + level.to_bytes(2, "big"),
        ).next_vec(field, len(prefixes))
        s0, s1, s2 = a_share, b_share, c_share
        out_share = []
        for (data, auth), r in zip(value, verify_rand, strict=True):
            s0 += data * r
            s1 += data * r % q * r
            s2 += auth * r
            out_share.append(data)
        state: Poplar1VerifyState = (EVALUATE, level, [big_a, big_b, agg_id, *out_share])
        return state, FieldVec(field, [s0 % q, s1 % q, s2 % q])

    def verifier_shares_to_message(
        self, ctx: bytes, agg_param: Poplar1AggParam, verifier_shares: Sequence[FieldVec]
    ) -> FieldVec | None:
        if len(verifier_shares) != 2:
            raise ValueError("incorrect number of verifier shares")
        level, _ = agg_param
        field = self.idpf.current_field(level)
        if any(s.field is not field for s in verifier_shares):
            raise DecodeError("verifier share of the wrong field")
        sketch = field.vec_add(verifier_shares[0].vec, verifier_shares[1].vec)
        if len(sketch) == 3:
            return FieldVec(field, sketch)
        if len(sketch) == 1:
            if sketch == [0]:
                return None
            raise InvalidProof("sketch verification failed")
        raise DecodeError("incorrect sketch length")

    def verify_next(
        self, ctx: bytes, state: Poplar1VerifyState, verifier_message: FieldVec | None
    ) -> tuple[Poplar1VerifyState, FieldVec] | FieldVec:
        step, level, mem = state
        field = self.idpf.current_field(level)
        q = field.MODULUS
        if step == EVALUATE:
            if verifier_message is None or len(verifier_message.vec) != 3:
                raise DecodeError("expected a sketch of length 3")
            s0, s1, s2 = verifier_message.vec
            big_a, big_b, agg_id = mem[0], mem[1], mem[2]
            share = (agg_id * (s0 * s0 - s1 - s2) + big_a * s0 + big_b) % q
            return (REVEAL, level, mem[3:]), FieldVec(field, [share])
        if step == REVEAL:
            if verifier_message is not None:
                raise DecodeError("unexpected verifier message")
            return FieldVec(field, mem)
        raise ValueError("invalid verification state")

    # -- aggregation ----------------------------------------------------------------

    def agg_init(self, agg_param: Poplar1AggParam) -> FieldVec:
        return FieldVec(self._field(agg_param[0]), [0] * len(agg_param[1]))

    def agg_update(
        self, agg_param: Poplar1AggParam, agg_share: FieldVec, out_share: FieldVec
    ) -> FieldVec:
        field = self._field(agg_param[0])
        if agg_share.field is not field or out_share.field is not field:
            raise ValueError("share of the wrong field")
        return FieldVec(field, field.vec_add(agg_share.vec, out_share.vec))

    def merge(self, agg_param: Poplar1AggParam, agg_shares: Sequence[FieldVec]) -> FieldVec:
        agg = self.agg_init(agg_param)
        for share in agg_shares:
            agg = self.agg_update(agg_param, agg, share)
        return agg

    def unshard(
        self, agg_param: Poplar1AggParam, agg_shares: Sequence[FieldVec], num_measurements: int
    ) -> list[int]:
        return self.merge(agg_param, agg_shares).vec

    # -- encodings ------------------------------------------------------------------

    def _field(self, level: int) -> type[Field]:
        return self.idpf.current_field(level)

    def encode_public_share(self, public_share: Poplar1PublicShare) -> bytes:
        return self.idpf.encode_public_share(public_share)

    def decode_public_share(self, encoded: bytes) -> Poplar1PublicShare:
        return self.idpf.decode_public_share(encoded)

    def encode_input_share(self, input_share: Poplar1InputShare) -> bytes:
        key, corr_seed, corr_inner, corr_leaf = input_share
        return (
            key
            + corr_seed
            + self.idpf.field_inner.encode_vec(corr_inner)
            + self.idpf.field_leaf.encode_vec(corr_leaf)
        )

    def decode_input_share(self, agg_id: int, encoded: bytes) -> Poplar1InputShare:
        key_len, seed_len = self.idpf.KEY_SIZE, self.xof.SEED_SIZE
        inner, leaf = self.idpf.field_inner, self.idpf.field_leaf
        inner_len = 2 * (self.BITS - 1) * inner.ENCODED_SIZE
        leaf_len = 2 * leaf.ENCODED_SIZE
        if len(encoded) != key_len + seed_len + inner_len + leaf_len:
            raise DecodeError("incorrect input share length")
        pos = key_len + seed_len
        return (
            encoded[:key_len],
            encoded[key_len:pos],
            inner.decode_vec(encoded[pos : pos + inner_len]),
            leaf.decode_vec(encoded[pos + inner_len :]),
        )

    def encode_verifier_share(self, verifier_share: FieldVec) -> bytes:
        return verifier_share.encode()

    def decode_verifier_share(self, state: Poplar1VerifyState, encoded: bytes) -> FieldVec:
        step, level, _ = state
        field = self._field(level)
        vec = field.decode_vec(encoded)
        if len(vec) != (3 if step == EVALUATE else 1):
            raise DecodeError("incorrect verifier share length")
        return FieldVec(field, vec)

    def encode_verifier_message(self, verifier_message: FieldVec | None) -> bytes:
        return b"" if verifier_message is None else verifier_message.encode()

    def decode_verifier_message(self, state: Poplar1VerifyState, encoded: bytes) -> FieldVec | None:
        step, level, _ = state
        if step == REVEAL:
            if encoded:
                raise DecodeError("unexpected verifier message")
            return None
        field = self._field(level)
        vec = field.decode_vec(encoded)
        if len(vec) != 3:
            raise DecodeError("incorrect verifier message length")
        return FieldVec(field, vec)

    def encode_agg_param(self, agg_param: Poplar1AggParam) -> bytes:
        level, prefixes = agg_param
        if not 0 <= level < min(self.BITS, 1 << 16):
            raise ValueError("level out of range")
        nbytes = (level + 8) // 8
        out = level.to_bytes(2, "big") + len(prefixes).to_bytes(4, "big")
        for prefix in prefixes:
            if len(prefix) != level + 1:
                raise ValueError("incorrect prefix length")
            val = 0
            for bit in prefix:
                val = (val << 1) | int(bit)
            out += (val << (8 * nbytes - level - 1)).to_bytes(nbytes, "big")
        return out

    def decode_agg_param(self, encoded: bytes) -> Poplar1AggParam:
        if len(encoded) < 6:
            raise DecodeError("aggregation parameter too short")
        level = int.from_bytes(encoded[:2], "big")
        count = int.from_bytes(encoded[2:6], "big")
        if level >= self.BITS:
            raise DecodeError("level out of range")
        nbytes = (level + 8) // 8
        body = encoded[6:]
        if len(body) != count * nbytes:
            raise DecodeError("incorrect aggregation parameter length")
        shift = 8 * nbytes - level - 1
        prefixes = []
        for i in range(count):
            val = int.from_bytes(body[i * nbytes : (i + 1) * nbytes], "big")
            if val & ((1 << shift) - 1):
                raise DecodeError("trailing bits in prefix")
            val >>= shift
            prefixes.append(tuple(bool((val >> (level - j)) & 1) for j in range(level + 1)))
        return level, tuple(prefixes)

    def encode_agg_share(self, agg_share: FieldVec) -> bytes:
        return agg_share.encode()

    def decode_agg_share(self, agg_param: Poplar1AggParam, encoded: bytes) -> FieldVec:
        field = self._field(agg_param[0])
        vec = field.decode_vec(encoded)
        if len(vec) != len(agg_param[1]):
            raise DecodeError("incorrect aggregate share length")
        return FieldVec(field, vec)
