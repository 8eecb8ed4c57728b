"""bfloat16 through the fast paths: under ``torch.autocast`` and for a module cast to bfloat16.

The convolutions run in bfloat16 (8 bits of mantissa: a rounding error of 2^-9 = 2e-3 of each
operand), the gate arithmetic and the cell state in float32 (docs/precision.md). The truth is the
reference path in float64 (an independent schedule, no autocast); the bounds are relative to the
output's (or each gradient's) largest magnitude:

- forward within 1e-2 and gradients within 2e-2 (measured: 4e-3 to 6e-3);
- over T=100 steps the output within 2e-2 (the cell state does not drift; measured 4.5e-3) and,
  under autocast, the gradients within 3e-2 (measured up to 1.2e-2).

Each test asserts the path that ran (``last_path``), the loop (``last_path_detail["loop"]``) and,
in training, the hand-written autograd node found in the graph itself.
"""
import warnings

import pytest
import torch

import convlstm
from convlstm import _paths
from _helpers import grad_fn_names as _grad_fn_names

BF16 = torch.bfloat16
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


def _run(layer, x, autocast, grad=True, **call):
    """Output (float64) and the gradients of the input and parameters (float64)."""
    x = x.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=BF16, enabled=autocast):
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


@pytest.mark.parametrize("path", ["fused", "concat", "reference"])
@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_fast_paths_run_under_autocast_and_match_float64(path, grad):
    ref, layer, x = _pair(path, return_state=True)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False, grad=grad)
    out, y, g = _run(layer, x, autocast=True, grad=grad)
    assert layer.last_path == path
    detail = layer.last_path_detail
    assert detail["loop"] == LOOP[path, grad], detail
    assert (detail["compute_dtype"], detail["state_dtype"]) == (BF16, torch.float32)
    seq, h, c = out
    assert seq.dtype == h.dtype == BF16 and c.dtype == torch.float32  # h in bf16, the cell state in float32
    _close(y, y_ref, 1e-2, f"{path} output")
    if grad:
        _close(g, g_ref, 2e-2, f"{path} gradients")
        if path in NODE:
            with torch.autocast("cpu", dtype=BF16):
                names = _grad_fn_names(layer(x)[0])
            assert NODE[path] in names, names


@pytest.mark.parametrize("path", ["fused", "concat"])
def test_no_drift_over_100_steps_under_autocast(path):
    """bfloat16 convolutions, float32 cell state: after 100 steps the output is still within 2e-2
    of float64's (relative to its scale), and so are the gradients through all of them."""
    ref, layer, x = _pair(path, steps=100, spatial=(8, 8))
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    _, y, g = _run(layer, x, autocast=True)
    assert (layer.last_path, layer.last_path_detail["loop"]) == (path, LOOP[path, True])
    _close(y, y_ref, 2e-2, f"{path} output over 100 steps")
    _close(g, g_ref, 3e-2, f"{path} gradients over 100 steps")


@pytest.mark.parametrize("path,options,loop", [
    ("concat", dict(mask=True), "GateUpdate"),                   # a mask: concat's per-step loop
    # the cell's update, in float32 (a smooth activation: relu's kink turns bfloat16 rounding near
    # 0 into gradient differences of 8e-2, torch's own autocast through autograd included)
    ("fused", dict(activation="swish"), "cell.update"),
    ("concat", dict(checkpoint_chunk=2), "ConcatRecurrence"),    # recomputed under the same autocast
], ids=str)
def test_other_loops_under_autocast(path, options, loop):
    options = dict(options)
    mask = options.pop("mask", None)
    ref, layer, x = _pair(path, **options)
    call = {}
    if mask:
        call["mask"] = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False, **call)
    _, y, g = _run(layer, x, autocast=True, **call)
    assert (layer.last_path, layer.last_path_detail["loop"]) == (path, loop)
    _close(y, y_ref, 1e-2, "output")
    _close(g, g_ref, 2e-2, "gradients")


@pytest.mark.parametrize("path", ["nnpack", "fft"])
def test_float32_only_paths_warn_under_autocast(path):
    """NNPACK and the spectral convolutions are float32 only: forced under autocast they warn and
    ``"concat"``'s node runs in bfloat16 instead."""
    ref, layer, x = _pair(path, kernel=5)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    with pytest.warns(UserWarning, match=rf"implementation='{path}' cannot run here, 'concat' ran instead: "
                                         r".*bfloat16 under torch.autocast"):
        _, y, g = _run(layer, x, autocast=True)
    assert (layer.last_path, layer.last_path_detail["loop"]) == ("concat", "ConcatRecurrence")
    assert layer.last_path_detail["convolutions"] == "torch"
    _close(y, y_ref, 1e-2, "output")
    _close(g, g_ref, 2e-2, "gradients")


