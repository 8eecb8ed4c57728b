"""Sliding windows, WindowDataset and chronological splits, checked against hand-written cases."""
import numpy as np
import pytest
import torch

from convlstm.data import (MinMaxScaler, WindowDataset, chronological_split, num_windows,
                           sliding_windows)


def frames(n_time, rows=2, cols=3, channels=2):
    """A THWC series whose every value is its time index: windows can be read back by eye."""
    return np.broadcast_to(np.arange(n_time, dtype=np.float32)[:, None, None, None],
                           (n_time, rows, cols, channels)).copy()


# ---------------------------------------------------------------------------------- num_windows
@pytest.mark.parametrize("n, i, o, stride, gap, expected", [
    (10, 3, 2, 1, 0, 6),   # starts 0..5 (last window 5,6,7 | 8,9)
    (10, 3, 2, 2, 0, 3),   # starts 0, 2, 4
    (10, 3, 2, 2, 1, 3),   # span 6: starts 0, 2, 4 (4..9)
    (10, 3, 2, 3, 1, 2),   # span 6: starts 0, 3
    (5, 3, 2, 1, 0, 1),    # exactly one window
    (4, 3, 2, 1, 0, 0),    # too short
    (0, 1, 1, 1, 0, 0),
])
def test_num_windows_hand_cases(n, i, o, stride, gap, expected):
    assert num_windows(n, i, o, stride=stride, gap=gap) == expected


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_time=-1), r"n_time must be an integer >= 0, got -1"),
    (dict(input_steps=0), r"input_steps must be an integer >= 1, got 0"),
    (dict(output_steps=1.5), r"output_steps must be an integer >= 1, got 1.5"),
    (dict(stride=0), r"stride must be an integer >= 1, got 0"),
    (dict(gap=-2), r"gap must be an integer >= 0, got -2"),
])
def test_num_windows_bad_arguments(kwargs, match):
    args = dict(n_time=10, input_steps=2, output_steps=1, stride=1, gap=0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        num_windows(**args)


# ------------------------------------------------------------------------------ sliding_windows
def test_sliding_windows_hand_case_stride_1():
    X, Y = sliding_windows(np.arange(5), 3, 2)
    assert X.tolist() == [[0, 1, 2]]
    assert Y.tolist() == [[3, 4]]
    X, Y = sliding_windows(np.arange(6), 3, 2)
    assert X.tolist() == [[0, 1, 2], [1, 2, 3]]
    assert Y.tolist() == [[3, 4], [4, 5]]


def test_sliding_windows_hand_case_stride_and_gap():
    # span = 2 + 1 + 2 = 5; starts 0, 3, 6 in a series of 12 (6 + 5 = 11 <= 12; 9 + 5 = 14 > 12)
    X, Y = sliding_windows(np.arange(12), 2, 2, stride=3, gap=1)
    assert X.tolist() == [[0, 1], [3, 4], [6, 7]]
    assert Y.tolist() == [[3, 4], [6, 7], [9, 10]]


def test_sliding_windows_keeps_grid_shape_and_matches_a_loop():
    rng = np.random.default_rng(0)
    series = rng.normal(size=(17, 4, 5, 3)).astype(np.float32)
    X, Y = sliding_windows(series, 4, 3, stride=2, gap=2)
    # an independent loop over starts
    xs, ys = [], []
    s = 0
    while s + 4 + 2 + 3 <= 17:
        xs.append(series[s:s + 4])
        ys.append(series[s + 6:s + 9])
        s += 2
    assert X.shape == (len(xs), 4, 4, 5, 3) and Y.shape == (len(ys), 3, 4, 5, 3)
    np.testing.assert_array_equal(X, np.stack(xs))
    np.testing.assert_array_equal(Y, np.stack(ys))


def test_sliding_windows_accepts_a_tensor_and_a_memmap(tmp_path):
    series = frames(9)
    np.save(tmp_path / "s.npy", series)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    for src in (torch.from_numpy(series), mm):
        X, Y = sliding_windows(src, 2, 1, stride=3)
        assert X[:, :, 0, 0, 0].tolist() == [[0, 1], [3, 4], [6, 7]]
        assert Y[:, :, 0, 0, 0].tolist() == [[2], [5], [8]]


def test_sliding_windows_too_long_window():
    with pytest.raises(ValueError, match=r"series has 5 time steps, but one window needs "
                                         r"input_steps \+ gap \+ output_steps = 3 \+ 1 \+ 2 = 6"):
        sliding_windows(np.arange(5), 3, 2, gap=1)


def test_sliding_windows_bad_series():
    with pytest.raises(TypeError, match=r"series must be an array-like .* got list"):
        sliding_windows([1, 2, 3], 1, 1)
    with pytest.raises(ValueError, match=r"series must have at least 1 dimension.*got shape \(\)"):
        sliding_windows(np.float32(3.0), 1, 1)


# -------------------------------------------------------------------------------- WindowDataset
def test_window_dataset_items_hand_case():
    series = frames(20)
    ds = WindowDataset(series, 3, 2, start=4, stop=15, stride=2, gap=1)
    # range [4, 15) has 11 steps, span 6 -> starts 4, 6, 8 (8 + 6 = 14 <= 15; 10 + 6 = 16 > 15)
    assert len(ds) == 3
    expected = [([4, 5, 6], [8, 9]), ([6, 7, 8], [10, 11]), ([8, 9, 10], [12, 13])]
    for i, (xt, yt) in enumerate(expected):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, 2, 3, 2) and y.shape == (2, 2, 3, 2)
        assert x[:, 0, 0, 0].tolist() == xt and y[:, 0, 0, 0].tolist() == yt
        assert ds.window_times(i)[0].tolist() == xt and ds.window_times(i)[1].tolist() == yt
    assert ds[-1][0][:, 0, 0, 0].tolist() == [8, 9, 10]
    with pytest.raises(IndexError, match=r"index 3 is out of range for a WindowDataset of 3"):
        ds[3]
    with pytest.raises(TypeError, match=r"index must be an integer, got 1.0"):
        ds[1.0]


