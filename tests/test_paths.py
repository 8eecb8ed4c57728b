"""Every compute path (``implementation=``) computes what the reference path computes.

The paths differ in memory layout (channels-last), in how the input convolution is scheduled
(hoisted over all steps or concatenated with the state per step), in the convolution backend
(oneDNN or NNPACK) and in the gate update (one autograd node, in-place without autograd), so
the outputs agree to float32 rounding, not bit for bit: forward within 1e-5 and gradients within
1e-4 of their scale. Checkpointing through time must give the reference's gradients, and
``torch.compile`` must trace every path's time loop without graph breaks.

Every test asserts the path that ran (``layer.last_path``), and for the fast paths in training
the autograd node it ran through (from the graph, not from the library's own record): a test
named after a path cannot pass by testing another. A forced path that cannot apply must warn and
name the path that ran (the expectations are written out here, not asked of the library).
"""
import contextlib
import itertools
import warnings

import pytest
import torch

import convlstm
from convlstm import _paths
from _helpers import grad_fn_names as _grad_fn_names

PATHS = ["fused", "concat", "nnpack", "fft", "auto"]
FAST_PATHS = ["fused", "concat", "nnpack", "fft"]  # "auto" picks one of them (see test_auto_rule)
CLASSES = {1: convlstm.ConvLSTM1D, 2: convlstm.ConvLSTM2D, 3: convlstm.ConvLSTM3D}
SPATIAL = {1: (7,), 2: (6, 5), 3: (4, 5, 3)}


def _pair(rank, path, *, in_channels=3, filters=4, seed=None, **kwargs):
    """A reference layer and a ``path`` layer with the same weights (and dropout seed)."""
    torch.manual_seed(0)
    cls = CLASSES[rank]
    ref = cls(filters, kwargs.pop("kernel_size", 3), in_channels=in_channels, seed=seed,
              implementation="reference", **kwargs)
    other = cls(filters, ref.kernel_size, in_channels=in_channels, seed=seed, implementation=path, **kwargs)
    other.load_state_dict(ref.state_dict())
    if ref.cell.bias is not None:
        with torch.no_grad():  # random biases so that every term matters
            for layer in (ref, other):
                layer.cell.bias.copy_(torch.linspace(-0.5, 0.5, layer.cell.bias.numel()))
    return ref, other


def _input(rank, data_format, batch=2, steps=4, channels=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    spatial = SPATIAL[rank]
    shape = (batch, steps) + (spatial + (channels,) if data_format == "channels_last" else (channels,) + spatial)
    return torch.randn(shape, generator=g)


# NNPACK convolves with FFT or Winograd tiles: float32 rounding of a different algorithm, up to
# about 2e-5 of the output's scale on these small cases (the direct paths stay within 2e-6)
NNPACK_TOL = 5e-5


def _tol(path, tol):
    return max(tol, NNPACK_TOL) if path == "nnpack" else tol


def _close(a, b, tol, what):
    if isinstance(a, (tuple, list)):
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, tol, f"{what}[{i}]")
        return
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = max(float(b.abs().max()), 1e-6)
    err = float((a - b).abs().max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} x {scale:.3g}"


# the autograd node a path's training loop runs through (a ConcatRecurrence for the whole loop,
# or one GateUpdate per step), for the default activations without mask
TRAINING_NODE = {"fused": "GateUpdateBackward", "concat": "ConcatRecurrenceBackward",
                 "nnpack": "ConcatRecurrenceBackward", "fft": "ConcatRecurrenceBackward"}


