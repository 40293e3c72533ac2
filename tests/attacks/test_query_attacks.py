"""Attacks on a query by a malicious analyst, provider or node (up to t − 1 of them), each
against the deployed roles, in process and over real processes (see conftest.py).

Each test stands for a claim of docs/architecture.md ("Threat model"); the attack it
replays worked on the roles before the query id became the ticket's hash and before
the nodes and the verifier checked what they are sent against the ledger.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tessera.analytics.local import ColumnBounds
from tessera.analytics.moments import Count, Sum
from tessera.crypto.group import G
from tessera.data import medical
from tessera.dp import eps_to_rho
from tessera.errors import (
    DecodeError,
    InvalidProof,
    NotFound,
    PolicyViolation,
    ProtocolError,
    TesseraError,
    TransportError,
)
from tessera.ledger import LedgerClient, rho_to_micro
from tessera.ledger.session import query_kind
from tessera.protocol import codec
from tessera.protocol.aggregation import NoiseContribution, SlotNoise, VectorContribution
from tessera.protocol.query import QueryTicket

from .conftest import Target

RHO = float(eps_to_rho(1.0, 1e-6))


def ticket_for(
    target: Target, stats: tuple[Any, ...], providers: list[str] | None = None, **change: Any
) -> QueryTicket:
    """A ticket for ``providers`` (default: all) as the analyst would build it."""
    a = target.analyst
    holders = a._holders("patients")
    names = sorted(providers or holders)
    ticket = QueryTicket(
        table="patients",
        statistics=stats,
        where=None,
        rho=RHO,
        delta=1e-6,
        analyst_key=G * 12345,
        bounds=a.bounds("patients"),
        max_rows=max(int(holders[n]["max_rows"]) for n in names),
        n=a.n,
        t=a.t,
        committee=a.committee,
        providers=tuple((n, str(holders[n]["address"])) for n in names),
        nonce=a._rng.randbytes(32),
        analyst=a.ledger.account,
    )
    return dataclasses.replace(ticket, **change) if change else ticket


def submit(target: Target, ticket: QueryTicket) -> None:
    """The analyst submits ``ticket``'s hash on the ledger (escrow, budgets)."""
    a = target.analyst
    holders = a._holders("patients")
    a.ledger.submit_query(
        ticket.ticket_hash,
        [int(holders[n]["dataset_id"]) for n, _ in ticket.providers],
        a.committee,
        rho_to_micro(RHO),
        ticket.operations,
        query_kind(ticket.operations),
        approve=True,
    )


def ask(target: Target, who: str, path: str, body: dict[str, Any], as_: str = "analyst") -> Any:
    return target.transport_of(target.identities[as_]).call(who, path, body)


def node(target: Target, i: int) -> str:
    return target.peer("node", index=i)


def gather(target: Target, ticket: QueryTicket) -> tuple[dict[str, str], dict[int, str]]:
    """Every provider's contribution and every node's noise, honestly produced."""
    body = {"ticket": ticket.to_json()}
    contributions = {
        name: ask(target, target.peer("provider", name), "contribute", body)["contribution"]
        for name, _ in ticket.providers
    }
    noise = {i: ask(target, node(target, i), "noise", body)["noise"] for i in (1, 2, 3)}
    return contributions, noise


def refused(call: Any, *kinds: type[TesseraError]) -> TesseraError:
    with pytest.raises(kinds or (TesseraError,)) as info:
        call()
    return info.value


