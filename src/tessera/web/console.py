"""What the web console does over a running network, without HTTP: the analyst's key,
quotes, queries run in the background with their progress, the ledger and the market.

Reading views (ledger explorer, market, providers, trends, trainings: ``views``) use a
ledger client that signs nothing (the analyst's public address only). Acting (quote, run,
buy, train, rate, and the re-check, whose requests to a verifier are signed) needs the
analyst's key file
unlocked here, with its password, the way ``open_session`` does; the private key stays in
this process and is never part of an answer.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from web3 import Web3

from tessera.errors import (
    BudgetExceeded,
    ChainUnreachable,
    ConfigError,
    LedgerError,
    NotFound,
    QueryError,
    TesseraError,
)

Kind = Literal["sql", "histogram", "kaplan_meier", "regression"]
MAX_HISTORY = 200
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class QueryRequest:
    """One analysis as the console asks it: SQL, a histogram, a Kaplan–Meier curve or a
    linear regression; ``datasets`` (catalog ids) buys it from those listings only (the
    market view), empty asks every provider holding the table."""

    kind: Kind
    epsilon: float
    sql: str = ""
    table: str = ""
    column: str = ""
    bins: int = 10
    time_column: str = ""
    event_column: str = ""
    edges: tuple[float, ...] = ()
    y: str = ""
    x: tuple[str, ...] = ()
    datasets: tuple[int, ...] = ()

    def describe(self) -> str:
        on = f" (from dataset {', '.join(map(str, self.datasets))})" if self.datasets else ""
        return self._what() + on

    def _what(self) -> str:
        if self.kind == "sql":
            return self.sql
        if self.kind == "regression":
            return f"linear regression of {self.table}.{self.y} on {', '.join(self.x)}"
        if self.kind == "histogram":
            return f"histogram of {self.table}.{self.column}, {self.bins} bins"
        return f"Kaplan–Meier of {self.table}: {self.time_column}, event {self.event_column}"


@dataclass(frozen=True)
class TrainRequest:
    """A federated ``model`` (a built-in model's name, :data:`MODEL_KINDS`) of ``label``
    on ``features`` over ``table``'s providers, ``rounds`` rounds of DP-FedSGD (per-row
    clipping) at ε in all; ``classes`` and ``hidden`` for softmax and the MLP."""

    table: str
    features: tuple[str, ...]
    label: str
    rounds: int
    epsilon: float
    learning_rate: float = 12.0
    model: str = "logistic"
    classes: int = 2
    hidden: int = 16

    def describe(self) -> str:
        return (
            f"training: {MODEL_NAMES.get(self.model, self.model)} of {self.table}.{self.label} "
            f"on {', '.join(self.features)}, {self.rounds} rounds"
        )


MODEL_NAMES = {
    "linear": "linear regression",
    "logistic": "logistic regression",
    "softmax": "softmax regression",
    "mlp": "MLP",
}


@dataclass
class Job:
    job_id: str
    request: QueryRequest
    quote: dict[str, Any]
    started: float = field(default_factory=time.time)
    status: str = "running"  # running | done | failed
    progress: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    result: Any = None  # the QueryResult itself (the Python API's object), kept here
    training: TrainRequest | None = None

    def say(self, message: str) -> None:
        self.progress.append({"t": round(time.time() - self.started, 2), "message": message})

    def fail(self, exc: BaseException) -> None:
        """The job ends failed with ``exc``: a refusal's own message, anything else as an
        internal error, both shown on the page."""
        refusal = isinstance(exc, TesseraError)
        self.error = _ANSI.sub("", str(exc)) if refusal else f"internal error: {exc}"
        self.error_kind, self.status = type(exc).__name__, "failed"

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "query": self.training.describe() if self.training else self.request.describe(),
            "kind": self.request.kind,
            "epsilon": self.request.epsilon,
            "status": self.status,
            "started": self.started,
            "query_id": (self.payload or {}).get("query_id"),
            "training_id": (self.payload or {}).get("training_id"),
            "price": self.quote.get("price"),
            "verified": (self.payload or {}).get("verified"),
            "error": self.error,
        }


def plain(value: Any) -> Any:
    """A value as JSON (tuples as lists, non-finite floats as null, numpy as Python)."""
    from tessera.cli.network import _plain

    return _plain(value)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _pair(v: Any) -> tuple[float | None, float | None]:
    if isinstance(v, list | tuple) and len(v) == 2 and all(x is None or _number(x) for x in v):
        return v[0], v[1]
    return None, None


def flatten(
    label: str, value: Any, interval: Any, path: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Rows ``statistic, key, value, lo, hi`` of one released value, whatever its nesting."""
    if _number(value) or value is None:
        lo, hi = _pair(interval)
        return [{"statistic": label, "key": "/".join(path), "value": value, "lo": lo, "hi": hi}]
    rows: list[dict[str, Any]] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            sub = interval.get(k) if isinstance(interval, Mapping) else None
            rows += flatten(label, v, sub, (*path, str(k)))
    elif isinstance(value, list | tuple):
        same = isinstance(interval, list | tuple) and len(interval) == len(value)
        for i, v in enumerate(value):
            rows += flatten(label, v, interval[i] if same else None, (*path, str(i)))
    return rows


