"""ONNX export of models built from the library's layers, and a streaming one-step export.

Whole sequences: any module made of :class:`convlstm.ConvLSTM1D` / ``2D`` / ``3D``,
:class:`convlstm.Bidirectional`, the modules of :mod:`convlstm.keras` and ordinary torch layers
exports with the standard :func:`torch.onnx.export` (the TorchDynamo exporter, ``dynamo=True``);
:func:`export` is a thin wrapper that writes the file atomically. The time loop is unrolled, so the
exported graph has the example's number of time steps.

Streaming: deployments that receive frames one at a time export one step of the recurrence,
:class:`StepModule`, with :func:`export_step`::

    inputs   x_t (B, *S, C) [channels_last] or (B, C, *S),   h, c (B, *S', F) or (B, F, *S')
    outputs  y_t, h_next, c_next      (y_t == h_next, as Keras's ConvLSTM output at step t)

and feed ``h_next, c_next`` back in at the next frame (zeros at the first). Running the step
``T`` times gives the layer's output sequence (``return_sequences=True``) and, after the last
step, its ``return_state`` states. Dropout is not part of inference and is left out;
``go_backwards`` and :class:`convlstm.Bidirectional` need the whole sequence and cannot stream.

Example::

    >>> layer = convlstm.ConvLSTM2D(8, 3, padding="same", in_channels=1).eval()
    >>> convlstm.onnx.export_step(layer, "step.onnx", torch.zeros(1, 64, 64, 1))
    >>> sess = onnxruntime.InferenceSession("step.onnx")
    >>> h = c = np.zeros((1, 64, 64, 8), np.float32)
    >>> for frame in frames:                        # frame: (1, 64, 64, 1)
    ...     y, h, c = sess.run(None, {"x_t": frame, "h": h, "c": c})
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ._io import atomic_path
from .layers import ConvLSTM

__all__ = ["export", "StepModule", "export_step", "DEFAULT_OPSET"]

DEFAULT_OPSET = 18
PathLike = Union[str, "os.PathLike[str]"]


def _export(module: nn.Module, args: Tuple, path: PathLike, input_names, output_names, opset: int,
            dynamic_batch: bool) -> Path:
    path = Path(path)
    kwargs = {}
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=2 ** 16)
        kwargs["dynamic_shapes"] = tuple({0: batch} for _ in args)
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path) as tmp:
            program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=input_names,
                                        output_names=output_names, verbose=False, **kwargs)
            program.save(str(tmp))
    finally:
        module.train(was_training)
    return path


def export(module: nn.Module, path: PathLike, example_inputs, *, input_names: Optional[Sequence[str]] = None,
           output_names: Optional[Sequence[str]] = None, opset_version: int = DEFAULT_OPSET,
           dynamic_batch: bool = False) -> Path:
    """Export ``module`` (in eval mode) to ONNX with :func:`torch.onnx.export` (``dynamo=True``).

    Args:
        module: a model built from the library's layers (a :class:`convlstm.keras.KerasModel` too).
        path: the ``.onnx`` file, written atomically.
        example_inputs: a tensor or a tuple of tensors, e.g. ``(B, T, H, W, C)``; the graph is
            specialised to its time steps and spatial size.
        input_names, output_names: ONNX names (default ``input_0, ...`` / torch's).
        opset_version: ONNX opset (default 18).
        dynamic_batch: make the batch axis of every input dynamic.

    Returns:
        the path written.
    """
    args = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    if input_names is None:
        input_names = [f"input_{i}" for i in range(len(args))]
    return _export(module, args, path, list(input_names), None if output_names is None else list(output_names),
                   opset_version, dynamic_batch)


class StepModule(nn.Module):
    """One step of a ConvLSTM layer, for streaming inference: ``(x_t, h, c) -> (y_t, h, c)``.

    Args:
        layer: a built :class:`convlstm.ConvLSTM1D` / ``2D`` / ``3D`` (its weights are shared, not copied).

    Shape (the layer's ``data_format``; channels_last shown):
        - x_t: :math:`(B, *S, C_{in})`
        - h, c: :math:`(B, *S', F)` with :math:`S'` the input convolution's output size
        - returns ``y_t, h_next, c_next``, each :math:`(B, *S', F)`; ``y_t`` is ``h_next``.
    """

    def __init__(self, layer: ConvLSTM):
        super().__init__()
        if not isinstance(layer, ConvLSTM):
            raise TypeError(f"StepModule takes a ConvLSTM1D/2D/3D layer, got {type(layer).__name__} "
                            "(Bidirectional and go_backwards need the whole sequence)")
        if layer.cell is None:
            raise ValueError("StepModule: the layer has no weights yet; pass in_channels= or call it once")
        if layer.go_backwards:
            raise ValueError("StepModule: a go_backwards layer reads the sequence from its end and cannot stream")
        self.layer = layer
        self.channels_last = layer.data_format == "channels_last"

    def state_shape(self, x_t: torch.Tensor) -> Tuple[int, ...]:
        """The shape of ``h`` and ``c`` for a frame ``x_t``."""
        spatial_in = tuple(x_t.shape[1:-1] if self.channels_last else x_t.shape[2:])
        spatial = self.layer.cell.output_spatial(spatial_in)
        f = self.layer.filters
        return (x_t.shape[0],) + spatial + (f,) if self.channels_last else (x_t.shape[0], f) + spatial

    def forward(self, x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        cell = self.layer.cell
        if self.channels_last:
            x_t, h, c = x_t.movedim(-1, 1), h.movedim(-1, 1), c.movedim(-1, 1)
        x_t = x_t.to(cell.weight_ih.dtype)
        h_new, c_new = cell.step(cell.input_projection(x_t), h, c)
        if self.channels_last:
            h_new, c_new = h_new.movedim(1, -1), c_new.movedim(1, -1)
        return h_new, h_new, c_new


def export_step(layer: ConvLSTM, path: PathLike, example_frame: torch.Tensor, *,
                opset_version: int = DEFAULT_OPSET, dynamic_batch: bool = False) -> Path:
    """Export one step of ``layer`` (:class:`StepModule`) to ONNX: inputs ``x_t, h, c``, outputs
    ``y_t, h_next, c_next`` (see the module docstring for the streaming loop).

    Args:
        layer: a built ConvLSTM layer.
        path: the ``.onnx`` file, written atomically.
        example_frame: one frame ``x_t`` of the input, e.g. ``(B, H, W, C)`` channels_last.
    """
    step = StepModule(layer)
    h = torch.zeros(step.state_shape(example_frame), dtype=layer.cell.weight_ih.dtype)
    return _export(step, (example_frame, h, h.clone()), path, ["x_t", "h", "c"], ["y_t", "h_next", "c_next"],
                   opset_version, dynamic_batch)
