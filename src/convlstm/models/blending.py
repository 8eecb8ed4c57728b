r"""A forecast blended toward the model's own starting forecast, one weight per lead time and channel.

A model that starts from a baseline (:class:`~convlstm.models.StartFromBaseline`, or
``convlstm-warp``'s block-matching extrapolation) may learn a forecast that beats its start at
some lead times and not at others: trained on one afternoon of radar, the warp model gains at +10
and +15 minutes and loses at +5. With :math:`s_k` the start forecast, :math:`\hat y_k` the trained
model's and :math:`w \in [0, 1]^{K \times C}` (ones: no change),

.. math::
    \tilde y_k = s_k + w_{k,c} \, (\hat y_k - s_k),

and :func:`blend_weights` chooses :math:`w` on validation data in closed form: the least-squares
weight of the model's change from its start, clipped to :math:`[0, 1]`,

.. math::
    w_{k,c} = \operatorname{clip}\Big(\frac{\sum (\hat y_k - s_k)(y_k - s_k)}{\sum (\hat y_k - s_k)^2}, 0, 1\Big),

so that on those data the blend's squared error is never above the model's nor its start's. Only
the outputs are blended: a model that feeds its forecasts back (``convlstm-warp``) feeds its own,
so the weights chosen are the weights applied.
"""
from __future__ import annotations

import torch

__all__ = ["BlendTowardStart", "blend_weights"]


def blend_weights(change_times_error: torch.Tensor, change_squared: torch.Tensor) -> torch.Tensor:
    r""":math:`w = \operatorname{clip}(\sum (\hat y - s)(y - s) / \sum (\hat y - s)^2, 0, 1)` from the
    two sums (any shape, e.g. ``(K, C)``); 1 where the model never moved from its start."""
    num = change_times_error.double()
    den = change_squared.double()
    w = torch.where(den > 0, num / den.clamp_min(torch.finfo(torch.float64).tiny), torch.ones_like(den))
    return w.clamp(0.0, 1.0).float()


class BlendTowardStart:
    """Mixin for an ``nn.Module`` forecaster with a start forecast: a ``blend`` buffer of shape
    ``(K, C)`` (ones), :meth:`set_blend`, and :meth:`blend_frame` to apply it to lead time ``k``.
    The class defines :meth:`start_forecast` ``(B, T, H, W, C) -> (B, K, H, W, C)`` and
    ``start_name``, the start in words."""

    def _init_blend(self, steps: int, channels: int) -> None:
        self.register_buffer("blend", torch.ones(int(steps), int(channels)))
        self._blending = False

    start_name = "its start"

    def start_forecast(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_blend(self, weights: torch.Tensor) -> None:
        """Use ``weights`` (``(K, C)``, values in [0, 1]) from now on; ones turn blending off."""
        weights = torch.as_tensor(weights, dtype=self.blend.dtype, device=self.blend.device)
        if weights.shape != self.blend.shape:
            raise ValueError(f"blend weights must have shape {tuple(self.blend.shape)} (lead times, channels), "
                             f"got {tuple(weights.shape)}")
        if not bool(((weights >= 0) & (weights <= 1)).all()):
            raise ValueError(f"blend weights must lie in [0, 1], got {weights.tolist()}")
        with torch.no_grad():
            self.blend.copy_(weights)
        self._blending = not bool((weights == 1).all())

    def blend_frame(self, forecast: torch.Tensor, start: torch.Tensor, k: int, channel_dim: int) -> torch.Tensor:
        """Lead time ``k`` (0-based) of ``forecast`` blended toward ``start`` (same shape; the
        channels on ``channel_dim``); ``forecast`` itself while the weights are all ones."""
        if not self._blending:
            return forecast
        shape = [1] * forecast.dim()
        shape[channel_dim] = -1
        w = self.blend[k].to(forecast.dtype).view(shape)
        return start + w * (forecast - start)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the buffer existed: no blending
        state_dict.setdefault(prefix + "blend", torch.ones_like(self.blend))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._blending = not bool((self.blend == 1).all())

