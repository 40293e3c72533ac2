"""Telemetry aggregators as a FastAPI app: the leader takes uploads and drives the helpers.

Endpoints (bodies are the binary messages of :mod:`tessera.protocol.telemetry`)::

    GET  /health                                            readiness
    POST /tasks/{task}/reports                  leader      UploadRequest -> UploadResponse
    POST /tasks/{task}/collections              leader (C)  CollectReq -> Collection
    POST /tasks/{task}/verify_key               helper (A)  SealedShare -> empty
    POST /tasks/{task}/aggregation_jobs/{job}/init    (A)   AggregationJobInit -> PrepareSteps
    POST /tasks/{task}/aggregation_jobs/{job}/continue (A)  PrepareSteps -> PrepareSteps
    POST /tasks/{task}/aggregate_shares         helper (A)  AggregateShareReq -> AggregateShareResp
    GET  /tasks/{task}/stats                    (C at the leader, A at a helper) JSON counters

(A) needs the aggregator credential, (C) the collector credential
(:mod:`tessera.node.telemetry.keys`); nothing else authenticates them, and no task runs
without them. A helper decides every report itself from its own verifier share and
the others' (:class:`~tessera.protocol.telemetry.preparation.Preparer`), returns the
same stored aggregate share to a repeated request, and refuses a batch that overlaps
an earlier one; so does the leader.

Prio3 reports are verified as they arrive: uploads from concurrent requests are
coalesced into aggregation jobs of up to ``max_job_size`` reports, and while the
helpers verify their shares of a job the leader verifies its own in a worker thread,
so the aggregators work in parallel. Poplar1 reports are kept until the collector
names an aggregation parameter (a tree level and candidate prefixes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tessera.crypto.rng import Rng, SystemRng
from tessera.errors import (
    BodyTooLarge,
    ConfigError,
    DecodeError,
    InvalidProof,
    NotFound,
    ProtocolError,
    TesseraError,
    TransportError,
    Unauthorized,
    http_status,
)
from tessera.node.telemetry import hpke
from tessera.node.telemetry.config import TaskConfig
from tessera.node.telemetry.keys import (
    PartyKeys,
    PublicConfig,
    aggregator_credential,
    collector_credential,
    load_verify_key,
    store_verify_key,
)
from tessera.node.telemetry.refusal import refusal
from tessera.node.telemetry.store import (
    BatchTotals,
    BucketDelta,
    TelemetryStore,
    open_telemetry_store,
)
from tessera.protocol.telemetry.collection import (
    Release,
    add_noise,
    bucket_of,
    check_collectable,
    check_report_time,
    report_checksum,
)
from tessera.protocol.telemetry.leader import LeaderJob
from tessera.protocol.telemetry.messages import (
    JOB_ID_SIZE,
    AggregateShareReq,
    AggregateShareResp,
    AggregationJobInit,
    BatchInterval,
    Collection,
    CollectReq,
    PrepareKind,
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
    aggregate_share_info,
    input_share_info,
    verify_key_info,
)
from tessera.protocol.telemetry.preparation import Preparer
from tessera.protocol.telemetry.task import NoiseBlock, vdaf_ctx

OCTET = "application/octet-stream"
#: Scope of report ids claimed at upload (Poplar1 also claims per aggregation parameter).
UPLOAD_SCOPE = b"upload"
#: Seconds a helper keeps the state of an unfinished aggregation job.
HELPER_JOB_TTL = 900.0


class _Gate:
    """Aggregation jobs run concurrently; a collection waits for them and excludes new ones."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._jobs = 0
        self._collecting = False
        #: Held while the leader hands the verify key to the helpers.
        self.keying = asyncio.Lock()

    @asynccontextmanager
    async def job(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._collecting)
            self._jobs += 1
        try:
            yield
        finally:
            async with self._cond:
                self._jobs -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._collecting)
            self._collecting = True
            await self._cond.wait_for(lambda: self._jobs == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._collecting = False
                self._cond.notify_all()


@dataclass
class _Waiting:
    reports: list[Report]
    future: asyncio.Future[dict[bytes, ReportStatus]]


class _Batcher:
    """Coalesces reports of concurrent uploads into aggregation jobs."""

    def __init__(
        self,
        run: Callable[[list[Report]], Awaitable[dict[bytes, ReportStatus]]],
        max_size: int,
        workers: int,
    ) -> None:
        self._run = run
        self._max = max_size
        self._queue: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._n_workers = workers

    async def submit(self, reports: list[Report]) -> dict[bytes, ReportStatus]:
        if not reports:
            return {}
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(self._n_workers)]
        fut: asyncio.Future[dict[bytes, ReportStatus]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(reports, fut))
        self._wake.set()
        return await fut

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            if not self._queue:
                self._wake.clear()
                continue
            batch: list[_Waiting] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].reports) <= self._max):
                item = self._queue.pop(0)
                batch.append(item)
                size += len(item.reports)
            if not self._queue:
                self._wake.clear()
            try:
                result = await self._run([r for w in batch for r in w.reports])
            except Exception as exc:  # delivered to every waiting upload
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            for w in batch:
                if not w.future.done():
                    w.future.set_result(result)

    async def close(self) -> None:
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await t


