import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from convlstm import plots


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((4, 5, 16, 20, 2))
    y = rng.random((4, 3, 16, 20, 2))
    p = rng.random((4, 3, 16, 20, 2))
    return x, y, p


def test_import_is_light():
    code = "import sys, convlstm, convlstm.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_forecast_writes_png(tmp_path, data):
    x, y, p = data
    out = plots.plot_forecast(x, y, torch.from_numpy(p), tmp_path / "sub" / "f.png", samples=2, units="mm/h",
                              channel=1, title="demo")
    assert out == tmp_path / "sub" / "f.png"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    out2 = plots.plot_forecast(x, y, p, tmp_path / "g.png", samples=[3, 0])
    with Image.open(out2) as im:
        assert im.format == "PNG"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["g.png", "sub"]  # no temporary files left


def test_animate_forecast_gif_frames(tmp_path, data):
    _, y, p = data
    out = plots.animate_forecast(y, p, tmp_path / "a.gif", sample=1, channel=0, fps=5)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == y.shape[1]
        assert im.info.get("duration") == 200
    # a prediction equal to the truth still makes one frame per lead time
    out = plots.animate_forecast(y[:, :1].repeat(4, axis=1), y[:, :1].repeat(4, axis=1), tmp_path / "b.gif")
    with Image.open(out) as im:
        assert im.n_frames == 4


def test_learning_curve(tmp_path):
    out = plots.plot_learning_curve({"train_loss": [1.0, 0.5, 0.25, 0.2], "val_loss": [1.2, 0.8]}, tmp_path / "l.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    plots.plot_learning_curve({"val_loss": [0.3, -0.1, None]}, tmp_path / "m.png")  # linear scale, gaps
    assert (tmp_path / "m.png").stat().st_size > 0


def test_bad_arguments(tmp_path, data):
    x, y, p = data
    with pytest.raises(ValueError, match="path"):
        plots.plot_forecast(x, y, p, tmp_path / "f.jpg")
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_forecast(x, y, p[:, :2], tmp_path / "f.png")
    with pytest.raises(ValueError, match="5D"):
        plots.plot_forecast(x[0], y, p, tmp_path / "f.png")
    with pytest.raises(ValueError, match="channel"):
        plots.plot_forecast(x, y, p, tmp_path / "f.png", channel=2)
    with pytest.raises(ValueError, match="samples"):
        plots.plot_forecast(x, y, p, tmp_path / "f.png", samples=0)
    with pytest.raises(ValueError, match="samples"):
        plots.plot_forecast(x, y, p, tmp_path / "f.png", samples=[7])
    with pytest.raises(TypeError, match="units"):
        plots.plot_forecast(x, y, p, tmp_path / "f.png", units=3)
    with pytest.raises(ValueError, match="fps"):
        plots.animate_forecast(y, p, tmp_path / "a.gif", fps=0)
    with pytest.raises(ValueError, match="sample"):
        plots.animate_forecast(y, p, tmp_path / "a.gif", sample=4)
    with pytest.raises(ValueError, match=r"\.gif"):
        plots.animate_forecast(y, p, tmp_path / "a.png")
    with pytest.raises(TypeError, match="history"):
        plots.plot_learning_curve([1, 2], tmp_path / "l.png")
    with pytest.raises(ValueError, match="train_loss"):
        plots.plot_learning_curve({"loss": [1.0]}, tmp_path / "l.png")
    with pytest.raises(TypeError, match="train_loss"):
        plots.plot_learning_curve({"train_loss": ["a"]}, tmp_path / "l.png")
    assert not any(tmp_path.iterdir())


def test_plot_forecast_input_labels(tmp_path, data, monkeypatch):
    x, y, p = data
    titles = []
    import matplotlib.axes

    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, label, *a, **k: (titles.append(label), real(self, label, *a, **k))[1])
    labels = ["t-167", "t-23", "t-2", "t-1", "t"]
    plots.plot_forecast(x, y, p, tmp_path / "f.png", samples=1, input_labels=labels)
    assert titles[:5] == labels and titles[5:8] == ["+1", "+2", "+3"]
    with pytest.raises(ValueError, match="input_labels must hold one title per input frame"):
        plots.plot_forecast(x, y, p, tmp_path / "g.png", input_labels=labels[:3])


# ---------------------------------------------------------------------------------- what a picture says
def _texts(fig):
    """Every title, axis label and figure or subfigure title of ``fig``."""
    out = [t.get_text() for f in [fig, *fig.subfigs] for t in f.texts]
    for ax in fig.get_axes():
        out += [ax.get_title(), ax.get_ylabel(), ax.get_xlabel()]
    return [t for t in out if t]


