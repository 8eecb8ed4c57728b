"""Ensemble forecasters in ``evaluate``: pysteps's STEPS and the dressed model as baselines, and a
model with members; their probabilistic scores checked against pysteps called directly and
against ``evaluate_ensemble`` on members rebuilt by hand for the same windows."""
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convlstm._errors import ParameterError
from convlstm.baselines import Batch, baseline_names, get_baseline
from convlstm.ensemble_baselines import Dressed, Steps, steps_members
from convlstm.ensemble_scores import evaluate_ensemble
from convlstm.training import FitConfig, GridDataModule, evaluate, fit

with contextlib.redirect_stdout(io.StringIO()):
    from pysteps import motion, nowcasts
    from pysteps.utils.transformation import dB_transform

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_radar import blobs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE, T_IN, T_OUT, MINUTES = 40, 32, 4, 3, 10
SPLIT = [0.5, 0.25, 0.25]
M = 4


def rain():
    """Rain rates (mm/h) of two cells drifting slowly, so every part holds rain."""
    return blobs(N, size=SIZE, speed=(0.3, 0.2)).astype(np.float32)


@pytest.fixture(scope="module")
def radar_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("radar")
    times = np.datetime64("2024-05-01T00:00") + np.arange(N) * np.timedelta64(MINUTES, "m")
    np.savez(tmp / "radar.npz", rain=rain(), time=times)
    cfg = FitConfig(data=str(tmp / "radar.npz"), key="rain", layout="THW", input_steps=T_IN, output_steps=T_OUT,
                    batch_size=4, max_epochs=1, split=SPLIT, progress=False, accelerator="cpu", devices=1,
                    model="keras-nextframe", model_options={"filters": [2], "kernel_sizes": [3]},
                    run_dir=str(tmp / "run"), evaluate=False, units="mm/h")
    return tmp, fit(cfg)


def windows(part):
    """(inputs, targets) of ``part`` in the file's values (float64), from the data module's window indices."""
    s = rain().astype(np.float64)[..., None]
    dm = GridDataModule(rain()[..., None], input_steps=T_IN, output_steps=T_OUT, split=SPLIT)
    dm.setup("test")
    idx = [dm.datasets[part].window_times(i) for i in range(len(dm.datasets[part]))]
    return np.stack([s[i] for i, _ in idx]), np.stack([s[t] for _, t in idx])


def pysteps_by_hand(frames, lead_time, n, seed, timestep):
    """STEPS as pysteps's own example runs it, on one sample's input frames (T, H, W) in mm/h."""
    with contextlib.redirect_stdout(io.StringIO()):
        db, meta = dB_transform(frames.copy(), threshold=0.1, zerovalue=-15.0)
        v = motion.get_method("lucaskanade")(db)
        out = nowcasts.get_method("steps")(db, v, lead_time, n_ens_members=n, n_cascade_levels=3,
                                            precip_thr=-10.0, kmperpixel=1.0, timestep=timestep, seed=seed)
    back = dB_transform(out, threshold=-10.0, inverse=True)[0]
    return np.where(np.isfinite(back), back, 0.0)


def model_forecasts(run, x):
    """The run's model on inputs ``x`` (N, T, H, W, 1) in mm/h: scaled, forecast, unscaled, clamped at 0."""
    from convlstm.training.runs import load_module

    module, ckpt = load_module(run)
    dm = GridDataModule.from_state(ckpt["GridDataModule"])
    dm.setup("test")
    with torch.no_grad():
        p = module(dm.scaler.transform(torch.as_tensor(x, dtype=torch.float32)))
    return np.maximum(dm.scaler.inverse_transform(p).double().numpy(), 0.0)


def dressed_by_hand(forecast, errors, n, seed=0):
    """Member m of sample i: forecast[i] + errors[k], k the m-th of n drawn for sample i."""
    k = np.stack([np.random.default_rng([seed, i]).choice(len(errors), n, replace=len(errors) < n)
                  for i in range(len(forecast))])
    return np.maximum(forecast[None] + errors[k.T], 0.0), k


# ---------------------------------------------------------------------------------- the forecasters
def test_the_ensemble_baselines_are_registered_beside_the_others():
    assert {"persistence", "steps", "dressed"} <= set(baseline_names())
    assert get_baseline("steps") is Steps and get_baseline("dressed") is Dressed


