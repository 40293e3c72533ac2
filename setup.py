"""Build of the one native extension, ``tessera.crypto._msm``; everything else is in pyproject.toml.

It compiles Tessera's glue (``src/tessera/crypto/_msm.c``) against the libsecp256k1 sources
vendored in ``third_party/secp256k1`` (version, origin and hash in its README).
"""

import sys

from setuptools import Extension, setup

SECP256K1 = "third_party/secp256k1"

flags = [] if sys.platform == "win32" else ["-O2", "-Wno-unused-function"]

setup(
    ext_modules=[
        Extension(
            "tessera.crypto._msm",
            sources=["src/tessera/crypto/_msm.c", f"{SECP256K1}/src/precomputed_ecmult.c"],
            include_dirs=[f"{SECP256K1}/include", f"{SECP256K1}/src"],
            define_macros=[("ECMULT_WINDOW_SIZE", "15"), ("USE_EXTERNAL_DEFAULT_CALLBACKS", "1")],
            extra_compile_args=flags,
        )
    ]
)
