#!/usr/bin/env python3
"""Train the fixture networks with real Keras and write Keras's own answers.

Usage:  tools/make_fixtures.sh            (creates tools/.venv, then runs this)
        python tools/make_fixtures.py --producer keras2|keras3 [--mnist DIR] [--out DIR]

For each producer (Keras 2 = tf_keras, Keras 3 = keras with the TensorFlow
backend) the seed network of the Batch Normalization tutorial is trained on
the real MNIST training set and saved with model.save('....h5'), the classic
HDF5 layout. Next to every model file this writes Keras's own predictions:

  NAME.h5            the model, written by Keras
  NAME.outputs.idx   float32 IDX (1000, K): model outputs on the first 1000 test images
  NAME.classes.idx   uint8 IDX (10000,): predicted class of every test image
  NAME.json          test accuracy, producer and library versions

Input preprocessing: pixels / 255.0 as float32, flattened to 784 values.
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, dtype_code, ndims = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype_code == 0x08, path
    dims = struct.unpack(">" + "I" * ndims, raw[4:4 + 4 * ndims])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndims)
    assert data.size == int(np.prod(dims)), path
    return data.reshape(dims)


def write_idx(path, array):
    codes = {np.dtype(np.uint8): (0x08, ">u1"), np.dtype(np.float32): (0x0D, ">f4")}
    code, big_endian = codes[array.dtype]
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, code, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(big_endian).tobytes())


def load_mnist(mnist_dir):
    def images(name):
        return read_idx(os.path.join(mnist_dir, name)).reshape(-1, 784).astype(np.float32) / np.float32(255.0)

    def labels(name):
        return read_idx(os.path.join(mnist_dir, name)).astype(np.int64)

    return (images("train-images.idx3-ubyte.gz"), labels("train-labels.idx1-ubyte.gz"),
            images("t10k-images.idx3-ubyte.gz"), labels("t10k-labels.idx1-ubyte.gz"))


def keras_module(producer):
    if producer == "keras2":
        import tf_keras as keras
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    return keras


def seed_mlp(keras):
    """784-50-50-10: Dense -> BN -> sigmoid, twice, then Dense(10, softmax)."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape=(784,)),
        layers.Dense(50),
        layers.BatchNormalization(),
        layers.Activation("sigmoid"),
        layers.Dense(50),
        layers.BatchNormalization(),
        layers.Activation("sigmoid"),
        layers.Dense(10, activation="softmax"),
    ], name="seed_mlp")


