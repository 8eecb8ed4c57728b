"""Torch modules for the Keras layers that ConvLSTM models are made of, in Keras's own layout.

Each module computes what the Keras layer computes (TensorFlow's asymmetric ``'same'`` padding
included) on tensors laid out as in Keras (``channels_last`` by default), and keeps its weights in
Keras's layout, in Keras's order (:meth:`KerasLayer.keras_weights`), so that Keras files map onto
them one to one. They are built from Keras layer configs by :func:`build_layer`; the ConvLSTM
layers themselves are :class:`convlstm.ConvLSTM1D` / ``2D`` / ``3D`` and :class:`convlstm.Bidirectional`.

Shapes follow Keras: ``(batch, ...)`` with the channel axis last for ``channels_last`` layers and
right after the batch axis for ``channels_first`` ones.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import activations as _activations
from .._ops import ConvPlan, cached_plan, keras_to_torch_kernel, normalize_tuple, same_pads
from ..layers import ConvLSTM, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from ..wrappers import Bidirectional
from ._safe import KerasFileError

__all__ = ["KerasLayer", "BUILDERS", "SUPPORTED_LAYERS", "build_layer", "resolve_activation", "BuildContext"]

Shape = Tuple[int, ...]


class BuildContext:
    """What building a layer needs to know about the file: the Keras major version (2 or 3),
    which decides what ``'hard_sigmoid'`` means."""

    def __init__(self, keras_major: int = 3):
        self.keras_major = int(keras_major)


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, dim=-1)


_EXTRA_ACTIVATIONS = {"softmax": _softmax, "log_softmax": _log_softmax}


def activation_name(identifier: Any, *, layer: str) -> Optional[str]:
    """The activation name from a Keras config value (a name, ``None``, or a serialized dict)."""
    if identifier is None or isinstance(identifier, str):
        return identifier
    if isinstance(identifier, dict):
        cfg = identifier.get("config")
        if isinstance(cfg, str):
            return cfg
        if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
            return cfg["name"]
        name = identifier.get("class_name")
        if isinstance(name, str):
            return name
    raise KerasFileError(f"layer {layer!r}: cannot read the activation {identifier!r}")


def resolve_activation(identifier: Any, ctx: BuildContext, *, layer: str, parameter: str = "activation"):
    """A torch function for a Keras activation; Keras 2's ``'hard_sigmoid'`` is the 0.2-slope one."""
    name = activation_name(identifier, layer=layer)
    if name is None:
        return _activations.linear
    if name == "hard_sigmoid" and ctx.keras_major < 3:
        name = "keras2_hard_sigmoid"
    if name in _EXTRA_ACTIVATIONS:
        return _EXTRA_ACTIVATIONS[name]
    try:
        return _activations.get(name, parameter=parameter)
    except ValueError:
        known = sorted(set(_activations.ACTIVATIONS) | set(_EXTRA_ACTIVATIONS))
        raise KerasFileError(f"layer {layer!r}: unknown {parameter} {name!r}; supported: {', '.join(known)}") from None


def _channels_first(config: dict) -> bool:
    fmt = config.get("data_format") or "channels_last"
    if fmt not in ("channels_last", "channels_first"):
        raise KerasFileError(f"layer {config.get('name')!r}: data_format={fmt!r} is not supported")
    return fmt == "channels_first"


class KerasLayer(nn.Module):
    """Base of the Keras-equivalent layers: ``build(input_shapes)`` creates the weights (as Keras's
    ``build``), :meth:`keras_weights` lists them in Keras's order and layout."""

    keras_class: str = ""

    def __init__(self, config: dict):
        super().__init__()
        self.keras_name = str(config.get("name", ""))

    def build(self, shapes: List[Shape]) -> None:  # noqa: D401 - layers without weights
        """Create the weights for the given input shapes (batch axis included)."""

    def keras_weights(self) -> List[Tuple[str, torch.Tensor]]:
        """``(name, tensor)`` pairs in Keras's order and layout (writable views)."""
        return []

    def extra_repr(self) -> str:
        return f"keras_name={self.keras_name!r}"


