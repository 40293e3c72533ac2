"""Issue 19 over real processes: DAP's batch, credential, key, time and input rules.

Each test is one finding of the issue; on the code before the fix each of them fails.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tessera.cli.telemetry import app
from tessera.crypto.rng import SeededRng
from tessera.errors import BatchCollected
from tessera.node.telemetry.client import ReportBuilder, TelemetryClient
from tessera.node.telemetry.collector import TelemetryCollector
from tessera.node.telemetry.config import write_task
from tessera.protocol.telemetry import (
    AggregateShareReq,
    AggregationJobInit,
    BatchInterval,
    CollectReq,
    PrepareKind,
    PrepareStep,
    PrepareSteps,
    Report,
    ReportShare,
    ReportStatus,
    SealedShare,
    UploadRequest,
    VdafSpec,
    encode_verifier_shares,
    poplar1_agg_param,
    report_checksum,
)

from .conftest import PRECISION, T0, TASK_END, Deployment, leader_credential, serve_exits


def _bits(word: str) -> tuple[bool, ...]:
    return tuple(c == "1" for c in word)


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}


def test_a_collector_cannot_isolate_a_report_by_differencing_batches(
    deployment: Deployment,
) -> None:
    """Finding 1: level 2 over A+B, then level 3 over A alone, would reveal B's one report."""
    config = deployment.configs["differencing"]
    a, b = T0 + 20 * PRECISION, T0 + 21 * PRECISION
    builder = ReportBuilder(config)
    rng = SeededRng(1901)
    with TelemetryClient(config) as client:
        crowd = client.upload([builder.report(_bits("0000"), a, rng) for _ in range(10)])
        victim = client.upload([builder.report(_bits("1011"), b, rng)])
    assert {o.status for o in crowd + victim} == {ReportStatus.ACCEPTED}
    level2 = [format(i, "03b") for i in range(8)]
    with TelemetryCollector(config) as collector:
        both = collector.count_prefixes(BatchInterval(a, 2 * PRECISION), level2)
        assert sum(both.values()) == 11
        with pytest.raises(BatchCollected, match="overlaps the earlier collection"):
            collector.count_prefixes(BatchInterval(a, PRECISION), ["0000", "0001"])
        with pytest.raises(BatchCollected, match="overlaps"):  # nor a wider batch
            collector.count_prefixes(BatchInterval(a, 3 * PRECISION), ["0000", "0001"])
        # The next level over the same batch is what the VDAF allows.
        level3 = collector.count_prefixes(BatchInterval(a, 2 * PRECISION), ["0000", "1011"])
        assert level3 == {"0000": 10, "1011": 1}

    # The helper enforces the rule itself, even for a leader that would not.
    vdaf = config.vdaf()
    param = poplar1_agg_param(vdaf, ["0000", "0001"])  # type: ignore[arg-type]
    req = AggregateShareReq(BatchInterval(a, PRECISION), param, 10, bytes(32))
    url = f"{config.aggregators[1].url}/tasks/{config.task_id_hex}/aggregate_shares"
    r = httpx.post(url, content=req.encode(), headers=_auth(leader_credential(config)))
    assert r.status_code == 409 and "overlaps" in r.json()["error"]


def test_the_collector_credential_is_not_the_aggregators(deployment: Deployment) -> None:
    """Finding 2: the collector's credential opens no helper endpoint, nor the reverse."""
    config = deployment.configs["credentials"]
    tid = config.task_id_hex
    helper = f"{config.aggregators[1].url}/tasks/{tid}"
    leader = f"{config.aggregators[0].url}/tasks/{tid}"
    with TelemetryCollector(config) as collector:
        collector_token = collector._token
    agg_token = leader_credential(config)
    assert collector_token != agg_token
    for path in ("/aggregation_jobs/" + "00" * 16 + "/init", "/aggregate_shares", "/verify_key"):
        r = httpx.post(helper + path, content=b"", headers=_auth(collector_token))
        assert r.status_code == 401, path
        assert "aggregator credential" in r.json()["error"]
    r = httpx.post(leader + "/collections", content=b"", headers=_auth(agg_token))
    assert r.status_code == 401 and "collector credential" in r.json()["error"]


