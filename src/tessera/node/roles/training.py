"""A computing node's side of a training round: :class:`~tessera.learning.committee.NodeRound`
behind signed requests, each step checked against the ledger.

The analyst relays; it cannot steer a node. Every step names the round's ticket, whose
hash is an open training query on the ledger submitted by the sender, for this node's
committee. The reports the node locks must be exactly the ones the ticket's providers
committed on-chain (so the analyst can neither substitute a report nor leave one out),
save those whose providers withhold them from this node too, and the node releases its
noised aggregate share once per round, after committing its decisions (the withheld
providers among them), its share and the round's transcript on the trail::

    train/commit   → the commitment to this node's verify-key seed
    train/fetch    → the committed reports the analyst lacks, as their providers serve
                     them to this node (``committed``), or why each is withheld
    train/lock     → the reports fixed (digests = the on-chain contributions, but for
                     those withheld from this node); the seed
    train/agree    ← every node's commitment and seed: the verify key
    train/prepare  → this node's verifier share of each report (or why it has none)
    train/decide   ← every node's verifier shares: the reports accepted, the exclusions
                     (committed on-chain as the node's ``aggregate``)
    train/release  → the noised aggregate share (``key_switch``, ``noise`` and the
                     transcript as ``proof_bundle`` committed first); with the ticket's
                     scoring plan, every subset sum of the plan drawn too, its digest
                     in the same ``key_switch``
    train/release_subset → one of those subset sums, once, only a subset of the plan
                     and of accepted providers, only after the round's release

A round lives in the node's memory: a node restarted mid-round has lost its seed, and
the round fails for want of its share (Prio3 needs every node); the next round is a
new query. Nonces of reports it prepared are kept in its store, so a report is never
summed twice in one training.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from tessera.crypto.rng import Rng
from tessera.dp import NoiseSampler
from tessera.errors import DecodeError, PolicyViolation, ProtocolError
from tessera.learning.committee import NodeRound
from tessera.ledger import LedgerClient
from tessera.node.answers import Excluded, committed_among
from tessera.node.roles.base import Progress, admitted, provider_accounts
from tessera.node.store import Store
from tessera.protocol.training import SealedReport, report_digest
from tessera.protocol.training_round import (
    OPERATION,
    TrainingTicket,
    release_digest,
    round_decisions,
    trail_digest,
)
from tessera.protocol.wire import from_hex

MAX_ROUNDS_HELD = 64


class TrainingMember:
    """The ``train/*`` endpoints of a computing node (mixed into its role)."""

    index: int
    ledger: LedgerClient
    store: Store
    progress_: Progress
    _rng: Rng
    _sampler: NoiseSampler
    _owners: dict[int, str]
    _lock: threading.Lock
    _secret: bytes

    def committee_id(self) -> int:  # pragma: no cover - the node role's
        raise NotImplementedError

    def key_or_fail(self) -> dict[str, Any]:  # pragma: no cover - the node role's
        raise NotImplementedError

    def _obtain(
        self,
        query_id: bytes,
        committed: Mapping[str, bytes],
        missing: Mapping[str, str],
        what: str,
        check: Callable[[str, bytes, bytes], None],
    ) -> tuple[dict[str, str], dict[str, str]]:  # pragma: no cover - the node role's
        raise NotImplementedError

    @property
    def _rounds(self) -> dict[str, tuple[TrainingTicket, NodeRound, dict[str, Any]]]:
        held: dict[str, tuple[TrainingTicket, NodeRound, dict[str, Any]]] | None
        held = getattr(self, "_training_rounds", None)
        if held is None:
            held = {}
            self._training_rounds = held
        return held

    def _training_round(
        self, body: Mapping[str, Any], sender: str
    ) -> tuple[TrainingTicket, NodeRound, dict[str, Any]]:
        ticket = TrainingTicket.from_json(body.get("ticket"))
        held = self._rounds.get(ticket.query_id.hex())
        if held is None:
            raise ProtocolError(
                f"node {self.index} holds no round {ticket.round_index} of this training "
                "(never opened here, or lost in a restart)"
            )
        if held[2]["analyst"] != sender.lower():
            raise PolicyViolation("only the analyst who submitted the round may drive it")
        return held

    def on_train_commit(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Open the round (checked on the ledger) and commit to this node's seed."""
        ticket = TrainingTicket.from_json(body.get("ticket"))
        key = ticket.query_id.hex()
        with self._lock:
            held = self._rounds.get(key)
            if held is None:
                self._check_round(ticket, sender)
                seen_key = ticket.training_id.hex()
                seen = {bytes.fromhex(n) for n in self.store.get("train_seen", seen_key) or []}
                node = NodeRound(
                    self.index,
                    self._secret,
                    ticket.vdaf,
                    ticket.training_id,
                    ticket.round_index,
                    ticket.noise,
                    self._sampler if ticket.noise is not None else None,
                    self._rng,
                    seen=seen,
                    scoring=ticket.scoring,
                )
                held = (ticket, node, {"analyst": sender.lower(), "transcript": {}})
                if len(self._rounds) >= MAX_ROUNDS_HELD:
                    self._rounds.pop(next(iter(self._rounds)))
                self._rounds[key] = held
                self.progress_.update(key, "training: committed")
        if held[2]["analyst"] != sender.lower():
            raise PolicyViolation("only the analyst who submitted the round may drive it")
        return {"commitment": held[1].commitment().hex()}

    def _check_round(self, ticket: TrainingTicket, sender: str) -> None:
        q, committee = admitted(self.ledger, ticket, sender)
        if q.kind != "training" or OPERATION not in q.operations:
            raise PolicyViolation("the round's query on the ledger is not a training query")
        if q.committee != self.committee_id():
            raise PolicyViolation("the query on the ledger is for another committee")
        if committee.public_key.hex() != self.key_or_fail()["public_key"]:
            raise PolicyViolation("the committee on the ledger does not hold our key")
        owners = provider_accounts(self.ledger, q, self._owners)
        for name, account in ticket.providers:
            if account not in owners:
                raise PolicyViolation(f"{name} owns no dataset of this round's query")

    def on_train_fetch(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The analyst lacks the committed reports of ``providers`` (it got something
        else, or nothing): the node fetches each from its provider (``committed``) and
        answers with those it got (``reports``, by name) and why it has none of the others
        (``withheld``). What it decides here is what it locks (kept in its store), so asked
        before the lock, every honest node decides on the same answers from the provider:
        one a node got, the analyst forwards to every node."""
        ticket, _, _ = self._training_round(body, sender)
        names = body.get("providers")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DecodeError("providers: expected a list of names")
        committed = self.ledger.audit_trail(ticket.query_id, verdicts=False).of("contribution")
        missing = committed_among(ticket, names, committed, "round")
        fetched, withheld = self._obtain_reports(ticket, committed, missing)
        return {"reports": fetched, "withheld": withheld}

    def _obtain_reports(
        self, ticket: TrainingTicket, committed: Mapping[str, bytes], missing: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The node role's ``_obtain`` of a round's committed reports (account → name)."""

        def check(name: str, raw: bytes, digest: bytes) -> None:
            sealed = SealedReport.decode(raw)
            if report_digest(sealed) != digest:
                raise Excluded("served a report other than the committed one")
            if (sealed.provider, sealed.training_id, sealed.round_index) != (
                name,
                ticket.training_id,
                ticket.round_index,
            ):
                raise Excluded("committed a report for another provider, training or round")

        return self._obtain(ticket.query_id, committed, missing, "report", check)

    def on_train_lock(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Fix the round's reports: exactly the contributions the ticket's providers
        committed on-chain, but for those withheld from this node. A committed report
        left out, the node fetches from its provider itself (unless it did already,
        ``train/fetch``): one it gets refuses the lock (the analyst may not leave out an
        honest provider), one it does not is withheld, and the node's decisions, committed
        at ``train/decide``, name it. Returns this node's seed."""
        ticket, node, memo = self._training_round(body, sender)
        raw = body.get("digests")
        if not isinstance(raw, dict):
            raise DecodeError("digests: expected an object of provider: hex digest")
        digests = {str(name): from_hex(d, f"digests.{name}") for name, d in raw.items()}
        trail = self.ledger.audit_trail(ticket.query_id, verdicts=False).of("contribution")
        accounts = dict(ticket.providers)
        for name, digest in digests.items():
            account = accounts.get(name)
            if account is None:
                raise PolicyViolation(f"{name!r} is not a provider of this round")
            if trail.get(account) != digest:
                raise ProtocolError(f"the report of {name} is not the one it committed")
        left_out = {a: n for n, a in accounts.items() if a in trail and n not in digests}
        served, withheld = self._obtain_reports(ticket, trail, left_out)
        if served:
            raise ProtocolError(
                f"committed report(s) left out of the round: {sorted(served)} (their "
                f"providers serve them to node {self.index})"
            )
        seed = node.lock(digests)
        memo["withheld"] = dict(sorted(withheld.items()))
        memo["transcript"]["reports"] = {n: d.hex() for n, d in sorted(digests.items())}
        return {"seed": seed.hex()}

    def on_train_agree(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        _, node, memo = self._training_round(body, sender)
        commitments = _by_index(body.get("commitments"), "commitments")
        seeds = _by_index(body.get("seeds"), "seeds")
        node.agree(commitments, seeds)
        memo["transcript"]["seeds"] = {str(i): s.hex() for i, s in sorted(seeds.items())}
        return {"agreed": True}

    def on_train_prepare(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """This node's verifier share of each report (``null`` where its share fails)."""
        _, node, _ = self._training_round(body, sender)
        raw = body.get("reports")
        if not isinstance(raw, dict):
            raise DecodeError("reports: expected an object of provider: hex report")
        reports = {str(n): SealedReport.decode(from_hex(r, f"reports.{n}")) for n, r in raw.items()}
        shares = node.prepare_many(reports)
        return {
            "shares": {n: None if v is None else v.hex() for n, v in shares.items()},
            "excluded": node.exclusions(),
        }

    def on_train_decide(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """Decide every report from all nodes' verifier shares; commit the decisions."""
        ticket, node, memo = self._training_round(body, sender)
        raw = body.get("shares")
        if not isinstance(raw, dict):
            raise DecodeError("shares: expected an object of provider: list of hex or null")
        shares: dict[str, list[bytes | None]] = {}
        for name, values in raw.items():
            if not isinstance(values, list) or len(values) > 255:
                raise DecodeError(f"shares.{name}: expected a list")
            shares[str(name)] = [
                None if v is None else from_hex(v, f"shares.{name}") for v in values
            ]
        if "withheld" not in memo:
            raise ProtocolError("the round's reports are not fixed yet")
        withheld: dict[str, str] = memo["withheld"]
        accepted, excluded = node.decide_many(shares)
        decisions = round_decisions(accepted, excluded, shares, withheld)
        memo["transcript"]["decisions"] = decisions
        qid = ticket.query_id
        mine = self.ledger.audit_trail(qid, verdicts=False).of("aggregate")
        digest = trail_digest("aggregate", qid, decisions)
        if self.ledger.account not in mine:
            self.ledger.commit_many(qid, {"aggregate": digest})
        elif mine[self.ledger.account] != digest:
            raise ProtocolError("this node already committed other decisions for the round")
        return {"accepted": accepted, "excluded": excluded, "withheld": withheld}

    def on_train_release(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """The noised aggregate share, once: its digest, the noise statement and the
        round's transcript are committed on-chain first."""
        ticket, node, memo = self._training_round(body, sender)
        if "released" in memo:
            return {"share": memo["released"]}
        if "decisions" not in memo["transcript"]:
            raise ProtocolError("the round's reports are not decided yet")
        with self._lock:
            share = node.release()
            # the scoring plan's subset sums, drawn now and committed with the round's
            # share, so that each is fixed before any is served (train/release_subset)
            subsets = []
            if ticket.scoring is not None:
                subsets = [
                    (s, node.release_subset(s)) for s in ticket.scoring.subsets(node.accepted())
                ]
            qid = ticket.query_id
            digests: dict[str, bytes] = {
                "key_switch": release_digest(qid, share, subsets),
                "proof_bundle": trail_digest("transcript", qid, memo["transcript"]),
            }
            if ticket.noise is not None:
                plan = ticket.noise
                statement = {"node": self.index, "sigma_sq": str(plan.sigma_node_sq)}
                if subsets:
                    statement["releases"] = str(1 + len(subsets))
                digests["noise"] = trail_digest("noise", qid, statement)
            self.ledger.commit_many(qid, digests)  # type: ignore[arg-type]
            seen_key = ticket.training_id.hex()
            self.store.put("train_seen", seen_key, sorted(n.hex() for n in node.seen))
            memo["released"] = share.hex()
            memo["subsets"] = {s: b.hex() for s, b in subsets}
            memo["served"] = set()
            self.progress_.update(qid.hex(), "training: released")
        return {"share": memo["released"]}

    def on_train_release_subset(self, body: dict[str, Any], sender: str) -> dict[str, Any]:
        """This node's noised share of one subset sum of the round's scoring plan
        (:meth:`~tessera.learning.committee.NodeRound.release_subset`, drawn and committed
        at ``train/release``), once. Refused (403) for a round without a plan, before the
        round's release, for a subset naming a provider withheld, excluded or not of the
        round, for a subset not in the plan, and a second time."""
        ticket, node, memo = self._training_round(body, sender)
        names = body.get("providers")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DecodeError("providers: expected a list of names")
        subset = tuple(sorted(set(names)))
        if ticket.scoring is None:
            raise PolicyViolation("this round has no scoring plan: no subset is released")
        if "released" not in memo:
            raise PolicyViolation("a subset sum is released only after the round's release")
        strangers = [n for n in subset if ticket.account_of(n) is None]
        if strangers:
            raise PolicyViolation(f"not providers of this round: {strangers}")
        left_out = [n for n in subset if n in memo.get("withheld", {})]
        if left_out:
            raise PolicyViolation(f"withheld from the round, in no sum: {left_out}")
        excluded = [n for n in subset if n not in node.accepted()]
        if excluded:
            raise PolicyViolation(f"excluded from the round, in no sum: {excluded}")
        shares: dict[tuple[str, ...], str] = memo["subsets"]
        if subset not in shares:
            raise PolicyViolation(f"subset {list(subset)} is not in the round's scoring plan")
        with self._lock:
            if subset in memo["served"]:
                raise PolicyViolation(f"subset {list(subset)} was released already")
            memo["served"].add(subset)
        return {"share": shares[subset]}


def _by_index(value: Any, where: str) -> dict[int, bytes]:
    if not isinstance(value, dict) or len(value) > 255:
        raise DecodeError(f"{where}: expected an object of node index: hex")
    out: dict[int, bytes] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k.isdigit() or len(k) > 3:
            raise DecodeError(f"{where}: {k!r} is not a node index")
        out[int(k)] = from_hex(v, f"{where}.{k}")
    return out
