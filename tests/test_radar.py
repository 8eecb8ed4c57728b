"""Radar verification: CSI/POD/FAR/ETS and FSS against pysteps, the extrapolation baseline against
pysteps called directly, physical units (Z-R, accumulations), the dB scaler, non-negative
forecasts, the hour-of-day climatology's fallback, and the command-line flags."""
import contextlib
import io
import json
import re
import sys

import numpy as np
import pytest
import torch

from convlstm import metrics as M
from convlstm._extras import install_hint
from convlstm.data import (DBScaler, UnitConversion, accumulation_to_rate, rate_to_accumulation,
                           rate_to_reflectivity, reflectivity_to_rate)

with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its config file is
    from pysteps.extrapolation.semilagrangian import extrapolate as ps_extrapolate
    from pysteps.motion.lucaskanade import dense_lucaskanade
    from pysteps.utils.transformation import dB_transform
    from pysteps.verification.detcatscores import det_cat_fct
    from pysteps.verification.spatialscores import fss_accum, fss_compute, fss_init

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_time, size=32, seed=0, speed=(1.0, 0.5), peak=10.0):
    """Rain rates (mm/h) ``(n_time, size, size)``: two Gaussian cells drifting by ``speed`` px/step."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    centres = rng.uniform(0.25 * size, 0.5 * size, size=(2, 2))
    out = np.zeros((n_time, size, size))
    for t in range(n_time):
        for k, (cy, cx) in enumerate(centres):
            y0, x0 = cy + speed[0] * t, cx + speed[1] * t
            out[t] += peak / (k + 1) * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * (2.5 + k) ** 2))
    out[out < 0.05] = 0.0
    return out


# ---------------------------------------------------------------------------------- event scores
def _ps_cat(p, y, thr, score):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(det_cat_fct(p, y, thr, scores=score)[score.upper()])


def test_categorical_scores_equal_pysteps_on_random_arrays():
    rng = np.random.default_rng(1)
    p, y = rng.gamma(0.6, 2.0, size=(2, 6, 3, 17, 19, 2))
    for thr in (0.5, 1.0, 3.0):
        per = {name: getattr(M, name)(p, y, thr) for name in ("csi", "pod", "far", "ets")}
        for name, values in per.items():
            expected = [_ps_cat(p[:, t], y[:, t], thr, name) for t in range(3)]
            np.testing.assert_allclose(values, expected, rtol=1e-12)
            overall = getattr(M, name)(p, y, thr, per_lead_time=False)
            assert overall == pytest.approx(_ps_cat(p, y, thr, name), rel=1e-12)


def test_event_convention_is_at_or_above_the_threshold():
    # integer data: many values equal the threshold
    rng = np.random.default_rng(2)
    p, y = rng.integers(0, 6, size=(2, 5, 2, 9, 9, 1)).astype(np.float64)
    thr = 3.0
    for name in ("csi", "pod", "far", "ets"):
        ours = getattr(M, name)(p, y, thr)
        # pysteps's det_cat_fct counts value > t: t just below thr counts value >= thr
        np.testing.assert_allclose(ours, [_ps_cat(p[:, t], y[:, t], thr - 0.5, name) for t in range(2)], rtol=1e-12)
        if name == "csi":  # the convention matters here: pysteps at thr itself counts fewer events
            assert not np.allclose(ours, [_ps_cat(p[:, t], y[:, t], thr, name) for t in range(2)])
    # a hand case: 1 hit exactly at the threshold
    one = np.array([3.0, 0.0]).reshape(1, 1, 1, 2, 1)
    assert M.csi(one, one, 3.0)[0] == 1.0 and M.pod(one, one, 3.0)[0] == 1.0


def _ps_fss(p, y, thr, scale):
    """pysteps's FSS accumulated over every (sample, channel) field of p, y ``(N, H, W, C)``."""
    obj = fss_init(thr, scale)
    for i in range(p.shape[0]):
        for c in range(p.shape[-1]):
            fss_accum(obj, p[i, :, :, c], y[i, :, :, c])
    with np.errstate(invalid="ignore"):
        return fss_compute(obj)