@contextlib.contextmanager
def _runs(layer, path, substituted=False):
    """Assert that the calls inside ran ``path`` (``layer.last_path``) and warned about a
    substitution exactly when ``substituted``: the warning names the request and ``path``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    ours = [str(w.message) for w in caught if "cannot run here" in str(w.message)]
    assert layer.last_path == path, (layer.last_path, layer.last_path_detail)
    if substituted:
        assert ours and all(f"implementation={layer.implementation!r}" in m and f"{path!r} ran instead" in m
                            for m in ours), ours
    else:
        assert not ours, ours


def _forward_and_grads(layer, x, **call):
    x = x.clone().requires_grad_(True)
    out = layer(x, **call)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs)
    layer.zero_grad()
    loss.backward()
    grads = [x.grad] + [p.grad.clone() for p in layer.parameters()]
    return tuple(o.detach() for o in outs), grads


# nnpack and fft are 2D only: their rank 1 and 3 cases are in test_unavailable_path_warns
CASES = [(rank, fmt, path) for rank, fmt in itertools.product([1, 2, 3], ["channels_last", "channels_first"])
         for path in PATHS if rank == 2 or path not in ("nnpack", "fft")]


@pytest.mark.parametrize("rank,data_format,path", CASES)
def test_path_matches_reference_forward_and_gradients(path, rank, data_format):
    ref, other = _pair(rank, path, padding="same", data_format=data_format, return_sequences=True,
                       return_state=True)
    ran = "concat" if path == "auto" else path  # the rule's choice with 'same' padding (test_auto_rule)
    x = _input(rank, data_format)
    with torch.no_grad(), _runs(other, ran):  # the inference loops (in place, preallocated output)
        _close(other(x), ref(x), _tol(path, 1e-5), f"{path} inference")
    out_r, g_r = _forward_and_grads(ref, x)
    with _runs(other, ran):
        out_o, g_o = _forward_and_grads(other, x)
        assert TRAINING_NODE[ran] in _grad_fn_names(other(x)[0])
    _close(out_o, out_r, _tol(path, 1e-5), f"{path} forward")
    _close(g_o, g_r, _tol(path, 1e-4), f"{path} gradients")


# (options, forced path) -> the path that runs instead, written out from the documented
# conditions: "concat" (and nnpack, fft) need 'same', strides 1, dilation 1, no dropout (which
# acts in training only); "fft" needs odd kernels and the default activations without peepholes
_NEEDS_SAME = ("padding=valid", "strides=2", "dilation_rate=2")
_FFT_ONLY = ("kernel_size=2", "activation=relu", "peephole=True")


def _expected_path(options, path, training):
    key = ",".join(f"{k}={v}" for k, v in options.items())
    needs_same = _NEEDS_SAME + (("dropout=0.3",) if training else ())
    if path in ("concat", "nnpack", "fft") and any(n in key for n in needs_same):
        return "fused"
    if path == "fft" and any(n in key for n in _FFT_ONLY):
        return "concat"
    return path


OPTIONS = [
    dict(padding="valid"),
    dict(padding="same", kernel_size=2),                      # TF's asymmetric 'same' pads
    dict(padding="same", strides=2),
    dict(padding="valid", dilation_rate=2),
    dict(padding="same", go_backwards=True),
    dict(padding="same", return_sequences=False),
    dict(padding="same", activation="relu", recurrent_activation="hard_sigmoid"),
    dict(padding="same", use_bias=False),
    dict(padding="same", peephole=True),
    dict(padding="same", dropout=0.3, recurrent_dropout=0.2, seed=5),
]


@pytest.mark.parametrize("path", FAST_PATHS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_path_matches_reference_with_options(path, options):
    options = dict(options)
    options.setdefault("return_sequences", True)
    ref, other = _pair(2, path, **options)
    if options.get("peephole"):
        with torch.no_grad():
            for layer in (ref, other):
                for p in (layer.cell.peephole_i, layer.cell.peephole_f, layer.cell.peephole_o):
                    p.copy_(torch.linspace(-0.3, 0.3, p.numel()))
    x = _input(2, "channels_last", steps=5)
    ran = _expected_path(options, path, training=True)
    ref.train(), other.train()  # dropout is active in training only
    out_r, g_r = _forward_and_grads(ref, x)
    with _runs(other, ran, substituted=ran != path):
        out_o, g_o = _forward_and_grads(other, x)
    _close(out_o, out_r, _tol(path, 1e-5), f"{path} forward")
    _close(g_o, g_r, _tol(path, 1e-4), f"{path} gradients")
    ref.eval(), other.eval()
    ran = _expected_path(options, path, training=False)
    with torch.no_grad(), _runs(other, ran, substituted=ran != path):
        _close(other(x), ref(x), _tol(path, 1e-5), f"{path} inference")


@pytest.mark.parametrize("path", PATHS)
def test_path_with_mask_and_initial_state(path):
    ref, other = _pair(2, path, padding="same", return_sequences=True, return_state=True)
    x = _input(2, "channels_last", steps=5)
    mask = torch.tensor([[True, False, True, True, False], [False, True, True, False, True]])
    h0 = torch.randn(2, 6, 5, 4)
    c0 = torch.randn(2, 6, 5, 4)
    call = dict(mask=mask, initial_state=[h0, c0])
    # "fft" cannot take a mask (it runs "concat" and says so); "auto" picks "concat" ('same' padding)
    ran = {"fft": "concat", "auto": "concat"}.get(path, path)
    out_r, g_r = _forward_and_grads(ref, x, **call)
    with _runs(other, ran, substituted=path == "fft"):
        out_o, g_o = _forward_and_grads(other, x, **call)
    _close(out_o, out_r, _tol(path, 1e-5), f"{path} forward")
    _close(g_o, g_r, _tol(path, 1e-4), f"{path} gradients")
    with torch.no_grad(), _runs(other, "concat" if path == "auto" else path):  # no mask: fft applies
        _close(other(x, initial_state=[h0, c0]), ref(x, initial_state=[h0, c0]), _tol(path, 1e-5),
               f"{path} inference")


@pytest.mark.parametrize("path", FAST_PATHS)
def test_path_stateful(path):
    ref, other = _pair(2, path, padding="same", stateful=True)
    x1, x2 = _input(2, "channels_last", seed=1), _input(2, "channels_last", seed=2)
    with torch.no_grad():
        for x in (x1, x2):
            with _runs(other, path):
                _close(other(x), ref(x), _tol(path, 1e-5), f"{path} stateful")
        _close(other.states, ref.states, _tol(path, 1e-5), f"{path} states")


@pytest.mark.parametrize("path,chunk", [("reference", 3), ("fused", True), ("fused", 2), ("concat", 3),
                                        ("nnpack", 2), ("fft", 3)])
def test_checkpoint_through_time_gives_the_same_gradients(path, chunk):
    ref, _ = _pair(2, "reference", padding="same", return_sequences=True)
    _, ck = _pair(2, path, padding="same", return_sequences=True, checkpoint_chunk=chunk)
    x = _input(2, "channels_last", steps=7)
    out_r, g_r = _forward_and_grads(ref, x)
    ran = "fused" if path == "reference" else path  # checkpointing is built on the fused schedule
    with _runs(ck, ran, substituted=path == "reference"):
        out_c, g_c = _forward_and_grads(ck, x)
    _close(out_c, out_r, _tol(path, 1e-5), "checkpointed forward")
    _close(g_c, g_r, _tol(path, 1e-4), "checkpointed gradients")


def test_path_arguments_are_checked():
    with pytest.raises(ValueError, match=r"implementation='fast' is not allowed; allowed: 'auto', 'reference'"):
        convlstm.ConvLSTM2D(2, 3, implementation="fast")
    with pytest.raises(ValueError, match=r"checkpoint_chunk must be None, True or a positive int"):
        convlstm.ConvLSTM2D(2, 3, checkpoint_chunk=0)


def test_auto_rule():
    """``"auto"`` follows the documented rule of :func:`convlstm._paths.auto_path`, the same for
    inference and training."""
    for grad in (False, True):
        small = convlstm.ConvLSTM2D(8, 3, padding="same", in_channels=2)
        x = torch.zeros(2, 3, 2, 8, 8)  # small, 'same': one convolution over [x_t, h_{t-1}] per step
        assert _paths.auto_path(small, x, (8, 8), grad=grad) == "concat"
        for cls, spatial in ((convlstm.ConvLSTM1D, (8,)), (convlstm.ConvLSTM3D, (4, 4, 4))):
            layer = cls(8, 3, padding="same", in_channels=2)
            assert _paths.auto_path(layer, torch.zeros((2, 3, 2) + spatial), spatial, grad=grad) == "concat"
        strided = convlstm.ConvLSTM2D(8, 3, padding="same", strides=2, in_channels=2)
        assert _paths.auto_path(strided, x, (4, 4), grad=grad) == "fused"  # concat needs strides 1
        dilated = convlstm.ConvLSTM2D(8, 3, padding="same", dilation_rate=2, in_channels=2)
        assert _paths.auto_path(dilated, x, (8, 8), grad=grad) == "fused"  # and dilation 1
        big = convlstm.ConvLSTM2D(64, 3, padding="same", in_channels=2)
        xb = torch.zeros(8, 12, 2, 32, 32)
        assert _paths.auto_path(big, xb, (32, 32), grad=grad) == "concat"  # 3x3: direct
        big5 = convlstm.ConvLSTM2D(64, 5, padding="same", in_channels=2)  # 5x5 on 32x32: "fft"
        assert _paths.auto_path(big5, xb, (32, 32), grad=grad) == "fft"
        x64 = torch.zeros(2, 4, 2, 64, 64)  # 5x5 on 64x64: NNPACK one image at a time
        expected = "nnpack" if torch._nnpack_available() else "fft"  # torch's own answer, not the rule's
        assert _paths.auto_path(big5, x64, (64, 64), grad=grad) == expected
        wide5 = convlstm.ConvLSTM2D(512, 5, padding="same", in_channels=2)  # an 8.5 GB kernel spectrum
        x40 = torch.zeros(2, 3, 2, 40, 40)
        assert _paths.auto_path(wide5, x40, (40, 40), grad=grad) == "concat"
        tiny5 = convlstm.ConvLSTM2D(4, 5, padding="same", in_channels=2)  # below AUTO_FAST_CONV_MIN_FLOPS
        assert _paths.auto_path(tiny5, x, (8, 8), grad=grad) == "concat"
        relu5 = convlstm.ConvLSTM2D(64, 5, padding="same", in_channels=2, activation="relu")
        assert _paths.auto_path(relu5, xb, (32, 32), grad=grad) == "concat"  # no closed-form update
        valid = convlstm.ConvLSTM2D(64, 3, padding="valid", in_channels=2)  # concat needs 'same'
        assert _paths.auto_path(valid, xb, (30, 30), grad=grad) == "fused"
    masks = torch.ones(4, 8, 2, 32, 32)  # dropout: per-gate masks, the reference schedule
    assert _paths.auto_path(big, xb, (32, 32), masks, None, grad=True) == "reference"


@pytest.mark.parametrize("path", ["reference", "fused", "concat", "nnpack", "fft"])
def test_torch_compile_traces_the_time_loop_without_graph_breaks(path):
    """Under ``torch.compile`` NNPACK and the spectral node cannot be traced: ``"nnpack"`` and
    ``"fft"`` run ``"concat"``'s per-step loop, recorded in ``last_path`` and
    ``last_path_detail["substituted"]`` (a warning would break the graph; documented in
    :mod:`convlstm._paths`)."""
    torch._dynamo.reset()
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, in_channels=2, implementation=path)
    x = torch.randn(2, 4, 6, 6, 2)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            explanation = torch._dynamo.explain(layer)(x)
        assert explanation.graph_break_count == 0, (path, grad, explanation.break_reasons)
        assert explanation.graph_count == 1
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    with torch.no_grad():
        expected = layer(x)
        layer.last_path = None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing is emitted inside the traced graph
            _close(compiled(x), expected, _tol(path, 1e-5), f"{path} compiled")
    ran = "concat" if path in ("nnpack", "fft") else path
    assert layer.last_path == ran, layer.last_path_detail
    assert layer.last_path_detail["loop"] == ("cell.step" if path == "reference" else "cell.update")
    substituted = layer.last_path_detail["substituted"]
    assert (substituted is not None and "torch.compile" in substituted) if ran != path else substituted is None


def test_checkpoint_through_time_saves_less_for_backward():
    """With checkpointing, the tensors autograd keeps from the forward are the chunk boundaries,
    not every step's gates (the steps are recomputed during the backward)."""
    def saved_bytes(**kwargs):
        torch.manual_seed(0)
        layer = convlstm.ConvLSTM2D(8, 3, padding="same", return_sequences=True, in_channels=2, **kwargs)
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(torch.randn(2, 16, 8, 8, 2)).sum().backward()
        return sum(total)

    plain = saved_bytes(implementation="fused")
    checkpointed = saved_bytes(implementation="fused", checkpoint_chunk=4)
    assert checkpointed < 0.3 * plain, (checkpointed, plain)


