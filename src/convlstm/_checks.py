"""Argument checks shared by the whole package.

Each check returns the value in its plain Python type (``numpy.int64(3)`` -> ``3``) or raises an
error that names the parameter, the value given and what is allowed: a
:class:`~convlstm._errors.ParameterTypeError` (a ``TypeError``) for a value of the wrong type, a
:class:`~convlstm._errors.ParameterError` (a ``ValueError``) for a value out of range. Both carry
the parameter's name, so that the command line can name the flag that set it.

Example::

    >>> check_int("stride", 2, minimum=1)
    2
    >>> check_int("stride", 0, minimum=1)
    Traceback (most recent call last):
        ...
    convlstm._errors.ParameterError: stride must be an integer >= 1, got 0
"""
from __future__ import annotations

import math
import numbers
from typing import AbstractSet, Any, Iterable, Mapping, Optional, Sequence, Tuple

from ._errors import ParameterError, ParameterTypeError

__all__ = ["is_integer", "is_real", "check_int", "check_positive_int", "check_number", "check_bool",
           "check_choice", "check_fractions"]


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), ``True`` and ``False`` excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python's or numpy's), ``True`` and ``False`` excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``.

    Args:
        name: the parameter, as the error names it.
        value: the value given.
        minimum: the smallest value allowed.

    Raises:
        ParameterTypeError: ``value`` is not an integer (a ``bool``, a ``float``, ...).
        ParameterError: ``value < minimum``.
    """
    if not is_integer(value):
        raise ParameterTypeError(name, f"{name} must be an integer >= {minimum}, got {value!r} "
                                       f"(type {type(value).__name__})")
    if value < minimum:
        raise ParameterError(name, f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= 1`` (a size, a count of filters).

    Raises:
        ParameterTypeError: ``value`` is not an integer.
        ParameterError: ``value < 1``.
    """
    if not is_integer(value):
        raise ParameterTypeError(name, f"{name} must be a positive int, got {value!r}")
    if value < 1:
        raise ParameterError(name, f"{name} must be a positive int (>= 1), got {value}")
    return int(value)


def check_number(name: str, value: Any) -> float:
    """Return ``value`` as a finite ``float``.

    Raises:
        ParameterTypeError: ``value`` is not a real number (a ``bool``, a string, ...).
        ParameterError: ``value`` is NaN or infinite.
    """
    if not is_real(value):
        raise ParameterTypeError(name, f"{name} must be a real number, got {value!r} "
                                       f"(type {type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ParameterError(name, f"{name} must be a finite number, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is ``True`` or ``False``; raise :class:`ParameterTypeError` otherwise
    (``1`` and ``"yes"`` included)."""
    if not isinstance(value, bool):
        raise ParameterTypeError(name, f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value: Any, allowed: Sequence[str], *, lower: bool = False,
                 notes: Optional[Mapping[str, str]] = None) -> str:
    """Return ``value`` if it is one of the names ``allowed`` (compared in lower case, and
    returned so, when ``lower``).

    Args:
        name: the parameter, as the error names it.
        value: the value given.
        allowed: the names allowed.
        lower: compare (and return) ``value`` in lower case.
        notes: why some names that are not allowed are not (``{"causal": "..."}``), added to
            the error for that name.

    Raises:
        ParameterTypeError: ``value`` is not a string.
        ParameterError: ``value`` is not in ``allowed``.
    """
    names = ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        raise ParameterTypeError(name, f"{name} must be one of {names}, got {value!r}")
    chosen = value.lower() if lower else value
    if chosen not in allowed:
        note = (notes or {}).get(chosen)
        raise ParameterError(name, f"{name}={value!r} is not allowed; allowed: {names}"
                                   f"{f' ({note})' if note else ''}")
    return chosen


def check_fractions(name: str, value: Any) -> Tuple[float, float, float]:
    """Return the train, validation and test fractions ``value`` as three ``float``: each
    ``>= 0``, summing to 1 (within ``1e-6``), the train fraction ``> 0``.

    Raises:
        ParameterTypeError: ``value`` is not a sequence of real numbers.
        ParameterError: it does not hold three, or they are not such fractions.
    """
    example = "e.g. (0.7, 0.1, 0.2)"
    ordered = isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping, AbstractSet))
    values = tuple(value) if ordered else ()
    if not ordered or not all(is_real(f) for f in values):
        raise ParameterTypeError(name, f"{name} must be three numbers (train, val, test), {example}; got {value!r}")
    if len(values) != 3:
        raise ParameterError(name, f"{name} must be three numbers (train, val, test), {example}; got {value!r}")
    fractions = tuple(float(f) for f in values)
    total = sum(fractions)
    if not all(math.isfinite(f) and f >= 0 for f in fractions) or abs(total - 1.0) > 1e-6 or fractions[0] == 0:
        raise ParameterError(name, f"{name} must be three fractions (train, val, test); the fractions must be "
                                   f">= 0, sum to 1 and give train a positive share, {example}; "
                                   f"got {value!r} (sum {total:.6g})")
    return fractions
