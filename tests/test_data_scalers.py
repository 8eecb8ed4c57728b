"""Per-channel scalers: hand-computed statistics, round trips, fitting on train only, streaming."""
import json

import numpy as np
import pytest
import torch

from convlstm.data import (DBScaler, Log1pScaler, MinMaxScaler, NoScaler, StandardScaler, WindowDataset,
                           chronological_split, make_scaler, scaler_from_state_dict)

ALL = ["minmax", "standard", "log1p", "db", "none"]


def series(n_time=30, seed=0):
    """A THWC count-like series with channels on very different scales."""
    rng = np.random.default_rng(seed)
    s = rng.poisson(lam=[3.0, 50.0, 400.0], size=(n_time, 4, 5, 3)).astype(np.float32)
    return s


class ChunkGuard:
    """An array-like that refuses reads longer than ``limit`` time steps and counts reads."""

    def __init__(self, data, limit):
        self.data, self.shape, self.limit, self.reads = data, data.shape, limit, []

    def __getitem__(self, key):
        start, stop, _ = key.indices(self.shape[0])
        assert stop - start <= self.limit, f"read {stop - start} steps at once"
        self.reads.append((start, stop))
        return self.data[key]


def test_minmax_hand_case():
    x = np.array([[[0.0, -1.0]], [[4.0, 1.0]], [[2.0, 3.0]]])  # (T=3, 1, 2 channels)
    s = MinMaxScaler().fit(x)
    assert s.data_min.tolist() == [0.0, -1.0] and s.data_max.tolist() == [4.0, 3.0]
    np.testing.assert_allclose(s.transform(x)[:, 0], [[0.0, 0.0], [1.0, 0.5], [0.5, 1.0]])
    s2 = MinMaxScaler(feature_range=(-1, 1)).fit(x)
    np.testing.assert_allclose(s2.transform(x)[:, 0], [[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])


def test_standard_hand_case():
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 40.0], [7.0, 40.0]])  # (T=4, C=2)
    s = StandardScaler().fit(x)
    # channel 0: mean 4, population variance (9 + 1 + 1 + 9) / 4 = 5; channel 1: mean 25, std 15
    np.testing.assert_allclose(s.mean, [4.0, 25.0])
    np.testing.assert_allclose(s.std, [np.sqrt(5.0), 15.0])
    np.testing.assert_allclose(s.transform(x)[:, 1], [-1, -1, 1, 1])


def test_log1p_hand_case():
    e = np.e
    x = np.array([[0.0], [e - 1], [e ** 2 - 1]])  # log1p: 0, 1, 2 -> scaled 0, 0.5, 1
    s = Log1pScaler().fit(x)
    np.testing.assert_allclose(s.transform(x)[:, 0], [0.0, 0.5, 1.0], atol=1e-12)


def test_streaming_fit_matches_whole_array_statistics():
    data = series(41).astype(np.float64)
    flat = data.reshape(-1, 3)
    guard = ChunkGuard(data, limit=4)
    s = StandardScaler().fit(guard, chunk_frames=4)
    assert len(guard.reads) == 11  # ceil(41 / 4) chunks, none longer than 4 steps
    np.testing.assert_allclose(s.mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s.std, flat.std(axis=0), rtol=1e-10)
    m = MinMaxScaler().fit(ChunkGuard(data, limit=5), chunk_frames=5)
    np.testing.assert_array_equal(m.data_min, flat.min(axis=0))
    np.testing.assert_array_equal(m.data_max, flat.max(axis=0))


