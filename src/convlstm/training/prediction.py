"""``predict``: forecasts from a grid file with a trained run, written in the data's units.

The steps: load the model and its data state -> read the file as in training (key, layout,
unit conversion) -> choose the windows to forecast from (the last one, or every one) -> handle
gaps as the run did -> forecast batch by batch (scale, model, unscale, clamp) -> write ``.npy``,
or a CF-1.8 netCDF or Zarr dataset with the forecasts' times and the input's coordinates
(:mod:`~convlstm.training.forecast_file`), atomically.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .._errors import ParameterError
from .._heap import keep_freed_memory
from .datamodule import run_source_options
from .forecast_file import EnsembleProducts, ForecastSource, check_out, forecast_times, write_forecast
from .multiscale import MultiScale
from .runs import (PathLike, check_nonnegative_option, data_state, find_checkpoint, is_run, load_module,
                   torch_device)

__all__ = ["predict"]


@dataclass
class _Windows:
    """The windows to forecast from: each an array of time indices into the file, the file's index
    of each one's last observed step ``origin`` (the first target is ``origin + gap + 1``), and the
    calendar/external features of each window's first target (multi-scale runs) or ``None``."""
    indices: List[np.ndarray]
    origin: np.ndarray
    features: Optional[np.ndarray] = None


def predict(checkpoint: PathLike, inputs: Any, out: PathLike, *, key: Optional[str] = None,
            layout: Optional[str] = None, all_windows: bool = False, stride: int = 1, batch_size: int = 16,
            device: Optional[str] = None, model: Optional[nn.Module] = None,
            nonnegative: Optional[bool] = None, reader: Optional[str] = None,
            time_from_name: Optional[str] = None, members: Optional[int] = None,
            quantiles: Optional[Sequence[float]] = None, thresholds: Optional[Sequence[float]] = None,
            seed: int = 0) -> Path:
    r"""Forecast from the grid series in the file ``inputs`` and write the forecasts, in the data's
    units, to ``out``: ``.npy``, or a CF-1.8 dataset in ``.nc`` (netCDF) or ``.zarr`` (needs
    xarray and zarr) with a ``forecast`` variable ``(time, lead_time, y, x, channel)``, the origin
    ``time`` of each forecast (the stamp of its last observed step), ``lead_time``, ``valid_time``,
    ``input_end`` and the input's spatial coordinates (:mod:`~convlstm.training.forecast_file`).

    The file is read as in training: with the run's ``key`` and ``layout`` unless they are given
    (the key only where the file can hold several arrays, see
    :func:`~convlstm.training.datamodule.run_source_options`), the checkpoint's unit conversion (``scale``, ``offset``,
    ``transform``) turns its stored values into physical units, and the forecasts come out in
    those units, clamped at 0 when the checkpoint says ``nonnegative`` (or ``nonnegative=True``
    is given here; ``False`` turns it off).

    By default one forecast: the ``output_steps`` frames after the end of the series, from its
    last ``input_steps`` frames (shape ``(1, T_out, rows, cols, channels)``). With
    ``all_windows=True`` a forecast from every window of ``input_steps`` frames, starting every
    ``stride`` steps (shape ``(N, T_out, ...)``; in netCDF ``input_end`` gives the index of each
    window's last input frame). Frame ``k`` (1, 2, ...) of a forecast made after step ``i`` is
    step ``i + gap + k`` of the file (its time stamp, or the stamps continued past the end). A file without time stamps gives ``lead_time`` in steps (or in minutes when the run
    knows its step) and no ``time``/``valid_time``; its ``comment`` attribute says so.

    A checkpoint trained on closeness/period/trend samples forecasts the same way: its inputs are
    the stacked lags before the first target (which follows the series' end), with the calendar
    features of that target time (its time stamp continues the file's) and the external series at
    the last observed step; ``all_windows=True`` gives every target whose oldest lag is in the file.

    ``inputs`` may be several files (a list, a glob pattern, a folder), read as one archive
    (:func:`convlstm.data.open_archive`) with ``reader`` and ``time_from_name`` (default: the
    run's, when it was trained on an archive): windows stay inside events (the last one is the
    end of the last event), ``time`` and ``valid_time`` follow the files' stamps, and
    ``input_end`` indexes the frames of the archive in time order.

    A run trained with members (``fit --members M``) forecasts an ensemble: ``members`` draws
    (default: the run's :math:`M`; the draw is reproducible through ``seed``). A ``.npy`` file then
    holds the members, ``(N, members, T_out, rows, cols, channels)``; a netCDF or Zarr file holds
    ``forecast``, the ensemble mean (exact: the forecast the members are drawn around), ``members`` with a ``member`` dimension, ``quantile_forecast``
    with a ``quantile`` dimension for the ``quantiles`` asked (e.g. ``(0.1, 0.5, 0.9)``), and
    ``probability``, :math:`P(x \ge T)` (the fraction of members at or above each of the
    ``thresholds``: the run's by default) with a ``threshold`` dimension.
    """
    keep_freed_memory()
    out = check_out(out)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ParameterError("stride", f"stride must be an integer >= 1, got {stride!r}")
    check_nonnegative_option(nonnegative)
    if not is_run(checkpoint) and is_run(inputs):
        raise ParameterError("checkpoint", f"checkpoint={str(checkpoint)!r} is not a run folder nor a .ckpt file, "
                                           f"but inputs={str(inputs)!r} is: the two are swapped; give the run "
                                           f"first, then the grid file", also=("inputs",))
    ckpt_path = find_checkpoint(checkpoint)
    module, ckpt = load_module(ckpt_path, model=model)
    state = data_state(ckpt, ckpt_path, " with its scaler")
    series, key, layout, archive = _read_series(state, inputs, key, layout, reader, time_from_name)
    windows = _choose_windows(state, series, inputs, all_windows, stride, archive)
    series = _finite_inputs(series, windows.indices, state.get("fill_nan"), str(inputs))
    clamp = bool(state.get("nonnegative")) if nonnegative is None else nonnegative
    draws = _check_products(module, out, members, quantiles)
    forecast, ensemble = _forecast(module.to(torch_device(device)), state, series, windows, batch_size, clamp,
                                   members=draws, seed=seed)
    times = source = None
    if out.suffix.lower() != ".npy":
        leads = int(state["gap"]) + np.arange(1, forecast.shape[1] + 1)
        times = forecast_times(windows.origin, np.array([int(w.max()) for w in windows.indices]), leads, inputs,
                               int(series.shape[0]), state, archive)
        source = _source(ckpt, ckpt_path, state, inputs if archive is None else archive.files[0], key, layout)
        if archive is not None:
            source.inputs = str(inputs)
            source.units = source.units or archive.units
    products = None
    if ensemble is not None:
        if out.suffix.lower() == ".npy":
            forecast = ensemble
        else:
            products = EnsembleProducts.of(ensemble, quantiles, _run_thresholds(ckpt_path, thresholds))
    write_forecast(out, forecast, times, source, products)
    return out


