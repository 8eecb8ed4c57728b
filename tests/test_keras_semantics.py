"""Keras's own reference values, Bidirectional, regularizers, constraints and dropout compared
with real Keras 3 (torch backend)."""
import numpy as np
import pytest
import torch

import convlstm
from convlstm import initializers as I
from _keras_ref import assert_close, keras, randomize_keras_weights, to_numpy

CONST = dict(kernel_initializer=I.Constant(0.01), recurrent_initializer=I.Constant(0.02),
             bias_initializer=I.Constant(0.03))

# Values from Keras 3's own conv_lstm tests (keras/src/layers/rnn/conv_lstm*_test.py).
REF_2D = [[[[0.48694518, 0.48694518], [0.50237733, 0.50237733]], [[0.5461202, 0.5461202], [0.5598283, 0.5598283]]],
          [[[0.8661607, 0.8661607], [0.86909103, 0.86909103]], [[0.8774414, 0.8774414], [0.8800861, 0.8800861]]]]
REF_1D = [[[0.40807986, 0.40807986], [0.46421072, 0.46421072]], [[0.80933154, 0.80933154], [0.8233646, 0.8233646]]]
# Not from Keras's tests: REF_2D's case run with Keras 2's default recurrent activation, the hard
# sigmoid clip(0.2 x + 0.5, 0, 1) (values recorded from a Keras 2 run in the project's notes);
# test_keras2_reference_values_equal_the_step_written_out recomputes them independently.
REF_2D_K2 = [0.4531298, 0.4531298, 0.46823803, 0.46823803, 0.5116793, 0.5116793, 0.5255023, 0.5255023,
             0.8958275, 0.8958275, 0.900992, 0.900992, 0.9163048, 0.9163048, 0.9213548, 0.9213548]


def test_keras_reference_values_2d():
    layer = convlstm.ConvLSTM2D(2, 3, **CONST)
    x = torch.arange(480, dtype=torch.float32).reshape(2, 3, 4, 4, 5) / 100
    np.testing.assert_allclose(to_numpy(layer(x)), REF_2D, rtol=1e-6, atol=1e-7)


def test_keras_reference_values_1d():
    layer = convlstm.ConvLSTM1D(2, 3, **CONST)
    x = torch.arange(120, dtype=torch.float32).reshape(2, 3, 4, 5) / 10
    np.testing.assert_allclose(to_numpy(layer(x)), REF_1D, rtol=1e-6, atol=1e-7)


def test_keras2_hard_sigmoid_reference_values():
    layer = convlstm.ConvLSTM2D(2, 3, recurrent_activation="keras2_hard_sigmoid", **CONST)
    x = torch.arange(480, dtype=torch.float32).reshape(2, 3, 4, 4, 5) / 100
    np.testing.assert_allclose(to_numpy(layer(x)).ravel(), REF_2D_K2, rtol=1e-6, atol=1e-7)
    # Keras 3's hard_sigmoid is a different function: the same weights give other numbers.
    k3 = convlstm.ConvLSTM2D(2, 3, recurrent_activation="hard_sigmoid", **CONST)
    assert np.abs(to_numpy(k3(x)).ravel() - REF_2D_K2).max() > 1e-3


def test_keras2_reference_values_equal_the_step_written_out():
    """REF_2D_K2 from Keras 2's step in float64 numpy, constant weights: every input-kernel entry
    0.01, every recurrent-kernel entry 0.02, biases 0.03 except the forget gate's 1.0
    (``unit_forget_bias``); 'valid' 3x3 on 4x4 inputs gives a 2x2 state; the recurrent convolution
    is 'same' (zero padding)."""
    x = np.arange(480, dtype=np.float64).reshape(2, 3, 4, 4, 5) / 100
    hs = lambda z: np.clip(0.2 * z + 0.5, 0, 1)  # noqa: E731  Keras 2's hard sigmoid
    bias = {"i": 0.03, "f": 1.0, "c": 0.03, "o": 0.03}
    out = np.zeros((2, 2, 2, 2))
    for b in range(2):
        h = np.zeros((2, 2, 2))
        c = np.zeros((2, 2, 2))
        for t in range(3):
            hp = np.pad(h, ((1, 1), (1, 1), (0, 0)))
            z = {}
            for g in "ifco":  # every filter of a gate sees the same sums: all weights are equal
                z[g] = np.array([[0.01 * x[b, t, r:r + 3, q:q + 3].sum() + 0.02 * hp[r:r + 3, q:q + 3].sum() + bias[g]
                                  for q in range(2)] for r in range(2)])[..., None].repeat(2, axis=-1)
            c = hs(z["f"]) * c + hs(z["i"]) * np.tanh(z["c"])
            h = hs(z["o"]) * np.tanh(c)
        out[b] = h
    np.testing.assert_allclose(out.ravel(), REF_2D_K2, rtol=2e-7, atol=0)


