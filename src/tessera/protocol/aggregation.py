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
from tessera.crypto.elgamal import Ciphertext, add_all, decrypt_to_point, encrypt_with
from tessera.crypto.group import G, N, Point, base_mul
from tessera.crypto.proofs import (
    LinearProof,
    LinearStatement,
    dleq_statement,
    prove_linear,
    verify_linear,
)
from tessera.crypto.rangeproof import RangeClaim, RangeProof, batch_verify_range, prove_range
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
NOISE_TOP_EXTRA_BITS = 4
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
        """Limbs of one node's noise in slot ``i``: base ``2^k`` below a signed top limb
        of up to ``k + NOISE_TOP_EXTRA_BITS`` bits (a wide top limb keeps what its proof
        admits within 1/16 of the bound, see :func:`noise_limb_ranges`)."""
        if not self.noise_bounds:
            return 0
        k = self.spec.limb_bits
        extra = self.noise_bounds[i].bit_length() - (k + NOISE_TOP_EXTRA_BITS)
        return 1 + max(0, -(-extra // k))

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
    knowledge: tuple[LinearProof, ...] = ()  # per limb: the author knows its randomness


@dataclass(frozen=True, slots=True)
class VectorContribution:
    provider: str
    slots: tuple[SlotContribution, ...]


@dataclass(frozen=True, slots=True)
class SlotNoise:
    """One node's noise for one slot: its limbs, each with a range proof."""

    limbs: tuple[Ciphertext, ...]
    limb_proofs: tuple[RangeProof, ...]
    knowledge: tuple[LinearProof, ...] = ()  # per limb: the author knows its randomness


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
    # providers that committed a contribution and served none matching it, by name, with
    # the reason: left out of the aggregate, as the nodes that switched it locked
    withheld: dict[str, str] = field(default_factory=dict)


# -- contexts ------------------------------------------------------------------------
def _ctx(query_id: bytes, *parts: str) -> bytes:
    return b"/".join([b"query", query_id.hex().encode(), *(p.encode() for p in parts)])


def provider_context(query_id: bytes, provider: str, slot: int, limb: int | str) -> bytes:
    return _ctx(query_id, "provider", provider, "slot", str(slot), "limb", str(limb))


def noise_context(query_id: bytes, node: int, slot: int, limb: int | str) -> bytes:
    return _ctx(query_id, "noise", str(node), "slot", str(slot), "limb", str(limb))


def keyswitch_context(query_id: bytes, position: int) -> bytes:
    return _ctx(query_id, "key-switch", str(position))


# -- knowledge of a ciphertext's randomness (signed ElGamal, SJ00) ----------------------
_KNOWLEDGE = b"tessera/ciphertext-knowledge/v1"


def _knowledge_statement(ct: Ciphertext) -> LinearStatement:
    return LinearStatement(((G,),), (ct.c1,))


def prove_knowledge(context: bytes, ct: Ciphertext, r: int, rng: Rng) -> LinearProof:
    """Schnorr proof that the author knows ``r`` with ``C1 = r·G``, bound to ``context``
    and to the whole ciphertext: whoever proves it knows the plaintext too, so nobody can
    pass off a copy, a re-randomisation or a combination of another party's ciphertexts
    (those of an earlier query included) as their own."""
    t = Transcript(_KNOWLEDGE, context)
    t.append(b"C", ct.encode())
    return prove_linear(t, _knowledge_statement(ct), [r], rng)


def verify_knowledge(context: bytes, ct: Ciphertext, proof: LinearProof) -> None:
    t = Transcript(_KNOWLEDGE, context)
    t.append(b"C", ct.encode())
    verify_linear(t, _knowledge_statement(ct), proof)


def check_contribution_knowledge(query: AggregationQuery, c: VectorContribution) -> None:
    """Every limb of ``c`` carries a valid knowledge proof for this query and this provider.

    Far cheaper than the range proofs (one double multiplication per limb): what a
    computing node checks before it adds a contribution into what it key-switches."""
    if len(c.slots) != len(query.spec.slots):
        raise InvalidProof(
            f"provider {c.provider}: {len(c.slots)} slots, expected {len(query.spec.slots)}"
        )
    for i, (sc, slot) in enumerate(zip(c.slots, query.spec.slots, strict=True)):
        if len(sc.limbs) != query.spec.limb_count(slot) or len(sc.knowledge) != len(sc.limbs):
            raise InvalidProof(f"provider {c.provider}, slot {i}: wrong number of limbs or proofs")
        for j, (ct, pf) in enumerate(zip(sc.limbs, sc.knowledge, strict=True)):
            verify_knowledge(provider_context(query.query_id, c.provider, i, j), ct, pf)


def check_noise_knowledge(query: AggregationQuery, nc: NoiseContribution) -> None:
    """:func:`check_contribution_knowledge` for a node's noise."""
    if len(nc.slots) != len(query.noise_bounds):
        raise InvalidProof(f"node {nc.node}: noise for {len(nc.slots)} slots")
    for i, sn in enumerate(nc.slots):
        if len(sn.limbs) != query.noise_limbs(i) or len(sn.knowledge) != len(sn.limbs):
            raise InvalidProof(f"node {nc.node}, slot {i}: wrong number of noise limbs or proofs")
        for j, (ct, pf) in enumerate(zip(sn.limbs, sn.knowledge, strict=True)):
            verify_knowledge(noise_context(query.query_id, nc.node, i, j), ct, pf)


def required_noise(n: int, t: int) -> int:
    """How many distinct nodes' noise a noised aggregate must hold: ``n − t + 1``.

    At most ``t − 1`` of them are corrupt, so at least ``n − 2t + 2`` honest draws are in
    every aggregate a node agrees to switch: what :mod:`tessera.dp.distributed`
    calibrates for (``n ≥ 2t − 1`` makes that at least one)."""
    return n - t + 1


def check_noise_set(
    query: AggregationQuery, n: int, t: int, noise: Sequence[NoiseContribution], own: int | None
) -> None:
    """The noise set of an aggregate: distinct committee members, at least
    :func:`required_noise` of them, ``own``'s included (the node about to switch it);
    none at all for a query without differential privacy."""
    nodes = [nc.node for nc in noise]
    if not query.noise_bounds:
        if nodes:
            raise ProtocolError("a query without differential privacy carries no noise")
        return
    if len(set(nodes)) != len(nodes):
        raise ProtocolError("noise from the same node twice")
    if not set(nodes) <= set(range(1, n + 1)):
        raise ProtocolError("noise from outside the committee")
    if len(nodes) < required_noise(n, t):
        raise ProtocolError(
            f"noise from {len(nodes)} nodes; a release needs {required_noise(n, t)} distinct nodes'"
        )
    if own is not None and own not in nodes:
        raise ProtocolError(f"node {own}'s own noise is not in the aggregate")


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
                provider_context(query.query_id, provider, i, j),
                committee_key,
                c,
                m,
                r,
                0,
                hi,
                rng,
                batchable=True,
            )
            for j, (c, m, r, hi) in enumerate(zip(cts, limb_vals, rs, ranges, strict=True))
        )
        exact = None
        if spec.needs_exact_bound(slot):
            r_all = sum(r << (spec.limb_bits * j) for j, r in enumerate(rs)) % N
            whole = recombine(cts, spec.limb_bits)
            ctx = provider_context(query.query_id, provider, i, "exact")
            exact = prove_range(
                ctx, committee_key, whole, d, r_all, 0, slot.span, rng, batchable=True
            )
        knowledge = tuple(
            prove_knowledge(provider_context(query.query_id, provider, i, j), c, r, rng)
            for j, (c, r) in enumerate(zip(cts, rs, strict=True))
        )
        out.append(SlotContribution(tuple(cts), proofs, exact, knowledge))
    return VectorContribution(provider, tuple(out))