# -- 5. the ticket is bound: its hash is the query's id on the ledger -------------------------
def test_a_ticket_other_than_the_submitted_one_is_refused_by_every_role(target: Target) -> None:
    """The analyst gives the nodes narrower bounds than the providers (so the nodes would
    calibrate far less noise): the altered ticket hashes to an id the ledger does not hold."""
    ticket = ticket_for(target, (Sum("age"),))
    submit(target, ticket)
    bounds = dict(ticket.bounds)
    bounds["age"] = ColumnBounds(0.0, 1.0)
    narrow = dataclasses.replace(ticket, bounds=bounds)
    assert narrow.query_id != ticket.query_id
    for i in (1, 2, 3):
        err = refused(
            lambda i=i: ask(target, node(target, i), "noise", {"ticket": narrow.to_json()})
        )
        assert isinstance(err, PolicyViolation) and "not on the ledger" in str(err)
    # a ticket claiming the submitted id but carrying other fields is malformed
    forged = {**narrow.to_json(), "query_id": ticket.query_id.hex()}
    err = refused(lambda: ask(target, node(target, 1), "noise", {"ticket": forged}))
    assert isinstance(err, DecodeError) and "not the hash" in str(err)
    # the same ticket is accepted
    assert "noise" in ask(target, node(target, 1), "noise", {"ticket": ticket.to_json()})


# -- 8. no exact counts leave a provider ----------------------------------------------------
def test_providers_answer_ciphertexts_only_and_refuse_a_smaller_max_rows(target: Target) -> None:
    ticket = ticket_for(target, (Count(),))
    submit(target, ticket)
    name = ticket.providers[0][0]
    answer = ask(target, target.peer("provider", name), "contribute", {"ticket": ticket.to_json()})
    assert set(answer) == {"contribution"}  # no row count, no clipping count
    progress = target.transport_of(target.identities["analyst"]).progress(
        target.peer("provider", name)
    )
    assert "rows" not in str(progress)
    # the exclusion rule is the provider's public maximum, not the analyst's: a ticket
    # with a smaller max_rows is refused before any row is read, whatever the data
    small = ticket_for(target, (Count(),), max_rows=1)
    submit(target, small)
    err = refused(
        lambda: ask(
            target, target.peer("provider", name), "contribute", {"ticket": small.to_json()}
        )
    )
    assert isinstance(err, PolicyViolation) and "public maximum" in str(err)


# -- 3. contributions are bound to this query and to the account that committed them --------
def test_a_replayed_contribution_from_an_earlier_query_is_not_switched(target: Target) -> None:
    """A colluding provider re-posts another provider's ciphertexts of an earlier query, as
    its own, in a query on its own dataset only: the nodes refuse to switch them."""
    victim, colluder = "hospital-a", "clinic-c"
    first = ticket_for(target, (Sum("age"),))
    submit(target, first)
    contributions, _ = gather(target, first)
    stolen = codec.decode_contribution(bytes.fromhex(contributions[victim]))

    second = ticket_for(target, (Sum("age"),), providers=[colluder])
    submit(target, second)
    body = {"ticket": second.to_json()}
    noise = [ask(target, node(target, i), "noise", body)["noise"] for i in (1, 2, 3)]
    forged = codec.encode_contribution(VectorContribution(colluder, stolen.slots))
    target.ledger_of(target.identities[colluder]).post_contribution(
        second.query_id, codec.digest("contribution", second.query_id, forged)
    )
    for i in (1, 2, 3):
        err = refused(
            lambda i=i: ask(
                target,
                node(target, i),
                "key_switch",
                {**body, "contributions": [forged.hex()], "noise": noise},
            )
        )
        assert isinstance(err, InvalidProof | ProtocolError)


