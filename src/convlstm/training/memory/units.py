"""Byte counts as people write them: :func:`format_bytes` for messages, :func:`parse_memory_limit`
for ``--memory-limit`` and ``FitConfig.memory_limit``."""
from __future__ import annotations

import math
import re
from typing import Any, Optional, Union

from ..._errors import ParameterError

__all__ = ["format_bytes", "parse_memory_limit"]

_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6, "g": 10 ** 9, "gb": 10 ** 9,
          "t": 10 ** 12, "tb": 10 ** 12, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def format_bytes(n: Optional[float]) -> str:
    """``n`` bytes as a message shows them: ``9.62 GB``, ``512 MB``, ``3.4 MB``, ``12 kB``,
    ``1.5 kB``, ``800 B`` (decimal units); ``unknown`` for ``None``."""
    if n is None:
        return "unknown"
    n = float(n)
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if abs(n) >= 1e7:
        return f"{n / 1e6:.0f} MB"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.0f} kB"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def parse_memory_limit(value: Any, name: str = "memory_limit") -> Union[None, str, int]:
    """Read a memory limit: ``None`` or ``"auto"`` (-> ``None``: use
    :data:`~convlstm.training.memory.HEADROOM` of the available memory), ``"off"`` (no guard), a
    number of bytes, or a size with a unit: ``"8GB"``, ``"512 MB"``, ``"1.5G"`` (decimal: k, M, G,
    T with or without B) or ``"8GiB"`` (binary: KiB, MiB, GiB, TiB). Returns ``None``, ``"off"``
    or the bytes as an int.

    Args:
        value: the limit as given (``--memory-limit``, ``FitConfig.memory_limit``).
        name: the parameter's name in the error message.

    Raises:
        ParameterError: (a ``ValueError``) anything else, including sizes under one byte.

    Example::

        >>> parse_memory_limit("8GB"), parse_memory_limit("8 gib"), parse_memory_limit("auto")
        (8000000000, 8589934592, None)
    """
    allowed = ParameterError(name, f"{name} must be 'auto', 'off', a number of bytes or a size such as '8GB', "
                                   f"'512MB' or '16GiB'; got {value!r}")
    if value is None:
        return None
    if isinstance(value, bool):
        raise allowed
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)) or value < 1:
            raise allowed
        return int(value)
    if not isinstance(value, str):
        raise allowed
    text = value.strip().lower()
    if text in ("auto", ""):
        return None
    if text == "off":
        return "off"
    m = _SIZE.match(text)
    if m is None or m.group(2) not in _UNITS:
        raise allowed
    size = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(size) or size < 1:
        raise allowed
    return int(size)
