"""`convlstm fit --closeness/--period/--trend/--calendar/--holidays/--external` through
convlstm.cli.main: the log, the checkpoint round trip, the automatic default, flag-named errors."""
import json

import numpy as np
import pytest
import torch

import lightning  # noqa: F401  (the train extra: every test here needs it)

from convlstm.training import GridDataModule, load_config
from convlstm.training.multiscale import MultiScale
from _helpers import run_cli_captured as run

pytestmark = pytest.mark.usefixtures("one_thread")

WEEKS = 3


def hourly_file(tmp_path, weeks=WEEKS):
    """(T, 4, 4, 1) counts with a daily cycle, DeepST time stamps and a temperature series."""
    n = 24 * 7 * weeks
    t = np.arange(n)
    cycle = 10 + 8 * np.sin(2 * np.pi * t / 24)
    data = np.broadcast_to(cycle[:, None, None, None], (n, 4, 4, 1)).astype(np.float32)
    days = np.datetime64("2014-08-04") + (t // 24).astype("timedelta64[D]")
    date = np.array([str(d).replace("-", "") + f"{h + 1:02d}" for d, h in zip(days, t % 24)])
    path = tmp_path / "flow.npz"
    np.savez(path, data=data, date=date, temp=20 + np.cos(2 * np.pi * t / 24))
    return path


FAST = ["--max-epochs", "1", "--limit-train-batches", "2", "--batch-size", "8", "--accelerator", "cpu",
        "--devices", "1", "--no-progress", "--output-steps", "1"]


def test_fit_evaluate_with_streams_calendar_holidays_external(capsys, tmp_path):
    data = hourly_file(tmp_path)
    (tmp_path / "holidays.txt").write_text("2014-08-11\n")
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "fit", str(data), "--key", "data", "--closeness", "2", "--period", "1", "--trend",
                         "1", "--holidays", str(tmp_path / "holidays.txt"), "--external", "temp",
                         "--model", "st-convlstm", "--model-option", "filters=[4]", "--run-dir", str(run_dir), *FAST)
    assert code == 0, err
    assert "multi-scale samples: closeness 2, period 1 x 24 steps, trend 1 x 168 steps" in out
    assert "(168 dropped: lags before the series' start)" in out      # the training part's first week
    assert "'holiday', 'temp'" in out
    cfg = load_config(run_dir / "config.yaml")
    assert (cfg.closeness, cfg.period, cfg.trend, cfg.external) == (2, 1, 1, ["temp"])
    # evaluate rebuilds the samples and features from the checkpoint alone
    code, out, err = run(capsys, "evaluate", str(run_dir), "--out-dir", str(tmp_path / "ev"))
    assert code == 0, err
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    fit_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert ev["model"]["rmse"] == pytest.approx(fit_metrics["model"]["rmse"], rel=1e-5)
    # predict: one forecast after the end, or every target whose week-old lag is in the file
    code, _, err = run(capsys, "predict", str(run_dir), str(data), "--key", "data", "--out", str(tmp_path / "f.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "f.npy").shape == (1, 1, 4, 4, 1)
    code, _, err = run(capsys, "predict", str(run_dir), str(data), "--key", "data", "--all-windows",
                       "--out", str(tmp_path / "all.npy"))
    assert code == 0, err
    every = np.load(tmp_path / "all.npy")
    n = 24 * 7 * WEEKS
    assert every.shape == (n + 1 - 168, 1, 4, 4, 1)          # targets t = 168 .. n (the last: after the end)
    # the forecast for the last test target equals the model applied to the data module's own sample
    from convlstm.training.runs import load_module

    module, ckpt = load_module(run_dir)
    dm = GridDataModule.from_state(ckpt["GridDataModule"])
    dm.setup()
    test = dm.datasets["test"]
    x, _, f = test[len(test) - 1]
    assert test.targets[-1] == n - 1
    with torch.no_grad():
        expect = dm.inverse_transform(module(x[None], f[None])).clamp_min(0).numpy()
    np.testing.assert_allclose(every[n - 1 - 168], expect[0], rtol=1e-5, atol=1e-5)


def test_flag_errors(capsys, tmp_path):
    data = hourly_file(tmp_path, weeks=1)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((100, 4, 4), dtype=np.float32))
    code, _, err = run(capsys, "fit", str(plain), "--layout", "THW", "--period", "1", *FAST)
    assert code == 2 and "--period 1" in err and "--period-interval" in err and "--steps-per-day" in err
    code, _, err = run(capsys, "fit", str(plain), "--layout", "THW", "--calendar", *FAST)
    assert code == 2 and "--calendar" in err and "time stamps" in err
    code, _, err = run(capsys, "fit", str(data), "--key", "data", "--calendar", "--model", "convlstm-warp",
                       "--run-dir", str(tmp_path / "r1"), *FAST)
    assert code == 2 and "st-convlstm" in err
    code, _, err = run(capsys, "fit", str(data), "--key", "data", "--holidays", str(tmp_path / "none.txt"), *FAST)
    assert code == 2 and "holidays=" in err and "none.txt" in err
    code, _, err = run(capsys, "fit", str(data), "--key", "data", "--external", "date", "--closeness", "2",
                       "--model", "st-convlstm", "--run-dir", str(tmp_path / "r2"), *FAST)
    assert code == 2 and "--external date" in err


def test_automatic_streams_and_intervals(tmp_path):
    from convlstm.training import FitConfig
    from convlstm.training.fitting import datamodule_from_config

    data = str(hourly_file(tmp_path))
    # st-convlstm takes streams and features: time stamps give 24 steps a day and training holds
    # 353 steps: a week (168) but not four (672), so the period and the calendar come on, not the trend
    dm = datamodule_from_config(FitConfig(data=data, key="data", output_steps=1, model="st-convlstm"))
    dm.setup()
    assert dm.streams == (6, 1, 0) and dm.input_steps == 7 and dm.num_features == 6
    assert dm.datasets["train"].dropped == 24 and dm.datasets["test"].dropped == 0
    # six weeks: 705 training steps, the week-old lag too (it drops the first week's 168 samples)
    (tmp_path / "long").mkdir()
    long = datamodule_from_config(FitConfig(data=str(hourly_file(tmp_path / "long", weeks=6)), key="data",
                                            output_steps=1, model="st-convlstm"))
    long.setup()
    assert long.streams == (6, 1, 1) and long.datasets["train"].dropped == 168
    # explicit streams win; the calendar follows them (no period or trend: no calendar)
    dm = datamodule_from_config(FitConfig(data=data, key="data", output_steps=1, model="st-convlstm", closeness=3,
                                           period=0, trend=0))
    dm.setup()
    assert dm.streams == (3, 0, 0) and dm.num_features == 0 and dm.datasets["train"].dropped == 3
    # the default model, convlstm-warp, measured no better with them: plain windows
    dm = datamodule_from_config(FitConfig(data=data, key="data", output_steps=1))
    dm.setup()
    assert dm.streams is None and dm.input_steps == 6 and dm.num_features == 0
    short = GridDataModule(path=str(hourly_file(tmp_path / "..", weeks=1)), key="data", input_steps=6,
                           output_steps=1, multiscale=MultiScale(model_takes_streams=True))
    short.setup()
    assert short.streams is None and short.input_steps == 6          # 117 training steps: plain windows
    # no time stamps: the day comes from steps_per_day
    series = np.random.default_rng(0).random((200, 3, 3, 1)).astype(np.float32)
    dm = GridDataModule(series, input_steps=2, output_steps=1, multiscale=MultiScale(period=2, steps_per_day=12))
    dm.setup()
    assert dm.streams == (2, 2, 0) and dm.datasets["train"].offsets["period"].tolist() == [-24, -12]


def test_datamodule_datasets_pickle_the_file_not_the_frames(tmp_path):
    """What spawned DataLoader workers get of a memmap'd .npy series, read through a unit
    conversion or not, with multi-scale samples or windows: the file's name, not its frames."""
    import pickle

    from convlstm.data import UnitConversion

    np.save(tmp_path / "s.npy", np.random.default_rng(0).random((24 * 14, 32, 32, 2), dtype=np.float32))  # 2.8 MB
    for multiscale in (MultiScale(period=1, period_interval=24), None):
        for conversion in (None, UnitConversion(scale=2.0)):
            dm = GridDataModule(path=str(tmp_path / "s.npy"), input_steps=3, output_steps=1, multiscale=multiscale,
                                conversion=conversion)
            dm.setup()
            for ds in dm.datasets.values():
                blob = pickle.dumps(ds)
                assert len(blob) < 10_000
                for a, b in zip(ds[len(ds) - 1], pickle.loads(blob)[len(ds) - 1]):
                    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_data_module_hands_out_external_features_of_the_last_observed_step(tmp_path):
    """Through GridDataModule: temp[t] = 10 + 2 t with a spike of 1e6 at step 35 (the test part);
    min-max scaled with the training part's range (steps 0..27: 10 .. 64), a sample gets the
    value of its last observed step t - gap - 1, so the target at 35 does not see the spike and
    the target right after the gap following it does."""
    n, gap = 40, 1
    temp = 10.0 + 2.0 * np.arange(n)
    temp[35] = 1e6
    series = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 3, 3)).copy()
    np.savez(tmp_path / "s.npz", data=series, temp=temp)
    dm = GridDataModule(path=str(tmp_path / "s.npz"), key="data", layout="THW", input_steps=2, output_steps=1,
                        gap=gap, split=(0.7, 0.15, 0.15), multiscale=MultiScale(closeness=2, external=["temp"]))
    dm.setup()
    assert dm.num_features == 1 and dm.multiscale.external_range == {"temp": [[10.0], [64.0]]}
    seen = {}
    for ds in dm.datasets.values():
        for i, t in enumerate(ds.targets.tolist()):
            seen[t] = ds[i][2].item()
    assert {35, 36 + gap} <= set(seen)
    for t, f in seen.items():
        assert f == pytest.approx((temp[t - gap - 1] - 10.0) / 54.0, rel=1e-6), t
    assert seen[35] == pytest.approx(2 * (35 - gap - 1) / 54.0, rel=1e-6)   # not the spike at its own step
    assert seen[36 + gap] == pytest.approx((1e6 - 10.0) / 54.0, rel=1e-6)   # the spike, once observed


def test_docstring_examples():
    import doctest

    from convlstm.training import multiscale

    assert doctest.testmod(multiscale).failed == 0
