"""``evaluate``: score a trained model beside its baselines, in the data's own units.

The steps, in order: resolve the scoring options (given, else the run's own) -> load the model
and its data -> build the baselines from the registry (:mod:`convlstm.baselines`) -> score every
batch of the part with one engine (:class:`convlstm.scoring.MetricAccumulator`): the model's
forecast and each baseline's, all against the **values in the file** (in physical units, never
round-tripped through the scaler) -> write ``metrics.json``, the per-lead-time CSV and the
pictures.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .._errors import ParameterError
from ..baselines import Baseline, Batch, build_baselines, get_baseline
from ..scoring import MetricAccumulator, format_results, ssim_applies, write_metrics
from .datamodule import GridDataModule
from .runs import (PathLike, check_nonnegative_option, data_state, find_checkpoint, load_module, run_dir_of,
                   run_scoring_options, torch_device)

__all__ = ["evaluate", "format_results"]

_PARTS = ("all", "train", "val", "test")


@dataclass
class ScoringOptions:
    """What ``evaluate`` scores: event thresholds, baselines, FSS scales, the extrapolation method."""
    thresholds: List[float]
    baselines: List[str]
    fss_scales: List[int]
    extrapolation_method: str

    @classmethod
    def resolve(cls, ckpt_path: Path, thresholds: Any, baselines: Any, fss_scales: Any,
                extrapolation_method: Any) -> "ScoringOptions":
        """The options given, and the run's own (its ``config.yaml``) for those left at ``None``."""
        run = run_scoring_options(ckpt_path)
        baselines = run.baselines if baselines is None else baselines
        baselines = [baselines] if isinstance(baselines, str) else list(baselines)
        for name in baselines:   # before the model is loaded: an unknown name is refused at once
            get_baseline(name)
        return cls(list(run.thresholds if thresholds is None else thresholds), baselines,
                   list(run.fss_scales if fss_scales is None else fss_scales),
                   run.extrapolation_method if extrapolation_method is None else extrapolation_method)


def _variances(truth: torch.Tensor) -> torch.Tensor:
    """The variance of each sample's finite values (float64); ``-inf`` for a sample without any."""
    flat = truth.reshape(len(truth), -1).double()
    finite = torch.isfinite(flat)
    count = finite.sum(1)
    values = torch.where(finite, flat, torch.zeros_like(flat))
    mean = values.sum(1) / count.clamp_min(1)
    spread = torch.where(finite, (flat - mean[:, None]) ** 2, torch.zeros_like(flat)).sum(1) / count.clamp_min(1)
    return torch.where(count > 0, spread, torch.full_like(spread, -np.inf))


@dataclass
class _Samples:
    """The samples of a part kept for the pictures (data units, numpy): ``wanted`` of them spread
    evenly over the part's ``total`` (its first and last included), and the busiest sample (the
    largest variance of its truth) in place of the spread one nearest to it. Batches arrive in
    the part's order; each kept sample remembers its index in the part."""
    wanted: int
    total: int
    seen: int = 0
    spread: Dict[int, tuple] = field(default_factory=dict)
    busiest: Optional[tuple] = None   # (variance, index, arrays)

    def __post_init__(self) -> None:
        count = max(1, min(self.wanted, self.total))
        self.targets = set(np.linspace(0, max(self.total - 1, 0), count).round().astype(int).tolist())

    def keep(self, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, forecasts: Dict[str, torch.Tensor]) -> None:
        batch = [x, y, p] + ([forecasts["extrapolation"]] if "extrapolation" in forecasts else [])

        def row(i: int) -> tuple:   # only the samples kept are copied out of the batch
            return tuple(a[i].float().cpu().numpy() for a in batch)

        variance = _variances(y)
        b = int(torch.argmax(variance))
        if self.busiest is None or float(variance[b]) > self.busiest[0]:
            self.busiest = (float(variance[b]), self.seen + b, row(b))
        for i in range(len(variance)):
            if self.seen + i in self.targets:
                self.spread[self.seen + i] = row(i)
        self.seen += len(variance)

    def chosen(self) -> Tuple[List[int], List[str], List[np.ndarray], int]:
        """The kept samples in the part's order: their indices, their row labels (``#i``, the
        busiest marked), the stacked inputs, truth, model forecast (and extrapolation), and the
        busiest one's position among them."""
        picks = dict(self.spread)
        _, top, arrays = self.busiest
        if top not in picks:
            picks.pop(min(picks, key=lambda i: abs(i - top)), None)
            picks[top] = arrays
        indices = sorted(picks)
        labels = [f"#{i}, busiest" if i == top else f"#{i}" for i in indices]
        return indices, labels, [np.stack(a) for a in zip(*(picks[i] for i in indices))], indices.index(top)


