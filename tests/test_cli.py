"""The `convlstm` command line: help texts, argument errors, config files, fit/evaluate/predict."""
import json

import numpy as np
import pytest

import lightning  # noqa: F401  (the train extra: every test here needs it)

from convlstm.training import FitConfig, load_config
from _helpers import run_cli_captured as run


# tiny models run fastest on one thread (see conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def grid(tmp_path, n=40, size=12):
    t = np.arange(n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size]
    s = (np.sin(0.5 * t + 0.6 * xx[None]) * np.cos(0.4 * yy[None]) * 5 + 10).astype(np.float32)
    path = tmp_path / "grid.npy"
    np.save(path, s)  # (time, rows, cols): layout THW
    return path


@pytest.mark.parametrize("command", [[], ["demo"], ["fit"], ["evaluate"], ["predict"], ["convert"], ["models"]])
def test_help(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "usage: convlstm" in out
    if command in (["fit"], []):
        assert "example" in out and "convlstm fit flow.npy" in out
    if command == ["fit"]:
        assert "--num-nodes" in out and "--strategy" in out and "--resume" in out and "--precision" in out


def test_bad_arguments_name_parameter_value_and_choices(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "x.npy", "--loss", "hinge")
    assert code == 2 and "--loss" in err and "'hinge'" in err and "mse" in err
    code, _, err = run(capsys, "fit", "x.npy", "--input-steps", "0")
    assert code == 2 and "--input-steps must be an integer >= 1; got 0" in err
    code, _, err = run(capsys, "fit", "x.npy", "--split", "0.5", "0.5", "0.5")
    assert code == 2 and "split" in err and "0.5" in err
    code, _, err = run(capsys, "fit", str(tmp_path / "missing.npy"), "--no-progress")
    assert code == 2 and "missing.npy" in err
    code, _, err = run(capsys, "fit", "x.npy", "--model-option", "filters")
    assert code == 2 and "NAME=VALUE" in err
    code, _, err = run(capsys, "evaluate", str(tmp_path / "no-such-run"))
    assert code == 2 and "no-such-run" in err and "does not exist" in err
    code, _, err = run(capsys, "fit")
    assert code == 2 and "no data" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in err


def test_config_file_and_flags_override(capsys, tmp_path):
    (tmp_path / "run.yaml").write_text("data: a.npy\ninput_steps: 8\nlr: 0.01\nmodel_options:\n  filters: [4]\n")
    code, out, err = run(capsys, "fit", "--config", str(tmp_path / "run.yaml"), "--lr", "0.5", "--model-option",
                         "kernel_sizes=[3]", "--devices", "0,1", "--save-config", str(tmp_path / "out.yaml"))
    assert code == 0, err
    cfg = load_config(tmp_path / "out.yaml")
    assert cfg.data == "a.npy" and cfg.input_steps == 8 and cfg.lr == 0.5 and cfg.devices == [0, 1]
    assert cfg.model_options == {"filters": [4], "kernel_sizes": [3]}
    assert cfg.output_steps == FitConfig().output_steps  # untouched: the default
    # the written file, read back through the command line, gives the same config
    code, _, err = run(capsys, "fit", "--config", str(tmp_path / "out.yaml"), "--save-config", str(tmp_path / "again.yaml"))
    assert code == 0 and load_config(tmp_path / "again.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("epochs: 3\n")
    code, _, err = run(capsys, "fit", "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and "unknown config option" in err and "'epochs'" in err and "max_epochs" in err


def test_fit_evaluate_predict_from_the_command_line(capsys, tmp_path):
    data = grid(tmp_path)
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "fit", str(data), "--layout", "THW", "--input-steps", "3", "--output-steps", "2",
                         "--split", "0.6", "0.2", "0.2", "--scaler", "standard", "--model", "keras-nextframe",
                         "--model-option", "filters=[4]", "--model-option", "kernel_sizes=[3]",
                         "--max-epochs", "1", "--batch-size", "8", "--accelerator", "cpu", "--devices", "1",
                         "--run-dir", str(run_dir), "--no-progress")
    assert code == 0, err
    assert "persistence" in out and "climatology" in out and str(run_dir) in out
    assert (run_dir / "metrics.json").is_file()
    assert load_config(run_dir / "config.yaml").layout == "THW"

    code, out, err = run(capsys, "evaluate", str(run_dir), "--out-dir", str(tmp_path / "ev"), "--thresholds", "10")
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics) >= {"model", "persistence", "climatology"}

    code, out, err = run(capsys, "predict", str(run_dir), str(data), "--layout", "THW", "--out",
                         str(tmp_path / "f.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "f.npy").shape == (1, 2, 12, 12, 1)
    code, _, err = run(capsys, "predict", str(run_dir), str(data), "--layout", "THWC", "--out", str(tmp_path / "g.npy"))
    assert code == 2 and "layout" in err

    # the run's bare network (--scaled) as one ONNX file for any batch and T, equal to the checkpoint's
    code, out, err = run(capsys, "export", str(run_dir), "-o", str(tmp_path / "run.onnx"), "--scaled")
    assert code == 0, err
    assert "(batch, time, " in out
    import onnxruntime as ort
    import torch

    from convlstm.training.runs import load_module

    network = load_module(run_dir)[0].model
    sess = ort.InferenceSession(str(tmp_path / "run.onnx"), providers=["CPUExecutionProvider"])
    for b, t in ((1, 1), (3, 3), (3, 9)):
        x = torch.rand(b, t, 12, 12, 1)
        with torch.no_grad():
            ref = network(x).numpy()
        got = sess.run(None, {"x": x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


TINY = ("--input-steps", "3", "--output-steps", "2", "--model", "keras-nextframe", "--model-option", "filters=[2]",
        "--max-epochs", "1", "--batch-size", "8", "--accelerator", "cpu", "--devices", "1", "--no-evaluate",
        "--no-progress")


def test_fit_says_how_it_reads_the_file_and_doubts_an_unusual_grid(capsys, tmp_path):
    """A (time, channels, rows, cols) file read as the default THWC gives frames of 2x16 with 8
    channels: fit says what it read and names the layout that reads 16x8 frames of 2 channels."""
    data = tmp_path / "flow.npy"
    np.save(data, np.random.default_rng(0).random((50, 2, 16, 8)).astype(np.float32))
    code, out, err = run(capsys, "fit", str(data), *TINY, "--run-dir", str(tmp_path / "thwc"))
    assert code == 0, err
    assert f"convlstm fit: read {data}: (50, 2, 16, 8) as layout THWC: 50 frames of 2x16, 8 channels" in out
    warnings = [line for line in out.splitlines() if "warning" in line]
    assert len(warnings) == 1, out
    assert "8 channels on frames of 2x16 (more channels than rows)" in warnings[0]
    assert "give --layout TCHW, which reads 50 frames of 16x8, 2 channels" in warnings[0]
    code, out, err = run(capsys, "fit", str(data), *TINY, "--layout", "tchw", "--run-dir", str(tmp_path / "tchw"))
    assert code == 0, err
    assert "(50, 2, 16, 8) as layout TCHW: 50 frames of 16x8, 2 channels" in out and "warning" not in out
    assert load_config(tmp_path / "tchw" / "config.yaml").layout == "TCHW"


@pytest.mark.parametrize("command", [["fit", "x.npy"], ["evaluate", "runs/x"],
                                     ["predict", "runs/x", "x.npy", "--out", "f.npy"]])
def test_layouts_are_accepted_in_any_case(command):
    from convlstm import cli

    assert cli.build_parser().parse_args([*command, "--layout", "tchw"]).layout == "TCHW"


def test_models_command(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "keras-nextframe" in out and "shi2015-2x128" in out


def test_demo_quick(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--quick", "--run-dir", str(tmp_path / "demo"), "--no-progress")
    assert code == 0, err
    assert "persistence" in out and "climatology" in out
    for name in ("metrics.json", "forecast.png", "forecast.gif", "learning_curve.png", "config.yaml"):
        assert (tmp_path / "demo" / name).is_file()
