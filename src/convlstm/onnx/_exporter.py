"""The one call of torch's ONNX exporter: eval mode, the exporter's own noise silenced, the file
written atomically, metadata attached."""
from __future__ import annotations

import contextlib
import inspect
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .._io import PathLike, atomic_path
from ._deps import require
from .graph import name_axes

# Loggers of torch's exporter and of onnx_ir that report on the exporter's internals, not on the
# user's model: "torchvision is not installed. Skipping torchvision::nms" (four times: the exporter
# registers torchvision's ops when it can) and "Attribute type is ambiguous because it is an
# empty sequence" (an empty attribute of torch's own Scan translation); and torch's shape solver's
# "Unable to find user code corresponding to {u0}" before a refusal whose error says the same.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnx_ir._convenience",
                  "torch.fx.experimental.symbolic_shapes")
# Warnings raised inside the exporter by torch's own code: a FutureWarning of its pytree code
# (``LeafSpec``) and a DeprecationWarning of TorchScript modules it imports.
_NOISY_WARNINGS = ((r".*LeafSpec.*", FutureWarning), (r".*torch\.jit\.script_method.*", DeprecationWarning))


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence, for the duration of one export, the exporter's messages that are not the user's
    concern (the loggers and warnings listed above); the user's own warnings still show."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for pattern, category in _NOISY_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class TraceError(RuntimeError):
    """torch.export failed on the model (its ``__cause__`` is torch's error; ``torch_output`` what
    torch printed meanwhile, e.g. the partial graph of a data-dependent branch)."""

    torch_output = ""


@contextlib.contextmanager
def _stderr_kept_on_failure() -> Iterator[io.StringIO]:
    """Collect what is printed to ``sys.stderr`` inside: passed on if the block succeeds, kept in
    the buffer (not printed) if it raises: torch.export prints the partial graph of a model it
    cannot trace to stderr, which would bury the one-line refusal."""
    buffer = io.StringIO()
    real = sys.stderr
    with contextlib.redirect_stderr(buffer):
        yield buffer
    real.write(buffer.getvalue())


def check_arguments(opset) -> None:
    """The checks every export makes before tracing: the extra is installed, the opset is one
    torch's exporter writes."""
    require()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 18:
        raise ValueError(f"opset_version (CLI: --opset) must be an int >= 18 (torch's exporter), got {opset!r}")


def run_exporter(module: nn.Module, args: Tuple, path: PathLike, *, input_names: Optional[Sequence[str]],
                 output_names: Optional[Sequence[str]], opset: int, dynamic_shapes: Any = None,
                 metadata: Optional[Dict[str, str]] = None, context=contextlib.nullcontext,
                 axis_names: Optional[Dict[Tuple[int, int], str]] = None) -> Path:
    """Export ``module(*args)`` (in eval mode) with :func:`torch.export.export` and
    :func:`torch.onnx.export` to ``path``, atomically; ``context`` (a context-manager factory)
    wraps the tracing; ``dynamic_shapes`` follows ``args`` (bound to ``forward``'s parameters
    here); ``axis_names`` as :func:`convlstm.onnx.graph.name_axes`."""
    check_arguments(opset)
    import onnx

    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with quiet_exporter():
            # torch's scan traces its body with dynamo, whose cache of that function (one code
            # object for every layer) outlives an export: after several exports it stopped keeping
            # the time axis symbolic ("specialized to a constant"). Each export starts clean.
            torch._dynamo.reset()
            printed = io.StringIO()
            try:
                with context(), _stderr_kept_on_failure() as printed:
                    exported = torch.export.export(module, args, strict=False,
                                                   dynamic_shapes=_bind(module, args, dynamic_shapes))
            except Exception as err:
                error = TraceError(f"torch.export could not trace {type(module).__name__}: {err}")
                error.torch_output = printed.getvalue()
                raise error from err
            n_outputs = len(exported.graph_signature.user_outputs)
            if output_names is None:
                output_names = [f"output_{i}" for i in range(n_outputs)]
            if len(output_names) != n_outputs:
                raise ValueError(f"output_names has {len(output_names)} names for {n_outputs} output tensors")
            program = torch.onnx.export(exported, dynamo=True, opset_version=opset,
                                        input_names=None if input_names is None else list(input_names),
                                        output_names=list(output_names), verbose=False)
    finally:
        module.train(was_training)
    model = program.model_proto
    _drop_unused_initializers(model.graph)
    name_axes(model, axis_names or {})
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def _used_names(graph, used: set) -> set:
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _used_names(sub, used)
    return used


def _drop_unused_initializers(graph) -> None:
    """Remove the constants no node reads (torch's exporter leaves one behind around ``Scan``;
    onnxruntime warns about it each time it loads the file)."""
    used = _used_names(graph, {o.name for o in graph.output})
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)


def _bind(module: nn.Module, args: Tuple, dynamic_shapes):
    """``dynamic_shapes`` (one entry per positional argument) keyed by ``forward``'s parameter
    names, so that a ``forward(*inputs)`` (:class:`convlstm.keras.KerasModel`) gets its tuple."""
    if dynamic_shapes is None:
        return None
    signature = inspect.signature(module.forward)
    signature.bind(*args)  # the example fits forward's signature
    return dict(signature.bind(*dynamic_shapes).arguments)
