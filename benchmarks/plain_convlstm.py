"""A plain PyTorch ConvLSTM, written the way the popular single-file implementations do it.

This is the baseline of the benchmarks, not part of the library. It follows the common pattern:
at every time step the input frame and the hidden state are concatenated along the channel axis
and one convolution computes all four gates,

.. math::
    [i, f, o, g] = W \\star [x_t, h_{t-1}] + b, \\qquad
    c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad
    h_t = \\sigma(o) \\odot \\tanh(c_t),

with ``padding = k // 2`` (odd kernels, stride 1), eager PyTorch, channels-first tensors
``(B, T, C, H, W)``, the outputs collected in a Python list and stacked at the end. Nothing is
hoisted out of the time loop, no memory format or fusion tricks are used.

It computes the same function as ``convlstm.ConvLSTM2D(F, k, padding='same',
return_sequences=True)`` up to the order of the gate blocks and the weight layout.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn as nn


class PlainConvLSTMCell(nn.Module):
    """One step: a single ``Conv2d(C_in + F -> 4F)`` over ``cat([x_t, h], dim=1)``."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, bias: bool = True):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor, state: Tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        gates = self.conv(torch.cat([x, h], dim=1))
        i, f, o, g = torch.split(gates, self.hidden, dim=1)
        i, f, o, g = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(g)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c


class PlainConvLSTM(nn.Module):
    """``(B, T, C_in, H, W) -> (B, T, F, H, W)`` (all hidden states), zero initial state."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int):
        super().__init__()
        self.hidden = hidden
        self.cell = PlainConvLSTMCell(in_channels, hidden, kernel_size)

    def forward(self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        b, t, _, height, width = x.shape
        if state is None:
            h = x.new_zeros(b, self.hidden, height, width)
            c = x.new_zeros(b, self.hidden, height, width)
        else:
            h, c = state
        outputs: List[torch.Tensor] = []
        for step in range(t):
            h, c = self.cell(x[:, step], (h, c))
            outputs.append(h)
        return torch.stack(outputs, dim=1)
