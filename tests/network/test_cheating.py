"""A computing node that corrupts its key-switch shares, and a provider that refuses a query
its public policy allows, in one network of real processes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tessera.cli.demo import network_spec
from tessera.data import medical
from tessera.node.launcher import Network, open_session


def test_cheating_node_is_excluded_slashed_and_the_result_stands(tmp_path: Path) -> None:
    spec = network_spec(kdf_iterations=2**10, cheating_nodes=(1,))
    refuser = spec.providers[3]
    refuser.adversary = "refusing-provider"  # listed, then refuses to contribute
    rows = {p.name: len(pd.read_csv(medical.sample_path(p.name))) for p in spec.providers}
    net = Network(tmp_path / "network")
    net.up(spec)
    try:
        analyst, transport = open_session(net.dir)
        try:
            cheater = analyst.node_address[1]
            honest = [analyst.node_address[i] for i in (2, 3)]
            before = {a: analyst.ledger.balance(a) for a in (cheater, *honest)}
            stake = analyst.ledger.participant(cheater).stake
            budget = {
                p: analyst.ledger.dataset(int(h["dataset_id"])).budget_remaining
                for p, h in analyst._holders("patients").items()
            }
            res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
            after = {
                p: analyst.ledger.dataset(int(h["dataset_id"])).budget_remaining
                for p, h in analyst._holders("patients").items()
            }
        finally:
            analyst.close()
            transport.close()
        # the refusing provider is left out, with its reason; the others' query stands,
        # and the refuser's budget is not spent (its data was never used)
        assert res.excluded_providers == {
            refuser.name: "refused: PolicyViolation: this provider refuses every query"
        }
        assert after[refuser.name] == budget[refuser.name]
        assert all(after[p] < budget[p] for p in budget if p != refuser.name)
        # detected and excluded: the result rests on nodes 2 and 3 and verifies
        assert res.record.excluded_nodes == [1] and res.record.used_nodes == [2, 3]
        contributed = sum(n for p, n in rows.items() if p != refuser.name)
        assert res.verified and abs(res.value - contributed) < 60
        assert 1 in res.verdict.cheaters
        # slashed and debited on the ledger; the honest nodes are paid
        assert res.ledger is not None and res.ledger.status == "passed"
        assert [a.lower() for a in res.ledger.slashed] == [cheater.lower()]
        assert analyst.ledger.participant(cheater).stake < stake
        assert analyst.ledger.participant(cheater).reputation < 0
        # pull payments: the settlement credits the honest nodes, the cheater nothing
        assert analyst.ledger.balance(cheater) == before[cheater]
        assert analyst.ledger.owed(cheater) == 0
        for a in honest:
            assert analyst.ledger.owed(a) > 0
    finally:
        net.down()
