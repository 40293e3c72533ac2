"""`tessera model list | show | pull` against a served embedded chain deployed by `tessera ledger
deploy`, a local model store and an IPFS-style HTTP API on loopback: output and exit codes."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.learning import LogisticRegression
from tessera.learning.serialize import encode_model
from tessera.ledger import Deployment, EmbeddedChain, RpcChain
from tessera.ledger.rpc_server import RpcServer
from tessera.node.model_store import LocalModelStore, cid_of

from .model_world import World, build

runner = CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1"})
T = hashlib.sha256(b"cli training").digest()
T_HEX = "0x" + T.hex()


@dataclass
class Served:
    url: str
    record: Path
    world: World
    store: Path
    cids: list[str]
    blobs: dict[str, bytes]
    queries: list[bytes]

    def cli(self, *args: str, chain: bool = True) -> Result:
        extra = ["--rpc", self.url, "--deployment", str(self.record)] if chain else []
        return runner.invoke(app, ["model", *args, *extra])

    def cli_json(self, *args: str, chain: bool = True) -> object:
        result = self.cli(*args, "--json", chain=chain)
        assert result.exit_code == 0, result.stderr or result.output
        return json.loads(result.stdout)


def refused(result: Result, code: int, *words: str) -> None:
    """Exit ``code``, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line, line
    for word in words:
        assert word in line, (word, line)


@pytest.fixture(scope="module")
def _served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, int]]:
    base = tmp_path_factory.mktemp("model-cli")
    record = base / "deployment.json"
    with RpcServer(EmbeddedChain(accounts=6), port=0) as server:
        deployed = runner.invoke(
            app, ["ledger", "deploy", "--rpc", server.url, "--out", str(record), "--json"]
        )
        assert deployed.exit_code == 0, deployed.stderr or deployed.output
        assert json.loads(deployed.stdout)["model_registry"]
        chain = RpcChain(server.url)
        world = build(chain, Deployment.load(record))
        store = LocalModelStore(base / "models")
        reg = world.registry()
        model = LogisticRegression(3)
        cids, blobs, queries = [], {}, []
        parent = None
        for r in range(3):
            meta = {"round": r, "parent": parent, "training": T_HEX}
            data = encode_model(model, np.arange(4, dtype=float) * (r + 1), meta)
            cid = store.put(data)
            if r == 0:
                reg.open_training(T, world.committee, cid)
            else:
                qid = world.training_query(f"cli round {r}", rho_micro=5_000 * r)
                reg.record_round(T, cid, cids[-1], qid)
                queries.append(qid)
            cids.append(cid)
            blobs[cid] = data
            parent = cid
        served = Served(server.url, record, world, base / "models", cids, blobs, queries)
        yield served, chain.snapshot()


