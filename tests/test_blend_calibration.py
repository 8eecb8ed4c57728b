"""Blending a trained forecast toward the model's start: the closed-form weight against a search,
the weights a fit stores against forecasts recomputed by hand on the validation windows, and the
forecast of a blended model against its two parts."""
import json

import numpy as np
import pytest
import torch

from convlstm.models import create
from convlstm.models.blending import blend_weights
from convlstm.training import FitConfig, GridDataModule, fit
from convlstm.training.runs import find_checkpoint, load_module

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_closed_form_weight_is_the_best_weight_in_zero_one():
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 10001)
    for scale in (0.2, 1.0, -0.5, 3.0):     # a model a little right, right, wrong way, overshooting
        start = rng.normal(size=500)
        truth = start + rng.normal(size=500)
        model = start + scale * (truth - start) + 0.3 * rng.normal(size=500)
        sse = [np.sum((truth - start - w * (model - start)) ** 2) for w in grid]
        best = grid[int(np.argmin(sse))]
        w = blend_weights(torch.tensor([np.sum((model - start) * (truth - start))]),
                          torch.tensor([np.sum((model - start) ** 2)]))
        assert float(w) == pytest.approx(best, abs=2e-4)
    assert float(blend_weights(torch.tensor([0.0]), torch.tensor([0.0]))) == 1.0   # never moved: keep


def test_a_blended_warp_model_is_its_start_plus_the_weighted_change():
    torch.manual_seed(0)
    model = create("convlstm-warp", in_channels=2, input_steps=4, output_steps=3, filters=(4,), frame_size=(20, 12))
    with torch.no_grad():
        for p in model.decoder.parameters():     # a trained-looking decoder: not the start any more
            p.normal_(0, 0.05)
        x = torch.rand(2, 4, 20, 12, 2)
        raw, start = model(x), model.start_forecast(x)
        assert (raw - start).abs().max() > 1e-3
        w = torch.tensor([[0.0, 1.0], [0.5, 0.25], [1.0, 1.0]])
        model.set_blend(w)
        blended = model(x)
    expected = start + w[None, :, None, None, :] * (raw - start)
    torch.testing.assert_close(blended, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        model.set_blend(torch.ones(3))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        model.set_blend(torch.full((3, 2), 1.5))


def test_a_checkpoint_without_blend_weights_loads_unblended():
    model = create("convlstm-warp", in_channels=1, input_steps=3, output_steps=2, filters=(4,), frame_size=(8, 8))
    state = {k: v for k, v in model.state_dict().items() if k != "blend"}
    again = create("convlstm-warp", in_channels=1, input_steps=3, output_steps=2, filters=(4,), frame_size=(8, 8))
    again.load_state_dict(state)
    assert torch.equal(again.blend, torch.ones(2, 1)) and not again._blending


def _series(n=60, size=10):
    """A bright square drifting one cell a step over noise: motion to extrapolate, noise to miss."""
    rng = np.random.default_rng(3)
    frames = 0.2 * rng.random((n, size, size, 1)).astype(np.float32)
    for t in range(n):
        r = t % (size - 3)
        frames[t, r:r + 3, 2:5, 0] += 1.0
    return frames


@pytest.mark.parametrize("model", ["convlstm-warp", "st-convlstm"])
def test_fit_stores_the_weights_that_minimise_the_validation_error(tmp_path, model, capsys):
    np.save(tmp_path / "s.npy", _series())
    split = [0.6, 0.2, 0.2]
    run = fit(FitConfig(data=str(tmp_path / "s.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
                        split=split, progress=False, accelerator="cpu", devices=1, model=model,
                        model_options={"filters": [4]}, run_dir=str(tmp_path / "run"), lr=0.05))
    blend = json.loads((run / "metrics.json").read_text())["blend"]
    module, _ = load_module(find_checkpoint(run))
    net = module.model
    assert torch.equal(net.blend, torch.tensor(blend["weights"]))
    # by hand: the validation windows, the model's raw forecast and its start, in the scaled units
    dm = GridDataModule(_series(), input_steps=3, output_steps=2, split=split)
    dm.setup("fit")
    xs, ys = zip(*(dm.datasets["val"][i][:2] for i in range(len(dm.datasets["val"]))))
    x, y = torch.stack(xs), torch.stack(ys)
    with torch.no_grad():
        blended = module(x)
        net.set_blend(torch.ones_like(net.blend))
        raw, start = module(x), net.start_forecast(x)
    w = torch.tensor(blend["weights"])
    torch.testing.assert_close(blended, start + w[None, :, None, None, :] * (raw - start), rtol=1e-5, atol=1e-6)
    mse = lambda f: float(((f.double() - y.double()) ** 2).mean())  # noqa: E731
    assert blend["val_mse"]["model"] == pytest.approx(mse(raw), rel=1e-6)
    assert blend["val_mse"]["start"] == pytest.approx(mse(start), rel=1e-6)
    assert blend["val_mse"]["blend"] == pytest.approx(mse(blended), rel=1e-5)
    assert blend["val_mse"]["blend"] <= min(blend["val_mse"]["model"], blend["val_mse"]["start"]) + 1e-12
    assert "convlstm fit: " in capsys.readouterr().out


def test_no_calibrate_blend_keeps_the_trained_forecast(tmp_path):
    np.save(tmp_path / "s.npy", _series())
    run = fit(FitConfig(data=str(tmp_path / "s.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
                        split=[0.6, 0.2, 0.2], progress=False, accelerator="cpu", devices=1,
                        model_options={"filters": [4]}, run_dir=str(tmp_path / "run"), calibrate_blend=False))
    assert "blend" not in json.loads((run / "metrics.json").read_text())
    module, _ = load_module(find_checkpoint(run))
    assert torch.equal(module.model.blend, torch.ones(2, 1))