#: A range check of a message, or the structural failure that ends its checks.
_Step = RangeClaim | InvalidProof


def _contribution_steps(
    query: AggregationQuery, committee_key: Point, c: VectorContribution
) -> list[_Step]:
    """The range proofs of ``c`` in the order :func:`verify_contribution` checks them; a
    malformed slot ends the list with its error (its knowledge proofs raise at once)."""
    spec = query.spec
    check_contribution_knowledge(query, c)
    steps: list[_Step] = []
    for i, (sc, slot) in enumerate(zip(c.slots, spec.slots, strict=True)):
        ranges = spec.limb_ranges(slot)
        if len(sc.limbs) != len(ranges) or len(sc.limb_proofs) != len(ranges):
            steps.append(InvalidProof(f"provider {c.provider}, slot {i}: wrong number of limbs"))
            return steps
        for j, (ct, pf, hi) in enumerate(zip(sc.limbs, sc.limb_proofs, ranges, strict=True)):
            ctx = provider_context(query.query_id, c.provider, i, j)
            steps.append(RangeClaim(ctx, committee_key, ct, 0, hi, pf))
        if spec.needs_exact_bound(slot):
            if sc.exact_proof is None:
                steps.append(
                    InvalidProof(f"provider {c.provider}, slot {i}: missing exact-bound proof")
                )
                return steps
            ctx = provider_context(query.query_id, c.provider, i, "exact")
            whole = recombine(sc.limbs, spec.limb_bits)
            steps.append(RangeClaim(ctx, committee_key, whole, 0, slot.span, sc.exact_proof))
    return steps


