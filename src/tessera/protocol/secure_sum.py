"""A verifiable encrypted sum: providers, committee, analyst and verifier as pure roles (Drynx §IV).

Each data provider encrypts its value under the committee key with a range
proof bound to the query and its own identity; the committee adds the
ciphertexts and key-switches the sum to the analyst with proofs; the analyst
decrypts and proves that its published result is what the ciphertext holds;
a verifier re-checks every proof and recomputes the aggregate from public
data only. No function here does I/O: the caller passes randomness and the
discrete-log solver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tessera.crypto.dkg import DkgResult
from tessera.crypto.dlog import DiscreteLog
from tessera.crypto.elgamal import Ciphertext, add_all, decrypt_to_point, encrypt_with, keygen
from tessera.crypto.group import G, Point, base_mul
from tessera.crypto.proofs import LinearProof, dleq_statement, prove_linear, verify_linear
from tessera.crypto.rangeproof import RangeProof, prove_range, verify_range
from tessera.crypto.rng import Rng
from tessera.crypto.threshold import (
    KeySwitchShare,
    combine_key_switch,
    filter_valid_key_switch,
    key_switch_share,
)
from tessera.crypto.transcript import Transcript
from tessera.errors import InvalidProof, ProtocolError

_DECRYPTION = b"tessera/analyst-decryption/v1"


def provider_context(query_id: bytes, provider: str) -> bytes:
    return b"query/" + query_id + b"/provider/" + provider.encode()


def committee_context(query_id: bytes) -> bytes:
    return b"query/" + query_id + b"/key-switch"


@dataclass(frozen=True, slots=True)
class Contribution:
    """A provider's encrypted value and its range proof."""

    provider: str
    ciphertext: Ciphertext
    proof: RangeProof


@dataclass(frozen=True, slots=True)
class Query:
    """The public statement of a sum query."""

    query_id: bytes
    lo: int
    hi: int
    analyst_key: Point


@dataclass(frozen=True, slots=True)
class Release:
    """The analyst's published result, with a proof that it decrypts the switched ciphertext."""

    value: int
    proof: LinearProof


@dataclass
class QueryRecord:
    """Everything public about one query: what a verifier needs."""

    query: Query
    committee_key: Point
    public_shares: Mapping[int, Point]
    threshold: int
    contributions: list[Contribution] = field(default_factory=list)
    aggregate: Ciphertext | None = None
    key_switch_shares: list[KeySwitchShare] = field(default_factory=list)
    switched: Ciphertext | None = None
    release: Release | None = None
    excluded_nodes: list[int] = field(default_factory=list)


# -- roles ----------------------------------------------------------------------------
def provider_contribute(
    query: Query, committee_key: Point, provider: str, value: int, rng: Rng
) -> Contribution:
    r = rng.scalar()
    ct = encrypt_with(committee_key, value, r)
    ctx = provider_context(query.query_id, provider)
    proof = prove_range(ctx, committee_key, ct, value, r, query.lo, query.hi, rng)
    return Contribution(provider, ct, proof)


def verify_contribution(query: Query, committee_key: Point, c: Contribution) -> None:
    ctx = provider_context(query.query_id, c.provider)
    verify_range(ctx, committee_key, c.ciphertext, query.lo, query.hi, c.proof)


def node_key_switch(
    query: Query, key: DkgResult, aggregate: Ciphertext, rng: Rng
) -> KeySwitchShare:
    ctx = committee_context(query.query_id)
    return key_switch_share(ctx, key.index, key.secret_share, aggregate, query.analyst_key, rng)


def analyst_release(
    query: Query, analyst_secret: int, switched: Ciphertext, dlog: DiscreteLog, rng: Rng
) -> Release:
    mg = decrypt_to_point(analyst_secret, switched)
    value = dlog.decode(mg)
    stmt = dleq_statement(G, query.analyst_key, switched.c1, switched.c2 - mg)
    proof = prove_linear(Transcript(_DECRYPTION, query.query_id), stmt, [analyst_secret], rng)
    return Release(value, proof)


