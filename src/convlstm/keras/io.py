"""``load_model``, ``load_weights`` and ``save_weights``: Keras files in and out, no TensorFlow.

Only ``h5py``, ``zipfile`` and ``json`` read the files; nothing in them is executed.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np
import torch.nn as nn

from .._io import atomic_path
from ..layers import ConvLSTM
from ._safe import KerasFileError, open_h5, parse_json, read_keras_archive, reading
from ._weights import (assign, flat_weights, k2_layer_groups, k3_names, keras1_convlstm, keras_class,
                       read_k2_layer, read_k3_layer, walk_keras_layers, write_k3)
from .model import KerasModel

__all__ = ["load_model", "load_weights", "save_weights", "KerasFileError"]

PathLike = Union[str, "os.PathLike[str]"]


def _text_attr(h5, key: str) -> Optional[str]:
    value = h5.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return str(value)


def _is_archive(path: Path) -> bool:
    return path.suffix == ".keras" or (path.is_file() and zipfile.is_zipfile(path))


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 2


def _read_archive(path: Path):
    members = read_keras_archive(path)
    config = parse_json(members["config.json"], f"{path}: config.json")
    version = "3"
    if "metadata.json" in members:
        meta = parse_json(members["metadata.json"], f"{path}: metadata.json")
        if isinstance(meta, dict) and meta.get("keras_version"):
            version = str(meta["keras_version"])
    return config, version, members["model.weights.h5"]


def _k3_model_layers(model: KerasModel) -> List[Tuple[str, str, Optional[nn.Module]]]:
    """The model's layers as Keras 3 stores them (a Sequential's InputLayer is not one of them)."""
    rows = model.keras_layers()
    if model.model_config.get("class_name") == "Sequential":
        rows = [r for r in rows if r[1] != "InputLayer"]
    return rows


def _k3_classes(rows) -> List[str]:
    """Keras 3's class names (aliases such as ``Convolution2D`` resolved by the built module)."""
    return [c if m is None else (keras_class(m) or c) for _, c, m in rows]


def _load_k3_into_model(model: KerasModel, h5, source: str) -> None:
    rows = _k3_model_layers(model)
    names = k3_names([(n, m) for n, _, m in rows], _k3_classes(rows))
    for (lname, cls, module), store in zip(rows, names):
        if module is None or not flat_weights(module, f"layer {lname!r}"):
            continue
        read_k3_layer(h5, store, module, f"layer {lname!r} ({cls})", source)


def _load_k2_into_model(model: KerasModel, h5, source: str) -> None:
    group, names = k2_layer_groups(h5)
    theano = (_text_attr(h5, "backend") or _text_attr(group, "backend")) == "theano"
    in_file = set(names)
    wanted = set()
    for lname, cls, module in model.keras_layers():
        if module is None:
            continue
        views = flat_weights(module, f"layer {lname!r}")
        if not views:
            continue
        wanted.add(lname)
        if lname not in in_file:
            raise KerasFileError(f"{source}: no weights for layer {lname!r} ({cls}) in the file")
        arrays = read_k2_layer(group, lname, source)
        if isinstance(module, ConvLSTM) and len(arrays) == 12:
            arrays = keras1_convlstm(arrays, module, theano)
        assign(views, arrays, f"layer {lname!r} ({cls})", source)
    for lname in names:
        if lname not in wanted and lname in group and len(group[lname].attrs.get("weight_names", [])):
            raise KerasFileError(f"{source}: the file holds weights for layer {lname!r}, which the model config "
                                 "does not give weights")


