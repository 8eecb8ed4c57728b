r"""Gridded series in netCDF files, Zarr stores and GRIB files, read with xarray as a lazy
``(time, rows, cols, channels)`` series: xarray decodes the CF conventions (times, ``scale_factor``,
``add_offset``, ``_FillValue``) and reads only the frames indexed.

netCDF is read with the engine xarray picks (``h5netcdf`` for netCDF-4, ``scipy`` for netCDF-3) or
the one given; a ``.zarr`` directory with ``zarr``; ``.grib``/``.grib2`` files with ``cfgrib``
when it is installed. xarray and zarr are the ``zarr`` extra.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .._errors import ParameterError
from .._extras import install_hint
from ._time_index import apply_rest, split_key, time_positions
from .coordinates import GridCoordinates
from .readers import ClosesItsFile, GridSeries, _reading

__all__ = ["XarrayGrid"]

_GRIB_SUFFIXES = (".grib", ".grib1", ".grib2", ".grb", ".grb2", ".gb2")
_ZARR_SUFFIXES = (".zarr",)

#: Names and CF ``standard_name`` values that say what a dimension is, when its ``axis``
#: attribute does not.
_NAMES = {"T": ("time", "times", "t", "valid_time", "date"),
          "Y": ("y", "lat", "latitude", "rows", "row", "rlat", "yc", "south_north"),
          "X": ("x", "lon", "longitude", "cols", "col", "columns", "rlon", "xc", "west_east")}
_STANDARD_NAMES = {"T": ("time",),
                   "Y": ("latitude", "projection_y_coordinate", "grid_latitude", "projection_y_angular_coordinate"),
                   "X": ("longitude", "projection_x_coordinate", "grid_longitude",
                         "projection_x_angular_coordinate")}
_ROLE_WORDS = {"T": "time", "Y": "row (Y)", "X": "column (X)"}


def _xarray() -> Any:
    try:
        import xarray
    except ImportError as exc:
        raise ImportError(f"reading netCDF, Zarr and GRIB files with xarray needs xarray, which is not installed "
                          f"({exc}); install it with: {install_hint('zarr')}") from exc
    return xarray


def _check_source(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r} (type {type(path).__name__})")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"path={str(path)!r}: no such file or Zarr store")
    return p


def _engine(p: Path, engine: Any) -> Optional[str]:
    """The xarray engine for ``p``: ``engine`` if given, ``"zarr"`` for a directory or ``.zarr``,
    ``"cfgrib"`` for GRIB suffixes, else ``None`` (xarray picks); an ``ImportError`` that says what
    to install when the engine's package is missing."""
    if engine is not None and not isinstance(engine, str):
        raise ParameterError("engine", f"engine must be the name of an xarray backend (e.g. 'h5netcdf', 'scipy', "
                                       f"'zarr', 'cfgrib') or None, got {engine!r}")
    if engine is None:
        suffix = p.suffix.lower()
        if p.is_dir() or suffix in _ZARR_SUFFIXES:
            engine = "zarr"
        elif suffix in _GRIB_SUFFIXES:
            engine = "cfgrib"
    if engine == "zarr":
        try:
            import zarr  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{p} is a Zarr store; reading it needs zarr, which is not installed ({exc}); install "
                              f"it with: {install_hint('zarr')}") from exc
    elif engine == "cfgrib":
        try:
            import cfgrib  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"{p} is a GRIB file; reading it needs cfgrib (which uses the ecCodes library), which "
                              f"is not installed ({exc}); install it with: pip install cfgrib, beside xarray "
                              f"({install_hint('zarr')})") from exc
    elif p.is_dir():
        raise ParameterError("path", f"{p} is a directory; a directory is read as a Zarr store (engine='zarr'), "
                                     f"not with engine={engine!r}", also=("engine",))
    return engine


def _format(engine: Optional[str]) -> str:
    return {"zarr": "Zarr", "cfgrib": "GRIB"}.get(engine or "", "netCDF")