@dataclass
class _HelperJob:
    preparer: Preparer
    buckets: dict[bytes, int]
    created: float


@dataclass
class TaskRuntime:
    """Everything one aggregator holds for one task."""

    config: TaskConfig
    agg_id: int
    store: TelemetryStore
    keys: PartyKeys
    verify_key: bytes | None
    vdaf: Any = None
    ctx: bytes = b""
    noise: list[NoiseBlock] | None = None
    gate: _Gate = field(default_factory=_Gate)
    stats: Counter[str] = field(default_factory=Counter)
    helper_jobs: dict[bytes, _HelperJob] = field(default_factory=dict)
    batcher: _Batcher | None = None
    #: Helpers known to hold the leader's verify key.
    keyed_helpers: set[int] = field(default_factory=set)
    _peers: dict[int, PublicConfig] = field(default_factory=dict)
    _collector: PublicConfig | None = None

    def __post_init__(self) -> None:
        self.vdaf = self.config.vdaf()
        self.ctx = vdaf_ctx(self.config.task_id)
        self.noise = self.config.dp.noise(self.config.vdaf_spec)

    @property
    def task_id(self) -> bytes:
        return self.config.task_id

    @property
    def shares(self) -> int:
        return len(self.config.aggregators)

    # -- the other parties' published configurations, read when first needed ---------

    def peer(self, agg_id: int) -> PublicConfig:
        """Aggregator ``agg_id``'s public configuration (:class:`ConfigError` if none yet)."""
        if agg_id not in self._peers:
            self._peers[agg_id] = self.config.aggregators[agg_id].public_config(self.task_id)
        return self._peers[agg_id]

    def collector(self) -> PublicConfig:
        """The collector's public configuration (:class:`ConfigError` if none yet)."""
        if self._collector is None:
            self._collector = self.config.collector.public_config(self.task_id)
        return self._collector

    # -- credentials -------------------------------------------------------------------

    def credential_for_helper(self, helper: int) -> str:
        """Leader: the aggregator credential it presents to ``helper``."""
        return aggregator_credential(
            self.keys.auth_private_key, self.peer(helper).auth_public_key, self.task_id, helper
        )

    def expected_credential(self) -> str:
        """What callers must present: the leader's credential at a helper, the collector's
        at the leader."""
        try:
            if self.agg_id == 0:
                peer = self.collector().auth_public_key
                return collector_credential(self.keys.auth_private_key, peer, self.task_id)
            leader = self.peer(0).auth_public_key
            return aggregator_credential(
                self.keys.auth_private_key, leader, self.task_id, self.agg_id
            )
        except ConfigError as exc:
            raise Unauthorized(f"cannot authenticate callers yet: {exc}") from exc

    def require_verify_key(self) -> bytes:
        if self.verify_key is None:
            raise ProtocolError("this helper has not received the leader's verify key yet")
        return self.verify_key

    def allows(self, scope: bytes, previous: list[Release]) -> bool:
        """Whether reports may still join a bucket with these earlier releases.

        Uploads are refused once a bucket was released at all; aggregation under a
        parameter is allowed while the VDAF's ``is_valid`` accepts it after the releases.
        """
        if scope == UPLOAD_SCOPE or not previous:
            return not previous
        vdaf = self.vdaf
        ok: bool = vdaf.is_valid(
            vdaf.decode_agg_param(scope), [vdaf.decode_agg_param(p) for _, p in previous]
        )
        return ok

    def merge(self, agg_param: bytes, encoded: Sequence[bytes]) -> bytes:
        """Sum of encoded aggregate shares."""
        vdaf = self.vdaf
        param = vdaf.decode_agg_param(agg_param)
        out: bytes = vdaf.encode_agg_share(
            vdaf.merge(param, [vdaf.decode_agg_share(param, e) for e in encoded])
        )
        return out


