"""What a grid file says about where and when its frames are: the time stamps as ``datetime64``
(strings, ``datetime64`` values, or CF numbers such as ``"minutes since 2020-01-01"`` in netCDF
and HDF5), and the spatial coordinates of a netCDF grid variable (``x``/``y``, ``lat``/``lon``,
with their attributes and the variable's ``grid_mapping``), so that a forecast file can carry them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from .calendar import decode_cf_times, parse_timestamps
from .readers import (_HDF5_SUFFIXES, _NPY_SUFFIXES, _NPZ_SUFFIXES, _TIME_KEYS, _check_layout, _check_path,
                      _choose_key, _format_of, _import_h5netcdf, _netcdf_kind)

__all__ = ["GridCoordinates", "read_times", "grid_coordinates"]

#: Attributes a writer sets itself (HDF5 dimension scales, netCDF-4 internals), never copied.
_INTERNAL_ATTRS = ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
                   "_nc3_strict", "bounds")


@dataclass
class _Variable:
    """One variable of a file: its dimension names, attributes, and a reader of its values."""
    dims: Tuple[str, ...]
    attrs: Dict[str, Any]
    read: Any

    def values(self) -> np.ndarray:
        return np.asarray(self.read())


@dataclass
class GridCoordinates:
    """The spatial coordinates of a netCDF grid variable, to copy into a forecast file.

    Attributes:
        row_dim, col_dim: the names of the file's dimensions along the grid's rows and columns
            (e.g. ``"y"``, ``"x"`` or ``"lat"``, ``"lon"``).
        variables: name -> ``(dims, values, attrs)`` of each coordinate over those dimensions: the
            1-D coordinate variables (named as their dimension, e.g. ``y(y)``) and the auxiliary
            ones the grid variable's ``coordinates`` attribute names (e.g. ``lat(y, x)``).
        grid_mapping: ``(name, attrs)`` of the variable its ``grid_mapping`` attribute names
            (the projection), or ``None``.
        grid_attrs: the grid variable's own attributes (``long_name``, ``units``...).
    """
    row_dim: str
    col_dim: str
    variables: Dict[str, Tuple[Tuple[str, ...], np.ndarray, Dict[str, Any]]] = field(default_factory=dict)
    grid_mapping: Optional[Tuple[str, Dict[str, Any]]] = None
    grid_attrs: Dict[str, Any] = field(default_factory=dict)


def _text(value: Any) -> Any:
    """Attribute values as written by another reader: bytes -> str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _clean(attrs: Any) -> Dict[str, Any]:
    return {str(k): _text(v) for k, v in dict(attrs).items() if str(k) not in _INTERNAL_ATTRS}


@contextlib.contextmanager
def _variables(p: Path) -> Iterator[Optional[Dict[str, _Variable]]]:
    """The variables of the netCDF (3 or 4) or HDF5 file ``p`` by name (HDF5: its top-level
    datasets, without dimension names); ``None`` for ``.npy`` and ``.npz`` files."""
    suffix = _format_of(p)
    if suffix in _NPY_SUFFIXES + _NPZ_SUFFIXES:
        yield None
    elif suffix in _HDF5_SUFFIXES:
        import h5py

        with h5py.File(p, "r") as f:
            yield {k: _Variable((), _clean(d.attrs), lambda d=d: d[()]) for k, d in f.items()
                   if isinstance(d, h5py.Dataset)}
    elif _netcdf_kind(p) == "netcdf4":
        with _import_h5netcdf().File(p, "r") as f:
            yield {k: _Variable(tuple(v.dimensions), _clean(v.attrs), lambda v=v: v[...])
                   for k, v in f.variables.items()}
    else:
        from scipy.io import netcdf_file

        with netcdf_file(p, "r", mmap=False) as f:
            yield {k: _Variable(tuple(v.dimensions), _clean(v._attributes), lambda v=v: np.array(v.data))
                   for k, v in f.variables.items()}


