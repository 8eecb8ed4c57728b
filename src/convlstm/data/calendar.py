r"""Calendar features from time stamps: the time of day and the day of the week as cyclic
encodings, weekends and holidays, the step of a series (how many steps make a day), and CF
(netCDF) time coordinates ("minutes since 2020-01-01") read as time stamps.

Time stamps are parsed by :func:`parse_timestamps` into ``datetime64[m]``; understood are
``datetime64`` values, digit strings ``YYYYMMDDhhmm``, DeepST's ``YYYYMMDDss`` with hour slots
``ss`` = 01..24 (hours) or 01..48 (half hours), and ISO strings ``YYYY-MM-DDThh:mm``.

:func:`calendar_features` gives, for every time stamp :math:`\tau` with hour of the day
:math:`h \in [0, 24)` (minutes as a fraction) and day of the week :math:`d \in \{0..6\}`
(Monday = 0), the row

.. math::
    \big(\sin\tfrac{2\pi h}{24},\ \cos\tfrac{2\pi h}{24},\ \sin\tfrac{2\pi d}{7},\
    \cos\tfrac{2\pi d}{7},\ [d \ge 5],\ [\tau \in \text{holidays}]\big)

The cyclic pairs put 23:00 next to 00:00 and Sunday next to Monday (a one-hot code would do too,
with 31 numbers instead of 4). The columns are named by :data:`CALENDAR_FEATURES`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["CALENDAR_FEATURES", "parse_timestamps", "decode_cf_times", "time_step", "steps_per_day",
           "calendar_features", "read_holidays"]

#: The columns of :func:`calendar_features`, in order.
CALENDAR_FEATURES = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "weekend", "holiday")


def parse_timestamps(timestamps: Any) -> np.ndarray:
    """Time stamps -> ``datetime64[m]`` (minutes).

    Understood: ``datetime64`` values; digit strings (or bytes) ``YYYYMMDDhhmm`` and DeepST's
    ``YYYYMMDDss`` with hour slots ``ss`` = 01..48 for half hours or 01..24 for hours (slot
    :math:`s` starts at minute :math:`(s - 1) \\cdot 1440 / \\text{slots per day}`); ISO strings
    ``YYYY-MM-DD[Thh:mm]``.

    Raises:
        ValueError: the values are not time stamps in one of these forms (the message shows one).

    Shape:
        ``(T,)`` -> ``(T,)``

    Example::

        >>> parse_timestamps(np.array(["2014080401", "2014080424"]))
        array(['2014-08-04T00:00', '2014-08-04T23:00'], dtype='datetime64[m]')
    """
    t = np.asarray(timestamps)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"time stamps must be a non-empty 1-D array, got shape {t.shape}")
    if t.dtype.kind == "M":
        return t.astype("datetime64[m]")
    if t.dtype.kind == "S":
        t = t.astype(str)
    if t.dtype.kind != "U":
        raise ValueError(f"time stamps must be datetime64 values or strings (YYYYMMDDhhmm, DeepST's YYYYMMDDss, "
                         f"ISO YYYY-MM-DDThh:mm), got dtype {t.dtype} (e.g. {t[0]!r})")
    s = np.char.strip(t)
    example = s[0]
    try:
        if all(len(v) == 10 and v.isdigit() for v in s):  # DeepST: YYYYMMDD + slot 01..24 or 01..48
            slot = np.array([int(v[8:]) for v in s], dtype=np.int64)
            per_day = 48 if slot.max() > 24 else 24
            if slot.min() < 1 or slot.max() > 48:
                raise ValueError("slot out of range")
            days = np.array([f"{v[:4]}-{v[4:6]}-{v[6:8]}" for v in s], dtype="datetime64[D]")
            return days.astype("datetime64[m]") + ((slot - 1) * (1440 // per_day)).astype("timedelta64[m]")
        if all(len(v) == 12 and v.isdigit() for v in s):  # YYYYMMDDhhmm
            return np.array([f"{v[:4]}-{v[4:6]}-{v[6:8]}T{v[8:10]}:{v[10:]}" for v in s], dtype="datetime64[m]")
        return np.asarray(s, dtype="datetime64[m]")
    except ValueError:
        raise ValueError(f"cannot read the time stamps as times (e.g. {example!r}); use datetime64 values, "
                         f"YYYYMMDDhhmm, DeepST's YYYYMMDDss (slots 01..24 or 01..48) or ISO "
                         f"YYYY-MM-DDThh:mm") from None


#: CF time units and their length in minutes (``"minutes since ..."``, ``"hours since ..."``).
_CF_UNITS = {"second": 1 / 60, "seconds": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "s": 1 / 60,
             "minute": 1, "minutes": 1, "min": 1, "mins": 1,
             "hour": 60, "hours": 60, "hr": 60, "hrs": 60, "h": 60, "day": 1440, "days": 1440, "d": 1440}
#: The CF calendars that numpy's ``datetime64`` (proleptic Gregorian) counts exactly.
_CF_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")


def decode_cf_times(values: Any, units: Any, calendar: Any = None) -> np.ndarray:
    """CF (netCDF) time values -> ``datetime64[m]``: ``values`` counted in ``units`` such as
    ``"minutes since 2020-01-01 00:00:00"`` (seconds, minutes, hours or days since a date).

    ``calendar`` may be ``None`` (CF's default, ``"standard"``), ``"standard"``, ``"gregorian"``
    or ``"proleptic_gregorian"``; the first two differ from numpy's proleptic Gregorian count only
    before 1582-10-15, which is refused. Other calendars (``"noleap"``, ``"360_day"``...) are
    refused too: their days are not numpy's.

    Raises:
        ValueError: the units are not ``"<unit> since <date>"``, the calendar is another one, or a
            time is not a whole number of minutes; the message shows what was found.

    Shape:
        ``(T,)`` -> ``(T,)``

    Example::

        >>> decode_cf_times([0, 90], "minutes since 2020-01-01 00:00:00")
        array(['2020-01-01T00:00', '2020-01-01T01:30'], dtype='datetime64[m]')
    """
    units = units.decode() if isinstance(units, bytes) else units
    calendar = (calendar.decode() if isinstance(calendar, bytes) else calendar) or "standard"
    if not isinstance(units, str) or " since " not in units:
        raise ValueError(f"CF time units must read '<unit> since <date>' (e.g. 'minutes since 2020-01-01'), "
                         f"got {units!r}")
    unit, origin = (part.strip() for part in units.split(" since ", 1))
    if unit.lower() not in _CF_UNITS:
        raise ValueError(f"CF time units {units!r}: unknown unit {unit!r}; seconds, minutes, hours or days")
    if str(calendar).lower() not in _CF_CALENDARS:
        raise ValueError(f"CF calendar {calendar!r} is not read here; the calendars read are {list(_CF_CALENDARS)}")
    start = _cf_origin(origin, units)
    minutes = np.asarray(values, dtype=np.float64).ravel() * _CF_UNITS[unit.lower()]
    if not np.all(np.isfinite(minutes)) or np.any(np.abs(minutes - np.round(minutes)) > 1e-6):
        raise ValueError(f"CF times in {units!r} must be finite whole minutes, e.g. got {minutes[:3].tolist()} minutes")
    times = start + np.round(minutes).astype(np.int64).astype("timedelta64[m]")
    if str(calendar).lower() != "proleptic_gregorian" and times.size and times.min() < np.datetime64("1582-10-15"):
        raise ValueError(f"CF calendar {calendar!r} counts dates before 1582-10-15 in the Julian calendar, which "
                         f"is not read here")
    return times


def _cf_origin(origin: str, units: str) -> np.datetime64:
    """The date of CF time units (``"2020-01-01"``, ``"2020-01-01 00:00:00"``, ``"...T00:00Z"``,
    ``"... UTC"``) as ``datetime64[m]``; other time zones are refused."""
    text = origin.replace("T", " ").strip()
    for zone in ("UTC", "Z", "+00:00", "+0000", "+00"):
        if text.endswith(zone):
            text = text[: -len(zone)].strip()
    date, _, clock = text.partition(" ")
    try:
        return np.datetime64(f"{date}T{clock}" if clock else date, "m")
    except ValueError:
        raise ValueError(f"CF time units {units!r}: cannot read {origin!r} as a UTC date") from None


def _common_step(timestamps: Any) -> int:
    """The most common difference, in minutes, between consecutive time stamps."""
    t = parse_timestamps(timestamps)
    if t.size < 2:
        raise ValueError("the step of a series needs at least two time stamps")
    values, counts = np.unique(np.diff(t.astype(np.int64)), return_counts=True)
    return int(values[np.argmax(counts)])


def time_step(timestamps: Any) -> int:
    """The step of a series in minutes: the most common difference between consecutive time
    stamps.

    Raises:
        ValueError: fewer than two time stamps, or a step that is not positive.

    Example::

        >>> time_step(np.array(["201408040000", "201408040030", "201408040100"]))
        30
    """
    step = _common_step(timestamps)
    if step <= 0:
        raise ValueError(f"the time stamps' step is {step} minutes; time stamps must increase")
    return step


def steps_per_day(timestamps: Any) -> int:
    """How many steps of the series make one day: ``1440 / step`` with ``step`` the most common
    difference (in minutes) between consecutive time stamps (:func:`time_step`).

    Raises:
        ValueError: the step does not divide a day (e.g. 7 minutes), is not positive, or the
            series has fewer than two time stamps; the message says what was found.

    Example::

        >>> steps_per_day(np.array(["2014080401", "2014080402", "2014080403"]))
        24
    """
    step = _common_step(timestamps)
    if step <= 0 or 1440 % step:
        raise ValueError(f"the time stamps' step is {step} minutes, which does not divide a day; give the "
                         f"intervals as steps (--period-interval, --trend-interval or --steps-per-day)")
    return 1440 // step


def read_holidays(path: Any) -> np.ndarray:
    """Read a holiday list: one date per line, ``YYYY-MM-DD`` or ``YYYYMMDD``; blank lines and
    text after ``#`` are ignored.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a date (the message names the file and the line).

    Shape:
        ``(D,)`` ``datetime64[D]``, sorted, without repeats.

    Example::

        >>> read_holidays("holidays.txt")        # doctest: +SKIP
        array(['2014-09-01'], dtype='datetime64[D]')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"holidays must be the path of a text file of dates, got {path!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"holidays={str(path)!r}: no such file (give a text file with one date per line, "
                                f"YYYY-MM-DD)")
    dates = []
    with open(p, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            if len(text) == 8 and text.isdigit():
                text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
            try:
                if len(text) != 10:
                    raise ValueError
                dates.append(np.datetime64(text, "D"))
            except ValueError:
                raise ValueError(f"holidays file {str(p)!r}, line {number}: {line.strip()!r} is not a date; "
                                 f"write one date per line as YYYY-MM-DD or YYYYMMDD") from None
    return np.unique(np.array(dates, dtype="datetime64[D]"))


def calendar_features(timestamps: Any, holidays: Optional[Sequence[Any]] = None) -> np.ndarray:
    r"""The calendar features of every time stamp (see the module documentation for the formula).

    Args:
        timestamps: anything :func:`parse_timestamps` reads.
        holidays: dates (``datetime64[D]`` or ``"YYYY-MM-DD"`` strings, e.g. from
            :func:`read_holidays`); ``None`` leaves the holiday column at 0.

    Returns:
        ``float32`` array, columns :data:`CALENDAR_FEATURES`.

    Shape:
        ``(T,)`` -> ``(T, 6)``

    Example::

        >>> f = calendar_features(np.array(["2014-09-01T06:00"], dtype="datetime64[m]"), ["2014-09-01"])
        >>> f.round(3).tolist()                  # 06:00 on Monday 1 September 2014, Labor Day
        [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]]
    """
    t = parse_timestamps(timestamps)
    minutes = t.astype(np.int64)
    hour = (minutes % 1440) / 60.0
    day = t.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7          # 1970-01-01 was a Thursday (3, Monday = 0)
    hol = np.zeros(t.shape, dtype=bool)
    if holidays is not None:
        hol = np.isin(day, np.asarray(holidays, dtype="datetime64[D]"))
    out = np.stack([np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
                    np.sin(2 * np.pi * weekday / 7), np.cos(2 * np.pi * weekday / 7),
                    (weekday >= 5).astype(np.float64), hol.astype(np.float64)], axis=1)
    return out.astype(np.float32)
