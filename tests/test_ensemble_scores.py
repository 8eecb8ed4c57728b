"""The ensemble scores (convlstm.ensemble_scores) against pysteps's own verification functions, a
brute-force pairwise CRPS, closed forms and numpy formulas written here; and their pictures."""
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from PIL import Image

from convlstm import plots
from convlstm.ensemble_scores import EnsembleScores, evaluate_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

#: members shapes (M, *truth shape): member counts 2 to 20, truth of 2 to 5 axes
SHAPES = [(5, 6, 4, 7), (10, 4, 3, 5, 6, 1), (2, 9, 8, 3), (20, 12, 6, 6), (7, 40, 9)]


def _pysteps(name):
    pytest.importorskip("pysteps")
    import importlib

    return importlib.import_module(f"pysteps.{name}")


def _continuous(rng, shape):
    """Members and truth that share a signal, with no equal values."""
    common = rng.normal(size=shape[1:])
    return common + rng.normal(size=shape), common + rng.normal(size=shape[1:])


def _quantised(rng, shape):
    """Values on steps of 0.5 with many zeros (a rain field's steps): ties between members and
    with the truth, and values exactly at the thresholds."""
    step = lambda a: np.round(np.maximum(a, 0.0) * 2) / 2  # noqa: E731
    common = rng.normal(0.2, 1.0, size=shape[1:])
    return step(common + 0.7 * rng.normal(size=shape)), step(common + 0.7 * rng.normal(size=shape[1:]))


def _spoil(rng, x, y, count=5):
    """Copies of ``x`` and ``y`` with ``count`` NaN or infinite values in each."""
    x, y = x.copy(), y.copy()
    for a in (x, y):
        flat = a.reshape(-1)
        flat[rng.choice(flat.size, count, replace=False)] = rng.choice([np.nan, np.inf, -np.inf], count)
    return x, y


def _in_batches(scores, x, y, cuts=(1, 3)):
    """Feed ``scores`` the points of truth ``y`` in batches along its first axis (cut at ``cuts``)."""
    edges = [0, *[c for c in cuts if 0 < c < y.shape[0]], y.shape[0]]
    for a, b in zip(edges[:-1], edges[1:]):
        scores.accumulate(x[:, a:b], y[a:b])
    return scores.compute()


def _finite(x, y):
    """Members (M, P) and truth (P,) of the points where the truth and every member are finite."""
    x, y = x.reshape(x.shape[0], -1), y.reshape(-1)
    keep = np.isfinite(y) & np.isfinite(x).all(0)
    return x[:, keep], y[keep]


def _brute_crps(x, y, fair=False):
    """Mean over points of (1/M) sum_i |x_i - y| - sum_{i,j} |x_i - x_j| / (2 M^2), or over
    2 M (M - 1) (the pairs i != j) when ``fair``: every pair written out."""
    x, y = _finite(x, y)
    m = x.shape[0]
    pairs = np.abs(x[:, None, :] - x[None, :, :]).sum((0, 1))
    return float(np.mean(np.abs(x - y).mean(0) - pairs / (2 * m * (m - 1 if fair else m))))


