#!/usr/bin/env python3
"""Builds a keras.applications architecture with random weights and randomized
BatchNormalization statistics and saves it as a whole-model Keras .h5 (or .keras).
Large models (ResNet50 is 94 MB) are made by this script, never committed.

Usage: tools/make_applications_model.py NAME OUT [--producer keras2|keras3] [--size 224] [--seed 0] [--check PREFIX]
  NAME: a keras.applications constructor, e.g. ResNet50, MobileNetV2, EfficientNetB0, or a segmentation
  or 1-D network of tools/deployed_architectures.py (UNet, XceptionUNet: size × size × 3; FCN1D: size × 1,
  ResNet1D: size × 12, size the sequence's length).
  BN statistics: gamma ~ U(0.5, 1.5), beta ~ U(-0.5, 0.5), moving mean ~ U(-0.5, 0.5),
  moving variance ~ U(0.5, 2): every BN does something non-trivial.
  --check PREFIX: also write PREFIX.x.npy (8 random float32 images, uniform 0..255) and
  PREFIX.y.npy (the model's own outputs for them, model(x, training=False), before saving).
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

import deployed_architectures  # noqa: E402


def keras_module(producer):
    """tf_keras for keras2, Keras 3 (TensorFlow backend) for keras3."""
    if producer == "keras2":
        import tf_keras as keras
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    return keras


def architectures(producer):
    """Every constructor keras.applications offers under this producer, then the segmentation and 1-D
    networks of deployed_architectures."""
    keras = keras_module(producer)
    return sorted(name for name in dir(keras.applications) if name[:1].isupper()) + list(deployed_architectures.CONSTRUCTORS)


def construct(keras, name, size):
    """The architecture with random weights, for size × size × 3 images (a 1-D network: sequences of
    length size)."""
    if name in deployed_architectures.CONSTRUCTORS:
        return deployed_architectures.CONSTRUCTORS[name](keras, size)
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))


def walk(layers):
    """Every layer, nested models included."""
    for layer in layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk(layer.layers)


def build(name, producer, size, seed, statistics="random"):
    """The model with random weights and randomized BN statistics, and its BN count.

    statistics="random": gamma ~ U(0.5, 1.5), beta ~ U(-0.5, 0.5), moving mean ~ U(-0.5, 0.5), moving
    variance ~ U(0.5, 2), unrelated to the activations (deep networks then blow activations up and
    amplify rounding). statistics="calibrated": as a trained network has them, the moving mean and
    variance of each BN's input (one training-mode pass over 8 random images with momentum 0),
    perturbed (mean + U(-0.1, 0.1)·std, variance · U(0.8, 1.25)), gamma and beta random as above."""
    keras = keras_module(producer)
    keras.utils.set_random_seed(seed)
    model = construct(keras, name, size)
    rng = np.random.default_rng(seed)
    norms = [layer for layer in walk(model.layers) if type(layer).__name__ == "BatchNormalization"]
    for layer in norms:
        shape = layer.get_weights()[-1].shape
        new = []
        if layer.scale:
            new.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        if layer.center:
            new.append(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
        new += [rng.uniform(-0.5, 0.5, shape).astype(np.float32), rng.uniform(0.5, 2.0, shape).astype(np.float32)]
        layer.set_weights(new)
    if statistics == "calibrated":
        for layer in norms:
            layer.momentum = 0.0
        x = np.random.default_rng(seed + 2).uniform(0, 255, (8,) + tuple(model.input_shape[1:])).astype(np.float32)
        model(x, training=True)
        for layer in norms:
            weights = layer.get_weights()
            mean, variance = weights[-2], weights[-1]
            weights[-2] = (mean + rng.uniform(-0.1, 0.1, mean.shape) * np.sqrt(variance)).astype(np.float32)
            weights[-1] = (variance * rng.uniform(0.8, 1.25, variance.shape)).astype(np.float32)
            layer.set_weights(weights)
    return model, len(norms)


def float64_outputs(name, producer, size, weights, x):
    """The same architecture and weights evaluated in float64 (Keras's own layers, floatx float64): the
    reference that shows how far float32 itself is from the exact answer for this network."""
    keras = keras_module(producer)
    set_floatx = keras.config.set_floatx if hasattr(keras, "config") and hasattr(keras.config, "set_floatx") else keras.backend.set_floatx
    keras.backend.clear_session()
    set_floatx("float64")
    try:
        model = construct(keras, name, size)
        model.set_weights([w.astype(np.float64) for w in weights])
        return np.asarray(model(x.astype(np.float64), training=False), dtype=np.float64)
    finally:
        set_floatx("float32")
        keras.backend.clear_session()


def check_data(model, seed, count=8):
    """`count` random float32 images or sequences (uniform 0..255) and the model's own outputs for them."""
    x = np.random.default_rng(seed + 1).uniform(0, 255, (count,) + tuple(model.input_shape[1:])).astype(np.float32)
    return x, np.asarray(model(x, training=False), dtype=np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("output")
    parser.add_argument("--producer", choices=["keras2", "keras3"], default="keras2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", metavar="PREFIX")
    args = parser.parse_args()
    model, count = build(args.name, args.producer, args.size, args.seed)
    if args.check:
        x, y = check_data(model, args.seed)
        np.save(args.check + ".x.npy", x)
        np.save(args.check + ".y.npy", y)
    model.save(args.output)
    print(f"wrote {args.output}: {args.name} {'x'.join(map(str, model.input_shape[1:]))}, {count} BatchNormalization layers, "
          f"{os.path.getsize(args.output)} bytes ({args.producer})")


if __name__ == "__main__":
    main()
