"""Verifiable encrypted vector aggregation with distributed noise (Drynx, FTPH+20, §IV–V).

The shared mechanism behind every Tessera statistic. A query fixes a public
:class:`VectorSpec`: for each slot, the interval ``[lo, hi]`` that a provider's
integer must lie in. Each provider shifts its value to ``d = v − lo``, splits
``d`` into base-``2^k`` *limbs* (so that sums decode fast, DESIGN §4),
encrypts every limb under the committee key and proves each limb's range. When
``hi − lo + 1`` is not a power of two, one more proof on the homomorphically
recombined ciphertext shows ``d ≤ hi − lo`` exactly.

Each computing node then encrypts its noise term for every slot (added to limb
0) with a range proof ``|η| ≤ bound`` and, over the noised aggregate, a
key-switch share per ciphertext. The analyst combines ``t`` valid shares,
decrypts, decodes each limb sum with a bounded discrete log and recombines.
Anyone can re-check every step with :func:`verify_record`.

Everything here is pure: randomness, noise values and the discrete-log solver
come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tessera.crypto.dlog import DiscreteLog
from tessera.crypto.elgamal import Ciphertext, add_all, decrypt_to_point, encrypt_with, keygen
from tessera.crypto.group import G, N, Point, base_mul
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
from tessera.errors import InvalidProof, ProtocolError, TransportError

DEFAULT_LIMB_BITS = 21
_RELEASE = b"tessera/analyst-release/v1"


# -- public specification ------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SlotSpec:
    """A provider's integer for this slot lies in ``[lo, hi]``."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.hi < self.lo:
            raise ValueError(f"slot bounds [{self.lo}, {self.hi}] are empty")

    @property
    def span(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True, slots=True)