def _noise_steps(
    query: AggregationQuery, committee_key: Point, nc: NoiseContribution
) -> list[_Step]:
    """:func:`_contribution_steps` for a node's noise (the order of :func:`verify_noise`)."""
    check_noise_knowledge(query, nc)
    steps: list[_Step] = []
    for i, sn in enumerate(nc.slots):
        ranges = noise_limb_ranges(query, i)
        if len(sn.limbs) != len(ranges) or len(sn.limb_proofs) != len(ranges):
            steps.append(InvalidProof(f"node {nc.node}, slot {i}: wrong number of noise limbs"))
            return steps
        for j, (ct, pf, (lo, hi)) in enumerate(zip(sn.limbs, sn.limb_proofs, ranges, strict=True)):
            ctx = noise_context(query.query_id, nc.node, i, j)
            steps.append(RangeClaim(ctx, committee_key, ct, lo, hi, pf))
    return steps


def _steps_or_error(build: Callable[[], list[_Step]]) -> list[_Step]:
    try:
        return build()
    except InvalidProof as exc:
        return [exc]


def _first_failures(messages: Sequence[list[_Step]]) -> list[InvalidProof | None]:
    """Per message, the first failure in its checking order (``None``: all its range proofs
    hold), with the range proofs of all messages checked as one batch
    (:func:`~tessera.crypto.rangeproof.batch_verify_range`: one multi-scalar multiplication,
    one-by-one checks only where it fails, so each failure is the one
    :func:`~tessera.crypto.rangeproof.verify_range` gives)."""
    claims: list[RangeClaim] = []
    where: list[tuple[int, int]] = []
    for m, steps in enumerate(messages):
        for k, step in enumerate(steps):
            if isinstance(step, RangeClaim):
                claims.append(step)
                where.append((m, k))
    bad = {where[i]: exc for i, exc in batch_verify_range(claims).items()}
    out: list[InvalidProof | None] = []
    for m, steps in enumerate(messages):
        first: InvalidProof | None = None
        for k, step in enumerate(steps):
            if isinstance(step, InvalidProof):
                first = step
                break
            if (m, k) in bad:
                first = bad[(m, k)]
                break
        out.append(first)
    return out


def verify_contribution(
    query: AggregationQuery, committee_key: Point, c: VectorContribution
) -> None:
    """Raise :class:`InvalidProof` (the first failure) unless every proof of ``c`` holds;
    its range proofs are checked as one batch."""
    failure = _first_failures([_contribution_steps(query, committee_key, c)])[0]
    if failure is not None:
        raise failure


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
    """Proven interval of each noise limb of slot ``i``.

    One limb: exactly ``[−B, B]``. Several: ``[0, 2^k)`` for the low ones and
    ``[−T − 1, T]`` for the top one (weight ``2^s``, ``s = k·(limbs − 1)``) with the least
    ``T`` that admits every ``|η| ≤ B``, so the proofs admit ``η ∈ [−(T+1)·2^s, (T+1)·2^s − 1]``
    and ``(T + 1)·2^s ≤ B + 2^s``, within 1/16 of ``B`` since the top limb spans at least
    ``NOISE_TOP_EXTRA_BITS + 1`` bits of ``B``: that is :func:`max_noise_bias`."""
    k = query.spec.limb_bits
    bound = query.noise_bounds[i]
    count = query.noise_limbs(i)
    if count == 1:
        return [(-bound, bound)]
    low = k * (count - 1)
    top = -(-(bound + 1) >> low) - 1  # ceil((B + 1) / 2^s) - 1
    return [(0, (1 << k) - 1)] * (count - 1) + [(-top - 1, top)]


def max_noise_bias(query: AggregationQuery, i: int) -> int:
    """Largest |η| the limb proofs of slot ``i`` admit: what one cheating node can add."""
    ranges = noise_limb_ranges(query, i)
    if len(ranges) == 1:
        return query.noise_bounds[i]
    low = query.spec.limb_bits * (len(ranges) - 1)
    return (ranges[-1][1] + 1) << low