def test_window_dataset_never_reads_outside_its_range():
    class Recorder:
        """An array-like that records every time range it is asked for."""

        def __init__(self, data):
            self.data, self.shape, self.reads = data, data.shape, []

        def __getitem__(self, key):
            self.reads.append((key.start, key.stop))
            return self.data[key]

    rec = Recorder(frames(40))
    ds = WindowDataset(rec, 4, 3, start=10, stop=30, stride=1, gap=2)
    for i in range(len(ds)):
        ds[i]
    assert len(rec.reads) == len(ds) == 30 - 10 - (4 + 2 + 3) + 1
    assert min(a for a, _ in rec.reads) == 10 and max(b for _, b in rec.reads) == 30
    assert all(b - a == 9 for a, b in rec.reads)  # one window per item, never the whole series


def test_window_dataset_lazy_over_memmap(tmp_path):
    series = frames(30)
    np.save(tmp_path / "s.npy", series)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    ds = WindowDataset(mm, 5, 5)
    assert ds.series is mm  # kept as a memmap, not copied into memory
    x, y = ds[20]
    assert x[:, 0, 0, 0].tolist() == [20, 21, 22, 23, 24] and y[:, 0, 0, 0].tolist() == [25, 26, 27, 28, 29]
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 5, 2, 3, 2) and yb.shape == (4, 5, 2, 3, 2)


def test_window_dataset_applies_scaler_and_dtype():
    series = frames(12, channels=1)
    scaler = MinMaxScaler().fit(series, stop=11)  # min 0, max 10 -> x / 10
    ds = WindowDataset(series.astype(np.int16), 2, 1, scaler=scaler, dtype=torch.float64)
    x, y = ds[3]
    assert x.dtype == torch.float64
    np.testing.assert_allclose(x[:, 0, 0, 0].numpy(), [0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(y[:, 0, 0, 0].numpy(), [0.5], rtol=1e-6)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(start=-1), ValueError, r"start must be an integer >= 0, got -1"),
    (dict(stop=11), ValueError, r"stop must be <= len\(series\) = 10, got 11"),
    (dict(start=5, stop=5), ValueError, r"start must be < stop, got start=5, stop=5"),
    (dict(start=6), ValueError, r"the range \[start, stop\) = \[6, 10\) has 4 time steps, but "
                                r"one window needs .* = 5"),
    (dict(scaler="minmax"), TypeError, r"scaler must have a transform\(array\) method"),
    (dict(dtype=torch.int64), TypeError, r"dtype must be a floating torch dtype .* got torch.int64"),
])
def test_window_dataset_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        WindowDataset(frames(10), 3, 2, **kwargs)


# -------------------------------------------------------------------------- chronological_split
def test_chronological_split_hand_cases():
    assert chronological_split(100, 2, 1) == {"train": (0, 70), "val": (70, 80), "test": (80, 100)}
    assert chronological_split(10, 1, 1, fractions=(0.5, 0.3, 0.2)) == {
        "train": (0, 5), "val": (5, 8), "test": (8, 10)}
    assert chronological_split(50, 2, 2, fractions=(0.8, 0.0, 0.2)) == {
        "train": (0, 40), "val": (40, 40), "test": (40, 50)}


def test_chronological_split_partitions_in_order():
    for n in (37, 100, 1001):
        parts = chronological_split(n, 3, 2, fractions=(0.6, 0.15, 0.25), gap=1)
        (a0, a1), (b0, b1), (c0, c1) = parts["train"], parts["val"], parts["test"]
        assert a0 == 0 and a1 == b0 and b1 == c0 and c1 == n and a1 < b1 < c1


