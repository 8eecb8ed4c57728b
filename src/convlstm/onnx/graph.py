"""Reading an exported file back: its inputs and outputs with their symbolic axes."""
from __future__ import annotations

import re
from typing import Dict, List, Tuple, Union

from ._deps import require
from .._io import PathLike

__all__ = ["signature", "describe", "name_axes"]

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


def describe(path: PathLike) -> str:
    """A printable summary of :func:`signature`, one line per input and output, e.g.
    ``input  x  float32  (batch, time, s0, s1, 1)``."""
    inputs, outputs = signature(path)
    lines = []
    for kind, rows in (("input", inputs), ("output", outputs)):
        for name, dtype, shape in rows:
            lines.append(f"{kind:<7}{name:<12} {dtype:<8} ({', '.join(map(str, shape))})")
    return "\n".join(lines)


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