class AggregatorNode:
    """Aggregator ``agg_id`` of one or more tasks (``agg_id == 0`` is the leader)."""

    def __init__(
        self,
        configs: Sequence[TaskConfig],
        agg_id: int,
        *,
        rng: Rng | None = None,
        clock: Callable[[], float] = time.time,
        max_job_size: int = 256,
        job_workers: int = 2,
        timeout: float = 300.0,
    ) -> None:
        if not configs:
            raise ConfigError("an aggregator needs at least one task")
        self.agg_id = agg_id
        self.rng: Rng = rng or SystemRng()
        self.clock = clock
        self.max_job_size = max_job_size
        self.job_workers = job_workers
        self.timeout = timeout
        self.tasks: dict[bytes, TaskRuntime] = {}
        stores: dict[str, TelemetryStore] = {}
        urls = set()
        for cfg in configs:
            if not 0 <= agg_id < len(cfg.aggregators):
                raise ConfigError(f"{cfg.path}: no aggregator #{agg_id}")
            me = cfg.aggregators[agg_id]
            urls.add(me.url)
            if me.state_dir is None:
                raise ConfigError(f"{cfg.path}: aggregator #{agg_id} has no state_dir")
            if cfg.task_id in self.tasks:
                raise ConfigError(f"task {cfg.task_id_hex} configured twice")
            # This aggregator's own keys, made here on first start; only the public
            # configuration is written outside its state directory.
            keys = me.keys(cfg.task_id)
            verify_key = load_verify_key(me.state_dir)
            if agg_id == 0 and verify_key is None:
                verify_key = store_verify_key(me.state_dir, secrets.token_bytes(32))
            key = me.store_location
            if key not in stores:
                stores[key] = open_telemetry_store(key)
            self.tasks[cfg.task_id] = TaskRuntime(
                config=cfg, agg_id=agg_id, store=stores[key], keys=keys, verify_key=verify_key
            )
        if len(urls) != 1:
            raise ConfigError(f"aggregator #{agg_id} has different urls across tasks: {urls}")
        self.url = urls.pop()
        self._stores = list(stores.values())
        self._http: httpx.AsyncClient | None = None

    @property
    def is_leader(self) -> bool:
        return self.agg_id == 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        self._http = httpx.AsyncClient(timeout=self.timeout, limits=limits)
        for rt in self.tasks.values():
            warm_up = getattr(rt.vdaf, "warm_up_batch", None)
            if warm_up is not None:
                # Load the compiled verification kernels before the first job needs them.
                await asyncio.to_thread(warm_up)
            if self.is_leader:
                rt.batcher = _Batcher(
                    functools.partial(self._upload_job, rt), self.max_job_size, self.job_workers
                )

    async def stop(self) -> None:
        for rt in self.tasks.values():
            if rt.batcher is not None:
                await rt.batcher.close()
        if self._http is not None:
            await self._http.aclose()
        for s in self._stores:
            s.close()

    # -- helpers -------------------------------------------------------------------------

    def task(self, task_hex: str) -> TaskRuntime:
        try:
            tid = bytes.fromhex(task_hex)
        except ValueError:
            tid = b""
        rt = self.tasks.get(tid)
        if rt is None:
            raise NotFound(f"unknown task {task_hex}")
        return rt

    @staticmethod
    def authorize(rt: TaskRuntime, header: str | None) -> None:
        """Refuse a request without the credential of the role that may make it."""
        expected = f"Bearer {rt.expected_credential()}"
        if header is None or not hmac.compare_digest(header.encode(), expected.encode()):
            role = "collector" if rt.agg_id == 0 else "aggregator"
            raise Unauthorized(f"missing or wrong {role} credential for this task")

    async def _post(self, rt: TaskRuntime, helper: int, path: str, body: bytes) -> bytes:
        assert self._http is not None
        url = rt.config.aggregators[helper].url + f"/tasks/{rt.config.task_id_hex}" + path
        try:
            token = rt.credential_for_helper(helper)
        except ConfigError as exc:
            raise TransportError(f"helper {helper}: {exc}") from exc
        headers = {"content-type": OCTET, "authorization": f"Bearer {token}"}
        try:
            resp = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"helper {helper} at {url} unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise refusal(resp, f"helper {helper}", prefix=f"helper {helper} refused: ")
        return resp.content

    async def _send_verify_keys(self, rt: TaskRuntime) -> None:
        """Leader: give every helper that lacks it the verify key, sealed to that helper.

        The key goes to the helpers only, over the aggregator channel, HPKE-sealed to
        each helper's own published key; a helper keeps the first key it receives.
        """
        assert rt.verify_key is not None
        for h in range(1, rt.shares):
            if h in rt.keyed_helpers:
                continue
            try:
                peer = rt.peer(h)
            except ConfigError as exc:
                raise TransportError(f"helper {h}: {exc}") from exc
            sealed = hpke.seal(peer.hpke_public_key, verify_key_info(rt.task_id, h), rt.verify_key)
            await self._post(
                rt, h, "/verify_key", SealedShare(peer.hpke_config_id, sealed).encode()
            )
            rt.keyed_helpers.add(h)

    def _now(self) -> int:
        return int(self.clock())

    def _precheck(
        self, rt: TaskRuntime, reports: Sequence[Report], scope: bytes
    ) -> tuple[list[Report], dict[bytes, ReportStatus]]:
        """Shape, time, duplicate, released-batch and replay checks; the reports that pass.

        ``scope`` is :data:`UPLOAD_SCOPE` for uploads, else the aggregation parameter.
        """
        cfg = rt.config
        status: dict[bytes, ReportStatus] = {}
        now = self._now()
        candidates: list[Report] = []
        for rep in reports:
            rid = rep.metadata.report_id
            if rid in status:
                continue
            if len(rep.sealed_shares) != rt.shares:
                status[rid] = ReportStatus.MALFORMED
                continue
            refused = check_report_time(rep.metadata.time, cfg.time_precision, now, cfg.time_bounds)
            if refused is not None:
                status[rid] = refused
            else:
                candidates.append(rep)
        unique: dict[bytes, Report] = {}
        for rep in candidates:
            # A later copy in the same request is answered as a replay by the caller.
            unique.setdefault(rep.metadata.report_id, rep)
        buckets = sorted({bucket_of(r.metadata.time, cfg.time_precision) for r in unique.values()})
        released = rt.store.released(rt.task_id, buckets)
        fresh: list[Report] = []
        for rid, rep in unique.items():
            if status.get(rid) is not None:
                continue
            previous = released[bucket_of(rep.metadata.time, cfg.time_precision)]
            if rt.allows(scope, previous):
                fresh.append(rep)
            else:
                status[rid] = ReportStatus.BATCH_COLLECTED
        claimed = rt.store.claim_report_ids(
            rt.task_id, scope, [r.metadata.report_id for r in fresh]
        )
        passing: list[Report] = []
        for rep, ok in zip(fresh, claimed, strict=True):
            if ok:
                passing.append(rep)
            else:
                status[rep.metadata.report_id] = ReportStatus.REPLAYED
        return passing, status

    def _open_and_start(
        self, rt: TaskRuntime, preparer: Preparer, items: Sequence[ReportShare]
    ) -> list[PrepareStep]:
        """Decrypt this aggregator's input shares and run ``verify_init`` (CPU-bound).

        The shares that open are verified together (:meth:`Preparer.start_batch`).
        """
        out: list[PrepareStep | None] = []
        opened: list[tuple[bytes, bytes, bytes]] = []
        for item in items:
            rid = item.metadata.report_id
            plain = _open_input_share(rt, item.metadata, item.public_share, item.sealed_share)
            if plain is None:
                out.append(PrepareStep(rid, PrepareKind.REJECT, reason=ReportStatus.UNDECRYPTABLE))
                continue
            out.append(None)
            opened.append((rid, item.public_share, plain))
        started = iter(preparer.start_batch(opened))
        return [step if step is not None else next(started) for step in out]

    def _accumulate(
        self,
        rt: TaskRuntime,
        preparer: Preparer,
        buckets: dict[bytes, int],
        report_ids: Sequence[bytes],
    ) -> set[bytes]:
        """Add finished reports to their buckets; the report ids refused (batch released)."""
        by_bucket: dict[int, list[bytes]] = {}
        for rid in report_ids:
            by_bucket.setdefault(buckets[rid], []).append(rid)
        deltas = {
            b: BucketDelta(preparer.aggregate(ids), len(ids), report_checksum(ids))
            for b, ids in by_bucket.items()
        }
        agg_param = preparer.agg_param_bytes
        refused = rt.store.accumulate(
            rt.task_id,
            agg_param,
            deltas,
            lambda a, b: rt.merge(agg_param, [a, b]),
            lambda previous: rt.allows(agg_param, previous),
        )
        return {rid for b in refused for rid in by_bucket[b]}

    # -- leader: uploads and aggregation jobs -------------------------------------------------

    async def upload(self, rt: TaskRuntime, body: bytes) -> UploadResponse:
        if not self.is_leader:
            raise NotFound("uploads go to the leader")
        req = UploadRequest.decode(body)
        passing, status = self._precheck(rt, req.reports, UPLOAD_SCOPE)
        if not rt.config.vdaf_spec.is_poplar1:
            assert rt.batcher is not None
            try:
                status.update(await rt.batcher.submit(passing))
            except Exception:
                # Nothing was aggregated: free the ids so the client can retry.
                rt.store.unclaim_report_ids(
                    rt.task_id, UPLOAD_SCOPE, [r.metadata.report_id for r in passing]
                )
                raise
        else:
            status.update(await asyncio.to_thread(self._keep_pending, rt, passing))
        outcomes = tuple(_outcomes(req.reports, status))
        for o in outcomes:
            rt.stats[o.status.label] += 1
        return UploadResponse(outcomes)

    def _keep_pending(
        self, rt: TaskRuntime, reports: Sequence[Report]
    ) -> dict[bytes, ReportStatus]:
        """Poplar1: check the leader share opens and decodes, then keep the report."""
        status: dict[bytes, ReportStatus] = {}
        rows: list[tuple[bytes, int, bytes]] = []
        for rep in reports:
            rid = rep.metadata.report_id
            plain = _open_input_share(rt, rep.metadata, rep.public_share, rep.sealed_shares[0])
            if plain is None:
                status[rid] = ReportStatus.UNDECRYPTABLE
                continue
            try:
                rt.vdaf.decode_public_share(rep.public_share)
                rt.vdaf.decode_input_share(0, plain)
            except ValueError:
                status[rid] = ReportStatus.MALFORMED
                continue
            rows.append((rid, rep.metadata.time, rep.encode()))
            status[rid] = ReportStatus.ACCEPTED
        rt.store.put_pending(rt.task_id, rows)
        return status

    async def _upload_job(
        self, rt: TaskRuntime, reports: list[Report]
    ) -> dict[bytes, ReportStatus]:
        async with rt.gate.job():
            return await self.run_job(rt, reports, b"")

    async def run_job(
        self, rt: TaskRuntime, reports: Sequence[Report], agg_param: bytes
    ) -> dict[bytes, ReportStatus]:
        """Verify ``reports`` with every helper and aggregate the accepted ones."""
        if len(rt.keyed_helpers) < rt.shares - 1:
            async with rt.gate.keying:
                await self._send_verify_keys(rt)
        verify_key = rt.verify_key
        assert verify_key is not None
        job_id = secrets.token_bytes(JOB_ID_SIZE)
        job_hex = job_id.hex()
        preparer = Preparer(rt.vdaf, verify_key, rt.ctx, 0, agg_param)
        inits = [
            AggregationJobInit(
                job_id,
                agg_param,
                tuple(ReportShare(r.metadata, r.public_share, r.sealed_shares[h]) for r in reports),
            ).encode()
            for h in range(1, rt.shares)
        ]
        sends = [
            asyncio.create_task(self._post(rt, h, f"/aggregation_jobs/{job_hex}/init", body))
            for h, body in zip(range(1, rt.shares), inits, strict=True)
        ]
        own_items = [ReportShare(r.metadata, r.public_share, r.sealed_shares[0]) for r in reports]
        try:
            own = await asyncio.to_thread(self._open_and_start, rt, preparer, own_items)
            answers = [PrepareSteps.decode(await t).steps for t in sends]
        finally:
            for t in sends:
                t.cancel()
        job = LeaderJob(preparer, own)
        rnd = 1
        while True:
            per_helper = await asyncio.to_thread(job.step, answers)
            if not any(per_helper):
                break
            replies = await asyncio.gather(
                *(
                    self._post(
                        rt,
                        h,
                        f"/aggregation_jobs/{job_hex}/continue",
                        PrepareSteps(job_id, rnd, tuple(steps)).encode(),
                    )
                    for h, steps in zip(range(1, rt.shares), per_helper, strict=True)
                )
            )
            answers = [PrepareSteps.decode(r).steps for r in replies]
            rnd += 1
        status = dict(job.status)
        buckets = {
            r.metadata.report_id: bucket_of(r.metadata.time, rt.config.time_precision)
            for r in reports
        }
        for rid in self._accumulate(rt, preparer, buckets, job.accepted):
            status[rid] = ReportStatus.BATCH_COLLECTED
        return status

    # -- leader: collection ---------------------------------------------------------------

    async def collect(self, rt: TaskRuntime, body: bytes) -> bytes:
        """Leader: release a batch once (a repeated request gets the same collection)."""
        if not self.is_leader:
            raise NotFound("collections go to the leader")
        req = CollectReq.decode(body)
        cfg = rt.config
        buckets = req.interval.buckets(cfg.time_precision)
        try:
            rt.vdaf.decode_agg_param(req.agg_param)
        except ValueError as exc:
            raise DecodeError(f"invalid aggregation parameter: {exc}") from exc
        async with rt.gate.exclusive():
            kept = rt.store.response(rt.task_id, req.interval, req.agg_param)
            if kept is not None:
                rt.stats["collections_repeated"] += 1
                return kept.response
            released = rt.store.released(rt.task_id, buckets)
            # Refuse early (before any work) if the batch or parameter is not allowed.
            check_collectable(
                rt.vdaf, req.interval, req.agg_param, list(released.values()), 1 << 62, 1
            )
            if cfg.vdaf_spec.is_poplar1:
                await self._aggregate_pending(rt, req.interval, req.agg_param)
            totals = rt.store.totals(rt.task_id, req.agg_param, buckets)
            check_collectable(
                rt.vdaf,
                req.interval,
                req.agg_param,
                list(released.values()),
                totals.report_count,
                cfg.min_batch_size,
            )
            share_req = AggregateShareReq(
                req.interval, req.agg_param, totals.report_count, totals.checksum
            ).encode()
            replies = await asyncio.gather(
                *(self._post(rt, h, "/aggregate_shares", share_req) for h in range(1, rt.shares))
            )
            helper_shares = [AggregateShareResp.decode(r).sealed_share for r in replies]

            def check(prev: dict[int, list[Release]], now: BatchTotals) -> None:
                check_collectable(
                    rt.vdaf,
                    req.interval,
                    req.agg_param,
                    list(prev.values()),
                    now.report_count,
                    cfg.min_batch_size,
                )
                if (now.report_count, now.checksum) != (totals.report_count, totals.checksum):
                    raise ProtocolError("leader aggregate changed during collection")

            def respond(final: BatchTotals) -> bytes:
                own = self._seal_aggregate(rt, req.interval, req.agg_param, final)
                return Collection(
                    req.interval, req.agg_param, final.report_count, (own, *helper_shares)
                ).encode()

            out = rt.store.release(rt.task_id, req.interval, req.agg_param, buckets, check, respond)
            rt.stats["collections"] += 1
            return out.response

    async def _aggregate_pending(
        self, rt: TaskRuntime, interval: BatchInterval, agg_param: bytes
    ) -> None:
        """Poplar1: aggregate the kept reports of ``interval`` under ``agg_param``."""
        blobs = rt.store.pending_reports(
            rt.task_id, interval.start, interval.start + interval.duration
        )
        reports = [Report.decode(b) for b in blobs]
        claimed = rt.store.claim_report_ids(
            rt.task_id, agg_param, [r.metadata.report_id for r in reports]
        )
        todo = [r for r, ok in zip(reports, claimed, strict=True) if ok]
        for i in range(0, len(todo), self.max_job_size):
            try:
                status = await self.run_job(rt, todo[i : i + self.max_job_size], agg_param)
            except Exception:
                # The rest was not aggregated: a retried collection picks it up again.
                rt.store.unclaim_report_ids(
                    rt.task_id, agg_param, [r.metadata.report_id for r in todo[i:]]
                )
                raise
            for st in status.values():
                rt.stats[f"level_{st.label}"] += 1

    def _seal_aggregate(
        self, rt: TaskRuntime, interval: BatchInterval, agg_param: bytes, totals: BatchTotals
    ) -> SealedShare:
        try:
            collector = rt.collector()
        except ConfigError as exc:
            raise ProtocolError(f"cannot seal the aggregate share: {exc}") from exc
        merged = rt.merge(agg_param, totals.agg_shares)
        param = rt.vdaf.decode_agg_param(agg_param)
        noised = add_noise(rt.vdaf, param, merged, rt.noise, self.rng)
        info = aggregate_share_info(rt.task_id, rt.agg_id, interval, agg_param)
        sealed = hpke.seal(collector.hpke_public_key, info, noised)
        return SealedShare(collector.hpke_config_id, sealed)

    # -- helper ------------------------------------------------------------------------------

    def _helper_only(self, what: str) -> None:
        if self.is_leader:
            raise NotFound(f"{what} go to helpers")

    def helper_verify_key(self, rt: TaskRuntime, body: bytes) -> None:
        """Helper: keep the verify key the leader sealed to this helper's key."""
        self._helper_only("verify keys")
        sealed = SealedShare.decode(body)
        if sealed.config_id != rt.keys.hpke_config_id:
            raise DecodeError("verify key sealed to another HPKE config")
        info = verify_key_info(rt.task_id, rt.agg_id)
        key = hpke.open_sealed(rt.keys.hpke_private_key, info, sealed.ciphertext)
        if len(key) != 32:
            raise DecodeError("a verify key is 32 bytes")
        state_dir = rt.config.aggregators[rt.agg_id].own_state_dir()
        kept = store_verify_key(state_dir, key)
        if not hmac.compare_digest(kept, key):
            raise ProtocolError("this helper already holds a different verify key for the task")
        rt.verify_key = kept

    async def helper_init(self, rt: TaskRuntime, job_hex: str, body: bytes) -> PrepareSteps:
        self._helper_only("aggregation jobs")
        req = AggregationJobInit.decode(body)
        if req.job_id.hex() != job_hex:
            raise DecodeError("job id in the path and the body differ")
        if req.job_id in rt.helper_jobs:
            raise ProtocolError("aggregation job already exists")
        verify_key = rt.require_verify_key()
        # Forget jobs the leader abandoned (their reports stay claimed: fail closed).
        stale = time.monotonic() - HELPER_JOB_TTL
        for jid in [j for j, job in rt.helper_jobs.items() if job.created < stale]:
            del rt.helper_jobs[jid]
        try:
            preparer = Preparer(rt.vdaf, verify_key, rt.ctx, rt.agg_id, req.agg_param)
        except ValueError as exc:
            raise DecodeError(f"invalid aggregation parameter: {exc}") from exc
        as_reports = [
            Report(s.metadata, s.public_share, (s.sealed_share,) * rt.shares)
            for s in req.report_shares
        ]
        passing, status = self._precheck(rt, as_reports, req.agg_param)
        ok = {r.metadata.report_id for r in passing}
        items = [s for s in req.report_shares if s.metadata.report_id in ok]
        started = await asyncio.to_thread(self._open_and_start, rt, preparer, items)
        by_id = {s.report_id: s for s in started}
        steps: list[PrepareStep] = []
        for o in _outcomes(as_reports, status):
            rid = o.report_id
            step = by_id.pop(rid, None)
            steps.append(step or PrepareStep(rid, PrepareKind.REJECT, reason=o.status))
        for st in steps:
            if st.kind is PrepareKind.REJECT:
                rt.stats[st.reason.label] += 1
        buckets = {
            s.metadata.report_id: bucket_of(s.metadata.time, rt.config.time_precision)
            for s in req.report_shares
        }
        rt.helper_jobs[req.job_id] = _HelperJob(preparer, buckets, time.monotonic())
        return PrepareSteps(req.job_id, 0, tuple(steps))

    async def helper_continue(self, rt: TaskRuntime, job_hex: str, body: bytes) -> PrepareSteps:
        self._helper_only("aggregation jobs")
        req = PrepareSteps.decode(body)
        if req.job_id.hex() != job_hex:
            raise DecodeError("job id in the path and the body differ")
        job = rt.helper_jobs.get(req.job_id)
        if job is None:
            raise NotFound(f"unknown aggregation job {job_hex}")
        # The helper combines its own verifier share with the others' and decides.
        answers = await asyncio.to_thread(job.preparer.respond, req.steps)
        finished = [a.report_id for a in answers if a.kind is PrepareKind.FINISHED]
        refused = self._accumulate(rt, job.preparer, job.buckets, finished)
        out: list[PrepareStep] = []
        for a in answers:
            if a.report_id in refused:
                a = PrepareStep(
                    a.report_id, PrepareKind.REJECT, reason=ReportStatus.BATCH_COLLECTED
                )
            if a.kind is PrepareKind.FINISHED:
                rt.stats["accepted"] += 1
            elif a.kind is PrepareKind.REJECT:
                rt.stats[a.reason.label] += 1
            out.append(a)
        if not any(job.preparer.in_flight(a.report_id) for a in out):
            del rt.helper_jobs[req.job_id]
        return PrepareSteps(req.job_id, req.round, tuple(out))

    async def helper_aggregate_share(self, rt: TaskRuntime, body: bytes) -> bytes:
        """Helper: release its share of a batch once; a repeat gets the same stored share."""
        self._helper_only("aggregate share requests")
        req = AggregateShareReq.decode(body)
        cfg = rt.config
        buckets = req.interval.buckets(cfg.time_precision)
        try:
            rt.vdaf.decode_agg_param(req.agg_param)
        except ValueError as exc:
            raise DecodeError(f"invalid aggregation parameter: {exc}") from exc

        def disagree(count: int) -> ProtocolError:
            return ProtocolError(
                f"aggregators disagree on the batch: leader has {req.report_count} reports, "
                f"this helper {count} (or the report sets differ)"
            )

        def check(prev: dict[int, list[Release]], totals: BatchTotals) -> None:
            check_collectable(
                rt.vdaf,
                req.interval,
                req.agg_param,
                list(prev.values()),
                totals.report_count,
                cfg.min_batch_size,
            )
            if (totals.report_count, totals.checksum) != (req.report_count, req.checksum):
                raise disagree(totals.report_count)

        def respond(totals: BatchTotals) -> bytes:
            sealed = self._seal_aggregate(rt, req.interval, req.agg_param, totals)
            return AggregateShareResp(sealed).encode()

        out = rt.store.release(rt.task_id, req.interval, req.agg_param, buckets, check, respond)
        if not out.fresh and (out.report_count, out.checksum) != (req.report_count, req.checksum):
            raise disagree(out.report_count)
        rt.stats["collections" if out.fresh else "collections_repeated"] += 1
        return out.response


