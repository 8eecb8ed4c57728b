"""convlstm.keras.load_model against outputs of real Keras (fixtures made by tools/make_keras_fixtures.py;
no TensorFlow or Keras needed here)."""
import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import convlstm
import convlstm.keras as ck
from convlstm import activations

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
MODELS = ["k2_nextframe_2016.h5.gz", "k2_convlstm_options.h5", "k2_functional_states.h5", "k2_convlstm1d.h5",
          "k2_convlstm3d.h5", "k2_layers2d.h5", "k3_nextframe_2021.keras.gz", "k3_channels_first.keras",
          "k3_channels_first_1d3d.keras", "k3_bidir_states.keras"]


def fixture_path(name: str, tmp_path: Path) -> Path:
    """The fixture file, gunzipped into tmp_path when stored compressed."""
    src = FIXTURES / name
    if name.endswith(".gz"):
        dst = tmp_path / name[:-3]
        with gzip.open(src, "rb") as s, open(dst, "wb") as d:
            shutil.copyfileobj(s, d)
        return dst
    return src


def case_data(name: str):
    data = np.load(FIXTURES / (name.split(".")[0] + ".npz"))
    xs = [data[k] for k in sorted((k for k in data if k.startswith("x")), key=lambda k: int(k[1:]))]
    ys = [data[k] for k in sorted((k for k in data if k.startswith("y")), key=lambda k: int(k[1:]))]
    return xs, ys


def assert_close(out, ref, tol=2e-5):
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    assert out.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-6)
    err = float(np.abs(out - ref).max())
    assert err <= tol * scale, f"max error {err} > {tol} x {scale}"


def first_of(model, cls):
    return next(m for _, c, m in model.keras_layers() if c == cls)


def run(model, xs):
    with torch.no_grad():
        out = model(*[torch.from_numpy(x) for x in xs])
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_keras(name, tmp_path):
    model = ck.load_model(fixture_path(name, tmp_path))
    assert isinstance(model, torch.nn.Module) and not model.training
    xs, ys = case_data(name)
    outs = run(model, xs)
    assert len(outs) == len(ys)
    for out, ref in zip(outs, ys):
        assert_close(out, ref)


def test_keras2_hard_sigmoid_is_the_0_2_slope(tmp_path):
    path = fixture_path("k2_convlstm_options.h5", tmp_path)
    model = ck.load_model(path)
    assert model.keras_major == 2
    layer = model.layer("conv_lst_m2d_1")  # a Keras 2.2-era name
    assert isinstance(layer, convlstm.ConvLSTM2D)
    assert layer.recurrent_activation is activations.keras2_hard_sigmoid
    # The same weights run with Keras 3's hard_sigmoid give different numbers: the choice matters.
    k3 = ck.KerasModel(model.model_config, keras_version="3.0.0")
    k3.load_state_dict(model.state_dict())
    xs, ys = case_data("k2_convlstm_options.h5")
    assert float(np.abs(run(k3, xs)[0].numpy() - ys[0]).max()) > 1e-3


def test_keras3_hard_sigmoid_is_keras3s(tmp_path):
    model = ck.load_model(FIXTURES / "k3_bidir_states.keras")
    assert model.keras_major == 3
    bi = first_of(model, "Bidirectional")
    assert bi.forward_layer.recurrent_activation is activations.hard_sigmoid


def test_keras2_2_layer_names_and_summary(tmp_path):
    model = ck.load_model(fixture_path("k2_nextframe_2016.h5.gz", tmp_path))
    names = [n for n, _, _ in model.keras_layers()]
    assert "conv_lst_m2d_1" in names and "conv_lst_m2d_4" in names and "conv3d_1" in names
    text = ck.summary(model)
    assert "conv_lst_m2d_1" in text and "ConvLSTM2D" in text and "(None, None, 40, 40, 40)" in text
    assert "Total params:" in text


KERAS1_LAYER_DEFAULTS = {
    "name": "convolutionallstm_1", "border_mode": "same", "return_sequences": True, "subsample": [1, 1],
    "init": "glorot_uniform", "inner_init": "orthogonal", "forget_bias_init": "one", "dropout_W": 0.0,
    "dropout_U": 0.0, "go_backwards": False, "stateful": False}


