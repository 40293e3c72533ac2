"""Property tests of the VDAF fields (draft-irtf-cfrg-vdaf-18, §6.1): laws, codecs, NTT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.crypto.field import Field, Field64, Field128, Field255, NttField
from tessera.errors import DecodeError

FIELDS: list[type[Field]] = [Field64, Field128, Field255]
NTT_FIELDS: list[type[NttField]] = [Field64, Field128]


def elem(field: type[Field]) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=field.MODULUS - 1)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(data=st.data())
def test_ring_laws(field: type[Field], data: st.DataObject) -> None:
    p = field.MODULUS
    a, b, c = (data.draw(elem(field)) for _ in range(3))
    assert field.vec_add([a], [b]) == field.vec_add([b], [a])
    assert field.vec_mul([a], [b]) == field.vec_mul([b], [a])
    ab_c = field.vec_mul(field.vec_mul([a], [b]), [c])
    a_bc = field.vec_mul([a], field.vec_mul([b], [c]))
    assert ab_c == a_bc
    left = field.vec_mul([a], field.vec_add([b], [c]))
    right = field.vec_add(field.vec_mul([a], [b]), field.vec_mul([a], [c]))
    assert left == right
    assert field.vec_add([a], field.vec_neg([a])) == [0]
    assert field.vec_sub([a], [b]) == field.vec_add([a], field.vec_neg([b]))
    if a:
        assert a * field.inv(a) % p == 1
    else:
        with pytest.raises(ZeroDivisionError):
            field.inv(a)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(data=st.data())
def test_batch_inv(field: type[Field], data: st.DataObject) -> None:
    xs = data.draw(st.lists(st.integers(1, field.MODULUS - 1), max_size=8))
    assert field.batch_inv(xs) == [field.inv(x) for x in xs]


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(data=st.data())
def test_encode_decode_round_trip(field: type[Field], data: st.DataObject) -> None:
    vec = data.draw(st.lists(elem(field), max_size=20))
    encoded = field.encode_vec(vec)
    assert len(encoded) == len(vec) * field.ENCODED_SIZE
    assert field.decode_vec(encoded) == vec


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(data=st.data())
def test_decode_rejects_out_of_range(field: type[Field], data: st.DataObject) -> None:
    bad = data.draw(st.integers(field.MODULUS, (1 << (8 * field.ENCODED_SIZE)) - 1))
    prefix = data.draw(st.lists(elem(field), max_size=3))
    encoded = field.encode_vec(prefix) + bad.to_bytes(field.ENCODED_SIZE, "little")
    with pytest.raises(DecodeError):
        field.decode_vec(encoded)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(extra=st.integers(1, 100))
def test_decode_rejects_bad_length(field: type[Field], extra: int) -> None:
    if extra % field.ENCODED_SIZE == 0:
        extra += 1
    with pytest.raises(DecodeError):
        field.decode_vec(bytes(extra))


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.__name__)
@given(val=st.integers(0, 2**20 - 1))
def test_bit_vec_round_trip(field: type[Field], val: int) -> None:
    bits = field.encode_into_bit_vec(val, 20)
    assert set(bits) <= {0, 1}
    assert field.decode_from_bit_vec(bits) == val


def _horner(field: type[Field], coeffs: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % field.MODULUS
    return acc


@pytest.mark.parametrize("field", NTT_FIELDS, ids=lambda f: f.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_ntt(field: type[NttField], data: st.DataObject) -> None:
    n = 1 << data.draw(st.integers(0, 6))
    coeffs = data.draw(st.lists(elem(field), min_size=n, max_size=n))
    values = field.ntt(coeffs, n)
    w = field.root(n)
    assert pow(w, n, field.MODULUS) == 1
    if n > 1:
        assert pow(w, n // 2, field.MODULUS) != 1
    for i in data.draw(st.lists(st.integers(0, n - 1), max_size=3)):
        assert values[i] == _horner(field, coeffs, pow(w, i, field.MODULUS))
    assert field.inv_ntt(values) == coeffs
    # Lagrange-basis helpers agree with the coefficient form.
    assert field.double_evaluations(values) == field.ntt(coeffs, 2 * n)
    t = data.draw(elem(field))
    assert field.poly_eval_lagrange(values, t) == _horner(field, coeffs, t)
    assert field.poly_eval_lagrange(values, w) == values[1 % n]


@pytest.mark.parametrize("field", NTT_FIELDS, ids=lambda f: f.__name__)
@settings(max_examples=40)
@given(data=st.data())
def test_extend_and_mul(field: type[NttField], data: st.DataObject) -> None:
    n = 1 << data.draw(st.integers(1, 5))
    m = data.draw(st.integers(1, n))
    coeffs = data.draw(st.lists(elem(field), min_size=m, max_size=m))
    values = field.ntt(coeffs, n)
    assert field.extend_values_to_power_of_2(values[:m], n) == values
    a = data.draw(st.lists(elem(field), min_size=n, max_size=n))
    b = data.draw(st.lists(elem(field), min_size=n, max_size=n))
    product = field.lagrange_mul(field.ntt(a, n), field.ntt(b, n))
    expected = [0] * (2 * n)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            expected[i + j] = (expected[i + j] + x * y) % field.MODULUS
    assert product == field.ntt(expected, 2 * n)
