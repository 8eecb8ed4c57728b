r"""An archive of grid files read as one series cut into events: a list, a glob or a folder of
files, ordered in time, with the frames of every file joined along the time axis and the
**events** (the gap-free stretches that windows may span) kept beside them.

Rules, in order:

- The files come from a list of paths, a glob pattern (``"radar/*.h5"``) or a folder (every file in
  it whose suffix the reader takes, sorted by name).
- Each file is read lazily by the chosen reader: ``"auto"`` (:func:`~convlstm.data.load_grid`, by
  suffix, or xarray for a ``.zarr`` store), ``"xarray"`` (:class:`~convlstm.data.XarrayGrid`) or
  ``"pysteps:NAME"`` (pysteps's importer ``NAME``, one frame per file, in mm/h:
  :class:`~convlstm.data.PystepsFrames`).
- Time stamps come from the files (a time variable beside the grid) or, with ``time_from_name``,
  from the file names (a :func:`time.strftime` pattern such as ``"%Y%m%d%H%M"``, for archives of
  one frame per file). The files are put in time order when every frame has a stamp.
- A file holding several frames is an event of its own. Files holding one frame each (an archive
  of one file per time step) are joined. Either way an event is cut wherever consecutive time
  stamps are further apart than the archive's step (the most common difference): a missing time
  step is a **gap**, and no window crosses it.

Shapes: the archive is a series :math:`(T, H, W, C)` with :math:`T = \sum_f T_f` frames;
``events`` is :math:`(E, 2)`, the ``[start, stop)`` frame ranges of the events, in order,
covering ``[0, T)``.
"""
from __future__ import annotations

import glob as _glob
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._errors import ParameterError
from ._checks import to_numpy
from .calendar import _common_step
from .readers import GridSeries

__all__ = ["GridArchive", "open_archive", "list_archive_files", "time_from_file_name", "find_events",
           "is_archive_input", "READERS"]

#: The readers an archive takes: ``"auto"`` (by suffix), ``"xarray"``, or ``"pysteps:NAME"``.
READERS = ("auto", "xarray", "pysteps:NAME")

_GRID_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".he5", ".nc", ".nc4", ".netcdf", ".zarr")
_FORMAT_DIGITS = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{2}", "d": r"\d{2}", "H": r"\d{2}", "M": r"\d{2}",
                  "S": r"\d{2}", "j": r"\d{3}"}


# --------------------------------------------------------------------------------------------
# the files
def is_archive_input(inputs: Any, reader: str = "auto", time_from_name: Optional[str] = None) -> bool:
    """Whether ``inputs`` must be read as an archive (:func:`open_archive`) rather than as one
    grid file by :func:`~convlstm.data.load_grid`: a list of several paths, a glob pattern, a
    folder, a ``.zarr`` store (one file, read by xarray), or a reader or a time pattern other than
    the plain file's."""
    if reader != "auto" or time_from_name is not None:
        return True
    if isinstance(inputs, (list, tuple)):
        return len(inputs) != 1 or is_archive_input(inputs[0])
    text = str(inputs)
    return _glob.has_magic(text) or Path(text).is_dir()  # a folder, or a .zarr store (read by xarray)


def list_archive_files(inputs: Any, reader: str = "auto") -> List[Path]:
    """The files of ``inputs``: each path of a list (a folder or a glob pattern in it expanded),
    sorted by name within each folder or pattern. A folder gives the files in it whose suffix
    the reader takes (every file for a pysteps importer, whose formats have no fixed suffix).

    Raises:
        ParameterError: (``data``) a path that does not exist, or a pattern or folder that
            matches no file.
    """
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise ParameterError("data", "no file was given: give a grid file, a list of files, a glob pattern or "
                                     "a folder")
    files: List[Path] = []
    for item in items:
        text = str(item)
        if _glob.has_magic(text):
            found = sorted(Path(p) for p in _glob.glob(text) if Path(p).is_file() or p.endswith(".zarr"))
            if not found:
                raise ParameterError("data", f"the pattern {text!r} matches no file")
            files += found
            continue
        p = Path(text)
        if p.is_dir() and p.suffix.lower() != ".zarr":
            found = sorted(f for f in p.iterdir() if not f.name.startswith(".") and
                           (f.is_file() or f.suffix.lower() == ".zarr") and
                           (reader.startswith("pysteps:") or f.suffix.lower() in _GRID_SUFFIXES))
            if not found:
                what = "file" if reader.startswith("pysteps:") else f"grid file ({', '.join(_GRID_SUFFIXES)})"
                raise ParameterError("data", f"the folder {text!r} holds no {what}")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise ParameterError("data", f"{text!r} does not exist (give a grid file, a list of files, a glob "
                                         f"pattern such as 'radar/*.h5' or a folder)")
    return files