def _check_products(module: nn.Module, out: Path, members: Optional[int],
                    quantiles: Optional[Sequence[float]]) -> int:
    """The number of members to draw: 0 for a deterministic run, ``members`` or the run's own for
    an ensemble; the options checked against the run and the output's format."""
    trained = int(getattr(module, "members", 0) or 0)
    if members is not None and (isinstance(members, bool) or not isinstance(members, int) or members < 2):
        raise ParameterError("members", f"members must be an integer >= 2, got {members!r}")
    if not trained and (members is not None or quantiles):
        what = "members" if members is not None else "quantiles"
        raise ParameterError(what, f"{what} need a run trained with members (convlstm fit ... --members M); this run "
                                   f"forecasts one field")
    if quantiles and out.suffix.lower() == ".npy":
        raise ParameterError("quantiles", "quantiles are written to a .nc or .zarr file; a .npy file holds the "
                                          "members", also=("out",))
    return 0 if not trained else (members or trained)


def _run_thresholds(ckpt_path: Path, thresholds: Optional[Sequence[float]]) -> List[float]:
    """``thresholds``, or the run's own (its ``config.yaml``), for the exceedance probabilities."""
    if thresholds is not None:
        return [float(t) for t in thresholds]
    from .runs import run_dir_of

    config = run_dir_of(ckpt_path) / "config.yaml"
    if not config.is_file():
        return []
    from .config import load_config

    return [float(t) for t in (load_config(config).thresholds or [])]