def test_forecast_png_names_each_channel_it_draws(tmp_path, data, figures):
    x, y, p = data   # 2 channels
    plots.plot_forecast(x, y, p, tmp_path / "all.png", samples=1)
    plots.plot_forecast(x, y, p, tmp_path / "named.png", samples=1, channel_names=["inflow", "outflow"])
    plots.plot_forecast(x, y, p, tmp_path / "one.png", samples=1, channel=1)
    plots.plot_forecast(x[..., :1], y[..., :1], p[..., :1], tmp_path / "single.png", samples=1)
    every, named, one, single = (_texts(f) for f in figures)
    assert {"channel 0 of 2", "channel 1 of 2"} <= set(every)
    assert {"inflow (channel 0 of 2)", "outflow (channel 1 of 2)"} <= set(named)
    assert "channel 1 of 2" in one and not any("channel 0" in t for t in one)
    assert not any("channel" in t for t in single)   # nothing to tell apart
    # each channel its own colour bar, labelled: 2 channels x (3 rows of 5 columns) + 2 colour bars
    assert len(figures[0].get_axes()) == 2 * 3 * 5 + 2
    plots.animate_forecast(y, p, tmp_path / "a.gif", channel=1, title="#7")
    assert figures[-1].texts[0].get_text() == "#7, channel 1 of 2"
    with pytest.raises(ValueError, match="channel_names must hold 2 name"):
        plots.plot_forecast(x, y, p, tmp_path / "f.png", channel_names=["inflow"])


def test_forecast_png_labels_rows_with_the_given_sample_labels(tmp_path, data, figures):
    x, y, p = data
    plots.plot_forecast(x, y, p, tmp_path / "f.png", samples=[1, 3], channel=0,
                        sample_labels=["#120", "#512, busiest"])
    labels = [ax.get_ylabel() for ax in figures[0].get_axes() if ax.get_ylabel()]
    assert labels == ["#120\ninputs", "#120\ntruth", "#120\nforecast",
                      "#512, busiest\ninputs", "#512, busiest\ntruth", "#512, busiest\nforecast"]
    with pytest.raises(ValueError, match="sample_labels must hold 2 name"):
        plots.plot_forecast(x, y, p, tmp_path / "g.png", samples=[1, 3], sample_labels=["#1"])


@pytest.mark.parametrize("losses", [[0.0123, 0.0061, 0.0042, 0.0035, 0.0031], [1234.5, 933.0, 800.0, 700.0],
                                    [0.3, -0.1, 0.05]])
def test_learning_curve_labels_lie_inside_the_figure(tmp_path, figures, losses):
    plots.plot_learning_curve({"train_loss": losses, "val_loss": [v * 1.1 for v in losses]}, tmp_path / "l.png")
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    ax = fig.get_axes()[0]

    def drawn(axis, limits):   # the tick labels within the axis's range (matplotlib keeps some beyond it)
        lo, hi = sorted(limits)
        ticks = axis.get_major_ticks() + axis.get_minor_ticks()
        return [t.label1 for t in ticks if lo <= t.get_loc() <= hi and t.label1.get_visible() and t.label1.get_text()]

    y_labels, x_labels = drawn(ax.yaxis, ax.get_ylim()), drawn(ax.xaxis, ax.get_xlim())
    assert y_labels and x_labels
    box = fig.bbox
    for t in y_labels + x_labels + [ax.yaxis.label, ax.xaxis.label]:
        e = t.get_window_extent(renderer)
        assert box.x0 <= e.x0 and e.x1 <= box.x1 and box.y0 <= e.y0 and e.y1 <= box.y1, (t.get_text(), e, box)
    assert all(float(t.get_text().replace("\u2212", "-")).is_integer() for t in x_labels)   # whole epochs


# ---------------------------------------------------------------------------------- which samples evaluate draws
def _stream(samples_kept, truth, batch=16):
    """Hand ``truth`` (N, L, H, W, C) to ``samples_kept`` batch by batch, as evaluate does."""
    for start in range(0, len(truth), batch):
        y = torch.from_numpy(truth[start:start + batch])
        samples_kept.keep(y[:, :2] * 0, y, y + 1, {})


def test_evaluate_draws_samples_spread_over_the_part_and_the_busiest():
    from convlstm.training.evaluation import _Samples

    rng = np.random.default_rng(3)
    truth = rng.random((100, 3, 6, 6, 2)) * 0.1
    truth[57] *= 30   # the busiest sample: the largest variance of its truth
    kept = _Samples(3, len(truth))
    _stream(kept, truth)
    indices, labels, (x, y, p), busiest = kept.chosen()
    # first and last of the part, and the busiest in place of the middle one (50)
    assert indices == [0, 57, 99] and labels == ["#0", "#57, busiest", "#99"] and busiest == 1
    np.testing.assert_array_equal(y, truth[[0, 57, 99]].astype(np.float32))
    np.testing.assert_array_equal(p, (truth[[0, 57, 99]] + 1).astype(np.float32))
    assert x.shape == (3, 2, 6, 6, 2)

    kept = _Samples(5, 1000)   # the spread samples lie evenly over the part
    _stream(kept, rng.random((1000, 1, 2, 2, 1)), batch=64)
    indices = kept.chosen()[0]
    gaps = np.diff(indices)
    assert len(indices) == 5 and (indices[0] == 0 or indices[-1] == 999)
    assert gaps.min() >= 1000 / 5 / 2, indices   # not bunched at the start, whichever one is the busiest

    kept = _Samples(5, 3)      # a part smaller than asked for: all of it
    truth = rng.random((3, 1, 2, 2, 1))
    truth[1, 0, 0, 0, 0] = np.nan   # a NaN does not make a sample the busiest nor break the choice
    _stream(kept, truth)
    assert kept.chosen()[0] == [0, 1, 2]