def _assert_same(a, b, path="results"):
    """``a`` and ``b`` equal to 1e-12 (relative), nested dicts and lists (of numbers or of dicts)
    alike, NaN equal to NaN."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list) and a and isinstance(a[0], dict):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-12,
                                   atol=1e-12, equal_nan=True, err_msg=path)


# ---------------------------------------------------------------------------------- CRPS
@pytest.mark.parametrize("shape", SHAPES)
def test_crps_equals_pysteps_crps(shape):
    probscores = _pysteps("verification.probscores")
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    x, y = _spoil(rng, *_continuous(rng, shape))
    ours = _in_batches(EnsembleScores(), x, y)
    assert ours["crps"] == pytest.approx(probscores.CRPS(x, y), rel=1e-12)
    assert ours["nonfinite_points"] == int((~(np.isfinite(y) & np.isfinite(x).all(0))).sum())
    assert ours["points"] == y.size - ours["nonfinite_points"]


@pytest.mark.parametrize("shape", SHAPES)
def test_crps_with_ties_is_the_integral_pysteps_tends_to(shape):
    probscores = _pysteps("verification.probscores")
    rng = np.random.default_rng(shape[0])
    x, y = _quantised(rng, shape)
    assert np.mean(np.any(x == y, axis=0)) > 0.2   # the truth equals a member at many points
    ours = _in_batches(EnsembleScores(), x, y)["crps"]
    assert ours == pytest.approx(_brute_crps(x, y), rel=1e-12)
    # pysteps leaves out the intervals beside a truth equal to a member; off the tie it agrees
    assert ours == pytest.approx(probscores.CRPS(x, y + 1e-9), abs=1e-8)
    assert probscores.CRPS(x, y) < ours - 1e-3
    # the example the module gives: members (0, 0, 1, 2), truth 0
    tie = evaluate_ensemble(np.array([0.0, 0.0, 1.0, 2.0]), np.array(0.0))["crps"]
    assert tie == pytest.approx(0.3125) and probscores.CRPS(np.array([[0.0], [0], [1], [2]]), np.zeros(1)) == 0.0625


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("data", [_continuous, _quantised])
def test_crps_and_fair_crps_equal_the_pairwise_formulas(shape, data):
    rng = np.random.default_rng(7 + shape[0])
    x, y = _spoil(rng, *data(rng, shape), count=3)
    ours = _in_batches(EnsembleScores(), x, y, cuts=(2,))
    assert ours["crps"] == pytest.approx(_brute_crps(x, y), rel=1e-12)
    assert ours["crps_fair"] == pytest.approx(_brute_crps(x, y, fair=True), rel=1e-12)


def test_crps_of_a_large_gaussian_ensemble_is_the_closed_form():
    # members at the Gaussian's quantiles (i + 1/2)/M; CRPS(N(mu, s^2), y) =
    # s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)], z = (y - mu) / s
    normal, m, mu, s = NormalDist(), 500, 1.5, 2.0
    members = mu + s * np.array([normal.inv_cdf((i + 0.5) / m) for i in range(m)])
    z = np.array([-2.5, -1.0, 0.0, 0.3, 1.7, 3.0])
    scores = EnsembleScores()
    for zi in z:
        scores.accumulate(members[:, None], np.array([mu + s * zi]))
    closed = [s * (zi * (2 * normal.cdf(zi) - 1) + 2 * normal.pdf(zi) - 1 / math.sqrt(math.pi)) for zi in z]
    # the plain and fair CRPS differ by 2.2e-3 here: the tolerance tells them apart
    assert scores.compute()["crps"] == pytest.approx(np.mean(closed), abs=2e-4)


def test_fair_crps_is_unbiased_and_the_plain_crps_is_not():
    # members and truth drawn from N(0, 1): E[fair] = CRPS(N(0, 1)) averaged = 1/sqrt(pi),
    # E[plain] = (1 + 1/M)/sqrt(pi)
    rng, m, n = np.random.default_rng(3), 4, 40_000
    results = evaluate_ensemble(rng.normal(size=(m, n)), rng.normal(size=n))
    se = 0.6 / math.sqrt(n)   # the standard deviation of one point's CRPS is below 0.6 here
    assert results["crps_fair"] == pytest.approx(1 / math.sqrt(math.pi), abs=5 * se)
    assert results["crps"] == pytest.approx((1 + 1 / m) / math.sqrt(math.pi), abs=5 * se)


# ---------------------------------------------------------------------------------- rank histogram
@pytest.mark.parametrize("shape", SHAPES)
def test_rank_histogram_equals_pysteps_rankhist_without_ties(shape):
    ensscores = _pysteps("verification.ensscores")
    rng = np.random.default_rng(11 + shape[0])
    x, y = _spoil(rng, *_continuous(rng, shape))
    ours = _in_batches(EnsembleScores(), x, y)["rank_histogram"]
    theirs = ensscores.rankhist(x, y, normalize=False)
    assert len(ours) == shape[0] + 1
    np.testing.assert_array_equal(ours, theirs)


def _expected_ranks(x, y, rank_min=None):
    """The rank histogram point by point: rank #{x_i < y}, a truth tied with e members shared
    1/(e+1) among the ranks it may take; with rank_min, pysteps's X_min rule."""
    x, y = _finite(x, y)
    hist = np.zeros(x.shape[0] + 1)
    for j in range(y.size):
        xs, yj = x[:, j].copy(), y[j]
        if rank_min is not None:
            if yj < rank_min and np.all(xs < rank_min):
                continue
            xs[xs < rank_min], yj = -1e300, (-1e300 if yj < rank_min else yj)
        less, ties = int(np.sum(xs < yj)), int(np.sum(xs == yj))
        hist[less:less + ties + 1] += 1.0 / (ties + 1)
    return hist


