"""bfloat16 and float16 through the fast paths: under ``torch.autocast`` and for a module cast to
16 bits.

The convolutions run in the 16-bit format, the gate arithmetic and the cell state in float32
(docs/precision.md). The truth is the reference path in float64 (an independent schedule, no
autocast); the bounds are relative to the output's (or each gradient's) largest magnitude, in units
of the format's rounding error ``u`` (:data:`UNIT`: 2^-9 = 2e-3 for bfloat16's 8 significant bits,
2^-12 = 2.4e-4 for float16's 11):

- forward within 5u and gradients within 10u (measured: bfloat16 1.7u to 3.3u, float16 2u to 5u);
- over T=100 steps the output within 10u (the cell state does not drift; measured 2.3u / 2.1u)
  and, under autocast, the bias gradient (summed in float32) within 10u (measured up to 2u), the
  other gradients within 15u for bfloat16 (measured up to 6u) and 40u for float16: torch's CPU
  float16 convolution backward does not round its weight gradient once, its error grows with the
  number of positions summed (a convolution over 200 frames of 8x8: 5.1e-3 = 21u in float16,
  against 2.5e-3 = 1.3u in bfloat16), and over 100 steps that gives 3.0e-3 (12u, ``fused``) and
  5.3e-3 (22u, ``concat``).

Each test asserts the path that ran (``last_path``), the loop (``last_path_detail["loop"]``) and,
in training, the hand-written autograd node found in the graph itself.
"""
import warnings

import pytest
import torch

import convlstm
from convlstm import _paths
from _helpers import grad_fn_names as _grad_fn_names

BF16, FP16 = torch.bfloat16, torch.float16
#: the rounding error of each 16-bit format, 2^-(significant bits)
UNIT = {BF16: 2.0 ** -9, FP16: 2.0 ** -12}
#: the bounds, in units of UNIT (module docstring)
BOUND = {"output": 5, "gradients": 10, "output_100": 10, "bias_100": 10, "gradients_100": {BF16: 15, FP16: 40}}


