"""The layer's API beyond the numbers: arguments, errors, configs, states, dtypes, the cell, peepholes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convlstm
from _keras_ref import keras, to_numpy


# --------------------------------------------------------------------------- bad arguments
BAD_ARGS = [
    (dict(filters=0, kernel_size=3), ValueError, r"filters must be a positive int \(>= 1\), got 0"),
    (dict(filters=2.5, kernel_size=3), TypeError, r"filters must be a positive int, got 2.5"),
    (dict(filters=2, kernel_size=(3, 3, 3)), ValueError, r"kernel_size must be an int or a tuple of 2 ints, got \(3, 3, 3\)"),
    (dict(filters=2, kernel_size=0), ValueError, r"kernel_size values must be >= 1, got 0"),
    (dict(filters=2, kernel_size=3, padding="full"), ValueError, r"padding='full' is not allowed; allowed: 'valid', 'same'"),
    (dict(filters=2, kernel_size=3, padding="causal"), ValueError, r"padding='causal'.*not supported by ConvLSTM"),
    (dict(filters=2, kernel_size=3, data_format="NHWC"), ValueError, r"data_format='NHWC' is not allowed; allowed: 'channels_last', 'channels_first'"),
    (dict(filters=2, kernel_size=3, strides=2, dilation_rate=2), ValueError, r"strides > 1 cannot be combined with dilation_rate > 1"),
    (dict(filters=2, kernel_size=3, dropout=1.5), ValueError, r"dropout must be in \[0, 1\], got 1.5"),
    (dict(filters=2, kernel_size=3, recurrent_dropout=-0.1), ValueError, r"recurrent_dropout must be in \[0, 1\], got -0.1"),
    (dict(filters=2, kernel_size=3, activation="tanhh"), ValueError, r"activation='tanhh' is not a known activation; allowed: .*tanh"),
    (dict(filters=2, kernel_size=3, recurrent_activation=3), TypeError, r"recurrent_activation must be an activation name"),
    (dict(filters=2, kernel_size=3, kernel_initializer="glorot"), ValueError, r"kernel_initializer='glorot' is not a known initializer; allowed: .*glorot_uniform"),
    (dict(filters=2, kernel_size=3, bias_regularizer="l3"), ValueError, r"bias_regularizer='l3' is not a known regularizer; allowed: l1, l1_l2, l2"),
    (dict(filters=2, kernel_size=3, kernel_constraint="maxnorm"), ValueError, r"kernel_constraint='maxnorm' is not a known constraint; allowed: .*max_norm"),
    (dict(filters=2, kernel_size=3, seed="a"), TypeError, r"seed must be an int or None"),
    (dict(filters=2, kernel_size=3, in_channels=0), ValueError, r"in_channels must be a positive int"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_ARGS, ids=[m[:30] for _, _, m in BAD_ARGS])
def test_bad_arguments_fail_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        convlstm.ConvLSTM2D(**kwargs)


def test_positional_order_follows_keras3_and_the_rest_is_keyword_only():
    layer = convlstm.ConvLSTM2D(4, 3, 1, "same", "channels_first", 1, "relu", "hard_sigmoid", False)
    assert (layer.filters, layer.padding, layer.data_format, layer.use_bias) == (4, "same", "channels_first", False)
    with pytest.raises(TypeError):
        convlstm.ConvLSTM2D(4, 3, 1, "same", None, 1, "tanh", "sigmoid", True, "glorot_uniform", "orthogonal",
                            "zeros", True, None, None, None, None, None, None, None, 0.5)


# --------------------------------------------------------------------------- bad inputs
def test_wrong_rank():
    with pytest.raises(ValueError, match=r"expected ndim=5 input \(batch, time, rows, cols, channels\), got shape \(2, 3, 4, 4\)"):
        convlstm.ConvLSTM2D(2, 3)(torch.zeros(2, 3, 4, 4))


def test_wrong_channel_count():
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=3)
    with pytest.raises(ValueError, match="was built for 3 input channels, got 4"):
        layer(torch.zeros(1, 2, 5, 5, 4))
    first = convlstm.ConvLSTM2D(2, 3, data_format="channels_first")
    first(torch.zeros(1, 2, 3, 5, 5))
    with pytest.raises(ValueError, match="was built for 3 input channels, got 5"):
        first(torch.zeros(1, 2, 5, 5, 5))


def test_spatial_size_too_small_for_valid_padding():
    with pytest.raises(ValueError, match=r"spatial size \(2, 5\) is too small for kernel_size=\(3, 3\).*padding='same'"):
        convlstm.ConvLSTM2D(2, 3)(torch.zeros(1, 2, 2, 5, 1))


def test_initial_state_of_wrong_shape():
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=1)
    x = torch.zeros(2, 3, 6, 6, 1)
    with pytest.raises(ValueError, match=r"initial_state h0 has shape \(2, 6, 6, 2\), expected \(2, 4, 4, 2\)"):
        layer(x, initial_state=[torch.zeros(2, 6, 6, 2), torch.zeros(2, 4, 4, 2)])
    with pytest.raises(ValueError, match=r"initial_state must be a list \[h0, c0\]"):
        layer(x, initial_state=[torch.zeros(2, 4, 4, 2)])


def test_mask_of_wrong_shape():
    layer = convlstm.ConvLSTM1D(2, 3, in_channels=1)
    with pytest.raises(ValueError, match=r"mask must have shape \(batch, time\) = \(2, 3\), got \(2, 4\)"):
        layer(torch.zeros(2, 3, 6, 1), mask=torch.ones(2, 4, dtype=torch.bool))


def test_stateful_batch_change_says_what_to_do():
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=1, stateful=True)
    layer(torch.zeros(4, 2, 5, 5, 1))
    with pytest.raises(ValueError, match=r"holds states for batch size 4, got a batch of 3.*multiple of the batch "
                                         r"size.*drop_last=True"):
        layer(torch.zeros(3, 2, 5, 5, 1))
    layer.reset_states()
    layer(torch.zeros(3, 2, 5, 5, 1))  # after a reset the batch size may change


def test_reset_states_on_a_stateless_layer():
    with pytest.raises(AttributeError, match="not stateful"):
        convlstm.ConvLSTM2D(2, 3).reset_states()


# --------------------------------------------------------------------------- states
def test_stateful_equals_one_long_sequence_and_reset_states_with_values():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 5, 1)
    plain = convlstm.ConvLSTM2D(3, 3, padding="same", in_channels=1, return_state=True)
    stream = convlstm.ConvLSTM2D(3, 3, padding="same", in_channels=1, return_state=True, stateful=True)
    stream.set_weights(plain.get_weights())
    out, h, c = plain(x)
    stream(x[:, :2])
    stream(x[:, 2:4])
    out2, h2, c2 = stream(x[:, 4:])
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(c2, c)
    torch.testing.assert_close(stream.states[0], h)
    # reset_states([h, c]) is the same as initial_state=[h, c]
    h0, c0 = torch.randn(2, 5, 5, 3), torch.randn(2, 5, 5, 3)
    stream.reset_states([h0, c0])
    torch.testing.assert_close(stream(x)[0], plain(x, initial_state=[h0, c0])[0])


def test_go_backwards_output_order():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 6, 2)
    fwd = convlstm.ConvLSTM1D(2, 3, in_channels=2, return_sequences=True)
    back = convlstm.ConvLSTM1D(2, 3, in_channels=2, return_sequences=True, go_backwards=True)
    back.set_weights(fwd.get_weights())
    # processing order: output[:, 0] belongs to the last input step
    torch.testing.assert_close(back(x), fwd(torch.flip(x, dims=(1,))))


def test_mask_keeps_state_and_repeats_output():
    torch.manual_seed(2)
    layer = convlstm.ConvLSTM1D(2, 3, padding="same", in_channels=1, return_sequences=True, return_state=True)
    x = torch.randn(1, 4, 5, 1)
    mask = torch.tensor([[True, False, True, False]])
    seq, h, c = layer(x, mask=mask)
    ref_seq, ref_h, ref_c = layer(x[:, [0, 2]])
    torch.testing.assert_close(seq[:, 1], seq[:, 0])
    torch.testing.assert_close(seq[:, 3], ref_seq[:, 1])
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)


# --------------------------------------------------------------------------- configs, weights, state_dict
def test_config_has_keras_keys_and_round_trips_through_keras():
    ours = convlstm.ConvLSTM2D(4, (3, 2), strides=(2, 1), padding="same", activation="relu",
                               kernel_regularizer="l2", kernel_constraint="max_norm", dropout=0.2, seed=3,
                               return_sequences=True)
    cfg = ours.get_config()
    ref = keras.layers.ConvLSTM2D(4, (3, 2)).get_config()
    missing = set(ref) - set(cfg) - {"name", "trainable", "dtype"}
    assert not missing, missing
    again = convlstm.ConvLSTM2D.from_config(cfg)
    assert again.get_config() == cfg
    # a Keras layer config builds an equivalent layer
    keras_layer = keras.layers.ConvLSTM2D(3, 2, padding="same", recurrent_activation="hard_sigmoid",
                                          return_sequences=True, go_backwards=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 5, 2)).astype("float32")
    r = keras_layer(torch.from_numpy(x))
    built = convlstm.ConvLSTM2D.from_config(keras_layer.get_config())
    built.set_weights(keras_layer.get_weights())
    np.testing.assert_allclose(to_numpy(built(x)), to_numpy(r), atol=2e-6)


def test_lazy_build_state_dict_and_set_weights_errors():
    lazy = convlstm.ConvLSTM2D(3, 3)
    assert not lazy.built and lazy.in_channels is None
    with pytest.raises(RuntimeError, match="no weights yet; pass in_channels="):
        lazy.get_weights()
    eager = convlstm.ConvLSTM2D(3, 3, in_channels=2)
    assert sorted(eager.state_dict()) == ["cell.bias", "cell.weight_hh", "cell.weight_ih"]
    lazy.load_state_dict(eager.state_dict())
    x = torch.randn(1, 2, 5, 5, 2)
    torch.testing.assert_close(lazy(x), eager(x))
    with pytest.raises(ValueError, match=r"set_weights expected 3 arrays \(kernel, recurrent_kernel, bias\), got 2"):
        eager.set_weights(eager.get_weights()[:2])
    w = eager.get_weights()
    w[1] = np.zeros((3, 3, 3, 8))
    with pytest.raises(ValueError, match=r"recurrent_kernel has shape \(3, 3, 3, 8\), the layer expects \(3, 3, 3, 12\)"):
        eager.set_weights(w)


def test_extra_repr():
    text = repr(convlstm.ConvLSTM2D(8, 3, padding="same", return_sequences=True, in_channels=2))
    assert "in_channels=2, filters=8, kernel_size=(3, 3)" in text and "return_sequences=True" in text


# --------------------------------------------------------------------------- dtypes, inputs
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_input_dtypes_are_cast_to_the_layer_dtype(dtype):
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=1)
    x = torch.randn(1, 2, 5, 5, 1)
    out = layer(x.to(dtype))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, layer(x.to(dtype).float()))


def _explicit_convlstm_2d(layer, x):
    r"""Keras's step written out in float64 with plain ``F.conv2d`` (``'same'``, 3x3, stride 1):
    :math:`[i, f, g, o] = W_x \star x_t + b + W_h \star h_{t-1}`, sigmoid gates, tanh candidate,
    :math:`c_t = f c_{t-1} + i g`, :math:`h_t = o \tanh c_t`; ``x`` is ``(B, T, rows, cols, C)``,
    the result the last ``h`` as ``(B, rows, cols, F)``."""
    w_x, w_h, b = (p.detach().double() for p in (layer.cell.weight_ih, layer.cell.weight_hh, layer.cell.bias))
    x = x.double().permute(0, 1, 4, 2, 3)
    h = torch.zeros(x.shape[0], layer.filters, *x.shape[3:], dtype=torch.float64)
    c = torch.zeros_like(h)
    for t in range(x.shape[1]):
        i, f, g, o = (F.conv2d(x[:, t], w_x, b, padding=1) + F.conv2d(h, w_h, padding=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return h.permute(0, 2, 3, 1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.bfloat16, 2e-2)])
def test_layer_in_other_precisions(dtype, tol):
    """float64 agrees with the step written out in float64 to 1e-12 (only float64 rounding is
    left); bfloat16 to 2e-2 (its 8-bit mantissa)."""
    torch.manual_seed(0)
    layer = convlstm.ConvLSTM2D(2, 3, padding="same", in_channels=2)
    with torch.no_grad():
        layer.cell.bias.copy_(torch.linspace(-0.5, 0.5, layer.cell.bias.numel()))
    x = torch.randn(2, 3, 6, 6, 2)
    ref = _explicit_convlstm_2d(layer, x)
    low = layer.to(dtype)
    out = low(x.to(dtype))
    assert out.dtype == dtype
    assert float((out.detach().double() - ref).abs().max()) < tol


def test_numpy_input_and_autocast():
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=1)
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 5, 1))
    out = layer(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 3, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(x)
    assert (low.float() - out).abs().max() < 3e-2


# --------------------------------------------------------------------------- the cell, peepholes
def test_cell_in_a_custom_loop_equals_the_layer():
    torch.manual_seed(3)
    layer = convlstm.ConvLSTM2D(3, 3, padding="same", in_channels=2, return_sequences=True)
    cell = convlstm.ConvLSTMCell(2, in_channels=2, filters=3, kernel_size=3, padding="same")
    cell.load_state_dict(layer.cell.state_dict())
    x = torch.randn(2, 4, 6, 6, 2)
    state, outs = None, []
    for t in range(4):
        h, state = cell(x[:, t], state)
        outs.append(h)
    torch.testing.assert_close(torch.stack(outs, 1), layer(x))


def _peephole_reference(x, cell):
    """Shi et al. 2015's equations written gate by gate with one conv per gate (channels first)."""
    F_ = cell.filters
    w_x, w_h, b = cell.weight_ih, cell.weight_hh, cell.bias
    B, T = x.shape[:2]
    h = torch.zeros(B, F_, *x.shape[3:])
    c = torch.zeros_like(h)
    pi, pf, po = (p.view(1, F_, 1, 1) for p in (cell.peephole_i, cell.peephole_f, cell.peephole_o))
    for t in range(T):
        def gate(g):
            sl = slice(g * F_, (g + 1) * F_)
            return F.conv2d(x[:, t], w_x[sl], b[sl], padding=1) + F.conv2d(h, w_h[sl], padding=1)
        i = torch.sigmoid(gate(0) + pi * c)
        f = torch.sigmoid(gate(1) + pf * c)
        c = f * c + i * torch.tanh(gate(2))
        o = torch.sigmoid(gate(3) + po * c)
        h = o * torch.tanh(c)
    return h