def test_hard_sigmoids_are_the_documented_functions():
    x = torch.linspace(-6, 6, 241)
    k2 = convlstm.activations.get("keras2_hard_sigmoid")(x)
    np.testing.assert_allclose(to_numpy(k2), np.clip(0.2 * x.numpy() + 0.5, 0, 1), atol=1e-7)
    k3 = convlstm.activations.get("hard_sigmoid")(x)
    np.testing.assert_allclose(to_numpy(k3), to_numpy(keras.activations.hard_sigmoid(x)), atol=1e-7)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "elu", "selu", "softplus", "softsign", "swish",
                                  "gelu", "exponential", "linear", "hard_silu", "relu6", "mish", "leaky_relu",
                                  "log_sigmoid", "celu", "hard_tanh", "squareplus", "tanh_shrink"])
def test_activation_names_equal_keras(name):
    x = torch.linspace(-4, 4, 161)
    np.testing.assert_allclose(to_numpy(convlstm.activations.get(name)(x)),
                               to_numpy(keras.activations.get(name)(x)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_matches_keras(merge_mode, return_sequences):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 5, 5, 2)).astype("float32")
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    kwargs = dict(filters=3, kernel_size=3, padding="same", return_sequences=return_sequences)
    ref = keras.layers.Bidirectional(keras.layers.ConvLSTM2D(**kwargs), merge_mode=merge_mode)
    ref(torch.from_numpy(x))
    randomize_keras_weights(ref, rng)
    ours = convlstm.Bidirectional(convlstm.ConvLSTM2D(**kwargs, in_channels=2), merge_mode=merge_mode)
    w = ref.get_weights()
    ours.forward_layer.set_weights(w[:3])
    ours.backward_layer.set_weights(w[3:])
    for m in (None, mask):
        r = ref(torch.from_numpy(x), mask=None if m is None else torch.from_numpy(m))
        o = ours(x, mask=m)
        if merge_mode is None:
            for a, b in zip(o, r):
                assert_close(a, b)
        else:
            assert_close(o, r)


def test_bidirectional_return_state_matches_keras():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 6, 2)).astype("float32")
    kwargs = dict(filters=2, kernel_size=2, padding="same", return_sequences=True, return_state=True)
    ref = keras.layers.Bidirectional(keras.layers.ConvLSTM1D(**kwargs))
    ref(torch.from_numpy(x))
    randomize_keras_weights(ref, rng)
    ours = convlstm.Bidirectional(convlstm.ConvLSTM1D(**kwargs, in_channels=2))
    w = ref.get_weights()
    ours.forward_layer.set_weights(w[:3])
    ours.backward_layer.set_weights(w[3:])
    r, o = ref(torch.from_numpy(x)), ours(x)
    assert len(o) == len(r) == 5
    for a, b in zip(o, r):
        assert_close(a, b)


# --------------------------------------------------------------------------- regularizers
def test_regularizer_penalties_equal_keras_losses():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 5, 5, 2)).astype("float32")
    kw = dict(filters=2, kernel_size=3, return_state=True)
    ref = keras.layers.ConvLSTM2D(**kw, kernel_regularizer=keras.regularizers.L1(0.01),
                                  recurrent_regularizer=keras.regularizers.L2(0.02),
                                  bias_regularizer=keras.regularizers.L1L2(0.01, 0.01),
                                  activity_regularizer=keras.regularizers.L2(0.05))
    ref(torch.from_numpy(x))
    randomize_keras_weights(ref, rng)
    ours = convlstm.ConvLSTM2D(**kw, kernel_regularizer="l1", recurrent_regularizer=convlstm.regularizers.L2(0.02),
                               bias_regularizer="l1_l2", activity_regularizer={"class_name": "L2",
                                                                               "config": {"l2": 0.05}},
                               in_channels=2)
    ours.set_weights(ref.get_weights())
    ref(torch.from_numpy(x))
    ours(x)
    ref_losses = [float(to_numpy(v)) for v in ref.losses]
    our_losses = [float(to_numpy(v)) for v in ours.losses]
    assert len(our_losses) == len(ref_losses) == 6  # 3 activity (output, h, c) + 3 weights
    np.testing.assert_allclose(our_losses, ref_losses, rtol=1e-5)
    model = torch.nn.Sequential(ours)
    np.testing.assert_allclose(float(convlstm.regularization_loss(model).detach()), sum(ref_losses), rtol=1e-5)


