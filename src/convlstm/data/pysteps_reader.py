r"""Radar composites stored one time step per file (ODIM HDF5, KNMI HDF5, MeteoSwiss GIF/HDF5, FMI
PGM, BoM netCDF...), read with pysteps's own importers as a lazy ``(time, rows, cols, 1)`` series.

Each file is read by ``pysteps.io.get_method(importer, "importer")`` and, by default, converted to
rain rate in mm/h by ``pysteps.utils.conversion.to_rainrate``, so the values are those pysteps
gives for the file. pysteps is the ``radar`` extra.

The files are given in time order; their time stamps are in their names, in each archive's own
pattern, and are not read here.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .._errors import ParameterError
from .._extras import import_pysteps
from ._time_index import apply_rest, split_key, time_positions
from .readers import GridFileError, GridSeries

__all__ = ["PystepsFrames", "pysteps_importers"]

#: The pip names of the packages pysteps's importers import on their own (GDAL's modules are
#: ``osgeo``, ``gdal``, ``osr``...), for the message when one is missing.
_OPTIONAL_PACKAGES = {"pyproj": "pyproj", "gdal": "GDAL", "gdalconst": "GDAL", "osr": "GDAL", "osgeo": "GDAL",
                      "netCDF4": "netCDF4", "pygrib": "pygrib", "metranet": "metranet", "h5py": "h5py",
                      "Image": "pillow", "PIL": "pillow"}


def _pysteps() -> Tuple[Any, Any]:
    """pysteps's ``io`` and ``utils.conversion`` modules, or an ``ImportError`` naming the extra.
    pysteps prints a line about its configuration file on import; that line is swallowed."""
    return import_pysteps("io", "utils.conversion",
                          needed_for="reading radar files with pysteps's importers needs pysteps, which is")


def pysteps_importers() -> Tuple[str, ...]:
    """The names of the importers the installed pysteps offers (its own table, plugins included),
    sorted: the values ``importer=`` of :class:`PystepsFrames` takes.

    Example::

        >>> "odim_hdf5" in pysteps_importers(), "knmi_hdf5" in pysteps_importers()
        (True, True)
    """
    ps_io, _ = _pysteps()
    table = getattr(ps_io.interface, "_importer_methods", None)
    if isinstance(table, Mapping):
        return tuple(sorted(table))
    try:  # a pysteps without the table: the names its error message lists
        ps_io.get_method("\x00", "importer")
    except ValueError as exc:
        text = str(exc)
        start, end = text.rfind("["), text.rfind("]")
        if 0 <= start < end:
            return tuple(sorted(n.strip(" '\"") for n in text[start + 1:end].split(",") if n.strip()))
    return ()


def _importer_function(name: Any) -> Any:
    """pysteps's importer ``name``; a :class:`ParameterError` listing pysteps's names otherwise."""
    ps_io, _ = _pysteps()
    if not isinstance(name, str):
        raise ParameterError("importer", f"importer must be the name of one of pysteps's importers "
                                         f"({', '.join(pysteps_importers())}), got {name!r}")
    try:
        return ps_io.get_method(name, "importer")
    except ValueError:
        raise ParameterError("importer", f"importer={name!r} is not one of pysteps's importers; pysteps offers: "
                                         f"{', '.join(pysteps_importers())}") from None


def _check_paths(paths: Any) -> List[str]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ParameterError("paths", f"paths must be a list of files, one per time step in time order (e.g. "
                                      f"sorted(glob.glob('radar/*.h5'))), got the single path {paths!r}")
    try:
        out = [os.fspath(p) for p in paths]
    except TypeError:
        raise ParameterError("paths", f"paths must be a list of file paths (str or os.PathLike), got "
                                      f"{paths!r}") from None
    if not out:
        raise ParameterError("paths", "paths is empty: give at least one file")
    missing = [p for p in out if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(repr(p) for p in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"paths: {len(missing)} of the {len(out)} files do not exist: {shown}")
    return out


def _check_kwargs(fn: Any, name: str, kwargs: Any) -> Dict[str, Any]:
    """``kwargs`` as a dict that ``fn(path, **kwargs)`` accepts; else a :class:`ParameterError` with
    the importer's signature."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ParameterError("importer_kwargs", f"importer_kwargs must be a dict of keyword arguments for pysteps's "
                                                f"{name} importer or None, got {type(kwargs).__name__}")
    kwargs = dict(kwargs)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C importer from a plugin
        return kwargs
    try:
        signature.bind("file", **kwargs)
    except TypeError as exc:
        raise ParameterError("importer_kwargs", f"pysteps's {name} importer is called as {name}{signature}, and "
                                                f"importer_kwargs={kwargs!r} does not fit it ({exc})") from None
    return kwargs


