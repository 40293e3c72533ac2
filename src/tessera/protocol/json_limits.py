"""How deeply JSON text nests, measured without parsing it (the guard in front of ``json.loads``).

CPython's JSON decoder recurses once per nested array or object. eth-account
raises the recursion limit to 100 000, so in any process that imports it a
body of a few hundred kilobytes of ``[`` overflows the C stack and the process
dies of a segmentation fault: no exception, nothing to catch. Every service
that parses JSON from the network therefore measures the nesting first
(:func:`check_depth`) and refuses anything deeper than :data:`MAX_DEPTH`.

The scan is one pass, linear in the input, and iterative: brackets are counted
outside strings; a string runs from ``"`` to the next unescaped ``"`` (or to
the end of the input, if it is never closed), and ``\\`` escapes the byte after
it. Up to the first error, this is exactly how a JSON parser splits the text
into strings and structure, so the parser can never nest deeper than the scan
says. A ``]`` or ``}`` with nothing open is counted as closing nothing, so
stray closers cannot hide the openers after them.

:func:`loads` is the strict parser behind that guard, shared by every decoder
of network JSON: numbers that are not finite (``1e999999``, NaN, Infinity) and
integers longer than :data:`MAX_INT_DIGITS` (Python's own limit, which would
otherwise raise a bare ``ValueError``) are refused with
:class:`~tessera.errors.DecodeError`, as are duplicate keys.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

import numpy as np

from tessera.errors import DecodeError

#: Deepest nesting of arrays and objects accepted from the network.
MAX_DEPTH: Final = 64

# A string, closed or running to the end of the input. Possessive quantifiers:
# no backtracking, so a match is linear in its length and never fails, and the
# search resumes after it: the whole scan is linear (a plain ``"...(?:\\.)*"``
# retried at every ``"`` of an unclosed string is quadratic).
_STRING: Final = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN_ARRAY: Final = ord("[")
_OPEN_OBJECT: Final = ord("{")
#: Longest integer accepted, in digits (CPython's default int/str conversion limit).
MAX_INT_DIGITS: Final = 4300
#: Brackets handled per step of the depth walk (bounds its memory: 8 bytes a bracket).
_CHUNK: Final = 1 << 16


def nesting_depth(data: bytes, limit: int | None = None) -> int:
    """The deepest nesting of arrays and objects in UTF-8 JSON text ``data``.

    Brackets inside strings do not count. With ``limit``, the scan stops once the
    depth exceeds it and returns ``limit + 1``. ``data`` need not be valid JSON:
    for malformed text the result bounds what a parser would reach before it failed.
    """
    brackets = np.frombuffer(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS), np.uint8)
    depth = deepest = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = brackets[start : start + _CHUNK]
        # The walk up (opener) and down (closer) from ``depth``, held at zero from
        # below: after step i it stands at walk[i] + max(depth, -min(0, walk[:i+1])).
        walk = np.cumsum(np.where((chunk == _OPEN_ARRAY) | (chunk == _OPEN_OBJECT), 1, -1))
        floor = np.minimum(np.minimum.accumulate(walk), 0)
        levels = walk + np.maximum(depth, -floor)
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        if limit is not None and deepest > limit:
            return limit + 1
    return deepest


def check_depth(data: bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`~tessera.errors.DecodeError` if ``data`` nests deeper than ``limit``."""
    if nesting_depth(data, limit) > limit:
        raise DecodeError(f"nested deeper than {limit}")


def parse_integer(text: str) -> int:
    """An integer of JSON text, refused (:class:`DecodeError`) beyond :data:`MAX_INT_DIGITS`."""
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise DecodeError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError(f"the number {text[:40]} is not finite (NaN and Infinity are refused)")
    return value


def _constant(name: str) -> Any:
    raise DecodeError(f"{name} is not JSON (NaN and Infinity are refused)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DecodeError(f"duplicate key {k[:80]!r}")
        out[k] = v
    return out


def loads(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """Strict JSON: depth at most ``limit``, finite numbers, integers of at most
    :data:`MAX_INT_DIGITS` digits, no duplicate keys; else :class:`DecodeError`.

    Bytes must be UTF-8. The message names the problem, never a Python exception type.
    """
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8 ({exc.reason})") from exc
    else:
        data = text.encode("utf-8", "surrogatepass")
    check_depth(data, limit)
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=parse_integer,
            parse_float=_finite,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise DecodeError(str(exc)) from exc
    except RecursionError as exc:  # not reached below MAX_DEPTH; a second line
        raise DecodeError("nested too deeply") from exc
    except DecodeError:
        raise
    except ValueError as exc:  # any other conversion the parser could not make
        raise DecodeError(f"not JSON: {exc}") from exc