def _cpu_float16_autocast() -> bool:
    """Whether this torch's CPU autocast takes float16 (older ones warn and turn it off)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.autocast("cpu", dtype=FP16):
            return torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 1, 1)).dtype == FP16


DTYPES = [pytest.param(BF16, id="bf16"),
          pytest.param(FP16, id="fp16", marks=pytest.mark.skipif(not _cpu_float16_autocast(),
                                                                 reason="this torch's CPU autocast has no float16"))]


def tol(dtype, what):
    bound = BOUND[what]
    return UNIT[dtype] * (bound[dtype] if isinstance(bound, dict) else bound)
# the training node each path runs through under autocast, as found in the autograd graph
NODE = {"fused": "GateUpdateBackward", "concat": "ConcatRecurrenceBackward"}
LOOP = {("fused", True): "GateUpdate", ("fused", False): "hoisted_inference",
        ("concat", True): "ConcatRecurrence", ("concat", False): "concat_inference",
        ("reference", True): "cell.step", ("reference", False): "cell.step"}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _pair(path, steps=5, kernel=3, filters=8, channels=3, spatial=(8, 7), checkpoint_chunk=None, **kwargs):
    """A float64 reference layer, a float32 ``path`` layer with the same weights, an input."""
    torch.manual_seed(0)
    ref = convlstm.ConvLSTM2D(filters, kernel, padding="same", return_sequences=True, in_channels=channels,
                              implementation="reference", **kwargs).double()
    with torch.no_grad():  # a random bias, so that every term matters
        ref.cell.bias.copy_(torch.linspace(-0.5, 0.5, ref.cell.bias.numel()))
    layer = convlstm.ConvLSTM2D(filters, kernel, padding="same", return_sequences=True, in_channels=channels,
                                implementation=path, checkpoint_chunk=checkpoint_chunk, **kwargs)
    layer.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    x = torch.randn((2, steps) + spatial + (channels,), generator=torch.Generator().manual_seed(1))
    return ref, layer, x


def _run(layer, x, autocast, grad=True, dtype=BF16, **call):
    """Output (float64) and the gradients of the input and parameters (float64), under ``dtype``'s
    autocast when ``autocast``."""
    x = x.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype, enabled=autocast):
        out = layer(x, **call)
    y = out[0] if isinstance(out, tuple) else out
    if not grad:
        return out, y.double(), None
    weights = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view(y.shape)
    layer.zero_grad()
    (y.double() * weights).sum().backward()
    return out, y.detach().double(), [x.grad.double()] + [p.grad.double() for p in layer.parameters()]


def _close(a, b, tol, what):
    if isinstance(a, list):
        for i, (u, v) in enumerate(zip(a, b)):
            _close(u, v, tol, f"{what}[{i}]")
        return
    scale = float(b.abs().max())
    err = float((a.double() - b).abs().max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} x {scale:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["fused", "concat", "reference"])
@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_fast_paths_run_under_autocast_and_match_float64(path, grad, dtype):
    ref, layer, x = _pair(path, return_state=True)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False, grad=grad)
    out, y, g = _run(layer, x, autocast=True, grad=grad, dtype=dtype)
    assert layer.last_path == path
    detail = layer.last_path_detail
    assert detail["loop"] == LOOP[path, grad], detail
    assert (detail["compute_dtype"], detail["state_dtype"]) == (dtype, torch.float32)
    seq, h, c = out
    assert seq.dtype == h.dtype == dtype and c.dtype == torch.float32  # h in 16 bits, the cell state in float32
    _close(y, y_ref, tol(dtype, "output"), f"{path} output")
    if grad:
        _close(g, g_ref, tol(dtype, "gradients"), f"{path} gradients")
        if path in NODE:
            with torch.autocast("cpu", dtype=dtype):
                names = _grad_fn_names(layer(x)[0])
            assert NODE[path] in names, names


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["fused", "concat"])
def test_no_drift_over_100_steps_under_autocast(path, dtype):
    """16-bit convolutions, float32 cell state: after 100 steps the output is still within 10u of
    float64's (relative to its scale), and the gradients through all of them within 10u (bias),
    15u (bfloat16) or 40u (float16, see the module docstring)."""
    ref, layer, x = _pair(path, steps=100, spatial=(8, 8))
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    _, y, g = _run(layer, x, autocast=True, dtype=dtype)
    assert (layer.last_path, layer.last_path_detail["loop"]) == (path, LOOP[path, True])
    assert layer.last_path_detail["compute_dtype"] == dtype
    _close(y, y_ref, tol(dtype, "output_100"), f"{path} output over 100 steps")
    names = ["input"] + [name for name, _ in layer.named_parameters()]
    for name, a, b in zip(names, g, g_ref):
        bound = tol(dtype, "bias_100" if name.endswith("bias") else "gradients_100")
        _close(a, b, bound, f"{path} gradient of {name} over 100 steps")


@pytest.mark.parametrize("path,options,loop", [
    ("concat", dict(mask=True), "GateUpdate"),                   # a mask: concat's per-step loop
    # the cell's update, in float32 (a smooth activation: relu's kink turns bfloat16 rounding near
    # 0 into gradient differences of 8e-2, torch's own autocast through autograd included)
    ("fused", dict(activation="swish"), "cell.update"),
    ("concat", dict(checkpoint_chunk=2), "ConcatRecurrence"),    # recomputed under the same autocast
], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_other_loops_under_autocast(path, options, loop, dtype):
    options = dict(options)
    mask = options.pop("mask", None)
    ref, layer, x = _pair(path, **options)
    call = {}
    if mask:
        call["mask"] = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False, **call)
    _, y, g = _run(layer, x, autocast=True, dtype=dtype, **call)
    assert (layer.last_path, layer.last_path_detail["loop"]) == (path, loop)
    assert layer.last_path_detail["compute_dtype"] == dtype
    _close(y, y_ref, tol(dtype, "output"), "output")
    _close(g, g_ref, tol(dtype, "gradients"), "gradients")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["nnpack", "fft"])
def test_float32_only_paths_warn_under_autocast(path, dtype):
    """NNPACK and the spectral convolutions are float32 only: forced under autocast they warn and
    ``"concat"``'s node runs in the 16-bit format instead."""
    ref, layer, x = _pair(path, kernel=5)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    name = str(dtype).replace("torch.", "")
    with pytest.warns(UserWarning, match=rf"implementation='{path}' cannot run here, 'concat' ran instead: "
                                         rf".*{name} under torch.autocast"):
        _, y, g = _run(layer, x, autocast=True, dtype=dtype)
    assert (layer.last_path, layer.last_path_detail["loop"]) == ("concat", "ConcatRecurrence")
    assert layer.last_path_detail["convolutions"] == "torch"
    assert layer.last_path_detail["compute_dtype"] == dtype
    _close(y, y_ref, tol(dtype, "output"), "output")
    _close(g, g_ref, tol(dtype, "gradients"), "gradients")


