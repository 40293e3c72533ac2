"""Federated training: numpy models, local training, clipping and fixed point, FedAvg and
DP-FedAvg, privacy across rounds, and secure aggregation with proven clipping (Prio3).

- :mod:`tessera.learning.models` — linear, logistic, softmax regression and a small MLP.
- :mod:`tessera.learning.local` — a provider's local SGD epochs, per-row clipped gradients.
- :mod:`tessera.learning.fixed_point` — L2 clipping and the fixed-point encoding the norm
  proof checks.
- :mod:`tessera.learning.fedavg` — FedAvg's weighted mean and DP-FedAvg's server step.
- :mod:`tessera.learning.privacy` — per-round distributed noise, zCDP over rounds.
- :mod:`tessera.learning.secure` — sharding, joint verification, noised aggregate shares.
- :mod:`tessera.learning.rounds` — whole rounds with every party in one process.
- :mod:`tessera.learning.contribution` — providers' contribution scores from noised
  subset sums (leave-one-out, Shapley), and their re-check.
"""

from tessera.learning.config import TrainingConfig
from tessera.learning.contribution import ContributionSpec
from tessera.learning.fixed_point import FixedPoint, clip_l2
from tessera.learning.local import LocalConfig, clipped_gradient_sum, train_locally
from tessera.learning.models import (
    MLP,
    LinearRegression,
    LogisticRegression,
    Model,
    SoftmaxRegression,
)
from tessera.learning.privacy import TrainingBudget, round_noise
from tessera.learning.rounds import (
    Dataset,
    RoundRecord,
    TrainingResult,
    run_training,
    train,
)

__all__ = [
    "MLP",
    "ContributionSpec",
    "Dataset",
    "FixedPoint",
    "LinearRegression",
    "LocalConfig",
    "LogisticRegression",
    "Model",
    "RoundRecord",
    "SoftmaxRegression",
    "TrainingBudget",
    "TrainingConfig",
    "TrainingResult",
    "clip_l2",
    "clipped_gradient_sum",
    "round_noise",
    "run_training",
    "train",
    "train_locally",
]
