"""st-convlstm (MultiStreamConvLSTM): shapes, the fusion's wiring, feature checks, and a series
whose next value only the period stream can know."""
import numpy as np
import pytest
import torch

from convlstm.data import MultiScaleWindowDataset
from convlstm.models import MultiStreamConvLSTM, create


@pytest.mark.parametrize("fusion", ["parametric", "stacked"])
@pytest.mark.parametrize("features", [0, 6])
def test_shapes(fusion, features):
    model = create("st-convlstm", channels=2, streams=(3, 1, 2), frame_size=(5, 4), fusion=fusion,
                   num_features=features, output_steps=2, filters=(4,))
    x = torch.rand(3, 6, 5, 4, 2)
    out = model(x, torch.rand(3, features)) if features else model(x)
    assert out.shape == (3, 2, 5, 4, 2)


def test_parametric_fusion_weights_select_the_streams():
    torch.manual_seed(0)
    model = MultiStreamConvLSTM(channels=1, streams=(2, 1, 1), frame_size=(4, 4), filters=(4,))
    assert set(model.fusion_weights) == {"closeness", "period", "trend"}
    with torch.no_grad():
        model.fusion_weights["period"].zero_()
        model.fusion_weights["trend"].zero_()
    x = torch.rand(2, 4, 4, 4, 1)
    changed = x.clone()
    changed[:, :2] = torch.rand(2, 2, 4, 4, 1)          # the trend and period frames (first in the stack)
    torch.testing.assert_close(model(x), model(changed))
    changed[:, -1] += 1.0                               # the newest closeness frame
    assert not torch.allclose(model(x), model(changed))


def test_input_and_feature_errors():
    model = MultiStreamConvLSTM(channels=1, streams=(2, 1, 0), frame_size=(4, 4), num_features=3, filters=(4,))
    with pytest.raises(ValueError, match="input_steps=3"):
        model(torch.rand(1, 4, 4, 4, 1), torch.rand(1, 3))
    with pytest.raises(ValueError, match="num_features=3: pass features"):
        model(torch.rand(1, 3, 4, 4, 1))
    with pytest.raises(ValueError, match="frame_size"):
        MultiStreamConvLSTM(channels=1, streams=(2, 1, 0))
    with pytest.raises(ValueError, match="disagrees with streams"):
        MultiStreamConvLSTM(channels=1, streams=(2, 1, 0), frame_size=(4, 4), input_steps=4)


def test_a_model_without_features_is_refused_by_name():
    from convlstm.training.module import build_model

    with pytest.raises(ValueError, match="does not take calendar or external features.*st-convlstm"):
        build_model("convlstm-warp", input_steps=5, output_steps=1, frame_shape=(8, 8, 1), streams=(3, 1, 1),
                    num_features=6)
    m = build_model("st-convlstm", {"filters": [4]}, input_steps=5, output_steps=1, frame_shape=(8, 8, 1),
                    streams=(3, 1, 1), num_features=6)
    assert m.streams == (3, 1, 1) and m.num_features == 6 and m.frame_size == (8, 8)


def _daily_series(days=60, period=6, block=6, size=3, seed=0):
    """A "day" of ``period`` steps of i.i.d. values that repeats for ``block`` days, then a new one:
    the next value is independent of the last steps, but equals the value one period ago on every
    day but the first of each block."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((days // block, period, size, size, 1)).astype(np.float32)
    return np.repeat(patterns, block, axis=0).reshape(days * period, size, size, 1)


def _fit_mse(series, period, seed, steps=300):
    torch.manual_seed(seed)
    n = len(series)
    train = MultiScaleWindowDataset(series, 1, closeness=2, period=period, period_interval=6, start=0,
                                    stop=int(0.75 * n))
    test = MultiScaleWindowDataset(series, 1, closeness=2, period=period, period_interval=6,
                                   start=int(0.75 * n), stop=n)
    model = MultiStreamConvLSTM(channels=1, streams=(2, period, 0), frame_size=series.shape[1:3], filters=(8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    xs = torch.stack([train[i][0] for i in range(len(train))])
    ys = torch.stack([train[i][1] for i in range(len(train))])
    for _ in range(steps):
        idx = torch.randint(len(train), (32,), generator=gen)
        loss = torch.nn.functional.mse_loss(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        xt = torch.stack([test[i][0] for i in range(len(test))])
        yt = torch.stack([test[i][1] for i in range(len(test))])
        return float(torch.nn.functional.mse_loss(model(xt), yt))


def test_period_stream_learns_a_daily_cycle_closeness_cannot():
    series = _daily_series()
    variance = float(series.var())                 # uniform [0, 1): 1/12; the best guess without a period
    closeness_only = _fit_mse(series, 0, seed=0)
    with_period = _fit_mse(series, 1, seed=0)
    # closeness cannot beat guessing the mean; one day in six (a new pattern) the period cannot either
    assert closeness_only > 0.8 * variance
    assert with_period < 0.45 * variance
    assert with_period < 0.5 * closeness_only


def test_docstring_examples():
    import doctest

    from convlstm.models import streams

    assert doctest.testmod(streams).failed == 0
