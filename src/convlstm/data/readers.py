"""Readers for gridded time series: ``.npy``, ``.npz``, HDF5 and netCDF files, into the toolkit's
canonical ``(time, rows, cols, channels)`` layout ("THWC"), without loading large files whole."""
from __future__ import annotations

import contextlib
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .._errors import ParameterError
from .._extras import install_hint
from ._time_index import split_key

__all__ = ["LAYOUTS", "GridFileError", "LazyGrid", "load_grid", "load_timestamps", "load_array", "stored_shape",
           "describe_layout", "layout_doubt"]

#: The layouts :func:`load_grid` understands, and the number of dimensions each has on disk.
LAYOUTS = {"THWC": 4, "TCHW": 4, "THW": 3}

_NPY_SUFFIXES = (".npy",)
_NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file (numpy.lib.format)
_NPZ_SUFFIXES = (".npz",)
_HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
_NC_SUFFIXES = (".nc", ".nc4", ".netcdf")
_SUPPORTED = _NPY_SUFFIXES + _NPZ_SUFFIXES + _HDF5_SUFFIXES + _NC_SUFFIXES
_TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".dat")  # tables of numbers, which numpy.loadtxt reads
_TIME_KEYS = ("time", "times", "date", "dates", "timestamp", "timestamps")


class GridFileError(ValueError):
    """A grid file that cannot be read: damaged, truncated, or not what its suffix says. The
    message names the file and gives the underlying reader's own words."""


@contextlib.contextmanager
def _reading(path: Any, fmt: str):
    """Turn any failure of a third-party reader (numpy, zipfile, h5py, h5netcdf, scipy) inside the
    block into a :class:`GridFileError` naming ``path``."""
    try:
        yield
    except GridFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes a parser raise
        reason = f"{type(exc).__name__}: {exc}"
        if "pickle" in str(exc):  # numpy suggests allow_pickle=, which is never offered here
            reason = "it holds an object (pickled) array, which is never unpickled; store numeric arrays"
        raise GridFileError(f"{path}: cannot be read as a {fmt} file ({reason})") from None


