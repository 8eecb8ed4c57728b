"""Where each layer's weights live in Keras files, and moving them in and out of torch modules.

Every supported module exposes its weights as writable views in Keras's layout and order
(:func:`keras_structure`): the ConvLSTM layers and :class:`convlstm.Bidirectional`, the modules of
:mod:`convlstm.keras.layers`, and plain ``torch.nn`` convolutions, ``Linear`` and batch norms.

* Keras 2 / tf.keras HDF5: one group per layer (``layer_names``), whose ``weight_names`` list the
  datasets in Keras's order.
* Keras 3 ``.weights.h5``: ``layers/<snake_case(class)>[_<n>]/.../vars/<i>``, the counter per class
  in the model's layer order; ConvLSTM weights under ``cell/``, Bidirectional's under
  ``forward_layer/cell/`` and ``backward_layer/cell/``, TimeDistributed's under ``layer/``.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .._ops import torch_to_keras_kernel
from ..layers import ConvLSTM
from ..wrappers import Bidirectional
from ._safe import KerasFileError
from .layers import KerasLayer, TimeDistributed

__all__ = ["keras_class", "keras_structure", "flat_weights", "walk_keras_layers", "k3_names", "snake_case",
           "assign", "read_k2_layer", "k2_layer_groups"]

Views = List[Tuple[str, torch.Tensor]]

_TORCH_CLASSES = {nn.Conv1d: "Conv1D", nn.Conv2d: "Conv2D", nn.Conv3d: "Conv3D",
                  nn.ConvTranspose1d: "Conv1DTranspose", nn.ConvTranspose2d: "Conv2DTranspose",
                  nn.ConvTranspose3d: "Conv3DTranspose", nn.Linear: "Dense",
                  nn.BatchNorm1d: "BatchNormalization", nn.BatchNorm2d: "BatchNormalization",
                  nn.BatchNorm3d: "BatchNormalization"}


def snake_case(name: str) -> str:
    """Keras 3's ``to_snake_case``: ``"ConvLSTM2D"`` -> ``"conv_lstm2d"``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_class(module: nn.Module) -> Optional[str]:
    """The Keras class a module corresponds to, or ``None``."""
    if isinstance(module, ConvLSTM):
        return f"ConvLSTM{module.rank}D"
    if isinstance(module, Bidirectional):
        return "Bidirectional"
    if isinstance(module, KerasLayer):
        return module.keras_class
    for cls, name in _TORCH_CLASSES.items():
        if type(module) is cls:
            return name
    return None


def _convlstm_views(layer: ConvLSTM, who: str) -> Views:
    if layer.cell is None:
        raise KerasFileError(f"{who}: the ConvLSTM layer has no weights yet (pass in_channels= or call it once)")
    if layer.peephole:
        raise KerasFileError(f"{who}: peephole weights have no Keras equivalent")
    return layer.cell.keras_weights()


def keras_structure(module: nn.Module, who: str = "layer") -> List[Tuple[str, Views]]:
    """``(sub-path, views)`` for every Keras 3 ``vars`` group of the layer, containers included
    (ConvLSTM: ``[("", []), ("cell", [kernel, recurrent_kernel, bias])]``)."""
    if isinstance(module, ConvLSTM):
        return [("", []), ("cell", _convlstm_views(module, who))]
    if isinstance(module, Bidirectional):
        return [("", []), ("backward_layer", []), ("backward_layer/cell", _convlstm_views(module.backward_layer, who)),
                ("forward_layer", []), ("forward_layer/cell", _convlstm_views(module.forward_layer, who))]
    if isinstance(module, TimeDistributed):
        inner = keras_structure(module.layer, who)
        return [("", [])] + [(("layer/" + p) if p else "layer", v) for p, v in inner]
    if isinstance(module, KerasLayer):
        return [("", [(n, t) for n, t in module.keras_weights() if t is not None])]
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                           nn.ConvTranspose3d)):
        rank = module.weight.dim() - 2
        views = [("kernel", torch_to_keras_kernel(module.weight, rank))]
        if module.bias is not None:
            views.append(("bias", module.bias))
        return [("", views)]
    if isinstance(module, nn.Linear):
        views = [("kernel", module.weight.t())]
        if module.bias is not None:
            views.append(("bias", module.bias))
        return [("", views)]
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        views = []
        if module.affine:
            views += [("gamma", module.weight), ("beta", module.bias)]
        if module.running_mean is None:
            raise KerasFileError(f"{who}: a BatchNorm without running statistics has no Keras equivalent")
        return [("", views + [("moving_mean", module.running_mean), ("moving_variance", module.running_var)])]
    raise KerasFileError(f"{who}: {type(module).__name__} has no Keras equivalent")


