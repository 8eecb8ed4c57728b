r"""A ConvLSTM forecaster whose output keeps full resolution: it moves the last frame instead of
redrawing it.

Why: a decoder that paints every forecast frame from a coarse hidden state blurs it (the mean of
the plausible futures under a squared error) and, after space-to-depth patches, paints blocks.
Rain cells, crowds and digits are mostly *carried along*; a forecast that resamples the last
observed frame along a motion field keeps their shape, and a small learned correction can add
what motion does not explain (growth, decay, new cells).

The motion starts from what the inputs show: :func:`block_matching` over every consecutive pair
of input frames gives a displacement field :math:`m` (pixels per step), followed back semi-Lagrangian
(as optical-flow extrapolation does), so an **untrained model already extrapolates**; the
ConvLSTM learns a refinement :math:`\delta_k` of it (e.g. a digit bouncing off a wall) and the
correction :math:`r_k`. For lead time :math:`k = 1 \dots K` (:math:`x_T` the last observed frame,
:math:`h_k` the top ConvLSTM state after step :math:`k`, :math:`D` the decoder):

.. math::
    \begin{aligned}
    (\delta_k, r_k) &= D(h_k, \text{skips}) \\
    v_k(p) &= v_{k-1}(p) + m\big(p + v_{k-1}(p)\big), \quad v_0 = 0 \\
    u_k &= v_k + \sum_{j \le k} \delta_j \\
    \hat{x}_{T+k}(p) &= x_T\big(p + u_k(p)\big) + r_k(p)
    \end{aligned}

:math:`u_k` is the displacement (pixels) from the last observed frame, sampled bilinearly with
:func:`torch.nn.functional.grid_sample` (:func:`warp_frame`): **one resampling per lead time**, so
interpolation blur does not compound. ``motion="learned"`` drops :math:`v_k` (the network must
find the motion alone, through the warp's gradient, which reaches one pixel only: measured, it
barely learns); ``correction=False`` drops :math:`r_k` (the forecast can only move the frame:
sharp, the demo's choice). The heads:

=============  ==================================================================================
``head``       forecast
=============  ==================================================================================
``"warp"``     :math:`x_T(p + u_k(p)) + r_k(p)` (default)
``"kernel"``   a learned :math:`(2R+1)^2` kernel per pixel applied to the previous frame, plus
               :math:`r_k` (:func:`apply_local_kernels`, dynamic filter networks)
``"residual"`` :math:`x_T(p) + r_k(p)`: the change from the last frame
``"direct"``   :math:`r_k(p)`: the decoder's output itself (learned up-sampling with skips)
=============  ==================================================================================

The decoder's last convolutions start at zero: an untrained ``residual`` model forecasts
persistence, an untrained ``warp`` model block-matching extrapolation (with
``motion="lucas-kanade"``, pysteps's Lucas-Kanade extrapolation; persistence with
``motion="learned"``), an untrained ``kernel`` model nearly persistence.

The network: every frame, with its difference from the frame before, goes through a
convolutional encoder that halves the resolution :math:`\log_2 p` times (``patch_size``
:math:`p`); a stack of :class:`convlstm.ConvLSTM2D` layers reads the encoded input frames, then
runs :math:`K` more steps, each reading the encoding of the previous forecast (or, in training
with scheduled sampling, of the true frame). The decoder up-samples the top state back to full
resolution with a convolution after each doubling, concatenating the encoder's features of the
frame just read at each scale (skip connections, as in U-Net); the refinement
:math:`\delta_k` comes from the ConvLSTM's resolution, up-sampled bilinearly (``flow="coarse"``),
or from the full-resolution decoder (``flow="fine"``).

Frames whose rows or columns are not multiples of :math:`p` are padded (edge values) and the
forecast cropped back.
"""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import activations as _activations
from .._ops import box_sum
from .._checks import check_bool, check_choice, check_positive_int
from ..layers import ConvLSTM2D
from ._common import check_model_input, int_tuple, optional_positive_int
from .blending import BlendTowardStart
from .registry import register_model

__all__ = ["MotionWarpForecaster", "auto_patch_size", "warp_frame", "lucas_kanade_motion"]

HEADS = ("warp", "kernel", "residual", "direct")
FLOWS = ("coarse", "fine")
MOTIONS = ("block-matching", "lucas-kanade", "learned")
PADDING_MODES = ("border", "zeros", "reflection")
#: ``patch_size="auto"`` keeps the ConvLSTM grid at most this many cells (64 x 64).
AUTO_MAX_CELLS = 64 * 64
#: block matching runs on frames averaged down to at most this many cells (128 x 128)
MOTION_MAX_CELLS = 128 * 128
#: block matching's scale :math:`s` in pixels: it compares windows of :math:`2s+1` and spreads the
#: motion over :math:`4s+1` pixels (:func:`block_matching`'s ``window`` and ``spread``)
MATCH_SCALE = 8
#: the bytes block matching's cost maps may take at once; larger batches are matched in parts
MOTION_CHUNK_BYTES = 256 * 2 ** 20


def auto_motion_radius(rows: int, cols: int) -> int:
    r"""``motion_radius="auto"``: the largest motion block matching looks for, in pixels per step,
    :math:`\max(8, \lceil \min(H, W) / 16 \rceil)`: 8 for frames up to 128 pixels a side, 16 for
    256 x 256 (a storm at 60 km/h crosses 20 pixels of 0.5 km in a 10-minute step).

    Example::

        >>> auto_motion_radius(256, 256), auto_motion_radius(64, 64), auto_motion_radius(16, 8)
        (16, 8, 8)
    """
    rows, cols = check_positive_int("rows", rows), check_positive_int("cols", cols)
    return max(8, math.ceil(min(rows, cols) / 16))


