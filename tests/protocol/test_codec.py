"""Canonical encodings round-trip, reject malformed bytes, and digests bind every message."""

from __future__ import annotations

import pytest

from tessera.crypto.dkg import run_dkg
from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError
from tessera.protocol import codec
from tessera.protocol.aggregation import AggregationRecord, SlotSpec, VectorSpec

from .test_aggregation import run


@pytest.fixture(scope="module")
def record() -> AggregationRecord:
    keys = run_dkg(3, 2, SeededRng("codec"))[0]
    spec = VectorSpec((SlotSpec(0, 100), SlotSpec(-5, 3_000_000)))
    rec, _ = run(
        keys,
        spec,
        {"a": [7, 12], "b": [100, -5]},
        DiscreteLog(BabyStepTable.build(1 << 12), max_abs=1 << 28),
        "codec",
        qid=b"q" * 32,
        noise={i: [1, -2] for i in keys},
        noise_bounds=[3, 3],
    )
    return rec


def test_round_trips(record: AggregationRecord) -> None:
    for vc in record.contributions:
        assert codec.decode_contribution(codec.encode_contribution(vc)) == vc
    for nc in record.noise:
        assert codec.decode_noise(codec.encode_noise(nc)) == nc
    assert codec.decode_ciphertexts(codec.encode_ciphertexts(record.aggregate)) == record.aggregate
    for shares in record.key_switch_shares.values():
        assert codec.decode_key_switch(codec.encode_key_switch(shares)) == shares
    assert record.release is not None
    assert codec.decode_release(codec.encode_release(record.release)) == record.release


def test_strict_decoding_names_the_problem(record: AggregationRecord) -> None:
    raw = codec.encode_contribution(record.contributions[0])
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode_contribution(raw + b"\x00")
    with pytest.raises(DecodeError, match="truncated"):
        codec.decode_contribution(raw[:-1])
    with pytest.raises(DecodeError, match="exceeds"):
        codec.decode_ciphertexts(b"\xff\xff\xff\xff")
    bad = bytearray(codec.encode_ciphertexts(record.aggregate))
    bad[4] = 0x07  # not a point prefix
    with pytest.raises(DecodeError):
        codec.decode_ciphertexts(bytes(bad))


def test_digests_bind_query_and_content(record: AggregationRecord) -> None:
    qid = record.query.query_id
    vc = record.contributions[0]
    d = codec.contribution_digest(qid, vc)
    assert d == codec.contribution_digest(qid, vc)
    assert d != codec.contribution_digest(b"x" * 32, vc)
    assert d != codec.contribution_digest(qid, record.contributions[1])
    assert codec.aggregate_digest(qid, record.aggregate) != codec.aggregate_digest(
        qid, record.aggregate[::-1]
    )
    whole = codec.record_digest(record)
    saved = record.switched
    record.switched = saved[::-1]
    try:
        assert codec.record_digest(record) != whole
    finally:
        record.switched = saved
    assert codec.record_digest(record) == whole
