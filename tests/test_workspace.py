"""The workspace (``convlstm._workspace``): a cell's large buffers are reused by its later calls
only when nothing else holds them.

Checked directly (views, autograd graphs, slots, shape changes, copies) and through the layer:
outputs that a caller keeps stay intact when later calls run, two graphs alive at once get the
reference path's gradients, and a training loop does reuse the buffers.
"""
import copy
import pickle

import pytest
import torch

import convlstm
from convlstm import _workspace
from convlstm._workspace import Workspace

pytestmark = pytest.mark.skipif(not Workspace().enabled,
                                reason="this torch has no storage reference count: the workspace allocates "
                                       "every time")


def _ptr(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def test_a_buffer_is_reused_only_when_no_view_of_it_remains():
    ws = Workspace()
    like = torch.zeros(())
    a = ws.take("x", (3, 4), like)
    b = ws.take("x", (3, 4), like)  # a is alive: a second buffer
    assert _ptr(a) != _ptr(b)
    part = a[1:]  # a view of a view still holds the memory
    ptr_a = _ptr(a)
    del a
    c = ws.take("x", (3, 4), like)
    assert _ptr(c) not in (ptr_a, _ptr(b))
    del part, c
    d = ws.take("x", (3, 4), like)
    assert _ptr(d) == ptr_a
    assert d.shape == (3, 4) and d.dtype == like.dtype


def test_a_buffer_saved_by_a_graph_is_not_reused_until_the_graph_is_freed():
    ws = Workspace(slots=1)
    w = torch.ones(4, requires_grad=True)
    buf = ws.take("x", (4,), w)
    buf.copy_(torch.arange(4.0))
    loss = (w * buf).sum()  # the graph saves buf
    ptr = _ptr(buf)
    del buf
    other = ws.take("x", (4,), w)
    assert _ptr(other) != ptr
    other.fill_(-1.0)
    loss.backward()
    assert torch.equal(w.grad, torch.arange(4.0))  # what the graph saved was not overwritten
    del loss, other
    assert _ptr(ws.take("x", (4,), w)) == ptr


def test_slots_memory_format_and_shape_changes():
    ws = Workspace(slots=2)
    like = torch.zeros(())
    live = [ws.take("x", (2, 3, 4, 5), like, torch.channels_last) for _ in range(3)]
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in live)
    assert ws.nbytes() == 2 * 2 * 3 * 4 * 5 * 4  # the third buffer was not kept
    del live
    for n in (7, 8, 7, 9, 7):  # shapes alternate: the last max_shapes (3) used are kept
        ws.take("x", (n,), like)
    assert ws.max_shapes == 3 and ws.nbytes() == (7 + 8 + 9) * 4
    ws.take("x", (10,), like)  # a fourth shape: the one used longest ago (8) goes
    assert ws.nbytes() == (7 + 9 + 10) * 4
    ws.clear()
    assert ws.nbytes() == 0


def test_copies_and_pickles_start_empty():
    ws = Workspace(slots=3)
    ws.take("x", (5,), torch.zeros(()))
    assert ws.nbytes() > 0
    for clone in (copy.deepcopy(ws), pickle.loads(pickle.dumps(ws))):
        assert clone.nbytes() == 0 and clone.slots == 3
    layer = convlstm.ConvLSTM2D(2, 3, in_channels=1, padding="same", implementation="concat")
    layer.cell._workspace.take("x", (5,), torch.zeros(()))
    assert copy.deepcopy(layer).cell._workspace.nbytes() == 0


def test_only_cpu_tensors_are_kept():
    ws = Workspace()
    meta = ws.take("x", (3, 4), torch.empty((), device="meta"))
    assert meta.device.type == "meta" and meta.shape == (3, 4) and ws.nbytes() == 0


def test_without_the_reference_count_it_allocates_every_time(monkeypatch):
    monkeypatch.setattr(_workspace, "_use_count", None)
    ws = Workspace()
    assert not ws.enabled
    ws.take("x", (3,), torch.zeros(()))  # dropped at once
    ws.take("x", (3,), torch.zeros(()))
    assert ws.nbytes() == 0


def _layers(path, kernel_size=3):
    """A reference layer and a ``path`` layer with the same weights."""
    torch.manual_seed(0)
    ref = convlstm.ConvLSTM2D(4, kernel_size, in_channels=3, padding="same", return_sequences=True,
                              data_format="channels_first", implementation="reference")
    other = convlstm.ConvLSTM2D(4, kernel_size, in_channels=3, padding="same", return_sequences=True,
                                data_format="channels_first", implementation=path)
    other.load_state_dict(ref.state_dict())
    return ref, other


