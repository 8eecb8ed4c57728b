r"""Forecast scores per lead time, beside persistence, climatology and extrapolation baselines.

Forecasts and targets are arrays (numpy or torch, any device) shaped
``(samples, lead_time, rows, cols, channels)``, channels last. Every score function returns a
numpy array of length ``lead_time`` (one value per lead time, the first lead time at index 0), or
one float over all lead times with ``per_lead_time=False``. Computations run in float64.

Scores and their reductions (:math:`p` forecast, :math:`y` target, :math:`N` samples,
:math:`P = \text{rows} \cdot \text{cols} \cdot \text{channels}` values per frame):

=====================  ==========================================================================
``mse``, ``mae``       mean over samples, rows, cols and channels of :math:`(p-y)^2`, :math:`|p-y|`
``rmse``               :math:`\sqrt{\text{mse}}` (the root of the mean, per lead time and overall;
                       not the mean of per-sample roots)
``mse_frame_sum``      OpenSTL's "MSE"/"MAE": the error **summed over the P values of a frame**,
``mae_frame_sum``      then averaged over samples (and lead times): ``mse_frame_sum = P * mse``
``psnr``               per frame :math:`10 \log_{10}(R^2 / \text{mse}_\text{frame})` (all channels
                       pooled, as ``skimage.metrics.peak_signal_noise_ratio``), averaged over
                       frames; ``inf`` for a perfect frame
``ssim``               per frame and channel, Wang et al.'s SSIM with an 11-tap Gaussian window
                       (:math:`\sigma = 1.5`), :math:`K_1 = 0.01`, :math:`K_2 = 0.03`, population
                       covariances, averaged over the valid (uncropped) pixels, then over channels
                       and frames: the numbers of ``skimage.metrics.structural_similarity(...,
                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                       data_range=R, channel_axis=-1)``
``csi``, ``pod``,      from hits :math:`H` (``p >= thr`` and ``y >= thr``), misses :math:`M`
``far``                (``p < thr <= y``) and false alarms :math:`F` (``y < thr <= p``) **counted
                       over all samples, pixels and channels** of a lead time (of all lead times
                       overall): :math:`H/(H+M+F)`, :math:`H/(H+M)`, :math:`F/(H+F)`; ``nan`` when
                       the denominator is 0 (no event forecast or observed). Keys ``csi@THR``...
                       The numbers of ``pysteps.verification.det_cat_fct`` (see the event
                       convention below)
``ets``                equitable threat score (Gilbert skill score) from the same counts and the
                       correct negatives :math:`R`, :math:`n = H+M+F+R`:
                       :math:`(H - H_r)/(H + M + F - H_r)`, :math:`H_r = (H+M)(H+F)/n`; ``nan``
                       when no event or only events were observed (:math:`H+M \in \{0, n\}`).
                       pysteps's ``det_cat_fct(..., scores="ETS")`` (its GSS formula, equal)
``fss``                fractions skill score (Roberts and Lean 2008) at threshold ``thr`` and
                       scale :math:`s` pixels: event fields :math:`I = [v \ge thr]`, fractions
                       :math:`S` = mean of :math:`I` over the :math:`s \times s` window (zeros
                       beyond the grid; for even :math:`s` the window spans :math:`s/2` pixels
                       before and :math:`s/2 - 1` after, as ``scipy.ndimage.uniform_filter``),
                       then :math:`1 - \sum (S_p - S_y)^2 / \sum (S_p^2 + S_y^2)`, **the sums over
                       all samples and channels** (each channel a field) of a lead time (of all
                       lead times overall); ``nan`` when no event is forecast or observed. Key
                       ``fss@THR/SCALE``. The numbers of ``pysteps.verification.fss`` accumulated
                       over the same fields (``fss_init``/``fss_accum``/``fss_compute``)
=====================  ==========================================================================

Event convention: **an event is a value at or above the threshold** (``v >= thr``) in every
score. pysteps counts ``v > thr`` in ``det_cat_fct`` (CSI, POD, FAR, ETS) but ``v >= thr`` in
``fss``; the toolkit keeps ``>=`` everywhere, so that CSI and FSS count the same events, a
threshold reads "this much or more" (5 bikes, 1 mm/h), and the scores of runs made before FSS
existed stay comparable. The two conventions differ only for values exactly equal to a
threshold, which quantised data (integer counts, stored radar steps) do have:
``csi(p, y, thr)`` equals pysteps's ``det_cat_fct(p, y, t)["CSI"]`` for any ``t`` just below
``thr`` (no value in ``[t, thr)``), and ``fss`` equals pysteps's at the same ``thr``.

Baselines (forecasts scored exactly like the model, in the data's units):

=====================================  ===========================================================
``persistence``                        :func:`persistence_forecast`: the last input frame, repeated
``climatology``                        :func:`climatology_forecast`: the mean training frame; or
                                       :class:`ClimatologyByTimeOfDay`: the mean of each cell at
                                       each hour of the day (hours never seen in training get the
                                       mean training frame, with a warning)
``extrapolation``                      :func:`extrapolation_forecast` (pysteps, optional extra
                                       ``radar``): the last input frame moved along the motion
                                       of the input frames (Lucas-Kanade by default,
                                       semi-Lagrangian advection); see
                                       :mod:`convlstm.extrapolation`
=====================================  ===========================================================

:func:`evaluate_forecast` scores a model beside the baselines; :class:`MetricAccumulator` does
the same batch by batch, so a large test set never has to be in memory at once;
:func:`write_metrics` writes ``metrics.json`` and ``metrics_per_lead_time.csv``.

Example::

    >>> pred = np.random.rand(8, 4, 32, 32, 1); true = np.random.rand(8, 4, 32, 32, 1)
    >>> inputs = np.random.rand(8, 6, 32, 32, 1)
    >>> mse(pred, true).shape
    (4,)
    >>> results = evaluate_forecast(pred, true, inputs, climatology=true.mean(axis=(0, 1)),
    ...                             thresholds=(0.5,), data_range=1.0)
    >>> sorted(results)
    ['climatology', 'model', 'persistence', 'skill_vs_persistence']
    >>> write_metrics(results, "runs/demo")   # metrics.json, metrics_per_lead_time.csv
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._io import atomic_write, write_json
from ._ops import box_sum
from .extrapolation import extrapolation_forecast

__all__ = [
    "mse", "mae", "rmse", "mse_frame_sum", "mae_frame_sum", "psnr", "ssim", "csi", "pod", "far", "ets", "fss",
    "persistence_forecast", "climatology_forecast", "ClimatologyByTimeOfDay", "extrapolation_forecast",
    "MetricAccumulator", "evaluate_forecast", "per_lead_time_rows", "write_metrics", "METRIC_NAMES",
    "SKILL_METRICS", "BASELINES",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The scores every forecast gets, in the order of the CSV columns.
METRIC_NAMES = ("mse", "mae", "rmse", "mse_frame_sum", "mae_frame_sum", "ssim", "psnr")
#: The scores of ``results["skill_vs_persistence"]``.
SKILL_METRICS = ("mse", "mae", "rmse")
#: The baselines a model can be scored beside (``results[name]``), in the order of the results.
BASELINES = ("persistence", "climatology", "extrapolation")
_CONTINGENCY = ("csi", "pod", "far", "ets")

# SSIM constants (Wang et al. 2004, as scikit-image with gaussian_weights=True)
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_SSIM_RADIUS = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)  # 5 -> an 11-tap window
_SSIM_WIN = 2 * _SSIM_RADIUS + 1


# ---------------------------------------------------------------------------------- checks
def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a float64 tensor (numpy and lists go to the CPU; tensors stay on their device)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, (np.ndarray, list, tuple, np.generic)):
        try:
            with warnings.catch_warnings():  # read-only views (e.g. broadcast baselines) are only read
                warnings.simplefilter("ignore", UserWarning)
                t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a numeric numpy array or torch tensor, got {type(x).__name__}: {err}")
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.bool, torch.uint8, torch.int8,
                                                                   torch.int16, torch.int32, torch.int64)):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.device.type == "mps":  # no float64 there
        t = t.cpu()
    return t.to(torch.float64)


def _pair(pred: Any, true: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    p, y = _as_tensor(pred, "pred"), _as_tensor(true, "true")
    if p.dim() != 5:
        raise ValueError(f"pred must be 5D (samples, lead_time, rows, cols, channels), got shape {tuple(p.shape)}")
    if tuple(p.shape) != tuple(y.shape):
        raise ValueError(f"pred and true must have the same shape (samples, lead_time, rows, cols, channels), "
                         f"got pred {tuple(p.shape)} and true {tuple(y.shape)}")
    if p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"pred must hold at least one sample and one lead time, got shape {tuple(p.shape)}")
    if y.device != p.device:
        y = y.to(p.device)
    return p, y


def _check_data_range(data_range: Any) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float, np.integer, np.floating)):
        raise TypeError(f"data_range must be a positive number (max - min of the data, e.g. 1.0 for data "
                        f"in [0, 1]), got {data_range!r}")
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    value = float(threshold)
    if math.isnan(value):
        raise ValueError("threshold must not be NaN")
    return value


def _finish(per_lead: np.ndarray, overall: float, per_lead_time: bool):
    if not isinstance(per_lead_time, bool):
        raise TypeError(f"per_lead_time must be True or False, got {per_lead_time!r}")
    return per_lead if per_lead_time else float(overall)


# ---------------------------------------------------------------------------------- sums
def _frame_sq_abs(p: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-frame sums of squared and absolute errors, each ``(samples, lead_time)``."""
    d = p - y
    return (d * d).sum(dim=(2, 3, 4)), d.abs().sum(dim=(2, 3, 4))


