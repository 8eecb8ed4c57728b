"""``predict`` and ``evaluate`` read each window's frames once and run the model under
``torch.inference_mode``: their batches and forecasts are equal, value for value, to those of the
earlier implementation (reproduced here: a read per window, or a scaled and an unscaled loader
each reading every sample, the model under ``torch.no_grad``)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from convlstm import data as _data
from convlstm.data.units import ConvertedSeries, UnitConversion
from convlstm.training import ForecastModule, GridDataModule
from convlstm.training import evaluation as E
from convlstm.training import prediction as P

pytestmark = pytest.mark.usefixtures("one_thread")

T_IN, T_OUT = 4, 2


class CountingSeries:
    """A series that counts the reads made of it (and the frames they return)."""

    def __init__(self, array):
        self.array, self.reads, self.frames = array, 0, 0

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    def __len__(self):
        return len(self.array)

    def __getitem__(self, key):
        out = self.array[key]
        self.reads += 1
        self.frames += len(out) if np.ndim(out) == self.array.ndim else 1
        return out


def series(n=80, rows=12, cols=10, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(0.6, 3.0, (n, rows, cols, channels)) * (rng.random((n, rows, cols, channels)) > 0.4)
            ).astype(np.float32)


def module_for(frame, model="convlstm-warp", options=None):
    torch.manual_seed(0)
    m = ForecastModule(model, model_options=options or {"filters": [4]}, input_steps=T_IN, output_steps=T_OUT,
                       frame_shape=frame)
    with torch.no_grad():   # an untrained model's zero-initialised heads would hide differences
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def earlier_forecast_batches(module, dm, part, clamp, indices=None):
    """The earlier ``_forecast_batches`` (no members): two loaders, the model under no_grad."""
    scaled_loader = (dm.dataloader(part) if indices is None else
                     DataLoader(Subset(dm.datasets[part], list(indices)), batch_size=dm.batch_size, shuffle=False))
    first = 0
    with torch.no_grad():
        for scaled, raw in zip(scaled_loader, E._unscaled_loader(dm, part, indices)):
            x = scaled[0]
            p_u = E._data_units(dm, module(x, None), clamp)
            yield raw[0], raw[1], p_u, None, first
            first += int(x.shape[0])


def assert_same_batches(new, old):
    new, old = list(new), list(old)
    assert len(new) == len(old) > 0
    for a, b in zip(new, old):
        for u, v in zip(a[:3], b[:3]):
            assert u.dtype == v.dtype and torch.equal(u, v)
        assert a[3] is None and b[3] is None and a[4] == b[4]
        assert not a[2].is_inference()   # an ordinary tensor: the scores may work on it in place
        a[2].add_(0)


@pytest.mark.parametrize("scaler, clamp", [("log1p", True), ("minmax", False)])
def test_evaluation_batches_equal_the_earlier_ones_on_a_series(scaler, clamp):
    dm = GridDataModule(series(), input_steps=T_IN, output_steps=T_OUT, batch_size=3, scaler=scaler,
                        split=[0.5, 0.25, 0.25])
    dm.setup("test")
    module = module_for(dm.sample_shape)
    for part in ("test", "val"):
        assert_same_batches(E._forecast_batches(module, dm, part, clamp),
                            earlier_forecast_batches(module, dm, part, clamp))
    chosen = [0, 2, 3, len(dm.datasets["val"]) - 1]
    assert_same_batches(E._forecast_batches(module, dm, "val", clamp, indices=chosen),
                        earlier_forecast_batches(module, dm, "val", clamp, chosen))


def test_evaluation_batches_equal_the_earlier_ones_on_sequences():
    seqs = series(30, 10, 10)[:, None].repeat(T_IN + T_OUT, axis=1) * np.linspace(0.5, 1.5, T_IN + T_OUT)[
        None, :, None, None, None].astype(np.float32)
    dm = GridDataModule(sequences=seqs, input_steps=T_IN, output_steps=T_OUT, batch_size=4, split=[0.6, 0.2, 0.2])
    dm.setup("test")
    module = module_for(dm.sample_shape, "keras-nextframe", {"filters": [3], "kernel_sizes": [3]})
    assert_same_batches(E._forecast_batches(module, dm, "test", False),
                        earlier_forecast_batches(module, dm, "test", False))


def test_evaluation_reads_each_window_once():
    counted = CountingSeries(series())
    dm = GridDataModule(counted, input_steps=T_IN, output_steps=T_OUT, batch_size=3)
    dm.setup("test")
    module = module_for(dm.sample_shape)
    n = len(dm.datasets["test"])
    counted.reads = 0
    batches = list(E._forecast_batches(module, dm, "test", False))
    assert sum(len(b[0]) for b in batches) == n
    assert counted.reads == n          # one block per window
    counted.reads = 0
    list(earlier_forecast_batches(module, dm, "test", False))
    assert counted.reads == 2 * n      # the earlier implementation: the scaled and the unscaled loader


def test_read_once_keeps_reads_apart_by_index():
    reads = E._ReadOnce(CountingSeries(np.arange(20.0).reshape(20, 1, 1, 1)))
    a, b = reads[2:5], reads[2:5]
    assert a is b and reads.series.reads == 1
    assert np.array_equal(reads[np.array([1, 7])].ravel(), [1.0, 7.0]) and reads[3].item() == 3.0
    assert np.array_equal(reads[np.array([1, 8])].ravel(), [1.0, 8.0])
    assert reads.series.reads == 4
    reads.forget()
    reads[2:5]
    assert reads.series.reads == 5
    assert reads.shape == (20, 1, 1, 1) and len(reads) == 20


@pytest.mark.parametrize("converted", [False, True])
def test_read_windows_equals_a_read_per_window(converted):
    raw = series(50)
    grid = ConvertedSeries(raw * 40.0, UnitConversion(transform="reflectivity-to-rate")) if converted else raw
    counted = CountingSeries(grid)
    rng = np.random.default_rng(1)
    windows = [np.arange(s, s + T_IN) for s in (0, 1, 2, 10, 30, 46)]
    windows += [np.sort(rng.choice(50, T_IN, replace=False)) for _ in range(3)]   # lags, as multi-scale ones
    expected = np.stack([np.asarray(grid[w]) for w in windows])
    got = P.read_windows(counted, windows)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert counted.reads == 1
    assert counted.frames == len(np.unique(np.concatenate(windows)))


def earlier_predict_forecast(module, state, grid, windows, batch_size, clamp):
    """The earlier ``prediction._forecast`` (no members): a read per window, under no_grad."""
    scaler = _data.scaler_from_state_dict(state["scaler"])
    outs = []
    with torch.no_grad():
        for b in range(0, len(windows.indices), batch_size):
            xb = np.stack([np.asarray(grid[w]) for w in windows.indices[b:b + batch_size]])
            x = scaler.transform(torch.as_tensor(xb, dtype=torch.float32))
            fc = scaler.inverse_transform(module(x, None).float())
            outs.append((fc.clamp_min(0.0) if clamp else fc).cpu().numpy())
    return np.concatenate(outs).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_predict_forecasts_equal_the_earlier_ones(batch_size):
    grid = series(30)
    scaler = _data.make_scaler("log1p").fit(grid)
    state = {"scaler": scaler.state_dict()}
    module = module_for(grid.shape[1:])
    starts = range(0, 30 - T_IN + 1, 2)
    windows = P._Windows([np.arange(s, s + T_IN) for s in starts], np.array(list(starts)) + T_IN - 1)
    counted = CountingSeries(grid)
    got, members = P._forecast(module, state, counted, windows, batch_size, True)
    assert members is None   # a deterministic run draws none
    assert counted.reads == -(-len(windows.indices) // batch_size)   # one read per batch
    expected = earlier_predict_forecast(module, state, grid, windows, batch_size, True)
    assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