def evaluate(source: PathLike, *, data: Optional[PathLike] = None, key: Optional[str] = None,
             layout: Optional[str] = None, datamodule: Optional[GridDataModule] = None,
             model: Optional[nn.Module] = None, part: Optional[str] = None, out_dir: Optional[PathLike] = None,
             thresholds: Optional[Sequence[float]] = None, units: Optional[str] = None, samples: int = 3,
             batch_size: Optional[int] = None,
             device: Optional[str] = None, plots: bool = True, history: Optional[Dict[str, Any]] = None,
             baselines: Optional[Sequence[str]] = None, fss_scales: Optional[Sequence[int]] = None,
             extrapolation_method: Optional[str] = None, nonnegative: Optional[bool] = None,
             convention: Optional[str] = None, reader: Optional[str] = None,
             time_from_name: Optional[str] = None) -> Dict[str, Any]:
    """Score a trained model on the ``part`` of its data (or every window of another file),
    beside the ``baselines``, in the data's own (physical) units; write ``metrics.json``,
    ``metrics_per_lead_time.csv``, ``forecast.png``, ``forecast.gif`` and ``learning_curve.png``
    into ``out_dir`` (default: the run folder). Returns the metrics dict
    (:meth:`convlstm.scoring.MetricAccumulator.compute`'s).

    The targets, persistence and extrapolation are the values of the file (after the run's unit
    conversion), not values passed through the scaler and back, so an observation exactly at a
    threshold counts as an event, as pysteps counts it from the same file.

    Args:
        source: a run folder or a ``.ckpt`` file.
        data, key, layout: another grid file to evaluate on (default: the file it was trained
            on); it is read and scaled as in training (same unit conversion, the run's scaler), with
            the run's key and layout unless they are given (:func:`~convlstm.training.datamodule.run_source_options`).
            ``data`` may also be several files (a list, a glob pattern, a folder), read as an archive
            (:func:`convlstm.data.open_archive`) with ``reader`` and ``time_from_name`` (default: the
            run's, for a run trained on an archive); no window crosses an event's edge.
        datamodule: a ready :class:`GridDataModule` instead.
        part: ``"all"`` (every window, no split: the default with ``data``), or the ``"train"``,
            ``"val"`` or ``"test"`` part of the run's split (the default without).
        thresholds: CSI/POD/FAR/ETS (and FSS) thresholds in the data's units. This and
            ``baselines``, ``fss_scales``, ``extrapolation_method``: ``None`` takes the run's own
            (its ``config.yaml``, as ``fit`` scored it), else the defaults (no thresholds,
            persistence and climatology, no FSS scales, ``lucaskanade``).
        units: the units' name for the colour bars; ``None``: the run's (``units`` of its fit).
        baselines: registered baseline names (:func:`convlstm.baselines.baseline_names`:
            ``persistence``, ``climatology``, ``extrapolation`` (pysteps's optical-flow
            extrapolation, the ``radar`` extra), and any registered with
            :func:`~convlstm.baselines.register_baseline`), each a row in the metrics; the
            extrapolation is drawn in ``forecast.png``.
        fss_scales: FSS window widths in pixels (FSS at every threshold and scale).
        extrapolation_method: pysteps's optical-flow method for the extrapolation baseline.
        nonnegative: clamp the model's forecasts at 0 (in data units); ``None``: as the
            checkpoint's data state says (decided at training, see :class:`GridDataModule`).
        convention: also score every forecast in a published paper's convention
            (:mod:`convlstm.conventions`: ``"st-resnet"``, ``"st-ssl"``, ``"openstl"``), under
            ``results[name]["conventions"]``; :func:`convlstm.conventions.format_convention`
            prints them as the paper does.
    """
    part = _check_part(part, data, datamodule)
    check_nonnegative_option(nonnegative)
    ckpt_path = find_checkpoint(source)
    options = ScoringOptions.resolve(ckpt_path, thresholds, baselines, fss_scales, extrapolation_method)
    module, ckpt = load_module(ckpt_path, model=model)
    dm = _evaluation_data(ckpt, ckpt_path, datamodule, data, key, layout, batch_size, part, reader, time_from_name)
    forecasters = build_baselines(options.baselines, dm, part, extrapolation_method=options.extrapolation_method)
    clamp = _clamp_forecasts(dm, nonnegative)
    _say_what_is_scored(dm, part, forecasters)
    acc = MetricAccumulator(data_range=_data_range(dm), thresholds=tuple(options.thresholds),
                            scales=tuple(options.fss_scales), conventions=(convention,) if convention else (),
                            active=_active_cells(dm) if convention == "st-resnet" else None)
    kept = _Samples(samples, len(dm.datasets[part]))
    _score_part(module.to(torch_device(device)), dm, part, forecasters, acc, kept, clamp)
    results = _finish_results(acc.compute(), forecasters)
    out = Path(out_dir) if out_dir is not None else run_dir_of(ckpt_path)
    write_metrics(results, out)
    if plots:
        _draw(dm, part, kept, out, units if units is not None else dm.units,
              history if history is not None else (ckpt.get("callbacks") or {}).get("HistoryCallback"))
    return results


