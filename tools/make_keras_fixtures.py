"""Generate the Keras fixtures in tests/fixtures/keras/ with real Keras (run by hand, not in CI).

Two runs, one per Keras generation:

    # Keras 2 (tf-keras 2.21.0 on tensorflow-cpu 2.21.0, h5py 3.14; Python 3.11), outside the repo venv:
    python3 -m venv /tmp/tfkeras && /tmp/tfkeras/bin/pip install tensorflow-cpu tf-keras h5py
    TF_USE_LEGACY_KERAS=1 CUDA_VISIBLE_DEVICES= /tmp/tfkeras/bin/python tools/make_keras_fixtures.py keras2

    # Keras 3 (keras 3.15.1, torch backend, the repo's .venv):
    KERAS_BACKEND=torch .venv/bin/python tools/make_keras_fixtures.py keras3

For every model NAME it writes the model file (``NAME.h5`` full model for Keras 2, ``NAME.keras``
for Keras 3; ``.gz``-compressed for the two large keras-io examples, whose weights are quantised
so that they compress) and ``NAME.npz`` with the inputs ``x0, x1, ...`` and Keras's outputs
``y0, y1, ...`` (``predict``, eval mode). Weights are set deterministically (seeded, small
integers times a per-tensor scale); BatchNormalization statistics are non-trivial. Weights-only
files (``k2_weights_only.h5``, ``k3_weights_only.weights.h5``) come with their own npz.

TensorFlow's CPU kernels do not run channels_first convolutions, so every channels_first model is
made with Keras 3 (torch backend).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "keras")


def _weight_path(w) -> str:
    return str(getattr(w, "path", None) or w.name)


def set_weights(model, seed: int) -> None:
    """Deterministic, compressible weights: integers in [-4, 4] times 1 / (2.6 sqrt(fan_in))."""
    rng = np.random.RandomState(seed)
    for w in model.weights:
        shape = tuple(int(d) for d in w.shape)
        name = _weight_path(w)
        ints = rng.randint(-4, 5, size=shape).astype(np.float32)
        if "moving_variance" in name:
            value = 0.5 + (ints + 4) / 8.0
        elif "moving_mean" in name:
            value = ints * 0.05
        elif "gamma" in name:
            value = 1.0 + ints * 0.1
        elif len(shape) <= 1:
            value = ints * 0.05
        else:
            fan_in = int(np.prod(shape[:-1]))
            value = ints / (2.6 * np.sqrt(fan_in))
        w.assign(value.astype(np.float32))


def save_case(name, model, inputs, keras_major, compress=False, weights_only=False):
    inputs = [np.asarray(x, np.float32) for x in inputs]
    outputs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    arrays = {f"x{i}": x for i, x in enumerate(inputs)}
    arrays.update({f"y{i}": np.asarray(y, np.float32) for i, y in enumerate(outputs)})
    np.savez_compressed(os.path.join(OUT, name + ".npz"), **arrays)
    if weights_only:
        fname = name + (".h5" if keras_major == 2 else ".weights.h5")
        model.save_weights(os.path.join(OUT, fname))
    else:
        fname = name + (".h5" if keras_major == 2 else ".keras")
        model.save(os.path.join(OUT, fname))
    path = os.path.join(OUT, fname)
    if compress:
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        os.remove(path)
        path += ".gz"
    print(f"{name}: {os.path.getsize(path)} bytes, outputs {[tuple(y.shape) for y in outputs]}")


def rand(rng, *shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------ Keras 2
def keras2():
    import tf_keras as keras

    L = keras.layers
    rng = np.random.RandomState(0)

    # 1. keras-io / Keras examples "conv_lstm.py" (2016): Sequential, 4 x (ConvLSTM2D(40, 3x3) + BN),
    #    Conv3D head; Keras 2.2-era layer names; default recurrent_activation 'hard_sigmoid'.
    seq = keras.Sequential(name="sequential_1")
    seq.add(L.ConvLSTM2D(filters=40, kernel_size=(3, 3), input_shape=(None, 40, 40, 1), padding="same",
                         return_sequences=True, name="conv_lst_m2d_1"))
    seq.add(L.BatchNormalization(name="batch_normalization_1"))
    for i in range(2, 5):
        seq.add(L.ConvLSTM2D(filters=40, kernel_size=(3, 3), padding="same", return_sequences=True,
                             name=f"conv_lst_m2d_{i}"))
        seq.add(L.BatchNormalization(name=f"batch_normalization_{i}"))
    seq.add(L.Conv3D(filters=1, kernel_size=(3, 3, 3), activation="sigmoid", padding="same",
                     data_format="channels_last", name="conv3d_1"))
    set_weights(seq, 1)
    save_case("k2_nextframe_2016", seq, [rng.uniform(0, 1, (1, 3, 40, 40, 1))], 2, compress=True)

    # 2. ConvLSTM options: valid padding with strides, dilation, go_backwards, relu, no bias.
    x = keras.Input((3, 9, 9, 2), name="frames")
    a = L.ConvLSTM2D(3, 3, strides=2, padding="valid", return_sequences=True, name="conv_lst_m2d_1")(x)
    b = L.ConvLSTM2D(4, 3, dilation_rate=2, padding="same", go_backwards=True, return_sequences=True,
                     activation="relu", name="conv_lstm2d_dilated")(x)
    c = L.ConvLSTM2D(2, (3, 2), padding="same", recurrent_activation="sigmoid", use_bias=False,
                     unit_forget_bias=False, name="conv_lstm2d_nobias")(b)
    m = keras.Model(x, [a, c], name="options")
    set_weights(m, 2)
    save_case("k2_convlstm_options", m, [rand(rng, 2, 3, 9, 9, 2)], 2)

    # 3. Functional graph: two inputs, return_state, states passed as initial_state, a shared
    #    layer, Bidirectional, merge layers, several outputs.
    i1, i2 = keras.Input((3, 8, 8, 2)), keras.Input((3, 8, 8, 2))
    o, h, c = L.ConvLSTM2D(3, 3, padding="same", return_state=True)(i1)
    y = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(i2, initial_state=[h, c])
    bi = L.Bidirectional(L.ConvLSTM2D(2, 3, padding="same", return_sequences=True))(y)
    shared = L.Conv2D(3, 1, activation="tanh")
    z1, z2 = shared(h), shared(c)
    merged = L.Concatenate(axis=-1)([L.Add()([z1, z2]), L.Multiply()([z1, o]), L.Average()([z2, o]),
                                     L.Subtract()([z1, z2]), L.Maximum()([z1, z2]), L.Minimum()([z1, z2])])
    m = keras.Model([i1, i2], [bi, merged, o], name="graph")
    set_weights(m, 3)
    save_case("k2_functional_states", m, [rand(rng, 2, 3, 8, 8, 2), rand(rng, 2, 3, 8, 8, 2)], 2)

    # 4. ConvLSTM1D with Bidirectional and the 1D layers.
    x = keras.Input((4, 10, 2))
    t = L.Bidirectional(L.ConvLSTM1D(3, 3, padding="same", return_sequences=True), merge_mode="sum")(x)
    t = L.TimeDistributed(L.Conv1D(2, 3, padding="causal", dilation_rate=2))(t)
    t = L.TimeDistributed(L.MaxPooling1D(2))(t)
    t = L.TimeDistributed(L.ZeroPadding1D((1, 2)))(t)
    t = L.TimeDistributed(L.Cropping1D((0, 1)))(t)
    t = L.ConvLSTM1D(2, 2, strides=2)(t)
    t = L.Conv1D(3, 2, padding="same", strides=2)(t)
    t = L.AveragePooling1D(2, padding="same")(t)
    t = L.Flatten()(t)
    t = L.Dense(4, activation="tanh")(t)
    t = L.RepeatVector(2)(t)
    t = L.Dense(3, activation="hard_sigmoid")(t)
    m = keras.Model(x, t, name="one_d")
    set_weights(m, 4)
    save_case("k2_convlstm1d", m, [rand(rng, 2, 4, 10, 2)], 2)

    # 5. ConvLSTM3D with Bidirectional and the 3D layers.
    x = keras.Input((2, 5, 5, 5, 1))
    t = L.ConvLSTM3D(2, 2, padding="same", return_sequences=True)(x)
    t = L.Bidirectional(L.ConvLSTM3D(2, 3, padding="valid"), merge_mode="concat")(t)
    t = L.Conv3D(3, 2, padding="same")(t)
    t = L.MaxPooling3D(2, strides=1, padding="same")(t)
    t = L.UpSampling3D(2)(t)
    t = L.ZeroPadding3D(1)(t)
    t = L.Cropping3D(((1, 0), (0, 1), (1, 1)))(t)
    t = L.AveragePooling3D(2)(t)
    t = L.Conv3DTranspose(2, 3, strides=2, padding="same")(t)
    t = L.Conv3DTranspose(2, 2, padding="valid")(t)
    t = L.BatchNormalization()(t)
    t = L.Activation("elu")(t)
    m = keras.Model(x, t, name="three_d")
    set_weights(m, 5)
    save_case("k2_convlstm3d", m, [rand(rng, 2, 2, 5, 5, 5, 1)], 2)

    # 6. 2D layers after a ConvLSTM2D.
    x = keras.Input((3, 8, 8, 2))
    t = L.ConvLSTM2D(4, 3, padding="same")(x)
    t = L.BatchNormalization()(t)
    t = L.Conv2DTranspose(3, 3, strides=2, padding="same")(t)
    t = L.LeakyReLU(0.1)(t)
    t = L.AveragePooling2D(3, strides=2, padding="same")(t)
    t = L.ZeroPadding2D(((1, 0), (2, 1)))(t)
    t = L.Cropping2D(((0, 1), (1, 0)))(t)
    t = L.UpSampling2D(2)(t)
    t = L.UpSampling2D(size=(1, 2), interpolation="bilinear")(t)
    t = L.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.05)(t)
    t = L.SpatialDropout2D(0.2)(t)
    t = L.Conv2DTranspose(2, 2, strides=3, padding="valid")(t)
    t = L.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=1)(t)
    t = L.Conv2D(2, 3, strides=2, padding="same", activation="relu")(t)
    t = L.MaxPooling2D(2, padding="same")(t)
    t = L.Permute((3, 1, 2))(t)
    t = L.Reshape((-1,))(t)
    t = L.Dropout(0.5)(t)
    t = L.Dense(3)(t)
    t = L.Activation("softmax")(t)
    m = keras.Model(x, t, name="two_d")
    set_weights(m, 6)
    save_case("k2_layers2d", m, [rand(rng, 2, 3, 8, 8, 2)], 2)

    # 7. tf.keras weights-only .h5 (save_weights) for load_weights into a torch module.
    m = keras.Sequential([keras.Input((3, 6, 6, 2)),
                          L.ConvLSTM2D(3, 3, padding="same", return_sequences=True),
                          L.BatchNormalization(),
                          L.ConvLSTM2D(2, 3),
                          L.Dense(2)])
    set_weights(m, 7)
    save_case("k2_weights_only", m, [rand(rng, 2, 3, 6, 6, 2)], 2, weights_only=True)


# ------------------------------------------------------------------------------------------ Keras 3
def keras3():
    import keras

    L = keras.layers
    rng = np.random.RandomState(100)

    # 8. keras-io "Next-Frame Video Prediction with Convolutional LSTMs" (2021): 64 filters 5x5, 3x3,
    #    1x1 ConvLSTM2D (relu) + BN, Conv3D sigmoid head; Keras 3 default recurrent_activation.
    inp = L.Input(shape=(None, 16, 16, 1))  # the example has 64 x 64 frames; 16 x 16 keeps it fast
    t = L.ConvLSTM2D(64, (5, 5), padding="same", return_sequences=True, activation="relu")(inp)
    t = L.BatchNormalization()(t)
    t = L.ConvLSTM2D(64, (3, 3), padding="same", return_sequences=True, activation="relu")(t)
    t = L.BatchNormalization()(t)
    t = L.ConvLSTM2D(64, (1, 1), padding="same", return_sequences=True, activation="relu")(t)
    t = L.Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same")(t)
    m = keras.Model(inp, t)
    set_weights(m, 8)
    save_case("k3_nextframe_2021", m, [rng.uniform(0, 1, (1, 3, 16, 16, 1))], 3, compress=True)

    # 9. channels_first everywhere (2D), strides with 'same', BN on the channel axis.
    x = L.Input((3, 2, 9, 9))
    t = L.ConvLSTM2D(3, 3, strides=2, padding="same", data_format="channels_first", return_sequences=True)(x)
    t = L.TimeDistributed(L.Conv2D(2, 3, padding="same", data_format="channels_first"))(t)
    t = L.TimeDistributed(L.MaxPooling2D(2, padding="same", data_format="channels_first"))(t)
    t = L.BatchNormalization(axis=2)(t)
    t = L.ConvLSTM2D(2, 2, data_format="channels_first", recurrent_activation="hard_sigmoid")(t)
    t = L.UpSampling2D(2, data_format="channels_first")(t)
    t = L.AveragePooling2D(3, strides=2, padding="same", data_format="channels_first")(t)
    t = L.ZeroPadding2D(1, data_format="channels_first")(t)
    t = L.Cropping2D(((1, 0), (0, 1)), data_format="channels_first")(t)
    t = L.Conv2DTranspose(2, 3, strides=2, padding="same", data_format="channels_first")(t)
    f = L.Flatten(data_format="channels_first")(t)
    d = L.Dense(3)(f)
    m = keras.Model(x, [t, d])
    set_weights(m, 9)
    save_case("k3_channels_first", m, [rand(rng, 2, 3, 2, 9, 9)], 3)

    # 10. channels_first ConvLSTM1D and ConvLSTM3D, two inputs.
    x1 = L.Input((3, 2, 10))
    x2 = L.Input((2, 1, 4, 4, 4))
    a = L.ConvLSTM1D(3, 3, strides=2, padding="same", data_format="channels_first", return_sequences=True,
                     go_backwards=True)(x1)
    a = L.Bidirectional(L.ConvLSTM1D(2, 2, data_format="channels_first"), merge_mode="ave")(a)
    b = L.ConvLSTM3D(2, 3, padding="same", data_format="channels_first", dilation_rate=2)(x2)
    b = L.Conv3D(2, 2, data_format="channels_first")(b)
    b = L.MaxPooling3D(2, data_format="channels_first", padding="same")(b)
    m = keras.Model([x1, x2], [a, b])
    set_weights(m, 10)
    save_case("k3_channels_first_1d3d", m, [rand(rng, 2, 3, 2, 10), rand(rng, 2, 2, 1, 4, 4, 4)], 3)

    # 11. Bidirectional with return_state, states passed on, shared layers, TimeDistributed(BN),
    #     Keras 3 hard_sigmoid, several outputs.
    x1 = L.Input((3, 6, 6, 2))
    x2 = L.Input((2, 6, 6, 2))
    y, hf, cf, hb, cb = L.Bidirectional(
        L.ConvLSTM2D(3, 3, padding="same", return_sequences=True, return_state=True,
                     recurrent_activation="hard_sigmoid"), merge_mode="concat")(x1)
    z = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(x2, initial_state=[hf, cf])
    z = L.TimeDistributed(L.BatchNormalization())(z)
    shared = L.TimeDistributed(L.Dense(4, activation="swish"))
    s1, s2 = shared(y), shared(L.Concatenate()([z, z]))
    w = L.Add()([hb, cb])
    w = L.Conv2D(2, 3, padding="valid", dilation_rate=2)(w)
    w = L.GlobalAveragePooling2D()(w)
    m = keras.Model([x1, x2], [s1, s2, w])
    set_weights(m, 11)
    save_case("k3_bidir_states", m, [rand(rng, 2, 3, 6, 6, 2), rand(rng, 2, 2, 6, 6, 2)], 3)

    # 12. Keras 3 weights-only file for load_weights (ConvLSTM3D, BN, Conv3D).
    m = keras.Sequential([L.Input((2, 4, 4, 4, 2)),
                          L.ConvLSTM3D(2, 3, padding="same", return_sequences=True),
                          L.BatchNormalization(),
                          L.ConvLSTM3D(3, 2, padding="valid"),
                          L.Conv3D(1, 2, padding="same")])
    set_weights(m, 12)
    save_case("k3_weights_only", m, [rand(rng, 2, 2, 4, 4, 4, 2)], 3, weights_only=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("keras2", "keras3"):
        sys.exit(__doc__)
    os.makedirs(OUT, exist_ok=True)
    keras2() if sys.argv[1] == "keras2" else keras3()
    with open(os.path.join(OUT, f"VERSIONS_{sys.argv[1]}.json"), "w") as fh:
        if sys.argv[1] == "keras2":
            import tensorflow as tf
            import tf_keras
            json.dump({"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__}, fh)
        else:
            import keras
            import torch
            json.dump({"keras": keras.__version__, "backend": keras.backend.backend(), "torch": torch.__version__}, fh)
