"""Federated training over real processes on loopback: the demo network (chain, 3 nodes
t=2, 4 providers, a verifier), one provider lying about its update's norm.

The same roles as ``tests/engine/test_training.py``, over HTTP: every round a training
query on the chain, the providers' reports sealed to the nodes, the nodes' joint
verification driven by the analyst, the liar's report excluded by every node.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from tessera.cli.demo import network_spec
from tessera.data import medical
from tessera.learning import LogisticRegression, TrainingConfig
from tessera.ledger import rho_to_micro
from tessera.node.launcher import Network, open_session
from tessera.protocol.training_round import OPERATION

FEATURES = ["age", "bmi", "glucose", "hba1c"]


def test_training_over_real_processes_excludes_a_lying_provider(tmp_path: Path) -> None:
    spec = network_spec(kdf_iterations=2**10)
    liar = spec.providers[1].name
    spec.providers[1].adversary = "oversized-update"
    net = Network(tmp_path / "network")
    net.up(spec)
    try:
        analyst, transport = open_session(net.dir)
        try:
            pooled = pd.concat([medical.load(p) for p in medical.PROVIDERS], ignore_index=True)
            config = TrainingConfig(
                rounds=4, unit="row", clip=1.0, epsilon=4.0, server_learning_rate=6.0
            )
            quote = analyst.training_quote(
                "patients", LogisticRegression(4), FEATURES, "diabetes", config
            )
            ledger = analyst.ledger
            holders = analyst._holders("patients")
            ids = {name: int(h["dataset_id"]) for name, h in holders.items()}
            spent = {name: ledger.dataset(d).budget_spent for name, d in ids.items()}
            res = analyst.train(
                "patients",
                LogisticRegression(4),
                FEATURES,
                "diabetes",
                config,
                validation=(pooled[FEATURES].to_numpy(), pooled["diabetes"].to_numpy()),
                seed=0,
            )
        finally:
            analyst.close()
            transport.close()
        budget = config.budget()
        assert budget is not None and quote.epsilon == budget.total_epsilon
        honest = sorted(n for n in ids if n != liar)
        for record in res.rounds:
            assert list(record.accepted) == honest
            assert [n for n, _ in record.excluded] == [liar]
            assert record.query_id is not None
            q = ledger.query(record.query_id)
            assert q.kind == "training" and OPERATION in q.operations
            assert ledger.work_complete(record.query_id)
        # every dataset asked paid each round's privacy cost on-chain, the liar's too
        # (its rows were read)
        for name, d in ids.items():
            paid = ledger.dataset(d).budget_spent - spent[name]
            assert paid == config.rounds * rho_to_micro(budget.rho_per_round)
        # it learns (full-batch DP-FedSGD, 4 steps from zero: the loss falls every round);
        # accuracy against scikit-learn is tests/engine/test_training.py's, in process
        losses = [r.loss or 0.0 for r in res.rounds]
        assert all(b < a for a, b in itertools.pairwise(losses)), losses
        assert losses[-1] < 0.6, losses
    finally:
        net.down()