def time_from_file_name(path: Any, pattern: str) -> np.datetime64:
    """The time stamp written in a file's name, read with the :func:`time.strftime` ``pattern``
    (``%Y %y %m %d %H %M %S %j`` and literal characters), found anywhere in the name.

    Example::

        >>> time_from_file_name("RAD_NL25_PCP_NA_201008260735.h5", "%Y%m%d%H%M")
        numpy.datetime64('2010-08-26T07:35')
    """
    name = Path(str(path)).name
    regex, k = "", 0
    while k < len(pattern):
        ch = pattern[k]
        if ch == "%" and k + 1 < len(pattern):
            code = pattern[k + 1]
            if code == "%":
                regex += "%"
            elif code in _FORMAT_DIGITS:
                regex += _FORMAT_DIGITS[code]
            else:
                raise ParameterError("time_from_name", f"time_from_name={pattern!r}: %{code} is not understood; "
                                                       f"use {' '.join('%' + c for c in _FORMAT_DIGITS)}")
            k += 2
        else:
            regex += re.escape(ch)
            k += 1
    found = re.search(regex, name)
    if found is None:
        raise ParameterError("time_from_name", f"the file name {name!r} holds no time of the form {pattern!r}")
    try:
        stamp = datetime.strptime(found.group(0), pattern)
    except ValueError as exc:
        raise ParameterError("time_from_name", f"the file name {name!r}: {found.group(0)!r} is not a time of the "
                                               f"form {pattern!r} ({exc})") from None
    return np.datetime64(stamp, "m")


