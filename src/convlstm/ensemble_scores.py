r"""Probabilistic scores of ensemble forecasts, batch by batch.

**Layout: members first.** An ensemble forecast of :math:`M \ge 2` members is an array of shape
``(M, *S)`` and its truth an array of shape ``S`` (``members[m]`` is one member, shaped like the
truth). For the toolkit's forecasts, members ``(M, N, L, H, W, C)`` and truth ``(N, L, H, W, C)``
with ``lead_axis=1``: the lead time is an axis **of the truth**, and ``members`` holds it one
axis later. Every element of the truth is one *point*, verified against the :math:`M` values
of the members there. Arrays may be numpy or torch (any device); sums are kept in float64.

:class:`EnsembleScores` keeps running sums in the streaming shape of
:class:`~convlstm.scoring.ForecastScores` (:meth:`~EnsembleScores.accumulate`,
:meth:`~EnsembleScores.merge`, :meth:`~EnsembleScores.compute`): the numbers do not depend on how
the points are split into batches. :func:`evaluate_ensemble` scores whole arrays.

Scores at one point, members :math:`x_1, \dots, x_M`, sorted :math:`x_{(1)} \le \dots \le
x_{(M)}`, truth :math:`y`, event threshold :math:`T`; each score is the mean over points:

=======================  ========================================================================
``crps``                 the CRPS of the ensemble's empirical distribution
                         :math:`F_M(t) = \#\{x_i \le t\}/M`: :math:`\int (F_M(t) - [y \le t])^2
                         dt = \frac{1}{M}\sum_i |x_i - y| - \frac{1}{2M^2} \sum_{i,j}
                         |x_i - x_j|`, the spread term computed from the sorted gaps,
                         :math:`\sum_{i,j} |x_i - x_j| = 2 \sum_{k=1}^{M-1} k (M-k)
                         (x_{(k+1)} - x_{(k)})`. Hersbach (2000)'s estimator, the one
                         ``pysteps.verification.probscores.CRPS`` computes (see ties below)
``crps_fair``            Ferro (2014)'s fair CRPS: the spread term over :math:`2M(M-1)` instead of
                         :math:`2M^2`, an unbiased estimate of the CRPS of the distribution the
                         members are drawn from (``crps`` exceeds it by :math:`E|X - X'|/(2M)`)
``spread``               :math:`\sqrt{\overline{s^2}}`, :math:`s^2 = \frac{1}{M-1} \sum_i (x_i -
                         \bar x)^2` the unbiased member variance, averaged over points before the
                         root
``rmse_mean``            :math:`\sqrt{\overline{(\bar x - y)^2}}`, the RMSE of the ensemble mean
``spread_skill``         :math:`\sqrt{(M+1)/M}\ \text{spread} / \text{rmse\_mean}`, with Fortin et
                         al. (2014)'s finite-ensemble factor, so that a statistically consistent
                         ensemble (truth and members drawn alike) scores 1 at any :math:`M`;
                         ``nan`` when ``rmse_mean`` is 0
``interval_coverage``    the fraction of points whose :math:`y` lies in the members' central 80%
                         interval :math:`[q_{0.1}, q_{0.9}]` (linear interpolation between
                         order statistics, numpy's default); 0.8 is the nominal value for large
                         :math:`M`, :math:`(h - l)/(M + 1)` for the order statistics
                         :math:`x_{(l)}, x_{(h)}` the quantiles fall between
``interval_width``       the mean of :math:`q_{0.9} - q_{0.1}`: a sharper ensemble has a narrower
                         interval at the same coverage
``intervals``            the same two for the central 50%, 60%, 70%, 80% and 90% intervals (over
                         all points): ``[{"level", "coverage", "width"}, ...]``, the curve along
                         which two ensembles' widths compare at one coverage
                         (:func:`width_at_coverage`)
``rank_histogram``       :math:`M+1` counts: the rank of :math:`y` is :math:`\#\{x_i < y\}`. An
                         observation equal to :math:`e` members may take any rank from
                         :math:`\#\{x_i < y\}` to :math:`\#\{x_i < y\} + e`; it adds
                         :math:`1/(e+1)` to each (the expected counts of
                         ``pysteps.verification.ensscores.rankhist``, which draws one of them at
                         random). With ``rank_min``, pysteps's ``X_min``: points whose truth and
                         members are all below it are left out, and values below it are equal
                         to one another (all tied) and below every other value
``brier@T``              :math:`\overline{(p - o)^2}`, forecast probability :math:`p = \#\{x_i
                         \ge T\}/M` (``pysteps.postprocessing.ensemblestats.excprob``), event
                         :math:`o = [y \ge T]`
``reliability@T``        ``pysteps.verification.probscores.reldiag_*``: :math:`p` binned in
                         ``n_bins`` bins of :math:`[-10^{-6}, 1 + 10^{-6}]` (pysteps's edges),
                         each bin :math:`(e_{k-1}, e_k]`; per bin the mean :math:`p`
                         (``forecast_probability``, pysteps's ``r``), the event frequency
                         (``observed_frequency``, pysteps's ``f``), both ``nan`` for bins of
                         fewer than ``min_count`` points, and ``counts`` (all points of the bin)
``roc@T``,               ``pysteps.verification.probscores.ROC_curve_*``: for each probability
``roc_auc@T``            threshold :math:`q` of ``linspace(0, 1, n_prob_thresholds)``, the
                         forecast "yes" is :math:`p \ge q`; POD :math:`H/(H+M)`, POFD
                         :math:`F/(F+R)` counted over all points; the area by the trapezoid rule
                         on the curve closed by :math:`(1, 1)` and :math:`(0, 0)`; ``nan`` when
                         no event or no non-event was observed
=======================  ========================================================================

**Non-finite values.** A point whose truth or any member is NaN or infinite is left out of every
score (pysteps's rule for the CRPS and the rank histogram, and what ``excprob``'s NaN
probability does to the reliability diagram and the ROC curve); they are counted in
``nonfinite_points``.

**Ties in the CRPS.** Where the truth equals a member exactly (a zero of rain forecast as zero),
pysteps's ``CRPS`` leaves out the two intervals beside the truth in Hersbach's decomposition, so
its figure is lower than the integral: members ``(0, 0, 1, 2)`` and truth 0 give 0.3125 here and
0.0625 in pysteps. ``crps`` is the integral itself, the limit of pysteps's figure as the truth
moves off the tie; the two agree wherever no member equals the truth.

The results (:meth:`EnsembleScores.compute`): the scores over all points as floats, the curves as
lists, and ``per_lead_time`` (with a ``lead_axis``) the scalar scores and the rank histogram of
each lead time::

    {"members": M, "points": ..., "crps": ..., "crps_fair", "spread", "rmse_mean", "spread_skill",
     "rank_histogram": [M + 1 counts], "brier@THR", "roc_auc@THR",
     "reliability@THR": {"bin_centres", "forecast_probability", "observed_frequency", "counts",
                         "base_rate"},
     "roc@THR": {"probability_thresholds", "pod", "pofd"},
     "per_lead_time": {"crps": [L floats], ..., "rank_histogram": [L lists]}}

Example::

    >>> members = np.random.rand(20, 8, 4, 32, 32, 1)     # 20 members of (N, L, H, W, C)
    >>> truth = np.random.rand(8, 4, 32, 32, 1)
    >>> scores = EnsembleScores(thresholds=(0.5,), lead_axis=1)
    >>> for s in range(0, 8, 4):
    ...     scores.accumulate(members[:, s:s + 4], truth[s:s + 4])
    >>> results = scores.compute()
    >>> len(results["rank_histogram"]), len(results["per_lead_time"]["crps"])
    (21, 4)

References: Hersbach (2000), Wea. Forecasting 15, 559-570; Ferro (2014), Q. J. R. Meteorol. Soc.
140, 1917-1923; Fortin et al. (2014), J. Hydrometeor. 15, 1708-1713.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch

from ._checks import check_int, check_number, is_integer
from ._errors import ParameterError, ParameterTypeError
from .metrics import ArrayLike, _as_tensor

__all__ = ["EnsembleScores", "evaluate_ensemble", "width_at_coverage", "INTERVAL_LEVELS"]

#: pysteps widens the reliability diagram's bins by this much below 0 and above 1.
_RELIABILITY_PAD = 1e-6
#: the central intervals of ``intervals``, and the one of ``interval_coverage``/``interval_width``
INTERVAL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)
_MAIN_LEVEL = 0.8
_SUMS = ("abs", "pair", "var", "err") + tuple(f"{what}@{level:g}" for level in INTERVAL_LEVELS
                                              for what in ("cover", "width"))


def _label(threshold: float) -> str:
    return f"{threshold:g}"


def _check_thresholds(thresholds: Any) -> Tuple[float, ...]:
    """``thresholds`` (a number or a sequence of them) as a tuple of finite floats, without repeats."""
    if is_integer(thresholds) or isinstance(thresholds, (float, np.floating)):
        thresholds = (thresholds,)
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, Iterable):
        raise ParameterTypeError("thresholds", f"thresholds must be a number or a sequence of numbers, "
                                               f"got {thresholds!r}")
    return tuple(dict.fromkeys(check_number("thresholds", t) for t in thresholds))


def _ensemble_pair(members: ArrayLike, truth: ArrayLike,
                   lead_axis: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """``members`` as :math:`(M, L, P)` and ``truth`` as :math:`(L, P)` float64 tensors on the
    members' device: the lead axis first (:math:`L = 1` without one), the other axes flattened."""
    x, y = _as_tensor(members, "members"), _as_tensor(truth, "truth")
    if x.dim() != y.dim() + 1 or tuple(x.shape[1:]) != tuple(y.shape):
        raise ValueError(f"members must be shaped (members, *truth.shape) = (M, {', '.join(map(str, y.shape))}), "
                         f"members first; got members {tuple(x.shape)} and truth {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"members must hold an ensemble of at least 2 members along its first axis, got "
                         f"{x.shape[0]} (shape {tuple(x.shape)})")
    if y.numel() == 0:
        raise ValueError(f"truth holds no values (shape {tuple(y.shape)})")
    y, m = y.to(x.device), x.shape[0]
    if lead_axis is None:
        return x.reshape(m, 1, -1), y.reshape(1, -1)
    if not -y.dim() <= lead_axis < y.dim():
        raise ParameterError("lead_axis", f"lead_axis={lead_axis} is not an axis of truth, shape "
                                          f"{tuple(y.shape)} ({y.dim()} axes)")
    axis = lead_axis % y.dim()
    y, x = y.movedim(axis, 0), x.movedim(axis + 1, 1)
    return x.reshape(m, y.shape[0], -1), y.reshape(y.shape[0], -1)