# ---------------------------------------------------------------------------------------- conv
class Conv(KerasLayer):
    """Keras's ``Conv1D/2D/3D`` (``padding`` ``'valid'``, ``'same'`` or, for 1D, ``'causal'``)
    and ``Conv1DTranspose/Conv2DTranspose/Conv3DTranspose``.

    Weights: ``kernel`` of shape ``kernel_size + (C_in // groups, filters)`` (transposed:
    ``kernel_size + (filters, C_in)``), ``bias`` of ``(filters,)``.

    Shape: ``(B, *S, C_in)`` -> ``(B, *S', filters)`` (channels_last), or channels first.
    """

    def __init__(self, rank: int, config: dict, ctx: BuildContext, transpose: bool = False):
        super().__init__(config)
        name = self.keras_name
        self.rank, self.transpose = rank, transpose
        self.keras_class = f"Conv{rank}D" + ("Transpose" if transpose else "")
        try:
            self.filters = int(config["filters"])
            self.kernel_size = normalize_tuple(config["kernel_size"], rank, "kernel_size")
            self.strides = normalize_tuple(config.get("strides", 1), rank, "strides")
            self.dilation = normalize_tuple(config.get("dilation_rate", 1), rank, "dilation_rate")
            op = config.get("output_padding")
            self.output_padding = None if op is None else normalize_tuple(op, rank, "output_padding", minimum=0)
        except (KeyError, TypeError, ValueError) as err:
            raise KerasFileError(f"layer {name!r} ({self.keras_class}): bad config: {err}") from None
        self.padding = str(config.get("padding", "valid")).lower()
        allowed = ("valid", "same", "causal") if rank == 1 and not transpose else ("valid", "same")
        if self.padding not in allowed:
            raise KerasFileError(f"layer {name!r} ({self.keras_class}): padding={self.padding!r} is not supported")
        self.groups = int(config.get("groups", 1) or 1)
        self.channels_first = _channels_first(config)
        self.activation = resolve_activation(config.get("activation"), ctx, layer=name)
        self.use_bias = bool(config.get("use_bias", True))
        self.kernel: Optional[nn.Parameter] = None
        self.bias: Optional[nn.Parameter] = None
        self._plans: Dict[Shape, ConvPlan] = {}

    def build(self, shapes):
        shape = shapes[0]
        cin = int(shape[1] if self.channels_first else shape[-1])
        if self.transpose:
            kshape = self.kernel_size + (self.filters, cin)
        else:
            if cin % self.groups:
                raise KerasFileError(f"layer {self.keras_name!r}: {cin} input channels do not split into "
                                     f"groups={self.groups}")
            kshape = self.kernel_size + (cin // self.groups, self.filters)
        self.kernel = nn.Parameter(torch.zeros(kshape))
        if self.use_bias:
            self.bias = nn.Parameter(torch.zeros(self.filters))

    def keras_weights(self):
        out = [("kernel", self.kernel)]
        if self.bias is not None:
            out.append(("bias", self.bias))
        return out

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        weight = keras_to_torch_kernel(self.kernel, self.rank)
        spatial = tuple(x.shape[2:])
        if self.padding == "causal":
            x = F.pad(x, ((self.kernel_size[0] - 1) * self.dilation[0], 0))
            spatial, padding = tuple(x.shape[2:]), "valid"
        else:
            padding = self.padding
        plan = cached_plan(self._plans, spatial, lambda: ConvPlan(self.rank, spatial, self.kernel_size, self.strides,
                                                                 self.dilation, padding, self.groups))
        return plan(x, weight, self.bias)

    def _conv_transpose(self, x: torch.Tensor) -> torch.Tensor:
        # TensorFlow's conv_transpose is the gradient of a convolution: compute the full transposed
        # convolution, then keep the window [left, left + L) of each axis (zeros past its end).
        weight = keras_to_torch_kernel(self.kernel, self.rank)  # (C_in, F) + kernel_size
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[self.rank]
        full = fn(x, weight, None, self.strides, 0, 0, 1, self.dilation)
        for axis in range(self.rank):
            n, k, s, d = x.shape[2 + axis], self.kernel_size[axis], self.strides[axis], self.dilation[axis]
            k_eff = k + (k - 1) * (d - 1)
            if self.output_padding is None:
                length = n * s + max(k_eff - s, 0) if self.padding == "valid" else n * s
            else:
                pad = k_eff // 2 if self.padding == "same" else 0
                length = (n - 1) * s + k_eff - 2 * pad + self.output_padding[axis]
            left = 0 if self.padding == "valid" else max((n - 1) * s + k_eff - length, 0) // 2
            have = full.shape[2 + axis]
            if left + length > have:
                pads = [0, 0] * self.rank
                pads[2 * (self.rank - 1 - axis) + 1] = left + length - have
                full = F.pad(full, pads)
            full = full.narrow(2 + axis, left, length)
        if self.bias is not None:
            full = full + self.bias.view(1, -1, *([1] * self.rank))
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_first:
            x = x.movedim(-1, 1)
        y = self._conv_transpose(x) if self.transpose else self._conv(x)
        y = self.activation(y)
        return y if self.channels_first else y.movedim(1, -1)


class Dense(KerasLayer):
    """Keras's ``Dense`` on the last axis: ``activation(x @ kernel + bias)``.

    Weights: ``kernel`` ``(in, units)``, ``bias`` ``(units,)``. Shape: ``(B, ..., in)`` -> ``(B, ..., units)``.
    """

    keras_class = "Dense"

    def __init__(self, config, ctx):
        super().__init__(config)
        self.units = int(config["units"])
        self.activation = resolve_activation(config.get("activation"), ctx, layer=self.keras_name)
        self.use_bias = bool(config.get("use_bias", True))
        self.kernel = self.bias = None

    def build(self, shapes):
        self.kernel = nn.Parameter(torch.zeros(int(shapes[0][-1]), self.units))
        if self.use_bias:
            self.bias = nn.Parameter(torch.zeros(self.units))

    def keras_weights(self):
        return [("kernel", self.kernel)] + ([("bias", self.bias)] if self.bias is not None else [])

    def forward(self, x):
        y = torch.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)


