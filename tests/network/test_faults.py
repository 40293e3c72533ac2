"""Faults a network of real processes must survive (one network for the module, in order).

The chain, 3 computing nodes (threshold 2, after a live DKG), 4 providers and a
verifier run as processes on loopback; the analyst is this test process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tessera.analytics.moments import Count
from tessera.crypto.group import G
from tessera.errors import ChainUnreachable, exit_code
from tessera.node.analyst import NetworkAnalyst
from tessera.node.envelope import encode_body, sign_request
from tessera.node.identity import Identity
from tessera.node.launcher import Network, open_session
from tessera.node.transport import HttpTransport
from tessera.protocol.query import QueryTicket, bounds_from_json

TRUE_ROWS = 4020  # the bundled sample tables


@pytest.fixture
def session(network: Network) -> Iterator[tuple[NetworkAnalyst, HttpTransport]]:
    analyst, transport = open_session(network.dir)
    try:
        yield analyst, transport
    finally:
        analyst.close()
        transport.close()


def kill(network: Network, name: str) -> None:
    pid = network.pid_of(name)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not die")


def logs(network: Network, lines: int = 8) -> dict[str, list[str]]:
    """The last lines of each role's log (its refusals and failures, timed)."""
    tails = {}
    for log in sorted((network.dir / "logs").glob("*.log")):
        tails[log.stem] = log.read_text(errors="replace").splitlines()[-lines:]
    return tails


def peer(analyst: NetworkAnalyst, name: str) -> Any:
    return next(p for p in analyst.peers if p.name == name)


def test_query_over_processes_is_verified_and_settled(
    session: tuple[NetworkAnalyst, HttpTransport],
) -> None:
    analyst, _ = session
    res = analyst.sql("SELECT COUNT(*), AVG(age) FROM patients", epsilon=1.0)
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert abs(res["count(*)"] - TRUE_ROWS) < 60
    assert 55 < res["mean(age)"] < 64
    assert sorted(res.providers) == sorted(p.name for p in analyst.peers if p.role == "provider")
    assert set(res.ledger.transactions) >= {"submit_query", "result"}


