"""Stochastic members: the almost fair CRPS against pysteps's ensemble CRPS and a sorted-members
formula, the correlated noise's variance and correlation against the Gaussian kernel's analytic
autocorrelation, a spread that recovers the known noise of a synthetic process, and fit/load
with --members."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convlstm.losses import EnsembleCRPS
from convlstm.models.members import StochasticMembers, correlated_noise

pytestmark = pytest.mark.usefixtures("one_thread")


def fair_crps_sorted(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The fair CRPS per value from sorted members: sum_{i<j} |x_i - x_j| = sum_k (2k - M - 1) x_(k)."""
    m = members.shape[0]
    x = np.sort(members, axis=0)
    k = np.arange(1, m + 1).reshape((m,) + (1,) * truth.ndim)
    pairs = ((2 * k - m - 1) * x).sum(0)
    return np.abs(members - truth).mean(0) - pairs / (m * (m - 1))


def test_the_fair_crps_equals_the_sorted_members_formula():
    rng = np.random.default_rng(0)
    members, truth = rng.normal(size=(7, 3, 2, 5, 4, 1)), rng.normal(size=(3, 2, 5, 4, 1))
    got = EnsembleCRPS(alpha=1.0).score(torch.from_numpy(members), torch.from_numpy(truth)).numpy()
    np.testing.assert_allclose(got, fair_crps_sorted(members, truth), rtol=1e-12, atol=1e-12)


def test_alpha_0_is_the_ensembles_own_crps_as_pysteps_computes_it():
    from pysteps.verification.probscores import CRPS

    rng = np.random.default_rng(1)
    members, truth = rng.gamma(1.0, 2.0, size=(6, 9, 11)), rng.gamma(1.0, 2.0, size=(9, 11))
    ours = EnsembleCRPS(alpha=0.0).score(torch.from_numpy(members), torch.from_numpy(truth)).mean()
    assert float(ours) == pytest.approx(CRPS(members, truth), rel=1e-10)


