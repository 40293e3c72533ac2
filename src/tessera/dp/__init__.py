"""Differential privacy: exact noise samplers, zCDP accounting, distributed noise calibration.

- :mod:`tessera.dp.samplers` — discrete Gaussian and discrete Laplace (CKS20), exact on a
  passed-in random source, or OpenDP-backed, behind the :class:`NoiseSampler` protocol.
- :mod:`tessera.dp.accountant` — ρ of the mechanisms, zCDP ↔ (ε, δ), per-dataset budgets.
- :mod:`tessera.dp.distributed` — per-node noise such that the ``n − 2t + 2`` honest computing
  nodes reach the target (KLS21), with range-proof bounds and 95% intervals.
"""

from tessera.dp.accountant import (
    PrivacyAccountant,
    PrivacyBudget,
    eps_to_rho,
    epsilon_discrete_laplace,
    rho_discrete_laplace,
    rho_gaussian,
    rho_to_eps_delta,
    sigma_for_rho,
)
from tessera.dp.distributed import NoisePlan, plan_noise, truncation_bound
from tessera.dp.samplers import (
    ExactSampler,
    NoiseSampler,
    OpenDPSampler,
    RandomSource,
    sample_discrete_gaussian,
    sample_discrete_laplace,
    sample_vector,
)

__all__ = [
    "ExactSampler",
    "NoisePlan",
    "NoiseSampler",
    "OpenDPSampler",
    "PrivacyAccountant",
    "PrivacyBudget",
    "RandomSource",
    "eps_to_rho",
    "epsilon_discrete_laplace",
    "plan_noise",
    "rho_discrete_laplace",
    "rho_gaussian",
    "rho_to_eps_delta",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
    "sample_vector",
    "sigma_for_rho",
    "truncation_bound",
]
