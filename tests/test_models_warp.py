"""MotionWarpForecaster (``convlstm-warp``): the warp against analytic shifts, shapes, parameter
counts worked out by hand, the persistence start, scheduled sampling, checkpoints, and a learning
check on a tiny moving field."""
import math

import numpy as np

import pytest
import torch

import convlstm.models as models
from convlstm.models import MotionWarpForecaster, auto_patch_size, warp_frame
from convlstm.models.warp import apply_local_kernels, block_matching


# ----------------------------------------------------------------------------- warp_frame
def test_warp_integer_displacement_is_an_exact_shift():
    torch.manual_seed(0)
    f = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    u = torch.zeros(2, 2, 9, 11, dtype=torch.float64)
    u[:, 0], u[:, 1] = -2.0, 1.0          # out(r, c) = f(r + 1, c - 2)
    out = warp_frame(f, u, padding_mode="zeros")
    expected = torch.zeros_like(f)
    expected[:, :, :-1, 2:] = f[:, :, 1:, :-2]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_warp_half_pixel_is_the_mean_of_two_neighbours():
    f = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4) ** 2
    u = torch.zeros(1, 2, 3, 4, dtype=torch.float64)
    u[:, 0] = 0.5                          # halfway to the next column: bilinear = the mean
    out = warp_frame(f, u, padding_mode="border")
    torch.testing.assert_close(out[..., :3], (f[..., :3] + f[..., 1:]) / 2, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[..., 3], f[..., 3], rtol=0, atol=1e-12)   # border: the edge value


