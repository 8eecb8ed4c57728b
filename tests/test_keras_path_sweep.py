"""Every compute path (``implementation=``) against a real Keras 3 (torch backend) at realistic
sizes with the default activations (``tanh`` / ``sigmoid``, the case that runs the closed-form gate
update and the hand-written backwards): outputs, and gradients with respect to the input and every
weight.

``tests/test_keras_parity.py`` sweeps every option on tiny tensors (where ``"auto"`` runs
``"concat"`` with ``'same'`` padding and ``"fused"`` otherwise); here each case forces one path on a configuration where that path applies
(``concat``, ``nnpack`` and ``fft`` need ``padding='same'``, strides 1, dilation 1 and no dropout;
``nnpack`` and ``fft`` 2D; see :mod:`convlstm._paths`) and :func:`_ran` asserts that it is the
path that ran. Keras runs in float64, ours in float32.

``CASES_PER_PATH`` cases per path run in CI (about a minute on one core); set the environment
variable ``CONVLSTM_PATH_SWEEP_CASES`` to run more, e.g. ``CONVLSTM_PATH_SWEEP_CASES=40``
(200 cases: all passed in 136 s on 2 cores, 2026-11-30).
"""
import os
import random

import numpy as np
import pytest
import torch

import convlstm
from _keras_ref import KERAS_CLASSES, assert_close, assert_weight_grads_close

OURS = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}
PATHS = ["fused", "concat", "nnpack", "fft", "reference"]
CASES_PER_PATH = int(os.environ.get("CONVLSTM_PATH_SWEEP_CASES", "8"))
# NNPACK's Winograd/FFT tiles round float32 differently (see _paths): up to ~1e-5 of the scale
FORWARD_TOL = {"nnpack": 5e-5}
GRAD_TOL = 1e-4


def _ran(layer, path):
    """Assert that ``path`` is the path the layer's last call ran (``layer.last_path``, set by
    :func:`convlstm._paths.run`), and that it ran as requested, not as a substitute."""
    assert layer.last_path == path, (layer.last_path, path)
    assert layer.last_path_detail["substituted"] is None, layer.last_path_detail


def _output_size(n, k, s, d, padding):
    return -(-n // s) if padding == "same" else (n - d * (k - 1) - 1) // s + 1


def make_case(path, i):
    """A seeded realistic configuration on which ``path`` applies."""
    rng = random.Random(f"{path}-{i}")
    rank = 2 if path in ("nnpack", "fft") else rng.choice([1, 2, 2, 3])
    size = {1: (32, 64), 2: (16, 32), 3: (6, 10)}[rank]
    kernel = rng.choice([3, 5])
    spatial = tuple(rng.randint(*size) for _ in range(rank))
    padding, strides, dilation = "same", 1, 1
    if path in ("fused", "reference"):
        padding = rng.choice(["same", "valid"])
        mode = rng.random()
        if mode < 0.3:
            strides = 2
        elif mode < 0.5:
            dilation = 2
        if min(_output_size(n, kernel, strides, dilation, padding) for n in spatial) < 2:
            padding = "same"  # a 5x5 kernel dilated by 2 needs 9 pixels under 'valid'
    return dict(rank=rank, spatial=spatial, kernel_size=kernel, padding=padding, strides=strides,
                dilation_rate=dilation, batch=rng.randint(2, 4), steps=rng.randint(4, 6),
                in_channels=rng.choice([1, 2, 4, 8]), filters=rng.choice([8, 16, 32]),
                data_format=rng.choice(["channels_last", "channels_first"]),
                return_sequences=rng.random() < 0.6, go_backwards=rng.random() < 0.25,
                use_bias=rng.random() < 0.85)


CASES = [(path, make_case(path, i)) for path in PATHS for i in range(CASES_PER_PATH)]


def _id(case):
    path, c = case
    return (f"{path}-{c['rank']}d-{'x'.join(map(str, c['spatial']))}-k{c['kernel_size']}-f{c['filters']}"
            f"-c{c['in_channels']}-{c['padding']}-s{c['strides']}-d{c['dilation_rate']}-{c['data_format'][9:]}")


def test_sweep_reaches_what_it_claims():
    """Every path, 1D/2D/3D, kernels 3 and 5, 'valid', strides and dilation where they apply."""
    assert {p for p, _ in CASES} == set(PATHS)
    assert {c["kernel_size"] for _, c in CASES} == {3, 5}
    assert all(c["padding"] == "same" and c["strides"] == 1 and c["dilation_rate"] == 1
               for p, c in CASES if p in ("concat", "nnpack", "fft"))
    assert all(c["rank"] == 2 for p, c in CASES if p in ("nnpack", "fft"))
    assert {c["rank"] for _, c in CASES} == {1, 2, 3}
    assert any(c["padding"] == "valid" for _, c in CASES)
    assert any(c["strides"] > 1 for _, c in CASES) and any(c["dilation_rate"] > 1 for _, c in CASES)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[_id(c) for c in CASES])