# ------------------------------------------------------------------ the concat path's training node
@pytest.mark.parametrize("path", ["concat", "nnpack", "fft"])
def test_concat_training_runs_as_one_node_with_a_handwritten_backward(path):
    """The comparisons above exercise :class:`ConcatRecurrence` (not a per-step autograd loop)."""
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, in_channels=3, implementation=path)
    names = _grad_fn_names(layer(_input(2, "channels_last")))
    assert "ConcatRecurrenceBackward" in names, names
    assert "GateUpdateBackward" not in names


@pytest.mark.parametrize("options", [
    dict(return_sequences=True, return_state=True),
    dict(return_sequences=False),
    dict(return_sequences=False, return_state=True, go_backwards=True),
    dict(return_sequences=True, kernel_size=5, use_bias=False),
    dict(return_sequences=True, return_state=True, in_channels=9),  # one weight gradient over [x, h]
], ids=str)
@pytest.mark.parametrize("state_grad", [False, True])
def test_concat_training_node_gradients_with_initial_state(options, state_grad):
    """Gradients of the frames, the initial state (when it needs one: the backward then also
    runs the t = 0 step), the weights and the bias, through every output the layer returns."""
    options = dict(options)
    ref, other = _pair(2, "concat", padding="same", **options)
    x = _input(2, "channels_last", steps=5, channels=options.get("in_channels", 3))
    h0 = torch.randn(2, 6, 5, 4)  # channels_last data: the state is (B, rows, cols, F)
    c0 = torch.randn(2, 6, 5, 4)

    def run(layer):
        h, c = h0.detach().clone().requires_grad_(state_grad), c0.detach().clone().requires_grad_(state_grad)
        out, grads = _forward_and_grads(layer, x, initial_state=[h, c])
        return out, grads + ([h.grad, c.grad] if state_grad else [])

    out_r, g_r = run(ref)
    out_o, g_o = run(other)
    _close(out_o, out_r, 1e-5, "forward")
    _close(g_o, g_r, 1e-4, "gradients")


