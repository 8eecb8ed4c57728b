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
``rmse_active``        RMSE over the cells of an ``active`` mask only: DeepST's and ST-ResNet's
                       BikeNYC convention (all-cell RMSE times :math:`\sqrt{128/81}`, equal when
                       the inactive cells are forecast as 0); :func:`deepst_rmse` converts
``mse_frame_sum``      OpenSTL's "MSE"/"MAE": the error **summed over the P values of a frame**,
``mae_frame_sum``      then averaged over samples (and lead times): ``mse_frame_sum = P * mse``
``psnr``               per frame :math:`10 \log_{10}(R^2 / \text{mse}_\text{frame})` (all channels
                       pooled, as ``skimage.metrics.peak_signal_noise_ratio``), averaged over
                       frames; ``inf`` for a perfect frame (the scoring engine,
                       :mod:`convlstm.scoring`, leaves perfect frames out and counts them)
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

Baselines (persistence, climatology, extrapolation and any registered one) are forecasters in
:mod:`convlstm.baselines`; the scoring engine that scores the model and every baseline batch by
batch, at any frame size, is :mod:`convlstm.scoring` (:class:`~convlstm.scoring.MetricAccumulator`,
:func:`~convlstm.scoring.evaluate_forecast`, :func:`~convlstm.scoring.write_metrics`, also
importable from here).

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

import math
import warnings
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._ops import box_sum
from .baselines import BUILTIN_BASELINES as BASELINES
from .baselines import ClimatologyByTimeOfDay, climatology_forecast, persistence_forecast
from .extrapolation import extrapolation_forecast

__all__ = [
    "mse", "mae", "rmse", "rmse_active", "deepst_rmse", "mse_frame_sum", "mae_frame_sum", "psnr", "ssim", "csi", "pod", "far", "ets", "fss",
    "persistence_forecast", "climatology_forecast", "ClimatologyByTimeOfDay", "extrapolation_forecast",
    "MetricAccumulator", "evaluate_forecast", "per_lead_time_rows", "write_metrics", "METRIC_NAMES",
    "SKILL_METRICS", "BASELINES",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

#: The scores every forecast gets, in the order of the CSV columns.
METRIC_NAMES = ("mse", "mae", "rmse", "mse_frame_sum", "mae_frame_sum", "ssim", "psnr")
#: The scores of ``results["skill_vs_persistence"]``.
SKILL_METRICS = ("mse", "mae", "rmse")
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


def rmse_active(pred: ArrayLike, true: ArrayLike, active: ArrayLike, *, per_lead_time: bool = True):
    r"""RMSE over the **active** cells only: :math:`\sqrt{\frac{1}{N A C}\sum_{\text{active}} (p - y)^2}`
    with :math:`A` the number of active cells (rows x cols positions) and :math:`C` channels.

    This is the crowd-flow convention of DeepST and ST-ResNet (Zhang et al. 2016, 2017) on
    BikeNYC, where only 81 of the 16 x 8 = 128 cells hold a bike station: they report the all-cell
    RMSE times :math:`\sqrt{128 / 81}`. The two agree exactly when the inactive cells are forecast
    (and observed) as 0, since then all the error sits in the active cells:
    :math:`\text{rmse\_active} = \text{rmse} \cdot \sqrt{H W / A}` (see :func:`deepst_rmse`).

    Args:
        pred, true: ``(samples, lead_time, rows, cols, channels)``.
        active: ``(rows, cols)`` booleans, the cells that count (e.g. the cells that ever carry flow:
            ``(series != 0).any(axis=(0, 3))``).

    Example::

        >>> y = np.zeros((1, 1, 2, 2, 1)); p = y.copy(); p[0, 0, 0, 0] = 2.0
        >>> active = np.array([[True, True], [False, False]])
        >>> rmse(p, y), rmse_active(p, y, active)        # sqrt(4/4), sqrt(4/2)
        (array([1.]), array([1.41421356]))
    """
    p, y = _pair(pred, true)
    mask = _as_tensor(active, "active").to(p.device) != 0
    if tuple(mask.shape) != tuple(p.shape[2:4]):
        raise ValueError(f"active must be a (rows, cols) mask = {tuple(p.shape[2:4])}, got shape {tuple(mask.shape)}")
    cells = int(mask.sum())
    if cells == 0:
        raise ValueError("active marks no cell: at least one cell must count")
    d = (p - y) * mask[None, None, :, :, None]
    per = ((d * d).sum(dim=(0, 2, 3, 4)) / (p.shape[0] * cells * p.shape[4])).cpu().numpy()
    return _finish(np.sqrt(per), math.sqrt(per.mean()), per_lead_time)


def deepst_rmse(all_cell_rmse: float, active_cells: int, cells: int) -> float:
    r"""An all-cell RMSE in DeepST's convention (ST-ResNet's published BikeNYC figures):
    :math:`\text{rmse} \cdot \sqrt{\text{cells} / \text{active\_cells}}` (DeepST's
    ``m_factor``; on BikeNYC 128 cells, 81 with a station: a factor of 1.2571).

    Example::

        >>> round(deepst_rmse(6.024, 81, 128), 2)
        7.57
    """
    if isinstance(active_cells, bool) or not isinstance(active_cells, (int, np.integer)) or active_cells < 1:
        raise ValueError(f"active_cells must be a positive int, got {active_cells!r}")
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or cells < active_cells:
        raise ValueError(f"cells must be an int >= active_cells ({active_cells}), got {cells!r}")
    return float(all_cell_rmse) * math.sqrt(cells / active_cells)


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



# the scoring engine lives in convlstm.scoring; these names stay importable from here
_ENGINE = ("MetricAccumulator", "evaluate_forecast", "per_lead_time_rows", "write_metrics")


def __getattr__(name: str) -> Any:
    if name in _ENGINE:
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