def load_model(path: PathLike) -> KerasModel:
    """Rebuild a Keras model file as a :class:`torch.nn.Module` (in eval mode).

    Args:
        path: a Keras 2 / tf.keras full-model HDF5 file (``model.save('m.h5')``: ``model_config``
            and ``model_weights``) or a Keras 3 ``.keras`` archive.

    Returns:
        a :class:`KerasModel` taking the model's inputs in the Keras layout (``channels_last``
        unless the layers say otherwise) and returning its output (a tuple for several).
        ``'hard_sigmoid'`` in a Keras 2 file runs with the 0.2 slope, in a Keras 3 file as Keras 3.

    Raises:
        KerasFileError: unsupported layers (named, with the list of supported ones), malformed,
            truncated or hostile files, weights that do not match the config.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if _is_archive(path):
        config, version, weights = _read_archive(path)
        with reading(path, h5=False):
            model = KerasModel(config, keras_version=version)
        with reading(f"{path} (model.weights.h5)", name=path), open_h5(weights, f"{path}: model.weights.h5") as h5:
            _load_k3_into_model(model, h5, f"{path} (model.weights.h5)")
        return model.eval()
    with reading(path), open_h5(path) as h5:
        raw = h5.attrs.get("model_config")
        if raw is None:
            raise KerasFileError(f"{path}: no 'model_config' attribute: this is a weights-only file (or not a Keras "
                                 "model); build the model and use convlstm.keras.load_weights(module, path)")
        config = parse_json(raw if isinstance(raw, (bytes, str)) else bytes(np.asarray(raw).item()),
                            f"{path}: model_config")
        version = _text_attr(h5, "keras_version") or "2"
    with reading(path, h5=False):  # errors of the model's own code are not the file's
        model = KerasModel(config, keras_version=version)
    with reading(path), open_h5(path) as h5:
        if "model_weights" not in h5:
            raise KerasFileError(f"{path}: the file has a model config but no 'model_weights' group")
        _load_k2_into_model(model, h5, str(path))
    return model.eval()


def load_weights(module: nn.Module, path: PathLike) -> nn.Module:
    """Load a weights-only Keras file into a module built from the library's layers.

    Args:
        module: a :class:`KerasModel`, or any module whose Keras-equivalent layers
            (:class:`convlstm.ConvLSTM2D` etc., :class:`convlstm.Bidirectional`, the layers of
            :mod:`convlstm.keras.layers`, ``nn.Conv*d``, ``nn.ConvTranspose*d``, ``nn.Linear``,
            ``nn.BatchNorm*d``) appear in the Keras model's layer order.
        path: a tf.keras ``save_weights('w.h5')`` file (layers matched in order, as Keras's
            ``by_name=False``), a Keras 3 ``.weights.h5`` (matched by Keras 3's per-class names),
            or a ``.keras`` archive (its weights).

    Every count and shape is checked first; a mismatch names the layer on both sides. A weights
    file carries no activations: build the module with ``recurrent_activation='keras2_hard_sigmoid'``
    for weights trained in Keras 2 with its default.

    Returns:
        ``module``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    layers = walk_keras_layers(module)
    if not layers:
        raise KerasFileError(f"{type(module).__name__} holds no layer with a Keras equivalent")
    if _is_archive(path):
        _, _, weights = _read_archive(path)
        h5_source, source = weights, f"{path} (model.weights.h5)"
    else:
        h5_source, source = path, str(path)
    with reading(source, name=path), open_h5(h5_source, source) as h5:
        group = h5["model_weights"] if "model_weights" in h5 else h5
        if "layer_names" in group.attrs:
            _load_k2_in_order(layers, h5, source)
        elif "layers" in h5:
            _load_k3_by_names(module, layers, h5, source)
        else:
            raise KerasFileError(f"{source}: neither a Keras 2 (layer_names) nor a Keras 3 (layers/) weights file")
    return module


def _load_k2_in_order(layers, h5, source: str) -> None:
    group, names = k2_layer_groups(h5)
    theano = (_text_attr(h5, "backend") or _text_attr(group, "backend")) == "theano"
    file_layers = [n for n in names if n in group and len(group[n].attrs.get("weight_names", []))]
    mod_layers = [(n, m, flat_weights(m, f"module layer {n!r}")) for n, m in layers]
    mod_layers = [t for t in mod_layers if t[2]]
    if len(file_layers) != len(mod_layers):
        raise KerasFileError(
            f"{source} holds weights for {len(file_layers)} layers ({', '.join(file_layers)}), the module has "
            f"{len(mod_layers)} layers with weights ({', '.join(f'{n} ({keras_class(m)})' for n, m, _ in mod_layers)})")
    for fname, (mname, m, views) in zip(file_layers, mod_layers):
        arrays = read_k2_layer(group, fname, source)
        if isinstance(m, ConvLSTM) and len(arrays) == 12:
            arrays = keras1_convlstm(arrays, m, theano)
        assign(views, arrays, f"module layer {mname!r} ({keras_class(m)}) <- file layer {fname!r}", source)


def _load_k3_by_names(module, layers, h5, source: str) -> None:
    if isinstance(module, KerasModel):
        rows = [(n, m) for n, _, m in _k3_model_layers(module)]
        classes = _k3_classes(_k3_model_layers(module))
    else:
        rows, classes = layers, [keras_class(m) for _, m in layers]
    names = k3_names(rows, classes)
    used = set()
    for (lname, m), store, cls in zip(rows, names, classes):
        if m is None or not flat_weights(m, f"module layer {lname!r}"):
            continue
        read_k3_layer(h5, store, m, f"module layer {lname!r} ({cls}) <- file layers/{store}", source)
        used.add(store)
    extra = []
    for key in h5["layers"].keys():
        if key in used:
            continue
        found = []
        h5["layers"][key].visititems(lambda n, o: found.append(n) if hasattr(o, "shape") else None)
        if found:
            extra.append(key)
    if extra:
        raise KerasFileError(f"{source} holds weights for layers/{', layers/'.join(extra)}, which match no layer of the "
                             f"module (its layers: {', '.join(names)})")


def save_weights(module: nn.Module, path: PathLike) -> Path:
    """Write ``module``'s weights as a Keras 3 ``.weights.h5`` file (atomically).

    Keras 3's ``model.load_weights(path)`` loads it into the equivalent Keras model: the same
    layers in the same order (Keras 3 matches them by class and position).

    Args:
        module: a :class:`KerasModel` or a module of Keras-equivalent layers (see :func:`load_weights`).
        path: must end in ``.weights.h5``, as Keras 3 requires.
    """
    import h5py

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"save_weights: Keras 3 needs a file name ending in '.weights.h5', got {path.name!r}")
    if isinstance(module, KerasModel):
        rows = _k3_model_layers(module)
        layers = [(n, m) for n, _, m in rows]
        classes = _k3_classes(rows)
        model_name = module.name
    else:
        layers = walk_keras_layers(module)
        classes = [keras_class(m) for _, m in layers]
        model_name = "sequential"
    if not layers:
        raise ValueError(f"save_weights: {type(module).__name__} holds no layer with a Keras equivalent")
    names = k3_names(layers, classes)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            write_k3(h5, model_name, layers, classes, names)
    return path
