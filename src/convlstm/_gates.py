r"""The LSTM gate update with ``sigmoid`` / ``tanh``, written once for the fast paths.

The pre-activations :math:`P` of shape :math:`(B, 4F, *S)` come in the Keras block order
:math:`(P_i, P_f, P_c, P_o)` **with the candidate block doubled**, :math:`P_c = 2 G_c` (the caller
doubles those rows of the weights and bias, see :func:`scaled_weights`, which is exact in floating
point). Every block then goes through one ``sigmoid`` over the whole tensor, and
:math:`\tanh z = 2\sigma(2z) - 1` gives the candidate and the cell output (torch's CPU ``tanh``
is several times slower than its ``sigmoid``; the identity changes results by at most a few
float32 ulps of 1):

.. math::
    i, f, o = \sigma(P_i), \sigma(P_f), \sigma(P_o), \quad g = 2\sigma(P_c) - 1 = \tanh(G_c), \\
    c_t = f\,c_{t-1} + i\,g, \quad \tau = 2\sigma(2 c_t) - 1 = \tanh(c_t), \quad h_t = o\,\tau

Backward, from :math:`\bar h_t, \bar c_t`:

.. math::
    \bar c = \bar c_t + \bar h_t\, o\,(1 - \tau^2), \quad
    \bar P_i = \bar c\, g\, i(1-i), \quad \bar P_f = \bar c\, c_{t-1} f(1-f), \quad
    \bar P_c = \bar c\, i\,(1-g^2)/2, \quad \bar P_o = \bar h_t\, \tau\, o(1-o), \quad
    \bar c_{t-1} = \bar c\, f

Only the activated gates (4F channels), :math:`c_{t-1}` and :math:`\tau` are needed for it.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["GateUpdate", "default_activations", "scaled_weights", "update_backward", "update_in_place"]


def default_activations(cell) -> bool:
    """True when the cell uses Keras's default ``tanh`` / ``sigmoid`` and no peepholes, the case
    the closed forms here cover."""
    return cell.activation is torch.tanh and cell.recurrent_activation is torch.sigmoid and not cell.peephole


def _gate_scale(cell, like: torch.Tensor) -> torch.Tensor:
    """``(4F,)`` ones with 2 on the candidate block."""
    nf = cell.filters
    s = torch.ones(4 * nf, dtype=like.dtype, device=like.device)
    s[2 * nf: 3 * nf] = 2.0
    return s


def scaled_weights(cell, scaled: bool):
    """``(weight_ih, weight_hh, bias)``, with the candidate block doubled when ``scaled``.

    Doubling is exact in floating point, so ``conv(x, 2W) == 2 conv(x, W)`` to the last bit."""
    w_ih, w_hh, b = cell.weight_ih, cell.weight_hh, cell.bias
    if scaled:
        s = _gate_scale(cell, w_ih)
        view = (-1,) + (1,) * (cell.rank + 1)
        w_ih, w_hh = w_ih * s.view(view), w_hh * s.view(view)
        b = None if b is None else b * s
    return w_ih, w_hh, b


def update_in_place(gates: torch.Tensor, c_prev: torch.Tensor, c_out: torch.Tensor, tau: torch.Tensor,
                    h_out: torch.Tensor, act_out: Optional[torch.Tensor] = None) -> None:
    r"""The forward without autograd. :math:`\sigma(P) = (i, f, \sigma(P_c), o)` of the scaled
    pre-activations ``gates`` :math:`(B, 4F, *S)` goes to ``act_out`` (default: over ``gates``
    itself); the candidate is kept as :math:`\sigma(P_c) = (g + 1)/2`, which the backward needs.
    :math:`c_t` goes to ``c_out`` (which may be ``c_prev`` itself), :math:`\tau` to ``tau`` and
    :math:`h_t` to ``h_out``. With :math:`g = 2\sigma(P_c) - 1`:
    :math:`c_t = f c_{t-1} + 2 i \sigma(P_c) - i`.

    Mixed precision: when ``gates`` :math:`(B, 4F, *S)` is 16-bit and ``c_prev`` float32, the
    pre-activations are widened once into a float32 ``act_out`` (default a new tensor), and
    :math:`c_t`, :math:`\tau` and every product are float32; only :math:`h_t` is rounded, to
    ``h_out``'s dtype. No operation here writes into another dtype: torch's products with an
    ``out`` of another dtype run about 20 times slower than a product and a copy."""
    if gates.dtype != c_prev.dtype:  # 16-bit convolutions: sigmoid and all after in c's float32
        act = gates.to(c_prev.dtype) if act_out is None else act_out.copy_(gates)
        act.sigmoid_()
    else:
        act = gates.sigmoid_() if act_out is None else torch.sigmoid(gates, out=act_out)
    i, f, sc, o = act.split(c_prev.shape[1], dim=1)
    torch.mul(f, c_prev, out=c_out).addcmul_(i, sc, value=2).sub_(i)
    torch.mul(c_out, 2, out=tau).sigmoid_().mul_(2).sub_(1)
    if h_out.dtype == tau.dtype:
        torch.mul(o, tau, out=h_out)
    else:
        h_out.copy_(torch.mul(o, tau))


def update_backward(act: torch.Tensor, c_prev: torch.Tensor, tau: torch.Tensor, dh: torch.Tensor,
                    dc: Optional[torch.Tensor], dp: torch.Tensor, bias_grad: Optional[torch.Tensor] = None,
                    scratch: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""The backward of one update. ``act`` is :math:`\sigma(P)` as :func:`update_in_place` leaves
    it, ``dh`` and ``dc`` the gradients of :math:`h_t` and :math:`c_t` (``dc`` may be ``None``:
    zero). The gradient of the (scaled) pre-activations is written into ``dp``
    :math:`(B, 4F, *S)`; returns :math:`\bar c_{t-1}` (a new tensor, ``act``'s dtype). With
    ``bias_grad`` :math:`(4F,)` given, :math:`\sum_{b, s} \bar P_{b, :, s}` is added to it.

    Mixed precision (16-bit ``dh`` or ``dp``, float32 ``act``): ``dh`` is widened once, every
    product is taken in float32 and :math:`\bar P` is rounded once, into ``dp``; ``bias_grad``
    sums the float32 :math:`\bar P`, and ``scratch`` (like ``act``, optional) holds the float32
    :math:`\bar P` (one buffer for all the steps of a loop).

    Every block's derivative is :math:`\sigma(1 - \sigma)` (one operation over all :math:`4F`
    channels); the candidate's :math:`(1 - g^2)/2 = 2\sigma(P_c)(1 - \sigma(P_c))`."""
    nf = c_prev.shape[1]
    if dh.dtype != act.dtype:
        dh = dh.to(act.dtype)
    work = dp if dp.dtype == act.dtype else (torch.empty_like(act) if scratch is None else scratch)
    i, f, sc, o = act.split(nf, dim=1)
    dcell = torch.mul(tau, tau).neg_().add_(1).mul_(o).mul_(dh)
    if dc is not None:
        dcell.add_(dc)
    torch.addcmul(act, act, act, value=-1, out=work)  # sigma (1 - sigma), all four blocks
    di, df, dg, do = work.split(nf, dim=1)
    g = torch.mul(sc, 2).sub_(1)
    di.mul_(dcell).mul_(g)
    df.mul_(dcell).mul_(c_prev)
    dg.mul_(dcell).mul_(i).mul_(2)
    do.mul_(dh).mul_(tau)
    if bias_grad is not None:
        bias_grad.add_(work.sum(dim=[0] + list(range(2, work.dim()))))
    if work is not dp:
        dp.copy_(work)
    return dcell.mul_(f)


