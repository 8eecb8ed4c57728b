import csv
import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from convlstm import metrics as M


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(seed=0, shape=(3, 4, 16, 18, 2)):
    rng = np.random.default_rng(seed)
    true = rng.random(shape)
    pred = np.clip(true + 0.15 * rng.standard_normal(shape), 0, 1)
    return pred, true


# ------------------------------------------------------------------ pointwise errors, by hand
def test_errors_hand_computed():
    true = np.zeros((2, 2, 1, 2, 1))
    pred = np.zeros((2, 2, 1, 2, 1))
    pred[0, 0, 0, 0, 0] = 2.0   # lead 1, sample 0: errors (2, 0)
    pred[1, 0, 0, 1, 0] = -1.0  # lead 1, sample 1: errors (0, -1)
    pred[:, 1] = 1.0            # lead 2: every error 1
    # lead 1: squares 4, 0, 0, 1 -> mean 5/4 ; abs 2, 0, 0, 1 -> 3/4
    np.testing.assert_allclose(M.mse(pred, true), [1.25, 1.0])
    np.testing.assert_allclose(M.mae(pred, true), [0.75, 1.0])
    np.testing.assert_allclose(M.rmse(pred, true), [math.sqrt(1.25), 1.0])
    # frame sums (2 values per frame): sample sums 4 and 1 -> mean 2.5 ; abs 2 and 1 -> 1.5
    np.testing.assert_allclose(M.mse_frame_sum(pred, true), [2.5, 2.0])
    np.testing.assert_allclose(M.mae_frame_sum(pred, true), [1.5, 2.0])
    assert M.mse(pred, true, per_lead_time=False) == pytest.approx(1.125)
    assert M.rmse(pred, true, per_lead_time=False) == pytest.approx(math.sqrt(1.125))
    assert M.mse_frame_sum(pred, true, per_lead_time=False) == pytest.approx(2.25)
    assert isinstance(M.mae(pred, true, per_lead_time=False), float)


def test_torch_and_numpy_agree():
    pred, true = _data()
    for fn in (M.mse, M.mae, M.rmse, M.mse_frame_sum, M.mae_frame_sum):
        np.testing.assert_allclose(fn(torch.from_numpy(pred).float(), torch.from_numpy(true).float()),
                                   fn(pred, true), rtol=1e-5)


# ------------------------------------------------------------------ PSNR / SSIM against scikit-image
def test_psnr_matches_skimage():
    pred, true = _data(1)
    ref = np.array([[peak_signal_noise_ratio(true[n, t], pred[n, t], data_range=1.0)
                     for t in range(true.shape[1])] for n in range(true.shape[0])])
    np.testing.assert_allclose(M.psnr(pred, true, 1.0), ref.mean(0), rtol=1e-12)
    assert M.psnr(pred, true, 1.0, per_lead_time=False) == pytest.approx(ref.mean(), rel=1e-12)
    assert M.psnr(np.full((1, 1, 4, 4, 1), 0.1), np.zeros((1, 1, 4, 4, 1)), 1.0)[0] == pytest.approx(20.0)
    assert math.isinf(M.psnr(true, true, 1.0, per_lead_time=False))


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_matches_skimage(data_range):
    pred, true = _data(2, (2, 3, 17, 23, 3))
    pred, true = pred * data_range, true * data_range
    ref = np.array([[structural_similarity(true[n, t], pred[n, t], gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=data_range, channel_axis=-1)
                     for t in range(true.shape[1])] for n in range(true.shape[0])])
    np.testing.assert_allclose(M.ssim(pred, true, data_range), ref.mean(0), rtol=1e-10, atol=1e-12)
    assert M.ssim(pred, true, data_range, per_lead_time=False) == pytest.approx(ref.mean(), rel=1e-10)
    np.testing.assert_allclose(M.ssim(true, true, data_range), 1.0)


def test_ssim_small_frames_rejected():
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(np.zeros((1, 1, 10, 12, 1)), np.zeros((1, 1, 10, 12, 1)), 1.0)