def _open_input_share(
    rt: TaskRuntime, metadata: ReportMetadata, public_share: bytes, sealed: SealedShare
) -> bytes | None:
    """This aggregator's input share, or ``None`` if it is not for this aggregator's key
    (another HPKE config id), tampered with, or bound to another report."""
    if sealed.config_id != rt.keys.hpke_config_id:
        return None
    info = input_share_info(rt.task_id, rt.agg_id, metadata, public_share)
    try:
        return hpke.open_sealed(rt.keys.hpke_private_key, info, sealed.ciphertext)
    except (DecodeError, InvalidProof):
        return None


def _outcomes(reports: Sequence[Report], status: dict[bytes, ReportStatus]) -> list[ReportOutcome]:
    """One outcome per report in order; a repeated report id is a replay."""
    out: list[ReportOutcome] = []
    seen: set[bytes] = set()
    for rep in reports:
        rid = rep.metadata.report_id
        if rid in seen:
            out.append(ReportOutcome(rid, ReportStatus.REPLAYED))
        else:
            seen.add(rid)
            out.append(ReportOutcome(rid, status.get(rid, ReportStatus.MALFORMED)))
    return out


#: The largest request bodies accepted: one report, and a job or collection request.
MAX_REPORT_BYTES = 4 * 2**20
MAX_JOB_BYTES = 256 * 2**20


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


