"""Statistics fitted in one streaming pass (climatology, scalers, the non-finite check and fill)
against whole-array float64 numpy computations, their memory bounded by the chunk, and lazy
series that pickle by reference."""
import pickle
import tracemalloc

import numpy as np
import pytest

from convlstm.data import (DBScaler, FilledSeries, Log1pScaler, MinMaxScaler, StandardScaler, UnitConversion,
                           check_finite)
from convlstm.data import finite as finite_mod
from convlstm.training import climatology as clim


def _series(t=101, h=5, w=7, c=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    # channels on very different scales, with an offset, so that a naive sum of squares would lose digits
    scale, offset = np.array([1.0, 1e3, 1e-2, 10.0]), np.array([0.0, 1e4, 5.0, 1.0])
    x = rng.gamma(2.0, 1.0, size=(t, h, w, c)) * scale[:c] + offset[:c]
    return x.astype(dtype)


def _memmap(tmp_path, x, name="s.npy"):
    np.save(tmp_path / name, x)
    return np.load(tmp_path / name, mmap_mode="r")


def _peak_bytes(fn):
    """Peak of numpy/Python heap allocations while ``fn`` runs (numpy reports to tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------ climatology
@pytest.mark.parametrize("chunk", [1, 7, 13, 1000])
def test_mean_frame_equals_whole_array_float64(chunk):
    x = _series()  # 101 frames: 7 and 13 do not divide the ranges below
    for start, stop in ((0, 101), (3, 88)):
        mean, lo, hi = clim.mean_frame(x, start, stop, chunk=chunk)
        part = x[start:stop].astype(np.float64)
        np.testing.assert_allclose(mean, np.mean(part, axis=0), rtol=1e-13, atol=0)
        assert mean.dtype == np.float64 and mean.shape == x.shape[1:]
        assert (lo, hi) == (float(part.min()), float(part.max()))


@pytest.mark.parametrize("chunk", [1, 6, 11, None])
def test_hour_of_day_means_equal_whole_array_float64(chunk):
    x = _series(t=97, seed=1)
    rng = np.random.default_rng(2)
    hours = rng.integers(0, 24, size=97)
    hours[hours == 5] = 6  # hour 5 never occurs: it takes the overall mean
    start, stop = 4, 90
    means, counts = clim.hour_of_day_means(x, hours, start, stop, chunk=chunk)
    part, hp = x[start:stop].astype(np.float64), hours[start:stop]
    overall = np.mean(part, axis=0)
    for k in range(24):
        assert counts[k] == np.count_nonzero(hp == k)
        want = np.mean(part[hp == k], axis=0) if counts[k] else overall
        np.testing.assert_allclose(means[k], want.astype(np.float32), rtol=1e-6)
    assert means.dtype == np.float32 and means.shape == (24,) + x.shape[1:] and counts.dtype == np.int64


def test_chunk_frames_follows_the_byte_budget():
    assert clim.chunk_frames((64, 64, 1)) == clim.CHUNK_BYTES // (8 * 64 * 64)
    assert clim.chunk_frames((10, 10, 2), budget=8 * 200 * 7 + 5) == 7
    assert clim.chunk_frames((4096, 4096, 8), budget=1024) == 1  # one frame over the budget: one at a time


def test_climatology_memory_is_bounded_by_the_chunk(tmp_path):
    x = _series(t=400, h=32, w=32, c=2, seed=3)  # 3.3 MB of float32, 6.6 MB as float64
    mm = _memmap(tmp_path, x)
    frame64 = 32 * 32 * 2 * 8
    hours = np.arange(400) % 24
    (mean, _, _), peak = _peak_bytes(lambda: clim.mean_frame(mm, 0, 400, chunk=10))
    assert peak < 6 * 10 * frame64  # a few chunks of 10 frames, not 400 frames
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-13)
    _, peak = _peak_bytes(lambda: clim.hour_of_day_means(mm, hours, 0, 400, chunk=10))
    assert peak < 6 * 10 * frame64 + 3 * 25 * frame64  # chunks plus the 24 hourly sums and their means


@pytest.mark.parametrize("kwargs, match", [(dict(start=5, stop=5), "start, stop must satisfy"),
                                           (dict(start=0, stop=200), "start, stop must satisfy"),
                                           (dict(start=0, stop=10, chunk=0), "chunk must be an integer >= 1")])
def test_climatology_refuses_bad_ranges(kwargs, match):
    x = _series(t=20)
    with pytest.raises(ValueError, match=match):
        clim.mean_frame(x, **kwargs)


def test_hour_of_day_means_refuses_bad_hours():
    x = _series(t=20)
    with pytest.raises(ValueError, match=r"hours must be in \[0, 24\)"):
        clim.hour_of_day_means(x, np.full(20, 24), 0, 20)
    with pytest.raises(ValueError, match="hours must be a 1-D integer array"):
        clim.hour_of_day_means(x, np.zeros(10, dtype=int), 0, 20)


# ------------------------------------------------------------------------------ scalers
def _scalers():
    return [MinMaxScaler(), StandardScaler(), Log1pScaler(), DBScaler(), DBScaler(threshold=0.5)]


@pytest.mark.parametrize("chunk_frames", [1, 9, 1000])
def test_every_scaler_equals_its_whole_array_float64_fit(chunk_frames):
    x = _series(t=83, seed=4)
    x[x < 0.3] = 0.0  # zeros for the dB threshold
    start, stop = 2, 77
    part = x[start:stop].astype(np.float64).reshape(-1, x.shape[-1])
    lo, hi = part.min(axis=0), part.max(axis=0)
    for s in _scalers():
        s.fit(x, start=start, stop=stop, chunk_frames=chunk_frames)
        if isinstance(s, MinMaxScaler):
            np.testing.assert_array_equal(s.data_min, lo)
            np.testing.assert_array_equal(s.data_max, hi)
        elif isinstance(s, StandardScaler):
            np.testing.assert_allclose(s.mean, np.mean(part, axis=0), rtol=1e-13)
            np.testing.assert_allclose(s.std, np.std(part, axis=0), rtol=1e-11)
        elif isinstance(s, Log1pScaler):
            np.testing.assert_array_equal(s.log_min, np.log1p(lo))
            np.testing.assert_array_equal(s.log_max, np.log1p(hi))
        else:
            thr = (np.where(part > 0, part, np.inf).min(axis=0) if s.given_threshold is None
                   else np.full(3, s.given_threshold))
            np.testing.assert_array_equal(s.threshold, thr)
            np.testing.assert_array_equal(s.db_max, 10 * np.log10(hi))


def test_standard_scaler_merge_is_sound_far_from_zero():
    # a large mean and a small spread: the sum-of-squares formula loses every digit here
    rng = np.random.default_rng(5)
    x = (1e8 + rng.standard_normal((301, 3, 3, 1))).astype(np.float64)
    s = StandardScaler().fit(x, chunk_frames=7)
    np.testing.assert_allclose(s.std, np.std(x.reshape(-1, 1), axis=0), rtol=1e-9)
    np.testing.assert_allclose(s.mean, np.mean(x.reshape(-1, 1), axis=0), rtol=1e-15)


@pytest.mark.parametrize("make", [MinMaxScaler, StandardScaler, Log1pScaler, DBScaler])
def test_every_scaler_fits_a_memmap_in_bounded_memory(tmp_path, make):
    x = _series(t=300, h=32, w=32, c=3, seed=6)  # 3.7 MB float32, 7.4 MB as float64
    mm = _memmap(tmp_path, x)
    frame64 = 32 * 32 * 3 * 8
    s, peak = _peak_bytes(lambda: make().fit(mm, chunk_frames=8))
    assert peak < 8 * 8 * frame64, f"{make.__name__} took {peak} bytes at once"
    whole = make().fit(x)
    for p in s._params:
        np.testing.assert_allclose(getattr(s, p), getattr(whole, p), rtol=1e-12)


# ------------------------------------------------------------------------------ check_finite / FilledSeries
def _ffill_by_hand(x):
    """Per pixel, a loop along time in float64: the last finite value, 0 before the first."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    out = flat.copy()
    for p in range(flat.shape[1]):
        last = 0.0
        for t in range(len(flat)):
            if np.isfinite(flat[t, p]):
                last = flat[t, p]
            else:
                out[t, p] = last
    return out.reshape(x.shape)


def _with_gaps(t=61, seed=7):
    x = _series(t=t, h=4, w=3, c=2, seed=seed)
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.15] = np.nan
    x[rng.random(x.shape) < 0.03] = np.inf
    x[rng.random(x.shape) < 0.03] = -np.inf
    x[10:13] = np.nan  # whole frames missing
    x[:, 0, 0, 0] = np.nan  # a pixel never finite: 0 throughout
    return x


