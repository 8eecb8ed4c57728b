"""The scoring engine (convlstm.scoring) and the baselines (convlstm.baselines), against sums and
counts written out by hand and against pysteps's own verification functions."""
import math

import numpy as np
import pytest
import torch

from convlstm import baselines as B
from convlstm.scoring import ForecastScores, MetricAccumulator, evaluate_forecast, format_results


def _contingency_by_hand(p, y, thr):
    pe, ye = p >= thr, y >= thr
    h, m, f = np.sum(pe & ye), np.sum(~pe & ye), np.sum(pe & ~ye)
    return h / (h + m + f)


def test_small_frames_get_every_score_but_ssim():
    """6x5 frames: CSI and FSS need no 11x11 window, so they are scored; SSIM is left out."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, (4, 2, 6, 5, 1)).astype(np.float64)
    p = rng.integers(0, 10, (4, 2, 6, 5, 1)).astype(np.float64)
    x = rng.integers(0, 10, (4, 3, 6, 5, 1)).astype(np.float64)
    res = evaluate_forecast(p, y, x, climatology=y.mean(axis=(0, 1)), thresholds=(5,), scales=(3,),
                            data_range=10.0)
    assert "ssim" not in res["model"] and "ssim" not in res["model"]["per_lead_time"]
    assert res["model"]["csi@5"] == pytest.approx(_contingency_by_hand(p, y, 5))
    assert res["persistence"]["csi@5"] == pytest.approx(_contingency_by_hand(np.repeat(x[:, -1:], 2, 1), y, 5))
    assert res["model"]["per_lead_time"]["csi@5"][1] == pytest.approx(_contingency_by_hand(p[:, 1], y[:, 1], 5))
    assert math.isfinite(res["model"]["fss@5/3"])
    assert res["model"]["mse"] == pytest.approx(np.mean((p - y) ** 2))


def test_frames_of_11_pixels_get_ssim():
    rng = np.random.default_rng(1)
    y, p = rng.random((2, 1, 11, 11, 1)), rng.random((2, 1, 11, 11, 1))
    res = evaluate_forecast(p, y, y, climatology=y[0, 0], data_range=1.0)
    assert "ssim" in res["model"]


def test_merge_equals_one_accumulator_over_all_samples():
    rng = np.random.default_rng(2)
    p, y, x = rng.random((6, 2, 12, 12, 1)), rng.random((6, 2, 12, 12, 1)), rng.random((6, 3, 12, 12, 1))
    clim = y.mean(axis=(0, 1))

    def acc():
        return MetricAccumulator(data_range=1.0, thresholds=(0.5,), scales=(2,), climatology=clim)

    whole, first, second = acc(), acc(), acc()
    whole.update(p, y, x)
    first.update(p[:2], y[:2], x[:2])
    second.update(p[2:], y[2:], x[2:])
    merged = first.merge(second).compute()
    expected = whole.compute()
    for name in ("model", "persistence", "climatology"):
        for key, value in expected[name].items():
            if key != "per_lead_time":
                assert merged[name][key] == pytest.approx(value, rel=1e-12), (name, key)


def test_nonfinite_forecasts_are_flagged_not_scored_as_no_event():
    """An all-NaN forecast used to score CSI 0 and FSS 0 ("NaN is below every threshold")."""
    y = np.zeros((2, 2, 12, 12, 1)); y[:, :, 3:6, 3:6] = 5.0
    p = np.full_like(y, np.nan)
    res = evaluate_forecast(p, y, y, climatology=y[0, 0], thresholds=(1.0,), scales=(3,), data_range=5.0)
    assert res["model"]["nonfinite_values"] == p.size
    assert math.isnan(res["model"]["csi@1"]) and math.isnan(res["model"]["fss@1/3"])
    assert all(math.isnan(v) for v in res["model"]["per_lead_time"]["pod@1"])
    assert "nonfinite_values" not in res["persistence"]
    assert "NaN or infinite" in format_results(res)


def test_a_perfect_frame_is_left_out_of_psnr_and_counted():
    rng = np.random.default_rng(3)
    y = rng.random((3, 2, 12, 12, 1))
    p = y + 0.1
    p[0, 0] = y[0, 0]                        # one frame forecast exactly
    res = evaluate_forecast(p, y, y, climatology=y[0, 0], data_range=1.0)
    assert res["model"]["psnr_perfect_frames"] == 1
    assert res["model"]["psnr"] == pytest.approx(20.0)       # 10 log10(1 / 0.01) on every other frame
    assert res["model"]["per_lead_time"]["psnr"] == pytest.approx([20.0, 20.0])
    assert "left out of PSNR" in format_results(res)


def test_an_exact_baseline_is_not_turned_into_a_huge_percentage():
    """A constant field: climatology's MSE is float noise; no '1.6e16% higher' line."""
    res = {"model": {"mse": 0.5, "per_lead_time": {"mse": [0.5]}},
           "climatology": {"mse": 1e-30, "per_lead_time": {"mse": [1e-30]}}}
    text = format_results(res, metrics=("mse",))
    assert "climatology is exact here" in text and "%" not in text


