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
