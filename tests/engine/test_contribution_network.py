"""Rewards by contribution over the deployed roles (issue 14), on the in-process network:
each round's ticket fixes its scoring plan, the nodes release the plan's subset sums
(``train/release_subset``) and nothing else, the analyst scores them, and the drawn
verifiers re-compute the scores from the record before confirming them on-chain
(``post_scores``), where the market splits the providers' pay by the weights.

Breast cancer (10 features, logistic regression) over three honest providers and one whose
labels are random; leave-one-out scores of the validation-loss gain."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tessera.errors import PolicyViolation, QueryError
from tessera.learning import LocalConfig, LogisticRegression, TrainingConfig
from tessera.learning.contribution import ContributionSpec
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.node.training import NetworkRounds, RemoteNode, train_over
from tessera.protocol.contribution import WEIGHT_TOTAL, ScoreRecord, weights_of
from tessera.protocol.training_round import RoundTranscript, TrainingTicket

FEATURES = [f"f{i}" for i in range(10)]
PRICE = 10_000
NODE_SHARE_BPS = 2_000
POLICY = DatasetPolicy(
    allow_exact=True,
    budget_rho=4.0,
    max_rows=120,
    price_per_training=PRICE,
    node_share_bps=NODE_SHARE_BPS,
)
#: no noise: the scores are the updates' own (the noise's effect on them is measured in
#: process, tests/learning/test_contribution.py)
CONFIG = TrainingConfig(rounds=2, local=LocalConfig(2, 0.5, 16), clip=4.0)
SPEC = ContributionSpec("loo")
NAMES = ("h0", "h1", "h2", "liar")
SEED = "contribution-network"


def _data() -> tuple[list[pd.DataFrame], dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Four parts of 100 rows (the liar's labels drawn at random) and 150 validation rows."""
    x, y = load_breast_cancer(return_X_y=True)
    df = pd.DataFrame(x[:, :10], columns=FEATURES)
    df["y"] = y
    bounds: dict[str, Any] = {
        c: (math.floor(df[c].min() * 10) / 10, math.ceil(df[c].max() * 10) / 10) for c in FEATURES
    }
    bounds["y"] = (0, 1)
    order = np.random.default_rng(0).permutation(len(df))
    parts = [df.iloc[order[i * 100 : (i + 1) * 100]].copy() for i in range(4)]
    parts[3]["y"] = np.random.default_rng(1).integers(0, 2, size=100)
    val = df.iloc[order[400:550]]
    return parts, bounds, (val[FEATURES].to_numpy(), val["y"].to_numpy())


@pytest.fixture(scope="module")
def net() -> Iterator[LocalNetwork]:
    parts, bounds, _ = _data()
    network = LocalNetwork(3, 2, seed=SEED)
    for name, part in zip(NAMES, parts, strict=True):
        network.add_provider(name, {"cancer": part}, {"cancer": bounds}, {"cancer": POLICY})
    try:
        yield network
    finally:
        network.close()


def _train(
    net: LocalNetwork, kept: list[tuple[TrainingTicket, RoundTranscript, list[dict[str, Any]]]]
) -> Any:
    """A scored training; each round's ticket, record and the verifiers' answers kept."""
    original = NetworkRounds.verify

    def keep(self: NetworkRounds, ticket: Any, record: RoundTranscript) -> list[dict[str, Any]]:
        answers = original(self, ticket, record)
        kept.append((ticket, record, answers))
        return answers

    NetworkRounds.verify = keep  # type: ignore[method-assign]
    try:
        return net.analyst.train(  # the public API: NetworkAnalyst.train, over train_over
            "cancer",
            LogisticRegression(10),
            FEATURES,
            "y",
            CONFIG,
            validation=_data()[2],
            seed=3,
            contribution=SPEC,
        )
    finally:
        NetworkRounds.verify = original  # type: ignore[method-assign]


def _owed(net: LocalNetwork) -> dict[str, int]:
    ledger = net.ledger.admin
    owed = {name: ledger.owed(p.account.address) for name, p in net.providers.items()}
    owed["analyst"] = ledger.owed(net.analyst.ledger.account)
    return owed


