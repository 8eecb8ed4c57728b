"""Readers of the formats radar and weather data come in: per-time-step radar files through
pysteps's importers (:class:`PystepsFrames`, checked against pysteps's importer and ``to_rainrate``
called on each file), and netCDF/Zarr/GRIB through xarray (:class:`XarrayGrid`, checked against
xarray's own reading of the same file). The files are written here, in ``tmp_path``."""
import contextlib
import doctest
import io
import pickle
import sys
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from convlstm._errors import ParameterError
from convlstm._extras import install_hint
from convlstm.data import GridCoordinates, GridFileError, PystepsFrames, XarrayGrid, pysteps_importers
from convlstm.data import pysteps_reader
from _helpers import write_odim

with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints where its configuration file is
    from pysteps.io import get_method
    from pysteps.utils.conversion import to_rainrate




# ------------------------------------------------------------------------------------------------
# radar files, written in the layouts pysteps's importers read
def write_knmi(path, codes):
    """A KNMI HDF5 composite of 5-minute accumulations, in hundredths of mm (``uint16``, 65535 =
    no data), with its ``geographic`` group."""
    rows, cols = codes.shape
    with h5py.File(path, "w") as f:
        f.create_group("image1").create_dataset("image_data", data=codes)
        geo = f.create_group("geographic")
        for key, value in dict(geo_column_offset=0.0, geo_row_offset=3649.98, geo_pixel_size_x=1.0,
                               geo_pixel_size_y=-1.0, geo_number_columns=float(cols),
                               geo_number_rows=float(rows)).items():
            geo.attrs[key] = np.array([value], dtype=np.float32)
        geo.attrs["geo_dim_pixel"] = np.bytes_("KM,KM")
        geo.create_group("map_projection").attrs["projection_proj4_params"] = np.bytes_(
            "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378137 +b=6356752 +x_0=0 +y_0=0")


def write_fmi_pgm(path, codes):
    """An FMI PGM composite: 8-bit reflectivity codes, metadata in the header's comments, 255 =
    no data."""
    rows, cols = codes.shape
    header = ("P5\n# projection stere\n# type stereographic\n# centrallongitude 25\n# centrallatitude 90\n"
              "# truelatitude 60\n# bottomleft 18.6 57.93\n# topright 34.9 69.43\n# metersperpixel_x 999.67\n"
              f"# metersperpixel_y 999.67\n{cols} {rows}\n255\n")
    with open(path, "wb") as fh:
        fh.write(header.encode() + codes.astype(np.uint8).tobytes())


def reflectivity_codes(rng, shape, n_missing=3):
    """8-bit codes with some no-data (255) and undetect (0) pixels."""
    codes = rng.integers(1, 200, size=shape).astype(np.uint8)
    flat = codes.reshape(-1)
    flat[rng.choice(flat.size, n_missing, replace=False)] = 255
    flat[rng.choice(flat.size, 2, replace=False)] = 0
    return codes


def radar_series(tmp_path, writer, n=5, shape=(12, 16), make=reflectivity_codes, suffix=".h5", seed=0, **kw):
    rng = np.random.default_rng(seed)
    paths = []
    for t in range(n):
        path = tmp_path / f"radar_{t:03d}{suffix}"
        writer(path, make(rng, shape), **kw)
        paths.append(str(path))
    return paths


def pysteps_frame(path, importer, rain_rate=True, **kwargs):
    """What pysteps gives for one file: its importer, then ``to_rainrate``."""
    precip, _, metadata = get_method(importer, "importer")(path, **kwargs)
    if rain_rate:
        precip, metadata = to_rainrate(precip, metadata)
    return precip, metadata


def assert_same_frames(frames, paths, importer, rain_rate=True, **kwargs):
    """``frames`` ``(k, H, W, 1)`` equal pysteps's reading of ``paths``, NaNs at the same places."""
    assert frames.dtype == np.float32 and frames.shape[0] == len(paths) and frames.shape[-1] == 1
    for frame, path in zip(frames, paths):
        expected = pysteps_frame(path, importer, rain_rate, **kwargs)[0].astype(np.float32)
        np.testing.assert_array_equal(frame[..., 0], expected)  # NaNs compare equal in place
        assert np.array_equal(np.isnan(frame[..., 0]), np.isnan(expected))