def auto_patch_size(rows: int, cols: int, max_cells: int = AUTO_MAX_CELLS) -> int:
    r"""The smallest power of two :math:`p` with :math:`\lceil H/p \rceil \lceil W/p \rceil \le`
    ``max_cells``: the ConvLSTM then runs on at most 64 x 64 cells.

    Why 64 x 64: a ConvLSTM step costs :math:`O(HW F^2 k^2)` and its training memory grows with
    :math:`HW` times the steps; on the KNMI radar crop (256 x 256) a full-resolution ConvLSTM with
    32 filters needs several GB per sample for 9 steps, while at 64 x 64 it trains in seconds per
    batch on 2 CPU cores (see ``benchmarks/forecast_skill.py``). Small grids (BikeNYC's 16 x 8,
    Moving MNIST's 32 x 32 needs ``p = 1``) are left at full resolution.

    Example::

        >>> auto_patch_size(256, 256), auto_patch_size(32, 32), auto_patch_size(16, 8)
        (4, 1, 1)
    """
    rows, cols = check_positive_int("rows", rows), check_positive_int("cols", cols)
    p = 1
    while math.ceil(rows / p) * math.ceil(cols / p) > max_cells:
        p *= 2
    return p


def warp_frame(frame: torch.Tensor, displacement: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    r"""Backward warping: :math:`out(p) = frame(p + u(p))`, sampled bilinearly.

    Args:
        frame: :math:`(B, C, H, W)`.
        displacement: :math:`(B, 2, H, W)`, :math:`u` in pixels, channel 0 along columns
            (:math:`x`), channel 1 along rows (:math:`y`).
        padding_mode: where :math:`p + u` leaves the frame: ``"border"`` (edge values),
            ``"zeros"`` or ``"reflection"`` (as :func:`torch.nn.functional.grid_sample`).

    Example::

        >>> f = torch.zeros(1, 1, 4, 4); f[0, 0, 1, 1] = 1
        >>> u = torch.zeros(1, 2, 4, 4); u[:, 0] = -1       # look one column to the left
        >>> warp_frame(f, u)[0, 0, 1, 2].item()              # the pixel moved one column right
        1.0
    """
    b, _, h, w = frame.shape
    ys = torch.arange(h, device=frame.device, dtype=displacement.dtype)
    xs = torch.arange(w, device=frame.device, dtype=displacement.dtype)
    # grid_sample's normalised coordinates with align_corners=False: pixel i -> (2 i + 1) / n - 1
    gx = (2 * (xs.view(1, 1, w) + displacement[:, 0]) + 1) / w - 1
    gy = (2 * (ys.view(1, h, 1) + displacement[:, 1]) + 1) / h - 1
    grid = torch.stack((gx, gy), dim=-1)
    return F.grid_sample(frame, grid.to(frame.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def apply_local_kernels(frame: torch.Tensor, logits: torch.Tensor, radius: int,
                        padding_mode: str = "border") -> torch.Tensor:
    r"""Move a frame with a learned kernel per pixel (De Brabandere et al., "Dynamic Filter
    Networks", NIPS 2016): :math:`out(p) = \sum_{|d|_\infty \le r} w_p(d)\, frame(p + d)` with
    :math:`w_p = \mathrm{softmax}(\text{logits}_p)` over the :math:`(2r+1)^2` offsets.

    Every offset in the window receives a gradient, so motion of up to :math:`r` pixels per step
    is learnt from the start (a bilinear warp's gradient reaches one pixel only), and a peaked
    kernel moves the frame without blurring it.

    Args:
        frame: :math:`(B, C, H, W)`.
        logits: :math:`(B, (2r+1)^2, H, W)`, offsets in row-major order (row offset outer).
        radius: :math:`r`.
        padding_mode: values beyond the edge: ``"border"`` (edge values), ``"zeros"`` or
            ``"reflection"``.

    Example::

        >>> f = torch.zeros(1, 1, 5, 5); f[0, 0, 2, 2] = 1
        >>> logits = torch.full((1, 9, 5, 5), -30.0); logits[:, 3] = 30   # offset (0, -1)
        >>> apply_local_kernels(f, logits, 1)[0, 0, 2, 3].item()          # moved one column right
        1.0
    """
    b, c, h, w = frame.shape
    k = 2 * radius + 1
    if logits.shape != (b, k * k, h, w):
        raise ValueError(f"apply_local_kernels: logits must be {(b, k * k, h, w)} for radius={radius}, "
                         f"got {tuple(logits.shape)}")
    mode = {"border": "replicate", "zeros": "constant", "reflection": "reflect"}[padding_mode]
    padded = F.pad(frame, (radius,) * 4, mode=mode)
    patches = F.unfold(padded, k).view(b, c, k * k, h, w)
    return (patches * torch.softmax(logits, dim=1).unsqueeze(1)).sum(dim=2)


@torch.no_grad()
def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return t.is_meta or is_fake(t)


def _traced() -> bool:
    """Whether the forward pass is being traced or compiled (ONNX export, TorchScript, torch.compile):
    a cache read there would be recorded as a constant."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


class MotionCache:
    """Motion fields by the content of the frames they were measured on (a BLAKE2 digest, see
    :func:`cached_per_sample`), least recently used dropped beyond ``max_bytes``: a training run
    feeds the same windows every epoch, and optical flow on the CPU costs more than the network's
    step (block matching a sixth of it on 32 x 32 frames)."""

    def __init__(self, max_bytes: int = 256 * 2 ** 20) -> None:
        from collections import OrderedDict

        self.max_bytes, self.bytes = int(max_bytes), 0
        self._fields: "OrderedDict[bytes, np.ndarray]" = OrderedDict()

    def get(self, key: bytes) -> Optional[np.ndarray]:
        value = self._fields.get(key)
        if value is not None:
            self._fields.move_to_end(key)
        return value

    def put(self, key: bytes, value: np.ndarray) -> None:
        self._fields[key] = value
        self.bytes += value.nbytes
        while self.bytes > self.max_bytes and len(self._fields) > 1:
            self.bytes -= self._fields.popitem(last=False)[1].nbytes


def cached_per_sample(inputs: torch.Tensor, compute: Callable[[torch.Tensor], torch.Tensor],
                      cache: Optional[MotionCache]) -> torch.Tensor:
    r"""``compute(inputs)`` for inputs :math:`(B, \ldots)` whose samples are computed independently,
    with each sample looked up in ``cache`` first by the content of its input (a BLAKE2 digest of
    its bytes, shape and dtype): only the samples not found are computed, as one batch, and kept.
    Without a cache, off the CPU (no copy to the host in the loop), on tensors without values (the
    memory probe's) or in a dtype numpy lacks, it is ``compute(inputs)``. The result holds no
    gradient.

    Returns:
        :math:`(B, \ldots)`, the outputs of ``compute`` in the inputs' sample order.
    """
    import hashlib

    if (cache is None or inputs.device.type != "cpu" or _is_fake(inputs)
            or inputs.dtype not in (torch.float32, torch.float64) or _traced()):
        return compute(inputs)
    samples = inputs.detach().contiguous().numpy()
    keys = [hashlib.blake2b(a.tobytes(), digest_size=16).digest() + f"{a.shape}{a.dtype}".encode("ascii")
            for a in samples]
    found = [cache.get(k) for k in keys]
    missing = [i for i, v in enumerate(found) if v is None]
    if missing:
        fresh = compute(inputs[missing]).detach().cpu()
        for j, i in enumerate(missing):
            found[i] = fresh[j].numpy().copy()
            cache.put(keys[i], found[i])
    return torch.from_numpy(np.stack(found))


def lucas_kanade_motion(frames: torch.Tensor, cache: Optional[MotionCache] = None) -> torch.Tensor:
    r"""pysteps's dense Lucas-Kanade optical flow of each sample's frames, as a backward
    displacement for :func:`warp_frame`: :math:`u = -V`, with :math:`V` the motion (pixels per
    step, x then y) that ``pysteps.motion.get_method("lucaskanade")`` finds in the frames averaged
    over channels (the extrapolation baseline's estimate; its features are found on each frame
    scaled to 0-255, so the data's scaling does not matter). On the CPU, in float64, no gradient.

    Args:
        frames: :math:`(B, T, C, H, W)`, :math:`T \ge 2`, finite.
        cache: a :class:`MotionCache` to look each sample's frames up in first (and keep its field).

    Returns:
        :math:`(B, 2, H, W)`, on the frames' device and dtype.
    """
    import contextlib
    import io

    from ..extrapolation import require_pysteps

    b, _, _, h, w = frames.shape
    if _is_fake(frames):  # the memory probe's tensors hold no values: the motion's size is what counts
        return frames.new_zeros(b, 2, h, w)
    motion, _ = require_pysteps()
    estimate = motion.get_method("lucaskanade")

    def measure(subset: torch.Tensor) -> torch.Tensor:
        fields = subset.detach().double().mean(dim=2).cpu().numpy()          # (b, T, H, W)
        with contextlib.redirect_stdout(io.StringIO()):
            return torch.from_numpy(np.stack([np.asarray(estimate(f), dtype=np.float64) for f in fields]))

    velocity = cached_per_sample(frames, measure, cache)
    return -velocity.to(dtype=frames.dtype, device=frames.device)


def block_matching(previous: torch.Tensor, current: torch.Tensor, radius: int,
                   window: Optional[int] = None, spread: Optional[int] = None) -> torch.Tensor:
    r"""The motion between frames by block matching: for every pixel :math:`p`, the offset
    :math:`d` (:math:`|d|_\infty \le r`) whose window of the previous frames best matches the
    window of the current ones around :math:`p`, refined to sub-pixel precision, then spread from
    where it was measured to the surroundings. Given :math:`P` pairs of frames that share one motion
    (the consecutive pairs of a sequence), their mismatches add:

    .. math::
        s_p(d) = \sum_{j=1}^{P} \frac{1}{|N|} \sum_{q \in N(p)}
                 \lVert x^{(j)}(q) - x^{(j)}_{\text{prev}}(q + d) \rVert^2, \qquad
        d^*_p = \arg\min_d s_p(d) + \text{sub-pixel refinement per axis}

    :math:`N(p)` is the ``window`` x ``window`` square around :math:`p` (default :math:`2r+1`).
    The refinement fits two lines of equal and opposite slope through :math:`s_p` at
    :math:`d^* - e, d^*, d^* + e` along each axis :math:`e` (the equiangular fit, offset
    :math:`(s_- - s_+) / (2 (\max(s_-, s_+) - s_0))`, at most half a pixel). The confidence of :math:`d^*_p` is the
    contrast :math:`w_p = \operatorname{mean}_d s_p(d) - \min_d s_p(d)` (zero on an empty
    background); the returned field is twice the confidence-weighted box average over ``spread``
    pixels (default :math:`4r+1`), :math:`u = \overline{w d^*} / \overline{w}`, so that a backward
    warp finds the motion at the pixels the content moves to.

    :math:`u` is a *backward* displacement: :math:`x_t(p) \approx x_{t-1}(p + u(p))`, so constant
    motion continues as :math:`x_{t+k}(p) \approx x_t(p + k\,u(p))`. No gradient flows through it;
    it holds :math:`P (2r+1)^2` cost maps of one channel.

    Args:
        previous, current: :math:`(B, C, H, W)`, or :math:`(B, P, C, H, W)` for :math:`P` pairs
            (``previous[:, j]`` before ``current[:, j]``); values beyond the edges repeat the edge.
        radius: :math:`r`, the largest motion found, in pixels per frame.
        window, spread: odd sizes in pixels (defaults :math:`2r+1` and :math:`4r+1`).

    Returns:
        :math:`(B, 2, H, W)`: channel 0 along columns, channel 1 along rows (as :func:`warp_frame`).

    Example::

        >>> prev = torch.zeros(1, 1, 12, 12); prev[0, 0, 4:7, 3:6] = 1
        >>> cur = torch.roll(prev, shifts=2, dims=3)           # moved 2 columns right
        >>> [round(float(v)) for v in block_matching(prev, cur, 3)[0, :, 5, 6]]   # look back 2 columns
        [-2, 0]
    """
    r = check_positive_int("radius", radius)
    win = 2 * r + 1 if window is None else check_positive_int("window", window)
    spread = 4 * r + 1 if spread is None else check_positive_int("spread", spread)
    if previous.shape != current.shape or previous.dim() not in (4, 5):
        raise ValueError(f"previous and current must have one shape, (B, C, H, W) or (B, P, C, H, W); got "
                         f"{tuple(previous.shape)} and {tuple(current.shape)}")
    # outside a trace, as many samples at a time as keep the cost maps (three float32 arrays of
    # P n^2 H W per sample) within MOTION_CHUNK_BYTES: the same numbers, less memory
    if not _traced():   # (a trace must not branch on the batch's size)
        pairs = 1 if current.dim() == 4 else current.shape[1]
        chunk = max(1, MOTION_CHUNK_BYTES // (12 * pairs * (2 * r + 1) ** 2 * current.shape[-2] * current.shape[-1]))
        if current.shape[0] > chunk:
            return torch.cat([block_matching(p, c, r, win, spread) for p, c in zip(previous.split(chunk),
                                                                                    current.split(chunk))])
    with torch.no_grad():
        b, h, w = current.shape[0], current.shape[-2], current.shape[-1]
        cur, prev = current.float().flatten(0, -4), previous.float().flatten(0, -4)    # (B P, C, H, W)
        n = 2 * r + 1
        padded = F.pad(prev, (r, r, r, r), mode="replicate")
        shifted = F.unfold(padded, n).view(cur.shape[0], cur.shape[1], n * n, h, w)   # offset i = divmod(i, n)
        mismatch = (shifted - cur.unsqueeze(2)).square_().sum(1)                      # (B P, n^2, H, W)
        costs = box_mean(mismatch.view(b, -1, n * n, h, w).sum(1), win)              # box_mean is linear
        low, best = costs.min(dim=1, keepdim=True)
        contrast = costs.mean(dim=1, keepdim=True) - low
        iy, ix = torch.div(best, n, rounding_mode="floor"), best % n

        def at(y, x):    # the cost at offset (y, x) of the window, clamped to it
            return costs.gather(1, y.clamp(0, n - 1) * n + x.clamp(0, n - 1))

        def refine(c_minus, c_zero, c_plus, inside):
            # equiangular (V-shaped) fit: exact for the linear growth of a sharp edge's mismatch
            rise = torch.maximum(c_minus, c_plus) - c_zero
            step = torch.where(inside & (rise > 0), (c_minus - c_plus) / (2 * rise).clamp_min(1e-12),
                               torch.zeros_like(c_zero))
            return step.clamp(-0.5, 0.5)

        sub_x = refine(at(iy, ix - 1), low, at(iy, ix + 1), (ix > 0) & (ix < n - 1))
        sub_y = refine(at(iy - 1, ix), low, at(iy + 1, ix), (iy > 0) & (iy < n - 1))
        u = torch.cat((ix - r + sub_x, iy - r + sub_y), dim=1)
        conf = contrast
        for _ in range(2):
            u = box_mean(u * conf, spread)
            conf = box_mean(conf, spread)
            u = u / (conf + 1e-12)
    return u.to(current.dtype)


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """The mean of ``x`` (B, C, H, W) over the ``size`` x ``size`` square around each pixel (odd
    ``size``; near the edges over the part inside the frame, as ``avg_pool2d(...,
    count_include_pad=False)``), from :func:`convlstm._ops.box_sum`: the same cost for any ``size``."""
    r = size // 2
    counts = box_sum(x.new_ones(x.shape[-2:]), r, r)
    return box_sum(x, r, r) / counts
def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class _Encoder(nn.Module):
    """Per-frame features at full resolution and after each halving (channels first)."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.stem = nn.Sequential(_conv(in_channels, widths[0]), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleList(
            nn.Sequential(_conv(c_in, c_out, stride=2), nn.LeakyReLU(0.2), _conv(c_out, c_out), nn.LeakyReLU(0.2))
            for c_in, c_out in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class _Decoder(nn.Module):
    """Top state -> full-resolution head output: up-sample x2, concatenate the skip, convolve."""

    def __init__(self, state_channels: int, widths: Sequence[int], out_channels: int):
        super().__init__()
        self.ups = nn.ModuleList()
        c = state_channels
        for skip in (reversed(widths[:-1]) if out_channels else ()):   # nothing to draw: no up-sampling
            self.ups.append(nn.Sequential(_conv(c + skip, skip), nn.LeakyReLU(0.2)))
            c = skip
        self.fuse = nn.Sequential(_conv(state_channels + widths[-1], state_channels), nn.LeakyReLU(0.2))
        self.out = _conv(c, out_channels) if out_channels else None
        if self.out is not None:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, skips: Sequence[torch.Tensor]) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        """Returns the full-resolution head output (None without one) and the fused features at the
        state's resolution."""
        top = z = self.fuse(torch.cat((h, skips[-1]), dim=1))
        if self.out is None:
            return None, top
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            z = F.interpolate(z, size=skip.shape[-2:], mode="nearest")
            z = up(torch.cat((z, skip), dim=1))
        return self.out(z), top


class MotionWarpForecaster(BlendTowardStart, nn.Module):
    r"""ConvLSTM encoder-forecaster with a full-resolution motion-warp head (see the module
    documentation for the equations and the heads).

    Args:
        channels (int): :math:`C`, channels of input and output frames. Default 1.
        filters (int or sequence of int): state channels of each ConvLSTM layer. Default ``(32,)``.
        kernel_size (int or sequence of int): ConvLSTM kernel of every layer or of each. Default 3.
        patch_size (int or ``"auto"``): :math:`p`, a power of two: the ConvLSTM runs at
            :math:`H/p \times W/p`. ``"auto"``: :func:`auto_patch_size` of the first input's
            frames (fixed from then on; read it back from ``model.patch_size``). Default ``"auto"``.
        encoder_width (int): encoder channels at full resolution, doubled at each halving (at most
            ``4 * encoder_width``). Default 16.
        head (str): ``"warp"``, ``"kernel"``, ``"residual"`` or ``"direct"``. Default ``"warp"``.
        flow (str): where the warp's learned refinement comes from: ``"coarse"`` (the ConvLSTM's
            grid, up-sampled bilinearly: smooth over each patch) or ``"fine"`` (the
            full-resolution decoder). Default ``"coarse"``.
        correction (bool): add the learned correction :math:`r_k`; ``False`` (``warp`` and
            ``kernel`` only) forecasts by moving the frame alone. Default True.
        kernel_radius (int): :math:`R` of the ``kernel`` head's :math:`(2R+1)^2` window. Default 4.
        motion (str): ``"block-matching"`` (the warp starts from :func:`block_matching`'s motion
            over every consecutive pair of input frames, matched on frames averaged down to at
            most 128 x 128 cells), ``"lucas-kanade"`` (from pysteps's dense Lucas-Kanade optical flow of
            all input frames, as the extrapolation baseline measures it: needs pysteps, runs on
            the CPU per sample, is not exported to ONNX) or ``"learned"`` (from rest). Default
            ``"block-matching"``.
        motion_radius (int or ``"auto"``): the largest motion block matching finds, in pixels per
            step; ``"auto"``: :func:`auto_motion_radius` of the frames (16 for 256 x 256, 8 up to
            128 x 128). Default ``"auto"``.
        input_steps (int or None): :math:`T_{in}`, checked on input; ``None`` accepts any. Default None.
        output_steps (int): :math:`K`, frames forecast. Default 3.
        padding_mode (str): how the warp samples outside the frame: ``"border"``, ``"zeros"`` or
            ``"reflection"``. Default ``"border"``.
        output_activation: applied to the forecast (``None``: linear). Default None.
        frame_size: accepted for the toolkit's sake (the model works on any frame size); checked
            on input when given.
        in_channels: an alias of ``channels`` (the toolkit passes both).

    Training with scheduled sampling: ``forward(x, targets=y, teacher_forcing=q)`` feeds the true
    frame instead of the forecast to the next step with probability :math:`q` per sample and step
    (Bengio et al., 2015); :class:`convlstm.training.ForecastModule` lowers :math:`q` over training.

    Attributes:
        input_steps, output_steps, in_channels, out_channels, patch_size: as given (``patch_size``
            as chosen); ``accepts_targets`` is ``True``.

    Shape:
        - Input: :math:`(B, T_{in}, H, W, C)`
        - Output: :math:`(B, K, H, W, C)`

    Example::

        >>> model = MotionWarpForecaster(channels=1, filters=(32,), output_steps=3)
        >>> model(torch.rand(2, 5, 32, 32, 1)).shape
        torch.Size([2, 3, 32, 32, 1])
        >>> model.patch_size
        1
    """

    accepts_targets = True
    #: ``forward`` handles one input frame and two apart (no motion, one step of motion); from
    #: three on its code is the same for every :math:`T`: the fewest steps one exported graph serves
    #: (:func:`convlstm.onnx.export`'s ``min_time``).
    min_input_steps = 3

    def __init__(self, channels: int = 1, filters: Union[int, Sequence[int]] = (32,),
                 kernel_size: Union[int, Sequence[int]] = 3, patch_size: Union[int, str] = "auto",
                 encoder_width: int = 16, head: str = "warp", flow: str = "coarse", correction: bool = True,
                 kernel_radius: int = 4, motion: str = "block-matching", motion_radius: Union[int, str] = "auto",
                 input_steps: Optional[int] = None,
                 output_steps: int = 3, padding_mode: str = "border", output_activation: Any = None,
                 frame_size: Optional[Sequence[int]] = None, in_channels: Optional[int] = None):
        super().__init__()
        if in_channels is not None and in_channels != channels and channels != 1:
            raise ValueError(f"in_channels={in_channels!r} and channels={channels!r} disagree; give one")
        self.in_channels = self.out_channels = check_positive_int(
            "channels", in_channels if in_channels is not None else channels)
        self.filters = int_tuple("filters", filters)
        self.kernel_sizes = int_tuple("kernel_size", kernel_size, len(self.filters))
        if patch_size == "auto":
            self.patch_size: Optional[int] = None
        else:
            p = check_positive_int("patch_size", patch_size)
            if p & (p - 1):
                raise ValueError(f"patch_size must be a power of two (1, 2, 4, 8, ...) or 'auto', got {patch_size!r}")
            self.patch_size = p
        self.encoder_width = check_positive_int("encoder_width", encoder_width)
        self.head = check_choice("head", head, HEADS, lower=True)
        self.flow = check_choice("flow", flow, FLOWS, lower=True)
        self.correction = check_bool("correction", correction)
        self.kernel_radius = check_positive_int("kernel_radius", kernel_radius)
        self.motion = check_choice("motion", motion, MOTIONS, lower=True)
        self.motion_radius = motion_radius if motion_radius == "auto" else check_positive_int("motion_radius",
                                                                                              motion_radius)
        #: how block matching measures the motion: 2 (every input pair, auto radius, up to 128 x 128
        #: cells); 1 for a checkpoint saved before that rule (the last pair, radius 8, 64 x 64 cells),
        #: which keeps computing what it was trained with (read from the checkpoint's extra state)
        self.motion_rule = 2
        if self.head not in ("warp", "kernel") and not correction:
            raise ValueError(f"correction=False leaves head={self.head!r} nothing to forecast; it applies to "
                             f"head='warp' or 'kernel' only")
        self.input_steps = optional_positive_int("input_steps", input_steps)
        self.output_steps = check_positive_int("output_steps", output_steps)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES, lower=True)
        self.output_activation = _activations.get(output_activation, parameter="output_activation")
        #: the baseline an untrained model forecasts (its decoder's last convolutions start at zero), or
        #: None: ``fit --start-from auto`` wraps only models without one (:class:`StartFromBaseline`)
        self.starts_from = None if self.output_activation is not _activations.linear else {
            "warp": "persistence" if self.motion == "learned" else "extrapolation",
            "residual": "persistence", "kernel": "persistence"}.get(self.head)
        self._init_blend(self.output_steps, self.in_channels)  # toward starts_from's forecast, chosen after training
        #: the observed motion of each sample's input frames, by their content: a fit feeds the same
        #: windows every epoch, and the motion depends on the frames alone (cached_per_sample)
        self._motion_cache = MotionCache() if self.motion != "learned" else None
        #: why an ONNX graph cannot hold this model (None: it can), read by convlstm.onnx.export
        self.onnx_unexportable = None if self.motion != "lucas-kanade" else (
            "motion='lucas-kanade' measures the motion with pysteps on the CPU, outside the graph; export a model "
            "trained with motion='block-matching' (the default)")
        self.frame_size = None if frame_size is None else int_tuple("frame_size", frame_size, 2)
        if self.patch_size is None and self.frame_size is not None:
            self.patch_size = auto_patch_size(*self.frame_size)
        self._built = False
        if self.patch_size is not None:
            self._build(self.patch_size)

    # ------------------------------------------------------------------ construction
    def _build(self, patch_size: int) -> None:
        self.patch_size = patch_size
        halvings = int(math.log2(patch_size))
        w = self.encoder_width
        widths = [min(w * 2 ** i, 4 * w) for i in range(halvings + 1)]
        c = self.in_channels
        self.encoder = _Encoder(2 * c, widths)
        self.rnn = nn.ModuleList()
        below = widths[-1]
        for f, k in zip(self.filters, self.kernel_sizes):
            self.rnn.append(ConvLSTM2D(f, k, padding="same", return_sequences=True, return_state=True,
                                       data_format="channels_first", in_channels=below))
            below = f
        motion = {"warp": 2 if self.flow == "fine" else 0, "kernel": (2 * self.kernel_radius + 1) ** 2}.get(self.head, 0)
        self.decoder = _Decoder(self.filters[-1], widths, motion + (c if self.correction else 0))
        if self.head == "kernel":
            # start as the identity: the centre offset's logit far above the others
            with torch.no_grad():
                self.decoder.out.bias[((2 * self.kernel_radius + 1) ** 2) // 2] = 8.0
        if self.head == "warp" and self.flow == "coarse":
            # the motion at the ConvLSTM's resolution, up-sampled bilinearly: smooth over each patch
            self.coarse_flow = _conv(self.filters[-1], 2)
            nn.init.zeros_(self.coarse_flow.weight)
            nn.init.zeros_(self.coarse_flow.bias)
        self._built = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if not self._built:
            # an "auto" model restored from a checkpoint: its encoder's depth tells the patch size
            downs = {k.split(".")[2] for k in state_dict if k.startswith(prefix + "encoder.downs.")}
            self._build(2 ** len(downs))
        if prefix + "_extra_state" not in state_dict and any(k.startswith(prefix) for k in state_dict):
            # saved before the motion rule was recorded: it was trained with rule 1
            state_dict[prefix + "_extra_state"] = {"motion_rule": 1}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ forward
    def get_extra_state(self) -> dict:
        return {"motion_rule": self.motion_rule}

    def set_extra_state(self, state: dict) -> None:
        rule = state.get("motion_rule") if isinstance(state, dict) else None
        if rule not in (1, 2):
            raise ValueError(f"this checkpoint's motion_rule={rule!r} is unknown to this version of convlstm "
                             f"(it knows 1 and 2); upgrade convlstm to load it")
        if rule != self.motion_rule and self._motion_cache is not None:
            self._motion_cache = MotionCache()
        self.motion_rule = rule

    def _block_matching_settings(self, rows: int, cols: int) -> Tuple[int, int, int, int]:
        """(m, radius, window, spread) for frames of rows x cols pixels: block matching runs on
        m x m patch averages, radius/window/spread in cells."""
        if self.motion_rule == 1:
            p, radius = auto_patch_size(rows, cols), 8 if self.motion_radius == "auto" else self.motion_radius
            scale = radius
        else:
            p = auto_patch_size(rows, cols, MOTION_MAX_CELLS)
            radius = auto_motion_radius(rows, cols) if self.motion_radius == "auto" else self.motion_radius
            scale = MATCH_SCALE
        s = math.ceil(scale / p)
        return p, math.ceil(radius / p), 2 * s + 1, 4 * s + 1

    def _motion(self, frames: torch.Tensor) -> torch.Tensor:
        """Block matching of the frames (B, T, C, H, W), T >= 2, over every consecutive pair (the
        last pair only under ``motion_rule`` 1), on patch averages (:meth:`_block_matching_settings`),
        up-sampled bilinearly to pixels."""
        rows, cols = frames.shape[-2], frames.shape[-1]
        p, radius, window, spread = self._block_matching_settings(rows, cols)
        frames = frames.detach()[:, -2:] if self.motion_rule == 1 else frames.detach()
        if p > 1:
            frames = F.avg_pool2d(frames.flatten(0, 1), p).unflatten(0, frames.shape[:2])
        cells = block_matching(frames[:, :-1], frames[:, 1:], radius, window, spread)
        if p == 1:
            return cells
        return F.interpolate(cells * p, size=(rows, cols), mode="bilinear", align_corners=False)

    def _observed_motion(self, frames: torch.Tensor) -> torch.Tensor:
        """The backward displacement (B, 2, H, W) the input frames (B, T, C, H, W) show, per step:
        block matching (:meth:`_motion`), or pysteps's Lucas-Kanade of all (:func:`lucas_kanade_motion`)."""
        if self.motion == "lucas-kanade":
            return lucas_kanade_motion(frames, self._motion_cache)
        return cached_per_sample(frames, self._motion, self._motion_cache).to(device=frames.device,
                                                                             dtype=frames.dtype)

    def _channels_first_padded(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> (B, T, C, H', W'), rows and cols padded (edge values) to multiples of
        the patch size."""
        pad_r, pad_c = (-seq.shape[2]) % self.patch_size, (-seq.shape[3]) % self.patch_size
        seq = seq.movedim(-1, 2)
        if pad_r or pad_c:
            seq = F.pad(seq.flatten(0, 1), (0, pad_c, 0, pad_r), mode="replicate").unflatten(0, seq.shape[:2])
        return seq

    def _start_frames(self, last: torch.Tensor, observed: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """The untrained model's forecast (``starts_from``), one frame per lead time, channels first:
        the last frame carried along the ``observed`` motion continued (extrapolation), or the
        last frame itself (no motion: persistence)."""
        if self.starts_from != "extrapolation" or observed is None:
            return [last] * self.output_steps
        frames, displacement = [], None
        for _ in range(self.output_steps):
            displacement = observed if displacement is None else displacement + warp_frame(observed, displacement,
                                                                                           "border")
            frames.append(warp_frame(last, displacement, self.padding_mode))
        return frames

    @property
    def start_name(self) -> str:
        """The start forecast in words, for logs."""
        if self.starts_from == "extrapolation":
            return "Lucas-Kanade extrapolation" if self.motion == "lucas-kanade" else "block-matching extrapolation"
        return str(self.starts_from)

    def start_forecast(self, x: torch.Tensor) -> torch.Tensor:
        """What the untrained model forecasts (``starts_from``): ``(B, T, H, W, C)`` ->
        ``(B, K, H, W, C)``; ``ValueError`` for a head that starts from no baseline."""
        if self.starts_from is None:
            raise ValueError(f"head={self.head!r} with output_activation starts from no baseline forecast")
        x = check_model_input(x, type(self).__name__, self.in_channels, self.input_steps)
        if not self._built:
            self._build(auto_patch_size(x.shape[2], x.shape[3]))
            self.to(device=x.device)
        frames = self._channels_first_padded(x)
        observed = self._observed_motion(frames) if frames.shape[1] > 1 and self.starts_from == "extrapolation" \
            else None
        start = torch.stack(self._start_frames(frames[:, -1], observed), dim=1)
        return start[..., :x.shape[2], :x.shape[3]].movedim(2, -1)

    def _encode(self, frame: torch.Tensor, previous: torch.Tensor) -> List[torch.Tensor]:
        return self.encoder(torch.cat((frame, frame - previous), dim=1))

    def _rnn(self, feats: torch.Tensor, states: Optional[List[Tuple[torch.Tensor, torch.Tensor]]]):
        """feats (B, T, C, h, w) through the ConvLSTM stack; returns the top sequence and the states."""
        new_states = []
        seq = feats
        for i, layer in enumerate(self.rnn):
            seq, h, c = layer(seq, initial_state=None if states is None else list(states[i]))
            new_states.append((h, c))
        return seq, new_states

    def forward(self, x: torch.Tensor, targets: Optional[torch.Tensor] = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        """Forecast ``output_steps`` frames after ``x``; ``targets`` (channels last, as the output)
        and ``teacher_forcing`` only for scheduled sampling in training."""
        name = type(self).__name__
        x = check_model_input(x, name, self.in_channels, self.input_steps)
        if self.frame_size is not None and tuple(x.shape[2:4]) != self.frame_size:
            raise ValueError(f"{name} was built for frame_size={self.frame_size}, got frames of "
                             f"{tuple(x.shape[2:4])} (input shape {tuple(x.shape)})")
        if not 0.0 <= float(teacher_forcing) <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {teacher_forcing!r}")
        if teacher_forcing > 0 and targets is None:
            raise ValueError("teacher_forcing > 0 needs targets=")
        if not self._built:
            self._build(auto_patch_size(x.shape[2], x.shape[3]))
            self.to(device=x.device)
        b, t_in, rows, cols, c = x.shape
        p = self.patch_size
        frames = self._channels_first_padded(x)
        if targets is not None and teacher_forcing > 0:
            truth = self._channels_first_padded(targets)
        previous = torch.cat((frames[:, :1], frames[:, :-1]), dim=1)
        feats = self._encode(frames.flatten(0, 1), previous.flatten(0, 1))
        top = feats[-1].unflatten(0, (b, t_in))
        seq, states = self._rnn(top, None)
        last = frames[:, -1]
        skips = [f.unflatten(0, (b, t_in))[:, -1] for f in feats]
        h = seq[:, -1]
        # the two newest frames the network has been given (observed, then its own forecasts)
        newest_input, previous_input = last, frames[:, -2] if t_in > 1 else last
        # block matching: start from the observed motion continued (extrapolation); learned: from rest
        observed = None
        if self.head == "warp" and self.motion != "learned" and t_in > 1:
            observed = self._observed_motion(frames)
        learned = observed_displacement = None
        outputs = []
        starts = self._start_frames(last, observed) if self._blending else None
        for k in range(self.output_steps):
            head, top = self.decoder(h, skips)
            if self.head == "warp":
                if self.flow == "coarse":
                    delta = self.coarse_flow(top)
                    if p > 1:
                        delta = F.interpolate(delta, size=last.shape[-2:], mode="bilinear", align_corners=False)
                    head_rest = head
                else:
                    delta, head_rest = head[:, :2], head[:, 2:]
                learned = delta if learned is None else learned + delta
                displacement = learned
                if observed is not None:
                    # semi-Lagrangian: follow the observed motion back one step at a time; the
                    # displacement that carries the last frame k + 1 steps ahead
                    if observed_displacement is None:
                        observed_displacement = observed
                    else:
                        observed_displacement = observed_displacement + warp_frame(observed, observed_displacement,
                                                                                   "border")
                    displacement = learned + observed_displacement
                pred = warp_frame(last, displacement, self.padding_mode)
                if self.correction:
                    pred = pred + head_rest
            elif self.head == "kernel":
                n = (2 * self.kernel_radius + 1) ** 2
                pred = apply_local_kernels(newest_input, head[:, :n], self.kernel_radius, self.padding_mode)
                if self.correction:
                    pred = pred + head[:, n:]
            elif self.head == "residual":
                pred = last + head
            else:
                pred = head
            pred = self.output_activation(pred)
            # blended toward the start on output only: the model goes on from its own forecast
            outputs.append(self.blend_frame(pred, starts[k], k, channel_dim=1) if self._blending else pred)
            if k + 1 == self.output_steps:
                break
            nxt = pred
            if targets is not None and teacher_forcing > 0:
                use_truth = torch.rand(b, 1, 1, 1, device=x.device) < teacher_forcing
                nxt = torch.where(use_truth, truth[:, k].to(pred.dtype), pred)
            previous_input, newest_input = newest_input, nxt
            feats = self._encode(newest_input, previous_input)
            skips = feats
            seq, states = self._rnn(feats[-1].unsqueeze(1), states)
            h = seq[:, -1]
        out = torch.stack(outputs, dim=1)[..., :rows, :cols]
        return out.movedim(2, -1)

    def extra_repr(self) -> str:
        return (f"channels={self.in_channels}, filters={self.filters}, kernel_sizes={self.kernel_sizes}, "
                f"patch_size={self.patch_size if self._built else 'auto'}, head={self.head!r}, "
                f"input_steps={self.input_steps}, output_steps={self.output_steps}")


register_model("convlstm-warp", description=(
    "ConvLSTM (32 filters, 3x3) at 1/p resolution with a full-resolution head that warps the last frame along a "
    "learned motion field, plus a correction: sharp forecasts, any frame size, patch size auto"))(MotionWarpForecaster)
