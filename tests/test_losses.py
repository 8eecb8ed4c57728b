"""convlstm.losses: each loss against numbers computed another way, gradients, option errors, the
balanced loss's thresholds through the scalers, and the losses selected in training."""
import doctest
import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm import losses
from convlstm.data import Log1pScaler, MinMaxScaler, StandardScaler
from convlstm.losses import LOSS_NAMES, BalancedMSEMAE, MSESSIMLoss, get_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def t(a):
    return torch.tensor(np.asarray(a, dtype=np.float32))


def test_docstring_examples():
    result = doctest.testmod(losses, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------------- plain losses
def test_mse_mae_bce_against_loops():
    p = np.array([0.2, 0.9, 0.5, 0.0, 1.0, 0.7], dtype=np.float32).reshape(1, 2, 1, 3, 1)
    y = np.array([0.0, 1.0, 0.5, 1.0, 0.0, 1.2], dtype=np.float32).reshape(1, 2, 1, 3, 1)
    sq = ab = ce = 0.0
    lo, hi = float(np.float32(1e-7)), float(np.float32(1 - 1e-7))  # in float32, 1 - 1e-7 is 1 - 1.19e-7
    for pv, yv in zip(p.flatten().tolist(), y.flatten().tolist()):
        sq += (pv - yv) ** 2
        ab += abs(pv - yv)
        pc = min(max(pv, lo), hi)                       # clamped probability
        yc = min(max(yv, 0.0), 1.0)                     # clamped target (1.2 -> 1)
        ce -= yc * math.log(pc) + (1 - yc) * math.log(1 - pc)
    n = p.size
    assert float(losses.mse(t(p), t(y))) == pytest.approx(sq / n, rel=1e-6)
    assert float(losses.mae(t(p), t(y))) == pytest.approx(ab / n, rel=1e-6)
    # p = 0 with y = 1 costs -log(1e-7) = 16.12 and p = 1 with y = 0 -log(1.19e-7) = 15.94 (the clamp), not inf
    assert float(losses.bce(t(p), t(y))) == pytest.approx(ce / n, rel=1e-4)
    assert math.isfinite(float(losses.bce(t(p), t(y))))


def test_half_precision_is_computed_in_float32():
    rng = np.random.default_rng(0)
    p, y = (torch.tensor(rng.random((2, 2, 12, 12, 1)), dtype=torch.bfloat16) for _ in range(2))
    for name in LOSS_NAMES:
        fn = get_loss(name)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(p, y)
        assert out.dtype == torch.float32, name
        assert float(out) == pytest.approx(float(fn(p.float(), y.float())), rel=1e-6), name


def test_float64_stays_float64():
    p, y = torch.rand(1, 1, 12, 12, 1, dtype=torch.float64), torch.rand(1, 1, 12, 12, 1, dtype=torch.float64)
    for name in LOSS_NAMES:
        assert get_loss(name)(p, y).dtype == torch.float64, name


# ---------------------------------------------------------------------------------- MSE + SSIM
@pytest.mark.parametrize("data_range", [1.0, 4.0])
def test_ssim_term_matches_skimage(data_range):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    true = rng.random((2, 3, 16, 13, 2)) * data_range
    pred = np.clip(true + rng.normal(0, 0.2 * data_range, true.shape), 0, data_range)
    ref = np.mean([structural_similarity(pred[b, k], true[b, k], gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=data_range, channel_axis=-1)
                   for b in range(2) for k in range(3)])
    loss = MSESSIMLoss(ssim_weight=0.7, data_range=data_range)
    p, y = t(pred), t(true)
    assert float(loss.ssim(p, y)) == pytest.approx(ref, abs=2e-5)
    mse = np.mean((pred.astype(np.float32) - true.astype(np.float32)) ** 2)
    assert float(loss(p, y)) == pytest.approx(mse + 0.7 * (1 - ref), abs=2e-5)
    assert float(MSESSIMLoss(ssim_weight=0.0)(p, y)) == pytest.approx(mse, rel=1e-6)
    assert float(loss(y, y)) == pytest.approx(0.0, abs=1e-6)


def test_ssim_loss_refuses_small_frames():
    loss = get_loss("mse+ssim")
    x = torch.rand(1, 2, 6, 5, 1)
    with pytest.raises(ValueError, match=r"loss 'mse\+ssim' needs frames of at least 11x11 .*got 6x5 frames; "
                                         r"use loss='mse'"):
        loss(x, x)
    with pytest.raises(ValueError, match=r"5D \(B, T, H, W, C\)"):
        loss(torch.rand(2, 12, 12, 1), torch.rand(2, 12, 12, 1))


# ---------------------------------------------------------------------------------- balanced
def test_balanced_by_hand():
    # one frame of 2x2 pixels, one channel; default thresholds (2, 5, 10, 30), weights (1, 2, 5, 10, 30)
    #   y = [[1, 3], [7, 40]]   -> w = [[1, 2], [5, 30]]   (1 < 2; 2 <= 3 < 5; 5 <= 7 < 10; 40 >= 30)
    #   p = [[2, 3], [5, 10]]   -> d = p - y = [[1, 0], [-2, -30]]
    #   d^2 + |d|               = [[2, 0], [6, 930]]
    #   w * (d^2 + |d|)         = [[2, 0], [30, 27900]], sum 27932, mean over 4 values = 6983
    y = t([[1, 3], [7, 40]]).view(1, 1, 2, 2, 1)
    p = t([[2, 3], [5, 10]]).view(1, 1, 2, 2, 1)
    loss = BalancedMSEMAE()
    assert loss.pixel_weights(y).flatten().tolist() == [1, 2, 5, 30]
    assert float(loss(p, y)) == 6983.0
    # a value equal to a threshold takes the weight from that threshold up
    at = t([[2, 5], [10, 30]]).view(1, 1, 2, 2, 1)
    assert loss.pixel_weights(at).flatten().tolist() == [2, 5, 10, 30]
    # every value below the first threshold: plain MSE + MAE
    low = torch.full((1, 1, 2, 2, 1), 0.5)
    assert float(loss(low + 0.5, low)) == pytest.approx(0.25 + 0.5)


def test_balanced_against_loop_with_custom_thresholds():
    rng = np.random.default_rng(2)
    y = rng.uniform(-1, 4, (2, 2, 3, 3, 1)).astype(np.float32)
    p = rng.uniform(-1, 4, y.shape).astype(np.float32)
    thresholds, weights = [0.0, 1.5, 3.0], [0.5, 1.0, 4.0, 9.0]
    total = 0.0
    for idx in itertools.product(*(range(s) for s in y.shape)):
        yv, pv = float(y[idx]), float(p[idx])
        w = weights[sum(th <= yv for th in thresholds)]
        total += w * ((pv - yv) ** 2 + abs(pv - yv))
    loss = get_loss("balanced", thresholds=thresholds, weights=weights)
    assert float(loss(t(p), t(y))) == pytest.approx(total / y.size, rel=1e-5)


@pytest.mark.parametrize("scaler_cls", [MinMaxScaler, StandardScaler, Log1pScaler])
def test_balanced_on_scaled_data_weights_as_on_raw_data(scaler_cls):
    rng = np.random.default_rng(3)
    # two channels with different ranges (rain up to 60 mm/h, and up to 15), so each needs its own mapping
    raw = np.stack([rng.gamma(0.8, 8.0, (200, 6, 6)), rng.gamma(0.8, 2.0, (200, 6, 6))], -1)
    raw = np.clip(raw, 0, 60)
    thresholds = np.array([2.0, 5.0, 10.0, 30.0])
    near = np.abs(raw[..., None] - thresholds).min(-1) < 1e-3  # keep clear of float32 rounding at a threshold
    raw[near] += 2e-3
    scaler = scaler_cls().fit(raw[:150])
    scaled = scaler.transform(raw.astype(np.float64))
    loss = BalancedMSEMAE().set_value_transform(scaler.transform, channels=2)
    assert np.array(loss.scaled_thresholds).shape == (4, 2)
    y_raw = torch.tensor(raw[150:], dtype=torch.float32).view(2, 25, 6, 6, 2)
    y_scaled = torch.tensor(scaled[150:], dtype=torch.float32).view(2, 25, 6, 6, 2)
    expected = BalancedMSEMAE().pixel_weights(y_raw)
    assert {float(v) for v in expected.unique()} == {1.0, 2.0, 5.0, 10.0, 30.0}  # every class present
    assert torch.equal(loss.pixel_weights(y_scaled), expected)
    # and the loss is the weighted MSE + MAE of the scaled values with the raw data's weights
    p_scaled = y_scaled + torch.randn(y_scaled.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    d = p_scaled - y_scaled
    assert float(loss(p_scaled, y_scaled)) == pytest.approx(float((expected * (d * d + d.abs())).mean()), rel=1e-6)


def test_minmax_mapping_is_the_scalers_formula():
    scaler = MinMaxScaler().fit(np.array([[0.0, -10.0], [50.0, 10.0]]))
    loss = BalancedMSEMAE(thresholds=[2, 5], weights=[1, 2, 3]).set_value_transform(scaler.transform, channels=2)
    assert np.allclose(loss.scaled_thresholds, [[2 / 50, 12 / 20], [5 / 50, 15 / 20]])
    assert "scaled_thresholds" in repr(loss)


# ---------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_flow(name):
    gen = torch.Generator().manual_seed(4)
    true = torch.rand(2, 2, 12, 12, 1, generator=gen)
    pred = torch.rand(2, 2, 12, 12, 1, generator=gen).clamp(0.05, 0.95).requires_grad_(True)
    options = {"thresholds": [0.3, 0.6], "weights": [1, 3, 9]} if name == "balanced" else {}
    loss = get_loss(name, **options)(pred, true)
    loss.backward()
    g = pred.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_ssim_term_has_its_own_gradient():
    gen = torch.Generator().manual_seed(5)
    true = torch.rand(1, 1, 12, 12, 1, generator=gen)
    pred = torch.rand(1, 1, 12, 12, 1, generator=gen).requires_grad_(True)
    MSESSIMLoss().ssim(pred, true).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- errors
def test_bad_names_and_options():
    with pytest.raises(ValueError, match=r"loss must be one of mse, mae, bce, mse\+ssim, balanced; got 'l3'"):
        get_loss("l3")
    with pytest.raises(ValueError, match=r"loss 'mse' takes no options; got 'ssim_weight'"):
        get_loss("mse", ssim_weight=1.0)
    with pytest.raises(ValueError, match=r"loss 'mse\+ssim' takes the options ssim_weight, data_range; got 'window'"):
        get_loss("mse+ssim", window=7)
    with pytest.raises(ValueError, match=r"loss 'balanced' takes the options thresholds, weights; got 'weight'"):
        get_loss("balanced", weight=[1])
    with pytest.raises(ValueError, match=r"ssim_weight must be a finite number >= 0, got -1"):
        MSESSIMLoss(ssim_weight=-1)
    with pytest.raises(ValueError, match=r"data_range must be a finite number > 0, got 0"):
        MSESSIMLoss(data_range=0)
    with pytest.raises(ValueError, match=r"thresholds must be strictly increasing, got \[5.0, 2.0\]"):
        BalancedMSEMAE(thresholds=[5, 2], weights=[1, 2, 3])
    with pytest.raises(ValueError, match=r"weights must hold len\(thresholds\) \+ 1 = 5 numbers .*got 4"):
        BalancedMSEMAE(weights=[1, 2, 5, 10])
    with pytest.raises(ValueError, match=r"weights must be > 0, got \[1.0, 0.0, 5.0\]"):
        BalancedMSEMAE(thresholds=[1, 2], weights=[1, 0, 5])
    with pytest.raises(ValueError, match=r"thresholds must be a list of numbers, got 'heavy'"):
        BalancedMSEMAE(thresholds="heavy")
    with pytest.raises(ValueError, match=r"thresholds must be a list of finite numbers"):
        BalancedMSEMAE(thresholds=[1, float("nan")], weights=[1, 2, 3])
    with pytest.raises(ValueError, match=r"transform is not increasing"):
        BalancedMSEMAE().set_value_transform(lambda a: -a)
    log1p = Log1pScaler().fit(np.array([[0.0], [10.0]]))
    with pytest.raises(ValueError, match=r"map to non-finite values"):
        BalancedMSEMAE(thresholds=[-2, 1], weights=[1, 2, 3]).set_value_transform(log1p.transform)
    # a scaling flat under 1.0 (as one that maps all values under a rain/no-rain threshold to one value)
    with pytest.raises(ValueError, match=r"does not increase into threshold 0.5 \(channel 0\): a value a little "
                                         r"under it maps to 1, not below the threshold's 1"):
        BalancedMSEMAE(thresholds=[0.5, 2], weights=[1, 2, 3]).set_value_transform(lambda a: np.maximum(a, 1.0))
    loss = BalancedMSEMAE().set_value_transform(lambda a: a, channels=2)
    with pytest.raises(ValueError, match=r"mapped for 2 channels, but the targets have shape \(1, 1, 2, 2, 3\)"):
        loss(torch.zeros(1, 1, 2, 2, 3), torch.zeros(1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match=r"loss 'mae': pred and true must have the same shape"):
        losses.mae(torch.zeros(1, 2), torch.zeros(2, 1))
    with pytest.raises(TypeError, match=r"loss 'mse': pred must be a torch tensor, got ndarray"):
        losses.mse(np.zeros(3), torch.zeros(3))


# ---------------------------------------------------------------------------------- training
# (these need the train extra's Lightning; the tests above need only torch)
def test_config_cli_and_module_take_loss_options(tmp_path):
    import lightning  # noqa: F401

    from convlstm import cli
    from convlstm.training import FitConfig, ForecastModule, load_config, save_config

    cfg = FitConfig(loss="balanced", loss_options={"thresholds": (0.5, 2), "weights": [1, 2, 4]})
    assert cfg.loss_options == {"thresholds": [0.5, 2], "weights": [1, 2, 4]}
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert "loss_options:" in (tmp_path / "c.yaml").read_text()
    with pytest.raises(ValueError, match=r"loss_options: loss 'balanced': weights must hold len\(thresholds\) \+ 1"):
        FitConfig(loss="balanced", loss_options={"weights": [1]})
    with pytest.raises(ValueError, match=r"loss_options: loss 'mse' takes no options; got 'ssim_weight'"):
        FitConfig(loss_options={"ssim_weight": 0.5})
    with pytest.raises(ValueError, match=r"loss_options must be a mapping"):
        FitConfig(loss_options=[1])
    code = cli.main(["fit", "x.npy", "--loss", "mse+ssim", "--loss-option", "ssim_weight=0.25", "--loss-option",
                     "data_range=2", "--save-config", str(tmp_path / "cli.yaml")])
    assert code == 0
    got = load_config(tmp_path / "cli.yaml")
    assert got.loss == "mse+ssim" and got.loss_options == {"ssim_weight": 0.25, "data_range": 2}
    with pytest.raises(SystemExit):
        cli.main(["fit", "x.npy", "--loss-option", "ssim_weight"])
    assert cli.main(["fit", "x.npy", "--loss-option", "bogus=1", "--save-config", str(tmp_path / "b.yaml")]) == 2

    tiny = {"filters": [2], "kernel_sizes": [3]}
    with pytest.raises(ValueError, match=r"loss 'mse\+ssim' needs frames of at least 11x11 .*got 6x5"):
        ForecastModule("keras-nextframe", model_options=tiny, frame_shape=(6, 5, 1), loss="mse+ssim")
    with pytest.raises(ValueError, match=r"loss 'balanced' takes the options thresholds, weights; got 'x'"):
        ForecastModule("keras-nextframe", model_options=tiny, loss="balanced", loss_options={"x": 1})
    module = ForecastModule("keras-nextframe", model_options=tiny, loss="balanced",
                            loss_options={"thresholds": np.array([1.0, 2.0]), "weights": [1, 2, 3]})
    assert module.hparams.loss_options == {"thresholds": [1.0, 2.0], "weights": [1, 2, 3]}
    with pytest.warns(UserWarning, match=r"taken in the model's \(scaled\) units"):
        module.setup("fit")
    assert module.loss_fn.scaled_thresholds is None


def _series(n=30, size=12, seed=0):
    rng = np.random.default_rng(seed)
    tt = np.arange(n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    s = np.sin(0.5 * tt + 0.6 * xx[None]) * np.cos(0.4 * yy[None]) * 10 + 20 + rng.normal(0, 0.1, (n, size, size))
    return s[..., None].astype(np.float32)


@pytest.mark.parametrize("loss,options", [("mse+ssim", {"ssim_weight": 0.5}),
                                          ("balanced", {"thresholds": [15.0, 25.0], "weights": [1.0, 2.0, 4.0]})])
def test_fit_with_loss_saves_options_and_reloads(tmp_path, loss, options):
    import lightning.pytorch as pl

    from convlstm.training import FitConfig, GridDataModule, evaluate, fit, load_checkpoint

    seen = {}

    class Probe(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["loss_fn"] = pl_module.loss_fn
            seen["scaler"] = trainer.datamodule.scaler

    dm = GridDataModule(_series(), input_steps=3, output_steps=2, split=(0.6, 0.2, 0.2), batch_size=8)
    cfg = FitConfig(input_steps=3, output_steps=2, batch_size=8, max_epochs=1, lr=1e-2, progress=False,
                    accelerator="cpu", devices=1, split=[0.6, 0.2, 0.2], model="keras-nextframe",
                    model_options={"filters": [4], "kernel_sizes": [3]}, loss=loss, loss_options=options,
                    evaluate=False, run_dir=str(tmp_path / "r"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "thresholds taken in scaled units" warning here
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|treespec).*")
        run = fit(cfg, datamodule=dm, callbacks=[Probe()])
    ckpt = load_checkpoint(Path(run) / "checkpoints" / "last.ckpt")
    hp = ckpt["hyper_parameters"]
    assert hp["loss"] == loss and hp["loss_options"] == options
    assert ckpt["global_step"] > 0 and ckpt["epoch"] == 0  # it trained one epoch
    torch.load(Path(run) / "checkpoints" / "best.ckpt", weights_only=True)
    if loss == "balanced":
        mapped = seen["scaler"].transform(np.array([[15.0], [25.0]]))
        assert np.allclose(seen["loss_fn"].scaled_thresholds, mapped)
        assert 0 < mapped[0, 0] < mapped[1, 0] < 1  # minmax: inside the training range, in [0, 1]
    else:
        assert isinstance(seen["loss_fn"], MSESSIMLoss) and seen["loss_fn"].ssim_weight == 0.5
    results = evaluate(run, datamodule=GridDataModule(_series(), input_steps=3, output_steps=2,
                                                      split=(0.6, 0.2, 0.2), batch_size=8),
                       out_dir=tmp_path / "ev", plots=False)
    assert math.isfinite(results["model"]["mse"])