def test_forced_path_matches_keras(index, one_thread):
    path, cfg = CASES[index]
    rank = cfg["rank"]
    rng = np.random.default_rng(index)
    kwargs = dict(filters=cfg["filters"], kernel_size=cfg["kernel_size"], strides=cfg["strides"],
                  padding=cfg["padding"], dilation_rate=cfg["dilation_rate"], data_format=cfg["data_format"],
                  use_bias=cfg["use_bias"], return_sequences=cfg["return_sequences"],
                  go_backwards=cfg["go_backwards"])
    ref = KERAS_CLASSES[rank](**kwargs, dtype="float64")
    ours = OURS[rank](**kwargs, in_channels=cfg["in_channels"], implementation=path)
    shape = (cfg["batch"], cfg["steps"]) + cfg["spatial"] + (cfg["in_channels"],)
    x = rng.normal(0, 1, shape).astype("float32")
    if cfg["data_format"] == "channels_first":
        x = np.moveaxis(x, -1, 2).copy()
    ref(torch.from_numpy(x).double())  # build
    # weights of standard deviation 1/sqrt(fan-in) (as Glorot's or trained weights are), so that the
    # gates stay in their working range over the steps instead of saturating; random biases
    ref.set_weights([rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else 0.3, w.shape)
                     for w in ref.get_weights()])
    ours.set_weights(ref.get_weights())
    ours.eval()

    with torch.no_grad():  # inference: the in-place loops
        assert_close(ours(x), ref(torch.from_numpy(x).double(), training=False),
                     tol=FORWARD_TOL.get(path, 2e-5), what=f"{path} inference")
    _ran(ours, path)

    xr = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    xo = torch.tensor(x, requires_grad=True)
    r = ref(xr, training=False)
    o = ours(xo)
    _ran(ours, path)
    assert_close(o, r, tol=FORWARD_TOL.get(path, 2e-5), what=f"{path} forward")
    weight = torch.from_numpy(rng.normal(0, 1, tuple(r.shape)).astype("float32"))
    (r * weight.double()).sum().backward()
    (o * weight).sum().backward()
    assert_close(xo.grad, xr.grad, tol=GRAD_TOL, what=f"{path} d/dx")
    assert_weight_grads_close(ref, ours, rank, tol=GRAD_TOL)


