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


def assert_weight_grads_close(ref, ours, rank, tol=1e-4):
    """After a backward through both layers: the gradients of Keras's ``kernel``, ``recurrent_kernel``
    and ``bias`` against ours, converted to Keras's layout."""
    import convlstm

    ref_grads = {v.path.split("/")[-1]: to_numpy(v.value.grad) for v in ref.trainable_variables}
    cell = ours.cell
    ours_grads = {"kernel": convlstm._ops.torch_to_keras_kernel(cell.weight_ih.grad, rank),
                  "recurrent_kernel": convlstm._ops.torch_to_keras_kernel(cell.weight_hh.grad, rank)}
    if cell.bias is not None:
        ours_grads["bias"] = cell.bias.grad
    assert set(ref_grads) == set(ours_grads)
    for name in ours_grads:
        assert_close(ours_grads[name], ref_grads[name], tol=tol, what=f"d/d{name}")
