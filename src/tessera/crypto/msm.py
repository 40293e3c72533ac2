"""Multi-scalar multiplication ``Σ kᵢ·Pᵢ`` by libsecp256k1's own ``ecmult_multi``.

coincurve exposes no multi-scalar multiplication, so Tessera builds one native
extension (``tessera.crypto._msm``, from ``_msm.c``) against the libsecp256k1
sources vendored in ``third_party/secp256k1``: Strauss's algorithm below 88
points, Pippenger's above, both with the GLV endomorphism, and the generator's
precomputed tables for a term on ``G``. It is what batch verification
(:func:`tessera.crypto.rangeproof.batch_verify_range`) evaluates its one random
linear combination with.

Variable time: for public inputs only (verification). Points are
:class:`~tessera.crypto.group.Point` (identity allowed), scalars any integers
(reduced modulo the group order). Should the extension be missing (a checkout
whose build step was skipped), the same results come from coincurve one term at
a time; :data:`NATIVE` says which path is in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tessera.crypto.group import POINT_LEN, SCALAR_LEN, G, N, P, Point
from tessera.crypto.group import msm as _msm_by_terms
from tessera.errors import DecodeError

try:
    from tessera.crypto import _msm as _native
except ImportError:  # pragma: no cover - exercised only without the build step
    _native = None  # type: ignore[assignment]

#: Whether libsecp256k1's ecmult_multi is in use (else coincurve, term by term).
NATIVE: bool = _native is not None
#: The libsecp256k1 release the extension was built from.
LIBSECP256K1_VERSION: str | None = _native.LIBSECP256K1_VERSION if _native is not None else None

_G_ENC = G.encode()
_IDENTITY_ENC = bytes(POINT_LEN)
_UNCOMPRESSED_LEN = 65


def _scalar_bytes(scalars: Sequence[int]) -> bytes:
    return b"".join((k % N).to_bytes(SCALAR_LEN, "big") for k in scalars)


def msm_encoded(points: Sequence[bytes], scalars: Sequence[int]) -> bytes:
    """``Σ kᵢ·Pᵢ`` over SEC1 encodings: compressed (33 bytes), uncompressed (65 bytes: no
    square root to take) or 33 zero bytes for the identity. Returns the sum's 33-byte
    encoding. Terms on ``G`` use the generator's precomputed tables.

    Raises :class:`~tessera.errors.DecodeError` naming the first bad encoding."""
    if len(points) != len(scalars):
        raise ValueError(f"msm: {len(points)} points but {len(scalars)} scalars")
    g = 0
    pts: list[bytes] = []
    ks: list[int] = []
    for i, (p, k) in enumerate(zip(points, scalars, strict=True)):
        if not isinstance(p, bytes | bytearray) or len(p) not in (POINT_LEN, _UNCOMPRESSED_LEN):
            raise DecodeError(f"msm: point {i} is not {POINT_LEN} or {_UNCOMPRESSED_LEN} bytes")
        if (p[0] == 4) != (len(p) == _UNCOMPRESSED_LEN):
            raise DecodeError(f"msm: point {i} is not a valid encoding (prefix and length differ)")
        if p == _G_ENC:
            g += k
        else:
            pts.append(bytes(p))
            ks.append(k)
    if _native is None:  # pragma: no cover
        try:
            decoded = [Point.decode(_compress(p)) for p in pts]
        except DecodeError as exc:
            raise DecodeError(f"msm: {exc}") from exc
        return _msm_by_terms([*ks, g], [*decoded, G]).encode()
    try:
        return _native.msm(b"".join(pts), _scalar_bytes(ks), (g % N).to_bytes(SCALAR_LEN, "big"))
    except ValueError as exc:
        raise DecodeError(str(exc)) from exc


def _compress(enc: bytes) -> bytes:  # pragma: no cover - the fallback path only
    if len(enc) == POINT_LEN:
        return enc
    if enc[0] != 4:
        raise DecodeError("point: bad SEC1 prefix for 65 bytes (want 0x04)")
    x, y = int.from_bytes(enc[1:33], "big"), int.from_bytes(enc[33:], "big")
    if x >= P or y >= P or (y * y - x * x * x - 7) % P:
        raise DecodeError("point: not on secp256k1")
    return bytes([2 + (y & 1)]) + enc[1:33]


def msm(points: Sequence[Point], scalars: Sequence[int]) -> Point:
    """``Σ kᵢ·Pᵢ`` (variable time, public inputs): one libsecp256k1 ``ecmult_multi`` call."""
    return Point.decode(msm_encoded([p.encode() for p in points], scalars))


def msm_is_identity(points: Sequence[Point], scalars: Sequence[int]) -> bool:
    """Whether ``Σ kᵢ·Pᵢ`` is the identity: a batch verifier's one check, without
    decoding the sum into a point."""
    return msm_encoded([p.encode() for p in points], scalars) == _IDENTITY_ENC


#: Below this many proofs, a failing batch's part is checked one by one, not halved again.
ONE_BY_ONE_BELOW = 4


def failing_part(idxs: list[int], vanishes: Callable[[list[int]], bool]) -> list[int]:
    """The indices among ``idxs`` to check one by one after a failed batch: none if their
    random combination ``vanishes``, else those of the halves whose own combinations do not
    (down to a few proofs), so one cheater among many costs about two more batches and its
    own proof, not every proof."""
    if not idxs or vanishes(idxs):
        return []
    if len(idxs) < ONE_BY_ONE_BELOW:
        return idxs
    half = len(idxs) // 2
    return failing_part(idxs[:half], vanishes) + failing_part(idxs[half:], vanishes)
