"""`tessera market` and `tessera ledger deploy` against a served chain: output and exit codes."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tessera.cli.main import app
from tessera.cli.market import purchase_id
from tessera.dp import eps_to_rho
from tessera.ledger import Deployment, rho_to_micro
from tessera.ledger.client import query_id_bytes, query_id_for

from .conftest import Market, runner


def _buy(m: Market, *args: str) -> dict[str, Any]:
    report = m.cli_json("market", "buy", *args, account=m.analyst.account)
    assert isinstance(report, dict)
    return report


def test_deploy_wrote_the_record(market: Market) -> None:
    record = Deployment.load(market.record)
    assert record.chain_id == market.chain.w3.eth.chain_id
    assert record.admin == market.chain.accounts[0]
    assert market.chain.w3.eth.get_code(record.market)  # type: ignore[arg-type]


def test_deploy_json_with_parameters(market: Market, tmp_path: Path) -> None:
    out = tmp_path / "second.json"
    res = runner.invoke(
        app,
        [
            "ledger", "deploy", "--rpc", market.url, "--out", str(out),
            "--verifiers-per-query", "5", "--lock-fee", "7", "--json",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["out"] == str(out) and Deployment.load(out).market == report["market"]
    assert report["market"] != Deployment.load(market.record).market
    params = market.chain.w3.eth.contract(
        address=report["market"], abi=market.admin.market.abi
    ).functions.params()
    assert params.call() == [1_000, 5, 7] or tuple(params.call()) == (1_000, 5, 7)


def test_list_and_search(market: Market) -> None:
    health, finance = market.datasets
    listed = market.cli_json("market", "list")
    assert isinstance(listed, list)
    assert [d["dataset_id"] for d in listed] == [health, finance]
    assert listed[0]["tags"] == ["health", "cohort"] and listed[0]["price_per_query"] == 1_000
    assert listed[1]["bounds"] == {"income": [0.0, 1e6]}
    found = market.cli_json("market", "search", "finance")
    assert [d["dataset_id"] for d in found] == [finance]  # type: ignore[union-attr]
    assert market.cli_json("market", "search", "genomics") == []
    market.provider.delist_dataset(finance)
    assert [d["dataset_id"] for d in market.cli_json("market", "list")] == [health]  # type: ignore[union-attr]
    everything = market.cli_json("market", "list", "--all")
    assert [d["active"] for d in everything] == [True, False]  # type: ignore[union-attr]
    table = market.cli("market", "list")
    assert table.exit_code == 0 and "health" in table.stdout and "finance" not in table.stdout


def test_show(market: Market) -> None:
    health = market.datasets[0]
    shown = market.cli_json("market", "show", str(health))
    assert isinstance(shown, dict)
    assert shown["dataset_id"] == health and shown["provider"] == market.provider.account
    assert shown["operations"] == ["count", "mean"] and shown["budget_remaining"] == 1_000_000
    assert shown["rating"] is None
    table = market.cli("market", "show", str(health))
    assert table.exit_code == 0 and "budget_cap" in table.stdout


def test_buy_charges_budget_and_escrows_price(market: Market) -> None:
    health, finance = market.datasets
    before = market.admin.balance(market.analyst.account)
    report = _buy(
        market,
        str(health),
        str(finance),
        "--operations",
        "count",
        "--epsilon",
        "0.5",
        "--delta",
        "1e-7",
    )
    cost = rho_to_micro(float(eps_to_rho(0.5, 1e-7)))
    assert report["privacy_cost"] == cost and report["price"] == 1_300
    ticket = purchase_id(report["purchase"])
    assert query_id_bytes(report["ticket_hash"]) == ticket
    assert query_id_bytes(report["query_id"]) == query_id_for(market.analyst.account, ticket)
    q = market.admin.query(report["query_id"])
    assert q.analyst == market.analyst.account and q.dataset_ids == (health, finance)
    assert q.privacy_cost == cost and q.price == 1_300 and q.kind == "query"
    assert q.operations == frozenset({"count"})
    assert market.admin.escrowed() == 1_300
    # the deployment's default lock fee, 10 credits per committee member, is paid at once
    assert q.fee == report["lock_fee"] == 10
    assert before - market.admin.balance(market.analyst.account) == 1_300 + 10
    assert market.admin.dataset(finance).budget_spent == cost
    receipt = market.chain.w3.eth.get_transaction_receipt(report["tx_hash"])
    assert receipt["status"] == 1


def test_buy_training_and_table_output(market: Market) -> None:
    health = market.datasets[0]
    report = _buy(market, str(health), "--operations", "mean", "--epsilon", "1", "--training")
    assert report["price"] == 4_000
    assert market.admin.query(report["query_id"]).kind == "training"
    again = market.cli(
        "market", "buy", str(health), "--epsilon", "1", account=market.analyst.account
    )
    assert again.exit_code == 0 and "query id" in again.stdout and "escrowed" in again.stdout


def test_expire_settles_an_unfinished_query_after_its_deadline(market: Market) -> None:
    health = market.datasets[0]
    report = _buy(market, str(health), "--epsilon", "0.2")
    qid = report["query_id"]
    spent = market.admin.dataset(health).budget_spent
    assert spent >= report["privacy_cost"]
    early = market.cli("market", "expire", qid, account=market.analyst.account)
    assert early.exit_code == 17 and "query not timed out" in early.stderr
    market.chain.mine(25)
    done = market.cli_json("market", "expire", qid, account=market.verifier.account)
    assert isinstance(done, dict) and done["status"] == "expired"
    # nobody contributed: the dataset's budget comes back
    assert market.admin.dataset(health).budget_spent == spent - report["privacy_cost"]


def test_rate_and_stats_after_a_settled_query(market: Market) -> None:
    health = market.datasets[0]
    report = _buy(market, str(health), "--epsilon", "0.2")
    qid = report["query_id"]
    early = market.cli("market", "rate", qid, str(health), "5", account=market.analyst.account)
    assert early.exit_code == 17 and "query has not passed" in early.stderr
    market.settle(qid)
    rated = market.cli_json("market", "rate", qid, str(health), "4", account=market.analyst.account)
    assert isinstance(rated, dict)
    assert rated["rating"] == 4.0 and rated["rating_count"] == 1
    assert market.admin.dataset(health).rating == 4.0
    stats = market.cli_json("market", "stats")
    assert isinstance(stats, dict)
    assert stats["settled_queries"] == 1 and stats["submitted_queries"] == 1
    assert stats["volume"] == 1_000 and stats["escrowed"] == 0 and stats["datasets"] == 2
    assert stats["top_datasets"][0] == {
        "dataset_id": health,
        "revenue": market.admin.dataset(health).revenue,
        "queries": 1,
        "tags": ["health", "cohort"],
        "rating": 4.0,
    }
    table = market.cli("market", "stats")
    assert table.exit_code == 0 and "Top datasets" in table.stdout


def test_owed_and_withdraw_pay_each_party_once(market: Market) -> None:
    health = market.datasets[0]
    qid = _buy(market, str(health), "--epsilon", "0.2")["query_id"]
    market.settle(qid)
    who = market.provider.account
    due = market.admin.owed(who)
    assert due > 0
    assert market.cli_json("market", "owed", who) == {"account": who, "owed": due}
    before = market.admin.balance(who)
    paid = market.cli_json("market", "withdraw", account=who)
    assert isinstance(paid, dict) and paid["amount"] == due and paid["balance"] == before + due
    again = market.cli("market", "withdraw", account=who)
    assert again.exit_code == 17
    assert again.stderr.strip() == "error: the ledger refused: nothing owed to this account"
    assert market.admin.balance(who) == before + due
    table = market.cli("market", "owed", account=who)
    assert table.exit_code == 0 and "is owed 0 credits" in table.stdout
    nobody = market.cli("market", "owed")
    assert nobody.exit_code == 2 and "--account" in nobody.stderr


# -- errors: one line on stderr, distinct exit codes ----------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_chain_exits_18(market: Market) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    res = runner.invoke(app, ["market", "list", "--rpc", url, "--deployment", str(market.record)])
    assert res.exit_code == 18
    assert "cannot reach the chain" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["ledger", "deploy", "--rpc", url, "--out", "unused.json"])
    assert res.exit_code == 18


def test_deployment_missing_malformed_or_elsewhere_exits_19(market: Market, tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["market", "stats", "--rpc", market.url, "--deployment", str(tmp_path / "nope.json")]
    )
    assert missing.exit_code == 19 and "no deployment record" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"chain_id": 1}', encoding="utf-8")
    malformed = runner.invoke(
        app, ["market", "stats", "--rpc", market.url, "--deployment", str(bad)]
    )
    assert malformed.exit_code == 19 and "malformed deployment record" in malformed.stderr
    other = tmp_path / "other.json"
    elsewhere = Deployment.load(market.record)
    other.write_text(
        json.dumps({**json.loads(elsewhere.to_json()), "chain_id": 31337}), encoding="utf-8"
    )
    wrong = runner.invoke(app, ["market", "list", "--rpc", market.url, "--deployment", str(other)])
    assert wrong.exit_code == 19 and "not on the chain" in wrong.stderr


def test_revert_reason_exits_17(market: Market) -> None:
    finance = market.datasets[1]  # budget cap 100_000 micro-rho
    res = market.cli(
        "market", "buy", str(finance), "--epsilon", "5", account=market.analyst.account
    )
    assert res.exit_code == 17
    assert res.stderr.strip() == "error: the ledger refused: privacy budget exceeded"
    assert market.admin.dataset(finance).budget_spent == 0
    not_allowed = market.cli(
        "market",
        "buy",
        str(finance),
        "--operations",
        "mean",
        "--epsilon",
        "0.1",
        account=market.analyst.account,
    )
    assert not_allowed.exit_code == 17 and "operation not allowed" in not_allowed.stderr
    unknown = market.cli("market", "show", "42")
    assert unknown.exit_code == 17 and "unknown dataset" in unknown.stderr
    outsider = market.chain.accounts[7]  # unlocked, but not a registered analyst
    refused = market.cli("market", "buy", "0", "--epsilon", "0.1", account=outsider)
    assert refused.exit_code == 17 and "not an analyst" in refused.stderr


def test_bad_arguments_exit_2(market: Market) -> None:
    analyst = market.analyst.account
    for args, account, expected in [
        (("market", "buy", "0", "--operations", "count,telepathy"), analyst, "telepathy"),
        (("market", "buy", "0", "--epsilon", "-1"), analyst, "epsilon"),
        (("market", "buy", "0", "--epsilon", "1", "--delta", "2"), analyst, "delta"),
        (("market", "buy", "0", "--epsilon", "1"), None, "--account"),
        (("market", "buy", "0"), "0x" + "12" * 20, "does not unlock"),
        (("market", "rate", "0x1234", "0", "5"), analyst, "query id"),
    ]:
        res = market.cli(*args, account=account)
        assert res.exit_code == 2, (args, res.stderr)
        assert expected in res.stderr, (args, res.stderr)
    assert market.admin.stats().submitted_queries == 0
