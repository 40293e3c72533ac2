"""`tessera ledger serve` as a real process: the typed client over JSON-RPC, framing, limits."""

from __future__ import annotations

import hashlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tessera.crypto.group import G
from tessera.errors import LedgerError
from tessera.ledger import Deployment, LedgerClient, Listing, RpcChain

STARTUP_SECONDS = 120.0


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class Served:
    """A `tessera ledger serve` process and the URL it announced."""

    def __init__(self, *args: str) -> None:
        code = "from tessera.cli.main import app; app()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, "ledger", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: [lines.put(ln) for ln in stdout], daemon=True).start()
        self.lines = lines

    def wait_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    err = self.process.stderr.read() if self.process.stderr else ""
                    pytest.fail(f"serve exited with {self.process.returncode}: {err}")
                continue
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                return found.group(0)
        pytest.fail("serve did not announce its URL")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Served]]:
    record = tmp_path / "deployment.json"
    server = Served("--port", "0", "--accounts", "8", "--deploy", str(record))
    try:
        yield server.wait_url(), record, server
    finally:
        server.stop()


def test_query_flow_through_served_chain(served: tuple[str, Path, Served]) -> None:
    url, record, server = served
    chain = RpcChain(url)
    assert len(chain.accounts) == 8
    deployment = Deployment.load(record)
    assert deployment.chain_id == chain.w3.eth.chain_id
    admin = LedgerClient(chain, deployment, chain.accounts[0])
    provider, node, analyst, verifier = (admin.as_(a) for a in chain.accounts[1:5])
    admin.register(provider.account, "provider", G.encode())
    admin.register(node.account, "node", (G * 2).encode())
    admin.register(analyst.account, "analyst", (G * 3).encode())
    admin.register(verifier.account, "verifier", (G * 4).encode())
    admin.mint(node.account, 10_000)
    admin.mint(analyst.account, 10_000)
    node.stake(1_000)
    admin.mint(verifier.account, 1_000)
    verifier.stake(1_000)
    verifier.join_pool()
    committee = node.endorse_committee([node.account], 1, (G * 5).encode(), [(G * 6).encode()])
    listed = provider.list_dataset(
        h("schema"),
        Listing(
            bounds={"age": (0, 120)},
            tags=("health",),
            operations=frozenset({"count", "mean"}),
            budget_cap=200_000,
            price_per_query=500,
        ),
    )
    assert admin.search("health") == [listed.dataset_id]

    assert committee.committee_id is not None
    qid = analyst.submit_query(
        h("served-q1"), [listed.dataset_id], committee.committee_id, 150_000, {"count"}
    ).query_id
    provider.post_contribution(qid, h("contribution"))
    node.commit_many(
        qid,
        {
            "aggregate": h("aggregate"),
            "noise": h("noise"),
            "key_switch": h("key_switch"),
            "proof_bundle": h("bundle"),
        },
    )
    analyst.post_result(qid, h("result"))
    assert verifier.post_verdict(qid, True).settled  # quorum 1
    assert admin.query(qid).status == "passed"
    assert admin.owed(provider.account) == 400 and admin.owed(node.account) == 100
    assert provider.withdraw().amount == 400 and node.withdraw().amount == 100
    assert admin.balance(provider.account) == 400 and admin.balance(node.account) == 9_100
    assert admin.audit_trail(qid).of("noise") == {node.account: h("noise")}

    # a revert arrives with the contract's own reason, and changes nothing
    with pytest.raises(LedgerError) as err:
        analyst.submit_query(h("served-q2"), [listed.dataset_id], 0, 60_000, {"count"})
    assert err.value.reason == "privacy budget exceeded"
    assert admin.dataset(listed.dataset_id).budget_remaining == 50_000
    with pytest.raises(LedgerError) as err:
        admin.committee(7)
    assert err.value.reason == "unknown committee"

    # snapshots and mining through JSON-RPC
    snap = chain.snapshot()
    height = chain.w3.eth.block_number
    chain.mine(3)
    assert chain.w3.eth.block_number == height + 3
    chain.revert(snap)
    assert chain.w3.eth.block_number == height
    assert server.stop(signal.SIGTERM) == 0


def test_json_rpc_framing_and_limits(served: tuple[str, Path, Served]) -> None:
    url, _, server = served
    with httpx.Client(timeout=30) as http:
        bad = http.post(url, content=b'{"jsonrpc": "2.0", "id": 1, "method": ')
        assert bad.json()["error"]["code"] == -32700
        no_method = http.post(url, json={"jsonrpc": "2.0", "id": 4})
        assert no_method.json() == {
            "jsonrpc": "2.0",
            "id": 4,
            "error": {"code": -32600, "message": no_method.json()["error"]["message"]},
        }
        unknown = http.post(url, json={"jsonrpc": "2.0", "id": 5, "method": "eth_mineGold"})
        assert unknown.json()["error"]["code"] == -32601
        batch = http.post(
            url,
            json=[
                {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": []},
                {"jsonrpc": "1.0", "id": 3, "method": "eth_chainId", "params": []},
            ],
        ).json()
        assert [r["id"] for r in batch] == [1, 2, 3]
        assert re.fullmatch(r"0x[0-9a-f]+", batch[0]["result"])
        assert batch[2]["error"]["code"] == -32600
        assert http.post(url, json=[]).json()["error"]["code"] == -32600
        revert = http.post(
            url, json={"jsonrpc": "2.0", "id": 6, "method": "evm_revert", "params": ["0x999"]}
        )
        assert revert.json()["result"] is False
        big = http.post(url, content=b" " * (1 << 20) + b"{}")
        assert big.status_code == 413
        assert big.json()["error"]["code"] == -32600
        browser = http.post(
            url,
            json={"jsonrpc": "2.0", "id": 7, "method": "eth_accounts", "params": []},
            headers={"Origin": "https://example.com"},
        )
        assert browser.status_code == 403
    assert server.stop(signal.SIGINT) == 0


def test_serve_refuses_a_public_host() -> None:
    server = Served("--host", "0.0.0.0", "--port", "0")
    assert server.process.wait(timeout=STARTUP_SECONDS) == 2
    assert server.process.stderr is not None
    assert "loopback" in server.process.stderr.read()


def test_one_key_used_from_many_threads_and_clients_loses_no_transaction(
    served: tuple[str, Path, Served],
) -> None:
    """Eight threads, each with its own client of the same signing key, send at once over
    JSON-RPC: every transaction lands, with consecutive nonces (once 5 in 8 failed with
    'Invalid transaction nonce')."""
    url, record, _ = served
    chain = RpcChain(url)
    deployment = Deployment.load(record)
    key = hashlib.sha256(b"one key, many senders").digest()
    from eth_account import Account

    account = Account.from_key(key).address
    tx = chain.w3.eth.send_transaction(
        {"from": chain.accounts[0], "to": account, "value": 10**20}  # type: ignore[typeddict-item]
    )
    chain.w3.eth.wait_for_transaction_receipt(tx)
    errors: list[BaseException] = []

    def send(i: int) -> None:
        client = LedgerClient(chain, deployment, account, signer=key)
        try:
            for j in range(3):
                client.approve(deployment.market, 10 * i + j + 1)
        except BaseException as exc:  # collected and reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert chain.w3.eth.get_transaction_count(account) == 24
