r"""Baselines: the simple forecasts a model must beat, behind one interface and one registry.

Every baseline is a :class:`Baseline`: given a :class:`Batch` (the inputs of some samples in
the data's units, and how far ahead to forecast) it returns a forecast shaped like the
targets, :math:`(N, L, H, W, C)`, in the same units. The scoring engine
(:class:`convlstm.scoring.MetricAccumulator`) scores the model and every baseline the same
way, and :func:`convlstm.training.evaluate` builds the baselines named in ``--baselines`` from
the registry, so a new baseline is one class and one decorator::

    >>> @register_baseline
    ... class LastMean(Baseline):
    ...     '''The mean of the input frames, for every lead time.'''
    ...     name = "input-mean"
    ...     def forecast(self, batch):
    ...         mean = batch.inputs.mean(dim=1, keepdim=True)
    ...         return mean.expand(-1, batch.lead_time, -1, -1, -1)
    >>> # convlstm evaluate RUN --baselines persistence input-mean   (or evaluate(..., baselines=[...]))

The built-in baselines:

=================  ===================================================================================
``persistence``    :class:`Persistence`: the last input frame, repeated for every lead time
``climatology``    :class:`Climatology`: the mean training frame (per cell and channel); with time
                   stamps, the mean of each cell at the hour of day of each target
                   (:class:`ClimatologyByTimeOfDay`; hours never seen in training get the mean
                   training frame, and evaluation says which)
``extrapolation``  :class:`Extrapolation`: the last input frame moved along the motion of the input
                   frames (pysteps's optical flow, Lucas-Kanade by default, semi-Lagrangian
                   advection; the optional extra ``radar``); see :mod:`convlstm.extrapolation`
=================  ===================================================================================

Two ensemble baselines join the same registry (:mod:`convlstm.ensemble_baselines`): ``steps``
(pysteps's STEPS nowcast) and ``dressed`` (the model's forecast plus its own validation errors);
``evaluate`` scores their members with probabilistic scores and their ensemble mean like the above.

The functions :func:`persistence_forecast` and :func:`climatology_forecast` make the same
forecasts from plain arrays.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["Baseline", "Batch", "Persistence", "Climatology", "Extrapolation", "ClimatologyByTimeOfDay",
           "register_baseline", "get_baseline", "baseline_names", "BUILTIN_BASELINES",
           "persistence_forecast", "climatology_forecast"]


# ---------------------------------------------------------------------------------- interface
@dataclass
class Batch:
    r"""What a baseline sees of a batch of samples.

    Attributes:
        inputs: :math:`(N, T_{in}, H, W, C)` the input frames in the data's units, oldest first
            (for closeness/period/trend samples: the closeness frames only, the recent past).
        lead_time: :math:`L`, the frames to forecast.
        gap: steps between the last input frame and the first target.
        first: the index of the batch's first sample in the part of the data being scored (for
            baselines that look up something per sample, such as the target's hour of day).
        forecast: :math:`(N, L, H, W, C)` the model's forecast of these samples in the data's
            units, for baselines built on it (``dressed``); ``None`` where there is none.
    """
    inputs: torch.Tensor
    lead_time: int
    gap: int = 0
    first: int = 0
    forecast: Optional[torch.Tensor] = None

    @property
    def num_samples(self) -> int:
        return int(self.inputs.shape[0])


class Baseline:
    r"""A forecast to beat. Subclasses set :attr:`name` and implement :meth:`forecast`.

    :meth:`from_datamodule` builds the baseline for scoring one part of a
    :class:`~convlstm.training.GridDataModule` (the default: the class with no arguments);
    baselines fitted on the training data (climatology) override it. :meth:`describe` is the
    line evaluation prints about the baseline (``None``: nothing to say).

    Shape:
        - :meth:`forecast`: ``batch.inputs`` :math:`(N, T_{in}, H, W, C)` ->
          :math:`(N, L, H, W, C)`, a float tensor on the inputs' device, in the data's units.
    """

    #: the registry name: ``--baselines NAME``, ``results[NAME]``.
    name: ClassVar[str] = ""

    def forecast(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}.forecast")

    @classmethod
    def from_datamodule(cls, datamodule: Any, part: str, **options: Any) -> "Baseline":
        """This baseline for scoring ``part`` of ``datamodule``; ``options`` are the scoring
        options (``extrapolation_method``, ...): each baseline takes the ones it knows."""
        return cls()

    def describe(self) -> Optional[str]:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_REGISTRY: Dict[str, Type[Baseline]] = {}


def register_baseline(cls: Type[Baseline]) -> Type[Baseline]:
    """Class decorator: make ``cls`` (a :class:`Baseline` with a ``name``) available by name to
    :func:`get_baseline`, :func:`convlstm.training.evaluate` and the scoring engine."""
    if not (isinstance(cls, type) and issubclass(cls, Baseline)):
        raise TypeError(f"register_baseline takes a Baseline subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name or name != name.strip() or name.lower() != name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty lower-case name, got {name!r}")
    if name == "model":
        raise ValueError("'model' is the name of the forecast being scored; choose another baseline name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"a baseline named {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls
    return cls


def baseline_names() -> Tuple[str, ...]:
    """The names of every registered baseline, built-in ones first."""
    return tuple(_REGISTRY)


def get_baseline(name: str) -> Type[Baseline]:
    """The baseline class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    cls = _REGISTRY.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"baselines: unknown baseline {name!r}; choose from {', '.join(_REGISTRY)}")
    return cls


