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
    validation and test parts; no window crosses a boundary, nor the edge of an event (the
    gap-free stretches of a series joined from several files, :class:`convlstm.data.GridArchive`).

    ``split_by="time"`` cuts at the fractions of the time axis (:func:`convlstm.data.chronological_split`);
    ``"event"`` moves each cut to an event boundary (:func:`convlstm.data.event_split`), so that no
    event is shared by two parts.

    Shapes:
        - series: :math:`(T, H, W, C)`; events: :math:`(E, 2)` ``[start, stop)`` ranges or ``None``
        - items: ``x`` :math:`(T_{in}, H, W, C)`, ``y`` :math:`(T_{out}, H, W, C)`
    """

    def __init__(self, series: Any, input_steps: int, output_steps: int, *, stride: int, gap: int,
                 split: Sequence[float], events: Any = None, split_by: str = "time") -> None:
        self.series, self.events = series, events
        self.input_steps, self.output_steps = int(input_steps), int(output_steps)
        self.stride, self.gap = int(stride), int(gap)
        n = int(series.shape[0])
        if events is None or len(events) <= 1:
            self.parts = split_series(n, self.input_steps, self.output_steps, self.gap, split)
            return
        try:
            if split_by == "event":
                self.parts = _data.event_split(events, n, self.input_steps, self.output_steps, fractions=split,
                                               gap=self.gap)
            else:
                self.parts = _data.chronological_split(n, self.input_steps, self.output_steps, fractions=split,
                                                       gap=self.gap, events=events)
        except ValueError as exc:
            raise ParameterError("split", str(exc), also=("split_by", "input_steps", "gap", "output_steps")) from None

    def training_frames(self) -> Tuple[Any, int, int]:
        return (self.series,) + self.parts["train"]

    def dataset(self, start: int, stop: int, scaler: Any) -> "_data.WindowDataset":
        return _data.WindowDataset(self.series, self.input_steps, self.output_steps, start=start, stop=stop,
                                   stride=self.stride, gap=self.gap, scaler=scaler, events=self.events)
