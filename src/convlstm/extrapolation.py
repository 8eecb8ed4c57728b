r"""The extrapolation nowcast, radar's standard baseline, from pysteps (optional extra ``radar``).

For each sample, a motion field is estimated from the sample's input frames with one of pysteps's
optical-flow methods (Lucas-Kanade by default), and the last input frame is moved along it with
pysteps's semi-Lagrangian backward scheme, one field per lead time:

.. math::
    \hat y_{t_0 + k}(\mathbf{x}) = y_{t_0}\bigl(\mathbf{x} - \mathbf{d}_k(\mathbf{x})\bigr),
    \qquad k = g + 1, \dots, g + L

where :math:`\mathbf{d}_k` is the displacement integrated backward along the motion field over
:math:`k` steps (in pixels per input time step), :math:`g` the ``gap`` between the last input and
the first target, and :math:`L` the lead time. This is exactly::

    V = pysteps.motion.get_method(method)(frames, **motion_options)         # (2, H, W)
    pysteps.extrapolation.semilagrangian.extrapolate(frames[-1], V, [g+1, ..., g+L], outval="min")

called on each sample and channel (channels are independent fields, each with its own motion).
Choices, all pysteps's own:

- ``outval="min"``: pixels advected in from outside the grid take the last frame's minimum
  (no rain for rain rates); pysteps's default, NaN, would leave holes no score can use.
- linear interpolation (``interp_order=1``), one inner iteration of the midpoint rule.
- Lucas-Kanade returns zero motion (the forecast is then persistence) when it finds no feature
  to track, e.g. on empty frames: that is pysteps's documented behaviour, not an error.

It runs on the CPU: 1.8 s for 10 KNMI samples of 256 x 256 with 6 inputs and Lucas-Kanade on one
core of an idle machine (0.18 s per sample; three times that on a busy one), so it is computed for
the test part only. It needs the ``radar`` extra (pysteps and OpenCV, which its
Lucas-Kanade needs); ``tests/test_radar.py`` passes with pysteps 1.18.1, 1.20.0 and 1.21.5.

Example::

    >>> fc = extrapolation_forecast(inputs, lead_time=3)          # inputs (N, T_in, H, W, C), mm/h
    >>> fc.shape                                                  # (N, 3, H, W, C)
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ._extras import import_pysteps, install_hint

__all__ = ["extrapolation_forecast", "MOTION_METHODS", "require_pysteps", "pysteps_version"]

#: The optical-flow methods of ``pysteps.motion.get_method`` (``"lk"`` is ``"lucaskanade"``).
MOTION_METHODS = ("lucaskanade", "lk", "vet", "darts", "proesmans", "farneback", "constant")
_INSTALL = install_hint("radar")


def require_pysteps() -> Tuple[Any, Any]:
    """Import pysteps's ``motion`` and ``extrapolation`` packages, or raise an ``ImportError``
    that says which extra to install. pysteps prints a line about its configuration file on
    import; that line is swallowed here."""
    return import_pysteps("motion", "extrapolation", needed_for="the extrapolation baseline needs pysteps (and "
                                                                "OpenCV for Lucas-Kanade), which are")


def pysteps_version() -> Optional[str]:
    """The installed pysteps version, or ``None``."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version("pysteps")
    except PackageNotFoundError:
        return None


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or method.lower() not in MOTION_METHODS:
        raise ValueError(f"method must be one of {', '.join(MOTION_METHODS)} (pysteps's optical-flow methods), "
                         f"got {method!r}")
    return method.lower()


def extrapolation_forecast(inputs: Any, lead_time: int, *, method: str = "lucaskanade", gap: int = 0,
                           motion_options: Optional[Mapping[str, Any]] = None,
                           extrapolation_options: Optional[Mapping[str, Any]] = None) -> np.ndarray:
    r"""Extrapolate the last input frame of each sample along the motion of its input frames.

    Args:
        inputs: :math:`(N, T_{in}, H, W, C)` numpy array or torch tensor, in data units,
            :math:`T_{in} \ge 2`, finite.
        lead_time (int): :math:`L`, the frames to forecast.
        method (str): the optical-flow method, one of :data:`MOTION_METHODS`.
        gap (int): steps between the last input and the first forecast frame (as in the data
            module): the forecast is for steps :math:`g + 1 .. g + L` after the last input.
        motion_options: keyword arguments for the motion method (e.g. ``{"fd_kwargs":
            {"max_corners": 500}}`` for Lucas-Kanade).
        extrapolation_options: keyword arguments for
            ``pysteps.extrapolation.semilagrangian.extrapolate`` (default ``outval="min"``).

    Returns:
        float64 numpy array :math:`(N, L, H, W, C)`.

    Raises:
        ImportError: pysteps is not installed (the message says how to install the ``radar`` extra).
    """
    method = _check_method(method)
    if isinstance(lead_time, bool) or not isinstance(lead_time, (int, np.integer)) or lead_time < 1:
        raise ValueError(f"lead_time must be a positive int, got {lead_time!r}")
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise ValueError(f"gap must be an int >= 0, got {gap!r}")
    for name, opts in (("motion_options", motion_options), ("extrapolation_options", extrapolation_options)):
        if opts is not None and not isinstance(opts, Mapping):
            raise TypeError(f"{name} must be a dict of keyword arguments or None, got {type(opts).__name__}")
    try:
        import torch

        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(inputs, np.ndarray):
        raise TypeError(f"inputs must be a numpy array or a torch tensor, got {type(inputs).__name__}")
    if inputs.ndim != 5:
        raise ValueError(f"inputs must be 5D (samples, time, rows, cols, channels), got shape {inputs.shape}")
    n, t_in, rows, cols, channels = inputs.shape
    if t_in < 2:
        raise ValueError(f"the extrapolation baseline estimates motion from at least 2 input frames, but inputs "
                         f"have {t_in} (input_steps={t_in})")
    x = inputs.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("inputs hold NaN or infinite values; the extrapolation baseline needs finite frames")
    motion, extrapolation = require_pysteps()
    estimate = motion.get_method(method)
    advect = extrapolation.get_method("semilagrangian")
    m_opts: Dict[str, Any] = dict(motion_options or {})
    e_opts: Dict[str, Any] = {"outval": "min", **dict(extrapolation_options or {})}
    steps = [float(gap + k) for k in range(1, int(lead_time) + 1)]
    out = np.empty((n, int(lead_time), rows, cols, channels), dtype=np.float64)
    with contextlib.redirect_stdout(io.StringIO()):  # some methods print progress
        for i in range(n):
            for c in range(channels):
                frames = np.ascontiguousarray(x[i, :, :, :, c])
                velocity = estimate(frames, **m_opts)
                out[i, :, :, :, c] = advect(frames[-1], velocity, steps, **e_opts)
    return out
