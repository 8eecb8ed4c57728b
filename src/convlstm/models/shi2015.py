r"""Shi et al. (2015)'s encoding-forecasting ConvLSTM network.

X. Shi, Z. Chen, H. Wang, D.-Y. Yeung, W. Wong, W. Woo, "Convolutional LSTM Network: A Machine
Learning Approach for Precipitation Nowcasting", NIPS 2015.

Parameter counts of Table 1 (Moving MNIST, 64x64 frames patched 4x4 into 16x16x16, 10 -> 10
frames) are reproduced exactly by this configuration:

- every ConvLSTM layer has 5x5 input-to-state and 5x5 state-to-state kernels, a bias, and three
  **per-channel** peephole vectors (``peephole=True``: :math:`3F` values per layer);
- the encoder's first layer reads the 16 patch channels; every other layer reads the hidden state
  of the layer below;
- the forecaster's first layer has **no input-to-state kernel** (it has no input: the paper's
  zero input makes that kernel contribute nothing, and it is not counted);
- a 1x1 convolution (with bias) maps the concatenated hidden states of all forecaster layers to
  the 16 patch channels.

====================  ===============  =============
registered name       filters          parameters
====================  ===============  =============
``shi2015-1x256``     256              13,524,496
``shi2015-2x128``     128, 128         10,042,896
``shi2015-128-64-64`` 128, 64, 64      7,585,296
====================  ===============  =============

Per-cell (Hadamard, :math:`F \times 16 \times 16`) peepholes, or an input kernel in the first
forecaster layer, would give other numbers; 3x3 or 7x7 kernels too.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .. import activations as _activations
from .._checks import check_bool, check_positive_int
from ..cell import ConvLSTMCell
from ..layers import ConvLSTM2D
from ._common import check_model_input, int_tuple, optional_positive_int
from .patching import depth_to_space, space_to_depth
from .registry import register_model

__all__ = ["ShiEncoderForecaster", "InputFreeConvLSTM"]


class InputFreeConvLSTM(nn.Module):
    r"""A ConvLSTM layer without input, run from a given state: the first layer of Shi et al.'s
    forecaster. The gates are :math:`W_h \star h_{t-1} + b` plus the peephole terms (the
    equations of :class:`convlstm.ConvLSTMCell` with :math:`x_t = 0` and no input kernel).

    Args:
        filters (int): state channels :math:`F`.
        kernel_size (int or 2 ints): state-to-state kernel.
        peephole (bool): per-channel peepholes. Default True.
        activation, recurrent_activation: as in :class:`convlstm.ConvLSTM2D`.

    Shape (channels last):
        - h0, c0: :math:`(B, H, W, F)`
        - output: ``(sequence, h, c)``, sequence :math:`(B, L, H, W, F)` for ``steps`` = :math:`L`

    Example::

        >>> layer = InputFreeConvLSTM(8, 3)
        >>> h0 = c0 = torch.zeros(2, 16, 16, 8)
        >>> layer(h0, c0, steps=5)[0].shape
        torch.Size([2, 5, 16, 16, 8])
    """

    def __init__(self, filters: int, kernel_size, *, peephole: bool = True, activation: Any = "tanh",
                 recurrent_activation: Any = "sigmoid"):
        super().__init__()
        # The cell's step() does the gate arithmetic; its input kernel is dropped (no input).
        self.cell = ConvLSTMCell(2, 1, filters, kernel_size, padding="same", peephole=peephole,
                                 activation=activation, recurrent_activation=recurrent_activation,
                                 data_format="channels_first")
        self.cell.register_parameter("weight_ih", None)
        self.cell.in_channels = 0
        self.filters = self.cell.filters

    def forward(self, h0: torch.Tensor, c0: torch.Tensor, steps: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps = check_positive_int("steps", steps)
        if h0.dim() != 4 or h0.shape != c0.shape or h0.shape[-1] != self.filters:
            raise ValueError(f"InputFreeConvLSTM: h0 and c0 must both be (batch, rows, cols, {self.filters}), "
                             f"got {tuple(h0.shape)} and {tuple(c0.shape)}")
        dtype = self.cell.weight_hh.dtype
        h, c = h0.movedim(-1, 1).to(dtype), c0.movedim(-1, 1).to(dtype)
        if self.cell.bias is not None:
            gates = self.cell.bias.view(1, -1, 1, 1).expand(h.shape[0], -1, *h.shape[2:])
        else:
            gates = h.new_zeros((h.shape[0], 4 * self.filters) + tuple(h.shape[2:]))
        outputs = []
        for _ in range(steps):
            h, c = self.cell.step(gates, h, c)
            outputs.append(h)
        seq = torch.stack(outputs, dim=1).movedim(2, -1)
        return seq, h.movedim(1, -1), c.movedim(1, -1)

    def extra_repr(self) -> str:
        return f"filters={self.filters}, kernel_size={self.cell.kernel_size}, peephole={self.cell.peephole}"


class ShiEncoderForecaster(nn.Module):
    r"""Shi et al. (2015)'s encoding-forecasting network for precipitation nowcasting / Moving MNIST.

    1. Each input frame is cut into ``patch_size`` x ``patch_size`` patches stacked in channels
       (:class:`SpaceToDepth`: 64x64x1 -> 16x16x16).
    2. The **encoder**, a stack of ConvLSTM layers (5x5 kernels, ``'same'`` padding, per-channel
       peepholes), reads the :math:`T_{in}` patched frames.
    3. The **forecaster**, a stack of the same sizes, starts from the encoder's final states
       (forecaster layer :math:`l` from encoder layer :math:`l`'s :math:`(h, c)`) and runs
       :math:`T_{out}` steps with no input: its first layer has no input-to-state kernel
       (:class:`InputFreeConvLSTM`), layer :math:`l > 1` reads layer :math:`l-1`'s hidden states.
    4. A 1x1 convolution over the concatenated hidden states of all forecaster layers gives the
       :math:`p^2 C` patch channels, put back into frames (:class:`DepthToSpace`), then
       ``output_activation`` (sigmoid for Moving MNIST's [0, 1] pixels).

    See the module documentation for the configuration that reproduces Table 1's parameter counts.

    Args:
        filters (sequence of int): state channels of each layer (encoder and forecaster alike).
        kernel_size (int or sequence): kernel of every layer (int) or of each layer. Default 5.
        patch_size (int): :math:`p`. Default 4.
        frame_size (2 ints or None): the frames' :math:`(H, W)`, checked on input; ``None``
            accepts any multiple of ``patch_size``. Default ``(64, 64)``.
        channels (int): :math:`C`, channels of input and output frames. Default 1.
        input_steps (int or None): :math:`T_{in}`, checked on input; ``None`` accepts any. Default 10.
        output_steps (int): :math:`T_{out}`. Default 10.
        output_activation: Default ``"sigmoid"``; ``None`` for a linear output.
        peephole (bool): per-channel peepholes. Default True (the paper).
        activation, recurrent_activation: of the ConvLSTM layers. Defaults ``"tanh"``, ``"sigmoid"``.

    Attributes:
        input_steps, output_steps, in_channels, out_channels: as given.

    Shape:
        - Input: :math:`(B, T_{in}, H, W, C)`
        - Output: :math:`(B, T_{out}, H, W, C)`

    Example::

        >>> model = ShiEncoderForecaster(filters=(128, 64, 64))
        >>> model(torch.rand(2, 10, 64, 64, 1)).shape
        torch.Size([2, 10, 64, 64, 1])
        >>> sum(p.numel() for p in model.parameters())
        7585296
    """

    def __init__(self, filters: Sequence[int] = (256,), kernel_size: Union[int, Sequence[int]] = 5,
                 patch_size: int = 4, frame_size: Optional[Sequence[int]] = (64, 64), channels: int = 1,
                 input_steps: Optional[int] = 10, output_steps: int = 10, output_activation: Any = "sigmoid",
                 peephole: bool = True, activation: Any = "tanh", recurrent_activation: Any = "sigmoid"):
        super().__init__()
        self.filters = int_tuple("filters", filters)
        self.kernel_sizes = int_tuple("kernel_size", kernel_size, len(self.filters))
        self.patch_size = check_positive_int("patch_size", patch_size)
        if frame_size is None:
            self.frame_size = None
        else:
            self.frame_size = int_tuple("frame_size", frame_size, 2)
            if any(n % self.patch_size for n in self.frame_size):
                raise ValueError(f"frame_size={self.frame_size} must be multiples of patch_size={self.patch_size}")
        self.in_channels = self.out_channels = check_positive_int("channels", channels)
        self.input_steps = optional_positive_int("input_steps", input_steps)
        self.output_steps = check_positive_int("output_steps", output_steps)
        check_bool("peephole", peephole)
        self.output_activation = _activations.get(output_activation, parameter="output_activation")
        patch_channels = self.patch_size ** 2 * self.in_channels
        rnn = dict(padding="same", return_sequences=True, peephole=peephole, activation=activation,
                   recurrent_activation=recurrent_activation)
        self.encoder = nn.ModuleList()
        c = patch_channels
        for f, k in zip(self.filters, self.kernel_sizes):
            self.encoder.append(ConvLSTM2D(f, k, return_state=True, in_channels=c, **rnn))
            c = f
        self.forecaster = nn.ModuleList([InputFreeConvLSTM(self.filters[0], self.kernel_sizes[0], peephole=peephole,
                                                           activation=activation,
                                                           recurrent_activation=recurrent_activation)])
        for below, f, k in zip(self.filters[:-1], self.filters[1:], self.kernel_sizes[1:]):
            self.forecaster.append(ConvLSTM2D(f, k, in_channels=below, **rnn))
        # a 1x1 convolution over channels-last features is a Linear layer on the last axis
        self.output = nn.Linear(sum(self.filters), patch_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_model_input(x, type(self).__name__, self.in_channels, self.input_steps)
        if self.frame_size is not None and tuple(x.shape[2:4]) != self.frame_size:
            raise ValueError(f"{type(self).__name__} was built for frame_size={self.frame_size}, got frames of "
                             f"{tuple(x.shape[2:4])} (input shape {tuple(x.shape)}); pass frame_size=")
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f"{type(self).__name__}: rows and cols {tuple(x.shape[2:4])} must be multiples of "
                             f"patch_size={self.patch_size}")
        seq = space_to_depth(x, self.patch_size)
        states = []
        for layer in self.encoder:
            seq, h, c = layer(seq)
            states.append((h, c))
        h, c = states[0]
        seq, _, _ = self.forecaster[0](h, c, self.output_steps)
        hidden = [seq]
        for layer, (h, c) in zip(self.forecaster[1:], states[1:]):
            seq = layer(seq, initial_state=[h, c])
            hidden.append(seq)
        patches = self.output(torch.cat(hidden, dim=-1))
        return self.output_activation(depth_to_space(patches, self.patch_size))

    def extra_repr(self) -> str:
        return (f"filters={self.filters}, kernel_sizes={self.kernel_sizes}, patch_size={self.patch_size}, "
                f"frame_size={self.frame_size}, channels={self.in_channels}, input_steps={self.input_steps}, "
                f"output_steps={self.output_steps}")


for _name, _filters, _desc in (
        ("shi2015-1x256", (256,), "13,524,496 parameters"),
        ("shi2015-2x128", (128, 128), "10,042,896 parameters"),
        ("shi2015-128-64-64", (128, 64, 64), "7,585,296 parameters")):
    _factory = functools.partial(ShiEncoderForecaster, filters=_filters)
    register_model(_name, description=(
        f"Shi et al. 2015 encoder-forecaster, filters {'-'.join(map(str, _filters))}, 5x5 kernels, 4x4 patches, "
        f"64x64xC frames, 10 -> 10 steps, sigmoid ({_desc}, Table 1)"))(_factory)
