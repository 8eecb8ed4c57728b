r"""Calendar features from time stamps: the time of day and the day of the week as cyclic
encodings, weekends and holidays, and the step of a series (how many steps make a day).

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

__all__ = ["CALENDAR_FEATURES", "parse_timestamps", "steps_per_day", "calendar_features", "read_holidays"]

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


def steps_per_day(timestamps: Any) -> int:
    """How many steps of the series make one day: ``1440 / step`` with ``step`` the most common
    difference (in minutes) between consecutive time stamps.

    Raises:
        ValueError: the step does not divide a day (e.g. 7 minutes), is not positive, or the
            series has fewer than two time stamps; the message says what was found.

    Example::

        >>> steps_per_day(np.array(["2014080401", "2014080402", "2014080403"]))
        24
    """
    t = parse_timestamps(timestamps)
    if t.size < 2:
        raise ValueError("the step of a series needs at least two time stamps")
    diffs = np.diff(t.astype(np.int64))
    values, counts = np.unique(diffs, return_counts=True)
    step = int(values[np.argmax(counts)])
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
