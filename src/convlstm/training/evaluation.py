"""``evaluate``: score a trained model beside its baselines, in the data's own units.

The steps, in order: resolve the scoring options (given, else the run's own) -> load the model
and its data -> build the baselines from the registry (:mod:`convlstm.baselines`) -> score every
batch of the part with one engine (:class:`convlstm.scoring.MetricAccumulator`): the model's
forecast and each baseline's, all against the **values in the file** (in physical units, never
round-tripped through the scaler) -> write ``metrics.json``, the per-lead-time CSV and the
pictures.

**Ensembles.** The ensemble baselines (``steps``, ``dressed``, :mod:`convlstm.ensemble_baselines`)
and a model trained with members (a module whose ``members`` is above 0, scored through its
``forecast_members``) are ensemble forecasters: their members are scored batch by batch with
:class:`~convlstm.ensemble_scores.EnsembleScores` (CRPS, Brier score, ROC area, reliability,
rank histogram, spread-skill), and their ensemble mean with the same engine as every forecast,
so each one's entry in ``metrics.json`` holds both; ``rank_histogram.png``, ``reliability.png``
and ``probability.png`` draw them. The model's ensemble mean is exact: the forecast its members
are drawn around, their mean before any clamp at 0
(:class:`~convlstm.models.StochasticMembers`), rather than the average of the :math:`N` drawn,
whose MSE is larger by about the members' variance over :math:`N` (that average's RMSE is the
spread-skill's ``rmse_mean``).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Subset

from .._checks import check_number
from .._errors import ParameterError
from .._heap import keep_freed_memory
from ..data._memmap import SeriesByReference
from ..baselines import Baseline, Batch, build_baselines, get_baseline
from ..ensemble_baselines import DEFAULT_MEMBERS, EnsembleBaseline, split_baselines
from ..ensemble_scores import EnsembleScores
from ..scoring import MetricAccumulator, format_results, ssim_applies, write_metrics
from .datamodule import GridDataModule
from .runs import (PathLike, check_nonnegative_option, data_state, find_checkpoint, load_module, run_dir_of,
                   run_scoring_options, torch_device)

__all__ = ["evaluate", "format_results"]

_PARTS = ("all", "train", "val", "test")
#: The most validation samples whose error fields the dressed baseline keeps (spread evenly over the part).
DRESSED_POOL = 200


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
    #: the busiest sample's members of each ensemble forecaster, {name: (n, L, H, W, C)}
    busiest_members: Dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = max(1, min(self.wanted, self.total))
        self.targets = set(np.linspace(0, max(self.total - 1, 0), count).round().astype(int).tolist())

    def keep(self, x: torch.Tensor, y: torch.Tensor, p: torch.Tensor, forecasts: Dict[str, torch.Tensor],
             ensembles: Optional[Dict[str, torch.Tensor]] = None) -> None:
        batch = [x, y, p] + ([forecasts["extrapolation"]] if "extrapolation" in forecasts else [])

        def row(i: int) -> tuple:   # only the samples kept are copied out of the batch
            return tuple(a[i].float().cpu().numpy() for a in batch)

        variance = _variances(y)
        b = int(torch.argmax(variance))
        if self.busiest is None or float(variance[b]) > self.busiest[0]:
            self.busiest = (float(variance[b]), self.seen + b, row(b))
            self.busiest_members = {name: m[:, b].float().cpu().numpy() for name, m in (ensembles or {}).items()}
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
             time_from_name: Optional[str] = None, members: Optional[int] = None,
             probability_threshold: Optional[float] = None, rank_min: Optional[float] = None) -> Dict[str, Any]:
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
        members: the members of every ensemble forecaster scored (the model when it was trained
            with members, ``steps``, ``dressed``), an int >= 2; ``None``: the model's own number
            when it is an ensemble, else 20. Each one gets ``crps``, ``crps_fair``,
            ``spread_skill``, ``rank_histogram``, ``brier@T``, ``roc_auc@T``, ``reliability@T``
            and ``roc@T`` per threshold (:class:`~convlstm.ensemble_scores.EnsembleScores`, per
            lead time too), beside the deterministic scores of its ensemble mean. An ensemble
            model's deterministic scores (``mse``, ...) are those of its members' exact mean, the
            forecast they are drawn around.
        probability_threshold: the event threshold of ``probability.png`` (the exceedance
            probability :math:`P(x \\ge T)` of each ensemble forecaster for the busiest sample);
            ``None``: the first of ``thresholds``.
        rank_min: pysteps's ``X_min`` of the rank histograms, in the data's units: points where the
            truth and every member are below it are not ranked, and values below it tie (pysteps's
            ensemble verification example takes 0.1 mm/h, its rain threshold). ``None`` (default):
            every point is ranked.
    """
    keep_freed_memory()
    part = _check_part(part, data, datamodule)
    check_nonnegative_option(nonnegative)
    members = _check_members(members)
    if probability_threshold is not None:
        probability_threshold = _check_probability_threshold(probability_threshold)
    if rank_min is not None:
        rank_min = check_number("rank_min", rank_min)
    ckpt_path = find_checkpoint(source)
    options = ScoringOptions.resolve(ckpt_path, thresholds, baselines, fss_scales, extrapolation_method)
    deterministic, ensemble_names = split_baselines(options.baselines)
    module, ckpt = load_module(ckpt_path, model=model)
    model_members = model_ensemble_size(module)
    if members is not None and not ensemble_names and not model_members:
        raise ParameterError("members", f"members={members} sets the size of the ensembles scored, but the model is "
                                        f"deterministic and baselines holds no ensemble baseline (steps, dressed)",
                             also=("baselines",))
    if rank_min is not None and not ensemble_names and not model_members:
        raise ParameterError("rank_min", f"rank_min={rank_min:g} is for the rank histograms of ensembles, but the model "
                                         f"is deterministic and baselines holds no ensemble baseline (steps, dressed)",
                             also=("baselines",))
    n = members if members is not None else (model_members if model_members >= 2 else DEFAULT_MEMBERS)
    dm = _evaluation_data(ckpt, ckpt_path, datamodule, data, key, layout, batch_size, part, reader, time_from_name)
    forecasters = build_baselines(deterministic, dm, part, extrapolation_method=options.extrapolation_method)
    clamp = _clamp_forecasts(dm, nonnegative)
    module = module.to(torch_device(device))
    ensembles = _ensemble_baselines(ensemble_names, module, dm, part, clamp, n,
                                    options.extrapolation_method)
    _say_what_is_scored(dm, part, {**forecasters, **ensembles})
    if model_members:
        print(f"convlstm evaluate: model: an ensemble ({model_members} members in training), scored with {n} members "
              f"from its forecast_members; its mse, mae... are those of their exact mean, the forecast they are "
              f"drawn around")
    scores = {name: EnsembleScores(options.thresholds, lead_axis=1, rank_min=rank_min)
              for name in (["model"] if model_members else []) + list(ensembles)}
    acc = MetricAccumulator(data_range=_data_range(dm), thresholds=tuple(options.thresholds),
                            scales=tuple(options.fss_scales), conventions=(convention,) if convention else (),
                            active=_active_cells(dm) if convention == "st-resnet" else None)
    kept = _Samples(samples, len(dm.datasets[part]))
    _score_part(module, dm, part, forecasters, acc, kept, clamp, ensembles=ensembles, ensemble_scores=scores,
                members=n)
    results = _finish_results(acc.compute(), forecasters)
    _add_ensemble_results(results, scores)
    out = Path(out_dir) if out_dir is not None else run_dir_of(ckpt_path)
    write_metrics(results, out)
    if plots:
        _draw(dm, part, kept, out, units if units is not None else dm.units,
              history if history is not None else (ckpt.get("callbacks") or {}).get("HistoryCallback"))
        if scores:
            _draw_ensembles(results, list(scores), part, kept, out, units if units is not None else dm.units,
                            options.thresholds, probability_threshold)
    return results


