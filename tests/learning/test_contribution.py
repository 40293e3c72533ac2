"""Issue 14: rewards by contribution. Providers of a training round scored by leave-one-out
and by permutation-sampled Shapley values of the validation gain, from noised sums of
subsets of their reports released by the committee (secure rounds at 3 nodes), on
scikit-learn's breast cancer table; a random-label free-rider and a provider resubmitting
another's rows; the verifier's re-check of a record; bad input refused by name."""

from __future__ import annotations

import dataclasses
import itertools
import json
from functools import cache

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from tessera.crypto.rng import SeededRng
from tessera.dp.accountant import PrivacyAccountant
from tessera.dp.samplers import ExactSampler
from tessera.errors import DecodeError, ProtocolError
from tessera.learning import Dataset, LocalConfig, LogisticRegression, TrainingConfig, secure, train
from tessera.learning.config import fixed_point_for, vdaf_for
from tessera.learning.contribution import (
    ContributionSpec,
    RoundContext,
    check_record,
    plan_subsets,
    privacy_charges,
)
from tessera.learning.rounds import TrainingResult
from tessera.protocol.contribution import (
    WEIGHT_TOTAL,
    ContributionError,
    ScoreRecord,
    weights_of,
)
from tessera.protocol.training import positions, report_digest

from .test_committee import _agree, _sealed, _setup

MODEL = LogisticRegression(30)
CONFIG = TrainingConfig(
    rounds=6, unit="row", clip=1.0, server_learning_rate=2.0, local=LocalConfig(1, 0.1, 32)
)
Validation = tuple[np.ndarray, np.ndarray]


@cache
def _tables() -> tuple[tuple[Dataset, ...], Validation]:
    """Three honest providers (80 rows each of breast cancer's training split), a free-rider
    with the fourth part's rows under random labels, and a copycat resubmitting honest0's."""
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    rng = np.random.default_rng(0)
    parts = np.array_split(rng.permutation(len(ytr))[:320], 4)
    honest = [Dataset(f"honest{i}", xtr[p], ytr[p], max_rows=100) for i, p in enumerate(parts[:3])]
    random = Dataset("random", xtr[parts[3]], rng.integers(0, 2, len(parts[3])), max_rows=100)
    copycat = Dataset("copycat", honest[0].x.copy(), honest[0].y.copy(), max_rows=100)
    return (*honest, random, copycat), (xte, yte)


def _run(
    method: str, names: tuple[str, ...], permutations: int = 16, **kw: object
) -> TrainingResult:
    tables, validation = _tables()
    return train(
        MODEL,
        [t for t in tables if t.name in names],
        kw.pop("config", CONFIG),  # type: ignore[arg-type]
        np.random.default_rng(1),
        validation=validation,
        contribution=ContributionSpec(method=method, permutations=permutations),
        **kw,  # type: ignore[arg-type]
    )


def _totals(res: TrainingResult) -> tuple[dict[str, float], dict[str, int]]:
    scores: dict[str, float] = {}
    weights: dict[str, int] = {}
    for r in res.rounds:
        c = r.contribution
        assert c is not None
        for p, s, w in zip(c.providers, c.scores, c.weights, strict=True):
            scores[p] = scores.get(p, 0.0) + s
            weights[p] = weights.get(p, 0) + w
    return scores, weights


EVERYONE = ("honest0", "honest1", "honest2", "random", "copycat")
NO_COPY = ("honest0", "honest1", "honest2", "random")
HONEST = ("honest0", "honest1", "honest2")


def test_shapley_free_riders_earn_less_than_honest_providers() -> None:
    scores, weights = _totals(_run("shapley", EVERYONE))
    alone, _ = _totals(_run("shapley", NO_COPY))
    # random labels: a negative Shapley value, paid nothing
    assert scores["random"] < 0 and weights["random"] < min(weights[h] for h in HONEST)
    assert all(scores["random"] < scores[h] for h in HONEST)
    # the copy and its original share the original's value: the copycat takes at most
    # about half of honest0's score, honest0 keeps the rest, the pair is paid about what
    # honest0 was paid alone, and the other honest providers lose little
    pair = scores["honest0"] + scores["copycat"]
    assert scores["copycat"] < 0.6 * alone["honest0"]
    assert 0.8 * alone["honest0"] < pair < 1.15 * alone["honest0"]
    others = scores["honest1"] + scores["honest2"]
    assert others > 0.8 * (alone["honest1"] + alone["honest2"])


