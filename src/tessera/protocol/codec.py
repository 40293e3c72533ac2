"""Canonical bytes of the aggregation protocol's messages, and the audit-trail digests.

One encoding serves the wire and the ledger: a message's digest is the SHA-256
of a domain tag, the query id and its canonical bytes, so a verifier holding a
record recomputes every digest a party committed on-chain and compares.

Framing: counts and lengths are big-endian ``u32``; a variable-size item is
length-prefixed. Decoding is strict: trailing bytes, short input, counts out of
range and malformed points or scalars raise :class:`~tessera.errors.DecodeError`
naming what was wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from tessera.crypto.elgamal import CIPHERTEXT_LEN, Ciphertext
from tessera.crypto.proofs import LinearProof
from tessera.crypto.rangeproof import RangeProof
from tessera.crypto.threshold import KeySwitchShare
from tessera.errors import DecodeError
from tessera.protocol.aggregation import (
    AggregationRecord,
    NoiseContribution,
    Release,
    SlotContribution,
    SlotNoise,
    VectorContribution,
)

MAX_ITEMS = 1 << 20
MAX_NAME = 256
RELEASE_PROOF_LEN = 64  # one-witness linear proof: (e, z)
KNOWLEDGE_PROOF_LEN = 64  # the same shape: a ciphertext's randomness known
_T = TypeVar("_T")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"{self.what}: truncated at byte {self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self, limit: int = MAX_ITEMS) -> int:
        v = int.from_bytes(self.take(4), "big")
        if v > limit:
            raise DecodeError(f"{self.what}: count {v} exceeds {limit}")
        return v

    def framed(self) -> bytes:
        return self.take(self.u32(len(self.data)))

    def items(self, read: Callable[[], _T]) -> list[_T]:
        return [read() for _ in range(self.u32())]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def _u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def _framed(b: bytes) -> bytes:
    return _u32(len(b)) + b


def _ciphertexts(cts: Sequence[Ciphertext]) -> bytes:
    return _u32(len(cts)) + b"".join(c.encode() for c in cts)


def _read_ciphertexts(r: _Reader) -> list[Ciphertext]:
    return r.items(lambda: Ciphertext.decode(r.take(CIPHERTEXT_LEN)))


def _proofs(proofs: Sequence[RangeProof]) -> bytes:
    return _u32(len(proofs)) + b"".join(_framed(p.encode()) for p in proofs)


def _read_proofs(r: _Reader) -> list[RangeProof]:
    return r.items(lambda: RangeProof.decode(r.framed()))


def _knowledge(proofs: Sequence[LinearProof]) -> bytes:
    return _u32(len(proofs)) + b"".join(p.encode() for p in proofs)


def _read_knowledge(r: _Reader) -> list[LinearProof]:
    return r.items(lambda: LinearProof.decode(r.take(KNOWLEDGE_PROOF_LEN), 1))


# -- contributions ------------------------------------------------------------------
def encode_contribution(vc: VectorContribution) -> bytes:
    name = vc.provider.encode("utf-8")
    out = [_framed(name), _u32(len(vc.slots))]
    for s in vc.slots:
        out.append(_ciphertexts(s.limbs))
        out.append(_knowledge(s.knowledge))
        out.append(_proofs(s.limb_proofs))
        out.append(b"\x00" if s.exact_proof is None else b"\x01" + _framed(s.exact_proof.encode()))
    return b"".join(out)


def decode_contribution(data: bytes) -> VectorContribution:
    r = _Reader(data, "contribution")
    raw_name = r.framed()
    if len(raw_name) > MAX_NAME:
        raise DecodeError(f"contribution: provider name longer than {MAX_NAME} bytes")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("contribution: provider name is not UTF-8") from exc

    def slot() -> SlotContribution:
        limbs = _read_ciphertexts(r)
        knowledge = _read_knowledge(r)
        proofs = _read_proofs(r)
        flag = r.take(1)
        if flag not in (b"\x00", b"\x01"):
            raise DecodeError("contribution: bad exact-proof flag")
        exact = RangeProof.decode(r.framed()) if flag == b"\x01" else None
        return SlotContribution(tuple(limbs), tuple(proofs), exact, tuple(knowledge))

    slots = r.items(slot)
    r.done()
    return VectorContribution(name, tuple(slots))


def decode_contribution_limbs(data: bytes) -> VectorContribution:
    """The ciphertexts of an encoded contribution and their knowledge proofs, the range
    proofs skipped (framing still checked).

    For a party that adds contributions up (a computing node, the analyst): it checks
    that each ciphertext is its author's own (the knowledge proofs); the range proofs are
    the verifiers' to check, and decoding their curve points costs far more."""
    r = _Reader(data, "contribution")
    name = r.framed()
    if len(name) > MAX_NAME:
        raise DecodeError(f"contribution: provider name longer than {MAX_NAME} bytes")

    def slot() -> SlotContribution:
        limbs = _read_ciphertexts(r)
        knowledge = _read_knowledge(r)
        for _ in range(r.u32()):
            r.framed()
        flag = r.take(1)
        if flag not in (b"\x00", b"\x01"):
            raise DecodeError("contribution: bad exact-proof flag")
        if flag == b"\x01":
            r.framed()
        return SlotContribution(tuple(limbs), (), None, tuple(knowledge))

    slots = r.items(slot)
    r.done()
    try:
        provider = name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("contribution: provider name is not UTF-8") from exc
    return VectorContribution(provider, tuple(slots))


