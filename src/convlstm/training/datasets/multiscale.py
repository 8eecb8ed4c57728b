r"""Closeness, period and trend samples with calendar / external features:
:class:`MultiScaleBuilder` of :class:`convlstm.data.MultiScaleWindowDataset` parts."""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from torch.utils.data import Dataset

from ... import data as _data
from ..multiscale import MultiScale
from .builder import DatasetBuilder
from .windows import split_series

__all__ = ["MultiScaleBuilder"]


class MultiScaleBuilder(DatasetBuilder):
    r"""Multi-scale samples over one series, with the streams and features of a resolved
    :class:`~convlstm.training.multiscale.MultiScale` (:meth:`~MultiScale.resolve`). A sample
    belongs to the part of its target; its inputs may reach back into earlier parts, so a part
    needs room for one target only. The scaler and the statistics see the training part's steps.

    Shapes:
        - series: :math:`(T, H, W, C)`
        - items: ``x`` :math:`(l_q + l_p + l_c, H, W, C)` (trend, period, closeness frames),
          ``y`` :math:`(T_{out}, H, W, C)`, and ``f`` :math:`(F,)` when there are features.
    """

    def __init__(self, series: Any, multiscale: MultiScale, output_steps: int, *, stride: int, gap: int,
                 split: Sequence[float]) -> None:
        if not multiscale.in_use:
            raise ValueError("MultiScaleBuilder needs a MultiScale resolved on the series (MultiScale.resolve)")
        self.series, self.multiscale = series, multiscale
        self.output_steps, self.stride, self.gap = int(output_steps), int(stride), int(gap)
        self.streams = multiscale.streams
        self.num_features = multiscale.num_features
        self.input_steps = sum(self.streams)
        self.parts = split_series(int(series.shape[0]), 1, self.output_steps, 0, split)

    def training_frames(self) -> Tuple[Any, int, int]:
        return (self.series,) + self.parts["train"]

    def dataset(self, start: int, stop: int, scaler: Any) -> "_data.MultiScaleWindowDataset":
        c, p, t = self.streams
        ms = self.multiscale
        return _data.MultiScaleWindowDataset(self.series, self.output_steps, closeness=c, period=p, trend=t,
                                             period_interval=ms.period_interval, trend_interval=ms.trend_interval,
                                             start=start, stop=stop, stride=self.stride, gap=self.gap,
                                             scaler=scaler, features=ms.features)

    def build(self, scaler: Any) -> Dict[str, Dataset]:
        """The parts' datasets; raises when every lag of the training part's samples reaches
        before the series' start."""
        datasets = super().build(scaler)
        if len(datasets["train"]) == 0:
            c, p, t = self.streams
            raise ValueError(f"no training sample: with closeness {c}, period {p} x {self.multiscale.period_interval} "
                             f"and trend {t} x {self.multiscale.trend_interval} steps every lag of the training part's "
                             f"{self.parts['train'][1]} steps reaches before the series' start; use a smaller "
                             f"--period/--trend, or a longer series")
        return datasets
