"""Argument checks shared by the data modules: each error names the parameter, the value given
and what is allowed."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_number", "to_numpy", "series_shape"]


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``; raise otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} "
                        f"(type {type(value).__name__})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_number(name: str, value: Any) -> float:
    """Return ``value`` as a finite ``float``; raise for bools, non-numbers, NaN and inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} (type {type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view/copy of ``x`` (torch tensors are detached and moved to the CPU)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def series_shape(name: str, series: Any, min_ndim: int = 1) -> tuple:
    """The shape of an array-like ``series`` (numpy, memmap, h5py, :class:`LazyGrid`, torch)."""
    shape = getattr(series, "shape", None)
    if shape is None or not hasattr(series, "__getitem__"):
        raise TypeError(f"{name} must be an array-like with a shape and indexing (numpy array, "
                        f"memmap, torch tensor, LazyGrid), got {type(series).__name__}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s) (time first), "
                         f"got shape {shape}")
    return shape
