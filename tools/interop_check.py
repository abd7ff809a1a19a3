#!/usr/bin/env python3
"""Interop check: the .h5 files bnkit writes open in h5py and in Keras's own
load_model (Keras 2 = tf_keras and Keras 3), and predict what the original
model predicts.

Usage: python tools/interop_check.py --bnconv PATH [--producer keras2|keras3]

For each fixture model of the producer, bnconv writes:
  same.h5      bnconv convert original.h5 same.h5          (h5 -> h5)
  via-bin.h5   original.h5 -> model.bin -> via-bin.h5      (h5 -> bin -> h5)
  folded.h5    bnconv fold original.h5 -> folded.bin -> folded.h5 (a generated config)
Checks: h5py reads every weight of same.h5 / via-bin.h5 bit for bit equal to
the original; training_config and optimizer weights are carried over; the
producer's load_model opens all three and its predictions on the first 1000
test images equal the original's bit for bit (same.h5, via-bin.h5) or, for
folded.h5 (other weights, which Keras recomputes), bnrun's outputs on the same
weights and the original's within bnkit's published tolerance of 1e-5. Prints one line
per check and a closing 'N passed, N failed' line; exits non-zero on failure.
"""
import argparse
import atexit
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures")
MODELS = ["seed_mlp", "small_cnn", "resnet", "edge_cases", "nested_shared", "normalized_cnn"]
results = {"passed": 0, "failed": 0}


def report(ok, what):
    results["passed" if ok else "failed"] += 1
    print(("PASS " if ok else "FAIL ") + what, flush=True)


def test_images(count, shape):
    with gzip.open(os.path.join(FIXTURES, "mnist", "t10k-images.idx3-ubyte.gz")) as f:
        raw = f.read()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16)[: count * 784].astype(np.float32) / np.float32(255.0)
    return images.reshape((count,) + shape)


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        attrs = {k: f.attrs[k] for k in f.attrs}
    return out, attrs