class BatchNormalization(KerasLayer):
    """Keras's ``BatchNormalization`` over ``axis`` (default -1).

    Eval: ``(x - moving_mean) * gamma / sqrt(moving_variance + epsilon) + beta``. Train: batch
    statistics, and ``moving = moving * momentum + batch * (1 - momentum)`` as Keras.
    Weights (Keras order): ``gamma`` (if scale), ``beta`` (if center), ``moving_mean``, ``moving_variance``.
    """

    keras_class = "BatchNormalization"

    def __init__(self, config, ctx):
        super().__init__(config)
        axis = config.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            if len(axis) != 1:
                raise KerasFileError(f"layer {self.keras_name!r}: BatchNormalization over several axes {axis} "
                                     "is not supported")
            axis = axis[0]
        self.axis = int(axis)
        self.epsilon = float(config.get("epsilon", 1e-3))
        self.momentum = float(config.get("momentum", 0.99))
        self.center, self.scale = bool(config.get("center", True)), bool(config.get("scale", True))
        for key in ("renorm", "virtual_batch_size"):
            if config.get(key):
                raise KerasFileError(f"layer {self.keras_name!r}: BatchNormalization {key}={config[key]!r} "
                                     "is not supported")
        self.gamma = self.beta = None

    def build(self, shapes):
        shape = shapes[0]
        self.ndim = len(shape)
        n = int(shape[self.axis])
        if self.scale:
            self.gamma = nn.Parameter(torch.ones(n))
        if self.center:
            self.beta = nn.Parameter(torch.zeros(n))
        self.register_buffer("moving_mean", torch.zeros(n))
        self.register_buffer("moving_variance", torch.ones(n))

    def keras_weights(self):
        out = []
        if self.gamma is not None:
            out.append(("gamma", self.gamma))
        if self.beta is not None:
            out.append(("beta", self.beta))
        return out + [("moving_mean", self.moving_mean), ("moving_variance", self.moving_variance)]

    def forward(self, x):
        axis = self.axis % x.dim()
        view = [1] * x.dim()
        view[axis] = -1
        if self.training:
            dims = [d for d in range(x.dim()) if d != axis]
            mean = x.mean(dim=dims)
            var = ((x - mean.view(view)) ** 2).mean(dim=dims)
            with torch.no_grad():
                self.moving_mean.mul_(self.momentum).add_(mean.detach() * (1 - self.momentum))
                self.moving_variance.mul_(self.momentum).add_(var.detach() * (1 - self.momentum))
        else:
            mean, var = self.moving_mean, self.moving_variance
        inv = torch.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma
        shift = -mean * inv
        if self.beta is not None:
            shift = shift + self.beta
        return x * inv.view(view) + shift.view(view)


