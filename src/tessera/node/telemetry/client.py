"""Telemetry client: shard a measurement, seal each share to its aggregator, upload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from tessera.crypto.rng import Rng
from tessera.errors import DecodeError, TransportError
from tessera.node.telemetry import hpke
from tessera.node.telemetry.config import TaskConfig
from tessera.protocol.telemetry.collection import bucket_of
from tessera.protocol.telemetry.messages import (
    REPORT_ID_SIZE,
    Report,
    ReportMetadata,
    ReportOutcome,
    SealedShare,
    UploadRequest,
    UploadResponse,
    input_share_info,
)
from tessera.protocol.telemetry.task import vdaf_ctx

OCTET = "application/octet-stream"


class ReportBuilder:
    """Turns measurements into sealed reports for one task (no I/O)."""

    def __init__(self, config: TaskConfig) -> None:
        self.config = config
        self.vdaf: Any = config.vdaf()
        self.ctx = vdaf_ctx(config.task_id)
        # Each aggregator's published HPKE config (ConfigError if one has not published).
        self._configs = [a.public_config(config.task_id) for a in config.aggregators]

    def report(self, measurement: Any, time: int, rng: Rng) -> Report:
        """A sealed report of ``measurement`` at ``time`` (rounded down to the precision).

        ``rng`` supplies the report id (the VDAF nonce) and the sharding randomness;
        HPKE's ephemeral keys come from the operating system.
        """
        vdaf = self.vdaf
        report_id = rng.randbytes(REPORT_ID_SIZE)
        rand = rng.randbytes(vdaf.RAND_SIZE)
        encoded = self.config.vdaf_spec.encode_measurement(measurement)
        public_share, input_shares = vdaf.shard(self.ctx, encoded, report_id, rand)
        metadata = ReportMetadata(report_id, bucket_of(time, self.config.time_precision))
        public = vdaf.encode_public_share(public_share)
        sealed = tuple(
            SealedShare(
                peer.hpke_config_id,
                hpke.seal(
                    peer.hpke_public_key,
                    input_share_info(self.config.task_id, i, metadata, public),
                    vdaf.encode_input_share(share),
                ),
            )
            for i, (peer, share) in enumerate(zip(self._configs, input_shares, strict=True))
        )
        return Report(metadata, public, sealed)


def upload_url(config: TaskConfig) -> str:
    """Where reports go: the leader's upload endpoint."""
    return f"{config.aggregators[0].url}/tasks/{config.task_id_hex}/reports"


def _outcomes(resp: httpx.Response, reports: Sequence[Report]) -> list[ReportOutcome]:
    if resp.status_code != 200:
        raise TransportError(f"leader refused the upload ({resp.status_code}): {resp.text[:300]}")
    try:
        outcomes = list(UploadResponse.decode(resp.content).outcomes)
    except DecodeError as exc:
        raise TransportError(f"leader sent a malformed upload response: {exc}") from exc
    if [o.report_id for o in outcomes] != [r.metadata.report_id for r in reports]:
        raise TransportError("leader's upload response does not match the reports sent")
    return outcomes


class TelemetryClient:
    """Uploads reports to a task's leader over HTTP."""

    def __init__(self, config: TaskConfig, *, timeout: float = 120.0) -> None:
        self.config = config
        self.builder = ReportBuilder(config)
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TelemetryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload(self, reports: Sequence[Report]) -> list[ReportOutcome]:
        """Upload reports in one request; the leader's outcome for each."""
        body = UploadRequest(tuple(reports)).encode()
        try:
            resp = self._http.post(
                upload_url(self.config), content=body, headers={"content-type": OCTET}
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"leader at {self.config.aggregators[0].url}: {exc}") from exc
        return _outcomes(resp, reports)

    def submit(self, measurements: Sequence[Any], time: int, rng: Rng) -> list[ReportOutcome]:
        """Shard, seal and upload one report per measurement."""
        return self.upload([self.builder.report(m, time, rng) for m in measurements])


async def upload_async(
    http: httpx.AsyncClient, config: TaskConfig, reports: Sequence[Report]
) -> list[ReportOutcome]:
    """Upload reports with an async HTTP client (many simulated clients at once)."""
    body = UploadRequest(tuple(reports)).encode()
    try:
        resp = await http.post(upload_url(config), content=body, headers={"content-type": OCTET})
    except httpx.HTTPError as exc:
        raise TransportError(f"leader at {config.aggregators[0].url}: {exc}") from exc
    return _outcomes(resp, reports)
