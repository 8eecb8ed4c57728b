r"""The scoring engine: every forecast (the model's and each baseline's) scored the same way,
batch by batch, at any frame size.

:class:`ForecastScores` keeps the running sums of one forecast, in the streaming shape of
pysteps's verification functions (``*_init``, ``*_accum``, ``*_merge``, ``*_compute``):
its constructor, :meth:`~ForecastScores.accumulate`, :meth:`~ForecastScores.merge` and
:meth:`~ForecastScores.compute`. :class:`MetricAccumulator` holds one of them per named
forecast; :func:`evaluate_forecast` scores whole arrays. The scores and their reductions are
those of :mod:`convlstm.metrics` (its table), with two rules for the cases a single score
function cannot settle:

- **SSIM only where it applies**: frames smaller than SSIM's 11x11 Gaussian window get every
  other score (MSE, MAE, RMSE, frame sums, PSNR, CSI/POD/FAR/ETS, FSS) and no ``ssim`` key.
- **Non-finite forecasts are flagged, not scored as "no event"**: a forecast holding NaN or
  inf gets ``nonfinite_values`` (how many), its error scores come out non-finite, and its event
  scores (CSI, POD, FAR, ETS, FSS) are ``nan`` instead of the 0 that "NaN is below every
  threshold" would give.
- **PSNR over the imperfect frames**: a frame forecast exactly has no PSNR (it is infinite);
  such frames are left out of the PSNR mean and counted in ``psnr_perfect_frames``, so one
  perfect frame does not make the score ``inf`` (``null`` in JSON). A lead time whose frames are
  all perfect has PSNR ``inf``.

The results (:meth:`MetricAccumulator.compute`)::

    {"model": {"mse": ..., "mae", "rmse", "mse_frame_sum", "mae_frame_sum", "psnr", "ssim",
               "csi@THR", "pod@THR", "far@THR", "ets@THR", "fss@THR/SCALE", ...,
               "per_lead_time": {"mse": [...], ...}},
     "persistence": {...}, "climatology": {...}, "extrapolation": {...}, "<baseline>": {...},
     "skill_vs_persistence": {"mse": 1 - model/persistence, "mae", "rmse"},
     "skill_vs_extrapolation": {...}}

:func:`write_metrics` writes them as ``metrics.json`` and ``metrics_per_lead_time.csv``;
:func:`format_results` as text tables.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._io import atomic_write, write_json
from .conventions import ConventionScores, check_convention
from .baselines import Batch, Extrapolation, Persistence, climatology_forecast
from .metrics import (_CONTINGENCY, BASELINES, METRIC_NAMES, SKILL_METRICS, _SSIM_WIN, ArrayLike, _as_tensor, _check_data_range, _check_scale,
                      _check_threshold, _contingency, _frame_psnr, _frame_sq_abs, _frame_ssim, _fss_from_sums,
                      _fss_sums, _pair, _scores_from_counts)

__all__ = ["ForecastScores", "MetricAccumulator", "evaluate_forecast", "per_lead_time_rows", "write_metrics",
           "format_results", "METRIC_NAMES", "SKILL_METRICS", "BASELINES"]

#: Baselines whose MSE the model's skill is reported against.
_SKILL_REFERENCES = ("persistence", "extrapolation")


def _format_threshold(thr: float) -> str:
    return f"{thr:g}"


def ssim_applies(rows: int, cols: int) -> bool:
    """Whether frames of ``rows x cols`` hold SSIM's 11x11 Gaussian window."""
    return min(int(rows), int(cols)) >= _SSIM_WIN


