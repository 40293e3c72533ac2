"""Federated training through the deployed roles (LocalNetwork: the same roles, no sockets).

scikit-learn's breast-cancer table (its first ten features) is split over three
providers; every round is a training query on the embedded chain, the providers train
and report through ``train/report`` and the nodes verify through ``train/*``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression as SkLogistic

from tessera.errors import PolicyViolation, ProtocolError
from tessera.learning import LocalConfig, LogisticRegression, TrainingConfig
from tessera.learning.config import scale_features
from tessera.ledger import rho_to_micro
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.protocol.training_round import OPERATION, TrainingTicket
from tessera.testing.learning import oversized_trainer

FEATURES = [f"f{i}" for i in range(10)]
PRICE = 7


def _table() -> tuple[pd.DataFrame, dict[str, Any]]:
    x, y = load_breast_cancer(return_X_y=True)
    df = pd.DataFrame(x[:, :10], columns=FEATURES)
    df["y"] = y
    bounds: dict[str, Any] = {
        c: (math.floor(df[c].min() * 10) / 10, math.ceil(df[c].max() * 10) / 10) for c in FEATURES
    }
    bounds["y"] = (0, 1)
    return df, bounds


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[LocalNetwork, pd.DataFrame, dict[str, Any]]]:
    df, bounds = _table()
    order = np.random.default_rng(0).permutation(len(df))
    val, train = order[:120], order[120:]
    net = LocalNetwork(3, 2, seed="training")
    policy = DatasetPolicy(allow_exact=True, budget_rho=2.0, price_per_training=PRICE)
    for k, part in enumerate(np.array_split(train, 3)):
        net.add_provider(f"h{k}", {"cancer": df.iloc[part]}, {"cancer": bounds}, {"cancer": policy})
    try:
        yield net, df.iloc[val], bounds
    finally:
        net.close()


def _val(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return df[FEATURES].to_numpy(), df["y"].to_numpy()


CONFIG = TrainingConfig(rounds=4, local=LocalConfig(2, 0.5, 16), clip=2.0)


def test_training_learns_and_every_round_is_a_training_query_on_the_ledger(world: Any) -> None:
    net, val, bounds = world
    model = LogisticRegression(10)
    before = net.ledger.analyst.client.balance()
    res = net.train("cancer", model, FEATURES, "y", CONFIG, validation=_val(val), seed=0)
    assert len(res.rounds) == 4
    # as accurate as scikit-learn's fit on the pooled rows (same public scaling)
    pooled = pd.concat(
        [p.role.db._con.execute("SELECT * FROM cancer").df() for p in net.providers.values()]
    )
    cols = [bounds[c] for c in FEATURES]
    x_all, _ = scale_features(pooled[FEATURES].to_numpy(), cols)
    x_val, _ = scale_features(val[FEATURES].to_numpy(), cols)
    central = SkLogistic(max_iter=1000).fit(x_all, pooled["y"]).score(x_val, val["y"])
    assert res.rounds[-1].score is not None and res.rounds[-1].score >= central - 0.06
    ledger = net.analyst.ledger
    ids = sorted(d for p in net.providers.values() for d in p.datasets.values())
    for record in res.rounds:
        assert record.accepted == ("h0", "h1", "h2") and not record.excluded
        assert record.clipped is None  # the providers keep it to themselves
        assert record.query_id is not None
        q = ledger.query(record.query_id)
        assert q.kind == "training" and q.operations == frozenset({OPERATION})
        assert sorted(q.dataset_ids) == ids and q.analyst == ledger.account
        trail = ledger.audit_trail(record.query_id, verdicts=False)
        providers = {p.account.address for p in net.providers.values()}
        nodes = set(net.analyst.node_address.values())
        assert set(trail.of("contribution")) == providers
        assert set(trail.of("aggregate")) == set(trail.of("key_switch")) == nodes
        assert set(trail.of("proof_bundle")) == nodes
        assert list(trail.of("result")) == [ledger.account]
        assert ledger.work_complete(record.query_id)
        # the verifier drawn re-checked the round from its trail and settled it
        assert q.status == "passed", q.status
    # each round escrowed the datasets' training price
    assert before - net.ledger.analyst.client.balance() >= 4 * 3 * PRICE


def test_a_private_training_charges_each_round_on_chain_and_at_each_provider(world: Any) -> None:
    net, val, _ = world
    model = LogisticRegression(10)
    config = TrainingConfig(rounds=2, local=LocalConfig(1, 0.5, 16), clip=2.0, epsilon=4.0)
    quote = net.training_quote("cancer", model, FEATURES, "y", config)
    budget = config.budget()
    assert budget is not None
    assert quote.epsilon == pytest.approx(budget.total_epsilon)
    assert quote.price == 2 * 3 * PRICE and quote.rounds_affordable() == 2
    ledger = net.analyst.ledger
    spent = {
        name: (
            ledger.dataset(p.datasets["cancer"]).budget_spent,
            p.role.store.get("budget", "cancer") or 0.0,
        )
        for name, p in net.providers.items()
    }
    res = net.train("cancer", model, FEATURES, "y", config, validation=_val(val), seed=1)
    assert res.rounds[-1].epsilon_spent == pytest.approx(budget.total_epsilon)
    for name, p in net.providers.items():
        on_chain = ledger.dataset(p.datasets["cancer"]).budget_spent - spent[name][0]
        own = float(p.role.store.get("budget", "cancer")) - float(spent[name][1])
        assert on_chain == 2 * rho_to_micro(budget.rho_per_round)
        assert own == pytest.approx(2 * budget.rho_per_round)


def test_a_training_the_budgets_cannot_pay_for_is_refused_before_any_round(world: Any) -> None:
    net, _, _ = world
    ledger = net.analyst.ledger
    n_queries = {
        p: ledger.dataset(d).queries
        for p, d in ((n, p.datasets["cancer"]) for n, p in net.providers.items())
    }
    config = TrainingConfig(rounds=5, epsilon=60.0)
    with pytest.raises(PolicyViolation, match=r"h0/cancer has rho=.* left.*rounds fit"):
        net.train("cancer", LogisticRegression(10), FEATURES, "y", config, seed=2)
    for name, p in net.providers.items():
        assert ledger.dataset(p.datasets["cancer"]).queries == n_queries[name]


def test_an_update_over_the_norm_bound_is_excluded_by_every_node_and_recorded(world: Any) -> None:
    net, val, _ = world
    liar = net.providers["h1"].role
    honest_party = liar.training_party
    oversized_trainer(liar)
    try:
        res = net.train(
            "cancer", LogisticRegression(10), FEATURES, "y", CONFIG, validation=_val(val), seed=3
        )
    finally:
        liar.training_party = honest_party  # type: ignore[method-assign]
    for record in res.rounds:
        assert record.accepted == ("h0", "h2")
        assert [name for name, _ in record.excluded] == ["h1"]
        # the liar committed its report on-chain: the exclusion is on the record
        trail = net.analyst.ledger.audit_trail(record.query_id or "", verdicts=False)
        assert net.providers["h1"].account.address in trail.of("contribution")
        assert "InvalidProof" in dict(record.excluded)["h1"]
    # not poisoned: the rounds learn on the two honest tables (a 10x update, summed,
    # would throw the model far off; the majority class alone scores 0.63)
    scores = [r.score or 0.0 for r in res.rounds]
    assert max(scores) > 0.85 and min(scores[1:]) > 0.75


def _ticket(net: LocalNetwork) -> tuple[TrainingTicket, dict[str, Any]]:
    """A submitted round whose providers have reported (as the analyst would drive it)."""
    from tessera.learning.serialize import encode_model
    from tessera.node.training import NetworkRounds

    model = LogisticRegression(10)
    rounds = NetworkRounds(
        net.analyst, model, "cancer", FEATURES, "y", CONFIG, b"attack-training-1"
    )
    params = model.init(np.random.default_rng(0))
    ticket = rounds.ticket(0, ["h0", "h1", "h2"], params)
    ledger = net.analyst.ledger
    ids = [p.datasets["cancer"] for p in net.providers.values()]
    ledger.submit_query(ticket.ticket_hash, ids, net.analyst.committee, 0, {OPERATION}, "training")
    body = {"ticket": ticket.to_json()}
    for i in (1, 2, 3):
        net._transport.call(net.analyst.node_address[i], "train/commit", body)
    reports = {
        name: net._transport.call(
            p.account.address, "train/report", {**body, "model": encode_model(model, params).hex()}
        )["report"]
        for name, p in net.providers.items()
    }
    return ticket, reports


def test_nobody_but_the_rounds_analyst_drives_a_node_and_no_report_is_swapped(world: Any) -> None:
    net, _, _ = world
    ticket, reports = _ticket(net)
    body = {"ticket": ticket.to_json()}
    node = net.analyst.node_address[1]
    # another registered account (a provider) may not drive the round
    provider = net.providers["h0"].account
    as_provider = net._route(provider, None)
    with pytest.raises(PolicyViolation, match="only the analyst"):
        as_provider.call(node, "train/lock", {**body, "digests": {}})
    # the analyst may neither leave a committed report out nor swap one
    from tessera.protocol.training import SealedReport, report_digest

    digests = {
        n: report_digest(SealedReport.decode(bytes.fromhex(r))).hex() for n, r in reports.items()
    }
    left_out = {k: v for k, v in digests.items() if k != "h2"}
    with pytest.raises(ProtocolError, match="left out"):
        net._transport.call(node, "train/lock", {**body, "digests": left_out})
    swapped = {**digests, "h2": digests["h0"]}
    with pytest.raises(ProtocolError, match="not the one it committed"):
        net._transport.call(node, "train/lock", {**body, "digests": swapped})
    # no seed before the reports are fixed: release and decide are refused too
    with pytest.raises(ProtocolError, match="not decided"):
        net._transport.call(node, "train/release", body)
    # a round the ledger does not hold is refused before anything is drawn
    other = TrainingTicket.from_json({**ticket.to_json(), "nonce": "00" * 32, "query_id": None})
    with pytest.raises(PolicyViolation, match="not on the ledger"):
        net._transport.call(node, "train/commit", {"ticket": other.to_json()})


def test_a_provider_refuses_a_model_that_is_not_the_tickets(world: Any) -> None:
    net, _, _ = world
    from tessera.errors import DecodeError
    from tessera.learning.serialize import encode_model
    from tessera.node.training import NetworkRounds

    model = LogisticRegression(10)
    rounds = NetworkRounds(
        net.analyst, model, "cancer", FEATURES, "y", CONFIG, b"attack-training-2"
    )
    params = model.init(np.random.default_rng(0))
    ticket = rounds.ticket(0, ["h0"], params)
    forged = encode_model(model, params + 1.0).hex()
    with pytest.raises(DecodeError, match="digest differs"):
        net._transport.call(
            net.providers["h0"].account.address,
            "train/report",
            {"ticket": ticket.to_json(), "model": forged},
        )


def test_a_verifier_refuses_a_round_record_that_is_not_its_trail(world: Any) -> None:
    from tessera.node.training import NetworkRounds
    from tessera.protocol.training_round import RoundTranscript

    net, _, _ = world
    kept: list[tuple[Any, RoundTranscript]] = []
    original = NetworkRounds.verify

    def keep(self: NetworkRounds, ticket: Any, record: RoundTranscript) -> list[dict[str, Any]]:
        kept.append((ticket, record))
        return []  # no vote yet: the test asks the verifier itself

    NetworkRounds.verify = keep  # type: ignore[method-assign]
    try:
        net.train("cancer", LogisticRegression(10), FEATURES, "y", TrainingConfig(rounds=1), seed=4)
    finally:
        NetworkRounds.verify = original  # type: ignore[method-assign]
    ticket, record = kept[0]
    verifier = net.ledger.verifiers[0].address
    body = {"ticket": ticket.to_json()}
    node = next(iter(record.released))
    forged_share = bytearray(record.released[node])
    forged_share[0] ^= 1
    forged = RoundTranscript(
        record.model,
        record.reports,
        record.verifier_shares,
        record.decisions,
        {**record.released, node: bytes(forged_share)},
        record.result,
    )
    with pytest.raises(ProtocolError, match=f"node {node}'s share is not the one it committed"):
        net._transport.call(verifier, "verify_training", {**body, "record": forged.to_json()})
    wrong_model = RoundTranscript(
        record.model, record.reports, record.verifier_shares, {}, record.released, record.result
    )
    with pytest.raises(ProtocolError, match="decisions or share are missing"):
        net._transport.call(verifier, "verify_training", {**body, "record": wrong_model.to_json()})
    assert net.analyst.ledger.query(ticket.query_id).status == "open"  # nothing voted
    out = net._transport.call(verifier, "verify_training", {**body, "record": record.to_json()})
    assert out["passed"] and out["settled"]
    assert net.analyst.ledger.query(ticket.query_id).status == "passed"