@pytest.mark.parametrize("rank_min", [None, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(5, 40, 30), (12, 20, 4, 3)])
def test_rank_histogram_with_ties_is_the_mean_of_pysteps_random_draws(shape, rank_min):
    ensscores = _pysteps("verification.ensscores")
    rng = np.random.default_rng(shape[0])
    x, y = _spoil(rng, *_quantised(rng, shape), count=4)
    ours = np.array(_in_batches(EnsembleScores(rank_min=rank_min), x, y)["rank_histogram"])
    np.testing.assert_allclose(ours, _expected_ranks(x, y, rank_min), rtol=1e-12, atol=1e-9)
    state, runs = np.random.get_state(), 200
    try:
        np.random.seed(0)   # pysteps draws a tied truth's rank with numpy's global generator
        draws = np.array([ensscores.rankhist(x, y, X_min=rank_min, normalize=False) for _ in range(runs)])
    finally:
        np.random.set_state(state)
    assert draws.sum(1) == pytest.approx(ours.sum())   # the same points ranked
    spread = ours.sum() / 2 / math.sqrt(runs)           # the draws' standard error bound
    assert np.all(np.abs(draws.mean(0) - ours) < 5 * spread + 1e-9), (draws.mean(0), ours)
    assert np.abs(draws[0] - ours).max() > 0.4           # one draw is not the expectation: ties were met


# ---------------------------------------------------------------------------------- reliability, Brier, ROC
@pytest.mark.parametrize("m, n_bins, min_count", [(10, 10, 10), (7, 5, 0), (20, 10, 25), (3, 4, 1), (2, 10, 10)])
def test_reliability_and_brier_equal_pysteps_reldiag(m, n_bins, min_count):
    probscores = _pysteps("verification.probscores")
    ensemblestats = _pysteps("postprocessing.ensemblestats")
    rng = np.random.default_rng(m * 10 + n_bins)
    x, y = _spoil(rng, *_quantised(rng, (m, 30, 7, 5)))
    thresholds = (0.5, 1.0, 1.5)   # quantised values fall exactly on them: the event is >= T
    ours = _in_batches(EnsembleScores(thresholds, n_bins=n_bins, min_count=min_count), x, y, cuts=(4, 11))
    for t in thresholds:
        p = ensemblestats.excprob(x, t)
        diagram = probscores.reldiag_init(t, n_bins, min_count)
        probscores.reldiag_accum(diagram, p, y)
        with np.errstate(invalid="ignore", divide="ignore"):
            r, f = probscores.reldiag_compute(diagram)
        rel = ours[f"reliability@{t:g}"]
        np.testing.assert_allclose(rel["forecast_probability"], r, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(rel["observed_frequency"], f, rtol=1e-12, equal_nan=True)
        counts = np.array(rel["counts"])
        np.testing.assert_array_equal(np.where(counts >= min_count, counts, 0), diagram["sample_size"])
        finite = np.isfinite(p) & np.isfinite(y)
        assert counts.sum() == finite.sum() == ours["points"]
        o = (y[finite] >= t).astype(float)
        assert ours[f"brier@{t:g}"] == pytest.approx(np.mean((p[finite] - o) ** 2), rel=1e-12)
        assert rel["base_rate"] == pytest.approx(o.mean(), rel=1e-12)
        assert np.isnan(r).sum() < n_bins   # some bins are drawn


def test_brier_score_by_hand():
    members = np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 0.0], [2.0, 0.5, 0.0], [2.0, 3.0, 0.0]])   # M = 4, 3 points
    truth = np.array([2.0, 0.0, 1.0])
    # members per point: (0, 1, 2, 2), (2, 2, 0.5, 3), (3, 0, 0, 0)
    # P(x >= 1.5) = 2/4, 3/4, 1/4; events (truth >= 1.5) 1, 0, 0
    expected = ((0.5 - 1) ** 2 + 0.75 ** 2 + 0.25 ** 2) / 3
    assert evaluate_ensemble(members, truth, thresholds=1.5)["brier@1.5"] == pytest.approx(expected, rel=1e-15)
    # a value equal to the threshold reaches it: P(x >= 2) = 2/4, 3/4, 1/4 and truth 2 is an event
    assert evaluate_ensemble(members, truth, thresholds=2)["brier@2"] == pytest.approx(expected, rel=1e-15)
    # P(x >= 2.5) = 0, 1/4, 1/4; no event
    expected = (0.25 ** 2 + 0.25 ** 2) / 3
    assert evaluate_ensemble(members, truth, thresholds=2.5)["brier@2.5"] == pytest.approx(expected, rel=1e-15)