def test_the_crps_refuses_one_member_and_bad_options():
    with pytest.raises(ValueError, match="2 members or more"):
        EnsembleCRPS()(torch.zeros(1, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="alpha must be in"):
        EnsembleCRPS(alpha=1.5)
    with pytest.raises(ValueError, match="spatial_pool"):
        EnsembleCRPS(spatial_pool=1)


def test_correlated_noise_has_unit_variance_and_the_gaussian_kernels_correlation():
    length = 3.0
    g = torch.Generator().manual_seed(0)
    eps = correlated_noise((400, 1, 48, 48), length, generator=g, dtype=torch.float64)
    assert float(eps.var()) == pytest.approx(1.0, abs=0.03)
    # white noise smoothed by a Gaussian of s.d. L has the autocorrelation exp(-d^2 / (4 L^2))
    for d in (1, 3, 6):
        r = float((eps[..., :, :-d] * eps[..., :, d:]).mean())
        assert r == pytest.approx(math.exp(-d ** 2 / (4 * length ** 2)), abs=0.03)


class _Scale(nn.Module):
    """y = a * (last input frame): the process's deterministic part, one parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * x[:, -1:]


def _train_on_the_crps(model, draw, steps=400):
    """``steps`` Adam steps on the almost fair CRPS of 4 members, batches of 16 from ``draw(n)``."""
    loss_fn = EnsembleCRPS(alpha=0.95)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(steps):
        x, y = draw(16)
        loss = loss_fn(model.sample(x, 4), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _trained_members_recover(model, draw, centre, centre_tol, sigma):
    """Train ``model`` for 400 steps on the almost fair CRPS of 4 members, with ``draw(n) -> (x, y)``
    giving the process's samples; then its centre must be ``centre``, its spread ``sigma`` (within
    10%), and a new value must fall between the 3rd and the 18th of 20 sorted members as often as a
    member drawn from its own distribution would: (18 - 3) / 21 of the time."""
    _train_on_the_crps(model, draw)
    with torch.no_grad():
        x, y = draw(64)
        members = model.sample(x, 20)
        spread = model.spread(model(x), x[:, -1])
    assert float(model.base.a.detach()) == pytest.approx(centre, abs=centre_tol)
    assert float(spread.mean()) == pytest.approx(sigma, rel=0.1)
    ordered = members.sort(dim=0).values
    covered = float(((y >= ordered[2]) & (y <= ordered[17])).double().mean())
    assert covered == pytest.approx(15 / 21, abs=0.03)


def test_members_trained_with_the_fair_crps_recover_the_known_noise_of_a_process():
    """y = 0.8 x + N(0, 0.3^2) per pixel, independent: the centre must learn 0.8 and the spread 0.3
    (and cover as members of the true distribution do)."""
    torch.manual_seed(0)
    sigma = 0.3
    model = StochasticMembers(_Scale(), channels=1, lead_times=1, noise_length=0.0, initial_spread=0.05)

    def draw(n):
        x = torch.randn(n, 2, 12, 12, 1)
        return x, 0.8 * x[:, -1:] + sigma * torch.randn(n, 1, 12, 12, 1)

    _trained_members_recover(model, draw, 0.8, 0.03, sigma)


def test_untrained_members_centre_on_the_model_and_spread_as_set():
    from convlstm.models import create

    base = create("keras-nextframe", filters=(4,), output_steps=1)
    model = StochasticMembers(base, channels=1, lead_times=1, initial_spread=0.05)
    x = torch.rand(3, 4, 16, 16, 1)
    torch.testing.assert_close(model(x), base(x))
    g = torch.Generator().manual_seed(2)
    members = model.sample(x, 200, generator=g)
    assert members.shape == (200, 3, 1, 16, 16, 1)
    assert float((members - base(x)).std()) == pytest.approx(0.05, rel=0.05)
    again = model.sample(x, 200, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(members, again)   # a generator makes the draw reproducible


def test_fit_with_members_trains_saves_and_draws(tmp_path):
    pytest.importorskip("lightning")
    from convlstm.training import FitConfig, fit
    from convlstm.training.runs import load_module

    rng = np.random.default_rng(0)
    np.save(tmp_path / "g.npy", rng.random((60, 8, 8)).astype(np.float32))
    run = fit(FitConfig(data=str(tmp_path / "g.npy"), layout="THW", model="keras-nextframe",
                        model_options={"filters": [2]}, members=3, member_options={"noise_length": 2},
                        max_epochs=1, batch_size=8, progress=False, evaluate=False, input_steps=3, output_steps=2,
                        run_dir=str(tmp_path / "run"), accelerator="cpu", devices=1))
    module, ckpt = load_module(run)
    assert module.members == 3 and ckpt["hyper_parameters"]["member_options"] == {"noise_length": 2}
    assert module.model.noise == "additive"
    x = torch.rand(2, 3, 8, 8, 1)
    assert module.forecast_members(x, 5).shape == (5, 2, 2, 8, 8, 1)
    assert module(x).shape == (2, 2, 8, 8, 1)


@pytest.mark.parametrize("changes, name, said", [
    (dict(members=1), "members", r"0 \(one forecast\) or 2 or more"),
    (dict(members=4, loss="mae"), "loss", "members train with the ensemble CRPS"),
    (dict(members=4, member_options={"width": 3}), "member_options", "member_options takes"),
    (dict(members=4, member_options={"noise": "gamma"}), "member_options", "noise must be one of additive, log-normal"),
])
def test_member_settings_are_checked_naming_the_field(changes, name, said):
    from convlstm._errors import ParameterError
    from convlstm.training import FitConfig

    with pytest.raises(ParameterError, match=said) as info:
        FitConfig(**changes)
    assert info.value.parameter == name


def test_predict_writes_the_members_their_mean_quantiles_and_probabilities(tmp_path):
    """The file's products against numpy on the members of the .npy output (the same draw); its
    forecast, the members' exact mean, against the average of 2000 unclamped members."""
    pytest.importorskip("lightning")
    xr = pytest.importorskip("xarray")
    from convlstm.training import FitConfig, fit, predict

    rng = np.random.default_rng(3)
    series = rng.gamma(1.0, 2.0, size=(60, 8, 8)).astype(np.float32)
    t = np.datetime64("2024-05-01T00:00", "m") + np.arange(60) * np.timedelta64(10, "m")
    np.savez(tmp_path / "rain.npz", rain=series, time=t)
    run = fit(FitConfig(data=str(tmp_path / "rain.npz"), key="rain", layout="THW", model="keras-nextframe",
                        model_options={"filters": [2]}, members=2, max_epochs=1, batch_size=8, progress=False,
                        evaluate=False, input_steps=3, output_steps=2, thresholds=[1.0, 4.0],
                        run_dir=str(tmp_path / "run"), accelerator="cpu", devices=1))
    members = np.load(predict(run, tmp_path / "rain.npz", tmp_path / "m.npy", all_windows=True, members=6, seed=4))
    assert members.shape == (58, 6, 2, 8, 8, 1) and (members >= 0).all()   # clamped as the run is
    out = predict(run, tmp_path / "rain.npz", tmp_path / "m.nc", all_windows=True, members=6, seed=4,
                  quantiles=[0.1, 0.9])
    with xr.open_dataset(out) as ds:
        ds = ds.load()
    np.testing.assert_array_equal(ds["members"].values, members)
    # the forecast is the members' exact mean before the clamp: the average of many unclamped draws
    with xr.open_dataset(predict(run, tmp_path / "rain.npz", tmp_path / "u.nc", all_windows=True, members=2,
                                 nonnegative=False)) as raw:
        centre = raw["forecast"].values
    np.testing.assert_allclose(ds["forecast"].values, np.maximum(centre, 0.0), rtol=1e-6)
    many = np.load(predict(run, tmp_path / "rain.npz", tmp_path / "u.npy", all_windows=True, members=2000, seed=1,
                           nonnegative=False))
    error = many.std(axis=1) / np.sqrt(many.shape[1])
    assert (many.std(axis=1) > 0.01).all()   # members that differ
    assert np.abs(many.mean(axis=1) - centre).max() < 5 * error.max()
    np.testing.assert_allclose(ds["quantile_forecast"].sel(quantile=0.9).values,
                               np.quantile(members, 0.9, axis=1), rtol=1e-6)
    assert ds["threshold"].values.tolist() == [1.0, 4.0]   # the run's thresholds
    np.testing.assert_allclose(ds["probability"].sel(threshold=4.0).values, (members >= 4.0).mean(axis=1))
    from convlstm._errors import ParameterError

    with pytest.raises(ParameterError, match="quantiles are written to a .nc or .zarr file"):
        predict(run, tmp_path / "rain.npz", tmp_path / "q.npy", quantiles=[0.5])