# ---------------------------------------------------------------------------------------- pooling
class Pooling(KerasLayer):
    """Keras's ``MaxPooling1D/2D/3D`` and ``AveragePooling1D/2D/3D`` (TensorFlow's ``'same'``:
    max ignores the padding, average divides by the number of real elements)."""

    def __init__(self, rank: int, kind: str, config, ctx):
        super().__init__(config)
        self.rank, self.kind = rank, kind
        self.keras_class = f"{'Max' if kind == 'max' else 'Average'}Pooling{rank}D"
        pool = config.get("pool_size", config.get("pool_length", 2))
        self.pool = normalize_tuple(pool, rank, "pool_size")
        strides = config.get("strides", config.get("stride"))
        self.strides = self.pool if strides is None else normalize_tuple(strides, rank, "strides")
        self.padding = str(config.get("padding", "valid")).lower()
        if self.padding not in ("valid", "same"):
            raise KerasFileError(f"layer {self.keras_name!r}: padding={self.padding!r} is not supported")
        self.channels_first = _channels_first(config)

    def forward(self, x):
        if not self.channels_first:
            x = x.movedim(-1, 1)
        fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("max", 3): F.max_pool3d,
              ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d, ("avg", 3): F.avg_pool3d}[(self.kind, self.rank)]
        pads = None
        if self.padding == "same":
            per_axis = [same_pads(n, k, s, 1) for n, k, s in zip(x.shape[2:], self.pool, self.strides)]
            if any(a or b for a, b in per_axis):
                pads = tuple(p for pair in reversed(per_axis) for p in pair)
        if pads is None:
            y = fn(x, self.pool, self.strides)
        elif self.kind == "max":
            y = fn(F.pad(x, pads, value=-math.inf), self.pool, self.strides)
        else:
            total = fn(F.pad(x, pads), self.pool, self.strides)
            count = fn(F.pad(torch.ones_like(x[:1, :1]), pads), self.pool, self.strides)
            y = total / count
        return y if self.channels_first else y.movedim(1, -1)


class GlobalPooling(KerasLayer):
    """Keras's ``GlobalAveragePooling1D/2D/3D`` and ``GlobalMaxPooling1D/2D/3D``."""

    def __init__(self, rank: int, kind: str, config, ctx):
        super().__init__(config)
        self.rank, self.kind = rank, kind
        self.keras_class = f"Global{'Max' if kind == 'max' else 'Average'}Pooling{rank}D"
        self.channels_first = _channels_first(config)
        self.keepdims = bool(config.get("keepdims", False))

    def forward(self, x):
        dims = tuple(range(2, 2 + self.rank)) if self.channels_first else tuple(range(1, 1 + self.rank))
        if self.kind == "max":
            return torch.amax(x, dim=dims, keepdim=self.keepdims)
        return torch.mean(x, dim=dims, keepdim=self.keepdims)


class UpSampling(KerasLayer):
    """Keras's ``UpSampling1D/2D/3D``: repeat each element ``size`` times per axis (``'nearest'``),
    or TensorFlow's half-pixel ``'bilinear'`` (2D)."""

    def __init__(self, rank: int, config, ctx):
        super().__init__(config)
        self.rank = rank
        self.keras_class = f"UpSampling{rank}D"
        self.size = normalize_tuple(config.get("size", config.get("length", 2)), rank, "size")
        self.channels_first = rank > 1 and _channels_first(config)
        self.interpolation = str(config.get("interpolation", "nearest"))
        if self.interpolation not in ("nearest", "bilinear") or (self.interpolation == "bilinear" and rank != 2):
            raise KerasFileError(f"layer {self.keras_name!r}: interpolation={self.interpolation!r} is not supported "
                                 "(supported: 'nearest', and 'bilinear' for UpSampling2D)")

    def forward(self, x):
        first = 2 if self.channels_first else 1
        if self.interpolation == "bilinear":
            y = x if self.channels_first else x.movedim(-1, 1)
            y = F.interpolate(y, scale_factor=self.size, mode="bilinear", align_corners=False)
            return y if self.channels_first else y.movedim(1, -1)
        for axis, s in enumerate(self.size):
            if s != 1:
                x = torch.repeat_interleave(x, s, dim=first + axis)
        return x


def _pairs(value, rank: int, name: str, layer: str) -> List[Tuple[int, int]]:
    """Keras's padding/cropping spec (int, tuple of ints, or tuple of pairs) as (before, after) pairs."""
    try:
        if isinstance(value, int):
            return [(value, value)] * rank
        value = list(value)
        if rank == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [(int(value[0]), int(value[1]))]
        if len(value) != rank:
            raise ValueError
        out = []
        for v in value:
            if isinstance(v, int):
                out.append((v, v))
            else:
                a, b = v
                out.append((int(a), int(b)))
        return out
    except (TypeError, ValueError):
        raise KerasFileError(f"layer {layer!r}: cannot read {name}={value!r}") from None


class ZeroPadding(KerasLayer):
    """Keras's ``ZeroPadding1D/2D/3D``."""

    def __init__(self, rank, config, ctx):
        super().__init__(config)
        self.rank = rank
        self.keras_class = f"ZeroPadding{rank}D"
        self.pads = _pairs(config.get("padding", 1), rank, "padding", self.keras_name)
        self.channels_first = rank > 1 and _channels_first(config)

    def forward(self, x):
        first = 2 if self.channels_first else 1
        spec = []
        for axis in range(x.dim() - 1, 0, -1):  # F.pad takes the last axis first
            i = axis - first
            spec += list(self.pads[i]) if 0 <= i < self.rank else [0, 0]
        return F.pad(x, spec)


