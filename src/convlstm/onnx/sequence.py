r"""Whole-sequence export: one ONNX file for every number of time steps and every batch size.

With ``dynamic_time=True`` (the default) every ConvLSTM layer of the model runs its time loop as
torch's ``scan`` operator while torch's exporter traces the model (:func:`convlstm._paths.scan_time_loops`),
and the exporter turns each into an ONNX ``Scan`` node whose body is one step of the recurrence:

.. math::
    X = W_x \star x_{1..T} + b \ \text{(one Conv over } B \cdot T \text{ frames)}, \qquad
    (h_t, c_t) = \text{Scan body}(X_t, h_{t-1}, c_{t-1}), \quad t = 1 \ldots T.

Everything else in the model (Bidirectional's flip and merge, BatchNormalization, Conv3D heads,
the registry's encoders and forecast heads) is exported as traced, with the batch axis ``batch``
and the time axis ``time`` symbolic. Spatial axes stay symbolic where the model allows it
(torch's ``Dim.AUTO``: an axis the model fixes, e.g. through Flatten/Dense or a ``frame_size``
check, becomes a constant, as :func:`convlstm.onnx.describe` shows); channels are fixed by the
weights. Stacked layers are one ``Scan`` each, Bidirectional two.

``dynamic_time=False`` keeps the unrolled graph of earlier versions (one copy of the step per
time step of the example), for runtimes that need static shapes.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils import _pytree as pytree

from .. import _paths
from ..layers import ConvLSTM
from .._io import PathLike
from ._exporter import TraceError, check_arguments, run_exporter

__all__ = ["export", "DEFAULT_OPSET", "model_min_time", "fixed_time_model"]

DEFAULT_OPSET = 18


def _as_args(example_inputs) -> tuple:
    return tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)


def _check_states(module: nn.Module) -> None:
    for name, sub in module.named_modules():
        if isinstance(sub, ConvLSTM) and sub.stateful and sub._states is not None:
            raise ValueError(f"layer {name or type(sub).__name__!r} is stateful and holds states from earlier calls; "
                             "an exported graph starts from zeros or from given initial states, so call "
                             "reset_states() first, or pass the states as initial_state in example_inputs")


def _input_steps(module: nn.Module) -> Dict[str, int]:
    """The registry models' ``input_steps`` (the :math:`T` they check for) by submodule name."""
    return {name: sub.input_steps for name, sub in module.named_modules()
            if isinstance(getattr(sub, "input_steps", None), int) and not isinstance(sub, ConvLSTM)}


def model_min_time(module: nn.Module) -> int:
    """The fewest time steps one graph of ``module`` can serve: the largest ``min_input_steps`` of
    its submodules (``convlstm-warp``: 3), else 1."""
    return max([int(getattr(sub, "min_input_steps", 1)) for sub in module.modules()] + [1])


def fixed_time_model(module: nn.Module) -> Optional[str]:
    """The class name of a submodule whose number of input steps is part of the model
    (``fixed_input_steps``: ``st-convlstm`` reads its stacked lags by position), else ``None``."""
    for sub in module.modules():
        if getattr(sub, "fixed_input_steps", False):
            return type(sub).__name__
    return None


@contextlib.contextmanager
def _any_input_steps(module: nn.Module) -> Iterator[None]:
    """Lift the registry models' ``input_steps`` check while tracing (the network runs on any
    number of steps)."""
    lifted = _input_steps(module)
    subs = dict(module.named_modules())
    for name in lifted:
        subs[name].input_steps = None
    try:
        yield
    finally:
        for name, steps in lifted.items():
            subs[name].input_steps = steps


@contextlib.contextmanager
def _kept_states(module: nn.Module) -> Iterator[None]:
    """Tracing runs ``forward``: stateful layers get their stored states back afterwards."""
    saved = {sub: sub._states for sub in module.modules() if isinstance(sub, ConvLSTM)}
    try:
        yield
    finally:
        for sub, states in saved.items():
            sub._states = states


