"""``convert``: a Keras model file to ``model.safetensors`` + ``config.json``, and back.

The converted folder holds no pickle: the weights are a safetensors file of the module's
``state_dict`` and the architecture is the Keras model config (plain JSON) with the Keras version,
so :func:`load_converted` rebuilds the same :class:`KerasModel` without the original file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from .._io import atomic_path, write_json
from ._safe import KerasFileError, parse_json
from ._weights import flat_weights, keras_class
from .model import KerasModel

__all__ = ["convert", "load_converted", "summary", "FORMAT"]

FORMAT = "convlstm.keras.converted"
PathLike = Union[str, "os.PathLike[str]"]


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def summary(model: KerasModel) -> str:
    """A per-layer table: name, Keras class, output shape(s) and parameter count (Keras counts:
    BatchNormalization's moving statistics included), then the total."""
    rows = []
    total = 0
    for name, cls, module in model.keras_layers():
        if module is None:
            spec = model._spec_by_name[name]
            shapes = [(None,) + tuple(spec.input_shape[1:])]
            count = 0
        else:
            shapes = model.output_shapes.get(name, [])
            count = sum(int(t.numel()) for _, t in flat_weights(module, f"layer {name!r}"))
        total += count
        inner = getattr(module, "layer", None) or getattr(module, "forward_layer", None)
        if cls in ("TimeDistributed", "Bidirectional") and inner is not None:
            cls = f"{cls}({keras_class(inner)})"
        rows.append((name, cls, " ".join(_shape_text(s) for s in shapes) or "?", f"{count:,}"))
    head = ("Layer", "Class", "Output shape", "Params")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]

    def line(r):
        return "  ".join(r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(4))

    rule = "-" * len(line(head))
    out = [f"Model {model.name!r} (Keras {model.keras_version})", rule, line(head), rule]
    out += [line(r) for r in rows]
    out += [rule, f"Total params: {total:,}"]
    return "\n".join(out)


def convert(path: PathLike, out_dir: PathLike) -> str:
    """Convert a Keras ``.h5`` / ``.keras`` model into ``out_dir/model.safetensors`` and
    ``out_dir/config.json`` (both written atomically), and return the model's :func:`summary`.

    The command line's ``convlstm convert MODEL -o OUT`` calls this and prints the summary.
    """
    from safetensors.torch import save_file

    from .io import load_model

    model = load_model(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    write_json(out_dir / "config.json", {
        "format": FORMAT, "version": 1, "source": Path(path).name, "keras_version": model.keras_version,
        "input_shapes": [list(s) for s in model.input_shapes()], "model_config": model.model_config,
    })
    return summary(model)


def load_converted(out_dir: PathLike) -> KerasModel:
    """Rebuild the model that :func:`convert` wrote to ``out_dir`` (in eval mode)."""
    from safetensors.torch import load_file

    out_dir = Path(out_dir)
    cfg_path, weights = out_dir / "config.json", out_dir / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{out_dir} is not a converted model: {p.name} is missing")
    config = parse_json(cfg_path.read_bytes(), str(cfg_path))
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise KerasFileError(f"{cfg_path}: not a {FORMAT!r} config")
    model = KerasModel(config["model_config"], keras_version=str(config.get("keras_version", "3")))
    try:
        state = load_file(str(weights))
    except Exception as err:
        raise KerasFileError(f"{weights}: cannot read the safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise KerasFileError(f"{weights} does not match {cfg_path.name}: {err}") from None
    return model.eval()