@pytest.mark.parametrize("convs,cin,kernel", [("torch", 2, 3), ("torch", 8, 3), ("spectral", 2, 3),
                                               ("spectral", 8, 5)])
def test_concat_training_node_matches_finite_differences(convs, cin, kernel):
    """:class:`convlstm._recurrence.ConcatRecurrence` against ``torch.autograd.gradcheck``
    (central finite differences in float64): an independent check of the hand-written backward,
    with torch's convolutions (the weight gradient in two pieces below 8 input channels, in one
    above) and with the frequency-domain ones. Five steps make chunks of two for the weight
    gradient, so that a zero initial state leaves the first step's state channels out of it."""
    from convlstm._recurrence import ConcatRecurrence, SpectralStepConvolutions, StepConvolutions

    g = torch.Generator().manual_seed(3)
    steps, batch, nf = 5, 2, 2
    pad = (kernel // 2, kernel // 2)
    frames = torch.randn(steps, batch, cin, 4, 3, dtype=torch.float64, generator=g)
    h0 = torch.randn(batch, nf, 4, 3, dtype=torch.float64, generator=g)
    c0 = torch.randn(batch, nf, 4, 3, dtype=torch.float64, generator=g)
    w_ih = 0.5 * torch.randn(4 * nf, cin, kernel, kernel, dtype=torch.float64, generator=g)
    w_hh = 0.5 * torch.randn(4 * nf, nf, kernel, kernel, dtype=torch.float64, generator=g)
    bias = torch.randn(4 * nf, dtype=torch.float64, generator=g)
    tensors = [t.requires_grad_() for t in (frames, h0, c0, w_ih, w_hh, bias)]

    def fn(*args):
        steps_convs = (StepConvolutions(pad, 2) if convs == "torch"
                       else SpectralStepConvolutions(pad, 2, (kernel, kernel)))
        return ConcatRecurrence.apply(*args, steps_convs)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)

    if convs == "torch":  # a zero initial state: the first step convolves the inputs only
        zeros = torch.zeros_like(h0).detach()

        def from_zero(frames, c0, w_ih, w_hh, bias):
            steps_convs = StepConvolutions(pad, 2)
            steps_convs.zero_start = True
            return ConcatRecurrence.apply(frames, zeros, c0, w_ih, w_hh, bias, steps_convs)

        others = [tensors[0]] + tensors[2:]
        assert torch.autograd.gradcheck(from_zero, others, eps=1e-6, atol=1e-7, rtol=1e-5)
        expected = fn(tensors[0], zeros, *tensors[2:])
        torch.testing.assert_close(from_zero(*others), expected)
        # frozen input weights (no dW_x asked for) with the first step's state channels left out
        frozen = [tensors[0], tensors[2], w_ih.detach(), tensors[4], tensors[5]]
        assert torch.autograd.gradcheck(from_zero, frozen, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_concat_training_output_changed_in_place_is_caught():
    """The hidden states are a view of the buffer the backward reads: changing them in place
    must be refused (by the view check at once, or by the version check at backward)."""
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, in_channels=3,
                                implementation="concat")
    y = layer(_input(2, "channels_last"))
    with pytest.raises(RuntimeError, match="inplace"):
        y.mul_(2)
        y.sum().backward()