@pytest.mark.parametrize("quantity, gain, offset", [("DBZH", 0.5, -32.0), ("RATE", 0.1, 0.0)])
def test_mch_hdf5_frames_are_pysteps_rain_rates(tmp_path, quantity, gain, offset):
    paths = radar_series(tmp_path, write_odim, quantity=quantity, gain=gain, offset=offset)
    frames = PystepsFrames(paths, "mch_hdf5", importer_kwargs={"qty": quantity})
    assert frames.shape == (5, 12, 16, 1) and len(frames) == 5 and frames.dtype == np.float32
    assert frames.units == "mm/h" and frames.paths == paths and frames.ndim == 4
    whole = np.asarray(frames)
    assert_same_frames(whole, paths, "mch_hdf5", qty=quantity)
    assert np.isnan(whole).sum() > 0                        # no data stays NaN
    assert frames[2].shape == (12, 16, 1)
    np.testing.assert_array_equal(frames[2], whole[2])
    np.testing.assert_array_equal(frames[-1], whole[4])
    for index in (slice(1, 4), slice(None, None, -2), [4, 0, 4], np.array([3, -5]),
                  np.array([True, False, True, False, False]), slice(3, 3)):
        np.testing.assert_array_equal(frames[index], whole[index])
    np.testing.assert_array_equal(frames[1:3, 2:5, ::2], whole[1:3, 2:5, ::2])
    np.testing.assert_array_equal(frames[0, 3], whole[0, 3])


def test_importer_units_are_kept_when_asked(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=3)
    frames = PystepsFrames(paths, "mch_hdf5", rain_rate=False, importer_kwargs={"qty": "DBZH"})
    assert frames.units == "dBZ"
    assert_same_frames(frames[:], paths, "mch_hdf5", rain_rate=False, qty="DBZH")
    converted = PystepsFrames(paths, "mch_hdf5", importer_kwargs={"qty": "DBZH"})
    assert not np.array_equal(frames[:], converted[:], equal_nan=True)


def knmi_codes(rng, shape):
    codes = rng.integers(0, 500, size=shape).astype(np.uint16)
    codes[0, :3] = 65535
    return codes


def test_knmi_hdf5_accumulations_become_rates(tmp_path):
    paths = radar_series(tmp_path, write_knmi, n=4, shape=(10, 9), make=knmi_codes)
    frames = PystepsFrames(paths, "knmi_hdf5")
    assert frames.shape == (4, 10, 9, 1) and frames.units == "mm/h"
    assert_same_frames(frames[:], paths, "knmi_hdf5")
    kept = PystepsFrames(paths, "knmi_hdf5", rain_rate=False)
    assert kept.units == "mm"
    assert_same_frames(kept[:], paths, "knmi_hdf5", rain_rate=False)
    # pysteps's own conversion: 5-minute accumulations x 12 = mm/h
    np.testing.assert_allclose(frames[1], kept[1] * 12, rtol=1e-6)


def test_odim_hdf5_reads_as_pysteps(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=3)
    frames = PystepsFrames(paths, "odim_hdf5", importer_kwargs={"qty": "DBZH"})
    assert_same_frames(frames[:], paths, "odim_hdf5", qty="DBZH")


def test_fmi_pgm_reads_as_pysteps(tmp_path):
    paths = radar_series(tmp_path, write_fmi_pgm, n=3, shape=(9, 11), suffix=".pgm")
    frames = PystepsFrames(paths, "fmi_pgm")
    assert frames.shape == (3, 9, 11, 1)
    assert_same_frames(frames[:], paths, "fmi_pgm")


def test_an_importer_without_its_optional_package_names_what_to_install(tmp_path, monkeypatch):
    """pysteps's odim_hdf5 importer needs pyproj, which pysteps itself does not install; without
    it (its module's name removed, as when the import failed) the error says what to install."""
    import pysteps.io.importers as importers

    paths = radar_series(tmp_path, write_odim, n=3)
    monkeypatch.delattr(importers, "pyproj")
    with pytest.raises(ImportError, match=r"odim_hdf5 importer cannot read .*radar_000\.h5.*pyproj.*"
                                          r"pip install pyproj"):
        PystepsFrames(paths, "odim_hdf5", importer_kwargs={"qty": "DBZH"})


