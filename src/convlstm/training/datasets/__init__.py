r"""The dataset builders of :class:`~convlstm.training.GridDataModule`, one per data mode. Each
takes the loaded data (physical units, checked finite) and the run's options, splits it into
train/validation/test :attr:`~DatasetBuilder.parts`, gives the training frames to fit the scaler
and statistics on, and builds the parts' datasets with that scaler (:class:`DatasetBuilder`):

- :class:`SequenceBuilder`: separate sequences (Moving MNIST) -> :class:`SequenceDataset`;
- :class:`WindowBuilder`: one long series -> sliding :class:`convlstm.data.WindowDataset`;
- :class:`MultiScaleBuilder`: one long series -> closeness/period/trend
  :class:`convlstm.data.MultiScaleWindowDataset` samples with calendar / external features.
"""
from .builder import DatasetBuilder
from .multiscale import MultiScaleBuilder
from .sequences import SequenceBuilder, SequenceDataset
from .windows import WindowBuilder

__all__ = ["DatasetBuilder", "SequenceBuilder", "SequenceDataset", "WindowBuilder", "MultiScaleBuilder"]
