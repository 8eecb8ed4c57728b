"""ConvLSTM1D/2D/3D against a real Keras 3 (torch backend): a seeded random sweep over every
parameter that shapes the numbers, with Keras's weights copied in by ``set_weights``.

Outputs and states must equal Keras's within 2e-5 of the output's scale; on a subset, gradients
with respect to the input and every weight must equal those Keras's torch backend computes.

Keras runs in float64 (``dtype="float64"``), ours in float32: the reference is then free of
float32 rounding and of a oneDNN float32 convolution bug that hits single-channel inputs with
strides (1, 2) in Keras's torch and TensorFlow backends alike (see the README).
"""
import random

import numpy as np
import pytest
import torch

import convlstm
from _keras_ref import KERAS_CLASSES, assert_close, assert_weight_grads_close, randomize_keras_weights

OURS = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}
ACTIVATIONS = ["tanh", "relu", "sigmoid", None, "elu", "softsign", "gelu", "swish", "hard_sigmoid"]
RECURRENT = ["sigmoid", "hard_sigmoid", "tanh", "relu", "softplus"]
N_CONFIGS = 330
GRAD_EVERY = 6


def _output_size(n, k, s, d, padding):
    return -(-n // s) if padding == "same" else (n - d * (k - 1) - 1) // s + 1


def make_config(i):
    rng = random.Random(1000 + i)
    while True:
        rank = rng.choice([1, 1, 2, 2, 2, 3])
        sizes = {1: (4, 9), 2: (3, 7), 3: (3, 5)}[rank]
        spatial = tuple(rng.randint(*sizes) for _ in range(rank))
        kernel = tuple(rng.choice([1, 2, 3]) for _ in range(rank))
        padding = rng.choice(["valid", "same"])
        strides, dilation = (1,) * rank, (1,) * rank
        mode = rng.random()
        if mode < 0.3:
            strides = tuple(rng.choice([1, 2]) for _ in range(rank))
        elif mode < 0.5:
            dilation = tuple(rng.choice([1, 2]) for _ in range(rank))
        out = [_output_size(n, k, s, d, padding) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
        if min(out) >= 1:
            break
    stateful = rng.random() < 0.2
    cfg = dict(
        rank=rank, spatial=spatial, batch=rng.randint(1, 3), steps=rng.randint(1, 4),
        in_channels=rng.randint(1, 3), filters=rng.randint(1, 4), kernel_size=kernel, strides=strides,
        dilation_rate=dilation, padding=padding,
        data_format=rng.choice(["channels_last", "channels_first"]),
        activation=rng.choice(ACTIVATIONS), recurrent_activation=rng.choice(RECURRENT),
        use_bias=rng.random() < 0.8, return_sequences=rng.random() < 0.5, return_state=rng.random() < 0.4,
        go_backwards=rng.random() < 0.3, stateful=stateful,
        initial_state=(not stateful) and rng.random() < 0.3, mask=rng.random() < 0.25,
    )
    return cfg


CONFIGS = [make_config(i) for i in range(N_CONFIGS)]


def _ids(cfg):
    return (f"{cfg['rank']}d-{cfg['padding']}-s{''.join(map(str, cfg['strides']))}"
            f"-d{''.join(map(str, cfg['dilation_rate']))}-{cfg['data_format'][9:]}"
            + ("-seq" if cfg["return_sequences"] else "") + ("-state" if cfg["return_state"] else "")
            + ("-back" if cfg["go_backwards"] else "") + ("-stateful" if cfg["stateful"] else "")
            + ("-init" if cfg["initial_state"] else "") + ("-mask" if cfg["mask"] else ""))


def test_sweep_covers_every_option():
    """The sweep is only proof if it reaches every value of every option."""
    assert len(CONFIGS) >= 300
    seen = {key: {str(c[key]) for c in CONFIGS} for key in CONFIGS[0] if key not in ("spatial",)}
    assert seen["rank"] == {"1", "2", "3"}
    assert seen["padding"] == {"valid", "same"}
    assert seen["data_format"] == {"channels_last", "channels_first"}
    for flag in ("use_bias", "return_sequences", "return_state", "go_backwards", "stateful", "initial_state", "mask"):
        assert seen[flag] == {"True", "False"}, flag
    assert len(seen["activation"]) == len(ACTIVATIONS) and len(seen["recurrent_activation"]) == len(RECURRENT)
    assert any(max(c["strides"]) > 1 for c in CONFIGS) and any(max(c["dilation_rate"]) > 1 for c in CONFIGS)
    assert any(2 in c["kernel_size"] and c["padding"] == "same" for c in CONFIGS)  # asymmetric TF pads


def _inputs(cfg, rng):
    shape_last = (cfg["batch"], cfg["steps"]) + cfg["spatial"] + (cfg["in_channels"],)
    x = rng.normal(0, 1, shape_last).astype("float32")
    if cfg["data_format"] == "channels_first":
        x = np.moveaxis(x, -1, 2).copy()
    return x


def _state_shape(cfg):
    out = tuple(_output_size(n, k, s, d, cfg["padding"]) for n, k, s, d in
                zip(cfg["spatial"], cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"]))
    if cfg["data_format"] == "channels_last":
        return (cfg["batch"],) + out + (cfg["filters"],)
    return (cfg["batch"], cfg["filters"]) + out


def _build_pair(cfg):
    kwargs = dict(
        filters=cfg["filters"], kernel_size=cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
        data_format=cfg["data_format"], dilation_rate=cfg["dilation_rate"], activation=cfg["activation"],
        recurrent_activation=cfg["recurrent_activation"], use_bias=cfg["use_bias"],
        return_sequences=cfg["return_sequences"], return_state=cfg["return_state"],
        go_backwards=cfg["go_backwards"], stateful=cfg["stateful"],
    )
    ref = KERAS_CLASSES[cfg["rank"]](**kwargs, dtype="float64")
    ours = OURS[cfg["rank"]](**kwargs, in_channels=cfg["in_channels"])
    return ref, ours


def _call(layer, x, cfg, init, mask, **extra):
    kwargs = dict(extra)
    if init is not None:
        kwargs["initial_state"] = init
    if mask is not None:
        kwargs["mask"] = mask
    return layer(x, **kwargs)


def _compare(ours_out, ref_out, cfg, what):
    if cfg["return_state"]:
        assert isinstance(ours_out, tuple) and len(ours_out) == 3
        for name, o, r in zip(("output", "h", "c"), ours_out, ref_out):
            assert_close(o, r, what=f"{what} {name}")
    else:
        assert_close(ours_out, ref_out, what=what)


@pytest.mark.parametrize("index", range(N_CONFIGS), ids=[f"{i}-{_ids(c)}" for i, c in enumerate(CONFIGS)])
def test_matches_keras(index):
    cfg = CONFIGS[index]
    rng = np.random.default_rng(index)
    ref, ours = _build_pair(cfg)
    x = _inputs(cfg, rng)
    init = None
    if cfg["initial_state"]:
        init = [rng.normal(0, 0.5, _state_shape(cfg)).astype("float32") for _ in range(2)]
    mask = None
    if cfg["mask"]:
        mask = rng.random((cfg["batch"], cfg["steps"])) < 0.6
    kinit = None if init is None else [torch.from_numpy(s).double() for s in init]
    kmask = None if mask is None else torch.from_numpy(mask)

    ref(torch.from_numpy(x).double(), initial_state=kinit, mask=kmask)  # build
    # Unbounded gates (relu, softplus) with unbounded activations can overflow over stateful
    # calls; smaller weights keep every value finite so the comparison means something.
    unbounded = cfg["recurrent_activation"] in ("relu", "softplus")
    randomize_keras_weights(ref, rng, scale=0.1 if unbounded else 0.3)
    if cfg["stateful"]:
        ref.reset_states()
    ours.set_weights(ref.get_weights())
    ours.eval()

    calls = 3 if cfg["stateful"] else 1
    for call in range(calls):
        if cfg["stateful"] and call == 2:
            ref.reset_states()
            ours.reset_states()
        xc = x if call == 0 else rng.normal(0, 1, x.shape).astype("float32")
        r = _call(ref, torch.from_numpy(xc).double(), cfg, kinit, kmask, training=False)
        with torch.no_grad():
            o = _call(ours, xc, cfg, init, mask)
        _compare(o, r, cfg, f"call {call}")

    if index % GRAD_EVERY == 0 and not cfg["stateful"]:
        _compare_gradients(ref, ours, x, cfg, kinit, kmask, rng)


def _compare_gradients(ref, ours, x, cfg, kinit, kmask, rng):
    xr = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    xo = torch.tensor(x, requires_grad=True)
    r = _call(ref, xr, cfg, kinit, kmask, training=False)
    o = _call(ours, xo, cfg, kinit, kmask)
    r = r[0] if cfg["return_state"] else r
    o = o[0] if cfg["return_state"] else o
    weight = torch.from_numpy(rng.normal(0, 1, tuple(r.shape)).astype("float32"))
    for v in ref.trainable_variables:
        v.value.grad = None
    (r * weight.double()).sum().backward()
    (o * weight).sum().backward()
    assert_close(xo.grad, xr.grad, tol=1e-4, what="d/dx")
    assert_weight_grads_close(ref, ours, cfg["rank"], tol=1e-4)


def test_gradient_subset_is_large_enough():
    assert sum(1 for i, c in enumerate(CONFIGS) if i % GRAD_EVERY == 0 and not c["stateful"]) >= 40
