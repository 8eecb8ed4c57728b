"""Multi-scale samples (closeness, period, trend), calendar features and holiday files: indices
against hand-computed cases, split boundaries, dropped early samples, encodings against Python's
own calendar."""
import datetime as dt
import doctest

import numpy as np
import pytest

from convlstm.data import (CALENDAR_FEATURES, MultiScaleWindowDataset, calendar, calendar_features,
                           multiscale_offsets, multiscale_targets, parse_timestamps, read_holidays, steps_per_day)


def ramp(n, rows=1, cols=1):
    """series[t] == t everywhere: an item's values are the time indices it read."""
    return np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None], (n, rows, cols, 1)).copy()


# ------------------------------------------------------------------ offsets and targets
def test_offsets_hand_computed():
    o = multiscale_offsets(3, 2, 1, period_interval=24, trend_interval=168)
    assert o["closeness"].tolist() == [-3, -2, -1]
    assert o["period"].tolist() == [-48, -24]
    assert o["trend"].tolist() == [-168]
    o = multiscale_offsets(2, 1, 0, period_interval=5, gap=2)   # forecast 3 steps after the last input
    assert o["closeness"].tolist() == [-4, -3] and o["period"].tolist() == [-5] and o["trend"].size == 0


def test_offsets_errors_name_the_parameter():
    with pytest.raises(ValueError, match="period_interval"):
        multiscale_offsets(3, 1, 0)
    with pytest.raises(ValueError, match="trend_interval"):
        multiscale_offsets(3, 0, 1)
    with pytest.raises(ValueError, match="period_interval must be > gap = 2"):
        multiscale_offsets(3, 1, 0, period_interval=2, gap=2)
    with pytest.raises(ValueError, match="at least one input frame"):
        multiscale_offsets(0, 0, 0)


def test_targets_hand_computed_and_dropped():
    t, dropped = multiscale_targets(10, [-4, -1], 1, start=2, stop=8)
    assert t.tolist() == [4, 5, 6, 7] and dropped == 2
    t, dropped = multiscale_targets(10, [-4, -1], 2, start=2, stop=8)   # the last target frame must be < stop
    assert t.tolist() == [4, 5, 6] and dropped == 2
    t, dropped = multiscale_targets(10, [-1], 1, start=0, stop=10, stride=3)   # t = 0, 3, 6, 9; t = 0 dropped
    assert t.tolist() == [3, 6, 9] and dropped == 1


def test_dataset_items_read_the_hand_computed_steps():
    ds = MultiScaleWindowDataset(ramp(60), 2, closeness=2, period=2, trend=1, period_interval=10, trend_interval=30,
                                 start=40, stop=50)
    # t = 40..48 (t + 2 <= 50); trend t-30, period t-20, t-10, closeness t-2, t-1
    assert ds.targets.tolist() == list(range(40, 49)) and ds.dropped == 0
    x, y = ds[0]
    assert x.flatten().tolist() == [10, 20, 30, 38, 39]
    assert y.flatten().tolist() == [40, 41]
    x, y = ds[-1]
    assert x.flatten().tolist() == [18, 28, 38, 46, 47] and y.flatten().tolist() == [48, 49]


def test_dataset_split_boundaries_reach_back_never_forward():
    n = 120
    parts = {"train": (0, 70), "val": (70, 90), "test": (90, 120)}
    seen_targets = set()
    for name, (lo, hi) in parts.items():
        ds = MultiScaleWindowDataset(ramp(n), 1, closeness=3, period=1, trend=1, period_interval=12,
                                     trend_interval=36, start=lo, stop=hi)
        for i in range(len(ds)):
            x_idx, y_idx = ds.window_times(i)
            assert lo <= y_idx.min() and y_idx.max() < hi          # the target lies in its own part
            assert x_idx.max() < y_idx.min() and x_idx.min() >= 0  # inputs before the target, never forward
            assert set(y_idx.tolist()).isdisjoint(seen_targets)
            seen_targets.update(y_idx.tolist())
        if name == "val":   # the first validation sample reads training steps (the past is known)
            assert ds.window_times(0)[0].min() < lo
    # every step from the first with all lags inside the series is a target exactly once
    assert seen_targets == set(range(36, n))


def test_dropped_early_samples_counted():
    ds = MultiScaleWindowDataset(ramp(50), 1, closeness=2, trend=1, trend_interval=30, start=0, stop=50)
    assert ds.dropped == 30 and len(ds) == 20 and ds.targets[0] == 30
    with pytest.raises(IndexError):
        ds.window_times(20)


def test_dataset_features_are_those_of_the_target_step():
    feats = np.arange(60, dtype=np.float32).reshape(30, 2)
    ds = MultiScaleWindowDataset(ramp(30), 1, closeness=1, start=10, stop=30, features=feats)
    x, y, f = ds[3]
    assert y.item() == 13 and f.tolist() == [26.0, 27.0]
    with pytest.raises(ValueError, match=r"features must be \(T, F\)"):
        MultiScaleWindowDataset(ramp(30), 1, closeness=1, features=feats[:10])


def test_dataset_pickles_a_memmap_by_reference(tmp_path):
    """DataLoader workers started with spawn get how to map the file again, not the frames."""
    import pickle

    rng = np.random.default_rng(0)
    np.save(tmp_path / "s.npy", rng.random((400, 32, 32, 2), dtype=np.float32))   # 3.3 MB
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    feats = np.arange(800, dtype=np.float32).reshape(400, 2)
    ds = MultiScaleWindowDataset(mm, 2, closeness=3, period=2, period_interval=24, start=280, stop=400,
                                 features=feats)
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000  # the path, layout, targets and features, not the frames
    ds2 = pickle.loads(blob)
    assert len(ds2) == len(ds) and ds2.dropped == ds.dropped
    for i in (0, 41, len(ds) - 1):
        for a, b in zip(ds[i], ds2[i]):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain = MultiScaleWindowDataset(ramp(50), 1, closeness=2, start=10)   # an in-memory array: pickled as it is
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(plain))[3][0].numpy(), plain[3][0].numpy())


