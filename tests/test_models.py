import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import convlstm.models as models
from convlstm.models import DepthToSpace, KerasNextFrame, ShiEncoderForecaster, SpaceToDepth


pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny overrides so that every registered model runs fast on the CPU.
TINY = {
    "convlstm-warp": dict(filters=(4,), encoder_width=4, output_steps=2),
    "keras-nextframe": dict(filters=(4, 3), kernel_sizes=(3, 1)),
    "shi2015-1x256": dict(filters=(6,), frame_size=(8, 8), input_steps=3, output_steps=2),
    "shi2015-2x128": dict(filters=(5, 4), frame_size=(8, 8), input_steps=3, output_steps=2),
    "shi2015-128-64-64": dict(filters=(4, 3, 3), frame_size=(8, 8), input_steps=3, output_steps=2),
    "st-convlstm": dict(filters=(4,), frame_size=(8, 8), streams=(1, 1, 1), output_steps=2),
}
LINEAR_OUTPUT = {"st-convlstm"}  # ST-ResNet's fusion: a linear forecast


def test_registry_lists_models():
    assert models.list_models() == ["convlstm-warp", "keras-nextframe", "shi2015-128-64-64", "shi2015-1x256",
                                    "shi2015-2x128", "st-convlstm"]
    assert set(TINY) == set(models.list_models())
    assert "13,524,496" in models.model_info("shi2015-1x256")


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_runs(name):
    torch.manual_seed(0)
    model = models.create(name, **TINY[name])
    x = torch.rand(2, 3, 8, 8, 1)
    y = model(x)
    steps = model.output_steps or x.shape[1]
    assert tuple(y.shape) == (2, steps, 8, 8, 1)
    if name not in LINEAR_OUTPUT:
        assert torch.all((y > 0) & (y < 1))  # sigmoid outputs; convlstm-warp's untrained warp interpolates inputs
    y.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


# Shi et al. 2015, Table 1 (Moving MNIST): "#param" column
TABLE_1 = {"shi2015-1x256": 13_524_496, "shi2015-2x128": 10_042_896, "shi2015-128-64-64": 7_585_296}


@pytest.mark.parametrize("name", sorted(TABLE_1))
def test_shi2015_table1_parameter_counts(name):
    with torch.device("meta"):  # no weight initialisation: counting only
        model = models.create(name)
    assert sum(p.numel() for p in model.parameters()) == TABLE_1[name]


def test_shi2015_parameter_count_on_cpu_and_forward_shape():
    torch.manual_seed(0)
    model = models.create("shi2015-128-64-64", input_steps=2, output_steps=2)
    assert sum(p.numel() for p in model.parameters()) == TABLE_1["shi2015-128-64-64"]
    with torch.no_grad():
        y = model(torch.rand(1, 2, 64, 64, 1))
    assert tuple(y.shape) == (1, 2, 64, 64, 1)


