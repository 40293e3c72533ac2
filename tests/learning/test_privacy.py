"""Privacy across rounds: zCDP composition and the committee's per-round noise."""

from __future__ import annotations

import itertools

import pytest

from tessera.dp.accountant import eps_to_rho
from tessera.dp.distributed import plan_noise
from tessera.learning import FixedPoint, TrainingBudget, round_noise


def test_rounds_compose_to_the_requested_epsilon() -> None:
    budget = TrainingBudget.for_epsilon(4.0, 1e-6, 20)
    assert budget.rho_per_round == pytest.approx(eps_to_rho(4.0, 1e-6) / 20)
    assert budget.total_epsilon == pytest.approx(4.0, rel=1e-6)
    spent = [budget.epsilon_after(r) for r in range(21)]
    assert spent[0] == 0.0 and all(a < b for a, b in itertools.pairwise(spent))
    assert spent[10] > 2.0  # rho adds up, epsilon grows like its square root


def test_round_noise_is_calibrated_on_the_rounds_honest_draws_in_fixed_point_units() -> None:
    fp = FixedPoint(2.0, 16)
    plan = round_noise(fp, 2.0, 5, 3, 0.05, 650)
    same = plan_noise(2.0 * fp.scale, 5, 3, rho=0.05, dimension=650, tail_bits=64, honest=3)
    assert plan == same
    assert plan.honest_quorum == 3  # n - t + 1: the round's sum holds every node's share
    # a third of the per-node variance a query's aggregate (n - 2t + 2 = 1 honest draw) needs
    query = plan_noise(2.0 * fp.scale, 5, 3, rho=0.05, dimension=650, tail_bits=64)
    assert query.honest_quorum == 1
    assert float(plan.sigma_node_sq) == pytest.approx(float(query.sigma_node_sq) / 3, rel=1e-3)
    with pytest.raises(ValueError, match="norm bound"):
        round_noise(fp, 3.0, 5, 3, 0.05, 650)