def _point_terms(x: torch.Tensor, y: torch.Tensor) -> Dict[str, torch.Tensor]:
    r"""Per point (:math:`x` of shape :math:`(M, \dots)`, :math:`y` of shape :math:`(\dots)`):
    ``abs`` :math:`\frac{1}{M}\sum_i |x_i - y|`, ``pair`` :math:`\frac{1}{2M^2}\sum_{i,j}|x_i -
    x_j| = \frac{1}{M^2}\sum_k k(M-k)(x_{(k+1)} - x_{(k)})` (non-negative, 0 for equal members),
    ``var`` the unbiased member variance, ``err`` :math:`(\bar x - y)^2`, ``cover`` 1 where
    :math:`q_{0.1} \le y \le q_{0.9}` and ``width`` :math:`q_{0.9} - q_{0.1}` (the members' quantiles)."""
    m = x.shape[0]
    ordered = x.sort(dim=0).values
    gaps = ordered.diff(dim=0)
    k = torch.arange(1, m, dtype=x.dtype, device=x.device).view(-1, *([1] * (x.dim() - 1)))
    terms = {"abs": (x - y).abs().mean(0), "pair": (k * (m - k) * gaps).sum(0) / m ** 2,
             "var": x.var(0, correction=1), "err": (x.mean(0) - y) ** 2}
    for level in INTERVAL_LEVELS:
        lo, hi = (_order_quantile(ordered, q) for q in ((1 - level) / 2, (1 + level) / 2))
        terms[f"cover@{level:g}"] = ((y >= lo) & (y <= hi)).to(x.dtype)
        terms[f"width@{level:g}"] = hi - lo
    return terms