def test_the_helper_decides_each_report_itself(deployment: Deployment) -> None:
    """Finding 2: a caller cannot make the helper take a share it did not verify."""
    config = deployment.configs["credentials"]
    t = T0 + 30 * PRECISION
    builder = ReportBuilder(config)
    rng = SeededRng(1902)
    honest = [builder.report(m, t, rng) for m in (0, 1, 2)]
    with TelemetryClient(config) as client:  # also hands the verify key to the helper
        assert {o.status for o in client.upload(honest)} == {ReportStatus.ACCEPTED}
    # Posing as the leader (with the aggregator credential): a job of two fresh reports,
    # continued with a forged verifier message and with forged leader shares.
    forged = [builder.report(3, t, rng) for _ in range(2)]
    job_id = rng.randbytes(16)
    init = AggregationJobInit(
        job_id,
        b"",
        tuple(ReportShare(r.metadata, r.public_share, r.sealed_shares[1]) for r in forged),
    )
    url = f"{config.aggregators[1].url}/tasks/{config.task_id_hex}/aggregation_jobs/{job_id.hex()}"
    headers = _auth(leader_credential(config))
    r = httpx.post(url + "/init", content=init.encode(), headers=headers)
    assert r.status_code == 200, r.text
    shares = {s.report_id: s.payload for s in PrepareSteps.decode(r.content).steps}
    assert len(shares) == 2
    first_id = forged[0].metadata.report_id
    fake_share = rng.randbytes(len(shares[forged[1].metadata.report_id]))
    steps = (
        PrepareStep(first_id, PrepareKind.CONTINUE, rng.randbytes(32)),  # a "message"
        PrepareStep(
            forged[1].metadata.report_id,
            PrepareKind.CONTINUE,
            encode_verifier_shares([fake_share]),
        ),
    )
    r = httpx.post(
        url + "/continue", content=PrepareSteps(job_id, 1, steps).encode(), headers=headers
    )
    assert r.status_code == 200, r.text
    answers = PrepareSteps.decode(r.content).steps
    assert [a.kind for a in answers] == [PrepareKind.REJECT, PrepareKind.REJECT]
    # Nothing unverified was added: the bucket is released with the honest reports only.
    with TelemetryCollector(config) as collector:
        res = collector.collect(BatchInterval(t, PRECISION))
    assert (res.report_count, res.result) == (3, [1, 1, 1, 0])


def test_keys_are_made_by_their_owners(deployment: Deployment, tmp_path: Path) -> None:
    """Finding 3: init writes a description; each party's secrets stay in its own directory."""
    res = CliRunner().invoke(app, ["init", str(tmp_path / "t"), "--json"])
    assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / "t").rglob("*")] == ["task.toml"]

    config = deployment.configs["credentials"]
    with TelemetryCollector(config):  # the collector makes its keys
        pass
    with TelemetryClient(config) as client:  # the first job hands the helper the verify key
        report = ReportBuilder(config).report(1, T0 + 32 * PRECISION, SeededRng(1907))
        assert client.upload([report])[0].status is ReportStatus.ACCEPTED
    root = config.path.parent
    secrets_of = {
        "agg0": json.loads((root / "agg0" / "keys.json").read_text()),
        "agg1": json.loads((root / "agg1" / "keys.json").read_text()),
        "collector": json.loads((root / "collector" / "keys.json").read_text()),
    }
    verify_key = (root / "agg0" / "verify.key").read_text().strip()
    assert (root / "agg1" / "verify.key").read_text().strip() == verify_key  # sent to it
    everything = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for rel, data in everything.items():
        owner = rel.parts[0]
        if owner not in ("agg0", "agg1"):
            assert verify_key.encode() not in data, rel
        for party, keys in secrets_of.items():
            for name in ("hpke_private_key", "auth_private_key"):
                if owner != party:
                    assert keys[name].encode() not in data, (rel, party, name)
    published = sorted(str(p) for p in everything if p.parts[0] == "public")
    assert published == ["public/agg0.json", "public/agg1.json", "public/collector.json"]
    for rel in published:
        assert set(json.loads(everything[Path(rel)])) == {
            "task_id", "hpke_config_id", "hpke_public_key", "auth_public_key",
        }  # fmt: skip
    assert oct((root / "agg1").stat().st_mode & 0o777) == "0o700"


