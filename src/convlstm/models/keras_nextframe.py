"""The keras-io example "Next-Frame Video Prediction with Convolutional LSTMs" (Amogh Joshi, 2021)."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import activations as _activations
from .. import initializers as _initializers
from .._ops import keras_to_torch_kernel
from .._checks import check_bool, check_choice, check_positive_int
from ..layers import ConvLSTM2D
from ._common import check_model_input, int_tuple, optional_positive_int
from .registry import register_model

__all__ = ["KerasNextFrame", "KERAS_BN_MOMENTUM", "KERAS_BN_EPSILON"]

#: torch's BatchNorm momentum equal to Keras's default ``momentum=0.99`` (torch weighs the new batch).
KERAS_BN_MOMENTUM = 0.01
#: Keras's default BatchNormalization epsilon.
KERAS_BN_EPSILON = 1e-3


def _tf_same(k: int):
    total = k - 1
    return total // 2, total - total // 2


_EXAMPLE_KERNEL_SIZES = (5, 3, 1)  # the keras-io example's three layers

class KerasNextFrame(nn.Module):
    r"""Stacked ConvLSTM2D layers with BatchNorm and a Conv3D head, as the keras-io example
    "Next-frame video prediction with convolutional LSTMs" (Amogh Joshi, 2021) builds it::

        ConvLSTM2D(64, 5x5, same, return_sequences, relu) -> BatchNormalization
        ConvLSTM2D(64, 3x3, same, return_sequences, relu) -> BatchNormalization
        ConvLSTM2D(64, 1x1, same, return_sequences, relu)
        Conv3D(channels, 3x3x3, same, sigmoid)

    (the example puts BatchNormalization after the first two ConvLSTM layers only; set
    ``batch_norm_last=True`` for one after the last too). The model maps :math:`T` frames to
    :math:`T` frames; output frame :math:`t` is the prediction of input frame :math:`t + 1`
    (train it on ``x = seq[:, :-1], y = seq[:, 1:]``).

    BatchNorm normalises over the channel axis (statistics over batch, time, rows and cols, like
    Keras's ``BatchNormalization(axis=-1)``) with torch's ``BatchNorm3d``. Keras's defaults are
    ``momentum=0.99, epsilon=1e-3`` where Keras's momentum weighs the *old* moving average; torch's
    weighs the new batch, so ``momentum=0.01, eps=1e-3`` here (:data:`KERAS_BN_MOMENTUM`,
    :data:`KERAS_BN_EPSILON`). One difference remains: torch updates the running variance with the
    unbiased batch variance, Keras with the biased one (a factor :math:`n/(n-1)`, :math:`n` = batch
    x time x rows x cols values per channel). The Conv3D head is initialised as Keras's
    (Glorot-uniform kernel, zero bias).

    Note the example's Conv3D has a temporal kernel of 3 with ``'same'`` padding, so output frame
    :math:`t` also sees ConvLSTM features at :math:`t + 1`, i.e. input frame :math:`t + 1`, its own
    target: teacher-forced training then leaks the target. ``head_padding="causal"`` pads the time
    axis only at the start (output :math:`t` sees :math:`t-2, t-1, t`), which avoids it.

    Args:
        in_channels (int): channels :math:`C` of the frames. Default 1.
        filters (sequence of int): filters of each ConvLSTM2D layer. Default ``(64, 64, 64)``.
        kernel_sizes (int or sequence of int): kernel size of each ConvLSTM2D layer. Default ``None``:
            the example's ``(5, 3, 1)`` for three layers, and for :math:`n` layers its first :math:`n`
            values, the last repeated (``(5, 3)`` for two, ``(5, 3, 1, 1)`` for four), so that
            ``filters`` alone sets the depth.
        activation: the ConvLSTM activation (Keras name or callable). Default ``"relu"``.
        batch_norm (bool): BatchNorm after the ConvLSTM layers (all but the last). Default True.
        batch_norm_last (bool): BatchNorm after the last ConvLSTM layer too. Default False.
        out_channels (int or None): output channels; ``None`` = ``in_channels``.
        head_kernel_size (int or 3 ints): Conv3D kernel (time, rows, cols). Default 3.
        head_padding (str): ``"same"`` (the example) or ``"causal"`` (in time).
        output_activation: activation of the head. Default ``"sigmoid"`` (data in [0, 1]); ``None``
            for a linear output.
        output_steps (int or None): ``None`` (default): ``forward`` returns the :math:`T` next
            frames. An int :math:`L`: ``forward`` returns :meth:`forecast` ``(x, L)``, the next
            :math:`L` frames after the input, rolled out autoregressively.

    Attributes:
        input_steps: ``None`` (any number of input frames).
        output_steps: as given.

    Shape:
        - Input: :math:`(B, T, H, W, C_{in})`
        - Output: :math:`(B, T, H, W, C_{out})` (next-frame mode) or :math:`(B, L, H, W, C_{out})`

    Example::

        >>> model = KerasNextFrame(in_channels=1)
        >>> x = torch.rand(2, 10, 64, 64, 1)
        >>> model(x).shape                          # frame t predicts input frame t + 1
        torch.Size([2, 10, 64, 64, 1])
        >>> model.forecast(x, 10).shape             # 10 frames after the input
        torch.Size([2, 10, 64, 64, 1])
    """

    def __init__(self, in_channels: int = 1, filters: Sequence[int] = (64, 64, 64),
                 kernel_sizes: Union[None, int, Sequence[int]] = None, activation: Any = "relu",
                 batch_norm: bool = True, batch_norm_last: bool = False, out_channels: Optional[int] = None,
                 head_kernel_size: Union[int, Sequence[int]] = 3, head_padding: str = "same",
                 output_activation: Any = "sigmoid", output_steps: Optional[int] = None):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.filters = int_tuple("filters", filters)
        if kernel_sizes is None:
            n = len(self.filters)
            kernel_sizes = (_EXAMPLE_KERNEL_SIZES + _EXAMPLE_KERNEL_SIZES[-1:] * n)[:n]
        self.kernel_sizes = int_tuple("kernel_sizes", kernel_sizes, len(self.filters))
        self.out_channels = self.in_channels if out_channels is None else check_positive_int("out_channels", out_channels)
        self.head_kernel_size = int_tuple("head_kernel_size", head_kernel_size, 3)
        self.head_padding = check_choice("head_padding", head_padding, ("same", "causal"), lower=True)
        self.output_activation = _activations.get(output_activation, parameter="output_activation")
        self.output_steps = optional_positive_int("output_steps", output_steps)
        self.input_steps = None
        check_bool("batch_norm", batch_norm)
        check_bool("batch_norm_last", batch_norm_last)
        self.recurrent = nn.ModuleList()
        self.norms = nn.ModuleList()
        channels = self.in_channels
        for i, (f, k) in enumerate(zip(self.filters, self.kernel_sizes)):
            self.recurrent.append(ConvLSTM2D(f, k, padding="same", return_sequences=True, activation=activation,
                                             in_channels=channels))
            last = i == len(self.filters) - 1
            use_bn = batch_norm and (not last or batch_norm_last)
            self.norms.append(nn.BatchNorm3d(f, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM)
                              if use_bn else nn.Identity())
            channels = f
        self.head = nn.Conv3d(channels, self.out_channels, self.head_kernel_size)
        with torch.no_grad():  # Keras's Conv3D initialisation
            glorot = _initializers.get("glorot_uniform")
            kernel = glorot(self.head_kernel_size + (channels, self.out_channels), dtype=torch.float64)
            self.head.weight.copy_(keras_to_torch_kernel(torch.as_tensor(kernel), 3))
            self.head.bias.zero_()
        kt, kh, kw = self.head_kernel_size
        t_pad = (kt - 1, 0) if self.head_padding == "causal" else _tf_same(kt)
        self._head_pad = _tf_same(kw) + _tf_same(kh) + t_pad  # F.pad order: W, H, T

    def next_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The next-frame predictions :math:`(B, T, H, W, C_{out})` for :math:`(B, T, H, W, C_{in})`."""
        x = check_model_input(x, type(self).__name__, self.in_channels)
        for layer, norm in zip(self.recurrent, self.norms):
            x = layer(x)                                   # (B, T, H, W, F)
            if not isinstance(norm, nn.Identity):
                x = norm(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        y = self.head(F.pad(x.permute(0, 4, 1, 2, 3), self._head_pad))   # (B, C_out, T, H, W)
        return self.output_activation(y).permute(0, 2, 3, 4, 1)

    def forecast(self, x: torch.Tensor, output_steps: int) -> torch.Tensor:
        """Roll the model out for ``output_steps`` frames after the input, as the keras-io example
        does: predict, append the last predicted frame to the sequence, run the whole sequence
        again. Needs ``out_channels == in_channels``. Returns :math:`(B, L, H, W, C)`."""
        steps = check_positive_int("output_steps", output_steps)
        if self.out_channels != self.in_channels:
            raise ValueError(f"forecast feeds predictions back as inputs, so out_channels ({self.out_channels}) "
                             f"must equal in_channels ({self.in_channels})")
        seq = check_model_input(x, type(self).__name__, self.in_channels)
        outputs = []
        for _ in range(steps):
            nxt = self.next_frames(seq)[:, -1:]
            outputs.append(nxt)
            seq = torch.cat([seq, nxt.to(seq.dtype)], dim=1)
        return torch.cat(outputs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output_steps is None:
            return self.next_frames(x)
        return self.forecast(x, self.output_steps)

    def extra_repr(self) -> str:
        s = f"in_channels={self.in_channels}, out_channels={self.out_channels}"
        if self.head_padding != "same":
            s += f", head_padding={self.head_padding!r}"
        if self.output_steps is not None:
            s += f", output_steps={self.output_steps}"
        return s


register_model("keras-nextframe", description=(
    "The keras-io next-frame ConvLSTM example: 3 x ConvLSTM2D(64; 5x5, 3x3, 1x1, relu) + BatchNorm + "
    "Conv3D(3x3x3, sigmoid); (B, T, H, W, C) -> the T next frames"))(KerasNextFrame)