# ------------------------------------------------------------------ contingency scores
def test_csi_pod_far_hand_counted():
    # lead 1: hits 1 (0.9/0.8), misses 1 (0.1/0.7), false alarms 2 (0.6/0.2, 0.5/0.0), neg 0
    # lead 2: nothing observed, nothing forecast
    pred = np.array([[[0.9, 0.1], [0.6, 0.5]], [[0.0, 0.0], [0.0, 0.0]]]).reshape(1, 2, 2, 2, 1)
    true = np.array([[[0.8, 0.7], [0.2, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]).reshape(1, 2, 2, 2, 1)
    csi, pod, far = M.csi(pred, true, 0.5), M.pod(pred, true, 0.5), M.far(pred, true, 0.5)
    assert csi[0] == pytest.approx(1 / 4) and pod[0] == pytest.approx(1 / 2) and far[0] == pytest.approx(2 / 3)
    assert np.isnan(csi[1]) and np.isnan(pod[1]) and np.isnan(far[1])
    # overall counts pool the lead times
    assert M.csi(pred, true, 0.5, per_lead_time=False) == pytest.approx(0.25)
    # the threshold is inclusive (>=)
    assert M.pod(pred, true, 0.8)[0] == pytest.approx(1.0)


# ------------------------------------------------------------------ baselines
def test_persistence_and_climatology():
    x = np.arange(2 * 3 * 2 * 2 * 1, dtype=float).reshape(2, 3, 2, 2, 1)
    p = M.persistence_forecast(x, 4)
    assert p.shape == (2, 4, 2, 2, 1)
    for t in range(4):
        np.testing.assert_array_equal(p[:, t], x[:, -1])
    pt = M.persistence_forecast(torch.from_numpy(x), 2)
    assert isinstance(pt, torch.Tensor) and tuple(pt.shape) == (2, 2, 2, 2, 1)
    mean = x.reshape(-1, 2, 2, 1).mean(0)
    c = M.climatology_forecast(mean, 5, 3)
    assert c.shape == (5, 3, 2, 2, 1)
    np.testing.assert_array_equal(c[4, 2], mean)
    with pytest.raises(ValueError, match="lead_time"):
        M.persistence_forecast(x, 0)
    with pytest.raises(ValueError, match="train_mean"):
        M.climatology_forecast(x, 2, 2)


def test_climatology_by_time_of_day():
    frames = np.array([1.0, 3.0, 10.0, 5.0, 20.0]).reshape(5, 1, 1, 1) * np.ones((5, 2, 2, 1))
    hours = np.array([0, 0, 1, 2, 1])
    clim = M.ClimatologyByTimeOfDay(period=4).fit(frames, hours)
    assert clim.unseen == [3]
    with pytest.warns(UserWarning, match=r"slot\(s\) \[3\] had no training frame"):
        out = clim.forecast(np.array([[0, 1], [2, 3]]))
    assert out.shape == (2, 2, 2, 2, 1)
    assert out[0, 0, 0, 0, 0] == 2.0 and out[0, 1, 1, 1, 0] == 15.0 and out[1, 0, 0, 0, 0] == 5.0
    assert out[1, 1, 0, 0, 0] == pytest.approx(39.0 / 5)  # slot 3 never seen: overall mean
    with pytest.raises(ValueError, match="hours"):
        M.ClimatologyByTimeOfDay(period=2).fit(frames, hours)
    with pytest.raises(ValueError, match="period"):
        M.ClimatologyByTimeOfDay(period=0)
    with pytest.raises(RuntimeError):
        M.ClimatologyByTimeOfDay().forecast([[0]])


# ------------------------------------------------------------------ evaluate_forecast / accumulation
def test_evaluate_forecast_structure_and_values():
    pred, true = _data(3, (5, 3, 12, 12, 1))
    rng = np.random.default_rng(4)
    inputs = rng.random((5, 4, 12, 12, 1))
    clim = rng.random((12, 12, 1))
    res = M.evaluate_forecast(pred, true, inputs, climatology=clim, thresholds=(0.5, 0.8), data_range=1.0)
    assert set(res) == {"model", "persistence", "climatology", "skill_vs_persistence"}
    for name in ("model", "persistence", "climatology"):
        entry = res[name]
        for key in M.METRIC_NAMES + ("csi@0.5", "pod@0.5", "far@0.8"):
            assert isinstance(entry[key], float)
            assert len(entry["per_lead_time"][key]) == 3
    model = res["model"]
    assert model["mse"] == pytest.approx(M.mse(pred, true, per_lead_time=False))
    np.testing.assert_allclose(model["per_lead_time"]["ssim"], M.ssim(pred, true, 1.0))
    np.testing.assert_allclose(model["per_lead_time"]["csi@0.5"], M.csi(pred, true, 0.5))
    pers = M.persistence_forecast(inputs, 3)
    assert res["persistence"]["mae"] == pytest.approx(M.mae(pers, true, per_lead_time=False))
    np.testing.assert_allclose(res["climatology"]["per_lead_time"]["rmse"],
                               M.rmse(M.climatology_forecast(clim, 5, 3), true))
    for m in ("mse", "mae", "rmse"):
        assert res["skill_vs_persistence"][m] == pytest.approx(1 - model[m] / res["persistence"][m])
    json.dumps(res)  # plain floats only
    # batching does not change anything
    res1 = M.evaluate_forecast(pred, true, inputs, climatology=clim, thresholds=(0.5, 0.8), data_range=1.0,
                               batch_size=2)
    assert res1["model"]["ssim"] == pytest.approx(model["ssim"], rel=1e-12)
    assert res1["persistence"]["psnr"] == pytest.approx(res["persistence"]["psnr"], rel=1e-12)
    # data_range=None takes the targets' range
    res2 = M.evaluate_forecast(pred, true, inputs, climatology=clim)
    assert res2["model"]["psnr"] == pytest.approx(M.psnr(pred, true, float(true.max() - true.min()),
                                                         per_lead_time=False))


def test_accumulator_streams_like_whole_set():
    pred, true = _data(5, (6, 2, 11, 13, 2))
    inputs = np.random.default_rng(6).random((6, 3, 11, 13, 2))
    clim = true.mean(axis=(0, 1))
    whole = M.evaluate_forecast(pred, true, inputs, climatology=clim, thresholds=(0.3,), data_range=1.0)
    acc = M.MetricAccumulator(data_range=1.0, thresholds=(0.3,), climatology=clim)
    for s in (slice(0, 1), slice(1, 4), slice(4, 6)):
        acc.update(torch.from_numpy(pred[s]), torch.from_numpy(true[s]), torch.from_numpy(inputs[s]))
    streamed = acc.compute()
    for name in ("model", "persistence", "climatology"):
        for key, value in whole[name].items():
            if key != "per_lead_time":
                assert streamed[name][key] == pytest.approx(value, rel=1e-9, nan_ok=True)
    # without inputs and climatology only the model is scored
    acc2 = M.MetricAccumulator(data_range=1.0)
    acc2.update(pred, true)
    assert set(acc2.compute()) == {"model"}


def test_skill_is_zero_when_model_is_persistence_and_nan_when_baseline_perfect():
    _, true = _data(7, (2, 2, 11, 11, 1))
    inputs = np.concatenate([true[:, :1], true[:, :1]], axis=1)
    pred = M.persistence_forecast(inputs, 2)
    res = M.evaluate_forecast(pred, true, inputs, climatology=true.mean((0, 1)), data_range=1.0)
    assert res["skill_vs_persistence"]["mse"] == pytest.approx(0.0)
    const = np.ones((1, 2, 11, 11, 1))
    res = M.evaluate_forecast(const * 0.5, const, const, climatology=const[0, 0], data_range=1.0)
    assert math.isnan(res["skill_vs_persistence"]["mae"])
    assert math.isinf(res["persistence"]["psnr"])


def test_write_metrics(tmp_path):
    pred, true = _data(8, (2, 3, 11, 11, 1))
    inputs = np.zeros((2, 2, 11, 11, 1))
    res = M.evaluate_forecast(pred, true, inputs, climatology=np.zeros((11, 11, 1)), thresholds=(2.0,),
                              data_range=1.0)  # threshold 2.0: no events -> nan
    rows = M.per_lead_time_rows(res)
    assert len(rows) == 9 and rows[0]["forecast"] == "model" and rows[0]["lead_time"] == 1
    assert rows[-1]["forecast"] == "climatology" and rows[-1]["lead_time"] == 3
    paths = M.write_metrics(res, tmp_path / "run")
    text = (tmp_path / "run" / "metrics.json").read_text()
    loaded = json.loads(text)  # strict JSON: NaN written as null
    assert "NaN" not in text and loaded["model"]["csi@2"] is None
    assert loaded["model"]["mse"] == pytest.approx(res["model"]["mse"])
    with open(paths["csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 9
    assert table[0]["forecast"] == "model" and table[0]["lead_time"] == "1"
    assert float(table[4]["mse"]) == pytest.approx(res["persistence"]["per_lead_time"]["mse"][1])
    assert table[0]["csi@2"] == "nan"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ argument errors
def test_bad_arguments():
    pred, true = _data()
    with pytest.raises(ValueError, match="same shape"):
        M.mse(pred, true[:, :2])
    with pytest.raises(ValueError, match="5D"):
        M.mae(pred[0], true[0])
    with pytest.raises(TypeError, match="pred"):
        M.mse("abc", true)
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(pred, true, 0)
    with pytest.raises(TypeError, match="data_range"):
        M.ssim(pred, true, None)
    with pytest.raises(TypeError, match="threshold"):
        M.csi(pred, true, "high")
    with pytest.raises(TypeError, match="per_lead_time"):
        M.mse(pred, true, per_lead_time="yes")
    with pytest.raises(ValueError, match="data_range"):
        M.MetricAccumulator(data_range=None)
    with pytest.raises(ValueError, match="climatology"):
        M.evaluate_forecast(pred, true, pred, climatology=np.zeros((3, 3, 1)), data_range=1.0)
    with pytest.raises(ValueError, match="inputs"):
        M.evaluate_forecast(pred, true, pred[:, :, :5], climatology=true[0, 0], data_range=1.0)
    with pytest.raises(RuntimeError, match="update"):
        M.MetricAccumulator(data_range=1.0).compute()


def test_rmse_active_is_deepsts_scaled_rmse_when_empty_cells_are_zero():
    """BikeNYC: 81 of 16 x 8 cells hold a station. With the others 0 in forecast and truth, the
    RMSE over the active cells equals the all-cell RMSE times sqrt(128/81), DeepST's m_factor."""
    from convlstm.metrics import deepst_rmse, rmse_active

    rng = np.random.default_rng(0)
    active = np.zeros((16, 8), bool)
    active.flat[rng.choice(128, 81, replace=False)] = True
    y = rng.poisson(10, (5, 2, 16, 8, 2)) * active[None, None, :, :, None]
    p = (y + rng.normal(0, 3, y.shape)) * active[None, None, :, :, None]
    all_cells = M.rmse(p, y, per_lead_time=False)
    assert rmse_active(p, y, active, per_lead_time=False) == pytest.approx(deepst_rmse(all_cells, 81, 128))
    by_hand = np.sqrt(np.mean(((p - y) ** 2)[:, :, active]))
    assert rmse_active(p, y, active, per_lead_time=False) == pytest.approx(by_hand)
    assert deepst_rmse(1.0, 81, 128) == pytest.approx(1.2570787221)


def test_the_documented_st_resnet_comparison_is_in_its_convention():
    """The README and the crowd-flow pages compare with ST-ResNet's published 6.33 in its own
    convention: the best all-cell RMSE (5.697, started from persistence) is 7.16 by DeepST's factor
    and 7.15 over the 81 active cells as `evaluate --convention st-resnet` measured it (at most the
    factor's figure: the model's forecasts on the dead cells are not all zero); 6.33 is 5.04
    all-cell."""
    from pathlib import Path

    from convlstm.metrics import deepst_rmse

    assert f"{deepst_rmse(5.697, 81, 128):.2f}" == "7.16" and 7.148 <= deepst_rmse(5.697, 81, 128)
    assert f"{deepst_rmse(6.024, 81, 128):.2f}" == "7.57"
    assert f"{6.33 / deepst_rmse(1.0, 81, 128):.2f}" == "5.04"
    root = Path(__file__).resolve().parents[1]
    for page in ("README.md", "docs/crowd-flow.md", "docs/radar-and-flow.md"):
        text = (root / page).read_text()
        if "6.33" in text:
            assert "7.15" in text and "sqrt(128/81)" in text, page
