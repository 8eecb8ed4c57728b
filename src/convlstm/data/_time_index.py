"""The time index of a lazily read series: what ``series[key]`` asks for, as the positions of the
frames to read, whether the result keeps a time axis, and the indices left for each frame."""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

__all__ = ["split_key", "time_positions", "apply_rest"]


def split_key(key: Any, owner: str) -> Tuple[Any, tuple]:
    """``key`` of ``series[key]`` as (the time index, the indices after it)."""
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) == 0:
        key = (slice(None),)
    t, rest = key[0], key[1:]
    if t is Ellipsis:
        return slice(None), key
    if t is None:
        raise IndexError(f"{owner} does not support np.newaxis as the first index")
    return t, rest


def time_positions(t: Any, n: int, owner: str) -> Tuple[np.ndarray, bool]:
    """The frames ``t`` selects from a series of ``n``: ``(positions, keeps_time_axis)``.

    ``t`` is an int (no time axis is kept), a slice, or a 1-D integer or boolean array; negative
    positions count from the end."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)):
        i = int(t)
        if not -n <= i < n:
            raise IndexError(f"time index {i} is out of range for a series of {n} steps")
        return np.array([i % n], dtype=np.int64), False
    if isinstance(t, slice):
        return np.arange(*t.indices(n), dtype=np.int64), True
    idx = np.asarray(t)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"a boolean time index must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx).astype(np.int64), True
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise IndexError(f"{owner} supports an int, a slice, or a 1-D integer/boolean array as the time "
                         f"index, got {t!r}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"time indices out of range for a series of {n} steps")
    return idx % n if idx.size else idx, True


def apply_rest(frames: np.ndarray, rest: tuple, has_time: bool) -> np.ndarray:
    """``frames`` ``(k, H, W, C)`` with the indices after the time index applied; without a time
    axis (an int time index) the first frame alone."""
    arr = frames if has_time else frames[0]
    if rest:
        arr = arr[(slice(None),) + rest] if has_time else arr[rest]
    return arr
