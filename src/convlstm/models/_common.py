"""Argument checks shared by the ready models."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch

from .._checks import check_positive_int, is_integer
from .._errors import ParameterTypeError


def optional_positive_int(name: str, value: Any) -> Optional[int]:
    """``None``, or ``value`` as an ``int`` if it is an integer ``>= 1``."""
    return None if value is None else check_positive_int(name, value)


def int_tuple(name: str, value: Any, length: Optional[int] = None) -> Tuple[int, ...]:
    """An int or a sequence of positive ints as a tuple (of ``length`` when an int is given)."""
    if is_integer(value):
        if length is None:
            return (check_positive_int(name, value),)
        return (check_positive_int(name, value),) * length
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ParameterTypeError(name, f"{name} must be an int or a sequence of positive ints, got {value!r}")
    values = tuple(check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if not values:
        raise ValueError(f"{name} must hold at least one value, got {value!r}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} values (one per layer), got {value!r}")
    return values


def check_model_input(x: Any, model_name: str, channels: int, steps: Optional[int] = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model_name} expects a torch.Tensor (batch, time, rows, cols, channels), "
                        f"got {type(x).__name__}")
    if x.dim() != 5:
        raise ValueError(f"{model_name} expects a 5D input (batch, time, rows, cols, channels), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[-1] != channels:
        raise ValueError(f"{model_name} was built for {channels} channel(s) (channels last), got input shape "
                         f"{tuple(x.shape)}; pass in_channels=/channels= to create() for other data")
    if steps is not None and x.shape[1] != steps:
        raise ValueError(f"{model_name} was built for input_steps={steps}, got {x.shape[1]} time steps "
                         f"(input shape {tuple(x.shape)})")
    return x
