"""Statistics as JSON, so that a query can travel from the analyst to providers and nodes.

A statistic is a frozen dataclass; its wire form is ``{"type": <name>, <field>: <value>,
...}`` over the fields that its constructor takes. Values are strings, numbers,
booleans, null, lists (for tuples, nested) and, for :class:`GroupBy`, a nested
statistic. Decoding is strict: an unknown type, a missing or unknown field, or a
value of the wrong shape raises :class:`~tessera.errors.DecodeError` naming it;
the statistic's own checks then run as for any locally built one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tessera.analytics.distribution import Histogram, Max, Min, Quantile
from tessera.analytics.grouping import ByKey, GroupBy
from tessera.analytics.moments import (
    Correlation,
    CosineSimilarity,
    Count,
    Covariance,
    Mean,
    Std,
    Sum,
    Variance,
)
from tessera.analytics.regression import LinearRegression, LogisticRegression, ModelEvaluation
from tessera.analytics.sets import BooleanAnd, BooleanOr, SetIntersection, SetUnion
from tessera.analytics.statistic import Statistic
from tessera.analytics.survival import KaplanMeier
from tessera.errors import DecodeError, QueryError
from tessera.protocol import json_limits

STATISTICS: dict[str, type[Statistic]] = {
    cls.__name__: cls
    for cls in (
        Count,
        Sum,
        Mean,
        Variance,
        Std,
        Covariance,
        Correlation,
        CosineSimilarity,
        Histogram,
        Quantile,
        Min,
        Max,
        LinearRegression,
        LogisticRegression,
        ModelEvaluation,
        SetUnion,
        SetIntersection,
        BooleanOr,
        BooleanAnd,
        KaplanMeier,
        GroupBy,
        ByKey,
    )
}
MAX_DEPTH = 8


def _fields(cls: type[Statistic]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]


def _encode_value(value: Any) -> Any:
    if isinstance(value, Statistic):
        return statistic_to_json(value)
    if isinstance(value, tuple | list):
        return [_encode_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("statistics carry finite numbers only")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"cannot encode a {type(value).__name__} in a statistic")


def statistic_to_json(stat: Statistic) -> dict[str, Any]:
    name = type(stat).__name__
    if STATISTICS.get(name) is not type(stat):
        raise ValueError(f"{name} is not a statistic that travels")
    out: dict[str, Any] = {"type": name}
    for f in _fields(type(stat)):
        out[f] = _encode_value(getattr(stat, f))
    return out


def _decode_value(value: Any, where: str, depth: int) -> Any:
    if isinstance(value, dict):
        return statistic_from_json(value, depth + 1)
    if isinstance(value, list):
        return tuple(_decode_value(v, where, depth) for v in value)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"{where}: not a finite number")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise DecodeError(f"{where}: unexpected {type(value).__name__}")


def statistic_from_json(data: Any, depth: int = 0) -> Statistic:
    if depth > MAX_DEPTH:
        raise DecodeError(f"statistic nested deeper than {MAX_DEPTH}")
    if not isinstance(data, dict):
        raise DecodeError("a statistic is a JSON object")
    name = data.get("type")
    if not isinstance(name, str) or name not in STATISTICS:
        raise DecodeError(f"unknown statistic type {name!r}")
    cls = STATISTICS[name]
    allowed = _fields(cls)
    unknown = set(data) - {"type", *allowed}
    if unknown:
        raise DecodeError(f"{name}: unknown field(s) {sorted(unknown)}")
    kwargs = {k: _decode_value(v, f"{name}.{k}", depth) for k, v in data.items() if k != "type"}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DecodeError(f"{name}: {exc}") from exc
    except (ValueError, QueryError) as exc:
        raise DecodeError(f"{name}: {exc}") from exc


def statistics_to_json(stats: Sequence[Statistic]) -> str:
    """Canonical JSON of a list of statistics (sorted keys, no spaces)."""
    return json.dumps([statistic_to_json(s) for s in stats], sort_keys=True, separators=(",", ":"))


def statistics_from_json(text: str | bytes | Sequence[Mapping[str, Any]]) -> list[Statistic]:
    data: Any = json_limits.loads(text) if isinstance(text, str | bytes) else list(text)
    if not isinstance(data, list) or not data:
        raise DecodeError("statistics: a non-empty JSON list is expected")
    return [statistic_from_json(d) for d in data]