@pytest.fixture
def served(_served: tuple[Served, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    for name in ("TESSERA_LEDGER_RPC", "TESSERA_DEPLOYMENT", "TESSERA_MODEL_STORE"):
        monkeypatch.delenv(name, raising=False)
    s, snapshot = _served
    s.world.chain.revert(snapshot)
    for cid, data in s.blobs.items():  # undo any tampering
        (s.store / cid).write_bytes(data)
    yield s


def test_the_deploy_table_names_the_model_registry(served: Served, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["ledger", "deploy", "--rpc", served.url, "--out", str(tmp_path / "d.json")]
    )
    assert res.exit_code == 0, res.stderr
    assert "model_registry" in res.stdout
    assert Deployment.load(tmp_path / "d.json").model_registry in res.stdout


def test_list_shows_every_training_and_one_trainings_chain(served: Served) -> None:
    trainings = served.cli_json("list")
    assert isinstance(trainings, list)
    (t,) = [x for x in trainings if x["training"] == T_HEX]
    assert t["rounds"] == 2 and not t["local"] and t["rho_micro"] == 15_000
    assert t["committee"] == served.world.committee and t["analyst"] == served.world.analyst.account

    chain = served.cli_json("list", T_HEX)
    assert isinstance(chain, dict)
    history = chain["history"]
    assert [h["round"] for h in history] == [0, 1, 2]
    assert [h["cid"] for h in history] == served.cids
    assert [h["parent"] for h in history] == [None, *served.cids[:2]]
    assert [h["rho_micro"] for h in history] == [0, 5_000, 10_000]
    assert [h["query_id"] for h in history] == [None, *("0x" + q.hex() for q in served.queries)]
    eps = [h["epsilon_so_far"] for h in history]
    assert eps[0] == 0 < eps[1] < eps[2]

    table = served.cli("list", T_HEX)
    assert table.exit_code == 0, table.stderr
    for text in (*served.cids, "0x" + served.queries[1].hex(), "10,000", "market, committee"):
        assert text in table.stdout, text


def test_show_gives_the_entry_its_market_query_and_the_models_metadata(served: Served) -> None:
    by_round = served.cli_json("show", T_HEX, "1", "--store", str(served.store))
    assert isinstance(by_round, dict)
    assert by_round["cid"] == served.cids[1] and by_round["parent"] == served.cids[0]
    assert by_round["query_id"] == "0x" + served.queries[0].hex()
    q = by_round["query"]
    assert q["kind"] == "training" and q["status"] == "open" and q["privacy_cost"] == 5_000
    assert q["analyst"] == served.world.analyst.account
    m = by_round["model"]
    assert m["spec"]["kind"] == "logistic" and m["num_params"] == 4
    assert m["meta"] == {"round": 1, "parent": served.cids[0], "training": T_HEX}

    by_cid = served.cli_json("show", T_HEX, served.cids[2], "--store", str(served.store))
    latest = served.cli_json("show", T_HEX, "--store", str(served.store))
    assert by_cid == latest and isinstance(latest, dict) and latest["round"] == 2

    table = served.cli("show", T_HEX, "0", "--store", str(served.store))
    assert table.exit_code == 0 and served.cids[0] in table.stdout and "logistic" in table.stdout

    # the entry still shows without the model: the store is named as lacking it
    elsewhere = served.cli_json("show", T_HEX, "1", "--store", str(served.store / "none"))
    assert isinstance(elsewhere, dict)
    assert elsewhere["model"] is None and "no model store" in elsewhere["model_missing"]


def test_pull_writes_a_model_checked_against_its_cid(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "round2.model"
    cid = served.cids[2]
    got = served.cli_json("pull", cid, "--store", str(served.store), "--out", str(out), chain=False)
    assert isinstance(got, dict) and got["cid"] == cid and got["meta"]["round"] == 2
    assert out.read_bytes() == served.blobs[cid] and cid_of(out.read_bytes()) == cid
    again = served.cli("pull", cid, "--store", str(served.store), "--out", str(out), chain=False)
    refused(again, 2, "exists", "--force")
    forced = served.cli(
        "pull", cid, "--store", str(served.store), "--out", str(out), "--force", chain=False
    )
    assert forced.exit_code == 0 and "checked against its CID" in forced.stdout


def test_a_tampered_model_fails_pull_naming_both_cids(served: Served, tmp_path: Path) -> None:
    cid = served.cids[1]
    tampered = bytearray(served.blobs[cid])
    tampered[-1] ^= 1  # one bit of the last parameter
    (served.store / cid).write_bytes(bytes(tampered))
    out = tmp_path / "m.model"
    res = served.cli("pull", cid, "--store", str(served.store), "--out", str(out), chain=False)
    refused(res, 12, cid, cid_of(bytes(tampered)), "do not hash")
    assert not out.exists()
    # show refuses it too rather than print metadata of other bytes
    refused(served.cli("show", T_HEX, "1", "--store", str(served.store)), 12, cid)


@pytest.mark.parametrize(
    "bad", ["not-a-cid", "b", "bafk!!", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]
)
def test_a_malformed_cid_is_a_clear_error(served: Served, bad: str, tmp_path: Path) -> None:
    out = tmp_path / "x"
    res = served.cli("pull", bad, "--store", str(served.store), "--out", str(out), chain=False)
    refused(res, 2, "bad argument", bad[:8])
    refused(served.cli("show", T_HEX, bad), 2, bad[:8])


def test_every_bad_input_is_a_clear_error(served: Served, tmp_path: Path) -> None:
    refused(served.cli("list", "0x1234"), 2, "0x1234", "64 hex digits")
    refused(served.cli("show", "zz" * 32), 2, "64 hex digits")
    refused(served.cli("list", "0x" + "ab" * 32), 17, "no such training")
    refused(served.cli("show", T_HEX, "7"), 2, "rounds 0 to 2, not 7")
    refused(served.cli("show", T_HEX, cid_of(b"elsewhere")), 2, "is no round of training")
    refused(served.cli("list", T_HEX, "--delta", "2"), 2, "--delta")
    missing = cid_of(b"never stored")
    refused(served.cli("pull", missing, "--store", str(served.store), chain=False), 22, missing)
    refused(
        served.cli("pull", served.cids[0], "--store", str(tmp_path / "none"), chain=False),
        19,
        "no model store",
    )
    refused(served.cli("pull", served.cids[0], "--ipfs", "ftp://x", chain=False), 2, "--ipfs")
    nowhere = runner.invoke(
        app, ["model", "list", "--rpc", served.url, "--deployment", str(tmp_path / "no.json")]
    )
    refused(nowhere, 19, "no deployment record")
    old = json.loads(served.record.read_text())
    del old["model_registry"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = runner.invoke(
        app, ["model", "list", "--rpc", served.url, "--deployment", str(tmp_path / "old.json")]
    )
    refused(legacy, 19, "names no model registry")
    # a record whose registry reads another market (here: the token, as if it were one)
    from tessera.ledger.compile import load_artifact
    from tessera.ledger.deploy import _deploy_one

    d = served.world.deployment
    foreign = _deploy_one(served.world.chain, load_artifact("model_registry"), d.admin, d.token)
    (tmp_path / "foreign.json").write_text(
        json.dumps({**json.loads(served.record.read_text()), "model_registry": foreign})
    )
    other = runner.invoke(
        app, ["model", "list", "--rpc", served.url, "--deployment", str(tmp_path / "foreign.json")]
    )
    refused(other, 19, "reads the market at", d.token)
    down = runner.invoke(
        app,
        ["model", "list", "--rpc", "http://127.0.0.1:9", "--deployment", str(served.record)],
    )
    refused(down, 18)


class _Ipfs(BaseHTTPRequestHandler):
    """Kubo's ``/api/v0/block/get`` over HTTP on loopback, serving ``blocks``; ``lie`` serves
    other bytes."""

    blocks: ClassVar[dict[str, bytes]] = {}
    lie: ClassVar[bool] = False

    def do_POST(self) -> None:
        url = urlparse(self.path)
        cid = parse_qs(url.query).get("arg", [""])[0]
        if url.path != "/api/v0/block/get" or cid not in self.blocks:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"Message":"block not found"}')
            return
        body = b"other bytes" if self.lie else self.blocks[cid]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_pull_from_an_ipfs_http_api_checks_the_node(served: Served, tmp_path: Path) -> None:
    _Ipfs.blocks = dict(served.blobs)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ipfs)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    api = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        cid, out = served.cids[2], tmp_path / "ipfs.model"
        _Ipfs.lie = False
        ok = served.cli("pull", cid, "--ipfs", api, "--out", str(out), chain=False)
        assert ok.exit_code == 0, ok.stderr
        assert out.read_bytes() == served.blobs[cid]
        _Ipfs.lie = True
        lied = served.cli("pull", cid, "--ipfs", api, "--out", str(tmp_path / "l"), chain=False)
        refused(lied, 12, cid, cid_of(b"other bytes"))
        missing = cid_of(b"not pinned")
        refused(served.cli("pull", missing, "--ipfs", api, chain=False), 18, missing)
    finally:
        httpd.shutdown()
        httpd.server_close()
