"""A computing node's part in the committee's distributed key generation (GJKR99)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tessera.crypto import dkg
from tessera.crypto.group import N, Point
from tessera.crypto.rng import Rng
from tessera.crypto.seal import open_sealed, seal
from tessera.errors import (
    DecodeError,
    ProtocolError,
    TesseraError,
)
from tessera.ledger import LedgerClient
from tessera.node.roles.base import Role
from tessera.node.store import Store
from tessera.protocol.wire import field as wire_field
from tessera.protocol.wire import (
    from_hex,
    point_from_hex,
)


def _share_json(s: dkg.Share) -> dict[str, Any]:
    return {"dealer": s.dealer, "recipient": s.recipient, "s": hex(s.s), "b": hex(s.s_blind)}


def _share_from(data: Any, where: str) -> dkg.Share:
    if not isinstance(data, dict):
        raise DecodeError(f"{where}: expected an object")
    try:
        s, b = int(str(data["s"]), 16), int(str(data["b"]), 16)
    except (KeyError, ValueError) as exc:
        raise DecodeError(f"{where}: bad share ({exc})") from exc
    if not (0 <= s < N and 0 <= b < N):
        raise DecodeError(f"{where}: share out of range")
    return dkg.Share(
        wire_field(data, "dealer", int, where), wire_field(data, "recipient", int, where), s, b
    )


def _points(value: Any, where: str) -> tuple[Point, ...]:
    if not isinstance(value, list):
        raise DecodeError(f"{where}: expected a list of points")
    return tuple(point_from_hex(v, f"{where}[{i}]") for i, v in enumerate(value))


def _hex_points(points: Sequence[Point]) -> list[str]:
    return [p.encode().hex() for p in points]


class DkgMember(Role):
    """The DKG handlers of a computing node (mixed into :class:`NodeRole`)."""

    index: int
    n: int
    t: int
    ledger: LedgerClient
    store: Store
    transport: Any
    _secret: bytes
    _peer_keys: Callable[[], Mapping[int, bytes]]
    _node_addresses: Callable[[], Mapping[int, str]]
    _rng: Rng
    _dkg: dkg.DkgParticipant | None
    _lock: threading.Lock

    @property
    def key(self) -> dict[str, Any] | None:  # pragma: no cover - NodeRole's
        raise NotImplementedError

    def on_key(self, body: dict[str, Any], sender: str) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _aad(self, dealer: int, recipient: int) -> bytes:
        return f"tessera/dkg/{self.n}/{self.t}/{dealer}->{recipient}".encode()

    def on_dkg_deal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        with self._lock:
            if self.key is not None:
                raise ProtocolError(f"node {self.index} already holds a committee key")
            self.progress_.update("dkg", "dealing")
            self._dkg = dkg.DkgParticipant(self.index, self.n, self.t, self._rng)
            dc, shares = self._dkg.deal()
            keys = self._peer_keys()
            sealed = {}
            for s in shares:
                plain = f"{s.s:064x}{s.s_blind:064x}".encode()
                sealed[str(s.recipient)] = seal(
                    keys[s.recipient], plain, self._aad(self.index, s.recipient), self._rng
                ).hex()
            return {"commitments": _hex_points(dc.commitments), "shares": sealed}

    def _participant(self) -> dkg.DkgParticipant:
        if self._dkg is None:
            raise ProtocolError(f"node {self.index}: no DKG under way")
        return self._dkg

    def on_dkg_receive(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        dealings = body.get("dealings")
        if not isinstance(dealings, dict):
            raise DecodeError("dkg/receive: 'dealings' must be an object")
        part = self._participant()
        complaints = []
        self.progress_.update("dkg", "receiving")
        for dealer in range(1, self.n + 1):
            d = dealings.get(str(dealer))
            if d is None:
                complaints.append(dkg.Complaint(self.index, dealer))
                continue
            dc = dkg.DealerCommitments(dealer, _points(d.get("commitments"), f"dealer {dealer}"))
            share = None
            try:
                box = from_hex(d.get("share"), f"dealer {dealer} share")
                plain = open_sealed(self._secret, box, self._aad(dealer, self.index)).decode()
                share = dkg.Share(dealer, self.index, int(plain[:64], 16), int(plain[64:], 16))
            except (TesseraError, ValueError):
                share = None  # unreadable: complain, the dealer must answer publicly
            c = part.receive(dc, share)
            if c is not None:
                complaints.append(c)
        return {"complaints": [[c.accuser, c.dealer] for c in complaints]}

    def on_dkg_answer(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        complaints = [dkg.Complaint(int(a), int(d)) for a, d in body.get("complaints", [])]
        return {"answers": [_share_json(s) for s in self._participant().answer(complaints)]}

    def on_dkg_extract(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        answers = [_share_from(a, "answer") for a in body.get("answers", [])]
        part.adopt_answers(answers)
        return {"commitments": _hex_points(part.extraction().commitments)}

    def on_dkg_check(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        accusations = []
        for dealer, pts in (body.get("extracted") or {}).items():
            fc = dkg.FeldmanCommitments(int(dealer), _points(pts, f"extraction {dealer}"))
            if int(dealer) != self.index:
                bad = part.check_extraction(fc)
                if bad is not None:
                    accusations.append(_share_json(bad))
        return {"accusations": accusations}

    def on_dkg_reveal(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        dealer = wire_field(body, "dealer", int, "dkg/reveal")
        return {"share": _share_json(self._participant().reveal(dealer))}

    def on_dkg_finalize(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        part = self._participant()
        qualified = [int(i) for i in body.get("qualified", [])]
        extracted = {
            int(d): dkg.FeldmanCommitments(int(d), _points(pts, f"extraction {d}"))
            for d, pts in (body.get("extracted") or {}).items()
        }
        result = part.finalize(qualified, extracted)
        with self._lock:
            self.store.put(
                "dkg",
                "result",
                {
                    "index": self.index,
                    "secret_share": hex(result.secret_share),
                    "public_key": result.public_key.encode().hex(),
                    "public_shares": {
                        str(i): p.encode().hex() for i, p in result.public_shares.items()
                    },
                    "qualified": list(result.qualified),
                    "committee": None,
                },
            )
            self._dkg = None
        self.progress_.update("dkg", "done")
        return {
            "public_key": result.public_key.encode().hex(),
            "public_shares": {str(i): p.encode().hex() for i, p in result.public_shares.items()},
        }

    def on_dkg_committee(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The committee registered on-chain: check it carries our key, then adopt its id."""
        cid = wire_field(body, "committee", int, "dkg/committee")
        key = self.key
        if key is None:
            raise ProtocolError(f"node {self.index} has no key to register")
        c = self.ledger.committee(cid)
        if c.public_key.hex() != key["public_key"] or self.ledger.account not in c.members:
            raise ProtocolError(f"committee {cid} on the ledger is not ours")
        with self._lock:
            self.store.put("dkg", "result", {**key, "committee": cid})
        return {"committee": cid}

    def on_dkg_run(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Drive the committee's DKG (relaying every broadcast) and register the committee.

        Idempotent: once the committee is registered, its key is returned."""
        key = self.key
        if key is not None and key.get("committee") is not None:
            return self.on_key({}, sender)
        if key is not None:
            raise ProtocolError(f"node {self.index} holds a key that was never registered")
        peers = dict(self._node_addresses())
        if sorted(peers) != list(range(1, self.n + 1)):
            raise ProtocolError(f"node {self.index} does not know all {self.n} nodes")

        def each(path: str, bodies: Mapping[int, Mapping[str, Any]]) -> dict[int, Any]:
            self.progress_.update("dkg", path)
            return {
                i: self.handle(path, dict(bodies[i]), self.ledger.account)
                if i == self.index
                else self.transport.call(peers[i], path, bodies[i])
                for i in sorted(bodies)
            }

        everyone = range(1, self.n + 1)
        dealt = each("dkg/deal", {i: {} for i in everyone})
        complaints_raw = each(
            "dkg/receive",
            {
                j: {
                    "dealings": {
                        str(i): {"commitments": d["commitments"], "share": d["shares"][str(j)]}
                        for i, d in dealt.items()
                    }
                }
                for j in everyone
            },
        )
        complaints = [c for r in complaints_raw.values() for c in r["complaints"]]
        answers_raw = each("dkg/answer", {i: {"complaints": complaints} for i in everyone})
        answers = [a for r in answers_raw.values() for a in r["answers"]]
        dcs = {
            i: dkg.DealerCommitments(i, _points(d["commitments"], f"dealer {i}"))
            for i, d in dealt.items()
        }
        qualified = dkg.qualified_set(
            self.n,
            self.t,
            dcs,
            [dkg.Complaint(int(a), int(d)) for a, d in complaints],
            [_share_from(a, "answer") for a in answers],
        )
        extracted = each("dkg/extract", {i: {"answers": answers} for i in everyone})
        ext = {str(i): extracted[i]["commitments"] for i in qualified}
        accusations = each("dkg/check", {i: {"extracted": ext} for i in qualified})
        for i in qualified:
            fc = dkg.FeldmanCommitments(i, _points(ext[str(i)], f"extraction {i}"))
            shares = [
                _share_from(a, "accusation")
                for r in accusations.values()
                for a in r["accusations"]
                if int(a["dealer"]) == i
            ]
            if any(dkg.extraction_complaint_valid(dcs[i], fc, sh) for sh in shares):
                others = [j for j in qualified if j != i]
                revealed = each("dkg/reveal", {j: {"dealer": i} for j in others})
                rebuilt = dkg.reconstruct_extraction(
                    dcs[i], [_share_from(r["share"], "reveal") for r in revealed.values()], self.t
                )
                ext[str(i)] = _hex_points(rebuilt.commitments)
        final = each(
            "dkg/finalize",
            {i: {"qualified": list(qualified), "extracted": ext} for i in qualified},
        )
        mine = final[self.index]
        if any(f != mine for f in final.values()):
            raise ProtocolError("the nodes disagree on the committee's public key")
        members = [peers[i] for i in everyone]
        created = self.ledger.create_committee(
            members,
            self.t,
            bytes.fromhex(mine["public_key"]),
            [bytes.fromhex(mine["public_shares"][str(i)]) for i in everyone],
        )
        each("dkg/committee", {i: {"committee": created.committee_id} for i in qualified})
        self.progress_.update("dkg", "registered", committee=created.committee_id)
        return self.on_key({}, sender)
