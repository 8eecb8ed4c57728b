"""Per-channel scalers for grid series, fitted on the training range only by streaming over the
series in chunks, usable on numpy arrays and torch tensors with channels last."""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from .._checks import check_int, check_number
from ._checks import series_shape, to_numpy

__all__ = ["Scaler", "MinMaxScaler", "StandardScaler", "Log1pScaler", "DBScaler", "NoScaler", "make_scaler",
           "scaler_from_state_dict", "SCALERS"]

_CHUNK_BYTES = 32 * 2 ** 20


def _iter_chunks(series: Any, start: int, stop: int, chunk_frames: int) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(t0, chunk)`` with ``chunk`` a float64 ``(n, channels)`` view of frames
    ``[t0, t0 + chunk_frames)`` of ``series[start:stop]``; never reads more at once."""
    for t0 in range(start, stop, chunk_frames):
        block = to_numpy(series[t0:min(stop, t0 + chunk_frames)])
        yield t0, block.astype(np.float64, copy=False).reshape(-1, block.shape[-1])


class Scaler:
    r"""Base class of the per-channel scalers: a transform fitted on a time range of a series,
    applied channel by channel (the last axis) to arrays or tensors of any leading shape.

    Subclasses implement ``_reset``, ``_update(chunk)`` (a float64 ``(n, channels)`` block),
    ``_finish``, ``_forward``, ``_backward`` and the ``_params`` they store.
    """

    #: the name :func:`make_scaler` knows the scaler by
    name = "base"
    _params: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self.n_channels: Optional[int] = None

    # -- fitting -------------------------------------------------------------------------
    def fit(self, series: Any, *, start: int = 0, stop: Optional[int] = None,
            chunk_frames: Optional[int] = None) -> "Scaler":
        """Fit per-channel statistics on ``series[start:stop]`` (time first, channels last).

        The series is read ``chunk_frames`` time steps at a time (by default about 32 MiB of
        float64 per chunk), so a memory-mapped or :class:`LazyGrid` series is never loaded
        whole. Pass the training range only (``start``/``stop`` from
        :func:`chronological_split`), or a :class:`WindowDataset`, whose series and range are
        then used. Non-finite values are refused: see :func:`check_finite`.

        Returns:
            ``self``
        """
        from .windows import WindowDataset

        if isinstance(series, WindowDataset):
            if start == 0 and stop is None:
                start, stop = series.start, series.stop
            series = series.series
        shape = series_shape("series", series, 1)
        n_time = shape[0]
        start = check_int("start", start, 0)
        stop = n_time if stop is None else check_int("stop", stop, 0)
        if stop > n_time or start >= stop:
            raise ValueError(f"start, stop must satisfy 0 <= start < stop <= len(series) = "
                             f"{n_time}, got start={start}, stop={stop}")
        channels = shape[-1] if len(shape) > 1 else 1
        if chunk_frames is None:
            frame = max(1, int(np.prod(shape[1:], dtype=np.int64)))
            chunk_frames = max(1, _CHUNK_BYTES // (8 * frame))
        chunk_frames = check_int("chunk_frames", chunk_frames, 1)
        self.n_channels = None
        self._reset(channels)
        for t0, chunk in _iter_chunks(series, start, stop, chunk_frames):
            if len(shape) == 1:
                chunk = chunk.reshape(-1, 1)
            bad = ~np.isfinite(chunk)
            if bad.any():
                row, ch = np.argwhere(bad)[0]
                per_t = max(1, chunk.shape[0] // max(1, min(stop, t0 + chunk_frames) - t0))
                raise ValueError(
                    f"series has non-finite values (NaN/inf) in the fitting range, the first at "
                    f"time index {t0 + int(row) // per_t}, channel {int(ch)}; clean the series "
                    f"first with check_finite(series, fill='zero' | 'ffill' | <number>)")
            self._update(chunk)
        self._finish()
        self.n_channels = channels
        return self

    # -- applying ------------------------------------------------------------------------
    def _prepare(self, x: Any, method: str) -> Tuple[Any, bool]:
        if self.n_channels is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(train_series) or "
                               f"load_state_dict(state) before {method}")
        is_torch = isinstance(x, torch.Tensor)
        if not is_torch:
            if not hasattr(x, "shape"):
                try:
                    x = np.asarray(x)
                except Exception:
                    raise TypeError(f"x must be a numpy array or torch tensor, got "
                                    f"{type(x).__name__}") from None
            x = np.asarray(x)
            if x.dtype.kind not in "biuf":
                raise TypeError(f"x must hold numbers, got dtype {x.dtype}")
            if x.dtype.kind != "f":
                x = x.astype(np.float32)
        elif not x.is_floating_point():
            if x.is_complex():
                raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
            x = x.to(torch.float32)
        if x.ndim == 0 or x.shape[-1] != self.n_channels:
            raise ValueError(f"x must have channels last with {self.n_channels} channel(s) (the "
                             f"number fitted), got shape {tuple(x.shape)}")
        return x, is_torch

    @staticmethod
    def _p(value: np.ndarray, x: Any, is_torch: bool) -> Any:
        """A per-channel float64 vector in ``x``'s dtype (and device)."""
        if is_torch:
            return torch.as_tensor(value, dtype=x.dtype, device=x.device)
        return value.astype(x.dtype)

    def transform(self, x: Any) -> Any:
        """Scale ``x`` (channels last, any leading shape; numpy array or torch tensor).

        Floating inputs keep their dtype (and device); integer and bool inputs become float32.
        """
        x, is_torch = self._prepare(x, "transform")
        return self._forward(x, is_torch)

    def inverse_transform(self, x: Any) -> Any:
        """Undo :meth:`transform`: ``inverse_transform(transform(x)) == x`` up to rounding."""
        x, is_torch = self._prepare(x, "inverse_transform")
        return self._backward(x, is_torch)

    def fit_transform(self, series: Any, **kwargs: Any) -> Any:
        """``fit(series, **kwargs)`` then ``transform(series)`` (loads the series whole)."""
        return self.fit(series, **kwargs).transform(to_numpy(series[:]))

    # -- state ---------------------------------------------------------------------------
    def _config(self) -> Dict[str, Any]:
        return {}

    def state_dict(self) -> Dict[str, Any]:
        """A JSON-serializable dict: the name, the options and the fitted per-channel values."""
        state: Dict[str, Any] = {"name": self.name, **self._config(), "n_channels": self.n_channels}
        for p in self._params:
            value = getattr(self, p, None)
            state[p] = None if value is None or self.n_channels is None else [float(v) for v in value]
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> "Scaler":
        """Restore what :meth:`state_dict` returned (e.g. read back from JSON); returns ``self``."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        if state.get("name") != self.name:
            raise ValueError(f"state is for scaler {state.get('name')!r}, not {self.name!r}")
        missing = [k for k in ("n_channels",) + self._params if k not in state]
        if missing:
            raise ValueError(f"state lacks the keys {missing}; it has {sorted(state)}")
        self._load_config(state)
        n = state["n_channels"]
        if n is None:
            self.n_channels = None
            return self
        n = check_int("state['n_channels']", n, 1)
        for p in self._params:
            value = np.asarray(state[p], dtype=np.float64)
            if value.shape != (n,):
                raise ValueError(f"state[{p!r}] must be a list of n_channels={n} numbers, got "
                                 f"{state[p]!r}")
            setattr(self, p, value)
        self.n_channels = n
        return self

    def _load_config(self, state: Dict[str, Any]) -> None:
        pass

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        fitted = "" if self.n_channels is None else f"{', ' if cfg else ''}n_channels={self.n_channels}"
        return f"{type(self).__name__}({cfg}{fitted})"

    # -- to implement --------------------------------------------------------------------
    def _reset(self, channels: int) -> None:
        pass

    def _update(self, chunk: np.ndarray) -> None:
        pass

    def _finish(self) -> None:
        pass

    def _forward(self, x: Any, is_torch: bool) -> Any:
        raise NotImplementedError

    def _backward(self, x: Any, is_torch: bool) -> Any:
        raise NotImplementedError


class _RangeMixin:
    """Streaming per-channel min and max."""

    def _reset(self, channels: int) -> None:
        self._lo = np.full(channels, np.inf)
        self._hi = np.full(channels, -np.inf)

    def _update(self, chunk: np.ndarray) -> None:
        if chunk.size:
            self._lo = np.minimum(self._lo, chunk.min(axis=0))
            self._hi = np.maximum(self._hi, chunk.max(axis=0))


class MinMaxScaler(_RangeMixin, Scaler):
    r"""Scale each channel linearly so that its training minimum and maximum map to
    ``feature_range``:

    .. math::
        y = a + (x - \min_c) \frac{b - a}{\max_c - \min_c}, \qquad (a, b) = \text{feature\_range}

    A constant channel (:math:`\max_c = \min_c`) uses a range of 1 instead of 0, so it maps to
    :math:`a` and nothing is divided by zero. Values outside the training range map outside
    ``feature_range`` (no clipping).

    Shape:
        any ``(*, channels)``, numpy or torch; output has the input's shape.

    Example::

        >>> s = MinMaxScaler().fit(np.array([[0.0, 10.0], [2.0, 10.0]]))
        >>> s.transform(np.array([[1.0, 10.0]]))
        array([[0.5, 0. ]])
    """

    name = "minmax"
    _params = ("data_min", "data_max")

    def __init__(self, feature_range: Tuple[float, float] = (0, 1)) -> None:
        super().__init__()
        self.feature_range = self._check_range(feature_range)
        self.data_min: Optional[np.ndarray] = None
        self.data_max: Optional[np.ndarray] = None

    @staticmethod
    def _check_range(feature_range: Any) -> Tuple[float, float]:
        try:
            lo, hi = feature_range
        except (TypeError, ValueError):
            raise TypeError(f"feature_range must be a pair (low, high), "
                            f"got {feature_range!r}") from None
        lo, hi = check_number("feature_range[0]", lo), check_number("feature_range[1]", hi)
        if lo >= hi:
            raise ValueError(f"feature_range must have low < high, got {feature_range!r}")
        return (lo, hi)

    def _config(self) -> Dict[str, Any]:
        return {"feature_range": list(self.feature_range)}

    def _load_config(self, state: Dict[str, Any]) -> None:
        if "feature_range" in state:
            self.feature_range = self._check_range(state["feature_range"])

    def _finish(self) -> None:
        self.data_min, self.data_max = self._lo, self._hi

    @property
    def _span(self) -> np.ndarray:
        span = self.data_max - self.data_min
        return np.where(span > 0, span, 1.0)

    def _forward(self, x: Any, is_torch: bool) -> Any:
        lo, hi = self.feature_range
        scale = self._p((hi - lo) / self._span, x, is_torch)
        return (x - self._p(self.data_min, x, is_torch)) * scale + lo

    def _backward(self, x: Any, is_torch: bool) -> Any:
        lo, hi = self.feature_range
        scale = self._p((hi - lo) / self._span, x, is_torch)
        return (x - lo) / scale + self._p(self.data_min, x, is_torch)


class StandardScaler(Scaler):
    r"""Standardize each channel with its training mean and (population) standard deviation:

    .. math::
        y = \frac{x - \mu_c}{\sigma_c}

    The statistics are accumulated chunk by chunk with Chan et al.'s pairwise update, exact and
    stable for long series. A constant channel (:math:`\sigma_c = 0`) uses :math:`\sigma_c = 1`.

    Shape:
        any ``(*, channels)``, numpy or torch; output has the input's shape.

    Example::

        >>> s = StandardScaler().fit(np.array([[1.0], [3.0]]))
        >>> s.mean, s.std
        (array([2.]), array([1.]))
    """

    name = "standard"
    _params = ("mean", "std")

    def __init__(self) -> None:
        super().__init__()
        self.mean: Optional[np.ndarray] = None
        self.std: Optional[np.ndarray] = None

    def _reset(self, channels: int) -> None:
        self._n = 0
        self._mean = np.zeros(channels)
        self._m2 = np.zeros(channels)

    def _update(self, chunk: np.ndarray) -> None:
        nb = chunk.shape[0]
        if nb == 0:
            return
        mb = chunk.mean(axis=0)
        m2b = ((chunk - mb) ** 2).sum(axis=0)
        n = self._n + nb
        delta = mb - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + m2b + delta ** 2 * (self._n * nb / n)
        self._n = n

    def _finish(self) -> None:
        self.mean = self._mean
        std = np.sqrt(self._m2 / max(self._n, 1))
        self.std = np.where(std > 0, std, 1.0)

    def _forward(self, x: Any, is_torch: bool) -> Any:
        return (x - self._p(self.mean, x, is_torch)) / self._p(self.std, x, is_torch)

    def _backward(self, x: Any, is_torch: bool) -> Any:
        return x * self._p(self.std, x, is_torch) + self._p(self.mean, x, is_torch)


class Log1pScaler(_RangeMixin, Scaler):
    r"""For counts and other skewed non-negative data (crowd flows, rain): take
    :math:`\log(1 + x)`, then min-max scale each channel to [0, 1]:

    .. math::
        y = \frac{\log(1 + x) - \log(1 + \min_c)}{\log(1 + \max_c) - \log(1 + \min_c)}

    and back with :math:`x = \exp(y \cdot r_c + \log(1 + \min_c)) - 1`. A constant channel uses
    :math:`r_c = 1`. Fitting refuses negative values.

    Shape:
        any ``(*, channels)``, numpy or torch; output has the input's shape.

    Example::

        >>> s = Log1pScaler().fit(np.array([[0.0], [np.e - 1]]))
        >>> s.transform(np.array([[np.e - 1]]))
        array([[1.]])
    """

    name = "log1p"
    _params = ("log_min", "log_max")

    def __init__(self) -> None:
        super().__init__()
        self.log_min: Optional[np.ndarray] = None
        self.log_max: Optional[np.ndarray] = None

    def _finish(self) -> None:
        if (self._lo < 0).any():
            c = int(np.argmax(self._lo < 0))
            raise ValueError(f"Log1pScaler is for non-negative data (counts, rain), but channel "
                             f"{c} of the series has minimum {self._lo[c]:g}; use "
                             f"make_scaler('standard') or 'minmax' instead")
        self.log_min, self.log_max = np.log1p(self._lo), np.log1p(self._hi)

    @property
    def _span(self) -> np.ndarray:
        span = self.log_max - self.log_min
        return np.where(span > 0, span, 1.0)

    def _forward(self, x: Any, is_torch: bool) -> Any:
        log = torch.log1p(x) if is_torch else np.log1p(x)
        return (log - self._p(self.log_min, x, is_torch)) / self._p(self._span, x, is_torch)

    def _backward(self, x: Any, is_torch: bool) -> Any:
        z = x * self._p(self._span, x, is_torch) + self._p(self.log_min, x, is_torch)
        return torch.expm1(z) if is_torch else np.expm1(z)


class DBScaler(_RangeMixin, Scaler):
    r"""For rain rates and other non-negative intensities spanning orders of magnitude: pysteps's
    decibel transform (``pysteps.utils.transformation.dB_transform``) with a rain/no-rain
    threshold, then min-max scaling of each channel to [0, 1].

    With :math:`\theta_c` the threshold of channel :math:`c` and the pysteps zero value
    :math:`z_c = 10 \log_{10}\theta_c - 5` dB:

    .. math::
        d(x) = \begin{cases} 10 \log_{10} x & x \ge \theta_c \\ z_c & x < \theta_c \end{cases},
        \qquad y = \frac{d(x) - z_c}{10 \log_{10} \max_c - z_c}

    and back with :math:`x = 10^{d/10}` where :math:`d \ge 10\log_{10}\theta_c - 10^{-4}`, else 0
    (pysteps's inverse sets values below the threshold to 0; the :math:`10^{-4}` dB margin keeps
    a value exactly at the threshold from rounding to 0 in float32). Every training value at or
    above the threshold and every 0 round-trips; values in :math:`(0, \theta_c)` become 0.

    Args:
        threshold (float, optional): :math:`\theta` in data units (pysteps's examples use
            0.1 mm/h). ``None`` (default): fitted, per channel, as the smallest positive value of
            the training part, so that no training value but 0 falls below it.

    Fitting refuses negative values and a channel with no value at or above the threshold.

    Shape:
        any ``(*, channels)``, numpy or torch; output has the input's shape.

    Example::

        >>> s = DBScaler().fit(np.array([[0.0], [0.1], [10.0]]))   # threshold 0.1 mm/h: -10 dB
        >>> s.transform(np.array([[0.0], [0.1], [10.0]])).ravel()     # z = -15 dB, max 10 dB
        array([0. , 0.2, 1. ])
    """

    name = "db"
    _params = ("threshold", "db_max")
    #: dB below the threshold's for values under it (pysteps's default zero value)
    ZERO_OFFSET_DB = 5.0
    _MARGIN_DB = 1e-4

    def __init__(self, threshold: Optional[float] = None) -> None:
        super().__init__()
        if threshold is not None:
            threshold = check_number("threshold", threshold)
            if threshold <= 0:
                raise ValueError(f"threshold must be a positive value in data units (e.g. 0.1 mm/h), got {threshold:g}")
        self.given_threshold = threshold
        self.threshold: Optional[np.ndarray] = None
        self.db_max: Optional[np.ndarray] = None

    def _config(self) -> Dict[str, Any]:
        return {"given_threshold": self.given_threshold}

    def _load_config(self, state: Dict[str, Any]) -> None:
        self.given_threshold = state.get("given_threshold")

    def _reset(self, channels: int) -> None:
        super()._reset(channels)
        self._min_pos = np.full(channels, np.inf)

    def _update(self, chunk: np.ndarray) -> None:
        super()._update(chunk)
        if chunk.size:
            self._min_pos = np.minimum(self._min_pos, np.where(chunk > 0, chunk, np.inf).min(axis=0))

    def _finish(self) -> None:
        if (self._lo < 0).any():
            c = int(np.argmax(self._lo < 0))
            raise ValueError(f"DBScaler is for non-negative data (rain rates), but channel {c} of the series has "
                             f"minimum {self._lo[c]:g}; use make_scaler('standard') or 'minmax' instead")
        thr = self._min_pos if self.given_threshold is None else np.full_like(self._lo, self.given_threshold)
        bad = ~(self._hi >= thr)
        if bad.any():
            c = int(np.argmax(bad))
            raise ValueError(f"DBScaler: channel {c} has no training value at or above the threshold "
                             f"({'none is positive' if not np.isfinite(thr[c]) else f'{thr[c]:g}'}; its maximum is "
                             f"{self._hi[c]:g}); give a smaller threshold or use another scaler")
        self.threshold, self.db_max = thr, 10.0 * np.log10(self._hi)

    @property
    def zerovalue(self) -> np.ndarray:
        """:math:`z_c = 10\\log_{10}\\theta_c - 5` dB, per channel."""
        return 10.0 * np.log10(self.threshold) - self.ZERO_OFFSET_DB

    @property
    def _span(self) -> np.ndarray:
        return self.db_max - self.zerovalue  # > 5 dB: db_max >= the threshold's dB

    def _forward(self, x: Any, is_torch: bool) -> Any:
        thr, zero = self._p(self.threshold, x, is_torch), self._p(self.zerovalue, x, is_torch)
        if is_torch:
            d = torch.where(x >= thr, 10.0 * torch.log10(torch.maximum(x, thr)), zero)
        else:
            d = np.where(x >= thr, 10.0 * np.log10(np.maximum(x, thr)), zero)
        return (d - zero) / self._p(self._span, x, is_torch)

    def _backward(self, x: Any, is_torch: bool) -> Any:
        d = x * self._p(self._span, x, is_torch) + self._p(self.zerovalue, x, is_torch)
        cut = self._p(10.0 * np.log10(self.threshold) - self._MARGIN_DB, x, is_torch)
        if is_torch:
            return torch.where(d >= cut, 10.0 ** (d / 10.0), torch.zeros_like(d))
        return np.where(d >= cut, 10.0 ** (d / 10.0), 0.0).astype(x.dtype, copy=False)


class NoScaler(Scaler):
    """The identity: ``transform`` and ``inverse_transform`` return their input (integers
    become float32, as with the other scalers). ``fit`` only records the channel count, and
    unlike the others it may be used without fitting.

    Example::

        >>> NoScaler().transform(np.array([[1, 2]])).tolist()
        [[1.0, 2.0]]
    """

    name = "none"

    def fit(self, series: Any, **kwargs: Any) -> "NoScaler":
        shape = series_shape("series", series, 1)
        self.n_channels = shape[-1] if len(shape) > 1 else 1
        return self

    def _prepare(self, x: Any, method: str) -> Tuple[Any, bool]:
        fitted = self.n_channels
        if fitted is None:
            self.n_channels = int(x.shape[-1]) if getattr(x, "ndim", 0) else 1
        try:
            return super()._prepare(x, method)
        finally:
            self.n_channels = fitted

    def _forward(self, x: Any, is_torch: bool) -> Any:
        return x

    def _backward(self, x: Any, is_torch: bool) -> Any:
        return x


SCALERS = {cls.name: cls for cls in (MinMaxScaler, StandardScaler, Log1pScaler, DBScaler, NoScaler)}


def make_scaler(name: Optional[str], **kwargs: Any) -> Scaler:
    """Build a scaler by name: ``"minmax"``, ``"standard"``, ``"log1p"``, ``"db"`` or ``"none"``
    (``None`` is ``"none"``); ``kwargs`` go to its constructor (``feature_range`` for
    ``"minmax"``, ``threshold`` for ``"db"``).

    Example::

        >>> make_scaler("minmax", feature_range=(-1, 1))
        MinMaxScaler(feature_range=[-1.0, 1.0])
    """
    if name is None:
        name = "none"
    if not isinstance(name, str) or name.lower() not in SCALERS:
        raise ValueError(f"name must be one of {list(SCALERS)}, got {name!r}")
    return SCALERS[name.lower()](**kwargs)


def scaler_from_state_dict(state: Dict[str, Any]) -> Scaler:
    """Rebuild a scaler from :meth:`Scaler.state_dict` (e.g. stored in a checkpoint's JSON)."""
    if not isinstance(state, dict) or "name" not in state:
        raise TypeError(f"state must be a dict from Scaler.state_dict() with a 'name', got {state!r}")
    return make_scaler(state["name"]).load_state_dict(state)
