r"""Forecast files: the ``.npy`` array, or a CF-1.8 dataset in netCDF (``.nc``) or Zarr (``.zarr``).

The dataset, for ``N`` forecasts of ``T_out`` frames of ``rows x cols`` cells and ``C`` channels:

==============================  ===============================================================
``forecast(time, lead_time,     float32, in the run's units (``units``, ``long_name``); its
y, x, channel)``                ``coordinates`` attribute names ``valid_time input_end`` and the
                                copied auxiliary coordinates
``time(time)``                  the reference time: the time stamp of each forecast's last observed
                                step, ``minutes since ...`` (``forecast_reference_time``)
``lead_time(lead_time)``        minutes after the reference time (``forecast_period``; read as
                                ``timedelta64``), or time steps when no step length is known
``valid_time(time, lead_time)`` the time each frame forecasts, ``minutes since ...``
``input_end(time)``             the index, in the input file, of each window's last input frame
``y``, ``x`` (or ``lat``...)    the input file's coordinates (netCDF input), else ``rows``/``cols``
                                with integer indices
==============================  ===============================================================

A forecast made after step :math:`i` of the file (its last observed frame), from a run trained
with ``gap`` :math:`g`, forecasts steps :math:`i + g + k`, :math:`k = 1 \dots T_{out}`: its lead
times are :math:`(g + k)\,\Delta` with :math:`\Delta` the step length, and its valid times the
file's stamps of those steps (continued by :math:`\Delta` past the file's end). :math:`\Delta`
comes from the file's time stamps, else from the run (``interval_minutes``, ``steps_per_day``);
without either, ``lead_time`` counts steps. Without time stamps there is no ``time`` nor
``valid_time``, and the global ``comment`` says so; ``input_end`` is always there.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._errors import ParameterError
from .._io import atomic_path, atomic_write

__all__ = ["FORECAST_SUFFIXES", "ForecastTimes", "ForecastSource", "EnsembleProducts", "check_out", "forecast_times",
           "forecast_dataset", "write_forecast"]

#: The suffixes of the files :func:`write_forecast` writes.
FORECAST_SUFFIXES = (".npy", ".nc", ".zarr")
#: Names the dataset gives itself; an input coordinate of one of these names is not copied.
_RESERVED = ("time", "lead_time", "valid_time", "input_end", "forecast", "channel")
#: CF's dimension-less unit (grid indices, steps).
_ONE = "1"

Variable = Tuple[Tuple[str, ...], np.ndarray, Dict[str, Any]]


@dataclass
class ForecastTimes:
    """When each forecast is made and what it forecasts.

    Attributes:
        origin: ``(N,)`` the file's index of each forecast's last observed step.
        input_end: ``(N,)`` the file's index of each window's last input frame.
        leads: ``(T_out,)`` the steps after ``origin`` that the frames forecast (``gap + 1 ...``).
        stamps: ``(n,)`` the file's time stamps, ``datetime64[m]``, or ``None``.
        step: the step length in minutes, or ``None``; ``step_source`` says where it came from.
        gaps: the stamps have gaps between events (an archive): a frame ``k`` steps after the
            origin is valid ``k * step`` after it, whatever stamp the file has ``k`` frames later.
    """
    origin: np.ndarray
    input_end: np.ndarray
    leads: np.ndarray
    stamps: Optional[np.ndarray] = None
    step: Optional[int] = None
    step_source: str = ""
    gaps: bool = False

    def at(self, index: np.ndarray) -> np.ndarray:
        """The time stamps ``datetime64[m]`` of the file's steps ``index`` (any shape); steps past
        the file's end continue its last stamp by ``step``."""
        index = np.asarray(index, dtype=np.int64)
        n = len(self.stamps)
        inside = self.stamps[np.minimum(index, n - 1)]
        return inside + np.maximum(index - n + 1, 0) * np.timedelta64(self.step or 0, "m")

    @property
    def regular(self) -> bool:
        """Whether the file's stamps are ``step`` apart, so that valid = origin + lead time."""
        return self.stamps is not None and (self.gaps or bool(np.all(np.diff(self.stamps.astype(np.int64)) == self.step)))

    def valid(self) -> np.ndarray:
        """``(N, T_out)`` valid times ``datetime64[m]`` of the forecast frames: the stamps
        ``leads`` steps after each origin (continued past the file's end), or, with gaps, the
        origin's stamp plus ``leads * step``."""
        if self.gaps:
            return self.at(self.origin)[:, None] + np.asarray(self.leads)[None, :] * np.timedelta64(self.step, "m")
        return self.at(np.asarray(self.origin)[:, None] + np.asarray(self.leads, dtype=np.int64)[None, :])