def test_a_task_without_credentials_is_refused_at_start(tmp_path: Path) -> None:
    """Finding 4: no task runs unauthenticated (the old auth_token_file was optional)."""
    path = write_task(tmp_path / "t", VdafSpec.of("Prio3Count"), aggregator_ports=[8901, 8902],
                      min_batch_size=10)  # fmt: skip
    text = path.read_text()
    path.write_text(text.replace('public_config = "public/collector.json"\n', ""))
    res = serve_exits(path, 0)
    assert res.returncode == 19, res.stderr
    assert "without credentials" in res.stderr
    path.write_text(text.replace("[collector]", "[collector]\nauth_token_file = 'x'"))
    res = serve_exits(path, 1)
    assert res.returncode == 19 and "no longer supported" in res.stderr


def test_plain_http_to_a_remote_peer_is_refused(tmp_path: Path) -> None:
    """Finding 4: a bearer credential never travels in clear to a non-loopback host."""
    path = write_task(tmp_path / "t", VdafSpec.of("Prio3Count"), aggregator_ports=[8903, 8904],
                      min_batch_size=10)  # fmt: skip
    path.write_text(path.read_text().replace("http://127.0.0.1:8904", "http://192.0.2.7:8904"))
    res = serve_exits(path, 0)
    assert res.returncode == 19 and "not loopback" in res.stderr
    assert "allow_insecure_http_for_tests" in res.stderr