def test_command_line_over_the_network(network: Network, tmp_path: Any) -> None:
    """query, model, verify and network status against the running network, with --json."""
    from typer.testing import CliRunner

    from tessera.cli.main import app

    runner = CliRunner()
    where = ["--dir", str(network.dir), "--json"]
    res = runner.invoke(app, ["query", "SELECT AVG(bmi) FROM patients", *where])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["verified"] and 20 < out["values"]["mean(bmi)"] < 35
    assert out["ledger"]["status"] == "passed" and out["privacy_cost"]["epsilon"] == pytest.approx(
        1.0
    )
    res = runner.invoke(app, ["verify", out["query_id"], *where])
    assert res.exit_code == 0, res.output
    verdict = json.loads(res.stdout.strip().splitlines()[-1])
    assert verdict["status"] == "passed" and verdict["verdicts"][0]["passed"]
    # every provider contributed; if not, the query's own account of who was left out and why
    assert verdict["trail"]["contribution"] == 4, (out.get("excluded_providers"), logs(network))
    assert verdict["trail"]["result"] == 1
    # re-checked here from the verifier's copy of the record: proofs and on-chain trail
    assert verdict["rechecked_here"]["passed"] is True
    assert verdict["rechecked_here"]["proofs_checked"] >= 4 * 2 + 3  # providers, nodes
    unknown = runner.invoke(app, ["verify", "0x" + "ab" * 32, *where])
    assert unknown.exit_code == 17, unknown.output  # the ledger knows no such query
    res = runner.invoke(
        app,
        ["model", "linear", "--table", "patients", "--target", "sbp", "--features", "age",
         "--epsilon", "3", *where],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    coef = json.loads(res.stdout.strip().splitlines()[-1])["values"]
    assert 0.2 < next(iter(coef.values()))["coefficients"]["age"] < 1.0
    res = runner.invoke(app, ["network", "status", *where])
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["chain"] == "up" and all(r["status"] == "up" for r in status["roles"].values())
    # clear errors, distinct exit codes
    assert runner.invoke(app, ["query", "SELECT name FROM patients", *where]).exit_code == 20
    assert runner.invoke(app, ["verify", "0x1234", *where]).exit_code == 2
    assert runner.invoke(app, ["network", "status", "--dir", str(tmp_path)]).exit_code == 19
    spent = runner.invoke(
        app, ["query", "SELECT COUNT(*) FROM patients", "--epsilon", "500", *where]
    )
    assert spent.exit_code == 11, spent.output  # BudgetExceeded: refused by the ledger


def test_bad_requests_are_refused_and_nothing_is_stored(
    session: tuple[NetworkAnalyst, HttpTransport],
) -> None:
    analyst, transport = session
    target = peer(analyst, "lab-d")
    before = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]
    ident = transport.identity

    def send(headers: dict[str, str], body: bytes, path: str = "info") -> tuple[int, Any]:
        status, reply = transport.send(target.address, path, headers, body)
        return status, json.loads(reply)

    body = encode_body({})
    # unsigned
    status, reply = send({}, body)
    assert status == 401 and reply["error"] == "Unauthorized"
    # signed by a key the registry does not know
    stranger = Identity.generate()
    status, reply = send(sign_request(stranger, target.address, "info", body), body)
    assert status == 401
    # tampered after signing
    headers = sign_request(ident, target.address, "info", body)
    status, _ = send(headers, encode_body({"x": 1}))
    assert status == 401
    # replayed: the same signed request twice
    headers = sign_request(ident, target.address, "info", body)
    assert send(headers, body)[0] == 200
    status, reply = send(headers, body)
    assert status == 409 and reply["error"] == "Replay"
    # malformed: not JSON, not an object, duplicate keys
    for bad in (b"{not json", b"[1, 2]", b'{"a": 1, "a": 2}'):
        status, reply = send(
            sign_request(ident, target.address, "contribute", bad), bad, "contribute"
        )
        assert status == 400, (bad, reply)
    # an incomplete ticket, then a complete one for a query the ledger does not have
    raw = encode_body({"ticket": {"query_id": "00" * 32}})
    status, reply = send(sign_request(ident, target.address, "contribute", raw), raw, "contribute")
    assert status == 400 and "ticket" in reply["message"]
    ticket = QueryTicket(
        table="patients",
        statistics=(Count(),),
        where=None,
        rho=0.01,
        delta=1e-6,
        analyst_key=G,
        bounds=bounds_from_json(before["bounds"], "bounds"),
        max_rows=before["max_rows"],
        n=3,
        t=2,
        committee=analyst.committee,
        providers=(("lab-d", target.address),),
        nonce=os.urandom(32),
        analyst=ident.address,
    )
    raw = encode_body({"ticket": ticket.to_json()})
    status, reply = send(sign_request(ident, target.address, "contribute", raw), raw, "contribute")
    assert status == 403 and "not on the ledger" in reply["message"]
    # oversized: refused before it is read
    huge = b'{"pad": "' + b"x" * (65 * 2**20) + b'"}'
    status, _ = send(sign_request(ident, target.address, "contribute", huge), huge, "contribute")
    assert status == 413
    after = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]
    assert after == before  # no budget spent, nothing listed


def test_provider_killed_mid_query_then_restarted(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    analyst, _ = session
    dataset_before = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]
    listed_before = analyst.ledger.dataset_count()

    def on_progress(message: str) -> None:
        if message.startswith("asking"):
            kill(network, "lab-d")

    analyst.on_progress = on_progress
    res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    analyst.on_progress = lambda _m: None
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert "lab-d" in res.excluded_providers and "unreachable" in res.excluded_providers["lab-d"]
    assert "lab-d" not in res.providers and len(res.providers) == 3
    # asked for the providers' info while it is down: left out of the next query, and said so
    assert "lab-d" not in analyst.providers_info(refresh=True)
    assert "could not be asked for its info" in analyst.absent["lab-d"]
    down = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert down.verified and "lab-d" not in down.providers and len(down.providers) == 3
    assert down.excluded_providers["lab-d"].startswith("not in the query: could not be asked")
    # restarted from its own state: same key, same listing, its budget as it was
    network.restart("lab-d")
    info = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]
    assert info["dataset_id"] == dataset_before["dataset_id"]
    assert info["budget_spent"] == pytest.approx(dataset_before["budget_spent"])
    assert analyst.ledger.dataset_count() == listed_before
    again = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert again.verified and "lab-d" in again.providers
    assert abs(again.value - TRUE_ROWS) < 60


def provider_store(network: Network, name: str) -> tuple[dict[str, Any], float]:
    """A provider's queries and its own count of the patients budget, read from its store
    file (asking the provider nothing, which would make it reconcile)."""
    import sqlite3

    path = network.dir / "state" / name / "state.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT kind, key, value FROM items").fetchall()
    finally:
        db.close()
    queries = {k: json.loads(v) for kind, k, v in rows if kind == "query"}
    budget = next(
        (float(json.loads(v)) for kind, k, v in rows if (kind, k) == ("budget", "patients")), 0.0
    )
    return queries, budget