# ------------------------------------------------------------------ time stamps and calendar
def test_parse_deepst_slots_and_steps_per_day():
    t = parse_timestamps(np.array([b"2014080401", b"2014080424", b"2014080501"]))
    assert t.tolist() == [dt.datetime(2014, 8, 4, 0), dt.datetime(2014, 8, 4, 23), dt.datetime(2014, 8, 5, 0)]
    half = parse_timestamps(np.array(["2014080401", "2014080448"]))       # 48 slots: half hours
    assert half[1] == np.datetime64("2014-08-04T23:30")
    assert steps_per_day(np.array(["2014080401", "2014080402", "2014080403"])) == 24
    assert steps_per_day(np.arange("2020-01-01T00:00", "2020-01-01T03:00", 30, dtype="datetime64[m]")) == 48
    with pytest.raises(ValueError, match="does not divide a day"):
        steps_per_day(np.arange("2020-01-01T00:00", "2020-01-01T03:00", 7, dtype="datetime64[m]"))
    with pytest.raises(ValueError, match="cannot read the time stamps"):
        parse_timestamps(np.array(["yesterday", "today"]))


def test_calendar_features_against_python_calendar():
    stamps = np.arange("2014-08-30T00:00", "2014-09-03T00:00", 90, dtype="datetime64[m]")   # every 1.5 h
    f = calendar_features(stamps, holidays=["2014-09-01"])
    assert f.shape == (len(stamps), len(CALENDAR_FEATURES)) and f.dtype == np.float32
    for row, s in zip(f, stamps.tolist()):
        hour = s.hour + s.minute / 60
        wd = s.weekday()                                   # Python: Monday 0
        expect = [np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24), np.sin(2 * np.pi * wd / 7),
                  np.cos(2 * np.pi * wd / 7), float(wd >= 5), float(s.date() == dt.date(2014, 9, 1))]
        np.testing.assert_allclose(row, expect, atol=1e-6)
    assert f[:, 5].sum() == 16                             # 24 h of Labor Day in 1.5 h steps
    assert f[:, 4].sum() == 32                             # Saturday 30 and Sunday 31 August


def test_holiday_file(tmp_path):
    p = tmp_path / "holidays.txt"
    p.write_text("# US federal holidays\n2014-09-01  # Labor Day\n\n20141013\n2014-09-01\n")
    days = read_holidays(p)
    assert days.tolist() == [dt.date(2014, 9, 1), dt.date(2014, 10, 13)]
    bad = tmp_path / "bad.txt"
    bad.write_text("2014-09-01\nLabor Day\n")
    with pytest.raises(ValueError, match=r"line 2: 'Labor Day' is not a date"):
        read_holidays(bad)
    with pytest.raises(FileNotFoundError, match="holidays="):
        read_holidays(tmp_path / "missing.txt")


def test_calendar_docstring_examples():
    assert doctest.testmod(calendar, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


# ------------------------------------------------------------------ external features
def _external_file(tmp_path, n=40, spike_at=35):
    """A ramp series and an external series temp[t] = 10 + 2 t with a spike of 1e6 at ``spike_at``
    (after the training part): a sample whose target is ``spike_at`` must not see it, the sample
    two steps later must, and it must not widen the training range the values are scaled with."""
    temp = 10.0 + 2.0 * np.arange(n)
    temp[spike_at] = 1e6
    path = tmp_path / "series.npz"
    np.savez(path, data=ramp(n)[..., 0], temp=temp)
    return path, temp


@pytest.mark.parametrize("gap", [0, 2])
def test_external_features_are_the_last_observed_step_scaled_by_the_training_range(tmp_path, gap):
    from convlstm.training.multiscale import MultiScale

    n, train = 40, 28
    path, temp = _external_file(tmp_path, n)
    ms = MultiScale(closeness=2, external=["temp"], external_data=str(path))
    assert ms.resolve(n, None, 2, gap, (0, train), None)
    assert ms.external_range == {"temp": [[10.0], [10.0 + 2 * (train - 1)]]}  # 10 .. 64: the training part only
    from convlstm.training.datasets import MultiScaleBuilder

    builder = MultiScaleBuilder(ramp(n), ms, 1, stride=1, gap=gap, split=(train / n, 0.0, 1 - train / n))
    ds = builder.dataset(train, n, scaler=None)
    for target in (29 + gap, 35, 36 + gap, 39):
        x, y, f = ds[int(np.flatnonzero(ds.targets == target)[0])]
        last = target - gap - 1                                 # the last observed step
        assert y.item() == target and x[-1].max().item() == last
        assert f.tolist() == [pytest.approx((temp[last] - 10.0) / 54.0, rel=1e-6)]
    # by hand: the target at the spike sees (10 + 2 * (34 - gap) - 10) / 54; the one after it, the spike
    x, y, f = ds[int(np.flatnonzero(ds.targets == 35)[0])]
    assert f.item() == pytest.approx(2 * (34 - gap) / 54.0, rel=1e-6)
    x, y, f = ds[int(np.flatnonzero(ds.targets == 36 + gap)[0])]
    assert f.item() == pytest.approx((1e6 - 10.0) / 54.0, rel=1e-6)
