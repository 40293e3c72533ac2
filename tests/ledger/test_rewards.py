"""Issue 14: a training query's providers paid by contribution. The drawn verifiers confirm
a round's score record and weights (``market.post_scores``); at a majority the providers'
escrow is split by weight, paid through the same settlement and pull payments; a
provider weighing 0 gets nothing, the rest of the cut goes back to the analyst. The
weights come from a real scoring run (breast cancer, leave-one-out), re-checked by the
verifier before it confirms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from tessera.errors import LedgerError
from tessera.learning import Dataset, LocalConfig, LogisticRegression, TrainingConfig, train
from tessera.learning.config import fixed_point_for, vdaf_for
from tessera.learning.contribution import ContributionSpec, RoundContext, check_record
from tessera.ledger.client import Listing
from tessera.protocol.contribution import WEIGHT_TOTAL, ContributionError, ScoreRecord

from .conftest import World, h, point
from .direct import send

PRICE = 6_000  # each dataset's training price; nodes take 10 %
CUT = 5_400


def _training_datasets(w: World) -> tuple[list[int], list[str]]:
    """Three providers (the outsider registered as the third) list a dataset for training."""
    w.admin.register_many([(w.outsider.account, "provider", point(50))])
    owners = [w.providers[0], w.providers[1], w.outsider]
    ids = [
        p.list_dataset(
            h(f"train-schema-{i}"),
            Listing(
                bounds={"x": (0.0, 1.0)},
                operations=frozenset({"count"}),
                price_per_training=PRICE,
                node_share_bps=1_000,
            ),
        ).dataset_id
        for i, p in enumerate(owners)
    ]
    return ids, [p.account for p in owners]


def _training_query(w: World, label: str, ids: list[int], contributors: int = 3) -> bytes:
    qid = w.analyst.submit_query(h(label), ids, w.committee, 100_000, {"count"}, kind="training")
    owners = [w.providers[0], w.providers[1], w.outsider][:contributors]
    for p in owners:
        p.post_contribution(qid.query_id, h(f"{label}/contrib/{p.account}"))
    w.nodes[0].post_aggregate(qid.query_id, h(f"{label}/aggregate"))
    for n in w.nodes:
        n.post_noise(qid.query_id, h(f"{label}/noise/{n.account}"))
        n.post_key_switch(qid.query_id, h(f"{label}/ks/{n.account}"))
    w.nodes[0].post_proof_bundle(qid.query_id, h(f"{label}/proofs"))
    w.analyst.post_result(qid.query_id, h(f"{label}/result"))
    return qid.query_id


def _scored_round() -> tuple[ScoreRecord, RoundContext]:
    """One secure round over breast cancer: two honest providers and one with random
    labels, scored by leave-one-out; and what a verifier re-checks it with."""
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    rng = np.random.default_rng(0)
    parts = np.array_split(rng.permutation(len(ytr))[:240], 3)
    tables = [
        Dataset("honest0", xtr[parts[0]], ytr[parts[0]], max_rows=100),
        Dataset("honest1", xtr[parts[1]], ytr[parts[1]], max_rows=100),
        Dataset("random", xtr[parts[2]], rng.integers(0, 2, 80), max_rows=100),
    ]
    model = LogisticRegression(30)
    config = TrainingConfig(
        rounds=1, unit="row", clip=1.0, server_learning_rate=2.0, local=LocalConfig(1, 0.1, 32)
    )
    start = model.init(np.random.default_rng(7))
    res = train(
        model,
        tables,
        config,
        np.random.default_rng(1),
        validation=(xte, yte),
        init=start,
        contribution=ContributionSpec("loo"),
    )
    record = res.rounds[0].contribution
    assert record is not None
    fp = fixed_point_for(config, 100)
    ctx = RoundContext(
        model,
        start,
        config,
        fp,
        vdaf_for(config, model.num_params, fp, 3),
        {t.name: t.max_rows for t in tables},
        (xte, yte),
    )
    return record, ctx


def test_the_market_pays_a_training_round_by_verified_scores(world: World) -> None:
    w = world
    ids, accounts = _training_datasets(w)
    record, ctx = _scored_round()
    check_record(record, ctx)  # the verifier's re-check before it confirms
    by_name = dict(zip(("honest0", "honest1", "random"), accounts, strict=True))
    weight_of = {by_name[p]: record.weight_of(p) for p in record.providers}
    assert weight_of[by_name["random"]] == 0 and record.score_of("random") < 0
    qid = _training_query(w, "scored", ids)
    q = w.admin.query(qid)
    assert q.provider_cuts == (CUT, CUT, CUT)
    weights = [weight_of[w.admin.dataset(d).provider] for d in q.dataset_ids]
    first = w.verifiers[0].post_scores(qid, record.digest(), weights)
    assert not first.applied and not w.admin.scores_applied(qid)
    second = w.verifiers[1].post_scores(qid, record.digest(), weights)
    assert second.applied and w.admin.scores_applied(qid)
    pool = 3 * CUT
    cuts = w.admin.query(qid).provider_cuts
    assert cuts == tuple(pool * wt // WEIGHT_TOTAL for wt in weights)
    dust = pool - sum(cuts)
    assert w.admin.owed(w.analyst.account) == dust  # rounding only: the weights sum to 1e6
    assert w.verifiers[0].post_verdict(qid, True).settled is False
    assert w.verifiers[1].post_verdict(qid, True).settled
    for d, cut in zip(q.dataset_ids, cuts, strict=True):
        assert w.admin.owed(w.admin.dataset(d).provider) == cut
    assert w.admin.owed(by_name["random"]) == 0
    assert w.admin.owed(by_name["honest0"]) + w.admin.owed(by_name["honest1"]) + dust == pool
    assert w.admin.escrowed() == 0
    print(f"post_scores gas: {first.tx.gas_used} (a vote), {second.tx.gas_used} (the split)")
    w.cash_out()
    assert w.admin.balance(w.admin.deployment.market) == 0
    # a tampered record (the free-rider credited with a gain) fails the re-check
    scores = list(record.scores)
    scores[record.providers.index("random")] = 0.5
    forged = dataclasses.replace(record, scores=tuple(scores))
    with pytest.raises(ContributionError, match=r"the score of random is 0\.5"):
        check_record(forged, ctx)


def test_no_positive_score_returns_the_providers_cut_and_a_non_contributor_gets_nothing(
    world: World,
) -> None:
    w = world
    ids, _ = _training_datasets(w)
    qid = _training_query(w, "zero", ids)
    w.verifiers[0].post_scores(qid, h("record"), [0, 0, 0])
    assert w.verifiers[2].post_scores(qid, h("record"), [0, 0, 0]).applied
    assert w.admin.query(qid).provider_cuts == (0, 0, 0)
    assert w.admin.owed(w.analyst.account) == 3 * CUT
    assert w.verifiers[0].post_verdict(qid, True).settled is False
    assert w.verifiers[1].post_verdict(qid, True).settled
    assert w.admin.escrowed() == 0 and w.admin.owed(w.providers[0].account) == 0
    # the weight of a provider that never contributed goes back to the analyst
    qid = _training_query(w, "absent", ids, contributors=2)
    weights = [400_000, 300_000, 300_000]
    w.verifiers[0].post_scores(qid, h("record2"), weights)
    assert w.verifiers[1].post_scores(qid, h("record2"), weights).applied
    assert w.admin.query(qid).provider_cuts == (6_480, 4_860, 0)
    assert w.verifiers[0].post_verdict(qid, True).settled is False
    assert w.verifiers[1].post_verdict(qid, True).settled
    assert w.admin.owed(w.outsider.account) == 0
    assert w.admin.escrowed() == 0


def test_scores_are_confirmed_by_a_majority_and_bad_input_is_refused_by_name(
    world: World,
) -> None:
    w = world
    ids, _ = _training_datasets(w)
    qid = _training_query(w, "votes", ids)
    m = w.verifiers[0].market.functions

    def refused(who: object, weights: list[int], reason: str, query: bytes = qid) -> None:
        with pytest.raises(LedgerError) as err:
            send(who, m.post_scores(query, h("r"), weights))  # type: ignore[arg-type]
        assert err.value.reason == reason, err.value

    refused(w.verifiers[0], [WEIGHT_TOTAL, 1, 0], "weights must sum to 1000000 or 0")
    refused(w.verifiers[0], [WEIGHT_TOTAL, 0], "one weight per dataset")
    refused(w.outsider, [WEIGHT_TOTAL, 0, 0], "not a verifier of this query")
    refused(w.analyst, [WEIGHT_TOTAL, 0, 0], "not a verifier of this query")
    with pytest.raises(ValueError, match="sum to 999999, not 1000000 or 0"):
        w.verifiers[0].post_scores(qid, h("r"), [WEIGHT_TOTAL - 1, 0, 0])
    with pytest.raises(ValueError, match="a contribution weight is negative"):
        w.verifiers[0].post_scores(qid, h("r"), [-1, WEIGHT_TOTAL + 1, 0])
    # two verifiers on different weights are no majority; the third settles it
    assert not w.verifiers[0].post_scores(qid, h("r"), [WEIGHT_TOTAL, 0, 0]).applied
    assert not w.verifiers[1].post_scores(qid, h("r"), [0, WEIGHT_TOTAL, 0]).applied
    refused(w.verifiers[0], [WEIGHT_TOTAL, 0, 0], "already posted scores")
    assert w.verifiers[2].post_scores(qid, h("r"), [0, WEIGHT_TOTAL, 0]).applied
    assert w.admin.query(qid).provider_cuts == (0, 3 * CUT, 0)
    # only open training queries are scored
    plain = w.analyst.submit_query(h("plain"), ids, w.committee, 100_000, {"count"}).query_id
    w.providers[0].post_contribution(plain, h("plain/c"))
    refused(w.verifiers[0], [WEIGHT_TOTAL, 0, 0], "not a training query", plain)
    assert w.verifiers[0].post_verdict(qid, True).settled is False
    assert w.verifiers[1].post_verdict(qid, True).settled
    refused(w.verifiers[0], [WEIGHT_TOTAL, 0, 0], "query not open")