# -- 4. the noise set: distinct committed nodes, the switching node's own included ----------
def test_nodes_refuse_a_noise_set_the_analyst_or_a_colluder_made_up(target: Target) -> None:
    ticket = ticket_for(target, (Sum("age"),))
    submit(target, ticket)
    contributions, noise = gather(target, ticket)
    body = {"ticket": ticket.to_json(), "contributions": list(contributions.values())}

    def switch(i: int, noise_set: list[str], contribs: list[str] | None = None) -> Any:
        extra = {} if contribs is None else {"contributions": contribs}
        return ask(target, node(target, i), "key_switch", {**body, "noise": noise_set, **extra})

    # the same node's noise twice (the analyst would subtract it)
    assert "twice" in str(refused(lambda: switch(1, [noise[3], noise[3]])))
    # without the switching node's own noise
    assert "own noise" in str(refused(lambda: switch(3, [noise[1], noise[2]])))
    # one provider's contribution three times
    pa = contributions["hospital-a"]
    assert "two contributions" in str(refused(lambda: switch(1, list(noise.values()), [pa] * 3)))
    # a colluding node commits -(N1 + N2), computed from the others' ciphertexts
    second = ticket_for(target, (Sum("age"),))
    submit(target, second)
    body = {"ticket": second.to_json()}
    contributions = {
        name: ask(target, target.peer("provider", name), "contribute", body)["contribution"]
        for name, _ in second.providers
    }
    noise = {i: ask(target, node(target, i), "noise", body)["noise"] for i in (1, 2)}
    n1 = codec.decode_noise(bytes.fromhex(noise[1]))
    n2 = codec.decode_noise(bytes.fromhex(noise[2]))
    slots = tuple(
        SlotNoise(
            tuple(-(a + b) for a, b in zip(s1.limbs, s2.limbs, strict=True)),
            s1.limb_proofs,
            s1.knowledge,
        )
        for s1, s2 in zip(n1.slots, n2.slots, strict=True)
    )
    cancel = codec.encode_noise(NoiseContribution(3, slots))
    target.ledger_of(target.identities["node-3"]).commit_many(
        second.query_id, {"noise": codec.digest("noise", second.query_id, cancel)}
    )
    body = {**body, "contributions": list(contributions.values())}
    for i in (1, 2):
        err = refused(lambda i=i: switch(i, [noise[1], noise[2], cancel.hex()]))
        assert isinstance(err, InvalidProof)


def test_two_nodes_never_switch_two_different_aggregates(target: Target) -> None:
    """The analyst has node 1 switch the aggregate without one provider, then asks that
    provider, then has node 2 switch the aggregate with it: the difference of the two
    releases would be that provider's exact value. The first switch locks the aggregate."""
    ticket = ticket_for(target, (Sum("age"),))
    submit(target, ticket)
    body = {"ticket": ticket.to_json()}
    late = "lab-d"
    early = {
        name: ask(target, target.peer("provider", name), "contribute", body)["contribution"]
        for name, _ in ticket.providers
        if name != late
    }
    noise = [ask(target, node(target, i), "noise", body)["noise"] for i in (1, 2, 3)]
    first = {**body, "contributions": list(early.values()), "noise": noise}
    assert "shares" in ask(target, node(target, 1), "key_switch", first)
    extra = ask(target, target.peer("provider", late), "contribute", body)["contribution"]
    second = {**first, "contributions": [*early.values(), extra]}
    err = refused(lambda: ask(target, node(target, 2), "key_switch", second))
    assert isinstance(err, ProtocolError) and "locked a different aggregate" in str(err)