def _roles(leaves: List[Any]) -> List[Optional[str]]:
    """``'sequence'`` (batch, time, ...), ``'mask'`` (batch, time) or ``'batched'`` (batch, ...)
    for each tensor leaf of the inputs; the first tensor is the sequence that sets ``(B, T)``."""
    tensors = [t for t in leaves if isinstance(t, torch.Tensor)]
    if not tensors or tensors[0].dim() < 3:
        raise ValueError("example_inputs must start with a sequence tensor (batch, time, ...), got "
                         f"{[tuple(t.shape) for t in tensors] or 'no tensor'}")
    first = tensors[0]
    batch, steps = first.shape[0], first.shape[1]
    roles: List[Optional[str]] = []
    for t in leaves:
        if not isinstance(t, torch.Tensor):
            roles.append(None)
        elif t.dim() == 0 or t.shape[0] != batch:
            raise ValueError(f"every example input must have the sequence's batch size {batch} first, got a "
                             f"tensor of shape {tuple(t.shape)}")
        elif t.dim() == first.dim() and t.shape[1] == steps:
            roles.append("sequence")
        elif t.dim() == 2 and t.shape[1] == steps:
            roles.append("mask")
        else:
            roles.append("batched")
    return roles


def _at_least_two(t: torch.Tensor, dim: int) -> torch.Tensor:
    """An example of size 1 along a dynamic axis is repeated to 2: torch.export would otherwise
    specialise the axis to 1 (its 0/1 rule)."""
    return torch.cat([t, t], dim) if t.shape[dim] == 1 else t


def _channels_last(module: nn.Module) -> bool:
    """The module's own ``channels_last`` attribute where it has one (a run's
    :class:`~convlstm.onnx.units.DataUnits`, :class:`~convlstm.onnx.StepModule`), else the data
    format of its first ConvLSTM layer (the registry's models are channels_last)."""
    own = getattr(module, "channels_last", None)
    if isinstance(own, bool):
        return own
    for sub in module.modules():
        if isinstance(sub, ConvLSTM):
            return sub.data_format == "channels_last"
    return True


def dynamic_examples(args: tuple, *, batch: bool, time: bool, spatial: bool, channels_last: bool = True,
                     min_time: int = 1):
    """The examples (sizes 1 along dynamic axes repeated to 2) and torch.export's ``dynamic_shapes``
    for them: ``batch`` on axis 0 of every tensor, ``time`` (at least ``min_time``) on axis 1 of
    sequences and masks, ``Dim.AUTO`` on the other axes but the channels' when ``spatial``."""
    leaves, spec = pytree.tree_flatten(args)
    roles = _roles(leaves)
    b_dim = torch.export.Dim("batch", min=1) if batch else None
    t_dim = torch.export.Dim("time", min=min_time) if time else None
    new_leaves, shapes = [], []
    for t, role in zip(leaves, roles):
        if role is None:
            new_leaves.append(t)
            shapes.append(None)
            continue
        dims: Dict[int, Any] = {}
        if batch:
            t = _at_least_two(t, 0)
            dims[0] = b_dim
        timed = role in ("sequence", "mask")
        if time and timed:
            t = _at_least_two(t, 1)
            dims[1] = t_dim
        if spatial and role != "mask":
            first = 2 if timed else 1
            channel = t.dim() - 1 if channels_last else first
            for axis in range(first, t.dim()):
                if axis != channel:
                    dims[axis] = torch.export.Dim.AUTO
        new_leaves.append(t)
        shapes.append(dims or None)
    return pytree.tree_unflatten(new_leaves, spec), pytree.tree_unflatten(shapes, spec)


def _check_exportable(module: nn.Module) -> None:
    """Refuse a model part of whose forecast is computed outside torch (a submodule's
    ``onnx_unexportable`` says what and what to do instead): a trace would freeze it as constants."""
    for sub in module.modules():
        why = getattr(sub, "onnx_unexportable", None)
        if why:
            raise ValueError(f"this model cannot be exported to ONNX: {why}")


