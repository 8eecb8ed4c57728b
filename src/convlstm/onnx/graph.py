"""Reading an exported file back: its inputs and outputs with their symbolic axes, its metadata."""
from __future__ import annotations

import re
from typing import Dict, List, Tuple, Union

from ._deps import require
from .._io import PathLike

__all__ = ["signature", "describe", "metadata", "name_axes"]

Dim = Union[int, str]


def _dims(value_info) -> Tuple[Dim, ...]:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
                 for d in shape.dim)


def signature(path: PathLike) -> Tuple[List[Tuple[str, str, Tuple[Dim, ...]]], List[Tuple[str, str, Tuple[Dim, ...]]]]:
    """``(inputs, outputs)`` of the ONNX file ``path``, each a list of ``(name, dtype, shape)``;
    a symbolic axis is its name (``'batch'``, ``'time'``, an expression of them), a fixed one an int."""
    require(("onnx",), purpose="reading an ONNX file")
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def rows(values):
        return [(v.name, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name, _dims(v))
                for v in values if v.name not in initializers]

    return rows(model.graph.input), rows(model.graph.output)


def metadata(path: PathLike) -> Dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path`` as a dict, e.g. ``convlstm.min_time``;
    for a run's file (``convlstm export``) also ``convlstm.units`` (``data`` or ``scaled``),
    ``convlstm.scaler``, ``convlstm.input.x``, ``convlstm.output.forecast``..."""
    require(("onnx",), purpose="reading an ONNX file")
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def describe(path: PathLike) -> str:
    """A printable summary of :func:`signature`, one line per input and output, e.g.
    ``input  x  float32  (batch, time, s0, s1, 1)``; then, for a file that records what its
    inputs and outputs hold (a run's, ``convlstm.input.NAME`` / ``convlstm.output.NAME`` in its
    :func:`metadata`), one line ``NAME: meaning`` each."""
    inputs, outputs = signature(path)
    meta = metadata(path)
    lines, meanings = [], []
    for kind, rows in (("input", inputs), ("output", outputs)):
        for name, dtype, shape in rows:
            lines.append(f"{kind:<7}{name:<12} {dtype:<8} ({', '.join(map(str, shape))})")
            if f"convlstm.{kind}.{name}" in meta:
                meanings.append(f"{name}: {meta[f'convlstm.{kind}.{name}']}")
    return "\n".join(lines + meanings)


def name_axes(model, names: Dict[Tuple[int, int], str]) -> None:
    """Rename symbolic axes of an ONNX ``ModelProto`` in place: ``names[(i, axis)]`` is the new
    name of the symbol on ``axis`` of graph input ``i`` (e.g. ``batch``, ``time``); every shape
    of the graph that uses the symbol, in expressions too, follows."""
    graph = model.graph
    inputs = list(graph.input)
    renames = {}
    for (i, axis), new in names.items():
        dims = inputs[i].type.tensor_type.shape.dim
        if axis < len(dims) and dims[axis].HasField("dim_param") and re.fullmatch(r"\w+", dims[axis].dim_param):
            renames[dims[axis].dim_param] = new
    if not renames:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, renames)) + r")\b")
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_param = pattern.sub(lambda m: renames[m.group(1)], d.dim_param)
