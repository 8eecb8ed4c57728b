"""Keras models in, Keras weights out, with TensorFlow and Keras absent.

* :func:`load_model` rebuilds a Keras 2 / tf.keras ``.h5`` or Keras 3 ``.keras`` model as a
  :class:`torch.nn.Module` with the same outputs, in the Keras model's own layout;
* :func:`load_weights` / :func:`save_weights` read tf.keras ``.h5`` and Keras 3 ``.weights.h5``
  weights and write Keras 3 ``.weights.h5``;
* :func:`convert` writes ``model.safetensors`` + ``config.json`` (no pickle) that
  :func:`load_converted` rebuilds, and returns a per-layer :func:`summary`.

Only ``h5py``, ``zipfile`` and ``json`` read the files; nothing in them is executed (``Lambda``
layers and unknown classes are refused, see :data:`SUPPORTED_LAYERS`).
"""
from ._safe import KerasFileError
from .convert import convert, load_converted, summary
from .io import load_model, load_weights, save_weights
from .layers import SUPPORTED_LAYERS
from .model import KerasModel

__all__ = ["load_model", "load_weights", "save_weights", "convert", "load_converted", "summary",
           "KerasModel", "KerasFileError", "SUPPORTED_LAYERS"]