# --------------------------------------------------------------------------------------------
# layout helpers
def _check_layout(layout: Any) -> str:
    """``layout`` in capitals (``"tchw"`` -> ``"TCHW"``); a ``ParameterError`` naming ``layout``
    when it is none of :data:`LAYOUTS`."""
    if not isinstance(layout, str) or layout.upper() not in LAYOUTS:
        raise ParameterError("layout", f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    return layout.upper()


def _check_ndim(shape: Sequence[int], layout: str, what: str) -> None:
    if len(shape) != LAYOUTS[layout]:
        hint = ""
        if len(shape) == 3 and layout != "THW":
            hint = "; a single-channel (time, rows, cols) array needs layout='THW'"
        elif len(shape) == 4 and layout == "THW":
            hint = "; a 4-D array needs layout='THWC' or 'TCHW'"
        raise ParameterError("layout", f"layout={layout!r} expects a {LAYOUTS[layout]}-D array, but {what} has "
                                       f"shape {tuple(shape)}{hint}")


def _to_thwc(arr: np.ndarray, layout: str, has_time: bool = True) -> np.ndarray:
    """Reorder an array read in ``layout`` (with or without its time axis) into (T,)HWC.

    Numpy views only: a memmap stays a lazy memmap view."""
    if layout == "THWC":
        return arr
    if layout == "TCHW":
        return np.moveaxis(arr, 1 if has_time else 0, -1)
    return arr[..., None]  # THW


def _thwc_shape(shape: Sequence[int], layout: str) -> tuple:
    shape = tuple(int(s) for s in shape)
    if layout == "THWC":
        return shape
    if layout == "TCHW":
        return (shape[0], shape[2], shape[3], shape[1])
    return shape + (1,)


#: What each layout takes the stored axes to be, for messages.
LAYOUT_AXES = {"THWC": "(time, rows, cols, channels)", "TCHW": "(time, channels, rows, cols)",
               "THW": "(time, rows, cols)"}


def stored_shape(shape: Sequence[int], layout: str) -> tuple:
    """The shape in the file of a grid that ``layout`` read into ``shape``, ``(time, rows, cols,
    channels)``: the inverse of the reordering :func:`load_grid` does.

    Example::

        >>> stored_shape((500, 16, 8, 2), "TCHW"), stored_shape((92, 64, 64, 1), "THW")
        ((500, 2, 16, 8), (92, 64, 64))
    """
    t, h, w, c = (int(s) for s in shape)
    return {"THWC": (t, h, w, c), "TCHW": (t, c, h, w), "THW": (t, h, w)}[_check_layout(layout)]


def describe_layout(stored: Sequence[int], layout: str) -> str:
    """What ``layout`` makes of a stored array of shape ``stored``, in words.

    Example::

        >>> describe_layout((500, 2, 16, 8), "THWC"), describe_layout((500, 2, 16, 8), "TCHW")
        ('500 frames of 2x16, 8 channels', '500 frames of 16x8, 2 channels')
    """
    t, h, w, c = _thwc_shape(stored, _check_layout(layout))
    return f"{t} frames of {h}x{w}, {c} channel{'s' * (c != 1)}"


def _oddities(shape: Sequence[int]) -> List[str]:
    """What makes frames of ``shape`` ``(time, rows, cols, channels)`` an unusual grid: more
    channels than rows or columns, a spatial axis of size 1."""
    _, h, w, c = shape
    found = []
    if c > min(h, w):
        found.append(f"more channels than {'rows' if h <= w else 'columns'}")
    if min(h, w) == 1:
        found.append(f"one {'row' if h == 1 else 'column'} wide")
    return found


def layout_doubt(stored: Sequence[int], layout: str) -> Tuple[str, Optional[str]]:
    """Why reading a stored array of shape ``stored`` with ``layout`` looks wrong, and another
    layout that reads it as a plausible grid: ``("", None)`` when it looks right, ``(why, None)``
    when no other layout reads it better. A plausible grid has no more channels than rows or
    columns and no spatial axis of size 1 (counts and rain have 1 or 2 channels on grids of 8x8
    and more).

    Example::

        >>> layout_doubt((500, 2, 16, 8), "THWC")
        ('8 channels on frames of 2x16 (more channels than rows)', 'TCHW')
        >>> layout_doubt((500, 16, 8, 2), "THWC")
        ('', None)
    """
    layout = _check_layout(layout)
    _, h, w, c = shape = _thwc_shape(stored, layout)
    found = _oddities(shape)
    if not found:
        return "", None
    better = [other for other, ndim in LAYOUTS.items()
              if other != layout and ndim == len(stored) and not _oddities(_thwc_shape(stored, other))]
    return (f"{c} channel{'s' * (c != 1)} on frames of {h}x{w} ({' and '.join(found)})",
            better[0] if better else None)


# --------------------------------------------------------------------------------------------
class GridSeries:
    """The array protocol of a lazily read ``(T, H, W, C)`` series: ``ndim``, ``size``,
    ``len()`` and ``numpy.asarray`` from the class's ``shape`` and ``series[...]``."""

    shape: tuple

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return int(self.shape[0])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)