def test_fss_equals_pysteps_at_every_scale_odd_and_even():
    rng = np.random.default_rng(3)
    p, y = rng.gamma(0.6, 2.0, size=(2, 3, 2, 20, 23, 2))
    p[0, 1, 0, 4, :] = 1.0  # values exactly at a threshold: both count them (>=)
    for thr in (1.0, 2.5):
        for scale in (1, 2, 3, 4, 10, 31):
            ours = M.fss(p, y, thr, scale)
            np.testing.assert_allclose(ours, [_ps_fss(p[:, t], y[:, t], thr, scale) for t in range(2)], rtol=1e-10)
            overall = M.fss(p, y, thr, scale, per_lead_time=False)
            assert overall == pytest.approx(_ps_fss(p.reshape(-1, 20, 23, 2), y.reshape(-1, 20, 23, 2), thr, scale),
                                            rel=1e-10)


def test_scores_hand_computed():
    # H=2, M=1, F=1, R=4: CSI 2/4, POD 2/3, FAR 1/3; H_r = 3 * 3 / 8, ETS = (2 - 9/8) / (4 - 9/8) = 7/23
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=float).reshape(1, 1, 2, 4, 1)
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float).reshape(1, 1, 2, 4, 1)
    assert M.csi(p, y, 1)[0] == 0.5 and M.pod(p, y, 1)[0] == pytest.approx(2 / 3)
    assert M.far(p, y, 1)[0] == pytest.approx(1 / 3) and M.ets(p, y, 1)[0] == pytest.approx(7 / 23)
    # FSS: one event pixel, forecast one pixel to the right; 3x3 windows overlap on 6 of 9 pixels
    y1 = np.zeros((1, 1, 4, 4, 1)); y1[0, 0, 1, 1] = 1
    p1 = np.zeros((1, 1, 4, 4, 1)); p1[0, 0, 1, 2] = 1
    assert M.fss(p1, y1, 1, 1)[0] == 0.0 and M.fss(p1, y1, 1, 3)[0] == pytest.approx(2 / 3)
    assert M.fss(y1, y1, 1, 2)[0] == 1.0
    # undefined: nothing observed (ETS) or no event anywhere (FSS)
    zeros = np.zeros((1, 1, 4, 4, 1))
    assert np.isnan(M.ets(p1, zeros, 1)[0]) and np.isnan(M.fss(zeros, zeros, 1, 3)[0])
    with pytest.raises(ValueError, match="scale"):
        M.fss(p1, y1, 1, 0)


def test_accumulator_keys_and_batch_independence():
    rng = np.random.default_rng(4)
    p, y = rng.gamma(0.6, 2.0, size=(2, 7, 3, 16, 16, 1))
    x = rng.gamma(0.6, 2.0, size=(7, 4, 16, 16, 1))
    whole = M.evaluate_forecast(p, y, x, climatology=y.mean(axis=(0, 1)), thresholds=(1.0,), scales=(3, 8),
                                data_range=10.0, extrapolation=p * 0.5)
    batched = M.evaluate_forecast(p, y, x, climatology=y.mean(axis=(0, 1)), thresholds=(1.0,), scales=(3, 8),
                                  data_range=10.0, extrapolation=p * 0.5, batch_size=3)
    assert list(whole) == ["model", "persistence", "climatology", "extrapolation", "skill_vs_persistence",
                           "skill_vs_extrapolation"]
    for key in ("csi@1", "pod@1", "far@1", "ets@1", "fss@1/3", "fss@1/8"):
        assert key in whole["model"] and len(whole["extrapolation"]["per_lead_time"][key]) == 3
        assert whole["model"][key] == pytest.approx(batched["model"][key], rel=1e-12)
    assert whole["extrapolation"]["fss@1/8"] == pytest.approx(M.fss(p * 0.5, y, 1.0, 8, per_lead_time=False))
    with pytest.raises(ValueError, match="thresholds"):
        M.MetricAccumulator(data_range=1.0, scales=(3,))


