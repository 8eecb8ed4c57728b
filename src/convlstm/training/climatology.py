r"""The climatology baselines of :class:`~convlstm.training.GridDataModule`, fitted on the
training frames: the mean frame (with the value range), and the mean of each cell for each hour of
the day (from the series' time stamps)."""
from __future__ import annotations

import math
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._checks import check_int

__all__ = ["mean_frame", "hour_of_day_means", "chunk_frames", "CHUNK_BYTES", "target_hours", "unseen_hours"]

#: Bytes of float64 that one chunk of frames may take while a statistic is accumulated.
CHUNK_BYTES = 64 * 2 ** 20


def chunk_frames(frame_shape: Sequence[int], budget: int = CHUNK_BYTES) -> int:
    r"""How many frames of ``frame_shape`` one chunk holds: :math:`\max(1, \lfloor \text{budget} /
    (8 \prod \text{frame\_shape}) \rfloor)`, so that a chunk read as float64 takes at most
    ``budget`` bytes (or one frame, when a frame alone is larger)."""
    values = int(np.prod([int(v) for v in frame_shape], dtype=np.int64)) if len(frame_shape) else 1
    return max(1, int(budget) // (8 * max(1, values)))


def _range_and_chunk(series: Any, start: int, stop: int, chunk: Optional[int]) -> Tuple[Tuple[int, ...], int]:
    """The frame shape of ``series`` and the chunk length in frames, after checking the range."""
    shape = tuple(int(v) for v in series.shape)
    start, stop = check_int("start", start, 0), check_int("stop", stop, 0)
    if not start < stop <= shape[0]:
        raise ValueError(f"start, stop must satisfy 0 <= start < stop <= len(series) = {shape[0]}, "
                         f"got start={start}, stop={stop}")
    chunk = chunk_frames(shape[1:]) if chunk is None else check_int("chunk", chunk, 1)
    return shape[1:], chunk


def _chunks(series: Any, start: int, stop: int, chunk: int) -> Iterator[Tuple[int, np.ndarray]]:
    """``(t0, block)``: frames ``[t0, min(stop, t0 + chunk))`` of ``series`` as float64."""
    for t0 in range(start, stop, chunk):
        yield t0, np.asarray(series[t0:min(stop, t0 + chunk)], dtype=np.float64)


def mean_frame(series: Any, start: int, stop: int, *,
               chunk: Optional[int] = None) -> Tuple[np.ndarray, float, float]:
    r"""The mean frame (float64, data units), minimum and maximum of ``series[start:stop]``:

    .. math::
        \bar{x}_{hwc} = \frac{1}{\text{stop} - \text{start}} \sum_{t=\text{start}}^{\text{stop}-1} x_{thwc}

    read in one pass of ``chunk`` frames at a time (by default :func:`chunk_frames`: about
    :data:`CHUNK_BYTES` of float64), summed into a float64 accumulator, so that a memmap or
    :class:`~convlstm.data.LazyGrid` is never loaded whole: memory is one chunk plus one frame
    whatever the length of the series.

    Shapes:
        - series: :math:`(T, H, W, C)`; the mean frame: :math:`(H, W, C)`.
    """
    _, chunk = _range_and_chunk(series, start, stop, chunk)
    total = None
    lo, hi = math.inf, -math.inf
    for _, block in _chunks(series, start, stop, chunk):
        s = block.sum(axis=0)
        total = s if total is None else total + s
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return total / (stop - start), lo, hi


def hour_of_day_means(series: Any, hours: np.ndarray, start: int, stop: int, *,
                      chunk: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    r"""The mean of each cell for each hour of the day over the frames ``series[start:stop]``,
    and how many frames fell on each hour (an hour no frame fell on takes the overall mean, as
    :class:`convlstm.baselines.ClimatologyByTimeOfDay` does):

    .. math::
        m_{k,hwc} = \frac{1}{n_k} \sum_{t:\ \text{hours}_t = k} x_{thwc}, \qquad
        n_k = |\{t : \text{hours}_t = k\}|, \qquad k = 0, \dots, 23

    with :math:`m_k = \bar{x}` (the mean frame) where :math:`n_k = 0`. The frames are read in
    one pass of ``chunk`` frames at a time (by default :func:`chunk_frames`) into float64 sums,
    so memory is one chunk plus 25 frames of float64 whatever the length of the series.

    Shapes:
        - series: :math:`(T, H, W, C)`; hours: :math:`(T,)`, the hour of the day of each frame
          (integers in ``[0, 24)``).
        - output: means :math:`(24, H, W, C)` float32, counts :math:`(24,)` int64.
    """
    frame, chunk = _range_and_chunk(series, start, stop, chunk)
    h = np.asarray(hours)
    if h.ndim != 1 or h.shape[0] < stop or h.dtype.kind not in "iu":
        raise ValueError(f"hours must be a 1-D integer array with one hour per frame (at least {stop}), got "
                         f"dtype {h.dtype} and shape {h.shape}")
    h = h[start:stop].astype(np.int64)
    if h.size and (h.min() < 0 or h.max() >= 24):
        raise ValueError(f"hours must be in [0, 24), got values from {h.min()} to {h.max()}")
    sums = np.zeros((24,) + frame)
    for t0, block in _chunks(series, start, stop, chunk):
        hb = h[t0 - start:t0 - start + len(block)]
        for k in np.unique(hb):
            sums[k] += block[hb == k].sum(axis=0)
    counts = np.bincount(h, minlength=24).astype(np.int64)
    overall = sums.sum(axis=0) / (stop - start)
    seen = counts.reshape((24,) + (1,) * len(frame)) > 0
    means = np.where(seen, sums / np.maximum(counts, 1).reshape((24,) + (1,) * len(frame)), overall)
    return means.astype(np.float32), counts


def target_hours(dataset: Any, hours: np.ndarray, first: int, count: int) -> np.ndarray:
    r"""The hour of the day of each target frame of samples ``first .. first + count - 1`` of
    ``dataset`` (which has ``window_times(i)``).

    Shapes:
        - hours: :math:`(T,)`; output: :math:`(\text{count}, T_{out})`.
    """
    return np.stack([hours[dataset.window_times(i)[1]] for i in range(first, first + count)])


def unseen_hours(dataset: Any, hours: np.ndarray, counts: np.ndarray) -> List[int]:
    """The hours of the day of ``dataset``'s target frames on which no training frame fell
    (``counts[h] == 0``), sorted."""
    in_targets = {int(h) for i in range(len(dataset)) for h in hours[dataset.window_times(i)[1]]}
    return sorted(h for h in in_targets if counts[h] == 0)