class GateUpdate(torch.autograd.Function):
    r"""One step's update as one autograd node: ``(A, B, c_prev) -> (h_t, c_t)`` with
    :math:`P = A + B` (``B`` may be ``None``), the math of this module's docstring. Saved: the
    activated gates (4F channels), :math:`c_{t-1}` and :math:`\tau` (F each); :math:`\bar A = \bar B = \bar P`.

    Mixed precision: with 16-bit ``A``, ``B`` (the convolutions' outputs under autocast) and a
    float32 ``c_prev``, :math:`P`, the saved tensors, :math:`c_t` and the backward are float32;
    :math:`h_t` and :math:`\bar P` are rounded to ``A``'s dtype (the next convolutions' inputs).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: Optional[torch.Tensor], c_prev: torch.Tensor):
        if a.dtype == c_prev.dtype:
            act = a + b if b is not None else a.clone()
        else:  # 16-bit pre-activations, float32 state: the sum and the update in float32
            act = a.to(c_prev.dtype, copy=True)
            if b is not None:
                act.add_(b)
        c = torch.empty_like(c_prev)
        tau = torch.empty_like(c_prev)
        h = torch.empty_like(c_prev, dtype=a.dtype)
        update_in_place(act, c_prev, c, tau, h)
        ctx.save_for_backward(act, c_prev, tau)
        ctx.two, ctx.dtype = b is not None, a.dtype
        return h, c

    @staticmethod
    def backward(ctx, dh: Optional[torch.Tensor], dc_out: Optional[torch.Tensor]):
        act, c_prev, tau = ctx.saved_tensors
        if dh is None:
            dh = torch.zeros_like(tau)
        dp = torch.empty_like(act, dtype=ctx.dtype)
        dc_prev = update_backward(act, c_prev, tau, dh, dc_out, dp)
        return dp, (dp if ctx.two else None), dc_prev