def _source(ckpt: Dict[str, Any], ckpt_path: Path, state: Dict[str, Any], inputs: PathLike, key: Optional[str],
            layout: str) -> ForecastSource:
    """What the forecast file says of its origin: the model, the paths, the units (the run's, or
    the input variable's own when the run converts nothing) and the input's coordinates."""
    from ..data.coordinates import grid_coordinates
    from ..data.units import UnitConversion

    coords = grid_coordinates(inputs, key, layout) if key else None
    units = str(state.get("units") or "")
    if not units and coords is not None and UnitConversion.from_state_dict(state.get("conversion")).is_identity():
        units = str(coords.grid_attrs.get("units", ""))
    model = (ckpt.get("hyper_parameters") or {}).get("model")
    return ForecastSource(model=str(model or "custom"), checkpoint=str(ckpt_path), inputs=str(inputs), key=key,
                          units=units, coords=coords)


def _read_series(state: Dict[str, Any], inputs: Any, key: Optional[str], layout: Optional[str],
                 reader: Optional[str] = None, time_from_name: Optional[str] = None):
    """The file's (or archive's) series in physical units (the run's unit conversion), checked
    against the frames the model was trained on. Returns ``(series, key, layout, archive)``, the
    key and layout it was read with and the :class:`~convlstm.data.GridArchive` (``None`` for
    one file)."""
    from .. import data as _data
    from ..data.units import UnitConversion

    key, layout = run_source_options(state, inputs, key, layout)
    src = state.get("source") or {}
    if src.get("kind") == "archive":
        reader = src.get("reader", "auto") if reader is None else reader
        time_from_name = src.get("time_from_name") if time_from_name is None else time_from_name
    options = src.get("reader_options") if src.get("kind") == "archive" and reader == src.get("reader") else None
    reader = reader or "auto"
    archive = None
    if _data.archive.is_archive_input(inputs, reader, time_from_name):
        archive = grid = _data.open_archive(inputs, reader=reader, key=key, layout=layout,
                                            time_from_name=time_from_name, reader_options=options)
    else:
        grid = _data.load_grid(inputs, key=key, layout=layout)
    key = getattr(grid, "key", key)  # a netCDF or HDF5 file's variable, also when chosen by the reader
    series = UnitConversion.from_state_dict(state.get("conversion")).wrap(grid)
    frame = tuple(state["sample_shape"])
    if tuple(series.shape[1:]) != frame:
        raise ParameterError("layout", f"inputs {str(inputs)!r} has frames of shape (rows, cols, channels) = "
                                       f"{tuple(series.shape[1:])} after layout={layout!r}, but the model was "
                                       f"trained on {frame}")
    return series, key, layout, archive


def _choose_windows(state: Dict[str, Any], series: Any, inputs: Any, all_windows: bool,
                    stride: int, archive: Any = None) -> _Windows:
    """The last window (or every ``stride``-th one) of ``input_steps`` frames, inside the events
    of an ``archive``; for multi-scale runs the lags before each target (the first target follows
    the series: t = n + gap), with the calendar features of t and the external series at t - gap - 1."""
    n = int(series.shape[0])
    if not state.get("multiscale"):
        t_in = int(state["input_steps"])
        events = [(0, n)] if archive is None else [(int(a), int(b)) for a, b in archive.events]
        starts = [s for a, b in events for s in range(a, b - t_in + 1, stride)]
        if not starts:
            where = f"has {n} time steps" if archive is None else (
                f"has no event of {t_in} frames or more (the longest: {max(b - a for a, b in events)})")
            raise ValueError(f"inputs {str(inputs)!r} {where}; the model needs input_steps={t_in}")
        if not all_windows:
            a, b = next((a, b) for a, b in reversed(events) if b - a >= t_in)
            starts = [b - t_in]
        return _Windows([np.arange(s, s + t_in) for s in starts], np.array(starts, dtype=np.int64) + t_in - 1)
    if archive is not None and len(archive.events) > 1:
        raise ValueError(f"inputs {str(inputs)!r}: a run trained on closeness/period/trend samples forecasts from "
                         f"one series without gaps; these files hold {len(archive.events)} events")
    from .multiscale import load_times

    gap = int(state["gap"])
    ms = MultiScale.from_state(state["multiscale"])
    lags = ms.lags(gap)
    if n < -int(lags.min()):
        raise ValueError(f"inputs {str(inputs)!r} has {n} time steps; the model's oldest lag reaches "
                         f"{-int(lags.min())} steps back")
    targets = np.arange(-int(lags.min()), n + gap + 1, stride) if all_windows else np.array([n + gap])
    features, _ = ms.feature_rows(targets, load_times(str(inputs), n), n, gap, str(inputs))
    return _Windows([t + lags for t in targets], targets - gap - 1, features)