@dataclass
class ForecastSource:
    """Where a forecast comes from, for the file's attributes: the ``model`` name, the
    ``checkpoint`` and ``inputs`` paths, the input ``key``, the run's ``units``, and the input's
    spatial ``coords`` (:class:`~convlstm.data.coordinates.GridCoordinates`) if any."""
    model: str
    checkpoint: str
    inputs: str
    key: Optional[str] = None
    units: str = ""
    coords: Any = None
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def forecast_times(origin: np.ndarray, input_end: np.ndarray, leads: np.ndarray, inputs: Any, n_time: int,
                   state: Dict[str, Any], archive: Any = None) -> ForecastTimes:
    """The :class:`ForecastTimes` of forecasts from the file ``inputs`` (``n_time`` steps): its time
    stamps when it has ``n_time`` of them, and the step from them, else from the run's data
    ``state`` (the unit conversion's ``interval_minutes``, or the multi-scale ``steps_per_day``).
    For an ``archive`` (:class:`convlstm.data.GridArchive`) its stamps and step, gaps included."""
    from ..data.calendar import time_step
    from ..data.coordinates import read_times

    if archive is not None and archive.times is not None and archive.step is not None:
        return ForecastTimes(np.asarray(origin), np.asarray(input_end), np.asarray(leads), archive.times,
                             archive.step, "the input files' time stamps", gaps=len(archive.gaps) > 0)
    stamps = None
    try:
        stamps = None if archive is not None else read_times(inputs)
    except (ValueError, KeyError, OSError):
        pass
    if stamps is not None and len(stamps) != n_time:
        warnings.warn(f"inputs {str(inputs)!r}: {len(stamps)} time stamps for {n_time} steps; the forecast file "
                      f"gets no times", stacklevel=3)
        stamps = None
    step, source = None, ""
    if stamps is not None and len(stamps) > 1:
        step, source = time_step(stamps), "the input file's time stamps"
    else:
        step, source = _run_step(state)
    if stamps is not None and step is None:
        warnings.warn(f"inputs {str(inputs)!r} has one time stamp and the run no step length; the forecast file "
                      f"gets no times", stacklevel=3)
        stamps = None
    times = ForecastTimes(np.asarray(origin), np.asarray(input_end), np.asarray(leads), stamps, step, source)
    if stamps is not None and not times.regular:
        warnings.warn(f"inputs {str(inputs)!r}: the time stamps are not all {step} minutes apart; valid_time "
                      f"follows the stamps and may differ from time + lead_time", stacklevel=3)
    return times


def _run_step(state: Dict[str, Any]) -> Tuple[Optional[int], str]:
    """The step length in minutes the run's data state knows, and where it comes from."""
    interval = (state.get("conversion") or {}).get("interval_minutes")
    if interval and float(interval) == int(interval):
        return int(interval), "the run's interval_minutes"
    per_day = (state.get("multiscale") or {}).get("steps_per_day")
    if per_day and 1440 % int(per_day) == 0:
        return 1440 // int(per_day), "the run's steps_per_day"
    return None, ""