def _order_quantile(ordered: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile of members sorted along axis 0, interpolated linearly between order
    statistics at position :math:`q (M - 1)` (numpy's default method)."""
    pos = q * (ordered.shape[0] - 1)
    i = int(math.floor(pos))
    j = min(i + 1, ordered.shape[0] - 1)
    return ordered[i] + (pos - i) * (ordered[j] - ordered[i])


def _rank_counts(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, rank_min: Optional[float]) -> np.ndarray:
    r"""Rank histogram counts :math:`(L, M+1)` of the points ``keep`` (:math:`x` of shape
    :math:`(M, L, P)`): rank :math:`r = \#\{x_i < y\}`, and an observation tied with :math:`e`
    members adds :math:`1/(e+1)` to each rank :math:`r, \dots, r + e`."""
    m, leads = x.shape[0], x.shape[1]
    if rank_min is not None:
        keep = keep & ((y >= rank_min) | (x >= rank_min).any(0))
        x = torch.where(x < rank_min, -math.inf, x)   # below rank_min: all equal, below the rest
        y = torch.where(y < rank_min, -math.inf, y)
    less, ties = (x < y).sum(0), (x == y).sum(0)
    first = torch.arange(leads, device=x.device).view(-1, 1) * (m + 2) + less
    share = (1.0 / (ties + 1).to(torch.float64))[keep]
    size = leads * (m + 2)   # a difference array: +share at the first rank, -share past the last
    steps = torch.bincount(first[keep], share, size) - torch.bincount((first + ties + 1)[keep], share, size)
    return steps.view(leads, m + 2).cumsum(1)[:, :m + 1].cpu().numpy()


def _event_counts(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, threshold: float) -> np.ndarray:
    """Counts :math:`(L, M+1, 2)` of the points ``keep`` by how many members reach ``threshold``
    (``x >= threshold``) and whether the truth does (0: no, 1: yes)."""
    m, leads = x.shape[0], x.shape[1]
    reached = (x >= threshold).sum(0)
    lead = torch.arange(leads, device=x.device).view(-1, 1)
    index = ((lead * (m + 1) + reached) * 2 + (y >= threshold).long())[keep]
    return torch.bincount(index, minlength=leads * (m + 1) * 2).view(leads, m + 1, 2).cpu().numpy()


def _divide(a: Any, b: Any) -> np.ndarray:
    """``a / b``, ``nan`` where ``b`` is 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)


def _brier(counts: np.ndarray) -> np.ndarray:
    r"""Brier score from event counts :math:`(\dots, M+1, 2)`: :math:`\sum_j [n_{j,0}\, p_j^2 +
    n_{j,1} (1 - p_j)^2] / \sum_j (n_{j,0} + n_{j,1})`, :math:`p_j = j/M`."""
    p = np.arange(counts.shape[-2]) / (counts.shape[-2] - 1)
    squares = (counts[..., 0] * p ** 2 + counts[..., 1] * (1.0 - p) ** 2).sum(-1)
    return _divide(squares, counts.sum((-2, -1)))


def _reliability(counts: np.ndarray, n_bins: int, min_count: int) -> Dict[str, Any]:
    """The reliability diagram of event counts :math:`(M+1, 2)` (pysteps's bins and outputs)."""
    p = np.arange(counts.shape[0]) / (counts.shape[0] - 1)
    edges = np.linspace(-_RELIABILITY_PAD, 1 + _RELIABILITY_PAD, n_bins + 1)
    bins = np.searchsorted(edges, p, side="left") - 1   # bin k holds (edges[k], edges[k + 1]]
    total = np.bincount(bins, counts.sum(1), n_bins)
    events = np.bincount(bins, counts[:, 1], n_bins)
    probs = np.bincount(bins, p * counts.sum(1), n_bins)
    shown = total >= max(min_count, 1)
    return {"bin_centres": ((np.arange(n_bins) + 0.5) / n_bins).tolist(),
            "forecast_probability": np.where(shown, _divide(probs, total), np.nan).tolist(),
            "observed_frequency": np.where(shown, _divide(events, total), np.nan).tolist(),
            "counts": [int(c) for c in total],
            "base_rate": float(_divide(counts[:, 1].sum(), counts.sum()))}


def _roc(counts: np.ndarray, n_prob_thresholds: int) -> Dict[str, Any]:
    r"""The ROC curve and its area from event counts :math:`(M+1, 2)`: at each probability
    threshold :math:`q`, hits and false alarms are the events and non-events with :math:`p \ge q`."""
    p = np.arange(counts.shape[0]) / (counts.shape[0] - 1)
    q = np.linspace(0.0, 1.0, n_prob_thresholds)
    yes = p[None, :] >= q[:, None]                      # (thresholds, M + 1)
    pod = _divide(yes @ counts[:, 1], counts[:, 1].sum())
    pofd = _divide(yes @ counts[:, 0], counts[:, 0].sum())
    x, y = np.concatenate(([1.0], pofd, [0.0])), np.concatenate(([1.0], pod, [0.0]))
    area = float(np.sum((x[:-1] - x[1:]) * (y[:-1] + y[1:]) / 2.0))
    return {"probability_thresholds": q.tolist(), "pod": pod.tolist(), "pofd": pofd.tolist(), "area": area}


class EnsembleScores:
    r"""Running sums of an ensemble forecast's probabilistic scores: CRPS (plain and fair), the
    spread and the ensemble mean's RMSE, the rank histogram, and per event threshold the Brier
    score, the reliability diagram and the ROC curve. The scores are defined in this module's
    table; sums are kept per lead time, in float64, so batching cannot change the numbers and two
    of them fed different points :meth:`merge` into the one that saw all of them.

    Args:
        thresholds (float or sequence of float): event thresholds :math:`T` (an event is a value
            :math:`\ge T`), for keys ``brier@T``, ``reliability@T``, ``roc@T``, ``roc_auc@T``.
        lead_axis (int, optional): the axis **of the truth** that holds the lead time (1 for
            truth :math:`(N, L, H, W, C)`); results then have ``per_lead_time``. ``None``: all
            points pooled.
        n_bins (int): bins of the reliability diagram (pysteps's ``n_bins``).
        min_count (int): bins with fewer points get ``nan`` in the reliability diagram (pysteps's
            ``min_count``, applied here to the totals, not batch by batch).
        n_prob_thresholds (int): probability thresholds of the ROC curve, evenly spaced from 0
            to 1 (pysteps's ``n_prob_thrs``).
        rank_min (float, optional): pysteps's ``X_min`` for the rank histogram: points where
            the truth and every member are below it are not ranked.

    Shape:
        - :meth:`accumulate`: members :math:`(M, *S)`, truth :math:`S`, :math:`M \ge 2` fixed
          over the batches, and with ``lead_axis`` the same number of lead times in each.

    Example::

        >>> scores = EnsembleScores(thresholds=(1.0,), lead_axis=1)
        >>> scores.accumulate(np.random.rand(10, 4, 3, 16, 16, 1) * 2, np.random.rand(4, 3, 16, 16, 1) * 2)
        >>> results = scores.compute()
        >>> sorted(k for k in results if "@" in k)
        ['brier@1', 'reliability@1', 'roc@1', 'roc_auc@1']
    """

    def __init__(self, thresholds: Any = (), *, lead_axis: Optional[int] = None, n_bins: int = 10,
                 min_count: int = 10, n_prob_thresholds: int = 10, rank_min: Optional[float] = None) -> None:
        self.thresholds = _check_thresholds(thresholds)
        if lead_axis is not None and not is_integer(lead_axis):
            raise ParameterTypeError("lead_axis", f"lead_axis must be an int (an axis of truth) or None, "
                                                  f"got {lead_axis!r}")
        self.lead_axis = None if lead_axis is None else int(lead_axis)
        self.n_bins = check_int("n_bins", n_bins, minimum=1)
        self.min_count = check_int("min_count", min_count, minimum=0)
        self.n_prob_thresholds = check_int("n_prob_thresholds", n_prob_thresholds, minimum=2)
        self.rank_min = None if rank_min is None else check_number("rank_min", rank_min)
        self.reset()

    def _settings(self) -> tuple:
        return (self.thresholds, self.lead_axis, self.n_bins, self.min_count, self.n_prob_thresholds,
                self.rank_min)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.members: Optional[int] = None
        self.lead_times: Optional[int] = None
        self.nonfinite = 0

    def _start(self, members: int, lead_times: int) -> None:
        """The sums for ``members`` members and ``lead_times`` lead times, at zero."""
        self.members, self.lead_times = members, lead_times
        self.points = np.zeros(lead_times, dtype=np.int64)
        self.sums = {name: np.zeros(lead_times) for name in _SUMS}
        self.ranks = np.zeros((lead_times, members + 1))
        self.events = {t: np.zeros((lead_times, members + 1, 2), dtype=np.int64) for t in self.thresholds}

    def accumulate(self, members: ArrayLike, truth: ArrayLike) -> None:
        r"""Add the points of ``truth`` (shape :math:`S`) and their ensemble ``members``
        (shape :math:`(M, *S)`)."""
        x, y = _ensemble_pair(members, truth, self.lead_axis)
        m, leads = x.shape[0], x.shape[1]
        if self.members is None:
            self._start(m, leads)
        elif (m, leads) != (self.members, self.lead_times):
            raise ValueError(f"members holds {m} members and {leads} lead time(s); the earlier batches held "
                             f"{self.members} and {self.lead_times}")
        keep = torch.isfinite(y) & torch.isfinite(x).all(0)
        x, y = torch.where(keep, x, 0.0), torch.where(keep, y, 0.0)   # left-out points add 0 to every sum
        self.nonfinite += int((~keep).sum())
        self.points += keep.sum(1).cpu().numpy()
        for name, terms in _point_terms(x, y).items():
            self.sums[name] += (terms * keep).sum(1).cpu().numpy()   # a left-out point adds 0, even to cover
        self.ranks += _rank_counts(x, y, keep, self.rank_min)
        for t in self.thresholds:
            self.events[t] += _event_counts(x, y, keep, t)

    def merge(self, other: "EnsembleScores") -> "EnsembleScores":
        """Add ``other``'s sums (the same settings and ensemble, other points); returns self."""
        if not isinstance(other, EnsembleScores):
            raise TypeError(f"merge takes an EnsembleScores, got {type(other).__name__}")
        if other._settings() != self._settings():
            raise ValueError(f"EnsembleScores.merge: the two were made with different settings (thresholds, "
                             f"lead_axis, n_bins, min_count, n_prob_thresholds, rank_min): {self._settings()} "
                             f"and {other._settings()}")
        if other.members is None:
            return self
        if self.members is None:
            self._start(other.members, other.lead_times)
        elif (other.members, other.lead_times) != (self.members, self.lead_times):
            raise ValueError(f"EnsembleScores.merge: {other.members} members and {other.lead_times} lead time(s) "
                             f"cannot join {self.members} and {self.lead_times}")
        self.points = self.points + other.points
        self.sums = {name: self.sums[name] + other.sums[name] for name in _SUMS}
        self.ranks = self.ranks + other.ranks
        self.events = {t: self.events[t] + other.events[t] for t in self.thresholds}
        self.nonfinite += other.nonfinite
        return self

    def _scalar_scores(self, points: np.ndarray, sums: Dict[str, np.ndarray],
                       events: Dict[float, np.ndarray]) -> Dict[str, np.ndarray]:
        """The scalar scores from sums with a leading lead axis (or one pooled entry)."""
        m = self.members
        out = {"crps": _divide(sums["abs"] - sums["pair"], points),
               "crps_fair": _divide(sums["abs"] - sums["pair"] * m / (m - 1), points),
               "spread": np.sqrt(_divide(sums["var"], points)),
               "rmse_mean": np.sqrt(_divide(sums["err"], points)),
               "interval_coverage": _divide(sums[f"cover@{_MAIN_LEVEL:g}"], points),
               "interval_width": _divide(sums[f"width@{_MAIN_LEVEL:g}"], points)}
        out["spread_skill"] = math.sqrt((m + 1) / m) * _divide(out["spread"], out["rmse_mean"])
        for t, counts in events.items():
            out[f"brier@{_label(t)}"] = _brier(counts)
            out[f"roc_auc@{_label(t)}"] = np.array([_roc(c, self.n_prob_thresholds)["area"] for c in counts])
        return out

    def compute(self) -> Dict[str, Any]:
        """The scores over all points (floats and lists) and, with a ``lead_axis``,
        ``per_lead_time``; see the module for the keys and their definitions."""
        if self.members is None:
            raise RuntimeError("EnsembleScores.compute: nothing was accumulated; call accumulate(members, truth) first")
        pooled = {name: s.sum(0, keepdims=True) for name, s in self.sums.items()}
        events = {t: c.sum(0) for t, c in self.events.items()}
        scalars = self._scalar_scores(self.points.sum(keepdims=True), pooled, {t: c[None] for t, c in events.items()})
        results: Dict[str, Any] = {"members": self.members, "points": int(self.points.sum())}
        results.update({k: float(v[0]) for k, v in scalars.items()})
        results["rank_histogram"] = self.ranks.sum(0).tolist()
        results["rank_min"] = self.rank_min
        total = max(int(self.points.sum()), 1)
        results["intervals"] = [{"level": level, "coverage": float(pooled[f"cover@{level:g}"][0]) / total,
                                 "width": float(pooled[f"width@{level:g}"][0]) / total} for level in INTERVAL_LEVELS]
        for t, counts in events.items():
            results[f"reliability@{_label(t)}"] = _reliability(counts, self.n_bins, self.min_count)
            results[f"roc@{_label(t)}"] = {k: v for k, v in _roc(counts, self.n_prob_thresholds).items()
                                           if k != "area"}
        if self.nonfinite:
            results["nonfinite_points"] = self.nonfinite
        if self.lead_axis is not None:
            per = self._scalar_scores(self.points, self.sums, self.events)
            results["per_lead_time"] = {k: [float(v) for v in arr] for k, arr in per.items()}
            results["per_lead_time"]["rank_histogram"] = self.ranks.tolist()
        return results


def width_at_coverage(intervals: Sequence[Dict[str, float]], coverage: float) -> float:
    """The mean width of an ensemble's central interval at ``coverage``, interpolated linearly
    along its ``intervals`` curve (:class:`EnsembleScores`' ``results["intervals"]``); ``nan``
    outside the coverages measured.

    Example::

        >>> width_at_coverage([{"coverage": 0.5, "width": 2.0}, {"coverage": 0.7, "width": 3.0}], 0.6)
        2.5
    """
    c = np.array([float(i["coverage"]) for i in intervals])
    w = np.array([float(i["width"]) for i in intervals])
    order = np.argsort(c)
    c, w = c[order], w[order]
    if not c[0] <= coverage <= c[-1]:
        return float("nan")
    return float(np.interp(coverage, c, w))


def evaluate_ensemble(members: ArrayLike, truth: ArrayLike, thresholds: Any = (), *,
                      lead_axis: Optional[int] = None, n_bins: int = 10, min_count: int = 10,
                      n_prob_thresholds: int = 10, rank_min: Optional[float] = None) -> Dict[str, Any]:
    r"""Score an ensemble forecast in one pass: :class:`EnsembleScores` fed the whole arrays.

    Args:
        members: :math:`(M, *S)`, :math:`M \ge 2` members first, each shaped like ``truth``.
        truth: :math:`S`, e.g. :math:`(N, L, H, W, C)` with ``lead_axis=1``.
        thresholds, lead_axis, n_bins, min_count, n_prob_thresholds, rank_min: as
            :class:`EnsembleScores`.

    Returns:
        :meth:`EnsembleScores.compute`'s dict.

    Example::

        >>> rng = np.random.default_rng(0)
        >>> results = evaluate_ensemble(rng.normal(size=(50, 1000)), rng.normal(size=1000))
        >>> round(results["spread_skill"], 1)
        1.0
    """
    scores = EnsembleScores(thresholds, lead_axis=lead_axis, n_bins=n_bins, min_count=min_count,
                            n_prob_thresholds=n_prob_thresholds, rank_min=rank_min)
    scores.accumulate(members, truth)
    return scores.compute()
