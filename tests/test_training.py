"""Training on Lightning: fit, checkpoints, resume, evaluate, predict, DDP on two CPU processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lightning  # noqa: F401  (the train extra: every test here needs it)

from convlstm.training import (AtomicCheckpointIO, FitConfig, ForecastModule, GridDataModule, evaluate, fit,
                               load_checkpoint, load_config, predict, save_config)

# tiny models run fastest on one thread (see conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


TINY_MODEL = {"model": "keras-nextframe", "model_options": {"filters": [4], "kernel_sizes": [3]}}


def make_series(n=48, size=12, channels=1, seed=0):
    """A smooth moving wave pattern (time, rows, cols, channels), easy to learn a little."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    chans = [np.sin(0.5 * t + 0.6 * xx[None] + 0.3 * c) * np.cos(0.4 * yy[None]) for c in range(channels)]
    s = np.stack(chans, -1) * 10 + 20 + rng.normal(0, 0.1, (n, size, size, channels))
    return s.astype(np.float32)


def tiny_config(tmp, **kw):
    base = dict(data=str(tmp / "grid.npy"), input_steps=3, output_steps=2, batch_size=8, max_epochs=2,
                lr=1e-2, progress=False, accelerator="cpu", devices=1, split=[0.6, 0.2, 0.2], **TINY_MODEL)
    base.update(kw)
    return FitConfig(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fit")
    np.save(tmp / "grid.npy", make_series())
    run_dir = fit(tiny_config(tmp, run_dir=str(tmp / "run")))
    return tmp, Path(run_dir)


def test_fit_lowers_loss_and_writes_run_folder(trained):
    tmp, run_dir = trained
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["train_loss"]) == 2
    assert history["train_loss"][1] < history["train_loss"][0]
    for name in ("config.yaml", "metrics.json", "metrics_per_lead_time.csv", "forecast.png", "forecast.gif",
                 "learning_curve.png", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("model", "persistence", "climatology"):
        assert {"mse", "mae"} <= set(metrics[key])
    assert not list(run_dir.glob("**/*.tmp")), "temporary files left behind"


def test_checkpoints_load_weights_only(trained):
    _, run_dir = trained
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        hp = ckpt["hyper_parameters"]
        assert hp["model"] == "keras-nextframe" and hp["input_steps"] == 3 and hp["output_steps"] == 2
        state = ckpt["GridDataModule"]
        assert state["scaler"]["name"] == "minmax" and state["sample_shape"] == [12, 12, 1]
        json.dumps(state["scaler"])  # the scaler state is JSON-able


def test_scaler_fitted_on_training_part_only(tmp_path):
    s = make_series(40)
    s[30:] += 1000.0  # a huge jump in the test part must not reach the scaler
    dm = GridDataModule(s, input_steps=3, output_steps=2, split=(0.5, 0.25, 0.25), scaler="minmax")
    dm.setup()
    train_max = float(s[:20].max())
    assert dm.scaler.state_dict()["data_max"] == pytest.approx([train_max], rel=1e-6)
    assert dm.value_range[1] == pytest.approx(train_max, rel=1e-6)
    assert np.allclose(dm.climatology, s[:20].mean(0), atol=1e-4)
    x, y = dm.datasets["train"][0]
    assert x.shape == (3, 12, 12, 1) and y.shape == (2, 12, 12, 1)
    assert float(x.max()) <= 1.0 + 1e-6


def test_evaluate_and_predict_on_checkpoint(trained, tmp_path):
    tmp, run_dir = trained
    results = evaluate(run_dir / "checkpoints" / "best.ckpt", out_dir=tmp_path / "ev", thresholds=[20.0])
    assert {"model", "persistence", "climatology"} <= set(results)
    assert "csi@20" in results["model"] or any(k.startswith("csi@") for k in results["model"])
    assert len(results["model"]["per_lead_time"]["mse"]) == 2
    for name in ("metrics.json", "metrics_per_lead_time.csv", "forecast.png", "forecast.gif"):
        assert (tmp_path / "ev" / name).is_file()

    out = predict(run_dir, tmp / "grid.npy", tmp_path / "f.npy")
    f = np.load(out, allow_pickle=False)
    assert f.shape == (1, 2, 12, 12, 1) and f.dtype == np.float32
    assert 0 < f.mean() < 60  # in the data's units (about 20), not scaled to [0, 1]
    out = predict(run_dir, tmp / "grid.npy", tmp_path / "f.nc", all_windows=True, stride=5)
    import h5netcdf

    with h5netcdf.File(out, "r") as nc:
        v = nc.variables["forecast"]
        assert v.shape == (len(range(0, 48 - 3 + 1, 5)), 2, 12, 12, 1)
        assert list(nc.variables["input_end"][:3]) == [2, 7, 12]
    with pytest.raises(ValueError, match=r"\.npy or \.nc"):
        predict(run_dir, tmp / "grid.npy", tmp_path / "f.csv")


def test_resume_continues_from_last_epoch(tmp_path):
    np.save(tmp_path / "grid.npy", make_series())
    run = tmp_path / "run"
    fit(tiny_config(tmp_path, run_dir=str(run), max_epochs=1, evaluate=False))
    first = load_checkpoint(run / "checkpoints" / "last.ckpt")
    steps_per_epoch = first["global_step"]
    assert first["epoch"] == 0 and steps_per_epoch > 0
    with pytest.raises(FileExistsError, match="--resume"):
        fit(tiny_config(tmp_path, run_dir=str(run), max_epochs=2, evaluate=False))
    fit(tiny_config(tmp_path, run_dir=str(run), max_epochs=2, evaluate=False, resume=True))
    second = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert second["epoch"] == 1
    assert second["global_step"] == 2 * steps_per_epoch
    history = second["callbacks"]["HistoryCallback"]
    assert history["epoch"] == [1, 2]
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        fit(tiny_config(tmp_path, run_dir=str(tmp_path / "nothing"), resume=True))


@pytest.mark.parametrize("loss,scheduler", [("mae", "cosine"), ("bce", "onecycle"), ("mse", "plateau")])
def test_losses_and_schedulers(tmp_path, loss, scheduler):
    s = make_series(30)
    dm = GridDataModule(s, input_steps=3, output_steps=2, split=(0.6, 0.2, 0.2), batch_size=8)
    run = fit(tiny_config(tmp_path, run_dir=str(tmp_path / "r"), loss=loss, scheduler=scheduler, max_epochs=1,
                          evaluate=False), datamodule=dm)
    ckpt = torch.load(Path(run) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["loss"] == loss and ckpt["lr_schedulers"]


def test_constraints_and_regularizers_are_applied(tmp_path):
    import convlstm

    layer = convlstm.ConvLSTM2D(2, 3, padding="same", return_sequences=True, in_channels=1,
                                kernel_constraint="non_neg", kernel_regularizer="l2")

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer
            self.out = torch.nn.Linear(2, 1)

        def forward(self, x):
            return self.out(self.layer(x))[:, -2:]

    module = ForecastModule(Head(), loss="mse", lr=0.5)
    dm = GridDataModule(make_series(30), input_steps=3, output_steps=2, split=(0.6, 0.2, 0.2), batch_size=8)
    fit(tiny_config(tmp_path, run_dir=str(tmp_path / "r"), max_epochs=1, evaluate=False), datamodule=dm,
        model=module.model)
    kernel = layer.get_weights()[0]
    assert (kernel >= 0).all()


def test_atomic_checkpoint_io(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(2), "n": 3}, tmp_path / "a.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]
    assert io.load_checkpoint(tmp_path / "a.ckpt")["n"] == 3
    torch.save({"obj": FitConfig()}, tmp_path / "evil.ckpt")  # a pickled object: refused, never unpickled
    with pytest.raises(ValueError, match="weights-only"):
        load_checkpoint(tmp_path / "evil.ckpt")


def test_config_yaml_round_trip_and_errors(tmp_path):
    cfg = FitConfig(data="x.npy", input_steps=7, split=[0.8, 0.1, 0.1], model_options={"filters": [8, 8]},
                    devices=[0, 1], thresholds=[0.5, 2], precision=32)
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert cfg.precision == "32"
    with pytest.raises(ValueError, match="unknown config option.*'epochs'"):
        FitConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match=r"loss must be one of mse, mae, bce, mse\+ssim, balanced; got 'l3'"):
        FitConfig(loss="l3")
    with pytest.raises(ValueError, match="split must be three fractions"):
        FitConfig(split=[0.5, 0.5, 0.5])
    (tmp_path / "bad.yaml").write_text("lr: [1, 2]\n")
    with pytest.raises(ValueError, match="bad.yaml.*lr must be"):
        load_config(tmp_path / "bad.yaml")


def test_small_frames_are_scored_without_ssim(tmp_path):
    """A 6x5 grid (smaller than SSIM's window) still trains and gets every score but SSIM beside the
    baselines, CSI at the run's thresholds included."""
    np.save(tmp_path / "grid.npy", make_series(40, size=12)[:, :6, :5])
    run = fit(tiny_config(tmp_path, run_dir=str(tmp_path / "r"), max_epochs=1, thresholds=[20.0]))
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    assert {"model", "persistence", "climatology"} <= set(metrics)
    assert len(metrics["climatology"]["per_lead_time"]["mse"]) == 2
    assert "ssim" not in metrics["model"] and "psnr" in metrics["model"]
    # by hand: the test part is steps [32, 40); windows start at 32..35; persistence = last input frame
    s = make_series(40, size=12)[:, :6, :5].astype(np.float64)
    errs = [(s[t + 2] - s[t + 3 + k]) ** 2 for t in range(32, 36) for k in range(2)]
    assert metrics["persistence"]["mse"] == pytest.approx(np.mean(errs), rel=1e-4)
    clim = s[:24].mean(0)
    errs = [(clim - s[t + 3 + k]) ** 2 for t in range(32, 36) for k in range(2)]
    assert metrics["climatology"]["mse"] == pytest.approx(np.mean(errs), rel=1e-4)
    pers = np.stack([s[t + 2] for t in range(32, 36) for k in range(2)])
    true = np.stack([s[t + 3 + k] for t in range(32, 36) for k in range(2)])
    h, m, f = [np.sum(a & b) for a, b in (((pers >= 20), (true >= 20)), ((pers < 20), (true >= 20)),
                                           ((pers >= 20), (true < 20)))]
    assert metrics["persistence"]["csi@20"] == pytest.approx(h / (h + m + f), rel=1e-12)


def test_datamodule_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one of series, path or sequences"):
        GridDataModule()
    with pytest.raises(ValueError, match="scaler must be one of"):
        GridDataModule(make_series(), scaler="zscore")
    dm = GridDataModule(make_series(10), input_steps=6, output_steps=3)
    with pytest.raises(ValueError, match="window"):
        dm.setup()


def test_ddp_two_cpu_processes(tmp_path):
    """`convlstm fit --strategy ddp --devices 2` on the CPU (gloo): two processes, one checkpoint."""
    np.save(tmp_path / "grid.npy", make_series())
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "convlstm.cli", "fit", str(tmp_path / "grid.npy"), "--input-steps", "3",
           "--output-steps", "2", "--batch-size", "4", "--max-epochs", "1", "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--model-option", "filters=[4]", "--model-option",
           "encoder_width=4", "--split", "0.6", "0.2", "0.2", "--run-dir", str(run), "--no-progress",
           "--no-evaluate"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0
    # the training part (steps 0..28) holds 25 windows; each of the 2 processes gets ceil(25 / 2) = 13,
    # in batches of 4: 4 optimizer steps, not the 7 of a single process
    n_train = round(48 * 0.6) - (3 + 2) + 1
    assert ckpt["global_step"] == int(np.ceil(np.ceil(n_train / 2) / 4)) == 4
    results = evaluate(run, out_dir=tmp_path / "ev")
    assert np.isfinite(results["model"]["mse"])


def test_climatology_by_hour_of_day_when_the_file_has_time_stamps(tmp_path):
    """A series that repeats exactly every 24 hours: the per-cell, per-hour training mean forecasts
    it perfectly (MSE 0, the analytic answer), which the mean training frame cannot."""
    n = 24 * 6
    hours = np.arange(n) % 24
    rng = np.random.default_rng(0)
    pattern = rng.uniform(0, 50, (24, 12, 12, 1)).astype(np.float32)
    series = pattern[hours]
    days = 4 + np.arange(n) // 24
    stamps = np.array([f"201408{d:02d}{h + 1:02d}" for d, h in zip(days, hours)])  # DeepST slots 01..24
    np.savez(tmp_path / "grid.npz", data=series, date=stamps)
    run = fit(tiny_config(tmp_path, data=str(tmp_path / "grid.npz"), key="data", run_dir=str(tmp_path / "r"),
                          max_epochs=1))
    metrics = json.loads((Path(run) / "metrics.json").read_text())
    assert metrics["climatology"]["mse"] < 1e-8
    mean_frame = series[: int(n * 0.6)].mean(0)
    test_y = series[int(n * 0.8) + 3:]
    assert ((test_y - mean_frame) ** 2).mean() > 100  # what the mean-frame baseline would have scored


def test_hours_of_day_formats():
    from convlstm.data import hours_of_day

    assert hours_of_day(np.array(["2014080401", "2014080424"])).tolist() == [0, 23]
    assert hours_of_day(np.array(["2017050910", "2017050948"])).tolist() == [4, 23]  # half-hour slots
    assert hours_of_day(np.array(["201008260000", "201008261355"])).tolist() == [0, 13]
    assert hours_of_day(np.array(["2010-08-26T13:05"], dtype="datetime64[m]")).tolist() == [13]
    assert hours_of_day(np.arange(3.0)) is None


class _Interrupted(Exception):
    pass


class _StepRecorder:
    """A Lightning callback recording every optimizer step: the batch (its values: the order in which
    the shuffled loader served the windows), the loss, the learning rate; it can raise at the start
    of an epoch, after the previous epoch's ``last.ckpt`` was written (an interruption)."""

    def __new__(cls, interrupt_at_epoch=None):
        import lightning.pytorch as pl

        class Recorder(pl.Callback):
            def __init__(self):
                self.steps = []

            def on_train_epoch_start(self, trainer, pl_module):
                if trainer.current_epoch == interrupt_at_epoch:
                    raise _Interrupted(f"interrupted before epoch {interrupt_at_epoch}")

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.steps.append((trainer.global_step, batch[0].detach().clone(), float(outputs["loss"]),
                                   trainer.optimizers[0].param_groups[0]["lr"]))

        return Recorder()


def test_resumed_run_equals_an_uninterrupted_one_step_for_step(tmp_path):
    """Three epochs straight, against one epoch, an interruption, and a resume from ``last.ckpt``
    for the other two: the same batches in the same order (the shuffling RNG restored), the same
    losses and learning rates (cosine schedule) at every step, and in the end the same weights,
    AdamW moments and scheduler state. On CPU with one thread the two runs do the same float
    operations in the same order, so they are equal exactly."""
    np.save(tmp_path / "grid.npy", make_series())
    cfg = dict(max_epochs=3, evaluate=False, scheduler="cosine", seed=7, batch_size=4)
    straight = _StepRecorder()
    fit(tiny_config(tmp_path, run_dir=str(tmp_path / "a"), **cfg), callbacks=[straight])
    first = _StepRecorder(interrupt_at_epoch=1)
    with pytest.raises(_Interrupted):
        fit(tiny_config(tmp_path, run_dir=str(tmp_path / "b"), **cfg), callbacks=[first])
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")["epoch"] == 0
    rest = _StepRecorder()
    fit(tiny_config(tmp_path, run_dir=str(tmp_path / "b"), resume=True, **cfg), callbacks=[rest])

    resumed = first.steps + rest.steps
    assert len(straight.steps) == len(resumed) and len(first.steps) * 3 == len(resumed)
    for (step_a, x_a, loss_a, lr_a), (step_b, x_b, loss_b, lr_b) in zip(straight.steps, resumed):
        assert step_a == step_b
        assert torch.equal(x_a, x_b), f"step {step_a}: another batch (the data order was not restored)"
        assert loss_a == loss_b and lr_a == lr_b, (step_a, loss_a, loss_b, lr_a, lr_b)

    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == len(resumed)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name in a["state_dict"]:
        assert torch.equal(a["state_dict"][name], b["state_dict"][name]), name
    opt_a, opt_b = a["optimizer_states"][0], b["optimizer_states"][0]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for pid, state in opt_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, opt_b["state"][pid][key]), (pid, key)
    assert a["lr_schedulers"] == b["lr_schedulers"]