def test_the_spread_calibration_finds_the_factor_a_known_noise_needs():
    """An AR(1) field x_t = 0.8 x_(t-1) + N(0, 0.4^2) and a model whose centre is the exact
    conditional mean but whose spread is a quarter of the noise: on the validation part the
    chosen factor must be about 4 (the grid's step is 7%), and the validation CRPS must fall."""
    pytest.importorskip("lightning")
    from convlstm.training import GridDataModule
    from convlstm.training.module import ForecastModule
    from convlstm.training.spread_calibration import calibrate_spread

    rng = np.random.default_rng(5)
    series = np.zeros((400, 10, 10, 1), np.float32)
    for t in range(1, 400):
        series[t] = 0.8 * series[t - 1] + 0.4 * rng.normal(size=(10, 10, 1))
    dm = GridDataModule(series, input_steps=2, output_steps=1, scaler="none", split=(0.5, 0.5, 0.0),
                        batch_size=32, nonnegative=False)
    dm.setup()
    base = _Scale()
    base.a.data.fill_(0.8)
    module = ForecastModule(base, members=2, member_options={"initial_spread": 0.1, "noise_length": 0},
                            frame_shape=(10, 10, 1), output_steps=1)
    summary = calibrate_spread(module, dm, members=16)
    assert summary["factors"][0][0] == pytest.approx(4.0, rel=0.1)
    assert summary["val_crps"]["after"] < summary["val_crps"]["before"]
    assert summary["windows"] == len(dm.datasets["val"]) >= 10
    from convlstm.training.spread_calibration import spread_summary_line

    assert f"({summary['windows']} windows)" in spread_summary_line(summary)
    assert "rough" not in spread_summary_line(summary)
    assert "2 windows make rough factors" in spread_summary_line(dict(summary, windows=2))
    # the factor reaches the members: their spread around the centre is 4 x 0.1
    x = torch.randn(8, 2, 10, 10, 1)
    members = module.forecast_members(x, 400, generator=torch.Generator().manual_seed(0))
    assert float((members - module(x)).std()) == pytest.approx(0.1 * summary["factors"][0][0], rel=0.05)


