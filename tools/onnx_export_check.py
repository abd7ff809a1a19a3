#!/usr/bin/env python3
"""Checks bnkit's ONNX export: `bnconv convert MODEL OUT.onnx` (BatchNormalization nodes kept) and
`bnconv convert MODEL OUT.onnx --fold`, run by onnxruntime and OpenVINO, and read back by bnrun
(bnkit's ONNX import), against Keras's own outputs.

Models: every Keras fixture (Fixtures/*.h5, on the first 1000 MNIST test images / 255, against
Keras's *.outputs.idx; tolerance 1e-5 absolute, bnkit's published one), every architecture
fixture (Fixtures/architectures, against *.y.npy; 1e-5 of the largest output), and, with
--applications, keras.applications models built with random weights and calibrated BN statistics
(tools/make_applications_model.py) against the Keras model's outputs (1e-4 of the largest output,
the same class). onnx.checker validates every file. Prints one line per check and a total;
exits non-zero on a failure.

Usage: tools/onnx_export_check.py --bnconv PATH [--applications [NAME ...]] [--producer keras2|keras3]
       [--size 96] [--no-fixtures]
"""
import argparse
import glob
import gzip
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "Fixtures")
results = {"passed": 0, "failed": 0}


def report(ok, text):
    results["passed" if ok else "failed"] += 1
    print(("PASS " if ok else "FAIL ") + text, flush=True)


def read_idx(path):
    raw = open(path, "rb").read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    code, ndims = raw[2], raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndims)]
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndims).reshape(dims)


def runners(path, threads=2):
    import onnxruntime as ort
    import openvino as ov
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # f32: on CPUs with AMX or AVX512-BF16, OpenVINO otherwise infers in bfloat16 (errors near 1e-2).
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return {"onnxruntime": lambda x: session.run(None, {name: x})[0],
            "OpenVINO": lambda x: compiled(x)[compiled.outputs[0]]}


def bnrun_outputs(bnconv, model, x, tmp):
    bnrun = os.path.join(os.path.dirname(bnconv), "bnrun")
    inputs, outputs = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(inputs, x)
    run = subprocess.run([bnrun, model, inputs, "--format", "npy", "--output", outputs], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    return np.load(outputs)


def check(bnconv, source, tmp, label, x, expected, tolerance, exact=None):
    """`exact`: a function giving the float64 outputs, asked for when a runtime misses Keras's float32
    answer: if Keras's own float32 answer is further than the tolerance from float64, the runtime passes
    when it is no further from float64 than Keras is."""
    reference64 = {}
    import onnx
    for fold in (False, True):
        out = os.path.join(tmp, os.path.basename(source) + (".folded" if fold else "") + ".onnx")
        run = subprocess.run([bnconv, "convert", source, out] + (["--fold"] if fold else []), capture_output=True, text=True)
        kind = "folded" if fold else "BN kept"
        if run.returncode != 0:
            report(False, f"{label} ({kind}): bnconv convert failed: {run.stderr.strip()[:300]}")
            continue
        try:
            onnx.checker.check_model(onnx.load(out), full_check=True)
        except Exception as error:  # noqa: BLE001
            report(False, f"{label} ({kind}): onnx.checker: {str(error)[:300]}")
            continue
        infer_all = dict(runners(out))
        infer_all["bnrun (reading the .onnx back)"] = lambda x, out=out: bnrun_outputs(bnconv, out, x, tmp)
        for runtime, infer in infer_all.items():
            try:
                got = np.asarray(infer(x), dtype=np.float32).reshape(expected.shape)
            except Exception as error:  # noqa: BLE001
                report(False, f"{label} ({kind}): {runtime} failed: {type(error).__name__}: {str(error)[:300]}")
                continue
            error = float(np.abs(got - expected).max())
            same = bool((got.reshape(len(x), -1).argmax(1) == expected.reshape(len(x), -1).argmax(1)).all())
            ok, note = error <= tolerance and same, ""
            if not ok and exact is not None:
                if "y" not in reference64:
                    reference64["y"] = exact().reshape(expected.shape)
                y64 = reference64["y"]
                keras_off, mine = float(np.abs(expected - y64).max()), float(np.abs(got - y64).max())
                note = f"; float64 reference: Keras float32 is {keras_off:.3g} from it, {runtime} {mine:.3g}"
                if keras_off > tolerance and mine <= keras_off:
                    ok, note = True, note + " (float32-indeterminate)"
            report(ok, f"{label} ({kind}): {runtime} gives Keras's outputs: max abs difference {error:.3g} "
                       f"(tolerance {tolerance:.3g}), classes {'equal' if same else 'DIFFER'}{note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bnconv", required=True)
    parser.add_argument("--applications", nargs="*")
    parser.add_argument("--producer", choices=["keras2", "keras3"], default="keras3")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--no-fixtures", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_fixtures:
            images = read_idx(os.path.join(FIXTURES, "mnist", "t10k-images.idx3-ubyte.gz"))[:1000].astype(np.float32) / np.float32(255)
            for path in sorted(glob.glob(os.path.join(FIXTURES, "*.h5"))):
                base = path[:-3]
                if not os.path.exists(base + ".outputs.idx"):
                    print(f"note {os.path.basename(path)}: no Keras outputs stored (several inputs), not checked")
                    continue
                expected = read_idx(base + ".outputs.idx").astype(np.float32)
                import h5py
                import json
                config = json.loads(h5py.File(path, "r").attrs["model_config"])
                layers = config["config"]["layers"]
                first = layers[0]["config"]
                shape = first.get("batch_input_shape") or first.get("batch_shape") or [None, 784]
                x = images.reshape((1000,) + tuple(shape[1:]))
                check(args.bnconv, path, tmp, os.path.basename(path), x, expected, 1e-5)
            for path in sorted(glob.glob(os.path.join(FIXTURES, "architectures", "*.h5"))):
                base = path[:-3]
                x, expected = np.load(base + ".x.npy"), np.load(base + ".y.npy")
                check(args.bnconv, path, tmp, os.path.basename(path), x, expected, 1e-5 * float(np.abs(expected).max()))
        if args.applications is not None:
            sys.path.insert(0, HERE)
            import make_applications_model as maker
            from applications_check import SMALLEST
            available = maker.architectures(args.producer)
            for name in args.applications or SMALLEST:
                if name not in available:
                    continue
                model, _ = maker.build(name, args.producer, args.size, 0, "calibrated")
                x, expected = maker.check_data(model, 0)
                h5 = os.path.join(tmp, f"{name}.h5")
                model.save(h5)
                weights = model.get_weights()
                del model
                maker.keras_module(args.producer).backend.clear_session()
                exact = lambda name=name, weights=weights, x=x: maker.float64_outputs(name, args.producer, args.size, weights, x)  # noqa: E731
                check(args.bnconv, h5, tmp, f"{name} ({args.producer}, {args.size}x{args.size})", x, expected,
                      1e-4 * float(np.abs(expected).max()), exact)
                os.remove(h5)
    print(f"onnx export: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
