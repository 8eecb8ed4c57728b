"""Published metric conventions (convlstm.conventions) against the same numbers computed another
way: the toolkit's score functions, DeepST's factor, and masks written out with numpy."""
import json

import numpy as np
import pytest

from convlstm import metrics as M
from convlstm.conventions import ConventionScores, format_convention
from convlstm.scoring import MetricAccumulator

from _helpers import run_cli


def flows(seed=0, shape=(6, 2, 16, 8, 2), active_cells=81):
    rng = np.random.default_rng(seed)
    active = np.zeros(shape[2:4], bool)
    active.flat[rng.choice(active.size, active_cells, replace=False)] = True
    y = rng.poisson(8, shape) * active[None, None, :, :, None]
    p = np.clip(y + rng.normal(0, 3, shape), 0, None) * active[None, None, :, :, None]
    return p.astype(np.float64), y.astype(np.float64), active


def scored(p, y, conventions, **kw):
    acc = MetricAccumulator(data_range=kw.pop("data_range", 40.0), conventions=conventions, **kw)
    acc.add("model", p[:3], y[:3])
    acc.add("model", p[3:], y[3:])
    return acc.compute()


def test_st_resnet_is_the_active_cell_rmse_and_deepsts_factor():
    p, y, active = flows()
    res = scored(p, y, ["st-resnet"], active=active)
    conv = res["model"]["conventions"]["st-resnet"]
    assert conv["active_cells"] == 81
    assert conv["rmse"] == pytest.approx(M.rmse_active(p, y, active, per_lead_time=False), rel=1e-12)
    assert conv["rmse"] == pytest.approx(M.deepst_rmse(res["model"]["rmse"], 81, 128), rel=1e-12)


def test_st_ssl_masks_values_of_5_and_below_per_channel():
    p, y, _ = flows(seed=1)
    conv = scored(p, y, ["st-ssl"])["model"]["conventions"]["st-ssl"]
    for c in range(2):
        yc, pc = y[..., c], p[..., c]
        keep = yc > 5
        assert conv[f"mae@ch{c}"] == pytest.approx(np.abs(pc - yc)[keep].mean(), rel=1e-12)
        assert conv[f"mape_percent@ch{c}"] == pytest.approx(100 * (np.abs(pc - yc)[keep] / yc[keep]).mean(), rel=1e-12)
        assert conv[f"values_above_5@ch{c}"] == keep.sum()


def test_openstl_sums_each_frame_on_data_scaled_to_0_1():
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 256, (4, 3, 8, 8, 1)).astype(float), rng.integers(0, 256, (4, 3, 8, 8, 1)).astype(float)
    conv = scored(p, y, ["openstl"], data_range=255.0)["model"]["conventions"]["openstl"]
    assert conv["mse"] == pytest.approx(M.mse_frame_sum(p / 255, y / 255, per_lead_time=False), rel=1e-12)
    assert conv["mae"] == pytest.approx(M.mae_frame_sum(p / 255, y / 255, per_lead_time=False), rel=1e-12)


def test_merged_accumulators_give_the_same_convention_scores():
    p, y, active = flows(seed=3)
    a = MetricAccumulator(data_range=40.0, conventions=["st-resnet", "st-ssl"], active=active)
    b = MetricAccumulator(data_range=40.0, conventions=["st-resnet", "st-ssl"], active=active)
    a.add("model", p[:2], y[:2])
    b.add("model", p[2:], y[2:])
    whole = scored(p, y, ["st-resnet", "st-ssl"], active=active)["model"]["conventions"]
    merged = a.merge(b).compute()["model"]["conventions"]
    assert merged["st-resnet"]["rmse"] == pytest.approx(whole["st-resnet"]["rmse"], rel=1e-12)
    assert merged["st-ssl"]["mae@ch1"] == pytest.approx(whole["st-ssl"]["mae@ch1"], rel=1e-12)


def test_bad_conventions_are_refused():
    with pytest.raises(ValueError, match="convention must be one of st-resnet, st-ssl, openstl"):
        MetricAccumulator(data_range=1.0, conventions=["deepst"])
    with pytest.raises(ValueError, match="needs active"):
        ConventionScores("st-resnet")
    with pytest.raises(ValueError, match="hold no 'st-ssl' scores"):
        format_convention({"model": {"mse": 1.0, "per_lead_time": {}}}, "st-ssl")


def test_evaluate_prints_the_table_in_a_papers_convention(tmp_path, one_thread):
    """A grid whose right half never carries flow: ``evaluate --convention st-resnet`` scores the
    RMSE over the active half; for persistence, whose empty cells are exact 0, that is the
    all-cell RMSE times sqrt(cells / active cells). (The model's is not: an untrained model puts
    small values in the empty cells, errors the convention leaves out.)"""
    rng = np.random.default_rng(0)
    grid = rng.poisson(10, (60, 12, 12, 1)).astype(np.float32)
    grid[:, :, 6:] = 0
    np.save(tmp_path / "flow.npy", grid)
    code, _, err = run_cli("fit", tmp_path / "flow.npy", "--input-steps", "3", "--output-steps", "1", "--max-epochs",
                           "1", "--model", "keras-nextframe", "--model-option", "filters=[2]", "--model-option",
                           "kernel_sizes=[3]", "--run-dir", tmp_path / "run", "--no-progress", "--no-evaluate")
    assert code == 0, err
    code, out, err = run_cli("evaluate", tmp_path / "run", "--convention", "st-resnet", "--units", "trips")
    assert code == 0, err
    assert "ST-ResNet's convention: RMSE over the 72 active cells, in trips" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    conv = metrics["persistence"]["conventions"]["st-resnet"]
    assert conv["active_cells"] == 72
    assert conv["rmse"] == pytest.approx(M.deepst_rmse(metrics["persistence"]["rmse"], 72, 144), rel=1e-9)
    model = metrics["model"]["conventions"]["st-resnet"]["rmse"]
    assert 0 < model <= M.deepst_rmse(metrics["model"]["rmse"], 72, 144) + 1e-9   # the empty cells' errors left out
