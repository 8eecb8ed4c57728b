r"""A trained run's network in the data's units, for export: the run's scaler, the clamp at 0 and
the scaling of external features around the network, as ``convlstm predict`` applies them.

The scalers' own ``transform`` and ``inverse_transform`` (:mod:`convlstm.data.scalers`) run on
torch tensors; traced by the exporter they become plain ONNX operators (``Sub``, ``Mul``, ``Div``,
``Log``, ``Exp``, ``Pow``, ``Where``...) with the fitted per-channel values as constants, so the
file needs nothing beyond the ONNX runtime.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..data.scalers import Scaler

__all__ = ["DataUnits"]


class DataUnits(nn.Module):
    r"""A forecasting network that reads and writes the data's units:

    .. math::
        \hat y = \max\bigl(0,\ s^{-1}(f(s(x),\ (e - l) / r))\bigr)

    with :math:`s` the run's fitted scaler (its ``transform``; :math:`s^{-1}` its
    ``inverse_transform``), :math:`f` the network, :math:`e` the per-sample features in their own
    units scaled by ``feature_low`` :math:`l` and ``feature_span`` :math:`r`, and the
    :math:`\max(0, \cdot)` only when ``nonnegative``: the steps of ``convlstm predict``.

    Args:
        network: the trained model (a run's ``ForecastModule.model``).
        scaler: the run's fitted :class:`convlstm.data.Scaler`.
        nonnegative (bool): clamp the forecast at 0. Default False.
        feature_low, feature_span (sequence of float, optional): per feature column, for a network
            that takes features (``st-convlstm``); ``None``: no features. Default None.

    Shape:
        - x: :math:`(B, T, H, W, C)` in the data's units
        - features: :math:`(B, F)`, when the network takes them
        - Output: the network's, :math:`(B, T_{out}, H, W, C)`, in the data's units

    Example::

        >>> scaler = convlstm.data.make_scaler("minmax").fit(series[:train_end])
        >>> wrapped = DataUnits(module.model, scaler, nonnegative=True)
        >>> convlstm.onnx.export(wrapped, "run.onnx", torch.zeros(1, 6, 32, 32, 1), input_names=["x"])
    """

    #: the scalers work on the last axis: inputs and outputs are channels last
    channels_last = True

    def __init__(self, network: nn.Module, scaler: Scaler, *, nonnegative: bool = False,
                 feature_low: Optional[np.ndarray] = None, feature_span: Optional[np.ndarray] = None):
        super().__init__()
        if not isinstance(scaler, Scaler) or scaler.n_channels is None:
            raise ValueError(f"scaler must be a fitted convlstm.data.Scaler, got {scaler!r}")
        if (feature_low is None) != (feature_span is None):
            raise ValueError("give both feature_low and feature_span, or neither")
        self.network = network
        self.scaler = scaler
        self.nonnegative = bool(nonnegative)
        self.takes_features = feature_low is not None
        if self.takes_features:
            self.register_buffer("feature_low", torch.as_tensor(np.asarray(feature_low), dtype=torch.float32))
            self.register_buffer("feature_span", torch.as_tensor(np.asarray(feature_span), dtype=torch.float32))

    def forward(self, x: torch.Tensor, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        scaled = self.scaler.transform(x)
        if self.takes_features:
            if features is None:
                raise ValueError(f"the network takes {self.feature_low.numel()} features per sample: pass features")
            y = self.network(scaled, (features - self.feature_low) / self.feature_span)
        else:
            y = self.network(scaled)
        y = self.scaler.inverse_transform(y)
        return y.clamp_min(0.0) if self.nonnegative else y

    def extra_repr(self) -> str:
        return f"scaler={self.scaler!r}, nonnegative={self.nonnegative}, takes_features={self.takes_features}"