@pytest.mark.parametrize("chunk_bytes", [1, 4 * 24 * 5 + 3, 2 ** 26])
def test_ffill_is_lazy_and_equals_the_hand_fill(monkeypatch, chunk_bytes):
    monkeypatch.setattr(finite_mod, "CHUNK_BYTES", chunk_bytes)  # one frame, 5 frames, all at once
    x = _with_gaps()
    before = x.copy()
    f = check_finite(x, fill="ffill")
    assert isinstance(f, FilledSeries)
    want = _ffill_by_hand(x)
    np.testing.assert_array_equal(np.asarray(f), want.astype(np.float32))
    assert f.missing == int((~np.isfinite(x)).sum())
    np.testing.assert_array_equal(f[11], want[11].astype(np.float32))
    np.testing.assert_array_equal(f[-1], want[-1].astype(np.float32))
    np.testing.assert_array_equal(f[5:30:3], want[5:30:3].astype(np.float32))
    idx = np.array([40, 11, 2, -3])
    np.testing.assert_array_equal(f[idx], want[idx].astype(np.float32))
    np.testing.assert_array_equal(f[idx, 1, :, 0], want[idx, 1, :, 0].astype(np.float32))
    np.testing.assert_array_equal(f[..., 1], want[..., 1].astype(np.float32))
    np.testing.assert_array_equal(x, before)  # nothing written into the input
    assert (f.shape, f.dtype, len(f), f.ndim) == (x.shape, x.dtype, len(x), 4)


