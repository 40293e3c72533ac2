"""Pure telemetry protocol: codecs, joint verification, batch rules, DP samplers."""

from __future__ import annotations

import ast
import statistics
from fractions import Fraction
from pathlib import Path

import pytest

from tessera.crypto.poplar1 import Poplar1
from tessera.crypto.rng import SeededRng
from tessera.errors import BatchCollected, BatchTooSmall, DecodeError, PolicyViolation
from tessera.protocol import telemetry as t
from tessera.protocol.telemetry import (
    AggregateShareReq,
    AggregationJobInit,
    BatchInterval,
    Collection,
    CollectReq,
    DpSpec,
    LeaderJob,
    PrepareKind,
    Preparer,
    PrepareStep,
    PrepareSteps,
    Report,
    ReportMetadata,
    ReportOutcome,
    ReportShare,
    ReportStatus,
    SealedShare,
    UploadRequest,
    UploadResponse,
    VdafSpec,
)
from tessera.protocol.telemetry.messages import _Message

RID = bytes(range(16))
META = ReportMetadata(RID, 1_700_000_000)
SEALED = SealedShare(0, b"\x01" * 60)
REPORT = Report(META, b"pub", (SEALED, SealedShare(0, b"\x02" * 50)))
STEPS = PrepareSteps(
    b"\x07" * 16,
    1,
    (
        PrepareStep(RID, PrepareKind.CONTINUE, b"share"),
        PrepareStep(b"\x01" * 16, PrepareKind.FINISHED),
        PrepareStep(b"\x02" * 16, PrepareKind.REJECT, reason=ReportStatus.INVALID_PROOF),
    ),
)
MESSAGES = [
    META,
    SEALED,
    REPORT,
    UploadRequest((REPORT, REPORT)),
    UploadResponse((ReportOutcome(RID, ReportStatus.REPLAYED),)),
    AggregationJobInit(b"\x09" * 16, b"", (ReportShare(META, b"pub", SEALED),)),
    STEPS,
    CollectReq(BatchInterval(60, 120), b"param"),
    AggregateShareReq(BatchInterval(0, 60), b"", 12, b"\x05" * 32),
    t.AggregateShareResp(SEALED),
    Collection(BatchInterval(0, 60), b"", 3, (SEALED, SEALED)),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_and_strictness(msg: _Message) -> None:
    encoded = msg.encode()
    assert type(msg).decode(encoded) == msg  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        type(msg).decode(encoded + b"\x00")  # type: ignore[attr-defined]
    with pytest.raises(DecodeError):
        type(msg).decode(encoded[:-1])  # type: ignore[attr-defined]


def test_decode_rejects_unknown_enum_and_huge_counts() -> None:
    bad = bytearray(UploadResponse((ReportOutcome(RID, ReportStatus.ACCEPTED),)).encode())
    bad[-1] = 200
    with pytest.raises(DecodeError, match="unknown report status"):
        UploadResponse.decode(bytes(bad))
    with pytest.raises(DecodeError, match="item count"):
        UploadRequest.decode(b"\xff\xff\xff\xff")
    one_share = Report(META, b"", (SEALED,)).encode()
    with pytest.raises(DecodeError, match="two input shares"):
        Report.decode(one_share)


def test_interval_buckets() -> None:
    assert BatchInterval(120, 180).buckets(60) == [120, 180, 240]
    with pytest.raises(PolicyViolation, match="aligned"):
        BatchInterval(30, 60).buckets(60)
    with pytest.raises(ValueError):
        BatchInterval(0, 0)


def test_checksum_is_order_free_and_xor_combines() -> None:
    ids = [bytes([i]) * 16 for i in range(5)]
    assert t.report_checksum(ids) == t.report_checksum(reversed(ids))
    assert t.xor_checksums(t.report_checksum(ids[:2]), t.report_checksum(ids[2:])) == (
        t.report_checksum(ids)
    )
    assert t.report_checksum(ids) != t.report_checksum(ids[:4])


def test_vdaf_spec_validation_and_measurements() -> None:
    with pytest.raises(ValueError, match="unknown VDAF"):
        VdafSpec.of("Prio3Median")
    with pytest.raises(ValueError, match="takes parameters"):
        VdafSpec.of("Prio3Sum")
    spec = VdafSpec.of("Prio3MultihotCountVec", length=4, max_weight=2, chunk_length=2)
    assert spec.parse_measurement("[1, 0, true, 0]") == [True, False, True, False]
    with pytest.raises(ValueError):
        spec.parse_measurement("[2, 0, 0, 0]")
    assert VdafSpec.of("Poplar1", bits=4).parse_measurement("0110") == (False, True, True, False)
    with pytest.raises(ValueError, match="exactly two aggregators"):
        VdafSpec.of("Poplar1", bits=4).instantiate(3)


# -- joint verification, in process ----------------------------------------------------

CTX = t.vdaf_ctx(b"\x01" * 32)
VK = b"\x11" * 32


def _shard(
    vdaf: t.AnyVdaf, measurement: object, rng: SeededRng
) -> tuple[bytes, bytes, list[bytes]]:
    nonce = rng.randbytes(16)
    public, shares = vdaf.shard(CTX, measurement, nonce, rng.randbytes(vdaf.RAND_SIZE))
    return (
        nonce,
        vdaf.encode_public_share(public),
        [vdaf.encode_input_share(s) for s in shares],
    )


def _run(
    vdaf: t.AnyVdaf, reports: list[tuple[bytes, bytes, list[bytes]]], agg_param: bytes = b""
) -> tuple[LeaderJob, list[Preparer]]:
    n = vdaf.SHARES
    leader = Preparer(vdaf, VK, CTX, 0, agg_param)
    helpers = [Preparer(vdaf, VK, CTX, i, agg_param) for i in range(1, n)]
    own = [leader.start(rid, pub, shares[0]) for rid, pub, shares in reports]
    answers = [
        [h.start(rid, pub, shares[i + 1]) for rid, pub, shares in reports]
        for i, h in enumerate(helpers)
    ]
    job = LeaderJob(leader, own)
    for _ in range(5):
        steps = job.step(answers)
        if not any(steps):
            break
        answers = [h.respond(s) for h, s in zip(helpers, steps, strict=True)]
    assert not job.pending
    return job, [leader, *helpers]


@pytest.mark.parametrize("shares", [2, 3])
def test_prio3_histogram_joint_verification_rejects_bad_proof(shares: int) -> None:
    rng = SeededRng(1)
    vdaf = VdafSpec.of("Prio3Histogram", length=5, chunk_length=2).instantiate(shares)
    good = [_shard(vdaf, m, rng) for m in (0, 3, 3, 4)]
    rid, pub, sh = _shard(vdaf, 1, rng)
    leader_share = bytearray(sh[0])
    leader_share[0] ^= 1  # a wrong measurement share breaks the proof
    bad = (rid, pub, [bytes(leader_share), *sh[1:]])
    job, preparers = _run(vdaf, [*good, bad])
    assert job.status[rid] is ReportStatus.INVALID_PROOF
    assert sorted(job.accepted) == sorted(r[0] for r in good)
    agg = [p.aggregate(job.accepted) for p in preparers]
    assert t.unshard_signed(vdaf, None, agg, 4) == [1, 0, 0, 2, 1]


def test_prio3_malformed_share_rejected() -> None:
    rng = SeededRng(2)
    vdaf = VdafSpec.of("Prio3Count").instantiate(2)
    rid, pub, sh = _shard(vdaf, 1, rng)
    job, _ = _run(vdaf, [(rid, pub, [sh[0][:-1], sh[1]])])
    assert job.status[rid] is ReportStatus.MALFORMED


def test_poplar1_two_round_verification_counts_prefixes() -> None:
    rng = SeededRng(3)
    vdaf = VdafSpec.of("Poplar1", bits=4).instantiate(2)
    assert isinstance(vdaf, Poplar1)
    words = ["0110", "0110", "0111", "1000"]
    reports = [_shard(vdaf, tuple(c == "1" for c in w), rng) for w in words]
    param = t.poplar1_agg_param(vdaf, ["01", "10", "11"])
    job, preparers = _run(vdaf, reports, param)
    assert len(job.accepted) == 4
    decoded = vdaf.decode_agg_param(param)
    agg = [p.aggregate(job.accepted) for p in preparers]
    assert t.unshard_signed(vdaf, decoded, agg, 4) == [3, 1, 0]


def test_leader_job_rejects_when_helper_rejects_or_is_silent() -> None:
    rng = SeededRng(4)
    vdaf = VdafSpec.of("Prio3Count").instantiate(2)
    reports = [_shard(vdaf, 1, rng) for _ in range(2)]
    leader = Preparer(vdaf, VK, CTX, 0, b"")
    own = [leader.start(rid, pub, sh[0]) for rid, pub, sh in reports]
    job = LeaderJob(leader, own)
    answer = [PrepareStep(reports[0][0], PrepareKind.REJECT, reason=ReportStatus.REPLAYED)]
    (steps,) = job.step([answer])
    assert {s.kind for s in steps} == {PrepareKind.REJECT}
    assert job.status[reports[0][0]] is ReportStatus.REPLAYED
    assert job.status[reports[1][0]] is ReportStatus.PEER_REJECTED


def test_check_collectable_rules() -> None:
    vdaf = VdafSpec.of("Prio3Count").instantiate(2)
    batch = BatchInterval(0, 120)
    t.check_collectable(vdaf, batch, b"", [[], []], 10, 10)
    with pytest.raises(BatchTooSmall, match="9 reports; the task's minimum batch size is 10"):
        t.check_collectable(vdaf, batch, b"", [[]], 9, 10)
    with pytest.raises(BatchCollected, match="already collected"):
        t.check_collectable(vdaf, batch, b"", [[], [(batch, b"")]], 10, 10)
    pop = VdafSpec.of("Poplar1", bits=3).instantiate(2)
    assert isinstance(pop, Poplar1)
    p0 = t.poplar1_agg_param(pop, ["0", "1"])
    p1 = t.poplar1_agg_param(pop, ["10", "11"])
    t.check_collectable(pop, batch, p1, [[(batch, p0)]], 5, 5)
    with pytest.raises(BatchCollected):
        t.check_collectable(pop, batch, p0, [[(batch, p0)]], 5, 5)


def test_a_later_level_over_an_overlapping_batch_is_refused() -> None:
    """Issue 19: levels over A+B then A alone would isolate B's reports by subtraction."""
    pop = VdafSpec.of("Poplar1", bits=3).instantiate(2)
    assert isinstance(pop, Poplar1)
    p1 = t.poplar1_agg_param(pop, ["00", "01", "10", "11"])
    p2 = t.poplar1_agg_param(pop, ["000", "001"])
    both, only_a = BatchInterval(0, 120), BatchInterval(0, 60)
    with pytest.raises(BatchCollected, match="overlaps the earlier collection"):
        t.check_collectable(pop, only_a, p2, [[(both, p1)]], 10, 5)
    with pytest.raises(BatchCollected, match="overlaps"):  # and the other way round
        t.check_collectable(pop, both, p2, [[(only_a, p1)], []], 10, 5)
    t.check_collectable(pop, both, p2, [[(both, p1)], [(both, p1)]], 10, 5)


def test_report_time_bounds() -> None:
    bounds = t.TimeBounds(expiry_age=600, task_end=10_000, tolerance=120)
    now = 5_000
    assert t.check_report_time(4_980, 60, now, bounds) is None
    assert t.check_report_time(4_981, 60, now, bounds) is ReportStatus.INVALID_TIME
    assert t.check_report_time(5_160, 60, now, bounds) is ReportStatus.INVALID_TIME
    assert t.check_report_time(4_380, 60, now, bounds) is ReportStatus.EXPIRED
    assert t.check_report_time(10_020, 60, 10_000, bounds) is ReportStatus.TASK_ENDED


def test_times_beyond_2_63_do_not_decode() -> None:
    with pytest.raises(DecodeError, match="2\\^63"):
        CollectReq.decode(b"\x80" + bytes(7) + (60).to_bytes(8, "big") + bytes(4))
    with pytest.raises(DecodeError, match="2\\^63"):
        ReportMetadata.decode(RID + b"\x80" + bytes(7))


def test_helper_never_takes_a_verifier_message_from_the_leader() -> None:
    """Issue 19: a continue step that is not the other shares is refused, not finished."""
    rng = SeededRng(8)
    vdaf = VdafSpec.of("Prio3Histogram", length=4, chunk_length=2).instantiate(2)
    rid, pub, sh = _shard(vdaf, 1, rng)
    helper = Preparer(vdaf, VK, CTX, 1, b"")
    helper.start(rid, pub, sh[1])
    forged = PrepareStep(rid, PrepareKind.CONTINUE, rng.randbytes(32))
    assert helper.respond([forged])[0].kind is PrepareKind.REJECT
    assert not helper.out_shares
    # A leader share that fails the proof is refused by the helper's own decision.
    helper.start(rid, pub, sh[1])
    fake = t.encode_verifier_shares([rng.randbytes(len(helper.own_share(rid)))])
    (answer,) = helper.respond([PrepareStep(rid, PrepareKind.CONTINUE, fake)])
    assert answer.kind is PrepareKind.REJECT and not helper.out_shares


# -- DP noise -----------------------------------------------------------------------------


def test_discrete_laplace_moments() -> None:
    rng = SeededRng(5)
    scale = Fraction(2)
    xs = [t.discrete_laplace(scale, rng) for _ in range(4000)]
    # Var of the discrete Laplace with parameter e^{-1/s}: 2 q / (1 - q)^2, q = e^{-1/2}.
    q = 2.718281828**-0.5
    var = 2 * q / (1 - q) ** 2
    assert abs(statistics.fmean(xs)) < 0.25
    assert abs(statistics.pvariance(xs) / var - 1) < 0.12


def test_discrete_gaussian_moments() -> None:
    rng = SeededRng(6)
    xs = [t.discrete_gaussian(Fraction(9), rng) for _ in range(4000)]
    assert abs(statistics.fmean(xs)) < 0.2
    assert abs(statistics.pvariance(xs) / 9 - 1) < 0.1


def test_noise_is_added_mod_p_and_signed_back() -> None:
    vdaf = VdafSpec.of("Prio3Histogram", length=3, chunk_length=2).instantiate(2)
    enc = vdaf.encode_agg_share([0, 5, 0])
    noised = t.add_noise(vdaf, None, enc, lambda rng: -2, SeededRng(7))
    zero = vdaf.encode_agg_share([0, 0, 0])
    assert t.unshard_signed(vdaf, None, [noised, zero], 5) == [-2, 3, -2]
    dp = DpSpec("discrete_laplace", epsilon=Fraction(1, 2))
    assert dp.sampler(VdafSpec.of("Prio3Count")) is not None
    assert DpSpec("none").sampler(VdafSpec.of("Prio3Count")) is None
    with pytest.raises(ValueError, match="positive epsilon"):
        DpSpec("discrete_laplace")


# -- purity -------------------------------------------------------------------------------

FORBIDDEN = {
    "socket", "asyncio", "http", "httpx", "urllib", "sqlite3", "time", "datetime",
    "fastapi", "uvicorn", "starlette", "requests", "aiohttp",
}  # fmt: skip


@pytest.mark.parametrize("package", ["crypto", "protocol"])
def test_pure_packages_import_no_io(package: str) -> None:
    # t is the package tessera/protocol/telemetry/: its parents[1] is tessera/.
    root = Path(t.__file__).resolve().parents[2] / package
    files = sorted(root.rglob("*.py"))
    assert files, root
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