def test_a_free_rider_is_paid_nothing_and_the_honest_providers_by_their_scores(
    net: LocalNetwork,
) -> None:
    ledger = net.ledger.admin
    before = _owed(net)
    kept: list[tuple[TrainingTicket, RoundTranscript, list[dict[str, Any]]]] = []
    start = time.perf_counter()
    res = _train(net, kept)
    seconds = time.perf_counter() - start
    assert len(res.rounds) == 2 and len(kept) == 2
    pool = len(NAMES) * PRICE * (10_000 - NODE_SHARE_BPS) // 10_000
    expected = dict.fromkeys(NAMES, 0)
    for record, (ticket, transcript, answers) in zip(res.rounds, kept, strict=True):
        scores = record.contribution
        assert isinstance(scores, ScoreRecord) and transcript.scores == scores
        assert ticket.scoring is not None and scores.seed == ticket.scoring.seed
        assert scores.accepted == NAMES and scores.subsets[0] == NAMES
        # leave-one-out: the round's sum and one sum without each provider, nothing else
        assert sorted(scores.subsets[1:]) == sorted(
            tuple(n for n in NAMES if n != left) for left in NAMES
        )
        assert scores.weight_of("liar") == 0 and scores.score_of("liar") < 0
        assert all(scores.weight_of(n) > 0 for n in NAMES[:3]), scores.scores
        assert sum(scores.weights) == WEIGHT_TOTAL
        confirmed = [a["scores"] for a in answers if "scores" in a]
        assert confirmed and all(c["confirmed"] for c in confirmed), confirmed
        assert any(c["applied"] for c in confirmed)
        assert ledger.scores_applied(bytes.fromhex(ticket.query_id.hex()))
        assert ledger.query(ticket.query_id).status == "passed"
        for name in NAMES:
            expected[name] += pool * scores.weight_of(name) // WEIGHT_TOTAL
        print(
            f"round {record.index}: scores "
            + ", ".join(f"{n}={scores.score_of(n):.5f} (w {scores.weight_of(n)})" for n in NAMES)
        )
    after = _owed(net)
    gained = {name: after[name] - before[name] for name in NAMES}
    assert gained == expected
    assert gained["liar"] == 0 and all(gained[n] > 0 for n in NAMES[:3])
    # what the providers did not get (the liar's share went to the others) is rounding
    assert 0 <= after["analyst"] - before["analyst"] <= 2 * len(NAMES)
    print(f"paid {gained} of {2 * pool} in {seconds:.1f} s")


