#!/usr/bin/env python3
"""Checks `bnconv fold` + `bnrun` against Keras on keras.applications architectures:
each is built with weights=None (random weights) and randomized BN statistics
(tools/make_applications_model.py), saved as .h5 by the chosen Keras, folded, run by
bnrun on 8 random float32 images (a .npy), and compared with the outputs the Keras
model gave for them before it was saved (model(x, training=False)): max abs error
<= 1e-4 of the largest output magnitude and the same class for every image (for a segmentation
map, at every pixel: the class is the argmax over the last axis; a pixel may differ only where the
float64 evaluation's two best classes are within that tolerance of each other). When that
fails, the same weights are evaluated by Keras in float64: if Keras's own float32 answer
is more than 1e-4 from the float64 one (deep networks with random statistics amplify
rounding), bnkit passes when it is no further from float64 than Keras's float32 is
("PASS (float32-indeterminate)", with both distances). Prints
one line per model (with how many BN layers were folded and how many kept as a
per-channel scale and shift, and why) and 'N passed, N failed'.

Usage: tools/applications_check.py --bnconv PATH --bnrun PATH [--producer keras2|keras3]
       [--size 96] [--seed 0] [--all | --smallest | MODEL ...]
  --all: every constructor of the producer's keras.applications (large: hours on 2 cores)
  --smallest: the smallest model of each family (the test command runs this)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_applications_model as maker  # noqa: E402

# The smallest architecture of each family (RegNet and ResNetRS exist in tf_keras only).
SMALLEST = ["ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0", "InceptionResNetV2", "InceptionV3",
            "MobileNet", "MobileNetV2", "MobileNetV3Small", "NASNetMobile", "RegNetX002", "RegNetY002", "ResNet50",
            "ResNetRS50", "ResNet50V2", "VGG16", "Xception"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--bnrun", required=True)
    parser.add_argument("--producer", choices=["keras2", "keras3"], default="keras3")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--smallest", action="store_true")
    parser.add_argument("--statistics", choices=["random", "calibrated"], default="random",
                        help="BN statistics: random (the default), or calibrated to each layer's input as in a trained "
                             "network (see make_applications_model.build)")
    args = parser.parse_args()
    available = maker.architectures(args.producer)
    names = available if args.all else SMALLEST if args.smallest else args.models or SMALLEST
    passed = failed = 0
    for name in names:
        if name not in available:
            print(f"SKIP {name} ({args.producer}): not in this producer's keras.applications", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            h5, binary, images, out = (os.path.join(tmp, f"{name}.{ext}") for ext in ("h5", "bin", "x.npy", "out.npy"))
            start = time.time()
            model, bn_count = maker.build(name, args.producer, args.size, args.seed, args.statistics)
            shape = "x".join(map(str, model.input_shape[1:]))
            x, expected = maker.check_data(model, args.seed)
            np.save(images, x)
            model.save(h5)
            weights = model.get_weights()
            del model
            maker.keras_module(args.producer).backend.clear_session()
            classes_of = class_reader(expected.shape)
            expected = expected.reshape(len(x), -1)
            fold = subprocess.run([args.bnconv, "fold", h5, "-o", binary], capture_output=True, text=True)
            if fold.returncode != 0:
                failed += 1
                print(f"FAIL {name} ({args.producer}): {fold.stderr.strip()[:300]}", flush=True)
                continue
            folded = sum("folded into" in line for line in fold.stdout.splitlines())
            kept_lines = [line for line in fold.stdout.splitlines() if "kept as a per-channel scale and shift" in line]
            run = subprocess.run([args.bnrun, binary, images, "--format", "npy", "--output", out], capture_output=True, text=True)
            if run.returncode != 0:
                failed += 1
                print(f"FAIL {name} ({args.producer}): {run.stderr.strip()[:300]}", flush=True)
                continue
            got = np.load(out).reshape(len(x), -1)
            error = float(np.max(np.abs(got - expected)))
            scale = float(np.max(np.abs(expected)))
            differ = classes_of(got) != classes_of(expected)
            same = not differ.any()
            ok = error <= 1e-4 * scale and same
            verdict, exact = "PASS" if ok else "FAIL", ""
            if error <= 1e-4 * scale and not same:
                # A pixel of a map (or an image) whose two best classes are closer than the tolerance has no
                # class float32 can be trusted with: allowed to differ when float64 says it is such a tie.
                y64 = maker.float64_outputs(name, args.producer, args.size, weights, x).reshape(len(x), -1)
                ties = near_ties(y64, classes_of.count, 1e-4 * scale)
                if not (differ & ~ties).any():
                    verdict, ok = "PASS", True
                exact = (f"; {int(differ.sum())} of {differ.size} classes differ, "
                         f"{int((differ & ties).sum())} of them float64 ties")
            if not ok and error > 1e-4 * scale:
                # Deep networks with random statistics can amplify float32 rounding until the answer is not
                # determined by float32 at all. The float64 evaluation of the same weights says whether
                # Keras's own float32 answer is off too; then bnkit must be no further from it than Keras is.
                y64 = maker.float64_outputs(name, args.producer, args.size, weights, x).reshape(len(x), -1)
                scale64 = float(np.max(np.abs(y64)))
                keras_off = float(np.max(np.abs(expected - y64))) / scale64
                bnkit_off = float(np.max(np.abs(got - y64))) / scale64
                exact = (f"; float64 reference: Keras float32 is {keras_off:.1e} from it, bnkit {bnkit_off:.1e}, "
                         f"classes {int((classes_of(expected) == classes_of(y64)).sum())}/{differ.size} and "
                         f"{int((classes_of(got) == classes_of(y64)).sum())}/{differ.size} "
                         f"equal to float64's")
                if keras_off > 1e-4 and bnkit_off <= keras_off:
                    verdict, ok = "PASS (float32-indeterminate)", True
            passed, failed = passed + ok, failed + (not ok)
            reasons = sorted(set(line.split(": ", 2)[-1] for line in kept_lines))
            print(f"{verdict} {name} ({args.producer}, {shape}, {args.statistics} statistics): max abs error {error:.2e} "
                  f"(relative {error / max(scale, 1e-30):.1e}), classes {'equal' if same else 'DIFFER'}{exact}; "
                  f"BN {bn_count}: folded {folded}, kept as scale and shift {len(kept_lines)}"
                  + (f" ({'; '.join(reasons)[:240]})" if kept_lines else "") + f"; {time.time() - start:.0f} s", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def class_reader(shape):
    """The classes of outputs of this shape (samples first), flattened: one per sample for a vector
    output, one per position for a map (the argmax over the last axis: a segmentation's per-pixel
    class). `.count` is the number of classes."""
    count = shape[-1]

    def classes(y):
        return np.asarray(y).reshape(-1, count).argmax(1)
    classes.count = count
    return classes


def near_ties(y, count, tolerance):
    """Per class position (as class_reader flattens them): whether its two largest outputs are within
    tolerance of each other."""
    top = np.sort(np.asarray(y).reshape(-1, count), axis=1)
    return top[:, -1] - top[:, -2] <= tolerance if count > 1 else np.zeros(len(top), bool)


if __name__ == "__main__":
    sys.exit(main())
