"""Helpers to build the real Keras 3 layer (torch backend) beside ours and copy weights."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

assert keras.backend.backend() == "torch", "the tests need KERAS_BACKEND=torch"

KERAS_CLASSES = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}


def to_numpy(x):
    if isinstance(x, (list, tuple)):
        return [to_numpy(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def randomize_keras_weights(layer, rng, scale=0.3):
    """Give a built Keras layer random weights (biases included) so every term matters."""
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.get_weights()])


def assert_close(ours, ref, tol=2e-5, what="output"):
    ours, ref = to_numpy(ours), to_numpy(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != Keras {ref.shape}"
    assert np.isfinite(ref).all(), f"{what}: the Keras reference is not finite; the test case is degenerate"
    scale = max(float(np.abs(ref).max()), 1e-6)
    err = float(np.abs(ours - ref).max())
    assert err <= tol * scale, f"{what}: max |ours - keras| = {err:.3g} > {tol} x scale {scale:.3g}"
