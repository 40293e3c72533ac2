"""A training round as every role receives it, and its public record (pure).

* **The ticket.** :class:`TrainingTicket` is one round: the model and the digest of
  the parameters it starts from, the local training and the clipping, the privacy
  cost, the committee, the providers asked and every provider's public maximum of
  rows. Like a query's ticket (:mod:`tessera.protocol.query`), its hash names the
  round's query on the ledger, so every party works from the same one.
* **The trail.** What each party commits on-chain for a round (:func:`trail_digest`,
  :func:`round_decisions`), and :class:`RoundTranscript`, the round's public record
  the analyst hands a verifier; :func:`check_round` re-checks it from the ledger's
  trail alone (``tessera.node.roles.verifier``).

The messages between providers and nodes (sealed reports, seeds) are in
:mod:`tessera.protocol.training`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tessera.analytics.local import ColumnBounds
from tessera.crypto import prio3_l2
from tessera.crypto.prio3 import Prio3FixedPointBoundedL2VecSum
from tessera.dp.distributed import NoisePlan
from tessera.errors import DecodeError, InvalidProof, ProtocolError, QueryError
from tessera.learning import secure
from tessera.learning.config import (
    TrainingConfig,
    classes_of,
    fixed_point_for,
    sensitivity_of,
    vdaf_for,
)
from tessera.learning.contribution import ScoringPlan
from tessera.learning.fixed_point import FixedPoint
from tessera.learning.local import LocalConfig
from tessera.learning.models import Model
from tessera.learning.privacy import round_noise
from tessera.learning.rounds import server_update
from tessera.learning.serialize import decode_model, encode_model, model_from_spec, model_spec
from tessera.protocol.contribution import ContributionError, ScoreRecord
from tessera.protocol.query import (
    MAX_PROVIDERS,
    bounds_from_json,
    bounds_to_json,
    canonical_hash,
    check_query_id,
    ledger_query_id,
    only_fields,
    providers_from_json,
)
from tessera.protocol.training import SealedReport, report_digest
from tessera.protocol.wire import field, from_hex

# -- the ticket -------------------------------------------------------------------------

_TICKET_DOMAIN = b"tessera/train-ticket/v1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
#: The operation a training round is on the market (its price: the datasets' training price).
OPERATION = "federated_training"


@dataclass(frozen=True)
class TrainingTicket:
    """One round of a training: what to train, from which model, at what privacy cost."""

    training_id: bytes
    round_index: int
    table: str
    features: tuple[str, ...]
    label: str
    bounds: Mapping[str, ColumnBounds]  # the table's public bounds, as its providers publish
    model: Mapping[str, Any]  # :func:`tessera.learning.serialize.model_spec`
    model_digest: bytes  # SHA-256 of the encoded model the round starts from
    config: TrainingConfig
    #: every provider of the training and its public maximum of rows, by name: what the
    #: fixed point and the server step are computed from
    limits: tuple[tuple[str, int], ...]
    n: int
    t: int
    committee: int
    providers: tuple[tuple[str, str], ...]  # asked this round: (name, account), by name
    nonce: bytes
    analyst: str
    #: the round's contribution scoring, fixed before any report: the only subsets the
    #: nodes release (``train/release_subset``), charged in :attr:`rho`
    scoring: ScoringPlan | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.training_id) <= 64:
            raise QueryError("the training id must be 1 to 64 bytes")
        if not 0 <= self.round_index < self.config.rounds:
            raise QueryError(f"round {self.round_index} is not in [0, {self.config.rounds})")
        if not self.config.secure:
            raise QueryError("a round on the network is a secure aggregation")
        if not 1 <= self.t <= self.n or self.n < 2 * self.t - 1 or self.n < 2:
            raise QueryError(f"a committee of {self.n} with threshold {self.t}")
        if not self.limits or any(rows < 1 for _, rows in self.limits):
            raise QueryError("every provider's max_rows must be positive")
        if [n for n, _ in self.limits] != sorted({n for n, _ in self.limits}):
            raise QueryError("limits must name distinct providers, sorted by name")
        if not self.features or len(set(self.features)) != len(self.features):
            raise QueryError("the features must be distinct and at least one")
        if self.label in self.features:
            raise QueryError(f"the label {self.label!r} is also a feature")
        missing = [c for c in (*self.features, self.label) if c not in self.bounds]
        if missing:
            raise QueryError(f"no public bounds for column(s) {', '.join(missing)}")
        names = [name for name, _ in self.providers]
        if not names or names != sorted(set(names)):
            raise QueryError("providers must be distinct, sorted by name, at least one")
        unlimited = sorted(set(names) - set(self.max_rows_of))
        if unlimited:
            raise QueryError(f"no max_rows for provider(s) {', '.join(unlimited)}")
        for name, address in self.providers:
            if not _ADDRESS.fullmatch(address):
                raise QueryError(f"provider {name!r}: {address!r} is not an account address")
        if not _ADDRESS.fullmatch(self.analyst):
            raise QueryError(f"analyst: {self.analyst!r} is not an account address")
        if not 16 <= len(self.nonce) <= 64 or len(self.model_digest) != 32:
            raise QueryError("the nonce must be 16 to 64 bytes and the model digest 32")
        model = self.built_model()
        classes = classes_of(model)
        label = self.bounds[self.label]
        if classes is not None and (label.lo, label.hi) != (0, classes - 1):
            raise QueryError(
                f"the label {self.label!r} must have bounds (0, {classes - 1}) for "
                f"{classes} classes, not ({label.lo}, {label.hi})"
            )
        if getattr(model, "features", len(self.features)) != len(self.features):
            raise QueryError("the model's features are not the ticket's")
        if self.scoring is not None and self.scoring.providers != tuple(names):
            raise QueryError("the scoring plan's providers are not the round's")

    def built_model(self) -> Model:
        try:
            return model_from_spec(dict(self.model))
        except DecodeError as exc:
            raise QueryError(str(exc)) from exc

    @property
    def max_rows_of(self) -> dict[str, int]:
        return dict(self.limits)

    @property
    def max_rows(self) -> int:
        """The largest public maximum of rows among the training's providers."""
        return max(rows for _, rows in self.limits)

    @property
    def release_rho(self) -> float | None:
        """ρ of one release: the round's sum, and each subset sum of its scoring."""
        budget = self.config.budget()
        return None if budget is None else budget.rho_per_round

    @property
    def rho(self) -> float | None:
        """ρ the round charges every dataset (on the ledger and in the provider's store):
        its own release and, with a scoring plan, as many more as the plan puts any
        provider in (:meth:`~tessera.learning.contribution.ScoringPlan.most_releases`)."""
        rho = self.release_rho
        if rho is None or self.scoring is None:
            return rho
        return rho * (1 + self.scoring.most_releases())

    @property
    def delta(self) -> float:
        return self.config.delta

    @property
    def operations(self) -> set[str]:
        return {OPERATION}

    @cached_property
    def fixed_point(self) -> FixedPoint:
        return fixed_point_for(self.config, self.max_rows)

    @cached_property
    def vdaf(self) -> Prio3FixedPointBoundedL2VecSum:
        return vdaf_for(self.config, self.built_model().num_params, self.fixed_point, self.n)

    @cached_property
    def noise(self) -> NoisePlan | None:
        """Each node's noise for one release, or ``None`` without differential privacy."""
        rho = self.release_rho
        if rho is None:
            return None
        return round_noise(
            self.fixed_point,
            sensitivity_of(self.config, self.fixed_point),
            self.n,
            self.t,
            rho,
            self.vdaf.LENGTH,
            delta=self.config.delta,
        )

    def account_of(self, provider: str) -> str | None:
        return dict(self.providers).get(provider)

    @cached_property
    def ticket_hash(self) -> bytes:
        return canonical_hash(_TICKET_DOMAIN, self._body())

    @cached_property
    def query_id(self) -> bytes:
        """keccak256(the analyst's 20 bytes ‖ ticket hash), as the market names it."""
        return ledger_query_id(self.analyst, self.ticket_hash)

    def _body(self) -> dict[str, Any]:
        c = self.config
        scoring = {} if self.scoring is None else {"scoring": _plan_to_json(self.scoring)}
        return {
            **scoring,
            "training_id": self.training_id.hex(),
            "round": self.round_index,
            "table": self.table,
            "features": list(self.features),
            "label": self.label,
            "bounds": bounds_to_json(self.bounds),
            "model": dict(self.model),
            "model_digest": self.model_digest.hex(),
            "config": {
                "rounds": c.rounds,
                "providers_per_round": c.providers_per_round,
                "epochs": c.local.epochs,
                "learning_rate": c.local.learning_rate,
                "batch_size": c.local.batch_size,
                "unit": c.unit,
                "weighted": c.weighted,
                "clip": c.clip,
                "bits": c.bits,
                "epsilon": c.epsilon,
                "delta": c.delta,
                "server_learning_rate": c.server_learning_rate,
            },
            "limits": [list(p) for p in self.limits],
            "n": self.n,
            "t": self.t,
            "committee": self.committee,
            "providers": [list(p) for p in self.providers],
            "nonce": self.nonce.hex(),
            "analyst": self.analyst.lower(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self._body(), "query_id": self.query_id.hex()}

    @classmethod
    def from_json(cls, data: Any, where: str = "ticket") -> TrainingTicket:
        """Strictly decode a ticket; a ``query_id`` given must be the ticket's own hash."""
        known = {
            "query_id", "training_id", "round", "table", "features", "label", "bounds",
            "model", "model_digest", "config", "limits", "n", "t", "committee",
            "providers", "nonce", "analyst", "scoring",
        }  # fmt: skip
        data = only_fields(data, known, where)
        features = field(data, "features", list, where)
        if not all(isinstance(f, str) for f in features) or len(features) > 4096:
            raise DecodeError(f"{where}.features: expected a list of column names")
        providers = providers_from_json(data, where)
        limits = field(data, "limits", list, where)
        if len(limits) > MAX_PROVIDERS or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int
            for p in limits
        ):
            raise DecodeError(f"{where}.limits: expected a list of [name, max_rows] pairs")
        try:
            ticket = cls(
                training_id=from_hex(
                    field(data, "training_id", str, where), f"{where}.training_id"
                ),
                round_index=field(data, "round", int, where),
                table=field(data, "table", str, where),
                features=tuple(features),
                label=field(data, "label", str, where),
                bounds=bounds_from_json(data.get("bounds"), f"{where}.bounds"),
                model=field(data, "model", dict, where),
                model_digest=from_hex(
                    field(data, "model_digest", str, where), f"{where}.model_digest"
                ),
                config=_config_from_json(field(data, "config", dict, where), f"{where}.config"),
                limits=tuple((str(a), int(b)) for a, b in limits),
                n=field(data, "n", int, where),
                t=field(data, "t", int, where),
                committee=field(data, "committee", int, where),
                providers=providers,
                nonce=from_hex(field(data, "nonce", str, where), f"{where}.nonce"),
                analyst=field(data, "analyst", str, where),
                scoring=_plan_from_json(data.get("scoring"), f"{where}.scoring"),
            )
        except (QueryError, ValueError) as exc:
            raise DecodeError(f"{where}: {exc}") from exc
        check_query_id(data, ticket.query_id, where)
        return ticket