class Cropping(KerasLayer):
    """Keras's ``Cropping1D/2D/3D``."""

    def __init__(self, rank, config, ctx):
        super().__init__(config)
        self.rank = rank
        self.keras_class = f"Cropping{rank}D"
        self.crops = _pairs(config.get("cropping", 1), rank, "cropping", self.keras_name)
        self.channels_first = rank > 1 and _channels_first(config)

    def forward(self, x):
        first = 2 if self.channels_first else 1
        for i, (a, b) in enumerate(self.crops):
            n = x.shape[first + i]
            x = x.narrow(first + i, a, n - a - b)
        return x


# ---------------------------------------------------------------------------------------- reshaping
class Flatten(KerasLayer):
    """Keras's ``Flatten``: ``(B, ...)`` -> ``(B, prod(...))`` (channels moved last first when
    ``data_format='channels_first'``, as Keras)."""

    keras_class = "Flatten"

    def __init__(self, config, ctx):
        super().__init__(config)
        self.channels_first = _channels_first(config)

    def forward(self, x):
        if self.channels_first and x.dim() > 2:
            x = x.movedim(1, -1)
        return x.reshape(x.shape[0], -1)


class Reshape(KerasLayer):
    """Keras's ``Reshape(target_shape)``: ``(B, ...)`` -> ``(B, *target_shape)`` (one -1 allowed)."""

    keras_class = "Reshape"

    def __init__(self, config, ctx):
        super().__init__(config)
        self.target_shape = tuple(int(v) for v in config["target_shape"])

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.target_shape)


class Permute(KerasLayer):
    """Keras's ``Permute(dims)`` (1-based, batch axis excluded)."""

    keras_class = "Permute"

    def __init__(self, config, ctx):
        super().__init__(config)
        self.dims = tuple(int(v) for v in config["dims"])
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise KerasFileError(f"layer {self.keras_name!r}: Permute dims={self.dims} is not a permutation of 1..n")

    def forward(self, x):
        return x.permute(0, *self.dims)


class RepeatVector(KerasLayer):
    """Keras's ``RepeatVector(n)``: ``(B, F)`` -> ``(B, n, F)``."""

    keras_class = "RepeatVector"

    def __init__(self, config, ctx):
        super().__init__(config)
        self.n = int(config["n"])

    def forward(self, x):
        return x.unsqueeze(1).expand(x.shape[0], self.n, x.shape[1]).contiguous()


class Dropout(KerasLayer):
    """Keras's ``Dropout`` and ``SpatialDropout1D/2D/3D``: the identity in eval mode; in training,
    inverted dropout (spatial: whole channels)."""

    def __init__(self, config, ctx, spatial_rank: int = 0):
        super().__init__(config)
        self.keras_class = f"SpatialDropout{spatial_rank}D" if spatial_rank else "Dropout"
        self.rate = float(config.get("rate", 0.0))
        self.spatial_rank = spatial_rank
        self.channels_first = spatial_rank > 1 and _channels_first(config)

    def forward(self, x):
        if not self.training or not 0.0 < self.rate < 1.0:
            return x
        if not self.spatial_rank:
            return F.dropout(x, self.rate, True)
        shape = [1] * x.dim()
        shape[0] = x.shape[0]
        shape[1 if self.channels_first else -1] = x.shape[1 if self.channels_first else -1]
        keep = (torch.rand(shape, device=x.device) >= self.rate).to(x.dtype) / (1.0 - self.rate)
        return x * keep


class Activation(KerasLayer):
    """Keras's ``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU`` and ``Softmax`` layers."""

    def __init__(self, kind: str, config, ctx):
        super().__init__(config)
        self.keras_class = kind
        self.kind = kind
        if kind == "Activation":
            self.fn = resolve_activation(config.get("activation"), ctx, layer=self.keras_name)
        elif kind == "ReLU":
            mv = config.get("max_value")
            self.max_value = None if mv is None else float(mv)
            self.negative_slope = float(config.get("negative_slope", 0.0) or 0.0)
            self.threshold = float(config.get("threshold", 0.0) or 0.0)
        elif kind == "LeakyReLU":
            self.negative_slope = float(config.get("negative_slope", config.get("alpha", 0.3)))
        elif kind == "ELU":
            self.alpha = float(config.get("alpha", 1.0))
        elif kind == "Softmax":
            axis = config.get("axis", -1)
            self.axis = int(axis[0] if isinstance(axis, (list, tuple)) else axis)

    def forward(self, x):
        if self.kind == "Activation":
            return self.fn(x)
        if self.kind == "ReLU":  # Keras's relu(x, negative_slope, max_value, threshold)
            negative = torch.relu(self.threshold - x) if self.negative_slope else None
            y = x * (x > self.threshold).to(x.dtype) if self.threshold else torch.relu(x)
            if self.max_value is not None:
                y = torch.clamp(y, 0.0, self.max_value)
            if negative is not None:
                y = y - self.negative_slope * negative
            return y
        if self.kind == "LeakyReLU":
            return F.leaky_relu(x, self.negative_slope)
        if self.kind == "ELU":
            return F.elu(x, self.alpha)
        return torch.softmax(x, dim=self.axis)


