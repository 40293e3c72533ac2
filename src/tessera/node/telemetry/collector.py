"""Telemetry collector: ask the leader for a batch, open the aggregate shares, unshard.

For Poplar1 it finds the heavy hitters by walking the prefix tree one level per
collection: the children of every prefix counted at least ``threshold`` times become
the next level's candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tessera.crypto.poplar1 import Poplar1
from tessera.errors import ConfigError, DecodeError, ProtocolError, TransportError
from tessera.node.telemetry import hpke
from tessera.node.telemetry.config import TaskConfig
from tessera.node.telemetry.keys import collector_credential
from tessera.node.telemetry.refusal import refusal
from tessera.protocol.telemetry.collection import (
    next_candidates,
    poplar1_agg_param,
    unshard_signed,
)
from tessera.protocol.telemetry.messages import (
    BatchInterval,
    Collection,
    CollectReq,
    aggregate_share_info,
)
from tessera.protocol.telemetry.statistics import Description, describe
from tessera.protocol.telemetry.task import noise_per_coordinate

OCTET = "application/octet-stream"


@dataclass(frozen=True)
class CollectResult:
    """A released aggregate: the number of reports and the (noised) result."""

    interval: BatchInterval
    report_count: int
    result: Any


@dataclass(frozen=True)
class HeavyHitters:
    """Strings counted at least ``threshold`` times, with their (noised) counts."""

    threshold: int
    report_count: int
    hitters: dict[str, int]
    levels: list[dict[str, int]]


class TelemetryCollector:
    """The collector of one task (holds the collector's HPKE private key)."""

    def __init__(self, config: TaskConfig, *, timeout: float = 600.0) -> None:
        self.config = config
        self.vdaf: Any = config.vdaf()
        # The collector's own keys, made in its state directory on first use; the
        # aggregators read its published configuration to seal shares and check it.
        self._keys = config.collector.keys(config.task_id)
        leader = config.aggregators[0].public_config(config.task_id)
        self._token = collector_credential(
            self._keys.auth_private_key, leader.auth_public_key, config.task_id
        )
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TelemetryCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, interval: BatchInterval, agg_param: bytes = b"") -> CollectResult:
        """Release and decrypt the aggregate of ``interval``."""
        cfg = self.config
        url = f"{cfg.aggregators[0].url}/tasks/{cfg.task_id_hex}/collections"
        headers = {"content-type": OCTET, "authorization": f"Bearer {self._token}"}
        body = CollectReq(interval, agg_param).encode()
        try:
            resp = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"leader at {cfg.aggregators[0].url}: {exc}") from exc
        if resp.status_code != 200:
            raise refusal(resp, "leader")
        try:
            coll = Collection.decode(resp.content)
        except DecodeError as exc:
            raise TransportError(f"leader sent a malformed collection: {exc}") from exc
        if coll.interval != interval or coll.agg_param != agg_param:
            raise ProtocolError("the collection is for a different batch than requested")
        if len(coll.sealed_shares) != len(cfg.aggregators):
            raise ProtocolError("the collection lacks an aggregator's share")
        if any(s.config_id != self._keys.hpke_config_id for s in coll.sealed_shares):
            raise ProtocolError("an aggregate share is sealed to another HPKE config")
        shares = [
            hpke.open_sealed(
                self._keys.hpke_private_key,
                aggregate_share_info(cfg.task_id, i, interval, agg_param),
                sealed.ciphertext,
            )
            for i, sealed in enumerate(coll.sealed_shares)
        ]
        param = self.vdaf.decode_agg_param(agg_param)
        result = unshard_signed(self.vdaf, param, shares, coll.report_count)
        return CollectResult(interval, coll.report_count, result)

    def describe(self, interval: BatchInterval) -> Description:
        """Prio3Statistics: count, sum, mean, variance, median and quantiles of ``interval``,
        each with its 95% interval (:mod:`tessera.protocol.telemetry.statistics`)."""
        spec = self.config.vdaf_spec
        if spec.kind != "Prio3Statistics":
            raise ValueError(f"task runs {spec.kind}, not Prio3Statistics")
        res = self.collect(interval)
        blocks = self.config.dp.noise(spec)
        per = [] if blocks is None else noise_per_coordinate(blocks, len(res.result))
        aggregators = len(self.config.aggregators)
        variance = [aggregators * per[i].variance if per else 0.0 for i in (0, 1, 2)]
        return describe(
            res.result, res.report_count, spec.param("max_measurement"), noise_variance=variance
        )

    def count_prefixes(self, interval: BatchInterval, prefixes: list[str]) -> dict[str, int]:
        """Poplar1: the (noised) count of each prefix (all of one length)."""
        vdaf = self._poplar1()
        param = poplar1_agg_param(vdaf, prefixes)
        res = self.collect(interval, param)
        return dict(zip(sorted(set(prefixes)), res.result, strict=True))

    def heavy_hitters(self, interval: BatchInterval, threshold: int) -> HeavyHitters:
        """Poplar1: every string counted at least ``threshold`` times in ``interval``."""
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        vdaf = self._poplar1()
        candidates = ["0", "1"]
        levels: list[dict[str, int]] = []
        count = 0
        survivors: dict[str, int] = {}
        for level in range(vdaf.BITS):
            param = poplar1_agg_param(vdaf, candidates)
            res = self.collect(interval, param)
            count = res.report_count
            counts = dict(zip(candidates, res.result, strict=True))
            levels.append(counts)
            survivors = {p: c for p, c in counts.items() if c >= threshold}
            if not survivors:
                break
            if level < vdaf.BITS - 1:
                candidates = next_candidates(sorted(survivors))
        return HeavyHitters(threshold, count, survivors if levels else {}, levels)

    def release(
        self,
        interval: BatchInterval,
        *,
        threshold: int | None = None,
        prefixes: list[str] | None = None,
    ) -> dict[str, Any]:
        """What the task releases of ``interval``, as JSON (``tessera telemetry collect`` and
        the web console show this): Poplar1's heavy hitters at ``threshold``, or the counts
        of ``prefixes``; Prio3Statistics' description with its intervals; otherwise the
        (noised) aggregate. Always the task, its VDAF and the batch."""
        cfg = self.config
        out: dict[str, Any] = {
            "task": cfg.task_id_hex,
            "vdaf": cfg.vdaf_spec.kind,
            "start": interval.start,
            "duration": interval.duration,
        }
        if cfg.vdaf_spec.is_poplar1:
            if prefixes is not None:
                out["counts"] = self.count_prefixes(interval, prefixes)
                return out
            if threshold is None:
                raise ConfigError("Poplar1 needs a threshold or prefixes")
            hh = self.heavy_hitters(interval, threshold)
            out.update(
                report_count=hh.report_count,
                threshold=threshold,
                heavy_hitters=hh.hitters,
                levels=len(hh.levels),
            )
            return out
        if threshold is not None or prefixes is not None:
            raise ConfigError(f"a threshold or prefixes are for Poplar1, not {cfg.vdaf_spec.kind}")
        if cfg.vdaf_spec.kind == "Prio3Statistics":
            described = self.describe(interval)
            out.update(report_count=described.count, statistics=described.to_json())
            return out
        res = self.collect(interval)
        out.update(report_count=res.report_count, result=res.result)
        return out

    def stats(self) -> dict[str, int]:
        """The leader's counts for this task: reports by outcome, collections made and
        repeated (read with the collector's credential)."""
        cfg = self.config
        url = f"{cfg.aggregators[0].url}/tasks/{cfg.task_id_hex}/stats"
        try:
            resp = self._http.get(url, headers={"authorization": f"Bearer {self._token}"})
        except httpx.HTTPError as exc:
            raise TransportError(f"leader at {cfg.aggregators[0].url}: {exc}") from exc
        if resp.status_code != 200:
            raise refusal(resp, "leader")
        counts = resp.json().get("counts")
        if not isinstance(counts, dict):
            raise TransportError("the leader's stats carry no counts")
        return {str(k): int(v) for k, v in counts.items()}

    def _poplar1(self) -> Poplar1:
        if not isinstance(self.vdaf, Poplar1):
            raise ValueError(f"task runs {self.config.vdaf_spec.kind}, not Poplar1")
        return self.vdaf
