import os

# Keras 3 is the reference implementation in the tests; its torch backend needs no TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.dirname(__file__), ".keras_home"))
