r"""Sliding windows over one long series: :class:`WindowBuilder` of
:class:`convlstm.data.WindowDataset` parts."""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from ... import data as _data
from ..._errors import ParameterError
from .builder import DatasetBuilder

__all__ = ["WindowBuilder", "split_series"]


def split_series(n_time: int, input_steps: int, output_steps: int, gap: int,
                 split: Sequence[float]) -> Dict[str, Tuple[int, int]]:
    """:func:`convlstm.data.chronological_split` of ``n_time`` steps, its errors naming ``split``
    (and the window options; a split of ``(1, 0, 0)``, one part, is not shown)."""
    try:
        return _data.chronological_split(n_time, input_steps, output_steps, fractions=split, gap=gap)
    except ValueError as exc:
        shown = "" if split[0] == 1 else f"split={list(split)}: "
        raise ParameterError("split", f"{shown}{exc}", also=("input_steps", "gap", "output_steps")) from None


class WindowBuilder(DatasetBuilder):
    r"""Sliding windows over one series, its time axis cut chronologically into train,
    validation and test parts; no window crosses a boundary.

    Shapes:
        - series: :math:`(T, H, W, C)`
        - items: ``x`` :math:`(T_{in}, H, W, C)`, ``y`` :math:`(T_{out}, H, W, C)`
    """

    def __init__(self, series: Any, input_steps: int, output_steps: int, *, stride: int, gap: int,
                 split: Sequence[float]) -> None:
        self.series = series
        self.input_steps, self.output_steps = int(input_steps), int(output_steps)
        self.stride, self.gap = int(stride), int(gap)
        self.parts = split_series(int(series.shape[0]), self.input_steps, self.output_steps, self.gap, split)

    def training_frames(self) -> Tuple[Any, int, int]:
        return (self.series,) + self.parts["train"]

    def dataset(self, start: int, stop: int, scaler: Any) -> "_data.WindowDataset":
        return _data.WindowDataset(self.series, self.input_steps, self.output_steps, start=start, stop=stop,
                                   stride=self.stride, gap=self.gap, scaler=scaler)
