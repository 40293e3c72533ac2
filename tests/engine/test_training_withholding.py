"""A provider that commits its training report on-chain and then withholds it, and an
analyst that claims an honest provider withheld, over the in-process network (the
deployed roles; each round a training query on the embedded chain).

The nodes lock exactly the reports that were committed, so that the analyst cannot leave
out an honest provider; a committed report the analyst lacks, each node fetches from its
provider itself (``committed``), and one that no node gets is left out as withheld, in the
decisions every node committed, on the round's record and in the training's result.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tessera.errors import ProtocolError
from tessera.learning import LocalConfig, LogisticRegression, TrainingConfig
from tessera.ledger import rho_to_micro
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.node.training import NetworkRounds
from tessera.protocol.training_round import (
    RoundTranscript,
    TrainingTicket,
    check_round,
    round_decisions,
    trail_digest,
)
from tessera.testing.adversary import (
    garbling_trainer,
    stalling_trainer,
    strips_report,
    withholding_trainer,
)

FEATURES = [f"f{i}" for i in range(10)]
POLICY = DatasetPolicy(allow_exact=True, budget_rho=4.0, max_rows=200, price_per_training=5)
#: private (each round charges rho), and with the network's seeded samplers the same noise
#: in every network built from the same seed: the models of two networks can be compared
CONFIG = TrainingConfig(rounds=2, local=LocalConfig(1, 0.5, 16), clip=2.0, epsilon=6.0)
SEED = "training-withholding"


def _parts() -> tuple[list[pd.DataFrame], dict[str, Any]]:
    x, y = load_breast_cancer(return_X_y=True)
    df = pd.DataFrame(x[:, :10], columns=FEATURES)
    df["y"] = y
    bounds: dict[str, Any] = {
        c: (math.floor(df[c].min() * 10) / 10, math.ceil(df[c].max() * 10) / 10) for c in FEATURES
    }
    bounds["y"] = (0, 1)
    order = np.random.default_rng(0).permutation(len(df))[:450]
    return [df.iloc[p] for p in np.array_split(order, 3)], bounds


def _network(names: tuple[str, ...]) -> LocalNetwork:
    parts, bounds = _parts()
    net = LocalNetwork(3, 2, seed=SEED)
    for name in names:
        part = parts[int(name[1:])]
        net.add_provider(name, {"cancer": part}, {"cancer": bounds}, {"cancer": POLICY})
    return net


@pytest.fixture(scope="module")
def withheld_net() -> Iterator[LocalNetwork]:
    """h0, h1, h2; h1 commits each report and withholds it."""
    net = _network(("h0", "h1", "h2"))
    withholding_trainer(net.providers["h1"].role)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def honest_net() -> Iterator[LocalNetwork]:
    """The same network and seed without h1: what the rounds are without its report."""
    net = _network(("h0", "h2"))
    try:
        yield net
    finally:
        net.close()


def _train(
    net: LocalNetwork, kept: list[tuple[TrainingTicket, RoundTranscript]] | None = None
) -> Any:
    """A training of ``CONFIG``; with ``kept``, each round's ticket and record as the
    verifiers were given them (they still check and settle it)."""
    original = NetworkRounds.verify

    def keep(self: NetworkRounds, ticket: Any, record: RoundTranscript) -> list[dict[str, Any]]:
        assert kept is not None
        kept.append((ticket, record))
        return original(self, ticket, record)

    if kept is not None:
        NetworkRounds.verify = keep  # type: ignore[method-assign]
    try:
        return net.train("cancer", LogisticRegression(10), FEATURES, "y", CONFIG, seed=7)
    finally:
        NetworkRounds.verify = original  # type: ignore[method-assign]


def test_a_provider_that_commits_its_report_then_withholds_it_is_left_out_of_the_round(
    withheld_net: LocalNetwork, honest_net: LocalNetwork
) -> None:
    net = withheld_net
    ledger = net.ledger.admin
    withholder = net.providers["h1"]
    datasets = {name: p.datasets["cancer"] for name, p in net.providers.items()}
    spent = {name: ledger.dataset(d).budget_spent for name, d in datasets.items()}
    own = float(withholder.role.store.get("budget", "cancer") or 0.0)
    owed = {name: ledger.owed(p.account.address) for name, p in net.providers.items()}
    reputation = ledger.participant(withholder.account.address).reputation
    kept: list[tuple[TrainingTicket, RoundTranscript]] = []
    start = time.perf_counter()
    res = _train(net, kept)
    seconds = time.perf_counter() - start
    # every round goes on without h1, well within a bound (no wait for what never comes)
    assert len(res.rounds) == 2 and seconds < 240, seconds
    for record, (ticket, transcript) in zip(res.rounds, kept, strict=True):
        assert record.providers == ("h0", "h1", "h2") and record.accepted == ("h0", "h2")
        assert [name for name, _ in record.withheld] == ["h1"]
        assert dict(record.withheld)["h1"].startswith("withheld: refused node ")
        assert dict(record.excluded)["h1"] == dict(record.withheld)["h1"]  # never silent
        assert set(transcript.withheld) == {"h1"} and "h1" not in transcript.reports
        qid = ticket.query_id
        trail = ledger.audit_trail(qid, verdicts=False)
        assert withholder.account.address in trail.of("contribution")
        # each node locked its decision, h1 withheld, in the decisions it committed
        for i, account in net.analyst.node_address.items():
            accepted, excluded = transcript.decisions[i]
            decided = round_decisions(accepted, excluded, transcript.verifier_shares, ["h1"])
            assert trail.of("aggregate")[account] == trail_digest("aggregate", qid, decided)
        # the drawn verifier re-checked the round, named h1 withheld, and settled it
        assert ledger.query(qid).status == "passed"
        verdict = net.verifiers[0].on_verdict({"query_id": qid.hex()}, net.ledger.analyst.address)
        assert verdict["withheld"] == [withholder.account.address]
    assert res.withheld == {"h1": (0, 1)}
    # its budget stays charged, as the others': it committed a report made from its rows
    budget = CONFIG.budget()
    assert budget is not None
    for name, d in datasets.items():
        assert ledger.dataset(d).budget_spent - spent[name] == 2 * rho_to_micro(
            budget.rho_per_round
        )
    charged = float(withholder.role.store.get("budget", "cancer")) - own
    assert charged == pytest.approx(2 * budget.rho_per_round)
    # the settlements paid h0 and h2 their cuts, h1 nothing, and took its reputation
    paid = {name: ledger.owed(p.account.address) - owed[name] for name, p in net.providers.items()}
    assert paid["h1"] == 0 and paid["h0"] == paid["h2"] > 0, paid
    assert ledger.participant(withholder.account.address).reputation == reputation - 2
    # the model is the one the same network trains on the others' reports alone
    reference = _train(honest_net)
    assert [r.accepted for r in reference.rounds] == [("h0", "h2")] * 2
    assert reference.withheld == {}
    np.testing.assert_array_equal(res.params, reference.params)
    assert not np.array_equal(res.params, LogisticRegression(10).init(np.random.default_rng(7)))


def test_a_provider_that_sends_the_analyst_other_bytes_than_it_committed_is_fetched() -> None:
    garbled = _network(("h0", "h1", "h2"))
    honest = _network(("h0", "h1", "h2"))
    try:
        garbling_trainer(garbled.providers["h1"].role)
        res = _train(garbled)
        reference = _train(honest)
    finally:
        garbled.close()
        honest.close()
    # the nodes fetched h1's committed report; every round stands on all three
    for record in res.rounds:
        assert record.accepted == ("h0", "h1", "h2")
        assert record.excluded == () and record.withheld == ()
        assert garbled.ledger.admin.query(record.query_id or "").status == "passed"
    assert res.withheld == {}
    h1 = garbled.providers["h1"].account.address.lower()
    for node in garbled.nodes.values():
        kept = [v for k, v in node.store.items("fetched").items() if k.endswith(h1)]
        assert len(kept) == 2 and all("report" in v for v in kept)
    # the committed bytes, not the analyst's: the model of the same network, all honest
    np.testing.assert_array_equal(res.params, reference.params)


def test_an_analyst_that_leaves_out_an_honest_providers_report_is_refused(
    withheld_net: LocalNetwork, honest_net: LocalNetwork
) -> None:
    # at the nodes: a lock without h2's committed report; each node fetches it from h2,
    # gets it, and refuses to fix the round (nothing is decided, nothing released)
    net = honest_net
    honest = net.analyst.transport
    net.analyst.transport = strips_report(honest, "h2")
    try:
        with pytest.raises(ProtocolError, match=r"left out of the round: \['h2'\]"):
            net.train("cancer", LogisticRegression(10), FEATURES, "y", CONFIG, seed=8)
    finally:
        net.analyst.transport = honest
    fetched = [
        value
        for node in net.nodes.values()
        for key, value in node.store.items("fetched").items()
        if key.endswith(net.providers["h2"].account.address.lower())
    ]
    assert fetched and all("report" in value for value in fetched)

    # at the verifier: a round's record may name withheld only whom the nodes locked so
    kept: list[tuple[TrainingTicket, RoundTranscript]] = []
    _train(withheld_net, kept)
    ticket, record = kept[0]
    ledger = withheld_net.ledger.admin
    trail = ledger.audit_trail(ticket.query_id, verdicts=False).commitments
    nodes, analyst = withheld_net.analyst.node_address, ledger.query(ticket.query_id).analyst
    found = check_round(ticket, record, trail, nodes, analyst)  # the record as it was
    assert found.work_ok and found.result_ok
    without_h0 = RoundTranscript(
        record.model,
        {n: r for n, r in record.reports.items() if n != "h0"},
        {n: s for n, s in record.verifier_shares.items() if n != "h0"},
        record.decisions,
        record.released,
        record.result,
        withheld={**record.withheld, "h0": "withheld: the analyst says so"},
    )
    with pytest.raises(ProtocolError, match="node 1's decisions are not the ones it committed"):
        check_round(ticket, without_h0, trail, nodes, analyst)
    unnamed = RoundTranscript(
        record.model,
        record.reports,
        record.verifier_shares,
        record.decisions,
        record.released,
        record.result,
    )
    with pytest.raises(ProtocolError, match=r"missing from the record: \['h1'\]"):
        check_round(ticket, unnamed, trail, nodes, analyst)


def test_a_provider_that_commits_then_holds_its_answer_open_costs_the_grace_only(
    withheld_net: LocalNetwork,
) -> None:
    net = withheld_net
    release = threading.Event()
    stalling_trainer(net.providers["h1"].role, hold=600.0, until=release)
    analyst = net.analyst
    # the in-process network runs the analyst's requests in turn (one worker): the held
    # request would hold every other one behind it, so this test gives it more
    pool, analyst._pool = analyst._pool, ThreadPoolExecutor(8)
    analyst.ANSWER_GRACE = 2.0
    config = TrainingConfig(rounds=1, local=LocalConfig(1, 0.5, 16), clip=2.0, epsilon=3.0)
    try:
        start = time.perf_counter()
        res = net.train("cancer", LogisticRegression(10), FEATURES, "y", config, seed=9)
        seconds = time.perf_counter() - start
    finally:
        release.set()
        analyst._pool.shutdown(wait=True)
        analyst._pool = pool
        del analyst.ANSWER_GRACE
    (record,) = res.rounds
    assert record.accepted == ("h0", "h2") and res.withheld == {"h1": (0,)}
    # the grace, then the nodes' fetch: far from the 600 s the provider holds it open
    assert seconds < 120, seconds
