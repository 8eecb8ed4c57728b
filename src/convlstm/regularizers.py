"""Keras weight and activity regularizers.

A regularizer maps a tensor to a scalar penalty added to the loss:

* ``L1(l1)``: :math:`l_1 \\sum |w|`;  ``L2(l2)``: :math:`l_2 \\sum w^2`;
  ``L1L2(l1, l2)``: both.
* The names ``"l1"``, ``"l2"`` and ``"l1_l2"`` use ``0.01`` for every factor, as Keras documents.
  (Keras 3.15's string ``"l1_l2"`` actually builds ``L1L2(0, 0)``, a zero penalty; we follow the
  documented 0.01 and say so in the README.)

Weight penalties are computed on the weight in Keras's layout (the sum does not depend on it, but a
custom callable may). The activity penalty is computed on each output tensor of the layer and
divided by the batch size, as Keras 3 does.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ._registry import resolve

__all__ = ["Regularizer", "L1", "L2", "L1L2", "get"]


class Regularizer:
    """Base class: ``__call__(weight) -> scalar tensor``."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_config(self) -> dict:
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _factor(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if value < 0 or value != value:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        penalty = x.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * x.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * x.square().sum()
        return penalty


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def _l1_l2_documented_default(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    return L1L2(l1, l2)


_TABLE = {"l1": L1, "l2": L2, "l1_l2": _l1_l2_documented_default}
_CLASSES = {"l1": L1, "l2": L2, "l1_l2": L1L2}


def get(identifier: Any, *, parameter: str = "kernel_regularizer") -> Callable[[torch.Tensor], torch.Tensor]:
    """A regularizer from ``None``, a Keras name, a config dict, an object or a callable."""
    if isinstance(identifier, dict):  # a class config: Keras's class defaults (0.0) apply
        return resolve(identifier, _CLASSES, kind="regularizer", parameter=parameter)
    return resolve(identifier, _TABLE, kind="regularizer", parameter=parameter)