@dataclass
class EnsembleProducts:
    r"""What an ensemble forecast adds to the file, beside ``forecast`` (the ensemble mean).

    Attributes:
        members: :math:`(N, M, T_{out}, H, W, C)`, the members.
        quantiles: the levels :math:`q` and ``quantile_values`` :math:`(N, Q, T_{out}, H, W, C)`,
            the members' empirical quantiles (linear interpolation between order statistics).
        thresholds: the levels :math:`T` and ``probabilities`` :math:`(N, K, T_{out}, H, W, C)`, the
            fraction of members :math:`\ge T`.
    """
    members: np.ndarray
    quantiles: List[float] = field(default_factory=list)
    quantile_values: Optional[np.ndarray] = None
    thresholds: List[float] = field(default_factory=list)
    probabilities: Optional[np.ndarray] = None

    @classmethod
    def of(cls, members: np.ndarray, quantiles: Optional[Sequence[float]] = None,
           thresholds: Optional[Sequence[float]] = None) -> "EnsembleProducts":
        """The products of ``members`` :math:`(N, M, ...)` at the ``quantiles`` (in (0, 1)) and
        ``thresholds``."""
        qs = [float(q) for q in (quantiles or [])]
        bad = [q for q in qs if not 0 < q < 1]
        if bad:
            raise ParameterError("quantiles", f"quantiles must be levels in (0, 1), e.g. 0.1 0.5 0.9; got {bad}")
        ts = [float(t) for t in (thresholds or [])]
        qv = np.moveaxis(np.quantile(members, qs, axis=1), 0, 1).astype(np.float32) if qs else None
        pv = (np.stack([(members >= t).mean(axis=1) for t in ts], axis=1).astype(np.float32) if ts else None)
        return cls(members, qs, qv, ts, pv)


def check_out(out: Any) -> Path:
    """``out`` as a path ending in one of :data:`FORECAST_SUFFIXES`; else an error naming it."""
    path = Path(out)
    if path.suffix.lower() not in FORECAST_SUFFIXES:
        raise ParameterError("out", f"out must end in .npy or .nc (netCDF), or .zarr (Zarr), got {str(out)!r}")
    return path


def write_forecast(out: Path, forecast: np.ndarray, times: Optional[ForecastTimes],
                   source: Optional[ForecastSource], products: Optional[EnsembleProducts] = None) -> None:
    """Write ``forecast`` ``(N, T_out, rows, cols, channels)`` to ``out`` atomically: ``.npy``
    (``times`` and ``source`` unused), or the CF dataset of this module's table as netCDF
    (h5netcdf) or Zarr (xarray and zarr), with an ensemble's ``products`` when given."""
    suffix = out.suffix.lower()
    if suffix == ".npy":
        with atomic_write(out, "wb") as fh:
            np.save(fh, forecast, allow_pickle=False)
        return
    dims, variables, attrs = forecast_dataset(forecast, times, source, products)
    if suffix == ".nc":
        _write_netcdf(out, dims, variables, attrs)
    else:
        _write_zarr(out, dims, variables, attrs)


def forecast_dataset(forecast: np.ndarray, times: ForecastTimes, source: ForecastSource,
                     products: Optional[EnsembleProducts] = None
                     ) -> Tuple[Dict[str, int], Dict[str, Variable], Dict[str, Any]]:
    """The dataset of ``forecast`` ``(N, T_out, rows, cols, channels)`` as ``(dims, variables,
    global attributes)``, each variable ``(dims, encoded values, attributes)`` in CF's encoding;
    an ensemble's ``products`` add ``members`` (dimension ``member``), ``quantile_forecast``
    (``quantile``) and ``probability`` (``threshold``)."""
    n, t_out, rows, cols, channels = forecast.shape
    row, col, space = _space(source.coords, rows, cols)
    dims = {"time": n, "lead_time": t_out, row: rows, col: cols, "channel": channels}
    variables = {**_time_variables(times), **space}
    aux = [k for k, v in variables.items() if k not in dims]
    attrs = {"long_name": _long_name(source), "description": "ConvLSTM forecast in the data's units",
             "coordinates": " ".join(aux)}
    if source.units:
        attrs["units"] = source.units
    if source.coords is not None and source.coords.grid_mapping is not None:
        name, mapping = source.coords.grid_mapping
        variables[name] = ((), np.array(0, dtype=np.int32), dict(mapping))
        attrs["grid_mapping"] = name
    attrs["checkpoint"] = source.checkpoint
    variables["forecast"] = (("time", "lead_time", row, col, "channel"), forecast, attrs)
    if products is not None:
        _ensemble_variables(products, dims, variables, attrs, (row, col))
    return dims, variables, _global_attrs(times, source)


