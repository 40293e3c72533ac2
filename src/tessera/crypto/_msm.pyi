"""Typed interface of the native extension built from ``_msm.c`` (libsecp256k1's ecmult_multi)."""

LIBSECP256K1_VERSION: str

def msm(points: bytes, scalars: bytes, g_scalar: bytes | None = None) -> bytes: ...
