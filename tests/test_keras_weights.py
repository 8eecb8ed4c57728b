"""load_weights (tf.keras .h5, Keras 3 .weights.h5) into modules built from the library's layers,
and save_weights proved with real Keras 3 (KERAS_BACKEND=torch)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("KERAS_BACKEND", "torch")

import convlstm  # noqa: E402
import convlstm.keras as ck  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "keras"


def npz(name):
    d = np.load(FIXTURES / f"{name}.npz")
    return torch.from_numpy(d["x0"]), d["y0"]


def assert_close(out, ref, tol=2e-5):
    out = out.detach().numpy()
    scale = max(float(np.abs(ref).max()), 1e-6)
    assert out.shape == ref.shape
    assert float(np.abs(out - ref).max()) <= tol * scale


class K2Net(nn.Module):
    """The tf.keras model of k2_weights_only in torch: ConvLSTM2D + BatchNormalization + ConvLSTM2D + Dense."""

    def __init__(self, filters=3):
        super().__init__()
        self.lstm1 = convlstm.ConvLSTM2D(filters, 3, padding="same", return_sequences=True, in_channels=2,
                                         recurrent_activation="keras2_hard_sigmoid")
        self.bn = nn.BatchNorm3d(filters, eps=1e-3)
        self.lstm2 = convlstm.ConvLSTM2D(2, 3, in_channels=filters, recurrent_activation="keras2_hard_sigmoid")
        self.dense = nn.Linear(2, 2)

    def forward(self, x):
        y = self.lstm1(x)                                   # (B, T, H, W, C)
        y = self.bn(y.movedim(-1, 1)).movedim(1, -1)        # BatchNorm3d over (B, C, T, H, W)
        return self.dense(self.lstm2(y))


def test_load_tf_keras_weights_only_h5():
    net = K2Net().eval()
    assert ck.load_weights(net, FIXTURES / "k2_weights_only.h5") is net
    x, y = npz("k2_weights_only")
    with torch.no_grad():
        assert_close(net(x), y)


def test_load_weights_mismatch_names_both_sides():
    net = K2Net(filters=4)
    with pytest.raises(ck.KerasFileError) as err:
        ck.load_weights(net, FIXTURES / "k2_weights_only.h5")
    msg = str(err.value)
    assert "lstm1" in msg and "conv_lstm2d" in msg and "(3, 3, 2, 12)" in msg and "(3, 3, 2, 16)" in msg

    class TooFew(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = convlstm.ConvLSTM2D(3, 3, in_channels=2)

    with pytest.raises(ck.KerasFileError, match="4 layers"):
        ck.load_weights(TooFew(), FIXTURES / "k2_weights_only.h5")


class K3Net(nn.Module):
    """The Keras 3 model of k3_weights_only: ConvLSTM3D + BatchNormalization + ConvLSTM3D + Conv3D('same')."""

    def __init__(self):
        super().__init__()
        self.lstm1 = convlstm.ConvLSTM3D(2, 3, padding="same", return_sequences=True, in_channels=2)
        self.bn = nn.BatchNorm1d(2, eps=1e-3)
        self.lstm2 = convlstm.ConvLSTM3D(3, 2, in_channels=2)
        self.conv = nn.Conv3d(3, 1, 2)

    def forward(self, x):
        y = self.lstm1(x)
        y = self.bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)
        y = self.lstm2(y).movedim(-1, 1)
        y = self.conv(F.pad(y, (0, 1, 0, 1, 0, 1)))  # TensorFlow 'same' for kernel 2: the pad at the end
        return y.movedim(1, -1)


def test_load_keras3_weights_h5():
    net = K3Net().eval()
    ck.load_weights(net, FIXTURES / "k3_weights_only.weights.h5")
    x, y = npz("k3_weights_only")
    with torch.no_grad():
        assert_close(net(x), y)


def test_save_weights_loads_in_real_keras3(tmp_path):
    import keras

    assert keras.backend.backend() == "torch", "run the tests with KERAS_BACKEND=torch"
    torch.manual_seed(0)
    bi = convlstm.Bidirectional(convlstm.ConvLSTM2D(2, 3, padding="same", return_sequences=True, in_channels=3,
                                                    recurrent_activation="hard_sigmoid"))
    net = nn.ModuleList([convlstm.ConvLSTM2D(3, 3, padding="same", return_sequences=True, in_channels=2),
                         bi, convlstm.ConvLSTM2D(2, (3, 2), strides=2, in_channels=4), nn.Conv2d(2, 3, 1),
                         nn.BatchNorm2d(3, eps=1e-3)])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.rand_like(p) * 0.2 - 0.1)
        net[4].running_mean.uniform_(-0.5, 0.5)
        net[4].running_var.uniform_(0.5, 1.5)
    net.eval()
    x = torch.rand(2, 3, 7, 7, 2)
    with torch.no_grad():
        y = net[2](net[1](net[0](x))).movedim(-1, 1)
        y = net[4](net[3](y)).movedim(1, -1)
    path = ck.save_weights(net, tmp_path / "net.weights.h5")

    L = keras.layers
    model = keras.Sequential([keras.Input((3, 7, 7, 2)),
                              L.ConvLSTM2D(3, 3, padding="same", return_sequences=True),
                              L.Bidirectional(L.ConvLSTM2D(2, 3, padding="same", return_sequences=True,
                                                           recurrent_activation="hard_sigmoid")),
                              L.ConvLSTM2D(2, (3, 2), strides=2),
                              L.Conv2D(3, 1),
                              L.BatchNormalization()])
    model.load_weights(str(path))
    ref = np.asarray(model.predict(x.numpy(), verbose=0))
    assert_close(y, ref)
    # and back: our loader reads the file it wrote
    again = ck.load_weights(nn.ModuleList([convlstm.ConvLSTM2D(3, 3, padding="same", in_channels=2),
                                           convlstm.Bidirectional(convlstm.ConvLSTM2D(2, 3, in_channels=3)),
                                           convlstm.ConvLSTM2D(2, (3, 2), in_channels=4), nn.Conv2d(2, 3, 1),
                                           nn.BatchNorm2d(3)]), path)
    torch.testing.assert_close(again[2].cell.weight_ih, net[2].cell.weight_ih)


def test_save_weights_of_a_loaded_functional_model_in_real_keras3(tmp_path):
    import keras

    model = ck.load_model(FIXTURES / "k3_bidir_states.keras")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    data = np.load(FIXTURES / "k3_bidir_states.npz")
    xs = [data["x0"], data["x1"]]
    with torch.no_grad():
        ours = model(*[torch.from_numpy(x) for x in xs])
    path = ck.save_weights(model, tmp_path / "m.weights.h5")
    kmodel = keras.models.load_model(FIXTURES / "k3_bidir_states.keras")
    kmodel.load_weights(str(path))
    refs = kmodel.predict(xs, verbose=0)
    for a, b in zip(ours, refs):
        assert_close(a, np.asarray(b))
    assert float(np.abs(ours[0].numpy() - data["y0"]).max()) > 1e-4  # the weights did change


def test_save_weights_needs_keras3_suffix(tmp_path):
    with pytest.raises(ValueError, match=".weights.h5"):
        ck.save_weights(convlstm.ConvLSTM2D(2, 3, in_channels=1), tmp_path / "w.h5")


def test_keras2_model_to_keras3_weights_and_back(tmp_path):
    model = ck.load_model(FIXTURES / "k2_functional_states.h5")
    path = ck.save_weights(model, tmp_path / "k2.weights.h5")
    fresh = ck.load_model(FIXTURES / "k2_functional_states.h5")
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    ck.load_weights(fresh, path)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a .keras archive's weights load too
    k3 = ck.load_model(FIXTURES / "k3_bidir_states.keras")
    with torch.no_grad():
        for p in k3.parameters():
            p.zero_()
    ck.load_weights(k3, FIXTURES / "k3_bidir_states.keras")
    data = np.load(FIXTURES / "k3_bidir_states.npz")
    with torch.no_grad():
        out = k3(torch.from_numpy(data["x0"]), torch.from_numpy(data["x1"]))
    assert_close(out[0], data["y0"])