class VectorSpec:
    """The public shape of a query's contributions."""

    slots: tuple[SlotSpec, ...]
    limb_bits: int = DEFAULT_LIMB_BITS

    def __post_init__(self) -> None:
        if not self.slots:
            raise ValueError("a vector spec needs at least one slot")
        if not 1 <= self.limb_bits <= 30:
            raise ValueError("limb_bits must be in [1, 30]")

    def limb_count(self, slot: SlotSpec) -> int:
        bits = max(1, slot.span.bit_length())
        return -(-bits // self.limb_bits)

    def limb_ranges(self, slot: SlotSpec) -> list[int]:
        """The maximum of each limb of ``d = v − lo`` (``2^k − 1`` except the top one)."""
        bits = max(1, slot.span.bit_length())
        count = self.limb_count(slot)
        out = [(1 << self.limb_bits) - 1] * (count - 1)
        out.append((1 << (bits - self.limb_bits * (count - 1))) - 1)
        return out

    def needs_exact_bound(self, slot: SlotSpec) -> bool:
        return (slot.span + 1) & slot.span != 0  # span + 1 not a power of two


@dataclass(frozen=True, slots=True)
class AggregationQuery:
    """What every party agrees on before a query runs."""

    query_id: bytes
    spec: VectorSpec
    analyst_key: Point
    noise_bounds: tuple[int, ...] = ()  # per slot, per node: |η| ≤ bound; () means no noise

    def __post_init__(self) -> None:
        if self.noise_bounds and len(self.noise_bounds) != len(self.spec.slots):
            raise ValueError("noise_bounds needs one bound per slot (or none)")
        if any(b < 0 for b in self.noise_bounds):
            raise ValueError("noise bounds must be non-negative")

    def noise_limbs(self, i: int) -> int:
        """Limbs of one node's noise in slot ``i`` (base ``2^k``, the top one signed)."""
        if not self.noise_bounds:
            return 0
        return max(1, -(-self.noise_bounds[i].bit_length() // self.spec.limb_bits))

    def widths(self) -> list[int]:
        """Ciphertexts per slot in the aggregate: the wider of the values' and the noise's."""
        return [
            max(self.spec.limb_count(slot), self.noise_limbs(i))
            for i, slot in enumerate(self.spec.slots)
        ]


# -- messages ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SlotContribution:
    limbs: tuple[Ciphertext, ...]
    limb_proofs: tuple[RangeProof, ...]
    exact_proof: RangeProof | None


@dataclass(frozen=True, slots=True)
class VectorContribution:
    provider: str
    slots: tuple[SlotContribution, ...]


@dataclass(frozen=True, slots=True)
class SlotNoise:
    """One node's noise for one slot: its limbs, each with a range proof."""

    limbs: tuple[Ciphertext, ...]
    limb_proofs: tuple[RangeProof, ...]


@dataclass(frozen=True, slots=True)
class NoiseContribution:
    node: int
    slots: tuple[SlotNoise, ...]


@dataclass(frozen=True, slots=True)
class Release:
    """The analyst's decoded limb sums with one DLEQ proof per ciphertext."""

    limb_sums: tuple[int, ...]
    proofs: tuple[LinearProof, ...]


@dataclass
class AggregationRecord:
    """Everything public about one query: what a verifier needs."""

    query: AggregationQuery
    committee_key: Point
    public_shares: Mapping[int, Point]
    threshold: int
    contributions: list[VectorContribution] = field(default_factory=list)
    noise: list[NoiseContribution] = field(default_factory=list)
    rejected_noise: list[NoiseContribution] = field(default_factory=list)
    aggregate: list[Ciphertext] = field(default_factory=list)
    key_switch_shares: dict[int, list[KeySwitchShare]] = field(default_factory=dict)
    switched: list[Ciphertext] = field(default_factory=list)
    excluded_nodes: list[int] = field(default_factory=list)
    used_nodes: list[int] = field(default_factory=list)
    release: Release | None = None


# -- contexts ------------------------------------------------------------------------
def _ctx(query_id: bytes, *parts: str) -> bytes:
    return b"/".join([b"query", query_id.hex().encode(), *(p.encode() for p in parts)])


def provider_context(query_id: bytes, provider: str, slot: int, limb: int | str) -> bytes:
    return _ctx(query_id, "provider", provider, "slot", str(slot), "limb", str(limb))


def noise_context(query_id: bytes, node: int, slot: int, limb: int | str) -> bytes:
    return _ctx(query_id, "noise", str(node), "slot", str(slot), "limb", str(limb))


def keyswitch_context(query_id: bytes, position: int) -> bytes:
    return _ctx(query_id, "key-switch", str(position))


# -- provider ------------------------------------------------------------------------
def _limbs(d: int, k: int, count: int) -> list[int]:
    mask = (1 << k) - 1
    return [(d >> (k * j)) & mask for j in range(count)]


def recombine(limbs: Sequence[Ciphertext], k: int) -> Ciphertext:
    """``Σ 2^{kj}·C_j``: the ciphertext of the whole value from its limbs."""
    acc = Ciphertext.zero()
    for c in reversed(limbs):
        acc = acc * (1 << k) + c
    return acc


def contribute(
    query: AggregationQuery, committee_key: Point, provider: str, values: Sequence[int], rng: Rng
) -> VectorContribution:
    """Encrypt ``values`` slot by slot, with limb and exact-bound range proofs."""
    spec = query.spec
    if len(values) != len(spec.slots):
        raise ValueError(f"expected {len(spec.slots)} values, got {len(values)}")
    out = []
    for i, (v, slot) in enumerate(zip(values, spec.slots, strict=True)):
        if not slot.lo <= v <= slot.hi:
            raise ValueError(
                f"slot {i}: value {v} outside its public bounds [{slot.lo}, {slot.hi}]"
            )
        d = v - slot.lo
        ranges = spec.limb_ranges(slot)
        limb_vals = _limbs(d, spec.limb_bits, len(ranges))
        rs = [rng.scalar() for _ in ranges]
        cts = [encrypt_with(committee_key, m, r) for m, r in zip(limb_vals, rs, strict=True)]
        proofs = tuple(
            prove_range(
                provider_context(query.query_id, provider, i, j), committee_key, c, m, r, 0, hi, rng
            )
            for j, (c, m, r, hi) in enumerate(zip(cts, limb_vals, rs, ranges, strict=True))
        )
        exact = None
        if spec.needs_exact_bound(slot):
            r_all = sum(r << (spec.limb_bits * j) for j, r in enumerate(rs)) % N
            whole = recombine(cts, spec.limb_bits)
            ctx = provider_context(query.query_id, provider, i, "exact")
            exact = prove_range(ctx, committee_key, whole, d, r_all, 0, slot.span, rng)
        out.append(SlotContribution(tuple(cts), proofs, exact))
    return VectorContribution(provider, tuple(out))


def verify_contribution(
    query: AggregationQuery, committee_key: Point, c: VectorContribution
) -> None:
    spec = query.spec
    if len(c.slots) != len(spec.slots):
        raise InvalidProof(
            f"provider {c.provider}: {len(c.slots)} slots, expected {len(spec.slots)}"
        )
    for i, (sc, slot) in enumerate(zip(c.slots, spec.slots, strict=True)):
        ranges = spec.limb_ranges(slot)
        if len(sc.limbs) != len(ranges) or len(sc.limb_proofs) != len(ranges):
            raise InvalidProof(f"provider {c.provider}, slot {i}: wrong number of limbs")
        for j, (ct, pf, hi) in enumerate(zip(sc.limbs, sc.limb_proofs, ranges, strict=True)):
            ctx = provider_context(query.query_id, c.provider, i, j)
            verify_range(ctx, committee_key, ct, 0, hi, pf)
        if spec.needs_exact_bound(slot):
            if sc.exact_proof is None:
                raise InvalidProof(f"provider {c.provider}, slot {i}: missing exact-bound proof")
            ctx = provider_context(query.query_id, c.provider, i, "exact")
            whole = recombine(sc.limbs, spec.limb_bits)
            verify_range(ctx, committee_key, whole, 0, slot.span, sc.exact_proof)


# -- computing nodes -------------------------------------------------------------------
def _signed_limbs(eta: int, k: int, count: int) -> list[int]:
    """``η = Σ 2^{kj}·η_j`` with ``0 ≤ η_j < 2^k`` below the top limb, which carries the sign."""
    out = []
    for _ in range(count - 1):
        out.append(eta & ((1 << k) - 1))
        eta >>= k
    out.append(eta)
    return out


def noise_limb_ranges(query: AggregationQuery, i: int) -> list[tuple[int, int]]:
    """Proven interval of each noise limb of slot ``i``: ``[0, 2^k)`` below the signed top."""
    k = query.spec.limb_bits
    count = query.noise_limbs(i)
    top = query.noise_bounds[i] >> (k * (count - 1))
    return [(0, (1 << k) - 1)] * (count - 1) + [(-top - 1, top)]


def max_noise_bias(query: AggregationQuery, i: int) -> int:
    """Largest |η| the limb proofs of slot ``i`` admit: what one cheating node can add."""
    k = query.spec.limb_bits
    count = query.noise_limbs(i)
    top = query.noise_bounds[i] >> (k * (count - 1))
    return (top + 1) << (k * (count - 1))


def add_noise(
    query: AggregationQuery, committee_key: Point, node: int, noise: Sequence[int], rng: Rng
) -> NoiseContribution:
    """Encrypt this node's noise (one integer per slot) in limbs, each with a range proof.

    The low limbs are proven in ``[0, 2^k)`` and the signed top limb in its interval, so
    the noise is proven within :func:`max_noise_bias` (less than twice the declared bound)
    at the cost of one proof over its bits, and every limb sum stays small to decode.
    """
    if not query.noise_bounds:
        raise ValueError("this query declares no noise")
    if len(noise) != len(query.spec.slots):
        raise ValueError(f"expected {len(query.spec.slots)} noise values, got {len(noise)}")
    k = query.spec.limb_bits
    slots = []
    for i, (eta, b) in enumerate(zip(noise, query.noise_bounds, strict=True)):
        if abs(eta) > b:
            raise ValueError(f"slot {i}: noise {eta} exceeds the declared bound {b}")
        values = _signed_limbs(eta, k, query.noise_limbs(i))
        cts, proofs = [], []
        for j, (m, (lo, hi)) in enumerate(zip(values, noise_limb_ranges(query, i), strict=True)):
            r = rng.scalar()
            ct = encrypt_with(committee_key, m, r)
            ctx = noise_context(query.query_id, node, i, j)
            cts.append(ct)
            proofs.append(prove_range(ctx, committee_key, ct, m, r, lo, hi, rng))
        slots.append(SlotNoise(tuple(cts), tuple(proofs)))
    return NoiseContribution(node, tuple(slots))


def verify_noise(query: AggregationQuery, committee_key: Point, nc: NoiseContribution) -> None:
    if len(nc.slots) != len(query.noise_bounds):
        raise InvalidProof(f"node {nc.node}: noise for {len(nc.slots)} slots")
    for i, sn in enumerate(nc.slots):
        ranges = noise_limb_ranges(query, i)
        if len(sn.limbs) != len(ranges) or len(sn.limb_proofs) != len(ranges):
            raise InvalidProof(f"node {nc.node}, slot {i}: wrong number of noise limbs")
        for j, (ct, pf, (lo, hi)) in enumerate(zip(sn.limbs, sn.limb_proofs, ranges, strict=True)):
            verify_range(
                noise_context(query.query_id, nc.node, i, j), committee_key, ct, lo, hi, pf
            )


def aggregate(
    query: AggregationQuery,
    contributions: Sequence[VectorContribution],
    noise: Sequence[NoiseContribution],
) -> list[Ciphertext]:
    """Per slot and limb position, the sum of the providers' and the nodes' limbs."""
    widths = query.widths()
    out: list[Ciphertext] = []
    for c in contributions:
        if len(c.slots) != len(widths):
            raise ProtocolError(f"provider {c.provider}: wrong number of slots")
    for nc in noise:
        if len(nc.slots) != len(widths):
            raise ProtocolError(f"node {nc.node}: wrong number of noise slots")
    for i, width in enumerate(widths):
        for j in range(width):
            parts = [c.slots[i].limbs[j] for c in contributions if j < len(c.slots[i].limbs)]
            parts += [nc.slots[i].limbs[j] for nc in noise if j < len(nc.slots[i].limbs)]
            out.append(add_all(parts))
    return out


def key_switch(
    query: AggregationQuery, node: int, secret_share: int, agg: Sequence[Ciphertext], rng: Rng
) -> list[KeySwitchShare]:
    return [
        key_switch_share(
            keyswitch_context(query.query_id, p), node, secret_share, ct, query.analyst_key, rng
        )
        for p, ct in enumerate(agg)
    ]


def _node_shares_valid(
    query: AggregationQuery,
    public_shares: Mapping[int, Point],
    agg: Sequence[Ciphertext],
    node: int,
    node_shares: Sequence[KeySwitchShare],
) -> bool:
    if len(node_shares) != len(agg):
        return False
    for p, (ct, s) in enumerate(zip(agg, node_shares, strict=True)):
        _, wrong = filter_valid_key_switch(
            keyswitch_context(query.query_id, p), public_shares, ct, query.analyst_key, [s]
        )
        if wrong or s.index != node:
            return False
    return True


def combine(
    query: AggregationQuery,
    public_shares: Mapping[int, Point],
    threshold: int,
    agg: Sequence[Ciphertext],
    shares: Mapping[int, Sequence[KeySwitchShare]],
    check_all: bool = False,
) -> tuple[list[Ciphertext], list[int], list[int]]:
    """Switched ciphertexts from the first ``threshold`` nodes whose shares all verify.

    Returns ``(switched, excluded, used)``: ``excluded`` are nodes proven to have sent a
    bad share (all nodes are checked if ``check_all``, else only until a quorum is
    found), ``used`` the quorum whose shares were combined.
    """
    bad: list[int] = []
    used: list[int] = []
    for node in sorted(shares):
        if len(used) == threshold and not check_all:
            break
        if _node_shares_valid(query, public_shares, agg, node, shares[node]):
            if len(used) < threshold:
                used.append(node)
        else:
            bad.append(node)
    if len(used) < threshold:
        raise ProtocolError(f"only {len(used)} nodes gave valid shares, need {threshold}")
    switched = [
        combine_key_switch(ct, [shares[n][p] for n in used], threshold) for p, ct in enumerate(agg)
    ]
    return switched, bad, used


# -- analyst ---------------------------------------------------------------------------
def release(
    query: AggregationQuery,
    analyst_secret: int,
    switched: Sequence[Ciphertext],
    dlog: DiscreteLog,
    rng: Rng,
) -> Release:
    sums, proofs = [], []
    for p, ct in enumerate(switched):
        mg = decrypt_to_point(analyst_secret, ct)
        sums.append(dlog.decode(mg))
        stmt = dleq_statement(G, query.analyst_key, ct.c1, ct.c2 - mg)
        t = Transcript(_RELEASE, keyswitch_context(query.query_id, p))
        proofs.append(prove_linear(t, stmt, [analyst_secret], rng))
    return Release(tuple(sums), tuple(proofs))


def verify_release(query: AggregationQuery, switched: Sequence[Ciphertext], rel: Release) -> None:
    if len(rel.limb_sums) != len(switched) or len(rel.proofs) != len(switched):
        raise InvalidProof("release: wrong number of values")
    for p, (ct, v, pf) in enumerate(zip(switched, rel.limb_sums, rel.proofs, strict=True)):
        stmt = dleq_statement(G, query.analyst_key, ct.c1, ct.c2 - base_mul(v))
        verify_linear(Transcript(_RELEASE, keyswitch_context(query.query_id, p)), stmt, pf)


def decode(query: AggregationQuery, limb_sums: Sequence[int], providers: int) -> list[int]:
    """Per slot: ``Σ_j 2^{kj}·limb_sum_j + providers·lo`` (noise included)."""
    spec = query.spec
    out, pos = [], 0
    for slot, width in zip(spec.slots, query.widths(), strict=True):
        total = sum(limb_sums[pos + j] << (spec.limb_bits * j) for j in range(width))
        out.append(total + providers * slot.lo)
        pos += width
    return out


# -- verifier --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok``: the released values are proven to follow from valid inputs.

    ``cheaters`` lists nodes whose proofs failed (excluded by the committee; the
    result stands on the honest quorum). ``failures`` says what broke ``ok``.
    """

    ok: bool
    checked_proofs: int
    failures: tuple[str, ...]
    cheaters: tuple[int, ...] = ()
    noise_cheaters: tuple[int, ...] = ()


def verify_record(record: AggregationRecord) -> Verdict:
    """Re-check a whole query from public data only."""
    q = record.query
    failures: list[str] = []
    checked = 0
    providers: set[str] = set()
    for c in record.contributions:
        checked += sum(len(s.limb_proofs) + (s.exact_proof is not None) for s in c.slots)
        if c.provider in providers:
            failures.append(f"provider {c.provider}: duplicate contribution")
        providers.add(c.provider)
        try:
            verify_contribution(q, record.committee_key, c)
        except InvalidProof as exc:
            failures.append(f"provider {c.provider}: {exc}")
    noisy_nodes = [nc.node for nc in record.noise]
    if len(set(noisy_nodes)) != len(noisy_nodes) or not set(noisy_nodes) <= set(
        record.public_shares
    ):
        failures.append("noise from a node twice, or from outside the committee")
    noise_cheaters: list[int] = []
    for nc in record.noise:
        checked += sum(len(sn.limb_proofs) for sn in nc.slots)
        try:
            verify_noise(q, record.committee_key, nc)
        except InvalidProof as exc:
            failures.append(f"node {nc.node} noise: {exc}")
            noise_cheaters.append(nc.node)
    try:
        agg = aggregate(q, record.contributions, record.noise)
    except ProtocolError as exc:
        return Verdict(False, checked, (*failures, str(exc)))
    if agg != record.aggregate:
        failures.append("aggregate differs from the sum of contributions and noise")
        if len(record.aggregate) == len(agg):
            # judge each node on what it was given to switch, so blame lands right
            agg = list(record.aggregate)
    checked += sum(len(v) for v in record.key_switch_shares.values())
    valid = {
        node: _node_shares_valid(q, record.public_shares, agg, node, node_shares)
        for node, node_shares in sorted(record.key_switch_shares.items())
    }
    bad = [node for node, ok in valid.items() if not ok]
    used = record.used_nodes
    if len(set(used)) != record.threshold or not all(valid.get(n, False) for n in used):
        return Verdict(
            False,
            checked,
            (*failures, f"the combined quorum {used} is not {record.threshold} valid nodes"),
            tuple(bad),
        )
    switched = [
        combine_key_switch(ct, [record.key_switch_shares[n][p] for n in used], record.threshold)
        for p, ct in enumerate(agg)
    ]
    if switched != record.switched:
        failures.append("switched ciphertexts differ from the combination of the quorum's shares")
    if record.release is None:
        failures.append("no release published")
    else:
        checked += len(record.release.proofs)
        try:
            verify_release(q, switched, record.release)
        except InvalidProof as exc:
            failures.append(f"release: {exc}")
    # noise set aside by the committee must be provably bad
    rejected: list[int] = []
    for nc in record.rejected_noise:
        try:
            verify_noise(q, record.committee_key, nc)
        except InvalidProof:
            rejected.append(nc.node)
        else:
            failures.append(f"node {nc.node}: its noise was set aside although it verifies")
    if not set(record.excluded_nodes) <= set(bad) | set(rejected):
        failures.append("a node was excluded without a failing proof")
    cheaters = tuple(sorted({*bad, *noise_cheaters, *rejected}))
    return Verdict(not failures, checked, tuple(failures), cheaters, tuple(noise_cheaters))


# -- in-memory run -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeKey:
    """What a computing node needs from its DKG output."""

    index: int
    secret_share: int


StepRunner = Callable[[str, str, Callable[[], Any]], Any]
#: A computing node's key switching of an aggregate (its shares with their proofs).
KeySwitcher = Callable[[Sequence[Ciphertext]], list[KeySwitchShare]]


def key_switchers(
    query: AggregationQuery,
    node_keys: Sequence[NodeKey],
    rng: Rng,
    cheating_nodes: Sequence[int] = (),
) -> dict[int, KeySwitcher]:
    """In-memory key switchers from the nodes' secret shares.

    ``cheating_nodes`` is a test hook: those nodes corrupt their first share (keeping
    its proof, which then fails).
    """

    def switcher(k: NodeKey) -> KeySwitcher:
        def run(agg: Sequence[Ciphertext]) -> list[KeySwitchShare]:
            shares = key_switch(query, k.index, k.secret_share, agg, rng)
            if k.index in cheating_nodes:
                s = shares[0]
                shares[0] = KeySwitchShare(s.index, s.u, s.w + G, s.proof)
            return shares

        return run

    return {k.index: switcher(k) for k in node_keys}


def run_directly(role: str, who: str, fn: Callable[[], Any]) -> Any:
    """The default :data:`StepRunner`: just run the step."""
    return fn()


def run_aggregation(
    query_id: bytes,
    spec: VectorSpec,
    values: Mapping[str, Sequence[int]],
    committee_key: Point,
    public_shares: Mapping[int, Point],
    node_keys: Sequence[NodeKey],
    threshold: int,
    dlog: DiscreteLog,
    rng: Rng,
    noise: Mapping[int, Sequence[int]] | None = None,
    noise_bounds: Sequence[int] = (),
    cheating_nodes: Sequence[int] = (),
    step: StepRunner = run_directly,
    analyst: tuple[int, Point] | None = None,
    noise_cheating_nodes: Sequence[int] = (),
) -> tuple[AggregationRecord, list[int]]:
    """Run one aggregation in memory: returns the public record and the decoded vector.

    Each role's work goes through ``step(role, who, fn)``, so a caller can time or
    distribute it (roles: ``provider``, ``noise``, ``aggregate``, ``key-switch``,
    ``combine``, ``analyst``) without this pure module reading the clock. ``analyst``
    is the analyst's key pair (fresh if omitted). ``cheating_nodes`` and
    ``noise_cheating_nodes`` are test hooks: those nodes corrupt a key-switch share or
    their noise (keeping their proofs, which then fail).
    """
    analyst_secret, analyst_key = analyst if analyst is not None else keygen(rng)
    query = AggregationQuery(query_id, spec, analyst_key, tuple(noise_bounds))
    rec = AggregationRecord(query, committee_key, public_shares, threshold)
    rec.contributions = [
        step("provider", p, partial(contribute, query, committee_key, p, v, rng))
        for p, v in values.items()
    ]
    if noise is not None:
        rec.noise = [
            step(
                "noise",
                str(k.index),
                partial(add_noise, query, committee_key, k.index, noise[k.index], rng),
            )
            for k in node_keys
            if k.index in noise
        ]
        rec.noise = [
            _corrupt_noise(nc, committee_key, rng) if nc.node in noise_cheating_nodes else nc
            for nc in rec.noise
        ]
    return rec, switch_and_release(
        rec, node_keys, analyst_secret, dlog, rng, cheating_nodes=cheating_nodes, step=step
    )


def _corrupt_noise(nc: NoiseContribution, committee_key: Point, rng: Rng) -> NoiseContribution:
    first = nc.slots[0]
    big = first.limbs[0] + encrypt_with(committee_key, 1 << 20, rng.scalar())
    return NoiseContribution(
        nc.node, (SlotNoise((big, *first.limbs[1:]), first.limb_proofs), *nc.slots[1:])
    )


def switch_and_release(
    rec: AggregationRecord,
    node_keys: Sequence[NodeKey],
    analyst_secret: int,
    dlog: DiscreteLog,
    rng: Rng,
    cheating_nodes: Sequence[int] = (),
    step: StepRunner = run_directly,
    switchers: Mapping[int, KeySwitcher] | None = None,
) -> list[int]:
    """Aggregate, key-switch, combine and release ``rec`` (filled in place); the decoded vector.

    The nodes switch through ``switchers`` (node index -> its key switcher; by default
    built from ``node_keys``). A node whose switcher raises is left out: the analyst
    combines any ``threshold`` valid nodes.
    """
    query = rec.query
    if switchers is None:
        switchers = key_switchers(query, node_keys, rng, cheating_nodes)
    rec.aggregate = step(
        "aggregate", "committee", lambda: aggregate(query, rec.contributions, rec.noise)
    )
    rec.key_switch_shares = {}
    for index, switch in sorted(switchers.items()):
        try:
            shares: list[KeySwitchShare] = step(
                "key-switch", str(index), partial(switch, rec.aggregate)
            )
        except TransportError:
            continue  # a node that is down: the others may still make a quorum
        rec.key_switch_shares[index] = shares
    excluded_before = [n for n in rec.excluded_nodes if n in {nc.node for nc in rec.rejected_noise}]
    rec.switched, bad, rec.used_nodes = step(
        "combine",
        "analyst",
        lambda: combine(
            query, rec.public_shares, rec.threshold, rec.aggregate, rec.key_switch_shares
        ),
    )
    rec.excluded_nodes = sorted({*excluded_before, *bad})
    rec.release = step(
        "analyst", "analyst", lambda: release(query, analyst_secret, rec.switched, dlog, rng)
    )
    return decode(query, rec.release.limb_sums, len(rec.contributions))


def set_aside_noise(
    rec: AggregationRecord,
    nodes: Sequence[int],
    node_keys: Sequence[NodeKey],
    analyst_secret: int,
    dlog: DiscreteLog,
    rng: Rng,
    step: StepRunner = run_directly,
    switchers: Mapping[int, KeySwitcher] | None = None,
) -> list[int]:
    """Recover from nodes whose noise proofs fail: drop their noise, redo the switch.

    The honest nodes' noise is kept as it was (no fresh draw, so no extra privacy
    cost); the dropped contributions stay in the record as ``rejected_noise`` so that
    anyone can check the exclusion was deserved.
    """
    drop = set(nodes)
    rec.rejected_noise += [nc for nc in rec.noise if nc.node in drop]
    rec.noise = [nc for nc in rec.noise if nc.node not in drop]
    rec.excluded_nodes = sorted({*rec.excluded_nodes, *drop})
    return switch_and_release(
        rec, node_keys, analyst_secret, dlog, rng, step=step, switchers=switchers
    )
