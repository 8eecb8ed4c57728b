"""Grid readers on small files written by the tests: .npy, .npz, HDF5 and netCDF."""
import pickle

import h5py
import numpy as np
import pytest
import torch

from convlstm.data import LazyGrid, WindowDataset, load_grid, load_timestamps


def grid(t=6, h=4, w=5, c=2, dtype=np.float32):
    return np.arange(t * h * w * c, dtype=dtype).reshape(t, h, w, c)


def to_tchw(x):
    """TCHW from THWC, written with explicit loops (independent of np.moveaxis)."""
    out = np.empty((x.shape[0], x.shape[3], x.shape[1], x.shape[2]), dtype=x.dtype)
    for ch in range(x.shape[3]):
        out[:, ch] = x[..., ch]
    return out


# ----------------------------------------------------------------------------------------- npy
def test_npy_is_memory_mapped(tmp_path):
    x = grid()
    np.save(tmp_path / "g.npy", x)
    g = load_grid(tmp_path / "g.npy")
    assert isinstance(g, np.memmap) and g.shape == (6, 4, 5, 2)
    np.testing.assert_array_equal(g, x)
    g2 = load_grid(str(tmp_path / "g.npy"), mmap=False)
    assert not isinstance(g2, np.memmap)
    np.testing.assert_array_equal(g2, x)


def test_npy_layouts(tmp_path):
    x = grid()
    np.save(tmp_path / "tchw.npy", to_tchw(x))
    g = load_grid(tmp_path / "tchw.npy", layout="TCHW")
    assert isinstance(g, np.memmap)  # still a lazy view
    np.testing.assert_array_equal(g, x)
    np.save(tmp_path / "thw.npy", x[..., 0])
    g = load_grid(tmp_path / "thw.npy", layout="THW")
    assert g.shape == (6, 4, 5, 1)
    np.testing.assert_array_equal(g[..., 0], x[..., 0])


def test_layouts_in_any_case(tmp_path):
    x = grid()
    np.save(tmp_path / "tchw.npy", to_tchw(x))
    np.testing.assert_array_equal(load_grid(tmp_path / "tchw.npy", layout="tchw"), x)
    with pytest.raises(ValueError) as info:
        load_grid(tmp_path / "tchw.npy", layout="NCHW")
    assert info.value.parameters == ("layout",)  # the command line names --layout


@pytest.mark.parametrize("stored, layout, why, better", [
    ((500, 16, 8, 2), "THWC", "", None),                                                # flow: a plausible grid
    ((500, 2, 16, 8), "THWC", "8 channels on frames of 2x16 (more channels than rows)", "TCHW"),
    ((92, 64, 64, 1), "TCHW", "64 channels on frames of 64x1 (more channels than columns and one column wide)",
     "THWC"),                                                                           # THWC rain read as TCHW
    ((92, 1, 64, 64), "THWC", "64 channels on frames of 1x64 (more channels than rows and one row wide)", "TCHW"),
    ((92, 64, 64, 3), "THWC", "", None),
    ((50, 1, 30), "THW", "1 channel on frames of 1x30 (one row wide)", None),           # no other layout for 3-D
    ((50, 3, 1, 1), "THWC", "1 channel on frames of 3x1 (one column wide)", None),      # TCHW: 1x1 frames, no better
])
def test_layout_doubts(stored, layout, why, better):
    from convlstm.data.readers import layout_doubt

    assert layout_doubt(stored, layout) == (why, better)


def test_describe_layout_and_stored_shape():
    from convlstm.data.readers import describe_layout, stored_shape

    assert describe_layout((500, 2, 16, 8), "tchw") == "500 frames of 16x8, 2 channels"
    assert describe_layout((92, 64, 64), "THW") == "92 frames of 64x64, 1 channel"
    for layout, stored in (("THWC", (5, 4, 3, 2)), ("TCHW", (5, 2, 4, 3)), ("THW", (5, 4, 3))):
        assert stored_shape((5, 4, 3, 2 if layout != "THW" else 1), layout) == stored


def test_layout_errors(tmp_path):
    np.save(tmp_path / "thw.npy", grid()[..., 0])
    with pytest.raises(ValueError, match=r"layout='THWC' expects a 4-D array, but .*thw.npy has "
                                         r"shape \(6, 4, 5\); a single-channel .* needs layout='THW'"):
        load_grid(tmp_path / "thw.npy")
    with pytest.raises(ValueError, match=r"layout must be one of \['TCHW', 'THW', 'THWC'\], "
                                         r"got 'NCHW'"):
        load_grid(tmp_path / "thw.npy", layout="NCHW")
    with pytest.raises(ValueError, match=r"key='a' was given, but a .npy file holds a single array"):
        load_grid(tmp_path / "thw.npy", key="a", layout="THW")