@pytest.mark.parametrize("path", ["concat", "fft"])
def test_concat_training_node_supports_a_retained_graph(path):
    """Two backward passes through one graph (``retain_graph=True``, as with several losses)
    accumulate the same gradients twice: the backward leaves what it saved untouched."""
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, in_channels=3, implementation=path)
    y = layer(_input(2, "channels_last", steps=5))
    loss = (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum()
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in layer.parameters()]
    loss.backward()
    _close([p.grad for p in layer.parameters()], [2 * g for g in first], 1e-6, "second backward")


def test_nnpack_one_image_at_a_time_on_large_images(monkeypatch):
    """From 64x64 pixels NNPACK runs image by image (forward and state gradient): the same
    outputs and gradients as the reference."""
    from convlstm._recurrence import NNPACK_PER_SAMPLE_MIN_PIXELS

    if not _paths._NNPACK:
        pytest.skip("this torch build has no NNPACK (the path falls back to 'concat')")
    assert 64 * 64 >= NNPACK_PER_SAMPLE_MIN_PIXELS
    batches = []
    nnpack = torch._nnpack_spatial_convolution

    def counting(x, *args):
        batches.append(x.shape[0])
        return nnpack(x, *args)

    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", counting)
    ref, other = _pair(2, "nnpack", padding="same", kernel_size=5, in_channels=2, filters=3, return_sequences=True)
    x = torch.randn(2, 3, 64, 64, 2, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _close(other(x), ref(x), NNPACK_TOL, "nnpack inference")
    out_r, g_r = _forward_and_grads(ref, x)
    out_o, g_o = _forward_and_grads(other, x)
    _close(out_o, out_r, NNPACK_TOL, "nnpack forward")
    _close(g_o, g_r, 1e-4, "nnpack gradients")
    # 3 steps x 2 images, inference + training forward + state gradients of steps 2 and 3
    assert batches == [1] * (6 + 6 + 4), batches


# ------------------------------------------------------------------ what ran, and forced paths that cannot
@pytest.mark.parametrize("rank,path", [(1, "nnpack"), (1, "fft"), (3, "nnpack"), (3, "fft")])
def test_unavailable_path_warns_and_names_the_path_that_ran(rank, path):
    """NNPACK and the spectral node are 2D only: a 1D or 3D layer forced to them warns, names
    ``implementation``, what was asked and what ran (``"concat"``), and still computes the
    reference's numbers."""
    ref, other = _pair(rank, path, padding="same", return_sequences=True)
    x = _input(rank, "channels_last")
    with pytest.warns(UserWarning, match=rf"implementation='{path}' cannot run here, 'concat' ran instead: "
                                         rf"'{path}' needs a 2D layer \(this one is {rank}D\)"):
        out_o, g_o = _forward_and_grads(other, x)
    assert other.last_path == "concat"
    assert other.last_path_detail["requested"] == path
    out_r, g_r = _forward_and_grads(ref, x)
    _close(out_o, out_r, 1e-5, f"{path} forward")
    _close(g_o, g_r, 1e-4, f"{path} gradients")


def test_auto_runs_the_path_its_rule_chooses(monkeypatch):
    """``"auto"`` runs what :func:`auto_path` documents (thresholds lowered so that small layers
    reach every branch), silently (it only chooses), and says so in ``last_path``."""
    x = _input(2, "channels_last", steps=3)
    layer = convlstm.ConvLSTM2D(4, 3, padding="same", in_channels=3)
    with _runs(layer, "concat"):
        layer(x)
    valid = convlstm.ConvLSTM2D(4, 3, padding="valid", in_channels=3)
    with _runs(valid, "fused"):
        valid(x)
    monkeypatch.setattr(_paths, "AUTO_FAST_CONV_MIN_FLOPS", 0)  # 5x5 on 6x5: whole-image transforms
    layer5 = convlstm.ConvLSTM2D(4, 5, padding="same", in_channels=3)
    with _runs(layer5, "fft"):
        assert "ConcatRecurrenceBackward" in _grad_fn_names(layer5(x))
    assert layer5.last_path_detail["convolutions"] == "spectral"
    dropout = convlstm.ConvLSTM2D(4, 3, padding="same", in_channels=3, dropout=0.5)
    dropout.train()
    with _runs(dropout, "reference"):
        dropout(x)


# ------------------------------------------------------------------ hand-written backwards against finite differences
def _gate_update_reference(a, b, c_prev):
    """The LSTM update written as Keras writes it (tanh, unscaled candidate), for torch's autograd:
    the candidate block of ``a + b`` is doubled, as :class:`GateUpdate` expects."""
    nf = c_prev.shape[1]
    i, f, g2, o = (a + b).split(nf, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g2 / 2)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_gate_update_backward_matches_finite_differences_and_autograd():
    """:class:`convlstm._gates.GateUpdate`'s closed-form backward against ``gradcheck`` (float64
    central differences) and against torch's autograd of the update written with ``tanh``."""
    from convlstm._gates import GateUpdate

    g = torch.Generator().manual_seed(7)
    a = (2 * torch.randn(2, 12, 4, 3, dtype=torch.float64, generator=g)).requires_grad_()
    b = torch.randn(2, 12, 4, 3, dtype=torch.float64, generator=g).requires_grad_()
    c = torch.randn(2, 3, 4, 3, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(GateUpdate.apply, (a, b, c), eps=1e-6, atol=1e-8, rtol=1e-6)
    assert torch.autograd.gradcheck(lambda a, c: GateUpdate.apply(a, None, c), (a, c), eps=1e-6, atol=1e-8)
    w_h, w_c = torch.randn(2, 3, 4, 3, dtype=torch.float64, generator=g), torch.randn(2, 3, 4, 3, dtype=torch.float64,
                                                                                    generator=g)
    ours = torch.autograd.grad([(o * w).sum() for o, w in zip(GateUpdate.apply(a, b, c), (w_h, w_c))], (a, b, c))
    theirs = torch.autograd.grad([(o * w).sum() for o, w in zip(_gate_update_reference(a, b, c), (w_h, w_c))],
                                 (a, b, c))
    for x, y in zip(ours, theirs):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_nnpack_state_gradient_is_the_adjoint_of_its_forward(monkeypatch):
    """:meth:`NNPACKStepConvolutions.state_gradient` (the flipped, transposed kernel through the
    forward convolution). NNPACK is float32 only, so: (1) the whole training node with
    ``NNPACKStepConvolutions`` passes ``gradcheck`` in float64 with NNPACK's call replaced by
    torch's convolution (the kernel transform and the adjoint identity, exactly); (2) NNPACK's own
    float32 state gradient equals torch autograd's vector-Jacobian product of a float64
    convolution, within float32 rounding."""
    from convlstm import _recurrence
    from convlstm._recurrence import ConcatRecurrence, NNPACKStepConvolutions

    g = torch.Generator().manual_seed(5)
    steps, batch, cin, nf, k = 4, 2, 2, 3, 5
    pad = (k // 2, k // 2)

    def torch_conv(z, weight, bias, padding, memory_format=torch.contiguous_format):
        return torch.nn.functional.conv2d(z, weight, bias, 1, list(padding)).contiguous(memory_format=memory_format)

    with monkeypatch.context() as m:
        m.setattr(_recurrence, "nnpack_conv", torch_conv)
        tensors = [torch.randn(steps, batch, cin, 5, 4, dtype=torch.float64, generator=g),
                   torch.randn(batch, nf, 5, 4, dtype=torch.float64, generator=g),
                   torch.randn(batch, nf, 5, 4, dtype=torch.float64, generator=g),
                   0.3 * torch.randn(4 * nf, cin, k, k, dtype=torch.float64, generator=g),
                   0.3 * torch.randn(4 * nf, nf, k, k, dtype=torch.float64, generator=g),
                   torch.randn(4 * nf, dtype=torch.float64, generator=g)]
        tensors = [t.requires_grad_() for t in tensors]
        assert torch.autograd.gradcheck(lambda *a: ConcatRecurrence.apply(*a, NNPACKStepConvolutions(pad, 2)),
                                        tensors, eps=1e-6, atol=1e-7, rtol=1e-5)
    if not _paths._NNPACK:
        pytest.skip("this torch build has no NNPACK: part (2) cannot run")
    convs = NNPACKStepConvolutions(pad, 2)
    w_hh = torch.randn(4 * nf, nf, k, k, generator=g)
    grad_gates = torch.randn(batch, 4 * nf, 9, 7, generator=g).contiguous(memory_format=torch.channels_last)
    state = torch.randn(batch, nf, 9, 7, generator=g, dtype=torch.float64).requires_grad_()
    ours = convs.state_gradient(grad_gates, state.detach().float(), convs.prepare_backward(w_hh), 1)
    out = torch.nn.functional.conv2d(state, w_hh.double(), None, 1, list(pad))
    (theirs,) = torch.autograd.grad(out, state, grad_gates.double())
    _close(ours.double(), theirs, 1e-5, "NNPACK state gradient")