def test_leave_one_out_pays_nothing_to_the_random_label_free_rider() -> None:
    res = _run("loo", EVERYONE)
    scores, weights = _totals(res)
    assert scores["random"] < 0 and all(scores["random"] < scores[h] for h in HONEST)
    assert weights["random"] == 0  # every round: a negative leave-one-out gain
    # the original and its copy are the same player: the same score, each the value of a
    # second copy of the rows (about half of what honest0 scores alone)
    alone, _ = _totals(_run("loo", NO_COPY))
    assert scores["copycat"] == pytest.approx(scores["honest0"], rel=0.05)
    assert scores["copycat"] < 0.6 * alone["honest0"]
    for r in res.rounds:
        c = r.contribution
        assert c is not None and sum(c.weights) == WEIGHT_TOTAL
        assert len(c.subsets) == 1 + len(EVERYONE)  # the round's sum and each leave-one-out


def test_scores_re_check_from_the_record_and_a_tampered_record_is_refused() -> None:
    tables, validation = _tables()
    start = MODEL.init(np.random.default_rng(7))
    res = _run("loo", NO_COPY, config=dataclasses.replace(CONFIG, rounds=1), init=start)
    record = res.rounds[0].contribution
    assert record is not None
    fixed_point = fixed_point_for(CONFIG, 100)
    ctx = RoundContext(
        MODEL,
        start,
        CONFIG,
        fixed_point,
        vdaf_for(CONFIG, MODEL.num_params, fixed_point, 3),
        {t.name: t.max_rows for t in tables},
        validation,
    )
    check_record(record, ctx, release_digests=record.release_digests)
    assert len(record.digest()) == 32
    i = record.providers.index("random")

    def refused(bad: ScoreRecord, reason: str, **kw: object) -> None:
        with pytest.raises(ContributionError, match=reason):
            check_record(bad, ctx, **kw)  # type: ignore[arg-type]
        assert bad.digest() != record.digest()

    scores = list(record.scores)
    scores[i] = abs(scores[i]) + 0.01  # the free-rider claims a gain
    refused(dataclasses.replace(record, scores=tuple(scores)), "the score of random is")
    weights = (0, 0, 0, WEIGHT_TOTAL)
    refused(dataclasses.replace(record, weights=weights), "not the scores' weights")
    swapped = (record.releases[0], record.releases[2], record.releases[1], *record.releases[3:])
    refused(dataclasses.replace(record, releases=swapped), "the score of")
    refused(
        dataclasses.replace(record, subsets=record.subsets[:-1], releases=record.releases[:-1]),
        "plan",
    )
    other = (validation[0][:-1], validation[1][:-1])
    with pytest.raises(ContributionError, match="another validation set"):
        check_record(record, dataclasses.replace(ctx, validation=other))
    with pytest.raises(ContributionError, match="another starting model"):
        check_record(record, dataclasses.replace(ctx, params=ctx.params + 1.0))
    with pytest.raises(ContributionError, match="not the one on the trail"):
        check_record(record, ctx, release_digests=record.release_digests[::-1])


