#!/usr/bin/env python3
"""Independent references for bnkit's batch statistics, computed with real Keras.

  recalibrate   Re-estimated BN statistics in float64: the Keras model is cloned
                with every layer in float64, then, BatchNormalization layer by
                layer in model order, the layer's input over all the images is
                computed (the layers before it already using their new
                statistics) and its per-channel mean and population variance
                are taken with numpy in float64. Writes JSON
                {layer: {"mean": [...], "variance": [...]}}.
  training      Keras's model(x, training=True) (BN with the batch's own
                statistics), batch by batch; writes an IDX float32 file. With
                --float64, the model cloned in float64: Keras's float32 BN in
                training mode is itself off by up to ~1e-4 relative on conv
                layers (its batch moments are reduced in float32), so the
                float64 clone is the exact reference.
  check         Runs `bnconv recalibrate` on the same model and images and
                compares its statistics with the float64 reference (1e-5
                relative: |d| <= 1e-5 * max(|mean|, std) for a mean, 1e-5 *
                variance for a variance, both floored at 1e-12 of the layer's
                largest variance for constant channels); then, with --bnrun, `bnrun
                --bn-statistics batch` against Keras's training=True outputs
                (1e-5 of the largest output) of the float64 clone, with the
                float32 model's own distance to it shown. Prints one line per layer and
                'N passed, N failed'.
  fixtures      Writes the references the Swift tests compare against into
                Fixtures/bn_statistics/ (seed_mlp, small_cnn, resnet, both producers).

The producer (tf_keras or Keras 3) is read from the file's keras_version.
Images: IDX (plain or gzipped); integer pixels are divided by 255.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "Fixtures")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    zero, code, ndims = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and code in IDX_TYPES, path
    dims = struct.unpack(">" + "I" * ndims, raw[4:4 + 4 * ndims])
    data = np.frombuffer(raw, dtype=IDX_TYPES[code], offset=4 + 4 * ndims)
    return data.reshape(dims), code


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.float32)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x0D, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(">f4").tobytes())


def load_images(path, limit, shape):
    data, code = read_idx(path)
    if limit:
        data = data[:limit]
    x = data.astype(np.float64)
    if code in (0x08, 0x09, 0x0B, 0x0C):
        x = x / 255.0
    return x.reshape((len(x),) + tuple(shape))


def producer_of(path):
    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version", b"")
    version = version.decode() if isinstance(version, bytes) else str(version)
    return "keras3" if version.startswith("3") else "keras2"


def keras_module(producer):
    if producer == "keras2":
        import tf_keras as keras
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import keras
    return keras


def with_dtype(config, dtype):
    """The config with every layer's dtype (a name or a dtype policy) replaced."""
    if isinstance(config, dict):
        return {k: (dtype if k == "dtype" else with_dtype(v, dtype)) for k, v in config.items()}
    if isinstance(config, list):
        return [with_dtype(v, dtype) for v in config]
    return config


def float64_clone(keras, model):
    clone = type(model).from_config(with_dtype(model.get_config(), "float64"))
    clone.set_weights([np.asarray(w, dtype=np.float64) for w in model.get_weights()])
    return clone


def bn_layers(model):
    return [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]


def recalibrated_statistics(path, images, limit, batch=500):
    keras = keras_module(producer_of(path))
    model = float64_clone(keras, keras.models.load_model(path, compile=False))
    x = load_images(images, limit, model.input_shape[1:])
    result = {}
    for layer in bn_layers(model):
        extractor = keras.Model(model.inputs, layer.input)
        values = np.concatenate([np.asarray(extractor(x[i:i + batch], training=False), dtype=np.float64)
                                 for i in range(0, len(x), batch)])
        values = values.reshape(-1, values.shape[-1])
        mean = values.mean(axis=0)
        variance = ((values - mean) ** 2).mean(axis=0)
        weights = layer.get_weights()  # [gamma], [beta], moving_mean, moving_variance
        weights[-2], weights[-1] = mean, variance
        layer.set_weights(weights)
        result[layer.name] = {"mean": mean.tolist(), "variance": variance.tolist()}
    return result


def training_outputs(path, images, limit, batch, float64=False):
    """Keras's model(x, training=True) batch by batch: as saved (float32), or the
    same model cloned in float64 (the same computation without float32 rounding)."""
    keras = keras_module(producer_of(path))
    model = keras.models.load_model(path, compile=False)
    if float64:
        model = float64_clone(keras, model)
    x = load_images(images, limit, model.input_shape[1:]).astype(np.float64 if float64 else np.float32)
    return np.concatenate([np.asarray(model(x[i:i + batch], training=True), dtype=np.float64)
                           for i in range(0, len(x), batch)])


