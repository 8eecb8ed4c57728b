"""How to install an optional extra, in one place: every "needs the ... extra" message says it
through :func:`install_hint`.

convlstm is not on the Python package index, so ``pip install "convlstm[train]"`` does not work;
the package installs from a clone of its repository (``pip install ".[train]"``), from a wheel
built there (``python -m build``), or from a git URL.
"""
from __future__ import annotations

#: The optional extras of ``pyproject.toml``.
EXTRAS = ("train", "onnx", "openvino", "radar", "zarr", "docs", "test", "bench-tf")


def wheel_name() -> str:
    """The file name of the wheel ``python -m build`` writes into ``dist/``."""
    from . import __version__

    return f"convlstm-{__version__}-py3-none-any.whl"


def import_pysteps(*names: str, needed_for: str) -> tuple:
    """pysteps's submodules ``names`` (e.g. ``"motion"``, ``"utils.conversion"``), imported with
    the line pysteps prints about its configuration file swallowed; or an ``ImportError`` that
    says what ``needed_for`` them (e.g. ``"the steps baseline needs pysteps (and OpenCV for
    Lucas-Kanade), which are"``) and how to install the ``radar`` extra."""
    import contextlib
    import importlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            importlib.import_module("pysteps")   # first: a submodule imported earlier would not tell
            return tuple(importlib.import_module(f"pysteps.{name}") for name in names)
    except ImportError as exc:
        raise ImportError(f"{needed_for} not installed ({exc}); install with: {install_hint('radar')}") from exc


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, e.g. for ``"train"``: ``pip install ".[train]" (from a
    clone of convlstm; or a built wheel: "dist/convlstm-0.1.0-py3-none-any.whl[train]")``."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {', '.join(EXTRAS)}")
    return (f'pip install ".[{extra}]" (from a clone of convlstm; or a built wheel: '
            f'"dist/{wheel_name()}[{extra}]")')