def test_a_query_the_ledger_closed_is_settled_in_an_idle_providers_store(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    """lab-d admits a query (its budget spent, the query ``running`` in its store), then
    its commitment fails (``tessera.testing.faults.commit_fails_once``: the chain failing
    at that moment): the query passes without it. Asked nothing afterwards, the provider
    settles it in its store within a few seconds (its background reconciliation): failed,
    with the reason, and its budget back, as the ledger gave it back. Restarted, it holds
    the same."""
    from tessera.ledger import rho_to_micro

    analyst, _ = session
    config = network.dir / "config" / "lab-d.toml"
    honest = config.read_text()
    dataset = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]["dataset_id"]
    config.write_text('adversary = "commit-fails-once"\n' + honest)
    try:
        kill(network, "lab-d")
        network.restart("lab-d")
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    finally:
        config.write_text(honest)
    key = res.query_id.removeprefix("0x")
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert "lab-d" in res.excluded_providers and "lab-d" not in res.providers
    deadline = time.monotonic() + 30  # the reconciliation runs every 5 s
    while provider_store(network, "lab-d")[0][key]["status"] == "running":
        assert time.monotonic() < deadline, "lab-d still holds the passed query running"
        time.sleep(0.25)
    queries, own = provider_store(network, "lab-d")
    assert queries[key]["status"] == "failed" and "passed on the ledger" in queries[key]["reason"]
    assert rho_to_micro(own) == analyst.ledger.dataset(dataset).budget_spent  # given back
    kill(network, "lab-d")
    network.restart("lab-d")  # honest again
    assert provider_store(network, "lab-d") == (queries, own)
    info = analyst.providers_info(refresh=True)["lab-d"]["tables"]["patients"]
    assert info["budget_spent"] == pytest.approx(own)


def test_chain_restarted_under_the_nodes(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    """The served chain journals its transactions; restarted, it replays them and every
    role reconnects on its next request."""
    analyst, _ = session
    before = analyst.ledger.stats().settled_queries
    kill(network, "chain")
    network.restart("chain")
    assert analyst.ledger.stats().settled_queries == before  # the state came back
    res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert analyst.ledger.stats().settled_queries == before + 1


def test_computing_node_killed_mid_query(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    analyst, _ = session

    def on_progress(message: str) -> None:
        if message == "key switching":  # node 3 has sent its noise, now it dies
            kill(network, "node-3")

    analyst.on_progress = on_progress
    res = analyst.sql("SELECT AVG(age) FROM patients", epsilon=1.0)
    assert res.verified and res.ledger is not None and res.ledger.status == "passed"
    assert res.record.used_nodes == [1, 2]
    assert 3 not in res.record.key_switch_shares
    assert 55 < res.value < 64


def wait_dead(network: Network, name: str, seconds: float = 10) -> None:
    """Until the process ``name`` is gone (it killed itself); reaped if it is our child."""
    pid = network.pid_of(name)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.05)
    raise AssertionError(f"{name} is still running")


def test_verifier_killed_before_voting_votes_when_restarted(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    """The verifier is killed (SIGKILL, by the ``crash-before-vote`` wrapper of
    ``tessera.testing.faults``) at the moment it would vote: the analyst gets an unverified
    result and the query stays open, its escrow held. Restarted as it was, the verifier
    finds the query in its store, checks it again against the ledger's trail and votes:
    the query passes and its escrow is released, long before the deadline."""
    analyst, transport = session
    config = network.dir / "config" / "verifier-1.toml"
    honest = config.read_text()
    config.write_text('adversary = "crash-before-vote"\n' + honest)
    try:
        kill(network, "verifier-1")
        network.restart("verifier-1")
        escrow_before = analyst.ledger.escrowed()
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
        wait_dead(network, "verifier-1")
    finally:
        config.write_text(honest)
    qid = bytes.fromhex(res.query_id.removeprefix("0x"))
    assert not res.verified and "no verifier answered" in res.verdict.failures
    q = analyst.ledger.query(qid)
    assert q.status == "open" and analyst.ledger.escrowed() == escrow_before + q.price
    assert analyst.ledger.chain.w3.eth.block_number < q.deadline  # not settled by expiry

    network.restart("verifier-1")
    assert analyst.ledger.query(qid).status == "passed"
    assert analyst.ledger.escrowed() == escrow_before
    verifier = peer(analyst, "verifier-1").address
    verdict = transport.call(verifier, "verdict", {"query_id": qid.hex()})
    assert verdict["passed"] and verdict["settled"] and verdict["status"] == "passed"
    again = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)  # it serves as before
    assert again.verified and again.ledger is not None and again.ledger.status == "passed"


def test_a_verifier_down_when_asked_fetches_the_record_and_votes_when_restarted(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport]
) -> None:
    """The verifier is killed (SIGKILL) just before the analyst asks it: it never receives
    the record, the analyst gets an unverified result and the query stays open, its escrow
    held. Restarted, the verifier finds on the ledger the open query it was drawn for,
    fetches the ticket and record from the node that committed the proof bundle
    (``record``), checks them against the trail and votes: the query passes and its escrow
    is released long before the deadline, with nobody asking the verifier anything."""
    analyst, transport = session
    escrow_before = analyst.ledger.escrowed()

    def on_progress(message: str) -> None:
        if message.startswith("committing the result"):  # the record is ready: not sent
            kill(network, "verifier-1")

    analyst.on_progress = on_progress
    try:
        res = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    finally:
        analyst.on_progress = lambda _m: None
    qid = bytes.fromhex(res.query_id.removeprefix("0x"))
    assert not res.verified and "no verifier answered" in res.verdict.failures
    q = analyst.ledger.query(qid)
    assert q.status == "open" and analyst.ledger.escrowed() == escrow_before + q.price

    network.restart("verifier-1")
    deadline = time.monotonic() + 180
    while analyst.ledger.query(qid).status == "open" and time.monotonic() < deadline:
        time.sleep(1.0)
    assert analyst.ledger.query(qid).status == "passed"
    assert analyst.ledger.escrowed() == escrow_before
    assert analyst.ledger.chain.w3.eth.block_number < q.deadline  # not settled by expiry
    verifier = peer(analyst, "verifier-1").address
    verdict = transport.call(verifier, "verdict", {"query_id": qid.hex()})
    assert verdict["passed"] and verdict["settled"] and verdict["proofs_checked"] > 0
    bundle_node = peer(analyst, f"node-{res.record.used_nodes[0]}").address
    kept = transport.call(bundle_node, "record", {"query_id": qid.hex()})
    checked = transport.call(verifier, "record", {"query_id": qid.hex()})
    assert checked == kept  # what it voted on is what the node kept, release included
    again = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)  # it serves as before
    assert again.verified and again.ledger is not None and again.ledger.status == "passed"