class Merge(KerasLayer):
    """Keras's ``Concatenate(axis)``, ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
    ``Minimum``: a list of tensors of one shape (concatenate: equal except along ``axis``) -> one."""

    def __init__(self, kind: str, config, ctx):
        super().__init__(config)
        self.keras_class = self.kind = kind
        self.axis = int(config.get("axis", -1))

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        inputs = list(inputs)
        if self.kind == "Concatenate":
            return torch.cat(inputs, dim=self.axis)
        if self.kind == "Subtract":
            if len(inputs) != 2:
                raise ValueError(f"Subtract takes exactly 2 inputs, got {len(inputs)}")
            return inputs[0] - inputs[1]
        out = inputs[0]
        for t in inputs[1:]:
            if self.kind in ("Add", "Average"):
                out = out + t
            elif self.kind == "Multiply":
                out = out * t
            elif self.kind == "Maximum":
                out = torch.maximum(out, t)
            else:
                out = torch.minimum(out, t)
        if self.kind == "Average":
            out = out / len(inputs)
        return out


class TimeDistributed(KerasLayer):
    """Keras's ``TimeDistributed(layer)``: apply ``layer`` to each time step.

    Shape: ``(B, T, ...)`` -> ``(B, T, ...')``; the inner layer sees ``(B * T, ...)``.
    """

    keras_class = "TimeDistributed"

    def __init__(self, config, ctx):
        super().__init__(config)
        inner = config.get("layer")
        if not isinstance(inner, dict):
            raise KerasFileError(f"layer {self.keras_name!r}: TimeDistributed without a 'layer' config")
        self.layer = build_layer(inner, ctx, parent=self.keras_name)
        if isinstance(self.layer, (ConvLSTM, Bidirectional)):
            raise KerasFileError(f"layer {self.keras_name!r}: TimeDistributed over a recurrent layer is not supported")

    def build(self, shapes):
        shape = shapes[0]
        inner_shape = (shape[0] * shape[1],) + tuple(shape[2:])
        build_module(self.layer, [inner_shape])

    def forward(self, x):
        b, t = x.shape[0], x.shape[1]
        y = self.layer(x.reshape((b * t,) + tuple(x.shape[2:])))
        return y.reshape((b, t) + tuple(y.shape[1:]))


# ---------------------------------------------------------------------------------------- ConvLSTM
_CONVLSTM = {"ConvLSTM1D": ConvLSTM1D, "ConvLSTM2D": ConvLSTM2D, "ConvLSTM3D": ConvLSTM3D}
_CONVLSTM_PARAMS = set(inspect.signature(ConvLSTM.__init__).parameters) - {"self", "in_channels", "peephole",
                                                                           "device", "dtype"}
_IGNORED_KEYS = {"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape", "time_major",
                 "implementation", "input_dtype", "build_config", "input_spec"}
_KERAS1_KEYS = {"nb_filter": "filters", "subsample": "strides", "border_mode": "padding",
                "init": "kernel_initializer", "inner_init": "recurrent_initializer",
                "inner_activation": "recurrent_activation", "dropout_W": "dropout", "dropout_U": "recurrent_dropout",
                "W_regularizer": "kernel_regularizer", "U_regularizer": "recurrent_regularizer",
                "b_regularizer": "bias_regularizer"}
