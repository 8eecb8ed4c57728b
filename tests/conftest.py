import os

import pytest
import torch

# Keras 3 is the reference implementation in the tests; its torch backend needs no TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.dirname(__file__), ".keras_home"))
# "auto" follows its fixed rule here, the same choice in every run; tests/test_auto_timing.py
# tests the measured choice (the default) on its own
os.environ.setdefault("CONVLSTM_AUTO", "rule")


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny tensors on one thread: faster, and immune to a busy machine's contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
