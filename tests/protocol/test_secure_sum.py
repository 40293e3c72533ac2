"""End-to-end verifiable sum in memory: honest runs, cheaters, replays and tampering."""

from __future__ import annotations

import dataclasses

import pytest

from tessera.crypto.dkg import run_dkg
from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.crypto.elgamal import encrypt
from tessera.crypto.group import G
from tessera.crypto.rng import SeededRng
from tessera.errors import InvalidProof
from tessera.protocol.secure_sum import (
    Release,
    provider_contribute,
    run_sum,
    verify_contribution,
    verify_record,
)


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 10), max_abs=1 << 24)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (4, 3)])
def test_honest_sum_verifies(dlog: DiscreteLog, n: int, t: int) -> None:
    rng = SeededRng(f"sum-{n}-{t}")
    keys, _ = run_dkg(n, t, rng)
    values = {"a": 10, "b": 0, "c": 999, "d": 1000}
    record, result = run_sum(b"q1", values, keys, 0, 1000, dlog, rng)
    assert result == sum(values.values())
    verdict = verify_record(record)
    assert verdict.ok, verdict.failures
    assert verdict.cheaters == ()
    assert verdict.checked_proofs == len(values) + n + 1


def test_cheating_node_excluded_result_still_correct(dlog: DiscreteLog) -> None:
    rng = SeededRng("cheat")
    keys, _ = run_dkg(3, 2, rng)
    values = {"a": 5, "b": 6}
    record, result = run_sum(b"q2", values, keys, 0, 100, dlog, rng, cheating_nodes=(1,))
    assert result == 11
    assert record.excluded_nodes == [1]
    verdict = verify_record(record)
    assert verdict.ok and verdict.cheaters == (1,)


def test_too_many_cheaters_fail(dlog: DiscreteLog) -> None:
    rng = SeededRng("cheat2")
    keys, _ = run_dkg(3, 2, rng)
    from tessera.errors import ProtocolError

    with pytest.raises(ProtocolError):
        run_sum(b"q3", {"a": 1}, keys, 0, 10, dlog, rng, cheating_nodes=(1, 2))


def test_replayed_contribution_from_other_query_is_caught(dlog: DiscreteLog) -> None:
    rng = SeededRng("replay")
    keys, _ = run_dkg(3, 2, rng)
    rec1, _ = run_sum(b"query-1", {"a": 3, "b": 4}, keys, 0, 10, dlog, rng)
    rec2, _ = run_sum(b"query-2", {"a": 3, "b": 4}, keys, 0, 10, dlog, rng)
    with pytest.raises(InvalidProof):
        verify_contribution(rec2.query, rec2.committee_key, rec1.contributions[0])
    rec2.contributions[0] = rec1.contributions[0]
    verdict = verify_record(rec2)
    assert not verdict.ok


def test_out_of_range_contribution_is_caught(dlog: DiscreteLog) -> None:
    rng = SeededRng("range")
    keys, _ = run_dkg(3, 2, rng)
    record, _ = run_sum(b"q4", {"a": 3, "b": 4}, keys, 0, 10, dlog, rng)
    good = record.contributions[0]
    # swap in an encryption of 1000 while keeping the valid proof
    forged = dataclasses.replace(good, ciphertext=encrypt(record.committee_key, 1000, rng))
    record.contributions[0] = forged
    verdict = verify_record(record)
    assert not verdict.ok
    assert any("provider a" in f for f in verdict.failures)
    with pytest.raises(ValueError):
        provider_contribute(record.query, record.committee_key, "a", 11, rng)


def test_wrong_release_is_caught(dlog: DiscreteLog) -> None:
    rng = SeededRng("release")
    keys, _ = run_dkg(3, 2, rng)
    record, result = run_sum(b"q5", {"a": 3, "b": 4}, keys, 0, 10, dlog, rng)
    assert record.release is not None
    record.release = Release(result + 1, record.release.proof)
    assert not verify_record(record).ok


def test_tampered_aggregate_is_caught(dlog: DiscreteLog) -> None:
    rng = SeededRng("agg")
    keys, _ = run_dkg(3, 2, rng)
    record, _ = run_sum(b"q6", {"a": 3, "b": 4}, keys, 0, 10, dlog, rng)
    assert record.aggregate is not None
    record.aggregate = dataclasses.replace(record.aggregate, c2=record.aggregate.c2 + G)
    assert not verify_record(record).ok
