r"""The climatology baselines of :class:`~convlstm.training.GridDataModule`, fitted on the
training frames: the mean frame (with the value range), and the mean of each cell for each hour of
the day (from the series' time stamps)."""
from __future__ import annotations

import math
from typing import Any, List, Tuple

import numpy as np

__all__ = ["mean_frame", "hour_of_day_means", "target_hours", "unseen_hours"]

_CHUNK_BYTES = 32 * 2 ** 20


def mean_frame(series: Any, start: int, stop: int) -> Tuple[np.ndarray, float, float]:
    r"""The mean frame (float64, data units), minimum and maximum of ``series[start:stop]``, read
    in chunks of about 32 MiB (a memmap is not loaded whole).

    Shapes:
        - series: :math:`(T, H, W, C)`; the mean frame: :math:`(H, W, C)`.
    """
    frame = series[start:start + 1]
    frame_values = int(np.prod(np.shape(frame)[1:]))
    chunk = max(1, _CHUNK_BYTES // (8 * max(1, frame_values)))
    total = None
    lo, hi = math.inf, -math.inf
    for t0 in range(start, stop, chunk):
        block = np.asarray(series[t0:min(stop, t0 + chunk)], dtype=np.float64)
        s = block.sum(axis=0)
        total = s if total is None else total + s
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return total / max(1, stop - start), lo, hi


def hour_of_day_means(series: Any, hours: np.ndarray, start: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
    r"""The mean of each cell for each hour of the day over the frames ``series[start:stop]``,
    and how many frames fell on each hour (an hour no frame fell on takes the overall mean, see
    :class:`convlstm.metrics.ClimatologyByTimeOfDay`).

    Shapes:
        - series: :math:`(T, H, W, C)`; hours: :math:`(T,)`, the hour of the day of each frame.
        - output: means :math:`(24, H, W, C)` float32, counts :math:`(24,)` int64.
    """
    from ..metrics import ClimatologyByTimeOfDay

    clim = ClimatologyByTimeOfDay(24).fit(np.asarray(series[start:stop], dtype=np.float64), hours[start:stop])
    return clim.means.astype(np.float32), clim.counts.astype(np.int64)


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