# --------------------------------------------------------------------------------------------
# events
def find_events(times: Optional[np.ndarray], file_stops: Sequence[int], *, join_files: bool = False,
                step: Optional[int] = None) -> Tuple[np.ndarray, List[Tuple[int, int]]]:
    r"""The events of a series of ``file_stops[-1]`` frames: ``[start, stop)`` ranges cut at each
    file's end (unless ``join_files``) and wherever consecutive time stamps are more than
    ``step`` minutes apart (default: their most common difference).

    Args:
        times: ``datetime64[m]`` stamps of the frames :math:`(T,)`, or ``None`` (no gaps known).
        file_stops: the cumulative frame counts of the files, increasing, the last one :math:`T`.
        join_files: do not cut at file ends (one frame per file: a time-step archive).
        step: the series' step in minutes.

    Returns:
        ``(events, gaps)``: ``events`` :math:`(E, 2)` int64; ``gaps``, one ``(frame, missing)``
        per gap: the first frame after it and the number of missing steps.

    Raises:
        ValueError: time stamps that do not increase.

    Example::

        >>> t = np.array(["2020-01-01T00:00", "2020-01-01T00:05", "2020-01-01T00:15", "2020-01-01T00:20"],
        ...              dtype="datetime64[m]")
        >>> find_events(t, [4], join_files=True)[0].tolist(), find_events(t, [4], join_files=True)[1]
        ([[0, 2], [2, 4]], [(2, 1)])
    """
    n = int(file_stops[-1]) if len(file_stops) else 0
    cuts = set() if join_files else {int(s) for s in file_stops[:-1]}
    gaps: List[Tuple[int, int]] = []
    if times is not None and len(times) > 1:
        minutes = np.asarray(times, dtype="datetime64[m]").astype(np.int64)
        diff = np.diff(minutes)
        if (diff <= 0).any():
            k = int(np.argmax(diff <= 0))
            raise ValueError(f"time stamps must increase: frame {k + 1} ({times[k + 1]}) does not come after "
                             f"frame {k} ({times[k]})")
        step = _common_step(times) if step is None else step
        for k in np.flatnonzero(diff > step):
            cuts.add(int(k) + 1)
            gaps.append((int(k) + 1, int(diff[k] // step) - 1))
    bounds = [0] + sorted(c for c in cuts if 0 < c < n) + [n]
    events = np.array([[a, b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a], dtype=np.int64).reshape(-1, 2)
    return events, gaps


# --------------------------------------------------------------------------------------------
# the archive
def _check_reader(reader: Any) -> str:
    if not isinstance(reader, str) or not (reader in ("auto", "xarray") or
                                           (reader.startswith("pysteps:") and len(reader) > len("pysteps:"))):
        raise ParameterError("reader", f"reader must be 'auto' (by the file's suffix), 'xarray' or "
                                       f"'pysteps:NAME' with NAME a pysteps importer (e.g. pysteps:odim_hdf5); "
                                       f"got {reader!r}")
    return reader


def _open_file(path: Path, reader: str, key: Optional[str], layout: str,
               options: Dict[str, Any]) -> Tuple[Any, Optional[np.ndarray]]:
    """One file as a lazy ``(T, H, W, C)`` grid, and its frames' time stamps (``None`` when it
    has none)."""
    from .coordinates import read_times
    from .readers import load_grid

    if reader == "xarray" or path.suffix.lower() == ".zarr":
        from .xarray_reader import XarrayGrid

        grid = XarrayGrid(path, key, **options)
        return grid, grid.times
    if options:
        raise ParameterError("reader_options", f"reader_options {sorted(options)} were given, but {path} is read by "
                                               f"the reader for its suffix, which takes none; they are for "
                                               f"reader='xarray' or 'pysteps:NAME'")
    grid = load_grid(path, key=key, layout=layout)
    if path.suffix.lower() == ".npy":
        return grid, None
    try:
        times = read_times(path)
    except (ValueError, KeyError, OSError):
        return grid, None
    return grid, (times if len(times) == int(grid.shape[0]) else None)


@dataclass(frozen=True)
class _Recipe:
    """How to open an archive again (in a ``DataLoader`` worker): its files, in their order, and
    the options."""
    files: Tuple[str, ...]
    reader: str
    key: Optional[str]
    layout: str
    time_from_name: Optional[str]
    options: Tuple[Tuple[str, Any], ...] = ()


class GridArchive(GridSeries):
    r"""Grid files read as one series along time, with the events windows must not cross.

    Index it like an array (an integer, a slice or an array of frame indices): only the frames
    asked for are read, from their files. Pickling it (``DataLoader`` workers) sends the file
    names and options; each process opens the files again.

    Build one with :func:`open_archive`.

    Attributes:
        files: the files, in time order.
        frames_per_file: :math:`(F,)` frames each file holds.
        times: :math:`(T,)` ``datetime64[m]`` stamps, or ``None``.
        events: :math:`(E, 2)` frame ranges ``[start, stop)`` of the events.
        gaps: ``(frame, missing steps)`` of each gap in the time stamps.
        step: the time step in minutes (``None`` without time stamps).
        units: the files' own units when the reader knows them (``""`` otherwise).

    Shape:
        :math:`(T, H, W, C)`.
    """

    def __init__(self, recipe: _Recipe, grids: List[Any], times: Optional[np.ndarray], events: np.ndarray,
                 gaps: List[Tuple[int, int]], step: Optional[int], units: str = "") -> None:
        self._recipe = recipe
        self._grids = grids
        self.files = [Path(f) for f in recipe.files]
        self.frames_per_file = np.array([int(g.shape[0]) for g in grids], dtype=np.int64)
        self._stops = np.cumsum(self.frames_per_file)
        self._starts = self._stops - self.frames_per_file
        self.times, self.events, self.gaps, self.step, self.units = times, events, gaps, step, units
        frame = tuple(int(s) for s in grids[0].shape[1:])
        self.shape = (int(self._stops[-1]),) + frame
        self.dtype = np.result_type(*[np.dtype(g.dtype) for g in grids])

    def _read(self, index: np.ndarray) -> np.ndarray:
        """Frames ``index`` (an int64 array), read file by file, runs of consecutive frames at once."""
        out = np.empty((len(index),) + self.shape[1:], dtype=self.dtype)
        which = np.searchsorted(self._stops, index, side="right")
        k = 0
        while k < len(index):
            f, j = int(which[k]), k
            while j + 1 < len(index) and which[j + 1] == f and index[j + 1] == index[j] + 1:
                j += 1
            lo = int(index[k] - self._starts[f])
            out[k:j + 1] = to_numpy(self._grids[f][lo:lo + (j - k + 1)])
            k = j + 1
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        n = self.shape[0]
        if isinstance(key, slice):
            index = np.arange(n)[key]
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -n <= int(key) < n:
                raise IndexError(f"frame {int(key)} is out of range for an archive of {n} frames")
            out = self._read(np.array([int(key) % n]))[0]
            return out[rest] if rest else out
        else:
            index = np.asarray(key)
            if index.dtype.kind not in "iu":
                raise TypeError(f"an archive is indexed by frame numbers (int, slice or int array), got {key!r}")
            if index.size and (index.min() < -n or index.max() >= n):
                raise IndexError(f"a frame index is out of range for an archive of {n} frames")
            shape = index.shape
            out = self._read(index.reshape(-1) % n)
            out = out.reshape(shape + self.shape[1:])
            return out[(slice(None),) * len(shape) + rest] if rest else out
        out = self._read(index.astype(np.int64))
        return out[(slice(None),) + rest] if rest else out

    # description
    def describe(self) -> str:
        """One line: files, frames, events, gaps."""
        files = len(self.files)
        gaps = len(self.gaps)
        missing = sum(m for _, m in self.gaps)
        step = f", every {self.step} min" if self.step else ""
        return (f"{files} file{'s' * (files != 1)}, {self.shape[0]} frames of "
                f"{'x'.join(map(str, self.shape[1:3]))}x{self.shape[3]}{step}, {len(self.events)} "
                f"event{'s' * (len(self.events) != 1)}, {gaps} gap{'s' * (gaps != 1)} in the time stamps"
                f"{f' ({missing} missing step' + 's' * (missing != 1) + ')' if gaps else ''}")

    def source(self) -> Dict[str, Any]:
        """Plain data saying how to open the archive again (checkpoints)."""
        r = self._recipe
        return {"kind": "archive", "files": list(r.files), "reader": r.reader, "key": r.key, "layout": r.layout,
                "time_from_name": r.time_from_name, "reader_options": dict(r.options)}

    def __repr__(self) -> str:
        return f"GridArchive({self.describe()})"

    # pickling by reference
    def __getstate__(self) -> dict:
        return {"recipe": self._recipe}

    def __setstate__(self, state: dict) -> None:
        r = state["recipe"]
        other = open_archive(list(r.files), reader=r.reader, key=r.key, layout=r.layout,
                             time_from_name=r.time_from_name, reader_options=dict(r.options), sort=False)
        self.__dict__.update(other.__dict__)


def open_archive(inputs: Any, *, reader: str = "auto", key: Optional[str] = None, layout: str = "THWC",
                 time_from_name: Optional[str] = None, reader_options: Optional[Dict[str, Any]] = None,
                 sort: bool = True) -> GridArchive:
    """Open a list, glob pattern or folder of grid files as one :class:`GridArchive`.

    Args:
        inputs: a path, a list of paths, a glob pattern (``"radar/*.h5"``) or a folder.
        reader: ``"auto"`` (by suffix: ``.npy``, ``.npz``, HDF5, netCDF; ``.zarr`` through
            xarray), ``"xarray"`` (netCDF, zarr, GRIB with cfgrib) or ``"pysteps:NAME"`` (pysteps's
            importer ``NAME``, e.g. ``odim_hdf5``, ``mch_gif``, ``bom_rf3``, ``knmi_hdf5``,
            ``fmi_pgm``; one frame per file, converted to rain rate in mm/h by pysteps).
        key: the variable or array in each file (as :func:`~convlstm.data.load_grid`).
        layout: how each file's axes are stored (``"auto"`` reader only).
        time_from_name: a :func:`time.strftime` pattern of the time in each file's name; needs
            files of one frame each.
        reader_options: keyword arguments of the reader: the pysteps importer's (``mch_gif``
            takes ``product``, ``unit`` and ``accutime``), or :class:`~convlstm.data.XarrayGrid`'s
            (``engine``, ``time_dim``, ``spatial_dims``).
        sort: put the files in time order (by their first time stamp) when every frame has one;
            otherwise they stay in name order.

    Raises:
        ParameterError: no file, an unknown reader, a name without the time pattern, frames of
            different shapes (naming the file), or time stamps that repeat.
    """
    reader = _check_reader(reader)
    options = dict(reader_options or {})
    files = list_archive_files(inputs, reader)
    importer = reader.split(":", 1)[1] if reader.startswith("pysteps:") else None
    if importer is None:
        opened = [_open_file(f, reader, key, layout, options) for f in files]
        grids: List[Any] = [g for g, _ in opened]
        file_times: List[Optional[np.ndarray]] = [t for _, t in opened]
        _check_frames(grids, files)
    else:
        grids, file_times = [], [None] * len(files)
    if time_from_name is not None:
        many = [(f, int(g.shape[0])) for f, g in zip(files, grids) if int(g.shape[0]) != 1]
        if many:
            raise ParameterError("time_from_name", f"time_from_name needs files of one frame each; {many[0][0]} "
                                                   f"holds {many[0][1]} frames (its time stamps are read from "
                                                   f"the file itself)")
        file_times = [np.array([time_from_file_name(f, time_from_name)]) for f in files]
    timed = all(t is not None for t in file_times)
    if sort and timed and len(files) > 1:
        order = np.argsort(np.array([t[0] for t in file_times], dtype="datetime64[m]"), kind="stable")
        files, file_times = [files[i] for i in order], [file_times[i] for i in order]
        grids = [grids[i] for i in order] if grids else grids
    if importer is not None:
        from .pysteps_reader import PystepsFrames

        grids = [PystepsFrames(files, importer, importer_kwargs=options)]
    times = np.concatenate(file_times).astype("datetime64[m]") if timed else None
    frames = np.cumsum([int(g.shape[0]) for g in grids])
    join = importer is not None or all(int(g.shape[0]) == 1 for g in grids)
    step = _common_step(times) if times is not None and len(times) > 1 else None
    try:
        events, gaps = find_events(times, frames, join_files=join, step=step)
    except ValueError as exc:
        raise ParameterError("data", f"the archive's {exc}", also=("time_from_name",)) from None
    units = str(getattr(grids[0], "units", "") or "")
    recipe = _Recipe(tuple(str(f) for f in files), reader, key, layout, time_from_name, tuple(sorted(options.items())))
    return GridArchive(recipe, grids, times, events, gaps, step, units)


def _check_frames(grids: Sequence[Any], files: Sequence[Path]) -> None:
    """Every file's frames have the first file's shape ``(rows, cols, channels)``."""
    frame = tuple(int(s) for s in grids[0].shape[1:])
    for g, f in zip(grids, files):
        if tuple(int(s) for s in g.shape[1:]) != frame:
            raise ParameterError("data", f"{f} has frames of shape {tuple(int(s) for s in g.shape[1:])}, but "
                                         f"{files[0]} has {frame}: the files of an archive must share one grid")
