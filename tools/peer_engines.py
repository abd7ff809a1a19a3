#!/usr/bin/env python3
"""How the benches run the peers, onnxruntime and OpenVINO (tools/bench.py, tools/bench_applications.py),
and a process that runs one of them alone, so that its peak memory can be measured beside bnrun's.

Each engine is set up one way everywhere: onnxruntime's CPU provider with all graph optimizations and
`threads` intra-op threads; OpenVINO's CPU plugin with the model reshaped to the batch, `threads`
inference threads, the LATENCY hint and float32 precision (on CPUs with AMX or AVX512-BF16 its default
is bfloat16).

Usage (what tools/bench_applications.py runs under `/usr/bin/time -f %M`):
  peer_engines.py ort|ov MODEL.onnx IMAGES.npy BATCH THREADS
      loads the model, then runs every whole batch of the images twice (a warm pass and the timed
      pass of the bench), as the bench's rounds do;
  peer_engines.py ort|ov --baseline IMAGES.npy
      imports the engine and reads the images, loading no model: the part of the peak that is the
      Python interpreter, numpy and the engine's libraries.
"""
import sys

import numpy as np


def ort_session(path, threads):
    """An onnxruntime CPU session on `threads` intra-op threads, all graph optimizations."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ov_request(core, path, sample_shape, batch, threads):
    """An OpenVINO CPU infer request for `batch` samples (LATENCY hint, float32 precision)."""
    model = core.read_model(path)
    model.reshape({model.inputs[0].any_name: [batch, *sample_shape]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request()


def run_alone(engine, path, images, batch, threads):
    """Runs `engine` on every whole batch of `images`, twice."""
    whole = len(images) // batch * batch
    tiles = [np.ascontiguousarray(images[i:i + batch]) for i in range(0, whole, batch)]
    if engine == "ort":
        session = ort_session(path, threads)
        name = session.get_inputs()[0].name
        run = lambda tile: session.run(None, {name: tile})  # noqa: E731
    else:
        import openvino as ov
        request = ov_request(ov.Core(), path, images.shape[1:], batch, threads)
        run = lambda tile: request.infer({0: tile})  # noqa: E731
    for _ in range(2):
        for tile in tiles:
            run(tile)


def main(argv):
    usage = "usage: peer_engines.py ort|ov MODEL.onnx IMAGES.npy BATCH THREADS | ort|ov --baseline IMAGES.npy"
    if len(argv) < 3 or argv[0] not in ("ort", "ov"):
        sys.exit(usage)
    engine = argv[0]
    if argv[1] == "--baseline":
        if len(argv) != 3:
            sys.exit(usage)
        __import__("onnxruntime" if engine == "ort" else "openvino")
        np.load(argv[2])
        return
    if len(argv) != 5:
        sys.exit(usage)
    run_alone(engine, argv[1], np.load(argv[2]), int(argv[3]), int(argv[4]))


if __name__ == "__main__":
    main(sys.argv[1:])