def test_a_lost_aggregate_share_response_can_be_retried(deployment: Deployment) -> None:
    """Finding 4: the helper answers a repeated request with the same stored share."""
    config = deployment.configs["credentials"]
    collector = TelemetryCollector(config)  # publishes its configuration, as it would first
    t = T0 + 31 * PRECISION
    builder = ReportBuilder(config)
    rng = SeededRng(1903)
    reports = [builder.report(m, t, rng) for m in (0, 3, 3, 2)]
    with TelemetryClient(config) as client:
        assert {o.status for o in client.upload(reports)} == {ReportStatus.ACCEPTED}
    interval = BatchInterval(t, PRECISION)
    checksum = report_checksum(r.metadata.report_id for r in reports)
    req = AggregateShareReq(interval, b"", len(reports), checksum).encode()
    url = f"{config.aggregators[1].url}/tasks/{config.task_id_hex}/aggregate_shares"
    headers = _auth(leader_credential(config))
    # the leader sends the reports to the helper in the background after the upload: until
    # the helper holds all four, it refuses (422, storing nothing); its first 200 is "lost"
    deadline = time.monotonic() + 60
    first = httpx.post(url, content=req, headers=headers)
    while first.status_code == 422 and time.monotonic() < deadline:
        assert "aggregators disagree on the batch" in first.text, first.text
        time.sleep(0.2)
        first = httpx.post(url, content=req, headers=headers)
    again = httpx.post(url, content=req, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    wrong = AggregateShareReq(interval, b"", len(reports) - 1, checksum).encode()
    assert httpx.post(url, content=wrong, headers=headers).status_code == 422
    # The collection the leader then makes uses the helper's stored share.
    with collector:
        res = collector.collect(interval)
    assert (res.report_count, res.result) == (4, [1, 0, 1, 2])


def test_report_times_are_bounded(deployment: Deployment) -> None:
    """Finding 4: reports expire, tasks end, and the future is bounded."""
    config = deployment.configs["ending"]
    builder = ReportBuilder(config)
    rng = SeededRng(1904)
    now = int(time.time()) // PRECISION * PRECISION
    end = TASK_END["ending"]
    times = [T0, now - 8 * 86_400, end, end + PRECISION, now + 2 * 3600]
    with TelemetryClient(config) as client:
        outcomes = client.upload([builder.report(1, when, rng) for when in times])
    assert [o.status for o in outcomes] == [
        ReportStatus.ACCEPTED,
        ReportStatus.EXPIRED,
        ReportStatus.TASK_ENDED,
        ReportStatus.TASK_ENDED,
        ReportStatus.INVALID_TIME,
    ]


def test_bad_inputs_are_4xx(deployment: Deployment) -> None:
    """Finding 4: an interval at 2^63 was a 500; a Poplar1 share under a wrong HPKE config
    id was accepted; and no mutation of a valid request is a 500."""
    config = deployment.configs["credentials"]
    tid = config.task_id_hex
    leader = f"{config.aggregators[0].url}/tasks/{tid}"
    helper = f"{config.aggregators[1].url}/tasks/{tid}"
    with TelemetryCollector(config) as collector:
        collector_headers = _auth(collector._token)
    huge = (1 << 63).to_bytes(8, "big") + (60).to_bytes(8, "big") + bytes(4)
    r = httpx.post(leader + "/collections", content=huge, headers=collector_headers)
    assert r.status_code == 400 and "2^63" in r.json()["error"]
    req = AggregateShareReq(BatchInterval(T0, PRECISION), b"", 1, bytes(32)).encode()
    bad = (1 << 63).to_bytes(8, "big") + req[8:]
    r = httpx.post(
        helper + "/aggregate_shares", content=bad, headers=_auth(leader_credential(config))
    )
    assert r.status_code == 400

    pop = deployment.configs["differencing"]
    builder = ReportBuilder(pop)
    rng = SeededRng(1905)
    good = builder.report(_bits("0101"), T0 + 40 * PRECISION, rng)
    first = good.sealed_shares[0]
    wrong_id = SealedShare((first.config_id + 1) % 256, first.ciphertext)
    moved = Report(good.metadata, good.public_share, (wrong_id, good.sealed_shares[1]))
    with TelemetryClient(pop) as client:
        assert [o.status for o in client.upload([moved])] == [ReportStatus.UNDECRYPTABLE]

    # Seeded mutations of valid bodies to every endpoint, with the right credential.
    t = T0 + 41 * PRECISION
    cb = ReportBuilder(config)
    report = cb.report(1, t, rng)
    bodies = {
        (leader + "/reports", None): UploadRequest((report,)).encode(),
        (leader + "/collections", "c"): CollectReq(BatchInterval(t, PRECISION), b"").encode(),
        (helper + "/aggregate_shares", "a"): req,
        (helper + "/verify_key", "a"): report.sealed_shares[1].encode(),
        (helper + "/aggregation_jobs/" + "11" * 16 + "/init", "a"): AggregationJobInit(
            b"\x11" * 16,
            b"",
            (ReportShare(report.metadata, report.public_share, report.sealed_shares[1]),),
        ).encode(),
    }
    agg_headers = _auth(leader_credential(config))
    mutate = random.Random(1906)
    with httpx.Client(timeout=60) as http:
        for (url, who), body in bodies.items():
            headers = {"a": agg_headers, "c": collector_headers}.get(who or "", {})
            for _ in range(40):
                data = bytearray(body)
                match mutate.randrange(3):
                    case 0:
                        data[mutate.randrange(len(data))] ^= 1 << mutate.randrange(8)
                    case 1:
                        del data[mutate.randrange(len(data)) :]
                    case _:
                        data[mutate.randrange(len(data))] = 0xFF
                r = http.post(url, content=bytes(data), headers=headers)
                assert r.status_code < 500, (url, r.status_code, r.text)
