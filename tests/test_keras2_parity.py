"""ConvLSTM layers against Keras 2 (tf-keras 2.21) outputs stored in tests/fixtures/keras2_layers.npz
by tools/make_keras2_layer_fixtures.py; TensorFlow is not needed to run this test.

Each layer is rebuilt from the tf-keras layer config (``from_config``) with Keras 2's rule that
``'hard_sigmoid'`` is ``clip(0.2x + 0.5, 0, 1)``, given the stored weights, and called as Keras was.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import convlstm
from _keras_ref import assert_close

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "keras2_layers.npz")
N_CASES = json.loads(str(FIXTURE["meta"]))["n_cases"]
OURS = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}


def keras2_layer(i):
    cfg = json.loads(str(FIXTURE[f"cfg{i}"]))
    call = json.loads(str(FIXTURE[f"call{i}"]))
    for key in ("recurrent_activation", "activation"):
        if cfg.get(key) == "hard_sigmoid":
            cfg[key] = "keras2_hard_sigmoid"
    layer = OURS[call["rank"]].from_config(cfg)
    n_weights = sum(1 for k in FIXTURE.files if k.startswith(f"w{i}_"))
    layer.set_weights([FIXTURE[f"w{i}_{j}"] for j in range(n_weights)])
    return layer.eval(), cfg, call


def test_fixture_covers_keras2_defaults_and_options():
    calls = [json.loads(str(FIXTURE[f"call{i}"])) for i in range(N_CASES)]
    cfgs = [json.loads(str(FIXTURE[f"cfg{i}"])) for i in range(N_CASES)]
    assert {c["rank"] for c in calls} == {1, 2, 3}
    assert sum(c["recurrent_activation"] == "hard_sigmoid" for c in cfgs) >= N_CASES // 2
    for key in ("return_sequences", "return_state", "go_backwards", "stateful", "use_bias"):
        assert {c[key] for c in cfgs} == {True, False}, key
    assert any(c["initial_state"] for c in calls) and any(c["mask"] for c in calls)


@pytest.mark.parametrize("i", range(N_CASES))
def test_matches_keras2(i):
    layer, cfg, call = keras2_layer(i)
    kwargs = {}
    if f"h{i}" in FIXTURE.files:
        kwargs["initial_state"] = [FIXTURE[f"h{i}"], FIXTURE[f"c{i}"]]
    if f"m{i}" in FIXTURE.files:
        kwargs["mask"] = FIXTURE[f"m{i}"]
    for k in range(call["calls"]):
        out = layer(FIXTURE[f"x{i}_{k}"], **kwargs)
        out = out if isinstance(out, tuple) else (out,)
        stored = sum(name.startswith(f"y{i}_{k}_") for name in FIXTURE.files)
        assert len(out) == stored, f"call {k}: {len(out)} outputs, Keras 2 returned {stored}"
        for n, o in enumerate(out):
            assert_close(o, FIXTURE[f"y{i}_{k}_{n}"], what=f"call {k} output {n}")