def read_times(path: Any, key: Optional[str] = None) -> np.ndarray:
    """The time stamps stored beside a grid, as ``datetime64[m]``.

    With ``key=None`` the first of ``"time"``, ``"times"``, ``"date"``, ``"dates"``,
    ``"timestamp"``, ``"timestamps"`` the file holds is read. Strings and ``datetime64`` values
    are read by :func:`~convlstm.data.parse_timestamps`; numbers by their CF ``units`` and
    ``calendar`` attributes (netCDF, HDF5) with :func:`~convlstm.data.decode_cf_times`.

    Raises:
        ValueError: the file has no such array, it is a ``.npy`` file, or its values cannot be read
            as times (numbers without ``units``); the message says which.

    Shape:
        ``(T,)``

    Example::

        >>> read_times("radar.nc")[:2]                                   # doctest: +SKIP
        array(['2010-08-26T00:00', '2010-08-26T00:05'], dtype='datetime64[m]')
    """
    p = _check_path(path)
    with _variables(p) as variables:
        if variables is None:
            from .readers import load_timestamps

            return parse_timestamps(load_timestamps(p, key))
        name = _time_name(variables, key, p)
        var = variables[name]
        values = var.values()
        if values.dtype.kind in "iuf":
            if "units" not in var.attrs:
                raise ValueError(f"{p}: the time variable {name!r} holds numbers without a 'units' attribute "
                                 f"('minutes since 2020-01-01 00:00'), so they cannot be read as times")
            return decode_cf_times(values, var.attrs["units"], var.attrs.get("calendar"))
        return parse_timestamps(values)


def _time_name(variables: Dict[str, _Variable], key: Optional[str], p: Path) -> str:
    if key is not None:
        return _choose_key(key, list(variables), "variable", p)
    for k in _TIME_KEYS:
        if k in variables:
            return k
    raise ValueError(f"key=None and {p} has none of the usual time-stamp names {list(_TIME_KEYS)}; pass key= "
                     f"one of {list(variables)}")


def grid_coordinates(path: Any, key: str, layout: str = "THWC") -> Optional[GridCoordinates]:
    """The spatial coordinates of the grid variable ``key`` in the netCDF file ``path`` read in
    ``layout`` (which of its dimensions are rows and columns), or ``None`` when the file is not
    netCDF or names no dimensions (HDF5 without netCDF dimensions, ``.npy``, ``.npz``).

    Copied are the 1-D coordinate variables of the row and column dimensions and the auxiliary
    coordinates (the variable's ``coordinates`` attribute) that lie over those dimensions only,
    each with its attributes (a ``bounds`` attribute is dropped: the bounds are not copied).

    Example::

        >>> c = grid_coordinates("radar.nc", "rain", "THW")               # doctest: +SKIP
        >>> c.row_dim, c.col_dim, sorted(c.variables)                     # doctest: +SKIP
        ('y', 'x', ['lat', 'lon', 'x', 'y'])
    """
    p = _check_path(path)
    layout = _check_layout(layout)
    with _variables(p) as variables:
        if variables is None or key not in variables or not variables[key].dims:
            return None
        grid = variables[key]
        row_dim, col_dim = (grid.dims[2], grid.dims[3]) if layout == "TCHW" else (grid.dims[1], grid.dims[2])
        names = [row_dim, col_dim] + str(grid.attrs.get("coordinates", "")).split()
        coords = GridCoordinates(row_dim, col_dim, grid_attrs=grid.attrs)
        for name in dict.fromkeys(names):
            var = variables.get(name)
            if var is not None and var.dims and set(var.dims) <= {row_dim, col_dim}:
                coords.variables[name] = (var.dims, var.values(), var.attrs)
        mapping = grid.attrs.get("grid_mapping")
        if isinstance(mapping, str) and mapping in variables and not variables[mapping].dims:
            coords.grid_mapping = (mapping, variables[mapping].attrs)
        return coords
