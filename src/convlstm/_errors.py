"""The errors for a bad value of a named parameter, so that each front end can name it its own way."""
from __future__ import annotations

from typing import Sequence, Tuple

__all__ = ["ParameterError", "ParameterTypeError"]


class ParameterError(ValueError):
    """A ``ValueError`` about the parameter (or :class:`~convlstm.training.FitConfig` field)
    ``parameter``, whose message names it as Python spells it (``fill_nan``, ``key=``).

    The command line reports it with the flags of :attr:`parameters` instead (``fill_nan`` ->
    ``--fill-nan``), so a user of the shell reads the names they can type.

    Args:
        parameter: the parameter whose value is wrong.
        message: the message, naming the parameter as Python spells it.
        also: other parameters the message names (e.g. one that must be given with it).

    Example::

        >>> err = ParameterError("input_steps", "input_steps must be an integer >= 1; got 0")
        >>> err.parameter, str(err)
        ('input_steps', 'input_steps must be an integer >= 1; got 0')
    """

    def __init__(self, parameter: str, message: str, also: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.parameters: Tuple[str, ...] = (parameter,) + tuple(also)


class ParameterTypeError(ParameterError, TypeError):
    """A :class:`ParameterError` for a value of the wrong type (``filters=2.5``,
    ``split="0.7 0.1 0.2"``).

    It is a ``TypeError``, as Python reports a wrong argument type, and, through
    :class:`ParameterError`, a ``ValueError`` too: a front end that reports bad values to the
    user (the command line, which reads values from flags and YAML files) reports it the same way,
    while a plain ``TypeError`` stays a programming error there.

    Example::

        >>> err = ParameterTypeError("filters", "filters must be a positive int, got 2.5")
        >>> isinstance(err, TypeError), isinstance(err, ValueError), err.parameter
        (True, True, 'filters')
    """