# ---------------------------------------------------------------------------------- array forms
def _check_lead_time(lead_time: Any) -> int:
    if isinstance(lead_time, bool) or not isinstance(lead_time, (int, np.integer)):
        raise TypeError(f"lead_time must be a positive int, got {lead_time!r}")
    if lead_time < 1:
        raise ValueError(f"lead_time must be >= 1, got {lead_time}")
    return int(lead_time)


def persistence_forecast(inputs: ArrayLike, lead_time: int) -> ArrayLike:
    r"""The persistence baseline: the last input frame, repeated ``lead_time`` times.

    Shape:
        - inputs: :math:`(N, T_{in}, H, W, C)`, numpy or torch
        - output: :math:`(N, \text{lead\_time}, H, W, C)`, of the input's type (a broadcast view
          for numpy, an expanded tensor for torch: copy it before writing into it)

    Example::

        >>> persistence_forecast(np.arange(4.0).reshape(1, 4, 1, 1, 1), 2).ravel()
        array([3., 3.])
    """
    lead_time = _check_lead_time(lead_time)
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 5:
            raise ValueError(f"inputs must be 5D (samples, time, rows, cols, channels), got shape {tuple(inputs.shape)}")
        last = inputs[:, -1:]
        return last.expand(last.shape[0], lead_time, *last.shape[2:])
    if not isinstance(inputs, np.ndarray):
        raise TypeError(f"inputs must be a numpy array or a torch tensor, got {type(inputs).__name__}")
    if inputs.ndim != 5:
        raise ValueError(f"inputs must be 5D (samples, time, rows, cols, channels), got shape {inputs.shape}")
    last = inputs[:, -1:]
    return np.broadcast_to(last, (last.shape[0], lead_time) + last.shape[2:])


def climatology_forecast(train_mean: ArrayLike, num_samples: int, lead_time: int) -> ArrayLike:
    r"""The climatology baseline: one mean frame (usually ``train.mean(axis=0)`` over the training
    frames, per cell and channel) forecast for every sample and lead time.

    Shape:
        - train_mean: :math:`(H, W, C)`
        - output: :math:`(\text{num\_samples}, \text{lead\_time}, H, W, C)`, a read-only broadcast
          view (numpy) or an expanded tensor (torch)
    """
    lead_time = _check_lead_time(lead_time)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    if isinstance(train_mean, torch.Tensor):
        if train_mean.dim() != 3:
            raise ValueError(f"train_mean must be a (rows, cols, channels) frame, got shape {tuple(train_mean.shape)}")
        return train_mean.expand(int(num_samples), lead_time, *train_mean.shape)
    if not isinstance(train_mean, np.ndarray):
        raise TypeError(f"train_mean must be a numpy array or a torch tensor, got {type(train_mean).__name__}")
    if train_mean.ndim != 3:
        raise ValueError(f"train_mean must be a (rows, cols, channels) frame, got shape {train_mean.shape}")
    return np.broadcast_to(train_mean, (int(num_samples), lead_time) + train_mean.shape)


