"""The one rule for what the providers answer, for a query and a training round.

Any provider may be down, refuse, or lie, so none of them can stop the others: each answer
is either taken (decoded and checked by the caller's ``accept``) or its provider is left
out with the reason, which the result reports. Only when nobody is left does the call
fail, with every provider's reason.

- a provider that cannot be reached: ``unreachable: ...``;
- one that refuses (an error raised at the provider, such as its policy or its budget):
  ``refused: <error>: ...``;
- one that says it left itself out (``{"excluded": reason}``, below its cohort): that reason;
- one whose answer does not decode or is not its own: ``accept`` raises :class:`Excluded`
  (or a :class:`~tessera.errors.DecodeError`) naming what is wrong.

A provider that commits its contribution (a query's, or a training round's report) on-chain
and then withholds it stops nothing either, by the same three steps for both:

- :func:`await_answers`: the analyst waits for a committed provider's answer a bounded
  grace only, then takes it for a failure;
- :func:`fetch_through_nodes`: the analyst asks every computing node for what it lacks
  of the committed ones; each node fetches it from the provider itself
  (:func:`fetch_committed`, the provider's ``committed`` endpoint), checks it against its
  digest on-chain, and keeps its decision; one that a node got is forwarded to all, one
  nobody got is left out as *withheld*, and each node locks that decision in what it
  commits, so that the analyst can neither leave out an honest provider nor make the
  nodes disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from typing import Any, Protocol, TypeVar

from tessera.errors import DecodeError, PolicyViolation, TesseraError, TransportError
from tessera.protocol.wire import from_hex

T = TypeVar("T")


class Excluded(Exception):
    """An answer that is left out; the message is the reason the result reports."""


def gather(
    futures: Mapping[str, Future[dict[str, Any]]],
    accept: Callable[[str, Mapping[str, Any]], T],
) -> tuple[dict[str, T], dict[str, str]]:
    """Each provider's answer, in the order of ``futures``: those taken, and the reasons of
    those left out."""
    taken: dict[str, T] = {}
    excluded: dict[str, str] = {}
    for name, future in futures.items():
        try:
            answer = future.result()
        except TransportError as exc:
            excluded[name] = f"unreachable: {exc}"
            continue
        except TesseraError as exc:
            excluded[name] = f"refused: {type(exc).__name__}: {exc}"
            continue
        if "excluded" in answer:
            excluded[name] = str(answer["excluded"])
            continue
        try:
            taken[name] = accept(name, answer)
        except DecodeError as exc:
            excluded[name] = f"malformed answer: {exc}"
        except Excluded as exc:
            excluded[name] = str(exc)
    return taken, excluded


class Caller(Protocol):
    """What is asked of a transport here: a signed request to a peer by address."""

    def call(
        self, peer: str, path: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]: ...


def await_answers(
    futures: Mapping[str, Future[dict[str, Any]]],
    committed: Callable[[], Mapping[str, bytes]],
    account_of: Callable[[str], str | None],
    grace: float,
    what: str = "contribution",
    *,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Future[dict[str, Any]]], dict[str, bytes]]:
    """The providers' answers once each has come, or has committed its ``what`` on-chain
    (``committed()``: the digests on the trail, by account) and held its answer back for
    ``grace`` seconds: then its answer is a failure, and the nodes fetch what it committed
    (:func:`fetch_through_nodes`). Returns the answers and the committed digests.

    A provider that has not committed is waited for (its own request's timeout bounds
    it): its data may still be coming, and nothing of it is on the trail to fetch."""
    answers = dict(futures)
    first_seen: dict[str, float] = {}
    while True:
        _, pending = wait(list(answers.values()), timeout=poll)
        on_chain = dict(committed())
        if not pending:
            return answers, on_chain
        now, late = clock(), []
        for name, future in answers.items():
            if (
                not future.done()
                and account_of(name) in on_chain
                and now - first_seen.setdefault(name, now) >= grace
            ):
                late.append(name)
        if len(late) < len(pending):
            continue  # someone is still working: its own timeout bounds it
        for name in late:
            failed: Future[dict[str, Any]] = Future()
            failed.set_exception(
                TransportError(f"committed its {what}, then gave no answer in {grace:g} s")
            )
            answers[name] = failed
        return answers, on_chain


def fetch_through_nodes(
    pool: Executor,
    transport: Caller,
    nodes: Sequence[str],
    path: str,
    body: Mapping[str, Any],
    lacking: Sequence[str],
    what: str,
    accept: Callable[[str, Mapping[str, Any]], T],
) -> tuple[dict[str, T], dict[str, str]]:
    """The committed ``what`` (``"contribution"``, ``"report"``) of each provider in
    ``lacking`` as the nodes (by address) fetched it from its provider (``path``, with
    ``body`` and the ``providers`` named), each checked by ``accept`` as one received from
    its provider; and the reason of each that no node got: withheld. Every node is asked,
    and each keeps what it decided, so one that a node got is forwarded to all, and every
    honest node that got none leaves the same providers out (and locks that). A node that
    is down, refuses, or lies about one is passed over: another may have it."""
    request = {**body, "providers": list(lacking)}
    futures = [pool.submit(transport.call, node, path, request) for node in nodes]
    got: dict[str, T] = {}
    reasons: dict[str, str] = {}
    for future in futures:
        try:
            answer = future.result()
            served = dict(answer.get(what + "s") or {})
            refused = dict(answer.get("withheld") or {})
        except (TesseraError, TypeError, ValueError):
            continue  # down or refused: the other nodes answer
        for name in lacking:
            if name in served and name not in got:
                try:
                    got[name] = accept(name, {what: served[name]})
                except (Excluded, TesseraError):
                    continue  # a node that lies about it: another may have it
            elif name in refused:
                reasons.setdefault(name, str(refused[name]))
    withheld = {
        name: reasons.get(name, "withheld: no node could fetch it")
        for name in lacking
        if name not in got
    }
    return got, withheld


def fetch_committed(
    transport: Caller,
    provider: str,
    query_id: bytes,
    what: str,
    check: Callable[[bytes], None],
    *,
    timeout: float,
    who: str,
) -> dict[str, str]:
    """What ``provider`` (its account) committed to a query or a training round, as it
    serves it to the node ``who`` (its ``committed`` endpoint): ``{what: hex}`` once
    ``check`` (the digest on-chain, the decoding, the proofs) passes on the bytes, else
    ``{"withheld": reason}``; ``check`` raises :class:`Excluded` with what is wrong."""
    try:
        answer = transport.call(
            provider, "committed", {"query_id": query_id.hex()}, timeout=timeout
        )
    except TransportError as exc:
        return {"withheld": f"withheld: unreachable by {who}: {exc}"}
    except TesseraError as exc:
        return {"withheld": f"withheld: refused {who}: {type(exc).__name__}"}
    try:
        raw = from_hex(answer.get(what), what)
        check(raw)
    except Excluded as exc:
        return {"withheld": f"withheld: {exc}"}
    except (DecodeError, ValueError) as exc:
        return {"withheld": f"withheld: committed bytes that do not decode: {exc}"}
    return {what: raw.hex()}


def committed_among(
    ticket: Any, names: Sequence[str], committed: Mapping[str, bytes], what: str
) -> dict[str, str]:
    """The providers of ``names`` whose item is committed on-chain (``committed``, by
    account), by account: what a node fetches when the analyst says it lacks them. A
    name the ticket does not name is refused (``what``: "query" or "round")."""
    missing: dict[str, str] = {}
    for name in names:
        account = ticket.account_of(name)
        if account is None:
            raise PolicyViolation(f"{name!r} is not a provider of this {what}")
        if account in committed:
            missing[account] = name
    return missing


def nobody_left(what: str, excluded: Mapping[str, str]) -> PolicyViolation:
    """The error when every provider was left out: ``what`` (``"no provider could
    contribute"``) and each one's reason."""
    return PolicyViolation(f"{what}: " + "; ".join(f"{k}: {v}" for k, v in excluded.items()))


__all__ = [
    "Caller",
    "Excluded",
    "await_answers",
    "committed_among",
    "fetch_committed",
    "fetch_through_nodes",
    "gather",
    "nobody_left",
]
