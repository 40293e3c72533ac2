"""The FLP of [BBCGGI19], its gadgets and validity circuits (draft-irtf-cfrg-vdaf-18, §7.3)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from tessera.crypto.field import NttField, next_power_of_2
from tessera.errors import InvalidProof

Measurement = TypeVar("Measurement")
AggResult = TypeVar("AggResult")


# -- gadgets ---------------------------------------------------------------------------


class Gadget(ABC):
    """A validity-circuit gadget: a low-degree function of ``ARITY`` field elements."""

    ARITY: int
    DEGREE: int

    @abstractmethod
    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        """Evaluate on field elements."""

    @abstractmethod
    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        """Evaluate on polynomials given by their values at the ``p``-th roots of unity.

        Returns the values of the output polynomial at the ``n``-th roots of unity,
        ``n = next_power_of_2(DEGREE * (p - 1) + 1)``.
        """


def _lift(field: type[NttField], values: list[int], n: int) -> list[int]:
    """Values at the ``n``-th roots from values at the ``len(values)``-th roots."""
    while len(values) < n:
        values = field.double_evaluations(values)
    return values


def _sum_of_products(modulus: int, wires: list[list[int]]) -> list[int]:
    """Point-wise ``sum_j wires[2j] * wires[2j + 1]``."""
    acc = [0] * len(wires[0])
    for a, b in zip(wires[0::2], wires[1::2], strict=True):
        acc = [s + x * y for s, x, y in zip(acc, a, b, strict=True)]
    return [s % modulus for s in acc]


class Mul(Gadget):
    """The product of two inputs."""

    ARITY = 2
    DEGREE = 2

    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        return inp[0] * inp[1] % field.MODULUS

    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        return field.lagrange_mul(inp_poly[0], inp_poly[1])


class PolyEval(Gadget):
    """A univariate polynomial with integer coefficients (lowest degree first)."""

    ARITY = 1

    def __init__(self, p: Sequence[int]) -> None:
        coeffs = list(p)
        while coeffs and coeffs[-1] == 0:
            coeffs.pop()
        if not coeffs:
            raise ValueError("invalid polynomial: zero length")
        self.p = coeffs
        self.DEGREE = len(coeffs) - 1

    def _horner(self, modulus: int, x: int) -> int:
        acc = 0
        for c in reversed(self.p):
            acc = (acc * x + c) % modulus
        return acc

    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        return self._horner(field.MODULUS, inp[0])

    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        p = len(inp_poly[0])
        n = next_power_of_2(self.DEGREE * (p - 1) + 1)
        modulus = field.MODULUS
        return [self._horner(modulus, x) for x in _lift(field, inp_poly[0], n)]


class ParallelSum(Gadget):
    """The sum of ``count`` evaluations of ``subcircuit`` on consecutive input slices."""

    def __init__(self, subcircuit: Gadget, count: int) -> None:
        self.subcircuit = subcircuit
        self.count = count
        self.ARITY = subcircuit.ARITY * count
        self.DEGREE = subcircuit.DEGREE

    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        modulus = field.MODULUS
        if isinstance(self.subcircuit, Mul):
            acc = 0
            for a, b in zip(inp[0::2], inp[1::2], strict=True):
                acc += a * b
            return acc % modulus
        arity = self.subcircuit.ARITY
        out = 0
        for i in range(self.count):
            out += self.subcircuit.eval(field, inp[i * arity : (i + 1) * arity])
        return out % modulus

    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        p = len(inp_poly[0])
        n = next_power_of_2(self.DEGREE * (p - 1) + 1)
        modulus = field.MODULUS
        if isinstance(self.subcircuit, Mul):
            # One batched coset NTT for all wires; the even output values are products
            # of the wire values themselves.
            odd = field.coset_evaluations(inp_poly)
            out = [0] * n
            out[0::2] = _sum_of_products(modulus, inp_poly)
            out[1::2] = _sum_of_products(modulus, odd)
            return out
        acc = [0] * n
        arity = self.subcircuit.ARITY
        for i in range(self.count):
            part = self.subcircuit.eval_poly(field, inp_poly[i * arity : (i + 1) * arity])
            acc = [a + b for a, b in zip(acc, part, strict=True)]
        return [a % modulus for a in acc]


# -- validity circuits -----------------------------------------------------------------


class Valid(ABC, Generic[Measurement, AggResult]):
    """A validity circuit together with its affine-aggregatable encoding."""

    field: type[NttField]
    MEAS_LEN: int
    JOINT_RAND_LEN: int
    OUTPUT_LEN: int
    EVAL_OUTPUT_LEN: int
    GADGETS: list[Gadget]
    GADGET_CALLS: list[int]

    def prove_rand_len(self) -> int:
        """Length of the prover randomness."""
        return sum(g.ARITY for g in self.GADGETS)

    def query_rand_len(self) -> int:
        """Length of the query randomness."""
        extra = self.EVAL_OUTPUT_LEN if self.EVAL_OUTPUT_LEN > 1 else 0
        return len(self.GADGETS) + extra

    def proof_len(self) -> int:
        """Length of the proof."""
        length = 0
        for g, calls in zip(self.GADGETS, self.GADGET_CALLS, strict=True):
            p = next_power_of_2(1 + calls)
            length += g.ARITY + g.DEGREE * (p - 1) + 1
        return length

    def verifier_len(self) -> int:
        """Length of the verifier message."""
        return 1 + sum(g.ARITY + 1 for g in self.GADGETS)

    @abstractmethod
    def encode(self, measurement: Measurement) -> list[int]:
        """Encode a measurement as ``MEAS_LEN`` field elements."""

    @abstractmethod
    def truncate(self, meas: list[int]) -> list[int]:
        """Map an encoded measurement to its ``OUTPUT_LEN`` aggregatable output."""

    @abstractmethod
    def decode(self, output: list[int], num_measurements: int) -> AggResult:
        """Decode an aggregate."""

    @abstractmethod
    def eval(
        self,
        meas: list[int],
        joint_rand: list[int],
        num_shares: int,
        gadgets: Sequence[Gadget],
    ) -> list[int]:
        """Evaluate the circuit, calling ``gadgets[i]`` for each use of ``GADGETS[i]``."""


def _chunked_range_check(
    field: type[NttField],
    gadget: Gadget,
    meas: list[int],
    joint_rand: list[int],
    num_shares: int,
    chunk_length: int,
    calls: int,
) -> int:
    """Random linear combination of ``x * (x - 1)`` over ``meas``, chunked into gadget calls."""
    modulus = field.MODULUS
    shares_inv = pow(num_shares, -1, modulus)
    n = len(meas)
    padded = meas + [0] * (calls * chunk_length - n)
    out = 0
    for i in range(calls):
        r = joint_rand[i]
        r_power = r
        inputs = [0] * (2 * chunk_length)
        chunk = padded[i * chunk_length : (i + 1) * chunk_length]
        for j, x in enumerate(chunk):
            inputs[2 * j] = r_power * x % modulus
            inputs[2 * j + 1] = (x - shares_inv) % modulus
            r_power = r_power * r % modulus
        out += gadget.eval(field, inputs)
    return out % modulus


def _encode_weighted_bits(
    field: type[NttField], val: int, bits: int, last_weight: int
) -> list[int]:
    """The range-check bit decomposition of §7.4.2: ``bits - 1`` binary digits plus a flag."""
    if val <= (1 << (bits - 1)) - 1:
        return [*field.encode_into_bit_vec(val, bits - 1), 0]
    return [*field.encode_into_bit_vec(val - last_weight, bits - 1), 1]


def _decode_weighted_bits(field: type[NttField], vec: list[int], last_weight: int) -> int:
    return (field.decode_from_bit_vec(vec[:-1]) + vec[-1] * last_weight) % field.MODULUS


class Count(Valid[int, int]):
    """Measurement in ``{0, 1}``; aggregate is the count of ones."""

    MEAS_LEN = 1
    JOINT_RAND_LEN = 0
    OUTPUT_LEN = 1
    EVAL_OUTPUT_LEN = 1

    def __init__(self, field: type[NttField]) -> None:
        self.field = field
        self.GADGETS = [Mul()]
        self.GADGET_CALLS = [1]

    def encode(self, measurement: int) -> list[int]:
        if measurement not in (0, 1):
            raise ValueError("measurement out of range")
        return [measurement]

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        squared = gadgets[0].eval(self.field, [meas[0], meas[0]])
        return [(squared - meas[0]) % self.field.MODULUS]

    def truncate(self, meas: list[int]) -> list[int]:
        return list(meas)

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]


class Sum(Valid[int, int]):
    """Measurement in ``[0, max_measurement]``; aggregate is the sum."""

    JOINT_RAND_LEN = 0
    OUTPUT_LEN = 1

    def __init__(self, field: type[NttField], max_measurement: int) -> None:
        if max_measurement <= 0:
            raise ValueError("invalid max_measurement")
        self.field = field
        self.max_measurement = max_measurement
        self.bits = max_measurement.bit_length()
        if 1 << self.bits >= field.MODULUS:
            raise ValueError("bound exceeds field modulus")
        self.last_weight = max_measurement - ((1 << (self.bits - 1)) - 1)
        self.GADGETS = [PolyEval([0, -1, 1])]
        self.GADGET_CALLS = [self.bits]
        self.MEAS_LEN = self.bits
        self.EVAL_OUTPUT_LEN = self.bits

    def encode(self, measurement: int) -> list[int]:
        if not 0 <= measurement <= self.max_measurement:
            raise ValueError("measurement out of range")
        return _encode_weighted_bits(self.field, measurement, self.bits, self.last_weight)

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        g = gadgets[0]
        return [g.eval(self.field, [b]) for b in meas]

    def truncate(self, meas: list[int]) -> list[int]:
        return [_decode_weighted_bits(self.field, meas, self.last_weight)]

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]


class SumVec(Valid[list[int], list[int]]):
    """Vector of ``length`` entries, each in ``[0, max_measurement]``; element-wise sum."""

    EVAL_OUTPUT_LEN = 1

    def __init__(
        self, field: type[NttField], length: int, max_measurement: int, chunk_length: int
    ) -> None:
        if length <= 0 or chunk_length <= 0 or max_measurement <= 0:
            raise ValueError("invalid SumVec parameters")
        self.field = field
        self.length = length
        self.max_measurement = max_measurement
        self.chunk_length = chunk_length
        self.bits = max_measurement.bit_length()
        if 1 << self.bits >= field.MODULUS:
            raise ValueError("bound exceeds field modulus")
        self.last_weight = max_measurement - ((1 << (self.bits - 1)) - 1)
        self.GADGETS = [ParallelSum(Mul(), chunk_length)]
        self.GADGET_CALLS = [(length * self.bits + chunk_length - 1) // chunk_length]
        self.MEAS_LEN = length * self.bits
        self.OUTPUT_LEN = length
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: list[int]) -> list[int]:
        if len(measurement) != self.length:
            raise ValueError("incorrect measurement length")
        out: list[int] = []
        for val in measurement:
            if not 0 <= val <= self.max_measurement:
                raise ValueError("entry of measurement vector is out of range")
            out += _encode_weighted_bits(self.field, val, self.bits, self.last_weight)
        return out

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        return [
            _chunked_range_check(
                self.field,
                gadgets[0],
                meas,
                joint_rand,
                num_shares,
                self.chunk_length,
                self.GADGET_CALLS[0],
            )
        ]

    def truncate(self, meas: list[int]) -> list[int]:
        b = self.bits
        return [
            _decode_weighted_bits(self.field, meas[i * b : (i + 1) * b], self.last_weight)
            for i in range(self.length)
        ]

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


class Histogram(Valid[int, list[int]]):
    """Measurement is a bucket index in ``[0, length)``; aggregate is the bucket counts."""

    EVAL_OUTPUT_LEN = 2

    def __init__(self, field: type[NttField], length: int, chunk_length: int) -> None:
        if length <= 0 or chunk_length <= 0:
            raise ValueError("invalid Histogram parameters")
        self.field = field
        self.length = length
        self.chunk_length = chunk_length
        self.GADGETS = [ParallelSum(Mul(), chunk_length)]
        self.GADGET_CALLS = [(length + chunk_length - 1) // chunk_length]
        self.MEAS_LEN = length
        self.OUTPUT_LEN = length
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: int) -> list[int]:
        if not 0 <= measurement < self.length:
            raise ValueError("measurement out of range")
        encoded = [0] * self.length
        encoded[measurement] = 1
        return encoded

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        modulus = self.field.MODULUS
        range_check = _chunked_range_check(
            self.field,
            gadgets[0],
            meas,
            joint_rand,
            num_shares,
            self.chunk_length,
            self.GADGET_CALLS[0],
        )
        sum_check = (sum(meas) - pow(num_shares, -1, modulus)) % modulus
        return [range_check, sum_check]

    def truncate(self, meas: list[int]) -> list[int]:
        return list(meas)

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


class MultihotCountVec(Valid[list[bool], list[int]]):
    """Bit vector of ``length`` entries with at most ``max_weight`` ones; per-entry counts."""

    EVAL_OUTPUT_LEN = 2

    def __init__(
        self, field: type[NttField], length: int, max_weight: int, chunk_length: int
    ) -> None:
        if length <= 0 or chunk_length <= 0 or not 0 < max_weight <= length:
            raise ValueError("invalid MultihotCountVec parameters")
        if length >= field.MODULUS:
            raise ValueError("length too large for the field")
        self.field = field
        self.length = length
        self.max_weight = max_weight
        self.chunk_length = chunk_length
        self.bits_for_weight = max_weight.bit_length()
        self.last_weight = max_weight - ((1 << (self.bits_for_weight - 1)) - 1)
        self.GADGETS = [ParallelSum(Mul(), chunk_length)]
        self.GADGET_CALLS = [(length + self.bits_for_weight + chunk_length - 1) // chunk_length]
        self.MEAS_LEN = length + self.bits_for_weight
        self.OUTPUT_LEN = length
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: list[bool]) -> list[int]:
        if len(measurement) != self.length:
            raise ValueError("invalid measurement length")
        weight = sum(1 for x in measurement if x)
        if weight > self.max_weight:
            raise ValueError("measurement weight exceeds max_weight")
        return [int(bool(x)) for x in measurement] + _encode_weighted_bits(
            self.field, weight, self.bits_for_weight, self.last_weight
        )

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        modulus = self.field.MODULUS
        range_check = _chunked_range_check(
            self.field,
            gadgets[0],
            meas,
            joint_rand,
            num_shares,
            self.chunk_length,
            self.GADGET_CALLS[0],
        )
        weight = sum(meas[: self.length])
        reported = _decode_weighted_bits(self.field, meas[self.length :], self.last_weight)
        return [range_check, (weight - reported) % modulus]

    def truncate(self, meas: list[int]) -> list[int]:
        return meas[: self.length]

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)


def chunk_length_for(inputs: int) -> int:
    """The chunk length of a ``ParallelSum`` gadget over ``inputs`` values that fills its
    wire polynomials: ``P - 1`` calls for a power of two ``P`` (the prover interpolates
    on ``P`` points), ``P`` chosen for the shortest proof ``2 chunk + 2P - 1``."""
    if inputs <= 0:
        raise ValueError("inputs must be positive")
    best: tuple[int, int] | None = None
    p = 2
    while p <= 2 * inputs + 2:
        chunk = -(-inputs // (p - 1))
        size = 2 * chunk + 2 * p - 1
        if best is None or size < best[0]:
            best = (size, chunk)
        p *= 2
    assert best is not None
    return best[1]


class FixedPointBoundedL2VecSum(Valid[list[int], list[int]]):
    """Fixed-point vectors of L2 norm at most a public bound; element-wise sum.

    The circuit of libprio-rs's ``Prio3FixedPointBoundedL2VecSum`` with the bound as a
    parameter. A measurement is ``length`` signed integers ``v_i`` in
    ``[-2^(bits-1), 2^(bits-1))`` (a real vector scaled by ``2^(bits-1) / C`` and
    rounded) with ``sum v_i^2 <= norm_bound_sq``. It is encoded as the ``bits`` binary
    digits of each offset entry ``v_i + 2^(bits-1)``, then the squared norm in the
    weighted bits of :class:`Sum` (so ``0 <= norm <= norm_bound_sq`` exactly). The
    circuit range-checks every digit (gadget 0, ``ParallelSum(Mul(), chunk_length)``
    with joint randomness), recomputes the squared norm from the digits (gadget 1,
    ``ParallelSum(Mul(), norm_chunk_length)`` on pairs ``(v_i, v_i)``) and checks it
    equals the encoded one. The field must hold ``length * 2^(2 bits - 2)`` without
    wrapping around, so no sum of squares can alias a small norm.
    """

    EVAL_OUTPUT_LEN = 2

    def __init__(
        self,
        field: type[NttField],
        length: int,
        bits: int,
        norm_bound_sq: int,
        chunk_length: int,
        norm_chunk_length: int,
    ) -> None:
        if length <= 0 or chunk_length <= 0 or norm_chunk_length <= 0:
            raise ValueError("invalid FixedPointBoundedL2VecSum parameters")
        if not 2 <= bits <= 32:
            raise ValueError("bits must be in [2, 32]")
        if norm_bound_sq <= 0:
            raise ValueError("norm_bound_sq must be positive")
        if length * (1 << (2 * bits - 2)) >= field.MODULUS // 2:
            raise ValueError("length and bits too large for the field: the norm would wrap")
        self.field = field
        self.length = length
        self.bits = bits
        self.offset = 1 << (bits - 1)
        self.norm_bound_sq = norm_bound_sq
        self.norm_bits = norm_bound_sq.bit_length()
        self.norm_last_weight = norm_bound_sq - ((1 << (self.norm_bits - 1)) - 1)
        self.chunk_length = chunk_length
        self.norm_chunk_length = norm_chunk_length
        self.MEAS_LEN = length * bits + self.norm_bits
        self.GADGETS = [ParallelSum(Mul(), chunk_length), ParallelSum(Mul(), norm_chunk_length)]
        self.GADGET_CALLS = [
            (self.MEAS_LEN + chunk_length - 1) // chunk_length,
            (length + norm_chunk_length - 1) // norm_chunk_length,
        ]
        self.OUTPUT_LEN = length
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: list[int]) -> list[int]:
        if len(measurement) != self.length:
            raise ValueError("incorrect measurement length")
        out: list[int] = []
        norm = 0
        for v in measurement:
            if not -self.offset <= v < self.offset:
                raise ValueError("entry of measurement vector is out of range")
            out += self.field.encode_into_bit_vec(v + self.offset, self.bits)
            norm += v * v
        if norm > self.norm_bound_sq:
            raise ValueError("measurement exceeds the L2 norm bound")
        return out + _encode_weighted_bits(self.field, norm, self.norm_bits, self.norm_last_weight)

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        modulus = self.field.MODULUS
        range_check = _chunked_range_check(
            self.field,
            gadgets[0],
            meas,
            joint_rand,
            num_shares,
            self.chunk_length,
            self.GADGET_CALLS[0],
        )
        shift = self.offset * pow(num_shares, -1, modulus) % modulus
        entries = [(q - shift) % modulus for q in self._entries(meas)]
        chunk = self.norm_chunk_length
        calls = self.GADGET_CALLS[1]
        entries += [0] * (calls * chunk - self.length)
        norm = 0
        for i in range(calls):
            inputs = [0] * (2 * chunk)
            for j, y in enumerate(entries[i * chunk : (i + 1) * chunk]):
                inputs[2 * j] = y
                inputs[2 * j + 1] = y
            norm += gadgets[1].eval(self.field, inputs)
        claimed = _decode_weighted_bits(
            self.field, meas[self.length * self.bits :], self.norm_last_weight
        )
        return [range_check, (norm - claimed) % modulus]

    def _entries(self, meas: list[int]) -> list[int]:
        """The offset entries ``v_i + 2^(bits-1)`` (shares of them) from their digits."""
        b = self.bits
        return [
            self.field.decode_from_bit_vec(meas[i * b : (i + 1) * b]) for i in range(self.length)
        ]

    def truncate(self, meas: list[int]) -> list[int]:
        return self._entries(meas)

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        """The signed sums ``sum v_i`` (the aggregate minus the offsets, centred)."""
        modulus = self.field.MODULUS
        shift = num_measurements * self.offset
        out = []
        for x in output:
            y = (x - shift) % modulus
            out.append(y - modulus if y > modulus // 2 else y)
        return out


class PolyEvalTest(Valid[int, int]):
    """Test-only circuit of the upstream vectors: ``x (x - 1) (x - 2) == 0`` via one PolyEval."""

    MEAS_LEN = 1
    JOINT_RAND_LEN = 0
    OUTPUT_LEN = 1
    EVAL_OUTPUT_LEN = 1

    def __init__(self, field: type[NttField]) -> None:
        self.field = field
        self.GADGETS = [PolyEval([0, 2, -3, 1])]
        self.GADGET_CALLS = [1]

    def encode(self, measurement: int) -> list[int]:
        return [measurement % self.field.MODULUS]

    def eval(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadgets: Sequence[Gadget]
    ) -> list[int]:
        return [gadgets[0].eval(self.field, [meas[0]])]

    def truncate(self, meas: list[int]) -> list[int]:
        return list(meas)

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]


# -- the FLP ---------------------------------------------------------------------------


class _WireRecorder(Gadget):
    """A gadget wrapper that records the input wires of each call (the wire polynomials)."""

    def __init__(self, inner: Gadget, calls: int, wire_seeds: list[int]) -> None:
        self.inner = inner
        self.ARITY = inner.ARITY
        self.DEGREE = inner.DEGREE
        self.p = next_power_of_2(1 + calls)
        self.wire_seeds = wire_seeds
        self.calls: list[Sequence[int]] = []

    def wires(self) -> list[list[int]]:
        """Wire ``j`` holds the seed, then input ``j`` of each call, then zero padding."""
        pad = [0] * (self.p - 1 - len(self.calls))
        return [
            [seed, *(call[j] for call in self.calls), *pad]
            for j, seed in enumerate(self.wire_seeds)
        ]


class ProveGadget(_WireRecorder):
    """Records the wires and evaluates the wrapped gadget (prover side)."""

    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        self.calls.append(inp)
        return self.inner.eval(field, inp)

    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        return self.inner.eval_poly(field, inp_poly)


class QueryGadget(_WireRecorder):
    """Records the wires and answers each call from the prover's gadget polynomial."""

    def __init__(
        self,
        field: type[NttField],
        inner: Gadget,
        calls: int,
        wire_seeds: list[int],
        poly: list[int],
    ) -> None:
        super().__init__(inner, calls, wire_seeds)
        size = next_power_of_2(inner.DEGREE * (self.p - 1) + 1)
        extended = field.extend_values_to_power_of_2(poly, next_power_of_2(len(poly)))
        self.poly = _lift(field, extended, size)
        self.step = size // self.p

    def eval(self, field: type[NttField], inp: Sequence[int]) -> int:
        self.calls.append(inp)
        return self.poly[len(self.calls) * self.step]

    def eval_poly(self, field: type[NttField], inp_poly: list[list[int]]) -> list[int]:
        raise NotImplementedError("not used by the verifier")