def flat_weights(module: nn.Module, who: str = "layer") -> Views:
    """The layer's weights in Keras 2's order (``layer.weights``): Bidirectional's forward layer first."""
    struct = keras_structure(module, who)
    if isinstance(module, Bidirectional):
        order = {"forward_layer/cell": 0, "backward_layer/cell": 1}
        struct = sorted(struct, key=lambda pv: order.get(pv[0], -1))
    return [v for _, views in struct for v in views]


def walk_keras_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, layer)`` for the Keras-equivalent layers of ``module``, in Keras's layer order.

    For a :class:`convlstm.keras.KerasModel` this is the Keras model's order; otherwise the
    modules are taken depth-first in registration order, not descending into recognised layers.
    """
    from .model import KerasModel

    if isinstance(module, KerasModel):
        return [(name, m) for name, _, m in module.keras_layers() if m is not None]
    if keras_class(module) is not None:
        return [("", module)]
    out: List[Tuple[str, nn.Module]] = []

    def visit(prefix: str, m: nn.Module):
        for name, child in m.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, KerasModel):
                out.extend((f"{full}.{n}", l) for n, l in walk_keras_layers(child))
            elif keras_class(child) is not None:
                out.append((full, child))
            else:
                visit(full, child)

    visit("", module)
    return out


def k3_names(layers: Sequence[Tuple[str, nn.Module]], classes: Optional[Sequence[str]] = None) -> List[str]:
    """Keras 3's storage names (``conv_lstm2d``, ``conv_lstm2d_1``, ...) for layers in order."""
    used: Dict[str, int] = {}
    out = []
    for i, (_, m) in enumerate(layers):
        base = snake_case(classes[i] if classes is not None else keras_class(m))
        if base in used:
            used[base] += 1
            out.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            out.append(base)
    return out


def safe_get(root, path: str, where: str):
    """``root[path]``, following only hard links (an external or soft link could make the file read
    another file), or ``None`` when absent."""
    import h5py

    node = root
    for part in [p for p in path.split("/") if p]:
        try:
            link = node.get(part, getlink=True)
        except Exception as err:
            raise KerasFileError(f"{where}: cannot read {path!r} ({type(err).__name__}: {err})") from None
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            raise KerasFileError(f"{where}: {path!r} is a {type(link).__name__}; only plain HDF5 objects are read")
        try:
            node = node[part]
        except Exception as err:  # h5py: KeyError/OSError/RuntimeError on a damaged object header
            raise KerasFileError(f"{where}: cannot read {path!r} ({type(err).__name__}: {err}); the file may be "
                                 "truncated or corrupt") from None
    return node


def _as_array(dataset, where: str) -> np.ndarray:
    if not hasattr(dataset, "shape") or not hasattr(dataset, "dtype"):
        raise KerasFileError(f"{where}: expected an array, found a {type(dataset).__name__}")
    if getattr(dataset, "is_virtual", False) or getattr(dataset, "external", None):
        raise KerasFileError(f"{where}: a virtual or external dataset refers to other files; refusing it")
    if dataset.dtype.kind != "f":
        raise KerasFileError(f"{where}: dtype {dataset.dtype} is not a floating-point type")
    try:
        arr = np.asarray(dataset[()])
    except Exception as err:  # h5py raises OSError/KeyError/TypeError on damaged data
        raise KerasFileError(f"{where}: cannot read the array ({type(err).__name__}: {err}); "
                             "the file may be truncated or corrupt") from None
    if arr.dtype.kind != "f":
        raise KerasFileError(f"{where}: dtype {arr.dtype} is not a floating-point type")
    return arr


def assign(views: Views, arrays: Sequence[np.ndarray], who: str, source: str) -> None:
    """Copy ``arrays`` into ``views`` after checking the count and every shape."""
    if len(views) != len(arrays):
        raise KerasFileError(
            f"{who} expects {len(views)} weights ({', '.join(n for n, _ in views) or 'none'}) but {source} holds "
            f"{len(arrays)} ({', '.join(str(tuple(a.shape)) for a in arrays) or 'none'})")
    for (name, view), arr in zip(views, arrays):
        if tuple(arr.shape) != tuple(view.shape):
            raise KerasFileError(f"{who}: weight {name!r} has shape {tuple(arr.shape)} in {source}, but the "
                                 f"config gives {tuple(view.shape)} (Keras layout)")
    with torch.no_grad():
        for (_, view), arr in zip(views, arrays):
            view.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(view.dtype))


