"""PyTorch models over Tessera's flat parameter vectors (the ``torch`` extra).

A :class:`TorchModel` is a :class:`~tessera.learning.models.Model` like the built-in
numpy ones: its parameters are one ``float64`` vector, which a provider trains on its
rows, clips, quantises and secret-shares; gradients (mean and per row, for DP-FedSGD's
per-row clipping) come from :mod:`torch.func`. Everything downstream (the norm proofs,
the nodes' noise, the privacy accounting, the ledger, the model registry) is unchanged.

**What crosses the network is a description, never code.** A training ticket names the
model by its :meth:`~TorchModel.spec`: the input width, the task and a sequence of layers
from a fixed vocabulary (:data:`LAYERS`). A provider builds the module from that
description itself, so it runs no code an analyst sent (no pickle, no TorchScript). Any
``nn.Sequential`` of those layers converts with :meth:`TorchModel.from_module`; a module
with other layers is refused with the layer it cannot describe.

**Layout.** The vector is the module's parameters in ``named_parameters()`` order, each
flattened row-major (a ``Linear``'s weight is ``(out, in)``, as PyTorch stores it; the
built-in numpy models store ``(in, out)``). :meth:`~TorchModel.to_module` gives the
trained ``nn.Sequential`` back.

**Bounds.** A description is untrusted input to a provider: at most :data:`MAX_LAYERS`
layers, :data:`MAX_PARAMS` parameters and :data:`MAX_ACTIVATIONS` values per row at any
layer, all checked from the description before anything is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.func import grad as func_grad

from tessera.learning.models import Array, Model

#: The layers a description may use, each with its integer arguments.
LAYERS: dict[str, tuple[str, ...]] = {
    "linear": ("in_features", "out_features"),
    "conv2d": ("in_channels", "out_channels", "kernel", "stride", "padding"),
    "maxpool2d": ("kernel",),
    "avgpool2d": ("kernel",),
    "flatten": (),
    "unflatten": ("channels", "height", "width"),
    "relu": (),
    "tanh": (),
    "sigmoid": (),
    "gelu": (),
}
MAX_LAYERS = 64
MAX_PARAMS = 10_000_000
MAX_ACTIVATIONS = 1 << 22
_MAX_WIDTH = 1 << 20
_MAX_KERNEL = 64

Layer = tuple[Any, ...]
Shape = tuple[int, ...]


def _arg(value: Any, name: str, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{where}: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_layer(raw: Any, i: int) -> Layer:
    where = f"layer {i}"
    if not isinstance(raw, (list, tuple)) or not raw or not isinstance(raw[0], str):
        raise ValueError(f"{where}: expected [kind, arguments...], got {raw!r}")
    kind = raw[0]
    if kind not in LAYERS:
        raise ValueError(f"{where}: unknown layer {kind!r} (one of {', '.join(LAYERS)})")
    names = LAYERS[kind]
    if len(raw) != 1 + len(names):
        need = ", ".join(names) or "no arguments"
        raise ValueError(f"{where}: {kind} takes {need}, got {list(raw[1:])!r}")
    limits = {"kernel": (1, _MAX_KERNEL), "stride": (1, _MAX_KERNEL), "padding": (0, _MAX_KERNEL)}
    args = tuple(
        _arg(v, n, *limits.get(n, (1, _MAX_WIDTH)), f"{where} ({kind})")
        for v, n in zip(raw[1:], names, strict=True)
    )
    return (kind, *args)


def _plan(layers: Sequence[Layer], features: int) -> tuple[list[Shape], int]:
    """Each layer's output shape (per row) and the parameter count, from the
    description alone; ``ValueError`` naming the first layer that does not fit."""
    shape: Shape = (features,)
    shapes: list[Shape] = []
    params = 0
    for i, (kind, *a) in enumerate(layers):
        where = f"layer {i} ({kind})"
        if kind == "linear":
            if shape != (a[0],):
                raise ValueError(f"{where}: expects {a[0]} inputs, gets shape {shape}")
            shape, params = (a[1],), params + a[0] * a[1] + a[1]
        elif kind == "conv2d":
            if len(shape) != 3 or shape[0] != a[0]:
                raise ValueError(f"{where}: expects ({a[0]}, height, width), gets {shape}")
            c_out, k, s, p = a[1], a[2], a[3], a[4]
            h, w = ((d + 2 * p - k) // s + 1 for d in shape[1:])
            if h < 1 or w < 1:
                raise ValueError(f"{where}: kernel {k} does not fit an input of {shape}")
            shape, params = (c_out, h, w), params + c_out * a[0] * k * k + c_out
        elif kind in ("maxpool2d", "avgpool2d"):
            if len(shape) != 3 or shape[1] < a[0] or shape[2] < a[0]:
                raise ValueError(f"{where}: a {a[0]}x{a[0]} window does not fit {shape}")
            shape = (shape[0], shape[1] // a[0], shape[2] // a[0])
        elif kind == "flatten":
            shape = (math.prod(shape),)
        elif kind == "unflatten":
            if shape != (a[0] * a[1] * a[2],):
                raise ValueError(f"{where}: cannot shape {shape} as {tuple(a)}")
            shape = (a[0], a[1], a[2])
        if params > MAX_PARAMS:
            raise ValueError(f"{where}: more than {MAX_PARAMS:,} parameters")
        if math.prod(shape) > MAX_ACTIVATIONS:
            raise ValueError(f"{where}: {shape} is more than {MAX_ACTIVATIONS:,} values per row")
        shapes.append(shape)
    return shapes, params


def _module(layer: Layer) -> nn.Module:
    kind, *a = layer
    if kind == "linear":
        return nn.Linear(a[0], a[1], dtype=torch.float64, device="meta")
    if kind == "conv2d":
        return nn.Conv2d(
            a[0], a[1], a[2], stride=a[3], padding=a[4], dtype=torch.float64, device="meta"
        )
    if kind == "maxpool2d":
        return nn.MaxPool2d(a[0])
    if kind == "avgpool2d":
        return nn.AvgPool2d(a[0])
    if kind == "flatten":
        return nn.Flatten()
    if kind == "unflatten":
        return nn.Unflatten(1, (a[0], a[1], a[2]))
    activations: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
    }
    return activations[kind]()


def _pair(value: Any) -> int | None:
    """A square size (``3`` or ``(3, 3)``) as one integer; ``None`` if not square."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def _describe(child: nn.Module, i: int) -> Layer:
    """The description of one layer of an ``nn.Sequential``, if it has an exact one."""
    name = type(child).__name__
    why = "no exact description"
    if isinstance(child, nn.Linear):
        if child.bias is not None:
            return ("linear", child.in_features, child.out_features)
        why = "a Linear without bias"
    elif isinstance(child, nn.Conv2d):
        k, s, p = _pair(child.kernel_size), _pair(child.stride), _pair(child.padding)
        plain = child.groups == 1 and _pair(child.dilation) == 1 and child.bias is not None
        if plain and child.padding_mode == "zeros" and None not in (k, s, p):
            return ("conv2d", child.in_channels, child.out_channels, k, s, p)
        why = "only square, ungrouped, undilated, zero-padded Conv2d with bias"
    elif isinstance(child, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s = _pair(child.kernel_size), _pair(child.stride)
        plain = _pair(child.padding) == 0 and not child.ceil_mode
        if isinstance(child, nn.MaxPool2d):
            plain = plain and _pair(child.dilation) == 1 and not child.return_indices
        else:
            plain = plain and child.count_include_pad and child.divisor_override is None
        if plain and k is not None and s == k:
            return ("maxpool2d" if isinstance(child, nn.MaxPool2d) else "avgpool2d", k)
        why = "only square pooling with stride = kernel and no padding"
    elif isinstance(child, nn.Flatten):
        if child.start_dim == 1 and child.end_dim == -1:
            return ("flatten",)
        why = "only Flatten() of every dimension after the row's"
    elif isinstance(child, nn.Unflatten):
        size = tuple(child.unflattened_size)
        if child.dim == 1 and len(size) == 3 and all(isinstance(d, int) for d in size):
            return ("unflatten", *size)
        why = "only Unflatten(1, (channels, height, width))"
    elif isinstance(child, nn.GELU):
        if child.approximate == "none":
            return ("gelu",)
        why = "only the exact GELU"
    elif isinstance(child, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
        return (name.lower(),)
    raise ValueError(
        f"layer {i} ({name}): {why}; a torch model is described by layers "
        f"({', '.join(LAYERS)}) that every provider builds itself"
    )


class TorchModel(Model):
    """A PyTorch ``nn.Sequential`` (float64) over a flat parameter vector.

    ``task`` is ``"classification"`` (the last layer gives ``classes`` logits, the loss
    is cross-entropy, labels are class indices) or ``"regression"`` (one output, the
    loss ``(y - ŷ)² / 2``); ``l2`` adds ``l2·|θ|²/2`` to the local loss, as the built-in
    models do."""

    def __init__(
        self,
        layers: Sequence[Sequence[Any]],
        *,
        features: int,
        task: str = "classification",
        classes: int | None = None,
        l2: float = 0.0,
    ) -> None:
        self.features = _arg(features, "features", 1, _MAX_WIDTH, "torch model")
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be classification or regression, not {task!r}")
        if not isinstance(layers, (list, tuple)) or not 1 <= len(layers) <= MAX_LAYERS:
            raise ValueError(f"a torch model has 1 to {MAX_LAYERS} layers")
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
            raise ValueError(f"l2 must be a non-negative number, got {l2!r}")
        if not math.isfinite(l2):
            raise ValueError(f"l2 must be finite, got {l2!r}")
        self.task = task
        self.l2 = float(l2)
        self.layers: tuple[Layer, ...] = tuple(_check_layer(raw, i) for i, raw in enumerate(layers))
        shapes, self._num_params = _plan(self.layers, self.features)
        if task == "classification":
            self.classes: int | None = _arg(classes, "classes", 2, _MAX_WIDTH, "torch model")
            if shapes[-1] != (self.classes,):
                raise ValueError(
                    f"the last layer gives {shapes[-1]}, not the {self.classes} class logits"
                )
        else:
            if classes is not None:
                raise ValueError("a regression has no classes")
            self.classes = None
            if shapes[-1] != (1,):
                raise ValueError(f"a regression's last layer gives {shapes[-1]}, not one value")
        self.module = nn.Sequential(*(_module(layer) for layer in self.layers))
        self._slots = [
            (name, math.prod(p.shape), tuple(p.shape)) for name, p in self.module.named_parameters()
        ]
        self._grad = func_grad(self._loss_of)
        self._row_grads = vmap(func_grad(self._row_loss), in_dims=(None, 0, 0))

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module,
        *,
        features: int,
        task: str = "classification",
        classes: int | None = None,
        l2: float = 0.0,
    ) -> TorchModel:
        """The model of an ``nn.Sequential`` (or a single layer) of :data:`LAYERS`'
        kinds; ``ValueError`` naming the first layer that has no exact description.
        :meth:`params_of` gives the module's own weights as a starting point."""
        children = list(module) if isinstance(module, nn.Sequential) else [module]
        layers = [_describe(child, i) for i, child in enumerate(children)]
        return cls(layers, features=features, task=task, classes=classes, l2=l2)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TorchModel:
        """The inverse of :meth:`spec` (strict: no other keys)."""
        allowed = {"kind", "features", "task", "classes", "layers", "l2"}
        if not isinstance(spec, dict) or spec.get("kind") != "torch":
            raise ValueError("not a torch model's description")
        extra = sorted(set(spec) - allowed)
        if extra:
            raise ValueError(f"unknown key(s) in a torch model's description: {extra}")
        return cls(
            spec["layers"],
            features=spec["features"],
            task=spec["task"],
            classes=spec.get("classes"),
            l2=spec["l2"],
        )

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "torch",
            "features": self.features,
            "task": self.task,
            "layers": [list(layer) for layer in self.layers],
            "l2": self.l2,
        }
        if self.classes is not None:
            out["classes"] = self.classes
        return out

    # -- parameters ---------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return self._num_params

    def init(self, rng: np.random.Generator) -> Array:
        """Glorot-uniform weights and zero biases, drawn from ``rng`` (PyTorch's global
        generator is not touched, so the same seed gives the same model anywhere)."""
        out = np.zeros(self.num_params)
        start = 0
        for name, size, shape in self._slots:
            if name.endswith("weight"):
                receptive = math.prod(shape[2:])
                fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                out[start : start + size] = rng.uniform(-limit, limit, size=size)
            start += size
        return out

    def _tensors(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, size, shape in self._slots:
            out[name] = flat[start : start + size].view(shape)
            start += size
        return out

    def params_of(self, module: nn.Module) -> Array:
        """A module's current weights as this model's parameter vector (the module must
        have this model's layers: :meth:`from_module` of it gives the same :meth:`spec`)."""
        theirs = dict(module.named_parameters())
        if [(n, tuple(p.shape)) for n, p in theirs.items()] != [(n, s) for n, _, s in self._slots]:
            raise ValueError("the module's parameters are not this model's")
        out: Array = np.concatenate(
            [theirs[n].detach().to(torch.float64).reshape(-1).numpy() for n, _, _ in self._slots]
        )
        return out

    def to_module(self, params: Array) -> nn.Sequential:
        """A new ``nn.Sequential`` (float64, on the CPU) holding ``params``."""
        if params.shape != (self.num_params,):
            raise ValueError(f"expected {self.num_params} parameters, got {params.shape}")
        module = nn.Sequential(*(_module(layer) for layer in self.layers)).to_empty(device="cpu")
        flat = torch.from_numpy(np.array(params, dtype=np.float64))
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(self._tensors(flat)[name])
        return module

    # -- the Model interface ---------------------------------------------------------
    def _inputs(self, params: Array, x: Array) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(params, x)
        flat = torch.from_numpy(np.ascontiguousarray(params, dtype=np.float64))
        return flat, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))

    def _targets(self, y: Any, rows: int) -> torch.Tensor:
        t: Any
        if self.classes is None:
            t = np.ascontiguousarray(np.asarray(y, dtype=np.float64).reshape(-1))
        else:
            t = np.asarray(y, dtype=np.int64).reshape(-1)
            if t.size and (t.min() < 0 or t.max() >= self.classes):
                raise ValueError(f"labels must be class indices in [0, {self.classes})")
        if t.shape[0] != rows:
            raise ValueError(f"expected {rows} labels, got {t.shape[0]}")
        return torch.from_numpy(np.ascontiguousarray(t))

    def _forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = functional_call(self.module, self._tensors(flat), (x,))
        return out

    def _loss_of(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self._forward(flat, x)
        if self.classes is None:
            loss = 0.5 * ((out[:, 0] - y) ** 2).mean()
        else:
            loss = F.cross_entropy(out, y)
        if self.l2:
            loss = loss + 0.5 * self.l2 * flat.dot(flat)
        return loss

    def _row_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss_of(flat, x.unsqueeze(0), y.unsqueeze(0))

    def per_example_grads(self, params: Array, x: Array, y: Any) -> Array:
        flat, xt = self._inputs(params, x)
        yt = self._targets(y, x.shape[0])
        if x.shape[0] == 0:
            return np.zeros((0, self.num_params))
        out: Array = self._row_grads(flat, xt, yt).numpy()
        return out

    def grad(self, params: Array, x: Array, y: Any) -> Array:
        flat, xt = self._inputs(params, x)
        out: Array = self._grad(flat, xt, self._targets(y, x.shape[0])).numpy()
        return out

    def loss(self, params: Array, x: Array, y: Any) -> float:
        flat, xt = self._inputs(params, x)
        with torch.no_grad():
            return float(self._loss_of(flat, xt, self._targets(y, x.shape[0])))

    def predict(self, params: Array, x: Array) -> Any:
        flat, xt = self._inputs(params, x)
        with torch.no_grad():
            out = self._forward(flat, xt)
        if self.classes is None:
            return out[:, 0].numpy().copy()
        return out.argmax(dim=1).numpy().astype(np.int64)