def _finite_inputs(series: Any, windows: Sequence[np.ndarray], fill_nan: Any, name: str) -> Any:
    """The input frames of a forecast, with non-finite values handled as in training: filled
    as the run's ``fill_nan`` says (over the whole series, as ``fit`` filled it), or, when the
    run had none, refused if any frame the ``windows`` read holds one; the message names those
    frames' time steps in the file."""
    from .. import data as _data

    if fill_nan is not None:
        return _data.check_finite(series, fill=fill_nan)
    used = np.unique(np.concatenate([np.asarray(w) for w in windows]))
    bad = _nonfinite_steps(series, used)
    if bad.size:
        raise ValueError(f"inputs {name!r}: time step{'s' * (bad.size > 1)} {_some(bad)} of the file (of "
                         f"{int(series.shape[0])}) hold{'s' * (bad.size == 1)} non-finite values (NaN or inf), and the "
                         f"forecast reads {'them' if bad.size > 1 else 'it'}; the run was trained without "
                         f"--fill-nan, so nothing says how to fill them. Fill the gaps in the file, or train "
                         f"again with `convlstm fit ... --fill-nan VALUE` (predict then fills them with VALUE)")
    return series


def _nonfinite_steps(series: Any, steps: np.ndarray) -> np.ndarray:
    """The time ``steps`` of ``series`` whose frames hold a NaN or infinite value."""
    frames = np.asarray(series[steps])
    if frames.dtype.kind not in "fc":
        return steps[:0]
    return steps[~np.isfinite(frames.reshape(len(steps), -1)).all(axis=1)]


def _some(values: np.ndarray, shown: int = 5) -> str:
    """``"3, 4, 9"``, or the first ``shown`` values and how many more."""
    text = ", ".join(str(int(v)) for v in values[:shown])
    return text if len(values) <= shown else f"{text} and {len(values) - shown} more"


def read_windows(series: Any, windows: Sequence[np.ndarray]) -> np.ndarray:
    """The frames of ``windows`` (arrays of time indices into ``series``, all of one length) as one
    array ``(len(windows), steps, ...)``, equal to stacking ``series[w]`` for each window: the frames
    the windows use are read in one indexed read, each once and in time order (windows that overlap,
    as every window of a file does, share their frames), then picked in memory."""
    index = np.stack([np.asarray(w, dtype=np.int64) for w in windows])
    used, where = np.unique(index, return_inverse=True)
    frames = np.asarray(series[used])
    return frames[np.asarray(where).reshape(index.shape)]


def _forecast(module: nn.Module, state: Dict[str, Any], series: Any, windows: _Windows, batch_size: int,
              clamp: bool, members: int = 0, seed: int = 0) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(N, T_out, rows, cols, channels)`` float32 forecasts in the data's units, and with
    ``members`` the ``(N, members, T_out, rows, cols, channels)`` drawn around them with ``seed``
    (else ``None``). ``batch_size`` windows at a time, their frames read at once
    (:func:`read_windows`), the model in eval mode under ``torch.inference_mode``."""
    from .. import data as _data

    scaler = _data.scaler_from_state_dict(state["scaler"])
    dev = next(module.parameters()).device
    generator = torch.Generator(device=dev).manual_seed(int(seed)) if members else None
    outs: List[np.ndarray] = []
    drawn: List[np.ndarray] = []

    def data_units(t: torch.Tensor) -> np.ndarray:
        t = scaler.inverse_transform(t.float())
        return (t.clamp_min(0.0) if clamp else t).cpu().numpy().astype(np.float32)

    with torch.inference_mode():   # nothing computed here leaves as a tensor: the forecasts go out as numpy arrays
        for b in range(0, len(windows.indices), batch_size):
            xb = read_windows(series, windows.indices[b:b + batch_size])
            x = scaler.transform(torch.as_tensor(xb, dtype=torch.float32)).to(dev)
            f = None if windows.features is None else torch.from_numpy(windows.features[b:b + batch_size]).to(dev)
            fc = module(x, f)
            outs.append(data_units(fc))
            if members:   # (B, members, T_out, H, W, C)
                drawn.append(data_units(module.forecast_members(x, members, f, generator=generator,
                                                                forecast=fc).movedim(0, 1)))
    return np.concatenate(outs), (np.concatenate(drawn) if members else None)
