"""A run remembers its data: predict, evaluate and resume without the data options again; a
changed --max-epochs on resume; a fit that fails before training leaves nothing."""
import json
import math

import numpy as np
import pytest

import lightning  # noqa: F401  (the train extra: every test here needs it)

from convlstm.training import load_config
from _helpers import run_cli as run

pytestmark = pytest.mark.usefixtures("one_thread")


def series(n=36, size=12):
    t = np.arange(n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    return (np.sin(0.5 * t + 0.6 * xx[None]) * np.cos(0.4 * yy[None]) * 50 + 100).astype(np.float32)


TINY = ("--model", "keras-nextframe", "--model-option", "filters=[4,4]", "--input-steps", "3", "--output-steps", "2",
        "--split", "0.6", "0.2", "0.2", "--batch-size", "8", "--accelerator", "cpu", "--devices", "1", "--no-progress")


@pytest.fixture(scope="module")
def radar_run(tmp_path_factory):
    """A run trained on one of two arrays of an .npz, (time, rows, cols), stored x 2 (scale 0.5),
    in mm/h; keras-nextframe given only its filters (two layers: the kernel sizes follow)."""
    d = tmp_path_factory.mktemp("radar")
    s = series()
    np.savez(d / "radar.npz", rain=s, other=np.zeros((4, 3)))
    code, _, err = run("fit", d / "radar.npz", "--key", "rain", "--layout", "THW", "--scale", "0.5",
                       "--units", "mm/h", "--max-epochs", "1", "--no-evaluate", "--run-dir", d / "run", *TINY)
    assert code == 0, err
    return d, s


def test_predict_reuses_the_runs_key_layout_and_units(radar_run):
    d, s = radar_run
    code, _, err = run("predict", d / "run", d / "radar.npz", "--out", d / "auto.npy")
    assert code == 0, err
    code, _, err = run("predict", d / "run", d / "radar.npz", "--key", "rain", "--layout", "THW",
                       "--out", d / "explicit.npy")
    assert code == 0, err
    auto = np.load(d / "auto.npy")
    assert auto.shape == (1, 2, 12, 12, 1)
    np.testing.assert_array_equal(auto, np.load(d / "explicit.npy"))
    # a .npy file holds one array: the run's key is not applied to it; its layout is
    np.save(d / "latest.npy", s)
    code, _, err = run("predict", d / "run", d / "latest.npy", "--out", d / "from_npy.npy")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(d / "from_npy.npy"), auto)
    # the forecast file says its units
    import h5netcdf

    code, _, err = run("predict", d / "run", d / "radar.npz", "--out", d / "f.nc")
    assert code == 0, err
    with h5netcdf.File(d / "f.nc", "r") as f:
        assert f.variables["forecast"].attrs["units"] == "mm/h"
        np.testing.assert_allclose(f.variables["forecast"][...], auto)
    # overriding still works, and errors name the flags
    code, _, err = run("predict", d / "run", d / "radar.npz", "--key", "nope", "--out", d / "x.npy")
    assert code == 2 and "--key 'nope' is not an array" in err and "key=" not in err


def test_predict_with_its_arguments_swapped_says_so(radar_run, tmp_path):
    d, _ = radar_run
    code, _, err = run("predict", d / "radar.npz", d / "run", "--out", tmp_path / "f.npy")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"RUN|CKPT '{d / 'radar.npz'}' is not a run folder nor a .ckpt file, but FILE '{d / 'run'}' is: the two "
            f"are swapped; give the run first, then the grid file") in err, err
    assert not (tmp_path / "f.npy").exists()
    np.save(tmp_path / "data.npy", radar_run[1])
    code, _, err = run("predict", tmp_path / "data.npy", d / "run", "--out", tmp_path / "f.npy")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "the two are swapped" in err, err


def test_evaluate_reuses_the_runs_key_layout_and_units(radar_run, monkeypatch):
    from convlstm import plots

    d, s = radar_run
    drawn = []
    real = plots.plot_forecast
    monkeypatch.setattr(plots, "plot_forecast", lambda *a, **kw: (drawn.append(kw.get("units")), real(*a, **kw)))
    np.savez(d / "later.npz", rain=s[::-1].copy(), other=np.ones(3))
    code, _, err = run("evaluate", d / "run", "--data", d / "later.npz", "--out-dir", d / "auto")
    assert code == 0, err
    code, _, err = run("evaluate", d / "run", "--data", d / "later.npz", "--key", "rain", "--layout", "THW",
                       "--units", "mm/h", "--out-dir", d / "explicit")
    assert code == 0, err
    auto = json.loads((d / "auto" / "metrics.json").read_text())
    assert auto == json.loads((d / "explicit" / "metrics.json").read_text())
    code, _, err = run("evaluate", d / "run", "--out-dir", d / "own")  # the run's own file
    assert code == 0, err
    assert json.loads((d / "own" / "metrics.json").read_text()) != auto  # another file, other scores
    assert drawn == ["mm/h", "mm/h", "mm/h"]  # as the run's --units; fit draws with the same (cfg.units)
    code, _, err = run("evaluate", d / "run", "--units", "mm per h", "--out-dir", d / "other-units")
    assert code == 0 and drawn[-1] == "mm per h"