def _ensemble_variables(products: EnsembleProducts, dims: Dict[str, int], variables: Dict[str, Variable],
                        attrs: Dict[str, Any], space: Tuple[str, str]) -> None:
    """Add the members, quantiles and exceedance probabilities of an ensemble to ``variables``."""
    m = int(products.members.shape[1])
    attrs["description"] = (f"ConvLSTM ensemble mean, in the data's units: the forecast the {m} members are drawn "
                            f"around, their exact mean")
    attrs["cell_methods"] = "realization: mean"
    units = {k: v for k, v in attrs.items() if k in ("units", "grid_mapping", "coordinates")}
    rest = ("lead_time",) + space + ("channel",)
    dims["member"] = m
    variables["member"] = (("member",), np.arange(m, dtype=np.int32), {"standard_name": "realization",
                                                                       "long_name": "ensemble member", "units": _ONE})
    variables["members"] = (("time", "member") + rest, products.members.astype(np.float32),
                            {"long_name": f"ensemble members of the {attrs['long_name']}", **units})
    if products.quantiles:
        dims["quantile"] = len(products.quantiles)
        variables["quantile"] = (("quantile",), np.asarray(products.quantiles, dtype=np.float64),
                                 {"long_name": "quantile level of the members' distribution", "units": _ONE})
        variables["quantile_forecast"] = (("time", "quantile") + rest, products.quantile_values,
                                          {"long_name": f"quantiles of the {m} members", **units})
    if products.thresholds:
        dims["threshold"] = len(products.thresholds)
        variables["threshold"] = (("threshold",), np.asarray(products.thresholds, dtype=np.float64),
                                  {"long_name": "exceedance threshold", **({"units": units["units"]}
                                                                           if "units" in units else {})})
        variables["probability"] = (("time", "threshold") + rest, products.probabilities,
                                    {"long_name": f"probability of a value at or above the threshold: the fraction of "
                                                  f"the {m} members", "units": _ONE,
                                     **{k: v for k, v in units.items() if k != "units"}})


def _long_name(source: ForecastSource) -> str:
    attrs = source.coords.grid_attrs if source.coords is not None else {}
    what = attrs.get("long_name") or attrs.get("standard_name") or source.key
    return f"forecast of {what}" if what else "forecast"


def _cf_minutes(stamps: np.ndarray, origin: np.datetime64) -> Tuple[np.ndarray, str]:
    """``datetime64[m]`` stamps as CF ``minutes since origin`` (int64) and that unit."""
    minutes = (stamps - origin).astype("timedelta64[m]").astype(np.int64)
    return minutes, f"minutes since {str(origin.astype('datetime64[m]')).replace('T', ' ')}:00"


def _time_variables(times: ForecastTimes) -> Dict[str, Variable]:
    """``time``, ``lead_time``, ``valid_time`` (as far as known) and ``input_end``."""
    out: Dict[str, Variable] = {}
    steps = np.asarray(times.leads, dtype=np.int64)
    made = times.at(times.origin) if times.stamps is not None else None
    if made is not None:
        minutes, units = _cf_minutes(made, made[0])
        out["time"] = (("time",), minutes, {
            "standard_name": "forecast_reference_time", "long_name": "reference time: the time of the last observed "
            "step before the forecast", "units": units, "calendar": "proleptic_gregorian", "axis": "T"})
    if times.step is not None:
        out["lead_time"] = (("lead_time",), steps * times.step, {
            "standard_name": "forecast_period", "long_name": "time after the reference time", "units": "minutes",
            "dtype": "timedelta64[s]", "step_source": times.step_source})
    else:
        out["lead_time"] = (("lead_time",), steps, {"long_name": "time steps after the last observed step",
                                                   "units": _ONE})
    if made is not None:
        valid, units = _cf_minutes(times.valid(), made[0])
        attrs = {"standard_name": "time", "long_name": "valid time of each forecast frame", "units": units,
                 "calendar": "proleptic_gregorian"}
        if not times.regular:
            attrs["comment"] = "the input's time stamps are irregular: valid_time follows them"
        out["valid_time"] = (("time", "lead_time"), valid, attrs)
    out["input_end"] = (("time",), np.asarray(times.input_end, dtype=np.int64), {
        "long_name": "index, in the input file, of each window's last input frame", "units": _ONE})
    return out