def _keras1_model_file(path: Path, layer_config: dict, arrays, *, theano: bool) -> Path:
    """A Keras 1.2.2 Sequential model file holding one ConvLSTM2D (``layer_config`` over
    :data:`KERAS1_LAYER_DEFAULTS`), written with h5py independently of the library's writer;
    ``arrays`` are its twelve weights in Keras 1's order W, U, b of the gates i, c, f, o."""
    import json
    config = {"class_name": "Sequential", "config": [
        {"class_name": "ConvLSTM2D", "config": {**KERAS1_LAYER_DEFAULTS, **layer_config}}]}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"1.2.2"
        f.attrs["backend"] = b"theano" if theano else b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [b"convolutionallstm_1"]
        lg = g.create_group("convolutionallstm_1")
        names = [f"convolutionallstm_1_{w}_{gate}" for gate in "icfo" for w in ("W", "U", "b")]
        lg.attrs["weight_names"] = [n.encode() for n in names]
        for n, a in zip(names, arrays):
            lg.create_dataset(n, data=np.asarray(a, dtype=np.float32))
    return path


def _write_keras1_file(path: Path, arrays, theano=False):
    _keras1_model_file(path, {"nb_filter": 2, "nb_row": 3, "nb_col": 3, "dim_ordering": "tf",
                              "inner_activation": "hard_sigmoid", "activation": "tanh",
                              "batch_input_shape": [None, 3, 5, 5, 1]}, arrays, theano=theano)


def test_keras1_gate_order_is_reordered(tmp_path):
    rng = np.random.RandomState(0)
    per_gate = {}
    arrays = []
    for gate in "icfo":  # Keras 1 order
        w = rng.uniform(-.5, .5, (3, 3, 1, 2)).astype(np.float32)
        u = rng.uniform(-.5, .5, (3, 3, 2, 2)).astype(np.float32)
        b = rng.uniform(-.5, .5, (2,)).astype(np.float32)
        per_gate[gate] = (w, u, b)
        arrays += [w, u, b]
    _write_keras1_file(tmp_path / "k1.h5", arrays)
    model = ck.load_model(tmp_path / "k1.h5")
    ref = convlstm.ConvLSTM2D(2, 3, padding="same", return_sequences=True, in_channels=1,
                              recurrent_activation="keras2_hard_sigmoid")
    ref.set_weights([np.concatenate([per_gate[g][i] for g in "ifco"], axis=-1) for i in range(3)])
    x = torch.from_numpy(rng.uniform(-1, 1, (2, 3, 5, 5, 1)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-6)


def test_train_mode_batchnorm_uses_batch_statistics(tmp_path):
    model = ck.load_model(fixture_path("k2_layers2d.h5", tmp_path))
    bn = first_of(model, "BatchNormalization")
    before = bn.moving_mean.clone()
    xs, _ = case_data("k2_layers2d.h5")
    model.train()
    model(*[torch.from_numpy(x) for x in xs])
    assert not torch.equal(before, bn.moving_mean)


# ------------------------------------------------------------------ Keras 1, from its own layout
# Keras 1.2's ConvLSTM2D (keras/layers/convolutional_recurrent.py) stores twelve arrays in the order
# W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o; with dim_ordering 'th' a kernel is
# (nb_filter, stack_size, nb_row, nb_col) and a recurrent kernel (nb_filter, nb_filter, nb_row, nb_col);
# its step is i = inner(x*W_i + b_i + h*U_i), f likewise, c = f c' + i act(x*W_c + b_c + h*U_c),
# o likewise, h = o act(c). The Theano backend's conv2d is a true convolution (the kernel flipped),
# TensorFlow's a cross-correlation.
def _keras1_th_file(path: Path, weights: dict, *, nb_filter, nb_row, nb_col, channels, steps, theano,
                    activation, inner_activation):
    """A Keras 1.2.2 model file with one 'th'-ordered ConvLSTM2D, from ``weights``
    (``{"W_i": array, ...}``)."""
    layer = {"nb_filter": nb_filter, "nb_row": nb_row, "nb_col": nb_col, "dim_ordering": "th",
             "activation": activation, "inner_activation": inner_activation,
             "batch_input_shape": [None, steps, channels, None, None]}
    return _keras1_model_file(path, layer, [weights[f"{w}_{gate}"] for gate in "icfo" for w in ("W", "U", "b")],
                              theano=theano)


def test_keras1_theano_file_against_numbers_worked_out_by_hand(tmp_path):
    """One filter, one channel, a 1x3 kernel on a 1x3 image, two steps, Keras 1's hard sigmoid
    hs(z) = clip(0.2 z + 0.5, 0, 1) on the gates and a linear activation. Theano convolves, so
    with 'same' padding a kernel [1, 0, 0] reads the right neighbour: (x * [1, 0, 0])[j] = x[j + 1].

    Weights: W_i = [1, 0, 0], W_f = W_c = [0, 1, 0], W_o = 0, U_c = [1, 0, 0], other U and b zero.
    Step 1, x = [1, 2, 3], h = c = 0: i = hs([2, 3, 0]) = [.9, 1, .5]; candidate = [1, 2, 3];
    o = hs(0) = .5; c = i * candidate = [.9, 2, 1.5]; h = .5 c = [.45, 1, .75].
    Step 2, x = [0, 1, 0]: i = hs([1, 0, 0]) = [.7, .5, .5]; f = hs([0, 1, 0]) = [.5, .7, .5];
    candidate = x + h[j + 1] = [0, 1, 0] + [1, .75, 0] = [1, 1.75, 0];
    c = f c' + i candidate = [.45, 1.4, .75] + [.7, .875, 0] = [1.15, 2.275, .75]; h = .5 c.
    Without the flip step 1 would give h = [.25, .7, 1.35]; with i and c swapped [.35, .9, 0]."""
    one = lambda *v: np.asarray(v, np.float32).reshape(1, 1, 1, 3)  # noqa: E731  (F, C, rows, cols)
    zero, b0 = one(0, 0, 0), np.zeros(1, np.float32)
    weights = {"W_i": one(1, 0, 0), "U_i": zero, "b_i": b0, "W_c": one(0, 1, 0), "U_c": one(1, 0, 0), "b_c": b0,
               "W_f": one(0, 1, 0), "U_f": zero, "b_f": b0, "W_o": zero, "U_o": zero, "b_o": b0}
    path = _keras1_th_file(tmp_path / "k1.h5", weights, nb_filter=1, nb_row=1, nb_col=3, channels=1, steps=2,
                           theano=True, activation="linear", inner_activation="hard_sigmoid")
    model = ck.load_model(path)
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]).reshape(1, 2, 1, 1, 3)  # (B, T, C, rows, cols)
    with torch.no_grad():
        out = model(x)
    expected = torch.tensor([[0.45, 1.0, 0.75], [0.575, 1.1375, 0.375]]).reshape(1, 2, 1, 1, 3)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("theano", [True, False], ids=["theano", "tensorflow"])
