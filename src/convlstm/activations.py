"""Keras activation names mapped to torch functions.

``get(identifier)`` accepts a Keras name (``"tanh"``, ``"sigmoid"``, ``"hard_sigmoid"``, ...), ``None``
(linear, as in Keras) or any callable taking and returning a tensor.

Keras 2 and Keras 3 disagree on ``"hard_sigmoid"``:

* Keras 3 (and :func:`torch.nn.functional.hardsigmoid`): :math:`\\mathrm{relu6}(x + 3) / 6`,
  a slope of 1/6;
* Keras 2: :math:`\\mathrm{clip}(0.2 x + 0.5, 0, 1)`, a slope of 0.2. It is available here as
  ``"keras2_hard_sigmoid"`` and is chosen automatically when a Keras 2 file is loaded.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn.functional as F

from ._errors import ParameterTypeError

__all__ = ["get", "name_of", "keras2_hard_sigmoid", "hard_sigmoid", "linear", "ACTIVATIONS"]


def linear(x: torch.Tensor) -> torch.Tensor:
    """The identity, Keras's ``"linear"`` (and ``None``)."""
    return x


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 3's hard sigmoid: ``relu6(x + 3) / 6``."""
    return F.hardsigmoid(x)


def keras2_hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Keras 2's hard sigmoid: ``clip(0.2 * x + 0.5, 0, 1)``."""
    return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)


def _exponential(x):
    return torch.exp(x)


def _selu(x):
    return F.selu(x)


def _gelu(x):
    # Keras's gelu defaults to the exact (erf) form.
    return F.gelu(x)


def _leaky_relu(x):
    # Keras 3's leaky_relu activation has a default slope of 0.2.
    return F.leaky_relu(x, 0.2)


def _squareplus(x):
    return (x + torch.sqrt(x * x + 4.0)) / 2


def _tanh_shrink(x):
    return x - torch.tanh(x)


def _hard_silu(x):
    return x * F.hardsigmoid(x)


def _softsign(x):
    return x / (1 + torch.abs(x))


def _log_sigmoid(x):
    return F.logsigmoid(x)


def _relu6(x):
    return F.relu6(x)


def _mish(x):
    return x * torch.tanh(F.softplus(x))


ACTIVATIONS = {
    "linear": linear,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "keras2_hard_sigmoid": keras2_hard_sigmoid,
    "relu": torch.relu,
    "relu6": _relu6,
    "elu": F.elu,
    "selu": _selu,
    "softplus": F.softplus,
    "softsign": _softsign,
    "swish": F.silu,
    "silu": F.silu,
    "gelu": _gelu,
    "exponential": _exponential,
    "hard_silu": _hard_silu,
    "hard_swish": _hard_silu,
    "log_sigmoid": _log_sigmoid,
    "mish": _mish,
    "hard_tanh": F.hardtanh,
    "leaky_relu": _leaky_relu,
    "celu": F.celu,
    "squareplus": _squareplus,
    "tanh_shrink": _tanh_shrink,
}

_NAME_OF = {id(fn): name for name, fn in ACTIVATIONS.items()}


def get(identifier: Union[str, Callable, None], *, parameter: str = "activation") -> Callable:
    """Return the torch function for a Keras activation name, ``None`` or a callable.

    Raises:
        ValueError: an unknown name; the message names ``parameter`` and lists the known names.
        TypeError: neither a string, ``None`` nor a callable.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        fn = ACTIVATIONS.get(identifier)
        if fn is None:
            raise ValueError(
                f"{parameter}={identifier!r} is not a known activation; allowed: "
                f"{', '.join(sorted(ACTIVATIONS))}, None, or a callable"
            )
        return fn
    if callable(identifier):
        return identifier
    raise ParameterTypeError(
        parameter, f"{parameter} must be an activation name, None or a callable, got {type(identifier).__name__}"
    )


def name_of(fn: Callable) -> Union[str, Callable]:
    """The Keras name of a known activation function, else the callable itself (for configs)."""
    return _NAME_OF.get(id(fn), getattr(fn, "__name__", fn))