def model_ensemble_size(module: nn.Module) -> int:
    """The members of an ensemble model (its ``members`` attribute, 0 for a deterministic one)."""
    size = getattr(module, "members", 0) or 0
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"the model's members must be an int >= 0 (0: deterministic), got {size!r}")
    return int(size)


def _check_members(members: Any) -> Optional[int]:
    if members is None:
        return None
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 2:
        raise ParameterError("members", f"members must be an int >= 2 (the members of each ensemble scored) or "
                                        f"None (the model's own, else {DEFAULT_MEMBERS}), got {members!r}")
    return int(members)


def _check_probability_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ParameterError("probability_threshold", f"probability_threshold must be a finite number (an event "
                                                      f"is a value >= it), got {value!r}")
    return float(value)


def _ensemble_baselines(names: Sequence[str], module: nn.Module, dm: GridDataModule, part: str, clamp: bool,
                        members: int, extrapolation_method: str) -> Dict[str, EnsembleBaseline]:
    """The ensemble baselines ``names`` for ``part``; ``dressed`` gets the model's error fields on
    the validation part, or is left out with a line saying why when there is none."""
    options: Dict[str, Any] = {"members": members, "clamp": clamp, "extrapolation_method": extrapolation_method}
    if "dressed" in names:
        if not dm.has_val:
            split = "no split: every window of the file" if part == "all" else f"split={list(dm.split)}"
            print(f"convlstm evaluate: baselines: dressed is left out: it draws the model's errors on the validation "
                  f"part, and this data has none ({split})")
            names = [n for n in names if n != "dressed"]
        else:
            errors, note = validation_errors(module, dm, clamp)
            options.update(validation_errors=errors, validation_note=note)
            if part == "val":
                print("convlstm evaluate: dressed draws its errors from the validation part, the part scored here")
    return {name: get_baseline(name).from_datamodule(dm, part, **options) for name in names}


