"""Helpers shared by the data modules: array-likes as numpy arrays, and the shape of a series
(the argument checks are :mod:`convlstm._checks`)."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_numpy", "series_shape"]


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