class ClosesItsFile:
    """A reader over an open file: ``close()`` (defined by the class) runs when the object is
    collected and at the end of a ``with`` block."""

    def close(self) -> None:  # pragma: no cover - every reader defines it
        raise NotImplementedError

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LazyGrid(GridSeries, ClosesItsFile):
    r"""A read-only, lazily indexed view of a grid series stored in an HDF5 or netCDF file, in
    the ``(time, rows, cols, channels)`` layout.

    Indexing reads only the time steps asked for from the file: ``grid[s:s + 10]`` reads ten
    frames, ``np.asarray(grid)`` reads everything. The time index (the first one) is passed to
    the file; any further indices are applied to the frames read. Returned values are numpy
    arrays. For netCDF variables the CF attributes are decoded as xarray does by default:
    ``_FillValue`` / ``missing_value`` become NaN and ``value * scale_factor + add_offset``.

    A ``LazyGrid`` can be pickled (for ``DataLoader`` workers started with *spawn*): it pickles
    its path and key and opens the file again on the other side.

    Shape:
        ``shape`` is ``(time, rows, cols, channels)`` whatever the layout on disk.

    Example::

        >>> grid = load_grid("radar.h5", key="precip", layout="THW")   # doctest: +SKIP
        >>> grid.shape, grid[0:4].shape                                  # doctest: +SKIP
        ((92, 256, 256, 1), (4, 256, 256, 1))
    """

    def __init__(self, path: Any, key: str, layout: str, fmt: str) -> None:
        self.path = str(path)
        self.key = key
        self.layout = _check_layout(layout)
        if fmt not in ("hdf5", "netcdf4", "netcdf3"):
            raise ValueError(f"fmt must be 'hdf5', 'netcdf4' or 'netcdf3', got {fmt!r}")
        self.format = fmt
        self._file = None
        self._source = None
        self._open()

    # -- opening -------------------------------------------------------------------------
    def _open(self) -> None:
        self._pid = os.getpid()
        with _reading(self.path, self.format):
            attrs, raw_dtype, raw_shape = self._open_source()
        _check_ndim(raw_shape, self.layout, f"{self.key!r} in {self.path}")
        self._shape = _thwc_shape(raw_shape, self.layout)
        self._scale = attrs.get("scale_factor")
        self._offset = attrs.get("add_offset")
        with _reading(self.path, self.format):
            fills = [attrs.get(k) for k in ("_FillValue", "missing_value") if attrs.get(k) is not None]
            self._fills = [np.asarray(f, dtype=raw_dtype).ravel() for f in fills]
            dtype = raw_dtype
            if self._scale is not None or self._offset is not None:
                parts = [raw_dtype] + [np.asarray(v).dtype for v in (self._scale, self._offset)
                                       if v is not None]
                dtype = np.result_type(*parts)
                if not np.issubdtype(dtype, np.floating):
                    dtype = np.dtype(np.float64)
        if self._fills and not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float64)
        self._dtype = dtype

    def _open_source(self) -> tuple:
        """Open the file and the array; return its attributes, dtype and shape."""
        if self.format == "hdf5":
            import h5py

            self._file = h5py.File(self.path, "r")
            self._source = self._file[self.key]
            attrs = {}
        elif self.format == "netcdf4":
            h5netcdf = _import_h5netcdf()
            self._file = h5netcdf.File(self.path, "r")
            self._source = self._file.variables[self.key]
            attrs = dict(self._source.attrs)
        else:
            from scipy.io import netcdf_file

            self._file = netcdf_file(self.path, "r", mmap=True, maskandscale=False)
            var = self._file.variables[self.key]
            attrs = dict(var._attributes)
            self._source = var.data  # an array over the file's memory map
        return attrs, np.dtype(self._source.dtype), tuple(int(s) for s in self._source.shape)

    def close(self) -> None:
        """Close the underlying file. The grid cannot be read afterwards."""
        f, self._file, self._source = self._file, None, None
        if f is not None:
            f.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_source"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    # -- array protocol ------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __repr__(self) -> str:
        return (f"LazyGrid(path={self.path!r}, key={self.key!r}, layout={self.layout!r}, "
                f"shape={self._shape}, dtype={self._dtype})")

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if not self._fills and self._scale is None and self._offset is None:
            return raw
        mask = None
        for f in self._fills:
            hit = np.isin(raw, f)
            mask = hit if mask is None else (mask | hit)
        out = raw.astype(self._dtype, copy=True)
        if self._scale is not None:
            out *= np.asarray(self._scale, dtype=self._dtype)
        if self._offset is not None:
            out += np.asarray(self._offset, dtype=self._dtype)
        if mask is not None and mask.any():
            out[mask] = np.nan
        return out

    def _fetch(self, index: Any) -> np.ndarray:
        """``self._source[index]`` as an array; a damaged file gives a :class:`GridFileError`."""
        with _reading(self.path, self.format):
            return np.asarray(self._source[index])

    def _read_time(self, t: Any) -> tuple:
        """Read the frames selected by the time index ``t``; return (array, kept time axis)."""
        n = self._shape[0]
        if self._source is None:
            raise ValueError(f"LazyGrid for {self.path!r} is closed")
        if self._pid != os.getpid():
            # a forked DataLoader worker: HDF5 handles must not be shared across processes
            self._file = self._source = None
            self._open()
        if isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)):
            i = int(t)
            if not -n <= i < n:
                raise IndexError(f"time index {i} is out of range for a series of {n} steps")
            return self._fetch(i % n), False
        if isinstance(t, slice):
            start, stop, step = t.indices(n)
            if step > 0:
                if stop <= start:
                    return self._fetch(slice(0, 0)), True
                return self._fetch(slice(start, stop, step) if step > 1 else slice(start, stop)), True
            idx = np.arange(start, stop, step)
        else:
            idx = np.asarray(t)
            if idx.dtype == bool:
                if idx.shape != (n,):
                    raise IndexError(f"a boolean time index must have shape ({n},), "
                                     f"got {idx.shape}")
                idx = np.flatnonzero(idx)
            if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
                raise IndexError("LazyGrid supports an int, a slice, or a 1-D integer/boolean "
                                 f"array as the time index, got {t!r}")
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"time indices out of range for a series of {n} steps")
            idx = idx % n if idx.size else idx
        if idx.size == 0:
            return self._fetch(slice(0, 0)), True
        uniq, inverse = np.unique(idx, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo <= 2 * uniq.size:  # dense: one contiguous read is cheaper than fancy I/O
            block = self._fetch(slice(lo, hi))
            return block[idx - lo], True
        block = self._fetch(list(uniq))
        return block[inverse.ravel()], True

    def __getitem__(self, key: Any) -> np.ndarray:
        t, rest = split_key(key, "LazyGrid")
        raw, has_time = self._read_time(t)
        with _reading(self.path, self.format):
            if self.format == "netcdf3":  # detach from the memory map so the file can be closed
                raw = np.array(raw, copy=True)
            decoded = self._decode(raw)
        arr = _to_thwc(decoded, self.layout, has_time)
        if rest:
            arr = arr[(slice(None),) + rest] if has_time else arr[rest]
        return arr


# --------------------------------------------------------------------------------------------
def _import_h5netcdf():
    try:
        import h5netcdf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading netCDF-4 files needs the h5netcdf package: "
                          f"pip install h5netcdf, or the train extra: {install_hint('train')}") from err
    return h5netcdf