def validation_errors(module: nn.Module, dm: GridDataModule, clamp: bool, *,
                      pool: int = DRESSED_POOL) -> Tuple[torch.Tensor, str]:
    r"""The model's error fields :math:`y - \hat y` on the validation part, in the data's units:
    :math:`(K, L, H, W, C)` float32 for :math:`K = \min(\text{pool}, N_{val})` samples spread
    evenly over the part (its first and last included), and a line saying which. :math:`\hat y`
    is the model's forecast as scored (clamped with ``clamp``; for an ensemble model, the exact
    mean of its members)."""
    total = len(dm.datasets["val"])
    chosen = np.unique(np.linspace(0, total - 1, min(int(pool), total)).round().astype(int)).tolist()
    errors = [(y_u - p_u).float() for _, y_u, p_u, _, _ in
              _forecast_batches(module, dm, "val", clamp, 0, None if len(chosen) == total else chosen)]
    which = "all" if len(chosen) == total else f"{len(chosen)} spread evenly over the"
    return torch.cat(errors), f"the validation part ({which} {total} samples)"


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


def _unscaled(dataset: Any) -> Any:
    """A shallow copy of ``dataset`` that gives its samples as the file holds them (after the unit
    conversion, before the scaler), in float64 where the dataset can give it."""
    raw = copy.copy(dataset)
    raw.scaler = None
    if isinstance(getattr(raw, "dtype", None), torch.dtype):
        raw.dtype = torch.float64
    return raw


def _unscaled_loader(dm: GridDataModule, part: str, indices: Optional[Sequence[int]] = None) -> DataLoader:
    """The samples of ``part`` (or those at ``indices`` of it) as the file holds them (after the
    unit conversion, before the scaler), in float64 where the dataset can give it, in the same
    order as ``dm.dataloader``."""
    raw = _unscaled(dm.datasets[part])
    return DataLoader(raw if indices is None else Subset(raw, list(indices)), batch_size=dm.batch_size,
                      shuffle=False)


class _ReadOnce(SeriesByReference):
    """A series (or set of sequences) whose reads are kept until :meth:`forget`: the scaled and the
    unscaled copy of a dataset then read an item's frames from the file once. What it hands out
    is the array the series gave; the datasets only read it (as they read views of an in-memory
    series). Pickled (``DataLoader`` workers), it keeps nothing and sends a memmap by reference."""

    def __init__(self, series: Any) -> None:
        self.series = series
        self._kept: Dict[Any, Any] = {}

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.series.shape)

    @property
    def dtype(self) -> Any:
        return self.series.dtype

    @property
    def ndim(self) -> int:
        return len(self.series.shape)

    def __len__(self) -> int:
        return int(self.series.shape[0])

    def __getitem__(self, key: Any) -> Any:
        k = _read_key(key)
        if k is None:
            return self.series[key]
        if k not in self._kept:
            self._kept[k] = self.series[key]
        return self._kept[k]

    def forget(self) -> None:
        self._kept.clear()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_kept"] = {}
        return state