def test_forecast_scores_refuses_merging_different_settings():
    a, b = ForecastScores(2, 1.0, (0.5,)), ForecastScores(2, 1.0, (0.6,))
    with pytest.raises(ValueError, match="different"):
        a.merge(b)


# ---------------------------------------------------------------------------------- baselines
def test_builtin_baselines_by_hand():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2, 1)
    batch = B.Batch(x, lead_time=2)
    pers = B.get_baseline("persistence")().forecast(batch)
    assert torch.equal(pers, x[:, 2:3].expand(2, 2, 2, 2, 1))
    frame = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    clim = B.Climatology(frame).forecast(batch)
    assert clim.shape == (2, 2, 2, 2, 1) and torch.equal(clim[1, 1], frame.double())
    per_target = B.Climatology(frame, per_target=lambda first, n: np.full((n, 2, 2, 2, 1), float(first)))
    assert per_target.forecast(B.Batch(x, 2, first=7)).unique().tolist() == [7.0]


def test_registry_takes_one_class_and_refuses_clashes():
    @B.register_baseline
    class InputMean(B.Baseline):
        name = "test-input-mean"

        def forecast(self, batch):
            return batch.inputs.mean(dim=1, keepdim=True).expand(-1, batch.lead_time, -1, -1, -1)

    assert "test-input-mean" in B.baseline_names()
    assert B.get_baseline("test-input-mean") is InputMean
    with pytest.raises(ValueError, match="already registered"):
        @B.register_baseline
        class Other(B.Baseline):
            name = "test-input-mean"
    with pytest.raises(ValueError, match="unknown baseline 'nope'; choose from persistence"):
        B.get_baseline("nope")
    with pytest.raises(ValueError, match="'model' is the name"):
        @B.register_baseline
        class Model(B.Baseline):
            name = "model"


def test_accumulator_scores_any_named_forecast():
    rng = np.random.default_rng(4)
    y, f = rng.random((3, 2, 4, 4, 1)), rng.random((3, 2, 4, 4, 1))
    acc = MetricAccumulator(data_range=1.0)
    acc.add("model", y, y)
    acc.add("my-baseline", f, y)
    res = acc.compute()
    assert list(res) == ["model", "my-baseline"]
    assert res["my-baseline"]["mae"] == pytest.approx(np.abs(f - y).mean())


def test_event_scores_equal_pysteps_on_integer_values():
    """Integer counts, thresholds hit exactly: the toolkit's ``>=`` CSI/POD/FAR equal pysteps's
    ``det_cat_fct`` at a threshold half a count lower, and FSS equals pysteps's ``fss`` at the same
    threshold (both count ``>=`` there)."""
    verification = pytest.importorskip("pysteps.verification")
    rng = np.random.default_rng(5)
    y = rng.integers(0, 6, (1, 1, 16, 16, 1)).astype(np.float64)
    p = rng.integers(0, 6, (1, 1, 16, 16, 1)).astype(np.float64)
    res = evaluate_forecast(p, y, p, climatology=y[0, 0], thresholds=(3,), scales=(4,), data_range=5.0)
    ref = verification.det_cat_fct(p[0, 0, ..., 0], y[0, 0, ..., 0], 2.5, scores=["CSI", "POD", "FAR"])
    assert res["model"]["csi@3"] == pytest.approx(ref["CSI"])
    assert res["model"]["pod@3"] == pytest.approx(ref["POD"])
    assert res["model"]["far@3"] == pytest.approx(ref["FAR"])
    assert res["model"]["fss@3/4"] == pytest.approx(verification.fss(p[0, 0, ..., 0], y[0, 0, ..., 0], 3, 4))