def curve_rows(label: str, value: Mapping[str, Any], interval: Any) -> list[dict[str, Any]]:
    """A survival curve's rows: ``n``, then the survival at each time point with the 95%
    interval of its noise (the curve's own Greenwood band is drawn in the chart)."""
    iv = interval if isinstance(interval, Mapping) else {}
    rows = flatten(label, value.get("n"), iv.get("n"), ("n",))
    raw = iv.get("curve")
    curve_iv: list[Any] = raw if isinstance(raw, list) else []
    for i, p in enumerate(value["curve"]):
        lo, hi = _pair(curve_iv[i].get("survival") if i < len(curve_iv) else None)
        rows.append(
            {
                "statistic": label,
                "key": f"S({p['time']:g})",
                "value": p["survival"],
                "lo": lo,
                "hi": hi,
            }
        )
    return rows


def coefficient_rows(model: Mapping[str, Any], intervals: Any) -> list[dict[str, Any]]:
    """A linear model's coefficients, each with its 95% confidence interval (± 1.96
    standard errors, the sampling uncertainty) and the 95% interval of the noise added to
    it (``noise_lo``, ``noise_hi``)."""
    coefs = model.get("coefficients") or {}
    se = model.get("std_errors") or {}
    iv = intervals.get("coefficients") if isinstance(intervals, Mapping) else None
    out = []
    for name, value in coefs.items():
        s: Any = se.get(name)
        nlo, nhi = _pair(iv.get(name) if isinstance(iv, Mapping) else None)
        ok = _number(s) and _number(value) and math.isfinite(float(s))
        out.append(
            {
                "name": name,
                "value": value,
                "std_error": s,
                "lo": value - 1.96 * s if ok else None,
                "hi": value + 1.96 * s if ok else None,
                "noise_lo": nlo,
                "noise_hi": nhi,
            }
        )
    return out


def chart_of(
    request: QueryRequest,
    values: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    intervals: Any = None,
) -> dict[str, Any]:
    """The data the page's chart draws, in the result's own numbers."""
    first = next(iter(values.values()), None)
    if request.kind == "regression" and isinstance(first, Mapping):
        return {"type": "coefficients", "values": coefficient_rows(first, intervals)}
    if isinstance(first, Mapping) and isinstance(first.get("curve"), list):
        points = [
            {
                "time": p["time"],
                "survival": p["survival"],
                "lo": p.get("ci95_low"),
                "hi": p.get("ci95_high"),
            }
            for p in first["curve"]
        ]
        return {
            "type": "survival",
            "values": [{"time": 0.0, "survival": 1.0, "lo": 1.0, "hi": 1.0}, *points],
        }
    if request.kind == "histogram" and isinstance(first, list):
        edges = list(request.edges)
        out = []
        for i, r in enumerate(x for x in rows):
            if i + 1 >= len(edges):
                break
            out.append(
                {
                    "bin_lo": edges[i],
                    "bin_hi": edges[i + 1],
                    "value": r["value"],
                    "lo": r["lo"],
                    "hi": r["hi"],
                }
            )
        return {"type": "histogram", "values": out}
    bars = [
        {
            "label": r["statistic"] + (f" [{r['key']}]" if r["key"] else ""),
            "value": r["value"],
            "lo": r["lo"],
            "hi": r["hi"],
        }
        for r in rows
        if r["value"] is not None and math.isfinite(float(r["value"]))
    ]
    return {"type": "bars", "values": bars}