def test_subset_releases_carry_noise_and_are_charged_to_the_budget() -> None:
    config = dataclasses.replace(CONFIG, rounds=2, epsilon=8.0)
    rho = config.budget().rho_per_round  # type: ignore[union-attr]
    accountant = PrivacyAccountant({name: 10.0 for name in NO_COPY})
    res = _run(
        "loo",
        NO_COPY,
        config=config,
        accountant=accountant,
        sampler=ExactSampler(SeededRng(b"n" * 32)),
    )
    # each round: ρ for the round's own release, and ρ per leave-one-out sum a provider is
    # in (the three that leave another one out)
    for name in NO_COPY:
        assert accountant.budget(name).spent == pytest.approx(2 * (rho + 3 * rho))
    plain = _run("loo", NO_COPY, config=dataclasses.replace(config, epsilon=None))
    noised, exact = res.rounds[0].contribution, plain.rounds[0].contribution
    assert noised is not None and exact is not None
    assert noised.subsets == exact.subsets
    assert all(a != b for a, b in zip(noised.releases[1:], exact.releases[1:], strict=True))
    assert privacy_charges(noised.subsets[1:], rho) == {n: 3 * rho for n in NO_COPY}


def test_the_shapley_plan_follows_the_seed_and_excluded_providers_score_nothing() -> None:
    names = ("a", "b", "c", "d")
    one = plan_subsets("shapley", names, names, b"\x01" * 32, 6)
    assert one == plan_subsets("shapley", names, names, b"\x01" * 32, 6)
    assert one != plan_subsets("shapley", names, names, b"\x02" * 32, 6)
    assert all(s and s != names for s in one)
    # an excluded provider is in no released sum
    assert all("d" not in s for s in plan_subsets("loo", names, ("a", "b", "c"), bytes(32), 1))


def test_weights_follow_positive_scores_and_sum_to_the_total() -> None:
    assert weights_of([3.0, 1.0, -2.0, 0.0]) == (750_000, 250_000, 0, 0)
    assert sum(weights_of([1.0, 1.0, 1.0])) == WEIGHT_TOTAL
    assert weights_of([1.0, 1.0, 1.0]) == (333_334, 333_333, 333_333)
    assert weights_of([-1.0, 0.0]) == (0, 0)  # nobody gained: the cut goes back


def test_bad_score_input_is_refused_with_a_named_reason() -> None:
    with pytest.raises(ContributionError, match="score 1 is not a finite number"):
        weights_of([1.0, float("nan")])
    with pytest.raises(ContributionError, match="unknown scoring method 'banzhaf'"):
        ContributionSpec(method="banzhaf")
    with pytest.raises(ContributionError, match="permutations must be positive"):
        ContributionSpec(method="shapley", permutations=0)
    with pytest.raises(ContributionError, match="the seed must be 32 bytes"):
        plan_subsets("shapley", ("a", "b"), ("a", "b"), b"short", 2)
    with pytest.raises(ContributionError, match="a provider is named twice"):
        plan_subsets("loo", ("a", "a"), ("a",), bytes(32), 1)
    good = dict(
        method="loo",
        seed=bytes(32),
        permutations=1,
        providers=("a", "b"),
        accepted=("a", "b"),
        params_digest=bytes(32),
        validation_digest=bytes(32),
        subsets=(),
        releases=(),
        scores=(1.0, 0.0),
        weights=(WEIGHT_TOTAL, 0),
    )
    ScoreRecord(**good)  # type: ignore[arg-type]
    for change, reason in (
        ({"weights": (WEIGHT_TOTAL, 1)}, "sum to 1000000 or 0"),
        ({"weights": (-1, WEIGHT_TOTAL + 1)}, "must be ≥ 0"),
        ({"scores": (1.0,)}, "one score and one weight per provider"),
        ({"scores": (float("inf"), 0.0)}, "the score of a is not finite"),
        ({"accepted": ("a", "z")}, "an accepted provider is not one of the round's"),
        ({"subsets": (("a",),)}, "one release per subset"),
        ({"method": "oracle"}, "unknown scoring method"),
    ):
        with pytest.raises(ContributionError, match=reason):
            ScoreRecord(**{**good, **change})  # type: ignore[arg-type]
    assert issubclass(ContributionError, ProtocolError)
    with pytest.raises(ValueError, match="need secure rounds and a validation set"):
        tables, _ = _tables()
        train(
            MODEL,
            list(tables[:2]),
            CONFIG,
            np.random.default_rng(0),
            contribution=ContributionSpec(),
        )