def add_noise(
    query: AggregationQuery, committee_key: Point, node: int, noise: Sequence[int], rng: Rng
) -> NoiseContribution:
    """Encrypt this node's noise (one integer per slot) in limbs, each with a range proof.

    Each limb is proven in its interval of :func:`noise_limb_ranges`, so the noise is
    proven within :func:`max_noise_bias` at the cost of one proof over its bits, and
    every limb sum stays small to decode. Each limb also carries a knowledge proof.
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
        cts, proofs, knowledge = [], [], []
        for j, (m, (lo, hi)) in enumerate(zip(values, noise_limb_ranges(query, i), strict=True)):
            r = rng.scalar()
            ct = encrypt_with(committee_key, m, r)
            ctx = noise_context(query.query_id, node, i, j)
            cts.append(ct)
            proofs.append(prove_range(ctx, committee_key, ct, m, r, lo, hi, rng, batchable=True))
            knowledge.append(prove_knowledge(ctx, ct, r, rng))
        slots.append(SlotNoise(tuple(cts), tuple(proofs), tuple(knowledge)))
    return NoiseContribution(node, tuple(slots))


def verify_noise(query: AggregationQuery, committee_key: Point, nc: NoiseContribution) -> None:
    """Raise :class:`InvalidProof` (the first failure) unless every proof of ``nc`` holds;
    its range proofs are checked as one batch."""
    failure = _first_failures([_noise_steps(query, committee_key, nc)])[0]
    if failure is not None:
        raise failure


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
    result stands on the honest quorum). ``failures`` says what broke ``ok``;
    ``release_failures``, those of them about the analyst's own release (missing or
    not proven), which say nothing of the work of the providers and nodes.
    """

    ok: bool
    checked_proofs: int
    failures: tuple[str, ...]
    cheaters: tuple[int, ...] = ()
    noise_cheaters: tuple[int, ...] = ()
    release_failures: tuple[str, ...] = ()

    @property
    def work_ok(self) -> bool:
        """The providers' and nodes' messages are all proven (what a verifier votes on:
        an analyst cannot fail a query, and keep its price, by releasing badly)."""
        return all(f in self.release_failures for f in self.failures)


def verify_record(record: AggregationRecord) -> Verdict:
    """Re-check a whole query from public data only."""
    q = record.query
    failures: list[str] = []
    checked = 0
    providers: set[str] = set()
    # every range proof of every contribution and noise: one batch, one multi-scalar
    # multiplication (one-by-one checks only where it fails, naming each failure)
    key = record.committee_key
    outcomes = _first_failures(
        [
            *(
                _steps_or_error(partial(_contribution_steps, q, key, c))
                for c in record.contributions
            ),
            *(_steps_or_error(partial(_noise_steps, q, key, nc)) for nc in record.noise),
        ]
    )
    contribution_failures = outcomes[: len(record.contributions)]
    noise_failures = outcomes[len(record.contributions) :]
    for c, c_failure in zip(record.contributions, contribution_failures, strict=True):
        checked += sum(len(s.limb_proofs) + (s.exact_proof is not None) for s in c.slots)
        if c.provider in providers:
            failures.append(f"provider {c.provider}: duplicate contribution")
        providers.add(c.provider)
        if c_failure is not None:
            failures.append(f"provider {c.provider}: {c_failure}")
    n = len(record.public_shares)
    try:
        check_noise_set(q, n, record.threshold, record.noise, None)
    except ProtocolError as exc:
        failures.append(f"noise set: {exc}")
    noisy_nodes = {nc.node for nc in record.noise}
    if q.noise_bounds and not set(record.used_nodes) <= noisy_nodes:
        failures.append("a node of the combined quorum switched an aggregate without its noise")
    noise_cheaters: list[int] = []
    for nc, n_failure in zip(record.noise, noise_failures, strict=True):
        checked += sum(len(sn.limb_proofs) for sn in nc.slots)
        if n_failure is not None:
            failures.append(f"node {nc.node} noise: {n_failure}")
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
    release_failures: list[str] = []
    if record.release is None:
        release_failures.append("no release published")
    else:
        checked += len(record.release.proofs)
        try:
            verify_release(q, switched, record.release)
        except InvalidProof as exc:
            release_failures.append(f"release: {exc}")
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
    failures += release_failures
    return Verdict(
        not failures,
        checked,
        tuple(failures),
        cheaters,
        tuple(noise_cheaters),
        tuple(release_failures),
    )


# -- the analyst's combination ------------------------------------------------------------
StepRunner = Callable[[str, str, Callable[[], Any]], Any]
#: A computing node's key switching of an aggregate (its shares with their proofs).
KeySwitcher = Callable[[Sequence[Ciphertext]], list[KeySwitchShare]]


def run_directly(role: str, who: str, fn: Callable[[], Any]) -> Any:
    """The default :data:`StepRunner`: just run the step."""
    return fn()


def switch_and_release(
    rec: AggregationRecord,
    switchers: Mapping[int, KeySwitcher],
    analyst_secret: int,
    dlog: DiscreteLog,
    rng: Rng,
    step: StepRunner = run_directly,
) -> list[int]:
    """Aggregate, key-switch, combine and release ``rec`` (filled in place); the decoded vector.

    The nodes switch through ``switchers`` (node index -> its key switcher). A node whose
    switcher raises :class:`~tessera.errors.TransportError` (down, or refused) is left
    out: the analyst combines any ``threshold`` valid nodes.
    """
    query = rec.query
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