def test_auto_chooses_among_paths_that_support_autocast(monkeypatch):
    """A layer for which float32 ``"auto"`` picks the spectral path gets ``"concat"`` under autocast,
    without a warning (auto only chooses)."""
    big5 = convlstm.ConvLSTM2D(64, 5, padding="same", in_channels=2)
    xb = torch.zeros(8, 12, 2, 32, 32)
    assert _paths.auto_path(big5, xb, (32, 32)) == "fft"
    with torch.autocast("cpu", dtype=BF16):
        assert _paths.auto_path(big5, xb, (32, 32)) == "concat"
    valid = convlstm.ConvLSTM2D(64, 3, padding="valid", in_channels=2)  # concat needs 'same'
    with torch.autocast("cpu", dtype=BF16):
        assert _paths.auto_path(valid, xb, (30, 30)) == "fused"
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)
    _, layer, x = _pair("auto", kernel=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(layer, x, autocast=False)
        assert layer.last_path == "fft"
        _run(layer, x, autocast=True)
        assert layer.last_path == "concat"


@pytest.mark.parametrize("path", ["fused", "concat", "reference"])
def test_module_cast_to_bfloat16(path):
    """``layer.to(torch.bfloat16)`` without autocast: bfloat16 parameters, inputs and outputs
    (the returned cell state too); inside, the cell state and gate arithmetic are float32."""
    ref, layer, x = _pair(path, return_state=True)
    layer = layer.to(BF16)
    _, y_ref, g_ref = _run(ref, x.double(), autocast=False)
    (seq, h, c), y, g = _run(layer, x.to(BF16), autocast=False)
    assert (seq.dtype, h.dtype, c.dtype) == (BF16, BF16, BF16)
    assert all(p.grad.dtype == BF16 for p in layer.parameters())
    assert layer.last_path == path and layer.last_path_detail["loop"] == LOOP[path, True]
    assert layer.last_path_detail["state_dtype"] == torch.float32
    _close(y, y_ref, 1e-2, "output")
    _close(g, g_ref, 2e-2, "gradients")
    with torch.no_grad():
        _close(layer(x.to(BF16))[0].double(), y_ref, 1e-2, "inference")
    assert layer.last_path_detail["loop"] == LOOP[path, False]


def test_gate_update_mixed_precision_backward():
    """:class:`GateUpdate` with bfloat16 pre-activations and a float32 cell state: float32 inside,
    ``h`` rounded to bfloat16; its gradients equal torch's autograd of the update written with
    ``tanh`` in float64 on the same (bfloat16-valued) inputs, within bfloat16 rounding."""
    from convlstm._gates import GateUpdate

    g = torch.Generator().manual_seed(2)
    a = (2 * torch.randn(2, 16, 3, 3, generator=g)).to(BF16).requires_grad_()
    b = torch.randn(2, 16, 3, 3, generator=g).to(BF16).requires_grad_()
    c = torch.randn(2, 4, 3, 3, generator=g).requires_grad_()
    h, c_new = GateUpdate.apply(a, b, c)
    assert (h.dtype, c_new.dtype) == (BF16, torch.float32)
    # the weight of h's gradient representable in bfloat16 (h's gradient is bfloat16)
    wh, wc = torch.randn(2, 4, 3, 3, generator=g).to(BF16).float(), torch.randn(2, 4, 3, 3, generator=g)
    ours = torch.autograd.grad((h.float() * wh).sum() + (c_new * wc).sum(), (a, b, c))
    a64, b64, c64 = (t.detach().double().requires_grad_() for t in (a, b, c))
    i, f, g2, o = (a64 + b64).split(4, dim=1)
    c_ref = torch.sigmoid(f) * c64 + torch.sigmoid(i) * torch.tanh(g2 / 2)
    h_ref = torch.sigmoid(o) * torch.tanh(c_ref)
    theirs = torch.autograd.grad((h_ref * wh).sum() + (c_ref * wc).sum(), (a64, b64, c64))
    _close(c_new.detach().double(), c_ref.detach(), 1e-6, "c_t (float32)")
    _close(h.detach().double(), h_ref.detach(), 4e-3, "h_t (bfloat16)")
    assert ours[0].dtype == ours[1].dtype == BF16 and ours[2].dtype == torch.float32
    _close([t.double() for t in ours[:2]], list(theirs[:2]), 8e-3, "pre-activation gradients (bfloat16)")
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