def _choose_key(key: Any, available: Sequence[str], what: str, path: Path,
                candidates: Optional[Sequence[str]] = None) -> str:
    """Pick ``key`` among ``available``; with ``key=None`` the single candidate."""
    if key is None:
        pool = list(available if candidates is None else candidates)
        if len(pool) == 1:
            return pool[0]
        raise ParameterError("key", f"{path} holds {len(pool)} {what}s "
                                    f"{'that could be a grid ' if candidates is not None else ''}"
                                    f"({', '.join(map(repr, pool)) or 'none'}): choose one with key=NAME, NAME "
                                    f"one of {list(available)}")
    if not isinstance(key, str):
        raise TypeError(f"key must be a string naming the {what}, got {key!r}")
    if key not in available:
        article = "an" if what[0] in "aeiou" else "a"
        raise ParameterError("key", f"key={key!r} is not {article} {what} in {path}; the file has: "
                                    f"{list(available)}")
    return key


def _object_array_message(what: str) -> str:
    return (f"{what} holds Python objects (dtype object), not numbers; such arrays are never unpickled here, "
            f"as that could run code. Save the grid as numbers, e.g. np.save(path, arr.astype(np.float32))")


def _load_npy(p: Path, mmap: bool) -> np.ndarray:
    """``np.load`` of a ``.npy`` file that never unpickles, with errors that say what the file is."""
    with open(p, "rb") as fh:
        magic = fh.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise GridFileError(f"{p} is not a .npy file: a .npy file starts with the bytes {_NPY_MAGIC!r} "
                            f"(numpy.save writes them), and this one starts with {magic!r}. Convert the data "
                            f"with numpy.save, or give a .npz, .h5/.hdf5 or .nc file")
    try:
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError:
        header_dtype = _npy_header_dtype(p)
        if header_dtype is not None and header_dtype.hasobject:
            raise GridFileError(_object_array_message(str(p))) from None
        raise  # a damaged or truncated file: the caller's _reading names it with numpy's reason


