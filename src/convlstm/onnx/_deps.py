"""What :mod:`convlstm.onnx` needs beyond torch, and the message when it is missing."""
from __future__ import annotations

import importlib
from typing import Sequence

from .._extras import install_hint

INSTALL_HINT = install_hint("onnx")


def require(modules: Sequence[str] = ("onnx", "onnxscript"), *, purpose: str = "ONNX export") -> None:
    """Import ``modules`` or raise one :class:`ImportError` naming all that are missing and the
    extra that installs them (torch's exporter needs ``onnx`` and ``onnxscript``; running a
    graph needs ``onnxruntime``)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"{purpose} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed; install the ONNX extra: {INSTALL_HINT}")