def test_steps_members_equal_pysteps_called_directly():
    x, _ = windows("test")
    steps = Steps(timestep=MINUTES)
    got = steps.members(Batch(torch.from_numpy(x[:2]), T_OUT, first=5), M)
    assert tuple(got.shape) == (M, 2, T_OUT, SIZE, SIZE, 1) and got.dtype == torch.float64
    for i in range(2):
        ref = pysteps_by_hand(x[i, :, :, :, 0], T_OUT, M, seed=5 + i, timestep=MINUTES)
        np.testing.assert_allclose(got[:, i, ..., 0].numpy(), ref, rtol=1e-12, atol=1e-12)
    assert float(got.std(0).mean()) > 0                                  # the members differ
    # the seed follows the sample, not the batch; a gap forecasts further ahead and keeps the last steps
    again = steps.members(Batch(torch.from_numpy(x[1:2]), T_OUT, first=6), M)
    np.testing.assert_array_equal(again[:, 0].numpy(), got[:, 1].numpy())
    ahead = steps_members(x[0, :, :, :, 0], 2, M, timestep=MINUTES, gap=1, seed=5)
    np.testing.assert_allclose(ahead, pysteps_by_hand(x[0, :, :, :, 0], 3, M, 5, MINUTES)[:, 1:], atol=1e-12)


def test_dressed_members_are_the_forecast_plus_drawn_validation_errors():
    rng = np.random.default_rng(1)
    errors = rng.normal(size=(7, T_OUT, 6, 6, 2))
    forecast = rng.uniform(0, 2, size=(5, T_OUT, 6, 6, 2))
    dressed = Dressed(errors, seed=3, clamp=True)
    got = dressed.members(Batch(torch.zeros(5, T_IN, 6, 6, 2), T_OUT, first=10, forecast=torch.from_numpy(forecast)),
                          M)
    assert tuple(got.shape) == (M, 5, T_OUT, 6, 6, 2)
    k = dressed.draw(10, 5, M)
    for i in range(5):
        assert len(set(k[i].tolist())) == M                             # without replacement: 7 >= 4
        assert k[i].tolist() == np.random.default_rng([3, 10 + i]).choice(7, M, replace=False).tolist()
        for m in range(M):   # whole error fields: every lead time, cell and channel of one sample
            np.testing.assert_array_equal(got[m, i].numpy(), np.maximum(forecast[i] + errors[k[i, m]], 0.0))
    # more members than error fields: drawn with replacement
    assert Dressed(errors[:2]).draw(0, 3, 5).shape == (3, 5)


# ---------------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def scored(radar_run):
    tmp, run = radar_run
    out = tmp / "scored"
    with contextlib.redirect_stdout(io.StringIO()) as log:
        res = evaluate(run, baselines=["persistence", "steps", "dressed"], members=M, thresholds=[1.0, 4.0],
                       out_dir=out)
    return res, out, log.getvalue()