# ---------------------------------------------------------------------------------- extrapolation
def test_extrapolation_equals_pysteps_called_directly():
    rain = blobs(12)
    x = np.stack([rain[0:5], rain[3:8]])[..., None]            # (2 samples, 5 inputs, 32, 32, 1)
    x = np.concatenate([x, 2 * x], axis=-1)                      # two channels, each its own field
    fc = M.extrapolation_forecast(x, 3)
    assert fc.shape == (2, 3, 32, 32, 2)
    for i in range(2):
        for c in range(2):
            v = dense_lucaskanade(x[i, :, :, :, c])
            np.testing.assert_array_equal(fc[i, :, :, :, c], ps_extrapolate(x[i, -1, :, :, c], v, 3, outval="min"))
    # a gap of 1: the forecast for steps 2..3 after the last input
    gapped = M.extrapolation_forecast(torch.from_numpy(x[:1]), 2, gap=1)
    v = dense_lucaskanade(x[0, :, :, :, 0])
    np.testing.assert_allclose(gapped[0, :, :, :, 0], ps_extrapolate(x[0, -1, :, :, 0], v, 3, outval="min")[1:],
                               atol=1e-12)
    # the baseline follows the motion: much better than persistence on drifting cells
    y = np.stack([rain[5:8], rain[8:11]])[..., None]
    ext = M.extrapolation_forecast(x[..., :1], 3)
    assert M.mse(ext, y, per_lead_time=False) < 0.5 * M.mse(M.persistence_forecast(x[..., :1], 3), y,
                                                            per_lead_time=False)


def test_extrapolation_errors_name_the_problem(monkeypatch):
    x = np.zeros((1, 4, 16, 16, 1))
    with pytest.raises(ValueError, match="method must be one of"):
        M.extrapolation_forecast(x, 2, method="magic")
    with pytest.raises(ValueError, match="at least 2 input frames"):
        M.extrapolation_forecast(x[:, :1], 2)
    with pytest.raises(ValueError, match="5D"):
        M.extrapolation_forecast(x[0], 2)
    monkeypatch.setitem(sys.modules, "pysteps", None)  # as if it were not installed
    with pytest.raises(ImportError, match=re.escape(install_hint("radar"))):
        M.extrapolation_forecast(x, 2)
    with pytest.raises(ImportError, match=re.escape(install_hint("radar"))):
        M.MetricAccumulator(data_range=1.0, extrapolation="lucaskanade")


# ---------------------------------------------------------------------------------- units
def test_marshall_palmer_published_values_and_round_trips():
    # Marshall-Palmer Z = 200 R^1.6: 1 mm/h is Z = 200 mm^6/m^3 = 10 log10(200) = 23.0 dBZ
    assert rate_to_reflectivity(1.0) == pytest.approx(23.0103, abs=1e-4)
    assert reflectivity_to_rate(10 * np.log10(200.0)) == pytest.approx(1.0, rel=1e-12)
    # by hand: 10 mm/h is Z = 200 * 10^1.6 = 7962 mm^6/m^3 = 23.0103 + 16 = 39.0103 dBZ
    assert rate_to_reflectivity(10.0) == pytest.approx(39.0103, abs=1e-4)
    # the WSR-88D convective relation Z = 300 R^1.4: 10 mm/h = 10 log10(300) + 14 = 38.7712 dBZ
    assert rate_to_reflectivity(10.0, a=300, b=1.4) == pytest.approx(38.7712, abs=1e-4)
    rates = np.array([0.01, 0.1, 1.0, 7.3, 120.0])
    np.testing.assert_allclose(reflectivity_to_rate(rate_to_reflectivity(rates)), rates, rtol=1e-12)
    assert rate_to_reflectivity(0.0) == -np.inf
    with pytest.raises(ValueError, match="rate must be >= 0"):
        rate_to_reflectivity(-1.0)
    # accumulations: 1 mm in 5 minutes is 12 mm/h
    assert accumulation_to_rate(1.0, 5) == 12.0 and rate_to_accumulation(12.0, 5) == 1.0
    with pytest.raises(ValueError, match="interval_minutes"):
        accumulation_to_rate(1.0, None)