class FlpBBCGGI19(Generic[Measurement, AggResult]):
    """The FLP of [BBCGGI19], Theorem 4.3, for a given validity circuit."""

    def __init__(self, valid: Valid[Measurement, AggResult]) -> None:
        self.valid = valid
        self.field = valid.field
        self.PROVE_RAND_LEN = valid.prove_rand_len()
        self.QUERY_RAND_LEN = valid.query_rand_len()
        self.JOINT_RAND_LEN = valid.JOINT_RAND_LEN
        self.MEAS_LEN = valid.MEAS_LEN
        self.OUTPUT_LEN = valid.OUTPUT_LEN
        self.PROOF_LEN = valid.proof_len()
        self.VERIFIER_LEN = valid.verifier_len()

    def prove(self, meas: list[int], prove_rand: list[int], joint_rand: list[int]) -> list[int]:
        """A proof that ``meas`` is valid."""
        valid = self.valid
        wrapped: list[ProveGadget] = []
        offset = 0
        for g, calls in zip(valid.GADGETS, valid.GADGET_CALLS, strict=True):
            wrapped.append(ProveGadget(g, calls, prove_rand[offset : offset + g.ARITY]))
            offset += g.ARITY
        valid.eval(meas, joint_rand, 1, wrapped)
        proof: list[int] = []
        for w in wrapped:
            proof += w.wire_seeds
            gadget_poly = w.inner.eval_poly(self.field, w.wires())
            proof += gadget_poly[: w.DEGREE * (w.p - 1) + 1]
        return proof

    def query(
        self,
        meas: list[int],
        proof: list[int],
        query_rand: list[int],
        joint_rand: list[int],
        num_shares: int,
    ) -> list[int]:
        """This aggregator's share of the verifier message."""
        valid = self.valid
        field = self.field
        modulus = field.MODULUS
        wrapped: list[QueryGadget] = []
        offset = 0
        for g, calls in zip(valid.GADGETS, valid.GADGET_CALLS, strict=True):
            p = next_power_of_2(1 + calls)
            poly_len = g.DEGREE * (p - 1) + 1
            seeds = proof[offset : offset + g.ARITY]
            poly = proof[offset + g.ARITY : offset + g.ARITY + poly_len]
            offset += g.ARITY + poly_len
            wrapped.append(QueryGadget(field, g, calls, seeds, poly))
        out = valid.eval(meas, joint_rand, num_shares, wrapped)

        if valid.EVAL_OUTPUT_LEN > 1:
            rand = query_rand[: valid.EVAL_OUTPUT_LEN]
            test_points = query_rand[valid.EVAL_OUTPUT_LEN :]
            v = sum(r * o for r, o in zip(rand, out, strict=True)) % modulus
        else:
            v = out[0]
            test_points = query_rand

        verifier = [v]
        for w, t in zip(wrapped, test_points, strict=True):
            # A test point among the roots of unity would reveal a gadget output.
            if pow(t, w.p, modulus) == 1:
                raise InvalidProof("test point is a root of unity")
            weights = field.barycentric_inverses(w.p, t)
            verifier += [field.lagrange_eval(wire, weights) for wire in w.wires()]
            verifier.append(field.poly_eval_lagrange(w.poly, t))
        return verifier

    def decide(self, verifier: list[int]) -> bool:
        """Whether the (combined) verifier message is accepted."""
        if len(verifier) != self.VERIFIER_LEN:
            return False
        if verifier[0] != 0:
            return False
        offset = 1
        for g in self.valid.GADGETS:
            wire_checks = verifier[offset : offset + g.ARITY]
            gadget_check = verifier[offset + g.ARITY]
            offset += g.ARITY + 1
            if g.eval(self.field, wire_checks) != gadget_check:
                return False
        return True

    def encode(self, measurement: Measurement) -> list[int]:
        """Encode a measurement."""
        return self.valid.encode(measurement)

    def truncate(self, meas: list[int]) -> list[int]:
        """Truncate an encoded measurement to an output."""
        return self.valid.truncate(meas)

    def decode(self, output: list[int], num_measurements: int) -> AggResult:
        """Decode an aggregate."""
        return self.valid.decode(output, num_measurements)