def small_cnn(keras):
    """Conv2D(no bias) -> BN -> ReLU -> MaxPool -> Conv2D stride 2 ('same': TF's uneven padding) -> BN -> ReLU -> GAP -> Dense."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(16, 3, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(),
        L.MaxPooling2D(2),
        L.Conv2D(32, 3, strides=2, padding="same"),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax"),
    ], name="small_cnn")


def resnet(keras):
    """Functional ResNet-style: two residual blocks, a 1x1 conv + BN projection on the second skip."""
    L = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    y = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(16, 3, padding="same", use_bias=False)(y)
    y = L.BatchNormalization()(y)
    x = L.ReLU()(L.Add()([x, y]))
    y = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(32, 3, padding="same", use_bias=False)(y)
    y = L.BatchNormalization()(y)
    skip = L.Conv2D(32, 1, strides=2, use_bias=False)(x)
    skip = L.BatchNormalization()(skip)
    x = L.ReLU()(L.Add()([skip, y]))
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet")


def edge_cases(keras):
    """BN center=False / scale=False, epsilons 1e-5 and 1e-2, BN before a valid conv, BN before a padded conv,
    BN before a Dense, DepthwiseConv2D (depth multiplier 2) + BN, Dense without bias + BN, Dropout, tanh,
    and the other activations."""
    L = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = L.Rescaling(2.0, offset=-1.0)(inputs)
    x = L.Conv2D(8, 3, use_bias=False, dilation_rate=2)(x)
    x = L.BatchNormalization(center=False, epsilon=1e-5)(x)
    x = L.Activation("relu6")(x)
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x)
    x = L.BatchNormalization(scale=False, epsilon=1e-2)(x)
    x = L.Activation("tanh")(x)
    x = L.BatchNormalization()(x)              # BN -> valid conv: folds forward
    x = L.Conv2D(16, 3, groups=2, activation="elu")(x)
    x = L.BatchNormalization()(x)              # BN -> padded conv: kept as an affine
    x = L.Conv2D(16, 3, padding="same")(x)
    x = L.LeakyReLU()(x)
    x = L.ZeroPadding2D(((0, 1), (1, 0)))(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    a = L.Activation("gelu")(L.Conv2D(8, 1)(x))
    b = L.Activation("swish")(L.Conv2D(8, 1)(x))
    x = L.Concatenate()([a, b])
    x = L.Multiply()([x, L.Activation("sigmoid")(x)])
    x = L.Flatten()(x)
    x = L.BatchNormalization()(x)              # BN -> Dense: folds forward
    x = L.Dense(32, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("selu")(x)
    x = L.Dropout(0.25)(x)
    x = L.Dense(32, activation="softplus")(x)
    x = L.ELU()(x)
    x = L.Activation("hard_sigmoid")(x)
    outputs = L.Dense(10)(x)
    outputs = L.Softmax()(outputs)
    return keras.Model(inputs, outputs, name="edge_cases")


def big_cnn(keras):
    """The benchmark CNN: conv3x3(32), conv3x3(64), pool, conv3x3(128), pool, dense128, dense10, with BN."""
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        L.Conv2D(32, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(128), L.BatchNormalization(), L.ReLU(),
        L.Dense(10, activation="softmax"),
    ], name="big_cnn")


def nested_shared(keras):
    """A nested Sequential used as a layer, and a Dense layer called twice (shared weights), each followed by BN."""
    L = keras.layers
    encoder = keras.Sequential([keras.Input(shape=(784,)), L.Dense(64), L.BatchNormalization(), L.ReLU()], name="encoder")
    shared = L.Dense(64, name="shared")
    inputs = keras.Input(shape=(784,))
    x = encoder(inputs)
    x = L.ReLU()(L.BatchNormalization()(shared(x)))
    x = L.ReLU()(L.BatchNormalization()(shared(x)))
    outputs = L.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="nested_shared")


def normalized_cnn(keras, x_train=None):
    """A Normalization layer (adapted on the training images; its stored weights are mean,
    variance and an integer count) before Conv2D -> BN -> ReLU -> Dense."""
    L = keras.layers
    norm = L.Normalization(axis=-1)
    if x_train is not None:
        norm.adapt(x_train[:10000].reshape(-1, 28, 28, 1))
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)), norm,
        L.Conv2D(8, 3, strides=2, use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Flatten(), L.Dense(10, activation="softmax"),
    ], name="normalized_cnn")


def two_inputs(keras):
    """Two inputs and two outputs: bnkit reads it and refuses to run it, saying why."""
    L = keras.layers
    a, b = keras.Input(shape=(784,), name="image"), keras.Input(shape=(4,), name="extra")
    x = L.Concatenate()([L.Dense(8)(a), b])
    return keras.Model([a, b], [L.Dense(10, activation="softmax")(x), L.Dense(1)(x)], name="two_inputs")


# name: (builder, epochs, training images, image shape)
KERAS_ARCHIVES = {"seed_mlp", "small_cnn", "resnet"}

MODELS = {
    "seed_mlp": (seed_mlp, 5, None, (784,)),
    "small_cnn": (small_cnn, 3, None, (28, 28, 1)),
    "resnet": (resnet, 2, None, (28, 28, 1)),
    "edge_cases": (edge_cases, 2, None, (28, 28, 1)),
    "big_cnn": (big_cnn, 1, 5000, (28, 28, 1)),
    "nested_shared": (nested_shared, 2, None, (784,)),
    "normalized_cnn": (normalized_cnn, 1, 20000, (28, 28, 1)),
    "two_inputs": (two_inputs, 0, None, None),
}
# The benchmark CNN is large (3.6 MB): one producer, no optimizer state.
SINGLE_PRODUCER = {"big_cnn": "keras3"}


def write_references(model, name, producer, x_test, y_test, out_dir, keras):
    base = os.path.join(out_dir, f"{name}_{producer}")
    if name in SINGLE_PRODUCER:
        model.save(base + ".h5", include_optimizer=False)
    else:
        model.save(base + ".h5")
    if producer == "keras3" and name in KERAS_ARCHIVES:
        model.save(base + ".keras")
    outputs = model.predict(x_test, batch_size=1000, verbose=0).astype(np.float32)
    classes = outputs.argmax(axis=1).astype(np.uint8)
    accuracy = float((classes == y_test).mean())
    write_idx(base + ".outputs.idx", outputs[:1000])
    write_idx(base + ".classes.idx", classes)
    import tensorflow as tf
    meta = {
        "model": name,
        "producer": producer,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "test_images": int(len(y_test)),
        "accuracy": accuracy,
        "preprocessing": "pixels / 255.0 as float32",
    }
    with open(base + ".json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"{base}.h5: accuracy {accuracy:.4f} ({os.path.getsize(base + '.h5')} bytes)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--producer", choices=["keras2", "keras3"], required=True)
    parser.add_argument("--mnist", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    parser.add_argument("--out", default=os.path.join(ROOT, "Fixtures"))
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()

    keras = keras_module(args.producer)
    import tensorflow as tf
    x_train, y_train, x_test, y_test = load_mnist(args.mnist)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        build, epochs, count, shape = MODELS[name]
        if SINGLE_PRODUCER.get(name, args.producer) != args.producer:
            continue
        keras.utils.set_random_seed(1234)
        model = build(keras, x_train) if build is normalized_cnn else build(keras)
        if shape is None:  # not trained, no references: a file for error handling
            model.save(os.path.join(args.out, f"{name}_{args.producer}.h5"))
            continue
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x = x_train[:count].reshape((-1,) + shape)
        model.fit(x, y_train[:count], batch_size=64, epochs=epochs, verbose=2)
        write_references(model, name, args.producer, x_test.reshape((-1,) + shape), y_test, args.out, keras)


if __name__ == "__main__":
    sys.exit(main())
