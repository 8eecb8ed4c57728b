"""Sliding windows over a ``(time, rows, cols, channels)`` series, the lazy
:class:`WindowDataset`, and chronological train/val/test splits with no leakage."""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_fractions, check_int
from ._checks import series_shape, to_numpy
from ._memmap import SeriesByReference

__all__ = ["num_windows", "sliding_windows", "WindowDataset", "chronological_split", "event_split",
           "event_ranges", "check_parts_have_windows", "STREAMS",
           "multiscale_offsets", "multiscale_targets", "stacked_lags", "MultiScaleWindowDataset"]


def _check_window(input_steps: Any, output_steps: Any, stride: Any, gap: Any) -> tuple:
    return (check_int("input_steps", input_steps, 1), check_int("output_steps", output_steps, 1),
            check_int("stride", stride, 1), check_int("gap", gap, 0))


def num_windows(n_time: int, input_steps: int, output_steps: int, stride: int = 1,
                gap: int = 0) -> int:
    r"""The number of (input, target) windows that fit in a series of ``n_time`` steps.

    A window spans :math:`L = \text{input\_steps} + \text{gap} + \text{output\_steps}` steps
    and windows start every ``stride`` steps, so

    .. math::
        N = \max\left(0, \left\lfloor \frac{n\_time - L}{\text{stride}} \right\rfloor + 1\right)

    It is 0 when even one window does not fit (:func:`sliding_windows` and
    :class:`WindowDataset` raise in that case).

    Example::

        >>> num_windows(10, 3, 2)            # starts 0..5
        6
        >>> num_windows(10, 3, 2, stride=2, gap=1)   # span 6, starts 0, 2, 4
        3
    """
    n_time = check_int("n_time", n_time, 0)
    input_steps, output_steps, stride, gap = _check_window(input_steps, output_steps, stride, gap)
    span = input_steps + gap + output_steps
    if n_time < span:
        return 0
    return (n_time - span) // stride + 1


def _too_short(n: int, input_steps: int, output_steps: int, gap: int, what: str) -> ValueError:
    span = input_steps + gap + output_steps
    return ValueError(f"{what} has {n} time steps, but one window needs input_steps + gap + "
                      f"output_steps = {input_steps} + {gap} + {output_steps} = {span}; use a "
                      f"longer series or shorter windows")


