"""Models that start from a baseline: an untrained model forecasts exactly the baseline, computed
here independently (the toolkit's persistence baseline; the series' own value one period earlier),
training moves it off the baseline where that pays, and runs keep what they were trained with."""
import numpy as np
import pytest
import torch

from convlstm.baselines import persistence_forecast
from convlstm.data import MultiScaleWindowDataset
from convlstm.models import StartFromBaseline, create, list_models, resolve_start
from convlstm.training.module import ForecastModule, build_model

WRAPPED = [n for n in list_models() if n != "convlstm-warp"]  # warp starts from extrapolation itself


@pytest.mark.parametrize("name", WRAPPED)
def test_an_untrained_model_of_each_kind_is_persistence(name):
    torch.manual_seed(0)
    model = build_model(name, {"filters": [4]} if name in ("st-convlstm", "keras-nextframe") else {},
                        input_steps=4, output_steps=3, frame_shape=(16, 16, 2), start_from="auto")
    assert isinstance(model, StartFromBaseline) and model.start_from == "persistence"
    x = torch.rand(2, 4, 16, 16, 2)
    with torch.no_grad():
        forecast = model(x)
    assert torch.equal(forecast, persistence_forecast(x, 3))


def test_auto_leaves_a_model_that_starts_from_its_own_baseline_alone():
    warp = build_model("convlstm-warp", {}, input_steps=4, output_steps=2, frame_shape=(16, 16, 1), start_from="auto")
    assert not isinstance(warp, StartFromBaseline) and warp.starts_from == "extrapolation"
    direct = create("convlstm-warp", head="direct", in_channels=1)
    assert direct.starts_from is None and resolve_start(direct, "auto") == "persistence"
    assert not isinstance(create("st-convlstm", input_steps=2, frame_size=(4, 4)), StartFromBaseline)  # create: as published


def test_sigmoid_models_blend_and_linear_models_add_a_correction():
    nextframe = create("keras-nextframe", in_channels=1, filters=(4,), start_from="persistence")
    streams = create("st-convlstm", input_steps=2, frame_size=(4, 4), start_from="persistence")
    assert nextframe.combine == "blend" and streams.combine == "residual"


def test_a_next_frame_model_without_output_steps_starts_from_each_input_frame():
    model = create("keras-nextframe", in_channels=1, filters=(4,), start_from="persistence")
    x = torch.rand(2, 5, 8, 8, 1)
    with torch.no_grad():
        assert torch.equal(model(x), x)   # output t forecasts frame t + 1: persistence is frame t


def test_seasonal_start_is_the_value_one_period_before_the_target():
    rng = np.random.default_rng(1)
    series = rng.random((60, 6, 5, 2)).astype(np.float32)          # unique values: a target finds its time
    period_interval = 12
    ds = MultiScaleWindowDataset(series, 1, closeness=3, period=2, trend=0, period_interval=period_interval,
                                 start=30, stop=60)
    model = create("st-convlstm", channels=2, streams=(3, 2, 0), frame_size=(6, 5), filters=(4,),
                   start_from="seasonal")
    for i in (0, 7, len(ds) - 1):
        x, y = ds[i][0], ds[i][1]
        t = int(np.flatnonzero([np.array_equal(series[j], y[0].numpy()) for j in range(len(series))])[0])
        with torch.no_grad():
            forecast = model(x[None])
        np.testing.assert_array_equal(forecast[0, 0].numpy(), series[t - period_interval])


def test_the_gate_learns_a_correction_the_baseline_misses():
    """Every frame is the one before plus 0.3: persistence is off by 0.3 everywhere (MSE 0.09)."""
    torch.manual_seed(0)
    start = torch.rand(64, 1, 6, 6, 1)
    frames = start + 0.3 * torch.arange(4.0).view(1, 4, 1, 1, 1)
    x, y = frames[:, :3], frames[:, 3:]
    model = create("st-convlstm", input_steps=3, frame_size=(6, 6), filters=(4,), start_from="persistence")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(torch.nn.functional.mse_loss(model(x), y))
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(torch.nn.functional.mse_loss(model(x), y))
    assert before == pytest.approx(0.09, rel=1e-4)
    assert after < 0.1 * before


def test_bad_start_from_values_name_the_parameter():
    with pytest.raises(ValueError, match="start_from"):
        create("st-convlstm", input_steps=2, frame_size=(4, 4), start_from="yesterday")
    with pytest.raises(ValueError, match="start_from='seasonal' needs .*period stream"):
        create("st-convlstm", input_steps=2, frame_size=(4, 4), start_from="seasonal")
    with pytest.raises(ValueError, match="start_from is an option of the run"):
        build_model("st-convlstm", {"start_from": "persistence"}, input_steps=2, frame_shape=(4, 4, 1))


def test_the_checkpoint_keeps_the_resolved_start_and_rebuilds_it():
    module = ForecastModule("st-convlstm", model_options={"filters": [4]}, input_steps=3, output_steps=1,
                            frame_shape=(6, 6, 1), start_from="auto")
    assert module.hparams["start_from"] == "persistence"
    with torch.no_grad():
        module.model.gate.fill_(0.5)
    again = ForecastModule(**{k: v for k, v in module.hparams.items()})
    again.load_state_dict(module.state_dict())
    x = torch.rand(2, 3, 6, 6, 1)
    with torch.no_grad():
        assert torch.equal(again(x), module(x))
    published = ForecastModule("st-convlstm", model_options={"filters": [4]}, input_steps=3, output_steps=1,
                               frame_shape=(6, 6, 1))
    assert published.hparams["start_from"] == "none" and not isinstance(published.model, StartFromBaseline)


def test_a_run_from_before_the_option_resumes_with_its_model_as_published(tmp_path):
    from convlstm.training.config import FitConfig, load_run_config, save_config

    save_config(FitConfig(data="series.npy", model="st-convlstm"), tmp_path / "config.yaml")
    assert load_run_config(tmp_path).start_from == "auto"
    text = (tmp_path / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text("\n".join(l for l in text.splitlines() if not l.startswith("start_from")))
    assert load_run_config(tmp_path).start_from == "none"