def test_fit_streams_over_a_memmap(tmp_path):
    data = series(25)
    np.save(tmp_path / "s.npy", data)
    mm = np.load(tmp_path / "s.npy", mmap_mode="r")
    s = StandardScaler().fit(mm, start=5, stop=20, chunk_frames=2)
    np.testing.assert_allclose(s.mean, data[5:20].reshape(-1, 3).mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_round_trip_numpy_and_torch_any_leading_shape(name):
    data = series()
    s = make_scaler(name).fit(data)
    for x in (data, data[0], data[:2, :, :, :].reshape(2, 1, 4, 5, 3), data[0, 0, 0]):
        for arr in (x.astype(np.float64), torch.from_numpy(x.astype(np.float64))):
            y = s.transform(arr)
            assert type(y) is type(arr) and tuple(y.shape) == tuple(arr.shape)
            back = s.inverse_transform(y)
            np.testing.assert_allclose(np.asarray(back), np.asarray(arr), rtol=1e-10, atol=1e-9)
    # float32 keeps its dtype, integers become float32, torch keeps dtype
    assert s.transform(data).dtype == np.float32
    assert s.transform(data.astype(np.int32)).dtype == np.float32
    assert s.transform(torch.from_numpy(data).half()).dtype == torch.float16
    assert s.transform(torch.from_numpy(data).long()).dtype == torch.float32


def test_scaled_training_range_lands_in_feature_range():
    data = series()
    for s in (MinMaxScaler().fit(data), Log1pScaler().fit(data)):
        y = s.transform(data)
        assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
        np.testing.assert_allclose(y.reshape(-1, 3).min(0), 0, atol=1e-6)
        np.testing.assert_allclose(y.reshape(-1, 3).max(0), 1, atol=1e-6)


@pytest.mark.parametrize("name", ["minmax", "standard", "log1p"])
def test_fit_on_train_only_ignores_val_and_test(name):
    data = series(60)
    parts = chronological_split(60, 3, 2)
    lo, hi = parts["train"]
    fitted = make_scaler(name).fit(data, start=lo, stop=hi)
    # wildly different statistics after the train range must not change anything
    changed = data.copy()
    changed[hi:] = changed[hi:] * 1000 + 7
    refit = make_scaler(name).fit(changed, start=lo, stop=hi)
    assert refit.state_dict() == fitted.state_dict()
    # and it equals a fit on a copy of the train part alone
    alone = make_scaler(name).fit(data[lo:hi].copy())
    assert alone.state_dict() == fitted.state_dict()
    # a WindowDataset over the train range is understood as that range
    ds = WindowDataset(changed, 3, 2, start=lo, stop=hi)
    assert make_scaler(name).fit(ds).state_dict() == fitted.state_dict()
    # while fitting the whole series does differ
    assert make_scaler(name).fit(changed).state_dict() != fitted.state_dict()


def test_constant_channel_divides_by_one():
    data = series()
    data[..., 1] = 5.0
    for s, expected in ((MinMaxScaler(feature_range=(-1, 1)).fit(data), -1.0),
                        (StandardScaler().fit(data), 0.0), (Log1pScaler().fit(data), 0.0)):
        y = s.transform(data)
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y[..., 1], expected)
        np.testing.assert_allclose(s.inverse_transform(y), data, rtol=1e-5)
        # the range (or std) of the constant channel is taken as 1
        bumped = data.copy()
        bumped[..., 1] += 1.0
        step = {MinMaxScaler: -1.0 + 2.0, StandardScaler: 1.0,
                Log1pScaler: np.log(7.0) - np.log(6.0)}[type(s)]
        np.testing.assert_allclose(s.transform(bumped)[..., 1], step, rtol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_json_round_trip(name):
    data = series()
    s = make_scaler(name).fit(data, stop=20)
    state = json.loads(json.dumps(s.state_dict()))
    for restored in (make_scaler(name).load_state_dict(state), scaler_from_state_dict(state)):
        np.testing.assert_array_equal(restored.transform(data), s.transform(data))


def test_minmax_state_keeps_feature_range():
    s = MinMaxScaler(feature_range=(-2, 3)).fit(series())
    state = json.loads(json.dumps(s.state_dict()))
    restored = MinMaxScaler().load_state_dict(state)
    assert restored.feature_range == (-2.0, 3.0)


def test_make_scaler_names_and_errors():
    assert isinstance(make_scaler("minmax"), MinMaxScaler)
    assert isinstance(make_scaler("Standard"), StandardScaler)
    assert isinstance(make_scaler("log1p"), Log1pScaler)
    assert isinstance(make_scaler("none"), NoScaler) and isinstance(make_scaler(None), NoScaler)
    assert isinstance(make_scaler("db"), DBScaler)
    with pytest.raises(ValueError, match=r"name must be one of \['minmax', 'standard', 'log1p', "
                                         r"'db', 'none'\], got 'zscore'"):
        make_scaler("zscore")


def test_scaler_errors():
    data = series()
    with pytest.raises(RuntimeError, match=r"MinMaxScaler is not fitted: call fit"):
        MinMaxScaler().transform(data)
    s = StandardScaler().fit(data)
    with pytest.raises(ValueError, match=r"x must have channels last with 3 channel\(s\).*"
                                         r"got shape \(30, 4, 5\)"):
        s.transform(data[..., 0])
    with pytest.raises(TypeError, match=r"x must hold numbers, got dtype <U1"):
        s.transform(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match=r"Log1pScaler is for non-negative data .* channel 2 "
                                         r"of the series has minimum -1"):
        Log1pScaler().fit(np.array([[0.0, 1.0, -1.0]]))
    bad = data.copy()
    bad[7, 1, 2, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values .* the first at time index 7, "
                                         r"channel 2; .*check_finite"):
        StandardScaler().fit(bad, chunk_frames=3)
    with pytest.raises(ValueError, match=r"feature_range must have low < high, got \(1, 0\)"):
        MinMaxScaler(feature_range=(1, 0))
    with pytest.raises(TypeError, match=r"feature_range must be a pair \(low, high\), got 1"):
        MinMaxScaler(feature_range=1)
    with pytest.raises(ValueError, match=r"start, stop must satisfy 0 <= start < stop <= "
                                         r"len\(series\) = 30, got start=5, stop=5"):
        MinMaxScaler().fit(data, start=5, stop=5)
    with pytest.raises(ValueError, match=r"state is for scaler 'minmax', not 'standard'"):
        StandardScaler().load_state_dict(MinMaxScaler().fit(data).state_dict())
    with pytest.raises(ValueError, match=r"state\['mean'\] must be a list of n_channels=3"):
        StandardScaler().load_state_dict({"name": "standard", "n_channels": 3, "mean": [0.0],
                                          "std": [1.0, 1.0, 1.0]})


def test_no_scaler_is_identity():
    data = series()
    s = NoScaler()
    assert s.transform(data) is data and s.inverse_transform(data) is data
    assert s.fit(data).n_channels == 3
