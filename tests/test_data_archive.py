"""Archives of grid files: events cut at file ends and at gaps in the time stamps, windows that
never cross them, splits by time and by event, file order, pickling, and the data module, the
fit and predict on an archive. Windows are checked against a brute-force enumeration."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from convlstm import data as d
from convlstm._errors import ParameterError
from convlstm.training import GridDataModule


def minutes(start: str, offsets) -> np.ndarray:
    return np.datetime64(start, "m") + np.asarray(offsets, dtype=np.int64) * np.timedelta64(1, "m")


def brute_force_windows(events, start, stop, span, stride):
    """Every window start s (first steps of each event's part of [start, stop), then every stride-th)
    whose span lies inside one event and inside [start, stop), event by event."""
    out = []
    for lo, hi in events:
        lo, hi = max(lo, start), min(hi, stop)
        s = lo
        while s + span <= hi:
            out.append(s)
            s += stride
    return out


# ------------------------------------------------------------------ events
def test_events_are_cut_at_file_ends_and_at_gaps_with_the_missing_steps_counted():
    # two files of 4 and 6 frames every 5 minutes; the second has 2 steps missing after its 2nd frame
    t = np.concatenate([minutes("2020-01-01T00:00", [0, 5, 10, 15]),
                        minutes("2020-01-01T00:20", [0, 5, 20, 25, 30, 35])])
    events, gaps = d.find_events(t, [4, 10])
    assert events.tolist() == [[0, 4], [4, 6], [6, 10]]
    assert gaps == [(6, 2)]
    # one frame per file: files are joined, only the gap cuts
    events, _ = d.find_events(t, list(range(1, 11)), join_files=True)
    assert events.tolist() == [[0, 6], [6, 10]]
    # no time stamps: file ends only
    assert d.find_events(None, [4, 10])[0].tolist() == [[0, 4], [4, 10]]


def test_time_stamps_that_do_not_increase_are_refused_naming_the_frames():
    t = minutes("2020-01-01T00:00", [0, 5, 5, 10])
    with pytest.raises(ValueError, match="frame 2 .* does not come after frame 1"):
        d.find_events(t, [4])


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("start, stop", [(0, 23), (3, 20), (6, 17)])
def test_windows_stay_inside_events_as_a_brute_force_enumeration_finds(stride, start, stop):
    events = [[0, 6], [6, 7], [7, 15], [15, 23]]
    series = np.arange(23, dtype=np.float32).reshape(23, 1, 1, 1)
    ds = d.WindowDataset(series, 2, 1, gap=1, stride=stride, start=start, stop=stop, events=events)
    want = brute_force_windows(events, start, stop, 4, stride)
    got = [int(ds.window_times(i)[0][0]) for i in range(len(ds))]
    assert got == want
    for i, s in enumerate(want):  # the frames read are those steps
        x, y = ds[i]
        assert x.flatten().tolist() == [s, s + 1] and y.flatten().tolist() == [s + 3]


def test_a_range_whose_events_are_all_too_short_is_refused():
    with pytest.raises(ValueError, match="the longest event"):
        d.WindowDataset(np.zeros((10, 1, 1, 1)), 3, 2, events=[[0, 4], [4, 8], [8, 10]])


def test_the_event_split_keeps_each_event_whole_and_each_part_gets_one():
    events = [[0, 40], [40, 70], [70, 100]]
    parts = d.event_split(events, 100, 4, 2, fractions=(0.6, 0.1, 0.3))
    assert parts == {"train": (0, 40), "val": (40, 70), "test": (70, 100)}
    bounds = {0, 40, 70, 100}
    ten = [[10 * k, 10 * k + 10] for k in range(10)]
    parts = d.event_split(ten, 100, 4, 2, fractions=(0.7, 0.1, 0.2))
    assert parts == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    assert all(lo in bounds | {80} for lo, _ in parts.values())


def test_a_time_split_whose_part_holds_no_window_in_one_event_names_the_part():
    events = [[0, 50], [50, 53], [53, 56], [56, 60]]   # the test part is cut into 3-4 step events
    with pytest.raises(ValueError, match=r"split by time: the test part \[48, 60\)"):
        d.chronological_split(60, 4, 2, fractions=(0.7, 0.1, 0.2), events=events)


# ------------------------------------------------------------------ archives
def write_event(path, frames, times, key="rain"):
    np.savez(path, **{key: frames, "time": times.astype("datetime64[m]")})


@pytest.fixture
def three_files(tmp_path):
    """Three .npz files of one event each, named out of time order, the middle one with a gap."""
    rng = np.random.default_rng(0)
    frames = rng.random((24, 5, 6)).astype(np.float32)
    t = minutes("2021-06-01T12:00", np.arange(24) * 5)
    t[12:] += np.timedelta64(10, "m")  # two steps missing inside the second file (frames 8..15)
    folder = tmp_path / "archive"
    folder.mkdir()
    write_event(folder / "c.npz", frames[16:], t[16:])   # latest
    write_event(folder / "a.npz", frames[8:16], t[8:16])  # middle, with the gap
    write_event(folder / "b.npz", frames[:8], t[:8])     # earliest
    return folder, frames, t


def test_an_archive_puts_files_in_time_order_and_reads_the_frames_asked_for(three_files):
    folder, frames, t = three_files
    arc = d.open_archive(folder, key="rain", layout="THW")
    assert [f.name for f in arc.files] == ["b.npz", "a.npz", "c.npz"]
    assert arc.shape == (24, 5, 6, 1)
    np.testing.assert_array_equal(arc[:], frames[..., None])
    np.testing.assert_array_equal(arc[5:19:3], frames[5:19:3, ..., None])
    np.testing.assert_array_equal(arc[np.array([[23, 0], [8, 7]])], frames[[[23, 0], [8, 7]]][..., None])
    np.testing.assert_array_equal(arc[-1], frames[-1, ..., None])
    np.testing.assert_array_equal(arc.times, t)
    assert arc.events.tolist() == [[0, 8], [8, 12], [12, 16], [16, 24]]
    assert arc.gaps == [(12, 2)] and arc.step == 5
    assert "3 files, 24 frames of 5x6x1, every 5 min, 4 events, 1 gap" in arc.describe()


def test_an_archive_pickles_its_file_names_not_its_frames(three_files):
    folder, frames, _ = three_files
    arc = d.open_archive(str(folder / "*.npz"), key="rain", layout="THW")
    blob = pickle.dumps(arc)
    assert len(blob) < 2000 < frames.nbytes
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[3:20], arc[3:20])
    assert again.events.tolist() == arc.events.tolist()


def test_one_frame_files_take_their_time_from_the_name_and_are_joined_until_a_gap(tmp_path):
    rng = np.random.default_rng(1)
    stamps = ["202106011200", "202106011205", "202106011210", "202106011225", "202106011230"]
    frames = rng.random((5, 4, 4)).astype(np.float32)
    for s, f in zip(stamps, frames):
        np.save(tmp_path / f"RAD_{s}_x.npy", f[None])
    arc = d.open_archive(tmp_path, layout="THW", time_from_name="%Y%m%d%H%M")
    assert arc.events.tolist() == [[0, 3], [3, 5]] and arc.gaps == [(3, 2)]
    iso = [f"{s[:4]}-{s[4:6]}-{s[6:8]}T{s[8:10]}:{s[10:]}" for s in stamps]
    np.testing.assert_array_equal(arc.times, np.array(iso, dtype="datetime64[m]"))
    np.testing.assert_array_equal(arc[:], frames[..., None])


def test_bad_archive_inputs_are_named(tmp_path):
    with pytest.raises(ParameterError, match="matches no file"):
        d.open_archive(str(tmp_path / "*.h5"))
    with pytest.raises(ParameterError, match="holds no grid file"):
        d.open_archive(tmp_path)
    with pytest.raises(ParameterError, match="reader must be"):
        d.open_archive(tmp_path, reader="gdal")
    with pytest.raises(ParameterError, match="%Q is not understood"):
        d.time_from_file_name("a_2020.h5", "%Q")
    with pytest.raises(ParameterError, match="holds no time of the form"):
        d.time_from_file_name("radar.h5", "%Y%m%d%H%M")
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 4), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ParameterError, match="must share one grid"):
        d.open_archive(tmp_path, layout="THW")
    with pytest.raises(ParameterError, match="needs files of one frame each"):
        d.open_archive(tmp_path / "a.npy", layout="THW", time_from_name="%Y")


# ------------------------------------------------------------------ the data module
def test_the_data_module_windows_an_archive_event_by_event_and_splits_by_event(three_files):
    folder, frames, _ = three_files
    dm = GridDataModule(path=str(folder), key="rain", layout="THW", input_steps=2, output_steps=1,
                        split=(0.5, 0.2, 0.3), split_by="event", scaler="none")
    dm.setup()
    assert dm.events.tolist() == [[0, 8], [8, 12], [12, 16], [16, 24]]
    assert dm.parts == {"train": (0, 12), "val": (12, 16), "test": (16, 24)}
    for name, (lo, hi) in dm.parts.items():
        want = brute_force_windows(dm.events, lo, hi, 3, 1)
        ds = dm.datasets[name]
        assert [int(ds.window_times(i)[0][0]) for i in range(len(ds))] == want
    x, y = dm.datasets["test"][0]
    np.testing.assert_array_equal(x.numpy()[..., 0], frames[16:18])
    state = dm.state_dict()
    assert state["source"]["kind"] == "archive" and state["split_by"] == "event"
    again = GridDataModule.from_state(state)
    again.setup()
    assert again.parts == dm.parts and len(again.datasets["test"]) == len(dm.datasets["test"])


def test_a_single_file_with_gaps_in_its_time_stamps_is_cut_into_events(tmp_path):
    frames = np.random.default_rng(2).random((60, 3, 3)).astype(np.float32)
    t = minutes("2021-01-01T00:00", np.arange(60) * 10)
    t[25:] += np.timedelta64(30, "m")
    write_event(tmp_path / "one.npz", frames, t)
    dm = GridDataModule(path=str(tmp_path / "one.npz"), key="rain", layout="THW", input_steps=3, output_steps=2)
    dm.setup()
    assert dm.events.tolist() == [[0, 25], [25, 60]] and dm.archive is None
    lo, hi = dm.parts["train"]
    ds = dm.datasets["train"]
    assert [int(ds.window_times(i)[0][0]) for i in range(len(ds))] == brute_force_windows(dm.events, lo, hi, 5, 1)


def test_multiscale_samples_refuse_data_with_gaps(tmp_path):
    frames = np.random.default_rng(3).random((24 * 9, 2, 2)).astype(np.float32)
    t = minutes("2021-01-01T00:00", np.arange(24 * 9) * 60)
    t[100:] += np.timedelta64(60, "m")
    write_event(tmp_path / "flow.npz", frames, t)
    from convlstm.training.multiscale import MultiScale

    dm = GridDataModule(path=str(tmp_path / "flow.npz"), key="rain", layout="THW", input_steps=3,
                        multiscale=MultiScale(period=1, trend=0))
    with pytest.raises(ParameterError, match="need one series without gaps"):
        dm.setup()


def test_reader_options_reach_the_importer_and_travel_with_the_archive(tmp_path):
    from _helpers import write_odim

    codes = np.random.default_rng(4).integers(0, 200, size=(3, 8, 9)).astype(np.uint8)
    for k in range(3):
        write_odim(tmp_path / f"comp_20200101{10 + k:02d}00.h5", codes[k])   # hourly, DBZH
    reflectivity = d.open_archive(tmp_path, reader="pysteps:mch_hdf5", time_from_name="%Y%m%d%H%M",
                                  reader_options={"qty": "DBZH"})
    direct = d.PystepsFrames(sorted(tmp_path.iterdir()), "mch_hdf5", importer_kwargs={"qty": "DBZH"})
    np.testing.assert_array_equal(reflectivity[:], direct[:])
    assert reflectivity.step == 60 and reflectivity.source()["reader_options"] == {"qty": "DBZH"}
    again = pickle.loads(pickle.dumps(reflectivity))
    np.testing.assert_array_equal(again[1], direct[1])
    with pytest.raises(ParameterError, match="reader_options .* takes none"):
        d.open_archive(tmp_path / "comp_202001011000.h5", reader="auto", reader_options={"qty": "DBZH"})


def test_the_command_line_passes_reader_options_and_several_files():
    from convlstm import cli

    args = cli.build_parser().parse_args(["fit", "a.h5", "b.h5", "--reader", "pysteps:mch_gif", "--reader-option",
                                          "product=AQC", "--reader-option", "accutime=5", "--split-by", "event"])
    cfg = cli.fit_config_from_args(args)
    assert cfg.data == ["a.h5", "b.h5"] and cfg.reader == "pysteps:mch_gif" and cfg.split_by == "event"
    assert cfg.reader_options == {"product": "AQC", "accutime": 5}


def test_cf_times_of_a_netcdf_file_cut_its_events(tmp_path):
    xr = pytest.importorskip("xarray")
    frames = np.random.default_rng(5).random((60, 4, 4)).astype(np.float32)
    t = minutes("2022-03-01T00:00", np.arange(60) * 15)
    t[30:] += np.timedelta64(45, "m")  # three 15-minute steps missing
    xr.Dataset({"rain": (("time", "y", "x"), frames)}, coords={"time": t.astype("datetime64[ns]")}).to_netcdf(
        tmp_path / "rain.nc", engine="h5netcdf", encoding={"time": {"units": "minutes since 2022-03-01 00:00:00"}})
    dm = GridDataModule(path=str(tmp_path / "rain.nc"), key="rain", layout="THW", input_steps=3, output_steps=2)
    dm.setup()
    np.testing.assert_array_equal(dm.times, t)   # decoded from the CF numbers and their units
    assert dm.events.tolist() == [[0, 30], [30, 60]]