def _grads(layer, x):
    layer.zero_grad()
    y = layer(x)
    (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
    return y, [p.grad.clone() for p in layer.parameters()]


def _kept_pointers(layer, name):
    return {_ptr(b) for key, kept in layer.cell._workspace._kept.items() if key[0] == name for b, _ in kept}


@pytest.mark.parametrize("path", ["concat", "nnpack"])
def test_a_training_loop_runs_in_the_kept_buffers(path):
    ref, layer = _layers(path)
    for i in range(4):
        x = torch.randn(2, 5, 3, 6, 6, generator=torch.Generator().manual_seed(i))
        y, grads = _grads(layer, x)
        y_ref, grads_ref = _grads(ref, x)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=5e-5)
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)
        kept = _kept_pointers(layer, "inputs")
        assert _ptr(y) in kept and len(kept) <= 2  # the output is a view of a kept buffer
        assert len(_kept_pointers(layer, "gates")) == 1  # freed by each backward, so one serves
        del y


def test_release_workspaces_frees_every_cell_of_a_model():
    model = torch.nn.Sequential(*[convlstm.ConvLSTM2D(4, 3, in_channels=c, padding="same", return_sequences=True,
                                                      data_format="channels_first", implementation="concat")
                                  for c in (3, 4)])
    x = torch.randn(2, 5, 3, 6, 6)
    model(x).sum().backward()
    held = [layer.cell._workspace.nbytes() for layer in model]
    assert all(n > 0 for n in held)
    assert convlstm.release_workspaces(model) == sum(held)
    assert all(layer.cell._workspace.nbytes() == 0 for layer in model)
    assert convlstm.release_workspaces(model) == 0
    model(x).sum().backward()  # and the model still trains
    assert all(layer.cell._workspace.nbytes() > 0 for layer in model)


@pytest.mark.parametrize("path", ["concat", "nnpack", "fft"])
def test_inference_mode_no_grad_and_training_calls_mixed(path):
    """Buffers made under ``torch.inference_mode`` are inference tensors, which may not be written
    outside it: they must never serve a ``no_grad`` or training call, nor the other way round."""
    ref, layer = _layers(path, kernel_size=5)
    x = torch.randn(2, 4, 3, 8, 8)
    expected = ref(x).detach()
    tol = dict(rtol=1e-4, atol=1e-4)
    for _ in range(2):
        with torch.inference_mode():
            torch.testing.assert_close(layer(x), expected, **tol)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), expected, **tol)
        y = layer(x)
        y.sum().backward()
        torch.testing.assert_close(y.detach(), expected, **tol)


def test_checkpointing_through_time_keeps_no_buffers():
    """Checkpointing is asked for to lower the peak: kept buffers would add a chunk to it."""
    ref, layer = _layers("concat")
    layer.checkpoint_chunk = 2
    x = torch.randn(2, 6, 3, 6, 6)
    y, grads = _grads(layer, x)
    y_ref, grads_ref = _grads(ref, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=5e-5)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)
    assert layer.cell._workspace.nbytes() == 0


def test_outputs_a_caller_keeps_are_not_overwritten_by_later_calls():
    ref, layer = _layers("concat")
    xs = [torch.randn(2, 5, 3, 6, 6, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    kept = [_grads(layer, x)[0] for x in xs]  # more outputs than the workspace has slots
    assert len({_ptr(y) for y in kept}) == len(kept)
    for y, x in zip(kept, xs):
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=5e-5)


def test_two_graphs_alive_at_once_get_the_reference_gradients():
    ref, layer = _layers("concat")
    x1, x2 = torch.randn(2, 4, 3, 6, 6), torch.randn(2, 4, 3, 6, 6)
    y1, y2 = layer(x1), layer(x2)  # the second forward must not reuse the first one's buffers
    (y1.sum() + 2 * y2.square().sum()).backward()
    r1, r2 = ref(x1), ref(x2)
    (r1.sum() + 2 * r2.square().sum()).backward()
    for p, p_ref in zip(layer.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-4)


def test_inference_outputs_kept_across_calls_stay_intact():
    ref, layer = _layers("concat")
    layer.eval()
    ref.eval()
    xs = [torch.randn(2, 4, 3, 6, 6) for _ in range(4)]
    with torch.no_grad():
        outs = [layer(x) for x in xs]  # all kept: every call needs a new buffer
        expected = [ref(x) for x in xs]
    for y, y_ref in zip(outs, expected):
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=5e-5)
    assert len({_ptr(y) for y in outs}) == len(outs)
    del outs, y
    with torch.no_grad():  # outputs dropped at once: the kept buffers serve every call
        again = [_ptr(layer(xs[0])) for _ in range(3)]
    kept = _kept_pointers(layer, "inference_inputs")
    assert len(kept) == 2 and set(again) <= kept