def test_evaluate_scores_every_window_of_another_file(radar_run, tmp_path):
    """A 12-step event is too short for the run's 0.6/0.2/0.2 split (its validation part would get
    2 steps, a window needs 5); a file the model never saw needs no split: with --data, evaluate
    scores all of its 8 windows, with the run's scaler (not one fitted on the event)."""
    import torch

    from convlstm.training import GridDataModule, evaluate

    d, s = radar_run
    event = s[10:22] * 1.5
    np.savez(tmp_path / "event.npz", rain=event, other=np.zeros(3))
    code, out, err = run("evaluate", d / "run", "--data", tmp_path / "event.npz", "--baselines", "persistence",
                         "--out-dir", tmp_path / "all")
    assert code == 0, err
    assert f"scoring every window of {tmp_path / 'event.npz'} (8 samples, not split)" in out
    metrics = json.loads((tmp_path / "all" / "metrics.json").read_text())
    x = np.stack([event[i:i + 3] for i in range(8)]) * 0.5             # the run's --scale 0.5: mm/h
    y = np.stack([event[i + 3:i + 5] for i in range(8)]) * 0.5
    expected = np.mean((np.repeat(x[:, -1:], 2, axis=1) - y) ** 2)    # persistence over every window
    assert metrics["persistence"]["mse"] == pytest.approx(expected, rel=1e-6)
    assert evaluate(d / "run", data=tmp_path / "event.npz", baselines=["persistence"], plots=False,
                    out_dir=tmp_path / "python") == metrics            # part=None: "all" with data
    code, _, err = run("evaluate", d / "run", "--data", tmp_path / "event.npz", "--part", "all",
                       "--baselines", "persistence", "--out-dir", tmp_path / "told")
    assert code == 0 and json.loads((tmp_path / "told" / "metrics.json").read_text()) == metrics, err
    code, _, err = run("evaluate", d / "run", "--data", tmp_path / "event.npz", "--part", "train")
    assert code == 2 and "--part 'all' scores every window of" in err, err   # the run's split is still there
    state = torch.load(d / "run" / "checkpoints" / "best.ckpt", weights_only=True)["GridDataModule"]
    dm = GridDataModule.from_state(state, path=str(tmp_path / "event.npz"), whole=True)
    dm.setup()
    assert list(dm.datasets) == ["all"] and dm.scaler.state_dict() == state["scaler"]  # not refitted on the event


def test_resume_needs_neither_data_nor_config(radar_run):
    d, _ = radar_run
    before = load_config(d / "run" / "config.yaml")
    code, _, err = run("fit", "--resume", "--run-dir", d / "run", "--max-epochs", "2", "--no-evaluate")
    assert code == 0, err
    history = json.loads((d / "run" / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    after = load_config(d / "run" / "config.yaml")
    assert after == before.replace(max_epochs=2, resume=True, evaluate=False)
    code, _, err = run("fit", "--resume", "--run-dir", d / "no-such-run")
    assert code == 2 and "no-such-run" in err and "config.yaml" in err


def test_resuming_a_finished_run_says_so_and_leaves_it_as_it_is(tmp_path):
    """A run that trained its --max-epochs: --resume would train nothing and overwrite its metrics
    and pictures; it stops at once naming --max-epochs, and a larger one trains on."""
    np.save(tmp_path / "g.npy", series())
    run_dir = tmp_path / "run"
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--max-epochs", "1", "--run-dir", run_dir, *TINY)
    assert code == 0, err
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()}
    assert run_dir / "forecast.png" in before and run_dir / "metrics.json" in before
    code, out, err = run("fit", "--resume", "--run-dir", run_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"--run-dir '{run_dir}' holds a finished run: it has trained 1 epoch, as many as --max-epochs 1, and is "
            f"left as it is; to train it further, resume with a larger --max-epochs, e.g. --max-epochs 2") in err
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.is_file()} == before
    code, _, err = run("fit", "--resume", "--run-dir", run_dir, "--max-epochs", "2", "--no-evaluate")
    assert code == 0, err
    assert json.loads((run_dir / "history.json").read_text())["epoch"] == [1, 2]


