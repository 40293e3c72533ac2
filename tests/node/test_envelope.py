"""The request envelope, key directories and the replay guard, without a transport."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tessera.errors import DecodeError, Replay, Unauthorized
from tessera.node.envelope import (
    NONCE,
    RECIPIENT,
    SENDER,
    SIGNATURE,
    TIMESTAMP,
    LedgerDirectory,
    ReplayGuard,
    StaticDirectory,
    decode_body,
    encode_body,
    normalize_path,
    request_digest,
    sign_request,
    verify_request,
)
from tessera.node.identity import Identity
from tessera.protocol.json_limits import nesting_depth

ALICE = Identity(bytes([1]) * 32)
BOB = Identity(bytes([2]) * 32)
MALLORY = Identity(bytes([4]) * 32)
NOW = 1_800_000_000.0  # a fixed clock, seconds
NONCE_BYTES = bytes(range(16))
BODY = b'{"query":7}'


def _headers(**kw: Any) -> dict[str, str]:
    return sign_request(ALICE, BOB.address, "query/commit", BODY, NOW, nonce=NONCE_BYTES, **kw)


def _verify(headers: dict[str, str], **kw: Any) -> str:
    args: dict[str, Any] = {
        "path": "query/commit",
        "body": BODY,
        "recipient": BOB.address,
        "directory": StaticDirectory.of([ALICE, BOB]),
        "guard": ReplayGuard(),
        "now": NOW,
    }
    args.update(kw)
    return verify_request(headers, **args)


def test_signed_request_headers() -> None:
    h = _headers()
    assert h[SENDER] == ALICE.address and h[RECIPIENT] == BOB.address
    assert h[TIMESTAMP] == "1800000000000" and h[NONCE] == NONCE_BYTES.hex()
    assert len(h[SIGNATURE]) == 130
    assert _verify(h) == ALICE.address


def test_signing_is_deterministic() -> None:
    # RFC 6979 nonces: same key, same request, same bytes.
    assert _headers() == _headers()


def test_digest_vector() -> None:
    # Pins the encoding: changing the domain, a field's order or width breaks this.
    message = b"".join(
        len(x).to_bytes(4, "big") + x
        for x in (
            b"tessera/v1/request",
            bytes.fromhex(ALICE.address[2:]),
            bytes.fromhex(BOB.address[2:]),
            b"POST /v1/query/commit",
            (1_800_000_000_000).to_bytes(8, "big"),
            NONCE_BYTES,
            hashlib.sha256(BODY).digest(),
        )
    )
    expected = hashlib.sha256(message).digest()
    got = request_digest(
        ALICE.address, BOB.address, "/query/commit", 1_800_000_000_000, NONCE_BYTES, BODY
    )
    assert got == expected


def test_header_names_are_case_insensitive() -> None:
    h = {k.lower(): v for k, v in _headers().items()}
    assert _verify(h) == ALICE.address


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("path", "query/reveal"),
        ("body", b'{"query":8}'),
        ("body", BODY + b" "),
        (TIMESTAMP, "1800000000001"),
        (NONCE, "00" * 16),
        (SENDER, BOB.address),
    ],
)
def test_every_signed_field_matters(change: str, value: Any) -> None:
    h = _headers()
    kw: dict[str, Any] = {}
    if change in ("path", "body"):
        kw[change] = value
    else:
        h[change] = value
    with pytest.raises(Unauthorized) as info:
        _verify(h, **kw)
    assert not isinstance(info.value, Replay)


def test_recipient_must_be_this_node() -> None:
    h = _headers()
    with pytest.raises(Unauthorized, match="addressed to"):
        _verify(h, recipient=ALICE.address)
    h[RECIPIENT] = ALICE.address  # rewriting the header breaks the signature instead
    with pytest.raises(Unauthorized, match="does not verify"):
        _verify(h, recipient=ALICE.address)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (SENDER, "alice"),
        (RECIPIENT, "0x" + "g" * 40),
        (TIMESTAMP, "-1"),
        (TIMESTAMP, "01800000000000"),
        (TIMESTAMP, "１８"),  # full-width digits: int() would take them
        (NONCE, "ab" * 15),
        (NONCE, NONCE_BYTES.hex().upper()),
        (SIGNATURE, "00" * 64),
        (SIGNATURE, "0x" + "00" * 64),
    ],
)
def test_malformed_headers_are_unauthorized(name: str, value: str) -> None:
    h = _headers()
    h[name] = value
    with pytest.raises(Unauthorized, match="malformed"):
        _verify(h)


def test_unknown_sender() -> None:
    h = sign_request(MALLORY, BOB.address, "query/commit", BODY, NOW)
    with pytest.raises(Unauthorized, match="no registered key"):
        _verify(h)


def test_key_registered_for_the_address_is_what_counts() -> None:
    # The directory, not the key's own address, decides who may speak as whom.
    h = sign_request(MALLORY, BOB.address, "query/commit", BODY, NOW)
    directory = StaticDirectory({MALLORY.address: ALICE.public_key})
    with pytest.raises(Unauthorized, match="does not verify"):
        _verify(h, directory=directory)


def test_forged_request_does_not_store_its_nonce() -> None:
    guard = ReplayGuard()
    h = _headers()
    h[SIGNATURE] = sign_request(ALICE, BOB.address, "other", BODY, NOW, nonce=NONCE_BYTES)[
        SIGNATURE
    ]
    with pytest.raises(Unauthorized):
        _verify(h, guard=guard)
    assert len(guard) == 0
    assert _verify(_headers(), guard=guard) == ALICE.address
    assert len(guard) == 1


def test_replay_and_window() -> None:
    guard = ReplayGuard()
    h = _headers()
    _verify(h, guard=guard)
    with pytest.raises(Replay, match="seen"):
        _verify(h, guard=guard)
    with pytest.raises(Replay, match="allowed"):
        _verify(_headers(), guard=ReplayGuard(), now=NOW + 120.001)
    with pytest.raises(Replay, match="allowed"):
        _verify(_headers(), guard=ReplayGuard(), now=NOW - 120.001)
    assert _verify(_headers(), guard=ReplayGuard(), now=NOW + 120.0) == ALICE.address


# -- the replay guard -----------------------------------------------------------------------

MS = 1_800_000_000_000


def test_guard_is_per_sender() -> None:
    guard = ReplayGuard()
    guard.check_and_store(ALICE.address, "aa" * 16, MS, now=NOW)
    guard.check_and_store(BOB.address, "aa" * 16, MS, now=NOW)
    with pytest.raises(Replay):
        guard.check_and_store(ALICE.address, "aa" * 16, MS + 5, now=NOW)


def test_guard_prunes_what_the_window_refuses_anyway() -> None:
    guard = ReplayGuard(window=10)
    guard.check_and_store(ALICE.address, "01" * 16, MS, now=NOW)
    guard.check_and_store(ALICE.address, "02" * 16, MS + 5_000, now=NOW + 5)
    assert len(guard) == 2
    guard.check_and_store(ALICE.address, "03" * 16, MS + 12_000, now=NOW + 12)
    assert len(guard) == 2  # the first is older than the window: pruned
    with pytest.raises(Replay, match="allowed"):  # ... and its replay is stale
        guard.check_and_store(ALICE.address, "01" * 16, MS, now=NOW + 12)
    with pytest.raises(Replay, match="seen"):
        guard.check_and_store(ALICE.address, "02" * 16, MS + 5_000, now=NOW + 12)


def test_guard_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    guard = ReplayGuard(path)
    guard.check_and_store(ALICE.address, "aa" * 16, MS, now=NOW)
    guard.close()
    again = ReplayGuard(path)
    with pytest.raises(Replay, match="seen"):
        again.check_and_store(ALICE.address, "aa" * 16, MS, now=NOW + 1)
    again.close()


def test_guard_admits_a_nonce_once_under_contention() -> None:
    guard = ReplayGuard()
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def attempt() -> None:
        start.wait()
        try:
            guard.check_and_store(ALICE.address, "cd" * 16, MS, now=NOW)
            result = "ok"
        except Replay:
            result = "replay"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["replay"] * 15


# -- key directories ------------------------------------------------------------------------


def test_static_directory() -> None:
    d = StaticDirectory.of([ALICE])
    assert d.public_key(ALICE.address) == ALICE.public_key
    assert d.public_key(ALICE.address.lower()) == ALICE.public_key
    assert d.public_key(BOB.address) is None
    assert d.public_key("nonsense") is None
    d.add(BOB.address, BOB.public_key)
    assert d.public_key(BOB.address) == BOB.public_key


@dataclass(frozen=True)
class _Participant:
    address: str
    roles: frozenset[str]
    public_key: bytes


@dataclass
class _FakeLedger:
    records: dict[str, _Participant]
    asked: list[str] = field(default_factory=list)

    def participant(self, account: str | None = None) -> _Participant:
        assert account is not None
        self.asked.append(account)
        return self.records.get(account, _Participant(account, frozenset(), b""))


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _ledger_directory(**kw: Any) -> tuple[LedgerDirectory, _FakeLedger, _Clock]:
    ledger = _FakeLedger(
        {
            ALICE.address: _Participant(ALICE.address, frozenset({"analyst"}), ALICE.public_key),
            BOB.address: _Participant(BOB.address, frozenset({"node"}), BOB.public_key),
        }
    )
    clock = _Clock()
    return LedgerDirectory(ledger, clock=clock, **kw), ledger, clock  # type: ignore[arg-type]


def test_ledger_directory_caches_for_30_seconds() -> None:
    d, ledger, clock = _ledger_directory()
    assert d.public_key(ALICE.address) == ALICE.public_key
    clock.t = 29.9
    assert d.public_key(ALICE.address.lower()) == ALICE.public_key
    assert ledger.asked == [ALICE.address]
    clock.t = 30.1
    ledger.records[ALICE.address] = _Participant(ALICE.address, frozenset({"analyst"}), b"")
    assert d.public_key(ALICE.address) is None  # deregistered key noticed after the TTL
    assert ledger.asked == [ALICE.address] * 2


def test_ledger_directory_unregistered_and_roles() -> None:
    d, ledger, clock = _ledger_directory(roles={"node", "verifier"})
    assert d.public_key(MALLORY.address) is None  # empty key: not registered
    assert d.public_key(ALICE.address) is None  # an analyst, not a node or verifier
    assert d.public_key(BOB.address) == BOB.public_key
    assert d.public_key("not an address") is None
    # a miss is remembered only briefly: a node registered a moment later is let in
    ledger.records[MALLORY.address] = _Participant(
        MALLORY.address, frozenset({"verifier"}), MALLORY.public_key
    )
    assert d.public_key(MALLORY.address) is None
    clock.t = 2.1
    assert d.public_key(MALLORY.address) == MALLORY.public_key


def test_ledger_directory_verifies_requests() -> None:
    d, _, _ = _ledger_directory(roles={"analyst"})
    assert _verify(_headers(), directory=d) == ALICE.address


# -- bodies and paths -----------------------------------------------------------------------


def test_body_round_trip() -> None:
    body = {"b": [1, -2.5, None, True, "ü"], "a": {"x": {}}}
    assert decode_body(encode_body(body)) == body


def test_encode_refuses_non_json() -> None:
    with pytest.raises(ValueError):
        encode_body({"x": float("inf")})
    with pytest.raises(TypeError):
        encode_body({"x": b"bytes"})


def test_deeply_nested_body_is_refused_before_parsing() -> None:
    import sys

    import eth_account  # noqa: F401  (raises the recursion limit to 100 000)

    assert sys.getrecursionlimit() >= 100_000
    # Parsed by the C decoder, this would overflow the stack (a segfault, not an error).
    with pytest.raises(DecodeError, match="nested deeper than 64"):
        decode_body(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}")


def test_nesting_limit_is_exact() -> None:
    ok = b'{"a":' + b"[" * 63 + b"]" * 63 + b"}"
    assert nesting_depth(ok) == 64
    assert decode_body(ok) == json.loads(ok)
    with pytest.raises(DecodeError, match="nested deeper than 64"):
        decode_body(b'{"a":' + b"[" * 64 + b"]" * 64 + b"}")


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a":[{},[[]]]}', 4),
        (b'{"s":"[[[[{{{{"}', 1),
        (b'{"s":"\\"[[[","t":[1]}', 2),
        (b'{"s":"\\\\","t":[1]}', 2),
    ],
)
def test_nesting_depth_ignores_strings(text: bytes, depth: int) -> None:
    assert nesting_depth(text) == depth


@pytest.mark.parametrize(
    ("path", "normal"), [("query/commit", "query/commit"), ("/a/b-c_d.e~f", "a/b-c_d.e~f")]
)
def test_paths(path: str, normal: str) -> None:
    assert normalize_path(path) == normal


@pytest.mark.parametrize("path", ["", "/", "a//b", "../x", "a/../b", "a/.hidden", "a b", "a?b=1"])
def test_bad_paths(path: str) -> None:
    with pytest.raises(DecodeError):
        normalize_path(path)