_WEIGHT_RULES = ("kernel_initializer", "recurrent_initializer", "bias_initializer", "kernel_regularizer",
                 "recurrent_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                 "recurrent_constraint", "bias_constraint")


def _clean_rule(value):
    """A Keras 3 serialized initializer/regularizer/constraint reduced to ``{class_name, config}``."""
    if isinstance(value, dict) and "class_name" in value:
        return {"class_name": value["class_name"], "config": value.get("config") or {}}
    return value


def convlstm_kwargs(class_name: str, config: dict, ctx: BuildContext) -> Dict[str, Any]:
    """Constructor arguments of :class:`convlstm.ConvLSTM2D` (etc.) from a Keras layer config,
    Keras 1 argument names included; Keras 2's ``'hard_sigmoid'`` becomes ``'keras2_hard_sigmoid'``."""
    name = config.get("name")
    cfg = {}
    for key, value in config.items():
        key = _KERAS1_KEYS.get(key, key)
        cfg[key] = value
    if "nb_row" in cfg:  # Keras 1
        cfg["kernel_size"] = (int(cfg.pop("nb_row")), int(cfg.pop("nb_col")))
    if "dim_ordering" in cfg:
        cfg["data_format"] = {"th": "channels_first", "tf": "channels_last"}.get(cfg.pop("dim_ordering"), "channels_last")
    for key in ("forget_bias_init", "U_regularizer", "consume_less"):
        cfg.pop(key, None)
    kwargs: Dict[str, Any] = {}
    for key, value in cfg.items():
        if key in _IGNORED_KEYS:
            continue
        if key not in _CONVLSTM_PARAMS:
            raise KerasFileError(f"layer {name!r} ({class_name}): unsupported config key {key!r}={value!r}")
        kwargs[key] = value
    if kwargs.get("data_format") is None:
        kwargs.pop("data_format", None)
    for key in ("activation", "recurrent_activation"):
        if key in kwargs:
            act = activation_name(kwargs[key], layer=str(name))
            if act == "hard_sigmoid" and ctx.keras_major < 3:
                act = "keras2_hard_sigmoid"
            kwargs[key] = "linear" if act is None else act
    if ctx.keras_major < 3 and "recurrent_activation" not in kwargs:
        kwargs["recurrent_activation"] = "keras2_hard_sigmoid"
    for key in _WEIGHT_RULES:
        if key in kwargs:
            kwargs[key] = _clean_rule(kwargs[key])
    return kwargs


def _build_convlstm(class_name: str, config: dict, ctx: BuildContext) -> ConvLSTM:
    kwargs = convlstm_kwargs(class_name, config, ctx)
    cls = _CONVLSTM[class_name]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError):
        # Initializers/regularizers/constraints we cannot rebuild do not change the numbers of a
        # loaded model: retry without them before giving up.
        try:
            return cls(**{k: v for k, v in kwargs.items() if k not in _WEIGHT_RULES})
        except (TypeError, ValueError) as err:
            raise KerasFileError(f"layer {config.get('name')!r} ({class_name}): {err}") from None


def _build_bidirectional(config: dict, ctx: BuildContext) -> Bidirectional:
    name = config.get("name")
    inner = config.get("layer")
    if not isinstance(inner, dict) or inner.get("class_name") not in _CONVLSTM:
        got = inner.get("class_name") if isinstance(inner, dict) else inner
        raise KerasFileError(f"layer {name!r}: Bidirectional is supported around ConvLSTM1D/2D/3D only, got {got!r}")
    forward = _build_convlstm(inner["class_name"], inner.get("config") or {}, ctx)
    backward = None
    bcfg = config.get("backward_layer")
    if isinstance(bcfg, dict):
        if bcfg.get("class_name") not in _CONVLSTM:
            raise KerasFileError(f"layer {name!r}: backward_layer must be a ConvLSTM layer, got {bcfg.get('class_name')!r}")
        backward = _build_convlstm(bcfg["class_name"], bcfg.get("config") or {}, ctx)
    merge_mode = config.get("merge_mode", "concat")
    try:
        return Bidirectional(forward, merge_mode=merge_mode, backward_layer=backward)
    except (TypeError, ValueError) as err:
        raise KerasFileError(f"layer {name!r} (Bidirectional): {err}") from None