def _plan_to_json(plan: ScoringPlan) -> dict[str, Any]:
    return {
        "method": plan.method,
        "permutations": plan.permutations,
        "seed": plan.seed.hex(),
        "providers": list(plan.providers),
        "validation": plan.validation.hex(),
    }


def _plan_from_json(data: Any, where: str) -> ScoringPlan | None:
    if data is None:
        return None
    known = {"method", "permutations", "seed", "providers", "validation"}
    if not isinstance(data, dict) or set(data) != known:
        raise DecodeError(f"{where}: expected exactly the fields {sorted(known)}")
    providers = field(data, "providers", list, where)
    if len(providers) > MAX_PROVIDERS or not all(isinstance(p, str) for p in providers):
        raise DecodeError(f"{where}.providers: expected a list of names")
    try:
        return ScoringPlan(
            method=field(data, "method", str, where),
            permutations=field(data, "permutations", int, where),
            seed=from_hex(field(data, "seed", str, where), f"{where}.seed"),
            providers=tuple(providers),
            validation=bytes.fromhex(field(data, "validation", str, where)),
        )
    except (ContributionError, ValueError) as exc:
        raise DecodeError(f"{where}: {exc}") from exc


def _config_from_json(data: Mapping[str, Any], where: str) -> TrainingConfig:
    known = {
        "rounds", "providers_per_round", "epochs", "learning_rate", "batch_size", "unit",
        "weighted", "clip", "bits", "epsilon", "delta", "server_learning_rate",
    }  # fmt: skip
    if set(data) != known:
        raise DecodeError(f"{where}: expected exactly the fields {sorted(known)}")
    per_round = data["providers_per_round"]
    if per_round is not None:
        per_round = field(data, "providers_per_round", int, where)
    epsilon = data["epsilon"]
    if epsilon is not None:
        epsilon = field(data, "epsilon", float, where)
    if not isinstance(data["weighted"], bool):
        raise DecodeError(f"{where}.weighted: expected a boolean")
    return TrainingConfig(
        rounds=field(data, "rounds", int, where),
        providers_per_round=per_round,
        local=LocalConfig(
            field(data, "epochs", int, where),
            field(data, "learning_rate", float, where),
            field(data, "batch_size", int, where),
        ),
        secure=True,
        unit=field(data, "unit", str, where),
        weighted=data["weighted"],
        clip=field(data, "clip", float, where),
        bits=field(data, "bits", int, where),
        epsilon=epsilon,
        delta=field(data, "delta", float, where),
        server_learning_rate=field(data, "server_learning_rate", float, where),
    )


