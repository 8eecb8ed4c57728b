r"""The compute paths of the ConvLSTM time loop.

Every path computes the same function (Keras's ConvLSTM, see :class:`convlstm.cell.ConvLSTMCell`);
they differ only in how the work is laid out. In all of them the input convolution does not
depend on the state, so it is computed for all time steps at once, and only the recurrent
convolution and the gate update stay in the loop:

.. math::
    X = W_x \star (m^x \odot x_{1..T}) + b \quad (\text{one convolution over } T \cdot B \text{ frames}),
    \qquad G_t = X_t + W_h \star_{\text{same}} (m^h \odot h_{t-1}).

Paths (``implementation=`` on the layers):

``"reference"``
    The cell's own step in a Python loop, channels-first tensors, the input convolution hoisted
    over all steps, outputs collected in a list and stacked. The easiest to read; the numbers
    the other paths are tested against (``tests/test_paths.py``).

``"fused"``
    The reference's schedule (input convolution hoisted) laid out for speed:

    - the frames are put in **time-major** order ``(T, B, ...)`` so that the input gates of step
      ``t`` are one contiguous block ``X[t]``, taken apart with ``unbind`` (whose backward is one
      ``stack``; indexing ``X[:, t]`` costs a full-size zero tensor per step in the backward);
    - the 2D and 3D convolutions run in **channels-last** memory format (``torch.channels_last`` /
      ``channels_last_3d``), which oneDNN convolves without reordering the tensors at every step
      (single-channel inputs stay channels-first: oneDNN's float32 strided convolution of a
      one-channel channels-last input is wrong, see the README);
    - the gate update is **one autograd node** (:class:`GateUpdate`) for the default
      ``sigmoid`` / ``tanh`` that saves only what its closed-form backward needs, and uses
      :math:`\tanh z = 2\sigma(2z) - 1` with the candidate rows of the weights doubled (exact), so
      that all four gates go through one ``sigmoid`` (torch's CPU ``tanh`` is several times slower
      than its ``sigmoid``); other activations use the cell's own update;
    - without autograd (inference) the update runs **in place** in the convolution's output, the
      recurrent convolution and the addition of :math:`X_t` are one oneDNN call (2D CPU), and
      :math:`h_t` is written straight into a preallocated output sequence.

``"concat"``
    The schedule of the common single-file implementations, one convolution over
    :math:`[x_t, h_{t-1}]` per step with the kernels concatenated (the bias added once), with
    everything else of ``"fused"``. Without autograd one buffer holds :math:`[x_t, h_{t-1}]` for
    every step and :math:`h_t` is written into it, so nothing is concatenated in the loop and the
    output is a view of it. With autograd (default activations, odd kernels, no mask) the whole
    loop is one autograd node with a hand-written backward
    (:class:`convlstm._recurrence.ConcatRecurrence`): per step it computes the gradient of
    :math:`h_{t-1}` only, not of the concatenated input, and none at :math:`t = 0` unless the
    initial state needs one; the weight gradient is a convolution over all the frames of a chunk
    of steps (four chunks). Needs ``padding='same'``, strides 1, dilation 1 and no dropout
    (otherwise it runs ``"fused"``). It wins when the hoisted gates
    :math:`B \cdot T \cdot 4F \cdot |S|` are large: writing them all and reading them back costs
    more memory traffic than the batched input convolution saves.

``"nnpack"``
    ``"concat"`` with the convolutions of each step computed by NNPACK (FFT or Winograd tiles,
    bundled with the CPU builds of torch), which does several times fewer multiplications than
    a direct convolution: the forward, and in training the gradient of the state (NNPACK's
    forward with the kernel transposed and flipped); on images of 64x64 or more NNPACK runs one
    image at a time (:func:`convlstm._recurrence.nnpack_conv`). Its float32 rounding differs more
    from the reference than oneDNN's: up to about 1e-5 of the output's scale (Winograd tiles,
    3x3 kernels on small images), against about 1e-6 for the other paths. 2D, float32 CPU
    convolutions only (not under autocast, not a 16-bit module), not under ``torch.compile``
    (otherwise it runs ``"concat"``, see "What ran" below).

``"fft"``
    ``"concat"``'s node with the three convolutions of a step (forward, gradient of the state,
    weight gradient) computed in the frequency domain as batched matrix products, one per
    frequency of a whole-image ``rfft2`` (:class:`convlstm._recurrence.SpectralStepConvolutions`):
    for 5x5 kernels on small images with many channels it does several times fewer
    multiplications than a direct convolution, and rounds about as the direct paths do
    (1e-6 of the scale). 2D, odd kernels, default activations, no mask, float32 or float64
    convolutions (not under autocast), not under ``torch.compile`` (otherwise it runs
    ``"concat"``).

``"auto"`` (default)
    The rule of :func:`auto_path`: for a large 2D float32 CPU layer with odd kernels of 5x5 or
    more (a step's convolution of at least ``AUTO_FAST_CONV_MIN_FLOPS``), ``"nnpack"`` on images
    of 64x64 or more and ``"fft"`` below (when its kernel spectrum fits in
    ``AUTO_FFT_MAX_SPECTRUM_BYTES``); else ``"concat"`` where it applies (``'same'`` padding,
    strides 1, dilation 1); else ``"fused"``. The thresholds come from the measurements in
    ``benchmarks/RESULTS.md``; with dropout the layer runs ``"reference"``. The rule looks at the
    convolutions' precision, so under autocast it never picks ``"nnpack"`` or ``"fft"``. Where the
    rule picks ``"nnpack"`` or ``"fft"``, the first call of each shape times one step's
    convolution that way and directly, and runs the faster (``"concat"`` when the direct one
    wins; :mod:`convlstm._auto_timing`, whose timings ``last_path_detail["auto_timings"]``
    shows): whether the transforms pay depends on the CPU. ``convlstm.set_auto_policy("rule")``,
    ``CONVLSTM_AUTO=rule`` or torch's deterministic algorithms keep the rule alone.

What ran
--------
After every forward the layer's ``last_path`` names the path that ran (``"reference"``,
``"fused"``, ``"concat"``, ``"nnpack"`` or ``"fft"``; ``"auto"``'s choice, never ``"auto"``), and
``last_path_detail`` is a dict: ``requested`` (``implementation``), ``path``, ``substituted``
(why another path ran than the one asked or chosen, else ``None``), ``loop`` (which time loop
ran: ``"ConcatRecurrence"``, the whole loop as one node with the hand-written backward;
``"GateUpdate"``, per-step convolutions with the closed-form update node; ``"cell.update"``,
the cell's functional update under autograd; ``"hoisted_inference"`` / ``"concat_inference"``,
the in-place loops without autograd; ``"cell.step"``, the reference), ``convolutions``
(``"torch"``, ``"nnpack"`` or ``"spectral"``), ``compute_dtype`` and ``state_dtype`` (below),
and ``auto_timings`` (the seconds of one step's convolution each way when ``"auto"`` measured
its choice, else ``None``).

An explicit ``implementation=`` that cannot apply here is not substituted silently: the layer
warns (:class:`UserWarning`: ``implementation='fft' cannot run here, 'concat' ran instead: 'fft'
needs odd kernels (kernel_size=(2, 2))``) and runs the nearest path that applies
(``"nnpack"``/``"fft"`` -> ``"concat"`` -> ``"fused"``; ``"reference"`` with
``checkpoint_chunk`` -> ``"fused"``). Under ``torch.compile`` the substitution is recorded in
``last_path_detail["substituted"]`` only, because a warning inside a traced function breaks the
graph. ``"auto"`` only chooses and does not warn.

Precision
---------
The paths follow the precision of their convolutions, ``compute_dtype``: under
``torch.autocast`` (bfloat16 on CPU and CUDA, float16 on CUDA and recent CPUs) a float32 layer
convolves in autocast's 16-bit format, and a module cast with ``.to(torch.bfloat16)`` convolves
in bfloat16. With 16-bit convolutions every path keeps, as cuDNN's LSTM does:

- in the 16-bit format: the frames, the weights (cast once per forward, or once per step in the
  per-step training loops so that autograd sums the steps' weight gradients in float32), the
  convolutions' inputs and outputs, :math:`h_t` (the next convolution's input) and so the layer's
  output and :math:`h_T`, and the gradients that flow into the convolutions;
- in float32 (``state_dtype``): the sum of the pre-activations, the sigmoids and tanh, the cell
  state :math:`c_t` and its gradient, everything the backward of the update computes (rounded
  once, to 16 bits, where it enters a convolution), the chunks' weight and bias gradients in
  :class:`convlstm._recurrence.ConcatRecurrence` (summed in float32), and :math:`c_T` (returned in
  the dtype the state came in: float32 under autocast, bfloat16 for a bfloat16 module).

The ``"reference"`` path sums and updates in float32 too, but leaves its convolutions to
autocast's own rules (which cast each leaf weight once per autocast region, so that autograd
sums the steps' weight gradients in 16 bits). The same hand-written nodes (:class:`GateUpdate`,
:class:`ConcatRecurrence`) serve every
precision; ``"nnpack"`` and ``"fft"`` are float32-only. Measured accuracy and speed:
``docs/precision.md``.

Under ``torch.compile`` every path keeps its layout but uses the functional form of the update
(the compiler fuses the pointwise work itself) and oneDNN/torch convolutions; the whole time loop
is traced into one graph.

Checkpointing through time (``checkpoint_chunk=K`` on the layers, opt-in, training only) splits
the sequence into chunks of ``K`` steps and runs each chunk, its share of the input convolution
included, under :func:`torch.utils.checkpoint.checkpoint`: the forward keeps only the chunk
boundaries' :math:`(h, c)` and the outputs, and the backward recomputes one chunk at a time.
Peak memory falls from :math:`O(T)` saved activations to :math:`O(T/K + K)`, for about one
more forward pass of time. ``checkpoint_chunk=True`` picks :math:`K = \lceil\sqrt{T}\rceil`.
It runs on the chosen path's schedule (``"reference"`` runs ``"fused"``'s) and only when autograd
records; inference ignores it.

Graph export (:mod:`convlstm.onnx`) runs every layer on one more schedule inside
:func:`scan_time_loops`: the reference's, with the loop over time written as torch's ``scan``
operator (``torch._higher_order_ops.scan``), which the ONNX exporter turns into an ONNX ``Scan``
whose body is one step. The number of steps is then a dimension of the graph, not a constant.
It is not a user-selectable ``implementation`` (it was written for export, not measured for speed).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._auto_timing import auto_policy, measured_choice
from ._gates import GateUpdate, default_activations, scaled_weights, update_in_place
from ._ops import channels_last_format
from ._recurrence import (NNPACK_PER_SAMPLE_MIN_PIXELS, ConcatRecurrence, NNPACKStepConvolutions,
                          SpectralStepConvolutions, StepConvolutions, nnpack_conv)
from ._workspace import take

__all__ = ["PATHS", "run", "auto_path", "GateUpdate", "scan_time_loops"]

PATHS = ("auto", "reference", "fused", "concat", "nnpack", "fft")

_MKLDNN_BINARY = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


def check_implementation(value) -> str:
    if not isinstance(value, str) or value.lower() not in PATHS:
        raise ValueError(f"implementation={value!r} is not allowed; allowed: {', '.join(map(repr, PATHS))}")
    return value.lower()


def check_checkpoint_chunk(value) -> Optional[object]:
    """``None``/``False`` (off), ``True`` (chunks of ceil(sqrt(T)) steps) or a positive int."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"checkpoint_chunk must be None, True or a positive int (steps per chunk), got {value!r}")
    return int(value)


