"""convlstm: Keras's ConvLSTM layers as native PyTorch modules, equal to Keras within float32 rounding."""
from .cell import ConvLSTMCell
from .layers import (ConvLSTM, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D, apply_constraints, regularization_loss,
                     release_workspaces)
from .wrappers import Bidirectional
from ._auto_timing import auto_policy, set_auto_policy
from . import activations, constraints, initializers, regularizers

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("data", "metrics", "models", "plots", "keras", "onnx", "training")


def __getattr__(name):
    # The toolkit's submodules are imported on first use, so `import convlstm` stays light.
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ConvLSTMCell", "ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional",
    "regularization_loss", "apply_constraints", "release_workspaces", "set_auto_policy", "auto_policy",
    "activations", "constraints", "initializers",
    "regularizers", "__version__",
]
