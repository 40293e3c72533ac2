"""The DKG's access rules over HTTP, against real processes (one network for the module).

After ``network up`` (whose DKG node 1 relayed), registered accounts that are not
committee members sign ``dkg/*`` requests: each is refused with 403 and gets no
share; a member that does not relay a session gets none either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tessera.crypto.group import Point
from tessera.errors import PolicyViolation, ProtocolError
from tessera.node.envelope import decode_body, encode_body, sign_request
from tessera.node.identity import Identity, load_keystore
from tessera.node.launcher import Network
from tessera.node.transport import HttpTransport

PATHS = ("dkg/deal", "dkg/receive", "dkg/answer", "dkg/check", "dkg/reveal", "dkg/finalize")


def _identity(net: Network, name: str) -> Identity:
    return load_keystore(Path(net.dir) / "keys" / f"{name}.json", net.password)


def _peers(net: Network) -> dict[str, dict[str, Any]]:
    import json

    raw = json.loads((Path(net.dir) / "peers.json").read_text())
    return {p["name"]: p for p in raw["peers"]}


def test_registered_non_members_are_refused_over_http(network: Network) -> None:
    peers = _peers(network)
    nodes = {name: p for name, p in peers.items() if p["role"] == "node"}
    urls = {p["address"]: p["url"] for p in peers.values() if p.get("url")}
    analyst = _identity(network, "analyst")
    provider = _identity(network, "hospital-a")
    attacks: dict[str, dict[str, Any]] = {
        "dkg/deal": {"session": {"n": 3, "t": 2, "nonce": "ab" * 32}},
        "dkg/answer": {"complaints": [[1, 2], [2, 1], [3, 1], [1, 3]], "messages": []},
        "dkg/reveal": {"dealer": 2, "messages": []},
    }
    with HttpTransport(analyst, urls) as t_analyst, HttpTransport(provider, urls) as t_provider:
        for who, transport in (("analyst", t_analyst), ("provider", t_provider)):
            for node in nodes.values():
                for path in PATHS:
                    body = attacks.get(path, {"session": "00" * 32, "messages": []})
                    data = encode_body(body)
                    headers = sign_request(transport.identity, node["address"], path, data)
                    status, reply = transport.send(node["address"], path, headers, data)
                    answer = decode_body(reply)
                    assert status == 403, (who, path, status, answer)
                    assert answer["error"] == "PolicyViolation"
                    assert "committee's nodes only" in answer["message"]
                    assert set(answer) == {"error", "message"}  # no share, nothing else
        # starting a run is for members and analysts: a provider is refused
        try:
            t_provider.call(nodes["node-1"]["address"], "dkg/run", {})
            raise AssertionError("a provider started a DKG run")
        except PolicyViolation as exc:
            assert "analysts only" in str(exc)
        # the operator (an analyst) may ask: the run is done, so it gets the registered key
        key = t_analyst.call(nodes["node-1"]["address"], "dkg/run", {})
        assert key["ready"] and key["committee"] == network.state["committee"]
        assert "secret_share" not in key
        # every node holds the key registered on-chain, with the same public shares
        keys = [t_analyst.call(n["address"], "key", {}) for n in nodes.values()]
        assert {k["public_key"] for k in keys} == {network.state["committee_key"]}
        assert len({tuple(sorted(k["public_shares"].items())) for k in keys}) == 1
        Point.decode(bytes.fromhex(keys[0]["public_key"]))

    # a member that does not relay a session under way asks for shares: refused
    member = _identity(network, "node-2")
    with HttpTransport(member, urls) as t_member:
        for path, body in attacks.items():
            try:
                t_member.call(nodes["node-3"]["address"], path, body)
                raise AssertionError(f"{path} answered a member without a session")
            except ProtocolError as exc:
                assert "already holds a committee key" in str(exc) or "no DKG" in str(exc)