def model_digest(model: Model, params: Any) -> bytes:
    """SHA-256 of the model's canonical encoding (:func:`~tessera.learning.serialize.encode_model`,
    no metadata): what a ticket names as the round's starting point."""
    return hashlib.sha256(encode_model(model, params)).digest()


# -- the round's trail and its check --------------------------------------------------

_TRAIL_DOMAIN = b"tessera/train-trail/v1/"


def trail_digest(kind: str, query_id: bytes, body: Any) -> bytes:
    """SHA-256 of a round's on-chain commitment of ``kind`` over canonical JSON."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(_TRAIL_DOMAIN + kind.encode() + b"/" + query_id + text.encode()).digest()


def round_decisions(
    accepted: Sequence[str],
    excluded: Mapping[str, str],
    verifier_shares: Mapping[str, Sequence[bytes | None]],
    withheld: Iterable[str] = (),
) -> dict[str, Any]:
    """What a node commits on-chain as its ``aggregate`` when it has decided a round: the
    reports it accepted, those it refused and why, the providers whose committed report
    it left out as withheld (by name: the reasons are each node's own), and the hash of
    every verifier share it decided on (so the shares a verifier is shown can be checked
    against it)."""
    return {
        "accepted": sorted(accepted),
        "excluded": dict(sorted(excluded.items())),
        "withheld": sorted(withheld),
        "verifier_shares": {
            n: [None if v is None else hashlib.sha256(v).hexdigest() for v in vs]
            for n, vs in sorted(verifier_shares.items())
        },
    }


@dataclass(frozen=True)
class RoundTranscript:
    """A round's public record, as the analyst relayed it: what a verifier re-checks."""

    model: bytes  # the encoded model the round started from
    reports: Mapping[str, bytes]  # provider -> encoded sealed report
    verifier_shares: Mapping[str, tuple[bytes | None, ...]]  # provider -> per position
    decisions: Mapping[int, tuple[tuple[str, ...], Mapping[str, str]]]  # node -> (acc, excl)
    released: Mapping[int, bytes]  # node -> its noised aggregate share
    result: bytes  # the encoded model the analyst committed as the round's result
    #: providers whose committed report no node got (the analyst's reasons): left out, as
    #: every node locked in its decisions
    withheld: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: the round's contribution scores (a ticket with a scoring plan), and the validation
    #: set (scaled features, labels) they were computed on, for the verifiers to re-check
    scores: ScoreRecord | None = None
    validation: tuple[Any, Any] | None = None

    def subset_shares(self, position: int) -> list[tuple[tuple[str, ...], bytes]]:
        """The node at ``position`` (in index order)'s share of each subset released for
        the scores, the round's own sum (the record's first) left out."""
        if self.scores is None:
            return []
        rest = zip(self.scores.subsets[1:], self.scores.releases[1:], strict=True)
        if not self.scores.accepted:
            rest = zip(self.scores.subsets, self.scores.releases, strict=True)
        return [(s, shares[position]) for s, shares in rest if position < len(shares)]

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.scores is not None:
            extra["scores"] = self.scores.to_json()
        if self.validation is not None:
            x, y = self.validation
            extra["validation"] = {
                "x": [[float(v) for v in row] for row in x],
                # class indices stay integers: the verifier's loss is then the analyst's
                "y": [int(v) for v in y]
                if np.asarray(y).dtype.kind in "iub"
                else [float(v) for v in y],
            }
        return {
            **extra,
            "model": self.model.hex(),
            "reports": {n: r.hex() for n, r in sorted(self.reports.items())},
            "verifier_shares": {
                n: [None if v is None else v.hex() for v in vs]
                for n, vs in sorted(self.verifier_shares.items())
            },
            "decisions": {
                str(i): {"accepted": list(a), "excluded": dict(e)}
                for i, (a, e) in sorted(self.decisions.items())
            },
            "released": {str(i): s.hex() for i, s in sorted(self.released.items())},
            "result": self.result.hex(),
            "withheld": dict(sorted(self.withheld.items())),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> RoundTranscript:
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object")
        reports = _str_map(data.get("reports"), f"{where}.reports")
        shares_raw = data.get("verifier_shares")
        if not isinstance(shares_raw, dict):
            raise DecodeError(f"{where}.verifier_shares: expected an object")
        shares: dict[str, tuple[bytes | None, ...]] = {}
        for name, values in shares_raw.items():
            if not isinstance(values, list) or len(values) > 255:
                raise DecodeError(f"{where}.verifier_shares.{name}: expected a list")
            shares[str(name)] = tuple(
                None if v is None else from_hex(v, f"{where}.verifier_shares.{name}")
                for v in values
            )
        decisions_raw = data.get("decisions")
        if not isinstance(decisions_raw, dict):
            raise DecodeError(f"{where}.decisions: expected an object")
        decisions: dict[int, tuple[tuple[str, ...], Mapping[str, str]]] = {}
        for key, d in decisions_raw.items():
            node = _node_index(key, f"{where}.decisions")
            if not isinstance(d, dict):
                raise DecodeError(f"{where}.decisions.{key}: expected an object")
            acc, exc = d.get("accepted"), d.get("excluded")
            if not isinstance(acc, list) or not all(isinstance(a, str) for a in acc):
                raise DecodeError(f"{where}.decisions.{key}.accepted: expected names")
            if not isinstance(exc, dict) or not all(isinstance(v, str) for v in exc.values()):
                raise DecodeError(f"{where}.decisions.{key}.excluded: expected reasons")
            decisions[node] = (tuple(acc), {str(k): v for k, v in exc.items()})
        released_raw = _str_map(data.get("released"), f"{where}.released")
        released = {_node_index(k, f"{where}.released"): v for k, v in released_raw.items()}
        withheld = data.get("withheld", {})
        if (
            not isinstance(withheld, dict)
            or len(withheld) > MAX_PROVIDERS
            or not all(isinstance(v, str) for v in withheld.values())
        ):
            raise DecodeError(f"{where}.withheld: expected an object of provider: reason")
        scores = None
        if data.get("scores") is not None:
            scores = ScoreRecord.from_json(data["scores"], f"{where}.scores")
        return cls(
            scores=scores,
            validation=_validation_from_json(data.get("validation"), f"{where}.validation"),
            model=from_hex(data.get("model"), f"{where}.model"),
            reports={n: v for n, v in reports.items()},
            verifier_shares=shares,
            decisions=decisions,
            released=released,
            result=from_hex(data.get("result"), f"{where}.result"),
            withheld={str(k): v for k, v in withheld.items()},
        )


def _validation_from_json(value: Any, where: str) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"x", "y"}:
        raise DecodeError(f"{where}: expected an object of x and y")
    try:
        x = np.asarray(value["x"], dtype=np.float64)
        labels = value["y"]
        integral = isinstance(labels, list) and all(type(v) is int for v in labels)
        y = np.asarray(labels, dtype=np.int64 if integral else np.float64)
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{where}: {exc}") from exc
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or not len(y):
        raise DecodeError(f"{where}: expected rows of features and one label each")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DecodeError(f"{where}: values must be finite")
    return x, y


def release_digest(
    query_id: bytes, share: bytes, subsets: Sequence[tuple[Sequence[str], bytes]] = ()
) -> bytes:
    """What a node commits as its ``key_switch`` when it releases a round: its share and,
    with a scoring plan, the hash of its share of each subset sum, all drawn and committed
    before any is served (``train/release_subset``)."""
    if not subsets:
        return trail_digest("share", query_id, share.hex())
    body = {
        "round": share.hex(),
        "subsets": [[list(s), hashlib.sha256(b).hexdigest()] for s, b in subsets],
    }
    return trail_digest("share", query_id, body)


def _str_map(value: Any, where: str) -> dict[str, bytes]:
    if not isinstance(value, dict) or len(value) > MAX_PROVIDERS:
        raise DecodeError(f"{where}: expected an object of hex strings")
    return {str(k): from_hex(v, f"{where}.{k}") for k, v in value.items()}


def _node_index(key: Any, where: str) -> int:
    if not isinstance(key, str) or not key.isdigit() or len(key) > 3:
        raise DecodeError(f"{where}: {key!r} is not a node index")
    return int(key)


@dataclass(frozen=True)
class RoundVerdict:
    """A verifier's finding on a round: whether the work is proven, what is wrong, which
    committee nodes (by index) accepted a report whose proof fails."""

    work_ok: bool
    failures: tuple[str, ...]
    cheaters: tuple[int, ...]
    checked: int
    result_ok: bool


def check_round(
    ticket: TrainingTicket,
    record: RoundTranscript,
    trail: Mapping[Any, Mapping[str, bytes]],
    nodes: Mapping[int, str],
    analyst: str,
) -> RoundVerdict:
    """Re-check a round from its record and its on-chain trail (``trail``: kind → author
    → digest; ``nodes``: the committee's accounts by index). Raises ``ProtocolError``
    when the record is not the round's trail (nothing to vote on): a report that is not
    the committed one, a committed report neither in the record nor named withheld, a
    node's decisions or share that are not the ones it committed. The record's
    ``withheld`` is accepted only as every node locked it: it is part of each node's
    committed decisions (:func:`round_decisions`), so an analyst that leaves out an honest
    provider's report cannot make it pass. Then:

    * each report's proof from all nodes' verifier shares (Prio3's decision is a function
      of them; the shares are zero-knowledge): a node that accepted a report whose proof
      fails cheated (a node may refuse one whose proof passes: its own joint-randomness
      check, which needs its state, can fail);
    * the analyst's result: the released shares summed and decoded, the server step
      from the starting model, and its digest against the result committed.
    """
    from tessera.protocol.training import SealedReport

    qid = ticket.query_id
    mismatch: list[str] = []
    if hashlib.sha256(record.model).digest() != ticket.model_digest:
        raise ProtocolError("the record's starting model is not the ticket's")
    model, params, _ = decode_model(record.model)
    if model_spec(model) != dict(ticket.model):
        raise ProtocolError("the record's model is not the one the ticket describes")
    accounts = dict(ticket.providers)
    contributions = trail.get("contribution", {})
    reports: dict[str, SealedReport] = {}
    for name, raw in record.reports.items():
        account = accounts.get(name)
        rep = SealedReport.decode(raw)
        if account is None or contributions.get(account) != report_digest(rep):
            mismatch.append(f"the report of {name} is not the one its provider committed")
        reports[name] = rep
    withheld = set(record.withheld)
    missing = sorted(
        n
        for n, a in accounts.items()
        if a in contributions and n not in reports and n not in withheld
    )
    if missing:
        mismatch.append(f"committed report(s) missing from the record: {missing}")
    # a withheld provider committed a report, and it is not in the record; that every node
    # left it out is in their decisions, checked below
    for name in sorted(withheld):
        if name in reports:
            mismatch.append(f"{name} is both reported and withheld")
        elif accounts.get(name) not in contributions:
            mismatch.append(f"{name} is named withheld but committed no report")
    if set(record.verifier_shares) != set(reports):
        mismatch.append("the verifier shares do not cover exactly the reports")
    for i, account in nodes.items():
        if i not in record.decisions or i not in record.released:
            mismatch.append(f"node {i}'s decisions or share are missing")
            continue
        taken, excluded = record.decisions[i]
        decided = round_decisions(taken, excluded, record.verifier_shares, withheld)
        if trail.get("aggregate", {}).get(account) != trail_digest("aggregate", qid, decided):
            mismatch.append(f"node {i}'s decisions are not the ones it committed")
        subsets: list[tuple[tuple[str, ...], bytes]] = []
        if ticket.scoring is not None:
            if record.scores is None:
                mismatch.append("the round has a scoring plan and the record no scores")
                continue
            planned = ticket.scoring.subsets(taken)
            subsets = record.subset_shares(sorted(nodes).index(i))
            if [s for s, _ in subsets] != list(planned):
                mismatch.append(f"the record's subsets are not node {i}'s plan")
                continue
        digest = release_digest(qid, record.released[i], subsets)
        if trail.get("key_switch", {}).get(account) != digest:
            mismatch.append(f"node {i}'s share is not the one it committed")
    if mismatch:
        raise ProtocolError("the record is not this round's trail: " + "; ".join(mismatch))
    vdaf, ctx = ticket.vdaf, secure.round_ctx(ticket.training_id, ticket.round_index)
    valid: dict[str, bool] = {}
    for name, shares in record.verifier_shares.items():
        if any(v is None for v in shares) or len(shares) != vdaf.SHARES:
            valid[name] = False
            continue
        try:
            prio3_l2.verifier_message(vdaf, ctx, [v for v in shares if v is not None])
            valid[name] = True
        except (DecodeError, InvalidProof, ValueError):
            valid[name] = False
    failures: list[str] = []
    cheaters = sorted(
        i for i, (taken, _) in record.decisions.items() if any(not valid.get(n) for n in taken)
    )
    for i in cheaters:
        failures.append(f"node {i} accepted a report whose proof fails")
    agreed = {tuple(sorted(a)) for a, _ in record.decisions.values()}
    if len(agreed) != 1:
        failures.append("the nodes' accepted sets differ")
    accepted = sorted(next(iter(agreed))) if len(agreed) == 1 else []
    work_ok = not failures
    result_ok = False
    try:
        total = secure.unshard(vdaf, [record.released[i] for i in sorted(nodes)], len(accepted))
        new = server_update(
            params, total, accepted, ticket.config, ticket.fixed_point, ticket.max_rows_of
        )
        expected = hashlib.sha256(encode_model(model, new)).digest()
        result_ok = trail.get("result", {}).get(analyst) == expected and (
            hashlib.sha256(record.result).digest() == expected
        )
    except (DecodeError, ValueError) as exc:
        failures.append(f"the released shares do not decode: {exc}")
    if not result_ok:
        failures.append("the analyst's result is not the server step of the released sum")
    return RoundVerdict(work_ok, tuple(failures), tuple(cheaters), len(valid), result_ok)


def check_scores(
    ticket: TrainingTicket, record: RoundTranscript, nodes: Mapping[int, str]
) -> ScoreRecord:
    """Re-check a round's scores (after :func:`check_round` accepted its record): the score
    record is the ticket's plan (method, permutations, seed, providers and validation set),
    its accepted providers are the nodes', its first sum is the round's release, and every
    score and weight re-computes from the released subset sums
    (:func:`~tessera.learning.contribution.check_record`). Raises
    :class:`~tessera.protocol.contribution.ContributionError` naming what differs."""
    from tessera.learning.contribution import RoundContext, check_record, validation_digest

    plan, scores = ticket.scoring, record.scores
    if plan is None or scores is None:
        raise ContributionError("the round has no scoring plan or the record no scores")
    if record.validation is None:
        raise ContributionError("the record carries no validation set to re-check on")
    if (scores.method, scores.permutations, scores.seed, scores.providers) != (
        plan.method,
        plan.permutations,
        plan.seed,
        plan.providers,
    ):
        raise ContributionError("the score record is not the ticket's scoring plan")
    if plan.validation and validation_digest(record.validation) != plan.validation:
        raise ContributionError("the validation set is not the one the ticket fixed")
    accepted = {tuple(sorted(a)) for a, _ in record.decisions.values()}
    if accepted != {tuple(sorted(scores.accepted))}:
        raise ContributionError("the score record's accepted providers are not the nodes'")
    model, params, _ = decode_model(record.model)
    ctx = RoundContext(
        model,
        params,
        ticket.config,
        ticket.fixed_point,
        ticket.vdaf,
        ticket.max_rows_of,
        record.validation,
    )
    check_record(scores, ctx, round_shares=[record.released[i] for i in sorted(nodes)])
    return scores
