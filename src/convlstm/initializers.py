"""Keras initializers, producing tensors in **Keras's weight layout**.

Every initializer is called as ``init(shape, dtype=torch.float32, generator=None)`` where ``shape``
is the Keras shape of the weight: ``kernel_size + (in_channels, 4 * filters)`` for a ConvLSTM
kernel, ``kernel_size + (filters, 4 * filters)`` for the recurrent kernel, ``(4 * filters,)`` for
the bias. The layer then permutes the result to torch's layout. Fans follow Keras:

.. math::
    \\text{receptive} = \\prod \\text{shape}[:-2],\\quad
    \\text{fan\\_in} = \\text{shape}[-2]\\cdot\\text{receptive},\\quad
    \\text{fan\\_out} = \\text{shape}[-1]\\cdot\\text{receptive}

so the four fused gates (the ``4F`` axis) count in ``fan_out``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from ._registry import resolve

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform",
    "LecunNormal", "Orthogonal", "Identity", "compute_fans", "get",
]


def compute_fans(shape: Sequence[int], input_axes=None, output_axes=None) -> Tuple[float, float]:
    """Keras's ``(fan_in, fan_out)`` for a weight of Keras shape ``shape`` (Keras 3.15's explicit
    ``input_axes``/``output_axes``, when both are given, name the axes that count)."""
    shape = tuple(int(s) for s in shape)
    if input_axes is not None and output_axes is not None:
        return float(math.prod(shape[a] for a in input_axes)), float(math.prod(shape[a] for a in output_axes))
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


class Initializer:
    """Base class: subclasses implement ``__call__(shape, dtype, generator)``."""

    def __init__(self, seed: Optional[int] = None):
        self.seed = seed

    def _generator(self, generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
        if generator is not None or self.seed is None:
            return generator
        return torch.Generator().manual_seed(int(self.seed))

    def __call__(self, shape, dtype=torch.float32, generator=None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_config(self) -> dict:
        return {k: v for k, v in vars(self).items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def __init__(self):
        super().__init__(None)

    def get_config(self):
        return {}

    def __call__(self, shape, dtype=torch.float32, generator=None):
        return torch.zeros(tuple(shape), dtype=dtype)


class Ones(Zeros):
    def __call__(self, shape, dtype=torch.float32, generator=None):
        return torch.ones(tuple(shape), dtype=dtype)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        super().__init__(None)
        self.value = value

    def get_config(self):
        return {"value": self.value}

    def __call__(self, shape, dtype=torch.float32, generator=None):
        return torch.full(tuple(shape), float(self.value), dtype=dtype)


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: Optional[int] = None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype=torch.float32, generator=None):
        out = torch.empty(tuple(shape), dtype=torch.float64)
        out.normal_(self.mean, self.stddev, generator=self._generator(generator))
        return out.to(dtype)


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: Optional[int] = None):
        super().__init__(seed)
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, dtype=torch.float32, generator=None):
        out = torch.empty(tuple(shape), dtype=torch.float64)
        out.uniform_(self.minval, self.maxval, generator=self._generator(generator))
        return out.to(dtype)


def _truncated_normal(shape, mean, stddev, generator):
    out = torch.empty(tuple(shape), dtype=torch.float64)
    torch.nn.init.trunc_normal_(out, mean, stddev, mean - 2 * stddev, mean + 2 * stddev, generator=generator)
    return out


class TruncatedNormal(Initializer):
    """Normal values redrawn outside two standard deviations of the mean, as Keras's."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: Optional[int] = None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, dtype=torch.float32, generator=None):
        return _truncated_normal(shape, self.mean, self.stddev, self._generator(generator)).to(dtype)