def _read_key(key: Any) -> Any:
    """A hashable name of an index (int, slice, int array), or ``None`` for any other (not kept)."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return ("int", int(key))
    if isinstance(key, slice):
        parts = (key.start, key.stop, key.step)
        if all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) for v in parts):
            return ("slice",) + tuple(None if v is None else int(v) for v in parts)
        return None
    if isinstance(key, np.ndarray) and key.dtype.kind in "iu":
        return ("array", key.shape, key.astype(np.int64).tobytes())
    return None


class _ScaledAndUnscaled(Dataset):
    """Item ``i``: the item ``i`` of ``dataset`` (scaled, as the model reads it) and the same sample
    as the file holds it (:func:`_unscaled`), its frames read from the series once for both."""

    def __init__(self, dataset: Any, attribute: str) -> None:
        self.reads = _ReadOnce(getattr(dataset, attribute))
        self.scaled = copy.copy(dataset)
        self.raw = _unscaled(dataset)
        setattr(self.scaled, attribute, self.reads)
        setattr(self.raw, attribute, self.reads)

    def __len__(self) -> int:
        return len(self.scaled)

    def __getitem__(self, i: int) -> Tuple[Any, Any]:
        try:
            return self.scaled[i], self.raw[i]
        finally:
            self.reads.forget()


def _paired_batches(dm: GridDataModule, part: str, indices: Optional[Sequence[int]] = None):
    """For each batch of ``part`` (or of its samples at ``indices``), in the order of
    ``dm.dataloader``: the scaled batch (the model's input) and the unscaled one (what the file
    holds), as the two loaders of :func:`_unscaled_loader` and ``dm.dataloader`` give them, each
    sample's frames read once (a dataset that keeps its frames elsewhere than ``series`` or
    ``sequences`` is read twice, by the two loaders)."""
    dataset = dm.datasets[part]
    attribute = next((a for a in ("series", "sequences") if getattr(dataset, a, None) is not None), None)
    if attribute is None:
        scaled_loader = (dm.dataloader(part) if indices is None else
                         DataLoader(Subset(dataset, list(indices)), batch_size=dm.batch_size, shuffle=False))
        yield from zip(scaled_loader, _unscaled_loader(dm, part, indices))
        return
    paired = _ScaledAndUnscaled(dataset, attribute)
    workers = dm.num_workers if indices is None else 0   # as dm.dataloader, and the subset's loader before
    yield from DataLoader(paired if indices is None else Subset(paired, list(indices)), batch_size=dm.batch_size,
                          shuffle=False, num_workers=workers)


def _data_units(dm: GridDataModule, scaled: torch.Tensor, clamp: bool) -> torch.Tensor:
    """A forecast in the model's scaled units -> float64 on the CPU in the data's, clamped at 0 with
    ``clamp``: always a new tensor (``.float()`` or ``.double()`` copies), so that one made from a
    forecast computed under ``torch.inference_mode`` is an ordinary tensor."""
    out = dm.inverse_transform(scaled.float()).cpu().double()
    return out.clamp_min(0.0) if clamp else out


def _forecast_batches(module: nn.Module, dm: GridDataModule, part: str, clamp: bool, members: int = 0,
                      indices: Optional[Sequence[int]] = None):
    r"""For each batch of ``part`` (or of its samples at ``indices``), in order: the inputs and
    targets as the file holds them, the model's forecast in data units, its members (``members``
    above 0: ``module.forecast_members(x, members, features)``, :math:`(n, N, L, H, W, C)` in
    data units, drawn around that forecast, their exact mean; else ``None``), and the batch's
    first index. Where ``forecast_members`` takes a ``generator``, it gets one seeded with 0: the
    same members at each evaluation with the same batch size. The model runs under ``torch.inference_mode``; each
    sample's frames are read once for both the scaled and the unscaled batch (:func:`_paired_batches`)."""
    dev = next(module.parameters()).device
    first = 0
    draw: Dict[str, Any] = {}
    if members and "generator" in inspect.signature(module.forecast_members).parameters:
        draw["generator"] = torch.Generator(device=dev).manual_seed(0)   # the same members at each evaluation
    with torch.no_grad():
        for scaled, raw in _paired_batches(dm, part, indices):
            x = scaled[0].to(dev)
            features = scaled[2].to(dev) if len(scaled) > 2 else None
            ensemble = None
            with torch.inference_mode():
                forecast = module(x, features)
                if members:
                    drawn = module.forecast_members(x, members, features, forecast=forecast, **draw)
            p_u = _data_units(dm, forecast, clamp)     # outside inference mode: an ordinary tensor
            if members:
                ensemble = _data_units(dm, drawn, clamp)
                expected = (members, x.shape[0]) + tuple(raw[1].shape[1:])
                if tuple(ensemble.shape) != expected:
                    raise ValueError(f"the model's forecast_members gave shape {tuple(ensemble.shape)}, expected "
                                     f"(members, batch, lead_time, rows, cols, channels) = {expected}")
            yield raw[0], raw[1], p_u, ensemble, first
            first += int(x.shape[0])


