r"""The whole ``"concat"`` time loop as one autograd node, with a hand-written backward.

Autograd through a ConvLSTM time loop records, per step, a convolution over :math:`[x_t, h_{t-1}]`
and the gate update. Its backward then computes, per step, the gradient of the whole
concatenated input (the :math:`C_{in}` input channels too, which nobody needs when the frames do
not require a gradient) and a per-step weight gradient of :math:`B` frames. This node runs the
same forward without autograd and computes the backward as a second time loop:

.. math::
    \bar P_t = \text{gate-update backward}(\bar h_t, \bar c_t), \qquad
    \bar h_{t-1} = \bar h^{\text{out}}_{t-1} + W_h^{\top} \star \bar P_t,

then **one** weight-gradient convolution over all :math:`T \cdot B` frames,
:math:`\bar W = \sum_t \bar P_t \star [x_t, h_{t-1}]`, and one bias sum. Per step it computes the
gradient of :math:`h_{t-1}` only (:math:`F` channels instead of :math:`C_{in} + F`), and none at
:math:`t = 0` unless the initial state needs it; the input gradient, when the frames need one,
is one batched convolution after the loop.

Shapes (time-major, the path's memory format): frames :math:`(T, B, C_{in}, *S)`, state
:math:`(B, F, *S)`, weights :math:`(4F, C_{in}, *k)` and :math:`(4F, F, *k)` with the candidate
rows doubled (:func:`convlstm._gates.scaled_weights`). Outputs: the hidden states
:math:`(T, B, F, *S)` (a view of the buffer that also holds the convolutions' inputs, so an
in-place change of it is caught by autograd's version check) and :math:`c_T`.

Saved for the backward: the buffer :math:`[x_t, h_{t-1}]` (which holds the outputs), the
activated gates (:math:`4F` channels), :math:`c_t` and :math:`\tanh c_t` of every step: the
same as autograd through the per-step loop, minus the concatenated copies.

Only odd kernels ('same' padding without an extra pad), stride 1, dilation 1 and the default
activations come here; everything else keeps the per-step loop.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from ._gates import update_backward, update_in_place

__all__ = ["ConcatRecurrence"]

_conv_backward = torch.ops.aten.convolution_backward

# Below this many input channels the weight gradient is split into its input and state parts
# (benchmarks/RESULTS.md: Cin = 1 and 2 gain 19% and 12%, Cin = 16 loses 7%).
SPLIT_WEIGHT_GRADIENT_BELOW = 8


class ConcatRecurrence(torch.autograd.Function):
    """``apply(frames, h0, c0, w_ih, w_hh, bias, conv_padding, forward_conv, new_buffer)`` ->
    ``(hidden_states, c_T)``.

    ``forward_conv(z, weight, bias)`` computes one step's gates from :math:`[x_t, h_{t-1}]`
    (oneDNN or NNPACK); ``new_buffer(shape, like)`` allocates a tensor in the path's memory format.
    The backward's convolutions are torch's (``aten.convolution_backward``) with the same
    ``conv_padding``.
    """

    @staticmethod
    def forward(ctx, frames: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor,
                w_hh: torch.Tensor, bias: Optional[torch.Tensor], conv_padding, forward_conv: Callable,
                new_buffer: Callable):
        steps, batch, cin = frames.shape[0], frames.shape[1], frames.shape[2]
        nf = c0.shape[1]
        spatial = tuple(c0.shape[2:])
        z = new_buffer(((steps + 1) * batch, cin + nf) + spatial, c0).view((steps + 1, batch, cin + nf) + spatial)
        z[:steps, :, :cin].copy_(frames)
        z[0, :, cin:].copy_(h0)
        w_cat = torch.cat([w_ih, w_hh], dim=1)
        acts: List[torch.Tensor] = []
        cs: List[torch.Tensor] = []
        taus: List[torch.Tensor] = []
        c = c0
        for t in range(steps):
            gates = forward_conv(z[t], w_cat, bias)
            c_new = torch.empty_like(c0)
            tau = torch.empty_like(c0)
            update_in_place(gates, c, c_new, tau, z[t + 1, :, cin:])
            acts.append(gates)
            cs.append(c_new)
            taus.append(tau)
            c = c_new
        ctx.save_for_backward(z, w_ih, w_hh, c0, *acts, *cs[:-1], *taus)
        ctx.steps, ctx.conv_padding, ctx.has_bias = steps, tuple(conv_padding), bias is not None
        return z[1:, :, cin:], c

    @staticmethod
    def backward(ctx, grad_seq: Optional[torch.Tensor], grad_c: Optional[torch.Tensor]):
        steps = ctx.steps
        z, w_ih, w_hh, c0, *rest = ctx.saved_tensors
        acts, cs, taus = rest[:steps], rest[steps: 2 * steps - 1], rest[2 * steps - 1:]
        cin = w_ih.shape[1]
        batch = c0.shape[0]
        rank = c0.dim() - 2
        ones, zeros = [1] * rank, [0] * rank
        padding = list(ctx.conv_padding)
        need_frames, need_h0, need_c0, need_wih, need_whh, need_bias = ctx.needs_input_grad[:6]

        grad_gates = _like_gates(acts[0], steps)
        dh: Optional[torch.Tensor] = None
        dc = grad_c
        for t in range(steps - 1, -1, -1):
            g_out = None if grad_seq is None else grad_seq[t]
            if dh is None:
                dh_t = g_out if g_out is not None else torch.zeros_like(c0)
            else:
                dh_t = dh if g_out is None else dh.add_(g_out)
            c_prev = cs[t - 1] if t > 0 else c0
            dc = update_backward(acts[t], c_prev, taus[t], dh_t, dc, grad_gates[t])
            if t > 0 or need_h0:
                dh = _conv_backward(grad_gates[t], z[t, :, cin:], w_hh, None, ones, padding, ones, False,
                                    zeros, 1, [True, False, False])[0]
        flat_grads = grad_gates.flatten(0, 1)
        bias_sizes = [w_hh.shape[0]] if ctx.has_bias else None
        want_bias = ctx.has_bias and need_bias
        if cin >= SPLIT_WEIGHT_GRADIENT_BELOW:  # one weight gradient over [x_t, h_{t-1}]
            w_cat = torch.cat([w_ih, w_hh], dim=1)
            _, d_w, d_b = _conv_backward(flat_grads, z[:steps].flatten(0, 1), w_cat, bias_sizes, ones, padding,
                                         ones, False, zeros, 1, [False, need_wih or need_whh, want_bias])
            d_wih, d_whh = (None, None) if d_w is None else (d_w[:, :cin], d_w[:, cin:])
        else:  # a few input channels: two gradients, each over aligned channels, are faster
            states = _contiguous_like(z[:steps, :, cin:].flatten(0, 1), acts[0])
            _, d_whh, d_b = _conv_backward(flat_grads, states, w_hh, bias_sizes, ones, padding, ones, False,
                                           zeros, 1, [False, need_whh, want_bias])
            d_wih = None
            if need_wih:
                frames_in = _contiguous_like(z[:steps, :, :cin].flatten(0, 1), acts[0])
                d_wih = _conv_backward(flat_grads, frames_in, w_ih, None, ones, padding, ones, False, zeros, 1,
                                       [False, True, False])[1]
        d_frames = None
        if need_frames:
            frames_flat = z[:steps, :, :cin].flatten(0, 1)
            d_frames = _conv_backward(flat_grads, frames_flat, w_ih, None, ones, padding, ones, False, zeros, 1,
                                      [True, False, False])[0].view((steps, batch, cin) + tuple(c0.shape[2:]))
        return (d_frames, dh if need_h0 else None, dc if need_c0 else None, d_wih if need_wih else None,
                d_whh if need_whh else None, d_b if want_bias else None, None, None, None)


def _contiguous_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` made dense in ``like``'s memory format (channels-last on the oneDNN paths, standard
    for NNPACK), the layout the convolutions read fastest."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    fmt = formats.get(like.dim())
    if fmt is not None and like.shape[1] > 1 and like.is_contiguous(memory_format=fmt) and not like.is_contiguous():
        return t.contiguous(memory_format=fmt)
    return t.contiguous()


def _like_gates(act: torch.Tensor, steps: int) -> torch.Tensor:
    """An uninitialised :math:`(T, B, 4F, *S)` tensor with each step laid out like ``act``."""
    return torch.empty((steps,) + tuple(act.shape), dtype=act.dtype, device=act.device).as_strided(
        (steps,) + tuple(act.shape), (act.numel(),) + tuple(act.stride()))
