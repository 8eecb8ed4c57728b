"""``evaluate`` end to end: truth and baselines from the file's own values, any registered baseline
scored by the same engine, non-finite forecasts flagged; checked by hand and against pysteps."""
import json

import numpy as np
import pytest
import torch

from convlstm import baselines as B
from convlstm.training import FitConfig, ForecastModule, GridDataModule, evaluate, fit

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE, T_IN, T_OUT = 60, 12, 3, 2
SPLIT = [0.6, 0.2, 0.2]


def counts_series():
    """Integer counts 0..399 (bikes per cell and hour, say): many values sit exactly on a threshold."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 400, (N, SIZE, SIZE, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def counts_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("counts")
    np.save(tmp / "counts.npy", counts_series())
    cfg = FitConfig(data=str(tmp / "counts.npy"), input_steps=T_IN, output_steps=T_OUT, batch_size=4, max_epochs=1,
                    split=SPLIT, scaler="log1p", progress=False, accelerator="cpu", devices=1,
                    model="keras-nextframe", model_options={"filters": [2], "kernel_sizes": [3]},
                    run_dir=str(tmp / "run"), evaluate=False)
    return tmp, fit(cfg)


def file_windows(part="test"):
    """(inputs, targets) of ``part`` in the file's values, from the data module's window indices."""
    s = counts_series().astype(np.float64)
    dm = GridDataModule(counts_series(), input_steps=T_IN, output_steps=T_OUT, split=SPLIT)
    dm.setup("test")
    ds = dm.datasets[part]
    idx = [ds.window_times(i) for i in range(len(ds))]
    return np.stack([s[i] for i, _ in idx]), np.stack([s[t] for _, t in idx])


def test_truth_and_baselines_come_from_the_files_values(counts_run, tmp_path):
    """Every value of the test targets used as a threshold: an observation exactly at a threshold
    is an event. Scored against values passed through the log1p scaler and back in float32,
    many of them dropped below their own threshold."""
    _, run = counts_run
    x, y = file_windows()
    thresholds = [float(v) for v in np.unique(y)[1::3]]
    res = evaluate(run, thresholds=thresholds, baselines=["persistence"], plots=False, out_dir=tmp_path)
    persistence = np.repeat(x[:, -1:], T_OUT, axis=1)
    from pysteps.verification import det_cat_fct

    lost = []
    for thr in thresholds:
        pe, ye = persistence >= thr, y >= thr
        h, m, f = (pe & ye).sum(), (~pe & ye).sum(), (pe & ~ye).sum()
        key = f"pod@{thr:g}"
        if res["persistence"][key] != pytest.approx(h / (h + m), abs=1e-12):
            lost.append(thr)
        # pysteps counts v > t: the same events at a threshold half a count lower
        ref = det_cat_fct(persistence.ravel(), y.ravel(), thr - 0.5, scores=["CSI"])
        assert res["persistence"][f"csi@{thr:g}"] == pytest.approx(ref["CSI"], abs=1e-12), thr
    assert not lost, f"events lost at thresholds {lost}"
    assert res["persistence"]["mse"] == pytest.approx(np.mean((persistence - y) ** 2), rel=1e-12)


def test_model_scores_against_the_files_values(counts_run, tmp_path):
    _, run = counts_run
    res = evaluate(run, baselines=["persistence"], plots=False, out_dir=tmp_path)
    pred = np.load(_predict_test_part(run, tmp_path)).astype(np.float64)
    _, y = file_windows()
    assert res["model"]["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-5)


def _predict_test_part(run, tmp_path):
    """The model's forecasts for the test windows, written by ``predict`` on the test part's frames."""
    from convlstm.training import predict

    s = counts_series()
    start = round(N * 0.8)      # the test part: [48, 60); its windows start at 48..55
    np.save(tmp_path / "test_part.npy", s[start:N - T_OUT])
    return predict(run, tmp_path / "test_part.npy", tmp_path / "fc.npy", all_windows=True)


def test_a_registered_baseline_is_scored_beside_the_model(counts_run, tmp_path):
    """A new baseline is one class and a decorator; evaluate scores it with the same engine."""
    @B.register_baseline
    class MeanOfInputs(B.Baseline):
        name = "test-mean-of-inputs"

        def forecast(self, batch):
            return batch.inputs.mean(dim=1, keepdim=True).expand(-1, batch.lead_time, -1, -1, -1)

    _, run = counts_run
    res = evaluate(run, baselines=["persistence", "test-mean-of-inputs"], thresholds=[200.0], plots=False,
                   out_dir=tmp_path)
    x, y = file_windows()
    mean = np.repeat(x.mean(axis=1, keepdims=True), T_OUT, axis=1)
    assert res["test-mean-of-inputs"]["mse"] == pytest.approx(np.mean((mean - y) ** 2), rel=1e-12)
    assert "csi@200" in res["test-mean-of-inputs"]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert "test-mean-of-inputs" in written
    csv = (tmp_path / "metrics_per_lead_time.csv").read_text()
    assert "test-mean-of-inputs,1," in csv


def test_unknown_baseline_names_the_choices(counts_run, tmp_path):
    _, run = counts_run
    with pytest.raises(ValueError, match="unknown baseline.*choose from persistence, climatology, extrapolation"):
        evaluate(run, baselines=["persistance"], plots=False, out_dir=tmp_path)


def test_a_diverged_model_is_flagged(counts_run, tmp_path, monkeypatch, capsys):
    """NaN forecasts: the event scores are undefined (not CSI 0) and evaluate says so."""
    _, run = counts_run

    def nan_forward(self, x, features=None):
        return torch.full((x.shape[0], T_OUT) + tuple(x.shape[2:]), float("nan"))

    monkeypatch.setattr(ForecastModule, "forward", nan_forward)
    res = evaluate(run, thresholds=[100.0], baselines=["persistence"], plots=False, out_dir=tmp_path)
    assert res["model"]["nonfinite_values"] > 0
    assert res["model"]["csi@100"] != res["model"]["csi@100"]     # nan
    assert res["persistence"]["csi@100"] == res["persistence"]["csi@100"]
    assert "NaN or infinite" in capsys.readouterr().out
