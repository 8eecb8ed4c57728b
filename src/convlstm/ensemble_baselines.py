r"""Ensemble baselines: probabilistic forecasts to score beside the model, behind one interface.

An :class:`EnsembleBaseline` gives, for a :class:`~convlstm.baselines.Batch`, :math:`n` members
shaped like the targets, members first: :math:`(n, N, L, H, W, C)`, in the data's units. It is a
:class:`~convlstm.baselines.Baseline` registered by name in the same registry (``--baselines
persistence steps dressed``), so ``evaluate`` scores its members with
:class:`~convlstm.ensemble_scores.EnsembleScores` (CRPS, rank histogram, Brier score,
reliability, ROC area, spread-skill) and its ensemble mean like any deterministic forecast;
its :meth:`~EnsembleBaseline.forecast` is that ensemble mean (of
:attr:`~EnsembleBaseline.default_members` members).

The built-in ensemble baselines:

===========  ==========================================================================================
``steps``    :class:`Steps`: pysteps's STEPS nowcast (Seed 2003; Bowler et al. 2006) from each sample's
             input frames, rain rates in mm/h, with pysteps's own settings (radar, one channel;
             the ``radar`` extra)
``dressed``  :class:`Dressed`: the model's own forecast plus whole error fields of the model on the
             validation part (any data)
===========  ==========================================================================================

Example::

    >>> steps = Steps(timestep=5.0)
    >>> members = steps.members(Batch(inputs, lead_time=6), 20)   # inputs (N, T_in, H, W, 1) mm/h
    >>> members.shape                                              # (20, N, 6, H, W, 1)
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Any, ClassVar, Optional, Tuple

import numpy as np
import torch

from ._errors import ParameterError
from ._extras import import_pysteps
from .baselines import Baseline, Batch, get_baseline, register_baseline

__all__ = ["EnsembleBaseline", "Steps", "Dressed", "steps_members", "steps_cascade_levels", "is_ensemble_baseline",
           "split_baselines", "DEFAULT_MEMBERS", "DEFAULT_TIMESTEP_MINUTES", "DEFAULT_KM_PER_PIXEL"]

#: Members drawn when nothing else says how many (``evaluate --members``).
DEFAULT_MEMBERS = 20
#: The time step of radar frames (minutes) assumed by :class:`Steps` when the data carry no time stamps.
DEFAULT_TIMESTEP_MINUTES = 5.0
#: The grid spacing (km per pixel) given to STEPS when none is known (a common radar composite's).
DEFAULT_KM_PER_PIXEL = 1.0
#: pysteps's dB transform as its examples use it: rain rates below 0.1 mm/h are "no rain", set to -15 dB.
STEPS_RAIN_THRESHOLD = 0.1
STEPS_ZERO_DB = -15.0
#: The smallest frame STEPS's cascade and noise work on (pixels per side).
STEPS_MIN_SIZE = 8


def _check_members_count(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ParameterError("members", f"members must be an int >= 2 (the ensemble size), got {n!r}")
    return int(n)


class EnsembleBaseline(Baseline):
    r"""A probabilistic baseline: :math:`n` equally likely members for each sample.

    Subclasses set :attr:`name` and implement :meth:`members`; :meth:`from_datamodule` and
    :meth:`describe` as for :class:`~convlstm.baselines.Baseline`.

    Shape:
        - :meth:`members`: ``batch.inputs`` :math:`(N, T_{in}, H, W, C)` ->
          :math:`(n, N, L, H, W, C)` float64 on the CPU, in the data's units, members first
          (the layout of :class:`~convlstm.ensemble_scores.EnsembleScores`).
        - :meth:`forecast`: :math:`(N, L, H, W, C)`, the mean of :attr:`default_members` members.
    """

    #: members of :meth:`forecast`'s ensemble mean (``evaluate`` asks for ``--members`` instead).
    default_members: ClassVar[int] = DEFAULT_MEMBERS

    def members(self, batch: Batch, n: int) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}.members")

    def forecast(self, batch: Batch) -> torch.Tensor:
        return self.members(batch, self.default_members).mean(0).to(batch.inputs.device)


def is_ensemble_baseline(name: str) -> bool:
    """Whether the baseline registered as ``name`` is an :class:`EnsembleBaseline`."""
    return issubclass(get_baseline(name), EnsembleBaseline)


def split_baselines(names: Any) -> Tuple[list, list]:
    """``names`` split into the deterministic baselines and the ensemble ones, order kept."""
    names = list(names or ())
    ensemble = [n for n in names if is_ensemble_baseline(n)]
    return [n for n in names if n not in ensemble], ensemble


# ---------------------------------------------------------------------------------- STEPS
def _require_steps() -> Tuple[Any, Any, Any]:
    """pysteps's ``nowcasts``, ``motion`` and ``utils.transformation``, or an ``ImportError``
    that says which extra to install (pysteps's import line about its configuration is swallowed)."""
    return import_pysteps("nowcasts", "motion", "utils.transformation",
                          needed_for="the steps baseline needs pysteps (and OpenCV for Lucas-Kanade), which are")


def steps_cascade_levels(rows: int, cols: int) -> int:
    r"""The cascade levels :class:`Steps` uses for frames of ``rows x cols``: pysteps's default 6
    from 256 pixels up, about one level per octave below that, at least 3:
    :math:`\min(6, \max(3, \lfloor \log_2 \min(H, W) \rfloor - 2))` (32 px: 3, 64: 4, 128: 5)."""
    return min(6, max(3, int(math.floor(math.log2(max(1, min(rows, cols))))) - 2))


def steps_members(frames: Any, lead_time: int, n: int, *, timestep: float = DEFAULT_TIMESTEP_MINUTES,
                  kmperpixel: float = DEFAULT_KM_PER_PIXEL, n_cascade_levels: Optional[int] = None,
                  gap: int = 0, seed: Optional[int] = 0) -> np.ndarray:
    r"""pysteps's STEPS ensemble nowcast from one sample's input frames, as pysteps's examples
    run it:

    1. rain rates :math:`R` (mm/h) to dB, ``pysteps.utils.transformation.dB_transform(R,
       threshold=0.1, zerovalue=-15)`` (:math:`10 \log_{10} R` where :math:`R \ge 0.1`, else
       -15 dB; non-finite inputs are set to -15 dB);
    2. motion from all the input frames in dB, ``pysteps.motion.get_method("lucaskanade")``;
    3. ``pysteps.nowcasts.get_method("steps")(R_dB, V, g + L, n_ens_members=n,
       n_cascade_levels=..., precip_thr=-10, kmperpixel=..., timestep=..., seed=seed)``, every
       other setting pysteps's default (AR(2), nonparametric noise, velocity perturbations
       ``bps``, incremental mask, CDF probability matching);
    4. back to mm/h (``dB_transform(..., threshold=-10, inverse=True)``: below -10 dB is 0), the
       last :math:`L` of the :math:`g + L` steps kept; pixels STEPS leaves undefined (moved in
       from outside the grid, NaN in pysteps) are set to 0 mm/h, as the extrapolation baseline's
       ``outval="min"`` does.

    Args:
        frames: :math:`(T_{in}, H, W)` rain rates in mm/h, oldest first, :math:`T_{in} \ge 3`
            (pysteps's AR(2) needs three), :math:`H, W \ge 8`.
        lead_time (int): :math:`L`.
        n (int): members, :math:`\ge 2`.
        timestep (float): minutes between frames (for the velocity perturbations and the mask).
        kmperpixel (float): grid spacing in km.
        n_cascade_levels (int, optional): ``None``: :func:`steps_cascade_levels` of the frame size.
        gap (int): steps between the last input and the first target.
        seed (int, optional): pysteps's ``seed``: the same seed, the same members.

    Returns:
        float64 :math:`(n, L, H, W)` in mm/h.
    """
    nowcasts, motion, transformation = _require_steps()
    r = np.array(frames.detach().cpu().double().numpy() if isinstance(frames, torch.Tensor) else frames,
                 dtype=np.float64)
    if r.ndim != 3:
        raise ValueError(f"frames must be 3D (time, rows, cols), got shape {r.shape}")
    if r.shape[0] < 3:
        raise ParameterError("baselines", f"the steps baseline needs at least 3 input frames (pysteps's AR(2) "
                                          f"model), the samples have {r.shape[0]} (input_steps={r.shape[0]})")
    if min(r.shape[1:]) < STEPS_MIN_SIZE:
        raise ParameterError("baselines", f"the steps baseline needs frames of at least {STEPS_MIN_SIZE}x"
                                          f"{STEPS_MIN_SIZE} pixels, got {r.shape[1]}x{r.shape[2]}")
    n = _check_members_count(n)
    levels = steps_cascade_levels(*r.shape[1:]) if n_cascade_levels is None else int(n_cascade_levels)
    with contextlib.redirect_stdout(io.StringIO()):   # pysteps prints its settings and progress
        db, meta = transformation.dB_transform(r, threshold=STEPS_RAIN_THRESHOLD, zerovalue=STEPS_ZERO_DB)
        db[~np.isfinite(db)] = meta["zerovalue"]
        velocity = motion.get_method("lucaskanade")(db)
        out = nowcasts.get_method("steps")(db, velocity, int(gap) + int(lead_time), n_ens_members=n,
                                           n_cascade_levels=levels, precip_thr=meta["threshold"],
                                           kmperpixel=float(kmperpixel), timestep=float(timestep), seed=seed)
        rain = transformation.dB_transform(out, threshold=meta["threshold"], inverse=True)[0]
    rain = np.where(np.isfinite(rain), rain, 0.0)
    return rain[:, int(gap):]


@register_baseline
class Steps(EnsembleBaseline):
    r"""pysteps's STEPS ensemble nowcast of each sample (:func:`steps_members`), for radar rain
    rates in mm/h, one channel.

    Args:
        timestep (float): minutes between frames; ``None``: :data:`DEFAULT_TIMESTEP_MINUTES`.
            :meth:`from_datamodule` takes it from the data's time stamps where they exist.
        kmperpixel (float): grid spacing in km (:data:`DEFAULT_KM_PER_PIXEL` when not known).
        n_cascade_levels (int, optional): ``None``: by frame size, :func:`steps_cascade_levels`.
        seed (int): sample :math:`i` of the part scored (``batch.first + i``) gets pysteps's
            ``seed + i``, so its members do not depend on the batching.

    Shape:
        - :meth:`members`: ``batch.inputs`` :math:`(N, T_{in}, H, W, 1)`, :math:`T_{in} \ge 3` ->
          :math:`(n, N, L, H, W, 1)` float64, mm/h.
    """

    name = "steps"

    def __init__(self, timestep: Optional[float] = None, kmperpixel: float = DEFAULT_KM_PER_PIXEL,
                 n_cascade_levels: Optional[int] = None, seed: int = 0, *, timestep_source: str = "") -> None:
        for label, value in (("timestep", timestep), ("kmperpixel", kmperpixel)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                                      or not math.isfinite(value) or value <= 0):
                raise ParameterError(label, f"{label} must be a positive number, got {value!r}")
        if n_cascade_levels is not None and (isinstance(n_cascade_levels, bool)
                                             or not isinstance(n_cascade_levels, (int, np.integer))
                                             or n_cascade_levels < 3):
            raise ParameterError("n_cascade_levels", f"n_cascade_levels must be an int >= 3 or None (by frame "
                                                     f"size), got {n_cascade_levels!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ParameterError("seed", f"seed must be an int >= 0, got {seed!r}")
        _require_steps()   # fail before any forecast is made
        self.timestep = DEFAULT_TIMESTEP_MINUTES if timestep is None else float(timestep)
        self.timestep_source = timestep_source or ("given" if timestep is not None else "the default")
        self.kmperpixel = float(kmperpixel)
        self.n_cascade_levels = n_cascade_levels
        self.seed = int(seed)
        self.frame: Optional[Tuple[int, int]] = None
        self.ensemble_size: Optional[int] = None

    @classmethod
    def from_datamodule(cls, datamodule: Any, part: str, **options: Any) -> "Steps":
        rows, cols, channels = datamodule.sample_shape
        if channels != 1:
            raise ParameterError("baselines", f"the steps baseline forecasts one field of rain rates (radar, one "
                                              f"channel); this data has {channels} channels: leave steps out of "
                                              f"baselines")
        streams = getattr(datamodule, "streams", None)
        frames = streams[0] if streams is not None else getattr(datamodule, "input_steps", None)
        if frames is not None and int(frames) < 3:
            raise ParameterError("baselines", f"the steps baseline needs at least 3 input frames (pysteps's AR(2) "
                                              f"model), the samples have {frames} (input_steps={frames}): leave "
                                              f"steps out of baselines", also=("input_steps",))
        if min(rows, cols) < STEPS_MIN_SIZE:
            raise ParameterError("baselines", f"the steps baseline needs frames of at least {STEPS_MIN_SIZE}x"
                                              f"{STEPS_MIN_SIZE} pixels, got {rows}x{cols}: leave steps out of "
                                              f"baselines")
        timestep, source = _time_step_minutes(datamodule)
        baseline = cls(timestep, seed=int(options.get("seed") or 0), timestep_source=source)
        baseline.frame = (int(rows), int(cols))
        baseline.ensemble_size = options.get("members")
        return baseline

    def levels(self, rows: int, cols: int) -> int:
        return steps_cascade_levels(rows, cols) if self.n_cascade_levels is None else int(self.n_cascade_levels)

    def members(self, batch: Batch, n: int) -> torch.Tensor:
        x = batch.inputs
        if x.dim() != 5 or x.shape[-1] != 1:
            raise ParameterError("baselines", f"the steps baseline forecasts one field of rain rates (one "
                                              f"channel), got inputs of shape {tuple(x.shape)}")
        frames = x[..., 0].detach().cpu().double().numpy()
        out = [steps_members(frames[i], batch.lead_time, n, timestep=self.timestep, kmperpixel=self.kmperpixel,
                             n_cascade_levels=self.levels(*frames.shape[2:]), gap=batch.gap,
                             seed=self.seed + batch.first + i) for i in range(len(frames))]
        return torch.from_numpy(np.stack(out, axis=1)[..., None])

    def describe(self) -> Optional[str]:
        size = f"{self.ensemble_size} members" if self.ensemble_size else "n members"
        levels = (f"{self.levels(*self.frame)} cascade levels for {self.frame[0]}x{self.frame[1]} frames"
                  if self.frame else "cascade levels by frame size")
        return (f"steps: pysteps STEPS, {size}, default settings, values taken as rain rates in mm/h (dB transform "
                f"at 0.1 mm/h), Lucas-Kanade motion from the inputs, {levels}, time step {self.timestep:g} min "
                f"({self.timestep_source}), {self.kmperpixel:g} km per pixel, seed {self.seed} + sample index; "
                f"pixels moved in from outside the grid are 0")

    def __repr__(self) -> str:
        return f"Steps(timestep={self.timestep:g}, kmperpixel={self.kmperpixel:g}, seed={self.seed})"


def _time_step_minutes(dm: Any) -> Tuple[Optional[float], str]:
    """The data's time step in minutes (the median spacing of its time stamps), and where it
    came from; ``None`` without time stamps."""
    times = getattr(dm, "times", None)
    if times is None or len(times) < 2:
        return None, f"no time stamps: the default {DEFAULT_TIMESTEP_MINUTES:g} min"
    steps = np.diff(np.asarray(times).astype("datetime64[m]").astype(np.int64))
    steps = steps[steps > 0]
    if steps.size == 0:
        return None, f"no time stamps: the default {DEFAULT_TIMESTEP_MINUTES:g} min"
    return float(np.median(steps)), "from the time stamps"


# ---------------------------------------------------------------------------------- dressed
@register_baseline
class Dressed(EnsembleBaseline):
    r"""The model's forecast "dressed" with its own errors: member :math:`m` of sample :math:`i` is

    .. math::
        x_{m,i} = \hat y_i + (y_{k_{m,i}} - \hat y_{k_{m,i}}),

    the model's forecast :math:`\hat y_i` (``batch.forecast``) plus the whole error field
    (every lead time, cell and channel) of validation sample :math:`k_{m,i}`, so members are
    coherent in space and time and their spread is the model's own error on unseen data.
    :math:`k_{\cdot,i}` are drawn by :meth:`draw` (without replacement when the pool holds at
    least :math:`n` samples), from a generator seeded with ``(seed, first + i)``: reproducible, and
    independent of the batching. Clamped at 0 with ``clamp`` (as the model's forecasts are).

    Args:
        errors: :math:`(K, L, H, W, C)` the pool of error fields :math:`y - \hat y` (data units).
        seed (int): the draw's seed.
        clamp (bool): members clamped at 0.
        note (str, optional): where the errors come from, for :meth:`describe`.

    Shape:
        - :meth:`members`: ``batch.forecast`` :math:`(N, L, H, W, C)` -> :math:`(n, N, L, H, W, C)`.
    """

    name = "dressed"

    def __init__(self, errors: Any = None, *, seed: int = 0, clamp: bool = False, note: Optional[str] = None) -> None:
        if errors is None:
            raise ParameterError("baselines", "the dressed baseline needs the model's errors on the validation "
                                              "part; evaluate computes them (a run with a validation part)")
        e = torch.as_tensor(errors).detach().cpu().double()
        if e.dim() != 5 or e.shape[0] < 1:
            raise ValueError(f"errors must be (samples, lead_time, rows, cols, channels) with at least one sample, "
                             f"got shape {tuple(e.shape)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ParameterError("seed", f"seed must be an int >= 0, got {seed!r}")
        self.errors = e
        self.seed = int(seed)
        self.clamp = bool(clamp)
        self.note = note
        self.ensemble_size: Optional[int] = None

    @classmethod
    def from_datamodule(cls, datamodule: Any, part: str, **options: Any) -> "Dressed":
        baseline = cls(options.get("validation_errors"), seed=int(options.get("seed") or 0),
                       clamp=bool(options.get("clamp")), note=options.get("validation_note"))
        baseline.ensemble_size = options.get("members")
        return baseline

    def draw(self, first: int, count: int, n: int) -> np.ndarray:
        """The pool indices :math:`k` of the members of samples ``first .. first + count - 1``:
        an int array :math:`(\\text{count}, n)`."""
        n, pool = _check_members_count(n), int(self.errors.shape[0])
        return np.stack([np.random.default_rng([self.seed, int(first) + i]).choice(pool, n, replace=pool < n)
                         for i in range(int(count))]) if count else np.zeros((0, n), dtype=np.int64)

    def members(self, batch: Batch, n: int) -> torch.Tensor:
        if batch.forecast is None:
            raise ValueError("the dressed baseline adds error fields to the model's forecast: give "
                             "Batch(..., forecast=model_forecast)")
        f = torch.as_tensor(batch.forecast).detach().cpu().double()
        if tuple(f.shape[1:]) != tuple(self.errors.shape[1:]):
            raise ValueError(f"the model's forecast {tuple(f.shape)} and the error fields "
                             f"{tuple(self.errors.shape)} differ in lead time, rows, cols or channels")
        k = torch.from_numpy(self.draw(batch.first, f.shape[0], n).T.copy())   # (n, N)
        out = f.unsqueeze(0) + self.errors[k]
        return out.clamp_min(0.0) if self.clamp else out

    def describe(self) -> Optional[str]:
        size = f"{self.ensemble_size} members" if self.ensemble_size else "n members"
        source = self.note or f"{self.errors.shape[0]} error fields"
        return (f"dressed: the model's forecast plus whole error fields (truth - forecast) of the model on "
                f"{source}, {size}, drawn with seed {self.seed}"
                f"{', clamped at 0' if self.clamp else ''}")

    def __repr__(self) -> str:
        return f"Dressed(errors={tuple(self.errors.shape)}, seed={self.seed}, clamp={self.clamp})"
