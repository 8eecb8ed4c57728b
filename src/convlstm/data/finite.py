"""Finding and filling missing (NaN) and infinite values in a series."""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from .._checks import check_number
from .._errors import ParameterError
from ._checks import series_shape, to_numpy

__all__ = ["check_finite"]

_CHUNK_BYTES = 32 * 2 ** 20


def _describe_index(index: tuple, ndim: int) -> str:
    names = {1: ["time"], 2: ["time", "channel"], 3: ["time", "row", "col"],
             4: ["time", "row", "col", "channel"]}.get(ndim)
    if names is None:
        names = ["time"] + [f"axis {k}" for k in range(1, ndim - 1)] + ["channel"]
    return ", ".join(f"{n} {int(i)}" for n, i in zip(names, index))


def check_finite(series: Any, *, fill: Optional[Union[str, float]] = None, remedy: Optional[str] = None) -> Any:
    r"""Check that a series has no NaN or infinite values, or fill them.

    With ``fill=None`` the series is scanned (in chunks of time steps, so a memmap is not
    loaded whole) and returned unchanged if every value is finite; otherwise a ``ValueError``
    says how many values are NaN and how many infinite, and where the first one is (time index,
    row, col, channel), and suggests a ``fill`` (or, when given, says ``remedy``: how the caller
    fills them, e.g. the command line's ``--fill-nan``).

    With ``fill`` a filled copy (a numpy array) is returned:

    - ``"zero"``: non-finite values become 0.
    - ``"ffill"``: each value takes the last finite value of the same pixel and channel earlier
      in time (a forward fill along axis 0); values before a pixel's first finite value become
      0, so nothing from the future leaks into the past.
    - a number: non-finite values become that number.

    Integer and bool series cannot hold NaN: they are returned as they are (``fill=None``) or
    copied.

    Shape:
        series: :math:`(T, *)`, canonically ``(T, rows, cols, channels)``; output the same.

    Example::

        >>> check_finite(np.array([1.0, np.nan, 3.0]), fill="ffill")
        array([1., 1., 3.])
    """
    shape = series_shape("series", series, 1)
    if fill is not None:
        if isinstance(fill, str):
            if fill not in ("zero", "ffill"):
                raise ValueError(f"fill must be None, 'zero', 'ffill' or a finite number, "
                                 f"got {fill!r}")
        else:
            try:
                fill = check_number("fill", fill)
            except ParameterError as err:  # a ParameterTypeError for a wrong type, as check_number's
                raise type(err)("fill", f"fill must be None, 'zero', 'ffill' or a finite number, "
                                        f"got {fill!r}") from None

    dtype = to_numpy(series[:0]).dtype
    if dtype.kind not in "fc":
        return series if fill is None else np.array(to_numpy(series[:]))

    if fill is None:
        frame = max(1, int(np.prod(shape[1:], dtype=np.int64)))
        chunk = max(1, _CHUNK_BYTES // (dtype.itemsize * frame))
        n_nan = n_inf = 0
        first = None
        for t0 in range(0, shape[0], chunk):
            block = to_numpy(series[t0:t0 + chunk])
            nan = np.isnan(block)
            inf = np.isinf(block)
            k_nan, k_inf = int(nan.sum()), int(inf.sum())
            if (k_nan or k_inf) and first is None:
                idx = np.argwhere(nan | inf)[0]
                idx[0] += t0
                first = tuple(idx)
            n_nan += k_nan
            n_inf += k_inf
        if first is None:
            return series
        if remedy is None:
            remedy = ("Fill them with check_finite(series, fill='zero' | 'ffill' | <number>) ('ffill' repeats "
                      "the last finite value of the same pixel along time)")
        raise ValueError(
            f"series has {n_nan + n_inf} non-finite value(s) ({n_nan} NaN, {n_inf} inf); the "
            f"first at {_describe_index(first, len(shape))}. {remedy}")

    out = np.array(to_numpy(series[:]), copy=True)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    if fill == "zero":
        out[bad] = 0
    elif fill == "ffill":
        flat, flat_bad = out.reshape(shape[0], -1), bad.reshape(shape[0], -1)  # views
        last = np.zeros(flat.shape[1], dtype=out.dtype)
        for t in range(shape[0]):
            np.copyto(flat[t], last, where=flat_bad[t])
            last = flat[t]
    else:
        out[bad] = fill
    return out