def _role(ds: Any, dim: str) -> Optional[str]:
    """``"T"``, ``"Y"``, ``"X"`` or ``None``: what the dimension ``dim`` of ``ds`` is, by its
    coordinate's CF ``axis``, then ``standard_name`` (and a decoded time's dtype), then its name."""
    coord = ds.variables.get(dim)
    attrs = dict(coord.attrs) if coord is not None else {}
    axis = str(attrs.get("axis", "")).upper()
    if axis in ("T", "Y", "X"):
        return axis
    standard = attrs.get("standard_name")
    for role, names in _STANDARD_NAMES.items():
        if standard in names:
            return role
    if _time_coordinate(ds, dim) is not None:
        return "T"
    for role, names in _NAMES.items():
        if str(dim).lower() in names:
            return role
    return None


def _time_coordinate(ds: Any, dim: str) -> Optional[str]:
    """The name of a decoded time coordinate along ``dim`` alone: ``dim``'s own, else one such as
    GRIB's ``valid_time`` over forecast ``step``; ``None`` if there is none."""
    names = [dim] + sorted((str(n) for n in ds.coords if str(n) != dim), key=lambda n: n != "valid_time")
    for name in names:
        var = ds.variables.get(name)
        if var is not None and tuple(var.dims) == (dim,) and np.issubdtype(var.dtype, np.datetime64):
            return name
    return None


def _dims_of(ds: Any, name: str, time_dim: Optional[str],
             spatial_dims: Optional[Tuple[str, str]]) -> Tuple[str, str, str, Optional[str]]:
    """The (time, row, column, channel or None) dimensions of the variable ``name``; a
    ``ValueError`` saying why it is not a grid series otherwise."""
    dims = tuple(str(d) for d in ds[name].dims)
    roles = {d: _role(ds, d) for d in dims}
    if time_dim is not None:
        if time_dim not in dims:
            raise ValueError(f"it has no dimension {time_dim!r} (time_dim); its dimensions are {dims}")
        t = time_dim
    else:
        found = [d for d in dims if roles[d] == "T"]
        if len(found) != 1:
            raise ValueError(f"{'no' if not found else 'more than one'} time dimension among {dims} "
                             f"({'none has' if not found else ', '.join(found) + ' have'} a CF axis 'T', "
                             f"standard_name 'time' or a time's name); name it with time_dim=")
        t = found[0]
    rest = [d for d in dims if d != t]
    if len(rest) not in (2, 3):
        raise ValueError(f"dimensions {dims}: a grid series has a time dimension, two spatial ones and at most one "
                         f"more (channels)")
    if spatial_dims is not None:
        missing = [d for d in spatial_dims if d not in rest]
        if missing:
            raise ValueError(f"it has no spatial dimension {missing[0]!r} (spatial_dims); its dimensions are {dims}")
        y, x = spatial_dims
    else:
        ys = [d for d in rest if roles[d] == "Y"]
        xs = [d for d in rest if roles[d] == "X"]
        if len(ys) == 1 and len(xs) == 1:
            y, x = ys[0], xs[0]
        elif len(rest) == 2 and len(ys) <= 1 and len(xs) <= 1:
            # one or none of the two is named: the other is the remaining one, else the stored order
            if ys:
                y, x = ys[0], next(d for d in rest if d != ys[0])
            elif xs:
                x, y = xs[0], next(d for d in rest if d != xs[0])
            else:
                y, x = rest
        else:
            described = ", ".join(f"{d} ({_ROLE_WORDS.get(roles[d], 'unknown')})" for d in rest)
            raise ValueError(f"cannot tell its row and column dimensions among {described} (by a CF axis 'Y'/'X', "
                             f"a standard_name such as 'latitude' or 'projection_x_coordinate', or names such as "
                             f"y/x, lat/lon); name them with spatial_dims=(ROWS, COLS)")
    channel = [d for d in rest if d not in (y, x)]
    return t, y, x, (channel[0] if channel else None)


