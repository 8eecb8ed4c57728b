"""ONNX export of models built from the library's layers.

- :func:`export`: whole sequences, one file for every batch size and number of time steps (each
  ConvLSTM time loop an ONNX ``Scan``; see :mod:`convlstm.onnx.sequence`), or the unrolled,
  fixed-shape graph with ``dynamic_time=False``.
- :func:`export_step`: one step of a layer, :class:`StepModule`, for streaming
  (:mod:`convlstm.onnx.step`).
- :func:`describe` / :func:`signature`: the inputs and outputs of a file with their symbolic axes;
  :func:`metadata`: its ``metadata_props`` (a run's file records its units, scaler and time steps).

The files run in onnxruntime and OpenVINO (``docs/export.md``). Exporting needs the ``onnx``
extra (:data:`INSTALL_HINT`: onnx, onnxscript, onnxruntime); without it these
functions raise an :class:`ImportError` that says so, and importing this module still works.
"""
from ._deps import INSTALL_HINT
from .graph import describe, metadata, signature
from .sequence import DEFAULT_OPSET, export
from .step import StepModule, export_step

__all__ = ["export", "StepModule", "export_step", "describe", "signature", "metadata", "DEFAULT_OPSET", "INSTALL_HINT"]