def test_keras1_th_kernels_are_transposed_and_flipped_element_by_element(tmp_path, theano):
    """A 3x3 kernel with three filters: a 'th' kernel (F, C, 3, 3) and a recurrent kernel (F, F, 3, 3)
    whose shapes are also valid 'tf' shapes. Element by element, Keras 2's kernel[r, s, ch, g*F + f]
    is Keras 1's W_g[f, ch, r, s], read at (2 - r, 2 - s) for a Theano file."""
    rng = np.random.default_rng(5)
    F, C = 3, 2
    weights = {}
    for gate in "icfo":
        weights[f"W_{gate}"] = rng.normal(size=(F, C, 3, 3))
        weights[f"U_{gate}"] = rng.normal(size=(F, F, 3, 3))
        weights[f"b_{gate}"] = rng.normal(size=(F,))
    path = _keras1_th_file(tmp_path / "k1.h5", weights, nb_filter=F, nb_row=3, nb_col=3, channels=C, steps=2,
                           theano=theano, activation="tanh", inner_activation="hard_sigmoid")
    layer = next(m for m in ck.load_model(path).modules() if isinstance(m, convlstm.ConvLSTM2D))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (3, 3, C, 4 * F) and recurrent.shape == (3, 3, F, 4 * F)
    for g, gate in enumerate("ifco"):  # Keras 2's order
        for r in range(3):
            for s in range(3):
                rr, ss = (2 - r, 2 - s) if theano else (r, s)
                for f in range(F):
                    for ch in range(C):
                        assert kernel[r, s, ch, g * F + f] == np.float32(weights[f"W_{gate}"][f, ch, rr, ss])
                    for ch in range(F):
                        assert recurrent[r, s, ch, g * F + f] == np.float32(weights[f"U_{gate}"][f, ch, rr, ss])
        np.testing.assert_array_equal(bias[g * F:(g + 1) * F], weights[f"b_{gate}"].astype(np.float32))