def test_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path='.*nothere.npy': no such file"):
        load_grid(tmp_path / "nothere.npy")
    (tmp_path / "g.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"g.csv' is a .csv file, not a grid file: grids are read from .npy, .npz, "
                                         r".h5/.hdf5 and .nc \(netCDF\) files; to convert a .csv table, read it "
                                         r"with numpy.loadtxt, .* numpy.save .* layout='THW'"):
        load_grid(tmp_path / "g.csv")
    (tmp_path / "g.tif").write_bytes(b"II*")
    with pytest.raises(ValueError, match=r"g.tif' is a .tif file, not a grid file: grids are read from .npy, .npz, "
                                         r".h5/.hdf5 and .nc \(netCDF\) files$"):
        load_grid(tmp_path / "g.tif")
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike, got 3"):
        load_grid(3)


# ----------------------------------------------------------------------------------------- npz
def test_npz_key_and_memmap(tmp_path):
    x = grid()
    np.savez(tmp_path / "g.npz", data=to_tchw(x), date=np.arange(6))
    g = load_grid(tmp_path / "g.npz", key="data", layout="TCHW")
    assert isinstance(g, np.memmap)  # np.savez stores members uncompressed: mapped, not read
    np.testing.assert_array_equal(g, x)
    np.testing.assert_array_equal(load_grid(tmp_path / "g.npz", key="data", layout="TCHW",
                                            mmap=False), x)


def test_npz_compressed_and_single_array(tmp_path):
    x = grid(dtype=np.int16)
    np.savez_compressed(tmp_path / "c.npz", only=x)
    g = load_grid(tmp_path / "c.npz")  # key=None: the only array
    assert g.dtype == np.int16
    np.testing.assert_array_equal(g, x)


def test_npz_missing_key_lists_keys(tmp_path):
    np.savez(tmp_path / "g.npz", data=grid(), date=np.arange(6))
    with pytest.raises(ValueError, match=r"key='flow' is not an array in .*g.npz; the file has: "
                                         r"\['data', 'date'\]"):
        load_grid(tmp_path / "g.npz", key="flow")
    with pytest.raises(ValueError, match=r"g.npz holds 2 arrays .*'data', 'date'.*choose one with key=NAME"):
        load_grid(tmp_path / "g.npz")


def test_npz_fortran_order_memmap(tmp_path):
    x = np.asfortranarray(grid())
    np.savez(tmp_path / "f.npz", data=x)
    np.testing.assert_array_equal(load_grid(tmp_path / "f.npz"), x)


def test_load_timestamps(tmp_path):
    dates = np.array([b"2014080401", b"2014080402"])
    np.savez(tmp_path / "g.npz", data=grid(t=2), date=dates)
    assert load_timestamps(tmp_path / "g.npz").tolist() == dates.tolist()
    with pytest.raises(ValueError, match=r"has none of the usual time-stamp names .* pass key= "
                                         r"one of \['data'\]"):
        np.savez(tmp_path / "n.npz", data=grid(t=2))
        load_timestamps(tmp_path / "n.npz")


# ---------------------------------------------------------------------------------------- HDF5
def write_h5(path, x):
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/radar/rain", data=x, chunks=(1,) + x.shape[1:])
        f.create_dataset("time", data=np.arange(len(x)))


def test_hdf5_dataset_path_lazy(tmp_path):
    x = grid(t=12)
    write_h5(tmp_path / "g.h5", x)
    g = load_grid(tmp_path / "g.h5", key="obs/radar/rain")
    assert isinstance(g, LazyGrid) and g.shape == x.shape and len(g) == 12 and g.dtype == x.dtype
    np.testing.assert_array_equal(g[3:7], x[3:7])
    np.testing.assert_array_equal(g[5], x[5])
    np.testing.assert_array_equal(g[-1, 1:3, :, 0], x[-1, 1:3, :, 0])
    np.testing.assert_array_equal(g[[9, 2, 2, 11]], x[[9, 2, 2, 11]])
    np.testing.assert_array_equal(g[10:2:-3], x[10:2:-3])
    np.testing.assert_array_equal(g[..., 1], x[..., 1])
    np.testing.assert_array_equal(np.asarray(g), x)
    with pytest.raises(IndexError, match=r"time index 12 is out of range for a series of 12"):
        g[12]
    assert load_timestamps(tmp_path / "g.h5").tolist() == list(range(12))


def test_hdf5_layout_and_pickle(tmp_path):
    x = grid(t=8)
    with h5py.File(tmp_path / "g.hdf5", "w") as f:
        f["flow"] = to_tchw(x)
    g = load_grid(tmp_path / "g.hdf5", layout="TCHW")  # key=None: the only dataset
    np.testing.assert_array_equal(g[2:5], x[2:5])
    g2 = pickle.loads(pickle.dumps(g))  # DataLoader workers started with spawn
    np.testing.assert_array_equal(g2[1:4], x[1:4])
    g.close()
    g2.close()


