"""Hypothesis strategies that mutate valid inputs: bytes edits, and JSON values swapped for
the values that broke decoders before (huge integers, non-finite numbers, wrong types)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

HUGE = "<an integer of 5000 digits>"
_HUGE_TEXT = json.dumps(HUGE)

#: JSON values that each once reached a decoder that did not expect them.
HOSTILE: list[Any] = [
    5,
    -1,
    0,
    2**64,
    HUGE,  # an integer over Python's 4,300-digit int/str limit, spliced in as text
    1.5,
    True,
    None,
    "",
    "zz",
    "0x",
    "00" * 40,
    [],
    [[]],
    [5],
    {},
    {"": []},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE[:-4]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:8]):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


@st.composite
def mutated_json(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` (JSON text) with one to three of its values replaced, or a key dropped."""
    value = json.loads(seed)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        if path and draw(st.booleans()) and isinstance(_parent(value, path), dict):
            parent = dict(_parent(value, path))
            parent.pop(path[-1])
            value = _replace(value, path[:-1], parent)
            continue
        value = _replace(value, path, draw(st.sampled_from(HOSTILE) | json_values))
    return json.dumps(value).replace(_HUGE_TEXT, "9" * 5000).encode()


def _parent(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path[:-1]:
        value = value[p]
    return value


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` truncated, extended, or with bytes overwritten (lengths and counts included)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "word"]))
        at = draw(st.integers(0, len(data)))
        if op == "cut":
            del data[at:]
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=8))
        elif op == "word":
            data[at : at + 4] = draw(
                st.sampled_from(
                    [
                        b"\xff\xff\xff\xff",
                        b"\x00\x00\x00\x00",
                        b"\x00\x00\x00\x01",
                        b"\x7f\xff\xff\xff",
                    ]
                )
            )
    return bytes(data)
