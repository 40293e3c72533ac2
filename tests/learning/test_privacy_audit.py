"""Empirical privacy audit of a federated-training round (issue 17).

The audit of the released query mechanisms (``benchmarks/privacy_audit.py``, run by
``tests/dp/test_privacy_audit.py``) applied to one secure round of
:func:`tessera.learning.train`: the same randomized-PIT scale test and the same DP-Sniper
attack (the benchmark's ``estimate_epsilon``, pointed at the round's releases), on what the
round's code releases.

**The round is the real one.** ``train`` runs its round as it does in the suite: each
provider's update is clipped, quantised and sharded with its norm proof (Prio3), sealed to
the nodes, verified jointly by the n :class:`~tessera.learning.committee.NodeRound` and
released with each node's noise (``NodeRound.release`` → ``secure.draw_noise``), summed by
``secure.unshard``. The test only watches: it records each quantised update
(``secure.shard_update``), each node's noise (``secure.draw_noise``), the released sum
(``secure.unshard``) and a copy of every node as it is about to release. Every round so
recorded must release exactly the true sum of the accepted updates plus the n nodes'
draws. The many releases the statistics need are those recorded nodes releasing again
(``NodeRound.release`` on a copy taken before the round's own release, with a sampler of
its own per node, as each node of a network has): the same accepted Prio3 output shares,
fresh noise. Sharding and verification are not redone for each sample: they do not touch
the noise.

**What is claimed** (``dp/distributed.py plan_noise`` through ``privacy.round_noise``):
each node draws N_Z(0, σ_node²) per coordinate. A training round needs every node's share,
so its release holds all n draws (``NoisePlan.sd_all_honest``, what the release's intervals
use) and, with t − 1 dishonest nodes, the m = n − t + 1 honest ones: ρ is calibrated on
those, i.e. a release whose noise is N_Z(0, m·σ_node²) (``NoisePlan.sigma_sq``) is ρ-zCDP.
The audit tests two views of one release, each against its own claim:

* ``release``: the released sum minus the true sum, against N_Z(0, n·σ_node²);
* ``threat model``: minus the noise of t − 1 nodes (known to them), N_Z(0, m·σ_node²): the
  view the ρ (and so the claimed ε) is computed for. An attack on it is the one that can
  reach the claim.

A sum of discrete Gaussians is not exactly a discrete Gaussian, but at σ_node ≈ 10⁵ no
test of this size can tell (KLS21); for m = 1 the threat-model view is exactly one.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tessera.crypto.rng import SeededRng
from tessera.dp.accountant import rho_to_eps_delta
from tessera.dp.samplers import ExactSampler
from tessera.learning import Dataset, LinearRegression, TrainingConfig, committee, secure, train
from tessera.learning.rounds import Provider


def _load_audit() -> ModuleType:
    loaded = sys.modules.get("privacy_audit")
    if loaded is not None:  # tests/dp/test_privacy_audit.py loaded it in this process
        return loaded
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "privacy_audit.py"
    spec = importlib.util.spec_from_file_location("privacy_audit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["privacy_audit"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


audit = _load_audit()

MODEL = LinearRegression(3)  # 4 parameters
#: The providers' updates: dyadic, so quantising them is exact (no stochastic rounding) and
#: the neighbouring rounds differ by the canary's update and nothing else.
UPDATES = {
    "a": (0.25, -0.25, 0.125, 0.0),
    "b": (0.0, 0.5, -0.25, 0.25),
    "x": (0.5, 0.5, 0.5, 0.5),  # the canary: norm 1 = the clip, so it moves the sum by Δ
}
ROUNDS, EPSILON = 2, 1.5  # the training's total ε over its rounds; one round is audited
SCALE_SAMPLES = 2_000  # noise values per view, committee and scale (as for the queries)
#: The true scale must not be rejected at level 1% for the whole family of cells (2
#: committees × weighted or not × 3 views): Bonferroni, p > 0.01/12 per cell.
TRUE_SCALE_LEVEL = 0.01 / (len(audit.COMMITTEES) * 2 * 3)


class FixedUpdate(Provider):
    """A provider whose local work always yields the same update (the audit's inputs)."""

    def __init__(self, name: str, update: Sequence[float]) -> None:
        super().__init__(Dataset(name, np.zeros((1, MODEL.features)), np.zeros(1), max_rows=1))
        self.update = np.asarray(update, dtype=np.float64)

    def local_update(self, model: Any, params: Any, config: Any, rng: Any) -> Any:
        return self.update.copy()


@dataclass
class Recorder:
    """What the round's code did, watched through the module functions it calls."""

    updates: list[np.ndarray] = field(default_factory=list)  # secure.shard_update's input
    draws: list[np.ndarray] = field(default_factory=list)  # secure.draw_noise's output
    totals: list[np.ndarray] = field(default_factory=list)  # secure.unshard's output
    nodes: list[committee.NodeRound] = field(default_factory=list)  # copies before release

    def clear(self) -> None:
        self.updates.clear()
        self.draws.clear()
        self.totals.clear()
        self.nodes.clear()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    shard, draw, unshard = secure.shard_update, secure.draw_noise, secure.unshard
    release = committee.NodeRound.release

    def shard_update(vdaf: Any, ctx: bytes, update: Any, nonce: bytes, rand: bytes) -> Any:
        rec.updates.append(np.array(update, dtype=np.int64))
        return shard(vdaf, ctx, update, nonce, rand)

    def draw_noise(plan: Any, sampler: Any, dimension: int) -> Any:
        v = draw(plan, sampler, dimension)
        rec.draws.append(np.array(v, dtype=np.int64))
        return v

    def unshard_(vdaf: Any, shares: Any, count: int) -> Any:
        total = unshard(vdaf, shares, count)
        rec.totals.append(np.array(total, dtype=np.int64))
        return total

    def release_(self: committee.NodeRound) -> bytes:
        rec.nodes.append(copy.copy(self))  # before: the copy can still release
        return release(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(secure, "shard_update", shard_update)
        mp.setattr(secure, "draw_noise", draw_noise)
        mp.setattr(secure, "unshard", unshard_)
        mp.setattr(committee.NodeRound, "release", release_)
        yield rec


@dataclass
class Round:
    """The first round of a training, recorded: its nodes just before they released."""

    nodes: list[committee.NodeRound]
    true_sum: np.ndarray  # the sum of the accepted quantised updates
    n: int
    t: int
    rec: Recorder

    @property
    def plan(self) -> Any:
        plan = self.nodes[0].plan
        assert plan is not None
        return plan

    def releases(self, count: int, seed: str, factor: Fraction) -> tuple[np.ndarray, np.ndarray]:
        """``count`` releases of this round: the released sums and each node's noise in them
        (shapes (count, L) and (count, n, L)); node i draws from its own seeded sampler, its
        σ scaled by ``factor``."""
        samplers = [
            audit.ScaledSampler(ExactSampler(SeededRng(f"round-audit/{seed}/node{i}")), factor)
            for i in range(self.n)
        ]
        vdaf, accepted = self.nodes[0].vdaf, len(self.nodes[0].accepted())
        length = vdaf.LENGTH
        totals = np.zeros((count, length), dtype=np.int64)
        draws = np.zeros((count, self.n, length), dtype=np.int64)
        for k in range(count):
            shares = []
            for i, (node, sampler) in enumerate(zip(self.nodes, samplers, strict=True)):
                twin = copy.copy(node)
                twin.sampler = sampler
                before = len(self.rec.draws)
                shares.append(twin.release())
                (draws[k, i],) = self.rec.draws[before:]  # exactly one draw per release
            totals[k] = secure.unshard(vdaf, shares, accepted)
        self.rec.clear()
        return totals, draws


def run_round(
    rec: Recorder, names: Sequence[str], n: int, t: int, *, weighted: bool, seed: str
) -> Round:
    """A whole training (``ROUNDS`` secure rounds at ``EPSILON``) over the providers
    ``names``; checks that every round released its true sum plus the n nodes' draws, and
    returns the first round."""
    rec.clear()
    config = TrainingConfig(rounds=ROUNDS, epsilon=EPSILON, weighted=weighted, clip=1.0)
    parties = [FixedUpdate(name, UPDATES[name]) for name in names]
    result = train(
        MODEL,
        parties,
        config,
        np.random.default_rng(list(seed.encode())),
        nodes=n,
        threshold=t,
        sampler=ExactSampler(SeededRng(f"round-audit/{seed}/train")),
    )
    p = len(names)
    assert len(rec.totals) == ROUNDS and len(rec.updates) == ROUNDS * p, "the round was not seen"
    assert len(rec.nodes) == len(rec.draws) == ROUNDS * n, "a node's release was not seen"
    for r, record in enumerate(result.rounds):
        assert record.accepted == tuple(names), record.excluded
        true_sum = np.sum(rec.updates[r * p : (r + 1) * p], axis=0)
        noise = np.sum(rec.draws[r * n : (r + 1) * n], axis=0)
        assert np.array_equal(rec.totals[r] - true_sum, noise), "released ≠ sum + n draws"
    first = Round(rec.nodes[:n], np.sum(rec.updates[:p], axis=0), n, t, rec)
    rec.clear()
    return first


def known_nodes(view: str, n: int, t: int) -> tuple[list[int], int]:
    """A view of a release: the nodes whose noise its adversary knows (and subtracts), and
    how many draws (each of variance σ_node²) the rest holds."""
    known = {"release": 0, "threat model": t - 1}[view]
    return list(range(n - known, n)), n - known


VIEWS = ("release", "threat model")


def view_of(totals: np.ndarray, draws: np.ndarray, view: str, n: int, t: int) -> np.ndarray:
    known, _ = known_nodes(view, n, t)
    return np.asarray(totals - draws[:, known, :].sum(axis=1))


# -- the scale test -------------------------------------------------------------------------


def scale_p_values(round_: Round, factor: Fraction, seed: str) -> dict[str, float]:
    """Per view, the KS p-value of the noise it holds (released minus true sum, minus the
    known nodes' noise) against its claim N_Z(0, draws·σ_node²), every coordinate."""
    length = round_.nodes[0].vdaf.LENGTH
    totals, draws = round_.releases(-(-SCALE_SAMPLES // length), seed, factor)
    rng = np.random.default_rng(list(f"pit/{seed}".encode()))
    out = {}
    for view in VIEWS:
        _, honest = known_nodes(view, round_.n, round_.t)
        claim = audit.DiscreteGaussian(honest * round_.plan.sigma_node_sq)
        noise = view_of(totals, draws, view, round_.n, round_.t) - round_.true_sum
        u = np.concatenate([audit.randomized_pit(noise[:, j], claim, rng) for j in range(length)])
        out[view] = float(audit.stats.kstest(u, "uniform").pvalue)
    return out


@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("n,t", audit.COMMITTEES)
def test_round_noise_has_the_claimed_scale(
    recorder: Recorder, n: int, t: int, weighted: bool
) -> None:
    seed = f"scale/{n},{t}/{weighted}"
    round_ = run_round(recorder, ["a", "b", "x"], n, t, weighted=weighted, seed=seed)
    plan = round_.plan
    assert plan.honest_quorum == n - t + 1  # every node's share is in the round's sum
    assert plan.sigma_sq == plan.honest_quorum * plan.sigma_node_sq  # the calibrated claim
    assert plan.sd_all_honest**2 == pytest.approx(n * float(plan.sigma_node_sq))
    low, true, high = (scale_p_values(round_, f, f"{seed}/{f}") for f in audit.SCALES)
    print(f"n,t = {n},{t} weighted={weighted}: p (σ×0.7, ×1, ×1.3) by view:", low, true, high)
    for view in VIEWS:
        assert true[view] > TRUE_SCALE_LEVEL, f"{view}: true scale rejected, p = {true[view]:.3g}"
        assert low[view] < 1e-6, f"{view}: σ×0.7 not rejected, p = {low[view]:.3g}"
        assert high[view] < 1e-6, f"{view}: σ×1.3 not rejected, p = {high[view]:.3g}"


# -- ε on neighbouring rounds ---------------------------------------------------------------


@dataclass
class Neighbours:
    """Two recorded rounds: D with the canary provider's update, D′ without it."""

    d: Round
    d2: Round
    cache: dict[tuple[int, str, int, Fraction], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict
    )

    def releases(
        self, which: Round, count: int, seed: str, factor: Fraction
    ) -> tuple[np.ndarray, np.ndarray]:
        """The same samples for every view (drawn once per side, phase and scale)."""
        key = (id(which), seed, count, factor)
        if key not in self.cache:
            self.cache[key] = which.releases(count, seed, factor)
        return self.cache[key]


@dataclass
class View:
    """One view of the neighbouring rounds, shaped as the benchmark's ``estimate_epsilon``
    and ``analytic_epsilon`` read a mechanism: ``neighbours`` gives the two exact sums,
    ``releases`` what the adversary sees, ``noise[j].sigma_sq`` the claimed variances."""

    pair: Neighbours
    view: str

    @property
    def noise(self) -> list[SimpleNamespace]:
        r = self.pair.d
        _, honest = known_nodes(self.view, r.n, r.t)
        return [SimpleNamespace(sigma_sq=honest * r.plan.sigma_node_sq)] * len(r.true_sum)

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pair.d.true_sum, self.pair.d2.true_sum

    def releases(self, value: np.ndarray, count: int, seed: str, factor: Fraction) -> np.ndarray:
        """What the adversary of this view sees of ``count`` releases of the round whose
        exact sum is ``value``, in integer units (decoding divides by a constant)."""
        which = self.pair.d if value is self.pair.d.true_sum else self.pair.d2
        totals, draws = self.pair.releases(which, count, seed, factor)
        return view_of(totals, draws, self.view, which.n, which.t).astype(np.float64)


@pytest.fixture(scope="module")
def neighbours(recorder: Recorder) -> Neighbours:
    d = run_round(recorder, ["a", "b", "x"], 3, 2, weighted=False, seed="eps")
    d2 = run_round(recorder, ["a", "b"], 3, 2, weighted=False, seed="eps")
    # unweighted, clip 1: the fixed-point scale is Δ in integer units (2^15); the canary's
    # update quantises exactly, and the two sums differ by it and by nothing else
    scale = d.plan.sensitivity_l2
    shift = d.true_sum - d2.true_sum
    assert np.array_equal(shift, np.rint(np.asarray(UPDATES["x"]) * scale).astype(np.int64))
    assert float(np.linalg.norm(shift)) == d.plan.sensitivity_l2  # it moves the sum by Δ
    assert d.plan == d2.plan  # the same noise on both sides (it depends on the config only)
    return Neighbours(d, d2)


@pytest.fixture
def as_mechanism(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the benchmark's two draws (exact neighbouring totals, releases) at a ``View``:
    ``estimate_epsilon`` and ``analytic_epsilon`` then audit the training round unchanged."""
    monkeypatch.setattr(audit, "neighbours", lambda mechanism, v: v.neighbours())
    monkeypatch.setattr(
        audit,
        "releases",
        lambda v, value, count, seed, factor: v.releases(value, count, seed, factor),
    )


def measure(view: View, factor: Fraction, sizes: dict[str, int], seed: str) -> Any:
    return audit.estimate_epsilon(
        "training round", view, delta=view.pair.d.plan.delta, seed=seed, factor=factor, **sizes
    )


#: ``TESSERA_PRIVACY_AUDIT=full``: the benchmark's full sizes (docs/reliability.md; minutes).
FULL = os.environ.get("TESSERA_PRIVACY_AUDIT") == "full"
_SIZES = audit.FULL if FULL else SimpleNamespace(train=500, select=6_000, estimate=20_000)
EPS_SIZES = {"train": _SIZES.train, "select": _SIZES.select, "estimate": _SIZES.estimate}


@pytest.mark.usefixtures("as_mechanism")
def test_measured_epsilon_of_a_round_never_exceeds_the_claim(neighbours: Neighbours) -> None:
    plan = neighbours.d.plan
    claimed = plan.epsilon  # the round's ρ at δ: what the round is charged
    assert claimed == pytest.approx(rho_to_eps_delta(config_rho(), plan.delta)[0])
    found = {}
    for view in VIEWS:
        v = View(neighbours, view)
        e = measure(v, Fraction(1), EPS_SIZES, "eps")
        exact = audit.analytic_epsilon("training round", v, plan.delta)
        found[view] = (e.point, e.lower, exact)
        assert e.lower <= claimed, f"{view}: ε ≥ {e.lower:.3f} measured, {claimed:.3f} claimed"
        assert exact <= claimed + 1e-9, f"{view}: the ideal release is ε = {exact:.3f}"
    print(f"claimed ε {claimed:.3f}; (point, 95% lower, exact):", found)
    assert found["threat model"][1] > 0.1, "the attack found nothing: it has no power"


def config_rho() -> float:
    budget = TrainingConfig(rounds=ROUNDS, epsilon=EPSILON).budget()
    assert budget is not None
    return budget.rho_per_round


@pytest.mark.usefixtures("as_mechanism")
def test_round_epsilon_audit_catches_a_quarter_of_the_noise(neighbours: Neighbours) -> None:
    """The same attack on the round, each node's sampler fed σ/4, measures more than claimed."""
    e = measure(
        View(neighbours, "threat model"),
        Fraction(1, 4),
        {"train": 300, "select": 2_000, "estimate": 5_000},
        "eps/quarter",
    )
    print(f"σ/4: ε {e.point:.3f}, 95% lower bound {e.lower:.3f}")
    assert e.lower > neighbours.d.plan.epsilon, f"ε ≥ {e.lower:.3f} only"
