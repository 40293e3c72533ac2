"""A model and its parameters as canonical bytes: what is stored and addressed by CID.

``b"tessera-model/v1\\n" ‖ JSON header (sorted keys, no spaces) ‖ b"\\n" ‖ parameters as
little-endian float64``. The header names the model and its shape; the same model and
parameters always give the same bytes, hence the same CID.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tessera.errors import DecodeError
from tessera.learning.models import (
    MLP,
    Array,
    LinearRegression,
    LogisticRegression,
    Model,
    SoftmaxRegression,
)

MAGIC = b"tessera-model/v1\n"
_MAX_HEADER = 1 << 16


def model_spec(model: Model) -> dict[str, Any]:
    """The JSON description of a model (kind and shape): :meth:`Model.spec`."""
    return model.spec()


def model_from_spec(spec: dict[str, Any]) -> Model:
    """The model a :func:`model_spec` describes; ``DecodeError`` for anything else (a
    ``torch`` model without the ``torch`` extra installed included)."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "torch":
        try:
            from tessera.learning.torch_model import TorchModel
        except ImportError as exc:
            raise DecodeError(
                "model header: a torch model needs PyTorch (pip install 'tessera[torch]')"
            ) from exc
        try:
            return TorchModel.from_spec(spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"model header: {exc}") from exc
    try:
        features, l2 = int(spec["features"]), float(spec["l2"])
        if kind == "mlp":
            return MLP(features, int(spec["hidden"]), int(spec["classes"]), l2=l2)
        if kind == "softmax":
            return SoftmaxRegression(features, int(spec["classes"]), l2=l2)
        if kind == "logistic":
            return LogisticRegression(features, l2=l2)
        if kind == "linear":
            return LinearRegression(features, l2=l2)
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"model header: {exc}") from exc
    raise DecodeError(f"model header: unknown kind {kind!r}")


def encode_model(model: Model, params: Array, meta: dict[str, Any] | None = None) -> bytes:
    """Canonical bytes of ``model`` with ``params`` (and JSON-able ``meta``: round, parent...)."""
    if params.shape != (model.num_params,):
        raise ValueError(f"expected {model.num_params} parameters, got {params.shape}")
    if not np.isfinite(params).all():
        raise ValueError("parameters must be finite")
    header = {"model": model_spec(model), "num_params": model.num_params, "meta": meta or {}}
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return MAGIC + text.encode() + b"\n" + np.asarray(params, dtype="<f8").tobytes()


def decode_model(data: bytes) -> tuple[Model, Array, dict[str, Any]]:
    """Strict inverse of :func:`encode_model`."""
    if not data.startswith(MAGIC):
        raise DecodeError("not a tessera model (bad magic)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        raise DecodeError("model header: missing or too long")
    try:
        header = json.loads(data[len(MAGIC) : end])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"model header: not JSON ({exc})") from exc
    if not isinstance(header, dict) or not isinstance(header.get("model"), dict):
        raise DecodeError("model header: expected an object with a model")
    model = model_from_spec(header["model"])
    body = data[end + 1 :]
    if header.get("num_params") != model.num_params or len(body) != 8 * model.num_params:
        raise DecodeError("model: parameter count does not match the header")
    params = np.frombuffer(body, dtype="<f8").astype(np.float64)
    if not np.isfinite(params).all():
        raise DecodeError("model: non-finite parameters")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise DecodeError("model header: meta must be an object")
    if encode_model(model, params, meta) != data:
        raise DecodeError("model: not in canonical form")
    return model, params, meta
