"""A provider that commits its contribution on-chain and then withholds it, and an analyst
that claims an honest provider withheld, over the in-process network (the deployed roles).

The nodes aggregate exactly what was committed, so that the analyst cannot leave out an
honest provider; a committed contribution the analyst lacks, each node fetches from its
provider itself (``committed``), and one that no node gets, matching its digest, is left
out on the record, in the aggregate every switching node locked. The drawn verifiers'
verdict names it withheld, and the market pays it nothing (its cut goes back to the
analyst); a record that names an honest provider withheld is refused without a vote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.errors import DecodeError, NotFound, PolicyViolation, ProtocolError
from tessera.ledger import AuditTrail
from tessera.node.local_network import DatasetPolicy, LocalNetwork, QueryResult
from tessera.node.roles.verifier import bind_record, check_query, check_trail
from tessera.protocol import codec
from tessera.protocol.wire import record_from_json
from tessera.testing.adversary import garbling_provider, strips_contribution, withholding_provider

POLICY = DatasetPolicy(allow_exact=True, min_cohort=1, budget_rho=5.0, price_per_query=1_000)
SQL = "SELECT COUNT(*), SUM(age) FROM patients"


@pytest.fixture(scope="module")
def dlog() -> DiscreteLog:
    return DiscreteLog(BabyStepTable.build(1 << 12), max_abs=1 << 32)


def network(dlog: DiscreteLog, seed: int) -> tuple[LocalNetwork, dict[str, pd.DataFrame]]:
    g = np.random.default_rng(seed)
    net = LocalNetwork(3, 2, seed=seed, dlog=dlog)
    frames = {}
    for i in range(3):
        df = pd.DataFrame({"age": g.integers(18, 90, 40 + 10 * i)})
        frames[f"p{i}"] = df
        net.add_provider(
            f"p{i}",
            tables={"patients": df},
            bounds={"patients": {"age": (0, 100)}},
            policies={"patients": POLICY},
        )
    return net, frames


def pooled(frames: dict[str, pd.DataFrame], *names: str) -> tuple[int, int]:
    rows = pd.concat([frames[n] for n in names])
    return len(rows), int(rows["age"].sum())


def owed(net: LocalNetwork) -> dict[str, int]:
    """What settlements owe each provider and the analyst (pull payments), by name."""
    who = {name: p.account.address for name, p in net.providers.items()}
    who["analyst"] = net.ledger.analyst.address
    return {name: net.ledger.admin.owed(account) for name, account in who.items()}


def cuts(net: LocalNetwork, res: QueryResult) -> dict[str, int]:
    """Each provider's cut of the query's price, by name (the ledger's entries)."""
    q = net.ledger.admin.query(bytes.fromhex(res.query_id))
    name = {p.account.address: n for n, p in net.providers.items()}
    return {
        name[net.ledger.admin.dataset(d).provider]: cut
        for d, cut in zip(q.dataset_ids, q.provider_cuts, strict=True)
    }


def values(net: LocalNetwork) -> tuple[int, int]:
    res = net.sql(SQL)
    assert res.verified, res.verdict.failures
    count, total = res.values.values()
    return int(count), int(total)


def test_a_provider_that_sends_the_analyst_other_bytes_than_it_committed_is_fetched_by_the_nodes(
    dlog: DiscreteLog,
) -> None:
    net, frames = network(dlog, seed=31)
    garbling_provider(net.providers["p1"].role)
    res = net.sql(SQL)
    # the nodes fetched p1's committed contribution; the query stands on all three
    assert res.verified and res.excluded_providers == {}
    assert res.providers == ["p0", "p1", "p2"] and res.record.withheld == {}
    assert tuple(int(v) for v in res.values.values()) == pooled(frames, "p0", "p1", "p2")
    assert res.ledger is not None and res.ledger.status == "passed"
    # what a provider committed is served to the query's committee only, as committed
    p1 = net.providers["p1"].account.address
    body = {"query_id": res.query_id}
    served = net.nodes[2].transport.call(p1, "committed", body)
    qid = bytes.fromhex(res.query_id)
    committed = net.ledger.admin.audit_trail(qid, verdicts=False).of("contribution")[p1]
    assert codec.digest("contribution", qid, bytes.fromhex(served["contribution"])) == committed
    with pytest.raises(PolicyViolation, match="only a node of the query's committee"):
        net.analyst.transport.call(p1, "committed", body)
    with pytest.raises(NotFound, match="committed nothing"):
        net.nodes[2].transport.call(p1, "committed", {"query_id": "00" * 32})
    with pytest.raises(DecodeError):
        net.nodes[2].transport.call(p1, "committed", {"query_id": "xyz"})


def test_a_provider_that_commits_then_serves_nothing_is_left_out_on_the_record(
    dlog: DiscreteLog,
) -> None:
    net, frames = network(dlog, seed=32)
    withholder = net.providers["p1"]
    withholding_provider(withholder.role)
    budget = net.ledger.admin.dataset(withholder.datasets["patients"]).budget_remaining
    reputation = net.ledger.admin.participant(withholder.account.address).reputation
    before = owed(net)
    res = net.sql(SQL, epsilon=1.0)
    # the query completes with the honest providers' data; p1 is out, with its reason
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert res.providers == ["p0", "p2"]
    assert set(res.excluded_providers) == {"p1"}
    assert res.excluded_providers["p1"].startswith("withheld: refused node ")
    assert res.record.withheld == res.excluded_providers
    count, total = pooled(frames, "p0", "p2")
    got_count, got_total = res.values.values()
    assert abs(got_count - count) < 60 and abs(got_total - total) < 60 * 100
    # on the record: every switching node locked the aggregate together with p1's account
    qid = bytes.fromhex(res.query_id)
    trail = net.ledger.admin.audit_trail(qid, verdicts=False)
    assert withholder.account.address in trail.of("contribution")
    locked = codec.aggregate_digest(qid, res.record.aggregate, [withholder.account.address])
    assert set(trail.of("aggregate").values()) == {locked}
    # its budget stays spent (it committed a contribution, decided on its rows)
    assert net.ledger.admin.dataset(withholder.datasets["patients"]).budget_remaining < budget
    # the verifiers named it withheld; the settlement paid p0 and p2 their cuts, p1
    # nothing: its cut went back to the analyst (with the node pool's rounding remainder)
    verdict = net.verifiers[0].on_verdict({"query_id": res.query_id}, net.ledger.analyst.address)
    assert verdict["withheld"] == [withholder.account.address]
    cut = cuts(net, res)
    paid = {name: owed(net)[name] - before[name] for name in before}
    q = net.ledger.admin.query(qid)
    remainder = q.node_pool % len(net.nodes)
    assert paid == {"p0": cut["p0"], "p1": 0, "p2": cut["p2"], "analyst": cut["p1"] + remainder}
    assert net.ledger.admin.participant(withholder.account.address).reputation == reputation - 1
    # exact, the others' values are the pooled ones
    assert values(net) == pooled(frames, "p0", "p2")


def test_an_analyst_that_claims_an_honest_provider_withheld_gets_its_data_included(
    dlog: DiscreteLog,
) -> None:
    net, frames = network(dlog, seed=33)
    honest = net.analyst.transport
    net.analyst.transport = strips_contribution(honest, "p1")
    res = net.sql(SQL)
    # every node fetched p1's contribution itself: it is in the aggregate all of them locked
    assert res.verified and res.excluded_providers == {} and res.record.withheld == {}
    assert tuple(int(v) for v in res.values.values()) == pooled(frames, "p0", "p1", "p2")
    for node in net.nodes.values():
        switched = node.store.get("key_switch", res.query_id)
        assert switched is not None and set(switched["fetched"]) == {"p1"}
        assert switched["withheld"] == {}
    # nor can a record name p1 withheld: the verifier refuses it without a vote
    net.analyst.transport = honest
    kept = net.verifiers[0].on_record({"query_id": res.query_id}, net.ledger.analyst.address)
    record = dict(kept["record"])
    record["contributions"] = [
        c
        for c in record["contributions"]
        if codec.decode_contribution_limbs(bytes.fromhex(c)).provider != "p1"
    ]
    record["withheld"] = {"p1": "withheld: the analyst says so"}
    assert len(record_from_json(record).contributions) == 2
    with pytest.raises(ProtocolError, match="aggregate: not the one the switching nodes"):
        check_query(net.ledger.admin, res.ticket, record)
    # so p1 was paid its cut like the others
    cut = cuts(net, res)
    assert {n: v for n, v in owed(net).items() if n != "analyst"} == cut


def test_a_record_names_withheld_only_a_provider_that_committed_a_contribution_left_out(
    dlog: DiscreteLog,
) -> None:
    """check_trail takes a withheld name only for a contribution committed on-chain and
    not in the record: an honest provider's contribution in the record, or a provider
    that committed nothing, named withheld, fails the record before any vote."""
    net, _ = network(dlog, seed=34)
    res = net.sql(SQL)
    assert res.verified and res.record.withheld == {}
    qid = bytes.fromhex(res.query_id)
    q = net.ledger.admin.query(qid)
    committee = net.ledger.admin.committee(q.committee)
    trail = net.ledger.admin.audit_trail(qid, verdicts=False)
    kept = net.verifiers[0].on_record({"query_id": res.query_id}, net.ledger.analyst.address)

    def failures(withheld: dict[str, str], on: AuditTrail = trail) -> list[str]:
        record = record_from_json({**kept["record"], "withheld": withheld})
        bind_record(record, res.ticket, committee)
        return check_trail(on, record, res.ticket, committee.nodes, q.analyst)

    assert failures({}) == []  # the record as it is: the query's trail
    named = "named withheld but committed no contribution left out"
    # p1's contribution is in the record (and in the aggregate), yet named withheld
    assert any(named in f for f in failures({"p1": "withheld: says the analyst"}))
    # a name the ticket does not hold
    assert any(named in f for f in failures({"p9": "withheld: says the analyst"}))
    # a provider that committed nothing (its commitment taken off the trail here)
    p1 = net.providers["p1"].account.address
    contributions = {a: d for a, d in trail.of("contribution").items() if a != p1}
    without = AuditTrail(qid, {**trail.commitments, "contribution": contributions}, -1)
    record = dict(kept["record"])
    record["contributions"] = [
        c
        for c in record["contributions"]
        if codec.decode_contribution_limbs(bytes.fromhex(c)).provider != "p1"
    ]
    kept = {**kept, "record": record}
    assert any(named in f for f in failures({"p1": "withheld"}, without))