class ClimatologyByTimeOfDay:
    r"""Per-cell, per-channel mean at each time of day (or any cyclic index): the baseline for
    fields with a daily cycle (traffic, crowd flow, temperature).

    :meth:`fit` averages the training frames that fall on each of the ``period`` slots (hour 0..23
    by default). A slot with no training frame has no mean of its own: it gets the mean of all
    training frames (the plain climatology), :attr:`unseen` lists such slots, and
    :meth:`forecast` warns when it is asked for one of them, so the baseline never passes off the
    overall mean as an hour's.

    Args:
        period (int): number of slots in a cycle (24 for hours of the day, 48 for half hours,
            168 for hours of the week).

    Shape:
        - fit: frames :math:`(T, H, W, C)`, slots :math:`(T,)` integers in ``[0, period)``
        - forecast: target slots :math:`(N, \text{lead})` -> :math:`(N, \text{lead}, H, W, C)`

    Example::

        >>> clim = ClimatologyByTimeOfDay().fit(train_frames, train_hours)
        >>> baseline = clim.forecast(target_hours)          # target_hours: (samples, lead_time)
        >>> results = evaluate_forecast(pred, true, inputs, climatology=baseline)
    """

    def __init__(self, period: int = 24):
        if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
            raise ValueError(f"period must be a positive int (24 for hours of the day), got {period!r}")
        self.period = int(period)
        self.means: Optional[np.ndarray] = None
        self.counts: Optional[np.ndarray] = None

    @property
    def unseen(self) -> List[int]:
        """The slots with no training frame (their forecast is the mean training frame)."""
        if self.counts is None:
            raise RuntimeError("ClimatologyByTimeOfDay.unseen: call fit(frames, hours) first")
        return [int(h) for h in np.flatnonzero(self.counts == 0)]

    def _slots(self, hours: Any, name: str) -> np.ndarray:
        h = hours.detach().cpu().numpy() if isinstance(hours, torch.Tensor) else np.asarray(hours)
        if h.dtype.kind not in "iu":
            if h.dtype.kind == "f" and np.all(np.isfinite(h)) and np.all(h == np.round(h)):
                h = h.astype(np.int64)
            else:
                raise TypeError(f"{name} must hold integer slots in [0, {self.period}), got dtype {h.dtype}")
        if h.size and (h.min() < 0 or h.max() >= self.period):
            raise ValueError(f"{name} must be in [0, {self.period}) (period={self.period}), "
                             f"got values from {h.min()} to {h.max()}")
        return h.astype(np.int64)

    def fit(self, frames: ArrayLike, hours: Any) -> "ClimatologyByTimeOfDay":
        """Average ``frames`` :math:`(T, H, W, C)` per slot ``hours`` :math:`(T,)`; returns self."""
        x = frames.detach().cpu().double().numpy() if isinstance(frames, torch.Tensor) else \
            np.asarray(frames, dtype=np.float64)
        if x.ndim != 4:
            raise ValueError(f"frames must be 4D (time, rows, cols, channels), got shape {x.shape}")
        h = self._slots(hours, "hours")
        if h.shape != (x.shape[0],):
            raise ValueError(f"hours must have shape ({x.shape[0]},) (one slot per frame), got {h.shape}")
        sums = np.zeros((self.period,) + x.shape[1:])
        np.add.at(sums, h, x)
        counts = np.bincount(h, minlength=self.period)
        overall = x.mean(axis=0)
        means = np.where(counts.reshape(-1, 1, 1, 1) > 0,
                         sums / np.maximum(counts, 1).reshape(-1, 1, 1, 1), overall)
        self.means, self.counts = means, counts
        return self

    def forecast(self, target_hours: Any) -> np.ndarray:
        """The mean frames for the slots ``target_hours`` :math:`(N, \\text{lead})` (or any shape
        :math:`S`), shaped :math:`S + (H, W, C)`."""
        if self.means is None:
            raise RuntimeError("ClimatologyByTimeOfDay.forecast: call fit(frames, hours) first")
        slots = self._slots(target_hours, "target_hours")
        missing = sorted(set(np.unique(slots).tolist()) & set(self.unseen))
        if missing:
            warnings.warn(f"ClimatologyByTimeOfDay: slot(s) {missing} had no training frame; their forecast is the "
                          f"mean of all training frames", UserWarning, stacklevel=2)
        return self.means[slots]

    def __repr__(self) -> str:
        fitted = "unfitted" if self.means is None else f"frame={self.means.shape[1:]}"
        return f"ClimatologyByTimeOfDay(period={self.period}, {fitted})"


# ---------------------------------------------------------------------------------- built-in baselines
@register_baseline
class Persistence(Baseline):
    r"""The last input frame, for every lead time: :math:`\hat y_{t+k} = x_t`."""

    name = "persistence"

    def forecast(self, batch: Batch) -> torch.Tensor:
        return persistence_forecast(batch.inputs, batch.lead_time)