def test_regularization_loss_is_differentiable_and_zero_without_regularizers():
    layer = convlstm.ConvLSTM2D(2, 3, kernel_regularizer="l2", in_channels=1)
    loss = convlstm.regularization_loss(layer)
    loss.backward()
    expected = 2 * 0.01 * layer.cell.weight_ih.detach()
    torch.testing.assert_close(layer.cell.weight_ih.grad, expected)
    plain = convlstm.ConvLSTM2D(2, 3, in_channels=1)
    assert float(convlstm.regularization_loss(plain)) == 0.0


# --------------------------------------------------------------------------- constraints
CONSTRAINTS = [
    ("max_norm", {}, "MaxNorm", {}),
    ("max_norm", {"max_value": 0.5, "axis": [0, 1, 2]}, "MaxNorm", {"max_value": 0.5, "axis": [0, 1, 2]}),
    ("unit_norm", {"axis": 3}, "UnitNorm", {"axis": 3}),
    ("min_max_norm", {"min_value": 0.2, "max_value": 0.7, "rate": 0.5, "axis": [0, 1]}, "MinMaxNorm",
     {"min_value": 0.2, "max_value": 0.7, "rate": 0.5, "axis": [0, 1]}),
    ("non_neg", {}, "NonNeg", {}),
]


@pytest.mark.parametrize("name,config,keras_name,keras_config", CONSTRAINTS)
def test_constraints_equal_keras(name, config, keras_name, keras_config):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(3, 3, 2, 8)).astype("float32")
    ours = convlstm.constraints.get({"class_name": keras_name, "config": config})
    ref = getattr(keras.constraints, keras_name)(**keras_config)
    assert_close(ours(torch.from_numpy(w)), ref(torch.from_numpy(w)), tol=1e-6)
    if not config:
        assert_close(convlstm.constraints.get(name)(torch.from_numpy(w)), ref(torch.from_numpy(w)), tol=1e-6)