# ----------------------------------------------------------------------- float32 rounding vs Keras's
def _float32_errors(cin, filters, weight_scale, seed, calls=3, steps=4, spatial=(6, 5)):
    """Max |float32 - float64| / scale, after each of ``calls`` stateful calls of a 2D layer with
    ``activation='linear'`` (unbounded outputs), for Keras 3's own float32 and each of our paths;
    the float64 truth is Keras 3 in float64 with the same weights."""
    rng = np.random.default_rng(seed)
    kwargs = dict(filters=filters, kernel_size=3, padding="same", activation="linear", return_sequences=True,
                  stateful=True)
    shape = (2, steps) + spatial + (cin,)
    k64, k32 = KERAS_CLASSES[2](**kwargs, dtype="float64"), KERAS_CLASSES[2](**kwargs, dtype="float32")
    k64(torch.zeros(shape, dtype=torch.float64))
    k32(torch.zeros(shape))
    weights = [rng.normal(0, weight_scale(w), w.shape) for w in k64.get_weights()]
    k64.set_weights(weights)
    k32.set_weights([w.astype("float32") for w in weights])
    layers = {"keras float32": k32}
    for path in ("reference", "fused", "concat"):
        layers[path] = OURS[2](**kwargs, in_channels=cin, implementation=path)
        layers[path].set_weights(weights)
    for layer in (k64, k32):
        layer.reset_states()
    errors = {name: [] for name in layers}
    for _ in range(calls):
        x = rng.normal(0, 1, shape).astype("float32")
        with torch.no_grad():
            truth = k64(torch.from_numpy(x).double(), training=False).numpy()
            scale = np.abs(truth).max()
            for name, layer in layers.items():
                out = layer(torch.from_numpy(x), training=False) if name.startswith("keras") else layer(x)
                errors[name].append(float(np.abs(out.numpy() - truth).max() / scale))
    for path in ("reference", "fused", "concat"):
        _ran(layers[path], path)
    return errors


@pytest.mark.parametrize("cin,filters,weights", [
    (3, 4, "0.3"),            # the outputs grow over the stateful calls (to about 20 after 3 calls)
    (16, 32, "1/sqrt(fan-in)"),
], ids=["3to4-growing", "16to32"])
def test_float32_rounding_of_each_path_is_that_of_keras(cin, filters, weights, one_thread):
    """``activation='linear'`` and stateful calls, where float32 rounding is not much amplified
    yet (Keras's own float32 within 2e-5 of float64): the error of the ``reference`` and ``fused``
    paths is Keras's own float32 error (within 1.5x) and ``concat``'s within 3x of it (measured
    1.0x, and 1.1x-1.3x and 1.7x-1.8x for ``concat``: its one channels-last convolution over :math:`[x_t, h_{t-1}]` sums the
    products of each output in longer chains than the NCHW convolutions Keras runs; see the
    README). Per call, the geometric mean over 12 seeds of each seed's ratio (a seed whose rounding
    happens to be amplified would dominate a mean of the errors)."""
    scale = (lambda w: 0.3) if weights == "0.3" else (lambda w: 1 / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else 0.3)
    runs = [_float32_errors(cin, filters, scale, seed) for seed in range(12)]
    keras = np.array([r["keras float32"] for r in runs])  # (seed, call)
    assert keras.max() < 2e-5, keras.max(axis=0)  # Keras itself within the parity bound
    # measured on a 2-core AMD EPYC: 1.0x, 1.0x, 1.7x-1.8x; the bounds leave room for another CPU's kernels
    for path, bound in (("reference", 1.5), ("fused", 1.5), ("concat", 3.0)):
        ratio = np.exp(np.log(np.array([r[path] for r in runs]) / keras).mean(axis=0))
        assert ratio.max() <= bound, f"{path}: {ratio} x Keras's own float32 error (per call)"


def test_growing_stateful_outputs_amplify_float32_rounding_keras_included(one_thread):
    """What the 2e-5 bound does not cover (README): with ``activation='linear'`` and weights of
    scale 0.3, the outputs grow over stateful calls (to 1e2-1e3 after 8) and float32 rounding is
    amplified: Keras's own float32 then departs from float64 by more than 2e-5 of the scale."""
    runs = [_float32_errors(3, 4, lambda w: 0.3, seed, calls=8) for seed in range(6)]
    keras_last = np.mean([r["keras float32"][-1] for r in runs])
    assert keras_last > 2e-5, keras_last