def _gaussian_window(device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 11 normalised taps of SSIM's Gaussian window, computed in float64 and returned in ``dtype``."""
    x = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    w = torch.exp(-0.5 * (x / _SSIM_SIGMA) ** 2)
    return (w / w.sum()).to(dtype)


def _frame_ssim(p: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Per-frame SSIM (mean over channels) ``(samples, lead_time)``, in ``p``'s dtype (the score
    functions pass float64; :class:`convlstm.losses.MSESSIMLoss` float32, differentiably)."""
    n, t, rows, cols, ch = p.shape
    if rows < _SSIM_WIN or cols < _SSIM_WIN:
        raise ValueError(f"ssim needs frames of at least {_SSIM_WIN}x{_SSIM_WIN} pixels (the Gaussian window), "
                         f"got {rows}x{cols}")
    w = _gaussian_window(p.device, p.dtype)
    wr, wc = w.view(1, 1, -1, 1), w.view(1, 1, 1, -1)

    def filt(z: torch.Tensor) -> torch.Tensor:  # separable 'valid' Gaussian filter
        return F.conv2d(F.conv2d(z, wr), wc)

    a = p.permute(0, 1, 4, 2, 3).reshape(n * t * ch, 1, rows, cols)
    b = y.permute(0, 1, 4, 2, 3).reshape(n * t * ch, 1, rows, cols)
    out = []
    chunk = max(1, int(2 ** 21 // (rows * cols)))  # bound the memory of the five filtered maps (~100 MB)
    c1, c2 = (_SSIM_K1 * data_range) ** 2, (_SSIM_K2 * data_range) ** 2
    for start in range(0, a.shape[0], chunk):
        x_, y_ = a[start:start + chunk], b[start:start + chunk]
        stacked = filt(torch.cat([x_, y_, x_ * x_, y_ * y_, x_ * y_], dim=0))
        ux, uy, uxx, uyy, uxy = stacked.chunk(5, dim=0)
        vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out.append(s.mean(dim=(1, 2, 3)))
    return torch.cat(out).view(n, t, ch).mean(dim=2)


def _frame_psnr(sq_sum: torch.Tensor, values_per_frame: int, data_range: float) -> torch.Tensor:
    frame_mse = sq_sum / values_per_frame
    return 10.0 * torch.log10(data_range ** 2 / frame_mse)  # inf where the frame is perfect


def _contingency(p: torch.Tensor, y: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(lead_time, 4)`` counts of hits, misses, false alarms and correct negatives (events are
    values ``>= threshold``)."""
    pe, ye = p >= threshold, y >= threshold
    hits = (pe & ye).sum(dim=(0, 2, 3, 4))
    misses = (~pe & ye).sum(dim=(0, 2, 3, 4))
    false_alarms = (pe & ~ye).sum(dim=(0, 2, 3, 4))
    negatives = (~pe & ~ye).sum(dim=(0, 2, 3, 4))
    return torch.stack([hits, misses, false_alarms, negatives], dim=1).to(torch.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _scores_from_counts(counts: np.ndarray) -> Dict[str, np.ndarray]:
    h, m, f, r = counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3]
    n = h + m + f + r
    hits_random = _ratio((h + m) * (h + f), n)
    ets = _ratio(h - hits_random, h + m + f - hits_random)
    ets = np.where((h + m > 0) & (h + m < n), ets, np.nan)  # a base rate of 0 or 1: undefined (pysteps: nan)
    return {"csi": _ratio(h, h + m + f), "pod": _ratio(h, h + m), "far": _ratio(f, h + f), "ets": ets}


def _fractions(events: torch.Tensor, scale: int) -> torch.Tensor:
    """Mean of ``events`` ``(..., H, W)`` over the ``scale x scale`` window at each pixel, zeros
    beyond the grid; the window spans ``scale // 2`` pixels before and ``(scale - 1) // 2`` after
    (scipy's ``uniform_filter(mode="constant")``), from :func:`convlstm._ops.box_sum` (exact for
    0/1 values)."""
    if scale == 1:
        return events
    return box_sum(events, scale // 2, (scale - 1) // 2) / float(scale * scale)


def _fss_sums(p: torch.Tensor, y: torch.Tensor, threshold: float, scale: int) -> torch.Tensor:
    """``(lead_time, 3)`` sums of :math:`S_p^2`, :math:`S_p S_y` and :math:`S_y^2` over samples,
    channels and pixels (pysteps's ``sum_fct_sq``, ``sum_fct_obs``, ``sum_obs_sq``)."""
    n, t, rows, cols, ch = p.shape

    def fields(z: torch.Tensor) -> torch.Tensor:  # (N, lead, C, H, W) 0/1 events
        return (z >= threshold).to(torch.float64).permute(0, 1, 4, 2, 3)

    sp, sy = _fractions(fields(p), scale), _fractions(fields(y), scale)
    dims = (0, 2, 3, 4)
    return torch.stack([(sp * sp).sum(dims), (sp * sy).sum(dims), (sy * sy).sum(dims)], dim=1)


def _fss_from_sums(sums: np.ndarray) -> np.ndarray:
    ff, fo, oo = sums[..., 0], sums[..., 1], sums[..., 2]
    return 1.0 - _ratio(ff - 2.0 * fo + oo, ff + oo)


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"an FSS scale must be a window width in pixels, an int >= 1; got {scale!r}")
    return int(scale)


# ---------------------------------------------------------------------------------- score functions
def mse(pred: ArrayLike, true: ArrayLike, *, per_lead_time: bool = True):
    r"""Mean squared error :math:`\frac{1}{N P}\sum (p - y)^2` per lead time.

    Args:
        pred, true: ``(samples, lead_time, rows, cols, channels)``, numpy or torch.
        per_lead_time: return a ``(lead_time,)`` numpy array (default) or one float over all.

    Example::

        >>> mse(np.ones((2, 3, 4, 4, 1)), np.zeros((2, 3, 4, 4, 1)))
        array([1., 1., 1.])
    """
    p, y = _pair(pred, true)
    sq, _ = _frame_sq_abs(p, y)
    per = (sq.sum(0) / (p.shape[0] * p[0, 0].numel())).cpu().numpy()
    return _finish(per, per.mean(), per_lead_time)


def mae(pred: ArrayLike, true: ArrayLike, *, per_lead_time: bool = True):
    r"""Mean absolute error :math:`\frac{1}{N P}\sum |p - y|` per lead time (see :func:`mse`)."""
    p, y = _pair(pred, true)
    _, ab = _frame_sq_abs(p, y)
    per = (ab.sum(0) / (p.shape[0] * p[0, 0].numel())).cpu().numpy()
    return _finish(per, per.mean(), per_lead_time)


def rmse(pred: ArrayLike, true: ArrayLike, *, per_lead_time: bool = True):
    r"""Root mean squared error :math:`\sqrt{\text{mse}}`, per lead time; overall it is the root of
    the overall MSE (see :func:`mse`)."""
    per = mse(pred, true)
    return _finish(np.sqrt(per), math.sqrt(per.mean()), per_lead_time)


def mse_frame_sum(pred: ArrayLike, true: ArrayLike, *, per_lead_time: bool = True):
    r"""OpenSTL's "MSE": squared error summed over the rows x cols x channels values of a frame,
    averaged over samples (and, overall, over lead times): :math:`\frac{1}{N}\sum_n \sum_{pixels}
    (p - y)^2`, equal to ``P * mse`` with :math:`P` the values per frame. Moving MNIST papers
    report this number (e.g. ~100 for 64x64 frames in [0, 1])."""
    p, y = _pair(pred, true)
    sq, _ = _frame_sq_abs(p, y)
    per = sq.mean(0).cpu().numpy()
    return _finish(per, per.mean(), per_lead_time)


def mae_frame_sum(pred: ArrayLike, true: ArrayLike, *, per_lead_time: bool = True):
    r"""OpenSTL's "MAE": absolute error summed over a frame's values, averaged over samples (and
    lead times); ``P * mae`` (see :func:`mse_frame_sum`)."""
    p, y = _pair(pred, true)
    _, ab = _frame_sq_abs(p, y)
    per = ab.mean(0).cpu().numpy()
    return _finish(per, per.mean(), per_lead_time)


def psnr(pred: ArrayLike, true: ArrayLike, data_range: float, *, per_lead_time: bool = True):
    r"""Peak signal-to-noise ratio in dB, per frame :math:`10\log_{10}(R^2/\text{mse}_\text{frame})`
    with :math:`R` = ``data_range`` and the frame's MSE over all its pixels and channels, averaged
    over samples (and lead times). A perfect frame scores ``inf``, and so does any mean holding one.

    Args:
        pred, true: ``(samples, lead_time, rows, cols, channels)``.
        data_range: :math:`R`, the data's max - min (1.0 for data in [0, 1], 255 for bytes).

    Example::

        >>> psnr(np.full((1, 1, 4, 4, 1), 0.1), np.zeros((1, 1, 4, 4, 1)), 1.0)
        array([20.])
    """
    r = _check_data_range(data_range)
    p, y = _pair(pred, true)
    sq, _ = _frame_sq_abs(p, y)
    per_frame = _frame_psnr(sq, p[0, 0].numel(), r)
    per = per_frame.mean(0).cpu().numpy()
    return _finish(per, per_frame.mean().item(), per_lead_time)


def ssim(pred: ArrayLike, true: ArrayLike, data_range: float, *, per_lead_time: bool = True):
    r"""Structural similarity per lead time, as scikit-image computes it with Gaussian weights.

    For each frame and channel, with :math:`\mu, \sigma^2, \sigma_{py}` local means, variances and
    covariance under an 11-tap Gaussian window (:math:`\sigma = 1.5`, separable, population
    statistics), :math:`C_1 = (0.01 R)^2`, :math:`C_2 = (0.03 R)^2`:

    .. math::
        \text{SSIM} = \operatorname{mean}_{\text{valid pixels}}
        \frac{(2\mu_p\mu_y + C_1)(2\sigma_{py} + C_2)}{(\mu_p^2 + \mu_y^2 + C_1)(\sigma_p^2 + \sigma_y^2 + C_2)}

    The mean runs over the pixels at least 5 away from the border (scikit-image's crop), then over
    channels, then over samples (and lead times).

    Args:
        pred, true: ``(samples, lead_time, rows, cols, channels)``; frames at least 11x11.
        data_range: :math:`R`, the data's max - min.

    Returns:
        ``(lead_time,)`` numpy array, or a float with ``per_lead_time=False``.
    """
    r = _check_data_range(data_range)
    p, y = _pair(pred, true)
    per_frame = _frame_ssim(p, y, r)
    return _finish(per_frame.mean(0).cpu().numpy(), per_frame.mean().item(), per_lead_time)


def _contingency_score(name: str, pred, true, threshold, per_lead_time: bool):
    thr = _check_threshold(threshold)
    p, y = _pair(pred, true)
    counts = _contingency(p, y, thr).cpu().numpy()
    per = _scores_from_counts(counts)[name]
    overall = _scores_from_counts(counts.sum(0))[name]
    return _finish(per, float(overall), per_lead_time)


def csi(pred: ArrayLike, true: ArrayLike, threshold: float, *, per_lead_time: bool = True):
    r"""Critical success index (threat score) :math:`H / (H + M + F)` at ``threshold``.

    An event is a value ``>= threshold``; hits :math:`H`, misses :math:`M` and false alarms
    :math:`F` are counted over all samples, pixels and channels of a lead time (overall: of all lead
    times) before dividing. ``nan`` where :math:`H + M + F = 0`.

    Example::

        >>> p = np.array([1., 1., 0., 0.]).reshape(1, 1, 2, 2, 1)
        >>> y = np.array([1., 0., 1., 0.]).reshape(1, 1, 2, 2, 1)
        >>> csi(p, y, 0.5), pod(p, y, 0.5), far(p, y, 0.5)
        (array([0.33333333]), array([0.5]), array([0.5]))
    """
    return _contingency_score("csi", pred, true, threshold, per_lead_time)


def pod(pred: ArrayLike, true: ArrayLike, threshold: float, *, per_lead_time: bool = True):
    r"""Probability of detection :math:`H / (H + M)` at ``threshold`` (see :func:`csi`); ``nan``
    where no event was observed."""
    return _contingency_score("pod", pred, true, threshold, per_lead_time)


def far(pred: ArrayLike, true: ArrayLike, threshold: float, *, per_lead_time: bool = True):
    r"""False alarm ratio :math:`F / (H + F)` at ``threshold`` (see :func:`csi`); ``nan`` where no
    event was forecast."""
    return _contingency_score("far", pred, true, threshold, per_lead_time)


def ets(pred: ArrayLike, true: ArrayLike, threshold: float, *, per_lead_time: bool = True):
    r"""Equitable threat score (Gilbert skill score) at ``threshold``:

    .. math::
        \text{ETS} = \frac{H - H_r}{H + M + F - H_r}, \qquad H_r = \frac{(H + M)(H + F)}{n}

    with :math:`n` all values counted and :math:`H_r` the hits a random forecast with the same
    event frequency would score (counts as in :func:`csi`). 1 is perfect, 0 no better than
    chance, the minimum -1/3. ``nan`` where no event or nothing but events was observed. Equal to
    pysteps's ``det_cat_fct(..., scores="ETS")`` (up to the event convention, see the module).

    Example::

        >>> p = np.array([1., 1., 0., 0.]).reshape(1, 1, 2, 2, 1)
        >>> y = np.array([1., 0., 1., 0.]).reshape(1, 1, 2, 2, 1)
        >>> ets(p, y, 0.5)          # H=1, M=1, F=1, R=1: H_r = 1
        array([0.])
    """
    return _contingency_score("ets", pred, true, threshold, per_lead_time)


def fss(pred: ArrayLike, true: ArrayLike, threshold: float, scale: int, *, per_lead_time: bool = True):
    r"""Fractions skill score (Roberts and Lean, 2008) at ``threshold`` and spatial ``scale``.

    Events are values ``>= threshold``; :math:`S` is the fraction of event pixels in the
    ``scale x scale`` window around each pixel (zeros beyond the grid); then

    .. math::
        \text{FSS} = 1 - \frac{\sum (S_p - S_y)^2}{\sum S_p^2 + \sum S_y^2}

    with the sums over all pixels of all samples and channels of a lead time (of all lead times
    with ``per_lead_time=False``), as pysteps accumulates fields with ``fss_accum``. 1 is a
    perfect match at that scale, 0 no overlap; ``nan`` where no event was forecast or observed.

    Args:
        pred, true: ``(samples, lead_time, rows, cols, channels)``.
        threshold: the event threshold, in the data's units.
        scale: the window's width in pixels (1: pixel by pixel).

    Example::

        >>> y = np.zeros((1, 1, 4, 4, 1)); y[0, 0, 1, 1] = 1
        >>> p = np.zeros((1, 1, 4, 4, 1)); p[0, 0, 1, 2] = 1     # one pixel off
        >>> fss(p, y, 0.5, 1), fss(p, y, 0.5, 3)
        (array([0.]), array([0.66666667]))
    """
    thr, sc = _check_threshold(threshold), _check_scale(scale)
    p, y = _pair(pred, true)
    sums = _fss_sums(p, y, thr, sc).cpu().numpy()
    return _finish(_fss_from_sums(sums), float(_fss_from_sums(sums.sum(0))), per_lead_time)


# ---------------------------------------------------------------------------------- baselines
def _check_lead_time(lead_time: Any) -> int:
    if isinstance(lead_time, bool) or not isinstance(lead_time, (int, np.integer)):
        raise TypeError(f"lead_time must be a positive int, got {lead_time!r}")
    if lead_time < 1:
        raise ValueError(f"lead_time must be >= 1, got {lead_time}")
    return int(lead_time)


def persistence_forecast(inputs: ArrayLike, lead_time: int) -> ArrayLike:
    r"""The persistence baseline: the last input frame, repeated ``lead_time`` times.

    Shape:
        - inputs: :math:`(N, T_{in}, H, W, C)`, numpy or torch
        - output: :math:`(N, \text{lead\_time}, H, W, C)`, of the input's type (a broadcast view
          for numpy, an expanded tensor for torch: copy it before writing into it)

    Example::

        >>> persistence_forecast(np.arange(4.0).reshape(1, 4, 1, 1, 1), 2).ravel()
        array([3., 3.])
    """
    lead_time = _check_lead_time(lead_time)
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 5:
            raise ValueError(f"inputs must be 5D (samples, time, rows, cols, channels), got shape {tuple(inputs.shape)}")
        last = inputs[:, -1:]
        return last.expand(last.shape[0], lead_time, *last.shape[2:])
    if not isinstance(inputs, np.ndarray):
        raise TypeError(f"inputs must be a numpy array or a torch tensor, got {type(inputs).__name__}")
    if inputs.ndim != 5:
        raise ValueError(f"inputs must be 5D (samples, time, rows, cols, channels), got shape {inputs.shape}")
    last = inputs[:, -1:]
    return np.broadcast_to(last, (last.shape[0], lead_time) + last.shape[2:])


def climatology_forecast(train_mean: ArrayLike, num_samples: int, lead_time: int) -> ArrayLike:
    r"""The climatology baseline: one mean frame (usually ``train.mean(axis=0)`` over the training
    frames, per cell and channel) forecast for every sample and lead time.

    Shape:
        - train_mean: :math:`(H, W, C)`
        - output: :math:`(\text{num\_samples}, \text{lead\_time}, H, W, C)`, a read-only broadcast
          view (numpy) or an expanded tensor (torch)
    """
    lead_time = _check_lead_time(lead_time)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if isinstance(train_mean, torch.Tensor):
        if train_mean.dim() != 3:
            raise ValueError(f"train_mean must be a (rows, cols, channels) frame, got shape {tuple(train_mean.shape)}")
        return train_mean.expand(int(num_samples), lead_time, *train_mean.shape)
    if not isinstance(train_mean, np.ndarray):
        raise TypeError(f"train_mean must be a numpy array or a torch tensor, got {type(train_mean).__name__}")
    if train_mean.ndim != 3:
        raise ValueError(f"train_mean must be a (rows, cols, channels) frame, got shape {train_mean.shape}")
    return np.broadcast_to(train_mean, (int(num_samples), lead_time) + train_mean.shape)


class ClimatologyByTimeOfDay:
    r"""Per-cell, per-channel mean at each time of day (or any cyclic index): the baseline for
    fields with a daily cycle (traffic, crowd flow, temperature).

    :meth:`fit` averages the training frames that fall on each of the ``period`` slots (hour 0..23
    by default). A slot with no training frame has no mean of its own: it gets the mean of all
    training frames (the plain climatology), :attr:`unseen` lists such slots, and
    :meth:`forecast` warns when it is asked for one of them, so the baseline never passes off the
    overall mean as an hour's.

    Args:
        period (int): number of slots in a cycle (24 for hours of the day, 48 for half hours,
            168 for hours of the week).

    Shape:
        - fit: frames :math:`(T, H, W, C)`, slots :math:`(T,)` integers in ``[0, period)``
        - forecast: target slots :math:`(N, \text{lead})` -> :math:`(N, \text{lead}, H, W, C)`

    Example::

        >>> clim = ClimatologyByTimeOfDay().fit(train_frames, train_hours)
        >>> baseline = clim.forecast(target_hours)          # target_hours: (samples, lead_time)
        >>> results = evaluate_forecast(pred, true, inputs, climatology=baseline)
    """

    def __init__(self, period: int = 24):
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
            raise ValueError(f"period must be a positive int (24 for hours of the day), got {period!r}")
        self.period = int(period)
        self.means: Optional[np.ndarray] = None
        self.counts: Optional[np.ndarray] = None

    @property
    def unseen(self) -> List[int]:
        """The slots with no training frame (their forecast is the mean training frame)."""
        if self.counts is None:
            raise RuntimeError("ClimatologyByTimeOfDay.unseen: call fit(frames, hours) first")
        return [int(h) for h in np.flatnonzero(self.counts == 0)]

    def _slots(self, hours: Any, name: str) -> np.ndarray:
        h = hours.detach().cpu().numpy() if isinstance(hours, torch.Tensor) else np.asarray(hours)
        if h.dtype.kind not in "iu":
            if h.dtype.kind == "f" and np.all(np.isfinite(h)) and np.all(h == np.round(h)):
                h = h.astype(np.int64)
            else:
                raise TypeError(f"{name} must hold integer slots in [0, {self.period}), got dtype {h.dtype}")
        if h.size and (h.min() < 0 or h.max() >= self.period):
            raise ValueError(f"{name} must be in [0, {self.period}) (period={self.period}), "
                             f"got values from {h.min()} to {h.max()}")
        return h.astype(np.int64)

    def fit(self, frames: ArrayLike, hours: Any) -> "ClimatologyByTimeOfDay":
        """Average ``frames`` :math:`(T, H, W, C)` per slot ``hours`` :math:`(T,)`; returns self."""
        x = _as_tensor(frames, "frames").cpu().numpy()
        if x.ndim != 4:
            raise ValueError(f"frames must be 4D (time, rows, cols, channels), got shape {x.shape}")
        h = self._slots(hours, "hours")
        if h.shape != (x.shape[0],):
            raise ValueError(f"hours must have shape ({x.shape[0]},) (one slot per frame), got {h.shape}")
        sums = np.zeros((self.period,) + x.shape[1:])
        np.add.at(sums, h, x)
        counts = np.bincount(h, minlength=self.period)
        overall = x.mean(axis=0)
        means = np.where(counts.reshape(-1, 1, 1, 1) > 0,
                         sums / np.maximum(counts, 1).reshape(-1, 1, 1, 1), overall)
        self.means, self.counts = means, counts
        return self

    def forecast(self, target_hours: Any) -> np.ndarray:
        """The mean frames for the slots ``target_hours`` :math:`(N, \\text{lead})` (or any shape
        :math:`S`), shaped :math:`S + (H, W, C)`."""
        if self.means is None:
            raise RuntimeError("ClimatologyByTimeOfDay.forecast: call fit(frames, hours) first")
        slots = self._slots(target_hours, "target_hours")
        missing = sorted(set(np.unique(slots).tolist()) & set(self.unseen))
        if missing:
            warnings.warn(f"ClimatologyByTimeOfDay: slot(s) {missing} had no training frame; their forecast is the "
                          f"mean of all training frames", UserWarning, stacklevel=2)
        return self.means[slots]

    def __repr__(self) -> str:
        fitted = "unfitted" if self.means is None else f"frame={self.means.shape[1:]}"
        return f"ClimatologyByTimeOfDay(period={self.period}, {fitted})"


# ---------------------------------------------------------------------------------- accumulation
class _Totals:
    """Running sums for one forecast: per lead time squared/absolute errors, SSIM, PSNR,
    contingency counts per threshold and FSS sums per threshold and scale."""

    def __init__(self, lead_time: int, thresholds: Tuple[float, ...], scales: Tuple[int, ...] = ()):
        self.sq = np.zeros(lead_time)
        self.ab = np.zeros(lead_time)
        self.ssim = np.zeros(lead_time)
        self.psnr = np.zeros(lead_time)
        self.counts = {thr: np.zeros((lead_time, 4)) for thr in thresholds}
        self.fss = {(thr, sc): np.zeros((lead_time, 3)) for thr in thresholds for sc in scales}

    def add(self, p: torch.Tensor, y: torch.Tensor, data_range: float) -> None:
        sq, ab = _frame_sq_abs(p, y)
        self.sq += sq.sum(0).cpu().numpy()
        self.ab += ab.sum(0).cpu().numpy()
        self.psnr += _frame_psnr(sq, p[0, 0].numel(), data_range).sum(0).cpu().numpy()
        self.ssim += _frame_ssim(p, y, data_range).sum(0).cpu().numpy()
        for thr in self.counts:
            self.counts[thr] += _contingency(p, y, thr).cpu().numpy()
        for thr, sc in self.fss:
            self.fss[(thr, sc)] += _fss_sums(p, y, thr, sc).cpu().numpy()

    def result(self, samples: int, values_per_frame: int) -> Dict[str, Any]:
        per: Dict[str, np.ndarray] = {}
        per["mse"] = self.sq / (samples * values_per_frame)
        per["mae"] = self.ab / (samples * values_per_frame)
        per["rmse"] = np.sqrt(per["mse"])
        per["mse_frame_sum"] = self.sq / samples
        per["mae_frame_sum"] = self.ab / samples
        per["ssim"] = self.ssim / samples
        per["psnr"] = self.psnr / samples
        overall = {name: float(per[name].mean()) for name in METRIC_NAMES}
        overall["rmse"] = math.sqrt(overall["mse"])
        for thr, counts in self.counts.items():
            scores, scores_all = _scores_from_counts(counts), _scores_from_counts(counts.sum(0))
            for name in _CONTINGENCY:
                key = f"{name}@{_format_threshold(thr)}"
                per[key] = scores[name]
                overall[key] = float(scores_all[name])
        for (thr, sc), sums in self.fss.items():
            key = f"fss@{_format_threshold(thr)}/{sc}"
            per[key] = _fss_from_sums(sums)
            overall[key] = float(_fss_from_sums(sums.sum(0)))
        out: Dict[str, Any] = dict(overall)
        out["per_lead_time"] = {k: [float(v) for v in arr] for k, arr in per.items()}
        return out


def _format_threshold(thr: float) -> str:
    return f"{thr:g}"


def _distinct(values: Any, scalar_types: tuple, check: Any, name: str, what: str) -> tuple:
    """``values`` (one value or a sequence) checked one by one, as a tuple without repeats."""
    if isinstance(values, scalar_types) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be {what}, got {values!r}") from None
    return tuple(dict.fromkeys(check(v) for v in values))


class MetricAccumulator:
    r"""Score forecasts batch by batch, beside the persistence, climatology and (optionally)
    extrapolation baselines, without holding the test set in memory; :meth:`compute` returns what
    :func:`evaluate_forecast` returns.

    Each :meth:`update` adds a batch of samples; sums of errors, of per-frame SSIM and PSNR, of
    contingency counts and of FSS fractions are kept per lead time, so the result does not depend
    on how the samples are split into batches.

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
                 scales: Iterable[int] = (), extrapolation: Optional[str] = None, gap: int = 0):
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
        if extrapolation is not None:
            from .extrapolation import _check_method, require_pysteps

            extrapolation = _check_method(extrapolation)
            require_pysteps()
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
            raise ValueError(f"gap must be an int >= 0, got {gap!r}")
        self.extrapolation, self.gap = extrapolation, int(gap)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._totals: Dict[str, _Totals] = {}
        self._samples: Dict[str, int] = {}
        self._shape: Optional[Tuple[int, ...]] = None

    def _add(self, name: str, p: torch.Tensor, y: torch.Tensor) -> None:
        if name not in self._totals:
            self._totals[name] = _Totals(p.shape[1], self.thresholds, self.scales)
            self._samples[name] = 0
        self._totals[name].add(p, y, self.data_range)
        self._samples[name] += p.shape[0]

    def update(self, pred: ArrayLike, true: ArrayLike, inputs: Optional[ArrayLike] = None, *,
               climatology: Optional[ArrayLike] = None, extrapolation: Optional[ArrayLike] = None) -> None:
        """Add a batch. ``inputs`` gives the persistence baseline (and the extrapolation baseline
        when the accumulator was built with ``extrapolation=METHOD``); ``climatology`` (a frame or
        a full forecast for this batch) overrides the constructor's climatology for this batch;
        ``extrapolation`` is a ready extrapolation forecast for this batch (e.g.
        :func:`extrapolation_forecast`'s, kept for a picture)."""
        p, y = _pair(pred, true)
        if self._shape is None:
            self._shape = tuple(p.shape[1:])
        elif tuple(p.shape[1:]) != self._shape:
            raise ValueError(f"pred has shape {tuple(p.shape)}, earlier batches had (samples,) + {self._shape}; "
                             "every batch must have the same lead time, rows, cols and channels")
        self._add("model", p, y)
        if inputs is not None:
            x = _as_tensor(inputs, "inputs").to(p.device)
            if x.dim() != 5 or x.shape[0] != p.shape[0] or tuple(x.shape[2:]) != tuple(p.shape[2:]):
                raise ValueError(f"inputs must be (samples, time, rows, cols, channels) matching pred "
                                 f"{tuple(p.shape)} in samples, rows, cols and channels, got {tuple(x.shape)}")
            self._add("persistence", persistence_forecast(x, p.shape[1]), y)
        if extrapolation is None and self.extrapolation is not None:
            if inputs is None:
                raise ValueError(f"MetricAccumulator(extrapolation={self.extrapolation!r}) extrapolates the inputs; "
                                 f"give update(pred, true, inputs)")
            extrapolation = extrapolation_forecast(inputs, p.shape[1], method=self.extrapolation, gap=self.gap)
        if extrapolation is not None:
            e = _as_tensor(extrapolation, "extrapolation").to(p.device)
            if tuple(e.shape) != tuple(p.shape):
                raise ValueError(f"extrapolation must be a forecast shaped like pred {tuple(p.shape)}, "
                                 f"got {tuple(e.shape)}")
            self._add("extrapolation", e, y)
        clim = self.climatology if climatology is None else _as_tensor(climatology, "climatology")
        if clim is not None:
            clim = clim.to(p.device)
            if clim.dim() == 3:
                if tuple(clim.shape) != tuple(p.shape[2:]):
                    raise ValueError(f"climatology frame must have shape (rows, cols, channels) = "
                                     f"{tuple(p.shape[2:])}, got {tuple(clim.shape)}")
                clim = clim.expand_as(p)
            elif tuple(clim.shape) != tuple(p.shape):
                raise ValueError(f"climatology must be a (rows, cols, channels) frame {tuple(p.shape[2:])} or a "
                                 f"forecast shaped like pred {tuple(p.shape)}, got {tuple(clim.shape)}")
            self._add("climatology", clim, y)

    def compute(self) -> Dict[str, Any]:
        """The results so far: ``{"model": {...}, "persistence": {...}, "climatology": {...},
        "extrapolation": {...}, "skill_vs_persistence": {...}, "skill_vs_extrapolation": {...}}``
        (the baselines only when they were given); see :func:`evaluate_forecast`."""
        if "model" not in self._totals:
            raise RuntimeError("MetricAccumulator.compute: no batch was added; call update(pred, true, inputs) first")
        values_per_frame = int(np.prod(self._shape[1:]))
        results: Dict[str, Any] = {}
        for name in ("model",) + BASELINES:
            if name in self._totals:
                results[name] = self._totals[name].result(self._samples[name], values_per_frame)
        for name in ("persistence", "extrapolation"):
            if name in results:
                results[f"skill_vs_{name}"] = {
                    m: _skill(results["model"][m], results[name][m]) for m in SKILL_METRICS}
        return results


def _skill(model: float, reference: float) -> float:
    """``1 - model / reference``; ``nan`` when the reference is 0 (a perfect baseline)."""
    if reference == 0 or not math.isfinite(reference):
        return float("nan")
    return float(1.0 - model / reference)


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
        A dict of plain Python floats (``nan`` for undefined CSI/POD/FAR/ETS/FSS or skill, ``inf``
        for the PSNR of a perfect forecast)::

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
    from 1), in the order model, persistence, climatology, extrapolation."""
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
