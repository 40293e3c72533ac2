"""The one-shot TurboSHAKE128 behind ``XofTurboShake128`` against pycryptodome's object API."""

from __future__ import annotations

from Crypto.Hash import TurboSHAKE128
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.crypto.field import Field128
from tessera.crypto.xof import XofTurboShake128, turboshake128


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([1, 2, 0x1F, 0x7F]), st.integers(0, 700))
def test_turboshake128_matches_pycryptodome(data: bytes, domain: int, length: int) -> None:
    expected = TurboSHAKE128.new(domain=domain, data=data).read(length)
    assert turboshake128(data, domain, length) == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=5))
def test_next_continues_the_stream(lengths: list[int]) -> None:
    seed, dst, binder = b"s" * 32, b"dst", b"binder"
    xof = XofTurboShake128(seed, dst, binder)
    pieces = b"".join(xof.next(n) for n in lengths)
    assert pieces == XofTurboShake128(seed, dst, binder).next(sum(lengths))


def test_expand_into_vec_is_a_prefix() -> None:
    seed, dst = bytes(range(32)), b"dst"
    long = XofTurboShake128.expand_into_vec(Field128, seed, dst, b"", 50)
    assert XofTurboShake128.expand_into_vec(Field128, seed, dst, b"", 7) == long[:7]