def masked_update(layer, mask, t: int, h_new, c_new, h, c, prev_output):
    """Keras's mask semantics for step ``t``: a masked sample keeps its ``(h, c)`` and repeats the
    previous output (zeros before its first unmasked step, or zeros throughout with
    ``zero_output_for_mask``). Returns ``(h, c, output, prev_output)``."""
    if mask is None:
        return h_new, c_new, h_new, prev_output
    return _masked_step(layer, mask[:, t], h_new, c_new, h, c, prev_output)


def _masked_step(layer, m, h_new, c_new, h, c, prev_output):
    """:func:`masked_update` with the step's mask column ``m`` :math:`(B,)` given."""
    m = m.view((h_new.shape[0],) + (1,) * (h_new.dim() - 1))
    h = torch.where(m, h_new, h)
    c = torch.where(m, c_new, c)
    if prev_output is None:
        prev_output = torch.zeros_like(h_new)
    out = torch.where(m, h_new, prev_output)
    prev_output = out
    if layer.zero_output_for_mask:
        out = torch.where(m, out, torch.zeros_like(out))
    return h, c, out, prev_output


def _compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # older torch
        return False


def _autocast(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # older torch
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def _layout(t: torch.Tensor, rank: int) -> torch.Tensor:
    mf = channels_last_format(rank)
    return t if mf is None else t.contiguous(memory_format=mf)


_scan_depth = 0  # > 0 inside scan_time_loops (a plain global: torch.compile reads it without a graph break)


@contextlib.contextmanager
def scan_time_loops() -> Iterator[None]:
    """Within this context every layer runs its time loop as torch's ``scan`` operator (for
    graph export with a dynamic number of steps; see the module docstring)."""
    global _scan_depth
    _scan_depth += 1
    try:
        yield
    finally:
        _scan_depth -= 1


# --------------------------------------------------------------------------------- precision
LOW_PRECISION = (torch.bfloat16, torch.float16)


def _autocast_dtype(device_type: str) -> torch.dtype:
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # older torch
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


def compute_dtype(cell, x: torch.Tensor) -> torch.dtype:
    """The precision of the convolutions: autocast's (``bfloat16`` or ``float16``) for a float32
    layer under ``torch.autocast`` on ``x``'s device, else the parameters' dtype (a module cast
    with ``.to(torch.bfloat16)`` convolves in bfloat16)."""
    dtype = cell.weight_ih.dtype
    if dtype == torch.float32 and _autocast(x.device.type):
        return _autocast_dtype(x.device.type)
    return dtype


def state_dtype(conv_dtype: torch.dtype) -> torch.dtype:
    """The precision of the gate arithmetic and the cell state: float32 when the convolutions run
    in a 16-bit format (as cuDNN's LSTM keeps them), else the convolutions' own."""
    return torch.float32 if conv_dtype in LOW_PRECISION else conv_dtype


# --------------------------------------------------------------------------------- entry point
def resolve_path(layer, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, mask, in_masks, rec_masks,
                 requested: str, checkpoint_chunk=None) -> Tuple[str, Optional[str], Optional[dict]]:
    """The path that runs for ``requested``; when it is not the one requested (or chosen by
    ``"auto"``), why; and the step timings ``"auto"`` chose by (:mod:`convlstm._auto_timing`):
    ``(path, reason, timings)``, ``reason`` and ``timings`` ``None`` when there are none."""
    path, timings = requested, None
    if path == "auto":
        path = auto_path(layer, x, tuple(h.shape[2:]), in_masks, rec_masks, _needs_grad(layer.cell, x, h, c))
        if path in ("fft", "nnpack") and mask is None and auto_policy() == "measure":
            path, timings = measured_choice(layer, x, tuple(h.shape[2:]), path)
    reasons = []
    if path == "reference" and checkpoint_chunk is not None:
        reasons.append("checkpoint_chunk is built on the 'fused' schedule")
        path = "fused"
    if path == "fft":
        why = fft_unavailable(layer, x, in_masks, rec_masks) or ("a mask" if mask is not None else None)
        if why:
            reasons.append(f"'fft' needs {why}")
            path = "concat"
    if path == "nnpack":
        why = nnpack_unavailable(layer, x, in_masks, rec_masks)
        if why:
            reasons.append(f"'nnpack' needs {why}")
            path = "concat"
    if path == "concat" and not concat_applicable(layer, in_masks, rec_masks):
        reasons.append("'concat' needs padding='same', strides 1, dilation 1 and no dropout")
        path = "fused"
    return path, ("; ".join(reasons) or None), timings


def run(layer, cell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, *, mask: Optional[torch.Tensor],
        in_masks: Optional[torch.Tensor], rec_masks: Optional[torch.Tensor], path: str,
        checkpoint_chunk=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the recurrence over ``x`` :math:`(B, T, C, *S)` (channels first, any strides) from
    ``(h, c)`` :math:`(B, F, *S')`.

    ``in_masks`` :math:`(4, B, C, *S)` and ``rec_masks`` :math:`(4, B, F, *S')` are the per-gate
    dropout masks or ``None``; ``mask`` is a boolean :math:`(B, T)` or ``None``.

    Returns ``(output, h_T, c_T)``: output :math:`(B, T, F, *S')` with ``return_sequences``,
    else :math:`(B, F, *S')`, all channels first (strides may be those of another layout); the
    output and :math:`h_T` in the convolutions' precision, :math:`c_T` in ``c``'s dtype.

    Sets ``layer.last_path`` (the path that ran) and ``layer.last_path_detail`` (see the module
    docstring); an explicit ``path`` that cannot apply warns (:class:`UserWarning`) and names the
    path that ran instead.
    """
    if _scan_depth:  # graph export: nothing is recorded on the layer while tracing
        return _run_scan(layer, cell, x, h, c, mask, in_masks, rec_masks)
    chosen, reason, timings = resolve_path(layer, x, h, c, mask, in_masks, rec_masks, path, checkpoint_chunk)
    conv_dtype = compute_dtype(cell, x)
    record = {"requested": path, "path": chosen, "substituted": reason, "loop": None, "convolutions": "torch",
              "compute_dtype": conv_dtype, "state_dtype": state_dtype(conv_dtype), "auto_timings": timings}
    if reason is not None and path != "auto" and not _compiling():  # a warning breaks a traced graph
        warnings.warn(f"implementation={path!r} cannot run here, {chosen!r} ran instead: {reason}",
                      UserWarning, stacklevel=5)  # the line that called the layer
    c_dtype = c.dtype
    h, c = h.to(conv_dtype), c.to(record["state_dtype"])
    if chosen == "reference":
        record["loop"] = "cell.step"
        output, h, c = _run_reference(layer, cell, x.to(conv_dtype), h, c, mask, in_masks, rec_masks)
    else:
        output, h, c = _run_fused(layer, cell, x, h, c, mask, in_masks, rec_masks, checkpoint_chunk, chosen,
                                  record)
    layer.last_path, layer.last_path_detail = chosen, record
    return output, h, c.to(c_dtype)


def _run_reference(layer, cell, x, h, c, mask, in_masks, rec_masks):
    batch, steps, channels = x.shape[0], x.shape[1], x.shape[2]
    spatial_in = tuple(x.shape[3:])
    spatial = tuple(h.shape[2:])
    frames = x.reshape((batch * steps, channels) + spatial_in)
    if in_masks is not None:  # the same per-sample masks at every time step
        in_masks = in_masks.unsqueeze(2).expand((4, batch, steps, channels) + spatial_in).reshape(
            (4, batch * steps, channels) + spatial_in)
    x_gates = cell.input_projection(frames, in_masks).view((batch, steps, 4 * layer.filters) + spatial)

    order = range(steps - 1, -1, -1) if layer.go_backwards else range(steps)
    outputs: List[torch.Tensor] = []
    prev_output = None
    for t in order:
        h_new, c_new = cell.step(x_gates[:, t], h, c, rec_masks)
        h, c, out, prev_output = masked_update(layer, mask, t, h_new, c_new, h, c, prev_output)
        if layer.return_sequences or not outputs:
            outputs.append(out)
        else:
            outputs[0] = out
    output = torch.stack(outputs, dim=1) if layer.return_sequences else outputs[0]
    return output, h, c


def _run_scan(layer, cell, x, h, c, mask, in_masks, rec_masks):
    """The reference schedule with the loop as torch's ``scan``: the input convolution over all
    frames, then one scan over the time-major gates ``(T, B, 4F, *S')`` (and the mask's
    columns) carrying ``(h, c)`` (and, with a mask, the previous output)."""
    from torch._higher_order_ops.scan import scan

    if in_masks is not None or rec_masks is not None:
        raise ValueError(f"{type(layer).__name__}: dropout in training mode cannot be exported; call "
                         "model.eval() (export does) and do not pass training=True")
    batch, steps, channels = x.shape[0], x.shape[1], x.shape[2]
    spatial = tuple(h.shape[2:])
    x_gates = cell.input_projection(x.reshape((batch * steps, channels) + tuple(x.shape[3:])))
    xs = [x_gates.reshape((batch, steps, 4 * layer.filters) + spatial).transpose(0, 1)]
    if mask is not None:
        xs.append(mask.transpose(0, 1))
    if layer.go_backwards:  # outputs in processing order, as the other paths
        xs = [s.flip(0) for s in xs]
    # scan refuses aliased carries (zero states are one tensor) and carries whose strides differ
    # from the body's outputs (channels-last states given as initial_state)
    carry = (h.clone(memory_format=torch.contiguous_format), c.clone(memory_format=torch.contiguous_format))
    if mask is not None:
        carry += (torch.zeros_like(carry[0]),)
    recurrent = cell._plan("recurrent", spatial, 1)  # planned outside: the body must not touch the cache

    def body(carry, inputs):
        h_new, c_new = cell.update(inputs[0] + recurrent(carry[0], cell.weight_hh), carry[1])
        if mask is None:
            return (h_new, c_new), (h_new.clone() if layer.return_sequences else ())
        h, c, out, prev_output = _masked_step(layer, inputs[1], h_new, c_new, *carry)
        return (h, c, prev_output), (out.clone() if layer.return_sequences else ())

    carry, outputs = scan(body, carry, xs)
    h, c = carry[0], carry[1]
    if layer.return_sequences:
        return outputs.transpose(0, 1), h, c
    if mask is None:
        return h, h, c
    last = carry[2]  # the last step's output before zero_output_for_mask
    if layer.zero_output_for_mask:
        last_mask = xs[1][-1].view((batch,) + (1,) * (h.dim() - 1))
        last = torch.where(last_mask, last, torch.zeros_like(last))
    return last, h, c


# --------------------------------------------------------------------------------- fused paths
def _time_major_frames(x: torch.Tensor, rank: int, channels_last: bool = True) -> torch.Tensor:
    """``(B, T, C, *S)`` -> ``(T*B, C, *S)`` in time-major order and channels-last memory
    (one copy at most)."""
    b, t, ch = x.shape[0], x.shape[1], x.shape[2]
    spatial = tuple(x.shape[3:])
    if channels_last_format(rank) is None or not channels_last or ch == 1:
        # one channel: standard strides, because oneDNN's float32 convolution of a single-channel
        # input with channels-last strides and strides (1, 2) returns wrong numbers (see README)
        return x.transpose(0, 1).reshape((t * b, ch) + spatial).clone(memory_format=torch.contiguous_format)
    # (T, B, *S, C) contiguous, seen as (T*B, C, *S): channels-last strides
    perm = (1, 0) + tuple(range(3, 3 + rank)) + (2,)
    return x.permute(perm).reshape((t * b,) + spatial + (ch,)).movedim(-1, 1)


def _project(cell, kind: str, x: torch.Tensor, masks: Optional[torch.Tensor], weight, bias, groups_channels: int):
    """A convolution of the cell (``kind`` ``"input"`` or ``"recurrent"``) with the given weights;
    with per-gate dropout ``masks`` :math:`(4, N, C, *S)` it is one grouped convolution."""
    spatial = tuple(x.shape[2:])
    if masks is None:
        return cell._plan(kind, spatial, 1)(x, weight, bias)
    n = x.shape[0]
    xm = (x.unsqueeze(1) * masks.transpose(0, 1)).reshape((n, 4 * groups_channels) + spatial)
    return cell._plan(kind, spatial, 4)(xm, weight, bias)


def concat_applicable(layer, in_masks, rec_masks) -> bool:
    """The ``"concat"`` path needs the input convolution to be the recurrent one's twin
    (``'same'``, stride 1, dilation 1) and no dropout (whose masks differ per gate)."""
    cell = layer.cell
    return (cell.padding == "same" and max(cell.strides) == 1 and max(cell.dilation_rate) == 1
            and in_masks is None and rec_masks is None)


def auto_path(layer, x: torch.Tensor, spatial: Tuple[int, ...], in_masks=None, rec_masks=None,
              grad: bool = True) -> str:
    r"""The rule of ``implementation="auto"``, from the measurements in ``benchmarks/RESULTS.md``
    (the same choice for inference and training):

    1. with dropout: ``"reference"`` (the per-gate masks make every convolution a grouped one and
       rule out ``"concat"``; not benchmarked, so the reference schedule is kept);
    2. under ``torch.compile`` / ``torch.export``: ``"fused"``, so that the choice does not depend
       on (possibly dynamic) sizes;
    3. a 2D float32 layer on CPU with odd kernels of 5x5 or more whose step convolution costs at
       least ``AUTO_FAST_CONV_MIN_FLOPS``: on images of at least
       ``NNPACK_PER_SAMPLE_MIN_PIXELS`` (64x64) ``"nnpack"`` (NNPACK's FFT tiles, one image at a
       time), on smaller ones ``"fft"`` (whole-image transforms) if its kernel spectrum
       :math:`(H + k - 1)(\lfloor (W + k - 1)/2 \rfloor + 1)(C_{in} + F)\,4F` complex numbers fits
       in ``AUTO_FFT_MAX_SPECTRUM_BYTES``; both do several times fewer
       multiplications than a direct convolution and are as accurate. 3x3 kernels stay direct:
       NNPACK's Winograd tiles and the ``"fft"`` path were slower there and Winograd is ten
       times less accurate;
    4. where ``"concat"`` applies (``'same'``, strides 1, dilation 1): ``"concat"``. It ran faster
       than ``"fused"`` in 52 of 56 measurements (``benchmarks/auto_rule.py``: 14 layers, 1D to
       3D, 8 to 64 filters, float32 and bfloat16, inference and training), small layers
       included, by up to 42%; the four exceptions have four times as many input channels as
       filters and lose 1-4%, or 13% on a batch of one in float32 inference. It also keeps less
       for the backward (no hoisted gates);
    5. else ``"fused"`` (``'valid'`` padding, strides or dilation).
    """
    if in_masks is not None or rec_masks is not None:
        return "reference"
    if _compiling():  # no branch on (possibly symbolic) sizes under torch.compile / torch.export
        return "fused"
    kernel = layer.kernel_size
    dtype = compute_dtype(layer.cell, x)  # under autocast: the 16-bit format the convolutions run in
    if (x.device.type == "cpu" and dtype == torch.float32 and min(kernel) >= 5
            and fft_applicable(layer, x, in_masks, rec_masks)):  # 2D, odd kernels, default activations
        cin = x.shape[2]
        step_flops = 2 * x.shape[0] * math.prod(spatial) * 4 * layer.filters * (cin + layer.filters) \
            * math.prod(kernel)
        if step_flops >= AUTO_FAST_CONV_MIN_FLOPS:
            if math.prod(spatial) >= NNPACK_PER_SAMPLE_MIN_PIXELS and nnpack_applicable(layer, x, in_masks, rec_masks):
                return "nnpack"
            frequencies = (spatial[0] + kernel[0] - 1) * ((spatial[1] + kernel[1] - 1) // 2 + 1)
            if frequencies * (cin + layer.filters) * 4 * layer.filters * 8 <= AUTO_FFT_MAX_SPECTRUM_BYTES:
                return "fft"
    return "concat" if concat_applicable(layer, in_masks, rec_masks) else "fused"


def _needs_grad(cell, x, h, c) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or h.requires_grad or c.requires_grad
                                        or any(p.requires_grad for p in cell.parameters()))


AUTO_FAST_CONV_MIN_FLOPS = 2e8
AUTO_FFT_MAX_SPECTRUM_BYTES = 256 * 2**20  # the "fft" path's kernel spectrum (complex64)


def nnpack_unavailable(layer, x: torch.Tensor, in_masks, rec_masks) -> Optional[str]:
    """Why the ``"nnpack"`` path cannot run here (``None`` when it can): it needs ``"concat"``'s
    conditions, 2D, float32 convolutions on CPU (not under autocast, not a module cast to 16 bits),
    NNPACK built into torch, and not ``torch.compile`` (NNPACK's operator has no shape function
    for the compiler)."""
    if layer.rank != 2:
        return f"a 2D layer (this one is {layer.rank}D)"
    if x.device.type != "cpu":
        return f"a CPU tensor (got {x.device.type})"
    dtype = compute_dtype(layer.cell, x)
    if dtype != torch.float32:
        return f"float32 convolutions (they run in {_dtype_name(dtype)}{_autocast_note(x)})"
    if not concat_applicable(layer, in_masks, rec_masks):
        return "padding='same', strides 1, dilation 1 and no dropout"
    if not _NNPACK:
        return "a torch built with NNPACK"
    if _compiling():
        return "eager mode (not torch.compile)"
    return None


def nnpack_applicable(layer, x: torch.Tensor, in_masks, rec_masks) -> bool:
    """True when :func:`nnpack_unavailable` has nothing against the ``"nnpack"`` path."""
    return nnpack_unavailable(layer, x, in_masks, rec_masks) is None


def fft_unavailable(layer, x: torch.Tensor, in_masks, rec_masks) -> Optional[str]:
    """Why the ``"fft"`` path cannot run here (``None`` when it can): it needs ``"concat"``'s
    conditions, 2D, odd kernels, the default activations without peepholes, float32 or float64
    (not under autocast, not a module cast to 16 bits) and not ``torch.compile``."""
    cell = layer.cell
    if layer.rank != 2:
        return f"a 2D layer (this one is {layer.rank}D)"
    if not all(k % 2 == 1 for k in layer.kernel_size):
        return f"odd kernels (kernel_size={layer.kernel_size})"
    if not default_activations(cell):
        return "activation='tanh', recurrent_activation='sigmoid' and no peepholes"
    if not concat_applicable(layer, in_masks, rec_masks):
        return "padding='same', strides 1, dilation 1 and no dropout"
    dtype = compute_dtype(cell, x)
    if dtype not in (torch.float32, torch.float64):
        return f"float32 or float64 (the convolutions run in {_dtype_name(dtype)}{_autocast_note(x)})"
    if _compiling():
        return "eager mode (not torch.compile)"
    return None


def fft_applicable(layer, x: torch.Tensor, in_masks, rec_masks) -> bool:
    """True when :func:`fft_unavailable` has nothing against the ``"fft"`` path."""
    return fft_unavailable(layer, x, in_masks, rec_masks) is None


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _autocast_note(x: torch.Tensor) -> str:
    return " under torch.autocast" if _autocast(x.device.type) else ""


def _nnpack_available() -> bool:
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


_NNPACK = _nnpack_available()


def _nnpack_conv(plan, z: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """The recurrent plan's ``'same'`` convolution through NNPACK (FFT or Winograd tiles)."""
    if plan.pad is not None:
        z = F.pad(z, plan.pad)
    return nnpack_conv(z, weight, bias, plan.conv_padding)


def _run_fused(layer, cell, x, h, c, mask, in_masks, rec_masks, checkpoint_chunk, variant, record):
    rank = layer.rank
    steps = x.shape[1]
    if layer.go_backwards:
        x = x.flip(1)
        if mask is not None:
            mask = mask.flip(1)
    grad = _needs_grad(cell, x, h, c)
    if variant == "nnpack" and not grad:  # NNPACK's inference loop runs on contiguous NCHW
        h, c = h.contiguous(), c.contiguous()
    else:  # the training node keeps channels-last buffers, NNPACK's included
        h, c = _layout(h, rank), _layout(c, rank)
    if grad and checkpoint_chunk is not None and not _compiling():
        from torch.utils.checkpoint import checkpoint

        outs: List[torch.Tensor] = []
        prev = None
        for start, stop in _chunk_bounds(steps, checkpoint_chunk):
            m = None if mask is None else mask[:, start:stop]
            # no workspace: kept buffers would add a chunk's activations to the peak it lowers
            seq, h, c, prev = checkpoint(_fused_chunk, layer, cell, x[:, start:stop], h, c, m, in_masks,
                                         rec_masks, prev, grad, variant, record, False, use_reentrant=False)
            # a compact copy: a chunk's outputs may be a view of a buffer that also holds its inputs
            outs.append(seq if seq.is_contiguous() else seq.contiguous())
        seq = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        if not layer.return_sequences:
            seq = outs[-1]
    else:
        seq, h, c, _ = _fused_chunk(layer, cell, x, h, c, mask, in_masks, rec_masks, None, grad, variant, record)
    output = seq.transpose(0, 1) if layer.return_sequences else seq[0]
    return output, h, c


def _chunk_bounds(steps: int, chunk) -> List[Tuple[int, int]]:
    if chunk is None:
        return [(0, steps)]
    k = max(1, math.ceil(math.sqrt(steps))) if chunk is True else int(chunk)
    return [(s, min(s + k, steps)) for s in range(0, steps, k)]


def _fused_chunk(layer, cell, x, h, c, mask, in_masks, rec_masks, prev_output, grad, variant, record,
                 reuse_buffers=True):
    """Steps over one chunk ``x`` :math:`(B, T', C, *S)` (already in processing order); the
    training node's large buffers come from the cell's workspace when ``reuse_buffers``. ``h``
    comes in the convolutions' precision (``record["compute_dtype"]``), ``c`` in the state's;
    ``record["loop"]`` and ``record["convolutions"]`` say which loop ran (module docstring).

    Returns ``(seq, h, c, prev_output)`` with seq :math:`(T', B, F, *S')` time-major (or
    :math:`(1, B, F, *S')`, the last output, without ``return_sequences``)."""
    rank = layer.rank
    batch, steps, channels = x.shape[0], x.shape[1], x.shape[2]
    spatial_in = tuple(x.shape[3:])
    compiling = _compiling()
    fast = default_activations(cell) and not compiling
    # the weights, frames and state cast once to the convolutions' precision (a no-op in float32):
    # under autocast the convolutions would otherwise cast the (non-leaf) weights at every step
    conv_dtype = record["compute_dtype"]
    nnpack = variant == "nnpack"
    scaled = scaled_weights(cell, fast)
    if not nnpack:  # the kernels in the frames' channels-last format, once (NNPACK reads standard ones)
        scaled = (_layout(scaled[0], rank), _layout(scaled[1], rank), scaled[2])
    w_ih, w_hh, bias = (None if w is None else w.to(conv_dtype) for w in scaled)
    keep_all = layer.return_sequences
    concat = variant in ("concat", "nnpack", "fft")
    frames = _time_major_frames(x.to(conv_dtype), rank, channels_last=not nnpack)
    plan = cell._plan("recurrent", tuple(h.shape[2:]), 1)
    if nnpack:
        record["convolutions"] = "nnpack"

        def conv(z, w, b):
            return _nnpack_conv(plan, z, w, b)
    else:
        conv = plan

    if concat:
        if mask is None and fast and not grad and variant != "fft":
            record["loop"] = "concat_inference"
            return _concat_inference(cell, frames.view((steps, batch) + tuple(frames.shape[1:])), h, c,
                                     w_ih, w_hh, bias, keep_all, conv, nnpack) + (prev_output,)
        if mask is None and fast and plan.pad is None:  # training: one node for the whole loop
            record["loop"] = "ConcatRecurrence"
            if variant == "fft":
                record["convolutions"] = "spectral"
                convs = SpectralStepConvolutions(plan.conv_padding, rank, layer.kernel_size)
            else:
                convs = (NNPACKStepConvolutions if nnpack else StepConvolutions)(plan.conv_padding, rank)
            convs.for_backward = grad
            convs.workspace = getattr(cell, "_workspace", None) if reuse_buffers else None
            convs.zero_start = convs.can_start_from_inputs and zero_state(h)
            seq, c = ConcatRecurrence.apply(frames.view((steps, batch) + tuple(frames.shape[1:])), h, c, w_ih, w_hh,
                                            bias, convs)
            h = seq[-1].clone()  # not a view: a state carried on must not keep the whole buffer alive
            return (seq if keep_all else h.unsqueeze(0)), h, c, prev_output
        w_cat = torch.cat([w_ih, w_hh], dim=1)
        xs = frames.view((steps, batch) + tuple(frames.shape[1:])).unbind(0)
        xgs = None
    else:
        masks = None
        if in_masks is not None:
            masks = in_masks.unsqueeze(1).expand((4, steps, batch, channels) + spatial_in).reshape(
                (4, steps * batch, channels) + spatial_in)
        x_gates = _layout(_project(cell, "input", frames, masks, w_ih, bias, channels), rank)
        xgs = x_gates.view((steps, batch) + tuple(x_gates.shape[1:])).unbind(0)
        if not grad and mask is None and fast:
            record["loop"] = "hoisted_inference"
            return _hoisted_inference(layer, cell, xgs, h, c, w_hh, rec_masks, keep_all) + (prev_output,)

    record["loop"] = "GateUpdate" if fast else "cell.update"
    # 16-bit training: each step casts the float32 weights of its convolution itself, so that
    # autograd sums the steps' weight gradients in float32 (one cast shared by all the steps
    # would sum them in 16 bits: ten times the error over 100 steps)
    per_step_cast = grad and conv_dtype in LOW_PRECISION and scaled[1].dtype == torch.float32
    if per_step_cast and concat:
        w_cat = torch.cat([scaled[0], scaled[1]], dim=1)
    outputs: List[torch.Tensor] = []
    for t in range(steps):
        if concat:
            if per_step_cast:
                pre_a = conv(torch.cat([xs[t], h], dim=1), w_cat.to(conv_dtype),
                             None if bias is None else scaled[2].to(conv_dtype))
            else:
                pre_a = conv(torch.cat([xs[t], h], dim=1), w_cat, bias)
            pre_b = None
        else:
            w_rec = scaled[1].to(conv_dtype) if per_step_cast else w_hh
            pre_a = _project(cell, "recurrent", h, rec_masks, w_rec, None, layer.filters)
            pre_b = xgs[t]
        if fast:
            h_new, c_new = GateUpdate.apply(pre_a, pre_b, c)
        else:  # the cell's update (float32 arithmetic under 16-bit convolutions), h_t as h
            h_new, c_new = cell.update(pre_a if pre_b is None else pre_b.to(c.dtype) + pre_a, c)
            h_new = h_new.to(h.dtype)
        h, c, out, prev_output = masked_update(layer, mask, t, h_new, c_new, h, c, prev_output)
        if keep_all or not outputs:
            outputs.append(out)
        else:
            outputs[0] = out
    seq = torch.stack(outputs, dim=0) if keep_all else outputs[0].unsqueeze(0)
    return seq, h, c, prev_output


def _empty_like_layout(shape, like: torch.Tensor, rank: int) -> torch.Tensor:
    """An uninitialised ``(N, C, *S)`` tensor in the path's memory format."""
    return take(None, "", shape, like, channels_last_format(rank))


def _hoisted_inference(layer, cell, xgs, h, c, w_hh, rec_masks, keep_all):
    """No autograd, no masks, sigmoid/tanh: the update in place, h written into the output (``w_hh``
    comes laid out as the frames, channels-last, as oneDNN's fused convolution-and-add reads it)."""
    rank = layer.rank
    steps = len(xgs)
    plan = cell._plan("recurrent", tuple(h.shape[2:]), 1)
    use_binary = (_MKLDNN_BINARY is not None and rec_masks is None and rank == 2 and plan.pad is None
                  and h.device.type == "cpu" and h.dtype == torch.float32 and torch.backends.mkldnn.enabled
                  and torch.backends.mkldnn.is_available())
    n_out = steps if keep_all else 1
    seq = _empty_like_layout((n_out * h.shape[0],) + tuple(h.shape[1:]), h, rank).view((n_out,) + tuple(h.shape))
    c = c.clone()
    tau = torch.empty_like(c)
    ones = [1] * rank
    for t in range(steps):
        if use_binary:
            gates = _MKLDNN_BINARY.binary(h, xgs[t], w_hh, None, list(plan.conv_padding), ones, ones, 1,
                                          "add", None, None, [], None)
        else:
            gates = _project(cell, "recurrent", h, rec_masks, w_hh, None, layer.filters)
            if gates.dtype == c.dtype:
                gates.add_(xgs[t])
            else:  # 16-bit convolutions: the pre-activations summed in the state's float32
                gates = xgs[t].to(c.dtype, copy=True).add_(gates)
        h = seq[t if keep_all else 0]
        update_in_place(gates, c, c, tau, h)
    return seq, h.clone(), c


def zero_state(h: torch.Tensor) -> bool:
    """True when the initial state is known to be all zeros (checked on CPU only, where it costs
    one pass over :math:`h` and no device synchronisation): the first step's convolution then
    needs the input channels only."""
    return h.device.type == "cpu" and not _compiling() and not bool(h.any())


def _concat_inference(cell, frames, h, c, w_ih, w_hh, bias, keep_all, conv, nnpack):
    """No autograd, no masks, sigmoid/tanh, ``"concat"``: one buffer ``Z`` of shape
    :math:`(T+1, B, C + F, *S)` holds :math:`[x_t, h_{t-1}]` for every step; step ``t``
    convolves ``Z[t]`` and writes :math:`h_t` into the state channels of ``Z[t+1]``, so the
    output sequence is a view of ``Z`` and nothing is concatenated or copied in the loop."""
    rank = cell.rank
    steps, batch, ch = frames.shape[0], frames.shape[1], frames.shape[2]
    nf = cell.filters
    spatial = tuple(h.shape[2:])
    # reused while no earlier output holds it (convlstm._workspace)
    z = take(getattr(cell, "_workspace", None), "inference_inputs", ((steps + 1) * batch, ch + nf) + spatial, h,
             None if nnpack else channels_last_format(rank)).view((steps + 1, batch, ch + nf) + spatial)
    z[:steps, :, :ch].copy_(frames)
    z[0, :, ch:].copy_(h)
    w_cat = torch.cat([w_ih, w_hh], dim=1)
    c = c.clone()
    tau = torch.empty_like(c)
    zero_start = zero_state(h)
    # 16-bit convolutions: the float32 gates, one buffer for all the steps
    act = _empty_like_layout((batch, 4 * nf) + spatial, c, rank) if w_cat.dtype != c.dtype else None
    for t in range(steps):
        gates = conv(z[0, :, :ch], w_ih, bias) if t == 0 and zero_start else conv(z[t], w_cat, bias)
        update_in_place(gates, c, c, tau, z[t + 1, :, ch:], act_out=act)
    seq = z[1:, :, ch:] if keep_all else z[steps:, :, ch:].clone()
    return seq, z[steps, :, ch:].clone(), c