def test_unit_conversion_of_stored_values():
    knmi = UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
    np.testing.assert_allclose(knmi.apply(np.array([0, 100, 25], dtype=np.uint16)), [0.0, 12.0, 3.0], rtol=1e-6)
    fmi = UnitConversion(scale=0.5, offset=-32, transform="reflectivity-to-rate")     # dBZ = code / 2 - 32
    assert fmi.apply(np.array([110]))[0] == pytest.approx(reflectivity_to_rate(23.0), rel=1e-6)
    assert UnitConversion.from_state_dict(json.loads(json.dumps(knmi.state_dict()))) == knmi
    assert UnitConversion().is_identity and UnitConversion().wrap(np.ones(3)) is not None
    wrapped = knmi.wrap(np.full((4, 2, 2, 1), 100, dtype=np.uint16))
    assert wrapped.shape == (4, 2, 2, 1) and wrapped[1:3].dtype == np.float32 and float(wrapped[0].max()) == 12.0
    for bad, match in ((dict(transform="dbz"), "transform must be one of"),
                       (dict(transform="accumulation-to-rate"), "interval_minutes"),
                       (dict(interval_minutes=5), "only used by"), (dict(scale=0), "scale must be non-zero"),
                       (dict(transform="reflectivity-to-rate", zr_b=-1), "must be positive")):
        with pytest.raises(ValueError, match=match):
            UnitConversion(**bad)


def test_converted_series_pickles_a_memmap_by_reference(tmp_path):
    import pickle

    stored = np.random.default_rng(1).integers(0, 500, size=(300, 32, 32, 1), dtype=np.uint16)  # 600 kB
    np.save(tmp_path / "r.npy", stored)
    knmi = UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
    wrapped = knmi.wrap(np.load(tmp_path / "r.npy", mmap_mode="r"))
    blob = pickle.dumps(wrapped)
    assert len(blob) < 5000  # the file and the conversion, not the frames
    np.testing.assert_array_equal(pickle.loads(blob)[100:104], wrapped[100:104])


def test_db_scaler_is_pysteps_db_transform_then_minmax():
    rain = np.concatenate([blobs(6).ravel(), [0.0, 0.04, 0.1, 0.2]])[:, None]  # (n, 1 channel)
    s = DBScaler(threshold=0.1).fit(rain)
    ref, _ = dB_transform(rain.copy(), threshold=0.1, zerovalue=-15.0)     # pysteps: zero value 10 log10(0.1) - 5
    np.testing.assert_allclose(s.transform(rain) * s._span + s.zerovalue, ref, rtol=1e-12, atol=1e-12)
    assert s.transform(rain).min() == 0.0 and s.transform(rain).max() == pytest.approx(1.0)
    # inverse: pysteps's (values under the threshold -> 0); everything else round-trips
    back = s.inverse_transform(s.transform(rain))
    ref_back, _ = dB_transform(ref, {"transform": "dB", "threshold": -10.0}, inverse=True)
    np.testing.assert_allclose(back, ref_back, rtol=1e-12)
    kept = rain >= 0.1
    np.testing.assert_allclose(back[kept], rain[kept], rtol=1e-12) and np.testing.assert_array_equal(back[~kept], 0)
    # fitted threshold: the smallest positive training value, so that every training value round-trips
    auto = DBScaler().fit(rain)
    assert auto.threshold[0] == rain[rain > 0].min()
    np.testing.assert_allclose(auto.inverse_transform(auto.transform(torch.from_numpy(rain).float())).numpy(),
                               rain, rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="non-negative"):
        DBScaler().fit(rain - 1)
    with pytest.raises(ValueError, match="no training value at or above the threshold"):
        DBScaler().fit(np.zeros((5, 1)))


