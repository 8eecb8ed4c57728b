"""convlstm: Keras's ConvLSTM layers, exact to the last digit, as native PyTorch modules."""
from .cell import ConvLSTMCell
from .layers import ConvLSTM, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D, apply_constraints, regularization_loss
from .wrappers import Bidirectional
from . import activations, constraints, initializers, regularizers

__version__ = "0.1.0"

__all__ = [
    "ConvLSTMCell", "ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "Bidirectional",
    "regularization_loss", "apply_constraints", "activations", "constraints", "initializers",
    "regularizers", "__version__",
]