@pytest.mark.parametrize("dtype", DTYPES)
def test_auto_chooses_among_paths_that_support_autocast(monkeypatch, dtype):
    """A layer for which float32 ``"auto"`` picks the spectral path gets ``"concat"`` under autocast,
    without a warning (auto only chooses)."""
    big5 = convlstm.ConvLSTM2D(64, 5, padding="same", in_channels=2)
    xb = torch.zeros(8, 12, 2, 32, 32)
    assert _paths.auto_path(big5, xb, (32, 32)) == "fft"
    with torch.autocast("cpu", dtype=dtype):
        assert _paths.auto_path(big5, xb, (32, 32)) == "concat"
    valid = convlstm.ConvLSTM2D(64, 3, padding="valid", in_channels=2)  # concat needs 'same'
    with torch.autocast("cpu", dtype=dtype):
        assert _paths.auto_path(valid, xb, (30, 30)) == "fused"
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    _, layer, x = _pair("auto", kernel=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(layer, x, autocast=False)
        assert layer.last_path == "fft"
        _run(layer, x, autocast=True, dtype=dtype)
        assert layer.last_path == "concat" and layer.last_path_detail["compute_dtype"] == dtype


@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("path", ["fused", "concat", "reference"])
def test_module_cast_to_16_bits(path, dtype):
    """``layer.to(torch.bfloat16)`` (or ``torch.float16``) without autocast: 16-bit parameters,
    inputs and outputs (the returned cell state too); inside, the cell state and gate arithmetic
    are float32."""
    ref, layer, x = _pair(path, return_state=True)
    layer = layer.to(dtype)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    (seq, h, c), y, g = _run(layer, x.to(dtype), autocast=False)
    assert (seq.dtype, h.dtype, c.dtype) == (dtype, dtype, dtype)
    assert all(p.grad.dtype == dtype for p in layer.parameters())
    assert layer.last_path == path and layer.last_path_detail["loop"] == LOOP[path, True]
    assert (layer.last_path_detail["compute_dtype"], layer.last_path_detail["state_dtype"]) == (dtype, torch.float32)
    _close(y, y_ref, tol(dtype, "output"), "output")
    _close(g, g_ref, tol(dtype, "gradients"), "gradients")
    with torch.no_grad():
        _close(layer(x.to(dtype))[0].double(), y_ref, tol(dtype, "output"), "inference")
    assert layer.last_path_detail["loop"] == LOOP[path, False]


@pytest.mark.parametrize("dtype", [BF16, FP16], ids=["bf16", "fp16"])
def test_gate_update_mixed_precision_backward(dtype):
    """:class:`GateUpdate` with 16-bit pre-activations and a float32 cell state: float32 inside,
    ``h`` rounded to 16 bits; its gradients equal torch's autograd of the update written with
    ``tanh`` in float64 on the same (16-bit-valued) inputs, within 16-bit rounding (2u for ``h``,
    4u for the pre-activations' gradients)."""
    from convlstm._gates import GateUpdate

    g = torch.Generator().manual_seed(2)
    a = (2 * torch.randn(2, 16, 3, 3, generator=g)).to(dtype).requires_grad_()
    b = torch.randn(2, 16, 3, 3, generator=g).to(dtype).requires_grad_()
    c = torch.randn(2, 4, 3, 3, generator=g).requires_grad_()
    h, c_new = GateUpdate.apply(a, b, c)
    assert (h.dtype, c_new.dtype) == (dtype, torch.float32)
    # the weight of h's gradient representable in 16 bits (h's gradient is 16-bit)
    wh, wc = torch.randn(2, 4, 3, 3, generator=g).to(dtype).float(), torch.randn(2, 4, 3, 3, generator=g)
    ours = torch.autograd.grad((h.float() * wh).sum() + (c_new * wc).sum(), (a, b, c))
    a64, b64, c64 = (t.detach().double().requires_grad_() for t in (a, b, c))
    i, f, g2, o = (a64 + b64).split(4, dim=1)
    c_ref = torch.sigmoid(f) * c64 + torch.sigmoid(i) * torch.tanh(g2 / 2)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    theirs = torch.autograd.grad((h_ref * wh).sum() + (c_ref * wc).sum(), (a64, b64, c64))
    _close(c_new.detach().double(), c_ref.detach(), 1e-6, "c_t (float32)")
    _close(h.detach().double(), h_ref.detach(), 2 * UNIT[dtype], "h_t (16 bits)")
    assert ours[0].dtype == ours[1].dtype == dtype and ours[2].dtype == torch.float32
    _close([t.double() for t in ours[:2]], list(theirs[:2]), 4 * UNIT[dtype], "pre-activation gradients (16 bits)")
    _close(ours[2].double(), theirs[2], 1e-6, "cell-state gradient (float32)")


def test_bf16_mixed_training_reaches_the_fast_paths(capsys, tmp_path, monkeypatch):
    """``convlstm demo --precision bf16-mixed``: Lightning's autocast reaches the layers, whose
    training steps run a fast loop (hand-written node or GateUpdate) with bfloat16 convolutions
    and a float32 cell state."""
    import lightning  # noqa: F401
    from convlstm import cli

    seen = []
    run = _paths.run

    def recording(layer, *args, **kwargs):
        out = run(layer, *args, **kwargs)
        seen.append((torch.is_grad_enabled(), dict(layer.last_path_detail)))
        return out

    monkeypatch.setattr(_paths, "run", recording)
    for precision, dtype in (("bf16-mixed", BF16),):
        seen.clear()
        assert cli.main(["demo", "--quick", "--precision", precision, "--run-dir", str(tmp_path / precision),
                         "--no-progress"]) == 0
        assert f"precision: {precision}" in capsys.readouterr().out
        training = [d for grad, d in seen if grad]
        assert training, "no training step went through a ConvLSTM layer"
        for d in training:
            assert d["loop"] in ("GateUpdate", "ConcatRecurrence"), d
            assert (d["compute_dtype"], d["state_dtype"]) == (dtype, torch.float32), d