def test_metadata_is_pysteps_metadata(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=3)
    frames = PystepsFrames(paths, "mch_hdf5", importer_kwargs={"qty": "DBZH"})
    for rain_rate, series in ((True, frames), (False, PystepsFrames(paths, "mch_hdf5", rain_rate=False,
                                                                     importer_kwargs={"qty": "DBZH"}))):
        got = series.metadata(1)
        expected = pysteps_frame(paths[1], "mch_hdf5", rain_rate, qty="DBZH")[1]
        assert sorted(got) == sorted(expected)
        for key, value in expected.items():
            if isinstance(value, float) and np.isnan(value):
                assert np.isnan(got[key]), key
            else:
                assert got[key] == value, key
    assert frames.metadata(-1)["unit"] == "mm/h"


def test_pickles_by_reference_and_reads_files_only_when_indexed(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=6)
    frames = PystepsFrames(paths, "mch_hdf5", importer_kwargs={"qty": "DBZH"})
    blob = pickle.dumps(frames)
    assert len(blob) < 2000                                   # paths and options, no frames
    again = pickle.loads(blob)
    assert again.shape == frames.shape and again.units == frames.units
    np.testing.assert_array_equal(again[:], frames[:])
    # file 4 is read only when a frame of it is asked for
    with open(paths[4], "wb") as fh:
        fh.write(b"not an HDF5 file")
    np.testing.assert_array_equal(again[0:4], frames[0:4])
    with pytest.raises(GridFileError, match=r"radar_004\.h5: pysteps's mch_hdf5 importer cannot read it"):
        again[3:5]


def test_an_unknown_importer_lists_pysteps_importers(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=1)
    with pytest.raises(ParameterError, match=r"importer='odim_h5' is not one of pysteps's importers; pysteps "
                                             r"offers: .*knmi_hdf5.*odim_hdf5") as err:
        PystepsFrames(paths, "odim_h5")
    assert err.value.parameter == "importer"
    names = pysteps_importers()
    assert "odim_hdf5" in names and "fmi_pgm" in names and list(names) == sorted(names)
    for name in names:                                         # each is one pysteps's get_method knows
        assert callable(get_method(name, "importer"))


def test_files_that_do_not_exist_are_named_up_front(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=2)
    gone = [str(tmp_path / "radar_007.h5"), str(tmp_path / "radar_008.h5")]
    with pytest.raises(FileNotFoundError, match=r"2 of the 4 files do not exist: .*radar_007\.h5.*radar_008\.h5"):
        PystepsFrames(paths + gone, "mch_hdf5")
    with pytest.raises(ParameterError, match="paths is empty"):
        PystepsFrames([], "mch_hdf5")
    with pytest.raises(ParameterError, match=r"a list of files, one per time step.*single path"):
        PystepsFrames(paths[0], "mch_hdf5")


def test_frames_of_another_size_are_named(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=3)
    odd = tmp_path / "radar_003.h5"
    write_odim(odd, reflectivity_codes(np.random.default_rng(1), (12, 15)))
    frames = PystepsFrames(paths + [str(odd)], "mch_hdf5", importer_kwargs={"qty": "DBZH"})
    assert frames.shape == (4, 12, 16, 1)
    np.testing.assert_array_equal(frames[0:3], PystepsFrames(paths, "mch_hdf5", importer_kwargs={"qty": "DBZH"})[:])
    with pytest.raises(GridFileError, match=r"radar_003\.h5: its frame is 12x15, but the series' frames are "
                                            r"12x16 \(from .*radar_000\.h5\)"):
        frames[:]


def test_importer_arguments_are_checked_against_the_importer(tmp_path):
    paths = radar_series(tmp_path, write_odim, n=1, suffix=".gif")  # only their names matter here
    with pytest.raises(ParameterError, match=r"mch_gif importer is called as mch_gif\(filename, product, unit, "
                                             r"accutime.*does not fit it") as err:
        PystepsFrames(paths, "mch_gif")
    assert err.value.parameter == "importer_kwargs"
    with pytest.raises(ParameterError, match="importer_kwargs must be a dict"):
        PystepsFrames(paths, "mch_hdf5", importer_kwargs=["qty", "DBZH"])