def test_by_default_the_centre_trains_on_the_mse_alone_and_the_spread_on_the_crps():
    pytest.importorskip("lightning")
    from convlstm.training.module import ForecastModule

    torch.manual_seed(1)
    x, y = torch.randn(4, 2, 6, 6, 1), torch.randn(4, 1, 6, 6, 1)
    grads = {}
    for centre in ("mse", "crps"):
        module = ForecastModule(_Scale(), members=3, member_options={"centre": centre}, frame_shape=(6, 6, 1),
                                output_steps=1)
        module.train()
        module._step((x, y), training=True).backward()
        grads[centre] = (module.model.base.a.grad.clone(), module.model.spread.lead_bias.grad.clone())
    base = _Scale()
    torch.nn.functional.mse_loss(base(x), y).backward()
    torch.testing.assert_close(grads["mse"][0], base.a.grad)          # the centre: the MSE's gradient, exactly
    assert float(grads["mse"][1].abs().sum()) > 0                      # the spread still learns (CRPS)
    assert not torch.allclose(grads["crps"][0], base.a.grad)           # jointly: the CRPS moves the centre too


def test_log_normal_members_keep_the_forecasts_mean_with_the_log_normal_median():
    """y = (f + a) exp(s e - s^2/2) - a, e ~ N(0, 1): mean f, median (f + a) exp(-s^2/2) - a, never
    below -a (the analytic moments of a shifted log-normal)."""
    model = StochasticMembers(_Scale(), channels=1, lead_times=2, noise="log-normal", noise_offset=0.05)
    f = torch.tensor([0.0, 0.3, 2.0]).view(1, 1, 3, 1, 1).expand(1, 2, 3, 4, 1)
    s = torch.tensor([0.5, 0.2]).view(1, 2, 1, 1, 1).expand_as(f)
    eps = torch.randn((100_000,) + tuple(f.shape), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = model.members_from(f.double(), s.double(), eps)
    torch.testing.assert_close(y.mean(0), f.double(), rtol=0.01, atol=2e-3)
    median = (f.double() + 0.05) * torch.exp(-0.5 * s.double() ** 2) - 0.05
    torch.testing.assert_close(y.median(0).values, median, rtol=0.01, atol=2e-3)
    assert float(y.min()) > -0.05
    additive = StochasticMembers(_Scale(), channels=1, lead_times=2)
    torch.testing.assert_close(additive.members_from(f.double(), s.double(), eps[:5]), f + s * eps[:5])


def test_log_normal_members_trained_with_the_fair_crps_recover_a_multiplicative_noise():
    """y = x exp(0.4 e - 0.08), x > 0: the mean is x (the centre learns 1) and the log-spread 0.4
    (and cover as members of the true distribution do)."""
    torch.manual_seed(0)
    sigma = 0.4
    model = StochasticMembers(_Scale(), channels=1, lead_times=1, noise_length=0.0, noise="log-normal",
                              noise_offset=1e-3, initial_spread=0.1)

    def draw(n):
        x = 0.5 + 1.5 * torch.rand(n, 2, 12, 12, 1)
        return x, x[:, -1:] * torch.exp(sigma * torch.randn(n, 1, 12, 12, 1) - sigma ** 2 / 2)

    _trained_members_recover(model, draw, 1.0, 0.04, sigma)


def test_the_spread_calibration_scales_log_normal_members_too():
    """Sequences x0 ~ U(0.5, 2), x_t = x_(t-1) exp(0.4 e - 0.08), and a centre that is their exact
    conditional mean (x_(t-1)) with a log-spread of 0.1: the chosen factor is about 4."""
    pytest.importorskip("lightning")
    from convlstm.training import GridDataModule
    from convlstm.training.module import ForecastModule
    from convlstm.training.spread_calibration import calibrate_spread

    rng = np.random.default_rng(6)
    seqs = np.empty((400, 3, 10, 10, 1))
    seqs[:, 0] = rng.uniform(0.5, 2.0, size=(400, 10, 10, 1))
    for t in (1, 2):
        seqs[:, t] = seqs[:, t - 1] * np.exp(0.4 * rng.normal(size=(400, 10, 10, 1)) - 0.08)
    dm = GridDataModule(sequences=seqs.astype(np.float32), input_steps=2, output_steps=1, scaler="none",
                        split=(0.5, 0.5, 0.0), batch_size=32, nonnegative=True)
    dm.setup()
    base = _Scale()
    base.a.data.fill_(1.0)
    module = ForecastModule(base, members=2, frame_shape=(10, 10, 1), output_steps=1,
                            member_options={"initial_spread": 0.1, "noise_length": 0, "noise": "log-normal",
                                            "noise_offset": 1e-4})
    summary = calibrate_spread(module, dm, members=16)
    assert summary["factors"][0][0] == pytest.approx(4.0, rel=0.1)
    assert summary["val_crps"]["after"] < summary["val_crps"]["before"]


def test_laplace_marginals_are_laplace_of_unit_variance_and_keep_the_ranks():
    """The map of Gaussian values: variance 1, the quantiles of a Laplace of scale 1/sqrt(2)
    (q_p = -b ln(2 (1 - p)) above the median), odd, monotone (the copula is kept), finite far out."""
    from convlstm.models.members import laplace_marginals

    e = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lap = laplace_marginals(e)
    assert float(lap.var()) == pytest.approx(1.0, rel=0.02)
    b = 1 / math.sqrt(2)
    for p in (0.6, 0.75, 0.9, 0.95, 0.99):
        assert float(torch.quantile(lap, p)) == pytest.approx(-b * math.log(2 * (1 - p)), rel=0.03)
    assert torch.equal(torch.argsort(lap), torch.argsort(e))
    x = torch.tensor([-40.0, -1.0, 0.0, 1.0, 40.0], dtype=torch.float64)
    out = laplace_marginals(x)
    torch.testing.assert_close(out, -laplace_marginals(-x))
    assert out[2] == 0 and bool(torch.isfinite(out).all())
    # 1 standard deviation of the Gaussian: P = Phi(1) = 0.8413 -> -b ln(2 (1 - 0.8413))
    assert float(out[3]) == pytest.approx(-b * math.log(2 * (1 - 0.8413447460685429)), rel=1e-9)


def test_laplace_members_trained_with_the_fair_crps_recover_a_laplace_noise():
    """y = 0.8 x + Laplace noise of standard deviation 0.3: the centre learns 0.8, the spread 0.3,
    and the members cover as members of the true distribution do."""
    torch.manual_seed(0)
    sigma = 0.3
    model = StochasticMembers(_Scale(), channels=1, lead_times=1, noise_length=0.0, initial_spread=0.05,
                              noise="laplace")
    laplace = torch.distributions.Laplace(0.0, sigma / math.sqrt(2))

    def draw(n):
        x = torch.randn(n, 2, 12, 12, 1)
        return x, 0.8 * x[:, -1:] + laplace.sample((n, 1, 12, 12, 1))

    _trained_members_recover(model, draw, 0.8, 0.03, sigma)


def test_the_spread_follows_levels_that_differ_by_orders_of_magnitude():
    """Cells at 0.002, 0.02 and 0.1 (scaled units: quiet, middling and busy cells of a count grid)
    with noise of half their level: trained with the fair CRPS, the spread follows the level
    (the busy cells' within 20%, busy/quiet at least 18 of the true 50, middling/quiet at least
    2.5 of 10), which the spread network's logarithmic inputs make possible."""
    torch.manual_seed(0)
    levels = torch.tensor([0.002, 0.02, 0.1])
    model = StochasticMembers(_Scale(), channels=1, lead_times=1, noise_length=0.0, initial_spread=0.02)

    def draw(n):
        level = levels[torch.randint(0, 3, (n, 1, 12, 12, 1))]
        return torch.cat([level, level], 1), level + 0.5 * level * torch.randn(n, 1, 12, 12, 1)

    _train_on_the_crps(model, draw)
    with torch.no_grad():
        x, _ = draw(64)
        spread = model.spread(model(x), x[:, -1])
    learned = [float(spread[x[:, -1:] == v].mean()) for v in levels]
    assert learned[2] == pytest.approx(0.05, rel=0.2), learned
    assert learned[2] / learned[0] >= 18 and learned[1] / learned[0] >= 2.5, learned   # without the logs: 15, 1.7


def test_a_spread_network_saved_without_logarithmic_inputs_loads_as_it_was_trained():
    """A state dict whose first convolution takes 3C channels (written before the logarithms were
    inputs) loads into the 3C network and gives the spread computed by hand from its weights."""
    torch.manual_seed(1)
    c, width = 2, 8
    old = {"body.0.weight": 0.3 * torch.randn(width, 3 * c, 3, 3), "body.0.bias": 0.1 * torch.randn(width),
           "body.2.weight": 0.3 * torch.randn(c, width, 3, 3), "body.2.bias": 0.1 * torch.randn(c),
           "lead_bias": 0.01 * torch.randn(2, c)}
    model = StochasticMembers(_Scale(), channels=c, lead_times=2, spread_width=width)
    model.spread.load_state_dict(old)
    assert model.spread.log_inputs is False
    forecast, last = torch.rand(3, 2, 6, 5, c), torch.rand(3, 6, 5, c)
    got = model.spread(forecast, last)
    for k in range(2):
        f, l = forecast[:, k].permute(0, 3, 1, 2), last.permute(0, 3, 1, 2)
        hidden = F.gelu(F.conv2d(torch.cat([f, l, (f - l).abs()], 1), old["body.0.weight"], old["body.0.bias"],
                                 padding=1))
        z = F.conv2d(hidden, old["body.2.weight"], old["body.2.bias"], padding=1)
        expected = F.softplus(z + 30.0 * old["lead_bias"][k].view(1, c, 1, 1)).permute(0, 2, 3, 1)
        torch.testing.assert_close(got[:, k], expected)


def test_a_members_runs_centre_is_the_deterministic_run_of_the_same_seed(tmp_path):
    """The centre trains on the MSE alone, from the same initial weights, on the same batches in
    the same order, and is chosen by the same validation MSE: its weights, its validation losses and
    its blend equal those of the run without members, bit for bit; the members' own noise comes
    from a generator of their own."""
    pytest.importorskip("lightning")
    from convlstm.training import FitConfig, fit
    from convlstm.training.runs import load_module

    rng = np.random.default_rng(5)
    t = np.arange(70)[:, None, None]
    np.save(tmp_path / "g.npy", (np.sin(0.3 * t + rng.random((1, 8, 8)) * 6) + 1 + 0.1 * rng.random((70, 8, 8)))
            .astype(np.float32))
    common = dict(data=str(tmp_path / "g.npy"), layout="THW", model="keras-nextframe", model_options={"filters": [3]},
                  max_epochs=3, batch_size=8, progress=False, evaluate=False, input_steps=3, output_steps=2,
                  split=[0.7, 0.15, 0.15], accelerator="cpu", devices=1, seed=3, precision="32")
    plain = fit(FitConfig(**common, run_dir=str(tmp_path / "plain")))
    ensemble = fit(FitConfig(**common, members=3, run_dir=str(tmp_path / "members")))
    base, ckpt_plain = load_module(plain)
    members, ckpt_members = load_module(ensemble)
    theirs = {k[len("base."):]: v for k, v in members.model.state_dict().items() if k.startswith("base.")}
    ours = base.model.state_dict()
    assert set(theirs) == set(ours)
    for k, v in ours.items():
        assert torch.equal(v, theirs[k]), k
    assert ckpt_plain["epoch"] == ckpt_members["epoch"]
    history = [json.loads((tmp_path / r / "history.json").read_text())["val_loss"] for r in ("plain", "members")]
    assert history[0] == history[1] and len(history[0]) == 3
    assert ckpt_members.get("member_noise_rng") is not None   # the members' noise generator, for a resume


def test_a_resumed_members_run_draws_the_noise_the_uninterrupted_run_draws(tmp_path):
    """Two epochs at once, or one and a resume for the second: the same weights, spread included
    (the members' noise generator's state travels in the checkpoint)."""
    pytest.importorskip("lightning")
    from convlstm.training import FitConfig, fit
    from convlstm.training.runs import load_module

    np.save(tmp_path / "g.npy", np.random.default_rng(2).random((40, 8, 8)).astype(np.float32))
    common = dict(data=str(tmp_path / "g.npy"), layout="THW", model="keras-nextframe", model_options={"filters": [2]},
                  members=2, batch_size=8, progress=False, evaluate=False, input_steps=3, output_steps=1,
                  accelerator="cpu", devices=1, seed=4, precision="32", scheduler="none")
    fit(FitConfig(**common, max_epochs=2, run_dir=str(tmp_path / "straight")))
    fit(FitConfig(**common, max_epochs=1, run_dir=str(tmp_path / "split")))
    fit(FitConfig(**common, max_epochs=2, resume=True, run_dir=str(tmp_path / "split")))
    a = load_module(tmp_path / "straight" / "checkpoints" / "last.ckpt")[0].model.state_dict()
    b = load_module(tmp_path / "split" / "checkpoints" / "last.ckpt")[0].model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
