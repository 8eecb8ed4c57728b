"""Keras's ``Bidirectional`` wrapper for the ConvLSTM layers."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from .layers import ConvLSTM

__all__ = ["Bidirectional"]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(nn.Module):
    r"""Run a ConvLSTM layer forwards and a copy of it backwards, and merge the two outputs.

    As Keras's ``Bidirectional``: the backward layer is a fresh copy of ``layer``'s configuration
    with ``go_backwards`` flipped (its own weights); with ``return_sequences`` its output sequence is
    flipped back so that step ``t`` of both halves belongs to input step ``t``; masked steps give
    zero outputs when sequences are returned.

    Args:
        layer: a :class:`convlstm.ConvLSTM1D`/``2D``/``3D``.
        merge_mode: ``'concat'`` (along the channel axis), ``'sum'``, ``'mul'``, ``'ave'`` or ``None``
            (return the two outputs as a list).
        backward_layer: optional layer to use for the backward direction (its ``go_backwards``
            must be the opposite of ``layer``'s).

    Shape:
        Input as ``layer``'s. Output: ``layer``'s output with ``2F`` channels for ``'concat'``; with
        ``return_state`` the tuple ``(output, h_fwd, c_fwd, h_bwd, c_bwd)``. ``initial_state`` is
        ``[h_fwd, c_fwd, h_bwd, c_bwd]``.

    Example::

        >>> bi = Bidirectional(ConvLSTM2D(4, 3, padding="same", return_sequences=True))
        >>> bi(torch.randn(2, 5, 8, 8, 1)).shape
        torch.Size([2, 5, 8, 8, 8])
    """

    def __init__(self, layer: ConvLSTM, merge_mode: Optional[str] = "concat",
                 backward_layer: Optional[ConvLSTM] = None):
        super().__init__()
        if not isinstance(layer, ConvLSTM):
            raise TypeError(f"Bidirectional wraps a ConvLSTM1D/2D/3D layer, got {type(layer).__name__}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode={merge_mode!r} is not allowed; allowed: {', '.join(map(repr, MERGE_MODES))}")
        if backward_layer is None:
            config = layer.get_config()
            config["go_backwards"] = not layer.go_backwards
            backward_layer = type(layer).from_config(config)
        else:
            if not isinstance(backward_layer, ConvLSTM):
                raise TypeError(f"backward_layer must be a ConvLSTM layer, got {type(backward_layer).__name__}")
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError("backward_layer.go_backwards must be the opposite of layer.go_backwards")
            for key in ("return_sequences", "return_state", "data_format"):
                if getattr(backward_layer, key) != getattr(layer, key):
                    raise ValueError(f"backward_layer.{key} differs from layer.{key}")
        self.forward_layer = layer
        self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state

    def _channel_axis(self) -> int:
        if self.forward_layer.data_format == "channels_last":
            return -1
        return 2 if self.return_sequences else 1

    def forward(self, inputs, initial_state: Optional[Sequence] = None, mask=None, training=None):
        fwd_state = bwd_state = None
        if initial_state is not None:
            if len(initial_state) != 4:
                raise ValueError("Bidirectional initial_state must be [h_fwd, c_fwd, h_bwd, c_bwd], "
                                 f"got {len(initial_state)} tensors")
            fwd_state, bwd_state = list(initial_state[:2]), list(initial_state[2:])
        y = self.forward_layer(inputs, initial_state=fwd_state, mask=mask, training=training)
        y_rev = self.backward_layer(inputs, initial_state=bwd_state, mask=mask, training=training)
        states = ()
        if self.return_state:
            y, *fs = y
            y_rev, *bs = y_rev
            states = tuple(fs) + tuple(bs)
        if self.return_sequences:
            y_rev = torch.flip(y_rev, dims=(1,))
        if self.merge_mode == "concat":
            out = torch.cat([y, y_rev], dim=self._channel_axis())
        elif self.merge_mode == "sum":
            out = y + y_rev
        elif self.merge_mode == "mul":
            out = y * y_rev
        elif self.merge_mode == "ave":
            out = (y + y_rev) / 2
        else:
            out = [y, y_rev]
        if self.return_state:
            return (*out, *states) if self.merge_mode is None else (out, *states)
        return out

    def reset_states(self, states=None):
        if states is None:
            self.forward_layer.reset_states()
            self.backward_layer.reset_states()
        else:
            self.forward_layer.reset_states(states[:2])
            self.backward_layer.reset_states(states[2:])

    def extra_repr(self) -> str:
        return f"merge_mode={self.merge_mode!r}"