def test_missing_pysteps_names_the_radar_extra(monkeypatch, tmp_path):
    paths = radar_series(tmp_path, write_odim, n=1)
    monkeypatch.setitem(sys.modules, "pysteps", None)
    with pytest.raises(ImportError, match=r"needs pysteps.*" + r"\[radar\]"):
        PystepsFrames(paths, "mch_hdf5")
    assert install_hint("radar") in str(pytest.raises(ImportError, pysteps_importers).value)


def test_pysteps_reader_docstring_examples():
    result = doctest.testmod(pysteps_reader, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# ------------------------------------------------------------------------------------------------
# netCDF and Zarr through xarray
T, H, W = 7, 5, 6


def cf_dataset(seed=0):
    """A CF dataset: rain (y, time, x) packed as int16 with scale_factor and _FillValue, a CF time
    in minutes, projected y/x coordinates with attributes, auxiliary lat/lon, a grid mapping, and a
    variable without time."""
    rng = np.random.default_rng(seed)
    rain = rng.gamma(0.6, 2.0, size=(H, T, W))
    rain[rng.random(rain.shape) < 0.1] = np.nan
    ds = xr.Dataset(
        {"rain": (("y", "time", "x"), rain, {"units": "mm/h", "long_name": "rain rate",
                                             "standard_name": "rainfall_rate", "grid_mapping": "crs"}),
         "crs": ((), np.int32(0), {"grid_mapping_name": "polar_stereographic",
                                   "straight_vertical_longitude_from_pole": 10.0}),
         "height": (("y", "x"), rng.uniform(0, 300, (H, W)), {"units": "m"})},
        coords={"time": ("time", np.arange(T) * 5 + 30,
                         {"units": "minutes since 2021-06-01 12:00:00", "standard_name": "time", "axis": "T"}),
                "y": ("y", np.arange(H) * -1000.0 + 5e5, {"standard_name": "projection_y_coordinate", "units": "m",
                                                        "axis": "Y"}),
                "x": ("x", np.arange(W) * 1000.0, {"standard_name": "projection_x_coordinate", "units": "m"}),
                "lat": (("y", "x"), rng.uniform(50, 53, (H, W)), {"units": "degrees_north",
                                                                 "standard_name": "latitude"}),
                "lon": (("y", "x"), rng.uniform(3, 7, (H, W)), {"units": "degrees_east",
                                                               "standard_name": "longitude"})})
    ds = xr.decode_cf(ds)
    encoding = {"rain": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 1.0, "_FillValue": -32767},
                "time": {"dtype": "int32", "units": "minutes since 2021-06-01 12:00:00"}}
    return ds, encoding


