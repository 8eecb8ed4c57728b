r"""Physical units: stored numbers -> the quantity a forecaster reads (mm/h, dBZ, counts).

Radar and rain-gauge files rarely store the quantity itself: KNMI's composite stores mm per
5 minutes x 100 as ``uint16``, FMI's stores reflectivity as ``uint8`` codes with
:math:`\text{dBZ} = (\text{code} - 64) / 2`. :class:`UnitConversion` turns what is stored into
physical units in two steps, applied to every value as it is read:

1. **linear**: :math:`v = \text{stored} \cdot \text{scale} + \text{offset}`;
2. **transform** (optional), one of :data:`TRANSFORMS`:

=========================  ========================================================================
``none``                   :math:`v` unchanged
``reflectivity-to-rate``   :math:`v` in dBZ -> rain rate :math:`R` in mm/h through the Z-R relation
                           :math:`Z = a R^b` (:math:`Z = 10^{\text{dBZ}/10}` in
                           :math:`\text{mm}^6/\text{m}^3`): :math:`R = (Z / a)^{1/b}`
                           (:func:`reflectivity_to_rate`)
``rate-to-reflectivity``   :math:`R` in mm/h -> :math:`10 \log_{10}(a R^b)` dBZ; a rate of 0 has no
                           finite reflectivity and becomes ``-inf`` (fill it with ``fill_nan``,
                           which then is in dBZ) (:func:`rate_to_reflectivity`)
``accumulation-to-rate``   :math:`v` in mm per interval of :math:`\Delta` minutes -> mm/h:
                           :math:`v \cdot 60 / \Delta` (:func:`accumulation_to_rate`)
``rate-to-accumulation``   mm/h -> mm per interval: :math:`v \cdot \Delta / 60`
                           (:func:`rate_to_accumulation`)
=========================  ========================================================================

The Z-R parameters default to Marshall and Palmer's (1948) :math:`a = 200`, :math:`b = 1.6`:
1 mm/h is :math:`Z = 200\ \text{mm}^6/\text{m}^3 = 23.0` dBZ. Thresholds, metrics, colour bars and
forecasts are then all in the converted units; the conversion is kept in the checkpoint's data
state, so ``evaluate`` and ``predict`` read files the same way.

Example::

    >>> knmi = UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
    >>> knmi.apply(np.array([0, 100], dtype=np.uint16))       # 1 mm in 5 minutes = 12 mm/h
    array([ 0., 12.], dtype=float32)
    >>> fmi = UnitConversion(scale=0.5, offset=-32, transform="reflectivity-to-rate")
    >>> round(float(fmi.apply(np.array([110]))[0]), 3)         # code 110 = 23 dBZ = 1.0 mm/h
    0.999
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .._checks import check_number
from ._checks import series_shape, to_numpy
from ._memmap import SeriesByReference

__all__ = ["TRANSFORMS", "UnitConversion", "ConvertedSeries", "reflectivity_to_rate", "rate_to_reflectivity",
           "accumulation_to_rate", "rate_to_accumulation", "MARSHALL_PALMER"]

#: The transforms :class:`UnitConversion` knows, applied after ``scale`` and ``offset``.
TRANSFORMS = ("none", "reflectivity-to-rate", "rate-to-reflectivity", "accumulation-to-rate",
              "rate-to-accumulation")
#: Marshall and Palmer's (1948) Z-R parameters ``(a, b)`` of :math:`Z = a R^b`.
MARSHALL_PALMER = (200.0, 1.6)


def _zr(a: Any, b: Any) -> tuple:
    a, b = check_number("a", a), check_number("b", b)
    if a <= 0 or b <= 0:
        raise ValueError(f"the Z-R parameters a and b of Z = a R^b must be positive, got a={a:g}, b={b:g}")
    return a, b


def _interval(interval_minutes: Any) -> float:
    if interval_minutes is None:
        raise ValueError("interval_minutes is not given: accumulation <-> rate needs the accumulation interval in "
                         "minutes (e.g. 5 for 5-minute radar accumulations)")
    v = check_number("interval_minutes", interval_minutes)
    if v <= 0:
        raise ValueError(f"interval_minutes must be a positive number of minutes, got {v:g}")
    return v


def reflectivity_to_rate(dbz: Any, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    r"""Rain rate :math:`R` (mm/h) from reflectivity (dBZ) through :math:`Z = a R^b`:
    :math:`R = (10^{\text{dBZ}/10} / a)^{1/b}`.

    Marshall-Palmer (the defaults): 23.0 dBZ -> 1.0 mm/h; 39.0 dBZ -> 10 mm/h.

    Shape: any; returns a float64 numpy array of the same shape.
    """
    a, b = _zr(a, b)
    d = np.asarray(to_numpy(dbz), dtype=np.float64)
    return (10.0 ** (d / 10.0) / a) ** (1.0 / b)


def rate_to_reflectivity(rate: Any, a: float = 200.0, b: float = 1.6) -> np.ndarray:
    r"""Reflectivity in dBZ from rain rate :math:`R` (mm/h): :math:`10 \log_{10}(a R^b)`; the
    inverse of :func:`reflectivity_to_rate`. :math:`R = 0` gives ``-inf``; negative rates are an
    error.

    Shape: any; returns a float64 numpy array of the same shape.
    """
    a, b = _zr(a, b)
    r = np.asarray(to_numpy(rate), dtype=np.float64)
    if np.any(r < 0):
        raise ValueError(f"rate must be >= 0 mm/h (a rain rate), got a minimum of {float(np.nanmin(r)):g}")
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(a) + 10.0 * b * np.log10(r)


def accumulation_to_rate(accumulation: Any, interval_minutes: float) -> np.ndarray:
    r"""Rate per hour from an accumulation over ``interval_minutes``: :math:`v \cdot 60/\Delta`
    (1 mm in 5 minutes is 12 mm/h). Returns float64."""
    return np.asarray(to_numpy(accumulation), dtype=np.float64) * (60.0 / _interval(interval_minutes))


def rate_to_accumulation(rate: Any, interval_minutes: float) -> np.ndarray:
    r"""Accumulation over ``interval_minutes`` from a rate per hour: :math:`v \cdot \Delta/60`;
    the inverse of :func:`accumulation_to_rate`. Returns float64."""
    return np.asarray(to_numpy(rate), dtype=np.float64) * (_interval(interval_minutes) / 60.0)


class UnitConversion:
    r"""Stored values -> physical units: :math:`v = \text{stored} \cdot \text{scale} +
    \text{offset}`, then one of :data:`TRANSFORMS` (see the module's table).

    Args:
        scale, offset (float): the linear step (``scale`` non-zero).
        transform (str): ``"none"``, ``"reflectivity-to-rate"``, ``"rate-to-reflectivity"``,
            ``"accumulation-to-rate"`` or ``"rate-to-accumulation"``.
        zr_a, zr_b (float): :math:`a`, :math:`b` of :math:`Z = a R^b` (Marshall-Palmer 200, 1.6).
        interval_minutes (float): the accumulation interval, required by the accumulation
            transforms (and refused by the others, so that a forgotten ``--transform`` is noticed).

    :meth:`apply` returns float32 (float64 when the stored values are float64), computed in
    float64. :meth:`state_dict` / :meth:`from_state_dict` round-trip through plain data.

    Example::

        >>> UnitConversion(scale=0.01, transform="accumulation-to-rate", interval_minutes=5)
        UnitConversion(scale=0.01, offset=0, transform='accumulation-to-rate', interval_minutes=5)
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0, transform: str = "none", *,
                 zr_a: float = 200.0, zr_b: float = 1.6, interval_minutes: Optional[float] = None) -> None:
        self.scale = check_number("scale", scale)
        if self.scale == 0:
            raise ValueError("scale must be non-zero (value = stored * scale + offset), got 0")
        self.offset = check_number("offset", offset)
        if not isinstance(transform, str) or transform.lower() not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        self.transform = transform.lower()
        self.zr_a, self.zr_b = _zr(zr_a, zr_b)
        if "accumulation" in self.transform:
            self.interval_minutes: Optional[float] = _interval(interval_minutes)
        elif interval_minutes is not None:
            raise ValueError(f"interval_minutes={interval_minutes!r} is only used by the transforms "
                             f"accumulation-to-rate and rate-to-accumulation, but transform={self.transform!r}")
        else:
            self.interval_minutes = None

    @property
    def is_identity(self) -> bool:
        """True when :meth:`apply` changes nothing but the dtype."""
        return self.scale == 1.0 and self.offset == 0.0 and self.transform == "none"

    def apply(self, stored: Any) -> np.ndarray:
        """Convert an array of stored values (any shape) to physical units."""
        x = to_numpy(stored)
        out_dtype = np.float64 if x.dtype == np.float64 else np.float32
        v = np.asarray(x, dtype=np.float64) * self.scale + self.offset
        if self.transform == "reflectivity-to-rate":
            v = reflectivity_to_rate(v, self.zr_a, self.zr_b)
        elif self.transform == "rate-to-reflectivity":
            v = rate_to_reflectivity(v, self.zr_a, self.zr_b)
        elif self.transform == "accumulation-to-rate":
            v = accumulation_to_rate(v, self.interval_minutes)
        elif self.transform == "rate-to-accumulation":
            v = rate_to_accumulation(v, self.interval_minutes)
        return v.astype(out_dtype, copy=False)

    def wrap(self, series: Any) -> Any:
        """``series`` read through this conversion: a lazy :class:`ConvertedSeries`, or the series
        itself when the conversion is the identity."""
        return series if self.is_identity else ConvertedSeries(series, self)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Plain data: ``scale``, ``offset``, ``transform``, ``zr_a``, ``zr_b``, ``interval_minutes``."""
        return {"scale": self.scale, "offset": self.offset, "transform": self.transform, "zr_a": self.zr_a,
                "zr_b": self.zr_b, "interval_minutes": self.interval_minutes}

    @classmethod
    def from_state_dict(cls, state: Optional[Dict[str, Any]]) -> "UnitConversion":
        """Rebuild from :meth:`state_dict` (``None`` or ``{}``: the identity)."""
        if not state:
            return cls()
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from UnitConversion.state_dict(), got {type(state).__name__}")
        known = ("scale", "offset", "transform", "zr_a", "zr_b", "interval_minutes")
        unknown = sorted(set(state) - set(known))
        if unknown:
            raise ValueError(f"unknown UnitConversion state key(s) {unknown}; known: {list(known)}")
        s = dict(state)
        return cls(s.pop("scale", 1.0), s.pop("offset", 0.0), s.pop("transform", "none"), **s)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnitConversion) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        parts = [f"scale={self.scale:g}", f"offset={self.offset:g}", f"transform={self.transform!r}"]
        if "reflectivity" in self.transform:
            parts += [f"zr_a={self.zr_a:g}", f"zr_b={self.zr_b:g}"]
        if self.interval_minutes is not None:
            parts.append(f"interval_minutes={self.interval_minutes:g}")
        return f"UnitConversion({', '.join(parts)})"

    def describe(self) -> str:
        """One line for logs, e.g. ``value = stored * 0.01 + 0, then accumulation-to-rate (5 min)``."""
        text = f"value = stored * {self.scale:g} + {self.offset:g}"
        if self.transform == "none":
            return text
        if "reflectivity" in self.transform:
            return f"{text}, then {self.transform} with Z = {self.zr_a:g} R^{self.zr_b:g}"
        return f"{text}, then {self.transform} over {self.interval_minutes:g}-minute intervals"


class ConvertedSeries(SeriesByReference):
    r"""A lazily converted view of a series (array, memmap, :class:`LazyGrid`): indexing reads
    the stored values asked for and returns them in physical units (:meth:`UnitConversion.apply`).
    Pickled (``DataLoader`` workers started with *spawn*), a memmap or :class:`LazyGrid` series
    is sent as how to open it again, not as its content.

    Shape: that of the stored series; ``dtype`` float32 (float64 for float64 storage).
    """

    def __init__(self, series: Any, conversion: UnitConversion) -> None:
        self.shape = series_shape("series", series, 1)
        self.series, self.conversion = series, conversion
        stored = to_numpy(series[:0]).dtype
        self.dtype = np.dtype(np.float64 if stored == np.float64 else np.float32)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.conversion.apply(self.series[index])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.conversion.apply(self.series[:])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ConvertedSeries(shape={self.shape}, {self.conversion!r})"
