r"""The interface of the dataset builders of :class:`~convlstm.training.GridDataModule`: one per
data mode (:class:`~.sequences.SequenceBuilder`, :class:`~.windows.WindowBuilder`,
:class:`~.multiscale.MultiScaleBuilder`)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from torch.utils.data import Dataset

__all__ = ["DatasetBuilder"]


class DatasetBuilder:
    r"""Splits loaded data into train/validation/test parts and builds their datasets.

    A builder is made from the loaded data (in physical units, checked finite) and the run's
    options, and fixes :attr:`parts` at once, so that the scaler and the statistics are fitted on
    :meth:`training_frames` before any dataset exists; :meth:`build` then makes one dataset per
    non-empty part with the fitted scaler.

    Attributes:
        parts: ``{"train": (start, stop), "val": ..., "test": ...}``: time steps of the series, or
            indices of the sequences; an empty part has ``stop == start``.
        input_steps: input frames per sample :math:`T_{in}`.
        streams: ``(closeness, period, trend)`` frames of multi-scale samples, ``None`` otherwise.
        num_features: features per sample :math:`F` (0: items are ``(x, y)``, else ``(x, y, f)``).

    Shapes:
        - :meth:`training_frames`: :math:`(T, H, W, C)`, time first.
        - dataset items: ``x`` :math:`(T_{in}, H, W, C)`, ``y`` :math:`(T_{out}, H, W, C)`,
          ``f`` :math:`(F,)`.
    """

    parts: Dict[str, Tuple[int, int]]
    input_steps: int
    streams: Optional[Tuple[int, int, int]] = None
    num_features: int = 0

    def training_frames(self) -> Tuple[Any, int, int]:
        """``(frames, start, stop)``: the scaler and the statistics are fitted on
        ``frames[start:stop]``, the frames of the training part."""
        raise NotImplementedError

    def dataset(self, start: int, stop: int, scaler: Any) -> Dataset:
        """The dataset of the part ``[start, stop)``, scaled with ``scaler``."""
        raise NotImplementedError

    def build(self, scaler: Any) -> Dict[str, Dataset]:
        """One dataset per non-empty part, in the order train, val, test."""
        return {name: self.dataset(lo, hi, scaler) for name, (lo, hi) in self.parts.items() if hi > lo}