def _cosine_rates(lr, epochs):
    """torch's own CosineAnnealingLR over ``epochs``: the rate after each epoch (what history.json
    records: the scheduler steps at the end of the epoch)."""
    import torch

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    rates = []
    for _ in range(epochs):
        opt.step()
        sched.step()
        rates.append(opt.param_groups[0]["lr"])
    return rates


def test_resume_with_more_epochs_follows_a_cosine_over_the_new_number(tmp_path):
    np.save(tmp_path / "g.npy", series())
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--scheduler", "cosine", "--lr", "0.01",
                       "--max-epochs", "2", "--no-evaluate", "--limit-train-batches", "1",
                       "--run-dir", tmp_path / "run", *TINY)
    assert code == 0, err
    code, _, err = run("fit", "--resume", "--run-dir", tmp_path / "run", "--max-epochs", "4")
    assert code == 0, err
    rates = json.loads((tmp_path / "run" / "history.json").read_text())["lr"]
    # epochs 1-2 as planned for 2 (down to 0); from epoch 3 on, those of a 4-epoch cosine
    np.testing.assert_allclose(rates[:2], _cosine_rates(0.01, 2), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(rates[2:], _cosine_rates(0.01, 4)[2:], rtol=1e-6, atol=1e-12)
    assert math.isclose(rates[2], 0.01 * (1 + math.cos(3 * math.pi / 4)) / 2, rel_tol=1e-6)


def test_resume_refuses_a_new_max_epochs_for_onecycle(tmp_path):
    np.save(tmp_path / "g.npy", series())
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--scheduler", "onecycle", "--max-epochs", "1",
                       "--no-evaluate", "--limit-train-batches", "1", "--run-dir", tmp_path / "run", *TINY)
    assert code == 0, err
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stamp, config = last.stat().st_mtime_ns, (tmp_path / "run" / "config.yaml").read_text()
    code, _, err = run("fit", "--resume", "--run-dir", tmp_path / "run", "--max-epochs", "3")
    assert code == 2 and "onecycle" in err and "--max-epochs 1" in err and "max_epochs" not in err, err
    assert last.stat().st_mtime_ns == stamp and (tmp_path / "run" / "config.yaml").read_text() == config


def test_a_fit_that_fails_before_training_leaves_no_run_folder(tmp_path):
    np.save(tmp_path / "g.npy", series())
    run_dir = tmp_path / "runs" / "bad"
    # Lightning refuses the strategy when the trainer is made: after the run folder was written
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--strategy", "nonsense", "--max-epochs", "1",
                       "--run-dir", run_dir, *TINY)
    assert code == 2 and "nonsense" in err, err
    assert not (tmp_path / "runs").exists()
    # a folder the user made is kept, and so is what it held; only what the run wrote goes
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("mine")
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--strategy", "nonsense", "--max-epochs", "1",
                       "--run-dir", run_dir, *TINY)
    assert code == 2
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]


def test_a_fit_that_fails_in_its_first_epoch_leaves_nothing_and_a_later_failure_keeps_the_run(tmp_path):
    import lightning.pytorch as pl

    from convlstm.training import fit

    class FailAt(pl.Callback):
        def __init__(self, epoch):
            self.epoch = epoch

        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == self.epoch:
                raise RuntimeError("boom")

    np.save(tmp_path / "g.npy", series())
    options = dict(data=str(tmp_path / "g.npy"), layout="THW", input_steps=3, output_steps=2, split=[0.6, 0.2, 0.2],
                   model="keras-nextframe", model_options={"filters": [4]}, accelerator="cpu", devices=1,
                   progress=False, evaluate=False, max_epochs=2)
    with pytest.raises(RuntimeError, match="boom"):
        fit(run_dir=str(tmp_path / "first"), callbacks=[FailAt(0)], **options)
    assert not (tmp_path / "first").exists()
    with pytest.raises(RuntimeError, match="boom"):
        fit(run_dir=str(tmp_path / "second"), callbacks=[FailAt(1)], **options)
    # one epoch was saved: the run is kept, to be resumed
    assert (tmp_path / "second" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "second" / "config.yaml").is_file()


