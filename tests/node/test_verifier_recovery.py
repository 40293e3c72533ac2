"""A verifier cut short before it voted: restarted (or asked for work), it votes from its store.

In process (``LocalNetwork``): the verifier's vote is made to fail as a crash would leave
it (after it checked the record, before its verdict reached the ledger); a new
``VerifierRole`` on the same store and account stands for the restarted process. The same
over real processes, with ``kill -9``: ``tests/network/test_faults.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.errors import ChainUnreachable, ProtocolError
from tessera.ledger.client import VerdictPosted
from tessera.node.local_network import DatasetPolicy, LocalNetwork
from tessera.node.roles import VerifierRole

POLICY = DatasetPolicy(min_cohort=5, budget_rho=2.0, price_per_query=1_000)


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 12), max_abs=1 << 32)


def network(dlog: DiscreteLog) -> LocalNetwork:
    g = np.random.default_rng(3)
    net = LocalNetwork(3, 2, seed=3, dlog=dlog)
    for i in range(2):
        net.add_provider(
            f"p{i}",
            tables={"patients": pd.DataFrame({"age": g.integers(18, 90, 60)})},
            bounds={"patients": {"age": (0, 100)}},
            policies={"patients": POLICY},
        )
    return net


def crash_at_vote(role: VerifierRole, error: Exception | None = None) -> None:
    """The vote fails with ``error``; by default as a crash would: nothing after it runs
    (an exception outside the error tree, which no handler of the role catches)."""

    def vote(
        query_id: bytes, work_ok: bool, cheaters: list[str], withheld: Sequence[str] = ()
    ) -> VerdictPosted:
        raise error or RuntimeError("the verifier died before its vote reached the ledger")

    role.vote = vote  # type: ignore[method-assign]


def test_a_verifier_that_died_before_voting_votes_when_restarted(dlog: DiscreteLog) -> None:
    net = network(dlog)
    verifier = net.verifiers[0]
    crash_at_vote(verifier)
    escrow_before = net.ledger.admin.escrowed()
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    qid = bytes.fromhex(res.query_id.removeprefix("0x"))
    assert not res.verified and res.ledger is not None and res.ledger.status == "open"
    assert net.ledger.admin.escrowed() > escrow_before  # held until someone settles it
    pending = verifier.store.get("pending", qid.hex())
    assert pending["status"] == "waiting" and pending["ticket"] and pending["record"]

    restarted = VerifierRole(verifier.name, verifier.ledger, verifier.store)
    assert restarted.recover() == {}
    q = net.ledger.admin.query(qid)
    assert q.status == "passed"
    assert net.ledger.admin.escrowed() == escrow_before  # released
    assert restarted.store.get("pending", qid.hex()) == {"status": "voted"}
    verdict = restarted.handle("verdict", {"query_id": qid.hex()}, net.ledger.analyst.address)
    assert verdict["passed"] and verdict["settled"] and verdict["status"] == "passed"
    assert restarted.recover() == {}  # nothing left: recovering again changes nothing
    assert net.ledger.admin.query(qid).status == "passed"


def test_asked_for_new_work_the_verifier_first_votes_on_what_it_left(dlog: DiscreteLog) -> None:
    """No restart: the verifier's vote failed while the process lived on (the chain, say).
    The next request to verify anything makes it vote on the query it left unvoted."""
    net = network(dlog)
    verifier = net.verifiers[0]
    honest = verifier.vote
    crash_at_vote(verifier, ChainUnreachable("post_verdict: cannot reach the chain at ..."))
    first = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    first_id = bytes.fromhex(first.query_id.removeprefix("0x"))
    assert net.ledger.admin.query(first_id).status == "open"
    verifier.vote = honest  # type: ignore[method-assign]
    second = net.sql("SELECT AVG(age) FROM patients", epsilon=1.0)
    assert second.verified and second.ledger is not None and second.ledger.status == "passed"
    assert net.ledger.admin.query(first_id).status == "passed"


def test_a_query_closed_before_the_restart_is_dropped_with_its_reason(dlog: DiscreteLog) -> None:
    net = network(dlog)
    verifier = net.verifiers[0]
    crash_at_vote(verifier)
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    qid = bytes.fromhex(res.query_id.removeprefix("0x"))
    q = net.ledger.admin.query(qid)
    net.ledger.chain.mine(q.deadline - net.ledger.chain.w3.eth.block_number + 1)
    net.ledger.admin.expire(qid)  # settled at the deadline by someone else
    assert net.ledger.admin.query(qid).status == "completed"
    restarted = VerifierRole(verifier.name, verifier.ledger, verifier.store)
    closed = restarted.recover()
    assert "completed on the ledger before this verifier voted" in closed[qid.hex()]
    assert restarted.store.get("pending", qid.hex())["status"] == "closed"
    assert restarted.recover() == {}


def test_a_record_that_is_not_the_trail_is_refused_and_nothing_is_kept(dlog: DiscreteLog) -> None:
    """Only a record that is exactly the query's trail is kept for a vote: a refused request
    stores nothing (the verify path's refusals stay side-effect free)."""
    net = network(dlog)
    verifier = net.verifiers[0]
    honest = verifier.on_verify
    kept: list[dict[str, Any]] = []

    def on_verify(body: dict[str, Any], sender: str) -> dict[str, Any]:
        short = {**body["record"], "contributions": body["record"]["contributions"][:1]}
        with pytest.raises(ProtocolError, match="not this query's"):
            honest({**body, "record": short}, sender)
        kept.append(verifier.store.items("pending"))
        return honest(body, sender)

    verifier.on_verify = on_verify  # type: ignore[method-assign]
    res = net.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert kept == [{}]
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"


def test_a_training_round_the_verifier_died_on_is_voted_when_restarted() -> None:
    """``verify_training`` is on the same path: a round's ticket and record are kept
    (``pending``, kind ``training``) before the checks, and a restarted verifier re-checks
    the round against its trail and votes, so the round's query passes and its escrow is
    released."""
    from tessera.learning import LocalConfig, LogisticRegression, TrainingConfig

    g = np.random.default_rng(5)
    features = ["f0", "f1"]
    net = LocalNetwork(3, 2, seed="training-recovery")
    policy = DatasetPolicy(allow_exact=True, budget_rho=2.0, price_per_training=7)
    for k in range(2):
        x = g.uniform(0, 1, (40, 2))
        df = pd.DataFrame(x, columns=features)
        df["y"] = (x[:, 0] > x[:, 1]).astype(int)
        bounds: dict[str, Any] = {"f0": (0, 1), "f1": (0, 1), "y": (0, 1)}
        net.add_provider(f"h{k}", {"t": df}, {"t": bounds}, {"t": policy})
    try:
        verifier = net.verifiers[0]
        crash_at_vote(verifier)
        escrow_before = net.ledger.admin.escrowed()
        config = TrainingConfig(rounds=1, local=LocalConfig(1, 0.5, 16), clip=2.0)
        net.train("t", LogisticRegression(2), features, "y", config, seed=0)
        waiting = {
            k: v
            for k, v in verifier.store.items("pending").items()
            if v.get("kind") == "training" and v.get("status") == "waiting"
        }
        assert len(waiting) == 1, verifier.store.items("pending")
        key = next(iter(waiting))
        assert net.ledger.admin.query(bytes.fromhex(key)).status == "open"
        assert net.ledger.admin.escrowed() > escrow_before

        restarted = VerifierRole(verifier.name, verifier.ledger, verifier.store)
        assert restarted.recover() == {}
        assert net.ledger.admin.query(bytes.fromhex(key)).status == "passed"
        assert net.ledger.admin.escrowed() == escrow_before
        assert restarted.store.get("pending", key) == {"status": "voted"}
    finally:
        net.close()