def bnconv(binary, *args):
    run = subprocess.run([binary, *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"bnconv {' '.join(args)}: {run.stderr.strip()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--producer", choices=["keras2", "keras3"], required=True)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras as keras3
    import tf_keras
    keras, other = (tf_keras, keras3) if args.producer == "keras2" else (keras3, tf_keras)
    # The other Keras opens these too: Keras 3 reads tf_keras-form files (when it reads Keras's own
    # file of the model); tf_keras cannot read Keras 3 configs (not even Keras 3's own files), so
    # only the generated (tf_keras-form) one.
    cross = ["same", "via-bin", "folded"] if args.producer == "keras2" else ["folded"]

    work = tempfile.mkdtemp(prefix="bnkit-interop-")
    atexit.register(shutil.rmtree, work, True)   # removed however the script ends
    for name in MODELS:
        original = os.path.join(FIXTURES, f"{name}_{args.producer}.h5")
        base = os.path.join(work, f"{name}_{args.producer}")
        try:
            bnconv(args.bnconv, "convert", original, base + ".same.h5")
            bnconv(args.bnconv, "convert", original, base + ".bin")
            bnconv(args.bnconv, "convert", base + ".bin", base + ".via-bin.h5")
            bnconv(args.bnconv, "fold", original, "-o", base + ".folded.bin")
            bnconv(args.bnconv, "convert", base + ".folded.bin", base + ".folded.h5")
        except RuntimeError as error:
            report(False, f"{name} {args.producer}: {error}")
            continue

        reference_data, reference_attrs = datasets(original)
        for kind in ["same", "via-bin"]:
            data, attrs = datasets(f"{base}.{kind}.h5")
            same_keys = set(data) == set(reference_data)
            exact = same_keys and all(
                data[k].dtype == reference_data[k].dtype and data[k].shape == reference_data[k].shape
                and data[k].tobytes() == reference_data[k].tobytes() for k in data)
            report(exact, f"{name} {args.producer} {kind}.h5: h5py reads every weight and optimizer array bit for bit "
                          f"({len(data)} datasets)")
            report(attrs.get("training_config") == reference_attrs.get("training_config")
                   and attrs.get("model_config") == reference_attrs.get("model_config"),
                   f"{name} {args.producer} {kind}.h5: model_config and training_config carried over")

        model = keras.models.load_model(original, compile=False)
        x = test_images(1000, tuple(model.input_shape[1:]))
        expected = model.predict(x, batch_size=250, verbose=0)
        # bnkit's own outputs for the folded weights, to compare Keras's recomputation with.
        images = os.path.join(work, "first1000.idx")
        if not os.path.exists(images):
            flat = (x.reshape(1000, -1) * 255).round().astype(np.uint8)
            with open(images, "wb") as f:
                f.write(struct.pack(">HBBIII", 0, 0x08, 3, 1000, 28, 28) + flat.tobytes())
        bnrun = os.path.join(os.path.dirname(args.bnconv), "bnrun")
        csv = subprocess.run([bnrun, base + ".folded.bin", images, "--format", "csv"], capture_output=True, text=True, check=True)
        bnkit_folded = np.loadtxt(csv.stdout.splitlines()[1:], delimiter=",")[:, 2:]
        # same.h5 and via-bin.h5 hold the original weights: Keras must predict exactly the original's outputs.
        # folded.h5 holds other (folded) weights: Keras recomputes them in its own summation order, so it
        # must match bnkit's runtime on the same weights, and the original, within bnkit's published
        # tolerance, 1e-5 (float32 rounding; measured differences are printed).
        for kind, reference, tolerance, what in [("same", expected, 0.0, "the original's outputs"),
                                                  ("via-bin", expected, 0.0, "the original's outputs"),
                                                  ("folded", bnkit_folded, 1e-5, "bnrun's outputs for the same folded weights"),
                                                  ("folded", expected, 1e-5, "the original's outputs within the fold tolerance")]:
            try:
                loaded = keras.models.load_model(f"{base}.{kind}.h5", compile=kind != "folded")
                got = loaded.predict(x, batch_size=250, verbose=0)
                difference = float(np.abs(got - reference).max())
                report(difference <= tolerance, f"{name} {args.producer} {kind}.h5: {keras.__name__} load_model predicts "
                                                f"{what} (max abs difference {difference:.3g}, tolerance {tolerance:g})")
            except Exception as error:  # noqa: BLE001 - any failure to load is a failed check
                report(False, f"{name} {args.producer} {kind}.h5: {keras.__name__} load_model failed: {type(error).__name__}: {error}")
        try:
            other.models.load_model(original, compile=False)
            readable = cross
        except Exception as error:  # noqa: BLE001
            # The other Keras cannot read Keras's own file of this model: only the generated config applies.
            print(f"note {name} {args.producer}: {other.__name__} cannot read the original Keras file "
                  f"({type(error).__name__}); checking only the generated config with it")
            readable = ["folded"]
        for kind in readable:
            # Another Keras recomputes with its own kernels: within bnkit's published tolerance.
            tolerance = 1e-5
            try:
                got = other.models.load_model(f"{base}.{kind}.h5", compile=False).predict(x, batch_size=250, verbose=0)
                difference = float(np.abs(got - expected).max())
                report(difference <= tolerance, f"{name} {args.producer} {kind}.h5: {other.__name__} load_model (the other Keras) predicts "
                                                f"the original's outputs (max abs difference {difference:.3g}, tolerance {tolerance:g})")
            except Exception as error:  # noqa: BLE001
                report(False, f"{name} {args.producer} {kind}.h5: {other.__name__} load_model failed: {type(error).__name__}: {error}")
    check_architectures(args, keras, other, work)
    print(f"interop: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


def check_architectures(args, keras, other, work):
    """Fixtures/architectures (separable, 1-D, transposed, upsampling, layer norm, ... layers): bnconv's
    .h5 of the unfolded model keeps every weight bit for bit, and its generated .h5 of the folded model
    opens in both Kerases and predicts the fixture's Keras outputs within 1e-5 of their largest magnitude."""
    folder = os.path.join(FIXTURES, "architectures")
    for file in sorted(f for f in os.listdir(folder) if f.endswith(f"_{args.producer}.h5")):
        name = file[:-3]
        original, base = os.path.join(folder, file), os.path.join(work, name)
        try:
            bnconv(args.bnconv, "convert", original, base + ".same.h5")
            bnconv(args.bnconv, "fold", original, "-o", base + ".folded.bin")
            bnconv(args.bnconv, "convert", base + ".folded.bin", base + ".folded.h5")
        except RuntimeError as error:
            report(False, f"{name}: {error}")
            continue
        reference_data, _ = datasets(original)
        data, _ = datasets(base + ".same.h5")
        report(set(data) == set(reference_data) and all(data[k].tobytes() == reference_data[k].tobytes() for k in data),
               f"{name} same.h5: h5py reads every weight bit for bit ({len(data)} datasets)")
        x = np.load(os.path.join(folder, name + ".x.npy"))
        expected = np.load(os.path.join(folder, name + ".y.npy"))
        tolerance = 1e-5 * float(np.abs(expected).max())
        for library in [keras, other]:
            try:
                got = library.models.load_model(base + ".folded.h5", compile=False).predict(x, verbose=0)
                difference = float(np.abs(got - expected).max())
                report(difference <= tolerance, f"{name} folded.h5: {library.__name__} load_model predicts the fixture's Keras outputs "
                                                f"(max abs difference {difference:.3g}, tolerance {tolerance:.3g})")
            except Exception as error:  # noqa: BLE001 - any failure to load is a failed check
                report(False, f"{name} folded.h5: {library.__name__} load_model failed: {type(error).__name__}: {str(error)[:300]}")


if __name__ == "__main__":
    sys.exit(main())
