"""Issue 14 over real processes: a computing node down for a whole query times out.

The chain, 3 computing nodes (threshold 2, after a live DKG), 4 providers and a verifier
run as processes on loopback; the analyst is this test process. Node 3 is killed before
the query: the query completes with the other two (noise from n − t + 1 = 2 members, two
key switches), the verifier's quorum settles it, and the ledger shows node 3 unpaid, its
stake down by a tenth of the query's node slash and its reputation down by 2.
"""

from __future__ import annotations

from tessera.node.launcher import Network, open_session

from .test_faults import kill

REPUTATION_TIMEOUT = 2
TIMEOUT_SLASH_DIVISOR = 10


def test_a_node_down_for_a_query_is_penalised_and_the_query_completes_without_it(
    network: Network,
) -> None:
    analyst, transport = open_session(network.dir)
    try:
        ledger = analyst.ledger
        stalled, acting = analyst.node_address[3], [analyst.node_address[i] for i in (1, 2)]
        before = {a: ledger.participant(a) for a in (stalled, *acting)}
        owed = {a: ledger.owed(a) for a in (stalled, *acting)}
        kill(network, "node-3")
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
        assert res.verified and res.ledger is not None and res.ledger.status == "passed"
        assert res.record.used_nodes == [1, 2]
        qid = bytes.fromhex(res.query_id.removeprefix("0x"))
        penalty = ledger.query(qid).node_slash // TIMEOUT_SLASH_DIVISOR
        assert penalty > 0
        after = ledger.participant(stalled)
        assert after.stake == before[stalled].stake - penalty
        assert after.reputation == before[stalled].reputation - REPUTATION_TIMEOUT
        assert ledger.owed(stalled) == owed[stalled]  # and not paid
        for a in acting:  # the two that acted: paid, not penalised
            assert ledger.participant(a).stake == before[a].stake
            assert ledger.participant(a).reputation >= before[a].reputation
            assert ledger.owed(a) > owed[a]
    finally:
        analyst.close()
        transport.close()
