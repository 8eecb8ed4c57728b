"""`convlstm export` of trained runs, for every registry model: the file reads raw data windows
in the data's units and gives `convlstm predict`'s forecasts on the same file (the run's scaler
and clamp at 0 are in the graph); the time axis follows the model without options; the
convention is in the file's metadata and the command's output; refusals are one line."""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

import lightning  # noqa: F401  (the train extra: training runs needs it)

import convlstm.onnx as conx
from convlstm import data as cdata
from convlstm.models import list_models
from convlstm.onnx.units import DataUnits
from convlstm.training import FitConfig, fit, predict
from convlstm.training.multiscale import MultiScale
from convlstm.training.runs import load_module
from _helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5  # of the forecast's scale: float32 rounding (the graph and torch order some sums apart)
FAST = dict(batch_size=8, max_epochs=1, limit_train_batches=2, progress=False, accelerator="cpu", devices=1,
            evaluate=False)
MULTISCALE = dict(key="data", output_steps=1, input_steps=3, closeness=2, period=1, trend=1)
# every registry model, each with another scaler; the multi-scale runs read an hourly file
CASES = {
    "convlstm-warp": dict(model="convlstm-warp", model_options={"filters": [4], "encoder_width": 4},
                          scaler="log1p"),
    "keras-nextframe": dict(model="keras-nextframe", model_options={"filters": [4], "kernel_sizes": [3]},
                            scaler="standard", nonnegative=False),
    "shi2015-1x256": dict(model="shi2015-1x256", model_options={"filters": [4], "kernel_size": 3, "patch_size": 2}),
    "shi2015-2x128": dict(model="shi2015-2x128", model_options={"filters": [4, 4], "kernel_size": 3,
                                                                 "patch_size": 2}, scaler="db"),
    "shi2015-128-64-64": dict(model="shi2015-128-64-64", model_options={"filters": [4, 4, 4], "kernel_size": 3,
                                                                         "patch_size": 2}, scaler="none"),
    "st-convlstm": dict(model="st-convlstm", model_options={"filters": [4]}),
    "st-convlstm-streams": dict(model="st-convlstm", model_options={"filters": [4]}, external=["temp"],
                                **MULTISCALE),
    "keras-nextframe-streams": dict(model="keras-nextframe", model_options={"filters": [4], "kernel_sizes": [3]},
                                    **{**MULTISCALE, "trend": 0}),
}


def grid_file(folder: Path) -> Path:
    """(48, 8, 8, 1) positive counts: a moving wave around 20."""
    t = np.arange(48)[:, None, None]
    yy, xx = np.mgrid[0:8, 0:8]
    series = np.sin(0.5 * t + 0.6 * xx[None]) * np.cos(0.4 * yy[None]) * 10 + 20
    path = folder / "grid.npy"
    np.save(path, np.round(series[..., None]).astype(np.float32))
    return path