def _score_part(module: nn.Module, dm: GridDataModule, part: str, forecasters: Dict[str, Baseline],
                acc: MetricAccumulator, kept: Optional[_Samples], clamp: bool, *,
                ensembles: Optional[Dict[str, EnsembleBaseline]] = None,
                ensemble_scores: Optional[Dict[str, EnsembleScores]] = None, members: int = 0) -> None:
    """Score the model and every baseline on each batch of ``part`` (keeping samples for the
    pictures in ``kept``, unless it is ``None``): the model reads the scaled
    samples, everything is scored against the unscaled ones. With ``ensemble_scores``, the
    members (``members`` of them) of the model (when ``"model"`` is among them) and of each
    of ``ensembles`` are scored there, and their ensemble mean in ``acc``."""
    ensembles, ensemble_scores = ensembles or {}, ensemble_scores or {}
    model_members = members if "model" in ensemble_scores else 0
    for x_u, y_u, p_u, model_ensemble, first in _forecast_batches(module, dm, part, clamp, model_members):
        recent = x_u if dm.streams is None else x_u[:, -dm.streams[0]:]   # closeness frames only
        batch = Batch(recent, int(y_u.shape[1]), dm.gap, first, forecast=p_u)
        forecasts = {name: b.forecast(batch) for name, b in forecasters.items()}
        acc.add("model", p_u, y_u)
        for name, f in forecasts.items():
            acc.add(name, f, y_u)
        drawn = {} if model_ensemble is None else {"model": model_ensemble}
        for name, baseline in ensembles.items():
            drawn[name] = baseline.members(batch, members)
            acc.add(name, drawn[name].mean(0), y_u)
        for name, m in drawn.items():
            ensemble_scores[name].accumulate(m, y_u)
        if kept is not None:
            kept.keep(x_u, y_u, p_u, forecasts, drawn)


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


def _add_ensemble_results(results: Dict[str, Any], scores: Dict[str, EnsembleScores]) -> None:
    """Each ensemble forecaster's probabilistic scores into its entry of ``results``, beside those
    of its ensemble mean: the scalar ones per lead time too (the CSV's columns), the rank
    histogram of each lead time under ``rank_histogram_per_lead_time``."""
    for name, acc in scores.items():
        computed = acc.compute()
        per = computed.pop("per_lead_time")
        entry = results[name]
        entry.update(computed)
        entry["rank_histogram_per_lead_time"] = per.pop("rank_histogram")
        entry["per_lead_time"].update(per)


def _draw_ensembles(results: Dict[str, Any], names: Sequence[str], part: str, kept: _Samples, out: Path,
                    units: Optional[str], thresholds: Sequence[float], probability_threshold: Optional[float]) -> None:
    """``rank_histogram.png`` and ``reliability.png`` (a panel per ensemble forecaster) and
    ``probability.png`` (the exceedance probabilities of the busiest kept sample)."""
    from .. import plots as _plots

    _plots.plot_rank_histogram({n: results[n]["rank_histogram"] for n in names}, out / "rank_histogram.png",
                               title=f"rank histograms, {part} part")
    if thresholds:
        _plots.plot_reliability({n: results[n] for n in names}, out / "reliability.png",
                                title=f"reliability, {part} part")
    else:
        print("convlstm evaluate: no thresholds, so no reliability.png nor probability.png: give thresholds "
              "(events x >= T) to draw them")
    threshold = probability_threshold if probability_threshold is not None else (
        float(thresholds[0]) if thresholds else None)
    if threshold is None or kept.busiest is None or not kept.busiest_members:
        return
    _, top, arrays = kept.busiest
    probabilities = {n: (m >= threshold).mean(0) for n, m in kept.busiest_members.items()}
    _plots.plot_probability(arrays[1], probabilities, out / "probability.png", threshold=threshold, units=units,
                            title=f"{part} sample #{top} (busiest): probability of x >= {threshold:g}"
                                  f"{' ' + units if units else ''}")


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