def test_a_node_releases_only_the_subsets_of_its_scoring_plan() -> None:
    """Whoever drives the round cannot ask a node for a subset outside the plan (here, one
    provider's own sum under leave-one-out); the plan's subsets sum the right reports."""
    res = _run("loo", HONEST, config=dataclasses.replace(CONFIG, rounds=1))
    record = res.rounds[0].contribution
    assert record is not None and set(record.subsets[1:]) == {
        ("honest0", "honest1"),
        ("honest0", "honest2"),
        ("honest1", "honest2"),
    }
    plan = ContributionSpec("loo").plan(bytes(32), ("a", "b", "c"))
    nodes, public, vdaf = _setup()
    for n in nodes:
        n.scoring = plan
    values = {name: np.full(12, k + 1, dtype=np.int64) for k, name in enumerate("abc")}
    reports = {
        name: _sealed(vdaf, public, name, v, k) for k, (name, v) in enumerate(values.items())
    }
    _agree(nodes, {k: report_digest(v) for k, v in reports.items()})
    for name, rep in reports.items():
        shares = {n.index: n.prepare(name, rep) for n in nodes}
        ordered = [shares[i] for i in positions(rep.nonce, [n.index for n in nodes])]
        assert all(n.decide(name, ordered) for n in nodes)
    with pytest.raises(ProtocolError, match="a subset before the round's release"):
        nodes[0].release_subset(["a", "b"])
    assert secure.unshard(vdaf, [n.release() for n in nodes], 3).tolist() == [6] * 12
    pair = secure.unshard(vdaf, [n.release_subset(["c", "a"]) for n in nodes], 2)
    assert pair.tolist() == [4] * 12
    with pytest.raises(ProtocolError, match=r"subset \['a'\] is not in the scoring plan"):
        nodes[0].release_subset(["a"])
    with pytest.raises(ProtocolError, match=r"subset \['a', 'c'\] released already"):
        nodes[0].release_subset(["a", "c"])
    with pytest.raises(ProtocolError, match=r"not accepted this round: \['z'\]"):
        nodes[0].release_subset(["a", "z"])
    with pytest.raises(ProtocolError, match="released already"):  # the round's own sum
        nodes[0].release_subset(["a", "b", "c"])
    nodes[1].scoring = None
    with pytest.raises(ProtocolError, match="is not in the scoring plan"):
        nodes[1].release_subset(["a", "b"])


def test_a_score_record_round_trips_through_json_and_a_malformed_one_is_refused() -> None:
    """What the analyst sends the verifiers: every share, the scores as exact hex floats."""
    res = _run("shapley", NO_COPY, config=dataclasses.replace(CONFIG, rounds=1), permutations=3)
    record = res.rounds[0].contribution
    assert record is not None
    data = json.loads(json.dumps(record.to_json()))
    again = ScoreRecord.from_json(data)
    assert again == record and again.digest() == record.digest()
    for key, bad in (
        ("weights", [1] * len(record.weights)),  # not summing to the total
        ("scores", [0.5] * len(record.scores)),  # floats, not hex
        ("seed", "00"),
        ("releases", [["zz"]] * len(record.releases)),
    ):
        with pytest.raises(DecodeError):
            ScoreRecord.from_json({**data, key: bad})
    with pytest.raises(DecodeError, match="expected exactly the fields"):
        ScoreRecord.from_json({**data, "extra": 1})


def test_a_plans_most_releases_bound_every_providers_charge_whoever_is_accepted() -> None:
    """The ticket charges ``(1 + most_releases)·ρ`` before the reports: for every accepted
    set, each provider's subset releases are within it (leaving providers out merges
    subsets, never adds one)."""
    names = ("a", "b", "c", "d", "e")
    for method, perms in (("loo", 1), ("shapley", 4), ("shapley", 12)):
        plan = ContributionSpec(method, perms).plan(bytes(range(32)), names)
        most = plan.most_releases()
        if method == "loo":
            assert most == len(names) - 1
        for k in range(1, len(names) + 1):
            for accepted in itertools.combinations(names, k):
                charges = privacy_charges(plan.subsets(accepted), 1.0)
                assert max(charges.values(), default=0.0) <= most
