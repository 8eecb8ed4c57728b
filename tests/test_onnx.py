"""ONNX export (torch.onnx.export, dynamo) of models built from the library's layers, checked in
onnxruntime to 1e-4; and the streaming one-step export."""
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import convlstm
import convlstm.keras as ck
import convlstm.onnx as conx

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
LAYERS = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 4)}


class Both(nn.Module):
    """Two layers of one rank and data format: return_sequences on, then off (two outputs)."""

    def __init__(self, rank, data_format):
        super().__init__()
        cls = LAYERS[rank]
        self.seq = cls(3, 3, padding="same", data_format=data_format, return_sequences=True, in_channels=2)
        self.last = cls(2, 2, strides=2, data_format=data_format, in_channels=3)

    def forward(self, x):
        y = self.seq(x)
        return y, self.last(y)


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _close(got, ref, tol=1e-4):
    ref = ref.detach().numpy()
    scale = max(float(np.abs(ref).max()), 1e-6)
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= tol * scale


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_layers_export(tmp_path, rank, data_format):
    torch.manual_seed(rank)
    model = Both(rank, data_format).eval()
    shape = (2, 4) + ((2,) + SPATIAL[rank] if data_format == "channels_first" else SPATIAL[rank] + (2,))
    x = torch.randn(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = conx.export(model, tmp_path / "m.onnx", x, dynamic_batch=(rank == 2))
    sess = _session(path)
    if rank == 2:  # the batch axis is dynamic
        x = torch.randn((3,) + shape[1:])
    outs = sess.run(None, {"input_0": x.numpy()})
    with torch.no_grad():
        refs = model(x)
    for got, ref in zip(outs, refs):
        _close(got, ref)


def test_keras_model_exports(tmp_path):
    model = ck.load_model(FIXTURES / "k3_bidir_states.keras")
    data = np.load(FIXTURES / "k3_bidir_states.npz")
    xs = (torch.from_numpy(data["x0"]), torch.from_numpy(data["x1"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = conx.export(model, tmp_path / "k.onnx", xs, input_names=["a", "b"])
    outs = _session(path).run(None, {"a": data["x0"], "b": data["x1"]})
    for got, key in zip(outs, ("y0", "y1", "y2")):
        _close(got, torch.from_numpy(data[key]))


def test_streaming_step_export(tmp_path):
    torch.manual_seed(0)
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, return_state=True,
                                in_channels=2).eval()
    x = torch.randn(2, 5, 6, 6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = conx.export_step(layer, tmp_path / "step.onnx", x[:, 0])
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["x_t", "h", "c"]
    assert [o.name for o in sess.get_outputs()] == ["y_t", "h_next", "c_next"]
    h = c = np.zeros((2, 6, 6, 4), np.float32)
    ys = []
    for t in range(x.shape[1]):
        y, h, c = sess.run(None, {"x_t": x[:, t].numpy(), "h": h, "c": c})
        ys.append(y)
    with torch.no_grad():
        seq, h_ref, c_ref = layer(x)
    _close(np.stack(ys, axis=1), seq)
    _close(h, h_ref)
    _close(c, c_ref)


def test_step_module_refuses_what_cannot_stream():
    with pytest.raises(ValueError, match="go_backwards"):
        conx.StepModule(convlstm.ConvLSTM2D(2, 3, go_backwards=True, in_channels=1))
    with pytest.raises(TypeError, match="Bidirectional"):
        conx.StepModule(convlstm.Bidirectional(convlstm.ConvLSTM2D(2, 3, in_channels=1)))
