"""convert(): model.safetensors + config.json, rebuilt by load_converted, with a per-layer summary."""
import json
from pathlib import Path

import numpy as np
import torch

import convlstm.keras as ck

FIXTURES = Path(__file__).parent / "fixtures" / "keras"


def test_convert_and_load_converted(tmp_path):
    out = tmp_path / "converted"
    text = ck.convert(FIXTURES / "k2_functional_states.h5", out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    lines = text.splitlines()
    assert any("conv_lstm2d" in l and "ConvLSTM2D" in l and "(None, 8, 8, 3)" in l for l in lines)
    assert any(l.split()[0] == "bidirectional" and l.split()[-1] == "736" for l in lines if l.strip())
    assert "Total params:" in lines[-1]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["keras_version"].startswith("2.")
    model = ck.load_converted(out)
    data = np.load(FIXTURES / "k2_functional_states.npz")
    with torch.no_grad():
        outs = model(torch.from_numpy(data["x0"]), torch.from_numpy(data["x1"]))
    for o, key in zip(outs, ("y0", "y1", "y2")):
        ref = data[key]
        assert float(np.abs(o.numpy() - ref).max()) <= 2e-5 * float(np.abs(ref).max())
    assert b"pickle" not in (out / "model.safetensors").read_bytes()[:200]


def test_load_converted_rejects_mismatched_weights(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ck.convert(FIXTURES / "k2_functional_states.h5", a)
    ck.convert(FIXTURES / "k2_convlstm_options.h5", b)
    (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
    try:
        ck.load_converted(a)
    except ck.KerasFileError as err:
        assert "does not match" in str(err)
    else:
        raise AssertionError("mismatched weights were accepted")
