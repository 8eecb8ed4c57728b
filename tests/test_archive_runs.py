"""Training, scoring and forecasting on an archive of files: the same windows and the same numbers
as the same frames in one file, windows that never cross a gap, and forecast files whose times line
up with the archive's stamps. The expected times and windows are computed here from the stamps
written into the files, not by the package's own time code."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lightning  # noqa: F401  (the train extra: fit needs it)

from convlstm import cli
from convlstm.training import FitConfig, fit, predict

xr = pytest.importorskip("xarray")

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE, STEP = 36, 6, np.timedelta64(10, "m")
START = np.datetime64("2023-07-04T15:00", "m")
TINY = dict(model="keras-nextframe", model_options={"filters": [2], "kernel_sizes": [3]}, batch_size=4,
            max_epochs=1, lr=1e-2, progress=False, accelerator="cpu", devices=1, split=[0.6, 0.2, 0.2],
            input_steps=3, output_steps=2, seed=7, layout="THW", units="mm/h", calibrate_blend=False)


def frames(n=N):
    t = np.arange(n)[:, None, None]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return np.clip(np.sin(0.4 * t + 0.7 * xx[None]) * np.cos(0.3 * yy[None]) * 5 + 2, 0, None).astype(np.float32)


def name_of(t):
    return "RAD_" + str(t).replace("-", "").replace("T", "").replace(":", "") + ".npy"


def scores(run_dir):
    with open(Path(run_dir) / "metrics.json", encoding="utf-8") as fh:
        m = json.load(fh)
    return {k: v for k, v in m.items() if isinstance(v, dict)}


def test_one_file_per_time_step_scores_exactly_as_the_same_frames_in_one_file(tmp_path, capsys):
    f, t = frames(), START + np.arange(N) * STEP
    folder = tmp_path / "steps"
    folder.mkdir()
    for k in np.random.default_rng(0).permutation(N):  # written in any order: the names give the order
        np.save(folder / name_of(t[k]), f[k:k + 1])
    np.savez(tmp_path / "one.npz", rain=f, time=t)
    archive_run = fit(FitConfig(data=str(folder), time_from_name="%Y%m%d%H%M", run_dir=str(tmp_path / "a"),
                                **TINY))
    file_run = fit(FitConfig(data=str(tmp_path / "one.npz"), key="rain", run_dir=str(tmp_path / "b"), **TINY))
    a, b = scores(archive_run), scores(file_run)
    assert a and a == b  # model and baselines, every metric, the same to the last digit
    log = capsys.readouterr().out
    assert f"{N} files, {N} frames of 6x6x1, every 10 min, 1 event, 0 gaps" in log


@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    """Three daily .npz files (their own time stamps), the second with 3 steps missing, and a run."""
    tmp = tmp_path_factory.mktemp("gappy")
    import contextlib
    import io
    f = frames(3 * N)
    t = START + np.arange(3 * N) * STEP
    t[N + 12:] += 3 * STEP
    for k, name in enumerate(["day3.npz", "day1.npz", "day2.npz"]):
        part = [2, 0, 1][k]
        lo, hi = part * N, (part + 1) * N
        np.savez(tmp / name, rain=f[lo:hi], time=t[lo:hi])
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        run = fit(FitConfig(data=str(tmp / "day*.npz"), key="rain", run_dir=str(tmp / "run"), split_by="event",
                            **{**TINY, "split": [0.34, 0.33, 0.33]}))
    return tmp, Path(run), f, t, log.getvalue()


def test_a_split_by_event_scores_days_the_model_never_saw(gappy):
    tmp, run, f, t, log = gappy
    assert "3 files, 108 frames of 6x6x1, every 10 min, 4 events, 1 gap in the time stamps (3 missing steps)" in log
    # events: day1 [0, 36), day2 before the gap [36, 48) and after it [48, 72), day3 [72, 108);
    # split by event at 0.34 / 0.67 of 108 frames -> boundaries nearest 37 and 72: 36 and 72; windows of
    # 3 + 2 frames: 36 - 4 = 32 in day1, 8 + 20 in the two stretches of day2, 32 in day3
    assert "split by event: train 1 event, 32 windows; val 2 events, 28 windows; test 1 event, 32 windows" in log


def test_predict_on_an_archive_gives_windows_inside_events_and_times_of_the_stamps(gappy, tmp_path):
    tmp, run, f, t, _ = gappy
    out = predict(run, str(tmp / "day*.npz"), tmp_path / "fc.nc", all_windows=True)
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    ends = ds["input_end"].values
    events = [(0, 36), (36, 48), (48, 72), (72, 108)]
    want = [s + 2 for a, b in events for s in range(a, b - 3 + 1)]  # every window of 3 inside an event
    assert ends.tolist() == want
    np.testing.assert_array_equal(ds["time"].values.astype("datetime64[m]"), t[ends])
    lead = ds["lead_time"].values.astype("timedelta64[m]")
    assert lead.tolist() == [np.timedelta64(10, "m"), np.timedelta64(20, "m")]
    np.testing.assert_array_equal(ds["valid_time"].values.astype("datetime64[m]"), t[ends][:, None] + lead[None])
    # the numbers: those of the same windows cut by hand from the files
    npy = predict(run, str(tmp / "day*.npz"), tmp_path / "fc.npy", all_windows=True)
    np.testing.assert_array_equal(np.load(npy)[..., 0], ds["forecast"].values[..., 0])
    last = predict(run, str(tmp / "day*.npz"), tmp_path / "last.npy")
    np.testing.assert_array_equal(np.load(last), np.load(npy)[-1:])


def test_evaluate_on_an_archive_through_the_command_line(gappy):
    tmp, run, f, _, _ = gappy
    code = cli.main(["evaluate", str(run), "--data", str(tmp / "day1.npz"), str(tmp / "day2.npz"),
                     "--out-dir", str(tmp / "eval"), "--samples", "1"])
    assert code == 0
    m = json.loads((tmp / "eval" / "metrics.json").read_text())
    # persistence by hand over every window of 3 + 2 frames inside day1 [0, 36) and day2's two
    # stretches [36, 48) and [48, 72)
    errors = [(f[s + 3 + k] - f[s + 2]) ** 2 for a, b in [(0, 36), (36, 48), (48, 72)]
              for s in range(a, b - 5 + 1) for k in range(2)]
    assert m["persistence"]["mse"] == pytest.approx(float(np.mean(errors)), rel=1e-6)


def test_radar_files_in_a_pysteps_format_and_a_zarr_store_score_exactly_as_one_npz(tmp_path, capsys):
    """One ODIM HDF5 file per 5-minute step (rain rates, read by pysteps's odim_hdf5 importer,
    the time in the name) and a Zarr store of the same frames: the same windows and numbers as
    the frames pysteps reads, written into one .npz."""
    from _helpers import write_odim
    from convlstm.data import PystepsFrames

    n, step = 30, np.timedelta64(5, "m")
    t = START + np.arange(n) * step
    codes = (frames(n) * 100).astype(np.uint16)  # hundredths of mm/h
    folder = tmp_path / "odim"
    folder.mkdir()
    for k in range(n):
        write_odim(folder / f"comp_{name_of(t[k])[4:-4]}.h5", codes[k], quantity="RATE", gain=0.01, offset=0.0,
                   nodata=65535.0, undetect=0.0)
    rain = PystepsFrames(sorted(folder.iterdir()), "odim_hdf5")[:][..., 0]
    np.testing.assert_allclose(rain, codes * 0.01, rtol=1e-6)  # what was written, read back by pysteps
    np.savez(tmp_path / "one.npz", rain=rain, time=t)
    xr.Dataset({"rain": (("time", "y", "x"), rain, {"units": "mm/h"})},
               coords={"time": t.astype("datetime64[ns]"), "y": np.arange(SIZE) * 1000.0,
                       "x": np.arange(SIZE) * 1000.0}).to_zarr(tmp_path / "rain.zarr")
    common = {**TINY, "split": [0.5, 0.2, 0.3]}
    runs = {
        "npz": fit(FitConfig(data=str(tmp_path / "one.npz"), key="rain", run_dir=str(tmp_path / "r1"), **common)),
        "odim": fit(FitConfig(data=str(folder), reader="pysteps:odim_hdf5", time_from_name="%Y%m%d%H%M",
                              run_dir=str(tmp_path / "r2"), **common)),
        "zarr": fit(FitConfig(data=str(tmp_path / "rain.zarr"), key="rain", run_dir=str(tmp_path / "r3"),
                              **common)),
    }
    log = capsys.readouterr().out
    assert "30 files, 30 frames of 6x6x1, every 5 min, 1 event, 0 gaps" in log
    npz = scores(runs["npz"])
    assert npz and scores(runs["odim"]) == npz and scores(runs["zarr"]) == npz