@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((20, 3, 2), {}, ValueError,
     r"the val part \(a fraction 0.1 of 20 time steps\) gets 2 steps and the test part \(0.2\) gets 4, fewer than "
     r"one window needs \(input_steps \+ gap \+ output_steps = 5\); use a series of 49 steps or more, larger val "
     r"and test fractions, or shorter windows"),
    ((4, 3, 2), dict(fractions=(1, 0, 0)), ValueError,
     r"the series has 4 time steps, fewer than one window needs \(input_steps \+ gap \+ output_steps = 5\); use "
     r"a series of 5 steps or more, or shorter windows"),
    ((100, 3, 2), dict(fractions=(0.5, 0.5)), ValueError, r"fractions must be three numbers"),
    ((100, 3, 2), dict(fractions=(0.5, 0.4, 0.2)), ValueError,
     r"fractions must be >= 0, sum to 1 .* got \(0.5, 0.4, 0.2\) \(sum 1.1\)"),
    ((100, 3, 2), dict(fractions=(0.0, 0.5, 0.5)), ValueError, r"give train a positive share"),
    ((100, 3, 2), dict(fractions="abc"), TypeError, r"fractions must be three numbers"),
    ((0, 3, 2), {}, ValueError, r"n_time must be an integer >= 1, got 0"),
])
def test_chronological_split_errors(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        chronological_split(*args, **kwargs)


@pytest.mark.parametrize("fractions", [(0.7, 0.1, 0.2), (0.6, 0.2, 0.2), (0.8, 0.0, 0.2), (0.5, 0.45, 0.05),
                                       (0.9, 0.1, 0.0), (1.0, 0.0, 0.0)])
@pytest.mark.parametrize("n, span", [(10, 9), (13, 9), (20, 5), (3, 2), (40, 12)])
def test_a_series_too_short_is_told_the_length_every_part_needs_at_once(fractions, n, span):
    """The length the message asks for is enough for every part (and every longer series is),
    and one step fewer is not: following the advice never meets another part that is short."""
    import re

    try:
        chronological_split(n, span - 1, 1, fractions=fractions)
    except ValueError as exc:
        need = int(re.search(r"use a series of (\d+) steps or more", str(exc)).group(1))
    else:
        return
    for longer in range(need, need + 200):
        chronological_split(longer, span - 1, 1, fractions=fractions)
    with pytest.raises(ValueError):
        chronological_split(need - 1, span - 1, 1, fractions=fractions)


def test_no_leakage_between_split_datasets():
    """Every frame holds its own time index: collect what each part's windows read."""
    n = 120
    series = frames(n, rows=1, cols=1, channels=1)
    parts = chronological_split(n, 6, 4, fractions=(0.6, 0.2, 0.2), gap=2)
    seen = {}
    for name, (lo, hi) in parts.items():
        ds = WindowDataset(series, 6, 4, start=lo, stop=hi, gap=2)
        inputs, targets = set(), set()
        for i in range(len(ds)):
            x, y = ds[i]
            inputs.update(int(v) for v in x.flatten())
            targets.update(int(v) for v in y.flatten())
        assert inputs | targets <= set(range(lo, hi))
        seen[name] = (inputs, targets)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        # no target frame of one part is seen (as input or target) by another
        assert not (seen[a][1] & (seen[b][0] | seen[b][1]))
        assert not (seen[b][1] & (seen[a][0] | seen[a][1]))
        assert not (seen[a][0] & seen[b][0])
    # and time runs forward: the last train target comes before the first val input
    assert max(seen["train"][1]) < min(seen["val"][0]) and max(seen["val"][1]) < min(seen["test"][0])


def test_window_dataset_pickles_a_memmap_by_reference(tmp_path):
    import pickle

    x = frames(200, rows=8, cols=8, channels=2)  # 100 KiB of data
    np.save(tmp_path / "s.npy", x)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    for series, expected in ((mm, x), (np.moveaxis(mm, 3, 1)[:, :, 2:6], np.moveaxis(x, 3, 1)[:, :, 2:6])):
        ds = WindowDataset(series, 4, 2, start=10, stop=150)
        blob = pickle.dumps(ds)
        assert len(blob) < 5000  # the path and layout, not the frames
        ds2 = pickle.loads(blob)
        assert len(ds2) == len(ds)
        for i in (0, 57, len(ds) - 1):
            np.testing.assert_array_equal(ds2[i][0].numpy(), expected[10 + i:14 + i])
            np.testing.assert_array_equal(ds2[i][1].numpy(), expected[14 + i:16 + i])
    plain = WindowDataset(x, 4, 2)  # an in-memory array is pickled as it is
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(plain))[3][0].numpy(), x[3:7])