@register_baseline
class Climatology(Baseline):
    r"""The training mean of each cell and channel: one frame :math:`(H, W, C)` for every sample and
    lead time, or, with ``per_target``, a frame per target (the hour-of-day climatology).

    Args:
        mean_frame: :math:`(H, W, C)` the mean training frame, in the data's units.
        per_target: optional ``per_target(first, count)`` returning the climatology of samples
            ``first .. first + count - 1``, :math:`(\text{count}, L, H, W, C)`, or ``None`` (then the
            mean frame is used).
        note: what :meth:`describe` says (how the climatology was made).
    """

    name = "climatology"

    def __init__(self, mean_frame: Optional[ArrayLike] = None,
                 per_target: Optional[Callable[[int, int], Optional[np.ndarray]]] = None,
                 note: Optional[str] = None) -> None:
        self.mean_frame = None if mean_frame is None else torch.as_tensor(mean_frame).double()
        self.per_target = per_target
        self.note = note

    @classmethod
    def from_datamodule(cls, datamodule: Any, part: str, **options: Any) -> "Climatology":
        dm = datamodule
        if dm.climatology_by_hour is None:
            return cls(dm.climatology)
        note = ("climatology is the training mean of each cell at each hour of the day (from the file's time "
                "stamps)")
        unseen = dm.unseen_target_hours(part)
        if unseen:
            targets = "targets scored" if part == "all" else f"{part} targets"
            note += (f"; hour(s) {unseen} of the {targets} never occur in the training part, their climatology "
                     f"is the mean training frame")
        baseline = cls(dm.climatology, lambda first, count: dm.target_climatology(part, first, count), note)
        baseline.unseen_hours = unseen
        return baseline

    def forecast(self, batch: Batch) -> torch.Tensor:
        per = None if self.per_target is None else self.per_target(batch.first, batch.num_samples)
        if per is not None:
            return torch.as_tensor(per).to(batch.inputs.device)
        if self.mean_frame is None:
            raise ValueError("Climatology has no mean frame: give mean_frame (rows, cols, channels)")
        return climatology_forecast(self.mean_frame.to(batch.inputs.device), batch.num_samples, batch.lead_time)

    def describe(self) -> Optional[str]:
        return self.note


@register_baseline
class Extrapolation(Baseline):
    r"""The last input frame moved along the motion of the input frames: pysteps's optical flow
    (``method``) and semi-Lagrangian advection, :func:`convlstm.extrapolation.extrapolation_forecast`.

    Args:
        method: one of :data:`convlstm.extrapolation.MOTION_METHODS` (``"lucaskanade"``).
    """

    name = "extrapolation"

    def __init__(self, method: str = "lucaskanade") -> None:
        from .extrapolation import _check_method, require_pysteps

        self.method = _check_method(method)
        require_pysteps()  # fail before any forecast is made

    @classmethod
    def from_datamodule(cls, datamodule: Any, part: str, **options: Any) -> "Extrapolation":
        return cls(options.get("extrapolation_method") or "lucaskanade")

    def forecast(self, batch: Batch) -> torch.Tensor:
        from .extrapolation import extrapolation_forecast

        fc = extrapolation_forecast(batch.inputs, batch.lead_time, method=self.method, gap=batch.gap)
        return torch.from_numpy(fc).to(batch.inputs.device)

    def describe(self) -> Optional[str]:
        return (f"extrapolation baseline: pysteps {self.method} motion from the input frames, semi-Lagrangian "
                f"advection of the last one")

    def __repr__(self) -> str:
        return f"Extrapolation(method={self.method!r})"


#: The baselines that come with the toolkit, in the order of the results.
BUILTIN_BASELINES: Tuple[str, ...] = baseline_names()


def build_baselines(names: Sequence[str], datamodule: Any, part: str, **options: Any) -> Dict[str, Baseline]:
    """``{name: baseline}`` for scoring ``part`` of ``datamodule``, each built by its class's
    :meth:`Baseline.from_datamodule` with the scoring ``options``."""
    return {name: get_baseline(name).from_datamodule(datamodule, part, **options) for name in names}


# the ensemble baselines (steps, dressed) join the registry; imported last, they build on the above
from . import ensemble_baselines as _ensemble_baselines  # noqa: E402,F401