def export(module: nn.Module, path: PathLike, example_inputs, *, input_names: Optional[Sequence[str]] = None,
           output_names: Optional[Sequence[str]] = None, opset_version: int = DEFAULT_OPSET,
           dynamic_batch: bool = True, dynamic_time: bool = True, dynamic_spatial: Union[bool, str] = "auto",
           min_time: Optional[int] = None, metadata: Optional[Dict[str, str]] = None):
    r"""Export ``module`` (in eval mode) to an ONNX file that runs on any batch size and any
    number of time steps.

    Args:
        module: a model built from the library's layers: :class:`convlstm.ConvLSTM1D` / ``2D`` /
            ``3D``, :class:`convlstm.Bidirectional`, a :class:`convlstm.keras.KerasModel`, a
            registry model (:func:`convlstm.models.create`) or any module made of them and
            ordinary torch layers.
        path: the ``.onnx`` file, written atomically.
        example_inputs: the positional arguments of ``module``: a tensor or a tuple. The first
            tensor is the sequence :math:`(B, T, \ldots)`; for a layer, ``(x, [h0, c0])`` makes the
            initial states inputs of the graph and ``(x, [h0, c0], mask)`` (or ``(x, None, mask)``)
            the boolean :math:`(B, T)` mask too. Sizes of 1 along dynamic axes are fine.
        input_names: one ONNX name per input tensor (default ``input_0, input_1, ...``).
        output_names: one per output tensor (default ``output_0, ...``).
        opset_version: ONNX opset, 18 or more (default 18).
        dynamic_batch: the batch axis (axis 0 of every input) is the symbol ``batch``.
        dynamic_time: the time loops are ONNX ``Scan`` nodes and the time axis (axis 1 of the
            sequences and masks) is the symbol ``time``; spatial axes are symbolic where the model
            allows it. ``False``: the unrolled graph, fixed at the example's time steps and size.
        dynamic_spatial: with ``dynamic_time``, the spatial axes: ``True`` symbolic (an error if
            the model's code depends on the frame size, as ``convlstm-warp``'s block matching
            does), ``False`` fixed at the example's, ``"auto"`` (default) symbolic when the model
            allows it, else fixed with a warning that says why.
        min_time: the fewest time steps the graph is traced for. ``None`` (default): the model's
            own minimum (:func:`model_min_time`: ``min_input_steps`` of its submodules, 3 for
            ``convlstm-warp``, whose code handles one frame and two apart; else 1). The file
            serves every :math:`T \ge` ``min_time``; the graph cannot check it, so the file's
            metadata records it (``convlstm.min_time``) and fewer steps are the caller's to avoid.
            The example needs at least ``min_time`` steps.
        metadata: more ``metadata_props`` of the file (key to text), written after the ones
            :func:`export` writes (``convlstm.min_time``...), which they replace where the keys
            are the same; a ``convlstm.input_steps`` given here replaces the submodules' ones.

    Returns:
        the path written.

    Each export starts with ``torch._dynamo.reset()`` (torch's ``scan`` traces its body with
    dynamo, whose cache, kept from an earlier export, made a later one fix the time axis), which
    also clears the caches of models compiled with :func:`torch.compile` in this process.

    The registry models' ``input_steps`` check (the :math:`T` they were trained on) is not part of
    the graph; the file's metadata records it (``convlstm.input_steps``). Their forecast steps
    are fixed by the model.

    Example::

        >>> model = convlstm.ConvLSTM2D(8, 3, padding="same", return_sequences=True, in_channels=1)
        >>> convlstm.onnx.export(model, "m.onnx", torch.zeros(1, 5, 64, 64, 1), input_names=["x"])
        >>> sess = onnxruntime.InferenceSession("m.onnx")
        >>> sess.run(None, {"x": np.zeros((3, 12, 48, 40, 1), np.float32)})[0].shape
        (3, 12, 48, 40, 8)
    """
    args = _as_args(example_inputs)
    _check_states(module)
    _check_exportable(module)
    n_inputs = sum(isinstance(t, torch.Tensor) for t in pytree.tree_leaves(args))
    if input_names is None:
        input_names = [f"input_{i}" for i in range(n_inputs)]
    if len(input_names) != n_inputs:
        raise ValueError(f"input_names has {len(input_names)} names for {n_inputs} input tensors")
    check_arguments(opset_version)
    lifted = _input_steps(module) if dynamic_time else {}
    if dynamic_spatial not in (True, False, "auto"):
        raise ValueError(f"dynamic_spatial must be True, False or 'auto', got {dynamic_spatial!r}")
    min_time = _check_time(module, args, dynamic_time, min_time)
    if not dynamic_time:
        dynamic_spatial = False
    written = {"convlstm.dynamic_time": str(bool(dynamic_time)), "convlstm.min_time": str(min_time)}
    if "convlstm.input_steps" not in (metadata or {}):  # the caller's, for the whole model, replaces them
        written.update({f"convlstm.input_steps{'.' + k if k else ''}": str(v) for k, v in lifted.items()})
    written.update({str(k): str(v) for k, v in (metadata or {}).items()})
    context = _paths.scan_time_loops if dynamic_time else contextlib.nullcontext

    @contextlib.contextmanager
    def tracing():
        with context(), (_any_input_steps(module) if dynamic_time else contextlib.nullcontext()), \
                _kept_states(module):
            yield

    def run(spatial: bool):
        examples, shapes = dynamic_examples(args, batch=bool(dynamic_batch), time=bool(dynamic_time),
                                            spatial=spatial, channels_last=_channels_last(module),
                                            min_time=min_time)
        try:
            return run_exporter(module, examples, path, input_names=input_names, output_names=output_names,
                                opset=opset_version, dynamic_shapes=shapes if dynamic_batch or dynamic_time else None,
                                metadata=written, context=tracing,
                                axis_names=_axis_names(dynamic_batch, dynamic_time))
        except TraceError as err:
            for axis, flag in (("time", "dynamic_time"), ("batch", "dynamic_batch")):
                if f"Constraints violated ({axis})" in str(err):
                    raise ValueError(
                        f"convlstm.onnx.export: {_model_name(module)}'s code depends on the {axis} axis's size "
                        f"(torch.export: {_first_guard(err)}), so one graph cannot serve every {axis} size; "
                        + ("pass min_time=N (CLI: --min-time N) if the guard holds from N steps on (a model "
                           "class declares it as min_input_steps = N), or dynamic_time=False (CLI: --static-time) for a graph fixed at "
                           "the example's" if axis == "time" else
                           f"export with {flag}=False for a graph fixed at the example's")) from err
            raise

    if dynamic_spatial != "auto":
        return run(bool(dynamic_spatial))
    try:
        return run(True)
    except TraceError as err:
        return _fixed_spatial(module, err.__cause__ or err, run)


