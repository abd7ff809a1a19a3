#!/usr/bin/env python3
"""Checks `bnconv fold` + `bnrun` against Keras on keras.applications architectures:
each is built with weights=None (random weights) and randomized BN statistics
(tools/make_applications_model.py), saved as .h5 by the chosen Keras, folded, run by
bnrun on 8 random float32 images (a .npy), and compared with the outputs the Keras
model gave for them before it was saved (model(x, training=False)):
max abs error <= 1e-4 of the largest output magnitude and the same class for every
image. Prints one line per model and 'N passed, N failed'.

Usage: tools/applications_check.py --bnconv PATH --bnrun PATH [--producer keras2|keras3]
       [--size 96] [MODEL ...]        (default: a list of architectures)
"""
import argparse
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = ["ResNet50", "ResNet50V2", "MobileNet", "MobileNetV2", "DenseNet121", "InceptionV3", "EfficientNetB0",
           "EfficientNetV2B0", "Xception", "MobileNetV3Small", "ConvNeXtTiny", "NASNetMobile", "VGG16"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--bnrun", required=True)
    parser.add_argument("--producer", choices=["keras2", "keras3"], default="keras3")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models or DEFAULT:
            h5, binary = (os.path.join(tmp, f"{name}.{ext}") for ext in ("h5", "bin"))
            prefix = os.path.join(tmp, name)
            made = subprocess.run([sys.executable, os.path.join(HERE, "make_applications_model.py"), name, h5,
                                   "--producer", args.producer, "--size", str(args.size), "--seed", str(args.seed),
                                   "--check", prefix], capture_output=True, text=True)
            if made.returncode != 0:
                lines = made.stderr.strip().splitlines() or ["(no message)"]
                print(f"SKIP {name} ({args.producer}): cannot be built here: {lines[-1][:200]}", flush=True)
                continue
            images = prefix + ".x.npy"
            expected = np.load(prefix + ".y.npy").reshape(8, -1)
            fold = subprocess.run([args.bnconv, "fold", h5, "-o", binary], capture_output=True, text=True)
            if fold.returncode != 0:
                failed += 1
                print(f"FAIL {name} ({args.producer}): {fold.stderr.strip()[:300]}")
                continue
            folded = sum("folded into" in line for line in fold.stdout.splitlines())
            kept_lines = [line for line in fold.stdout.splitlines() if "kept as a per-channel scale and shift" in line]
            kept = len(kept_lines)
            run = subprocess.run([args.bnrun, binary, images, "--format", "npy", "--output", binary + ".out.npy"], capture_output=True, text=True)
            if run.returncode != 0:
                failed += 1
                print(f"FAIL {name} ({args.producer}): {run.stderr.strip()[:300]}")
                continue
            got = np.load(binary + ".out.npy").reshape(8, -1)
            error = float(np.max(np.abs(got - expected)))
            scale = float(np.max(np.abs(expected)))
            same = bool((got.argmax(1) == expected.argmax(1)).all())
            ok = error <= 1e-4 * scale and same
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'} {name} ({args.producer}, {args.size}x{args.size}): max abs error {error:.2e} "
                  f"(relative {error / max(scale, 1e-30):.1e}), classes {'equal' if same else 'DIFFER'}; "
                  f"BN folded {folded}, kept as scale and shift {kept}"
                  + (f" ({'; '.join(sorted(set(l.split(': ', 2)[-1] for l in kept_lines)))[:200]})" if kept else ""))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