def test_peepholes_follow_shi_2015_and_train():
    torch.manual_seed(4)
    layer = convlstm.ConvLSTM2D(3, 3, padding="same", in_channels=2, data_format="channels_first", peephole=True)
    names = [n for n, _ in layer.named_parameters()]
    assert {"cell.peephole_i", "cell.peephole_f", "cell.peephole_o"} <= set(names)
    with torch.no_grad():
        for p in (layer.cell.peephole_i, layer.cell.peephole_f, layer.cell.peephole_o):
            p.normal_()
        layer.cell.bias.normal_()
    x = torch.randn(2, 4, 2, 6, 6)
    torch.testing.assert_close(layer(x), _peephole_reference(x, layer.cell), rtol=1e-5, atol=1e-6)
    layer(x).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in (layer.cell.peephole_i, layer.cell.peephole_f, layer.cell.peephole_o))
    assert len(layer.get_weights()) == 6


def _numpy_input_conv(x, kernel, strides):
    """Valid cross-correlation by explicit loops (float64): x (B, H, W, C), kernel (kh, kw, C, O)."""
    kh, kw = kernel.shape[:2]
    sh, sw = strides
    B, H, W, _ = x.shape
    out = np.zeros((B, (H - kh) // sh + 1, (W - kw) // sw + 1, kernel.shape[-1]))
    for r in range(out.shape[1]):
        for c in range(out.shape[2]):
            patch = x[:, r * sh:r * sh + kh, c * sw:c * sw + kw, :].astype(np.float64)
            out[:, r, c] = np.einsum("bhwc,hwco->bo", patch, kernel.astype(np.float64))
    return out


@pytest.mark.parametrize("shape,kernel", [((5, 4), (2, 3)), ((4, 4), (3, 3)), ((6, 3), (1, 2)), ((3, 3), (2, 3))])
def test_single_channel_strided_input_conv_against_loops(shape, kernel):
    """torch 2.13's (and TensorFlow's) float32 oneDNN convolution returns wrong numbers for a
    single-channel channels_last input with strides (1, 2); the layer must not."""
    rng = np.random.default_rng(0)
    layer = convlstm.ConvLSTM2D(3, kernel, strides=(1, 2), in_channels=1, activation=None,
                                recurrent_activation="linear", use_bias=False)
    x = rng.normal(size=(3, 1) + shape + (1,)).astype("float32")
    k = layer.get_weights()[0]
    gates = _numpy_input_conv(x[:, 0], k, (1, 2))
    i, f, c, o = np.split(gates, 4, axis=-1)
    expected = o * (i * c)  # one step from zero state, linear activations
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