def sliding_windows(series: Any, input_steps: int, output_steps: int, *, stride: int = 1,
                    gap: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    r"""Cut a series into (input, target) windows, in memory.

    For window :math:`i` starting at :math:`s = i \cdot \text{stride}`:

    .. math::
        X_i = \text{series}[s : s + \text{in}], \qquad
        Y_i = \text{series}[s + \text{in} + \text{gap} : s + \text{in} + \text{gap} + \text{out}]

    ``gap`` skips steps between the last input and the first target (e.g. forecast from
    ``gap + 1`` steps ahead). The arrays are copies; for large series use :class:`WindowDataset`,
    which reads one window at a time.

    Args:
        series: array-like with time first, canonically ``(T, rows, cols, channels)`` (numpy,
            memmap, :class:`LazyGrid`, torch tensor). Any trailing shape is kept.
        input_steps: steps per input window (>= 1).
        output_steps: steps per target window (>= 1).
        stride: steps between the starts of consecutive windows (>= 1).
        gap: steps skipped between input and target (>= 0).

    Shapes:
        - series: :math:`(T, *)`
        - X: :math:`(N, \text{input\_steps}, *)`, Y: :math:`(N, \text{output\_steps}, *)` with
          :math:`N` = :func:`num_windows`.

    Example::

        >>> X, Y = sliding_windows(np.arange(6), 2, 1, stride=2)
        >>> X.tolist(), Y.tolist()
        ([[0, 1], [2, 3]], [[2], [4]])
    """
    shape = series_shape("series", series, 1)
    input_steps, output_steps, stride, gap = _check_window(input_steps, output_steps, stride, gap)
    n = num_windows(shape[0], input_steps, output_steps, stride, gap)
    if n == 0:
        raise _too_short(shape[0], input_steps, output_steps, gap, "series")
    span = input_steps + gap + output_steps
    starts = np.arange(n) * stride
    needed = int(starts[-1]) + span
    data = to_numpy(series[:needed])
    x_idx = starts[:, None] + np.arange(input_steps)[None, :]
    y_idx = starts[:, None] + (input_steps + gap) + np.arange(output_steps)[None, :]
    return data[x_idx], data[y_idx]


_NUMPY_FLOAT = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _tensor(a: Any, dtype: torch.dtype) -> torch.Tensor:
    """A fresh, writable tensor of ``dtype`` from array ``a`` (a memmap view is read-only)."""
    a = np.array(to_numpy(a), dtype=_NUMPY_FLOAT.get(dtype, np.float32), copy=True)
    return torch.from_numpy(a).to(dtype)


class WindowDataset(SeriesByReference, Dataset):
    r"""A map-style torch ``Dataset`` of (input, target) windows over the time range
    ``[start, stop)`` of a series, read lazily one window per item.

    Item :math:`i` reads the single block ``series[s : s + in + gap + out]`` with
    :math:`s = \text{start} + i \cdot \text{stride}` and splits it into

    .. math::
        x = \text{series}[s : s + \text{in}], \qquad
        y = \text{series}[s + \text{in} + \text{gap} : s + \text{in} + \text{gap} + \text{out}]

    so a window never reads a step outside ``[start, stop)``: datasets built over the ranges
    of :func:`chronological_split` share no time step. With ``events`` (the gap-free ``[lo, hi)``
    ranges of a series joined from several files or cut by missing time steps, see
    :class:`~convlstm.data.GridArchive`) windows are laid out in each event's part of
    ``[start, stop)`` separately, starting at its first step, and none crosses from one event into
    the next; item :math:`i` is then the :math:`k`-th window of its event. With a memmap or a :class:`LazyGrid` only
    that block is read from disk. If ``scaler`` is given, ``scaler.transform`` is applied to both.
    Pickling the dataset (``DataLoader`` workers started with *spawn*) sends how to open a
    memmap or :class:`LazyGrid` again, not its content.

    Args:
        series: array-like with time first, canonically ``(T, rows, cols, channels)``.
        input_steps: steps per input (>= 1).
        output_steps: steps per target (>= 1).
        start: first time step of the range (>= 0).
        stop: end of the range (exclusive); ``None`` means ``len(series)``.
        stride: steps between window starts (>= 1).
        gap: steps skipped between input and target (>= 0).
        scaler: an object with ``transform(array)`` (see :func:`make_scaler`), fitted beforehand,
            normally on the training range only.
        dtype: floating torch dtype of the returned tensors.
        events: ``None`` (the whole range is one stretch), or the ``[lo, hi)`` ranges
            :math:`(E, 2)` of the series' events, in order.

    Shapes:
        - item: ``(x, y)`` with x :math:`(\text{input\_steps}, \text{rows}, \text{cols}, \text{channels})`
          and y :math:`(\text{output\_steps}, \text{rows}, \text{cols}, \text{channels})`
          (in general the series' trailing shape).
        - ``len(ds)`` = :func:`num_windows` ``(stop - start, ...)``, summed over the events' parts
          of the range when there are events.

    Example::

        >>> from convlstm.data import MinMaxScaler, chronological_split
        >>> series = np.random.rand(200, 16, 16, 1).astype("float32")
        >>> parts = chronological_split(len(series), 10, 5)
        >>> scaler = MinMaxScaler().fit(series, start=0, stop=parts["train"][1])
        >>> train = WindowDataset(series, 10, 5, start=0, stop=parts["train"][1], scaler=scaler)
        >>> x, y = train[0]
        >>> x.shape, y.shape
        (torch.Size([10, 16, 16, 1]), torch.Size([5, 16, 16, 1]))
    """

    def __init__(self, series: Any, input_steps: int, output_steps: int, *, start: int = 0,
                 stop: Optional[int] = None, stride: int = 1, gap: int = 0, scaler: Any = None,
                 dtype: torch.dtype = torch.float32, events: Any = None) -> None:
        shape = series_shape("series", series, 1)
        self.input_steps, self.output_steps, self.stride, self.gap = _check_window(
            input_steps, output_steps, stride, gap)
        n_time = shape[0]
        self.start = check_int("start", start, 0)
        self.stop = n_time if stop is None else check_int("stop", stop, 0)
        if self.stop > n_time:
            raise ValueError(f"stop must be <= len(series) = {n_time}, got {self.stop}")
        if self.start >= self.stop:
            raise ValueError(f"start must be < stop, got start={self.start}, stop={self.stop}")
        if scaler is not None and not callable(getattr(scaler, "transform", None)):
            raise TypeError(f"scaler must have a transform(array) method (see make_scaler), "
                            f"got {type(scaler).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch dtype (torch.float32, "
                            f"torch.float64, torch.float16, torch.bfloat16), got {dtype!r}")
        self.events = event_ranges(events, n_time, self.start, self.stop)
        counts = [num_windows(hi - lo, self.input_steps, self.output_steps, self.stride, self.gap)
                  for lo, hi in self.events]
        self._first = np.cumsum([0] + counts)  # the first item of each event
        self._len = int(self._first[-1])
        if self._len == 0:
            if events is None:
                raise _too_short(self.stop - self.start, self.input_steps, self.output_steps,
                                 self.gap, f"the range [start, stop) = [{self.start}, {self.stop})")
            longest = max((hi - lo for lo, hi in self.events), default=0)
            raise _too_short(longest, self.input_steps, self.output_steps, self.gap,
                             f"the longest event in [start, stop) = [{self.start}, {self.stop})")
        self.series = series
        self.scaler = scaler
        self.dtype = dtype
        self.sample_shape = tuple(shape[1:])

    def __len__(self) -> int:
        return self._len

    def _index(self, i: Any) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
            raise TypeError(f"index must be an integer, got {i!r}")
        i = int(i)
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} is out of range for a WindowDataset of {self._len} windows")
        return i % self._len

    def _window_start(self, i: Any) -> int:
        """The first time step item ``i`` reads: the ``k``-th window of its event."""
        i = self._index(i)
        e = int(np.searchsorted(self._first, i, side="right")) - 1
        return int(self.events[e][0]) + (i - int(self._first[e])) * self.stride

    def window_times(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """The time indices (into ``series``) that item ``i`` reads as input and as target."""
        s = self._window_start(i)
        t0 = s + self.input_steps + self.gap
        return np.arange(s, s + self.input_steps), np.arange(t0, t0 + self.output_steps)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self._window_start(i)
        block = to_numpy(self.series[s:s + self.input_steps + self.gap + self.output_steps])
        x = block[:self.input_steps]
        y = block[self.input_steps + self.gap:]
        if self.scaler is not None:
            x, y = self.scaler.transform(x), self.scaler.transform(y)
        return _tensor(x, self.dtype), _tensor(y, self.dtype)

    def __repr__(self) -> str:
        return (f"WindowDataset(len={self._len}, input_steps={self.input_steps}, "
                f"output_steps={self.output_steps}, start={self.start}, stop={self.stop}, "
                f"stride={self.stride}, gap={self.gap}, sample_shape={self.sample_shape}, "
                f"scaler={type(self.scaler).__name__ if self.scaler is not None else None})")


def event_ranges(events: Any, n_time: int, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """The parts of ``events`` (``[lo, hi)`` rows, :math:`(E, 2)`) inside ``[start, stop)``, empty
    ones dropped; ``None`` gives the single range ``[start, stop)``.

    Raises:
        ValueError: events that are not increasing, non-overlapping ranges within ``[0, n_time)``.

    Example::

        >>> event_ranges([[0, 4], [4, 10]], 10, 2, 8).tolist()
        [[2, 4], [4, 8]]
    """
    stop = n_time if stop is None else stop
    if events is None:
        return np.array([[start, stop]], dtype=np.int64)
    ev = np.asarray(events, dtype=np.int64).reshape(-1, 2)
    if ev.size and ((ev[:, 1] <= ev[:, 0]).any() or (ev[1:, 0] < ev[:-1, 1]).any() or ev[0, 0] < 0
                    or ev[-1, 1] > n_time):
        raise ValueError(f"events must be increasing, non-overlapping [start, stop) ranges within "
                         f"[0, {n_time}); got {ev.tolist()}")
    clipped = np.stack([np.maximum(ev[:, 0], start), np.minimum(ev[:, 1], stop)], axis=1) if ev.size else ev
    return clipped[clipped[:, 1] > clipped[:, 0]]


def event_split(events: Any, n_time: int, input_steps: int, output_steps: int, *,
                fractions: Sequence[float] = (0.7, 0.1, 0.2), gap: int = 0) -> Dict[str, Tuple[int, int]]:
    r"""Split a series of events into train, validation and test ranges that keep every event
    whole: each boundary of :func:`chronological_split` (at :math:`\operatorname{round}(n f_0)`
    and :math:`\operatorname{round}(n (f_0 + f_1))`) moves to the nearest event boundary that
    leaves each part with a positive fraction one event at least, so a model can be scored on
    events it never saw.

    Raises:
        ValueError: a part with a positive fraction gets no event long enough for one window
            (the message gives the events' lengths).

    Example::

        >>> event_split([[0, 40], [40, 70], [70, 100]], 100, 4, 2, fractions=(0.6, 0.1, 0.3))
        {'train': (0, 40), 'val': (40, 70), 'test': (70, 100)}
    """
    input_steps, output_steps, _, gap = _check_window(input_steps, output_steps, 1, gap)
    fr = check_fractions("fractions", fractions)
    ev = event_ranges(events, n_time)
    bounds = np.concatenate([ev[:, 0], ev[-1:, 1]])  # E + 1 event boundaries
    rough = _split_bounds(n_time, fr)
    need = [int(f > 0) for f in fr]  # each part with a positive fraction gets one event at least

    def nearest(step: int, lo: int, hi: int) -> int:
        """The index of the boundary in ``bounds[lo:hi + 1]`` nearest to ``step``."""
        hi = max(lo, hi)
        return lo + int(np.argmin(np.abs(bounds[lo:hi + 1] - step)))

    e = len(ev)
    ia = nearest(rough["val"][0], need[0], e - need[1] - need[2])
    ib = nearest(rough["test"][0], ia + need[1], e - need[2]) if fr[2] > 0 else e
    ib = ia if fr[1] == 0 else ib
    a, b = int(bounds[ia]), int(bounds[ib])
    parts = {"train": (0, a), "val": (a, b), "test": (b, n_time)}
    check_parts_have_windows(parts, fr, ev, input_steps + gap + output_steps, "event")
    return parts


def check_parts_have_windows(parts: Dict[str, Tuple[int, int]], fractions: Sequence[float], events: Any,
                             span: int, cut: str) -> None:
    """Raise a ``ValueError`` naming every part with a positive fraction whose events (cut at the
    part's ends) hold no window of ``span`` steps; ``cut`` says how the split was made (``"time"``
    or ``"event"``)."""
    n_time = max(hi for _, hi in parts.values())
    ev = event_ranges(events, n_time)
    short = []
    for (name, (lo, hi)), f in zip(parts.items(), fractions):
        inside = event_ranges(ev, n_time, lo, hi) if hi > lo else ev[:0]
        longest = int((inside[:, 1] - inside[:, 0]).max()) if len(inside) else 0
        if f > 0 and longest < span:
            short.append(f"the {name} part [{lo}, {hi}) ({len(inside)} event{'s' * (len(inside) != 1)}, the longest "
                         f"{longest} step{'s' * (longest != 1)})")
    if short:
        lengths = (ev[:, 1] - ev[:, 0]).tolist()
        more = "" if len(lengths) <= 12 else f" ... ({len(lengths)} events)"
        raise ValueError(f"split by {cut}: {_and(short)} hold{'s' * (len(short) == 1)} no window of input_steps + gap "
                         f"+ output_steps = {span} steps; the events' lengths are {lengths[:12]}{more}; use other "
                         f"fractions, more data or shorter windows")


def chronological_split(n_time: int, input_steps: int, output_steps: int, *,
                        fractions: Sequence[float] = (0.7, 0.1, 0.2),
                        gap: int = 0, events: Any = None) -> Dict[str, Tuple[int, int]]:
    r"""Split the time axis ``[0, n_time)`` into consecutive train, validation and test ranges.

    With fractions :math:`(f_0, f_1, f_2)` the boundaries are
    :math:`a = \operatorname{round}(n f_0)` and :math:`b = \operatorname{round}(n (f_0 + f_1))`:
    train ``[0, a)``, val ``[a, b)``, test ``[b, n)``. The ranges partition ``[0, n)`` in time
    order; a :class:`WindowDataset` built on a range only reads steps inside it, so no input or
    target step of one part appears in another (the price: the windows that would straddle a
    boundary are dropped). Fit scalers on the train range only.

    Each part with a positive fraction must hold at least one window of
    ``input_steps + gap + output_steps`` steps. A fraction of exactly 0 gives an empty range
    ``(a, a)`` (e.g. ``fractions=(0.8, 0.0, 0.2)`` for no validation set).

    With ``events`` (:math:`(E, 2)` ``[start, stop)`` ranges of a series with gaps) each such
    part must hold one window inside one event; :func:`event_split` cuts between events instead.

    Returns:
        ``{"train": (0, a), "val": (a, b), "test": (b, n_time)}``

    Example::

        >>> chronological_split(200, 10, 5)
        {'train': (0, 140), 'val': (140, 160), 'test': (160, 200)}
    """
    n_time = check_int("n_time", n_time, 1)
    input_steps, output_steps, _, gap = _check_window(input_steps, output_steps, 1, gap)
    fr = check_fractions("fractions", fractions)
    span = input_steps + gap + output_steps
    parts = _split_bounds(n_time, fr)
    if events is not None:
        check_parts_have_windows(parts, fr, events, span, "time")
        return parts
    short = _short_parts(parts, fr, span)
    if short:
        raise ValueError(_too_short_for_split(n_time, fr, span, short, parts))
    return parts


def _split_bounds(n_time: int, fr: Sequence[float]) -> Dict[str, Tuple[int, int]]:
    """The train, val and test ranges of ``n_time`` steps split by the fractions ``fr``."""
    a = int(round(n_time * fr[0]))
    b = n_time if fr[2] == 0 else int(round(n_time * (fr[0] + fr[1])))
    if fr[1] == 0:
        b = a
    return {"train": (0, a), "val": (a, b), "test": (b, n_time)}


def _short_parts(parts: Dict[str, Tuple[int, int]], fr: Sequence[float], span: int) -> list:
    """The parts with a positive fraction that get fewer than ``span`` steps."""
    return [name for (name, (lo, hi)), f in zip(parts.items(), fr) if f > 0 and hi - lo < span]


def _steps_for_split(fr: Sequence[float], span: int) -> int:
    r"""The fewest time steps :math:`m` such that every series of :math:`m` steps or more gives each
    part with a positive fraction in ``fr`` at least ``span`` steps (one window).

    Rounding moves each boundary by at most half a step, so a part of fraction :math:`f` gets at
    least :math:`n f - 1` steps and every :math:`n \ge \lceil (\text{span} + 1) / f \rceil` is
    enough; from that bound the search goes down while every length still is."""
    m = max(math.ceil((span + 1) / f) for f in fr if f > 0)
    while m > 1 and not _short_parts(_split_bounds(m - 1, fr), fr, span):
        m -= 1
    return m


def _too_short_for_split(n_time: int, fr: Sequence[float], span: int, short: list,
                         parts: Dict[str, Tuple[int, int]]) -> str:
    """What :func:`chronological_split` says when the parts ``short`` get fewer steps than a
    window needs: every such part at once, and the length that gives every part a window."""
    need = _steps_for_split(fr, span)
    windows = f"one window needs (input_steps + gap + output_steps = {span})"
    if fr[0] == 1:  # a single part: nothing is split off
        return (f"the series has {n_time} time steps, fewer than {windows}; use a series of {need} steps or "
                f"more, or shorter windows")
    fraction = dict(zip(("train", "val", "test"), fr))
    got = []
    for k, name in enumerate(short):
        steps = parts[name][1] - parts[name][0]
        got.append(f"the {name} part (a fraction {fraction[name]:g} of {n_time} time steps) gets {steps} "
                   f"step{'s' * (steps != 1)}" if k == 0 else f"the {name} part ({fraction[name]:g}) gets {steps}")
    larger = ("" if len(short) == sum(f > 0 for f in fr) else f" a larger {short[0]} fraction," if len(short) == 1
              else f" larger {_and(short)} fractions,")
    return f"{_and(got)}, fewer than {windows}; use a series of {need} steps or more,{larger} or shorter windows"


def _and(items: Sequence[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# --------------------------------------------------------------------------------------------
# multi-scale windows: closeness, period and trend (Zhang et al., ST-ResNet, AAAI 2017)
STREAMS = ("closeness", "period", "trend")


def multiscale_offsets(closeness: int, period: int = 0, trend: int = 0, *,
                       period_interval: Optional[int] = None, trend_interval: Optional[int] = None,
                       gap: int = 0) -> Dict[str, np.ndarray]:
    r"""The time offsets, relative to a sample's first target step :math:`t`, of the frames each
    stream reads (oldest first).

    With :math:`l_c, l_p, l_q` = ``closeness``, ``period``, ``trend``, :math:`P, Q` the period
    and trend intervals in steps (one day and one week for ST-ResNet) and :math:`g` = ``gap``:

    .. math::
        \text{closeness}: t - g - l_c, \dots, t - g - 1 \qquad
        \text{period}: t - l_p P, \dots, t - P \qquad
        \text{trend}: t - l_q Q, \dots, t - Q

    Every offset is negative: a sample never reads its own target or a later step. A frame must
    be known when the forecast is made (after step :math:`t - g - 1`), so :math:`P, Q > g`.

    Raises:
        ValueError: a stream is asked for without its interval, or an interval is not above
            ``gap``; the message names the parameter (``period_interval``, ``trend_interval``).

    Example::

        >>> o = multiscale_offsets(3, 2, 1, period_interval=24, trend_interval=168)
        >>> o["closeness"].tolist(), o["period"].tolist(), o["trend"].tolist()
        ([-3, -2, -1], [-48, -24], [-168])
    """
    closeness, period, trend = (check_int("closeness", closeness, 0), check_int("period", period, 0),
                                check_int("trend", trend, 0))
    gap = check_int("gap", gap, 0)
    if closeness + period + trend == 0:
        raise ValueError("closeness, period and trend are all 0: a sample needs at least one input frame")
    out = {"closeness": np.arange(-gap - closeness, -gap, dtype=np.int64)}
    for name, count, interval in (("period", period, period_interval), ("trend", trend, trend_interval)):
        if count == 0:
            out[name] = np.zeros(0, dtype=np.int64)
            continue
        if interval is None:
            raise ValueError(f"{name}={count} needs {name}_interval (steps between the {name}'s frames: one "
                             f"{'day' if name == 'period' else 'week'} for ST-ResNet); give it, or time stamps "
                             f"or steps_per_day to derive it from")
        interval = check_int(f"{name}_interval", interval, 1)
        if interval <= gap:
            raise ValueError(f"{name}_interval must be > gap = {gap} (its frames must be known when the forecast "
                             f"is made), got {interval}")
        out[name] = -interval * np.arange(count, 0, -1, dtype=np.int64)
    return out


def stacked_lags(offsets: Dict[str, np.ndarray]) -> np.ndarray:
    """The offsets of :func:`multiscale_offsets` in the order samples stack them: trend, period,
    closeness (so the last is the newest frame).

    Example::

        >>> stacked_lags(multiscale_offsets(2, 1, 1, period_interval=24, trend_interval=168)).tolist()
        [-168, -24, -2, -1]
    """
    return np.concatenate([offsets["trend"], offsets["period"], offsets["closeness"]])


def multiscale_targets(n_time: int, offsets: Any, output_steps: int, *, start: int = 0,
                       stop: Optional[int] = None, stride: int = 1) -> Tuple[np.ndarray, int]:
    r"""The first target steps :math:`t` of the samples of the part ``[start, stop)``, and how
    many were dropped because a lag reaches before the start of the series.

    A sample belongs to the part that holds its target: :math:`t = \text{start} + i \cdot
    \text{stride}` with :math:`t + \text{output\_steps} \le \text{stop}`; its inputs
    :math:`t + o` (every offset :math:`o < 0`, :func:`multiscale_offsets`) may lie in earlier
    parts (the past is known at forecast time, as in ST-ResNet's protocol) but must be
    :math:`\ge 0`: the samples with :math:`t + \min o < 0` are dropped and counted.

    Returns:
        ``(targets, dropped)``: int64 array of :math:`t`, and the number dropped.

    Example::

        >>> multiscale_targets(10, [-4, -1], 1, start=2, stop=8)   # t = 2..7; t = 2, 3 reach before 0
        (array([4, 5, 6, 7]), 2)
    """
    n_time = check_int("n_time", n_time, 1)
    output_steps = check_int("output_steps", output_steps, 1)
    stride = check_int("stride", stride, 1)
    start = check_int("start", start, 0)
    stop = n_time if stop is None else check_int("stop", stop, 0)
    if stop > n_time:
        raise ValueError(f"stop must be <= n_time = {n_time}, got {stop}")
    offsets = np.asarray(offsets, dtype=np.int64).ravel()
    if offsets.size == 0 or offsets.max() >= 0:
        raise ValueError(f"offsets must be non-empty and all negative (inputs before the target), got "
                         f"{offsets.tolist()}")
    candidates = np.arange(start, max(start, stop - output_steps + 1), stride, dtype=np.int64)
    keep = candidates + offsets.min() >= 0
    return candidates[keep], int((~keep).sum())


class MultiScaleWindowDataset(SeriesByReference, Dataset):
    r"""A map-style ``Dataset`` of multi-scale samples: the closeness, period and trend frames
    before each target (:func:`multiscale_offsets`), stacked in time in the order trend,
    period, closeness, and the ``output_steps`` target frames.

    Item :math:`i` with first target :math:`t` (:func:`multiscale_targets` over ``[start,
    stop)``) is

    .. math::
        x = \text{series}[t + o_1, \dots, t + o_L], \qquad
        y = \text{series}[t : t + \text{out}]

    with :math:`(o_1..o_L)` the trend, period and closeness offsets, so the last input frame
    is the newest closeness frame (persistence stays ``x[-1]``). The targets lie in ``[start,
    stop)``; the inputs may reach back into earlier parts, never forward. ``dropped`` counts
    the samples of the part whose lags reach before step 0.
    Pickling the dataset (``DataLoader`` workers started with *spawn*) sends how to open a
    memmap or :class:`LazyGrid` again, not its content (``features`` and the targets are sent).

    Args:
        series: array-like with time first, ``(T, rows, cols, channels)``.
        output_steps: target frames per sample (>= 1).
        closeness, period, trend: frames per stream :math:`l_c, l_p, l_q` (>= 0, sum >= 1).
        period_interval, trend_interval: :math:`P, Q` in steps (needed when the stream is used).
        start, stop: the part's range of target steps (``stop=None``: the end).
        stride: steps between consecutive targets. gap: steps between the last closeness frame
            and the first target.
        scaler: fitted object with ``transform(array)``, applied to ``x`` and ``y``.
        features: optional ``(T, F)`` array; item :math:`i` then also returns ``features[t]``,
            the features of its first target step (callers align them: calendar features of
            the target time, external series of the last observed step).
        dtype: floating torch dtype of the returned tensors.

    Shapes:
        - item: ``(x, y)`` or ``(x, y, f)`` with x :math:`(l_q + l_p + l_c, \text{rows}, \text{cols},
          \text{channels})`, y :math:`(\text{out}, \text{rows}, \text{cols}, \text{channels})`,
          f :math:`(F,)`.

    Example::

        >>> series = np.arange(200, dtype="float32").reshape(200, 1, 1, 1)
        >>> ds = MultiScaleWindowDataset(series, 1, closeness=2, period=1, trend=1, period_interval=24,
        ...                              trend_interval=168, start=160)
        >>> x, y = ds[0]
        >>> x.flatten().tolist(), y.flatten().tolist(), ds.dropped
        ([0.0, 144.0, 166.0, 167.0], [168.0], 8)
    """

    def __init__(self, series: Any, output_steps: int = 1, *, closeness: int, period: int = 0, trend: int = 0,
                 period_interval: Optional[int] = None, trend_interval: Optional[int] = None, start: int = 0,
                 stop: Optional[int] = None, stride: int = 1, gap: int = 0, scaler: Any = None,
                 features: Any = None, dtype: torch.dtype = torch.float32) -> None:
        shape = series_shape("series", series, 1)
        self.offsets = multiscale_offsets(closeness, period, trend, period_interval=period_interval,
                                          trend_interval=trend_interval, gap=gap)
        self.streams = (int(closeness), int(period), int(trend))
        self.period_interval = None if period == 0 else int(period_interval)
        self.trend_interval = None if trend == 0 else int(trend_interval)
        self.output_steps, self.gap = check_int("output_steps", output_steps, 1), int(gap)
        self.stride = check_int("stride", stride, 1)
        self.start = check_int("start", start, 0)
        self.stop = shape[0] if stop is None else check_int("stop", stop, 0)
        if self.start >= self.stop:
            raise ValueError(f"start must be < stop, got start={self.start}, stop={self.stop}")
        self.lags = stacked_lags(self.offsets)
        self.targets, self.dropped = multiscale_targets(shape[0], self.lags, self.output_steps, start=self.start,
                                                        stop=self.stop, stride=self.stride)
        if scaler is not None and not callable(getattr(scaler, "transform", None)):
            raise TypeError(f"scaler must have a transform(array) method (see make_scaler), "
                            f"got {type(scaler).__name__}")
        if features is not None:
            features = np.asarray(features, dtype=np.float32)
            if features.ndim != 2 or features.shape[0] != shape[0]:
                raise ValueError(f"features must be (T, F) with T = len(series) = {shape[0]}, got shape "
                                 f"{features.shape}")
        self.series, self.scaler, self.features, self.dtype = series, scaler, features, dtype
        self.input_steps = int(self.lags.size)
        self.sample_shape = tuple(shape[1:])

    def __len__(self) -> int:
        return int(self.targets.size)

    def window_times(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """The time indices (into ``series``) that item ``i`` reads as input and as target."""
        if not -len(self) <= int(i) < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} samples")
        t = int(self.targets[int(i)])
        return t + self.lags, np.arange(t, t + self.output_steps)

    def __getitem__(self, i: int):
        xi, yi = self.window_times(i)
        x, y = to_numpy(self.series[xi]), to_numpy(self.series[yi[0]:yi[-1] + 1])
        if self.scaler is not None:
            x, y = self.scaler.transform(x), self.scaler.transform(y)
        if self.features is None:
            return _tensor(x, self.dtype), _tensor(y, self.dtype)
        return _tensor(x, self.dtype), _tensor(y, self.dtype), torch.from_numpy(self.features[yi[0]].copy())

    def __repr__(self) -> str:
        return (f"MultiScaleWindowDataset(len={len(self)}, streams(closeness, period, trend)={self.streams}, "
                f"period_interval={self.period_interval}, trend_interval={self.trend_interval}, "
                f"output_steps={self.output_steps}, start={self.start}, stop={self.stop}, dropped={self.dropped})")
