"""The aggregation protocol's messages as strict JSON, for the networked roles.

Binary parts travel as lowercase hex of their canonical encoding
(:mod:`tessera.protocol.codec`), so what a party receives hashes to exactly what
its author committed on-chain. Every decoder checks the types and names the
field that is wrong (:class:`~tessera.errors.DecodeError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tessera.crypto.group import Point
from tessera.errors import DecodeError
from tessera.protocol import codec
from tessera.protocol.aggregation import (
    AggregationQuery,
    AggregationRecord,
    SlotSpec,
    VectorSpec,
)

_T = TypeVar("_T")
MAX_HEX = 1 << 28


def field(data: Mapping[str, Any], name: str, kind: type[_T], where: str) -> _T:
    """``data[name]`` if it is a ``kind`` (``bool`` is not an ``int``), else DecodeError."""
    if name not in data:
        raise DecodeError(f"{where}: missing field {name!r}")
    value = data[name]
    if kind is int and isinstance(value, bool):
        raise DecodeError(f"{where}.{name}: expected an integer, got a boolean")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # type: ignore[return-value]
    if not isinstance(value, kind):
        raise DecodeError(f"{where}.{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def from_hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"{where}: expected a hex string, got {type(value).__name__}")
    if len(value) > MAX_HEX:
        raise DecodeError(f"{where}: longer than {MAX_HEX} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise DecodeError(f"{where}: not hex") from exc


def point_from_hex(value: Any, where: str) -> Point:
    try:
        return Point.decode(from_hex(value, where))
    except DecodeError:
        raise
    except ValueError as exc:
        raise DecodeError(f"{where}: not a curve point ({exc})") from exc


def _decode_list(value: Any, where: str, decode: Callable[[bytes], _T]) -> list[_T]:
    if not isinstance(value, list):
        raise DecodeError(f"{where}: expected a list")
    return [decode(from_hex(v, f"{where}[{i}]")) for i, v in enumerate(value)]


def _decode_map(value: Any, where: str, decode: Callable[[bytes], _T]) -> dict[int, _T]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object")
    out: dict[int, _T] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k.isdigit():
            raise DecodeError(f"{where}: key {k!r} is not a node index")
        out[int(k)] = decode(from_hex(v, f"{where}[{k}]"))
    return out


# -- the query every party agrees on ------------------------------------------------------
def query_to_json(q: AggregationQuery) -> dict[str, Any]:
    return {
        "query_id": q.query_id.hex(),
        "limb_bits": q.spec.limb_bits,
        "slots": [[s.lo, s.hi] for s in q.spec.slots],
        "analyst_key": q.analyst_key.encode().hex(),
        "noise_bounds": list(q.noise_bounds),
    }


def query_from_json(data: Any, where: str = "query") -> AggregationQuery:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    slots = field(data, "slots", list, where)
    try:
        spec = VectorSpec(
            tuple(SlotSpec(int(lo), int(hi)) for lo, hi in slots),
            field(data, "limb_bits", int, where),
        )
        bounds = tuple(int(b) for b in field(data, "noise_bounds", list, where))
        return AggregationQuery(
            from_hex(field(data, "query_id", str, where), f"{where}.query_id"),
            spec,
            point_from_hex(data.get("analyst_key"), f"{where}.analyst_key"),
            bounds,
        )
    except DecodeError:
        raise
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"{where}: {exc}") from exc


# -- the whole record (what a verifier checks) --------------------------------------------
def record_to_json(
    rec: AggregationRecord,
    contributions: Sequence[str] | None = None,
    noise: Sequence[str] | None = None,
    rejected_noise: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The record as JSON; a holder of the messages as received passes their hex as is
    (``contributions``, ``noise``, ``rejected_noise``) instead of re-encoding them."""
    out = _record_json(rec) if contributions is None else _record_json(rec, skip=True)
    if contributions is not None:
        out["contributions"] = list(contributions)
        out["noise"] = list(noise or [])
        out["rejected_noise"] = list(rejected_noise or [])
    return out