def test_a_forged_score_record_is_refused_by_the_verifiers_and_the_listed_cuts_stand(
    net: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analyst sends the verifiers a record that credits the liar (its scores swapped
    with an honest provider's, the weights made to match): no verifier confirms it, the
    market never splits by it, every provider is paid its listed cut."""
    original = NetworkRounds.score

    def forged(self: NetworkRounds, *args: Any) -> ScoreRecord:
        honest = original(self, *args)
        s = list(honest.scores)
        i, j = honest.providers.index("h0"), honest.providers.index("liar")
        s[i], s[j] = s[j], s[i]
        return dataclasses.replace(honest, scores=tuple(s), weights=weights_of(s))

    monkeypatch.setattr(NetworkRounds, "score", forged)
    before = _owed(net)
    kept: list[tuple[TrainingTicket, RoundTranscript, list[dict[str, Any]]]] = []
    _train(net, kept)
    cut = PRICE * (10_000 - NODE_SHARE_BPS) // 10_000
    for ticket, transcript, answers in kept:
        assert transcript.scores is not None and transcript.scores.weight_of("liar") > 0
        refused = [a["scores"] for a in answers if "scores" in a]
        assert refused and not any(r["confirmed"] for r in refused)
        assert all("the score of h0 is" in r["reason"] for r in refused), refused
        assert not net.ledger.admin.scores_applied(ticket.query_id)
        assert net.ledger.admin.query(ticket.query_id).status == "passed"
    after = _owed(net)
    assert {n: after[n] - before[n] for n in NAMES} == dict.fromkeys(NAMES, 2 * cut)


def test_a_node_releases_only_the_plans_subsets_once_after_the_round(
    net: LocalNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever drives the round cannot ask a node for a provider's own sum, a subset
    before the round's release, or one twice."""
    asked: list[str] = []
    original = NetworkRounds.score

    def probe(self: NetworkRounds, ticket: TrainingTicket, nodes: list[RemoteNode], *a: Any) -> Any:
        node = nodes[0]
        for subset, why in (
            (("liar",), "not in the round's scoring plan"),
            (("h0", "nobody"), "not providers of this round"),
        ):
            with pytest.raises(PolicyViolation, match=why):
                node.release_subset(subset)
            asked.append(why)
        out = original(self, ticket, nodes, *a)
        with pytest.raises(PolicyViolation, match="released already"):
            node.release_subset(("h0", "h1", "h2"))
        asked.append("again")
        return out

    def early(self: RemoteNode) -> bytes:
        with pytest.raises(PolicyViolation, match="only after the round's release"):
            self.release_subset(("h0", "h1", "h2"))
        asked.append("early")
        return original_release(self)

    original_release = RemoteNode.release
    monkeypatch.setattr(NetworkRounds, "score", probe)
    monkeypatch.setattr(RemoteNode, "release", early)
    _train(net, [])
    assert asked.count("early") == 2 * 3 and asked.count("again") == 2
    assert asked.count("not in the round's scoring plan") == 2


def test_the_quote_shows_the_scores_privacy_and_a_budget_that_cannot_pay_is_refused(
    net: LocalNetwork,
) -> None:
    """Leave-one-out over 4 providers puts each in 3 more releases a round: the quote's
    ``scoring_rho`` is 3ρ per scored round, and a training the budgets (4 each) cannot pay
    for with it is refused before round 1, naming the scores' share."""
    config = dataclasses.replace(CONFIG, rounds=3, epsilon=10.0)
    rounds = NetworkRounds(
        net.analyst, LogisticRegression(10), "cancer", FEATURES, "y", config, b"q", SPEC
    )
    quote = rounds.quote()
    rho = quote.rho_per_round
    assert rho > 0 and quote.scoring_rho == pytest.approx(3 * 3 * rho)
    assert quote.rho_total == pytest.approx(12 * rho)
    unscored = NetworkRounds(
        net.analyst, LogisticRegression(10), "cancer", FEATURES, "y", config, b"q"
    ).quote()
    assert unscored.scoring_rho == 0 and unscored.rho_total == pytest.approx(3 * rho)
    ticket = rounds.ticket(0, NAMES, np.zeros(11))
    assert ticket.release_rho == pytest.approx(rho) and ticket.rho == pytest.approx(4 * rho)
    # 4.0 left each: the rounds alone fit, not with their scores
    assert unscored.rho_total < min(quote.budget_left.values()) < quote.rho_total
    spent = {
        n: net.ledger.admin.dataset(p.datasets["cancer"]).budget_spent
        for n, p in net.providers.items()
    }
    with pytest.raises(PolicyViolation, match=r"for the scores"):
        train_over(
            net.analyst,
            "cancer",
            LogisticRegression(10),
            FEATURES,
            "y",
            config,
            validation=_data()[2],
            contribution=SPEC,
        )
    after = {
        n: net.ledger.admin.dataset(p.datasets["cancer"]).budget_spent
        for n, p in net.providers.items()
    }
    assert after == spent  # refused before anything was charged


def test_the_scoring_plan_is_part_of_the_tickets_hash_and_round_trips(net: LocalNetwork) -> None:
    """The plan names the round's query on-chain: another seed, method or validation set
    is another query; a ticket decodes with its plan, and a plan for other providers is
    refused."""
    rounds = NetworkRounds(
        net.analyst, LogisticRegression(10), "cancer", FEATURES, "y", CONFIG, b"t", SPEC
    )
    ticket = rounds.ticket(0, NAMES, np.zeros(11))
    assert ticket.scoring is not None
    again = TrainingTicket.from_json(ticket.to_json())
    assert again.scoring == ticket.scoring and again.query_id == ticket.query_id
    plain = dataclasses.replace(ticket, scoring=None)
    other_seed = dataclasses.replace(
        ticket, scoring=dataclasses.replace(ticket.scoring, seed=bytes(32))
    )
    shapley = dataclasses.replace(
        ticket, scoring=dataclasses.replace(ticket.scoring, method="shapley")
    )
    ids = {t.query_id for t in (ticket, plain, other_seed, shapley)}
    assert len(ids) == 4
    with pytest.raises(QueryError, match="scoring plan's providers"):
        dataclasses.replace(
            ticket, scoring=dataclasses.replace(ticket.scoring, providers=NAMES[:3])
        )