# ---------------------------------------------------------------------------------- one forecast
class ForecastScores:
    r"""Running sums of one forecast's scores, per lead time: squared and absolute errors, PSNR of
    the imperfect frames, SSIM (where it applies), contingency counts per threshold, FSS sums per
    threshold and scale, and the count of non-finite forecast values.

    Args:
        lead_time: :math:`L`, lead times per sample.
        data_range: the data's max - min (for SSIM and PSNR).
        thresholds: event thresholds (CSI, POD, FAR, ETS, and FSS with ``scales``).
        scales: FSS window widths in pixels.
        with_ssim: score SSIM (frames of 11x11 or more).

    Shape:
        - :meth:`accumulate`: forecast and truth :math:`(N, L, H, W, C)` float64 tensors.
    """

    def __init__(self, lead_time: int, data_range: float, thresholds: Tuple[float, ...] = (),
                 scales: Tuple[int, ...] = (), with_ssim: bool = True) -> None:
        self.lead_time, self.data_range = int(lead_time), float(data_range)
        self.thresholds, self.scales, self.with_ssim = tuple(thresholds), tuple(scales), bool(with_ssim)
        self.samples = 0
        self.values_per_frame = 0
        zeros = lambda *shape: np.zeros((self.lead_time,) + shape)  # noqa: E731
        self.sq, self.ab, self.ssim = zeros(), zeros(), zeros()
        self.psnr, self.psnr_frames = zeros(), zeros()
        self.nonfinite = 0
        self.counts = {thr: zeros(4) for thr in self.thresholds}
        self.fss = {(thr, sc): zeros(3) for thr in self.thresholds for sc in self.scales}

    def accumulate(self, p: torch.Tensor, y: torch.Tensor) -> None:
        """Add the samples of forecast ``p`` against truth ``y``."""
        sq, ab = _frame_sq_abs(p, y)
        self.samples += int(p.shape[0])
        self.values_per_frame = int(p[0, 0].numel())
        self.sq += sq.sum(0).cpu().numpy()
        self.ab += ab.sum(0).cpu().numpy()
        self.nonfinite += int((~torch.isfinite(p)).sum())
        imperfect = sq != 0
        frame_psnr = _frame_psnr(sq, self.values_per_frame, self.data_range)
        self.psnr += torch.where(imperfect, frame_psnr, torch.zeros_like(frame_psnr)).sum(0).cpu().numpy()
        self.psnr_frames += imperfect.sum(0).cpu().numpy()
        if self.with_ssim:
            self.ssim += _frame_ssim(p, y, self.data_range).sum(0).cpu().numpy()
        for thr in self.counts:
            self.counts[thr] += _contingency(p, y, thr).cpu().numpy()
        for thr, sc in self.fss:
            self.fss[(thr, sc)] += _fss_sums(p, y, thr, sc).cpu().numpy()

    def merge(self, other: "ForecastScores") -> "ForecastScores":
        """Add ``other``'s sums (the same forecast scored on other samples, e.g. another process)."""
        if (other.lead_time, other.thresholds, other.scales, other.with_ssim) != \
                (self.lead_time, self.thresholds, self.scales, self.with_ssim):
            raise ValueError("ForecastScores.merge: the two were made with different lead times, thresholds, "
                             "scales or SSIM settings")
        for name in ("sq", "ab", "ssim", "psnr", "psnr_frames"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for thr in self.counts:
            self.counts[thr] = self.counts[thr] + other.counts[thr]
        for key in self.fss:
            self.fss[key] = self.fss[key] + other.fss[key]
        self.samples += other.samples
        self.nonfinite += other.nonfinite
        self.values_per_frame = self.values_per_frame or other.values_per_frame
        return self

    def _error_scores(self) -> Dict[str, np.ndarray]:
        n, per_frame = self.samples, self.values_per_frame
        per = {"mse": self.sq / (n * per_frame), "mae": self.ab / (n * per_frame)}
        per["rmse"] = np.sqrt(per["mse"])
        per["mse_frame_sum"], per["mae_frame_sum"] = self.sq / n, self.ab / n
        if self.with_ssim:
            per["ssim"] = self.ssim / n
        with np.errstate(invalid="ignore", divide="ignore"):
            per["psnr"] = np.where(self.psnr_frames > 0, self.psnr / np.maximum(self.psnr_frames, 1), np.inf)
        return per

    def _event_scores(self) -> Tuple[Dict[str, np.ndarray], Dict[str, float]]:
        per: Dict[str, np.ndarray] = {}
        overall: Dict[str, float] = {}
        for thr, counts in self.counts.items():
            scores, scores_all = _scores_from_counts(counts), _scores_from_counts(counts.sum(0))
            for name in _CONTINGENCY:
                key = f"{name}@{_format_threshold(thr)}"
                per[key], overall[key] = scores[name], float(scores_all[name])
        for (thr, sc), sums in self.fss.items():
            key = f"fss@{_format_threshold(thr)}/{sc}"
            per[key], overall[key] = _fss_from_sums(sums), float(_fss_from_sums(sums.sum(0)))
        if self.nonfinite:  # NaN forecasts are not "no event": the event scores are undefined
            per = {k: np.full_like(v, np.nan) for k, v in per.items()}
            overall = {k: float("nan") for k in overall}
        return per, overall

    def compute(self) -> Dict[str, Any]:
        """The scores overall (floats) and ``per_lead_time`` (lists), as :mod:`convlstm.metrics` defines them."""
        if not self.samples:
            raise RuntimeError("ForecastScores.compute: nothing was accumulated")
        per = self._error_scores()
        overall: Dict[str, Any] = {name: float(per[name].mean()) for name in METRIC_NAMES if name in per}
        overall["rmse"] = math.sqrt(overall["mse"]) if math.isfinite(overall["mse"]) else float("nan")
        total_frames = self.psnr_frames.sum()
        overall["psnr"] = float(self.psnr.sum() / total_frames) if total_frames else float("inf")
        per_events, overall_events = self._event_scores()
        per.update(per_events)
        overall.update(overall_events)
        perfect = self.samples * self.lead_time - int(total_frames)
        if perfect:
            overall["psnr_perfect_frames"] = perfect
        if self.nonfinite:
            overall["nonfinite_values"] = self.nonfinite
        overall["per_lead_time"] = {k: [float(v) for v in arr] for k, arr in per.items()}
        return overall


# ---------------------------------------------------------------------------------- all forecasts
def _distinct(values: Any, scalar_types: tuple, check: Any, name: str, what: str) -> tuple:
    """``values`` (one value or a sequence) checked one by one, as a tuple without repeats."""
    if isinstance(values, scalar_types) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be {what}, got {values!r}") from None
    return tuple(dict.fromkeys(check(v) for v in values))


def _skill(model: float, reference: float) -> float:
    """``1 - model / reference``; ``nan`` when the reference is 0 (a perfect baseline)."""
    if reference == 0 or not math.isfinite(reference):
        return float("nan")
    return float(1.0 - model / reference)


class MetricAccumulator:
    r"""Score forecasts batch by batch, the model's and any baseline's, without holding the test
    set in memory; :meth:`compute` returns what :func:`evaluate_forecast` returns.

    :meth:`add` scores one named forecast of a batch; :meth:`update` scores the model and the
    baselines that come from the batch itself (persistence from ``inputs``; climatology and
    extrapolation as configured). Sums are kept per lead time, so the result does not depend on
    how the samples are split into batches, and two accumulators fed different samples
    :meth:`merge` into the one that saw all of them.

    Args:
        data_range (float): the data's max - min, for SSIM and PSNR (required: a range taken from
            each batch would make the scores depend on the batching).
        thresholds (sequence of float): event thresholds for CSI, POD, FAR and ETS (keys
            ``"csi@<thr>"``, ``"pod@<thr>"``, ``"far@<thr>"``, ``"ets@<thr>"``).
        scales (sequence of int): FSS window widths in pixels; with thresholds, keys
            ``"fss@<thr>/<scale>"`` for every pair.
        climatology: optional mean frame :math:`(H, W, C)` for the climatology baseline; or pass a
            full climatology forecast for each batch to :meth:`update`.
        extrapolation (str, optional): an optical-flow method (``"lucaskanade"``, see
            :data:`convlstm.extrapolation.MOTION_METHODS`) to compute the extrapolation baseline
            from each batch's ``inputs`` (pysteps needed); ``None``: only when :meth:`update` is
            given one.
        gap (int): steps between the last input and the first target (for the extrapolation).
        conventions (sequence of str): published conventions to score every forecast in as well
            (:data:`convlstm.conventions.CONVENTIONS`), under ``results[name]["conventions"]``.
        active: ``(rows, cols)`` mask of the cells that count, for the ``st-resnet`` convention.

    Shape (``update``):
        - pred, true: :math:`(N, \text{lead}, H, W, C)`; inputs: :math:`(N, T_{in}, H, W, C)` or
          ``None`` (no persistence baseline); climatology: :math:`(H, W, C)` or
          :math:`(N, \text{lead}, H, W, C)`; extrapolation: :math:`(N, \text{lead}, H, W, C)`

    Example::

        >>> acc = MetricAccumulator(data_range=1.0, thresholds=(0.5,), climatology=train.mean(axis=0))
        >>> for x, y in loader:
        ...     acc.update(model(x), y, x)
        >>> results = acc.compute()
    """

    def __init__(self, *, data_range: float, thresholds: Iterable[float] = (), climatology: Any = None,
                 scales: Iterable[int] = (), extrapolation: Optional[str] = None, gap: int = 0,
                 conventions: Iterable[str] = (), active: Any = None):
        if data_range is None:
            raise ValueError("data_range=None: MetricAccumulator needs the data's range (max - min) for SSIM and "
                             "PSNR, e.g. data_range=1.0 for data scaled to [0, 1]")
        self.data_range = _check_data_range(data_range)
        self.thresholds = _distinct(thresholds, (int, float), _check_threshold, "thresholds",
                                    "a sequence of numbers")
        self.scales = _distinct(scales, (int, np.integer), _check_scale, "scales",
                                "a sequence of FSS window widths in pixels")
        if self.scales and not self.thresholds:
            raise ValueError(f"scales={list(self.scales)} but no thresholds: FSS needs event thresholds too "
                             f"(thresholds=(1.0,) for 1 mm/h)")
        self.climatology = None if climatology is None else _as_tensor(climatology, "climatology")
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
            raise ValueError(f"gap must be an int >= 0, got {gap!r}")
        self.gap = int(gap)
        self.extrapolation = None if extrapolation is None else Extrapolation(extrapolation)
        self.conventions = tuple(dict.fromkeys(check_convention(c) for c in conventions))
        self.active = active
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._scores: Dict[str, ForecastScores] = {}
        self._in_conventions: Dict[str, Dict[str, ConventionScores]] = {}
        self._shape: Optional[Tuple[int, ...]] = None

    @property
    def forecasts(self) -> Tuple[str, ...]:
        """The names of the forecasts scored so far."""
        return tuple(self._scores)

    def _check_shape(self, p: torch.Tensor, name: str) -> None:
        if self._shape is None:
            self._shape = tuple(p.shape[1:])
        elif tuple(p.shape[1:]) != self._shape:
            raise ValueError(f"{name} has shape {tuple(p.shape)}, earlier batches had (samples,) + {self._shape}; "
                             "every batch must have the same lead time, rows, cols and channels")

    def add(self, name: str, forecast: ArrayLike, true: ArrayLike) -> None:
        """Score ``forecast`` (of the model, ``name="model"``, or of a baseline) against ``true``
        for one batch; both :math:`(N, L, H, W, C)` in the same units."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be the forecast's name (a non-empty str), got {name!r}")
        p, y = _pair(forecast, true)
        self._check_shape(p, name)
        if name not in self._scores:
            rows, cols = p.shape[2:4]
            self._scores[name] = ForecastScores(p.shape[1], self.data_range, self.thresholds, self.scales,
                                                with_ssim=ssim_applies(rows, cols))
            self._in_conventions[name] = {c: ConventionScores(c, active=self.active, data_range=self.data_range)
                                          for c in self.conventions}
        self._scores[name].accumulate(p, y)
        for scores in self._in_conventions[name].values():
            scores.accumulate(p, y)

    def update(self, pred: ArrayLike, true: ArrayLike, inputs: Optional[ArrayLike] = None, *,
               climatology: Optional[ArrayLike] = None, extrapolation: Optional[ArrayLike] = None) -> None:
        """Add a batch of the model's forecasts and the baselines that come with it. ``inputs``
        gives the persistence baseline (and the extrapolation baseline when the accumulator was
        built with ``extrapolation=METHOD``); ``climatology`` (a frame or a full forecast for
        this batch) overrides the constructor's climatology for this batch; ``extrapolation`` is
        a ready extrapolation forecast for this batch."""
        p, y = _pair(pred, true)
        self.add("model", p, y)
        batch = None
        if inputs is not None:
            x = _as_tensor(inputs, "inputs").to(p.device)
            if x.dim() != 5 or x.shape[0] != p.shape[0] or tuple(x.shape[2:]) != tuple(p.shape[2:]):
                raise ValueError(f"inputs must be (samples, time, rows, cols, channels) matching pred "
                                 f"{tuple(p.shape)} in samples, rows, cols and channels, got {tuple(x.shape)}")
            batch = Batch(x, int(p.shape[1]), self.gap)
            self.add("persistence", Persistence().forecast(batch), y)
        if extrapolation is None and self.extrapolation is not None:
            if batch is None:
                raise ValueError(f"MetricAccumulator(extrapolation={self.extrapolation.method!r}) extrapolates the "
                                 f"inputs; give update(pred, true, inputs)")
            extrapolation = self.extrapolation.forecast(batch)
        if extrapolation is not None:
            e = _as_tensor(extrapolation, "extrapolation").to(p.device)
            if tuple(e.shape) != tuple(p.shape):
                raise ValueError(f"extrapolation must be a forecast shaped like pred {tuple(p.shape)}, "
                                 f"got {tuple(e.shape)}")
            self.add("extrapolation", e, y)
        clim = self.climatology if climatology is None else _as_tensor(climatology, "climatology")
        if clim is not None:
            self.add("climatology", self._climatology_forecast(clim.to(p.device), p), y)

    @staticmethod
    def _climatology_forecast(clim: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if clim.dim() == 3:
            if tuple(clim.shape) != tuple(p.shape[2:]):
                raise ValueError(f"climatology frame must have shape (rows, cols, channels) = "
                                 f"{tuple(p.shape[2:])}, got {tuple(clim.shape)}")
            return climatology_forecast(clim, int(p.shape[0]), int(p.shape[1]))
        if tuple(clim.shape) != tuple(p.shape):
            raise ValueError(f"climatology must be a (rows, cols, channels) frame {tuple(p.shape[2:])} or a "
                             f"forecast shaped like pred {tuple(p.shape)}, got {tuple(clim.shape)}")
        return clim

    def merge(self, other: "MetricAccumulator") -> "MetricAccumulator":
        """Add the sums of ``other`` (same settings, other samples); returns self."""
        if not isinstance(other, MetricAccumulator):
            raise TypeError(f"merge takes a MetricAccumulator, got {type(other).__name__}")
        for name, scores in other._scores.items():
            if name in self._scores:
                self._scores[name].merge(scores)
                for c, conv in other._in_conventions.get(name, {}).items():
                    self._in_conventions[name][c].merge(conv)
            else:
                self._scores[name] = scores
                self._in_conventions[name] = other._in_conventions.get(name, {})
            self._shape = self._shape or other._shape
        return self

    def compute(self) -> Dict[str, Any]:
        """The results so far: ``{"model": {...}, <each baseline>: {...},
        "skill_vs_persistence": {...}, "skill_vs_extrapolation": {...}}`` (the baselines only
        when they were scored), the built-in baselines first; see :func:`evaluate_forecast`."""
        if "model" not in self._scores:
            raise RuntimeError("MetricAccumulator.compute: no batch was added; call update(pred, true, inputs) first")
        order = ["model"] + [n for n in BASELINES if n in self._scores]
        order += [n for n in self._scores if n not in order]
        results: Dict[str, Any] = {name: self._scores[name].compute() for name in order}
        for name in order:
            if self._in_conventions.get(name):
                results[name]["conventions"] = {c: s.compute() for c, s in self._in_conventions[name].items()}
        for name in _SKILL_REFERENCES:
            if name in results:
                results[f"skill_vs_{name}"] = {
                    m: _skill(results["model"][m], results[name][m]) for m in SKILL_METRICS}
        return results


def evaluate_forecast(pred: ArrayLike, true: ArrayLike, inputs: ArrayLike, *, climatology: ArrayLike,
                      thresholds: Iterable[float] = (), data_range: Optional[float] = None,
                      batch_size: int = 256, scales: Iterable[int] = (),
                      extrapolation: Union[None, str, ArrayLike] = None, gap: int = 0) -> Dict[str, Any]:
    r"""Score a forecast beside the persistence, climatology and (optionally) extrapolation
    baselines.

    Args:
        pred, true: :math:`(N, \text{lead}, H, W, C)` forecasts and targets.
        inputs: :math:`(N, T_{in}, H, W, C)` the model's inputs (their last frame is persistence).
        climatology: the mean training frame :math:`(H, W, C)`, or a full climatology forecast
            shaped like ``true`` (e.g. :meth:`ClimatologyByTimeOfDay.forecast`).
        thresholds: event thresholds for CSI, POD, FAR and ETS (and FSS), in the data's units.
        data_range: the data's max - min for SSIM and PSNR; ``None`` takes ``true.max() -
            true.min()`` (give it explicitly to compare runs on different test sets).
        batch_size: samples scored at a time (bounds the memory of SSIM).
        scales: FSS window widths in pixels (FSS at every threshold and scale).
        extrapolation: ``None`` (no extrapolation baseline), an optical-flow method name
            (``"lucaskanade"``: computed from ``inputs`` with :func:`extrapolation_forecast`), or a
            ready extrapolation forecast shaped like ``pred``.
        gap: steps between the last input and the first target (for the extrapolation).

    Returns:
        A dict of plain Python floats (``nan`` for undefined CSI/POD/FAR/ETS/FSS or skill; see the
        module for SSIM on small frames, non-finite forecasts and perfect frames)::

            {"model": {"mse": float, "mae", "rmse", "mse_frame_sum", "mae_frame_sum", "ssim", "psnr",
                       "csi@0.5", "pod@0.5", "far@0.5", "ets@0.5", "fss@0.5/10", ...,
                       "per_lead_time": {"mse": [lead floats], ...}},
             "persistence": {...}, "climatology": {...}, "extrapolation": {...},
             "skill_vs_persistence": {"mse": 1 - model/persistence, "mae": ..., "rmse": ...},
             "skill_vs_extrapolation": {...}}
    """
    p, y = _pair(pred, true)
    if data_range is None:
        data_range = float(y.max() - y.min())
        if not data_range > 0:
            raise ValueError("data_range=None: the targets are constant, so their range is 0; give data_range "
                             "explicitly (e.g. 1.0 for data in [0, 1])")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if climatology is None:
        raise ValueError("climatology=None: give the mean training frame (rows, cols, channels) or a climatology "
                         "forecast shaped like true")
    x = _as_tensor(inputs, "inputs").to(p.device)
    clim = _as_tensor(climatology, "climatology").to(p.device)
    method = extrapolation if isinstance(extrapolation, str) else None
    ready = None if extrapolation is None or method is not None else _as_tensor(extrapolation, "extrapolation")
    if ready is not None and tuple(ready.shape) != tuple(p.shape):
        raise ValueError(f"extrapolation must be a method name or a forecast shaped like pred {tuple(p.shape)}, "
                         f"got shape {tuple(ready.shape)}")
    acc = MetricAccumulator(data_range=data_range, thresholds=thresholds, scales=scales, extrapolation=method,
                            gap=gap)
    for s in range(0, p.shape[0], int(batch_size)):
        sl = slice(s, s + int(batch_size))
        acc.update(p[sl], y[sl], x[sl], climatology=clim if clim.dim() == 3 else clim[sl],
                   extrapolation=None if ready is None else ready[sl])
    return acc.compute()


# ---------------------------------------------------------------------------------- writing
def per_lead_time_rows(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Flatten :func:`evaluate_forecast`'s result to one row per forecast and lead time:
    ``{"forecast": "model", "lead_time": 1, "mse": ..., "csi@0.5": ..., ...}`` (lead times count
    from 1), in the order of the results (model first)."""
    if not isinstance(results, dict):
        raise TypeError(f"results must be the dict evaluate_forecast returns, got {type(results).__name__}")
    rows: List[Dict[str, Any]] = []
    for name, entry in results.items():
        if not isinstance(entry, dict) or "per_lead_time" not in entry:
            continue
        per = entry["per_lead_time"]
        lengths = {len(v) for v in per.values()}
        if len(lengths) != 1:
            raise ValueError(f"results[{name!r}]['per_lead_time'] lists have different lengths: {sorted(lengths)}")
        for t in range(lengths.pop()):
            row: Dict[str, Any] = {"forecast": name, "lead_time": t + 1}
            row.update({metric: values[t] for metric, values in per.items()})
            rows.append(row)
    return rows


def _strict_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_metrics(results: Dict[str, Any], run_dir: Union[str, "os.PathLike[str]"]) -> Dict[str, Path]:
    """Write ``results`` (from :func:`evaluate_forecast`) to ``run_dir/metrics.json`` and
    ``run_dir/metrics_per_lead_time.csv``, each atomically.

    The JSON is strict (``nan`` and ``inf`` become ``null``); the CSV has the columns ``forecast,
    lead_time`` and then every metric, with ``nan``/``inf`` written as such.

    Returns:
        ``{"json": path, "csv": path}``.
    """
    rows = per_lead_time_rows(results)
    run_dir = Path(run_dir)
    json_path, csv_path = run_dir / "metrics.json", run_dir / "metrics_per_lead_time.csv"
    write_json(json_path, _strict_json(results), allow_nan=False)
    columns: List[str] = ["forecast", "lead_time"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_write(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in row.items()})
    return {"json": json_path, "csv": csv_path}


# ---------------------------------------------------------------------------------- text tables
#: A baseline this many times better than the model in MSE (or with MSE 0) is reported as exact
#: rather than as a percentage (a constant field's climatology is exact up to float noise).
_EXACT_RATIO = 1e9


def _forecast_names(results: Dict[str, Any]) -> List[str]:
    return [n for n, v in results.items() if isinstance(v, dict) and "per_lead_time" in v]


def _relative_mse_line(model_mse: float, name: str, ref: Optional[float]) -> Optional[str]:
    if ref is None or not math.isfinite(model_mse) or not math.isfinite(ref):
        return None
    if ref == 0 or model_mse / ref > _EXACT_RATIO:
        return f"{name} is exact here (MSE {ref:.3g}; the model's is {model_mse:.4g}): no relative figure"
    gain = 100 * (1 - model_mse / ref)
    return f"model MSE is {abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'} than {name}'s"


def format_results(results: Dict[str, Any], metrics: Sequence[str] = ("mse", "mae", "rmse", "ssim", "psnr")) -> str:
    """Small text tables: one row per forecast (model, then each baseline) with ``metrics``;
    then, when thresholds were scored, one row per event score (``csi@THR``, ``pod@THR``,
    ``far@THR``, ``ets@THR``, ``fss@THR/SCALE``, overall values) with one column per forecast;
    then the model's MSE relative to each baseline, and a line for any forecast with non-finite
    values or perfect frames. Ensemble forecasts add a ``crps`` column (``-`` for the
    deterministic ones) and their ``brier@THR`` and ``roc_auc@THR`` rows."""
    names = _forecast_names(results)
    cols = [m for m in metrics if m in results["model"]]
    cols += [m for m in ("crps",) if m not in cols and any(m in results[n] for n in names)]
    lines = [f"{'forecast':<14}" + "".join(f"{m:>12}" for m in cols)]
    for n in names:
        lines.append(f"{n:<14}" + "".join(f"{_fmt(results[n].get(m)):>12}" for m in cols))
    scores = list(dict.fromkeys(k for n in names for k, v in results[n].items()
                                if "@" in k and (v is None or isinstance(v, (int, float)))))
    if scores:
        width = max(14, max(len(k) for k in scores) + 2)
        lines.append("")
        lines.append(f"{'score':<{width}}" + "".join(f"{n:>14}" for n in names))
        for k in scores:
            lines.append(f"{k:<{width}}" + "".join(f"{_fmt(results[n].get(k)):>14}" for n in names))
    for n in names[1:]:
        line = _relative_mse_line(results["model"]["mse"], n, results[n].get("mse"))
        if line:
            lines.append(line)
    for n in names:
        if results[n].get("nonfinite_values"):
            lines.append(f"{n}: {results[n]['nonfinite_values']} forecast values are NaN or infinite; its event "
                         f"scores are left undefined (nan)")
        if results[n].get("psnr_perfect_frames"):
            lines.append(f"{n}: {results[n]['psnr_perfect_frames']} frame(s) forecast exactly, left out of PSNR")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
