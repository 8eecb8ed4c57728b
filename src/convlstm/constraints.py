"""Keras weight constraints: projections applied to a weight after each optimizer update.

They act on the weight in **Keras's layout** (``kernel_size + (in, 4F)`` for kernels), so Keras's
``axis`` conventions carry over unchanged: the default ``axis=0`` of ``MaxNorm`` is the first kernel
axis, and ``axis=[0, 1, 2]`` is "each output filter" for a 2D kernel. With :math:`n` the L2 norm
over ``axis`` and :math:`\\epsilon = 10^{-7}`:

* ``MaxNorm(m)``: :math:`w \\cdot \\mathrm{clip}(n, 0, m) / (\\epsilon + n)`
* ``NonNeg()``: :math:`\\max(w, 0)`
* ``UnitNorm()``: :math:`w / (\\epsilon + n)`
* ``MinMaxNorm(a, b, r)``: :math:`w \\cdot (r\\,\\mathrm{clip}(n, a, b) + (1 - r) n) / (\\epsilon + n)`

Use :func:`convlstm.apply_constraints` after ``optimizer.step()`` (or register it as a step
post-hook: ``optimizer.register_step_post_hook(lambda *_: convlstm.apply_constraints(model))``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch

from ._registry import resolve

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "get"]

EPSILON = 1e-7
Axis = Union[int, Sequence[int]]


def _norms(w: torch.Tensor, axis: Axis) -> torch.Tensor:
    dims = [axis] if isinstance(axis, int) else list(axis)
    return torch.sqrt(torch.sum(w * w, dim=dims, keepdim=True))


class Constraint:
    """Base class: ``__call__(weight) -> projected weight`` (same shape)."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def get_config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class MaxNorm(Constraint):
    def __init__(self, max_value: float = 2.0, axis: Axis = 0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        n = _norms(w, self.axis)
        return w * (torch.clamp(n, 0, self.max_value) / (EPSILON + n))


class NonNeg(Constraint):
    def __call__(self, w):
        return torch.clamp(w, min=0)


class UnitNorm(Constraint):
    def __init__(self, axis: Axis = 0):
        self.axis = axis

    def __call__(self, w):
        return w / (EPSILON + _norms(w, self.axis))


class MinMaxNorm(Constraint):
    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        n = _norms(w, self.axis)
        desired = self.rate * torch.clamp(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return w * (desired / (EPSILON + n))


_TABLE = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm,
          "non_negative": NonNeg}


def get(identifier: Any, *, parameter: str = "kernel_constraint") -> Callable[[torch.Tensor], torch.Tensor]:
    """A constraint from ``None``, a Keras name, a config dict, an object or a callable."""
    return resolve(identifier, _TABLE, kind="constraint", parameter=parameter)