# -- 7. the committed noise must all be in the aggregate ------------------------------------
def test_nodes_refuse_an_aggregate_that_leaves_out_committed_noise(target: Target) -> None:
    def drop_node_2(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path != "key_switch":
            return None
        return {
            **body,
            "noise": [n for n in body["noise"] if codec.decode_noise(bytes.fromhex(n)).node != 2],
        }

    liar = target.tampering(drop_node_2)
    try:
        err = refused(lambda: liar.sql("SELECT SUM(age) FROM patients", epsilon=1.0))
    finally:
        liar.close()
    assert isinstance(err, ProtocolError) and "valid shares" in str(err)


# -- 6. the verifier reads the committee from the registry ----------------------------------
def test_a_record_with_a_swapped_key_share_gets_no_honest_node_slashed(target: Target) -> None:
    def swap_share(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path != "verify":
            return None
        record = dict(body["record"])
        record["public_shares"] = {**record["public_shares"], "1": G.encode().hex()}
        return {**body, "record": record}

    stakes = {
        i: target.analyst.ledger.participant(target.address(f"node-{i}")).stake for i in (1, 2, 3)
    }
    liar = target.tampering(swap_share)
    try:
        res = liar.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    finally:
        liar.close()
    assert res.verified and res.verdict.cheaters == ()
    assert res.ledger is not None and res.ledger.status == "passed" and res.ledger.slashed == ()
    for i in (1, 2, 3):
        assert target.analyst.ledger.participant(target.address(f"node-{i}")).stake == stakes[i]


# -- 9. a verdict cannot be steered by whoever asks for it ----------------------------------
def test_a_record_put_on_another_query_is_refused_without_a_vote(target: Target) -> None:
    """A registered account (here a provider's) takes a passed query's record and asks the
    verifier to judge another analyst's open query with it."""
    done = target.analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert done.verified
    verifier = target.peer("verifier")
    stored = ask(target, verifier, "record", {"query_id": done.query_id})
    open_one = ticket_for(target, (Count(),))
    submit(target, open_one)
    stakes = [
        target.analyst.ledger.participant(target.address(f"node-{i}")).stake for i in (1, 2, 3)
    ]
    mallory = "lab-d"
    body = {"ticket": open_one.to_json(), "record": stored["record"]}
    err = refused(lambda: ask(target, verifier, "verify", body, as_=mallory))
    assert isinstance(err, ProtocolError) and "not this query's" in str(err)
    assert target.analyst.ledger.query(open_one.query_id).status == "open"
    assert [
        target.analyst.ledger.participant(target.address(f"node-{i}")).stake for i in (1, 2, 3)
    ] == stakes
    with pytest.raises(NotFound):  # no vote was cast
        ask(target, verifier, "verdict", {"query_id": open_one.query_id.hex()}, as_=mallory)


# -- 11. the analyst's key is a real key -----------------------------------------------------
def test_the_identity_point_is_refused_as_an_analyst_key(target: Target) -> None:
    ticket = ticket_for(target, (Count(),))
    data = {**ticket.to_json(), "analyst_key": "00" * 33}
    data.pop("query_id")
    for peer, path in (
        (target.peer("provider", "hospital-a"), "contribute"),
        (node(target, 1), "noise"),
    ):
        err = refused(lambda peer=peer, path=path: ask(target, peer, path, {"ticket": data}))
        assert isinstance(err, DecodeError) and "identity" in str(err)


# -- 12. fair exchange: the result is paid for even if the analyst stays silent -------------
def test_an_analyst_that_keeps_its_result_unverified_still_pays_for_the_work(
    target: Target,
) -> None:
    """The analyst decrypts and never asks a verifier, so nothing ever votes. At the
    deadline anyone settles the query for the workers: the analyst cannot keep the result
    and take the price back (``tests/ledger/test_market_games.py`` plays the same without
    a result commitment)."""

    def withhold(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if path == "verify":
            raise TransportError("the analyst never asks the verifiers")
        return None

    ledger = target.analyst.ledger
    admin = LedgerClient(ledger.chain, ledger.deployment, ledger.deployment.admin)
    params = admin.params()
    admin.set_params(80, params.verifiers_per_query, params.lock_fee)  # governance: 80 blocks
    res = target.tampering(withhold).run("patients", (Count(),), epsilon=1.0)
    assert res.ledger is not None and not res.verified
    qid = res.ledger.query_id
    q = ledger.query(qid)
    assert q.status == "open" and ledger.work_complete(qid)
    provider = target.ledger_of(target.identities[medical.PROVIDERS[0]])
    before, owed_before = provider.balance(), provider.owed()  # earlier queries' credits
    ledger.chain.mine(q.deadline - ledger.chain.w3.eth.block_number + 1)
    provider.expire(qid)
    assert ledger.query(qid).status == "completed"
    cut = ledger.dataset(q.dataset_ids[0]).price_per_query * 8_000 // 10_000
    assert provider.owed() - owed_before == cut and provider.balance() == before  # credited
    paid = provider.withdraw().amount  # pull payments: the provider takes what it is owed
    assert paid == owed_before + cut and provider.balance() - before == paid
