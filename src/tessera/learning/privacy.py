"""Privacy of federated training: per-round distributed noise and zCDP composition over rounds.

The unit of privacy is chosen by the caller through ``sensitivity`` (real units):

* ``"provider"`` (DP-FedAvg, McMahan et al. 2018): a provider's whole update is in the
  L2 ball of radius ``C``; adding or removing one provider's table moves the sum by at
  most ``C``.
* ``"row"`` (DP-FedSGD with per-row clipping, Abadi et al. 2016): a provider sends
  ``sum_rows clip(grad_row, c)``; adding or removing one row moves the sum by ``c``.

Each round's release is the discrete Gaussian mechanism with the committee's
distributed noise, calibrated by :func:`tessera.dp.distributed.plan_noise` on the honest
draws the round's sum holds (every node's share is needed, so n − t + 1 of them when t − 1
nodes collude); rounds compose by adding ρ (BS16, Lemma 1.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tessera.dp.accountant import eps_to_rho, rho_to_eps_delta
from tessera.dp.distributed import NoisePlan, plan_noise
from tessera.learning.fixed_point import FixedPoint


@dataclass(frozen=True, slots=True)
class TrainingBudget:
    """ρ per round for ``rounds`` rounds, and what their composition gives."""

    rho_per_round: float
    rounds: int
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rho_per_round) and self.rho_per_round > 0):
            raise ValueError(f"rho_per_round must be positive, got {self.rho_per_round!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be positive, got {self.rounds!r}")

    @classmethod
    def for_epsilon(cls, epsilon: float, delta: float, rounds: int) -> TrainingBudget:
        """The total ``(epsilon, delta)`` split evenly over ``rounds`` (in ρ)."""
        if rounds < 1:
            raise ValueError(f"rounds must be positive, got {rounds!r}")
        return cls(eps_to_rho(epsilon, delta) / rounds, rounds, delta)

    def rho_after(self, rounds: int) -> float:
        """ρ spent after ``rounds`` rounds."""
        return self.rho_per_round * rounds

    def epsilon_after(self, rounds: int) -> float:
        """ε (at ``delta``) spent after ``rounds`` rounds."""
        if rounds == 0:
            return 0.0
        return rho_to_eps_delta(self.rho_after(rounds), self.delta)[0]

    @property
    def total_rho(self) -> float:
        return self.rho_after(self.rounds)

    @property
    def total_epsilon(self) -> float:
        return self.epsilon_after(self.rounds)


def round_noise(
    fixed_point: FixedPoint,
    sensitivity: float,
    n: int,
    t: int,
    rho: float,
    dimension: int,
    *,
    delta: float = 1e-6,
    tail_bits: int = 64,
) -> NoisePlan:
    """Per-node noise (integer units) for one round of a ``dimension``-parameter model.

    ``sensitivity`` is the L2 sensitivity of the summed update in real units (``C`` for
    provider-level privacy, the per-row clip for row-level privacy). The round's sum is
    unsharded from every node's aggregate share, each with its node's noise, so ρ is
    calibrated on the n − t + 1 honest draws it holds when t − 1 nodes collude.
    """
    if not sensitivity > 0:
        raise ValueError(f"sensitivity must be positive, got {sensitivity!r}")
    if sensitivity > fixed_point.norm_bound * (1 + 1e-12):
        raise ValueError("sensitivity exceeds the proven norm bound of one update")
    return plan_noise(
        sensitivity * fixed_point.scale,
        n,
        t,
        rho=rho,
        delta=delta,
        tail_bits=tail_bits,
        dimension=dimension,
        honest=n - t + 1,
    )
