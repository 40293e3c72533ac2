"""libsecp256k1's ecmult_multi through tessera.crypto.msm, against the naive sum of products."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.crypto import msm as msm_module
from tessera.crypto.group import G, H, N, P, Point, base_mul, point_sum
from tessera.crypto.msm import msm, msm_encoded, msm_is_identity
from tessera.crypto.rng import SeededRng
from tessera.errors import DecodeError


def naive(points: list[Point], scalars: list[int]) -> Point:
    return point_sum(p * k for p, k in zip(points, scalars, strict=True))


def uncompressed(p: Point) -> bytes:
    x = p.x
    y = pow((x**3 + 7) % P, (P + 1) // 4, P)
    if y % 2 != p.encode()[0] - 2:
        y = P - y
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def test_uncompressed_encodings_count_as_the_same_points() -> None:
    rng = SeededRng(b"msm/uncompressed")
    points = [base_mul(rng.scalar()) for _ in range(30)]
    scalars = [rng.scalar() for _ in range(30)]
    mixed = [uncompressed(p) if i % 2 else p.encode() for i, p in enumerate(points)]
    assert msm_encoded(mixed, scalars) == naive(points, scalars).encode()


def test_the_native_extension_is_built_and_used() -> None:
    assert msm_module.NATIVE
    assert msm_module.LIBSECP256K1_VERSION == "0.2.0"


@pytest.mark.parametrize("n", [0, 1, 2, 5, 87, 88, 89, 200])
def test_msm_equals_the_naive_sum_on_seeded_inputs(n: int) -> None:
    rng = SeededRng(f"msm/{n}")
    points = [base_mul(rng.scalar()) for _ in range(n)]
    scalars = [rng.scalar() for _ in range(n)]
    assert msm(points, scalars) == naive(points, scalars)


def test_identity_duplicates_zero_scalars_order_minus_one_and_g() -> None:
    rng = SeededRng(b"msm/edge")
    a, b = base_mul(rng.scalar()), base_mul(rng.scalar())
    points = [a, Point.identity(), a, b, b, G, H, G, a]
    scalars = [5, rng.scalar(), N - 1, 0, rng.scalar(), N - 1, 2 * N + 3, 7, -4]
    assert msm(points, scalars) == naive(points, scalars)
    assert msm([a, a], [1, N - 1]).is_identity  # a + (n − 1)·a
    assert msm([a, -a], [3, 3]).is_identity
    assert msm([], []).is_identity
    assert msm([Point.identity()], [9]).is_identity
    assert msm([a], [0]).is_identity
    assert msm([G], [N - 1]) == -G
    assert msm_is_identity([a, b, a, b], [1, 2, -1, -2])
    assert not msm_is_identity([a, b], [1, 2])


def test_many_points_take_pippenger_and_still_agree() -> None:
    rng = SeededRng(b"msm/pippenger")
    base = [base_mul(rng.scalar()) for _ in range(40)]
    points = [base[rng.below(40)] for _ in range(600)]  # many duplicates
    scalars = [rng.scalar() if rng.below(5) else 0 for _ in range(600)]
    assert msm(points, scalars) == naive(points, scalars)


def test_bad_encodings_raise_a_clear_error() -> None:
    good = base_mul(3).encode()
    u = uncompressed(base_mul(5))
    off_curve_65 = u[:-1] + bytes([u[-1] ^ 1])  # y + 1 or y − 1: not on the curve
    off_curve = next(
        b"\x02" + x.to_bytes(32, "big")
        for x in range(1, 100)
        if pow((x**3 + 7) % P, (P - 1) // 2, P) != 1
    )
    for bad, what in [
        (b"\x04" + good[1:], "point 1 is not a valid encoding"),
        (b"\x02" + P.to_bytes(32, "big"), "point 1 is not a valid encoding"),
        (off_curve, "point 1 is not a valid encoding"),
        (b"\x00" * 32 + b"\x01", "point 1 is not a valid encoding"),
        (good[:32], "point 1 is not 33 or 65 bytes"),
        (b"\x04" + bytes(64), "point 1 is not a valid encoding"),
        (b"\x02" + uncompressed(base_mul(5))[1:], "point 1 is not a valid encoding"),
        (off_curve_65, "point 1 is not a valid encoding"),
    ]:
        with pytest.raises(DecodeError, match=what):
            msm_encoded([good, bad], [1, 2])
    with pytest.raises(ValueError, match="2 points but 1 scalars"):
        msm_encoded([good, good], [1])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=6),
            st.one_of(
                st.integers(min_value=-(2**300), max_value=2**300),
                st.sampled_from([0, 1, N - 1, N]),
            ),
        ),
        max_size=24,
    )
)
def test_msm_is_the_sum_of_products(terms: list[tuple[int, int]]) -> None:
    pool = [Point.identity(), G, H, base_mul(2), base_mul(N - 2), base_mul(12345), -H]
    points = [pool[i] for i, _ in terms]
    scalars = [k for _, k in terms]
    assert msm(points, scalars) == naive(points, scalars)
