"""A computing node that corrupts its key-switch shares, over real processes."""

from __future__ import annotations

from pathlib import Path

from tessera.node.launcher import open_session

from .conftest import start


def test_cheating_node_is_excluded_slashed_and_the_result_stands(tmp_path: Path) -> None:
    net = start(tmp_path / "network", cheating_nodes=(1,))
    try:
        analyst, transport = open_session(net.dir)
        try:
            cheater = analyst.node_address[1]
            honest = [analyst.node_address[i] for i in (2, 3)]
            before = {a: analyst.ledger.balance(a) for a in (cheater, *honest)}
            stake = analyst.ledger.participant(cheater).stake
            res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
        finally:
            analyst.close()
            transport.close()
        # detected and excluded: the result rests on nodes 2 and 3 and verifies
        assert res.record.excluded_nodes == [1] and res.record.used_nodes == [2, 3]
        assert res.verified and abs(res.value - 4020) < 60
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