def check_ensemble_scores(entry, members, y):
    ref = evaluate_ensemble(members, y, thresholds=(1.0, 4.0), lead_axis=1)
    for key in ("crps", "crps_fair", "spread_skill", "brier@1", "brier@4", "roc_auc@1", "roc_auc@4"):
        assert entry[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
    for key in ("crps", "brier@1", "spread_skill"):
        np.testing.assert_allclose(entry["per_lead_time"][key], ref["per_lead_time"][key], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(entry["rank_histogram"], ref["rank_histogram"], rtol=1e-12)
    assert entry["reliability@1"]["counts"] == ref["reliability@1"]["counts"]
    assert entry["members"] == M and entry["points"] == y.size
    assert entry["mse"] == pytest.approx(np.mean((members.mean(0) - y) ** 2), rel=1e-9)   # the ensemble mean's


def test_steps_scores_equal_evaluate_ensemble_on_pysteps_members(scored):
    res, _, log = scored
    x, y = windows("test")
    members = np.stack([pysteps_by_hand(x[i, ..., 0], T_OUT, M, seed=i, timestep=MINUTES)
                        for i in range(len(x))], axis=1)[..., None]
    check_ensemble_scores(res["steps"], members, y)
    assert "steps: pysteps STEPS, 4 members, default settings" in log
    assert "time step 10 min (from the time stamps)" in log and "3 cascade levels for 32x32" in log


def test_dressed_scores_equal_evaluate_ensemble_on_hand_dressed_members(radar_run, scored):
    _, run = radar_run
    res, _, log = scored
    x_val, y_val = windows("val")
    x, y = windows("test")
    errors = (y_val - model_forecasts(run, x_val)).astype(np.float32).astype(np.float64)   # kept as float32
    members, _ = dressed_by_hand(model_forecasts(run, x), errors, M)
    check_ensemble_scores(res["dressed"], members, y)
    assert f"validation part (all {len(x_val)} samples)" in log


def test_metrics_files_hold_the_ensemble_scores(scored):
    res, out, _ = scored
    written = json.loads((out / "metrics.json").read_text())
    for name in ("steps", "dressed"):
        assert written[name]["crps"] == pytest.approx(res[name]["crps"])
        assert {"crps_fair", "spread_skill", "brier@1", "roc_auc@4", "rank_histogram", "reliability@1", "mse",
                "csi@1"} <= set(written[name])
    assert "crps" not in written["persistence"] and "crps" not in written["model"]
    import csv

    rows = list(csv.DictReader((out / "metrics_per_lead_time.csv").open()))
    steps_rows = [r for r in rows if r["forecast"] == "steps"]
    assert [float(r["crps"]) for r in steps_rows] == pytest.approx(res["steps"]["per_lead_time"]["crps"])
    assert {r["crps"] for r in rows if r["forecast"] == "persistence"} == {""}


def test_the_pictures_are_drawn(scored):
    from PIL import Image

    _, out, _ = scored
    for name in ("rank_histogram.png", "reliability.png", "probability.png", "forecast.png"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, name
        with Image.open(path) as im:
            assert min(im.size) > 100 and np.unique(np.asarray(im.convert("L"))).size > 10, name   # not a blank canvas


def test_format_results_shows_the_crps(scored):
    from convlstm.training import format_results

    res, _, _ = scored
    text = format_results(res)
    header = text.splitlines()[0].split()
    assert header[-1] == "crps"
    steps_row = next(line for line in text.splitlines() if line.startswith("steps"))
    assert f"{res['steps']['crps']:.4g}" in steps_row
    assert any(line.startswith("brier@1") for line in text.splitlines())


def test_a_model_with_members_is_scored_through_forecast_members(radar_run, monkeypatch, tmp_path):
    """A stand-in ensemble model: the run's model shifted by (k - 1) * 0.2 in scaled units, member
    k of 3, so the forecast is their exact mean before the clamp at 0 (and not after it)."""
    from convlstm.training import evaluation

    _, run = radar_run
    real = evaluation.load_module
    given = []

    def with_members(ckpt, model=None):
        module, ckpt_dict = real(ckpt, model=model)
        module.members = 3

        def forecast_members(x, n, features=None, forecast=None):
            given.append(forecast is not None)
            base = module(x, features) if forecast is None else forecast
            return torch.stack([base + 0.2 * (k - 1) for k in range(n)])

        module.forecast_members = forecast_members
        return module, ckpt_dict

    monkeypatch.setattr(evaluation, "load_module", with_members)
    with contextlib.redirect_stdout(io.StringIO()) as log:
        res = evaluate(run, baselines=["persistence"], thresholds=[1.0, 4.0], out_dir=tmp_path, rank_min=1.0)
    assert "scored with 3 members" in log.getvalue()
    assert given and all(given)   # the model's forecast is computed once, and the members drawn around it

    from convlstm.training.runs import load_module

    module, ckpt = load_module(run)
    dm = GridDataModule.from_state(ckpt["GridDataModule"])
    dm.setup("test")
    x, y = windows("test")
    with torch.no_grad():
        base = module(dm.scaler.transform(torch.as_tensor(x, dtype=torch.float32)))
    members = np.stack([np.maximum(dm.scaler.inverse_transform(base + 0.2 * (k - 1)).double().numpy(), 0.0)
                        for k in range(3)])
    centre = np.maximum(dm.scaler.inverse_transform(base).double().numpy(), 0.0)
    ref = evaluate_ensemble(members, y, thresholds=(1.0, 4.0), lead_axis=1, rank_min=1.0)
    assert res["model"]["members"] == 3
    for key in ("crps", "brier@1", "spread_skill", "rank_histogram"):
        assert res["model"][key] == pytest.approx(ref[key], rel=1e-6), key
    assert res["model"]["rank_min"] == 1.0
    assert res["model"]["mse"] == pytest.approx(np.mean((centre - y) ** 2), rel=1e-6)
    drawn_mean = np.mean((members.mean(0) - y) ** 2)
    assert abs(drawn_mean - res["model"]["mse"]) > 1e-3 * drawn_mean   # the clamp moved the members' average
    assert (tmp_path / "rank_histogram.png").is_file() and (tmp_path / "probability.png").is_file()


def test_rank_min_needs_an_ensemble_and_a_number(radar_run, tmp_path):
    _, run = radar_run
    with pytest.raises(ParameterError, match="rank_min=1 is for the rank histograms of ensembles") as exc:
        evaluate(run, baselines=["persistence"], rank_min=1.0, plots=False, out_dir=tmp_path)
    assert exc.value.parameter == "rank_min"
    with pytest.raises(ParameterError, match="rank_min must be a finite number"):
        evaluate(run, baselines=["steps"], rank_min=float("nan"), plots=False, out_dir=tmp_path)


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("members", [0, -3, 1, 2.5, True])
def test_members_must_be_an_ensemble_size(radar_run, members, tmp_path):
    _, run = radar_run
    with pytest.raises(ParameterError, match="members must be an int >= 2") as exc:
        evaluate(run, baselines=["steps"], members=members, plots=False, out_dir=tmp_path)
    assert exc.value.parameter == "members"


def test_members_without_an_ensemble_is_refused(radar_run, tmp_path):
    _, run = radar_run
    with pytest.raises(ParameterError, match="no ensemble baseline") as exc:
        evaluate(run, baselines=["persistence"], members=4, plots=False, out_dir=tmp_path)
    assert exc.value.parameter == "members"


def test_steps_refuses_two_channels():
    dm = GridDataModule(np.random.default_rng(0).uniform(0, 5, (60, 16, 16, 2)).astype(np.float32), input_steps=3,
                        output_steps=2)
    dm.setup("test")
    with pytest.raises(ParameterError, match="2 channels: leave steps out of baselines") as exc:
        Steps.from_datamodule(dm, "test")
    assert exc.value.parameter == "baselines"
    with pytest.raises(ParameterError, match="at least 3 input frames"):
        steps_members(np.ones((2, 16, 16)), 2, 4)
    short = GridDataModule(np.ones((60, 16, 16, 1), np.float32), input_steps=2, output_steps=2)
    short.setup("test")
    with pytest.raises(ParameterError, match="at least 3 input frames") as exc:
        Steps.from_datamodule(short, "test")
    assert exc.value.parameter == "baselines"


def test_dressed_without_a_validation_part_is_left_out(radar_run, capsys, tmp_path):
    tmp, run = radar_run
    np.save(tmp_path / "other.npy", rain()[:20])
    res = evaluate(run, data=tmp_path / "other.npy", layout="THW", baselines=["persistence", "dressed", "steps"],
                   members=M, thresholds=[1.0], plots=False, out_dir=tmp_path / "ev")
    out = capsys.readouterr().out
    assert "baselines: dressed is left out" in out and "validation part" in out
    assert "dressed" not in res and "crps" in res["steps"]
    with pytest.raises(ParameterError, match="validation") as exc:
        Dressed.from_datamodule(None, "test")
    assert exc.value.parameter == "baselines"


# ---------------------------------------------------------------------------------- command line
def test_evaluate_and_fit_from_the_command_line(radar_run, capsys, tmp_path):
    from convlstm import cli

    def run_cli(*argv):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    tmp, run = radar_run
    code, out, err = run_cli("evaluate", run, "--members", 3, "--baselines", "persistence", "steps", "dressed",
                             "--thresholds", 1, "--out-dir", tmp_path / "ev")
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["steps"]["members"] == 3 and metrics["dressed"]["members"] == 3
    assert "crps" in out.splitlines()[next(i for i, line in enumerate(out.splitlines()) if line.startswith("forecast"))]
    code, _, err = run_cli("evaluate", run, "--members", 0, "--baselines", "steps")
    assert code == 2 and "--members" in err

    # fit hands --baselines steps on to its final evaluation
    code, out, err = run_cli("fit", tmp / "radar.npz", "--key", "rain", "--layout", "THW", "--input-steps", T_IN,
                             "--output-steps", T_OUT, "--split", *SPLIT, "--baselines", "persistence", "steps",
                             "--thresholds", 1, "--model", "keras-nextframe", "--model-option", "filters=[2]",
                             "--max-epochs", 1, "--batch-size", 4, "--accelerator", "cpu", "--devices", 1,
                             "--run-dir", tmp_path / "fit", "--no-progress")
    assert code == 0, err
    assert "steps: pysteps STEPS, 20 members" in out
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert metrics["steps"]["members"] == 20 and "crps" in metrics["steps"]
    assert (tmp_path / "fit" / "rank_histogram.png").is_file()