def _space(coords: Any, rows: int, cols: int) -> Tuple[str, str, Dict[str, Variable]]:
    """The row and column dimension names, and their coordinates: those of the input file that
    fit (same sizes, names the dataset does not use itself), else integer indices."""
    usable = (coords is not None and coords.row_dim != coords.col_dim
              and not {coords.row_dim, coords.col_dim} & set(_RESERVED))
    row, col = (coords.row_dim, coords.col_dim) if usable else ("rows", "cols")
    sizes = {row: rows, col: cols}
    out: Dict[str, Variable] = {}
    for name, (dims, values, attrs) in (coords.variables.items() if usable else ()):
        if name in _RESERVED or tuple(values.shape) != tuple(sizes[d] for d in dims):
            warnings.warn(f"the input coordinate {name!r} {tuple(values.shape)} is not copied: it does not fit the "
                          f"forecast's grid ({rows}, {cols}) or its name is taken", stacklevel=4)
            continue
        out[name] = (dims, values, dict(attrs))
    for dim, size, what in ((row, rows, "row"), (col, cols, "column")):
        if dim not in out:
            out[dim] = ((dim,), np.arange(size, dtype=np.int32), {"long_name": f"grid {what} index", "units": _ONE})
    return row, col, out


def _global_attrs(times: ForecastTimes, source: ForecastSource) -> Dict[str, Any]:
    from .. import __version__

    attrs = {"Conventions": "CF-1.8", "title": "ConvLSTM forecast",
             "source": f"convlstm {__version__}, model {source.model}",
             "history": f"{source.created} convlstm {__version__} predict: {source.inputs} with {source.checkpoint}",
             "date_created": source.created, "convlstm_version": __version__, "model": source.model,
             "checkpoint": source.checkpoint, "input_file": source.inputs}
    if source.key:
        attrs["input_variable"] = source.key
    if times.stamps is None:
        attrs["comment"] = ("the input file has no time stamps: the forecasts are identified by input_end (the index "
                            "of each window's last input frame)" + (", lead_time counts minutes from "
                            f"{times.step_source}" if times.step else ", lead_time counts time steps"))
    return attrs


def _write_netcdf(out: Path, dims: Dict[str, int], variables: Dict[str, Variable], attrs: Dict[str, Any]) -> None:
    """The dataset as netCDF-4 with h5netcdf (the ``train`` extra), atomically."""
    import h5netcdf

    with atomic_path(out) as tmp:
        with h5netcdf.File(tmp, "w") as f:
            f.dimensions = dict(dims)
            for name, (vdims, values, vattrs) in variables.items():
                vattrs = dict(vattrs)
                fill = vattrs.pop("_FillValue", None)
                v = f.create_variable(name, vdims, data=values, fillvalue=fill)
                v.attrs.update(vattrs)
            f.attrs.update(attrs)


def _write_zarr(out: Path, dims: Dict[str, int], variables: Dict[str, Variable], attrs: Dict[str, Any]) -> None:
    """The dataset as a Zarr (format 2) store with xarray, written to a temporary folder beside
    ``out`` and renamed into place (a previous ``out`` is replaced only once the new one is complete)."""
    from .._extras import install_hint

    try:
        import xarray as xr
        import zarr  # noqa: F401
    except ImportError as err:
        raise ImportError(f"writing a .zarr forecast needs xarray and zarr: pip install xarray zarr, or the zarr "
                          f"extra: {install_hint('zarr')}") from err
    data_vars, encoding = {}, {}
    for name, (vdims, values, vattrs) in variables.items():
        vattrs = dict(vattrs)
        if "_FillValue" in vattrs:
            encoding[name] = {"_FillValue": vattrs.pop("_FillValue")}
        data_vars[name] = xr.Variable(vdims, values, vattrs)
    dataset = xr.Dataset(data_vars, attrs=attrs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        # Zarr format 2 with consolidated metadata: read by zarr-python 2 and 3 and xarray.open_zarr as it is
        dataset.to_zarr(tmp, mode="w", encoding=encoding, consolidated=True, zarr_format=2)
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _replace_folder(new: Path, out: Path) -> None:
    """Rename the folder ``new`` to ``out``; an existing ``out`` is moved aside first and removed
    after the rename, so ``out`` is always either the old or the new store."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / "store")
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old / "store", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