def _active_cells(dm: GridDataModule, chunk: int = 256) -> np.ndarray:
    """The ``(rows, cols)`` cells with any nonzero value anywhere in ``dm``'s series (ST-ResNet's
    active cells: on BikeNYC the 81 of 128 that hold a station), read ``chunk`` frames at a time."""
    series = getattr(dm, "series", None)
    if series is None:
        raise ParameterError("convention", "the st-resnet convention scores a grid series' active cells; this run's "
                                           "data are separate sequences")
    active = np.zeros(tuple(series.shape[1:3]), dtype=bool)
    for t0 in range(0, int(series.shape[0]), chunk):
        active |= np.any(np.nan_to_num(np.asarray(series[t0:t0 + chunk])) != 0, axis=(0, 3))
    return active


def _check_part(part: Optional[str], data: Optional[PathLike], datamodule: Optional[GridDataModule]) -> str:
    """``part``, or its default: ``"all"`` for another file (``data``), else ``"test"``."""
    if part is None:
        return "all" if data is not None else "test"
    if part not in _PARTS:
        raise ParameterError("part", f"part must be one of {', '.join(_PARTS)}; got {part!r}")
    if part == "all" and datamodule is not None:
        raise ParameterError("part", "part='all' scores every window of a file rebuilt from the checkpoint; give "
                                     "the file as data=FILE instead of datamodule=")
    return part


def _evaluation_data(ckpt: Dict[str, Any], ckpt_path: Path, datamodule: Optional[GridDataModule],
                     data: Optional[PathLike], key: Optional[str], layout: Optional[str],
                     batch_size: Optional[int], part: str, reader: Optional[str] = None,
                     time_from_name: Optional[str] = None) -> GridDataModule:
    """The data module to score on: the run's data (or ``data``) rebuilt from the checkpoint's
    state, or ``datamodule`` with that state loaded; set up, with ``part`` non-empty."""
    state = ckpt.get("GridDataModule") or {}
    if datamodule is None:
        state = data_state(ckpt, ckpt_path, "; pass datamodule=")
        path = None if data is None else [str(d) for d in data] if isinstance(data, (list, tuple)) else str(data)
        datamodule = GridDataModule.from_state(state, path=path, key=key, layout=layout, batch_size=batch_size,
                                               whole=part == "all", reader=reader, time_from_name=time_from_name)
    elif state:
        datamodule.load_state_dict(state)
    try:
        datamodule.setup("test")
    except ParameterError as exc:  # the run's split does not fit the file: it needs none
        if exc.parameter != "split" or data is None or part == "all":
            raise
        raise ParameterError("part", f"{exc}; part='all' scores every window of {data} without a split",
                             also=exc.parameters) from None
    if part not in datamodule.datasets:
        raise ValueError(f"the {part} part of the data is empty (split={list(datamodule.split)})")
    return datamodule


def _clamp_forecasts(dm: GridDataModule, nonnegative: Optional[bool]) -> bool:
    clamp = dm.nonnegative if nonnegative is None else nonnegative
    if clamp:
        print(f"convlstm evaluate: forecasts clamped at 0 "
              f"({dm.nonnegative_reason if nonnegative is None else 'nonnegative=True was given'})")
    return bool(clamp)


def _data_range(dm: GridDataModule) -> float:
    lo, hi = dm.value_range
    return float(hi - lo) if hi > lo else 1.0