@contextlib.contextmanager
def _importing(path: str, name: str):
    """Turn a failure of pysteps's importer ``name`` on ``path`` into an error naming the file; a
    package the importer needs and cannot find into an ``ImportError`` saying which."""
    try:
        yield
    except (GridFileError, ImportError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever an importer raises on a file it cannot read
        if type(exc).__name__ == "MissingOptionalDependency":
            raise ImportError(f"pysteps's {name} importer cannot read {path}: {exc}") from None
        if isinstance(exc, NameError) and getattr(exc, "name", None) in _OPTIONAL_PACKAGES:
            package = _OPTIONAL_PACKAGES[exc.name]
            raise ImportError(f"pysteps's {name} importer cannot read {path}: it needs the {package} package, "
                              f"which is not installed (pip install {package})") from None
        raise GridFileError(f"{path}: pysteps's {name} importer cannot read it ({type(exc).__name__}: {exc})") \
            from None


def _units(metadata: Mapping[str, Any]) -> str:
    unit = str(metadata.get("unit", ""))
    transform = metadata.get("transform")
    return unit if transform in (None, "dB") else f"{unit} ({transform})"


class PystepsFrames(GridSeries):
    r"""A lazy series of radar frames, one file per time step, read with one of pysteps's
    importers: ``frames[i]`` imports the file ``paths[i]`` when it is indexed, no sooner.

    Each file is read by ``pysteps.io.get_method(importer, "importer")(path, **importer_kwargs)``
    and, with ``rain_rate=True``, converted to rain rate in mm/h by
    ``pysteps.utils.conversion.to_rainrate(precip, metadata)`` (reflectivity through the Z-R
    relation the importer's metadata gives, accumulations through its ``accutime``). Values are
    exactly what pysteps gives, as ``float32``; where pysteps gives NaN (no data, outside the
    radar's range) the frame has NaN: fill them before training (``--fill-nan``,
    :func:`~convlstm.data.check_finite` says where they are).

    The first file is read when the series is made, for the frame size and units; a file whose
    frame has another size raises a :class:`~convlstm.data.GridFileError` naming it when it is read.
    The series pickles by reference (its paths and options, no frames), for ``DataLoader`` workers.

    Args:
        paths: the files, one per time step, in time order. All must exist.
        importer (str): the name of a pysteps importer (:func:`pysteps_importers`), e.g.
            ``"odim_hdf5"``, ``"knmi_hdf5"``, ``"mch_gif"``, ``"fmi_pgm"``, ``"bom_rf3"``.
        rain_rate (bool): convert to mm/h with pysteps's ``to_rainrate``; ``False`` keeps the
            importer's own units (``units`` says which, e.g. ``"dBZ"`` or ``"mm"``).
        importer_kwargs (dict): keyword arguments of the importer, e.g. ``{"qty": "DBZH"}`` for
            ``odim_hdf5``, or ``{"product": "AQC", "unit": "mm", "accutime": 5.0}`` for ``mch_gif``.

    Attributes:
        paths: the files, as strings.
        importer: the importer's name.
        units: ``"mm/h"``, or the importer's unit with ``rain_rate=False``.

    Shape:
        ``shape`` is :math:`(N, H, W, 1)` for :math:`N` files of :math:`H \times W` frames;
        ``frames[i]`` is :math:`(H, W, 1)`, ``frames[a:b]`` and ``frames[[i, j]]`` are
        :math:`(k, H, W, 1)`, all ``float32`` numpy arrays.

    Raises:
        ParameterError: an importer pysteps does not offer (the message lists those it does), or
            ``importer_kwargs`` the importer does not take.
        FileNotFoundError: files that do not exist (the message lists them).
        ImportError: pysteps is not installed, or the importer needs a package that is not
            (``odim_hdf5`` and ``fmi_pgm`` need ``pyproj``).

    Example::

        >>> files = sorted(glob.glob("knmi/RAD_NL25_RAC_MFBS_5min_*.h5"))   # doctest: +SKIP
        >>> radar = PystepsFrames(files, "knmi_hdf5")                       # doctest: +SKIP
        >>> radar.shape, radar.units, radar[0:12].shape                     # doctest: +SKIP
        ((288, 765, 700, 1), 'mm/h', (12, 765, 700, 1))
    """

    def __init__(self, paths: Sequence[Any], importer: str, *, rain_rate: bool = True,
                 importer_kwargs: Optional[Mapping[str, Any]] = None) -> None:
        fn = _importer_function(importer)
        if not isinstance(rain_rate, (bool, np.bool_)):
            raise ParameterError("rain_rate", f"rain_rate must be True or False, got {rain_rate!r}")
        self.importer = importer.lower()
        self.rain_rate = bool(rain_rate)
        self.importer_kwargs = _check_kwargs(fn, self.importer, importer_kwargs)
        self.paths = _check_paths(paths)
        self._fn = fn
        frame, metadata = self._import(0)
        self._frame_shape = frame.shape
        self.units = _units(metadata)

    # -- reading one file --------------------------------------------------------------------
    def _import(self, i: int) -> Tuple[np.ndarray, Dict[str, Any]]:
        """The frame ``(H, W)`` ``float32`` of file ``i`` and its metadata (after ``to_rainrate``
        with ``rain_rate=True``)."""
        if self._fn is None:
            self._fn = _importer_function(self.importer)
        path = self.paths[i]
        with _importing(path, self.importer):
            precip, _, metadata = self._fn(path, **self.importer_kwargs)
            if isinstance(precip, np.ma.MaskedArray):
                precip = precip.filled(np.nan)
            if self.rain_rate:
                precip, metadata = _pysteps()[1].to_rainrate(precip, metadata)
            frame = np.asarray(precip, dtype=np.float32)
        if frame.ndim != 2:
            raise GridFileError(f"{path}: pysteps's {self.importer} importer gave an array of shape {frame.shape}, "
                                f"not one frame (rows, cols)")
        return frame, dict(metadata)

    def _frame(self, i: int) -> np.ndarray:
        frame, metadata = self._import(i)
        if frame.shape != self._frame_shape:
            raise GridFileError(f"{self.paths[i]}: its frame is {frame.shape[0]}x{frame.shape[1]}, but the series' "
                                f"frames are {self._frame_shape[0]}x{self._frame_shape[1]} (from {self.paths[0]}); "
                                f"all files must hold the same grid")
        if not self.rain_rate and _units(metadata) != self.units:
            raise GridFileError(f"{self.paths[i]}: its values are in {_units(metadata)!r}, but the series' are in "
                                f"{self.units!r} (from {self.paths[0]}); read with rain_rate=True to convert all "
                                f"to mm/h")
        return frame

    def metadata(self, i: int) -> Dict[str, Any]:
        """The pysteps metadata of the file ``paths[i]`` (projection, pixel sizes, ``unit``,
        ``threshold``, ``zerovalue``...), as ``to_rainrate`` leaves it with ``rain_rate=True``
        (then in mm/h), else as the importer gives it. Reads the file."""
        positions, _ = time_positions(i, len(self.paths), "PystepsFrames.metadata")
        return self._import(int(positions[0]))[1]

    # -- array protocol ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return (len(self.paths),) + tuple(self._frame_shape) + (1,)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def __repr__(self) -> str:
        return (f"PystepsFrames({len(self.paths)} files, importer={self.importer!r}, units={self.units!r}, "
                f"shape={self.shape})")

    def __getitem__(self, key: Any) -> np.ndarray:
        t, rest = split_key(key, "PystepsFrames")
        positions, has_time = time_positions(t, len(self.paths), "PystepsFrames")
        unique, inverse = np.unique(positions, return_inverse=True)
        read = np.empty((len(unique),) + tuple(self._frame_shape) + (1,), dtype=np.float32)
        for k, i in enumerate(unique):
            read[k, ..., 0] = self._frame(int(i))
        return apply_rest(read[inverse.ravel()], rest, has_time)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fn"] = None  # found again by name on the other side
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