# ---------------------------------------------------------------------------------------- registry
def _reg() -> Dict[str, Callable[[dict, BuildContext], nn.Module]]:
    b: Dict[str, Callable[[dict, BuildContext], nn.Module]] = {}
    for cls_name in _CONVLSTM:
        b[cls_name] = (lambda n: lambda c, x: _build_convlstm(n, c, x))(cls_name)
    b["Bidirectional"] = _build_bidirectional
    for r in (1, 2, 3):
        b[f"Conv{r}D"] = (lambda r: lambda c, x: Conv(r, c, x))(r)
        b[f"Conv{r}DTranspose"] = (lambda r: lambda c, x: Conv(r, c, x, transpose=True))(r)
        b[f"MaxPooling{r}D"] = (lambda r: lambda c, x: Pooling(r, "max", c, x))(r)
        b[f"AveragePooling{r}D"] = (lambda r: lambda c, x: Pooling(r, "avg", c, x))(r)
        b[f"GlobalMaxPooling{r}D"] = (lambda r: lambda c, x: GlobalPooling(r, "max", c, x))(r)
        b[f"GlobalAveragePooling{r}D"] = (lambda r: lambda c, x: GlobalPooling(r, "avg", c, x))(r)
        b[f"UpSampling{r}D"] = (lambda r: lambda c, x: UpSampling(r, c, x))(r)
        b[f"ZeroPadding{r}D"] = (lambda r: lambda c, x: ZeroPadding(r, c, x))(r)
        b[f"Cropping{r}D"] = (lambda r: lambda c, x: Cropping(r, c, x))(r)
        b[f"SpatialDropout{r}D"] = (lambda r: lambda c, x: Dropout(c, x, spatial_rank=r))(r)
    # Keras 2 aliases
    b["Convolution1D"], b["Convolution2D"], b["Convolution3D"] = b["Conv1D"], b["Conv2D"], b["Conv3D"]
    b["Deconvolution2D"], b["Deconvolution3D"] = b["Conv2DTranspose"], b["Conv3DTranspose"]
    b["MaxPool1D"], b["MaxPool2D"], b["MaxPool3D"] = b["MaxPooling1D"], b["MaxPooling2D"], b["MaxPooling3D"]
    b["AvgPool1D"], b["AvgPool2D"], b["AvgPool3D"] = b["AveragePooling1D"], b["AveragePooling2D"], b["AveragePooling3D"]
    b["BatchNormalization"] = BatchNormalization
    b["Dense"] = Dense
    b["TimeDistributed"] = TimeDistributed
    b["Flatten"], b["Reshape"], b["Permute"], b["RepeatVector"] = Flatten, Reshape, Permute, RepeatVector
    b["Dropout"] = lambda c, x: Dropout(c, x)
    for kind in ("Activation", "ReLU", "LeakyReLU", "ELU", "Softmax"):
        b[kind] = (lambda k: lambda c, x: Activation(k, c, x))(kind)
    for kind in ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
        b[kind] = (lambda k: lambda c, x: Merge(k, c, x))(kind)
    return b


#: Keras class name -> builder taking ``(config, BuildContext)``.
BUILDERS = _reg()
#: The Keras layer classes :func:`convlstm.keras.load_model` accepts (``InputLayer`` too).
SUPPORTED_LAYERS = tuple(sorted(set(BUILDERS) | {"InputLayer"}))
MERGE_LAYERS = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def unsupported(name: Any, class_name: Any, why: str = "") -> KerasFileError:
    """The error for a layer we refuse, naming it and listing what is supported."""
    extra = f" ({why})" if why else ""
    return KerasFileError(
        f"layer {name!r} has class {class_name!r}, which convlstm.keras does not load{extra}; nothing in the "
        f"file is executed. Supported layers: {', '.join(SUPPORTED_LAYERS)}")


def build_layer(spec: dict, ctx: BuildContext, *, parent: Optional[str] = None) -> nn.Module:
    """Build the (unbuilt) module for one Keras layer spec ``{"class_name", "config"}``."""
    if not isinstance(spec, dict):
        raise KerasFileError(f"a layer spec must be a JSON object, got {type(spec).__name__}")
    class_name = spec.get("class_name")
    config = spec.get("config")
    if not isinstance(config, dict):
        config = {}
    name = config.get("name", spec.get("name"))
    if parent is not None and name is None:
        name = f"{parent}/inner"
    if class_name in ("Lambda", "TFOpLambda", "SlicingOpLambda"):
        raise unsupported(name, class_name, "it holds Python code, which is never run")
    builder = BUILDERS.get(class_name) if isinstance(class_name, str) else None
    if builder is None:
        if class_name in ("Sequential", "Functional", "Model"):
            raise unsupported(name, class_name, "nested models are not supported; flatten the model first")
        raise unsupported(name, class_name)
    try:
        module = builder(config, ctx)
    except KerasFileError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise KerasFileError(f"layer {name!r} ({class_name}): bad config: {type(err).__name__}: {err}") from None
    module.keras_name = str(name)
    module.keras_class = class_name if not isinstance(module, KerasLayer) else module.keras_class
    return module


def build_module(module: nn.Module, shapes: List[Shape]) -> None:
    """Create the weights of ``module`` for inputs of ``shapes`` (Keras's ``build``)."""
    if isinstance(module, ConvLSTM):
        if module.cell is None:
            x = shapes[0]
            # the file's weights overwrite them at once: skip the (orthogonal) initializers
            module.build(int(x[2] if module.data_format == "channels_first" else x[-1]), initialize=False)
    elif isinstance(module, Bidirectional):
        build_module(module.forward_layer, shapes[:1])
        build_module(module.backward_layer, shapes[:1])
    elif isinstance(module, KerasLayer):
        module.build(shapes)