def test_evaluate_scores_as_fit_did_unless_told_otherwise(tmp_path):
    """`evaluate RUN` takes the run's thresholds, FSS scales and baselines (its config.yaml);
    flags still override them."""
    np.save(tmp_path / "g.npy", series())
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--max-epochs", "1", "--no-evaluate",
                       "--thresholds", "60", "110", "--fss-scales", "3", "--baselines", "persistence",
                       "--run-dir", tmp_path / "run", *TINY)
    assert code == 0, err
    code, _, err = run("evaluate", tmp_path / "run", "--out-dir", tmp_path / "own")
    assert code == 0, err
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())
    code, _, err = run("evaluate", tmp_path / "run", "--thresholds", "60", "110", "--fss-scales", "3",
                       "--baselines", "persistence", "--out-dir", tmp_path / "explicit")
    assert code == 0, err
    assert own == json.loads((tmp_path / "explicit" / "metrics.json").read_text())
    scores = {k for k in own["model"] if "@" in k}
    assert scores == {f"{m}@{t}" for m in ("csi", "pod", "far", "ets") for t in (60, 110)} | {"fss@60/3", "fss@110/3"}
    assert set(own) == {"model", "persistence", "skill_vs_persistence"}  # no baseline the run did not ask for
    code, _, err = run("evaluate", tmp_path / "run", "--thresholds", "75", "--baselines", "persistence",
                       "climatology", "--out-dir", tmp_path / "told")
    assert code == 0, err
    told = json.loads((tmp_path / "told" / "metrics.json").read_text())
    # the thresholds given, the run's FSS scale (not given here) at them
    assert {k for k in told["model"] if "@" in k} == {"csi@75", "pod@75", "far@75", "ets@75", "fss@75/3"}
    assert "climatology" in told


def test_a_gap_in_the_inputs_is_named_by_its_time_steps_in_the_file(radar_run, tmp_path):
    """NaN in the last window of a 36-step file: the message gives the file's time steps (not the
    position in the window) and what to do with what predict has (no Python function, no
    --fill-nan for predict: the run's fit takes it)."""
    d, s = radar_run
    gappy = s.copy()
    gappy[-2:, 3, 4] = np.nan
    np.savez(tmp_path / "gappy.npz", rain=gappy, other=np.zeros(3))
    code, _, err = run("predict", d / "run", tmp_path / "gappy.npz", "--out", tmp_path / "f.npy")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "time steps 34, 35 of the file (of 36) hold non-finite values (NaN or inf)" in err, err
    assert "Fill the gaps in the file, or train again with `convlstm fit ... --fill-nan VALUE`" in err
    assert "check_finite" not in err and "time 1," not in err and "window" not in err


def test_predict_handles_gaps_as_the_run_did(radar_run, tmp_path):
    """A run trained without --fill-nan refuses NaN in the frames a forecast reads (naming the
    flag) and ignores NaN in frames it does not read; a run trained with --fill-nan fills them."""
    d, s = radar_run
    gappy = s.copy()
    gappy[-1, 3, 4] = np.nan  # in the last window (3 input steps)
    np.savez(tmp_path / "gappy.npz", rain=gappy, other=np.zeros(3))
    code, _, err = run("predict", d / "run", tmp_path / "gappy.npz", "--out", tmp_path / "f.npy")
    assert code == 2 and "--fill-nan" in err and "non-finite" in err and "Traceback" not in err
    assert not (tmp_path / "f.npy").exists()
    early = s.copy()
    early[0, 3, 4] = np.nan  # before the last window: not read
    np.savez(tmp_path / "early.npz", rain=early, other=np.zeros(3))
    code, _, err = run("predict", d / "run", tmp_path / "early.npz", "--out", tmp_path / "early.npy")
    assert code == 0, err
    code, _, err = run("predict", d / "run", d / "radar.npz", "--out", tmp_path / "clean.npy")  # the same weights
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "early.npy"), np.load(tmp_path / "clean.npy"))

    np.save(tmp_path / "g.npy", s)
    code, _, err = run("fit", tmp_path / "g.npy", "--layout", "THW", "--fill-nan", "0", "--max-epochs", "1",
                       "--no-evaluate", "--run-dir", tmp_path / "filled", *TINY)
    assert code == 0, err
    zeroed = s.copy()
    zeroed[-1, 3, 4] = 0.0
    np.save(tmp_path / "gappy.npy", gappy)
    np.save(tmp_path / "zeroed.npy", zeroed)
    for name in ("gappy", "zeroed"):
        code, _, err = run("predict", tmp_path / "filled", tmp_path / f"{name}.npy", "--out", tmp_path / f"p_{name}.npy")
        assert code == 0, err
    # the gap is filled as training filled it: the same forecast as from the file with a 0 there
    np.testing.assert_array_equal(np.load(tmp_path / "p_gappy.npy"), np.load(tmp_path / "p_zeroed.npy"))