def _say_what_is_scored(dm: GridDataModule, part: str, forecasters: Dict[str, Baseline]) -> None:
    if part == "all":
        print(f"convlstm evaluate: scoring every window of {dm.path or 'the data'} ({len(dm.datasets[part])} "
              f"samples, not split), scaled with the run's scaler")
    rows, cols = dm.sample_shape[:2]
    if not ssim_applies(rows, cols):
        print(f"convlstm evaluate: frames of {rows}x{cols} are smaller than SSIM's 11x11 window; every score but "
              f"SSIM is reported")
    for baseline in forecasters.values():
        line = baseline.describe()
        if line:
            print(f"convlstm evaluate: {line}")


def _unscaled_loader(dm: GridDataModule, part: str) -> DataLoader:
    """The samples of ``part`` as the file holds them (after the unit conversion, before the
    scaler), in float64 where the dataset can give it, in the same order as ``dm.dataloader``."""
    raw = copy.copy(dm.datasets[part])
    raw.scaler = None
    if isinstance(getattr(raw, "dtype", None), torch.dtype):
        raw.dtype = torch.float64
    return DataLoader(raw, batch_size=dm.batch_size, shuffle=False)


def _score_part(module: nn.Module, dm: GridDataModule, part: str, forecasters: Dict[str, Baseline],
                acc: MetricAccumulator, kept: Optional[_Samples], clamp: bool) -> None:
    """Score the model and every baseline on each batch of ``part`` (keeping samples for the
    pictures in ``kept``, unless it is ``None``): the model reads the scaled
    samples, everything is scored against the unscaled ones."""
    dev = next(module.parameters()).device
    first = 0
    with torch.no_grad():
        for scaled, raw in zip(dm.dataloader(part), _unscaled_loader(dm, part)):
            x = scaled[0].to(dev)
            pred = module(x, scaled[2].to(dev) if len(scaled) > 2 else None).float()
            p_u = dm.inverse_transform(pred).cpu().double()
            if clamp:
                p_u = p_u.clamp_min(0.0)
            x_u, y_u = raw[0], raw[1]
            recent = x_u if dm.streams is None else x_u[:, -dm.streams[0]:]   # closeness frames only
            batch = Batch(recent, int(y_u.shape[1]), dm.gap, first)
            forecasts = {name: b.forecast(batch) for name, b in forecasters.items()}
            acc.add("model", p_u, y_u)
            for name, f in forecasts.items():
                acc.add(name, f, y_u)
            if kept is not None:
                kept.keep(x_u, y_u, p_u, forecasts)
            first += int(x.shape[0])


def _finish_results(results: Dict[str, Any], forecasters: Dict[str, Baseline]) -> Dict[str, Any]:
    clim = forecasters.get("climatology")
    unseen = getattr(clim, "unseen_hours", None)
    if unseen and "climatology" in results:
        results["climatology"]["hours_without_training_data"] = unseen
    bad = results["model"].get("nonfinite_values")
    if bad:
        print(f"convlstm evaluate: warning: the model's forecasts hold {bad} NaN or infinite values (the model "
              f"may have diverged: lower --lr, or add --gradient-clip); its event scores are left undefined")
    return results


def _draw(dm: GridDataModule, part: str, kept: _Samples, out: Path, units: Optional[str],
          history: Optional[Dict[str, Any]]) -> None:
    from .. import plots as _plots

    indices, rows, arrays, busiest = kept.chosen()
    xs, ys, ps = arrays[:3]
    rows_extra = {"extrapolation": arrays[3]} if len(arrays) > 3 else None
    labels = None
    if dm.streams is not None:   # trend, period, closeness frames: steps back from the newest input
        lags = dm.datasets[part].lags
        labels = [f"t-{int(lags.max() - o)}" if o != lags.max() else "t" for o in lags]
    title = (f"{len(indices)} of the {kept.total} {part} samples, spread over the part\n"
             f"busiest: the largest variance of its truth")
    _plots.plot_forecast(xs, ys, ps, out / "forecast.png", samples=len(xs), units=units, title=title,
                         baselines=rows_extra, input_labels=labels, sample_labels=rows)
    _plots.animate_forecast(ys, ps, out / "forecast.gif", units=units, sample=busiest,
                            title=f"{part} sample {rows[busiest]}")
    if history and history.get("train_loss"):
        _plots.plot_learning_curve(history, out / "learning_curve.png")