def hourly_file(folder: Path) -> Path:
    """Three weeks of hourly (4, 4, 1) counts with a daily cycle, DeepST time stamps and a temperature."""
    t = np.arange(24 * 7 * 3)
    cells = np.arange(16).reshape(4, 4)
    data = 10 + 8 * np.sin(2 * np.pi * t[:, None, None] / 24 + 0.1 * cells) + (t[:, None, None] % 5)
    days = np.datetime64("2014-08-04") + (t // 24).astype("timedelta64[D]")
    date = np.array([str(d).replace("-", "") + f"{h + 1:02d}" for d, h in zip(days, t % 24)])
    path = folder / "flow.npz"
    np.savez(path, data=data[..., None].astype(np.float32), date=date, temp=20 + 5 * np.cos(2 * np.pi * t / 24))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(case)`` -> ``(run folder, data file)``, each case trained once (on first use)."""
    folder = tmp_path_factory.mktemp("runs")
    files = {"grid": grid_file(folder), "hourly": hourly_file(folder)}
    done = {}

    def get(case):
        if case not in done:
            options = {**FAST, **CASES[case]}
            source = files["hourly" if "closeness" in options else "grid"]
            options.setdefault("split", [0.6, 0.2, 0.2])
            if source == files["grid"]:
                options.update(input_steps=3, output_steps=2)
            done[case] = Path(fit(FitConfig(data=str(source), run_dir=str(folder / case), **options))), source
        return done[case]

    return get


def _export(run, out, *flags):
    code, printed, err = run_cli("export", run, out, *flags)
    assert code == 0, err
    return printed


def _windows(run, source):
    """The raw inputs of every forecast ``predict(all_windows=True)`` makes from ``source`` (the
    targets inside the file, for a multi-scale run), as the graph's inputs."""
    state = load_module(run)[1]["GridDataModule"]
    if source.suffix == ".npy":
        series, t = np.load(source), int(state["input_steps"])
        return {"x": np.stack([series[s:s + t] for s in range(len(series) - t + 1)])}
    stored = np.load(source)
    series, n = stored["data"], len(stored["data"])
    ms = MultiScale.from_state(state["multiscale"])
    lags = ms.lags(int(state["gap"]))
    targets = np.arange(-int(lags.min()), n)
    feeds = {"x": np.stack([series[t + lags] for t in targets])}
    columns = [cdata.calendar_features(cdata.parse_timestamps(stored["date"])[targets])] if ms.calendar else []
    columns += [stored[key][targets - int(state["gap"]) - 1, None] for key in ms.external]
    if columns:
        feeds["features"] = np.concatenate(columns, axis=1).astype(np.float32)
    return feeds


def test_every_registry_model_has_a_case():
    assert {c["model"] for c in CASES.values()} == set(list_models())


@pytest.mark.parametrize("case", list(CASES))
def test_run_file_on_raw_windows_equals_predict(runs, case, tmp_path):
    """The exported file, fed the file's raw windows, gives predict's forecasts (same units, same
    clamp) within float32 rounding; no option is needed for any model."""
    run, source = runs(case)
    out = tmp_path / "run.onnx"
    printed = _export(run, out)
    predict(run, source, tmp_path / "f.npy", all_windows=True, key="data" if source.suffix == ".npz" else None)
    expected = np.load(tmp_path / "f.npy")
    feeds = _windows(run, source)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(feeds)
    got = sess.run(None, feeds)[0]
    expected = expected[:len(got)]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL * np.abs(expected).max()
    meta = conx.metadata(out)
    assert not [k for k in meta if k.startswith("convlstm.input_steps.")]  # one input_steps, the run's
    state = load_module(run)[1]["GridDataModule"]
    assert meta["convlstm.units"] == "data" and meta["convlstm.scaler"] == state["scaler"]["name"]
    assert meta["convlstm.nonnegative"] == str(bool(state["nonnegative"])).lower()
    assert (meta["convlstm.input_steps"], meta["convlstm.output_steps"]) == (str(state["input_steps"]),
                                                                             str(state["output_steps"]))
    assert "x: " in printed and "in the data's units" in printed and meta["convlstm.time_steps"] in printed


def test_default_model_exports_without_min_time_and_serves_longer_windows(runs, tmp_path):
    """convlstm-warp (the default) needs T >= 3 for one graph: the export finds it, says so, and
    the file runs longer windows as the model does in torch."""
    run, source = runs("convlstm-warp")
    out = tmp_path / "warp.onnx"
    printed = _export(run, out)
    assert "any T >= 3 (trained on 3)" in printed and "clamped at 0" in printed
    assert conx.metadata(out)["convlstm.min_time"] == "3"
    module, ckpt = load_module(run)
    state = ckpt["GridDataModule"]
    module.model.input_steps = None  # the graph has no input_steps check (docs/export.md)
    wrapped = DataUnits(module.model, cdata.scaler_from_state_dict(state["scaler"]), nonnegative=True)
    x = np.load(source)[None, :7]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        expected = wrapped(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() <= TOL * np.abs(expected).max()


def test_scaled_option_exports_the_bare_network(runs, tmp_path):
    run, source = runs("keras-nextframe")
    out = tmp_path / "scaled.onnx"
    printed = _export(run, "-o", out, "--scaled")
    assert "scaled: apply the run's standard scaler first" in printed
    meta = conx.metadata(out)
    assert meta["convlstm.units"] == "scaled"
    scaler = cdata.scaler_from_state_dict(json.loads(meta["convlstm.scaler_state"]))
    x = scaler.transform(np.load(source)[None, :3])
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        expected = load_module(run)[0].model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() <= TOL * np.abs(expected).max()


@pytest.mark.parametrize("name", sorted(cdata.SCALERS))
def test_data_units_graph_of_each_scaler_equals_its_numpy_transform(name, tmp_path):
    """Each scaler kind, traced into the graph around a network, against the scaler's own numpy
    transform and inverse (and the clamp at 0)."""
    rng = np.random.default_rng(0)
    series = rng.gamma(1.0, 5.0, (40, 5, 4, 2)).astype(np.float32)
    series[series < 0.5] = 0.0
    scaler = cdata.make_scaler(name).fit(series)

    class Affine(nn.Module):  # in scaled units, with negative outputs for the clamp
        def forward(self, x):
            return 0.8 * x - 0.1

    for nonnegative in (False, True):
        path = conx.export(DataUnits(Affine(), scaler, nonnegative=nonnegative), tmp_path / f"{name}.onnx",
                           torch.zeros(1, 3, 5, 4, 2), input_names=["x"])
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": series[None]})[0]
        expected = scaler.inverse_transform(0.8 * scaler.transform(series[None]) - 0.1)
        if nonnegative:
            expected = np.maximum(expected, 0.0)
        assert np.abs(got - expected).max() <= TOL * np.abs(expected).max(), nonnegative


def _one_line_refusal(code, out, err):
    assert code == 2 and not out
    assert err.startswith("convlstm export: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_refusals_are_one_line(runs, tmp_path, monkeypatch):
    """A multi-scale run's time axis is fixed (--min-time refused), and a model torch.export cannot
    trace is refused in one line that says what to try."""
    run, _ = runs("st-convlstm-streams")
    code, out, err = run_cli("export", run, tmp_path / "a.onnx", "--min-time", "2")
    _one_line_refusal(code, out, err)
    assert "--min-time" in err and "fixed at T = 4" in err
    run, _ = runs("keras-nextframe")
    from convlstm.models import KerasNextFrame

    def data_dependent(self, x):
        return x[:, -2:] if bool(x.sum() > 0) else x[:, :2]

    monkeypatch.setattr(KerasNextFrame, "forward", data_dependent)
    code, out, err = run_cli("export", run, tmp_path / "b.onnx")
    _one_line_refusal(code, out, err)
    assert "model keras-nextframe cannot be exported" in err and "--static-time" in err
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()