def test_warp_zero_displacement_is_identity():
    f = torch.rand(1, 2, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(warp_frame(f, torch.zeros(1, 2, 5, 7, dtype=torch.float64)), f, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
def test_local_kernels_against_a_loop(padding_mode):
    torch.manual_seed(1)
    r = 2
    f = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    logits = torch.randn(2, 25, 6, 7, dtype=torch.float64)
    w = torch.softmax(logits, dim=1)
    expected = torch.zeros_like(f)
    for i in range(6):
        for j in range(7):
            for n, (dr, dc) in enumerate((dr, dc) for dr in range(-r, r + 1) for dc in range(-r, r + 1)):
                ii, jj = i + dr, j + dc
                if padding_mode == "border":
                    ii, jj = min(max(ii, 0), 5), min(max(jj, 0), 6)
                elif not (0 <= ii < 6 and 0 <= jj < 7):
                    continue
                expected[:, :, i, j] += w[:, n, i, j, None] * f[:, :, ii, jj]
    torch.testing.assert_close(apply_local_kernels(f, logits, r, padding_mode), expected, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- model
@pytest.mark.parametrize("rows,cols,expected", [(256, 256, 4), (64, 64, 1), (65, 64, 2), (32, 32, 1), (16, 8, 1),
                                                (512, 128, 4), (1024, 1024, 16)])
def test_auto_patch_size(rows, cols, expected):
    assert auto_patch_size(rows, cols) == expected
    p = expected
    assert math.ceil(rows / p) * math.ceil(cols / p) <= 64 * 64
    if p > 1:
        assert math.ceil(rows / (p // 2)) * math.ceil(cols / (p // 2)) > 64 * 64


def _count_by_hand_p2():
    """channels 1, filters (8,), 3x3, patch 2, encoder width 4 (widths 4, 8), warp, coarse flow,
    correction: every convolution's weights and biases added up by hand."""
    conv = lambda cin, cout: cin * cout * 9 + cout   # noqa: E731 - 3x3 conv with bias
    encoder = conv(2, 4) + conv(4, 8) + conv(8, 8)   # stem (frame and difference), halving, conv
    rnn = 4 * 8 * 8 * 9 + 4 * 8 * 8 * 9 + 4 * 8      # input kernel, recurrent kernel, bias
    decoder = conv(8 + 8, 8) + conv(8 + 4, 4) + conv(4, 1)   # fuse at 1/2, up + skip, correction
    flow = conv(8, 2)
    return encoder + rnn + decoder + flow


def test_parameter_count_matches_a_count_by_hand():
    model = MotionWarpForecaster(channels=1, filters=(8,), kernel_size=3, patch_size=2, encoder_width=4)
    assert sum(p.numel() for p in model.parameters()) == _count_by_hand_p2() == 7375


@pytest.mark.parametrize("head", ["warp", "kernel", "residual", "direct"])
@pytest.mark.parametrize("patch", [1, 2, 4])
def test_shapes_any_frame_size(head, patch):
    model = MotionWarpForecaster(channels=2, filters=(6, 5), patch_size=patch, encoder_width=4, head=head,
                                 output_steps=4)
    x = torch.rand(3, 5, 13, 10, 2)        # not multiples of the patch: padded, then cropped back
    assert model(x).shape == (3, 4, 13, 10, 2)


@pytest.mark.parametrize("head", ["warp", "residual"])
def test_untrained_model_forecasts_persistence(head):
    model = MotionWarpForecaster(channels=1, filters=(8,), patch_size=2, encoder_width=4, head=head, output_steps=3,
                                 motion="learned")
    x = torch.rand(2, 4, 16, 16, 1)
    torch.testing.assert_close(model(x), x[:, -1:].expand(-1, 3, -1, -1, -1), rtol=0, atol=1e-5)


def test_untrained_warp_with_block_matching_continues_the_motion():
    """A square moving (+1 row, +2 cols) per frame: before any training, the block-matching
    start continues that motion: the forecast square's centre is within 0.5 pixel per lead time
    of the true one (block matching on so small an object finds the columns' motion within 0.1
    and the rows' within 0.5 pixel); without motion the error would be 2.2 pixels per step."""
    frames = torch.zeros(2, 6, 20, 20, 1)
    for t in range(6):
        frames[:, t, 3 + t:6 + t, 2 + 2 * t:5 + 2 * t] = 1.0
    x, y = frames[:, :3], frames[:, 3:]
    model = MotionWarpForecaster(channels=1, filters=(8,), patch_size=1, encoder_width=4, output_steps=3,
                                 padding_mode="zeros")
    pred = model(x)[..., 0]
    rows, cols = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")

    def centre(f):
        return torch.stack(((f * rows).sum((-1, -2)) / f.sum((-1, -2)), (f * cols).sum((-1, -2)) / f.sum((-1, -2))))

    error = (centre(pred) - centre(y[..., 0])).abs()                  # (2, batch, lead)
    assert (error <= 0.5 * torch.arange(1, 4.0)).all(), error
    torch.testing.assert_close(pred.sum((-1, -2)), y[..., 0].sum((-1, -2)), rtol=0.05, atol=0)   # no mass lost


def test_block_matching_finds_a_known_shift():
    torch.manual_seed(0)
    prev = torch.rand(1, 2, 16, 16)
    cur = torch.roll(prev, shifts=(-1, 3), dims=(2, 3))       # content moved 1 row up, 3 cols right
    u = block_matching(prev, cur, 4)
    inner = u[0, :, 5:11, 5:11]                                # away from the wrapped edges
    torch.testing.assert_close(inner[0], torch.full_like(inner[0], -3.0), rtol=0, atol=0.05)
    torch.testing.assert_close(inner[1], torch.full_like(inner[1], 1.0), rtol=0, atol=0.05)


def test_block_matching_adds_the_pairs_costs():
    """P copies of one pair scale every cost by P: the same motion as the pair alone (argmin,
    the refinement's ratio and the confidence weights' ratios are all scale-free)."""
    torch.manual_seed(1)
    prev = torch.rand(2, 1, 24, 24)
    cur = torch.roll(prev, shifts=(2, -1), dims=(2, 3)) + 0.05 * torch.rand(2, 1, 24, 24)
    one = block_matching(prev, cur, 3)
    three = block_matching(prev[:, None].expand(-1, 3, -1, -1, -1), cur[:, None].expand(-1, 3, -1, -1, -1), 3)
    torch.testing.assert_close(three, one, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        block_matching(prev, cur[:, None], 3)


def test_block_matching_over_several_pairs_is_steadier_than_one_pair():
    """A random texture moving a known (+1 row, -2 cols) per frame, each frame with independent
    noise as strong as the texture's own detail: matched over five pairs the motion is several
    times closer to the truth than matched on the last pair alone."""
    torch.manual_seed(2)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 80, 80), 3, stride=1, padding=1)
    frames = torch.stack([torch.roll(texture, shifts=(t, -2 * t), dims=(2, 3)) for t in range(6)], dim=1)
    frames = frames + 0.3 * torch.rand_like(frames) * texture.std() / 0.29
    truth = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)        # backward: look 2 cols right, 1 row up
    inner = (slice(None), slice(None), slice(12, 68), slice(12, 68))
    last = (block_matching(frames[:, -2], frames[:, -1], 4) - truth)[inner].abs().mean()
    every = (block_matching(frames[:, :-1], frames[:, 1:], 4) - truth)[inner].abs().mean()
    assert every < 0.5 * last and every < 0.05, (float(every), float(last))


def test_auto_motion_radius_finds_fast_motion_on_large_frames():
    """On 256 x 256 frames a blob moving 12 pixels per step is beyond the old radius of 8 and
    within ``auto_motion_radius`` (16): continued within a pixel per lead time."""
    from convlstm.models.warp import auto_motion_radius

    assert auto_motion_radius(256, 256) == 16 and auto_motion_radius(128, 64) == 8
    rows, cols = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")

    def blob(t):
        return torch.exp(-((rows - 128) ** 2 + (cols - 40 - 12 * t) ** 2) / 200)

    x = torch.stack([blob(t) for t in range(4)])[None, ..., None]
    model = MotionWarpForecaster(channels=1, filters=(4,), encoder_width=4, output_steps=2)
    with torch.no_grad():
        pred = model(x)[0, ..., 0]
    for k in range(2):
        centre = float((pred[k] * cols).sum() / pred[k].sum())
        assert abs(centre - (40 + 12 * (4 + k))) < 1.0 * (k + 1), (k, centre)


def test_a_checkpoint_without_the_motion_rule_keeps_the_last_pair_rule():
    """A state dict saved before the motion rule was recorded loads as rule 1 and measures the
    motion as it did then (the last two frames, radius 8, frames averaged down to 64 x 64 cells);
    a state dict saved now round-trips rule 2; an unknown rule is refused."""
    model = MotionWarpForecaster(channels=1, filters=(4,), encoder_width=4, output_steps=2, frame_size=(64, 64))
    state = model.state_dict()
    assert state["_extra_state"] == {"motion_rule": 2}
    old = {k: v for k, v in state.items() if k != "_extra_state"}
    restored = MotionWarpForecaster(channels=1, filters=(4,), encoder_width=4, output_steps=2, frame_size=(64, 64))
    restored.load_state_dict(old)
    assert restored.motion_rule == 1
    frames = torch.rand(2, 4, 1, 64, 64)
    torch.testing.assert_close(restored._observed_motion(frames), block_matching(frames[:, -2], frames[:, -1], 8))
    again = MotionWarpForecaster(channels=1, filters=(4,), encoder_width=4, output_steps=2, frame_size=(64, 64))
    again.motion_rule = 1
    again.load_state_dict(state)
    assert again.motion_rule == 2
    with pytest.raises(ValueError, match="motion_rule=7"):
        again.load_state_dict({**state, "_extra_state": {"motion_rule": 7}})


def test_untrained_kernel_head_is_nearly_the_identity():
    """The centre offset's logit starts 8 above the 80 others: weight e^8 / (e^8 + 80) on the
    pixel itself and 1 / (e^8 + 80) on each neighbour of the 9x9 window (edge values beyond)."""
    model = MotionWarpForecaster(channels=1, filters=(8,), patch_size=2, encoder_width=4, head="kernel",
                                 correction=False, output_steps=1)
    x = torch.rand(2, 4, 16, 16, 1)
    last = x[:, -1].movedim(-1, 1).double()
    window_sum = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(last, (4,) * 4, mode="replicate"), 9,
                                                stride=1) * 81
    z = math.exp(8) + 80
    expected = (math.exp(8) / z) * last + (window_sum - last) / z
    torch.testing.assert_close(model(x)[:, 0].movedim(-1, 1).double(), expected, rtol=0, atol=1e-6)


def test_auto_patch_is_fixed_by_the_first_input_and_restored_from_a_state_dict():
    model = MotionWarpForecaster(filters=(4,), encoder_width=4, output_steps=2)
    model(torch.rand(1, 3, 100, 100, 1))
    assert model.patch_size == 2
    fresh = MotionWarpForecaster(filters=(4,), encoder_width=4, output_steps=2)
    fresh.load_state_dict(model.state_dict())
    assert fresh.patch_size == 2
    x = torch.rand(2, 3, 100, 100, 1)
    torch.testing.assert_close(fresh(x), model(x))


def test_registry_builds_it_and_the_toolkit_sizes_fit():
    model = models.create("convlstm-warp", in_channels=2, channels=2, frame_size=[256, 256], input_steps=6,
                          output_steps=3)
    assert model.patch_size == 4 and model.input_steps == 6
    with pytest.raises(ValueError, match="input_steps=6"):
        model(torch.rand(1, 5, 256, 256, 2))


def test_teacher_forcing_feeds_the_true_frames():
    torch.manual_seed(0)
    model = MotionWarpForecaster(channels=1, filters=(4,), patch_size=1, encoder_width=4, output_steps=3,
                                 head="direct")
    for p in model.parameters():                       # leave the zero start: every step matters
        torch.nn.init.normal_(p, std=0.1)
    x, y = torch.rand(2, 4, 8, 8, 1), torch.rand(2, 3, 8, 8, 1)
    free = model(x)
    forced = model(x, targets=y, teacher_forcing=1.0)
    torch.testing.assert_close(forced[:, 0], free[:, 0])    # the first lead time sees only the inputs
    assert not torch.allclose(forced[:, 1:], free[:, 1:])
    # forced lead time k + 1 is the first forecast from the inputs followed by the true frames 1..k
    for k in (1, 2):
        longer = torch.cat((x, y[:, :k]), dim=1)
        torch.testing.assert_close(forced[:, k], model(longer)[:, 0], rtol=1e-5, atol=1e-6)
    assert torch.equal(model(x, targets=y, teacher_forcing=0.0), free)      # 0: free running


def test_bad_options_name_the_parameter():
    with pytest.raises(ValueError, match="patch_size must be a power of two"):
        MotionWarpForecaster(patch_size=3)
    with pytest.raises(ValueError, match="head=.flow. is not allowed"):
        MotionWarpForecaster(head="flow")
    with pytest.raises(ValueError, match="correction=False"):
        MotionWarpForecaster(head="residual", correction=False)
    with pytest.raises(ValueError, match="teacher_forcing"):
        MotionWarpForecaster(patch_size=1)(torch.rand(1, 2, 4, 4, 1), teacher_forcing=1.5)


def test_learns_a_moving_square_better_than_persistence():
    """A 3x3 square moving one pixel right per frame on a 12x12 grid: persistence is wrong by the
    whole square's edge; a warp that learns the motion is nearly exact."""
    torch.manual_seed(0)

    def batch(n):
        frames = torch.zeros(n, 7, 12, 12, 1)
        rows = torch.randint(1, 8, (n,))
        cols = torch.randint(0, 3, (n,))
        for i in range(n):
            for t in range(7):
                c = int(cols[i]) + t
                frames[i, t, rows[i]:rows[i] + 3, c:c + 3] = 1.0
        return frames[:, :4], frames[:, 4:]

    model = MotionWarpForecaster(channels=1, filters=(8,), patch_size=2, encoder_width=8, output_steps=3,
                                 padding_mode="zeros")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        x, y = batch(16)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = batch(64)
    with torch.no_grad():
        model_mse = torch.nn.functional.mse_loss(model(x), y).item()
    persistence_mse = torch.nn.functional.mse_loss(x[:, -1:].expand_as(y), y).item()
    assert model_mse < 0.25 * persistence_mse, (model_mse, persistence_mse)


# ----------------------------------------------------------------------------- in the toolkit
def test_scheduled_sampling_schedule_and_a_fit(tmp_path):
    """q = max(0, 1 - step / (s * total)): all teacher forcing at the start, none after the first
    fraction s of the optimizer steps; a fit with it runs and records it in the checkpoint."""
    from types import SimpleNamespace

    import numpy as np

    from convlstm.training import ForecastModule, fit
    from convlstm.training.module import load_checkpoint

    module = ForecastModule("convlstm-warp", model_options={"filters": [4], "encoder_width": 4}, input_steps=3,
                            output_steps=2, frame_shape=(8, 8, 1), scheduled_sampling=0.5)
    module.train()
    for step, expected in ((0, 1.0), (10, 0.8), (25, 0.5), (50, 0.0), (90, 0.0)):
        module._trainer = SimpleNamespace(estimated_stepping_batches=100, global_step=step)
        assert module.teacher_forcing() == pytest.approx(expected)
    module.eval()
    assert module.teacher_forcing() == 0.0
    module._trainer = None
    with pytest.raises(ValueError, match="scheduled_sampling=0.5 needs a model that feeds"):
        ForecastModule("keras-nextframe", input_steps=3, output_steps=2, frame_shape=(8, 8, 1),
                       scheduled_sampling=0.5)
    with pytest.raises(ValueError, match="scheduled_sampling must be a fraction"):
        ForecastModule("convlstm-warp", scheduled_sampling=1.5)

    rng = np.random.default_rng(0)
    np.save(tmp_path / "grid.npy", rng.random((60, 8, 8, 1)).astype(np.float32))
    run = fit(data=str(tmp_path / "grid.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
              model="convlstm-warp", model_options={"filters": [4], "encoder_width": 4}, scheduled_sampling=0.5,
              progress=False, accelerator="cpu", devices=1, run_dir=str(tmp_path / "run"))
    hp = load_checkpoint(run / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hp["scheduled_sampling"] == 0.5 and hp["model"] == "convlstm-warp"


def test_untrained_warp_with_coarse_block_matching_continues_a_smooth_motion():
    """With patch_size 4 the motion is matched on 4x4-averaged frames (radius ceil(8 / 4) = 2
    cells) and up-sampled: a Gaussian blob moving (+2 rows, -3 cols) per frame on 48x48 is still
    continued within 0.25 pixel per lead time (persistence is 3.6 pixels off per step)."""
    rows, cols = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    frames = torch.stack([torch.exp(-((rows - 14 - 2 * t) ** 2 + (cols - 30 + 3 * t) ** 2) / 18) for t in range(6)])
    x, y = frames[None, :3, :, :, None], frames[None, 3:]
    model = MotionWarpForecaster(channels=1, filters=(8,), patch_size=4, encoder_width=4, output_steps=3)
    pred = model(x)[0, ..., 0]

    def centre(f):
        return torch.stack(((f * rows).sum((-1, -2)) / f.sum((-1, -2)), (f * cols).sum((-1, -2)) / f.sum((-1, -2))))

    error = (centre(pred) - centre(y[0])).abs()
    assert (error <= 0.25 * torch.arange(1, 4.0)).all(), error


@pytest.mark.parametrize("size", [1, 3, 9, 17, 41])
def test_box_mean_equals_avg_pool_without_padding(size):
    from convlstm.models.warp import box_mean

    x = torch.rand(2, 3, 13, 17, dtype=torch.float64)
    expected = torch.nn.functional.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)
    torch.testing.assert_close(box_mean(x, size), expected, rtol=0, atol=1e-12)


def test_docstring_examples_run():
    import doctest

    from convlstm.models import warp

    result = doctest.testmod(warp, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 10, result


def test_untrained_lucas_kanade_warp_is_pysteps_extrapolation():
    """motion='lucas-kanade' starts from pysteps's own extrapolation nowcast (its Lucas-Kanade
    motion and semi-Lagrangian advection, called through convlstm.extrapolation)."""
    pytest.importorskip("pysteps")
    from convlstm.extrapolation import extrapolation_forecast

    rows, cols = np.mgrid[:64, :64]
    frames = np.stack([np.exp(-((rows - 20 - k) ** 2 + (cols - 20 - 2 * k) ** 2) / 30.0)
                       + 0.5 * np.exp(-((rows - 40 - k) ** 2 + (cols - 30 - 2 * k) ** 2) / 20.0)
                       for k in range(5)]).astype(np.float32)
    x = torch.from_numpy(frames)[None, :, :, :, None]
    model = MotionWarpForecaster(channels=1, output_steps=3, motion="lucas-kanade", frame_size=(64, 64))
    with torch.no_grad():
        forecast = model(x)
    np.testing.assert_allclose(forecast.numpy(), extrapolation_forecast(x.numpy(), 3), atol=1e-5)
    assert model.starts_from == "extrapolation"
    with torch.no_grad():
        assert torch.equal(model.start_forecast(x), forecast)


def test_a_lucas_kanade_model_is_refused_by_onnx_export_by_name(tmp_path):
    from convlstm.onnx import export

    model = MotionWarpForecaster(channels=1, output_steps=2, motion="lucas-kanade", frame_size=(16, 16))
    with pytest.raises(ValueError, match="motion='lucas-kanade' measures the motion with pysteps"):
        export(model, tmp_path / "m.onnx", torch.zeros(1, 4, 16, 16, 1))


def test_the_memory_probe_estimates_a_lucas_kanade_model():
    """The probe's fake tensors hold no values for pysteps: the motion is taken as zero, of its size;
    without block matching's (2r+1)^2 cost maps the estimate is smaller."""
    from convlstm.training.memory import estimate_training_memory

    sizes = []
    for motion in ("lucas-kanade", "block-matching"):
        torch.manual_seed(0)
        model = MotionWarpForecaster(channels=1, output_steps=2, motion=motion, frame_size=(32, 32), filters=(4,))
        sizes.append(estimate_training_memory(model, (4, 32, 32, 1), (2, 32, 32, 1)).total(8))
    assert 0 < sizes[0] < sizes[1]


def test_the_motion_cache_returns_the_field_measured_on_the_same_frames():
    pytest.importorskip("pysteps")
    from convlstm.models.warp import MotionCache, lucas_kanade_motion

    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.random((2, 4, 1, 32, 32)))
    cache = MotionCache()
    first = lucas_kanade_motion(frames, cache)
    assert len(cache._fields) == 2
    np.testing.assert_array_equal(lucas_kanade_motion(frames, cache).numpy(), first.numpy())
    np.testing.assert_array_equal(lucas_kanade_motion(frames).numpy(), first.numpy())   # as without a cache
    assert len(cache._fields) == 2
    small = MotionCache(max_bytes=1)          # keeps the newest field only
    lucas_kanade_motion(frames, small)
    assert len(small._fields) == 1


def test_block_matching_is_cached_per_sample_and_equals_the_uncached_motion():
    """The block-matching motion is measured once per window: a batch mixing seen and new windows
    computes only the new ones, and the forecast equals the model's without a cache (block
    matching itself, each sample on its own)."""
    from convlstm.models.warp import block_matching

    torch.manual_seed(0)
    model = MotionWarpForecaster(channels=1, output_steps=2, frame_size=(32, 32), filters=(4,)).eval()
    x = torch.rand(6, 5, 32, 32, 1)
    calls = []
    original = model._motion

    def counted(frames):
        calls.append(frames.shape[0])
        return original(frames)

    model._motion = counted
    with torch.no_grad():
        first = model(x[:4])
        assert calls == [4] and len(model._motion_cache._fields) == 4
        mixed = model(x[2:6])                      # two seen, two new
        assert calls == [4, 2] and len(model._motion_cache._fields) == 6
        again = model(x[:4])
        assert calls == [4, 2]
        model._motion_cache = None                 # the uncached path
        plain = model(x[:6])
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    torch.testing.assert_close(mixed, plain[2:6], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(first, plain[:4], rtol=1e-6, atol=1e-6)
    # the motion itself: block matching of every consecutive pair (32 x 32: full resolution,
    # radius 8, window 17, spread 33), sample by sample
    frames = x.movedim(-1, 2)
    for i in range(6):
        want = block_matching(frames[i:i + 1, :-1], frames[i:i + 1, 1:], 8, 17, 33)
        got = model._observed_motion(frames[i:i + 1])
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_the_cache_is_not_read_while_tracing():
    """A trace (ONNX export, TorchScript) must record block matching, not a cached constant."""
    from convlstm.models.warp import MotionCache, cached_per_sample

    cache = MotionCache()
    x = torch.rand(2, 3)
    cached_per_sample(x, lambda t: t * 2, cache)
    assert len(cache._fields) == 2

    def f(t):
        return cached_per_sample(t, lambda u: u * 3, cache)

    traced = torch.jit.trace(f, x, check_trace=False)
    torch.testing.assert_close(traced(x), x * 3)              # computed in the trace, not read
    torch.testing.assert_close(f(x), x * 2)                   # the cache answers outside it