def create_app(node: AggregatorNode) -> FastAPI:
    """The FastAPI application of one aggregator."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await node.start()
        try:
            yield
        finally:
            await node.stop()

    app = FastAPI(title="tessera telemetry aggregator", lifespan=lifespan)

    @app.exception_handler(TesseraError)
    async def _tessera_error(request: Request, exc: TesseraError) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc), "kind": type(exc).__name__}, status_code=http_status(exc)
        )

    def octet(msg: Any) -> Response:
        return Response(content=msg.encode(), media_type=OCTET)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "aggregator": node.agg_id,
            "role": "leader" if node.is_leader else "helper",
            "tasks": [t.hex() for t in node.tasks],
        }

    @app.post("/tasks/{task_hex}/reports")
    async def upload(task_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        return octet(await node.upload(rt, await read_body(request, MAX_REPORT_BYTES)))

    @app.post("/tasks/{task_hex}/collections")
    async def collect(task_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        if not node.is_leader:
            raise NotFound("collections go to the leader")
        node.authorize(rt, request.headers.get("authorization"))
        body = await node.collect(rt, await read_body(request, MAX_JOB_BYTES))
        return Response(content=body, media_type=OCTET)

    @app.post("/tasks/{task_hex}/verify_key")
    async def verify_key(task_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        node._helper_only("verify keys")
        node.authorize(rt, request.headers.get("authorization"))
        node.helper_verify_key(rt, await read_body(request, MAX_REPORT_BYTES))
        return Response(content=b"", media_type=OCTET)

    @app.post("/tasks/{task_hex}/aggregation_jobs/{job_hex}/init")
    async def job_init(task_hex: str, job_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        node._helper_only("aggregation jobs")
        node.authorize(rt, request.headers.get("authorization"))
        return octet(await node.helper_init(rt, job_hex, await read_body(request, MAX_JOB_BYTES)))

    @app.post("/tasks/{task_hex}/aggregation_jobs/{job_hex}/continue")
    async def job_continue(task_hex: str, job_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        node._helper_only("aggregation jobs")
        node.authorize(rt, request.headers.get("authorization"))
        return octet(
            await node.helper_continue(rt, job_hex, await read_body(request, MAX_JOB_BYTES))
        )

    @app.post("/tasks/{task_hex}/aggregate_shares")
    async def aggregate_share(task_hex: str, request: Request) -> Response:
        rt = node.task(task_hex)
        node._helper_only("aggregate share requests")
        node.authorize(rt, request.headers.get("authorization"))
        body = await node.helper_aggregate_share(rt, await read_body(request, MAX_JOB_BYTES))
        return Response(content=body, media_type=OCTET)

    @app.get("/tasks/{task_hex}/stats")
    async def stats(task_hex: str, request: Request) -> dict[str, Any]:
        rt = node.task(task_hex)
        node.authorize(rt, request.headers.get("authorization"))
        return {"aggregator": node.agg_id, "counts": dict(rt.stats)}

    return app
