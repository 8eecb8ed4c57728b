"""After training, ``fit`` compares the model with every baseline on the validation part and says
which baseline is ahead (checked against baselines computed by hand on the validation windows)."""
import json

import numpy as np
import pytest

from convlstm.training import FitConfig, GridDataModule, fit
from convlstm.training.validation_check import advice, baselines_ahead

pytestmark = pytest.mark.usefixtures("one_thread")

SPLIT = [0.6, 0.2, 0.2]


def noise(n=50, size=12):
    """No temporal structure: climatology is the best forecast; an untrained model is behind it."""
    return np.random.default_rng(1).poisson(20, (n, size, size, 1)).astype(np.float32)


def test_fit_reports_the_baselines_ahead_on_validation(tmp_path, capsys):
    np.save(tmp_path / "noise.npy", noise())
    run = fit(FitConfig(data=str(tmp_path / "noise.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
                        split=SPLIT, progress=False, accelerator="cpu", devices=1, model="keras-nextframe",
                        model_options={"filters": [2], "kernel_sizes": [3]}, run_dir=str(tmp_path / "run"),
                        units="people"))
    check = json.loads((run / "metrics.json").read_text())["validation"]
    # by hand, on the validation windows in the file's values
    s = noise().astype(np.float64)
    dm = GridDataModule(noise(), input_steps=3, output_steps=2, split=SPLIT)
    dm.setup("fit")
    ds = dm.datasets["val"]
    windows = [ds.window_times(i) for i in range(len(ds))]
    y = np.stack([s[t] for _, t in windows])
    persistence = np.stack([np.repeat(s[i[-1:]], 2, axis=0) for i, _ in windows])
    clim = s[:dm.parts["train"][1]].mean(axis=0)
    assert check["samples"] == len(ds)
    assert check["persistence"]["mse"] == pytest.approx(np.mean((persistence - y) ** 2), rel=1e-9)
    assert check["climatology"]["mae"] == pytest.approx(np.mean(np.abs(clim - y)), rel=1e-6)
    ahead = {(e["baseline"], e["metric"]) for e in check["baselines_ahead"]}
    expected = {(b, m) for b in ("persistence", "climatology") for m in ("mse", "mae")
                if check[b][m] < check["model"][m]}
    assert ahead == expected and ("climatology", "mse") in ahead
    out = capsys.readouterr().out
    assert "convlstm fit: on the validation part climatology is ahead of the model in MSE" in out
    assert "options that usually help" in out


def test_advice_names_the_score_and_the_options():
    summary = {"model": {"mse": 10.0, "mae": 2.0}, "persistence": {"mse": 12.0, "mae": 1.9},
               "climatology": {"mse": 9.0, "mae": 2.5}}
    ahead = baselines_ahead(summary)
    assert [(e["baseline"], e["metric"]) for e in ahead] == [("persistence", "mae"), ("climatology", "mse")]
    lines = advice(ahead, "bikes")
    assert lines[0] == "on the validation part persistence is ahead of the model in MAE: 1.9 against 2 bikes"
    assert "--loss mae" in lines[-1] and "--calendar" in lines[-1]
    assert advice([]) == []


def test_fit_without_validation_windows_says_what_it_goes_without(tmp_path, capsys):
    """With no validation window there is no blend and no comparison: ``fit`` says so, and how many
    frames (3 in + 2 out = 5) a validation part needs for one window; with one it says nothing of it."""
    np.save(tmp_path / "noise.npy", noise())
    common = dict(data=str(tmp_path / "noise.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=1,
                  progress=False, accelerator="cpu", devices=1, model="convlstm-warp",
                  model_options={"filters": [2], "encoder_width": 2})
    run = fit(FitConfig(split=[0.8, 0.0, 0.2], run_dir=str(tmp_path / "none"), **common))
    out = capsys.readouterr().out
    assert ("convlstm fit: no validation window (split=[0.8, 0.0, 0.2]): the forecast is not blended toward its "
            "start, not compared with the baselines; a validation part of at least 5 consecutive frames") in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert "validation" not in metrics and "blend" not in metrics
    fit(FitConfig(split=SPLIT, run_dir=str(tmp_path / "some"), **common))
    out = capsys.readouterr().out
    assert "no validation window" not in out and "blended toward" in out
