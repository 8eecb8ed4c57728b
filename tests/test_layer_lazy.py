"""A layer made without in_channels: torch's lazy-module placeholders until its first call."""
import copy

import pytest
import torch
from torch.nn.parameter import UninitializedParameter

import convlstm


def _lazy(**kw):
    torch.manual_seed(0)
    return convlstm.ConvLSTM2D(4, 3, padding="same", return_sequences=True, **kw)


def test_parameters_are_uninitialized_until_the_first_call():
    layer = _lazy(peephole=True)
    params = list(layer.parameters())
    # one placeholder per weight the cell will have: kernel, recurrent kernel, bias, 3 peepholes
    assert len(params) == 6 and all(isinstance(p, UninitializedParameter) for p in params)
    with pytest.raises(ValueError, match="uninitialized parameter"):
        sum(p.numel() for p in layer.parameters())  # what counting the parameters meets, as with torch.nn.LazyLinear
    assert layer.state_dict() == {}
    layer(torch.zeros(1, 2, 5, 5, 3))
    assert not any(isinstance(p, UninitializedParameter) for p in layer.parameters())
    assert sorted(n for n, _ in layer.named_parameters()) == sorted(
        f"cell.{n}" for n in ("weight_ih", "weight_hh", "bias", "peephole_i", "peephole_f", "peephole_o"))


def test_an_optimizer_built_before_the_first_call_trains_the_layer():
    model = torch.nn.Sequential(_lazy())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 6, 6, 2)
    before = None
    for _ in range(2):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        if before is None:
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss.backward()
        opt.step()
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} == held  # the same objects: nothing left out
    for name, p in model.named_parameters():
        assert not torch.equal(before[name], p.detach()), f"{name} did not train"
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 4 * 4 * 9 * (2 + 4) + 16


def test_state_dict_deepcopy_and_to_before_the_first_call():
    built = _lazy()
    x = torch.randn(2, 3, 6, 6, 2)
    y = built(x)
    fresh = _lazy()
    fresh.load_state_dict(built.state_dict())  # builds from the checkpoint's shapes, strict
    assert torch.equal(fresh(x), y)
    empty = _lazy()
    empty.load_state_dict(_lazy().state_dict())  # an unbuilt layer's (empty) state loads into another
    assert not empty.built

    lazy = _lazy()
    twin = copy.deepcopy(lazy)
    lazy(x)
    assert not twin.built and isinstance(next(twin.parameters()), UninitializedParameter)
    double = copy.deepcopy(twin).double()  # .to() before the first call decides the weights' dtype
    assert double(x.double()).dtype == torch.float64 and double.cell.weight_ih.dtype == torch.float64
    assert twin(x).shape == y.shape and twin.cell.weight_ih.dtype == torch.float32


def test_layers_given_in_channels_have_no_placeholders():
    layer = convlstm.ConvLSTM2D(4, 3, in_channels=2)
    assert not any(isinstance(p, UninitializedParameter) for p in layer.parameters())
    assert not hasattr(layer, "uninitialized")
