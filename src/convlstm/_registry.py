"""Resolving Keras-style identifiers (a name, a ``{"class_name", "config"}`` dict, an object or a
callable) against a table of classes, with errors that name the parameter and what is allowed."""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Mapping

from ._errors import ParameterTypeError


def snake_case(name: str) -> str:
    """``"GlorotUniform"`` -> ``"glorot_uniform"``, ``"L1L2"`` -> ``"l1_l2"``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower().replace("l1l2", "l1_l2")


def resolve(identifier: Any, table: Mapping[str, Callable[..., Any]], *, kind: str, parameter: str,
            allow_none: bool = True) -> Any:
    """Turn ``identifier`` into an object from ``table`` (name -> factory taking keyword config).

    ``table`` keys are snake_case names; Keras's CamelCase class names are accepted too.
    """
    if identifier is None:
        if allow_none:
            return None
        raise ValueError(f"{parameter}=None is not allowed; give a {kind} name, object or callable")
    allowed = ", ".join(sorted(table))
    if isinstance(identifier, str):
        key = identifier if identifier in table else snake_case(identifier)
        if key not in table:
            raise ValueError(
                f"{parameter}={identifier!r} is not a known {kind}; allowed: {allowed}, "
                f"{'None, ' if allow_none else ''}an object or a callable"
            )
        return table[key]()
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(f"{parameter}: a {kind} config dict needs a 'class_name' key, got {identifier!r}")
        name = identifier["class_name"]
        key = name if name in table else snake_case(str(name))
        if key not in table:
            raise ValueError(f"{parameter}: unknown {kind} class {name!r}; allowed: {allowed}")
        config: Dict[str, Any] = dict(identifier.get("config") or {})
        try:
            return table[key](**config)
        except TypeError as err:
            raise ValueError(f"{parameter}: bad config for {kind} {name!r}: {err}") from None
    if callable(identifier):
        return identifier
    raise ParameterTypeError(
        parameter, f"{parameter} must be a {kind} name, a config dict, an object or a callable, "
                   f"got {type(identifier).__name__}"
    )