def verify_release(query: Query, switched: Ciphertext, release: Release) -> None:
    mg = base_mul(release.value)
    stmt = dleq_statement(G, query.analyst_key, switched.c1, switched.c2 - mg)
    verify_linear(Transcript(_DECRYPTION, query.query_id), stmt, release.proof)


# -- verifier -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok``: the released result is proven correct. ``cheaters``: nodes whose proofs failed
    (excluded by the committee; the result stands on the honest quorum)."""

    ok: bool
    checked_proofs: int
    failures: tuple[str, ...]
    cheaters: tuple[int, ...] = ()


def verify_record(record: QueryRecord) -> Verdict:
    """Re-check a whole query from public data only."""
    failures: list[str] = []
    checked = 0
    q = record.query
    seen: set[str] = set()
    for c in record.contributions:
        checked += 1
        if c.provider in seen:
            failures.append(f"provider {c.provider}: duplicate contribution")
            continue
        seen.add(c.provider)
        try:
            verify_contribution(q, record.committee_key, c)
        except InvalidProof as exc:
            failures.append(f"provider {c.provider}: {exc}")
    aggregate = add_all(c.ciphertext for c in record.contributions)
    if record.aggregate != aggregate:
        failures.append("aggregate differs from the sum of the contributions")
    good, bad = filter_valid_key_switch(
        committee_context(q.query_id),
        record.public_shares,
        aggregate,
        q.analyst_key,
        record.key_switch_shares,
    )
    checked += len(record.key_switch_shares)
    try:
        switched = combine_key_switch(aggregate, good, record.threshold)
    except ProtocolError as exc:
        failures.append(str(exc))
        return Verdict(False, checked, tuple(failures), tuple(bad))
    if record.switched != switched:
        failures.append("switched ciphertext differs from the combination of valid shares")
    if record.release is None:
        failures.append("no release published")
    else:
        checked += 1
        try:
            verify_release(q, switched, record.release)
        except InvalidProof as exc:
            failures.append(f"release: {exc}")
    # nodes the committee excluded must be exactly those whose proofs fail
    if sorted(record.excluded_nodes) != sorted(bad):
        failures.append("excluded nodes differ from the nodes whose proofs fail")
    return Verdict(not failures, checked, tuple(failures), tuple(bad))


# -- in-memory run ----------------------------------------------------------------------
def run_sum(
    query_id: bytes,
    values: Mapping[str, int],
    keys: Mapping[int, DkgResult],
    lo: int,
    hi: int,
    dlog: DiscreteLog,
    rng: Rng,
    cheating_nodes: Sequence[int] = (),
) -> tuple[QueryRecord, int]:
    """Run one sum query in memory; returns the public record and the analyst's result."""
    any_key = next(iter(keys.values()))
    analyst_secret, analyst_key = keygen(rng)
    query = Query(query_id, lo, hi, analyst_key)
    record = QueryRecord(query, any_key.public_key, any_key.public_shares, any_key.threshold)
    record.contributions = [
        provider_contribute(query, any_key.public_key, name, v, rng) for name, v in values.items()
    ]
    record.aggregate = add_all(c.ciphertext for c in record.contributions)
    shares = []
    for idx, key in sorted(keys.items()):
        share = node_key_switch(query, key, record.aggregate, rng)
        if idx in cheating_nodes:  # test-only: a node that corrupts its share
            share = KeySwitchShare(share.index, share.u, share.w + G, share.proof)
        shares.append(share)
    record.key_switch_shares = shares
    good, bad = filter_valid_key_switch(
        committee_context(query_id), any_key.public_shares, record.aggregate, analyst_key, shares
    )
    record.excluded_nodes = bad
    record.switched = combine_key_switch(record.aggregate, good, any_key.threshold)
    record.release = analyst_release(query, analyst_secret, record.switched, dlog, rng)
    return record, record.release.value
