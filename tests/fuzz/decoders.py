"""Every decoder of bytes or JSON that come from the network, with valid seed inputs.

One table (:data:`DECODERS`) drives both fuzzers: the hypothesis properties of
``test_decoders.py`` and the coverage-guided atheris runner ``run_atheris.py``.
Each decoder takes bytes: a JSON decoder parses them with the strict network
parser (:func:`tessera.protocol.json_limits.loads`) first, as the roles do. The
only outcomes allowed are a value or :class:`~tessera.errors.DecodeError`.
Seeds are valid encodings made from seeded randomness, so mutations start from
inputs that get deep into each decoder.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tessera.analytics.moments import Count, Mean, Sum
from tessera.analytics.wire import statistic_from_json, statistic_to_json, statistics_from_json
from tessera.crypto import dkg
from tessera.crypto.dkg import run_dkg
from tessera.crypto.dkg_messages import Round, SignedMessage
from tessera.crypto.elgamal import Ciphertext, keygen
from tessera.crypto.group import G, Point, decode_scalar
from tessera.crypto.poplar1 import Poplar1
from tessera.crypto.prio3 import Prio3Count, Prio3Histogram, Prio3Sum
from tessera.crypto.rng import SeededRng
from tessera.crypto.threshold import KeySwitchShare
from tessera.errors import DecodeError
from tessera.node.envelope import decode_body
from tessera.protocol import codec, json_limits, wire
from tessera.protocol.aggregation import (
    AggregationQuery,
    AggregationRecord,
    SlotSpec,
    VectorSpec,
    add_noise,
    contribute,
    key_switch,
)
from tessera.protocol.query import ColumnBounds, QueryTicket, bounds_from_json
from tessera.protocol.telemetry import messages

#: What a decoder may raise on malformed input (its documented error type).
ALLOWED: tuple[type[Exception], ...] = (DecodeError,)


@dataclass(frozen=True)
class Decoder:
    name: str
    decode: Callable[[bytes], Any]
    seeds: Callable[[], list[bytes]]
    json: bool = False  # the input is JSON text (structured strategies apply)
    allowed: tuple[type[Exception], ...] = ALLOWED  # the module's documented error types


def _json(decode: Callable[[Any], Any]) -> Callable[[bytes], Any]:
    return lambda data: decode(json_limits.loads(data))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- seeds ---------------------------------------------------------------------------------


@functools.cache
def _record() -> AggregationRecord:
    """One small aggregation, every message of it made from seeded randomness."""
    rng = SeededRng("fuzz/record")
    keys = run_dkg(3, 2, rng)[0]
    k = keys[1]
    _, analyst_key = keygen(rng)
    spec = VectorSpec((SlotSpec(0, 100), SlotSpec(-5, 3_000)))
    query = AggregationQuery(b"q" * 32, spec, analyst_key, (3, 3))
    rec = AggregationRecord(query, k.public_key, k.public_shares, k.threshold)
    rec.contributions = [
        contribute(query, k.public_key, p, v, rng) for p, v in {"a": [7, 12], "b": [1, -5]}.items()
    ]
    rec.noise = [add_noise(query, k.public_key, i, [1, -2], rng) for i in sorted(keys)]
    agg = list(rec.contributions[0].slots[0].limbs)
    rec.aggregate = agg
    rec.key_switch_shares = {
        i: key_switch(query, i, keys[i].secret_share, agg, rng) for i in sorted(keys)[:2]
    }
    return rec


def _ticket() -> QueryTicket:
    return QueryTicket(
        table="patients",
        statistics=(Count(), Mean("age")),
        where="age > 30",
        rho=0.1,
        delta=1e-6,
        analyst_key=G,
        bounds={"age": ColumnBounds(18, 95)},
        max_rows=10_000,
        n=3,
        t=2,
        committee=0,
        providers=(("lab-a", "0x" + "11" * 20),),
        nonce=b"\x01" * 32,
        analyst="0x" + "22" * 20,
    )


def _contributions() -> list[bytes]:
    return [codec.encode_contribution(c) for c in _record().contributions]


def _noise() -> list[bytes]:
    return [codec.encode_noise(n) for n in _record().noise]


def _key_switch() -> list[bytes]:
    return [codec.encode_key_switch(s) for s in _record().key_switch_shares.values()]


def _signed() -> list[bytes]:
    m = SignedMessage(Round.COMPLAINTS, 2, b"\x00\x01\x00\x03", b"\x07" * 65)
    return [_dumps(m.to_json())]


def _prio3_seeds(vdaf: Any, measurement: Any) -> tuple[list[bytes], list[bytes]]:
    rng = SeededRng(f"fuzz/{type(vdaf).__name__}")
    public, inputs = vdaf.shard(
        b"ctx", measurement, rng.randbytes(16), rng.randbytes(vdaf.RAND_SIZE)
    )
    return [vdaf.encode_public_share(public)], [vdaf.encode_input_share(s) for s in inputs]


def _telemetry_seeds() -> list[bytes]:
    return [b"", b"\x00" * 16, b"\x00" * 64, bytes(range(64))]


# -- the table -----------------------------------------------------------------------------


def _decoders() -> list[Decoder]:
    out = [
        Decoder("envelope.decode_body", decode_body, lambda: [_dumps({"ticket": {}})], json=True),
        Decoder("json_limits.loads", json_limits.loads, lambda: [b'{"a":[1,2.5,"x",null]}'], True),
        Decoder("codec.contribution", codec.decode_contribution, _contributions),
        Decoder(
            "codec.contribution_limbs",
            codec.decode_contribution_limbs,
            _contributions,
        ),
        Decoder("codec.noise", codec.decode_noise, _noise),
        Decoder(
            "codec.noise_limbs",
            codec.decode_noise_limbs,
            _noise,
        ),
        Decoder(
            "codec.ciphertexts",
            codec.decode_ciphertexts,
            lambda: [codec.encode_ciphertexts(_record().aggregate)],
        ),
        Decoder("codec.key_switch", codec.decode_key_switch, _key_switch),
        Decoder("codec.release", codec.decode_release, lambda: [b"\x00\x00\x00\x01" + b"\x00" * 8]),
        Decoder("elgamal.Ciphertext", Ciphertext.decode, lambda: [_record().aggregate[0].encode()]),
        Decoder("group.Point", Point.decode, lambda: [G.encode()]),
        Decoder("group.scalar", decode_scalar, lambda: [(5).to_bytes(32, "big")]),
        Decoder(
            "threshold.KeySwitchShare",
            KeySwitchShare.decode,
            lambda: [next(iter(_record().key_switch_shares.values()))[0].encode()],
        ),
        Decoder(
            "wire.query_from_json",
            _json(wire.query_from_json),
            lambda: [_dumps(wire.query_to_json(_record().query))],
            json=True,
        ),
        Decoder(
            "wire.record_from_json",
            _json(wire.record_from_json),
            lambda: [_dumps(wire.record_to_json(_record()))],
            json=True,
        ),
        Decoder(
            "wire.encoded_record_from_json",
            _json(wire.encoded_record_from_json),
            lambda: [_dumps(wire.record_to_json(_record()))],
            json=True,
        ),
        Decoder(
            "query.QueryTicket.from_json",
            _json(QueryTicket.from_json),
            lambda: [_dumps(_ticket().to_json())],
            json=True,
        ),
        Decoder(
            "query.bounds_from_json",
            _json(lambda d: bounds_from_json(d, "bounds")),
            lambda: [b'{"age":[18,95,null],"bmi":[10.5,60.25,10]}'],
            json=True,
        ),
        Decoder(
            "analytics.statistic_from_json",
            _json(statistic_from_json),
            lambda: [_dumps(statistic_to_json(s)) for s in (Count(), Sum("age"), Mean("bmi"))],
            json=True,
        ),
        Decoder(
            "analytics.statistics_from_json",
            statistics_from_json,
            lambda: [_dumps([statistic_to_json(Count()), statistic_to_json(Mean("age"))])],
            json=True,
        ),
        Decoder(
            "dkg_messages.SignedMessage.from_json", _json(SignedMessage.from_json), _signed, True
        ),
        Decoder("dkg.decode_dealing", lambda b: dkg.decode_dealing(b, 3), lambda: [b"\x00" * 8]),
        Decoder("dkg.decode_indices", lambda b: dkg.decode_indices(b, 3), lambda: [b"\x00\x01"]),
        Decoder("dkg.decode_shares", lambda b: dkg.decode_shares(b, 3), lambda: [b"\x00\x00"]),
        Decoder("dkg.decode_extraction", dkg.decode_extraction, lambda: [G.encode()]),
        Decoder("dkg.decode_result", lambda b: dkg.decode_result(b, 3), lambda: [b"\x00" * 8]),
    ]
    for cls in (
        messages.ReportMetadata,
        messages.SealedShare,
        messages.Report,
        messages.UploadRequest,
        messages.UploadResponse,
        messages.AggregationJobInit,
        messages.PrepareSteps,
        messages.CollectReq,
        messages.AggregateShareReq,
        messages.AggregateShareResp,
        messages.Collection,
    ):
        out.append(Decoder(f"telemetry.{cls.__name__}", cls.decode, _telemetry_seeds))
    out.append(
        Decoder("telemetry.verifier_shares", messages.decode_verifier_shares, _telemetry_seeds)
    )
    for vdaf, measurement in (
        (Prio3Count(2), 1),
        (Prio3Sum(2, 100), 42),
        (Prio3Histogram(2, 4, 2), 3),
    ):
        name = type(vdaf).__name__
        seeds = functools.cache(functools.partial(_prio3_seeds, vdaf, measurement))
        out += [
            Decoder(f"{name}.public_share", vdaf.decode_public_share, lambda s=seeds: s()[0]),
            Decoder(
                f"{name}.input_share[0]",
                functools.partial(vdaf.decode_input_share, 0),
                lambda s=seeds: s()[1][:1],
            ),
            Decoder(
                f"{name}.input_share[1]",
                functools.partial(vdaf.decode_input_share, 1),
                lambda s=seeds: s()[1][1:],
            ),
            Decoder(
                f"{name}.verifier_share",
                functools.partial(vdaf.decode_verifier_share, None),
                lambda: [b"\x00" * 64],
            ),
            Decoder(
                f"{name}.agg_share",
                functools.partial(vdaf.decode_agg_share, None),
                lambda v=vdaf: [v.encode_agg_share([0] * v.flp.OUTPUT_LEN)],
            ),
        ]
    poplar = Poplar1(4)
    out += [
        Decoder("Poplar1.agg_param", poplar.decode_agg_param, lambda: [b"\x00" * 8]),
        Decoder("Poplar1.public_share", poplar.decode_public_share, lambda: [b"\x00" * 32]),
        Decoder(
            "Poplar1.input_share[0]",
            functools.partial(poplar.decode_input_share, 0),
            lambda: [b"\x00" * 64],
        ),
    ]
    return out


@functools.cache
def _rpc() -> Any:
    from tessera.ledger.chain import EmbeddedChain
    from tessera.ledger.rpc_server import EmbeddedRpc

    return EmbeddedRpc(EmbeddedChain())


def _rpc_handle(data: bytes) -> Any:
    """A JSON-RPC body as the server takes it: every outcome is a reply, never an exception."""
    status, reply = _rpc().handle_body(data)
    assert status in (200, 400) and (reply is None or isinstance(reply, dict | list))
    return reply


def _rpc_decoders() -> list[Decoder]:
    from tessera.ledger.rpc_server import JsonRpcError, parse_body

    seeds = [
        b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x%s","latest"]}'
        % (b"11" * 20),
        b'[{"jsonrpc":"2.0","id":"a","method":"eth_chainId","params":[]},'
        b'{"jsonrpc":"2.0","method":"eth_blockNumber"}]',
        b'{"jsonrpc":"2.0","id":2,"method":"eth_getBlockByNumber","params":["0x0",false]}',
    ]
    return [
        Decoder("rpc_server.parse_body", parse_body, lambda: seeds, True, (JsonRpcError,)),
        Decoder("rpc_server.handle_body", _rpc_handle, lambda: seeds, True, ()),
    ]


@functools.cache
def decoders() -> dict[str, Decoder]:
    return {d.name: d for d in [*_decoders(), *_rpc_decoders()]}


def check(decoder: Decoder, data: bytes) -> None:
    """Run ``decoder`` on ``data``: a value or an allowed error, anything else propagates."""
    with contextlib.suppress(*decoder.allowed):
        decoder.decode(data)
