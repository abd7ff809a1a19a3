#!/usr/bin/env python3
"""Builds a keras.applications architecture with random weights and randomized
BatchNormalization statistics and saves it as a whole-model Keras .h5 (or .keras).
Large models (ResNet50 is 94 MB) are made by this script, never committed.

Usage: tools/make_applications_model.py NAME OUT [--producer keras2|keras3] [--size 224] [--seed 0] [--check PREFIX]
  NAME: a keras.applications constructor, e.g. ResNet50, MobileNetV2, EfficientNetB0.
  BN statistics: gamma ~ U(0.5, 1.5), beta ~ U(-0.5, 0.5), moving mean ~ U(-0.5, 0.5),
  moving variance ~ U(0.5, 2): every BN does something non-trivial.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("output")
    parser.add_argument("--producer", choices=["keras2", "keras3"], default="keras2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", metavar="PREFIX",
                        help="also write PREFIX.x.npy (8 random float32 images, uniform 0..255) and PREFIX.y.npy "
                             "(this model's own outputs for them, computed before saving)")
    args = parser.parse_args()
    if args.producer == "keras2":
        import tf_keras as keras
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    keras.utils.set_random_seed(args.seed)
    model = getattr(keras.applications, args.name)(weights=None, input_shape=(args.size, args.size, 3))
    rng = np.random.default_rng(args.seed)
    count = 0
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        weights = layer.get_weights()
        shape = weights[-1].shape
        new = []
        if layer.scale:
            new.append(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        if layer.center:
            new.append(rng.uniform(-0.5, 0.5, shape).astype(np.float32))
        new += [rng.uniform(-0.5, 0.5, shape).astype(np.float32), rng.uniform(0.5, 2.0, shape).astype(np.float32)]
        layer.set_weights(new)
        count += 1
    if args.check:
        x = np.random.default_rng(args.seed + 1).uniform(0, 255, (8,) + tuple(model.input_shape[1:])).astype(np.float32)
        y = np.asarray(model(x, training=False), dtype=np.float32)
        np.save(args.check + ".x.npy", x)
        np.save(args.check + ".y.npy", y)
    model.save(args.output)
    print(f"wrote {args.output}: {args.name} {args.size}x{args.size}, {count} BatchNormalization layers, "
          f"{os.path.getsize(args.output)} bytes ({args.producer})")


if __name__ == "__main__":
    main()