# ---------------------------------------------------------------------------------- data module
def _series_file(tmp_path, values, name="radar.npz", minutes=30):
    t = np.datetime64("2024-05-01T00:00") + np.arange(len(values)) * np.timedelta64(minutes, "m")
    path = tmp_path / name
    np.savez(path, rain=values, time=t)
    return path


def test_climatology_by_hour_falls_back_for_hours_never_trained_on(tmp_path):
    from convlstm.training import GridDataModule

    n = 40  # half-hourly from 00:00: training frames 0..23 are hours 0..11, test targets fall after 14:00
    values = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((n, 4, 4), np.float32)
    dm = GridDataModule(path=str(_series_file(tmp_path, values)), key="rain", layout="THW", input_steps=2,
                        output_steps=1, split=(0.6, 0.1, 0.3), scaler="none")
    dm.setup()
    unseen = dm.unseen_target_hours("test")
    assert unseen and min(unseen) >= 12
    assert dm.climatology_hour_counts[:12].tolist() == [2] * 12 and dm.climatology_hour_counts[12:].sum() == 0
    clim = dm.target_climatology("test", 0, len(dm.datasets["test"]))
    np.testing.assert_allclose(clim, np.broadcast_to(dm.climatology, clim.shape))  # the mean training frame
    assert dm.unseen_target_hours("train") == []
    restored = GridDataModule.from_state(dm.state_dict())
    restored.setup()
    assert restored.unseen_target_hours("test") == unseen


def test_units_and_nonnegative_in_the_data_module():
    from convlstm.training import GridDataModule

    stored = (blobs(60, size=12) * 5 / 60 * 100).round().astype(np.uint16)[..., None]   # mm/5 min x 100
    conv = UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
    dm = GridDataModule(stored, input_steps=3, output_steps=2, scaler="db", conversion=conv)
    dm.setup()
    assert dm.nonnegative is True and "minimum is 0" in dm.nonnegative_reason
    np.testing.assert_allclose(dm.value_range[1], stored.max() * 0.12, rtol=1e-6)
    x, _ = dm.datasets["train"][0]
    np.testing.assert_allclose(dm.inverse_transform(x).numpy(), stored[:3] * 0.12, rtol=1e-4, atol=1e-6)
    state = dm.state_dict()
    assert state["conversion"] == conv.state_dict() and state["nonnegative"] is True
    signed = GridDataModule(np.linspace(-1, 1, 60 * 4 * 4).reshape(60, 4, 4, 1), input_steps=3, output_steps=2)
    signed.setup()
    assert signed.nonnegative is False and "minimum is -1" in signed.nonnegative_reason
    assert GridDataModule(stored, nonnegative=False, conversion=conv).nonnegative is False
    with pytest.raises(ValueError, match="nonnegative"):
        GridDataModule(stored, nonnegative="auto")


# ---------------------------------------------------------------------------------- pictures, table
def test_forecast_png_has_a_row_per_baseline(tmp_path):
    from PIL import Image

    from convlstm.plots import plot_forecast

    rng = np.random.default_rng(5)
    x, y = rng.random((2, 3, 12, 12, 1)), rng.random((2, 2, 12, 12, 1))
    plain = plot_forecast(x, y, y, tmp_path / "a.png", samples=1)
    more = plot_forecast(x, y, y, tmp_path / "b.png", samples=1, baselines={"extrapolation": y * 2})
    assert Image.open(more).size[1] > Image.open(plain).size[1]
    with pytest.raises(ValueError, match="extrapolation"):
        plot_forecast(x, y, y, tmp_path / "c.png", baselines={"extrapolation": y[:, :1]})


def test_format_results_prints_the_event_scores():
    from convlstm.training import format_results

    rng = np.random.default_rng(6)
    p, y, x = rng.random((3, 2, 2, 12, 12, 1)) * 3, rng.random((3, 2, 2, 12, 12, 1))[1] * 3, rng.random((2, 3, 12, 12, 1))
    res = M.evaluate_forecast(p[0], y, x, climatology=y.mean(axis=(0, 1)), thresholds=(1.0,), scales=(5,),
                              extrapolation=p[1], data_range=3.0)
    text = format_results(res)
    for word in ("extrapolation", "csi@1", "ets@1", "fss@1/5", "than extrapolation's"):
        assert word in text
    row = next(line for line in text.splitlines() if line.startswith("fss@1/5"))
    assert f"{res['extrapolation']['fss@1/5']:.4g}" in row


