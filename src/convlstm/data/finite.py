"""Finding and filling missing (NaN) and infinite values in a series."""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple, Union

import numpy as np

from .._checks import check_number
from .._errors import ParameterError
from ._checks import series_shape, to_numpy
from ._memmap import SeriesByReference

__all__ = ["check_finite", "FilledSeries"]

#: Bytes of the series read at once when it is scanned for non-finite values.
CHUNK_BYTES = 64 * 2 ** 20


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

    With ``fill`` the series is returned wrapped in a :class:`FilledSeries`, which replaces
    the non-finite values as frames are read (nothing is copied, a memmap stays on disk):

    - ``"zero"``: non-finite values become 0.
    - ``"ffill"``: each value takes the last finite value of the same pixel and channel earlier
      in time (a forward fill along axis 0); values before a pixel's first finite value become
      0, so nothing from the future leaks into the past. The values that replace them are found
      in one streaming pass when the series is wrapped (see :class:`FilledSeries`).
    - a number: non-finite values become that number.

    Integer and bool series cannot hold NaN: they are returned as they are.

    Shape:
        series: :math:`(T, *)`, canonically ``(T, rows, cols, channels)``; output the same.

    Example::

        >>> np.asarray(check_finite(np.array([1.0, np.nan, 3.0]), fill="ffill"))
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
        return series
    if fill is not None:
        return FilledSeries(series, fill)

    n_nan = n_inf = 0
    first = None
    for t0, block in _blocks(series, shape, dtype):
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