def write(ds, encoding, path):
    if str(path).endswith(".zarr"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr 3: consolidated metadata is not in its format's spec
            ds.to_zarr(path, encoding=encoding, mode="w")
    elif str(path).endswith(".nc3"):
        ds.to_netcdf(path, engine="scipy", encoding=encoding)
    else:
        ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return str(path)


@pytest.fixture(params=["netcdf4.nc", "netcdf3.nc3", "store.zarr"])
def cf_file(request, tmp_path):
    ds, encoding = cf_dataset()
    return write(ds, encoding, tmp_path / request.param)


def engine_of(path):
    return {"zarr": "zarr", "nc3": "scipy"}.get(path.rsplit(".", 1)[-1], "h5netcdf")


def xarray_reading(path, variable="rain", order=("time", "y", "x")):
    with xr.open_dataset(path, engine=engine_of(path)) as ds:
        return ds[variable].transpose(*order).values


def test_frames_are_xarrays_reading(cf_file):
    engine = "scipy" if cf_file.endswith(".nc3") else None     # a .nc3 suffix is not one xarray guesses
    grid = XarrayGrid(cf_file, engine=engine)
    expected = xarray_reading(cf_file)
    expected = expected.astype(np.float32)[..., None]
    assert grid.variable == "rain" and grid.dims == ("time", "y", "x")
    assert grid.shape == (T, H, W, 1) and len(grid) == T and grid.dtype == np.float32
    whole = np.asarray(grid)
    np.testing.assert_array_equal(whole, expected)           # scale, offset and _FillValue -> NaN by xarray
    assert np.isnan(whole).any()
    with xr.open_dataset(cf_file, engine=engine_of(cf_file), mask_and_scale=False) as raw:
        packed = raw["rain"].transpose("time", "y", "x").values
    assert np.array_equal(np.isnan(whole[..., 0]), packed == -32767)
    np.testing.assert_array_equal(grid[3], expected[3])
    for index in (slice(2, 6), slice(None, None, -3), [6, 0, 6, 2], np.array([-1, 1]), slice(4, 4),
                  np.arange(T) % 2 == 0):
        np.testing.assert_array_equal(grid[index], expected[index])
    np.testing.assert_array_equal(grid[1:5, 2, ::-1], expected[1:5, 2, ::-1])
    grid.close()


def test_times_units_and_attributes_are_xarrays(cf_file):
    engine = "scipy" if cf_file.endswith(".nc3") else None
    with XarrayGrid(cf_file, "rain", engine=engine) as grid:
        with xr.open_dataset(cf_file, engine=engine_of(cf_file)) as ds:
            np.testing.assert_array_equal(grid.times, ds["time"].values.astype("datetime64[m]"))
            assert grid.times.dtype == np.dtype("datetime64[m]")
            assert grid.times[0] == np.datetime64("2021-06-01T12:30")
            assert grid.units == ds["rain"].attrs["units"] == "mm/h"
            assert grid.attrs == dict(ds["rain"].attrs)


def test_coordinates_are_the_files(cf_file):
    engine = "scipy" if cf_file.endswith(".nc3") else None
    with XarrayGrid(cf_file, engine=engine) as grid, xr.open_dataset(cf_file, engine=engine_of(cf_file)) as ds:
        coords = grid.coords
        assert isinstance(coords, GridCoordinates)
        assert (coords.row_dim, coords.col_dim) == ("y", "x")
        assert sorted(coords.variables) == ["lat", "lon", "x", "y"]
        for name, (dims, values, attrs) in coords.variables.items():
            assert dims == ds[name].dims
            np.testing.assert_array_equal(values, ds[name].values)
            assert attrs == dict(ds[name].attrs)
        assert coords.grid_mapping == ("crs", dict(ds["crs"].attrs))
        assert coords.grid_attrs["long_name"] == "rain rate"


def test_coordinates_fit_the_forecast_writer(tmp_path):
    """The forecast file's grid takes the input's coordinates from what ``coords`` gives."""
    from convlstm.training.forecast_file import _space

    ds, encoding = cf_dataset()
    with XarrayGrid(write(ds, encoding, tmp_path / "in.nc")) as grid:
        row, col, variables = _space(grid.coords, H, W)
    assert (row, col) == ("y", "x")
    np.testing.assert_array_equal(variables["y"][1], ds["y"].values)
    assert variables["lat"][0] == ("y", "x") and variables["x"][2]["standard_name"] == "projection_x_coordinate"


def test_a_channel_dimension_and_cf_axes(tmp_path):
    """Dimensions named anything, told by their CF axis; a fourth dimension is the channels."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)          # (col, band, frame, row)
    ds = xr.Dataset({"field": (("col_index", "band", "frame", "row_index"), values)},
                    coords={"frame": ("frame", np.arange(5), {"axis": "T", "units": "hours since 2000-01-01"}),
                            "row_index": ("row_index", np.arange(6.0), {"axis": "Y"}),
                            "col_index": ("col_index", np.arange(4.0), {"axis": "X"})})
    path = write(xr.decode_cf(ds), {}, tmp_path / "bands.nc")
    with XarrayGrid(path) as grid:
        assert grid.dims == ("frame", "row_index", "col_index", "band")
        assert grid.shape == (5, 6, 4, 3)
        with xr.open_dataset(path, engine="h5netcdf") as ref:
            expected = ref["field"].transpose("frame", "row_index", "col_index", "band").values
        np.testing.assert_array_equal(grid[:], expected)
        np.testing.assert_array_equal(grid[[4, 1]], expected[[4, 1]])
        assert grid.times[1] == np.datetime64("2000-01-01T01:00")
        assert grid.units == ""
    with XarrayGrid(path, time_dim="frame", spatial_dims=("col_index", "row_index")) as swapped:
        assert swapped.shape == (5, 4, 6, 3)


def test_the_variable_choice_lists_the_candidates(tmp_path):
    ds, encoding = cf_dataset()
    ds["snow"] = ds["rain"] * 0.1
    path = write(ds, encoding, tmp_path / "two.nc")
    with pytest.raises(ParameterError, match=r"holds 2 variables that read as a grid series .*'rain', 'snow'.*"
                                             r"choose one with variable=NAME") as err:
        XarrayGrid(path)
    assert err.value.parameter == "variable"
    with XarrayGrid(path, "snow") as snow:
        with xr.open_dataset(path, engine="h5netcdf") as ref:
            np.testing.assert_array_equal(snow[:, ..., 0], ref["snow"].transpose("time", "y", "x").values
                                          .astype(np.float32))
    with pytest.raises(ParameterError, match=r"variable='hail' is not a data variable of .*'rain'.*'snow'"):
        XarrayGrid(path, "hail")
    with pytest.raises(ParameterError, match=r"variable='height' .* is not a grid series: no time dimension "
                                             r"among \('y', 'x'\).*Variables that are: \['rain', 'snow'\]"):
        XarrayGrid(path, "height")


def test_pickles_by_reference(tmp_path):
    ds, encoding = cf_dataset()
    for path in (write(ds, encoding, tmp_path / "p.nc"), write(ds, encoding, tmp_path / "p.zarr")):
        grid = XarrayGrid(path, "rain")
        blob = pickle.dumps(grid)
        assert len(blob) < 1000                                # path, variable, engine, dimensions
        again = pickle.loads(blob)
        assert again.shape == grid.shape and again.dims == grid.dims and again.engine == grid.engine
        np.testing.assert_array_equal(again[:], grid[:])
        np.testing.assert_array_equal(again.times, grid.times)
        grid.close()
        again.close()
        with pytest.raises(ValueError, match="is closed"):
            again[0]


def test_grib_without_cfgrib_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cfgrib", None)      # as where cfgrib is not installed
    path = tmp_path / "era5.grib2"
    path.write_bytes(b"GRIB" + bytes(100))
    with pytest.raises(ImportError, match=r"era5\.grib2 is a GRIB file; reading it needs cfgrib.*pip install cfgrib"):
        XarrayGrid(path)


def test_missing_xarray_or_zarr_names_the_zarr_extra(tmp_path, monkeypatch):
    ds, encoding = cf_dataset()
    nc, store = write(ds, encoding, tmp_path / "m.nc"), write(ds, encoding, tmp_path / "m.zarr")
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"Zarr store; reading it needs zarr.*" + r"\[zarr\]"):
        XarrayGrid(store)
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"needs xarray.*" + r"\[zarr\]"):
        XarrayGrid(nc)


def test_unreadable_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(GridFileError, match=r"bad\.nc: cannot be read as a netCDF file"):
        XarrayGrid(bad)
    with pytest.raises(FileNotFoundError, match=r"absent\.nc"):
        XarrayGrid(tmp_path / "absent.nc")


def test_times_along_a_forecast_step_and_no_times(tmp_path):
    """A time coordinate along another dimension (GRIB's ``valid_time`` over ``step``) makes it
    the time dimension; a time dimension without coordinate gives no times."""
    rng = np.random.default_rng(5)
    valid = np.datetime64("2022-03-01T06:00") + np.arange(4) * np.timedelta64(15, "m")
    ds = xr.Dataset({"tp": (("step", "latitude", "longitude"), rng.random((4, 3, 5)))},
                    coords={"step": ("step", np.arange(4) * 15),
                            "valid_time": ("step", valid.astype("datetime64[ns]")),
                            "latitude": ("latitude", [52.0, 51.5, 51.0], {"units": "degrees_north"}),
                            "longitude": ("longitude", np.linspace(4, 6, 5), {"units": "degrees_east"})})
    path = write(ds, {}, tmp_path / "steps.nc")
    with XarrayGrid(path) as grid, xr.open_dataset(path, engine="h5netcdf") as ref:
        assert grid.dims == ("step", "latitude", "longitude")
        np.testing.assert_array_equal(grid.times, ref["valid_time"].values.astype("datetime64[m]"))
        np.testing.assert_array_equal(grid[:, ..., 0], ref["tp"].values.astype(np.float32))
        assert sorted(grid.coords.variables) == ["latitude", "longitude"]
    bare = xr.Dataset({"rain": (("time", "y", "x"), rng.random((3, 2, 2)))})
    with XarrayGrid(write(bare, {}, tmp_path / "bare.nc")) as grid:
        assert grid.times is None and grid.shape == (3, 2, 2, 1)
        assert grid.coords.variables == {} and grid.coords.grid_mapping is None