def encode_noise(nc: NoiseContribution) -> bytes:
    out = [_u32(nc.node), _u32(len(nc.slots))]
    for s in nc.slots:
        out.append(_ciphertexts(s.limbs))
        out.append(_knowledge(s.knowledge))
        out.append(_proofs(s.limb_proofs))
    return b"".join(out)


def decode_noise_limbs(data: bytes) -> NoiseContribution:
    """A node's noise ciphertexts, proofs skipped (as :func:`decode_contribution_limbs`)."""
    r = _Reader(data, "noise")
    node = r.u32()

    def slot() -> SlotNoise:
        limbs = _read_ciphertexts(r)
        knowledge = _read_knowledge(r)
        for _ in range(r.u32()):
            r.framed()
        return SlotNoise(tuple(limbs), (), tuple(knowledge))

    slots = r.items(slot)
    r.done()
    return NoiseContribution(node, tuple(slots))


def decode_noise(data: bytes) -> NoiseContribution:
    r = _Reader(data, "noise")
    node = r.u32()

    def slot() -> SlotNoise:
        limbs = _read_ciphertexts(r)
        knowledge = _read_knowledge(r)
        return SlotNoise(tuple(limbs), tuple(_read_proofs(r)), tuple(knowledge))

    slots = r.items(slot)
    r.done()
    return NoiseContribution(node, tuple(slots))


# -- committee and analyst ------------------------------------------------------------
def encode_ciphertexts(cts: Sequence[Ciphertext]) -> bytes:
    return _ciphertexts(cts)


def decode_ciphertexts(data: bytes) -> list[Ciphertext]:
    r = _Reader(data, "ciphertexts")
    out = _read_ciphertexts(r)
    r.done()
    return out


def encode_key_switch(shares: Sequence[KeySwitchShare]) -> bytes:
    return _u32(len(shares)) + b"".join(_framed(s.encode()) for s in shares)


def decode_key_switch(data: bytes) -> list[KeySwitchShare]:
    r = _Reader(data, "key-switch shares")
    out = r.items(lambda: KeySwitchShare.decode(r.framed()))
    r.done()
    return out


def encode_release(rel: Release) -> bytes:
    if len(rel.limb_sums) != len(rel.proofs):
        raise ValueError("release: one proof per limb sum")
    out = [_u32(len(rel.limb_sums))]
    for v, pf in zip(rel.limb_sums, rel.proofs, strict=True):
        out.append(v.to_bytes(16, "big", signed=True))
        out.append(pf.encode())
    return b"".join(out)


def decode_release(data: bytes) -> Release:
    r = _Reader(data, "release")
    sums: list[int] = []
    proofs: list[LinearProof] = []
    for _ in range(r.u32()):
        sums.append(int.from_bytes(r.take(16), "big", signed=True))
        proofs.append(LinearProof.decode(r.take(RELEASE_PROOF_LEN), 1))
    r.done()
    return Release(tuple(sums), tuple(proofs))


