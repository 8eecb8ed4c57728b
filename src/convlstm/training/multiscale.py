r"""Multi-scale samples for :class:`~convlstm.training.GridDataModule`: which closeness, period
and trend streams a run uses, their intervals, and the per-sample features (calendar of the
target time, external series of the last observed step).

:class:`MultiScale` resolves the options of :class:`~convlstm.training.FitConfig` on the data (the
datasets are built by :class:`~convlstm.training.datasets.MultiScaleBuilder`), and turns them back
into plain data for checkpoints.

Feature layout, per sample, :math:`F = 6 [\text{calendar}] + \sum_k F_k` columns:
:data:`convlstm.data.CALENDAR_FEATURES` of the first target step (when ``calendar`` or
``holidays`` is on), then each external series ``k`` (``(T,)`` or ``(T, F_k)``, min-max scaled
with the training part's range) at the sample's last observed step :math:`t - g - 1`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import data as _data

__all__ = ["MultiScale", "auto_streams", "load_times"]


def _column_names(key: str, columns: int) -> List[str]:
    """The feature names of an external series with ``columns`` columns: ``key``, or ``key[i]``."""
    return [key] if columns == 1 else [f"{key}[{i}]" for i in range(columns)]


def load_times(path: Optional[str], n_time: int) -> Optional[np.ndarray]:
    """The file's time stamps as ``datetime64[m]`` (strings, ``datetime64`` or CF numbers with
    ``units``: :func:`convlstm.data.read_times`), or ``None`` when it has none (or they cannot be
    read, or their count is not the series' length)."""
    if path is None:
        return None
    try:
        times = _data.read_times(path)
    except (ValueError, KeyError, OSError):
        return None
    return times if len(times) == n_time else None


def auto_streams(steps_per_day: Optional[int], train_steps: int) -> Tuple[int, int]:
    """``(period, trend)`` for ``period=None`` / ``trend=None`` with a model that takes the streams
    and features (``st-convlstm``; :class:`MultiScale` ``model_takes_streams=True``), for a series
    with a known day (time stamps or ``steps_per_day``): the period (yesterday's frame at the
    target's time) when the training part holds at least one week, the trend (last week's) when it
    holds at least four, so that a stream never costs more than a quarter of the training samples
    (each sample needs its oldest lag inside the series); ``(0, 0)`` without a known day. With time
    stamps the calendar features come on with the period.

    Why (``benchmarks/st_protocol.py``, ``benchmarks/skill_suite.py``, ``docs/crowd-flow.md``):
    on BikeNYC (41 days of training) the period and trend frames lower ``st-convlstm``'s test RMSE
    by 11% (12.6% with the calendar) for the same budget; on a held-out NYC taxi grid with 22 days
    of training the week-old lag dropped 336 of 1,071 samples and the model was 4.6% worse in RMSE
    than with the period alone (21.19 against 20.23 pickups per half-hour). The streams do not help
    ``convlstm-warp`` (+0.8% on BikeNYC, within noise), which therefore keeps its plain windows by
    default; a radar afternoon (5-minute steps, 92 frames) has no earlier day.

    Example::

        >>> auto_streams(24, 1000), auto_streams(48, 1071), auto_streams(288, 64), auto_streams(None, 5000)
        ((1, 1), (1, 0), (0, 0), (0, 0))
    """
    if steps_per_day is None or train_steps < 7 * steps_per_day:
        return 0, 0
    return 1, int(train_steps >= 4 * 7 * steps_per_day)


class MultiScale:
    """The multi-scale options of a run. ``None`` options are automatic (:func:`auto_streams`) when
    ``model_takes_streams`` is True (the run's model takes streams and features), else off (0,
    False).

    :meth:`resolve` fixes them on the data; :attr:`in_use` then says whether the run's samples
    are multi-scale, and :attr:`streams`, :attr:`num_features`, :attr:`features` what they hold.
    """

    def __init__(self, closeness: Optional[int] = None, period: Optional[int] = None, trend: Optional[int] = None,
                 period_interval: Optional[int] = None, trend_interval: Optional[int] = None,
                 steps_per_day: Optional[int] = None, calendar: Optional[bool] = None,
                 holidays: Any = None, external: Sequence[str] = (), external_data: Optional[str] = None,
                 external_range: Optional[Dict[str, List[List[float]]]] = None, model_takes_streams: bool = False) -> None:
        self.closeness, self.period, self.trend = closeness, period, trend
        self.period_interval, self.trend_interval, self.steps_per_day = period_interval, trend_interval, steps_per_day
        self.calendar = calendar
        if isinstance(holidays, (list, tuple)):
            self.holidays: Optional[np.ndarray] = np.asarray(holidays, dtype="datetime64[D]")
        elif holidays is not None:
            self.holidays = _data.read_holidays(holidays)
        else:
            self.holidays = None
        self.external = list(external or ())
        self.external_data = external_data
        self.external_range = dict(external_range or {})
        # None options resolved by auto_streams: the run's model takes streams and features
        self.model_takes_streams = bool(model_takes_streams)
        self.streams: Tuple[int, int, int] = (0, 0, 0)
        self.num_features = 0
        self.feature_names: List[str] = []
        self.features: Optional[np.ndarray] = None
        self.in_use = False                             # resolve() chose multi-scale samples
        self._train_range: Tuple[int, int] = (0, 0)    # external series are scaled with its range

    @property
    def requested(self) -> bool:
        """True when an option asks for multi-scale samples whatever the data and the model."""
        return (self.closeness is not None or bool(self.period) or bool(self.trend) or bool(self.calendar)
                or self.holidays is not None or bool(self.external))

    def resolve(self, n_time: int, times: Optional[np.ndarray], input_steps: int, gap: int, train: Tuple[int, int],
                path: Optional[str]) -> bool:
        """Fix the streams, intervals and features for a series of ``n_time`` steps with
        ``times`` (or None) whose training part is ``train``; returns :attr:`in_use`."""
        steps_per_day = self._steps_per_day(times)
        auto_period, auto_trend = (auto_streams(steps_per_day, train[1] - train[0]) if self.model_takes_streams
                                   else (0, 0))
        period = auto_period if self.period is None else self.period
        trend = auto_trend if self.trend is None else self.trend
        calendar = self.calendar
        if calendar is None:
            calendar = bool(self.model_takes_streams and times is not None and (period or trend))
        if not (self.requested or period or trend):
            return False
        period_interval = self.period_interval if self.period_interval is not None else steps_per_day
        trend_interval = (self.trend_interval if self.trend_interval is not None
                          else None if steps_per_day is None else 7 * steps_per_day)
        for name, count, interval in (("period", period, period_interval), ("trend", trend, trend_interval)):
            if count and interval is None:
                raise ValueError(f"--{name} {count} needs the {name}'s interval: the data has no time stamps "
                                 f"that give the length of a day; give --{name}-interval STEPS or --steps-per-day N")
        if (calendar or self.holidays is not None) and times is None:
            raise ValueError("--calendar and --holidays need time stamps in the data file (an array named time, "
                             "times, date, dates, timestamp or timestamps, one per step, as datetime64 or "
                             "YYYYMMDDhhmm / DeepST YYYYMMDDss / ISO strings); this data has none that can be read")
        closeness = input_steps if self.closeness is None else self.closeness
        self.streams = (int(closeness), int(period), int(trend))
        self.period_interval = int(period_interval) if period else self.period_interval
        self.trend_interval = int(trend_interval) if trend else self.trend_interval
        self.steps_per_day = steps_per_day
        self.calendar = bool(calendar or self.holidays is not None)
        self._train_range = train
        self.features, self.feature_names = self.feature_rows(np.arange(n_time), times, n_time, gap, path)
        self.num_features = len(self.feature_names)
        self.in_use = True
        return True

    def _steps_per_day(self, times: Optional[np.ndarray]) -> Optional[int]:
        """The option, else the one the time stamps give, else ``None``."""
        if self.steps_per_day is not None or times is None:
            return self.steps_per_day
        try:
            return _data.steps_per_day(times)
        except ValueError:
            return None

    def feature_rows(self, targets: np.ndarray, times: Optional[np.ndarray], n_time: int, gap: int,
                     path: Optional[str]) -> Tuple[Optional[np.ndarray], List[str]]:
        """The feature rows ``(len(targets), F)`` (``None`` without features) of samples whose first
        target steps are ``targets`` in a series of ``n_time`` steps with ``times``; a target may lie
        up to ``gap + 1`` steps after the series' end (a forecast), its time stamp continuing the
        series' step. Returns the rows and the column names."""
        targets = np.asarray(targets, dtype=np.int64)
        columns, names = [], []
        if self.calendar:
            if times is None:
                raise ValueError("the model was trained with calendar features: the data needs its time stamps")
            step = np.timedelta64(1440 // int(self.steps_per_day or _data.steps_per_day(times)), "m")
            stamps = times[np.minimum(targets, n_time - 1)] + np.maximum(targets - n_time + 1, 0) * step
            columns.append(_data.calendar_features(stamps, self.holidays))
            names += list(_data.CALENDAR_FEATURES)
        for key in self.external:
            values = self._external(key, n_time, path)
            last = targets - gap - 1                         # the last observed step of each sample
            rows = np.zeros((len(targets), values.shape[1]))
            ok = last >= 0
            rows[ok] = values[last[ok]]
            columns.append(rows)
            names += _column_names(key, values.shape[1])
        return (np.concatenate(columns, axis=1).astype(np.float32) if columns else None), names

    def _external(self, key: str, n_time: int, path: Optional[str]) -> np.ndarray:
        """The external series ``key`` (T, F_k), min-max scaled with the training part's range."""
        source = self.external_data or path
        if source is None:
            raise ValueError(f"--external {key}: no file to read it from; give --external-data FILE")
        values = np.asarray(_data.load_array(source, key))
        if values.dtype.kind not in "iuf" or values.ndim not in (1, 2) or values.shape[0] != n_time:
            raise ValueError(f"--external {key}: expected numbers shaped (T,) or (T, F) with T = {n_time} (the "
                             f"series' steps), got dtype {values.dtype} and shape {values.shape} in {source}")
        values = values.reshape(n_time, -1).astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"--external {key}: the series holds NaN or inf values; fill them first")
        if key not in self.external_range:
            part = values[self._train_range[0]:self._train_range[1]]
            self.external_range[key] = [part.min(axis=0).tolist(), part.max(axis=0).tolist()]
        lo, span = self._external_scaling(key)
        return (values - lo) / span

    def _external_scaling(self, key: str) -> Tuple[np.ndarray, np.ndarray]:
        """``(low, span)`` of the external series ``key``: its training part's minimum and range
        (1 where the range is 0), per column."""
        lo, hi = (np.asarray(v, dtype=np.float64) for v in self.external_range[key])
        return lo, np.where(hi > lo, hi - lo, 1.0)

    def feature_scaling(self) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        """``(low, span, names)`` per feature column, such that a feature row is
        ``(value - low) / span`` of the values in their own units: 0 and 1 for the calendar columns
        (already features), each external series' training range (as :meth:`feature_rows` scales
        it) for the others; ``names`` as :meth:`feature_rows` gives them. Needs
        :attr:`external_range` (fitted, or read back from a checkpoint)."""
        n = len(_data.CALENDAR_FEATURES)
        low, span = ([np.zeros(n)], [np.ones(n)]) if self.calendar else ([], [])
        names = list(_data.CALENDAR_FEATURES) if self.calendar else []
        for key in self.external:
            lo, sp = self._external_scaling(key)
            low.append(lo.reshape(-1))
            span.append(sp.reshape(-1))
            names += _column_names(key, lo.size)
        return np.concatenate(low or [np.zeros(0)]), np.concatenate(span or [np.ones(0)]), names

    def lags(self, gap: int) -> np.ndarray:
        """The stacked input offsets (trend, period, closeness) relative to the first target."""
        c, p, t = self.streams
        return _data.stacked_lags(_data.multiscale_offsets(c, p, t, period_interval=self.period_interval,
                                                           trend_interval=self.trend_interval, gap=gap))

    def describe(self, datasets: Dict[str, Any]) -> str:
        """One line for the log: streams, intervals, features and samples per part (dropped)."""
        c, p, t = self.streams
        parts = ", ".join(f"{name} {len(ds)}" + (f" ({ds.dropped} dropped: lags before the series' start)"
                                                 if ds.dropped else "") for name, ds in datasets.items())
        feats = f"; features {self.feature_names}" if self.num_features else ""
        return (f"multi-scale samples: closeness {c}, period {p} x {self.period_interval} steps, trend {t} x "
                f"{self.trend_interval} steps{feats}; samples {parts}")

    def state_dict(self) -> Dict[str, Any]:
        c, p, t = self.streams
        return {"closeness": c, "period": p, "trend": t, "period_interval": self.period_interval,
                "trend_interval": self.trend_interval, "steps_per_day": self.steps_per_day,
                "calendar": bool(self.calendar),
                "holidays": None if self.holidays is None else [str(d) for d in self.holidays],
                "external": list(self.external), "external_data": self.external_data,
                "external_range": {k: [list(map(float, v[0])), list(map(float, v[1]))]
                                   for k, v in self.external_range.items()}}

    @classmethod
    def from_state(cls, state: Optional[Dict[str, Any]]) -> "MultiScale":
        """Rebuild the options of :meth:`state_dict` (to be resolved again on the data)."""
        if not state:
            return cls(period=0, trend=0)
        ms = cls(**state)
        ms.streams = (int(state["closeness"]), int(state["period"]), int(state["trend"]))
        return ms
