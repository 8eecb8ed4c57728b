"""`predict`'s CF-1.8 forecast files: reference and valid times from the input's time stamps, lead
times, the input's spatial coordinates, provenance, and the same numbers as the `.npy` output.

The expected times are computed here from the stamps written into the input file and the
window arithmetic (a forecast made after step i forecasts steps i + gap + k), not by the
package's own time code."""
import doctest
import warnings
from pathlib import Path

import numpy as np
import pytest

import lightning  # noqa: F401  (the train extra: fit needs it)

from convlstm.training import FitConfig, fit, predict

xr = pytest.importorskip("xarray")

pytestmark = pytest.mark.usefixtures("one_thread")

N, SIZE, HOUR = 30, 6, np.timedelta64(60, "m")
START = np.datetime64("2024-03-01T00:00", "m")
TINY = dict(model="keras-nextframe", model_options={"filters": [2], "kernel_sizes": [3]}, batch_size=8,
            max_epochs=1, lr=1e-2, progress=False, accelerator="cpu", devices=1, split=[0.6, 0.2, 0.2],
            evaluate=False)


def series():
    t = np.arange(N)[:, None, None]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return (np.sin(0.5 * t + 0.6 * xx[None]) * np.cos(0.4 * yy[None]) * 10 + 20).astype(np.float32)[..., None]


def stamps(n=N):
    return START + np.arange(n) * HOUR


def as_digits(times):
    """'YYYYMMDDHHMM' strings, as many data sets store their time stamps."""
    return np.array([str(t).replace("-", "").replace("T", "").replace(":", "") for t in times])


def stamp_of(index, times):
    """The time stamp of step ``index``: the file's, or continued hourly past its end."""
    return times[index] if index < len(times) else times[-1] + (index - len(times) + 1) * HOUR


