r"""A ConvLSTM forecaster for closeness, period and trend inputs with calendar and external
features (the crowd-flow field's inputs, Zhang et al., "Deep Spatio-Temporal Residual Networks for
Citywide Crowd Flows Prediction", AAAI 2017).

The input is the stacked stream of :class:`convlstm.data.MultiScaleWindowDataset`: the trend,
period and closeness frames in that order, :math:`l_q + l_p + l_c` frames. Two ways to read it:

``fusion="parametric"`` (ST-ResNet's): one branch per stream with frames; branch :math:`s` is a
stack of :class:`convlstm.ConvLSTM2D` layers over its frames, and a :math:`3 \times 3`
convolution of its last state gives :math:`X_s` with :math:`K \cdot C` channels (:math:`K` lead
times). The branches are fused with learnable elementwise weights, one per channel and cell:

.. math::
    X = W_c \circ X_c + W_p \circ X_p + W_q \circ X_q

``fusion="stacked"``: one branch reads all :math:`l_q + l_p + l_c` frames in time order, and
:math:`X` is its output (fewer parameters; the ConvLSTM sees the lags as a short sequence).

Features :math:`e \in \mathbb{R}^F` (calendar of the target time, external series; see
:func:`convlstm.data.calendar_features`) go through a small embedding, as in ST-ResNet:
:math:`X_e = W_2\, \mathrm{ReLU}(W_1 e + b_1) + b_2` reshaped to :math:`(K C, H, W)`, and the
forecast is :math:`\hat Y = X + X_e` (linear output, in the scaled units the model trains on).
:math:`W_2, b_2` start at zero: an untrained model's features have no effect.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .._checks import check_choice, check_positive_int
from ..layers import ConvLSTM2D
from ._common import check_model_input, int_tuple
from .registry import register_model

__all__ = ["MultiStreamConvLSTM", "FUSIONS"]

FUSIONS = ("parametric", "stacked")


class _Branch(nn.Module):
    """ConvLSTM2D layers over (B, T, C, H, W), then a 3x3 convolution of the last state."""

    def __init__(self, in_channels: int, filters: Sequence[int], kernel_sizes: Sequence[int], out_channels: int):
        super().__init__()
        self.layers = nn.ModuleList()
        below = in_channels
        for i, (f, k) in enumerate(zip(filters, kernel_sizes)):
            self.layers.append(ConvLSTM2D(f, k, padding="same", data_format="channels_first", in_channels=below,
                                          return_sequences=i + 1 < len(filters)))
            below = f
        self.head = nn.Conv2d(below, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class MultiStreamConvLSTM(nn.Module):
    r"""ConvLSTM over closeness, period and trend frames with parametric fusion (or one stacked
    stream) and an embedding of calendar / external features (see the module documentation for
    the equations).

    Args:
        channels (int): :math:`C`, channels of input and output frames. Default 1.
        streams (sequence of 3 int): :math:`(l_c, l_p, l_q)`, frames of the closeness, period and
            trend streams; the input holds them stacked as trend, period, closeness. ``None``:
            one closeness stream of ``input_steps`` frames. Default None.
        fusion (str): ``"parametric"`` (a branch per stream, fused by :math:`W_s \circ X_s`) or
            ``"stacked"`` (one branch over all frames). Default ``"parametric"``.
        filters (int or sequence of int): state channels of each ConvLSTM layer of a branch.
            Default ``(32,)``.
        kernel_size (int or sequence of int): ConvLSTM kernel of every layer or of each. Default 3.
        num_features (int): :math:`F`, features per sample (0: none). Default 0.
        feature_width (int): hidden width of the feature embedding. Default 10 (ST-ResNet's).
        frame_size (pair of int): :math:`(H, W)`, needed for the fusion weights and the feature
            embedding (the toolkit passes it).
        input_steps (int or None): checked against the streams when given.
        output_steps (int): :math:`K`, lead times forecast at once. Default 1.
        in_channels: an alias of ``channels`` (the toolkit passes both).

    Shape:
        - Input: :math:`(B, l_q + l_p + l_c, H, W, C)`; features :math:`(B, F)`
        - Output: :math:`(B, K, H, W, C)`

    Example::

        >>> model = MultiStreamConvLSTM(channels=2, streams=(3, 1, 1), frame_size=(16, 8), num_features=6)
        >>> model(torch.rand(4, 5, 16, 8, 2), torch.rand(4, 6)).shape
        torch.Size([4, 1, 16, 8, 2])
    """

    #: the input's frames are lags at fixed offsets, read by position (``streams``): the number of
    #: input steps is part of the model, not a free axis (:func:`convlstm.onnx.export` keeps it fixed).
    fixed_input_steps = True

    def __init__(self, channels: int = 1, streams: Optional[Sequence[int]] = None, fusion: str = "parametric",
                 filters: Union[int, Sequence[int]] = (32,), kernel_size: Union[int, Sequence[int]] = 3,
                 num_features: int = 0, feature_width: int = 10, frame_size: Optional[Sequence[int]] = None,
                 input_steps: Optional[int] = None, output_steps: int = 1, in_channels: Optional[int] = None):
        super().__init__()
        if in_channels is not None and in_channels != channels and channels != 1:
            raise ValueError(f"in_channels={in_channels!r} and channels={channels!r} disagree; give one")
        self.in_channels = self.out_channels = check_positive_int(
            "channels", in_channels if in_channels is not None else channels)
        if streams is None:
            if input_steps is None:
                raise ValueError("give streams=(closeness, period, trend) or input_steps (one closeness stream)")
            streams = (input_steps, 0, 0)
        if isinstance(streams, (str, bytes)) or not isinstance(streams, Sequence) or len(streams) != 3:
            raise ValueError(f"streams must be three frame counts (closeness, period, trend), got {streams!r}")
        self.streams: Tuple[int, int, int] = tuple(
            0 if v == 0 else check_positive_int(f"streams[{i}]", v) for i, v in enumerate(streams))
        if sum(self.streams) == 0:
            raise ValueError(f"streams={list(streams)} has no frame; give at least one")
        if input_steps is not None and check_positive_int("input_steps", input_steps) != sum(self.streams):
            raise ValueError(f"input_steps={input_steps} disagrees with streams={list(self.streams)} (sum "
                             f"{sum(self.streams)})")
        self.input_steps = sum(self.streams)
        self.output_steps = check_positive_int("output_steps", output_steps)
        self.fusion = check_choice("fusion", fusion, FUSIONS, lower=True)
        self.filters = int_tuple("filters", filters)
        self.kernel_sizes = int_tuple("kernel_size", kernel_size, len(self.filters))
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 0:
            raise ValueError(f"num_features must be an integer >= 0, got {num_features!r}")
        self.num_features = num_features
        if frame_size is None:
            raise ValueError("frame_size=(rows, cols) is needed (the fusion weights and the feature embedding are "
                             "per cell); the toolkit passes it from the data")
        self.frame_size = int_tuple("frame_size", frame_size, 2)
        out = self.output_steps * self.in_channels
        # stream order in the input: trend, period, closeness
        order = (("trend", self.streams[2]), ("period", self.streams[1]), ("closeness", self.streams[0]))
        self._slices = []
        t0 = 0
        for name, n in order:
            if n:
                self._slices.append((name, t0, t0 + n))
            t0 += n
        if self.fusion == "stacked":
            self.branches = nn.ModuleDict({"stacked": _Branch(self.in_channels, self.filters, self.kernel_sizes, out)})
        else:
            self.branches = nn.ModuleDict({name: _Branch(self.in_channels, self.filters, self.kernel_sizes, out)
                                           for name, _, _ in self._slices})
            self.fusion_weights = nn.ParameterDict({name: nn.Parameter(torch.ones(out, *self.frame_size))
                                                    for name, _, _ in self._slices})
        self.embedding = None
        if num_features:
            width = check_positive_int("feature_width", feature_width)
            self.embedding = nn.Sequential(nn.Linear(num_features, width), nn.ReLU(),
                                           nn.Linear(width, out * self.frame_size[0] * self.frame_size[1]))
            # start with no effect (as convlstm-warp's decoder): the features add what they explain
            nn.init.zeros_(self.embedding[2].weight)
            nn.init.zeros_(self.embedding[2].bias)

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        name = type(self).__name__
        x = check_model_input(x, name, self.in_channels, self.input_steps)
        b, _, h, w, c = x.shape
        if (h, w) != self.frame_size:
            raise ValueError(f"{name} was built for frame_size={self.frame_size}, got frames of {(h, w)}")
        if self.num_features and features is None:
            raise ValueError(f"{name} was built with num_features={self.num_features}: pass features of shape "
                             f"(batch, {self.num_features})")
        if features is not None and (not self.num_features or tuple(features.shape) != (b, self.num_features)):
            raise ValueError(f"{name} expects features of shape (batch, num_features) = ({b}, {self.num_features}), "
                             f"got {tuple(features.shape)}")
        frames = x.movedim(-1, 2)                                # (B, T, C, H, W)
        if self.fusion == "stacked":
            fused = self.branches["stacked"](frames)
        else:
            fused = sum(self.fusion_weights[n] * self.branches[n](frames[:, a:e]) for n, a, e in self._slices)
        if self.embedding is not None:
            fused = fused + self.embedding(features.to(fused.dtype)).view_as(fused)
        return fused.view(b, self.output_steps, c, h, w).movedim(2, -1)

    def extra_repr(self) -> str:
        return (f"channels={self.in_channels}, streams(closeness, period, trend)={self.streams}, "
                f"fusion={self.fusion!r}, filters={self.filters}, num_features={self.num_features}, "
                f"output_steps={self.output_steps}")


register_model("st-convlstm", description=(
    "closeness, period and trend frames through ConvLSTM branches fused by learnable elementwise weights "
    "(ST-ResNet's parametric fusion) or one stacked branch, plus an embedding of calendar/external features"))(
    MultiStreamConvLSTM)
