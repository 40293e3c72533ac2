"""The analyst's one rule for what the providers answer, for a query and a training round.

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from tessera.errors import DecodeError, PolicyViolation, TesseraError, TransportError

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


def nobody_left(what: str, excluded: Mapping[str, str]) -> PolicyViolation:
    """The error when every provider was left out: ``what`` (``"no provider could
    contribute"``) and each one's reason."""
    return PolicyViolation(f"{what}: " + "; ".join(f"{k}: {v}" for k, v in excluded.items()))


__all__ = ["Excluded", "gather", "nobody_left"]