def _attr_list(obj, key: str) -> List[str]:
    values = obj.attrs.get(key, [])
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def k2_layer_groups(h5) -> Tuple[object, List[str]]:
    """The group holding the layer groups of a Keras 2 file, and the layer names in order."""
    group = h5["model_weights"] if "model_weights" in h5 else h5
    if "layer_names" not in group.attrs:
        raise KerasFileError("the HDF5 file has no 'layer_names' attribute: it is not a Keras 2 / tf.keras "
                             "weights file")
    return group, _attr_list(group, "layer_names")


def read_k2_layer(group, layer_name: str, source: str) -> List[np.ndarray]:
    """The arrays of one layer of a Keras 2 file, in Keras's order."""
    g = safe_get(group, layer_name, source)
    if g is None:
        raise KerasFileError(f"{source}: no weights group for layer {layer_name!r}")
    arrays = []
    for wn in _attr_list(g, "weight_names"):
        d = safe_get(g, wn, f"{source}: layer {layer_name!r}")
        if d is None:
            raise KerasFileError(f"{source}: layer {layer_name!r} lists weight {wn!r}, which is missing")
        arrays.append(_as_array(d, f"{source}: layer {layer_name!r} weight {wn!r}"))
    return arrays


def keras1_convlstm(arrays: List[np.ndarray], layer: ConvLSTM, theano: bool) -> List[np.ndarray]:
    """Keras 1's twelve ConvLSTM2D arrays (``W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o,
    b_o``) as Keras 2's ``[kernel, recurrent_kernel, bias]`` with the gates in order i, f, c, o.

    A ``'th'``-ordered kernel ``(F, C, rows, cols)`` becomes ``(rows, cols, C, F)``; it is recognised
    by its shape, and where a shape fits both orderings (``F == rows`` and ``C == cols``...) by the
    layer's ``data_format`` (Keras 1's ``dim_ordering='th'`` is ``channels_first``). Theano's
    convolution flips the kernel (TensorFlow's does not): a Theano file's kernels are flipped
    spatially, ``w[::-1, ::-1]``."""
    filters = layer.filters
    ksize = tuple(layer.kernel_size)
    rank = layer.rank

    def kernel(w):
        th_shape = w.ndim == rank + 2 and w.shape[0] == filters and tuple(w.shape[2:]) == ksize
        tf_shape = w.ndim == rank + 2 and tuple(w.shape[:rank]) == ksize and w.shape[-1] == filters
        if th_shape and (not tf_shape or layer.data_format == "channels_first"):
            w = np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))
        if theano:
            w = w[(slice(None, None, -1),) * rank]
        return w

    order = (0, 6, 3, 9)  # i, f, c, o from i, c, f, o
    k = np.concatenate([kernel(arrays[j]) for j in order], axis=-1)
    rk = np.concatenate([kernel(arrays[j + 1]) for j in order], axis=-1)
    b = np.concatenate([arrays[j + 2] for j in order], axis=-1)
    return [k, rk, b]


def read_k3_layer(h5, name: str, module: nn.Module, who: str, source: str) -> None:
    """Load one layer from a Keras 3 weights file (``layers/<name>/...``)."""
    base = f"layers/{name}"
    if base not in h5:
        raise KerasFileError(f"{who}: {source} has no group {base!r} (it has: "
                             f"{', '.join(list(h5['layers'].keys())[:30]) if 'layers' in h5 else 'no layers'})")
    for sub, views in keras_structure(module, who):
        path = f"{base}/{sub}/vars" if sub else f"{base}/vars"
        if not views:
            continue
        g = safe_get(h5, path, source)
        if g is None:
            raise KerasFileError(f"{who}: {source} has no group {path!r}")
        keys = sorted(g.keys(), key=lambda k: int(k) if k.isdigit() else 10 ** 9)
        arrays = [_as_array(safe_get(g, k, source), f"{source}: {path}/{k}") for k in keys]
        assign(views, arrays, who, f"{source} ({path})")


def write_k3(h5, model_name: str, layers: Sequence[Tuple[str, nn.Module]], classes: Sequence[str],
             names: Sequence[str]) -> None:
    """Write the Keras 3 ``.weights.h5`` layout for ``layers`` into an open h5py file."""
    root_vars = h5.create_group("vars")
    root_vars.attrs["name"] = model_name
    top = h5.create_group("layers")
    for (lname, module), cls, store in zip(layers, classes, names):
        g = top.create_group(store)
        struct = keras_structure(module, f"layer {lname or store!r}") if module is not None else [("", [])]
        for sub, views in struct:
            grp = g.require_group(f"{sub}/vars" if sub else "vars")
            grp.attrs["name"] = getattr(module, "keras_name", None) or lname or store
            for i, (_, view) in enumerate(views):
                grp.create_dataset(str(i), data=view.detach().cpu().contiguous().numpy().astype(np.float32))