class Console:
    """The console's state over the network in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        password: str | None = None,
        validation: Path | None = None,
        telemetry: Sequence[Path] = (),
    ) -> None:
        from tessera.ledger import Deployment, LedgerClient, RpcChain
        from tessera.node.config import load_peers
        from tessera.node.launcher import Network

        net = Network(state_dir)
        state = net.state
        if not state.get("committee") and state.get("committee") != 0:
            raise ConfigError(
                f"no running network in {net.dir} (tessera network up, or tessera demo --web)"
            )
        self.dir = net.dir
        self.state = state
        self.keystore = Path(state["analyst_keystore"])
        try:
            raw = json.loads(self.keystore.read_text(encoding="utf-8"))
            self.address = Web3.to_checksum_address("0x" + str(raw["address"]).removeprefix("0x"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.keystore}: cannot read the analyst's key file ({exc})"
            ) from exc
        self.peers = load_peers(Path(state["peers"]))
        self.names = {p.address: p.name for p in self.peers}
        self.names[self.address] = "analyst"
        deployment = Deployment.load(Path(state["deployment"]))
        # reads only: no signing key, the analyst's public address
        self.reader = LedgerClient(RpcChain(state["rpc"]), deployment, self.address)
        self.analyst: Any = None
        self._transport: Any = None
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()  # one query at a time: one analyst, one progress
        self._buyers: dict[tuple[int, ...], Any] = {}  # sessions restricted to listings
        from tessera.web.views import LogCache

        self.log_cache = LogCache()
        #: loss and accuracy per round of the trainings this console ran, by training id
        self.training_scores: dict[str, dict[int, dict[str, float | None]]] = {}
        #: the analyst's own validation table (CSV), scored after every training round
        self.validation: Any = None
        if validation is not None:
            import pandas as pd

            try:
                self.validation = pd.read_csv(validation)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--validation {validation}: {exc}") from exc
        from tessera.web.telemetry import TelemetryTasks

        #: the telemetry tasks this console collects as their collector (``--telemetry``)
        self.telemetry = TelemetryTasks(telemetry)
        if password is not None:
            self.unlock(password)

    # -- the key ---------------------------------------------------------------------
    @property
    def unlocked(self) -> bool:
        return self.analyst is not None

    def unlock(self, password: str) -> str:
        """Decrypt the analyst's key file here and open its session; a wrong password is a
        :class:`ConfigError` and leaves the console as it was."""
        from tessera.node.identity import load_keystore
        from tessera.node.launcher import session_for

        identity = load_keystore(self.keystore, password)
        with self._lock:
            if self.analyst is not None:
                return str(self.analyst.ledger.account)
            self.analyst, self._transport = session_for(self.state, self.peers, identity)
        return identity.address

    def _need_analyst(self) -> Any:
        if self.analyst is None:
            raise PermissionError("unlock the analyst's key file first (its password)")
        return self.analyst

    def close(self) -> None:
        for buyer in self._buyers.values():
            buyer.close()
        if self.analyst is not None:
            self.analyst.close()
        if self._transport is not None:
            self._transport.close()

    # -- quote and run -----------------------------------------------------------------
    def _statistics(self, request: QueryRequest) -> tuple[str, list[Any], QueryRequest]:
        """The table and the statistics a request runs (the same ones ``run`` is given)."""
        from tessera.analytics.distribution import Histogram
        from tessera.analytics.regression import LinearRegression
        from tessera.analytics.survival import KaplanMeier

        analyst = self._analyst_for(request)
        if request.kind == "sql":
            parsed, stats = analyst.sql_statistics(request.sql)
            return parsed.table, stats, request
        if request.kind == "histogram":
            edges = analyst.histogram_edges(request.table, request.column, request.bins)
            request = replace(request, edges=edges)
            return request.table, [Histogram(request.column, edges)], request
        bounds = analyst.bounds(request.table)
        if request.kind == "regression":
            for c in (request.y, *request.x):
                if c not in bounds:
                    raise QueryError(f"column {c!r} has no public bounds in {request.table!r}")
            return request.table, [LinearRegression(request.y, request.x)], request
        for c in (request.time_column, request.event_column):
            if c not in bounds:
                raise QueryError(f"column {c!r} has no public bounds in {request.table!r}")
        if len(request.edges) < 2 or list(request.edges) != sorted(set(request.edges)):
            raise QueryError("the curve's time points must be at least two, increasing")
        stat = KaplanMeier(request.time_column, request.event_column, request.edges)
        return request.table, [stat], request

    def quote(self, request: QueryRequest) -> dict[str, Any]:
        """Price, ε, passes and each dataset's budget left, before anything runs
        (``NetworkAnalyst.query_quote``); reads only."""
        analyst = self._analyst_for(request)
        table, stats, request = self._statistics(request)
        q = analyst.query_quote(table, stats, request.epsilon)  # δ: the API's default
        if request.datasets:
            missing = sorted(set(request.datasets) - {d.dataset_id for d in q.datasets})
            if missing:
                raise QueryError(
                    f"dataset {', '.join(map(str, missing))} does not hold a table {table!r}"
                )
        datasets = [
            {
                "provider": d.provider,
                "dataset_id": d.dataset_id,
                "price": d.price,
                "budget_remaining": d.budget_remaining,
                "enough": d not in q.short,
            }
            for d in q.datasets
        ]
        return {
            "table": table,
            "query": request.describe(),
            "epsilon": request.epsilon,
            "delta": q.delta,
            "rho": q.rho,
            "privacy_cost_micro_rho": q.cost_micro,
            "passes": q.passes,
            "kind": q.kind,
            "price": q.price,
            "lock_fee": self.reader.params().lock_fee,
            "datasets": datasets,
            "over_budget": bool(q.short),
            "message": (
                "over budget: "
                + ", ".join(
                    f"{d.provider} (dataset {d.dataset_id}) has {d.budget_remaining:,} µρ "
                    f"left, the query needs {q.cost_micro:,}"
                    for d in q.short
                )
                if q.short
                else None
            ),
            "edges": list(request.edges),
        }

    def start(self, request: QueryRequest, accepted_price: int) -> Job:
        """Check the quote again (the price accepted, every budget enough), then run the
        query in the background; its progress and result are the job's."""
        q = self.quote(request)
        if q["over_budget"]:
            raise BudgetExceeded(q["message"])
        if q["price"] != accepted_price:
            raise PriceChanged(
                f"the price is now {q['price']} credits, not {accepted_price}: quote again"
            )
        if request.kind == "histogram":  # the bins the quote priced: equal, over the bounds
            request = replace(request, edges=tuple(q["edges"]))
        job = Job(secrets.token_hex(8), request, q)
        with self._lock:
            self.jobs[job.job_id] = job
            while len(self.jobs) > MAX_HISTORY:
                self.jobs.pop(next(iter(self.jobs)))
        threading.Thread(
            target=self._work, args=(job,), name=f"console-{job.job_id}", daemon=True
        ).start()
        return job

    def _work(self, job: Job) -> None:
        job.say(
            "waiting for the analyst's previous query" if self._run_lock.locked() else "starting"
        )
        with self._run_lock:
            analyst = self._analyst_for(job.request)
            analyst.on_progress = job.say
            try:
                res = self._run(job.request)
                job.result = res
                job.payload = self.payload(job.request, res)
                job.status = "done"
                job.say("released and verified" if res.verified else "released, NOT verified")
            except Exception as exc:  # reported on the page, not a dead thread
                job.fail(exc)
            finally:
                analyst.on_progress = lambda _m: None

    def _analyst_for(self, request: QueryRequest) -> Any:
        """The analyst's session, or for a purchase from given listings the same session
        asking only the providers of those datasets (one ``NetworkAnalyst`` per set)."""
        from tessera.node.analyst import NetworkAnalyst
        from tessera.node.dlog_cache import discrete_log

        analyst = self._need_analyst()
        if not request.datasets:
            return analyst
        key = tuple(sorted(set(request.datasets)))
        with self._lock:
            if key in self._buyers:
                return self._buyers[key]
        count = self.reader.dataset_count()
        wanted = set()
        for d in key:
            if not 0 <= d < count:
                raise NotFound(f"no dataset {d} in the catalog")
            wanted.add(self.reader.dataset(d).provider)
        peers = [p for p in self.peers if p.role != "provider" or p.address in wanted]
        buyer = NetworkAnalyst(
            analyst.ledger, self._transport, peers, int(self.state["committee"]), discrete_log
        )
        with self._lock:
            self._buyers[key] = buyer
        return buyer

    def _run(self, r: QueryRequest) -> Any:
        a = self._analyst_for(r)
        if r.kind == "regression":
            return a.linear_regression(r.table, r.y, list(r.x), epsilon=r.epsilon)
        if r.kind == "sql":
            return a.sql(r.sql, epsilon=r.epsilon)
        if r.kind == "histogram":
            return a.histogram(r.table, r.column, bins=list(r.edges), epsilon=r.epsilon)
        return a.kaplan_meier(
            r.table, r.time_column, r.event_column, edges=r.edges, epsilon=r.epsilon
        )

    @staticmethod
    def payload(request: QueryRequest, res: Any) -> dict[str, Any]:
        from tessera.cli.network import result_json

        out = result_json(res)
        rows: list[dict[str, Any]] = []
        for label, v in out["values"].items():
            iv = out["intervals"].get(label)
            if isinstance(v, Mapping) and isinstance(v.get("curve"), list):
                rows += curve_rows(label, v, iv)  # one row per time point, not per field
            else:
                rows += flatten(label, v, iv)
        out["rows"] = rows
        first_iv = next(iter(out["intervals"].values()), None)
        out["chart"] = chart_of(request, out["values"], rows, first_iv)
        out["request"] = request.describe()
        return out

    # -- a training -------------------------------------------------------------------------
    def _training(self, request: TrainRequest) -> tuple[Any, Any, Any]:
        from tessera.learning import TrainingConfig
        from tessera.learning.models import build_model

        if len(set(request.features)) != len(request.features) or not request.features:
            raise QueryError("name at least one feature, each once")
        if request.label in request.features:
            raise QueryError("the label cannot be a feature too")
        try:
            config = TrainingConfig(
                rounds=request.rounds,
                unit="row",
                clip=1.0,
                epsilon=request.epsilon,
                server_learning_rate=request.learning_rate,
            )
            model = build_model(
                request.model,
                len(request.features),
                classes=request.classes,
                hidden=request.hidden,
            )
        except ValueError as exc:
            raise QueryError(str(exc)) from exc
        return model, config, self._need_analyst()

    def training_quote(self, request: TrainRequest) -> dict[str, Any]:
        """A training's price and ε before it starts (``NetworkAnalyst.training_quote``)."""
        model, config, analyst = self._training(request)
        q = analyst.training_quote(
            request.table, model, list(request.features), request.label, config
        )
        short = q.rounds_affordable() < q.rounds
        return {
            "rounds": q.rounds,
            "providers": list(q.providers),
            "price_per_round": q.price_per_round,
            "price": q.price,
            "epsilon": q.epsilon,
            "delta": q.delta,
            "rho_per_round": q.rho_per_round,
            "budget_left": dict(q.budget_left),
            "rounds_affordable": q.rounds_affordable(),
            "over_budget": short,
            "validation": self.validation is not None,
            "message": (
                f"over budget: only {q.rounds_affordable()} of {q.rounds} rounds fit every "
                "dataset's budget"
                if short
                else None
            ),
        }

    def start_training(self, request: TrainRequest, accepted_price: int) -> Job:
        """Quote again, then train in the background: every round a training query on the
        ledger, each round's model kept by CID (``<network>/models``) and chained in the
        model registry; the loss and accuracy on the validation table, if the console has
        one, are kept for the training view."""
        q = self.training_quote(request)
        if q["over_budget"]:
            raise BudgetExceeded(q["message"])
        if q["price"] != accepted_price:
            raise PriceChanged(
                f"the price is now {q['price']} credits, not {accepted_price}: quote again"
            )
        job = Job(secrets.token_hex(8), QueryRequest("sql", request.epsilon), q)
        job.training = request
        with self._lock:
            self.jobs[job.job_id] = job
        threading.Thread(
            target=self._train, args=(job, request), name=f"train-{job.job_id}", daemon=True
        ).start()
        return job

    def _train(self, job: Job, request: TrainRequest) -> None:
        from tessera.ledger.model_registry import ModelRegistry
        from tessera.node.model_store import LocalModelStore, ModelLog

        job.say("starting the training")
        with self._run_lock:
            analyst = self._need_analyst()
            analyst.on_progress = job.say
            try:
                model, config, _ = self._training(request)
                training_id = secrets.token_bytes(32)
                log = ModelLog(
                    LocalModelStore(self.dir / "models"),
                    training_id,
                    ModelRegistry(analyst.ledger),
                    analyst.committee,
                )
                val = None
                if self.validation is not None:
                    cols = [*request.features, request.label]
                    missing = [c for c in cols if c not in self.validation.columns]
                    if missing:
                        raise QueryError(f"the validation table has no {', '.join(missing)}")
                    val = (
                        self.validation[list(request.features)].to_numpy(dtype=float),
                        self.validation[request.label].to_numpy(dtype=float),
                    )
                res = analyst.train(
                    request.table,
                    model,
                    list(request.features),
                    request.label,
                    config,
                    validation=val,
                    observer=log,
                    training_id=training_id,
                )
                tid = "0x" + training_id.hex()
                rounds = [
                    {
                        "round": r.index + 1,
                        "loss": r.loss,
                        "accuracy": r.score,
                        "epsilon_spent": r.epsilon_spent,
                        "query_id": r.query_id,
                        "accepted": list(r.accepted),
                    }
                    for r in res.rounds
                ]
                self.training_scores[tid] = {
                    r["round"]: {"loss": r["loss"], "accuracy": r["accuracy"]} for r in rounds
                }
                job.result = res
                job.payload = plain(
                    {"training_id": tid, "query_id": None, "rounds": rounds, "verified": True}
                )
                job.status = "done"
                job.say(f"trained: {len(rounds)} rounds")
            except Exception as exc:  # reported on the page, not a dead thread
                job.fail(exc)
            finally:
                analyst.on_progress = lambda _m: None

    def job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFound(f"no query {job_id!r} in this console's history") from None

    def history(self) -> list[dict[str, Any]]:
        return [j.summary() for j in reversed(list(self.jobs.values()))]

    # -- the ledger explorer ----------------------------------------------------------
    def name_of(self, address: str) -> str:
        return self.names.get(Web3.to_checksum_address(address), "")

    def _query_on_ledger(self, query_id: str) -> tuple[bytes, Any]:
        """The query ``query_id`` (hex) names, as the ledger holds it: a malformed id is a
        :class:`QueryError`, one the ledger does not know :class:`NotFound`."""
        from tessera.ledger.client import query_id_bytes

        try:
            qid = query_id_bytes(query_id)
        except ValueError as exc:
            raise QueryError(f"not a query id: {exc}") from exc
        try:
            q = self.reader.query(qid)
        except ChainUnreachable:
            raise
        except LedgerError as exc:
            raise NotFound(f"no query {query_id} on the ledger ({exc})") from exc
        if int(q.analyst, 16) == 0:
            raise NotFound(f"no query {query_id} on the ledger")
        return qid, q

    def trail(self, query_id: str) -> dict[str, Any]:
        """A query's on-chain record: its parameters and status, every commitment (kind,
        author, digest, block, tx) in chain order, the verdicts and the settlement."""
        from tessera.ledger import COMMITMENT_KINDS
        from tessera.web.views import verdict_of

        qid, q = self._query_on_ledger(query_id)
        ev = self.reader.market.events
        since = max(0, q.submitted_block)
        timeline: list[dict[str, Any]] = []
        for log in ev.Committed().get_logs(from_block=since, argument_filters={"query_id": qid}):
            a = log["args"]
            timeline.append(
                {
                    "kind": COMMITMENT_KINDS[int(a["kind"])],
                    "author": Web3.to_checksum_address(a["author"]),
                    "name": self.name_of(a["author"]),
                    "digest": "0x" + bytes(a["digest"]).hex(),
                    "block": int(log["blockNumber"]),
                    "tx": "0x" + bytes(log["transactionHash"]).hex().removeprefix("0x"),
                }
            )
        verdicts = [
            verdict_of(self, log)
            for log in ev.VerdictPosted().get_logs(
                from_block=since, argument_filters={"query_id": qid}
            )
        ]
        settled = [
            {
                "passed": bool(log["args"]["passed"]),
                "paid": int(log["args"]["paid"]),
                "refunded": int(log["args"]["refunded"]),
                "slashed": int(log["args"]["slashed"]),
                "block": int(log["blockNumber"]),
            }
            for log in ev.QuerySettled().get_logs(
                from_block=since, argument_filters={"query_id": qid}
            )
        ]
        timeline.sort(key=lambda c: c["block"])
        return {
            "query_id": "0x" + qid.hex(),
            "analyst": q.analyst,
            "status": q.status,
            "price": q.price,
            "fee": q.fee,
            "privacy_cost_micro_rho": q.privacy_cost,
            "datasets": list(q.dataset_ids),
            "operations": sorted(q.operations),
            "kind": q.kind,
            "submitted_block": q.submitted_block,
            "deadline": q.deadline,
            "verifiers": [
                {"address": v, "name": self.name_of(v)} for v in self.reader.verifiers_of(qid)
            ],
            "timeline": timeline,
            "verdicts": verdicts,
            "settlement": settled[0] if settled else None,
            "cheaters": [{"address": c, "name": self.name_of(c)} for c in q.cheaters],
        }

    def verify(self, query_id: str) -> dict[str, Any]:
        """``tessera verify``'s re-check, here and now: the query's public record fetched
        from a verifier and checked in this process (every proof, the on-chain trail),
        next to the ledger's status and the verifiers' own verdicts."""
        from tessera.cli.network import _recheck

        analyst = self._need_analyst()
        qid, q = self._query_on_ledger(query_id)
        started = time.perf_counter()
        recheck = _recheck(analyst, self._transport, qid, q)
        passed = q.status in ("passed", "completed") and bool(recheck.get("passed"))
        return {
            "query_id": "0x" + qid.hex(),
            "status": q.status,
            "verified": passed,
            "rechecked_here": recheck,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def participants(self) -> list[dict[str, Any]]:
        out = []
        for address, name in sorted(self.names.items(), key=lambda kv: kv[1]):
            p = self.reader.participant(address)
            out.append(
                {
                    "name": name,
                    "address": address,
                    "roles": sorted(p.roles),
                    "stake": p.stake,
                    "locks": p.locks,
                    "reputation": p.reputation,
                }
            )
        return out

    # -- the market --------------------------------------------------------------------
    def dataset(self, dataset_id: int) -> dict[str, Any]:
        if not 0 <= dataset_id < self.reader.dataset_count():
            raise NotFound(f"no dataset {dataset_id} in the catalog")
        ds = self.reader.dataset(dataset_id)
        return {
            "dataset_id": ds.dataset_id,
            "provider": ds.provider,
            "provider_name": self.name_of(ds.provider),
            "tags": list(ds.tags),
            "operations": sorted(ds.operations),
            "bounds": plain(ds.bounds),
            "min_cohort": ds.min_cohort,
            "allow_exact": ds.allow_exact,
            "budget_cap": ds.budget_cap,
            "budget_spent": ds.budget_spent,
            "budget_remaining": ds.budget_remaining,
            "price_per_query": ds.price_per_query,
            "price_per_training": ds.price_per_training,
            "node_share_bps": ds.node_share_bps,
            "active": ds.active,
            "queries": ds.queries,
            "revenue": ds.revenue,
            "buyers": ds.buyers,
            "rating": ds.rating,
            "rating_count": ds.rating_count,
        }

    def search(self, tag: str) -> list[dict[str, Any]]:
        ids = self.reader.search(tag) if tag else range(self.reader.dataset_count())
        return [self.dataset(i) for i in ids]

    def rate(self, query_id: str, dataset_id: int, stars: int) -> dict[str, Any]:
        from tessera.ledger.client import query_id_bytes

        analyst = self._need_analyst()
        try:
            qid = query_id_bytes(query_id)
        except ValueError as exc:
            raise QueryError(f"not a query id: {exc}") from exc
        self.dataset(dataset_id)  # a dataset the catalog has
        tx = analyst.ledger.rate(qid, dataset_id, stars)
        return {**self.dataset(dataset_id), "tx": tx.tx_hash, "stars": stars}

    def stats(self) -> dict[str, Any]:
        s = self.reader.stats()
        return plain(s)  # type: ignore[no-any-return]


class PriceChanged(LedgerError):
    """The price quoted is no longer the price (a listing changed between quote and run)."""
