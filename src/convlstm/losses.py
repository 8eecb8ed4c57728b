r"""Training losses for forecasts, including two that fight the blur of plain MSE.

Every loss takes ``pred, true`` of the same shape, the toolkit's ``(B, T, H, W, C)`` channels
last (``B`` samples, ``T`` lead times, ``H x W`` frames, ``C`` channels), and returns a scalar
tensor that gradients flow through. Half-precision inputs are computed in float32 with autocast
disabled (float64 inputs stay float64), so a mixed-precision run gets the same loss as a
float32 one.

Losses and their reductions (:math:`p` forecast, :math:`y` target, :math:`N = B T H W C` values,
:math:`F = B T` frames):

==============  ======================================  ==================================================
name            class / function                        formula and reduction
==============  ======================================  ==================================================
``mse``         :func:`mse`                             :math:`\frac{1}{N}\sum (p - y)^2`
``mae``         :func:`mae`                             :math:`\frac{1}{N}\sum |p - y|`
``bce``         :func:`bce`                             :math:`-\frac{1}{N}\sum [\,y' \log p' + (1 - y')
                                                        \log(1 - p')\,]` with :math:`p' = \text{clamp}(p,
                                                        10^{-7}, 1 - 10^{-7})`, :math:`y' = \text{clamp}(y,
                                                        0, 1)` (model outputs probabilities)
``mse+ssim``    :class:`MSESSIMLoss`                    :math:`\text{mse} + w\,(1 - \text{SSIM})`, SSIM per
                ``(ssim_weight=1.0, data_range=1.0)``   frame and channel as :func:`convlstm.metrics.ssim`
                                                        (11-tap Gaussian window, :math:`\sigma = 1.5`,
                                                        :math:`K_1 = 0.01`, :math:`K_2 = 0.03`,
                                                        population covariances, mean over the valid
                                                        pixels), averaged over channels, then over the
                                                        :math:`F` frames; frames of at least 11 x 11
``balanced``    :class:`BalancedMSEMAE`                 :math:`\frac{1}{N}\sum w(y)\,[(p - y)^2 + |p -
                ``(thresholds=(2, 5, 10, 30),           y|]`, :math:`w(y) = \text{weights}[k]` with
                weights=(1, 2, 5, 10, 30))``            :math:`k = \#\{\text{thresholds} \le y\}`:
                                                        Shi et al. 2017's B-MSE + B-MAE, averaged over
                                                        all values instead of summed over a frame's
                                                        pixels (their loss divided by :math:`H W C`)
==============  ======================================  ==================================================

:func:`get_loss` builds a loss by name (the names in :data:`LOSS_NAMES`, the ``loss`` of
``convlstm.training.FitConfig``) with its options (``loss_options``).

Units: training sees **scaled** data (the scaler fitted on the training part). ``data_range`` of
``mse+ssim`` is in those units (1.0 for the ``minmax`` and ``log1p`` scalers, which map the
training range to [0, 1]). The thresholds of ``balanced`` are in the data's **physical** units
(mm/h for rain); :meth:`BalancedMSEMAE.set_value_transform` maps them through the scaler, which
``convlstm.training.ForecastModule`` does in its ``setup`` hook.

Example::

    >>> pred, true = torch.rand(2, 3, 16, 16, 1), torch.rand(2, 3, 16, 16, 1)
    >>> get_loss("mse+ssim", ssim_weight=0.5)(pred, true).shape
    torch.Size([])
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import metrics as _metrics

__all__ = ["mse", "mae", "bce", "MSESSIMLoss", "BalancedMSEMAE", "EnsembleCRPS", "get_loss", "loss_option_names",
           "LOSS_NAMES"]

#: The names :func:`get_loss` (and ``FitConfig.loss``, ``convlstm fit --loss``) accept.
LOSS_NAMES = ("mse", "mae", "bce", "mse+ssim", "balanced")

_BCE_EPS = 1e-7


# ---------------------------------------------------------------------------------- helpers
def _pair(pred: Any, true: Any, loss: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``pred`` and ``true`` as float tensors of at least float32, checked to match."""
    for name, t in (("pred", pred), ("true", true)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"loss {loss!r}: {name} must be a torch tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"loss {loss!r}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    if pred.shape != true.shape:
        raise ValueError(f"loss {loss!r}: pred and true must have the same shape (B, T, H, W, C), got pred "
                         f"{tuple(pred.shape)} and true {tuple(true.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"loss {loss!r}: pred is empty (shape {tuple(pred.shape)})")
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    return pred.to(dtype), true.to(device=pred.device, dtype=dtype)


@contextlib.contextmanager
def _full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off on ``device`` (the losses cast their inputs to float32 themselves)."""
    try:
        ctx = torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know has no autocast to turn off
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _number(name: str, value: Any, loss: str, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or (
            float(value) <= minimum if strict else float(value) < minimum):
        raise ValueError(f"loss {loss!r}: {name} must be a finite number {'>' if strict else '>='} {minimum:g}, "
                         f"got {value!r}")
    return float(value)


def _numbers(name: str, values: Any, loss: str) -> Tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(f"loss {loss!r}: {name} must be a list of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise ValueError(f"loss {loss!r}: {name} must be a list of finite numbers, got {list(values)!r}")
        out.append(float(v))
    return tuple(out)


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


# ---------------------------------------------------------------------------------- plain losses
def mse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error :math:`\frac{1}{N}\sum (p - y)^2` over all values.

    Shape:
        ``pred``, ``true``: the same shape, ``(B, T, H, W, C)`` in the toolkit; output: scalar.

    Example::

        >>> mse(torch.ones(1, 1, 2, 2, 1), torch.zeros(1, 1, 2, 2, 1))
        tensor(1.)
    """
    p, y = _pair(pred, true, "mse")
    with _full_precision(p.device):
        return F.mse_loss(p, y)


def mae(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    r"""Mean absolute error :math:`\frac{1}{N}\sum |p - y|` over all values (see :func:`mse`)."""
    p, y = _pair(pred, true, "mae")
    with _full_precision(p.device):
        return F.l1_loss(p, y)


def bce(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy on probabilities, for targets in [0, 1] (e.g. Moving MNIST after a
    ``minmax`` scaler) and a model whose output is a probability (a sigmoid head):

    .. math::
        -\frac{1}{N}\sum \left[y' \log p' + (1 - y') \log(1 - p')\right], \quad
        p' = \text{clamp}(p, 10^{-7}, 1 - 10^{-7}), \quad y' = \text{clamp}(y, 0, 1)

    Computed in float32 outside autocast (``binary_cross_entropy`` is not autocast-safe). The
    clamps make the loss finite for outputs of exactly 0 or 1 and for targets a little outside
    [0, 1] (test data beyond the training range); their gradient is 0 outside the clamp.
    """
    p, y = _pair(pred, true, "bce")
    with _full_precision(p.device):
        return F.binary_cross_entropy(p.clamp(_BCE_EPS, 1 - _BCE_EPS), y.clamp(0, 1))


# ---------------------------------------------------------------------------------- MSE + SSIM
class MSESSIMLoss(nn.Module):
    r"""MSE plus a structural-similarity term, against the blur that MSE alone rewards:

    .. math::
        \ell = \frac{1}{N}\sum (p - y)^2 + w \left(1 - \frac{1}{F}\sum_{\text{frames}}
        \frac{1}{C}\sum_{c} \text{SSIM}(p_{f,c}, y_{f,c})\right)

    with SSIM computed exactly as :func:`convlstm.metrics.ssim` does (the same code,
    ``convlstm.metrics._frame_ssim``): per frame and channel, local means, variances and
    covariance under an 11-tap Gaussian window (:math:`\sigma = 1.5`, population statistics),
    :math:`C_1 = (0.01 R)^2`, :math:`C_2 = (0.03 R)^2`, averaged over the valid pixels (5 or more
    from the border). ``1 - SSIM`` is 0 for a perfect forecast and grows when local contrast and
    structure are lost, which MSE barely punishes.

    Args:
        ssim_weight: :math:`w \ge 0`. Default 1.0: the plain sum, not tuned. On data scaled to
            [0, 1] the MSE of a forecast is typically 10-100 times smaller than its
            :math:`1 - \text{SSIM}`, so with :math:`w = 1` the SSIM term leads the gradient;
            a smaller weight (e.g. 0.1) leaves MSE more say. :math:`w = 0` is plain MSE.
        data_range: :math:`R`, the max - min of the values **the model sees** (scaled data):
            1.0 (default) after the ``minmax`` and ``log1p`` scalers; about 6-8 after
            ``standard``; the data's own range with ``none``.

    Shape:
        ``pred``, ``true``: ``(B, T, H, W, C)`` channels last, with ``H, W >= 11`` (SSIM's
        window; smaller frames raise a ``ValueError``: use ``mse``); output: scalar.

    Example::

        >>> loss = MSESSIMLoss(ssim_weight=0.5)
        >>> true = torch.rand(2, 3, 16, 16, 1)
        >>> float(loss(true, true))
        0.0
    """

    name = "mse+ssim"

    def __init__(self, ssim_weight: float = 1.0, data_range: float = 1.0) -> None:
        super().__init__()
        self.ssim_weight = _number("ssim_weight", ssim_weight, self.name, minimum=0.0, strict=False)
        self.data_range = _number("data_range", data_range, self.name, minimum=0.0, strict=True)

    def check_frame_size(self, rows: int, cols: int) -> None:
        """Raise ``ValueError`` if frames of ``rows x cols`` are smaller than SSIM's window."""
        win = _metrics._SSIM_WIN  # noqa: SLF001 - the metric's own constant
        if rows < win or cols < win:
            raise ValueError(f"loss {self.name!r} needs frames of at least {win}x{win} pixels (the SSIM Gaussian "
                             f"window), got {rows}x{cols} frames; use loss='mse' for frames this small")

    def ssim(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The SSIM term: mean over frames and channels (a scalar tensor, differentiable)."""
        p, y = self._checked(pred, true)
        with _full_precision(p.device):
            return _metrics._frame_ssim(p, y, self.data_range).mean()  # noqa: SLF001

    def _checked(self, pred: torch.Tensor, true: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        p, y = _pair(pred, true, self.name)
        if p.dim() != 5:
            raise ValueError(f"loss {self.name!r}: pred and true must be 5D (B, T, H, W, C) channels last, got "
                             f"shape {tuple(p.shape)}")
        self.check_frame_size(int(p.shape[2]), int(p.shape[3]))
        return p, y

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        p, y = self._checked(pred, true)
        with _full_precision(p.device):
            loss = F.mse_loss(p, y)
            if self.ssim_weight:
                loss = loss + self.ssim_weight * (1.0 - _metrics._frame_ssim(p, y, self.data_range).mean())  # noqa: SLF001
            return loss

    def extra_repr(self) -> str:
        return f"ssim_weight={self.ssim_weight}, data_range={self.data_range}"


# ---------------------------------------------------------------------------------- balanced MSE + MAE
class BalancedMSEMAE(nn.Module):
    r"""Balanced MSE + MAE of Shi et al. 2017 (X. Shi, Z. Gao, L. Lausen, H. Wang, D.-Y. Yeung,
    W. Wong, W. Woo, "Deep Learning for Precipitation Nowcasting: A Benchmark and A New Model",
    NIPS 2017, the TrajGRU paper): heavy rain is rare, so plain MSE learns to forecast drizzle
    everywhere; weighting each pixel by the intensity of its target makes missing a storm cost
    more than missing a shower.

    .. math::
        \ell = \frac{1}{N}\sum w(y)\left[(p - y)^2 + |p - y|\right], \qquad
        w(y) = \text{weights}[k(y)], \quad k(y) = \#\{i : \text{thresholds}_i \le y\}

    With the defaults (the paper's, in mm/h): :math:`w = 1` below 2, 2 in [2, 5), 5 in [5, 10),
    10 in [10, 30) and 30 from 30 up. The weight depends on the target only. The paper sums the
    errors over a frame's pixels and averages over frames; here the mean runs over all
    :math:`N = B T H W C` values, i.e. the paper's loss divided by :math:`H W C` (the same
    minimum; the learning rate absorbs the constant).

    **Units.** ``thresholds`` are in the data's physical units, but the model is trained on
    scaled data. All the toolkit's scalers are increasing per channel, so
    :math:`\text{scaled}(y) \ge \text{scaled}(t) \iff y \ge t`: the weight is computed on the
    scaled targets against the thresholds mapped through the scaler,
    :meth:`set_value_transform` ``(scaler.transform, channels)``, per channel. Until that is
    called the thresholds are compared with the values as given (right for unscaled data).
    ``convlstm.training.ForecastModule`` calls it in its ``setup`` hook with the datamodule's
    scaler, and warns when there is none. The mapped thresholds are compared in the targets'
    dtype, so a target within float rounding (about :math:`10^{-7}` relative in float32) of a
    threshold may fall on either side of it.

    Args:
        thresholds: strictly increasing finite numbers, in the data's units (default
            ``(2, 5, 10, 30)``); may be empty (then one weight for every value).
        weights: ``len(thresholds) + 1`` finite numbers > 0 (default ``(1, 2, 5, 10, 30)``):
            ``weights[0]`` below the first threshold, ``weights[i]`` from ``thresholds[i-1]``
            up to ``thresholds[i]``, the last from the last threshold up.

    Attributes:
        scaled_thresholds: ``None``, or the thresholds in the model's units, a list of
            ``len(thresholds)`` rows of one value per channel (set by :meth:`set_value_transform`).

    Shape:
        ``pred``, ``true``: the same shape, channels last (``(B, T, H, W, C)`` in the toolkit);
        output: scalar.

    Example::

        >>> loss = BalancedMSEMAE()
        >>> true = torch.tensor([1.0, 3.0, 40.0]).view(1, 1, 1, 3, 1)
        >>> loss.pixel_weights(true).flatten().tolist()
        [1.0, 2.0, 30.0]
        >>> float(loss(true + 1, true))          # (1 + 2 + 30) * (1 + 1) / 3
        22.0
    """

    name = "balanced"

    def __init__(self, thresholds: Sequence[float] = (2, 5, 10, 30),
                 weights: Sequence[float] = (1, 2, 5, 10, 30)) -> None:
        super().__init__()
        th = _numbers("thresholds", thresholds, self.name)
        wt = _numbers("weights", weights, self.name)
        if any(b <= a for a, b in zip(th, th[1:])):
            raise ValueError(f"loss {self.name!r}: thresholds must be strictly increasing, got {list(th)!r}")
        if len(wt) != len(th) + 1:
            raise ValueError(f"loss {self.name!r}: weights must hold len(thresholds) + 1 = {len(th) + 1} numbers "
                             f"(one below the first threshold, one from each threshold up), got {len(wt)}: "
                             f"{list(wt)!r}")
        if any(w <= 0 for w in wt):
            raise ValueError(f"loss {self.name!r}: weights must be > 0, got {list(wt)!r}")
        self.thresholds: Tuple[float, ...] = th
        self.weights: Tuple[float, ...] = wt
        self.scaled_thresholds: Optional[List[List[float]]] = None

    def set_value_transform(self, transform: Callable[[np.ndarray], Any], channels: int = 1) -> "BalancedMSEMAE":
        """Map the thresholds into the model's units: ``transform`` (e.g. a fitted scaler's
        ``transform``) is applied to a float64 ``(len(thresholds), channels)`` array whose
        column ``c`` holds the thresholds, giving each channel its own thresholds. Returns ``self``.

        ``transform`` must be increasing (as every scaler of :mod:`convlstm.data` is): a result that
        is not finite or not increasing down a column is a ``ValueError``. So is a threshold where
        the transform is flat from below (a value :math:`10^{-5}` relative below it maps to the
        same scaled value, as under a scaler that maps everything under a rain/no-rain threshold
        to one value): there the scaled targets cannot tell values under the threshold from it,
        and the weights would be wrong.

        Example::

            >>> from convlstm.data import MinMaxScaler
            >>> scaler = MinMaxScaler().fit(np.array([[0.0], [50.0]]))
            >>> BalancedMSEMAE().set_value_transform(scaler.transform).scaled_thresholds
            [[0.04], [0.1], [0.2], [0.6]]
        """
        if not callable(transform):
            raise TypeError(f"loss {self.name!r}: transform must be callable (e.g. scaler.transform), "
                            f"got {type(transform).__name__}")
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
            raise ValueError(f"loss {self.name!r}: channels must be an integer >= 1, got {channels!r}")
        k, c = len(self.thresholds), int(channels)
        raw = np.tile(np.asarray(self.thresholds, dtype=np.float64).reshape(k, 1), (1, c))
        with np.errstate(invalid="ignore", divide="ignore"):  # non-finite results are reported below
            mapped = np.asarray(_numpy(transform(raw)), dtype=np.float64)
        if mapped.shape != (k, c):
            raise ValueError(f"loss {self.name!r}: transform returned shape {mapped.shape} for thresholds of shape "
                             f"{(k, c)}; it must map values elementwise")
        if not np.isfinite(mapped).all():
            raise ValueError(f"loss {self.name!r}: the thresholds {list(self.thresholds)} map to non-finite values "
                             f"{mapped.tolist()} (e.g. a log1p scaler and a threshold below -1); choose thresholds "
                             f"inside the data's range")
        if (np.diff(mapped, axis=0) < 0).any():
            raise ValueError(f"loss {self.name!r}: transform is not increasing: thresholds {list(self.thresholds)} "
                             f"map to {mapped.tolist()}; the balanced weights need an increasing scaling")
        below = raw - 1e-5 * np.maximum(1.0, np.abs(raw))
        with np.errstate(invalid="ignore", divide="ignore"):
            mapped_below = np.asarray(_numpy(transform(below)), dtype=np.float64)
        flat = ~(mapped_below < mapped)
        if flat.any():
            i, ch = (int(v) for v in np.argwhere(flat)[0])
            raise ValueError(f"loss {self.name!r}: the transform does not increase into threshold "
                             f"{self.thresholds[i]:g} (channel {ch}): a value a little under it maps to "
                             f"{mapped_below[i, ch]:g}, not below the threshold's {mapped[i, ch]:g}, so the scaled "
                             f"targets cannot tell values under the threshold from it; choose thresholds where the "
                             f"scaling is increasing (e.g. above a scaler's own rain/no-rain threshold)")
        self.scaled_thresholds = mapped.tolist()
        return self

    def pixel_weights(self, true: torch.Tensor) -> torch.Tensor:
        """:math:`w(y)` for every value of ``true`` (same shape, no gradient)."""
        y = true.detach()
        if self.scaled_thresholds is None:
            th = torch.tensor(self.thresholds, dtype=y.dtype, device=y.device).reshape(-1, 1)
        else:
            th = torch.tensor(self.scaled_thresholds, dtype=y.dtype, device=y.device)
            c = th.shape[1]
            if c != 1 and (y.dim() == 0 or y.shape[-1] != c):
                raise ValueError(f"loss {self.name!r}: the thresholds were mapped for {c} channels, but the targets "
                                 f"have shape {tuple(y.shape)} (channels last)")
        count = torch.zeros(y.shape, dtype=torch.long, device=y.device)
        for row in th:  # thresholds are increasing: the count of thresholds <= y is the class index
            count += (y >= row).long()
        return torch.tensor(self.weights, dtype=y.dtype, device=y.device)[count]

    def forward(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        p, y = _pair(pred, true, self.name)
        with _full_precision(p.device):
            d = p - y
            return (self.pixel_weights(y) * (d * d + d.abs())).mean()

    def extra_repr(self) -> str:
        mapped = "" if self.scaled_thresholds is None else f", scaled_thresholds={self.scaled_thresholds}"
        return f"thresholds={list(self.thresholds)}, weights={list(self.weights)}{mapped}"


# ---------------------------------------------------------------------------------- factory
class EnsembleCRPS(nn.Module):
    r"""The almost fair CRPS of an ensemble (Lang et al. 2024, ECMWF's AIFS-CRPS), per value, averaged:

    .. math::
        	ext{afCRPS}_lpha = rac{1}{M} \sum_{m} |x_m - y|
            - rac{1 - \epsilon}{2 M (M - 1)} \sum_{m 
e m'} |x_m - x_{m'}|,
        \qquad \epsilon = rac{1 - lpha}{M}

    :math:`lpha = 1` is the fair CRPS (unbiased for the CRPS of the ensemble's distribution,
    whatever :math:`M`; minimised by members drawn from the true distribution), :math:`lpha = 0`
    the CRPS of the :math:`M` members as they are; :math:`lpha` slightly below 1 keeps the fair
    score's calibration without letting two members collapse onto each other. With
    ``spatial_weight`` :math:`w > 0` the same score of the fields averaged over ``spatial_pool``
    x ``spatial_pool`` pixels is added, times :math:`w`, so that the members' spatial structure is
    scored too (independent pixel noise averages away and is penalised).

    Shape:
        - members: :math:`(M, B, T, H, W, C)` with :math:`M \ge 2`; truth: :math:`(B, T, H, W, C)`.
        - output: a scalar.

    Example::

        >>> loss = EnsembleCRPS(alpha=1.0)
        >>> float(loss(torch.tensor([[0.0], [2.0]]), torch.tensor([1.0])))   # (1 + 1)/2 - 2/2
        0.0
    """

    def __init__(self, alpha: float = 0.95, spatial_weight: float = 0.0, spatial_pool: int = 4) -> None:
        super().__init__()
        self.alpha = _number("alpha", alpha, "crps", minimum=0.0, strict=False)
        if self.alpha > 1:
            raise ValueError(f"alpha must be in [0, 1] (1: the fair CRPS), got {alpha!r}")
        self.spatial_weight = _number("spatial_weight", spatial_weight, "crps", minimum=0.0, strict=False)
        if isinstance(spatial_pool, bool) or not isinstance(spatial_pool, int) or spatial_pool < 2:
            raise ValueError(f"spatial_pool must be an integer >= 2 (pixels), got {spatial_pool!r}")
        self.spatial_pool = spatial_pool

    def score(self, members: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        """The afCRPS of each value, ``truth``'s shape."""
        m = members.shape[0]
        if m < 2:
            raise ValueError(f"the CRPS of an ensemble needs 2 members or more, got {m}")
        skill = (members - truth.unsqueeze(0)).abs().mean(0)
        spread = members.new_zeros(truth.shape)
        for i in range(m):
            for j in range(i + 1, m):
                spread = spread + (members[i] - members[j]).abs()
        eps = (1.0 - self.alpha) / m
        return skill - (1.0 - eps) * spread / (m * (m - 1))   # the pairs counted once: sum over m != m' / 2

    def forward(self, members: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        loss = self.score(members, truth).mean()
        if self.spatial_weight and members.ndim == 6 and min(truth.shape[2:4]) >= self.spatial_pool:
            def pool(t: torch.Tensor) -> torch.Tensor:
                lead = t.shape[:-3]
                c = t.movedim(-1, -3).flatten(0, -4)
                return F.avg_pool2d(c, self.spatial_pool).unflatten(0, lead)
            loss = loss + self.spatial_weight * self.score(pool(members), pool(truth)).mean()
        return loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}, spatial_weight={self.spatial_weight:g}, spatial_pool={self.spatial_pool}"


_FUNCTIONS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"mse": mse, "mae": mae, "bce": bce}
_CLASSES = {"mse+ssim": MSESSIMLoss, "balanced": BalancedMSEMAE}


def loss_option_names(name: str) -> Tuple[str, ...]:
    """The option names the loss ``name`` takes (``()`` for ``mse``, ``mae``, ``bce``)."""
    key = _check_name(name)
    if key in _FUNCTIONS:
        return ()
    return tuple(p for p in inspect.signature(_CLASSES[key]).parameters)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name.lower() not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_NAMES)}; got {name!r}")
    return name.lower()


def get_loss(name: str, **options: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss called ``name`` (one of :data:`LOSS_NAMES`), built with ``options``:

    ==============  ===============================================================
    ``mse``         :func:`mse` (no options)
    ``mae``         :func:`mae` (no options)
    ``bce``         :func:`bce` (no options)
    ``mse+ssim``    :class:`MSESSIMLoss` ``(ssim_weight=1.0, data_range=1.0)``
    ``balanced``    :class:`BalancedMSEMAE` ``(thresholds=(2, 5, 10, 30), weights=(1, 2, 5, 10, 30))``
    ==============  ===============================================================

    Returns a callable ``loss(pred, true) -> scalar tensor`` (a function or an ``nn.Module``
    without parameters). An unknown name or option is a ``ValueError`` that lists the allowed ones.

    Example::

        >>> get_loss("balanced", thresholds=[0.5, 2], weights=[1, 2, 5])
        BalancedMSEMAE(thresholds=[0.5, 2.0], weights=[1.0, 2.0, 5.0])
    """
    key = _check_name(name)
    allowed = loss_option_names(key)
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        takes = f"takes the options {', '.join(allowed)}" if allowed else "takes no options"
        raise ValueError(f"loss {key!r} {takes}; got {', '.join(map(repr, unknown))}")
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    return _CLASSES[key](**options)