def fit_run(tmp, name, **options):
    np.savez(tmp / "grid.npz", data=series(), time=as_digits(stamps()))
    return Path(fit(FitConfig(data=str(tmp / "grid.npz"), key="data", run_dir=str(tmp / name), units="bikes",
                              **{**TINY, **options})))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A plain-window run (3 inputs, 2 outputs, gap 1) on an hourly .npz with 'YYYYMMDDHHMM' stamps."""
    tmp = tmp_path_factory.mktemp("cf")
    return tmp, fit_run(tmp, "run", input_steps=3, output_steps=2, gap=1)


def open_nc(path):
    with xr.open_dataset(path) as ds:
        return ds.load()


def test_netcdf_times_values_and_attributes(run, tmp_path):
    tmp, run_dir = run
    out = predict(run_dir, tmp / "grid.npz", tmp_path / "f.nc", all_windows=True)
    expected = np.load(predict(run_dir, tmp / "grid.npz", tmp_path / "f.npy", all_windows=True))
    ds = open_nc(out)
    assert ds["forecast"].dims == ("time", "lead_time", "rows", "cols", "channel")
    np.testing.assert_array_equal(ds["forecast"].values, expected)
    ends = np.arange(2, N)                               # windows 0-2, 1-3, ..., (N-3)-(N-1)
    np.testing.assert_array_equal(ds["input_end"].values, ends)
    np.testing.assert_array_equal(ds["time"].values, stamps()[ends])
    valid = [[stamp_of(e + 1 + k, stamps()) for k in (1, 2)] for e in ends]   # gap 1: steps e + 2, e + 3
    np.testing.assert_array_equal(ds["valid_time"].values, np.array(valid))
    np.testing.assert_array_equal(ds["lead_time"].values, np.array([2, 3], "timedelta64[h]"))
    np.testing.assert_array_equal(ds["valid_time"].values, (ds["time"] + ds["lead_time"]).values)
    np.testing.assert_array_equal(ds["rows"].values, np.arange(SIZE))
    f = ds["forecast"].attrs
    assert f["units"] == "bikes" and f["long_name"] == "forecast of data"
    a = ds.attrs
    assert a["Conventions"] == "CF-1.8" and a["model"] == "keras-nextframe" and a["convlstm_version"]
    assert a["checkpoint"].endswith("best.ckpt") and a["input_file"] == str(tmp / "grid.npz") and a["date_created"]
    assert ds["time"].encoding["units"].startswith("minutes since 2024-03-01 02:00")
    assert ds["time"].encoding["calendar"] == "proleptic_gregorian" and "comment" not in a


def test_last_window_forecasts_past_the_end(run, tmp_path):
    tmp, run_dir = run
    ds = open_nc(predict(run_dir, tmp / "grid.npz", tmp_path / "f.nc"))
    assert ds["input_end"].values.tolist() == [N - 1]
    np.testing.assert_array_equal(ds["time"].values, stamps()[-1:])
    np.testing.assert_array_equal(ds["valid_time"].values[0], [stamps()[-1] + k * HOUR for k in (2, 3)])


def write_netcdf_input(path, data, times_minutes, time_units="minutes since 2024-02-29 23:00:00"):
    """A CF netCDF grid: data(time, y, x), CF time, projected y/x, 2-D lat/lon and a projection."""
    import h5netcdf

    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"time": data.shape[0], "y": SIZE, "x": SIZE}
        t = f.create_variable("time", ("time",), data=times_minutes)
        t.attrs.update({"units": time_units, "calendar": "standard"})
        y = f.create_variable("y", ("y",), data=np.linspace(-3650.5, -3600.0, SIZE))
        y.attrs.update({"units": "km", "standard_name": "projection_y_coordinate", "axis": "Y"})
        x = f.create_variable("x", ("x",), data=np.linspace(0.25, 48.5, SIZE))
        x.attrs.update({"units": "km", "standard_name": "projection_x_coordinate", "axis": "X"})
        lat = f.create_variable("lat", ("y", "x"), data=np.add.outer(np.linspace(50, 51, SIZE), np.zeros(SIZE)))
        lat.attrs.update({"units": "degrees_north", "standard_name": "latitude"})
        lon = f.create_variable("lon", ("y", "x"), data=np.add.outer(np.zeros(SIZE), np.linspace(4, 6, SIZE)))
        lon.attrs.update({"units": "degrees_east", "standard_name": "longitude"})
        crs = f.create_variable("crs", (), dtype="i4")
        crs.attrs.update({"grid_mapping_name": "polar_stereographic", "straight_vertical_longitude_from_pole": 0.0})
        v = f.create_variable("data", ("time", "y", "x"), data=data[..., 0])
        v.attrs.update({"coordinates": "lat lon", "grid_mapping": "crs", "long_name": "bike flow"})


def test_netcdf_input_coordinates_and_times_are_carried(run, tmp_path):
    tmp, run_dir = run
    write_netcdf_input(tmp_path / "in.nc", series(), 60 * (np.arange(N) + 1))   # 2024-03-01 00:00 ...
    out = predict(run_dir, tmp_path / "in.nc", tmp_path / "f.nc", layout="THW", all_windows=True, stride=4)
    ds, src = open_nc(out), open_nc(tmp_path / "in.nc")
    expected = np.load(predict(run_dir, tmp / "grid.npz", tmp_path / "f.npy", all_windows=True, stride=4))
    np.testing.assert_array_equal(ds["forecast"].values, expected)
    assert ds["forecast"].dims == ("time", "lead_time", "y", "x", "channel")
    for name in ("y", "x", "lat", "lon"):
        np.testing.assert_array_equal(ds[name].values, src[name].values)
        assert ds[name].attrs == src[name].attrs and ds[name].dims == src[name].dims, name
    assert ds["crs"].attrs == src["crs"].attrs and ds["forecast"].attrs["grid_mapping"] == "crs"
    assert ds["forecast"].attrs["long_name"] == "forecast of bike flow"
    ends = np.arange(2, N, 4)
    np.testing.assert_array_equal(src["time"].values, stamps())      # the input's CF times, as written
    np.testing.assert_array_equal(ds["time"].values, stamps()[ends])
    np.testing.assert_array_equal(ds["valid_time"].values[:, 0], [stamp_of(e + 2, stamps()) for e in ends])


def test_a_file_without_time_stamps_keeps_input_end(run, tmp_path):
    tmp, run_dir = run
    np.save(tmp_path / "grid.npy", series())
    ds = open_nc(predict(run_dir, tmp_path / "grid.npy", tmp_path / "f.nc", all_windows=True, stride=5))
    assert "time" not in ds.variables and "valid_time" not in ds.variables and ds.sizes["time"] == 6
    assert ds["input_end"].values.tolist() == [2, 7, 12, 17, 22, 27]
    assert ds["lead_time"].values.tolist() == [2, 3] and ds["lead_time"].attrs["units"] == "1"
    assert "no time stamps" in ds.attrs["comment"] and "input_end" in ds.attrs["comment"]


def test_irregular_stamps_are_followed_and_said(run, tmp_path):
    tmp, run_dir = run
    times = np.delete(stamps(N + 1), 10)                            # 10:00 is missing: 09:00 -> 11:00
    np.savez(tmp_path / "g.npz", data=series(), time=as_digits(times))
    with pytest.warns(UserWarning, match="not all 60 minutes apart"):
        out = predict(run_dir, tmp_path / "g.npz", tmp_path / "f.nc", all_windows=True)
    ds = open_nc(out)
    np.testing.assert_array_equal(ds["valid_time"].values[6], times[[10, 11]])
    assert "irregular" in ds["valid_time"].attrs["comment"]


def test_multiscale_run_times_continue_the_stamps(tmp_path):
    """closeness 2, period 1 x 4 steps, gap 1: a target t reads t-3, t-2 and t-4; the forecast is
    made after step t - 2 and its frames are t, t + 1."""
    run_dir = fit_run(tmp_path, "ms", input_steps=3, output_steps=2, gap=1, closeness=2, period=1, trend=0,
                      period_interval=4)
    ds = open_nc(predict(run_dir, tmp_path / "grid.npz", tmp_path / "f.nc", all_windows=True))
    targets = np.arange(4, N + 2)                                   # oldest lag in the file .. N + gap
    np.testing.assert_array_equal(ds["time"].values, [stamp_of(t - 2, stamps()) for t in targets])
    valid = [[stamp_of(t + k, stamps()) for k in (0, 1)] for t in targets]
    np.testing.assert_array_equal(ds["valid_time"].values, np.array(valid))
    assert ds["input_end"].values.tolist() == (targets - 2).tolist()


def test_zarr_output_matches_netcdf_and_replaces_atomically(run, tmp_path):
    pytest.importorskip("zarr")
    tmp, run_dir = run
    nc = open_nc(predict(run_dir, tmp / "grid.npz", tmp_path / "f.nc", all_windows=True, stride=3))
    for _ in range(2):                                              # the second write replaces the first
        out = predict(run_dir, tmp / "grid.npz", tmp_path / "f.zarr", all_windows=True, stride=3)
    with xr.open_zarr(out) as z:
        z = z.load()
    for name in ("forecast", "time", "lead_time", "valid_time", "input_end", "rows", "cols"):
        np.testing.assert_array_equal(z[name].values, nc[name].values)
    assert z.attrs["Conventions"] == "CF-1.8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.nc", "f.zarr"]   # no temporary folder left


def test_errors_name_the_parameter(run, tmp_path, monkeypatch):
    import sys

    from convlstm._errors import ParameterError

    tmp, run_dir = run
    with pytest.raises(ParameterError, match=r"out must end in \.npy or \.nc.*\.zarr.*f\.csv'") as err:
        predict(run_dir, tmp / "grid.npz", tmp_path / "f.csv")
    assert err.value.parameter == "out"
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"\.zarr forecast needs xarray and zarr.*pip install"):
        predict(run_dir, tmp / "grid.npz", tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()


def test_cf_time_decoding():
    from convlstm.data import calendar, decode_cf_times

    np.testing.assert_array_equal(decode_cf_times([0, 1.5], "hours since 2020-01-01T00:00:00Z"),
                                  np.array(["2020-01-01T00:00", "2020-01-01T01:30"], "datetime64[m]"))
    with pytest.raises(ValueError, match="calendar 'noleap'"):
        decode_cf_times([0], "days since 2000-01-01", "noleap")
    with pytest.raises(ValueError, match="'<unit> since <date>'"):
        decode_cf_times([0], "minutes")
    with pytest.raises(ValueError, match="whole minutes"):
        decode_cf_times([0.5], "minutes since 2000-01-01")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert doctest.testmod(calendar).failed == 0
