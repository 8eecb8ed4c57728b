r"""Start any forecaster from a baseline forecast, so that an untrained model *is* the baseline.

A network trained on a few days of data can end up worse than the simplest forecast there is: the
last frame (persistence) or the same time one period before (seasonal naive). Written as a
correction to that baseline, with the correction's weight starting at zero, the model begins
exactly at the baseline and moves away from it only as far as training pays (early stopping on the
validation loss then keeps the best epoch, which is never far below the start).

For a forecaster :math:`f` with output :math:`f(x) \in \mathbb{R}^{B \times K \times H \times W
\times C}`, a baseline :math:`b(x)` (one frame, repeated over the :math:`K` lead times) and a gate
:math:`g \in \mathbb{R}^{K \times C}` initialised to 0 (ReZero, Bachlechner et al. 2020):

.. math::
    \hat y =
    \begin{cases}
    b(x) + g \odot f(x) & \text{combine = "residual" (models with a linear output)} \\
    b(x) + g \odot \big(f(x) - b(x)\big) & \text{combine = "blend" (bounded outputs, e.g. sigmoid)}
    \end{cases}

With "residual", :math:`f` learns the change from the baseline; with "blend", :math:`f` still paints
the whole field (a sigmoid cannot paint a signed change) and :math:`g` is how far to trust it, per
lead time and channel. At :math:`g = 0` the parameters of :math:`f` get no gradient, but :math:`g`
does, and after the first optimizer step both move (Adam's steps do not shrink with the gate).
The gate is stored as :math:`\gamma` with :math:`g = 30\,\gamma`: Adam moves a parameter by about
its learning rate per step whatever the gradient's size, so a gate stored as itself would need
hundreds of steps to reach 1, and measured on BikeNYC (``st-convlstm``, 30 epochs at lr 2e-3) it
ended 7% behind the same model trained without a baseline (RMSE 6.45 against 6.02); stored as
:math:`\gamma` it reaches 1 in a few dozen steps and the two tie (6.02).

Baselines (:data:`STARTS`):

===============  ===================================================================================
``persistence``  the last input frame :math:`x_T` (for a model that forecasts the next frame of
                 every input, ``keras-nextframe`` without ``output_steps``, each input frame)
``seasonal``     the newest frame of the period stream, :math:`x_{t-P}` for the first target
                 :math:`t` (same time one day before, for ST-ResNet's period): multi-stream models
                 (``st-convlstm``) with ``streams[1] >= 1``
===============  ===================================================================================

:func:`resolve_start` maps ``"auto"`` to what a model needs: nothing for a model that starts from
a baseline by its own construction (``convlstm-warp`` declares ``starts_from``), persistence for
the others.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn as nn

from .. import activations as _activations
from .._checks import check_choice
from .blending import BlendTowardStart

__all__ = ["StartFromBaseline", "STARTS", "COMBINES", "resolve_start", "start_from_baseline"]

#: the values of ``start_from`` (``"auto"`` and ``"none"`` besides the baselines)
STARTS = ("auto", "none", "persistence", "seasonal")
COMBINES = ("residual", "blend")


def resolve_start(model: nn.Module, start_from: str) -> str:
    """``start_from`` with ``"auto"`` resolved for ``model``: ``"none"`` where the model already
    starts from a baseline (its ``starts_from`` attribute names it), else ``"persistence"``."""
    start_from = check_choice("start_from", start_from, STARTS, lower=True)
    if start_from != "auto":
        return start_from
    return "none" if getattr(model, "starts_from", None) else "persistence"


def start_from_baseline(model: nn.Module, start_from: str = "auto") -> nn.Module:
    """``model`` wrapped in :class:`StartFromBaseline` (``start_from`` resolved by
    :func:`resolve_start`), or ``model`` itself where that resolves to ``"none"``."""
    start = resolve_start(model, start_from)
    return model if start == "none" else StartFromBaseline(model, start)


class StartFromBaseline(BlendTowardStart, nn.Module):
    r"""A forecaster written as a gated correction of a baseline (see the module documentation).

    Args:
        model (nn.Module): the forecaster :math:`f`, ``(B, T_in, H, W, C)`` (plus any further
            arguments, e.g. features) -> ``(B, K, H, W, C)``, with as many output channels as
            input channels.
        start_from (str): ``"persistence"`` or ``"seasonal"``. Default ``"persistence"``.
        combine (str or None): ``"residual"`` or ``"blend"``; ``None``: ``"blend"`` when the model
            has a bounded ``output_activation`` (anything but linear), else ``"residual"``.

    Attributes:
        gate (Parameter): :math:`\gamma = g / 30` (:attr:`GATE_SCALE`), shape ``(K, C)`` (``K`` =
            the model's ``output_steps``, or 1 when it has none: one weight for every lead time),
            zeros at construction.
        blend (buffer): weights toward the baseline chosen after training
            (:class:`~convlstm.models.blending.BlendTowardStart`; ones: none), shape of ``gate``.

    Shape:
        - Input: :math:`(B, T_{in}, H, W, C)`
        - Output: :math:`(B, K, H, W, C)`, the model's

    Example::

        >>> from convlstm.models import create
        >>> model = create("st-convlstm", channels=2, input_steps=3, frame_size=(8, 8), start_from="persistence")
        >>> x = torch.rand(4, 3, 8, 8, 2)
        >>> torch.equal(model(x), x[:, -1:])   # untrained: exactly persistence
        True
    """

    #: :math:`g = \text{GATE_SCALE} \cdot \gamma` (see the module documentation)
    GATE_SCALE = 30.0

    def __init__(self, model: nn.Module, start_from: str = "persistence", combine: Optional[str] = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"StartFromBaseline wraps a torch.nn.Module, got {type(model).__name__}")
        self.start_from = check_choice("start_from", start_from, STARTS[2:], lower=True)
        if combine is None:
            bounded = getattr(model, "output_activation", None) not in (None, _activations.linear)
            combine = "blend" if bounded else "residual"
        self.combine = check_choice("combine", combine, COMBINES, lower=True)
        self.model = model
        self._seasonal_index = self._period_frame_index(model) if self.start_from == "seasonal" else None
        steps = getattr(model, "output_steps", None)
        channels = getattr(model, "out_channels", None) or getattr(model, "in_channels", None)
        if channels is None:
            raise ValueError(f"StartFromBaseline needs the model's channel count (an out_channels or in_channels "
                             f"attribute); {type(model).__name__} has neither")
        self.gate = nn.Parameter(torch.zeros(int(steps or 1), int(channels)))
        self._init_blend(int(steps or 1), int(channels))
        # what the toolkit reads from a model, passed on from the wrapped one
        for name in ("input_steps", "output_steps", "in_channels", "out_channels", "fixed_input_steps",
                     "accepts_targets", "num_features", "streams", "frame_size"):
            if hasattr(model, name) and not isinstance(getattr(model, name), (nn.Module, nn.Parameter)):
                setattr(self, name, getattr(model, name))
        self.starts_from = self.start_from

    @staticmethod
    def _period_frame_index(model: nn.Module) -> int:
        streams = getattr(model, "streams", None)
        if streams is None or len(streams) != 3 or not streams[1]:
            raise ValueError(f"start_from='seasonal' needs a model that reads a period stream (streams[1] >= 1, "
                             f"e.g. st-convlstm with --period 1); {type(model).__name__} has streams={streams!r}. "
                             f"Use start_from='persistence'")
        _, period, trend = (int(v) for v in streams)
        return trend + period - 1  # stacked as trend, period, closeness, each oldest first

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`b(x)`: ``(B, 1, H, W, C)``, or ``x`` itself for a model that forecasts the next
        frame of every input."""
        if self.start_from == "seasonal":
            return x[:, self._seasonal_index:self._seasonal_index + 1]
        if hasattr(self.model, "output_steps") and self.model.output_steps is None:
            return x
        return x[:, -1:]

    @property
    def start_name(self) -> str:
        """The start forecast in words, for logs."""
        return "the seasonal value" if self.start_from == "seasonal" else "persistence"

    def start_forecast(self, x: torch.Tensor) -> torch.Tensor:
        """The baseline at every lead time: ``(B, K, H, W, C)`` (the input's length for a model
        that forecasts the next frame of every input)."""
        base = self.baseline(x)
        steps = getattr(self.model, "output_steps", None)
        return base if steps is None else base.expand(-1, int(steps), -1, -1, -1)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        forecast = self.model(x, *args, **kwargs)
        base = self.baseline(x)
        if forecast.shape[-1] != base.shape[-1]:
            raise ValueError(f"start_from={self.start_from!r} needs as many output channels as input channels; "
                             f"{type(self.model).__name__} gives {forecast.shape[-1]} from {base.shape[-1]}")
        gate = self.GATE_SCALE * (self.gate * self.blend if self._blending else self.gate)
        gate = gate.to(forecast.dtype)[:, None, None, :]                 # (K, 1, 1, C)
        change = forecast if self.combine == "residual" else forecast - base
        return base + gate * change

    def extra_repr(self) -> str:
        return f"start_from={self.start_from!r}, combine={self.combine!r}"
