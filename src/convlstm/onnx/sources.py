"""Export from files: a training run, a checkpoint or a Keras model file (``convlstm export``)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import torch
import torch.nn as nn

from .._io import PathLike
from .sequence import DEFAULT_OPSET, export

__all__ = ["load_for_export", "export_file"]

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def load_for_export(source: PathLike) -> Tuple[nn.Module, tuple, list]:
    """The model in ``source`` with an example input and the input names.

    - a Keras file (``.h5``, ``.keras``): :func:`convlstm.keras.load_model`; the example has the
      file's input shapes (inputs named as in Keras);
    - a run folder or a ``.ckpt``: the checkpoint's network (as ``convlstm predict`` loads it);
      the example is one window of the training data's shape, ``(1, input_steps, rows, cols,
      channels)``, input ``x``. The network reads and writes **scaled** values: apply the run's
      scaler around the graph as ``convlstm predict`` does.
    """
    path = Path(source)
    if path.suffix.lower() in KERAS_SUFFIXES or path.name.lower().endswith((".h5.gz", ".keras.gz")):
        from ..keras import load_model

        model = load_model(path)
        return model, tuple(model.example_inputs(1)), [r[0] for r in model.input_refs]
    from ..training.runs import find_checkpoint, load_module

    module, ckpt = load_module(find_checkpoint(path))
    state = ckpt.get("GridDataModule") or {}
    if "input_steps" not in state or "sample_shape" not in state:
        raise ValueError(f"checkpoint {str(path)!r} has no data state (input_steps, sample_shape) to build an "
                         "example input from; export the model from Python with convlstm.onnx.export")
    example = torch.zeros((1, int(state["input_steps"])) + tuple(int(n) for n in state["sample_shape"]))
    return module.model, (example,), ["x"]


def export_file(source: PathLike, out: PathLike, *, opset_version: int = DEFAULT_OPSET,
                dynamic_time: bool = True, min_time: int = 1) -> Path:
    """Export the model in ``source`` (see :func:`load_for_export`) to ``out`` with
    :func:`convlstm.onnx.export`: time and batch dynamic unless ``dynamic_time=False`` (batch
    still dynamic); ``min_time`` as there."""
    model, example, names = load_for_export(source)
    return export(model, out, example, input_names=names, opset_version=opset_version, dynamic_time=dynamic_time,
                  min_time=min_time)