# ---------------------------------------------------------------------------------- command line
def _run(capsys, *argv):
    from convlstm import cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_radar_run_from_the_command_line(capsys, tmp_path, monkeypatch):
    stored = (blobs(36, size=16) * 5 / 60 * 100).round().astype(np.uint16)    # mm per 5 min x 100
    data = _series_file(tmp_path, stored, minutes=5)
    run_dir = tmp_path / "run"
    code, out, err = _run(capsys, "fit", data, "--key", "rain", "--layout", "THW", "--input-steps", 4,
                          "--output-steps", 2, "--split", 0.5, 0.2, 0.3, "--scale", 0.01, "--transform",
                          "accumulation-to-rate", "--interval-minutes", 5, "--scaler", "db", "--thresholds", 1, 5,
                          "--fss-scales", 3, "--baselines", "persistence", "climatology", "extrapolation",
                          "--model-option", "filters=[4]", "--model-option", "encoder_width=4", "--max-epochs", 1,
                          "--batch-size", 8, "--accelerator", "cpu", "--devices", 1, "--units", "mm/h",
                          "--run-dir", run_dir, "--no-progress")
    assert code == 0, err
    assert "accumulation-to-rate" in out and "clamped at 0 (nonnegative=auto" in out
    assert "fss@1/3" in out and "extrapolation" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"model", "persistence", "climatology", "extrapolation", "skill_vs_extrapolation"}
    assert set(metrics["extrapolation"]) == set(metrics["persistence"])
    assert len(metrics["extrapolation"]["per_lead_time"]["fss@5/3"]) == 2
    # 5-minute frames from 00:00: training ends before 02:00, the test targets are at 02:xx
    assert "hour(s) [2] of the test targets never occur in the training part" in out
    assert metrics["climatology"]["hours_without_training_data"] == [2]
    assert (run_dir / "forecast.png").is_file()

    code, out, err = _run(capsys, "evaluate", run_dir, "--out-dir", tmp_path / "ev", "--baselines", "extrapolation",
                          "--thresholds", 1, "--no-nonnegative")
    assert code == 0, err
    assert set(json.loads((tmp_path / "ev" / "metrics.json").read_text())) == {"model", "extrapolation",
                                                                               "skill_vs_extrapolation"}
    assert "clamped" not in out

    # predict reads the stored integers through the checkpoint's conversion and clamps at 0
    np.save(tmp_path / "stored.npy", stored)
    outs = {}
    for flag in ("--nonnegative", "--no-nonnegative"):
        code, _, err = _run(capsys, "predict", run_dir, tmp_path / "stored.npy", "--layout", "THW", "--out",
                            tmp_path / f"f{flag}.npy", "--all-windows", flag)
        assert code == 0, err
        outs[flag] = np.load(tmp_path / f"f{flag}.npy")
    np.testing.assert_array_equal(outs["--nonnegative"], np.maximum(outs["--no-nonnegative"], 0))

    code, _, err = _run(capsys, "fit", data, "--fss-scales", 3)
    assert code == 2 and "--fss-scales" in err and "--thresholds" in err
    code, _, err = _run(capsys, "fit", data, "--transform", "accumulation-to-rate")
    assert code == 2 and "--interval-minutes is not given" in err and "interval_minutes" not in err
    # without pysteps the baseline names its extra (and not the training extras)
    monkeypatch.setitem(sys.modules, "pysteps", None)
    code, _, err = _run(capsys, "evaluate", run_dir, "--out-dir", tmp_path / "ev2", "--baselines",
                        "persistence", "extrapolation")
    assert code == 2 and install_hint("radar") in err and "[train]" not in err
