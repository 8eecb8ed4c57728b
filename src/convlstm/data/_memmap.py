"""Pickling a file-backed series by reference: a memmap (or a view of one) is sent to another
process (``DataLoader`` workers started with *spawn*) as how to map its file again, not as its
content. A :class:`~convlstm.data.LazyGrid` already pickles its path by itself."""
from __future__ import annotations

import mmap
from typing import Any, Optional

import numpy as np

__all__ = ["memmap_state", "memmap_restore", "SeriesByReference"]


def memmap_state(a: Any) -> Optional[dict]:
    """How to map ``a`` again in another process if it is a view of a file-backed memmap, else
    ``None``."""
    if not isinstance(a, np.memmap):
        return None
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not (isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)
            and root.filename is not None):
        return None
    return {"filename": root.filename, "dtype": root.dtype, "shape": root.shape,
            "offset": root.offset,
            "order": "F" if root.flags.f_contiguous and not root.flags.c_contiguous else "C",
            "view_offset": a.__array_interface__["data"][0] - root.__array_interface__["data"][0],
            "view_shape": a.shape, "view_strides": a.strides, "view_dtype": a.dtype}


def memmap_restore(state: dict) -> np.ndarray:
    """The view that :func:`memmap_state` described, mapped read-only from its file."""
    root = np.memmap(state["filename"], dtype=state["dtype"], mode="r", shape=state["shape"],
                     offset=state["offset"], order=state["order"])
    return np.ndarray(state["view_shape"], dtype=state["view_dtype"], buffer=root,
                      offset=state["view_offset"], strides=state["view_strides"])


class SeriesByReference:
    """Mixin for objects that keep a series in their ``series`` attribute: pickling sends how to
    map a memmap ``series`` again rather than its frames; any other series is pickled as it is."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        mm = memmap_state(self.series)
        if mm is not None:
            state["series"] = None
            state["_memmap"] = mm
        return state

    def __setstate__(self, state: dict) -> None:
        mm = state.pop("_memmap", None)
        self.__dict__.update(state)
        if mm is not None:
            self.series = memmap_restore(mm)