def test_shi2015_wiring_against_a_hand_built_loop():
    """Rebuild the forward pass from the cells, one step at a time, channels first."""
    torch.manual_seed(1)
    model = ShiEncoderForecaster(filters=(5, 4), kernel_size=(3, 1), patch_size=2, frame_size=(8, 6), channels=2,
                                 input_steps=4, output_steps=3, output_activation=None)
    with torch.no_grad():  # non-zero peepholes and biases so that every term matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 4, 8, 6, 2)

    # 2x2 patches, TensorFlow's channel order: channel (i * 2 + j) * C + c
    patches = torch.stack([x[:, :, i::2, j::2, c] for i in range(2) for j in range(2) for c in range(2)], dim=-1)
    seq = patches.movedim(-1, 2)  # (B, T, C, H, W)
    states = []
    for layer in model.encoder:
        cell = layer.cell
        h = c = torch.zeros(2, cell.filters, 4, 3)
        outs = []
        for t in range(seq.shape[1]):
            gates = F.conv2d(seq[:, t], cell.weight_ih, cell.bias, padding=cell.kernel_size[0] // 2)
            h, c = cell.step(gates, h, c)
            outs.append(h)
        seq = torch.stack(outs, 1)
        states.append((h, c))
    first = model.forecaster[0].cell
    h, c = states[0]
    outs = []
    for t in range(3):  # no input: the gates are the bias plus the recurrent term
        h, c = first.step(first.bias.view(1, -1, 1, 1).expand(2, -1, 4, 3), h, c)
        outs.append(h)
    hidden = [torch.stack(outs, 1)]
    cell = model.forecaster[1].cell
    h, c = states[1]  # forecaster layer 2 starts from encoder layer 2
    outs = []
    for t in range(3):
        gates = F.conv2d(hidden[0][:, t], cell.weight_ih, cell.bias)
        h, c = cell.step(gates, h, c)
        outs.append(h)
    hidden.append(torch.stack(outs, 1))
    feats = torch.cat(hidden, dim=2).movedim(2, -1)  # (B, T, H, W, 9)
    out = feats @ model.output.weight.T + model.output.bias  # 1x1 convolution
    expected = torch.zeros(2, 3, 8, 6, 2)
    for i in range(2):
        for j in range(2):
            for ch in range(2):
                expected[:, :, i::2, j::2, ch] = out[..., (i * 2 + j) * 2 + ch]
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_space_to_depth():
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    y = SpaceToDepth(2)(x)
    assert tuple(y.shape) == (1, 2, 2, 4)
    assert y[0, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # tf.nn.space_to_depth's order
    assert y[0, 1, 1].tolist() == [10.0, 11.0, 14.0, 15.0]
    # one channel: the same as torch's pixel_unshuffle on channels-first frames
    z = torch.randn(3, 5, 8, 12, 1)
    torch.testing.assert_close(SpaceToDepth(4)(z).movedim(-1, 2),
                               F.pixel_unshuffle(z.movedim(-1, 2).reshape(15, 1, 8, 12), 4).reshape(3, 5, 16, 2, 3))
    w = torch.randn(2, 3, 8, 12, 3)
    assert torch.equal(DepthToSpace(4)(SpaceToDepth(4)(w)), w)
    with pytest.raises(ValueError, match="block_size"):
        SpaceToDepth(3)(w)
    with pytest.raises(ValueError, match="block_size"):
        DepthToSpace(2)(torch.randn(1, 2, 2, 6))
    with pytest.raises(ValueError, match="block_size"):
        SpaceToDepth(0)


def test_keras_nextframe_structure_and_batchnorm():
    with torch.device("meta"):  # structure only
        model = models.create("keras-nextframe")
        with_last = models.create("keras-nextframe", batch_norm_last=True)
    assert isinstance(model, KerasNextFrame)
    assert [layer.filters for layer in model.recurrent] == [64, 64, 64]
    assert [layer.kernel_size for layer in model.recurrent] == [(5, 5), (3, 3), (1, 1)]
    assert all(layer.activation is torch.relu or layer.activation(torch.tensor(-1.0)) == 0
               for layer in model.recurrent)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(bns) == 2  # after the first two ConvLSTM2D layers, as the keras-io example
    for bn in bns:
        assert bn.momentum == pytest.approx(0.01) and bn.eps == pytest.approx(1e-3)  # Keras 0.99 / 1e-3
    assert model.head.kernel_size == (3, 3, 3) and model.head.out_channels == 1
    # Keras's model.summary() total (trainable + BatchNorm moving statistics), counted by hand:
    # ConvLSTM2D 5x5: 5*5*1*256 + 5*5*64*256 + 256 = 416,256; BN 4*64; ConvLSTM2D 3x3: 295,168; BN 256;
    # ConvLSTM2D 1x1: 33,024; Conv3D: 3*3*3*64*1 + 1 = 1,729 -> 746,689
    n_params = sum(p.numel() for p in model.parameters())
    n_stats = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert n_params + n_stats == 746_689
    assert len([m for m in with_last.modules() if isinstance(m, nn.BatchNorm3d)]) == 3


def test_keras_nextframe_batchnorm_is_over_channels():
    torch.manual_seed(0)
    model = KerasNextFrame(filters=(3,), kernel_sizes=(3,), batch_norm_last=True).train()
    x = torch.rand(2, 4, 6, 6, 1)
    feats = model.recurrent[0](x)
    model(x)
    bn = model.norms[0]
    mean = feats.mean(dim=(0, 1, 2, 3)).detach()
    torch.testing.assert_close(bn.running_mean, 0.01 * mean)  # one update from zero with momentum 0.01


def test_keras_nextframe_forecast_and_causality():
    torch.manual_seed(0)
    model = KerasNextFrame(filters=(4,), kernel_sizes=(3,)).eval()
    x = torch.rand(1, 4, 6, 6, 1)
    with torch.no_grad():
        fc = model.forecast(x, 3)
        seq = x
        for _ in range(3):  # the keras-io example's loop
            seq = torch.cat([seq, model(seq)[:, -1:]], 1)
        torch.testing.assert_close(fc, seq[:, 4:])
        # output_steps as an option makes forward the rollout
        rolled = KerasNextFrame(filters=(4,), kernel_sizes=(3,), output_steps=3)
        rolled.load_state_dict(model.state_dict())
        torch.testing.assert_close(rolled.eval()(x), fc)
        # the example's 'same' Conv3D lets output t see input t + 1; the causal head does not
        x2 = x.clone()
        x2[:, 3] += 1.0
        assert not torch.allclose(model(x)[:, 2], model(x2)[:, 2])
        causal = KerasNextFrame(filters=(4,), kernel_sizes=(3,), head_padding="causal").eval()
        torch.testing.assert_close(causal(x)[:, :3], causal(x2)[:, :3])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        models.create("convlstm-9000")
    with pytest.raises(TypeError, match="name"):
        models.create(3)
    with pytest.raises(TypeError, match="unknown option"):
        models.create("shi2015-1x256", filter=(8,))
    with pytest.raises(TypeError, match="unknown option"):
        models.create("keras-nextframe", input_steps=3)
    with pytest.raises(ValueError, match="kernel_sizes"):
        KerasNextFrame(filters=(4, 4), kernel_sizes=(3,))
    with pytest.raises(ValueError, match="head_padding"):
        KerasNextFrame(head_padding="valid")
    with pytest.raises(ValueError, match="frame_size"):
        ShiEncoderForecaster(filters=(4,), frame_size=(10, 10))
    with pytest.raises(ValueError, match="register"):
        models.register_model("keras-nextframe")(lambda **kw: None)
    model = ShiEncoderForecaster(filters=(4,), frame_size=(8, 8), input_steps=3, output_steps=2)
    with pytest.raises(ValueError, match="input_steps"):
        model(torch.rand(1, 4, 8, 8, 1))
    with pytest.raises(ValueError, match="frame_size"):
        model(torch.rand(1, 3, 12, 12, 1))
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(1, 3, 8, 8, 2))
    with pytest.raises(ValueError, match="out_channels"):
        KerasNextFrame(filters=(2,), kernel_sizes=(1,), out_channels=2).forecast(torch.rand(1, 2, 4, 4, 1), 2)


def test_register_custom_model():
    name = "test-tiny-nextframe"
    if name not in models.list_models():
        @models.register_model(name, description="a test model")
        def tiny(in_channels: int = 1):
            return KerasNextFrame(in_channels=in_channels, filters=(2,), kernel_sizes=(1,))
    model = models.create(name, in_channels=2)
    assert tuple(model(torch.rand(1, 2, 4, 4, 2)).shape) == (1, 2, 4, 4, 2)
    assert models.model_info(name) == "a test model"