def _blocks(series: Any, shape: tuple, dtype: np.dtype) -> Iterator[Tuple[int, np.ndarray]]:
    """``(t0, block)``: frames ``[t0, t0 + n)`` of ``series`` read :data:`CHUNK_BYTES` at a time."""
    frame = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    chunk = max(1, CHUNK_BYTES // (dtype.itemsize * frame))
    for t0 in range(0, shape[0], chunk):
        yield t0, to_numpy(series[t0:t0 + chunk])


def _time_positions(index: Any, n: int) -> np.ndarray:
    """The time steps (int64, in ``[0, n)``, in the order read) that the time index ``index``
    selects: an int, a slice, or an integer or boolean array."""
    if isinstance(index, slice):
        return np.arange(*index.indices(n), dtype=np.int64)
    if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
        i = int(index)
        return np.array([i + n if i < 0 else i], dtype=np.int64)
    a = to_numpy(index)
    if a.dtype == bool:
        return np.flatnonzero(a).astype(np.int64)
    if a.dtype.kind not in "iu":
        raise IndexError(f"a FilledSeries is indexed in time by an int, a slice or an integer/boolean array, "
                         f"got {type(index).__name__} of dtype {a.dtype}")
    a = a.astype(np.int64).ravel()
    return np.where(a < 0, a + n, a)


class FilledSeries(SeriesByReference):
    r"""A series read with its non-finite values (NaN, :math:`\pm\infty`) replaced, without a
    copy: indexing reads the frames asked for from the wrapped series (array, memmap,
    :class:`~convlstm.data.LazyGrid`, :class:`~convlstm.data.units.ConvertedSeries`) and fills
    them as :func:`check_finite` describes.

    For ``fill="ffill"`` the replacement of value :math:`x_{t,p}` (time :math:`t`, position
    :math:`p` in the frame) is :math:`x_{s,p}` with :math:`s = \max\{s < t : x_{s,p}
    \text{ finite}\}`, or 0 when there is none. They are found once, in one pass over the series
    in chunks of about :data:`CHUNK_BYTES`, carrying one frame (the last finite value of every
    position), and kept as a sorted table of flat indices :math:`t \cdot P + p` and their values:
    memory is :math:`8 + \text{itemsize}` bytes per non-finite value (none for ``"zero"`` or a
    number), not a copy of the series.

    Pickling (``DataLoader`` workers started with *spawn*) sends a memmap series as how to map
    its file again (a :class:`~convlstm.data.LazyGrid` or a converted series pickles its own
    path), so workers do not receive the frames; the fill table, if any, travels with it.

    Args:
        series: the series, time first, :math:`(T, *)`.
        fill: ``"zero"``, ``"ffill"`` or a finite number.

    Shape:
        ``shape``, ``dtype`` and ``len()`` are the wrapped series'. ``series[i]``,
        ``series[a:b]``, ``series[[t0, t1, ...]]`` (and a tuple whose first entry is one of
        those) return numpy arrays, as indexing the wrapped series would, with the values filled.

    Example::

        >>> s = FilledSeries(np.array([[np.nan, 1.0], [2.0, np.inf]]), "ffill")
        >>> s[1].tolist(), s[:].tolist()
        ([2.0, 1.0], [[0.0, 1.0], [2.0, 1.0]])
    """

    def __init__(self, series: Any, fill: Union[str, float]) -> None:
        self.shape = series_shape("series", series, 1)
        if isinstance(fill, str):
            if fill not in ("zero", "ffill"):
                raise ValueError(f"fill must be 'zero', 'ffill' or a finite number, got {fill!r}")
        else:
            fill = check_number("fill", fill)
        self.series, self.fill = series, fill
        self.dtype = to_numpy(series[:0]).dtype
        self.ndim = len(self.shape)
        self._frame = int(np.prod(self.shape[1:], dtype=np.int64))
        self._keys: Optional[np.ndarray] = None    # sorted flat indices t * frame + p of the non-finite values
        self._values: Optional[np.ndarray] = None  # what replaces them ("ffill")
        if fill == "ffill":
            self._keys, self._values = self._forward_fill_table()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def missing(self) -> Optional[int]:
        """How many values are replaced, known for ``"ffill"`` (``None`` for the other fills,
        which replace values as they are read and do not scan the series)."""
        return None if self._keys is None else int(self._keys.size)

    def _forward_fill_table(self) -> Tuple[np.ndarray, np.ndarray]:
        """One pass in chunks: the flat index and the forward-filled value of every non-finite value."""
        carry = np.zeros(self._frame, dtype=self.dtype)  # last finite value of each position (0: none yet)
        keys: List[np.ndarray] = []
        values: List[np.ndarray] = []
        for t0, block in _blocks(self.series, self.shape, self.dtype):
            flat = np.asarray(block).reshape(len(block), self._frame)
            bad = ~np.isfinite(flat)
            done = 0  # frames [0, done) of the block are in the carry
            for r in np.flatnonzero(bad.any(axis=1)):
                if r > done:  # frames done .. r - 1 are finite: the carry is the last of them
                    carry = flat[r - 1].copy()
                hole = np.flatnonzero(bad[r])
                keys.append((t0 + r) * self._frame + hole)
                values.append(carry[hole].copy())
                carry = np.where(bad[r], carry, flat[r])
                done = r + 1
            if done < len(flat):
                carry = flat[-1].copy()
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.dtype)
        return np.concatenate(keys).astype(np.int64), np.concatenate(values).astype(self.dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        time, rest = (index[0], index[1:]) if isinstance(index, tuple) and index else (index, ())
        if time is Ellipsis:
            time, rest = slice(None), (Ellipsis,) + tuple(rest)
        times = _time_positions(time, self.shape[0]) if self.fill == "ffill" else None
        raw = to_numpy(self.series[time])
        scalar_time = raw.ndim == self.ndim - 1
        frames = raw.reshape((1,) + raw.shape) if scalar_time else raw
        out = np.array(frames, dtype=self.dtype, copy=True)
        bad = ~np.isfinite(out)
        if bad.any():
            if self.fill == "zero":
                out[bad] = 0
            elif self.fill != "ffill":
                out[bad] = self.fill
            else:
                self._fill_from_table(out, times)
        if scalar_time:
            return out[0][tuple(rest)] if rest else out[0]
        return out[(slice(None),) + tuple(rest)] if rest else out

    def _fill_from_table(self, out: np.ndarray, times: np.ndarray) -> None:
        """Put the table's values into ``out`` (frames at time steps ``times``), in place."""
        flat = out.reshape(len(times), self._frame)
        lo = np.searchsorted(self._keys, times * self._frame)
        hi = np.searchsorted(self._keys, (times + 1) * self._frame)
        for row in np.flatnonzero(hi > lo):
            keys = self._keys[lo[row]:hi[row]]
            flat[row, keys - times[row] * self._frame] = self._values[lo[row]:hi[row]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"FilledSeries(shape={self.shape}, dtype={self.dtype}, fill={self.fill!r})"