def _grid_variables(ds: Any, time_dim: Optional[str], spatial_dims: Optional[Tuple[str, str]]) -> Dict[str, Any]:
    """The data variables of ``ds`` that read as a grid series, name -> their dimensions."""
    out = {}
    for name in ds.data_vars:
        try:
            out[str(name)] = _dims_of(ds, str(name), time_dim, spatial_dims)
        except ValueError:
            continue
    return out


class XarrayGrid(GridSeries, ClosesItsFile):
    r"""A lazily read grid series in a netCDF file, a Zarr store or a GRIB file, through xarray,
    in the ``(time, rows, cols, channels)`` layout whatever the order of the dimensions stored.

    The dimensions are found by CF's conventions: the time dimension by its coordinate's
    ``axis="T"``, ``standard_name="time"``, a decoded time along it (its own coordinate, or e.g.
    ``valid_time`` over ``step``), or its name (``time``); the rows and
    columns by ``axis`` ``"Y"``/``"X"``, ``standard_name`` (``latitude``/``longitude``,
    ``projection_y_coordinate``/``projection_x_coordinate``...) or names (``y``/``x``,
    ``lat``/``lon``, ``latitude``/``longitude``, ``rows``/``cols``); when neither of two spatial
    dimensions says what it is, they are taken in their stored order. One further dimension (e.g.
    ``level`` or ``band``) becomes the channels.

    Indexing reads only the frames asked for (``grid[s:s + 10]`` reads ten time steps) and
    returns ``float32`` numpy arrays, decoded by xarray: ``value * scale_factor + add_offset``,
    with ``_FillValue``/``missing_value`` as NaN (fill them before training, e.g. ``--fill-nan``).

    The grid pickles by reference (path, variable, engine and dimensions), for ``DataLoader``
    workers; the other side opens the file again.

    Args:
        path: a netCDF file, a Zarr store (a ``.zarr`` directory) or a GRIB file.
        variable (str): the data variable to read; ``None`` takes the only one with a time and two
            spatial dimensions (the error lists the candidates when there are several).
        engine (str): the xarray backend, e.g. ``"h5netcdf"``, ``"scipy"``, ``"zarr"``,
            ``"cfgrib"``; ``None`` picks by the path (xarray's own choice for netCDF).
        time_dim (str): the time dimension, when CF attributes and names do not tell it.
        spatial_dims: ``(rows, cols)`` dimension names, when CF attributes and names do not tell them.

    Attributes:
        path, variable, engine: what was opened.
        dims: the file's dimension names in the order of the series' axes: ``(time, rows, cols)``
            and the channel dimension if any.
        units: the variable's ``units`` attribute (``""`` without one).
        times: ``(T,)`` ``datetime64[m]`` time stamps, as xarray decodes them (the time
            dimension's coordinate, or a time coordinate along it such as GRIB's ``valid_time``
            over ``step``), or ``None`` when the file has none.
        coords: the spatial coordinates (:class:`~convlstm.data.GridCoordinates`), for a forecast
            file to carry the input's coordinates and attributes.

    Shape:
        ``shape`` is :math:`(T, H, W, C)` (:math:`C = 1` without a channel dimension);
        ``grid[t]`` is :math:`(H, W, C)`, ``grid[a:b]`` and ``grid[[i, j]]`` are
        :math:`(k, H, W, C)`.

    Raises:
        ParameterError: ``variable`` is not in the file, or is not a grid series (the message says
            why and lists the candidates).
        ImportError: xarray, or the package of the engine (zarr, cfgrib), is not installed; the
            message says what to install.
        ~convlstm.data.GridFileError: the file cannot be read (the message gives xarray's reason).

    Example::

        >>> with XarrayGrid("radar.nc") as grid:                     # doctest: +SKIP
        ...     grid.variable, grid.dims, grid.shape, grid.units
        ('rain', ('time', 'y', 'x'), (8760, 256, 256, 1), 'mm/h')
        >>> grid = XarrayGrid("era5.zarr", "t2m")                     # doctest: +SKIP
        >>> grid.times[:2], grid[0:4].shape                           # doctest: +SKIP
        (array(['2020-01-01T00:00', '2020-01-01T01:00'], dtype='datetime64[m]'), (4, 721, 1440, 1))
    """

    def __init__(self, path: Any, variable: Optional[str] = None, *, engine: Optional[str] = None,
                 time_dim: Optional[str] = None, spatial_dims: Optional[Sequence[str]] = None) -> None:
        p = _check_source(path)
        self.path = str(path)
        self.engine = _engine(p, engine)
        if variable is not None and not isinstance(variable, str):
            raise ParameterError("variable", f"variable must be the name of a data variable or None, got {variable!r}")
        if time_dim is not None and not isinstance(time_dim, str):
            raise ParameterError("time_dim", f"time_dim must be a dimension name or None, got {time_dim!r}")
        if spatial_dims is not None:
            if isinstance(spatial_dims, str) or len(spatial_dims) != 2 or not all(
                    isinstance(d, str) for d in spatial_dims) or spatial_dims[0] == spatial_dims[1]:
                raise ParameterError("spatial_dims", f"spatial_dims must be two different dimension names (rows, "
                                                     f"cols) or None, got {spatial_dims!r}")
            spatial_dims = (spatial_dims[0], spatial_dims[1])
        self.variable = variable
        self.time_dim = time_dim
        self.spatial_dims = spatial_dims
        self._ds = None
        self._open()

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> None:
        xr = _xarray()
        self._pid = os.getpid()
        fmt = _format(self.engine)
        kwargs: Dict[str, Any] = {"engine": self.engine, "chunks": None, "cache": False}
        if self.engine == "cfgrib":
            kwargs["backend_kwargs"] = {"indexpath": ""}  # write no index file beside the GRIB file
        with _reading(self.path, fmt):
            ds = xr.open_dataset(self.path, **kwargs)
        try:
            self._choose(ds)
        except BaseException:
            ds.close()
            raise
        self._ds = ds
        self._var = ds[self.variable]
        t, y, x, c = self._layout
        sizes = dict(self._var.sizes)
        self._shape = (int(sizes[t]), int(sizes[y]), int(sizes[x]), int(sizes[c]) if c else 1)
        self._times: Any = None
        self._times_read = False

    def _choose(self, ds: Any) -> None:
        data_vars = [str(v) for v in ds.data_vars]
        if self.variable is None:
            grids = _grid_variables(ds, self.time_dim, self.spatial_dims)
            if len(grids) != 1:
                raise ParameterError("variable", f"{self.path} holds {len(grids)} variables that read as a grid series "
                                                 f"(time and two spatial dimensions): "
                                                 f"{', '.join(map(repr, grids)) or 'none'}; choose one with "
                                                 f"variable=NAME, NAME one of {data_vars}")
            self.variable, self._layout = next(iter(grids.items()))
            return
        if self.variable not in ds.data_vars:
            raise ParameterError("variable", f"variable={self.variable!r} is not a data variable of {self.path}; it "
                                             f"has: {data_vars}")
        try:
            self._layout = _dims_of(ds, self.variable, self.time_dim, self.spatial_dims)
        except ValueError as exc:
            grids = _grid_variables(ds, self.time_dim, self.spatial_dims)
            raise ParameterError("variable", f"variable={self.variable!r} of {self.path} is not a grid series: {exc}. "
                                             f"Variables that are: {list(grids) or 'none'}",
                                 also=("time_dim", "spatial_dims")) from None

    def close(self) -> None:
        """Close the file. The grid cannot be read afterwards."""
        ds, self._ds, self._var = self._ds, None, None
        if ds is not None:
            ds.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "variable": self.variable, "engine": self.engine, "time_dim": self._layout[0],
                "spatial_dims": self._layout[1:3]}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ds = None
        self._open()

    # -- what the file says ------------------------------------------------------------------
    @property
    def dims(self) -> Tuple[str, ...]:
        return tuple(d for d in self._layout if d is not None)

    @property
    def units(self) -> str:
        self._check_open()
        units = self._var.attrs.get("units", "")
        return units.decode() if isinstance(units, bytes) else str(units)

    @property
    def attrs(self) -> Dict[str, Any]:
        """The variable's attributes, as xarray decodes them (without the CF encoding ones)."""
        self._check_open()
        return dict(self._var.attrs)

    @property
    def times(self) -> Optional[np.ndarray]:
        if not self._times_read:
            self._check_open()
            self._times = self._read_times()
            self._times_read = True
        return self._times

    def _read_times(self) -> Optional[np.ndarray]:
        t = self._layout[0]
        name = _time_coordinate(self._ds, t) or t
        if name not in self._ds.variables:
            return None
        coord = self._ds.variables[name]
        values = np.asarray(coord.values)
        if np.issubdtype(values.dtype, np.datetime64):
            return values.astype("datetime64[m]")
        if values.dtype.kind == "O" and values.size and hasattr(values.flat[0], "calendar"):
            raise ValueError(f"{self.path}: the times of {t!r} are in the {values.flat[0].calendar!r} calendar, "
                             f"whose dates numpy's datetime64 cannot hold")
        raise ValueError(f"{self.path}: the coordinate {t!r} holds {values.dtype} values that xarray does not decode "
                         f"as times (CF units such as 'minutes since 2020-01-01' are needed)")

    @property
    def coords(self) -> GridCoordinates:
        """The spatial coordinates of the grid: the 1-D coordinates of its row and column
        dimensions and the auxiliary coordinates over them (e.g. ``lat(y, x)``), with their
        attributes, the ``grid_mapping`` variable, and the variable's own attributes."""
        self._check_open()
        _, y, x, _ = self._layout
        out = GridCoordinates(y, x, grid_attrs=self.attrs)
        names = [y, x] + [str(n) for n in self._var.coords]
        for name in dict.fromkeys(names):
            if name not in self._ds.variables:
                continue
            var = self._ds.variables[name]
            dims = tuple(str(d) for d in var.dims)
            if dims and set(dims) <= {y, x}:
                out.variables[name] = (dims, np.asarray(var.values), dict(var.attrs))
        mapping = self._var.attrs.get("grid_mapping", self._var.encoding.get("grid_mapping"))
        if isinstance(mapping, str) and mapping in self._ds.variables and not self._ds.variables[mapping].dims:
            out.grid_mapping = (mapping, dict(self._ds.variables[mapping].attrs))
        return out

    # -- array protocol ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __repr__(self) -> str:
        return (f"XarrayGrid(path={self.path!r}, variable={self.variable!r}, engine={self.engine!r}, "
                f"dims={self.dims}, shape={self._shape})")

    def _check_open(self) -> None:
        if self._ds is None:
            raise ValueError(f"XarrayGrid for {self.path!r} is closed")
        if self._pid != os.getpid():  # a forked DataLoader worker: open the file again in this process
            self._ds = None
            self._open()

    def _read(self, index: Any) -> np.ndarray:
        """The frames at time ``index`` (a slice or sorted unique positions) as ``(k, H, W, C)``."""
        t, y, x, c = self._layout
        order = (t, y, x) + ((c,) if c else ())
        with _reading(self.path, _format(self.engine)):
            values = np.asarray(self._var.isel({t: index}).transpose(*order).values)
        if c is None:
            values = values[..., None]
        return values.astype(np.float32, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        self._check_open()
        t, rest = split_key(key, "XarrayGrid")
        positions, has_time = time_positions(t, self._shape[0], "XarrayGrid")
        if positions.size == 0:
            frames = np.empty((0,) + self._shape[1:], dtype=np.float32)
        else:
            unique, inverse = np.unique(positions, return_inverse=True)
            lo, hi = int(unique[0]), int(unique[-1]) + 1
            if hi - lo <= 2 * unique.size:  # dense: one contiguous read
                frames = self._read(slice(lo, hi))[positions - lo]
            else:
                frames = self._read(unique)[inverse.ravel()]
        return apply_rest(frames, rest, has_time)

