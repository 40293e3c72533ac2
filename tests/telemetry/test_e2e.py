"""End to end over real processes: 2 aggregators, 1,000 clients per VDAF, adversaries."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tessera.crypto.rng import SeededRng
from tessera.errors import BatchCollected, BatchTooSmall, PolicyViolation, TransportError
from tessera.node.telemetry import hpke
from tessera.node.telemetry.client import ReportBuilder, TelemetryClient, upload_async
from tessera.node.telemetry.collector import TelemetryCollector
from tessera.node.telemetry.config import TaskConfig
from tessera.protocol.telemetry import (
    BatchInterval,
    Report,
    ReportStatus,
    SealedShare,
    input_share_info,
)

from .conftest import PRECISION, T0, Deployment

CLIENTS = 1000


async def _upload_all(
    config: TaskConfig, reports: Sequence[Report], per_request: int = 1, concurrency: int = 32
) -> list[ReportStatus]:
    """Each simulated client uploads its own report(s) concurrently."""
    sem = asyncio.Semaphore(concurrency)
    chunks = [reports[i : i + per_request] for i in range(0, len(reports), per_request)]
    async with httpx.AsyncClient(timeout=120) as http:

        async def one(chunk: Sequence[Report]) -> list[ReportStatus]:
            async with sem:
                return [o.status for o in await upload_async(http, config, chunk)]

        results = await asyncio.gather(*(one(c) for c in chunks))
    return [s for r in results for s in r]


def _reports(config: TaskConfig, measurements: Sequence[Any], seed: int, t: int) -> list[Report]:
    builder = ReportBuilder(config)
    rng = SeededRng(seed)
    return [builder.report(m, t, rng) for m in measurements]


def _collect(config: TaskConfig, start: int, duration: int = PRECISION) -> Any:
    with TelemetryCollector(config) as c:
        return c.collect(BatchInterval(start, duration))


def _measurements(kind: str, rnd: random.Random) -> tuple[list[Any], Any]:
    if kind == "count":
        ms: list[Any] = [rnd.randrange(2) for _ in range(CLIENTS)]
        return ms, sum(ms)
    if kind == "sum":
        ms = [rnd.randrange(256) for _ in range(CLIENTS)]
        return ms, sum(ms)
    if kind == "sumvec":
        ms = [[rnd.randrange(4) for _ in range(8)] for _ in range(CLIENTS)]
        return ms, [sum(col) for col in zip(*ms, strict=True)]
    if kind == "histogram":
        ms = [min(int(rnd.expovariate(0.3)), 19) for _ in range(CLIENTS)]
        counts = Counter(ms)
        return ms, [counts[i] for i in range(20)]
    assert kind == "multihot"
    ms = []
    for _ in range(CLIENTS):
        ones = set(rnd.sample(range(10), rnd.randrange(4)))
        ms.append([i in ones for i in range(10)])
    return ms, [sum(m[i] for m in ms) for i in range(10)]


@pytest.mark.parametrize("kind", ["count", "sum", "sumvec", "histogram", "multihot"])
def test_prio3_thousand_clients(deployment: Deployment, kind: str) -> None:
    config = deployment.configs[kind]
    ms, truth = _measurements(kind, random.Random(kind))
    reports = _reports(config, ms, seed=zlib.crc32(kind.encode()), t=T0)
    statuses = asyncio.run(_upload_all(config, reports))
    assert statuses == [ReportStatus.ACCEPTED] * CLIENTS
    res = _collect(config, T0)
    assert res.report_count == CLIENTS
    if kind == "sum":  # discrete Laplace, scale 255 from each aggregator
        assert res.result != truth
        assert abs(res.result - truth) < 255 * 30
    elif kind == "histogram":  # discrete Gaussian, variance 1 from each aggregator
        assert all(abs(a - b) <= 12 for a, b in zip(res.result, truth, strict=True))
        assert res.result != truth  # 20 buckets all noise-free: probability ~1e-10
    else:
        assert res.result == truth
    # A repeated request gets the stored collection (same noise), not a second release;
    # a batch overlapping it is refused.
    again = _collect(config, T0)
    assert (again.report_count, again.result) == (res.report_count, res.result)
    with pytest.raises(BatchCollected, match="overlaps the earlier collection"):
        _collect(config, T0 - PRECISION, 2 * PRECISION)


def test_poplar1_heavy_hitters(deployment: Deployment) -> None:
    config = deployment.configs["poplar1"]
    rnd = random.Random(11)
    heavy = {"01100001": 300, "11110000": 180, "01100010": 120}
    words = [w for w, n in heavy.items() for _ in range(n)]
    while len(words) < CLIENTS:  # a long tail, each string rare
        words.append(format(rnd.randrange(256), "08b"))
    rnd.shuffle(words)
    truth = Counter(words)
    reports = _reports(config, [tuple(c == "1" for c in w) for w in words], seed=12, t=T0)
    statuses = asyncio.run(_upload_all(config, reports, per_request=10))
    assert statuses == [ReportStatus.ACCEPTED] * CLIENTS
    with TelemetryCollector(config) as c:
        hh = c.heavy_hitters(BatchInterval(T0, PRECISION), threshold=60)
        assert hh.report_count == CLIENTS
        expected = {w: n for w, n in truth.items() if n >= 60}
        assert set(expected) == set(heavy)
        assert hh.hitters == expected
        assert len(hh.levels) == 8
        # A level is released once: a repeat gets the stored counts, other prefixes of
        # the same level are refused.
        again = c.count_prefixes(BatchInterval(T0, PRECISION), ["0", "1"])
        assert again == hh.levels[0]
        with pytest.raises(BatchCollected, match="not allowed"):
            c.count_prefixes(BatchInterval(T0, PRECISION), ["0"])


# -- adversarial ------------------------------------------------------------------------


def _tamper_leader_share(builder: ReportBuilder, measurement: int, rng: SeededRng) -> Report:
    """A client that proves a measurement its shares do not encode (two buckets set)."""
    vdaf = builder.vdaf
    config = builder.config
    report = builder.report(measurement, T0 + PRECISION, rng)
    rid = report.metadata.report_id
    public, shares = vdaf.shard(builder.ctx, measurement, rid, rng.randbytes(vdaf.RAND_SIZE))
    meas = list(shares[0].meas_share)
    meas[(measurement + 1) % len(meas)] = (meas[(measurement + 1) % len(meas)] + 1) % (
        vdaf.field.MODULUS
    )
    bad = replace(shares[0], meas_share=meas)
    pub = vdaf.encode_public_share(public)
    sealed = []
    for i, share in enumerate([bad, *shares[1:]]):
        peer = config.aggregators[i].public_config(config.task_id)
        info = input_share_info(config.task_id, i, report.metadata, pub)
        ct = hpke.seal(peer.hpke_public_key, info, vdaf.encode_input_share(share))
        sealed.append(SealedShare(peer.hpke_config_id, ct))
    return Report(report.metadata, pub, tuple(sealed))


def test_adversarial_reports_are_refused_and_aggregate_unaffected(deployment: Deployment) -> None:
    config = deployment.configs["adversarial"]
    t = T0 + PRECISION
    builder = ReportBuilder(config)
    rng = SeededRng(21)
    honest = [builder.report(m, t, rng) for m in (0, 1, 1, 2, 3, 3, 3)]
    with TelemetryClient(config) as client:
        assert {o.status for o in client.upload(honest)} == {ReportStatus.ACCEPTED}

        invalid_proof = _tamper_leader_share(builder, 2, rng)
        good = builder.report(0, t, rng)
        helper_ct = bytearray(good.sealed_shares[1].ciphertext)
        helper_ct[-1] ^= 1
        tampered_share = replace(
            good,
            sealed_shares=(
                good.sealed_shares[0],
                SealedShare(good.sealed_shares[1].config_id, bytes(helper_ct)),
            ),
        )
        other = builder.report(1, t, rng)
        tampered_public = replace(other, public_share=b"\x00" * len(other.public_share))
        wrong_order = replace(
            builder.report(1, t, rng),
            sealed_shares=tuple(reversed(builder.report(1, t, rng).sealed_shares)),
        )
        future = builder.report(1, 2 * 10**10, rng)
        outcomes = client.upload(
            [invalid_proof, tampered_share, tampered_public, wrong_order, future, honest[0]]
        )
        assert [o.status for o in outcomes] == [
            ReportStatus.INVALID_PROOF,
            ReportStatus.UNDECRYPTABLE,
            ReportStatus.UNDECRYPTABLE,
            ReportStatus.UNDECRYPTABLE,
            ReportStatus.INVALID_TIME,
            ReportStatus.REPLAYED,
        ]
        # A replay of an accepted report, alone and twice in one request.
        again = builder.report(2, t, rng)
        assert [o.status for o in client.upload([honest[3], again, again])] == [
            ReportStatus.REPLAYED,
            ReportStatus.ACCEPTED,
            ReportStatus.REPLAYED,
        ]

    res = _collect(config, t)
    assert res.report_count == 8
    assert res.result == [1, 2, 2, 3]

    # A report for the collected batch is refused, and the batch is not released twice.
    with TelemetryClient(config) as client:
        late = builder.report(0, t, rng)
        assert [o.status for o in client.upload([late])] == [ReportStatus.BATCH_COLLECTED]
    assert _collect(config, t).result == [1, 2, 2, 3]


def test_small_batch_is_not_released_until_it_grows(deployment: Deployment) -> None:
    config = deployment.configs["adversarial"]
    t = T0 + 2 * PRECISION
    builder = ReportBuilder(config)
    rng = SeededRng(31)
    with TelemetryClient(config) as client:
        client.upload([builder.report(1, t, rng) for _ in range(4)])
        with pytest.raises(BatchTooSmall, match="4 reports; the task's minimum batch size is 5"):
            _collect(config, t)
        client.upload([builder.report(2, t, rng)])
    res = _collect(config, t)
    assert (res.report_count, res.result) == (5, [0, 4, 1, 0])


def test_bad_requests_get_clear_4xx(deployment: Deployment) -> None:
    config = deployment.configs["adversarial"]
    leader = config.aggregators[0].url
    helper = config.aggregators[1].url
    tid = config.task_id_hex
    r = httpx.post(f"{leader}/tasks/{tid}/reports", content=b"\x00\x00\x00\x05junk")
    assert r.status_code == 400 and "item count" in r.json()["error"]
    # an oversized report: refused (413) whether it declares its size or streams it
    big = b"\x00" * (4 * 2**20 + 1)
    r = httpx.post(f"{leader}/tasks/{tid}/reports", content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = httpx.post(f"{leader}/tasks/{tid}/reports", content=iter([big[: 2**20]] * 5))
    assert r.status_code == 413
    r = httpx.post(f"{leader}/tasks/{'00' * 32}/reports", content=b"")
    assert r.status_code == 404 and "unknown task" in r.json()["error"]
    r = httpx.post(f"{leader}/tasks/{tid}/collections", content=b"")
    assert r.status_code == 401
    r = httpx.post(f"{helper}/tasks/{tid}/aggregate_shares", content=b"")
    assert r.status_code == 401
    with pytest.raises(PolicyViolation, match="aligned"):
        _collect(config, T0 + 7)
    helper_as_leader = replace(config, aggregators=(config.aggregators[1],) * 2)
    with TelemetryClient(helper_as_leader) as client, pytest.raises(TransportError, match="404"):
        client.upload([ReportBuilder(config).report(1, T0, SeededRng(1))])