@pytest.mark.parametrize("fill, value", [("zero", 0.0), (-1.5, -1.5)])
def test_constant_fills_are_lazy(fill, value):
    x = _with_gaps()
    f = check_finite(x, fill=fill)
    assert isinstance(f, FilledSeries) and f.missing is None
    want = np.where(np.isfinite(x), x, np.float32(value))
    np.testing.assert_array_equal(np.asarray(f), want)
    np.testing.assert_array_equal(f[[3, 11]], want[[3, 11]])


def test_ffill_table_memory_is_bounded_by_the_chunk_and_the_gaps(tmp_path, monkeypatch):
    monkeypatch.setattr(finite_mod, "CHUNK_BYTES", 64 * 1024)
    x = _series(t=400, h=32, w=32, c=2, seed=8)  # 3.3 MB
    x[[17, 250], 3, 4, 1] = np.nan
    mm = _memmap(tmp_path, x)
    f, peak = _peak_bytes(lambda: check_finite(mm, fill="ffill"))
    assert peak < 4 * 64 * 1024, peak  # a chunk's mask and a frame of carry, not a copy of 3.3 MB
    assert f.missing == 2
    np.testing.assert_array_equal(f[250], _ffill_by_hand(x[245:251])[-1].astype(np.float32))


def test_scan_without_fill_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(finite_mod, "CHUNK_BYTES", 64 * 1024)
    x = _series(t=400, h=32, w=32, c=2, seed=9)
    mm = _memmap(tmp_path, x)
    out, peak = _peak_bytes(lambda: check_finite(mm))
    assert out is mm and peak < 4 * 64 * 1024


def test_filled_memmap_pickles_by_reference(tmp_path):
    x = _with_gaps(t=3000)  # 288 kB of frames
    mm = _memmap(tmp_path, x)
    for f in (check_finite(mm, fill=0.0), check_finite(mm, fill="ffill"),
              check_finite(UnitConversion(scale=2.0).wrap(mm), fill="zero")):
        blob = pickle.dumps(f)
        table = 0 if f.missing is None else f.missing * 12
        assert len(blob) < 4000 + table, len(blob)  # how to map the file, and the fill table
        back = pickle.loads(blob)
        np.testing.assert_array_equal(back[100:140], f[100:140])


def test_converted_memmap_stays_lazy_and_pickles_by_reference(tmp_path):
    x = (np.arange(2000 * 16 * 16, dtype=np.float64) % 251).astype(np.uint16).reshape(2000, 16, 16, 1)
    mm = _memmap(tmp_path, x)
    conv = UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
    s = conv.wrap(mm)
    assert s.series is mm  # nothing read yet
    blob = pickle.dumps(s)
    assert len(blob) < 4000, len(blob)
    back = pickle.loads(blob)
    np.testing.assert_allclose(back[7:9], x[7:9].astype(np.float64) * 0.01 * 12, rtol=1e-6)


def test_filled_series_refuses_a_bad_fill():
    with pytest.raises(ValueError, match="fill must be 'zero', 'ffill' or a finite number"):
        FilledSeries(np.zeros(3), "mean")
    with pytest.raises(IndexError, match="indexed in time by an int, a slice or an integer/boolean array"):
        check_finite(np.array([np.nan, 1.0]), fill="ffill")[np.array([0.5])]
