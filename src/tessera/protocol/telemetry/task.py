"""A telemetry task's specification: its VDAF and the DP noise of its releases."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, TypeAlias

from tessera.crypto.poplar1 import Poplar1
from tessera.crypto.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultihotCountVec,
    Prio3Sum,
    Prio3SumVec,
)
from tessera.crypto.rng import Rng
from tessera.dp.samplers import sample_discrete_gaussian, sample_discrete_laplace

TASK_ID_SIZE = 32

#: Any of the VDAFs a telemetry task can run.
AnyVdaf: TypeAlias = Prio3[Any, Any] | Poplar1


def vdaf_ctx(task_id: bytes) -> bytes:
    """The VDAF application context string of a task."""
    return b"tessera-telemetry/v1" + task_id


# -- the VDAF of a task ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VdafSpec:
    """A task's VDAF: its kind and integer parameters, as written in the task config."""

    KINDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "Prio3Count": (),
        "Prio3Sum": ("max_measurement",),
        "Prio3SumVec": ("length", "max_measurement", "chunk_length"),
        "Prio3Histogram": ("length", "chunk_length"),
        "Prio3MultihotCountVec": ("length", "max_weight", "chunk_length"),
        "Poplar1": ("bits",),
        # Crux's statistics from one Prio3SumVec: (x, x^2, one-hot bin of x).
        "Prio3Statistics": ("max_measurement", "bins"),
    }

    kind: str
    params: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            known = ", ".join(self.KINDS)
            raise ValueError(f"unknown VDAF {self.kind!r}; known: {known}")
        names = tuple(n for n, _ in self.params)
        if sorted(names) != sorted(self.KINDS[self.kind]):
            need = ", ".join(self.KINDS[self.kind]) or "none"
            raise ValueError(f"{self.kind} takes parameters: {need}; got {', '.join(names)}")
        for name, value in self.params:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"VDAF parameter {name} must be a positive integer")

    @classmethod
    def of(cls, kind: str, **params: int) -> VdafSpec:
        """``VdafSpec.of("Prio3Histogram", length=100, chunk_length=10)``."""
        return cls(kind, tuple(sorted(params.items())))

    def param(self, name: str) -> int:
        """A parameter by name."""
        return dict(self.params)[name]

    @property
    def is_poplar1(self) -> bool:
        return self.kind == "Poplar1"

    def instantiate(self, shares: int) -> AnyVdaf:
        """The VDAF object for ``shares`` aggregators."""
        p = dict(self.params)
        try:
            match self.kind:
                case "Prio3Count":
                    return Prio3Count(shares)
                case "Prio3Sum":
                    return Prio3Sum(shares, p["max_measurement"])
                case "Prio3SumVec":
                    return Prio3SumVec(shares, p["length"], p["max_measurement"], p["chunk_length"])
                case "Prio3Histogram":
                    return Prio3Histogram(shares, p["length"], p["chunk_length"])
                case "Prio3MultihotCountVec":
                    return Prio3MultihotCountVec(
                        shares, p["length"], p["max_weight"], p["chunk_length"]
                    )
                case "Prio3Statistics":
                    m, bins = p["max_measurement"], p["bins"]
                    if bins > m + 1:
                        raise ValueError("bins must be at most max_measurement + 1")
                    length = 2 + bins
                    return Prio3SumVec(shares, length, m * m, max(1, math.isqrt(length)))
                case _:
                    if shares != 2:
                        raise ValueError("Poplar1 runs with exactly two aggregators")
                    return Poplar1(p["bits"])
        except (ValueError, KeyError) as exc:
            raise ValueError(f"invalid {self.kind} parameters: {exc}") from exc

    def parse_measurement(self, text: str) -> Any:
        """A measurement from its command-line text (an integer, a JSON list, or bits)."""
        text = text.strip()
        try:
            if self.kind in ("Prio3Count", "Prio3Sum", "Prio3Histogram", "Prio3Statistics"):
                return int(text)
            if self.kind == "Poplar1":
                if not text or set(text) - {"0", "1"}:
                    raise ValueError("expected a string of 0 and 1")
                return tuple(c == "1" for c in text)
            value = json.loads(text)
        except (ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot parse {self.kind} measurement {text!r}: {exc}") from exc
        if not isinstance(value, list) or not all(isinstance(x, int | bool) for x in value):
            raise ValueError(f"{self.kind} measurement must be a JSON list of integers")
        if self.kind == "Prio3MultihotCountVec":
            if any(x not in (0, 1) for x in value):
                raise ValueError("multihot entries must be 0/1 or booleans")
            return [bool(x) for x in value]
        return [int(x) for x in value]

    def encode_measurement(self, measurement: Any) -> Any:
        """What the VDAF shards: the measurement itself, or Prio3Statistics' vector
        ``(x, x^2, one-hot bin of x)`` of an integer ``x`` in ``[0, max_measurement]``."""
        if self.kind != "Prio3Statistics":
            return measurement
        m, bins = self.param("max_measurement"), self.param("bins")
        if isinstance(measurement, bool) or not isinstance(measurement, int):
            raise ValueError("a Prio3Statistics measurement is an integer")
        if not 0 <= measurement <= m:
            raise ValueError(f"measurement out of range [0, {m}]")
        onehot = [0] * bins
        onehot[measurement * bins // (m + 1)] = 1
        return [measurement, measurement * measurement, *onehot]

    def noise_blocks(self) -> list[tuple[int | None, Fraction, Fraction]]:
        """``(coordinates, L1, L2^2)`` per block of the aggregate that is noised separately.

        ``None`` coordinates means "all the rest". One block for every VDAF but
        Prio3Statistics, whose sum, sum of squares and histogram each get a third of
        the budget with their own sensitivity (``M``, ``M^2`` and one count).
        """
        if self.kind == "Prio3Statistics":
            m = self.param("max_measurement")
            return [(1, Fraction(m), Fraction(m * m)), (1, Fraction(m * m), Fraction(m**4)),
                    (None, Fraction(1), Fraction(1))]  # fmt: skip
        l1, l2_sq = self.sensitivity()
        return [(None, l1, l2_sq)]

    def sensitivity(self) -> tuple[Fraction, Fraction]:
        """``(L1, L2^2)`` sensitivity of one report (add/remove neighbours) per release."""
        p = dict(self.params)
        match self.kind:
            case "Prio3Sum":
                m = p["max_measurement"]
                return Fraction(m), Fraction(m * m)
            case "Prio3SumVec":
                m, n = p["max_measurement"], p["length"]
                return Fraction(n * m), Fraction(n * m * m)
            case "Prio3MultihotCountVec":
                w = p["max_weight"]
                return Fraction(w), Fraction(w)
            case _:  # Count, Histogram, Poplar1 (one prefix per level)
                return Fraction(1), Fraction(1)


# -- differential privacy: exact discrete samplers (CKS20), from tessera.dp -----------------


def discrete_laplace(scale: Fraction, rng: Rng) -> int:
    """A sample with ``P(x) ∝ exp(-|x| / scale)`` (CKS20, Algorithm 2)."""
    return sample_discrete_laplace(scale, rng)


def discrete_gaussian(sigma2: Fraction, rng: Rng) -> int:
    """A sample with ``P(x) ∝ exp(-x^2 / (2 sigma2))`` (CKS20, Algorithm 3)."""
    return sample_discrete_gaussian(sigma2, rng)


@dataclass(frozen=True, slots=True)
class NoiseBlock:
    """Noise for ``count`` consecutive coordinates (``None``: all the rest)."""

    count: int | None
    sample: Callable[[Rng], int]
    #: The variance of one draw (at most this, for the discrete Gaussian).
    variance: float


def _laplace(scale: Fraction) -> Callable[[Rng], int]:
    return lambda rng: discrete_laplace(scale, rng)


def _gaussian(sigma2: Fraction) -> Callable[[Rng], int]:
    return lambda rng: discrete_gaussian(sigma2, rng)


def noise_per_coordinate(blocks: Sequence[NoiseBlock], length: int) -> list[NoiseBlock]:
    """The block of each of ``length`` coordinates."""
    out: list[NoiseBlock] = []
    for block in blocks:
        take = length - len(out) if block.count is None else block.count
        out += [block] * take
    if len(out) != length:
        raise ValueError("noise blocks do not cover the aggregate")
    return out


@dataclass(frozen=True, slots=True)
class DpSpec:
    """Noise each aggregator adds to every coordinate of the aggregate share it releases.

    Every aggregator adds the full noise, so a release meets the guarantee even if all
    but one aggregator skip it; ``discrete_laplace`` gives ``epsilon``-DP, and
    ``discrete_gaussian`` gives ``rho``-zCDP, per release.
    """

    MECHANISMS: ClassVar[tuple[str, ...]] = ("none", "discrete_laplace", "discrete_gaussian")

    mechanism: str
    epsilon: Fraction | None = None
    rho: Fraction | None = None

    def __post_init__(self) -> None:
        if self.mechanism not in self.MECHANISMS:
            raise ValueError(
                f"unknown DP mechanism {self.mechanism!r}; known: {', '.join(self.MECHANISMS)}"
            )
        if self.mechanism == "discrete_laplace" and (self.epsilon is None or self.epsilon <= 0):
            raise ValueError("discrete_laplace needs a positive epsilon")
        if self.mechanism == "discrete_gaussian" and (self.rho is None or self.rho <= 0):
            raise ValueError("discrete_gaussian needs a positive rho")

    def noise(self, vdaf: VdafSpec) -> list[NoiseBlock] | None:
        """Per block of coordinates (:meth:`VdafSpec.noise_blocks`), its sampler and the
        variance of one draw; ``None`` without noise. The blocks split the budget evenly."""
        if self.mechanism == "none":
            return None
        blocks = vdaf.noise_blocks()
        parts = len(blocks)
        out: list[NoiseBlock] = []
        for count, l1, l2_sq in blocks:
            if self.mechanism == "discrete_laplace":
                assert self.epsilon is not None
                scale = l1 * parts / self.epsilon
                q = math.exp(-1 / float(scale))
                variance = 2 * q / (1 - q) ** 2
                out.append(NoiseBlock(count, _laplace(scale), variance))
            else:
                assert self.rho is not None
                sigma2 = l2_sq * parts / (2 * self.rho)
                out.append(NoiseBlock(count, _gaussian(sigma2), float(sigma2)))
        return out

    def sampler(self, vdaf: VdafSpec) -> Callable[[Rng], int] | None:
        """The per-coordinate noise sampler for ``vdaf``, or ``None`` without noise."""
        l1, l2_sq = vdaf.sensitivity()
        if self.mechanism == "discrete_laplace":
            assert self.epsilon is not None
            scale = l1 / self.epsilon
            return lambda rng: discrete_laplace(scale, rng)
        if self.mechanism == "discrete_gaussian":
            assert self.rho is not None
            sigma2 = l2_sq / (2 * self.rho)
            return lambda rng: discrete_gaussian(sigma2, rng)
        return None