class VarianceScaling(Initializer):
    """Keras's ``VarianceScaling``: with ``n`` the fan given by ``mode``,

    * ``"truncated_normal"``: stddev :math:`\\sqrt{\\text{scale}/n} / 0.8796...` truncated at 2 stddev,
    * ``"untruncated_normal"``: stddev :math:`\\sqrt{\\text{scale}/n}`,
    * ``"uniform"``: :math:`U(-l, l)` with :math:`l = \\sqrt{3\\,\\text{scale}/n}`.
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform", "normal")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                 seed: Optional[int] = None, input_axes=None, output_axes=None):
        super().__init__(seed)
        self.input_axes, self.output_axes = input_axes, output_axes
        if scale <= 0:
            raise ValueError(f"VarianceScaling: scale must be positive, got {scale}")
        if mode not in self._MODES:
            raise ValueError(f"VarianceScaling: mode={mode!r}; allowed: {', '.join(self._MODES)}")
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(
                f"VarianceScaling: distribution={distribution!r}; allowed: {', '.join(self._DISTRIBUTIONS)}")
        self.scale, self.mode = scale, mode
        self.distribution = "truncated_normal" if distribution == "normal" else distribution

    def __call__(self, shape, dtype=torch.float32, generator=None):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale = self.scale / max(1.0, n)
        gen = self._generator(generator)
        if self.distribution == "truncated_normal":
            return _truncated_normal(shape, 0.0, math.sqrt(scale) / 0.87962566103423978, gen).to(dtype)
        out = torch.empty(tuple(shape), dtype=torch.float64)
        if self.distribution == "untruncated_normal":
            out.normal_(0.0, math.sqrt(scale), generator=gen)
        else:
            limit = math.sqrt(3.0 * scale)
            out.uniform_(-limit, limit, generator=gen)
        return out.to(dtype)


def _variance_scaling_preset(name: str, scale: float, mode: str, distribution: str) -> type:
    def __init__(self, seed: Optional[int] = None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}

    doc = f"Keras's ``{name}``: ``VarianceScaling(scale={scale}, mode={mode!r}, distribution={distribution!r})``."
    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config, "__doc__": doc})


GlorotUniform = _variance_scaling_preset("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variance_scaling_preset("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variance_scaling_preset("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _variance_scaling_preset("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _variance_scaling_preset("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _variance_scaling_preset("LecunNormal", 1.0, "fan_in", "truncated_normal")


class Orthogonal(Initializer):
    """Keras's ``Orthogonal``: the weight is viewed as a ``(prod(shape[:-1]), shape[-1])`` matrix
    whose columns (or rows, if it is wide) are orthonormal, times ``gain``."""

    def __init__(self, gain: float = 1.0, seed: Optional[int] = None):
        super().__init__(seed)
        self.gain = gain

    def __call__(self, shape, dtype=torch.float32, generator=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"Orthogonal initializer needs a weight of rank >= 2, got shape {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = torch.empty(max(rows, cols), min(rows, cols), dtype=torch.float64)
        a.normal_(0.0, 1.0, generator=self._generator(generator))
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).to(dtype)


class Identity(Initializer):
    """Keras's ``Identity``: only for 2D weights (so not for convolution kernels, as in Keras)."""

    def __init__(self, gain: float = 1.0):
        super().__init__(None)
        self.gain = gain

    def get_config(self):
        return {"gain": self.gain}

    def __call__(self, shape, dtype=torch.float32, generator=None):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError(
                f"the 'identity' initializer only applies to 2D weights (as in Keras), not to shape {shape}; "
                "use 'orthogonal' for a recurrent kernel"
            )
        return (self.gain * torch.eye(*shape, dtype=torch.float64)).to(dtype)


_TABLE = {
    "zeros": Zeros, "ones": Ones, "constant": Constant, "random_normal": RandomNormal,
    "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling, "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal, "orthogonal": Orthogonal, "identity": Identity,
}
# Keras's older aliases.
_TABLE.update({"zero": Zeros, "one": Ones, "uniform": RandomUniform, "normal": RandomNormal,
               "orthogonal_initializer": Orthogonal})


def get(identifier: Any, *, parameter: str = "kernel_initializer") -> Callable[..., torch.Tensor]:
    """An initializer from a Keras name, config dict, object or ``callable(shape, dtype, generator)``."""
    return resolve(identifier, _TABLE, kind="initializer", parameter=parameter, allow_none=False)


def name_or_config(init: Any) -> Any:
    """A Keras-style description of an initializer, for ``get_config``."""
    if isinstance(init, Initializer):
        for name, cls in _TABLE.items():
            if type(init) is cls:
                cfg = init.get_config()
                return name if not cfg or all(v is None for v in cfg.values()) else {
                    "class_name": type(init).__name__, "config": cfg}
    return init
