"""Initializers: bounds, spreads and orthogonality by Keras's fan rules (the fused 4F counts)."""
import math

import numpy as np
import pytest
import torch

import convlstm
from convlstm import initializers as I
from _keras_ref import keras, to_numpy


def test_glorot_uniform_on_the_kernel_uses_the_fused_fan_out():
    layer = convlstm.ConvLSTM2D(16, (3, 3), in_channels=8)
    kernel = layer.get_weights()[0]
    assert kernel.shape == (3, 3, 8, 64)
    limit = math.sqrt(6 / (9 * 8 + 9 * 64))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.97 * limit
    assert abs(kernel.std() - limit / math.sqrt(3)) < 0.05 * limit / math.sqrt(3)


def test_fans_equal_keras():
    from keras.src.initializers.random_initializers import compute_fans
    for shape in [(3, 3, 8, 64), (5, 16, 4), (2, 3, 3, 1, 8), (7, 9), (5,)]:
        assert I.compute_fans(shape) == tuple(float(f) for f in compute_fans(shape))


@pytest.mark.parametrize("rank,k,filters", [(1, 3, 4), (2, 3, 8), (2, 1, 4), (3, 2, 3)])
def test_orthogonal_recurrent_kernel_on_the_flattened_reshape(rank, k, filters):
    layer = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}[rank](
        filters, k, in_channels=2)
    rk = layer.get_weights()[1].astype(np.float64)
    rows, cols = k ** rank * filters, 4 * filters
    m = rk.reshape(rows, cols)
    if rows >= cols:
        np.testing.assert_allclose(m.T @ m, np.eye(cols), atol=1e-5)
    else:  # a 1x kernel: 4F columns cannot be orthonormal in F rows; Keras makes the rows so
        np.testing.assert_allclose(m @ m.T, np.eye(rows), atol=1e-5)


def test_unit_forget_bias_sets_exactly_one():
    layer = convlstm.ConvLSTM2D(5, 3, in_channels=2, bias_initializer="random_normal")
    b = layer.get_weights()[2]
    assert (b[5:10] == 1.0).all()
    assert (b[:5] != 1.0).all() and (b[10:] != 1.0).all()
    off = convlstm.ConvLSTM2D(5, 3, in_channels=2, unit_forget_bias=False)
    assert (off.get_weights()[2] == 0).all()


SPREADS = [  # name, expected std of the (untruncated-equivalent) distribution for shape (3, 3, 20, 80)
    ("glorot_normal", math.sqrt(2 / (180 + 720))),
    ("he_normal", math.sqrt(2 / 180)),
    ("lecun_normal", math.sqrt(1 / 180)),
    ("he_uniform", math.sqrt(6 / 180) / math.sqrt(3)),
    ("lecun_uniform", math.sqrt(3 / 180) / math.sqrt(3)),
    ("random_normal", 0.05),
    ("random_uniform", 0.05 / math.sqrt(3)),
]


@pytest.mark.parametrize("name,std", SPREADS)
def test_initializer_spreads(name, std):
    w = to_numpy(I.get(name)((3, 3, 20, 80)))
    assert abs(w.std() - std) < 0.03 * std
    assert abs(w.mean()) < 0.05 * std
    ref = to_numpy(keras.initializers.get(name)((3, 3, 20, 80)))
    assert abs(w.std() - ref.std()) < 0.04 * std  # the same distribution as Keras's


def test_truncated_normal_is_truncated_at_two_stddev():
    w = to_numpy(I.get("truncated_normal")((200, 200)))
    assert np.abs(w).max() <= 0.1 + 1e-7
    hn = to_numpy(I.get("he_normal")((3, 3, 20, 80)))
    assert np.abs(hn).max() <= 2 * math.sqrt(2 / 180) / 0.87962566103423978 + 1e-7


def test_constant_ones_zeros_identity_and_seeds():
    assert (to_numpy(I.get({"class_name": "Constant", "config": {"value": 0.5}})((2, 3))) == 0.5).all()
    assert (to_numpy(I.get("ones")((4,))) == 1).all() and (to_numpy(I.get("zeros")((4,))) == 0).all()
    np.testing.assert_array_equal(to_numpy(I.get("identity")((3, 3))), np.eye(3))
    a = I.GlorotUniform(seed=3)((3, 3, 2, 8))
    b = I.GlorotUniform(seed=3)((3, 3, 2, 8))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="identity.*only applies to 2D"):
        convlstm.ConvLSTM2D(2, 3, in_channels=1, recurrent_initializer="identity")


def test_callable_initializer_in_keras_layout():
    seen = []

    def init(shape, dtype=None):
        seen.append(shape)
        return np.full(shape, 0.25)

    layer = convlstm.ConvLSTM2D(3, (2, 3), in_channels=4, kernel_initializer=init)
    assert seen == [(2, 3, 4, 12)]
    assert (layer.get_weights()[0] == 0.25).all()