def test_hdf5_missing_key_lists_datasets(tmp_path):
    write_h5(tmp_path / "g.h5", grid())
    with pytest.raises(ValueError, match=r"key='rain' is not a dataset in .*g.h5; the file has: "
                                         r"\['obs/radar/rain', 'time'\]"):
        load_grid(tmp_path / "g.h5", key="rain")
    with pytest.raises(ValueError, match=r"g.h5 holds 2 datasets.*choose one with key=NAME"):
        load_grid(tmp_path / "g.h5")


def test_window_dataset_reads_lazily_from_hdf5(tmp_path):
    x = grid(t=20)
    write_h5(tmp_path / "g.h5", x)
    g = load_grid(tmp_path / "g.h5", key="/obs/radar/rain")

    class Recorder:
        def __init__(self, src):
            self.src, self.shape, self.dtype, self.reads = src, src.shape, src.dtype, []

        def __getitem__(self, key):
            self.reads.append(key)
            return self.src[key]

    g._source = Recorder(g._source)
    ds = WindowDataset(g, 3, 2, start=5, stop=15)
    xb, yb = ds[2]
    np.testing.assert_array_equal(xb.numpy(), x[7:10])
    np.testing.assert_array_equal(yb.numpy(), x[10:12])
    assert g._source.reads == [slice(7, 12)]  # one read of the window's 5 frames


# -------------------------------------------------------------------------------------- netCDF
def test_netcdf4_variable_via_h5netcdf(tmp_path):
    import h5netcdf
    raw = (np.arange(6 * 4 * 5).reshape(6, 4, 5) % 50).astype(np.int16)
    raw[2, 1, 1] = -999
    with h5netcdf.File(tmp_path / "g.nc", "w") as f:
        f.dimensions = {"time": 6, "y": 4, "x": 5}
        v = f.create_variable("rain", ("time", "y", "x"), data=raw)
        v.attrs["scale_factor"] = np.float32(0.5)
        v.attrs["_FillValue"] = np.int16(-999)
        f.create_variable("time", ("time",), data=np.arange(6) * 300)
        f.create_variable("lat", ("y",), data=np.linspace(50, 53, 4))
    g = load_grid(tmp_path / "g.nc", layout="THW")  # key=None: the only 3-D variable
    assert isinstance(g, LazyGrid) and g.key == "rain" and g.shape == (6, 4, 5, 1)
    expected = raw.astype(np.float32) * 0.5
    expected[2, 1, 1] = np.nan
    np.testing.assert_array_equal(g[:, :, :, 0], expected)
    np.testing.assert_array_equal(g[1:3, ..., 0], expected[1:3])
    assert load_timestamps(tmp_path / "g.nc").tolist() == [0, 300, 600, 900, 1200, 1500]
    with pytest.raises(ValueError, match=r"key='precip' is not a variable in .*g.nc; the file "
                                         r"has: \[.*'rain'.*\]"):
        load_grid(tmp_path / "g.nc", key="precip", layout="THW")


def test_netcdf3_classic_via_scipy(tmp_path):
    import scipy.io as netcdf
    x = grid(t=5, c=1)[..., 0].astype(np.float32)
    f = netcdf.netcdf_file(tmp_path / "c.nc", "w")
    f.createDimension("time", 5)
    f.createDimension("y", 4)
    f.createDimension("x", 5)
    v = f.createVariable("t2m", "f", ("time", "y", "x"))
    v[:] = x
    f.close()
    g = load_grid(tmp_path / "c.nc", key="t2m", layout="THW")
    np.testing.assert_array_equal(g[1:4, ..., 0], x[1:4])
    g.close()


def test_netcdf_not_a_netcdf_file(tmp_path):
    (tmp_path / "bad.nc").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"bad.nc is neither a netCDF-4/HDF5 file nor a classic "
                                         r"netCDF file"):
        load_grid(tmp_path / "bad.nc")


def test_hdf5_grid_in_forked_dataloader_workers(tmp_path):
    x = grid(t=16)
    write_h5(tmp_path / "g.h5", x)
    ds = WindowDataset(load_grid(tmp_path / "g.h5", key="obs/radar/rain"), 2, 1)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2,
                                         multiprocessing_context="fork")
    xs = torch.cat([xb for xb, _ in loader])
    assert xs.shape == (14, 2, 4, 5, 2)
    for i in range(14):
        np.testing.assert_array_equal(xs[i].numpy(), x[i:i + 2])