# -- audit-trail digests ----------------------------------------------------------------
def digest(kind: str, query_id: bytes, body: bytes) -> bytes:
    """``SHA-256("tessera/audit/<kind>" ‖ len(query_id) ‖ query_id ‖ body)``."""
    h = hashlib.sha256(f"tessera/audit/{kind}".encode())
    h.update(_framed(query_id))
    h.update(body)
    return h.digest()


def contribution_digest(query_id: bytes, vc: VectorContribution) -> bytes:
    return digest("contribution", query_id, encode_contribution(vc))


def noise_digest(query_id: bytes, nc: NoiseContribution) -> bytes:
    return digest("noise", query_id, encode_noise(nc))


def aggregate_digest(
    query_id: bytes, aggregate: Sequence[Ciphertext], withheld: Iterable[str] = ()
) -> bytes:
    """The aggregate a node locks, with the accounts of the providers it left out for
    withholding a contribution they committed (none: the aggregate's digest alone), so
    that the nodes that switch one aggregate also agree on who withheld."""
    body = encode_ciphertexts(aggregate)
    accounts = sorted({a.lower() for a in withheld})
    if accounts:
        body += b"withheld" + b"".join(_framed(a.encode()) for a in accounts)
    return digest("aggregate", query_id, body)


def key_switch_digest(
    query_id: bytes, aggregate: Sequence[Ciphertext], shares: Sequence[KeySwitchShare]
) -> bytes:
    """A node's key switch together with the aggregate it switched: a record can only
    blame a node for shares of the aggregate the node itself committed to."""
    return digest(
        "key_switch", query_id, _framed(encode_ciphertexts(aggregate)) + encode_key_switch(shares)
    )


def release_digest(query_id: bytes, rel: Release) -> bytes:
    return digest("result", query_id, encode_release(rel))


def record_digest(record: AggregationRecord) -> bytes:
    """The proof bundle: every message the committee saw or produced, in a fixed order.

    The analyst's release has its own digest (:func:`release_digest`)."""
    return bundle_digest(
        record,
        [encode_contribution(c) for c in record.contributions],
        [encode_noise(n) for n in record.noise],
        [encode_noise(n) for n in record.rejected_noise],
        encode_ciphertexts(record.aggregate),
        {i: encode_key_switch(s) for i, s in record.key_switch_shares.items()},
        encode_ciphertexts(record.switched),
    )


def bundle_digest(
    record: AggregationRecord,
    contributions: Sequence[bytes],
    noise: Sequence[bytes],
    rejected_noise: Sequence[bytes],
    aggregate: bytes,
    key_switch: Mapping[int, bytes],
    switched: bytes,
) -> bytes:
    """:func:`record_digest` from the messages' encodings (``record`` gives the header:
    query, committee key, threshold), for a party that holds them encoded."""
    q = record.query
    parts = [
        _u32(q.spec.limb_bits),
        _u32(len(q.spec.slots)),
        *(_framed(f"{s.lo}:{s.hi}".encode()) for s in q.spec.slots),
        _framed(q.analyst_key.encode()),
        _framed(record.committee_key.encode()),
        _u32(len(record.public_shares)),
        *(_u32(i) + _framed(p.encode()) for i, p in sorted(record.public_shares.items())),
        _u32(record.threshold),
        _u32(len(q.noise_bounds)),
        *(b.to_bytes(16, "big") for b in q.noise_bounds),
        _u32(len(contributions)),
        *(_framed(c) for c in contributions),
        _u32(len(noise)),
        *(_framed(n) for n in noise),
        _u32(len(rejected_noise)),
        *(_framed(n) for n in rejected_noise),
        _framed(aggregate),
        _u32(len(key_switch)),
    ]
    for node, shares in sorted(key_switch.items()):
        parts += [_u32(node), _framed(shares)]
    parts.append(_framed(switched))
    return digest("proof_bundle", q.query_id, b"".join(parts))