def _npy_header_dtype(p: Path) -> Optional[np.dtype]:
    try:
        with open(p, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)(fh)
        return header[2]
    except (ValueError, OSError):
        return None


def _npz_member_memmap(path: Path, member: str) -> Optional[np.ndarray]:
    """Memory-map an uncompressed ``.npy`` member of a ``.npz`` (``np.savez`` stores members
    uncompressed); return None when that is not possible (compressed, object dtype, ...)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        header_offset = info.header_offset
    with open(path, "rb") as fh:
        fh.seek(header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            return None
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(header_offset + 30 + name_len + extra_len)
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
        except ValueError:
            return None
        offset = fh.tell()
    if dtype.hasobject:
        return None
    if int(np.prod(shape)) == 0:
        return np.empty(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset,
                     order="F" if fortran else "C")


def _h5_datasets(group: Any) -> list:
    import h5py

    names: list = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            names.append(name)

    group.visititems(visit)
    return names


def _netcdf_kind(path: Path) -> str:
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic[:4] == b"\x89HDF":
        return "netcdf4"
    if magic[:3] == b"CDF":
        if magic[3:4] == b"\x05":
            raise ValueError(f"{path} is a CDF-5 (64-bit data) netCDF file, which cannot be read "
                             "here; convert it to netCDF-4 (nccopy -k nc4 in.nc out.nc)")
        return "netcdf3"
    raise ValueError(f"{path} is neither a netCDF-4/HDF5 file nor a classic netCDF file "
                     f"(first bytes {magic[:4]!r})")


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r} "
                        f"(type {type(path).__name__})")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    return p


def _format_of(p: Path) -> str:
    """The suffix of ``p``, one of the formats read here; else an error that names them, and for a
    text table how to convert it."""
    suffix = p.suffix.lower()
    if suffix not in _SUPPORTED:
        convert = ""
        if suffix in _TEXT_SUFFIXES:
            convert = (f"; to convert a {suffix} table, read it with numpy.loadtxt, reshape it to (time, rows, cols) "
                       f"and write it with numpy.save to a .npy file, then read that with layout='THW'")
        raise ParameterError("path", f"{str(p)!r} is {f'a {suffix} file' if suffix else 'a file without a suffix'}, "
                                     f"not a grid file: grids are read from .npy, .npz, .h5/.hdf5 and .nc (netCDF) "
                                     f"files{convert}", also=("layout",))
    return suffix


def load_grid(path: Any, *, key: Optional[str] = None, layout: str = "THWC",
              mmap: bool = True) -> Any:
    r"""Open a gridded time series stored in a file, in the ``(time, rows, cols, channels)``
    ("THWC") layout, without reading large files whole.

    ========================  =====================================================================
    file                      what is returned
    ========================  =====================================================================
    ``.npy``                  ``np.memmap`` (``mmap=True``) or an in-memory array
    ``.npz``                  array ``key``; memory-mapped when stored uncompressed (``np.savez``)
                              and ``mmap=True``, read into memory when compressed (``savez_compressed``)
    ``.h5`` ``.hdf5``         :class:`LazyGrid` over the dataset at path ``key`` (e.g. ``"obs/rain"``)
    ``.nc``                   :class:`LazyGrid` over the variable ``key``: netCDF-4 files through
                              ``h5netcdf``, classic netCDF-3 files through ``scipy.io`` when present;
                              CF ``scale_factor``/``add_offset``/``_FillValue`` are decoded
    ========================  =====================================================================

    Layout changes are views: a ``TCHW`` memmap comes back as a transposed memmap view and a
    ``THW`` one with a trailing channel axis of size 1; nothing is copied until indexed.
    Index the result (``grid[s:e]``), or hand it to :class:`WindowDataset`, which reads one
    window per item.

    Args:
        path: the file. Its suffix selects the reader.
        key: the array (``.npz``), dataset path (HDF5) or variable (netCDF) to read. With
            ``None`` the file must hold exactly one array (for netCDF: exactly one variable with
            the number of dimensions ``layout`` asks for); otherwise the error lists the choices.
        layout: how the axes are stored: ``"THWC"`` (time, rows, cols, channels), ``"TCHW"``
            (time, channels, rows, cols) or ``"THW"`` (one channel; a channel axis is added).
        mmap: memory-map ``.npy``/``.npz`` files instead of reading them. HDF5 and netCDF are
            always read lazily.

    Returns:
        an array-like of shape ``(T, H, W, C)``: ``np.ndarray``/``np.memmap`` or :class:`LazyGrid`.

    Example::

        >>> grid = load_grid("bikenyc.npz", key="data", layout="TCHW")   # doctest: +SKIP
        >>> grid.shape                                                   # doctest: +SKIP
        (1369, 16, 8, 2)
    """
    p = _check_path(path)
    layout = _check_layout(layout)
    if not isinstance(mmap, (bool, np.bool_)):
        raise TypeError(f"mmap must be True or False, got {mmap!r}")
    suffix = _format_of(p)

    if suffix in _NPY_SUFFIXES:
        if key is not None:
            raise ParameterError("key", f"key={key!r} was given, but a .npy file holds a single array; "
                                        "give no key")
        with _reading(p, ".npy"):
            arr = _load_npy(p, mmap)
        _check_ndim(arr.shape, layout, str(p))
        return _to_thwc(arr, layout)

    if suffix in _NPZ_SUFFIXES:
        if not zipfile.is_zipfile(p):
            raise GridFileError(f"{p} is not a .npz file: a .npz is a zip archive of .npy arrays (written by "
                                f"numpy.savez), and this file is not a zip archive")
        with _reading(p, ".npz"), zipfile.ZipFile(p) as zf:
            members = [n for n in zf.namelist() if n.endswith(".npy")]
        names = [n[:-4] for n in members]
        key = _choose_key(key, names, "array", p)
        with _reading(p, ".npz"):
            arr = _npz_member_memmap(p, key + ".npy") if mmap else None
            if arr is None:
                with np.load(p, allow_pickle=False) as npz:
                    try:
                        arr = npz[key]
                    except ValueError as exc:
                        if "pickle" not in str(exc):
                            raise
                        raise GridFileError(_object_array_message(f"array {key!r} in {p}")) from None
        _check_ndim(arr.shape, layout, f"array {key!r} in {p}")
        return _to_thwc(arr, layout)

    if suffix in _HDF5_SUFFIXES:
        import h5py

        with _reading(p, "HDF5"), h5py.File(p, "r") as f:
            names = _h5_datasets(f)
        if key is not None and isinstance(key, str) and key.strip("/") in names:
            key = key.strip("/")
        key = _choose_key(key, names, "dataset", p)
        return LazyGrid(p, key, layout, "hdf5")

    kind = _netcdf_kind(p)
    if kind == "netcdf4":
        h5netcdf = _import_h5netcdf()
        with _reading(p, "netCDF-4"), h5netcdf.File(p, "r") as f:
            shapes = {name: tuple(v.shape) for name, v in f.variables.items()}
    else:
        try:
            from scipy.io import netcdf_file
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(f"{p} is a classic (netCDF-3) file; reading it needs scipy "
                              "(pip install scipy), or convert it to netCDF-4 "
                              "(nccopy -k nc4 in.nc out.nc)") from err
        with _reading(p, "netCDF-3"), netcdf_file(p, "r", mmap=False) as f:
            shapes = {name: tuple(v.shape) for name, v in f.variables.items()}
    grids = [n for n, s in shapes.items() if len(s) == LAYOUTS[layout]]
    key = _choose_key(key, list(shapes), "variable", p, candidates=grids)
    return LazyGrid(p, key, layout, kind)


def load_timestamps(path: Any, key: Optional[str] = None) -> np.ndarray:
    """Read the time stamps stored beside a grid (a 1-D array), in memory.

    With ``key=None`` the first of ``"time"``, ``"times"``, ``"date"``, ``"dates"``,
    ``"timestamp"``, ``"timestamps"`` found in the file is read. Values are returned as stored
    (e.g. ``datetime64``, strings, bytes such as DeepST's ``b"2014080401"``, or numbers with
    a ``units`` attribute in netCDF); nothing is parsed.

    Shape:
        ``(T,)``

    Example::

        >>> load_timestamps("radar.npz")[:2]                             # doctest: +SKIP
        array(['2010-08-26T00:00', '2010-08-26T00:05'], dtype='datetime64[m]')
    """
    return _read_whole(path, key, "time stamps", default_keys=_TIME_KEYS, default_kind="time-stamp")


def load_array(path: Any, key: str) -> np.ndarray:
    """Read the array ``key`` of a ``.npz``, HDF5 or netCDF file whole, as stored (e.g. an external
    series such as temperature, ``(T,)`` or ``(T, F)``, beside a grid).

    Example::

        >>> load_array("bikenyc.npz", "temperature").shape               # doctest: +SKIP
        (1369,)
    """
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must name the array to read, got {key!r}")
    return _read_whole(path, key, "arrays beside the grid")


def _read_whole(path: Any, key: Optional[str], what: str, *, default_keys: Sequence[str] = (),
                default_kind: str = "") -> np.ndarray:
    """The array ``key`` of a ``.npz``, HDF5 or netCDF file, in memory; with ``key=None`` the first
    of ``default_keys`` (the usual ``default_kind`` names) the file holds. ``what`` names what is
    read, for the messages."""
    p = _check_path(path)
    suffix = _format_of(p)
    if suffix in _NPY_SUFFIXES:
        raise ValueError(f"path={str(p)!r}: a .npy file holds one array and no {what}; "
                         f"{what} can be read from .npz, HDF5 and netCDF files")

    def pick(available: Sequence[str], kind: str) -> str:
        if key is not None:
            return _choose_key(key, available, kind, p)
        for k in default_keys:
            if k in available:
                return k
        raise ValueError(f"key=None and {p} has none of the usual {default_kind} names "
                         f"{list(default_keys)}; pass key= one of {list(available)}")

    if suffix in _NPZ_SUFFIXES:
        with np.load(p, allow_pickle=False) as npz:
            return np.asarray(npz[pick(list(npz.files), "array")])
    if suffix in _HDF5_SUFFIXES:
        import h5py

        with h5py.File(p, "r") as f:
            return np.asarray(f[pick(_h5_datasets(f), "dataset")][()])
    if _netcdf_kind(p) == "netcdf4":
        with _import_h5netcdf().File(p, "r") as f:
            return np.asarray(f.variables[pick(list(f.variables), "variable")][...])
    from scipy.io import netcdf_file

    with netcdf_file(p, "r", mmap=False) as f:
        return np.array(f.variables[pick(list(f.variables), "variable")][:])


def hours_of_day(timestamps: Any) -> Optional[np.ndarray]:
    """The hour of the day (0..23) of each time stamp, or ``None`` if they cannot be read as times.

    Understood: ``datetime64`` values; digit strings ``YYYYMMDDhhmm`` (minutes) and DeepST's
    ``YYYYMMDDss`` with hour slots ``ss`` = 01..48 for half hours or 01..24 for hours (slot ``s``
    starts at hour ``(s - 1) * 24 / slots_per_day``); ISO strings ``YYYY-MM-DDThh:mm``.

    Shape:
        ``(T,)`` -> ``(T,)`` int64.

    Example::

        >>> hours_of_day(np.array(["2014080401", "2014080424"]))
        array([ 0, 23])
    """
    from .calendar import parse_timestamps

    try:
        minutes = parse_timestamps(timestamps).astype(np.int64)
    except ValueError:
        return None
    return (minutes % 1440) // 60
