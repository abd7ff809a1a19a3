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


MODELS = {"seed_mlp": (seed_mlp, 5)}


def write_references(model, name, producer, x_test, y_test, out_dir, keras):
    base = os.path.join(out_dir, f"{name}_{producer}")
    model.save(base + ".h5")
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
    keras.utils.set_random_seed(1234)
    x_train, y_train, x_test, y_test = load_mnist(args.mnist)
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        build, epochs = MODELS[name]
        model = build(keras)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=2)
        write_references(model, name, args.producer, x_test, y_test, args.out, keras)


if __name__ == "__main__":
    sys.exit(main())