def _check_time(module: nn.Module, args: tuple, dynamic_time: bool, min_time: Optional[int]) -> int:
    """``min_time`` checked (``None``: :func:`model_min_time`) against the example and the model."""
    if min_time is None:
        min_time = model_min_time(module)
    if isinstance(min_time, bool) or not isinstance(min_time, int) or min_time < 1:
        raise ValueError(f"min_time (CLI: --min-time) must be an int >= 1, got {min_time!r}")
    fixed = fixed_time_model(module) if dynamic_time else None
    if fixed is not None:
        raise ValueError(f"convlstm.onnx.export: {fixed} reads its input frames by position (its input_steps are "
                         "part of the model), so the time axis cannot be dynamic; export with dynamic_time=False "
                         "(CLI: --static-time)")
    steps = int(next(t for t in pytree.tree_leaves(args) if isinstance(t, torch.Tensor)).shape[1])
    if dynamic_time and steps < min_time:
        raise ValueError(f"the example has {steps} time steps, fewer than min_time={min_time}")
    return min_time


def _model_name(module: nn.Module) -> str:
    """The class name of ``module``, or of the network it wraps (a run's ``DataUnits``)."""
    inner = getattr(module, "network", None)
    return type(inner if isinstance(inner, nn.Module) else module).__name__


def _first_guard(err: Exception) -> str:
    lines = [ln.strip(" -") for ln in str(err).splitlines() if "guard" in ln]
    return lines[0] if lines else str(err).splitlines()[0]


def _fixed_spatial(module: nn.Module, err: Exception, run):
    """``dynamic_spatial='auto'``: torch.export could not keep the spatial axes symbolic; export
    them fixed and, when that works (else the reason was not the frame size), say why."""
    path = run(False)
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    warnings.warn(f"convlstm.onnx.export: {_model_name(module)} depends on the frame size ({reason}); the "
                  f"spatial axes are fixed at the example's (dynamic_spatial='auto'; pass "
                  f"dynamic_spatial=False to skip the attempt)", stacklevel=3)
    return path


def _axis_names(batch: bool, time: bool) -> Dict[Tuple[int, int], str]:
    return {**({(0, 0): "batch"} if batch else {}), **({(0, 1): "time"} if time else {})}
