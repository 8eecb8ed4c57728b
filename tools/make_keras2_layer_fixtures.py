"""Generate Keras 2 (tf-keras) reference outputs for the ConvLSTM layers.

Run by hand, with TensorFlow and tf-keras in a separate environment (they are not test
dependencies); the output file is committed and the tests read it without TensorFlow:

    python3 -m venv /tmp/tfkeras && /tmp/tfkeras/bin/pip install tensorflow-cpu tf-keras
    /tmp/tfkeras/bin/python tools/make_keras2_layer_fixtures.py

Made with tensorflow-cpu 2.21.0 and tf-keras 2.21.0. Writes tests/fixtures/keras2_layers.npz:
for each case ``i``: ``cfg{i}`` (the tf-keras layer config as JSON), ``call{i}`` (call options as
JSON), ``w{i}_{j}`` (the layer's weights), ``x{i}``, optional ``h{i}``/``c{i}``/``m{i}`` (initial
state and mask) and the outputs ``y{i}_{k}`` (several for stateful call sequences).
"""
import json
import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow as tf  # noqa: E402

N_CASES = 48
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "keras2_layers.npz")
CLASSES = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}


def out_size(n, k, s, d, padding):
    return -(-n // s) if padding == "same" else (n - d * (k - 1) - 1) // s + 1


def make_case(i):
    rng = random.Random(5000 + i)
    while True:
        rank = rng.choice([1, 2, 2, 3])
        spatial = tuple(rng.randint(*{1: (4, 8), 2: (3, 6), 3: (3, 4)}[rank]) for _ in range(rank))
        kernel = tuple(rng.choice([1, 2, 3]) for _ in range(rank))
        padding = rng.choice(["valid", "same"])
        strides, dilation = (1,) * rank, (1,) * rank
        if rng.random() < 0.3:
            strides = tuple(rng.choice([1, 2]) for _ in range(rank))
        elif rng.random() < 0.3:
            dilation = tuple(rng.choice([1, 2]) for _ in range(rank))
        state = [out_size(n, k, s, d, padding) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
        if min(state) >= 1:
            break
    stateful = rng.random() < 0.2
    cfg = dict(filters=rng.randint(1, 3), kernel_size=kernel, strides=strides, padding=padding,
               dilation_rate=dilation, activation=rng.choice(["tanh", "relu", "sigmoid", "linear"]),
               use_bias=rng.random() < 0.8, return_sequences=rng.random() < 0.5,
               return_state=rng.random() < 0.4, go_backwards=rng.random() < 0.3, stateful=stateful)
    if rng.random() < 0.25:  # mostly Keras 2's default 'hard_sigmoid' (0.2 slope)
        cfg["recurrent_activation"] = rng.choice(["sigmoid", "tanh"])
    call = dict(rank=rank, batch=rng.randint(1, 3), steps=rng.randint(1, 4), channels=rng.randint(1, 3),
                spatial=spatial, state=state, initial_state=(not stateful) and rng.random() < 0.3,
                mask=rng.random() < 0.25)
    return cfg, call


def main():
    tf.random.set_seed(0)
    keras.backend.set_floatx("float64")  # a per-layer dtype="float64" trips over float32 initial states
    arrays = {}
    for i in range(N_CASES):
        cfg, call = make_case(i)
        nrng = np.random.default_rng(i)
        rank, b = call["rank"], call["batch"]
        batch_shape = (b, call["steps"]) + tuple(call["spatial"]) + (call["channels"],)
        # float64: TensorFlow's float32 CPU convolution (oneDNN) is wrong for single-channel inputs
        # with strides (1, 2); float64 avoids it and float32 rounding. Inputs and weights are float32 values.
        layer_kwargs = dict(cfg)
        if cfg["stateful"]:
            layer_kwargs["batch_input_shape"] = batch_shape
        layer = CLASSES[rank](**layer_kwargs)
        x = nrng.normal(0, 1, batch_shape).astype("float32")
        kwargs = {}
        state_shape = (b,) + tuple(call["state"]) + (cfg["filters"],)
        if call["initial_state"]:
            h0 = nrng.normal(0, 0.5, state_shape).astype("float32")
            c0 = nrng.normal(0, 0.5, state_shape).astype("float32")
            kwargs["initial_state"] = [tf.constant(h0, tf.float64), tf.constant(c0, tf.float64)]
            arrays[f"h{i}"], arrays[f"c{i}"] = h0, c0
        if call["mask"]:
            m = nrng.random((b, call["steps"])) < 0.6
            kwargs["mask"] = tf.constant(m)
            arrays[f"m{i}"] = m
        layer(tf.constant(x, tf.float64), **kwargs)  # build
        layer.set_weights([nrng.normal(0, 0.3, w.shape).astype("float32").astype("float64")
                           for w in layer.get_weights()])
        if cfg["stateful"]:
            layer.reset_states()
        arrays[f"x{i}"] = x
        for j, w in enumerate(layer.get_weights()):
            arrays[f"w{i}_{j}"] = w.astype("float32")  # exact: the values were drawn in float32
        inputs = [x] + ([nrng.normal(0, 1, x.shape).astype("float32")] if cfg["stateful"] else [])
        outputs = []
        for k, xk in enumerate(inputs):
            arrays[f"x{i}_{k}"] = xk
            y = layer(tf.constant(xk, tf.float64), **kwargs)
            outputs.append([t.numpy() for t in y] if cfg["return_state"] else [y.numpy()])
        for k, out in enumerate(outputs):
            for n, t in enumerate(out):
                arrays[f"y{i}_{k}_{n}"] = t
        arrays[f"cfg{i}"] = np.array(json.dumps(layer.get_config()))
        call["calls"] = len(inputs)
        arrays[f"call{i}"] = np.array(json.dumps(call))
    arrays["meta"] = np.array(json.dumps({"n_cases": N_CASES, "tensorflow": tf.__version__,
                                          "tf_keras": keras.__version__, "python": sys.version.split()[0]}))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT}: {N_CASES} cases, {os.path.getsize(OUT) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