def compare_statistics(ours, reference):
    """(passed, failed, lines): relative differences per layer."""
    passed = failed = 0
    lines = []
    for name, ref in reference.items():
        mean, variance = np.array(ref["mean"]), np.array(ref["variance"])
        got_mean, got_variance = np.array(ours[name]["mean"]), np.array(ours[name]["variance"])
        # A channel that is constant (a dead ReLU feeding a Flatten) has variance 0 up to the
        # reference's own rounding: such denominators are floored at 1e-12 of the layer's largest.
        floor = 1e-12 * max(float(np.max(variance)), 1e-30)
        spread = np.maximum(np.maximum(np.abs(mean), np.sqrt(variance)), np.sqrt(floor))
        mean_error = float(np.max(np.abs(got_mean - mean) / spread))
        variance_error = float(np.max(np.abs(got_variance - variance) / np.maximum(variance, floor)))
        ok = mean_error <= 1e-5 and variance_error <= 1e-5
        passed, failed = passed + ok, failed + (not ok)
        lines.append(f"{'PASS' if ok else 'FAIL'} {name}: mean rel. error {mean_error:.2e}, variance rel. error {variance_error:.2e}")
    return passed, failed, lines


def bn_statistics_of(path):
    """{layer: {mean, variance}} read from a Keras .h5 with h5py (either layout)."""
    out = {}
    with h5py.File(path, "r") as f:
        weights = f["model_weights"]
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[-1].startswith(("moving_mean", "moving_variance")):
                layer = name.split("/")[0]
                key = "mean" if "moving_mean" in name.split("/")[-1] else "variance"
                out.setdefault(layer, {})[key] = obj[()].astype(np.float64).tolist()
        weights.visititems(visit)
    return out


def check(args):
    passed = failed = 0
    reference = recalibrated_statistics(args.model, args.images, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "recalibrated.h5")
        command = [args.bnconv, "recalibrate", args.model, "--images", args.images, "-o", out]
        if args.limit:
            command += ["--limit", str(args.limit)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        p, f, lines = compare_statistics(bn_statistics_of(out), reference)
        passed, failed = passed + p, failed + f
        for line in lines:
            print(f"{line} ({os.path.basename(args.model)}, recalibrated)")
        if args.bnrun:
            expected = training_outputs(args.model, args.images, args.limit, args.batch, float64=True)
            keras32 = training_outputs(args.model, args.images, args.limit, args.batch)
            images = os.path.join(tmp, "images.idx")
            data, code = read_idx(args.images)
            write_idx(images, load_images(args.images, args.limit, data.shape[1:]).astype(np.float32))
            csv = subprocess.run([args.bnrun, args.model, images, "--scale", "1", "--format", "csv", "--bn-statistics", "batch",
                                  "--batch", str(args.batch)], check=True, capture_output=True, text=True).stdout
            got = np.array([[float(v) for v in row.split(",")[2:]] for row in csv.strip().split("\n")[1:]])
            error = float(np.max(np.abs(got.reshape(expected.shape) - expected)))
            ok = error <= 1e-5 * max(1.0, float(np.max(np.abs(expected))))
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'} {os.path.basename(args.model)}: --bn-statistics batch vs Keras training=True "
                  f"(float64 clone), batch {args.batch}: max abs difference {error:.2e}; vs Keras float32 "
                  f"{float(np.max(np.abs(got.reshape(expected.shape) - keras32))):.2e} "
                  f"(Keras float32 vs float64: {float(np.max(np.abs(keras32 - expected))):.2e})")
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def fixtures(args):
    out_dir = os.path.join(FIXTURES, "bn_statistics")
    os.makedirs(out_dir, exist_ok=True)
    images = os.path.join(FIXTURES, "mnist", "t10k-images.idx3-ubyte.gz")
    for name in ["seed_mlp", "small_cnn", "resnet"]:
        for producer in ["keras2", "keras3"]:
            if producer != args.producer:
                continue
            model = os.path.join(FIXTURES, f"{name}_{producer}.h5")
            stats = recalibrated_statistics(model, images, args.limit)
            with open(os.path.join(out_dir, f"{name}_{producer}.recalibrated.json"), "w") as f:
                json.dump({"images": os.path.relpath(images, FIXTURES), "limit": args.limit, "layers": stats}, f)
            for kind, wide in [("float32", False), ("float64", True)]:
                outputs = training_outputs(model, images, args.training_limit, args.batch, float64=wide)
                write_idx(os.path.join(out_dir, f"{name}_{producer}.training_{kind}_b{args.batch}.idx"), outputs)
            print(f"wrote references for {name}_{producer}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["recalibrate", "training", "check", "fixtures"])
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--output")
    parser.add_argument("--bnconv")
    parser.add_argument("--bnrun")
    parser.add_argument("--producer", choices=["keras2", "keras3"], help="fixtures: which producer's models (one per process)")
    parser.add_argument("--training-limit", type=int, default=512)
    parser.add_argument("--float64", action="store_true", help="training: the model cloned in float64")
    args = parser.parse_args()
    if args.mode == "recalibrate":
        result = recalibrated_statistics(args.model, args.images, args.limit)
        text = json.dumps(result)
        open(args.output, "w").write(text) if args.output else print(text)
    elif args.mode == "training":
        write_idx(args.output, training_outputs(args.model, args.images, args.limit, args.batch, float64=args.float64))
    elif args.mode == "check":
        sys.exit(0 if check(args) else 1)
    else:
        fixtures(args)


if __name__ == "__main__":
    main()