def test_the_chain_stopped_mid_query_is_reported_with_its_url(
    network: Network, session: tuple[NetworkAnalyst, HttpTransport], monkeypatch: Any
) -> None:
    """The chain dies while the nodes key-switch (they can no longer check the trail): the
    analyst's error names the chain and what to do, not "only 0 nodes gave valid shares"
    nor a raw connection error; the command line prints it as one line, exit code 18."""
    from typer.testing import CliRunner

    import tessera.cli.network as cli_network
    from tessera.cli.main import app

    analyst, _ = session
    rpc = network.state["rpc"]

    def on_progress(message: str) -> None:
        if message == "key switching":
            kill(network, "chain")

    analyst.on_progress = on_progress
    try:
        with pytest.raises(ChainUnreachable) as caught:
            analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)
    finally:
        analyst.on_progress = lambda _m: None
        network.restart("chain")
    message = str(caught.value)
    assert caught.value.url == rpc and f"cannot reach the chain at {rpc}" in message
    assert "tessera network status" in message and "is on the ledger" in message
    assert "only 0 nodes" not in message and "Connection aborted" not in message
    assert exit_code(caught.value) == 18

    # the same through the command line: one line on stderr, no traceback
    opened = cli_network._session

    def session_that_loses_the_chain(state_dir: Any) -> NetworkAnalyst:
        a = opened(state_dir)
        shown = a.on_progress

        def progress(message: str) -> None:
            shown(message)
            if message == "key switching":
                kill(network, "chain")

        a.on_progress = progress
        return a

    monkeypatch.setattr(cli_network, "_session", session_that_loses_the_chain)
    try:
        res = CliRunner().invoke(
            app, ["query", "SELECT COUNT(*) FROM patients", "--dir", str(network.dir)]
        )
    finally:
        network.restart("chain")
    assert res.exit_code == 18, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"ChainUnreachable: cannot reach the chain at {rpc}" in errors[0]
    assert "Traceback" not in res.stderr and "only 0 nodes" not in res.stderr
    after = analyst.sql("SELECT COUNT(*) FROM patients", epsilon=1.0)  # the chain is back
    assert after.verified and after.ledger is not None and after.ledger.status == "passed"