def test_reliability_bins_by_hand():
    # M = 4, threshold 1: forecast probabilities 0, 0, 1/4, 1/4, 3/4, 1 with events 0, 1, 1, 1, 0, 1.
    # pysteps's edges, linspace(-1e-6, 1 + 1e-6, 5), put 1/4 (just above its edge) in bin 1 and
    # 3/4 (just below its edge) in bin 2; bins of fewer than min_count = 2 points are nan
    reach = {0.0: [0, 0, 0, 0], 0.25: [1, 0, 0, 0], 0.75: [1, 1, 1, 0], 1.0: [1, 1, 1, 1]}
    probs, events = [0.0, 0.0, 0.25, 0.25, 0.75, 1.0], [0, 1, 1, 1, 0, 1]
    members = np.array([reach[p] for p in probs], dtype=float).T
    rel = evaluate_ensemble(members, np.array(events, dtype=float), thresholds=1, n_bins=4,
                            min_count=2)["reliability@1"]
    assert rel["counts"] == [2, 2, 1, 1]
    np.testing.assert_array_equal(rel["forecast_probability"], [0.0, 0.25, np.nan, np.nan])
    np.testing.assert_array_equal(rel["observed_frequency"], [0.5, 1.0, np.nan, np.nan])
    assert rel["bin_centres"] == [0.125, 0.375, 0.625, 0.875] and rel["base_rate"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("m, n_prob", [(10, 10), (9, 10), (7, 11), (20, 5), (4, 2)])
def test_roc_curve_and_area_equal_pysteps(m, n_prob):
    probscores = _pysteps("verification.probscores")
    ensemblestats = _pysteps("postprocessing.ensemblestats")
    rng = np.random.default_rng(m + n_prob)
    x, y = _spoil(rng, *_quantised(rng, (m, 25, 6, 6)))
    ours = _in_batches(EnsembleScores((0.5, 1.0), n_prob_thresholds=n_prob), x, y, cuts=(5, 6, 20))
    for t in (0.5, 1.0):
        roc = probscores.ROC_curve_init(t, n_prob)
        probscores.ROC_curve_accum(roc, ensemblestats.excprob(x, t), y)
        pofd, pod, area = probscores.ROC_curve_compute(roc, compute_area=True)
        curve = ours[f"roc@{t:g}"]
        np.testing.assert_allclose(curve["probability_thresholds"], roc["prob_thrs"], rtol=0, atol=0)
        np.testing.assert_allclose(curve["pod"], pod, rtol=1e-12)
        np.testing.assert_allclose(curve["pofd"], pofd, rtol=1e-12)
        assert ours[f"roc_auc@{t:g}"] == pytest.approx(area, rel=1e-12)
        assert 0.6 < area < 1.0   # a skilful ensemble (members share the truth's signal)


def test_roc_area_is_nan_without_events():
    members, truth = np.random.default_rng(0).random((5, 100)), np.zeros(100)
    results = evaluate_ensemble(members, truth, thresholds=(2.0,))
    assert math.isnan(results["roc_auc@2"]) and results["brier@2"] == 0.0


# ---------------------------------------------------------------------------------- spread and skill
@pytest.mark.parametrize("shape", SHAPES)
def test_spread_and_rmse_of_the_mean_equal_numpy(shape):
    rng = np.random.default_rng(shape[0] + 5)
    x, y = _spoil(rng, *_continuous(rng, shape))
    ours = _in_batches(EnsembleScores(), x, y)
    xf, yf = _finite(x, y)
    m = xf.shape[0]
    variance = ((xf - xf.sum(0) / m) ** 2).sum(0) / (m - 1)
    spread, rmse = math.sqrt(variance.mean()), math.sqrt(((xf.sum(0) / m - yf) ** 2).mean())
    assert ours["spread"] == pytest.approx(spread, rel=1e-12)
    assert ours["rmse_mean"] == pytest.approx(rmse, rel=1e-12)
    assert ours["spread_skill"] == pytest.approx(math.sqrt((m + 1) / m) * spread / rmse, rel=1e-12)


def test_spread_skill_is_one_for_a_consistent_ensemble():
    # truth and M = 3 members drawn alike: mean variance 1, MSE of the mean 1 + 1/M; without the
    # (M + 1)/M factor the ratio would be sqrt(3/4) = 0.87
    rng = np.random.default_rng(5)
    results = evaluate_ensemble(rng.normal(size=(3, 200, 300)), rng.normal(size=(200, 300)))
    assert results["spread_skill"] == pytest.approx(1.0, abs=0.02)
    assert results["spread"] == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------------------------- streaming
def _scored(**options):
    rng = np.random.default_rng(21)
    x, y = _spoil(rng, *_quantised(rng, (6, 10, 3, 5, 4, 1)), count=7)   # (M, N, L, H, W, C)
    return x, y, dict(thresholds=(0.5, 1.0), lead_axis=1, rank_min=0.5, n_bins=5, min_count=2, **options)


def test_merge_of_two_halves_equals_one_pass():
    x, y, options = _scored()
    whole = evaluate_ensemble(x, y, **options)
    first, second = EnsembleScores(**options), EnsembleScores(**options)
    _in_batches(first, x[:, :4], y[:4], cuts=(1,))
    second.accumulate(x[:, 4:], y[4:])
    _assert_same(first.merge(second).compute(), whole)
    _assert_same(EnsembleScores(**options).merge(second).merge(EnsembleScores(**options)).compute(),
                 evaluate_ensemble(x[:, 4:], y[4:], **options))
    _assert_same(_in_batches(EnsembleScores(**options), x, y, cuts=(1, 2, 3, 7, 9)), whole)
    assert whole["points"] + whole["nonfinite_points"] == y.size


def test_per_lead_time_scores_each_lead_alone():
    x, y, options = _scored()
    results = evaluate_ensemble(x, y, **options)
    per = results["per_lead_time"]
    options.pop("lead_axis")
    for lead in range(y.shape[1]):
        alone = evaluate_ensemble(x[:, :, lead], y[:, lead], **options)
        for key in ("crps", "crps_fair", "spread", "rmse_mean", "spread_skill", "brier@0.5", "roc_auc@1"):
            assert per[key][lead] == pytest.approx(alone[key], rel=1e-12, nan_ok=True), key
        np.testing.assert_allclose(per["rank_histogram"][lead], alone["rank_histogram"], rtol=1e-12)
    np.testing.assert_allclose(np.sum(per["rank_histogram"], 0), results["rank_histogram"], rtol=1e-12)
    _assert_same(evaluate_ensemble(x, y, lead_axis=-4, **options), results)   # -4 is axis 1 of (N, L, H, W, C)
    pooled = evaluate_ensemble(x, y, **options)
    assert "per_lead_time" not in pooled and pooled["crps"] == pytest.approx(results["crps"], rel=1e-12)


def test_torch_tensors_score_as_numpy_arrays():
    x, y, options = _scored()
    _assert_same(evaluate_ensemble(torch.from_numpy(x).float(), torch.from_numpy(y).float(), **options),
                 evaluate_ensemble(x.astype(np.float32), y.astype(np.float32), **options))


def test_nonfinite_points_are_left_out_of_every_score():
    rng = np.random.default_rng(2)
    x, y = _quantised(rng, (5, 50, 8))
    bad_x, bad_y = x.copy(), y.copy()
    bad_x[2, 3, 4], bad_y[7, 1], bad_y[9, 0] = np.nan, np.inf, np.nan
    keep = np.ones(y.shape, bool)
    keep[3, 4] = keep[7, 1] = keep[9, 0] = False
    spoiled = evaluate_ensemble(bad_x, bad_y, thresholds=(1.0,), min_count=0)
    clean = evaluate_ensemble(x[:, keep], y[keep], thresholds=(1.0,), min_count=0)
    assert spoiled.pop("nonfinite_points") == 3 and "nonfinite_points" not in clean
    _assert_same(spoiled, clean)


# ---------------------------------------------------------------------------------- wrong input
def test_bad_arguments_name_the_parameter():
    x, y = np.zeros((4, 3, 5)), np.zeros((3, 5))
    with pytest.raises(ValueError, match=r"members must be shaped \(members, \*truth.shape\) = \(M, 3, 4\)"):
        evaluate_ensemble(x, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="members must be shaped"):
        evaluate_ensemble(x[0], y)   # no member axis
    with pytest.raises(ValueError, match="members must hold an ensemble of at least 2 members"):
        evaluate_ensemble(x[:1], y)
    with pytest.raises(ValueError, match="truth holds no values"):
        evaluate_ensemble(x[:, :0], y[:0])
    with pytest.raises(TypeError, match="members must be a numpy array"):
        evaluate_ensemble("members", y)
    for bad, error, pattern in [(float("nan"), ValueError, "thresholds must be a finite number"),
                                ("1", TypeError, "thresholds must be a number or a sequence"),
                                ([0.5, None], TypeError, "thresholds must be a real number")]:
        with pytest.raises(error, match=pattern):
            EnsembleScores(bad)
    for name, bad in [("n_bins", 0), ("min_count", -1), ("n_prob_thresholds", 1), ("n_bins", 2.0)]:
        with pytest.raises((ValueError, TypeError), match=f"{name} must be an integer"):
            EnsembleScores(**{name: bad})
    with pytest.raises(ValueError, match="rank_min must be a finite number"):
        EnsembleScores(rank_min=float("inf"))
    with pytest.raises(TypeError, match="lead_axis must be an int"):
        EnsembleScores(lead_axis=1.0)
    with pytest.raises(ValueError, match=r"lead_axis=2 is not an axis of truth, shape \(3, 5\)"):
        evaluate_ensemble(x, y, lead_axis=2)


def test_batches_and_merges_must_agree():
    scores = EnsembleScores(lead_axis=0)
    with pytest.raises(RuntimeError, match="nothing was accumulated"):
        scores.compute()
    scores.accumulate(np.zeros((4, 3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="members holds 5 members and 3 lead time"):
        scores.accumulate(np.zeros((5, 3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="members holds 4 members and 2 lead time"):
        scores.accumulate(np.zeros((4, 2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="different settings"):
        scores.merge(EnsembleScores(thresholds=1.0, lead_axis=0))
    other = EnsembleScores(lead_axis=0)
    other.accumulate(np.zeros((6, 3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="6 members and 3 lead time"):
        scores.merge(other)
    with pytest.raises(TypeError, match="merge takes an EnsembleScores"):
        scores.merge({})


# ---------------------------------------------------------------------------------- pictures
def test_rank_histogram_png_shows_frequencies_and_the_flat_line(tmp_path, figures):
    hist = [30.0, 10.0, 12.5, 7.5, 40.0]   # M = 4
    out = plots.plot_rank_histogram(hist, tmp_path / "sub" / "rank.png", title="lead 1")
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["rank.png"]   # no temporary file left
    ax = figures[0].get_axes()[0]
    np.testing.assert_allclose([b.get_height() for b in ax.patches], np.array(hist) / 100)
    flat = [line.get_ydata()[0] for line in ax.get_lines()]
    assert flat == [pytest.approx(0.2)]
    assert ax.get_xlabel() == "rank of the truth among the 4 members" and ax.get_ylabel() == "relative frequency"
    for bad, error in [([[1, 2], [3, 4]], ValueError), ([1.0], ValueError), ([1, -1, 3], ValueError),
                       ([0, 0, 0], ValueError), ("abc", TypeError)]:
        with pytest.raises(error, match="hist must"):
            plots.plot_rank_histogram(bad, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="path="):
        plots.plot_rank_histogram(hist, tmp_path / "rank.jpg")


def test_reliability_png_shows_each_threshold_and_the_diagonal(tmp_path, figures):
    rng = np.random.default_rng(4)
    x, y = _quantised(rng, (10, 40, 20))
    results = evaluate_ensemble(x, y, thresholds=(0.5, 1.5))
    out = plots.plot_reliability(results, tmp_path / "rel.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    ax, ax_n = figures[0].get_axes()
    lines = ax.get_lines()
    assert lines[0].get_label() == "perfect reliability" and list(lines[0].get_xdata()) == [0, 1] \
        and list(lines[0].get_ydata()) == [0, 1]
    curves = [line for line in lines if line.get_label().startswith(">=")]
    assert [c.get_label() for c in curves] == [">= 0.5", ">= 1.5"]
    rel = results["reliability@0.5"]
    shown = np.isfinite(rel["forecast_probability"])
    np.testing.assert_allclose(curves[0].get_xdata(), np.array(rel["forecast_probability"])[shown])
    np.testing.assert_allclose(curves[0].get_ydata(), np.array(rel["observed_frequency"])[shown])
    assert ax.get_ylabel() == "observed relative frequency" and ax_n.get_xlabel() == "forecast probability"
    plots.plot_reliability({"1 mm/h": results["reliability@1.5"]}, tmp_path / "one.png")
    assert [line.get_label() for line in figures[1].get_axes()[0].get_lines()][1] == ">= 1 mm/h"
    with pytest.raises(ValueError, match="rel_by_threshold is empty"):
        plots.plot_reliability({}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"rel_by_threshold\['1'\] must be a reliability entry"):
        plots.plot_reliability({1: {"counts": [1]}}, tmp_path / "bad.png")
    with pytest.raises(TypeError, match="rel_by_threshold must be a dict"):
        plots.plot_reliability([rel], tmp_path / "bad.png")


def test_the_central_interval_coverage_and_width_equal_numpys_quantiles():
    rng = np.random.default_rng(11)
    members, truth = rng.gamma(2.0, 1.0, size=(9, 5, 3, 7, 6, 1)), rng.gamma(2.0, 1.0, size=(5, 3, 7, 6, 1))
    scores = EnsembleScores(lead_axis=1)
    scores.accumulate(members[:, :2], truth[:2])
    scores.accumulate(members[:, 2:], truth[2:])
    r = scores.compute()
    lo, hi = np.quantile(members, 0.1, axis=0), np.quantile(members, 0.9, axis=0)
    inside = (truth >= lo) & (truth <= hi)
    assert r["interval_coverage"] == pytest.approx(inside.mean(), rel=1e-12)
    assert r["interval_width"] == pytest.approx((hi - lo).mean(), rel=1e-12)
    np.testing.assert_allclose(r["per_lead_time"]["interval_width"], (hi - lo).mean(axis=(0, 2, 3, 4)), rtol=1e-12)


def test_every_central_interval_equals_numpys_quantiles_and_widths_compare_at_one_coverage():
    from convlstm.ensemble_scores import INTERVAL_LEVELS, width_at_coverage

    rng = np.random.default_rng(12)
    members, truth = rng.normal(size=(15, 40, 6, 5)), rng.normal(size=(40, 6, 5))
    r = evaluate_ensemble(members, truth)
    for level, row in zip(INTERVAL_LEVELS, r["intervals"]):
        lo, hi = np.quantile(members, (1 - level) / 2, axis=0), np.quantile(members, (1 + level) / 2, axis=0)
        assert row["level"] == level
        assert row["coverage"] == pytest.approx(((truth >= lo) & (truth <= hi)).mean(), rel=1e-12)
        assert row["width"] == pytest.approx((hi - lo).mean(), rel=1e-12)
    a, b = r["intervals"][1], r["intervals"][2]
    middle = (a["coverage"] + b["coverage"]) / 2
    assert width_at_coverage(r["intervals"], middle) == pytest.approx((a["width"] + b["width"]) / 2)
    assert np.isnan(width_at_coverage(r["intervals"], 0.99))