def test_apply_constraints_projects_in_keras_layout():
    rng = np.random.default_rng(4)
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=2, kernel_constraint=convlstm.constraints.MaxNorm(0.3, axis=[0, 1, 2]),
                                recurrent_constraint="non_neg", bias_constraint="unit_norm")
    weights = [rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    model = torch.nn.Sequential(layer)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    opt.register_step_post_hook(lambda *_: convlstm.apply_constraints(model))
    opt.step()  # the documented one-line attachment runs the projection
    got = layer.get_weights()
    expected = [keras.constraints.MaxNorm(0.3, axis=[0, 1, 2])(weights[0]),
                keras.constraints.NonNeg()(weights[1]), keras.constraints.UnitNorm()(weights[2])]
    for g, e in zip(got, expected):
        assert_close(g, e, tol=1e-6)
    norms = np.sqrt((got[0] ** 2).sum(axis=(0, 1, 2)))
    assert norms.max() <= 0.3 + 1e-6


# --------------------------------------------------------------------------- dropout
def _spy_masks(layer):
    """Record the (input, recurrent) dropout masks the layer draws in each call."""
    drawn = []
    original = layer._dropout_masks

    def spy(rate, shape, like):
        masks = original(rate, shape, like)
        drawn.append(masks)
        return masks

    layer._dropout_masks = spy
    return drawn


def test_dropout_output_equals_keras_given_the_same_masks():
    """Feed our masks into Keras's cell: the training-mode outputs must then be equal, which shows
    that the masks are applied per gate to x and h exactly as Keras applies them."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 4, 6, 6, 3)).astype("float32")
    kw = dict(filters=2, kernel_size=3, padding="same", return_sequences=True, dropout=0.3, recurrent_dropout=0.4)
    ours = convlstm.ConvLSTM2D(**kw, in_channels=3, seed=7).train()
    drawn = _spy_masks(ours)
    out = ours(x)
    in_masks, rec_masks = drawn
    assert in_masks.shape == (4, 2, 3, 6, 6) and rec_masks.shape == (4, 2, 2, 6, 6)

    ref = keras.layers.ConvLSTM2D(**kw)
    ref(torch.from_numpy(x))
    ref.set_weights(ours.get_weights())
    as_keras = {0.3: [m.movedim(1, -1) for m in in_masks], 0.4: [m.movedim(1, -1) for m in rec_masks]}
    ref.cell._create_dropout_mask = lambda step_input, rate: as_keras[rate]
    assert_close(out, ref(torch.from_numpy(x), training=True))


def test_dropout_masks_statistics_and_scaling():
    rate = 0.3
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", in_channels=8, dropout=rate, recurrent_dropout=rate, seed=1)
    drawn = _spy_masks(layer.train())
    layer(torch.randn(16, 3, 12, 12, 8))
    for masks in drawn:
        values = torch.unique(masks)
        torch.testing.assert_close(values, torch.tensor([0.0, 1 / (1 - rate)]))
        keep = (masks > 0).float()
        # element-wise, rate 0.3: the kept fraction of ~70k draws is within 4 sigma of 0.7
        n = keep.numel()
        assert abs(keep.mean().item() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / n)
        # four independent gates: pairwise agreement of masks is that of independent draws
        flat = keep.reshape(4, -1)
        for a in range(4):
            for b in range(a + 1, 4):
                agree = (flat[a] == flat[b]).float().mean().item()
                p = (1 - rate) ** 2 + rate ** 2
                assert abs(agree - p) < 4 * np.sqrt(p * (1 - p) / flat.shape[1])
        # expectation preserved by the inverted scaling
        assert abs(masks.mean().item() - 1.0) < 0.02


def test_dropout_masks_constant_over_time_and_drawn_once_per_call():
    layer = convlstm.ConvLSTM1D(3, 3, padding="same", in_channels=2, dropout=0.5, recurrent_dropout=0.5,
                                return_sequences=True)
    calls = []
    original = layer.cell.input_projection
    layer.cell.input_projection = lambda frames, masks=None: calls.append(masks) or original(frames, masks)
    rec = []
    original_rec = layer.cell.recurrent_projection
    layer.cell.recurrent_projection = lambda h, masks=None: rec.append(masks) or original_rec(h, masks)
    layer.train()
    layer(torch.randn(2, 5, 7, 2))
    masks = calls[0].reshape(4, 2, 5, 2, 7)  # (gate, batch, time, channels, steps)
    for t in range(1, 5):
        torch.testing.assert_close(masks[:, :, t], masks[:, :, 0])
    assert len(rec) == 5 and all(m is rec[0] for m in rec)
    first = calls[0].clone()
    layer(torch.randn(2, 5, 7, 2))
    assert not torch.equal(calls[1], first)  # a new call draws new masks


def test_no_dropout_in_eval_or_at_rate_one():
    x = torch.randn(2, 3, 5, 5, 2)
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=2, dropout=0.5, recurrent_dropout=0.5)
    ref = convlstm.ConvLSTM2D(2, 3, in_channels=2)
    ref.set_weights(layer.get_weights())
    layer.eval()
    torch.testing.assert_close(layer(x), ref(x))
    torch.testing.assert_close(layer(x, training=False), ref(x))
    one = convlstm.ConvLSTM2D(2, 3, in_channels=2, dropout=1.0, recurrent_dropout=1.0).train()
    one.set_weights(layer.get_weights())
    torch.testing.assert_close(one(x), ref(x))  # Keras: rate 1.0 does nothing
    layer.train()
    assert not torch.allclose(layer(x), ref(x))


def test_same_seed_same_masks():
    x = torch.randn(2, 3, 5, 5, 2)
    first = convlstm.ConvLSTM2D(2, 3, in_channels=2, dropout=0.5, recurrent_dropout=0.5, seed=42).train()
    outs = {}
    for seed in (42, 42, 43):
        torch.rand(1000)  # move the global generator on: only `seed` may decide the masks
        layer = convlstm.ConvLSTM2D(2, 3, in_channels=2, dropout=0.5, recurrent_dropout=0.5, seed=seed).train()
        layer.set_weights(first.get_weights())
        outs.setdefault(seed, []).append([layer(x), layer(x)])
    (a1, a2), (b1, b2) = outs[42]
    torch.testing.assert_close(a1, b1)
    torch.testing.assert_close(a2, b2)
    assert not torch.allclose(a1, a2)  # each call draws new masks from the seeded sequence
    assert not torch.allclose(a1, outs[43][0][0])