def _record_json(rec: AggregationRecord, skip: bool = False) -> dict[str, Any]:
    return {
        "query": query_to_json(rec.query),
        "committee_key": rec.committee_key.encode().hex(),
        "public_shares": {str(i): p.encode().hex() for i, p in sorted(rec.public_shares.items())},
        "threshold": rec.threshold,
        "contributions": []
        if skip
        else [codec.encode_contribution(c).hex() for c in rec.contributions],
        "noise": [] if skip else [codec.encode_noise(n).hex() for n in rec.noise],
        "rejected_noise": [] if skip else [codec.encode_noise(n).hex() for n in rec.rejected_noise],
        "aggregate": codec.encode_ciphertexts(rec.aggregate).hex(),
        "key_switch_shares": {
            str(i): codec.encode_key_switch(s).hex()
            for i, s in sorted(rec.key_switch_shares.items())
        },
        "switched": codec.encode_ciphertexts(rec.switched).hex(),
        "excluded_nodes": list(rec.excluded_nodes),
        "used_nodes": list(rec.used_nodes),
        "release": None if rec.release is None else codec.encode_release(rec.release).hex(),
        "withheld": dict(sorted(rec.withheld.items())),
    }


def _ints(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise DecodeError(f"{where}: expected a list of integers")
    return list(value)


def _reasons(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DecodeError(f"{where}: expected an object of names to reasons")
    return dict(value)


def record_from_json(data: Any, where: str = "record") -> AggregationRecord:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    release = data.get("release")
    rec = AggregationRecord(
        query_from_json(data.get("query"), f"{where}.query"),
        point_from_hex(data.get("committee_key"), f"{where}.committee_key"),
        _decode_map(data.get("public_shares"), f"{where}.public_shares", Point.decode),
        field(data, "threshold", int, where),
    )
    rec.contributions = _decode_list(
        data.get("contributions"), f"{where}.contributions", codec.decode_contribution
    )
    rec.noise = _decode_list(data.get("noise"), f"{where}.noise", codec.decode_noise)
    rec.rejected_noise = _decode_list(
        data.get("rejected_noise"), f"{where}.rejected_noise", codec.decode_noise
    )
    rec.aggregate = codec.decode_ciphertexts(from_hex(data.get("aggregate"), f"{where}.aggregate"))
    rec.key_switch_shares = _decode_map(
        data.get("key_switch_shares"), f"{where}.key_switch_shares", codec.decode_key_switch
    )
    rec.switched = codec.decode_ciphertexts(from_hex(data.get("switched"), f"{where}.switched"))
    rec.excluded_nodes = _ints(data.get("excluded_nodes"), f"{where}.excluded_nodes")
    rec.used_nodes = _ints(data.get("used_nodes"), f"{where}.used_nodes")
    rec.withheld = _reasons(data.get("withheld", {}), f"{where}.withheld")
    rec.release = (
        None if release is None else codec.decode_release(from_hex(release, f"{where}.release"))
    )
    return rec


@dataclass(frozen=True)
class EncodedRecord:
    """A record's header decoded, its messages kept as their encodings (no proof decoded)."""

    header: AggregationRecord  # query, committee key, public shares, threshold
    contributions: list[bytes]
    noise: list[bytes]
    rejected_noise: list[bytes]
    aggregate: bytes
    key_switch: dict[int, bytes]
    switched: bytes

    def bundle_digest(self) -> bytes:
        return codec.bundle_digest(
            self.header,
            self.contributions,
            self.noise,
            self.rejected_noise,
            self.aggregate,
            self.key_switch,
            self.switched,
        )


def encoded_record_from_json(data: Any, where: str = "record") -> EncodedRecord:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    header = AggregationRecord(
        query_from_json(data.get("query"), f"{where}.query"),
        point_from_hex(data.get("committee_key"), f"{where}.committee_key"),
        _decode_map(data.get("public_shares"), f"{where}.public_shares", Point.decode),
        field(data, "threshold", int, where),
    )

    def raw_list(name: str) -> list[bytes]:
        return _decode_list(data.get(name), f"{where}.{name}", bytes)

    return EncodedRecord(
        header,
        raw_list("contributions"),
        raw_list("noise"),
        raw_list("rejected_noise"),
        from_hex(data.get("aggregate"), f"{where}.aggregate"),
        _decode_map(data.get("key_switch_shares"), f"{where}.key_switch_shares", bytes),
        from_hex(data.get("switched"), f"{where}.switched"),
    )
