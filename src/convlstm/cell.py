"""One step of the ConvLSTM recurrence, its weights, and their Keras layout.

The weights are stored in torch's convolution layout and exposed in Keras's layout by
:meth:`ConvLSTMCell.get_weights`:

=================  ===============================  ===================================
weight             torch layout (stored)            Keras layout (``get_weights``)
=================  ===============================  ===================================
``weight_ih``      ``(4F, C_in) + kernel_size``     ``kernel_size + (C_in, 4F)``
``weight_hh``      ``(4F, F) + kernel_size``        ``kernel_size + (F, 4F)``
``bias``           ``(4F,)``                        ``(4F,)``
=================  ===============================  ===================================

The ``4F`` axis holds the gates in Keras's (and :class:`torch.nn.LSTM`'s) order **i, f, c, o**.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from . import activations as _activations
from . import initializers as _initializers
from ._checks import check_choice, check_positive_int
from ._ops import ConvPlan, cached_plan, keras_to_torch_kernel, normalize_tuple, output_size, torch_to_keras_kernel
from ._workspace import Workspace

__all__ = ["ConvLSTMCell"]

PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
_PADDING_NOTES = {"causal": "'causal' padding is not supported by ConvLSTM, as in Keras"}


class ConvLSTMCell(nn.Module):
    r"""One ConvLSTM step, as Keras's ``ConvLSTMCell`` computes it, usable in a custom loop.

    .. math::
        \begin{aligned}
        [x_i, x_f, x_c, x_o] &= W_x \star (m^x_g \odot x_t) + b \\
        [h_i, h_f, h_c, h_o] &= W_h \star_{\text{same}} (m^h_g \odot h_{t-1}) \\
        i_t &= \sigma(x_i + h_i + w_{ci} \odot c_{t-1}) \\
        f_t &= \sigma(x_f + h_f + w_{cf} \odot c_{t-1}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot \phi(x_c + h_c) \\
        o_t &= \sigma(x_o + h_o + w_{co} \odot c_t) \\
        h_t &= o_t \odot \phi(c_t)
        \end{aligned}

    where :math:`\star` is a cross-correlation with the layer's strides, padding and dilation,
    :math:`\star_{\text{same}}` one with stride 1, dilation 1 and ``'same'`` padding,
    :math:`\sigma` is ``recurrent_activation``, :math:`\phi` is ``activation``, :math:`m^x_g`
    and :math:`m^h_g` are the per-gate dropout masks (training only), and the peephole terms
    :math:`w_{c\cdot}` (per-channel, broadcast over space) exist only with ``peephole=True``.

    Args:
        rank: 1, 2 or 3 spatial dimensions.
        in_channels: channels of :math:`x_t`.
        filters: channels :math:`F` of :math:`h` and :math:`c`.
        kernel_size, strides, padding, dilation_rate, activation, recurrent_activation: as in
            :class:`convlstm.ConvLSTM2D`, as are ``use_bias``, ``kernel_initializer``,
            ``recurrent_initializer``, ``bias_initializer`` and ``unit_forget_bias``.
        peephole: add Shi et al. (2015)'s per-channel peephole connections.
        data_format: layout of the tensors given to :meth:`forward`.

    Shape (``forward``, channels_last):
        - x: :math:`(B, *S, C_{in})`; state: two tensors :math:`(B, *S', F)`, or ``None`` for zeros.
        - returns ``h, (h, c)`` with h and c of shape :math:`(B, *S', F)`.

    Example::

        >>> cell = ConvLSTMCell(2, in_channels=3, filters=8, kernel_size=3, padding="same")
        >>> x = torch.randn(4, 10, 16, 16, 3)
        >>> state = None
        >>> for t in range(10):
        ...     h, state = cell(x[:, t], state)
        >>> h.shape
        torch.Size([4, 16, 16, 8])
    """

    def __init__(self, rank: int, in_channels: int, filters: int, kernel_size, strides=1, padding: str = "valid",
                 dilation_rate=1, activation="tanh", recurrent_activation="sigmoid", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias: bool = True, *, peephole: bool = False,
                 data_format: str = "channels_last", device=None, dtype=None):
        super().__init__()
        if rank not in (1, 2, 3):
            raise ValueError(f"rank must be 1, 2 or 3, got {rank!r}")
        self.rank = rank
        self.filters = check_positive_int("filters", filters)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.kernel_size = normalize_tuple(kernel_size, rank, "kernel_size")
        self.strides = normalize_tuple(strides, rank, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate")
        self.padding = check_choice("padding", padding, PADDINGS, lower=True, notes=_PADDING_NOTES)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"strides={self.strides} and dilation_rate={self.dilation_rate}: strides > 1 "
                             "cannot be combined with dilation_rate > 1 (as in Keras); set one of them to 1")
        self.data_format = check_choice("data_format", data_format, DATA_FORMATS, lower=True)
        self.activation = _activations.get(activation, parameter="activation")
        self.recurrent_activation = _activations.get(recurrent_activation, parameter="recurrent_activation")
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.peephole = bool(peephole)
        self.kernel_initializer = _initializers.get(kernel_initializer, parameter="kernel_initializer")
        self.recurrent_initializer = _initializers.get(recurrent_initializer, parameter="recurrent_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, parameter="bias_initializer")

        factory = {"device": device, "dtype": dtype}
        f4 = 4 * self.filters
        self.weight_ih = nn.Parameter(torch.empty(f4, self.in_channels, *self.kernel_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(f4, self.filters, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(f4, **factory)) if self.use_bias else None
        if self.peephole:
            self.peephole_i = nn.Parameter(torch.empty(self.filters, **factory))
            self.peephole_f = nn.Parameter(torch.empty(self.filters, **factory))
            self.peephole_o = nn.Parameter(torch.empty(self.filters, **factory))
        self._plans: Dict[Tuple, ConvPlan] = {}
        # the time loops' large buffers, reused by later calls when free (convlstm._workspace)
        self._workspace = Workspace()
        if self.weight_ih.device.type != "meta":
            self.reset_parameters()

    # ------------------------------------------------------------------ weights
    @property
    def keras_kernel_shape(self) -> Tuple[int, ...]:
        return self.kernel_size + (self.in_channels, 4 * self.filters)

    @property
    def keras_recurrent_kernel_shape(self) -> Tuple[int, ...]:
        return self.kernel_size + (self.filters, 4 * self.filters)

    def reset_parameters(self) -> None:
        """Initialise the weights with the Keras initializers (in Keras's layout, then permuted)."""
        with torch.no_grad():
            kernel = _initialize(self.kernel_initializer, self.keras_kernel_shape, "kernel_initializer")
            self.weight_ih.copy_(keras_to_torch_kernel(kernel, self.rank))
            rk = _initialize(self.recurrent_initializer, self.keras_recurrent_kernel_shape, "recurrent_initializer")
            self.weight_hh.copy_(keras_to_torch_kernel(rk, self.rank))
            if self.bias is not None:
                F_ = self.filters
                if self.unit_forget_bias:  # the forget block is exactly 1, as in Keras
                    bias = torch.cat([_initialize(self.bias_initializer, (F_,), "bias_initializer"),
                                      torch.ones(F_, dtype=torch.float64),
                                      _initialize(self.bias_initializer, (2 * F_,), "bias_initializer")])
                else:
                    bias = _initialize(self.bias_initializer, (4 * F_,), "bias_initializer")
                self.bias.copy_(bias)
            if self.peephole:
                for p in (self.peephole_i, self.peephole_f, self.peephole_o):
                    p.zero_()

    def keras_weights(self) -> List[Tuple[str, torch.Tensor]]:
        """``(name, tensor)`` pairs in Keras's order and layout (views of the parameters)."""
        out = [("kernel", torch_to_keras_kernel(self.weight_ih, self.rank)),
               ("recurrent_kernel", torch_to_keras_kernel(self.weight_hh, self.rank))]
        if self.bias is not None:
            out.append(("bias", self.bias))
        if self.peephole:
            out += [("peephole_i", self.peephole_i), ("peephole_f", self.peephole_f),
                    ("peephole_o", self.peephole_o)]
        return out

    def get_weights(self) -> List[np.ndarray]:
        """``[kernel, recurrent_kernel, bias]`` as numpy arrays in Keras's layout
        (then the three peephole vectors when ``peephole=True``)."""
        return [t.detach().cpu().numpy().copy() for _, t in self.keras_weights()]

    def set_weights(self, weights: Sequence) -> None:
        """Set the weights from arrays in Keras's layout (as ``get_weights`` returns them)."""
        expected = self.keras_weights()
        weights = list(weights)
        if len(weights) != len(expected):
            names = ", ".join(n for n, _ in expected)
            raise ValueError(f"set_weights expected {len(expected)} arrays ({names}), got {len(weights)}")
        with torch.no_grad():
            for (name, target), value in zip(expected, weights):
                value = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(f"set_weights: {name} has shape {tuple(value.shape)}, "
                                     f"the layer expects {tuple(target.shape)} (Keras layout)")
                target.copy_(value.to(device=target.device, dtype=target.dtype))

    # ------------------------------------------------------------------ shapes
    def output_spatial(self, spatial: Sequence[int]) -> Tuple[int, ...]:
        """The state's spatial size for an input of spatial size ``spatial``."""
        return tuple(output_size(n, k, s, d, self.padding)
                     for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate))

    def _plan(self, kind: str, spatial: Tuple[int, ...], groups: int) -> ConvPlan:
        def make() -> ConvPlan:
            if kind == "input":
                return ConvPlan(self.rank, spatial, self.kernel_size, self.strides, self.dilation_rate,
                                self.padding, groups)
            ones = (1,) * self.rank
            return ConvPlan(self.rank, spatial, self.kernel_size, ones, ones, "same", groups)

        return cached_plan(self._plans, (kind, spatial, groups), make)

    # ------------------------------------------------------------------ compute (channels first)
    def input_projection(self, x: torch.Tensor, masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""The input half of the gates for a batch of frames: :math:`W_x \star (m_g \odot x) + b`.

        Args:
            x: :math:`(N, C_{in}, *S)`, channels first; N may be batch x time (the library hoists
                this convolution out of the time loop).
            masks: ``None`` or per-gate dropout masks :math:`(4, N, C_{in}, *S)`.

        Returns:
            :math:`(N, 4F, *S')`.
        """
        spatial = tuple(x.shape[2:])
        if masks is None:
            return self._plan("input", spatial, 1)(x, self.weight_ih, self.bias)
        n, c = x.shape[0], x.shape[1]
        xm = (x.unsqueeze(1) * masks.transpose(0, 1)).reshape(n, 4 * c, *spatial)
        return self._plan("input", spatial, 4)(xm, self.weight_ih, self.bias)

    def recurrent_projection(self, h: torch.Tensor, masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        r""":math:`W_h \star_{\text{same}} (m_g \odot h)`; h: :math:`(B, F, *S')`, masks ``(4, B, F, *S')``."""
        spatial = tuple(h.shape[2:])
        if masks is None:
            return self._plan("recurrent", spatial, 1)(h, self.weight_hh)
        b = h.shape[0]
        hm = (h.unsqueeze(1) * masks.transpose(0, 1)).reshape(b, 4 * self.filters, *spatial)
        return self._plan("recurrent", spatial, 4)(hm, self.weight_hh)

    def _peephole_view(self, p: torch.Tensor) -> torch.Tensor:
        return p.view(1, self.filters, *([1] * self.rank))

    def step(self, x_gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
             recurrent_masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One update from the precomputed input gates ``x_gates`` :math:`(B, 4F, *S')` and the
        previous state ``h, c`` :math:`(B, F, *S')`; returns the new ``(h, c)``. With 16-bit
        convolutions and a float32 ``c`` (mixed precision) the sum and the update run in float32
        and :math:`h_t` comes back in ``h``'s dtype."""
        h_new, c_new = self.update(x_gates.to(c.dtype) + self.recurrent_projection(h, recurrent_masks), c)
        return h_new.to(h.dtype), c_new

    def update(self, gates: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The gate arithmetic from the summed pre-activations ``gates`` :math:`(B, 4F, *S')`
        (input and recurrent convolutions and bias) and :math:`c_{t-1}`; returns ``(h_t, c_t)``, in
        ``c``'s dtype (16-bit ``gates`` are cast to it first: float32 gate arithmetic)."""
        gi, gf, gc, go = gates.to(c.dtype).chunk(4, dim=1)
        act, ract = self.activation, self.recurrent_activation
        if self.peephole:
            gi = gi + self._peephole_view(self.peephole_i) * c
            gf = gf + self._peephole_view(self.peephole_f) * c
        c_new = ract(gf) * c + ract(gi) * act(gc)
        if self.peephole:
            go = go + self._peephole_view(self.peephole_o) * c_new
        h_new = ract(go) * act(c_new)
        return h_new, c_new

    # ------------------------------------------------------------------ public single step
    def forward(self, x: torch.Tensor, state: Optional[Sequence[torch.Tensor]] = None
                ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        channels_last = self.data_format == "channels_last"
        if x.dim() != self.rank + 2:
            raise ValueError(f"ConvLSTMCell expected an input of {self.rank + 2} dimensions "
                             f"(batch, {'*spatial, channels' if channels_last else 'channels, *spatial'}), "
                             f"got shape {tuple(x.shape)}")
        if channels_last:
            x = x.movedim(-1, 1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ConvLSTMCell expected {self.in_channels} input channels, got {x.shape[1]}")
        x = x.to(self.weight_ih.dtype)
        spatial = self.output_spatial(x.shape[2:])
        if state is None:
            h = c = x.new_zeros((x.shape[0], self.filters) + spatial)
        else:
            h, c = state
            if channels_last:
                h, c = h.movedim(-1, 1), c.movedim(-1, 1)
            expected = (x.shape[0], self.filters) + spatial
            for name, s in (("h", h), ("c", c)):
                if tuple(s.shape) != expected:
                    raise ValueError(f"ConvLSTMCell: state {name} has shape {tuple(s.shape)} "
                                     f"(channels first), expected {expected}")
        h, c = self.step(self.input_projection(x), h, c)
        if channels_last:
            h, c = h.movedim(1, -1), c.movedim(1, -1)
        return h, (h, c)

    def extra_repr(self) -> str:
        s = (f"rank={self.rank}, in_channels={self.in_channels}, filters={self.filters}, "
             f"kernel_size={self.kernel_size}, strides={self.strides}, padding={self.padding!r}")
        if max(self.dilation_rate) > 1:
            s += f", dilation_rate={self.dilation_rate}"
        if not self.use_bias:
            s += ", use_bias=False"
        if self.peephole:
            s += ", peephole=True"
        return s


def _initialize(init, shape: Tuple[int, ...], name: str) -> torch.Tensor:
    """Call a Keras-style initializer (ours, or a user callable taking ``shape`` and maybe
    ``dtype``) and check what it returns."""
    try:
        value = init(shape, dtype=torch.float64)
    except TypeError:
        value = init(shape)
    value = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value,
                            dtype=torch.float64)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} returned shape {tuple(value.shape)}, expected {tuple(shape)} (Keras layout)")
    return value
