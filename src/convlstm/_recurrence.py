r"""The whole ``"concat"`` time loop as one autograd node, with a hand-written backward.

Autograd through a ConvLSTM time loop records, per step, a convolution over :math:`[x_t, h_{t-1}]`
and the gate update. Its backward then computes, per step, the gradient of the whole
concatenated input (the :math:`C_{in}` input channels too, which nobody needs when the frames do
not require a gradient) and a per-step weight gradient of :math:`B` frames. This node runs the
same forward without autograd and computes the backward as a second time loop:

.. math::
    \bar P_t = \text{gate-update backward}(\bar h_t, \bar c_t), \qquad
    \bar h_{t-1} = \bar h^{\text{out}}_{t-1} + W_h^{\top} \star \bar P_t,

then the weight gradient, :math:`\bar W = \sum_t \bar P_t \star [x_t, h_{t-1}]`, as one
convolution per chunk of steps (``WEIGHT_GRADIENT_CHUNKS`` chunks, each over all its
:math:`n \cdot B` frames, so that only a chunk's gate gradients exist at a time), and the bias sum.
Per step it computes the gradient of :math:`h_{t-1}` only (:math:`F` channels instead of
:math:`C_{in} + F`), and none at :math:`t = 0` unless the initial state needs it; the input
gradient, when the frames need one, is one batched convolution per chunk. A zero initial state
(``StepConvolutions.zero_start``) lets the first step convolve the input channels only.

The convolutions of a step come from a :class:`StepConvolutions`: torch's (oneDNN on CPU),
:class:`NNPACKStepConvolutions` or :class:`SpectralStepConvolutions` (frequency domain).

Shapes (time-major, the path's memory format): frames :math:`(T, B, C_{in}, *S)`, state
:math:`(B, F, *S)`, weights :math:`(4F, C_{in}, *k)` and :math:`(4F, F, *k)` with the candidate
rows doubled (:func:`convlstm._gates.scaled_weights`). Outputs: the hidden states
:math:`(T, B, F, *S)` (a view of the buffer that also holds the convolutions' inputs; changing
it in place is refused by autograd) and :math:`c_T`.

Saved for the backward: the buffer :math:`[x_t, h_{t-1}]` (which holds the outputs), the
activated gates (:math:`4F` channels), :math:`c_t` and :math:`\tanh c_t` of every
step: the same as autograd through the per-step loop, minus the concatenated copies. The
backward leaves them untouched, so a retained graph can be differentiated again. The large
buffers come from the cell's workspace (:mod:`convlstm._workspace`) when the caller sets
``StepConvolutions.workspace``; each step's gates and states are then views of one buffer per
kind, otherwise separate tensors.

Only odd kernels ('same' padding without an extra pad), stride 1, dilation 1 and the default
activations come here; everything else keeps the per-step loop.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch

from ._gates import update_backward, update_in_place
from ._ops import CONV, channels_last_format
from ._workspace import take

__all__ = ["ConcatRecurrence", "NNPACKStepConvolutions", "SpectralStepConvolutions", "StepConvolutions", "nnpack_conv"]

_conv_backward = torch.ops.aten.convolution_backward

# Below this many input channels the weight gradient is split into its input and state parts
# (benchmarks/RESULTS.md: with 1 input channel 2.9 s instead of 3.7 s on the radar configuration;
# with 2 and 16 the two forms were within the measurements' noise).
SPLIT_WEIGHT_GRADIENT_BELOW = 8

# The backward computes the weight gradients in this many chunks of steps (see ConcatRecurrence)
WEIGHT_GRADIENT_CHUNKS = 4

_LOW = (torch.bfloat16, torch.float16)


class StepConvolutions:
    """The convolutions of the steps, for :class:`ConcatRecurrence`: the forward over
    :math:`[x_t, h_{t-1}]`, and in the backward the gradient of :math:`h_{t-1}` and the weight
    gradients, all 'same' with the symmetric ``padding``, stride 1, in the memory format of
    ``rank`` (channels-last for 2D/3D). This one uses torch's convolutions (oneDNN on CPU, cuDNN
    on CUDA)."""

    can_start_from_inputs = True

    def __init__(self, padding, rank: int):
        self.padding, self.rank = list(padding), rank
        self.for_backward = True  # False: inference, nothing is kept for a backward
        # set True when the initial state is known to be zero: the first step then convolves
        # the input channels only (where can_start_from_inputs)
        self.zero_start = False
        # where the node's large buffers come from between calls (None: allocated each call)
        self.workspace = None

    def new_buffer(self, shape, like: torch.Tensor, name: Optional[str] = None) -> torch.Tensor:
        """An uninitialised tensor in the path's memory format; a named one comes from
        ``self.workspace`` (a :class:`convlstm._workspace.Workspace`) when there is one."""
        return take(None if name is None else self.workspace, name, shape, like, channels_last_format(self.rank))

    def step_buffers(self, name: str, steps: int, shape, like: torch.Tensor) -> List[torch.Tensor]:
        """``steps`` uninitialised tensors of ``shape`` (in the path's memory format): views of one
        workspace buffer when there is a workspace, else one allocation each (small enough for
        the allocator's free lists, where a buffer of all the steps would be mapped afresh)."""
        if steps <= 0:
            return []
        if self.workspace is None:
            return [self.new_buffer(shape, like) for _ in range(steps)]
        whole = self.new_buffer((steps * shape[0],) + tuple(shape[1:]), like, name)
        return list(whole.view((steps,) + tuple(shape)).unbind(0))

    def scratch(self, name: str, shape, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised contiguous tensor (``like``'s dtype and device) from the workspace."""
        return take(self.workspace, name, shape, like)

    def weight_layout(self, weight: torch.Tensor) -> torch.Tensor:
        """``weight`` in the memory format the convolutions read it in, made once per call of
        the node: channels-last, as the frames (torch's CPU convolution of channels-last inputs
        otherwise copies the kernel into that format at every call)."""
        fmt = channels_last_format(self.rank)
        return weight if fmt is None else weight.contiguous(memory_format=fmt)

    def forward(self, z: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return CONV[self.rank](z, weight, bias, 1, self.padding)

    def prepare_backward(self, w_hh: torch.Tensor):
        """Whatever :meth:`state_gradient` needs from the recurrent kernel, computed once."""
        return self.weight_layout(w_hh)

    def state_gradient(self, grad_gates: torch.Tensor, state: torch.Tensor, prepared, step: int) -> torch.Tensor:
        r""":math:`W_h^\top \star \bar P_t`: the gradient of the state that ``grad_gates`` came from."""
        ones = [1] * self.rank
        return _conv_backward(grad_gates, state, prepared, None, ones, self.padding, ones, False,
                              [0] * self.rank, 1, [True, False, False])[0]

    def weight_gradients(self, grad_gates, z, start: int, w_ih, w_hh, w_cat, need_wih: bool, need_whh: bool,
                         need_bias: bool):
        r"""``(dW_ih, dW_hh, db)`` (each ``None`` where not needed) from the gate gradients
        :math:`(n, B, 4F, *S)` of the steps ``start .. start + n - 1`` and those steps' inputs
        ``z`` :math:`[x_t, h_{t-1}]` (``w_cat`` is :math:`[W_x, W_h]` as the forward convolved
        with it): one convolution backward over their :math:`n \cdot B`
        frames (two below ``SPLIT_WEIGHT_GRADIENT_BELOW`` input channels). With a zero initial
        state (``zero_start``) the first step's state channels add nothing to :math:`\bar W_h`,
        and are left out of it."""
        steps, cin = grad_gates.shape[0], w_ih.shape[1]
        ones, zeros = [1] * self.rank, [0] * self.rank
        like = grad_gates[0]

        def weight_grad(part: torch.Tensor, grads: torch.Tensor, weight: torch.Tensor, need_weight: bool,
                        bias: bool):
            """The weight (and bias) gradient over the frames of ``part`` (n, B, C, *S)."""
            out = _conv_backward(grads.flatten(0, 1), _contiguous_like(part.flatten(0, 1), like), weight,
                                 [weight.shape[0]] if bias else None, ones, self.padding, ones, False, zeros, 1,
                                 [False, need_weight, bias])
            return out[1], out[2]

        skip = 1 if self.zero_start and start == 0 and steps > 1 else 0  # h_{-1} = 0: adds nothing to dW_h
        d_wih = d_whh = None
        if cin >= SPLIT_WEIGHT_GRADIENT_BELOW:  # one weight gradient over [x_t, h_{t-1}]
            d_w, d_b = weight_grad(z[skip:steps], grad_gates[skip:], w_cat, need_wih or need_whh, need_bias)
            if d_w is not None:
                d_wih, d_whh = d_w[:, :cin], d_w[:, cin:]
            if skip and (need_wih or need_bias):  # the first step's input channels alone
                d_w0, d_b0 = weight_grad(z[:1, :, :cin], grad_gates[:1], w_ih, need_wih, need_bias)
                d_wih = d_wih + d_w0 if need_wih else d_wih
                d_b = d_b + d_b0 if need_bias else d_b
            return d_wih, d_whh, d_b
        # a few input channels: two gradients, each over aligned channels, are faster
        d_whh, d_b = weight_grad(z[skip:steps, :, cin:], grad_gates[skip:], w_hh, need_whh, need_bias and not skip)
        if need_wih:
            d_wih = weight_grad(z[:steps, :, :cin], grad_gates, w_ih, True, False)[0]
        if need_bias and skip:
            d_b = grad_gates.sum(dim=[0, 1] + list(range(3, grad_gates.dim())))
        return d_wih, d_whh, d_b


class NNPACKStepConvolutions(StepConvolutions):
    r"""2D float32 CPU steps through NNPACK (FFT tiles for 5x5 and larger kernels), the buffers
    still channels-last. The gradient of the state is NNPACK's forward with the kernel
    transposed and flipped, :math:`\bar h = \operatorname{flip}(W_h)^{\top} \star \bar P`
    (the adjoint of a stride-1 'same' convolution with symmetric padding); see :func:`nnpack_conv`."""

    def weight_layout(self, weight):
        return weight  # NNPACK reads standard (contiguous) kernels

    def forward(self, z, weight, bias):
        return nnpack_conv(z, weight, bias, self.padding, torch.channels_last)

    def prepare_backward(self, w_hh):
        return w_hh.transpose(0, 1).flip(2, 3).contiguous()

    def state_gradient(self, grad_gates, state, prepared, step):
        return nnpack_conv(grad_gates, prepared, None, self.padding, torch.channels_last)


def _dft_matrix(positions: int, frequencies: int, length: int, sign: float, dtype, device) -> torch.Tensor:
    r""":math:`E_{jw} = e^{\pm 2\pi i\, j w / n}` for positions :math:`j < ` ``positions`` and
    frequencies :math:`w <` ``frequencies`` of a length-``length`` DFT (``sign`` -1: forward,
    +1: inverse, unnormalised), computed in float64."""
    phase = torch.arange(positions, dtype=torch.float64).outer(torch.arange(frequencies, dtype=torch.float64))
    phase = phase * (sign * 2 * math.pi / length)
    return torch.polar(torch.ones_like(phase), phase).to(device=device, dtype=dtype)


class SpectralStepConvolutions(StepConvolutions):
    r"""2D steps computed in the frequency domain, for odd kernels of 5x5 and more on small images.

    With the frame padded by :math:`p = (k-1)/2` to :math:`P \times Q = (H + k - 1) \times (W + k - 1)`
    and :math:`\hat a = \operatorname{rfft2}(a)` at that size, the three convolutions of a step are
    products per frequency :math:`\omega` (batched matrix products over the
    :math:`P (Q/2 + 1)` frequencies), exact up to rounding because none of them wraps around:

    .. math::
        \hat G_\omega = \hat Z_\omega \overline{\hat W_\omega}^{\top}, \qquad
        \hat{\bar Z}_\omega = \hat{\bar G}_\omega \hat W_\omega, \qquad
        \hat{\bar W}_\omega = \sum_{t, b} \overline{\hat{\bar G}_{\omega, tb}}^{\top}\,\hat Z_{\omega, tb}

    for the gates :math:`G = W \star Z` (cropped to :math:`H \times W`), the gradient of the padded
    input (cropped by :math:`p` on each side) and the weight gradient (its first :math:`k \times k`
    lags), with :math:`\hat Z` :math:`(B, C)`, :math:`\hat W` :math:`(4F, C)` and
    :math:`\hat G` :math:`(B, 4F)` per frequency. A direct convolution costs
    :math:`k^2 HW` multiply-adds per channel pair and image, this :math:`4 P (Q/2+1)` real ones
    plus the transforms, which are linear in the channels: several times fewer for 5x5 kernels
    when the channels are many and the images small. The forward keeps the spectra of the
    steps' inputs for the weight gradient."""

    can_start_from_inputs = False  # one kernel spectrum, [W_x, W_h]'s, serves every step

    def __init__(self, padding, rank: int, kernel_size):
        super().__init__(padding, rank)
        self.kernel_size = tuple(kernel_size)
        self.input_spectra: List[torch.Tensor] = []
        self.grad_spectra: List[Optional[torch.Tensor]] = []
        self._weight_spectrum: Optional[torch.Tensor] = None
        self._kernel = None

    def weight_layout(self, weight):
        return weight  # transformed once per call (_kernel_spectrum), in any layout

    def _size(self, spatial):
        return tuple(n + k - 1 for n, k in zip(spatial, self.kernel_size))

    def _spectrum(self, a: torch.Tensor, size) -> torch.Tensor:
        """:math:`(N, C, H', W')` -> :math:`(P (Q/2+1), N, C)` complex, zero-padded at the end to ``size``."""
        spec = torch.fft.rfft2(a.permute(2, 3, 0, 1), s=size, dim=(0, 1))
        return spec.reshape(-1, a.shape[0], a.shape[1])

    def _image(self, spec: torch.Tensor, size, rows: slice, cols: slice) -> torch.Tensor:
        """The inverse of :meth:`_spectrum`, cropped, as a channels-last :math:`(N, C, h, w)` tensor."""
        half = (size[0], size[1] // 2 + 1)
        full = torch.fft.irfft2(spec.view(half + tuple(spec.shape[1:])), s=size, dim=(0, 1))
        crop = full[rows, cols].permute(2, 3, 0, 1)
        out = self.new_buffer(tuple(crop.shape), crop)
        out.copy_(crop)
        return out

    def _kernel_spectrum(self, weight: torch.Tensor, size, conjugate: bool, transpose: bool) -> torch.Tensor:
        r"""The rfft2 of a :math:`(O, C, k_1, k_2)` kernel at ``size`` as :math:`(P (Q/2+1), C, O)`
        (or :math:`(\cdot, O, C)` with ``transpose``), conjugated if asked: two products with DFT
        matrices of :math:`k` rows, cheaper than transforming the zero-padded kernel."""
        k1, k2 = weight.shape[2], weight.shape[3]
        ctype = torch.complex128 if weight.dtype == torch.float64 else torch.complex64
        sign = 1.0 if conjugate else -1.0
        e_rows = _dft_matrix(k1, size[0], size[0], sign, ctype, weight.device)
        e_cols = _dft_matrix(k2, size[1] // 2 + 1, size[1], sign, ctype, weight.device)
        w = weight.permute(2, 3, 0, 1) if transpose else weight.permute(2, 3, 1, 0)  # (k1, k2, a, b)
        a, b = w.shape[2], w.shape[3]
        # contract k2: (k1, Qh, k2) @ (k1, k2, a*b) -> (k1, Qh, a*b)
        part = torch.matmul(e_cols.transpose(0, 1).expand(k1, -1, -1), w.reshape(k1, k2, a * b).to(ctype))
        # contract k1: (P, k1) @ (k1, Qh*a*b) -> (P, Qh, a, b)
        full = self.scratch("kernel_spectrum", (size[0], part[0].numel()), part)
        torch.matmul(e_rows.transpose(0, 1), part.reshape(k1, -1), out=full)
        return full.view(-1, a, b)

    def forward(self, z, weight, bias):
        spatial = tuple(z.shape[2:])
        size = self._size(spatial)
        if self._kernel is None:  # the same kernel at every step: transformed once, conjugated
            self._kernel = self._kernel_spectrum(weight, size, conjugate=True, transpose=False)
        pad = self.padding
        zp = torch.nn.functional.pad(z, (pad[1], pad[1], pad[0], pad[0]))
        spec = self._spectrum(zp, size)
        if self.for_backward:  # for the weight gradient
            self.input_spectra.append(spec)
        gates = self._image(torch.matmul(spec, self._kernel), size, slice(0, spatial[0]), slice(0, spatial[1]))
        if bias is not None:
            gates.add_(bias.view(1, -1, 1, 1))
        return gates

    def prepare_backward(self, w_hh):
        self.grad_spectra = [None] * len(self.input_spectra)
        self._weight_spectrum = None
        cin = self._kernel.shape[1] - w_hh.shape[1]
        return self._kernel[:, cin:, :].transpose(1, 2)  # conj(W_h^)^T (f, 4F, F), a view

    def _grad_spectrum(self, grad_gates, t: int):
        """The conjugate of the spectrum of step ``t``'s gate gradients, :math:`(f, B, 4F)`: the
        state gradient and the weight gradient both use it conjugated."""
        spec = self.grad_spectra[t]
        if spec is None:
            spec = self._spectrum(grad_gates, self._size(tuple(grad_gates.shape[2:]))).conj().resolve_conj()
            self.grad_spectra[t] = spec
        return spec

    def state_gradient(self, grad_gates, state, prepared, step):
        spatial = tuple(grad_gates.shape[2:])
        # G^ W^ = conj(conj(G^) conj(W^)): both conjugates are stored already
        spec = torch.matmul(self._grad_spectrum(grad_gates, step), prepared).conj().resolve_conj()
        pad = self.padding
        return self._image(spec, self._size(spatial), slice(pad[0], pad[0] + spatial[0]),
                           slice(pad[1], pad[1] + spatial[1]))

    def _first_lags(self, spec: torch.Tensor, size) -> torch.Tensor:
        """The real inverse of a half spectrum :math:`(P (Q/2+1), a, b)` at its first
        :math:`k_1 \times k_2` positions only, :math:`(k_1, k_2, a, b)`: an inverse DFT along the
        rows for the first :math:`k_1` of them (a matrix product), then ``irfft`` along the columns."""
        k1, k2 = self.kernel_size
        e_rows = _dft_matrix(k1, size[0], size[0], 1.0, spec.dtype, spec.device) / size[0]
        half = size[1] // 2 + 1
        part = torch.matmul(e_rows, spec.reshape(size[0], -1)).view((k1, half) + tuple(spec.shape[1:]))
        return torch.fft.irfft(part, n=size[1], dim=1)[:, :k2]

    def weight_gradients(self, grad_gates, z, start, w_ih, w_hh, w_cat, need_wih, need_whh, need_bias):
        """Accumulates the chunk's products in the frequency domain; the weight gradients come
        back (one inverse transform) with the last chunk, ``start == 0``."""
        steps = grad_gates.shape[0]
        d_b = grad_gates.sum(dim=(0, 1, 3, 4)) if need_bias else None
        d_wih = d_whh = None
        if need_wih or need_whh:
            parts = [self._grad_spectrum(grad_gates[j], start + j) for j in range(steps)]
            grads_h = self.scratch("gate_gradient_spectra", (parts[0].shape[0], sum(p.shape[1] for p in parts),
                                                             parts[0].shape[2]), parts[0])
            torch.cat(parts, dim=1, out=grads_h)
            inputs = torch.cat(self.input_spectra[start: start + steps], dim=1)  # (f, nB, C)
            grads_h = grads_h.transpose(1, 2)  # (f, 4F, nB), conjugated
            if self._weight_spectrum is None:  # (f, 4F, C)
                self._weight_spectrum = self.scratch("weight_spectrum", (grads_h.shape[0], grads_h.shape[1],
                                                                         inputs.shape[2]), inputs)
                torch.matmul(grads_h, inputs, out=self._weight_spectrum)
            else:
                self._weight_spectrum.baddbmm_(grads_h, inputs)
            if start == 0:
                size = self._size(tuple(grad_gates.shape[3:]))
                spec, self._weight_spectrum = self._weight_spectrum, None
                d_w = self._first_lags(spec, size).permute(2, 3, 0, 1)
                cin = w_ih.shape[1]
                d_wih, d_whh = d_w[:, :cin].contiguous(), d_w[:, cin:].contiguous()
        for j in range(steps):  # this chunk's spectra are no longer needed
            self.grad_spectra[start + j] = None
        return d_wih, d_whh, d_b


NNPACK_PER_SAMPLE_MIN_PIXELS = 64 * 64


def nnpack_conv(z: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], padding,
                memory_format=torch.contiguous_format) -> torch.Tensor:
    r"""A stride-1 2D float32 convolution :math:`(N, C, H, W) \to (N, O, H', W')` through NNPACK,
    written into a new tensor of ``memory_format``. On images of at least
    ``NNPACK_PER_SAMPLE_MIN_PIXELS`` pixels NNPACK runs once per sample: its single-image
    algorithm was 1.7x (forward) and 3.3x (state gradient) faster than its batched one on
    128x128 images, and slower on 32x32 ones (benchmarks/RESULTS.md)."""
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    weight = weight.contiguous()
    spatial = tuple(n + 2 * p - k + 1 for n, p, k in zip(z.shape[2:], padding, weight.shape[2:]))
    out = torch.empty((z.shape[0], weight.shape[0]) + spatial, dtype=z.dtype, device=z.device,
                      memory_format=memory_format)
    per_sample = z.shape[2] * z.shape[3] >= NNPACK_PER_SAMPLE_MIN_PIXELS and z.shape[0] > 1
    start = 0
    for part in (z.split(1) if per_sample else (z,)):
        out[start: start + part.shape[0]].copy_(
            torch._nnpack_spatial_convolution(part.contiguous(), weight, bias, list(padding), [1, 1]))
        start += part.shape[0]
    return out


class ConcatRecurrence(torch.autograd.Function):
    """``apply(frames, h0, c0, w_ih, w_hh, bias, convs)`` -> ``(hidden_states, c_T)``, with
    ``convs`` a :class:`StepConvolutions`. The weight and input gradients are torch's
    (``aten.convolution_backward``), batched over all steps.
    """

    @staticmethod
    def forward(ctx, frames: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor,
                w_hh: torch.Tensor, bias: Optional[torch.Tensor], convs: StepConvolutions):
        steps, batch, cin = frames.shape[0], frames.shape[1], frames.shape[2]
        nf = c0.shape[1]
        spatial = tuple(c0.shape[2:])
        # the convolutions' inputs in their precision (h0's), the gates and cell states in c0's
        z = convs.new_buffer(((steps + 1) * batch, cin + nf) + spatial, h0, "inputs").view(
            (steps + 1, batch, cin + nf) + spatial)
        z[:steps, :, :cin].copy_(frames)
        z[0, :, cin:].copy_(h0)
        w_cat = convs.weight_layout(torch.cat([w_ih, w_hh], dim=1))
        w_first = convs.weight_layout(w_ih) if convs.zero_start else None
        # per step: the activated gates, c_t and tanh c_t (inference keeps one step's of each);
        # the last c_T is an output, so it never lives in a workspace buffer
        kept = steps if convs.for_backward else 1
        acts = convs.step_buffers("gates", kept, (batch, w_hh.shape[0]) + spatial, c0)
        cs = convs.step_buffers("cell_states", kept - 1, (batch, nf) + spatial, c0) + [torch.empty_like(c0)]
        taus = convs.step_buffers("tanh_cell_states", kept, (batch, nf) + spatial, c0)
        c = c0
        for t in range(steps):
            j = t if convs.for_backward else 0
            c_new = cs[j] if t < steps - 1 else cs[-1]
            gates = (convs.forward(z[0, :, :cin], w_first, bias) if t == 0 and convs.zero_start
                     else convs.forward(z[t], w_cat, bias))
            update_in_place(gates, c, c_new, taus[j], z[t + 1, :, cin:], act_out=acts[j])
            c = c_new
        ctx.save_for_backward(z, w_ih, w_hh, w_cat, c0, *acts, *cs[:-1], *taus)
        ctx.steps, ctx.convs, ctx.has_bias = steps, convs, bias is not None
        return z[1:, :, cin:], c

    @staticmethod
    def backward(ctx, grad_seq: Optional[torch.Tensor], grad_c: Optional[torch.Tensor]):
        steps = ctx.steps
        z, w_ih, w_hh, w_cat, c0, *rest = ctx.saved_tensors
        acts, cs, taus = rest[:steps], rest[steps: 2 * steps - 1], rest[2 * steps - 1:]
        cin = w_ih.shape[1]
        batch = c0.shape[0]
        rank = c0.dim() - 2
        ones, zeros = [1] * rank, [0] * rank
        padding = ctx.convs.padding
        need_frames, need_h0, need_c0, need_wih, need_whh, need_bias = ctx.needs_input_grad[:6]
        prepared = ctx.convs.prepare_backward(w_hh)

        want_bias = ctx.has_bias and need_bias
        # 16-bit convolutions: the bias gradient is summed step by step from the float32 gate
        # gradients (the weight gradients' convolutions would sum the rounded ones)
        bias_total = (torch.zeros(w_hh.shape[0], dtype=c0.dtype, device=c0.device)
                      if want_bias and z.dtype in _LOW else None)
        scratch = torch.empty_like(acts[0]) if z.dtype in _LOW else None  # the float32 gate gradients
        spatial = tuple(c0.shape[2:])
        # the weight gradients run once per chunk of steps, so that only a chunk's gate gradients
        # are held at a time (about a quarter of the activations' memory) while each call still
        # batches several steps' frames
        chunk = max(1, math.ceil(steps / WEIGHT_GRADIENT_CHUNKS))
        grad_buffer = ctx.convs.new_buffer((chunk * batch, w_hh.shape[0]) + spatial, z, "gate_gradients").view(
            (chunk, batch, w_hh.shape[0]) + spatial)
        d_frames = torch.empty_like(z[:steps, :, :cin]) if need_frames else None
        totals: List[Optional[torch.Tensor]] = [None, None, None]
        dh: Optional[torch.Tensor] = None
        dc = grad_c
        for start in reversed(range(0, steps, chunk)):
            stop = min(start + chunk, steps)
            for t in range(stop - 1, start - 1, -1):
                g_out = None if grad_seq is None else grad_seq[t]
                if dh is None:
                    dh_t = g_out if g_out is not None else torch.zeros_like(c0)
                else:
                    dh_t = dh if g_out is None else dh.add_(g_out)
                c_prev = cs[t - 1] if t > 0 else c0
                dc = update_backward(acts[t], c_prev, taus[t], dh_t, dc, grad_buffer[t - start], bias_total,
                                     scratch)
                if t > 0 or need_h0:
                    dh = ctx.convs.state_gradient(grad_buffer[t - start], z[t, :, cin:], prepared, t)
            grads = grad_buffer[: stop - start]
            parts = ctx.convs.weight_gradients(grads, z[start:stop], start, w_ih, w_hh, w_cat, need_wih, need_whh,
                                               want_bias and bias_total is None)
            # 16-bit convolutions: the chunks' weight gradients are summed in float32 (the bias's is bias_total)
            parts = [p if p is None or p.dtype not in _LOW else p.float() for p in parts]
            totals = [p if total is None else (total if p is None else total.add_(p)) for total, p in zip(totals, parts)]
            if need_frames:
                d_frames[start:stop] = _conv_backward(
                    grads.flatten(0, 1), z[start:stop, :, :cin].flatten(0, 1), w_ih, None, ones, padding, ones, False,
                    zeros, 1, [True, False, False])[0].view((stop - start, batch, cin) + spatial)
        d_wih, d_whh, d_b = totals
        if bias_total is not None:
            d_b = bias_total
        return (d_frames, dh if need_h0 else None, dc if need_c0 else None, d_wih if need_wih else None,
                d_whh if need_whh else None, d_b if want_bias else None, None)


def _contiguous_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` made dense in ``like``'s memory format (channels-last on the oneDNN paths, standard
    for NNPACK), the layout the convolutions read fastest."""
    fmt = channels_last_format(like.dim() - 2)
    if fmt is not None and like.shape[1] > 1 and like.is_contiguous(memory_format=fmt) and not like.is_contiguous():
        return t.contiguous(memory_format=fmt)
    return t.contiguous()
