"""Streaming export: one step of the recurrence, for deployments that receive frames one at a time.

:func:`export_step` exports :class:`StepModule`::

    inputs   x_t (B, *S, C) [channels_last] or (B, C, *S),   h, c (B, *S', F) or (B, F, *S')
    outputs  y_t, h_next, c_next      (y_t == h_next, as Keras's ConvLSTM output at step t)

Feed ``h_next, c_next`` back in at the next frame (zeros at the first). Running the step
``T`` times gives the layer's output sequence (``return_sequences=True``) and, after the last
step, its ``return_state`` states. Dropout is not part of inference and is left out;
``go_backwards`` and :class:`convlstm.Bidirectional` need the whole sequence and cannot stream
(export them whole with :func:`convlstm.onnx.export`).

Example::

    >>> layer = convlstm.ConvLSTM2D(8, 3, padding="same", in_channels=1).eval()
    >>> convlstm.onnx.export_step(layer, "step.onnx", torch.zeros(1, 64, 64, 1))
    >>> sess = onnxruntime.InferenceSession("step.onnx")
    >>> h = c = np.zeros((1, 64, 64, 8), np.float32)
    >>> for frame in frames:                        # frame: (1, 64, 64, 1)
    ...     y, h, c = sess.run(None, {"x_t": frame, "h": h, "c": c})
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from ..layers import ConvLSTM
from ._exporter import PathLike, run_exporter
from .sequence import DEFAULT_OPSET, _at_least_two

__all__ = ["StepModule", "export_step"]


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
                opset_version: int = DEFAULT_OPSET, dynamic_batch: bool = True):
    """Export one step of ``layer`` (:class:`StepModule`) to ONNX: inputs ``x_t, h, c``, outputs
    ``y_t, h_next, c_next`` (see the module docstring for the streaming loop).

    Args:
        layer: a built ConvLSTM layer.
        path: the ``.onnx`` file, written atomically.
        example_frame: one frame ``x_t`` of the input, e.g. ``(B, H, W, C)`` channels_last; the
            graph is fixed to its spatial size.
        opset_version: ONNX opset, 18 or more (default 18).
        dynamic_batch: the batch axis of the three inputs is the symbol ``batch`` (any size,
            whatever the example's, 1 included).

    Returns:
        the path written.
    """
    step = StepModule(layer)
    h = torch.zeros(step.state_shape(example_frame), dtype=layer.cell.weight_ih.dtype)
    args = (example_frame, h, h.clone())
    shapes = None
    if dynamic_batch:
        args = tuple(_at_least_two(t, 0) for t in args)
        batch = torch.export.Dim("batch", min=1)
        shapes = tuple({0: batch} for _ in args)
    return run_exporter(step, args, path, input_names=["x_t", "h", "c"], output_names=["y_t", "h_next", "c_next"],
                        opset=opset_version, dynamic_shapes=shapes, axis_names={(0, 0): "batch"} if dynamic_batch else None)
