"""A registry of ready models, by name: :func:`register_model`, :func:`create`, :func:`list_models`."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Optional, TypeVar

import torch.nn as nn

from .._errors import ParameterTypeError

__all__ = ["register_model", "create", "list_models", "model_info"]

_MODELS: Dict[str, Callable[..., nn.Module]] = {}
_DESCRIPTIONS: Dict[str, str] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str, *, description: Optional[str] = None) -> Callable[[F], F]:
    """Decorator: register a model class or factory function under ``name``.

    The factory is called with the keyword overrides given to :func:`create` and must return an
    :class:`torch.nn.Module` that maps ``(B, T_in, H, W, C)`` to ``(B, T_out, H, W, C_out)``.

    Example::

        >>> @register_model("tiny-nextframe", description="one small ConvLSTM layer")
        ... def tiny(**overrides):
        ...     return KerasNextFrame(filters=(8,), kernel_sizes=(3,), **overrides)
        >>> create("tiny-nextframe", in_channels=2)
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"register_model: name must be a non-empty str, got {name!r}")

    def decorate(factory: F) -> F:
        if not callable(factory):
            raise TypeError(f"register_model({name!r}) must decorate a class or function, got {factory!r}")
        if name in _MODELS and _MODELS[name] is not factory:
            raise ValueError(f"register_model: a model named {name!r} is already registered ({_MODELS[name]!r})")
        _MODELS[name] = factory
        doc = description or (inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")
        _DESCRIPTIONS[name] = doc
        return factory

    return decorate


def list_models() -> List[str]:
    """The registered model names, sorted."""
    return sorted(_MODELS)


def model_info(name: str) -> str:
    """The one-line description of a registered model."""
    _check_name(name)
    return _DESCRIPTIONS[name]


def _check_name(name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (one of {', '.join(list_models())}), got {name!r}")
    if name not in _MODELS:
        raise ValueError(f"unknown model name={name!r}; registered models: {', '.join(list_models())}")


def create(name: str, *, start_from: str = "none", **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` with its defaults, changed by ``overrides``.

    ``start_from`` writes the model as a correction of a baseline that an untrained model equals
    (:class:`convlstm.models.StartFromBaseline`): ``"none"`` (default: the model as published),
    ``"persistence"``, ``"seasonal"`` or ``"auto"`` (what ``convlstm fit`` uses: nothing for a
    model that starts from a baseline by construction, such as ``convlstm-warp``, else persistence).

    Example::

        >>> model = create("shi2015-2x128", input_steps=5, output_steps=5)
        >>> model(torch.rand(2, 5, 64, 64, 1)).shape
        torch.Size([2, 5, 64, 64, 1])
    """
    _check_name(name)
    factory = _MODELS[name]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        sig = None
    if sig is not None and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        allowed = [p for p, v in sig.parameters.items() if v.kind in (v.KEYWORD_ONLY, v.POSITIONAL_OR_KEYWORD)
                   and p != "self"]
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ParameterTypeError("overrides", f"create({name!r}): unknown option(s) {', '.join(unknown)}; "
                                                  f"allowed: {', '.join(allowed)}")
    from .baseline_start import start_from_baseline  # the wrapper imports the registry's package

    return start_from_baseline(factory(**overrides), start_from)
